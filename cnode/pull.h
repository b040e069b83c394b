/* pull.h: reads a whole ETS table of a BEAM node, in chunks, over rex.
 *
 * etsd asks the node's rex to evaluate, with erl_eval (stdlib, on every
 * node), the traversal in PULL_SOURCE: fix the table (ets:safe_fixtable/2,
 * so that no object present throughout is missed or seen twice), send its
 * size, walk it with ets:select/3 and its continuations, send each chunk
 * of objects to etsd, and answer the number of chunks. Against one ets:tab2list/1 call
 * the node never builds the whole table on its heap (for a million objects
 * tab2list alone took the node ~0.4 s and ~130 MB), the chunks interleave
 * with ticks and other traffic, and etsd merges chunk k while the node
 * reads chunk k+1. A node that refuses the evaluation (it answers
 * {badrpc, _}) is asked for ets:tab2list/1 instead. Runs on the loop. */
#ifndef ETSD_PULL_H
#define ETSD_PULL_H

#include <stddef.h>
#include <stdint.h>

#include "cnode/node.h"

/* Objects per chunk: ~0.5 MB for the seed's users. */
#define PULL_CHUNK_OBJECTS 10000

/* The traversal, as Erlang source; pull.c sends its parse, PULL_FORMS.
 * Bound: Tab, Pid, Ref, Chunk. */
#define PULL_SOURCE                                                              \
    "begin\n"                                                                    \
    "    ets:safe_fixtable(Tab, true),\n"                                        \
    "    try\n"                                                                  \
    "        Pid ! {Ref, ets:info(Tab, size)},\n"                                \
    "        Send = fun Send('$end_of_table', N) -> N;\n"                        \
    "                   Send({Objs, Cont}, N) ->\n"                              \
    "                       Pid ! {Ref, Objs},\n"                                \
    "                       Send(ets:select(Cont), N + 1)\n"                     \
    "               end,\n"                                                      \
    "        Send(ets:select(Tab, [{'_', [], ['$_']}], Chunk), 0)\n"             \
    "    after\n"                                                                \
    "        ets:safe_fixtable(Tab, false)\n"                                    \
    "    end\n"                                                                  \
    "end"

/* The parse of PULL_SOURCE (erl_parse forms, every annotation 1), as
 * term text; the test suite checks it against erl_parse. */
#define PULL_FORMS \
    "{block,1,[" \
    "{call,1,{remote,1,{atom,1,ets},{atom,1,safe_fixtable}},[{var,1,'Tab'},{atom,1,true}]}," \
    "{'try',1,[" \
    "{op,1,'!',{var,1,'Pid'},{tuple,1,[{var,1,'Ref'}," \
    "{call,1,{remote,1,{atom,1,ets},{atom,1,info}},[{var,1,'Tab'},{atom,1,size}]}]}}," \
    "{match,1,{var,1,'Send'}," \
    "{named_fun,1,'Send',[" \
    "{clause,1,[{atom,1,'$end_of_table'},{var,1,'N'}],[],[{var,1,'N'}]}," \
    "{clause,1,[{tuple,1,[{var,1,'Objs'},{var,1,'Cont'}]},{var,1,'N'}],[],[" \
    "{op,1,'!',{var,1,'Pid'},{tuple,1,[{var,1,'Ref'},{var,1,'Objs'}]}}," \
    "{call,1,{var,1,'Send'},[" \
    "{call,1,{remote,1,{atom,1,ets},{atom,1,select}},[{var,1,'Cont'}]}," \
    "{op,1,'+',{var,1,'N'},{integer,1,1}}]}]}]}}," \
    "{call,1,{var,1,'Send'},[" \
    "{call,1,{remote,1,{atom,1,ets},{atom,1,select}}," \
    "[{var,1,'Tab'}," \
    "{cons,1,{tuple,1,[{atom,1,'_'},{nil,1},{cons,1,{atom,1,'$_'},{nil,1}}]},{nil,1}}," \
    "{var,1,'Chunk'}]}," \
    "{integer,1,0}]}]," \
    "[],[]," \
    "[{call,1,{remote,1,{atom,1,ets},{atom,1,safe_fixtable}},[{var,1,'Tab'},{atom,1,false}]}]}]}"

typedef struct pull pull_t;

typedef struct pull_ops {
    /* The table's size when the read began (a hint: room to make), before
     * the first chunk; NULL when not wanted. */
    void (*size)(const char *peer, uint64_t objects, void *data);
    /* One chunk: an encoded list of objects (no version byte), borrowed
     * for the call. Chunks come in the order the node sent them. */
    void (*chunk)(const char *peer, const char *list, size_t len, void *data);
    /* Once, at the end: 0 when every chunk was delivered; -ENOENT when the
     * node has no such table (both forms answered {badrpc, _}); else the
     * rexc status (-ETIMEDOUT, -ECONNRESET, -ECANCELED ...). Chunks delivered before a failure are
     * real objects of the table. */
    void (*done)(const char *peer, int status, void *data);
} pull_ops_t;

/* A puller with its own mailbox on n. On success *out is new; free it with
 * pull_free() before the node is freed. */
int pull_new(node_t *n, pull_t **out);

/* Ends every pull under way (done with -ECANCELED) and frees p.
 * pull_free(NULL) does nothing. */
void pull_free(pull_t *p);

/* Starts reading table from peer; ops (copied) report on later loop turns,
 * unless this fails (-ENOMEM, -EINVAL), in which case they never run.
 * timeout_ms bounds the whole read. */
int pull_table(pull_t *p, const char *peer, const char *table, unsigned timeout_ms,
               const pull_ops_t *ops, void *data);

#endif
