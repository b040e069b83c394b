/* rpc.h: the rpc service. It answers erpc's SPAWN_REQUEST for
 * erpc:execute_call/4 and erpc:execute_cast/3 (rpc:call, erpc:call,
 * rpc:cast, erpc:cast, the multicalls) and the registered `rex` server
 * (rpc:block_call, older callers, hidden C nodes), running each call with
 * rpc_exec. PROTOCOL.md section 7. */
#ifndef ETSD_RPC_H
#define ETSD_RPC_H

#include <stddef.h>
#include <stdint.h>

#include "cnode/node.h"
#include "cnode/rpc_exec.h"
#include "term/term.h"

typedef struct rpc rpc_t;

/* Registers `rex` on n and takes the node's control hook (node_on_ctl) for
 * SPAWN_REQUEST. x is borrowed and must outlive the node's loop. The rex
 * mailbox closes when the node stops. On success *out is new; free it with
 * rpc_free() after the loop has finished. Returns 0, -ENOMEM, or an error of
 * node_mbox_new()/node_on_ctl() (-EEXIST: rex is taken). */
int rpc_new(node_t *n, rpc_exec_t *x, rpc_t **out);
void rpc_free(rpc_t *r);

/* Calls answered so far (spawn requests plus rex calls and casts). */
uint64_t rpc_calls(const rpc_t *r);

/* etsd:snapshot() answered when the snapshot is durable, without holding
 * the loop: start(arg, done, ctx) asks for one and calls done(ctx, rc)
 * later, never from inside start; it returns a negative errno when it
 * started nothing (the call then runs through rpc_exec, which answers
 * {error, no_data_dir} for a memory-only etsd). cancel(arg, ctx) withdraws
 * ctx: done is not called for it after. The reply is ok or
 * {error, Errno}. Without a hook, etsd:snapshot() runs through rpc_exec. */
typedef void (*rpc_snapshot_done_cb)(void *ctx, int rc);
typedef struct rpc_snapshot_hook {
    int (*start)(void *arg, rpc_snapshot_done_cb done, void *ctx);
    void (*cancel)(void *arg, void *ctx);
    void *arg;
} rpc_snapshot_hook_t;
void rpc_set_snapshot_hook(rpc_t *r, const rpc_snapshot_hook_t *hook);

/* ---- Pure parts, for tests -------------------------------------------- */

enum { RPC_SPAWN_LINK = 1, RPC_SPAWN_MONITOR = 2 };

typedef enum rpc_spawn_kind {
    RPC_SPAWN_CALL,   /* {erpc, execute_call, 4}, ArgList [Ref, M, F, A] */
    RPC_SPAWN_CAST,   /* {erpc, execute_cast, 3}, ArgList [M, F, A] */
    RPC_SPAWN_OTHER   /* anything else: answered with an error atom */
} rpc_spawn_kind_t;

/* A parsed SPAWN_REQUEST. Pointers borrow the control and message bytes. */
typedef struct rpc_spawn_req {
    term_ref_t req_id;
    term_pid_t from;
    int flags;                   /* RPC_SPAWN_LINK | RPC_SPAWN_MONITOR */
    rpc_spawn_kind_t kind;
    const char *ref;             /* CALL: the encoded Ref */
    size_t ref_len;
    char mod[TERM_ATOM_MAX];     /* CALL/CAST: M and F */
    char fun[TERM_ATOM_MAX];
    const char *args;            /* CALL/CAST: the encoded A */
    size_t args_len;
} rpc_spawn_req_t;

/* Parses SPAWN_REQUEST {29, ReqId, From, GroupLeader, {M, F, Arity},
 * OptList}, or SPAWN_REQUEST_TT {30, ..., OptList, Token} (ctl), with its
 * ArgList (msg, may be NULL). Returns 0, or
 * -EPROTO when ReqId/From cannot be read (no reply is possible).
 * An erpc request whose arguments do not have the expected shape is
 * RPC_SPAWN_OTHER. */
int rpc_parse_spawn_request(const char *ctl, size_t ctl_len, const char *msg,
                            size_t msg_len, rpc_spawn_req_t *out);

/* Appends SPAWN_REPLY {31, ReqId, From, Flags, Result} where Result is the
 * new pid (pid != NULL) or the atom error (pid == NULL). */
void rpc_encode_spawn_reply(term_buf_t *out, const rpc_spawn_req_t *req,
                            const term_pid_t *pid, const char *error);

#endif
