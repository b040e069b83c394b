/* rexc.h: calls to the `rex` server of other nodes, as rpc:call/4 on a
 * BEAM node makes them: {'$gen_call', {Pid, Ref}, {call, M, F, A, user}}
 * to {rex, Node}, answered with {Ref, Result}. Services use it to ask BEAM
 * nodes for nodes() and ets:tab2list/1. Runs on the node's loop. */
#ifndef ETSD_REXC_H
#define ETSD_REXC_H

#include <stddef.h>

#include "cnode/node.h"

typedef struct rexc rexc_t;

/* The outcome of one call. status 0: result/len is the reply term (without
 * version byte; a {badrpc, _} reply is still status 0), borrowed for the
 * callback. Otherwise result is NULL and status is -ETIMEDOUT (no answer in
 * time), -ECONNRESET (the connection went down or rex exited), -ENOENT (no
 * rex on that node) or -ECANCELED (rexc_free() with the call pending). */
typedef void (*rexc_cb)(rexc_t *rc, const char *peer, int status,
                        const char *result, size_t len, void *data);

/* A caller with its own (unnamed) mailbox on n. On success *out is new;
 * free it with rexc_free() before the node is freed. */
int rexc_new(node_t *n, rexc_t **out);

/* Cancels pending calls (each callback runs with -ECANCELED) and frees rc.
 * rexc_free(NULL) does nothing. */
void rexc_free(rexc_t *rc);

/* Calls mod:fun(Args) on peer; args is the encoded argument list (without
 * version byte). cb runs exactly once, on a later loop turn, unless this
 * returns an error (-ENOMEM, -EINVAL), in which case it never runs. */
int rexc_call(rexc_t *rc, const char *peer, const char *mod, const char *fun,
              const void *args, size_t args_len, unsigned timeout_ms,
              rexc_cb cb, void *data);

/* Number of calls waiting for an answer. */
size_t rexc_pending(const rexc_t *rc);

/* The pid the calls come from: a call can have the remote side send it
 * other messages too, which arrive in order before the call's answer when
 * the same process sends both (as a rex worker does). */
const term_pid_t *rexc_pid(const rexc_t *rc);

/* Messages to rc's pid that are no answer to a call ({Ref, _} with an
 * unknown Ref, or anything but a pair) go to cb; by default they are
 * dropped. m is borrowed for the callback, which may start or finish calls
 * but must not rexc_free(rc). */
typedef void (*rexc_other_cb)(rexc_t *rc, const node_msg_t *m, void *data);
void rexc_on_other(rexc_t *rc, rexc_other_cb cb, void *data);

#endif
