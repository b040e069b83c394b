/* match.h: ETS match specifications and patterns over canonical objects
 * (ets:select/match/match_object and friends), and the integer arithmetic
 * ets:update_counter shares with them. Internal to store/. */
#ifndef ETSD_MATCH_H
#define ETSD_MATCH_H

#include <stddef.h>
#include <stdint.h>

#include "term/term.h"

typedef struct match_spec match_spec_t;

/* What a compiled ets:match/2 pattern returns per object. */
typedef enum match_kind {
    MATCH_BINDINGS = 0,   /* ets:match: the list of bound '$N' by number */
    MATCH_OBJECT          /* ets:match_object: the object */
} match_kind_t;

/* Compiles a match specification (an encoded list of {Head, Guards, Body},
 * any valid encoding). -EINVAL where ETS raises badarg (not a proper list,
 * unknown function, unbound variable in a guard or body, empty body, ...);
 * -ENOMEM. On success *out is new; free it with match_free(). */
int match_compile(const void *spec, size_t len, match_spec_t **out);

/* Compiles an ets:match/match_object pattern as the equivalent spec. */
int match_compile_pattern(const void *pat, size_t len, match_kind_t kind,
                          match_spec_t **out);

void match_free(match_spec_t *ms);

/* Runs ms on one canonical object. Returns 1 and appends the result of
 * the first matching clause (canonical encoding) to out, 0 if no clause
 * matches, or -ENOMEM. A body that raises yields the atom 'EXIT', as in
 * ETS. If is_true is not NULL, *is_true tells whether the result is the
 * atom true (select_count, select_delete). */
int match_run(match_spec_t *ms, const void *obj, size_t len, term_buf_t *out,
              int *is_true);

/* ETS does not scan when every clause's head is a tuple whose key element
 * holds no '_' or '$N': it looks those keys up. Before OTP 27 this holds
 * for keys with maps too (a map there matches by =:=, not as a sub-map
 * pattern); from OTP 27 such a key is scanned for. Returns 1 and sets keys/lens (canonical,
 * valid while ms lives; at most max, *n of them, possibly repeated) if
 * that is the case, 0 if the table must be scanned. */
int match_bound_keys(match_spec_t *ms, unsigned keypos, const char **keys,
                     size_t *lens, size_t max, size_t *n);

/* Node name node/0 returns in specs (default nonode@nohost). Copied. */
void match_set_node(const char *node);

/* Integers (canonical encodings, any size): 1 if p is one. */
int match_is_integer(const void *p, size_t len);

/* Appends the canonical encoding of a + b (both integers, canonical) to
 * out. 0, -EINVAL if either is not an integer, or -ENOMEM. */
int match_int_add(const void *a, size_t alen, const void *b, size_t blen,
                  term_buf_t *out);

#endif
