/* rpc_exec.h: what etsd runs when a peer asks it for M:F(A) over rpc.
 * Pure dispatch: it takes an encoded argument list and gives back the
 * outcome (a return value or an exception) as Erlang would raise it, and
 * encodes the reply shapes that erpc and rex expect. No sockets, no loop. */
#ifndef ETSD_RPC_EXEC_H
#define ETSD_RPC_EXEC_H

#include <stddef.h>
#include <stdint.h>

#include "store/store.h"
#include "term/term.h"

typedef struct rpc_exec rpc_exec_t;

/* How an apply ended, as `try apply(M, F, A) catch Class:Reason:Stack`. */
typedef enum rpc_class {
    RPC_RETURN = 0,
    RPC_THROW,
    RPC_EXIT,
    RPC_ERROR
} rpc_class_t;

/* The outcome of one call. Initialize with rpc_result_init(), reuse across
 * calls (rpc_exec_call resets it), free with rpc_result_release(). */
typedef struct rpc_result {
    rpc_class_t cls;
    term_buf_t value;  /* the return value, thrown term, exit or error reason */
    term_buf_t stack;  /* RPC_ERROR only: the stack as erpc:trim_stack/4 leaves it */
} rpc_result_t;

void rpc_result_init(rpc_result_t *r);
void rpc_result_release(rpc_result_t *r);

/* ---- Hooks the node and the cluster services fill in ------------------ */

/* erlang:nodes/0,1: appends a proper list of the atoms of the nodes etsd is
 * connected to now. Returns 0 or a negative errno. */
typedef int (*rpc_nodes_cb)(void *arg, term_buf_t *out);

/* etsd:insert/2: called once per object after the store accepted it, so that
 * the cluster service can broadcast {new, Object}. obj is the encoding (no
 * version byte) of one tuple, valid during the call. A negative return is
 * logged by the caller; the insert itself has happened. */
typedef int (*rpc_insert_cb)(void *arg, const char *table, const void *obj, size_t len);

/* etsd:info/0 extra entries: appends n key/value pairs (each a key term then
 * a value term) to out and adds n to *count. Keys are atoms other than the
 * ones rpc_exec writes itself (node, version, uptime_ms, tables). */
typedef int (*rpc_info_cb)(void *arg, term_buf_t *out, uint32_t *count);

/* etsd:sync/0 and etsd:snapshot/0: does the work and appends the result term
 * (e.g. ok or {error, Reason}) to out. */
typedef int (*rpc_action_cb)(void *arg, term_buf_t *out);

/* ---- Lifecycle -------------------------------------------------------- */

/* A dispatcher over store s (borrowed; it must outlive x) for a node named
 * node_name (e.g. "etsd@127.0.0.1") whose etsd:info/0 reports version.
 * On success *out is new; free it with rpc_exec_free(). Returns 0, -EINVAL
 * or -ENOMEM. */
int rpc_exec_new(store_t *s, const char *node_name, const char *version,
                 rpc_exec_t **out);
void rpc_exec_free(rpc_exec_t *x);

/* The store x runs calls on (borrowed). */
store_t *rpc_exec_store(rpc_exec_t *x);

/* Registers a hook; NULL cb removes it. Without a nodes hook, erlang:nodes
 * answers []; without an info hook etsd:info/0 has only its own entries;
 * without an insert hook etsd:insert/2 only stores; without sync/snapshot
 * hooks, etsd:sync/0 returns {error, not_clustered} and etsd:snapshot/0 calls
 * store_snapshot() itself. */
void rpc_exec_set_nodes_cb(rpc_exec_t *x, rpc_nodes_cb cb, void *arg);
void rpc_exec_set_insert_cb(rpc_exec_t *x, rpc_insert_cb cb, void *arg);
void rpc_exec_set_info_cb(rpc_exec_t *x, rpc_info_cb cb, void *arg);
void rpc_exec_set_sync_cb(rpc_exec_t *x, rpc_action_cb cb, void *arg);
void rpc_exec_set_snapshot_cb(rpc_exec_t *x, rpc_action_cb cb, void *arg);

/* Tells etsd:info/0 where the store keeps its data: data_dir (NULL for a
 * memory-only store) and the fsync policy as text ("always", "never" or a
 * period like "100ms"). Both are copied. Without a data directory
 * etsd:snapshot/0 answers {error, no_data_dir}. */
int rpc_exec_set_storage(rpc_exec_t *x, const char *data_dir, const char *fsync);

/* Confines ets:tab2file/2,3 and ets:file2tab/1,2 to dir (an absolute
 * path, copied; realpath()ed by the caller): a relative file name is taken
 * inside it, an absolute one must lie inside it; a name with a ".."
 * component, an absolute name elsewhere, or a symlink on the way whose
 * target lies outside (or is missing) is refused with
 * {error, {parent_dir_in_path | outside_file_dir | symlink_outside_file_dir,
 * Name}}. dir NULL refuses both calls with {error, no_file_dir}, which is
 * also the default. Returns 0, -EINVAL (dir not absolute) or -ENOMEM.
 * The checks are made at the call: a local user who can change the folder
 * meanwhile is not kept out. */
int rpc_exec_set_file_dir(rpc_exec_t *x, const char *dir);

/* ---- Running a call --------------------------------------------------- */

/* Runs mod:fun(Args...) where args is the encoded argument list (no version
 * byte; a proper list, NIL for none). The outcome goes to *res:
 *   - ets:*             through store_ets_call(); badarg is raised with the
 *                       stack a BEAM node shows (error_info and its cause);
 *   - etsd:insert/2, info/0, sync/0, snapshot/0;
 *   - erlang:node/0, nodes/0,1, system_time/0,1, memory/0;
 *   - anything else     error:undef with stack [{M, F, Args, []}], exactly
 *                       what erpc reports for an undefined function.
 * Returns 0 when *res holds an outcome (exceptions included); a negative
 * errno (-ENOMEM, -EPROTO for args that are not a valid proper list) when
 * it does not. */
int rpc_exec_call(rpc_exec_t *x, const char *mod, const char *fun,
                  const void *args, size_t len, rpc_result_t *res);

/* ---- Reply shapes ----------------------------------------------------- */

/* Appends the exit reason erpc:execute_call/4 would die with:
 * {Ref, return, V} | {Ref, throw, T} | {Ref, exit, E} | {Ref, error, E, Stack}.
 * ref is the encoded Ref (no version byte) from the spawn arguments. */
void rpc_encode_erpc_reason(term_buf_t *out, const void *ref, size_t ref_len,
                            const rpc_result_t *res);

/* Appends what rex replies for {call | block_call, M, F, A, GL}, as
 * rpc:execute_call/3 computes it: V | T | {badrpc, {'EXIT', E}} |
 * {badrpc, {'EXIT', {E, Stack}}}. */
void rpc_encode_rex_reply(term_buf_t *out, const rpc_result_t *res);

#endif
