/* rpc.c: erpc's spawn requests and the rex server, on top of node.h.
 * Each call runs at once, on the loop, through rpc_exec, except a tab2list
 * of a big table, which is encoded a chunk per loop turn; a "process" for
 * erpc is a mailbox that lives from the SPAWN_REPLY to its exit. */
#include "cnode/rpc.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "cnode/log.h"
#include "cnode/metrics.h"
#include "term/mem.h"

/* Control message operations (erl_dist_protocol). */
enum { DOP_SPAWN_REQUEST = 29, DOP_SPAWN_REQUEST_TT = 30, DOP_SPAWN_REPLY = 31 };

typedef struct rpc_job rpc_job_t;

struct rpc {
    node_t *node;
    rpc_job_t *jobs;    /* tab2lists being encoded */
    int stopping;
    rpc_exec_t *exec;
    node_mbox_t *rex;
    rpc_result_t res;   /* reused by every call */
    term_buf_t out;     /* reused for every reply */
    term_buf_t head;    /* the reply around a big return value */
    uint64_t calls;
    rpc_snapshot_hook_t snap;  /* etsd:snapshot(), answered when durable */
};

/* rpc_exec_call(), counted in the metrics by function and outcome. */
static int exec_call(rpc_t *rp, const char *mod, const char *fun, const void *args,
                     size_t len, rpc_result_t *res)
{
    static const char *const cls[] = {"return", "throw", "exit", "error"};
    int rc = rpc_exec_call(rp->exec, mod, fun, args, len, res);
    metrics_rpc(mod, fun, rc < 0 ? "failed" : cls[res->cls]);
    return rc;
}

void rpc_set_snapshot_hook(rpc_t *r, const rpc_snapshot_hook_t *hook)
{
    if (hook)
        r->snap = *hook;
    else
        memset(&r->snap, 0, sizeof r->snap);
}

uint64_t rpc_calls(const rpc_t *r)
{
    return r->calls;
}

/* A call that holds the loop longer than this is logged (warn), since
 * every peer waits for it. */
#define RPC_SLOW_NS (100u * 1000 * 1000)

/* Buffers are reused between calls, but one tab2list of a big table must
 * not pin its size for the node's lifetime. */
#define RPC_KEEP_BUF (4u << 20)

static void trim_buffers(rpc_t *rp)
{
    if (rp->out.cap > RPC_KEEP_BUF)
        term_buf_release(&rp->out);
    if (rp->res.value.cap > RPC_KEEP_BUF)
        term_buf_release(&rp->res.value);
    if (rp->res.stack.cap > RPC_KEEP_BUF)
        term_buf_release(&rp->res.stack);
}

/* A return value this big is not copied into a reply buffer: the reply's
 * head is put in front of it, in its own buffer (a 1M-object tab2list is
 * 43 MB, and a second buffer of that size costs more in page faults than
 * the copy itself). */
#define RPC_IN_PLACE (64u << 10)

static const term_buf_t *reply_with_head(rpc_t *rp, term_buf_t *value)
{
    term_buf_t *h = &rp->head;
    if (h->err || term_buf_reserve(value, h->len) < 0)
        return NULL;
    memmove(value->data + h->len, value->data, value->len);
    memcpy(value->data, h->data, h->len);
    value->len += h->len;
    return value;
}

/* ---- Chunked tab2list ------------------------------------------------- */

/* A tab2list of at least this many objects is encoded across loop turns,
 * RPC_CHUNK objects per turn (a few ms), so that ticks and other peers'
 * calls are served in between (a million objects take ~0.3 s in one go). */
#define RPC_CHUNK_MIN 50000u
#define RPC_CHUNK 20000u

enum { JOB_ERPC, JOB_REX_PID, JOB_REX_ALIAS };

/* One deferred reply. buf holds the reply's head ({Ref, return, ...} for
 * erpc, {Tag, ...} for rex) followed by the list as far as it is encoded.
 * For erpc, room for the exit frame's head lies before it, so that the
 * frame is sent from buf as it is (a second copy of a 43 MB list held
 * the loop for 50 ms). */
struct rpc_job {
    rpc_t *rp;
    uv_idle_t idle;
    int kind;
    node_mbox_t *mb;       /* JOB_ERPC: the "process" that exits with it */
    size_t off;            /* JOB_ERPC: where the reason starts in buf */
    term_pid_t to;         /* JOB_REX_PID */
    term_ref_t alias;      /* JOB_REX_ALIAS */
    char peer[TERM_ATOM_MAX];
    char table[TERM_ATOM_MAX];
    store_encode_t *enc;
    int snap_wait;         /* an etsd:snapshot() waiting for its snapshot */
    term_buf_t buf;
    uint64_t t0;
    rpc_job_t *next;
};

static void job_close_cb(uv_handle_t *h)
{
    rpc_job_t *j = h->data;
    term_buf_release(&j->buf);
    mem_free(j);
}

/* Unlinks and frees j; an erpc mailbox still open exits with reason, or
 * 'killed' when reason is NULL (BEAM's reason for a process that died for
 * a cause it cannot tell). */
static void job_end(rpc_job_t *j, const void *reason, size_t reason_len)
{
    static const char killed[] = { 119, 6, 'k', 'i', 'l', 'l', 'e', 'd' };
    for (rpc_job_t **p = &j->rp->jobs; *p; p = &(*p)->next) {
        if (*p == j) {
            *p = j->next;
            break;
        }
    }
    if (j->snap_wait && j->rp->snap.cancel)
        j->rp->snap.cancel(j->rp->snap.arg, j);
    if (j->mb)
        node_mbox_close(j->mb, reason ? reason : killed, reason ? reason_len : sizeof(killed));
    store_encode_free(j->enc);
    uv_idle_stop(&j->idle);
    uv_close((uv_handle_t *)&j->idle, job_close_cb);
}

static void job_reply(rpc_job_t *j);

static void job_step_cb(uv_idle_t *h)
{
    rpc_job_t *j = h->data;
    rpc_t *rp = j->rp;
    int rc;
    if (!node_is_connected(rp->node, j->peer)) {
        /* Nobody is left to read the answer. */
        log_info("%s: rpc: ets:tab2list(%s) cancelled: the caller's node is down",
                 j->peer, j->table);
        job_end(j, NULL, 0);
        return;
    }
    rc = store_encode_step(j->enc, RPC_CHUNK, &j->buf);
    if (rc == 0)
        return;
    if (rc < 0) {
        log_warn("%s: rpc: ets:tab2list(%s): %s", j->peer, j->table, strerror(-rc));
        job_end(j, NULL, 0);
        return;
    }
    uint64_t ms = (uv_hrtime() - j->t0) / 1000000;
    log_debug("%s: rpc: ets:tab2list(%s): %zu bytes in %llu ms", j->peer, j->table,
              j->buf.len, (unsigned long long)ms);
    job_reply(j);
}

/* Sends j's reply, complete in j->buf, and ends j. */
static void job_reply(rpc_job_t *j)
{
    rpc_t *rp = j->rp;
    int rc = 0;
    switch (j->kind) {
    case JOB_ERPC:
        node_mbox_close_buf(j->mb, &j->buf, j->off);
        j->mb = NULL;
        break;
    case JOB_REX_ALIAS:
        rc = node_alias_send(rp->node, rp->rex, &j->alias, j->buf.data, j->buf.len);
        break;
    default:
        rc = node_send(rp->node, rp->rex, &j->to, j->buf.data, j->buf.len);
        break;
    }
    if (rc < 0)
        log_warn("%s: rex: reply: %s", j->peer, strerror(-rc));
    job_end(j, NULL, 0);
}

/* The table that M:F(Args) lists if it is ets:tab2list/1 of a table big
 * enough to be chunked, else NULL (the call then runs as any other). */
static store_table_t *big_tab2list(rpc_t *rp, const char *mod, const char *fun,
                                   const char *args, size_t args_len, char *name)
{
    term_reader_t r;
    uint32_t n;
    if (rp->stopping || strcmp(mod, "ets") != 0 || strcmp(fun, "tab2list") != 0)
        return NULL;
    term_reader_init(&r, args, args_len);
    if (term_peek(&r) != TERM_T_LIST || term_get_list(&r, &n) < 0 || n != 1 ||
        term_get_atom(&r, name) < 0 || term_get_nil(&r) < 0 || r.pos != args_len)
        return NULL;
    store_table_t *t = store_table_find(rpc_exec_store(rp->exec), name);
    if (!t || store_table_size(t) < RPC_CHUNK_MIN)
        return NULL;
    return t;
}

/* A job of kind for peer, named after table (or what it waits for); the
 * caller fills in the rest. NULL when out of memory. */
static rpc_job_t *job_new(rpc_t *rp, int kind, const char *peer, const char *table)
{
    rpc_job_t *j = mem_calloc(1, sizeof(*j));
    if (!j)
        return NULL;
    j->rp = rp;
    j->kind = kind;
    j->t0 = uv_hrtime();
    snprintf(j->peer, sizeof(j->peer), "%s", peer);
    snprintf(j->table, sizeof(j->table), "%s", table);
    return j;
}

/* Starts the encode of t after the head already in *head (taken over:
 * *head is left empty). On 0 the job owns mb (may be NULL) and replies
 * when done; on failure nothing was sent and the caller still owns mb. */
static int job_start(rpc_t *rp, store_table_t *t, const char *table, const char *peer,
                     int kind, node_mbox_t *mb, term_buf_t *head, rpc_job_t **out)
{
    int rc;
    if (head->err)
        return head->err;
    rpc_job_t *j = job_new(rp, kind, peer, table);
    if (!j)
        return -ENOMEM;
    j->buf = *head;
    term_buf_init(head);
    if ((rc = store_encode_begin(t, &j->buf, &j->enc)) < 0)
        goto fail;
    if ((rc = uv_idle_init(node_loop(rp->node), &j->idle)) < 0)
        goto fail_enc;
    j->idle.data = j;
    j->mb = mb;
    j->next = rp->jobs;
    rp->jobs = j;
    if (out)
        *out = j;
    /* uv_idle_start() fails only on a closing handle, never here */
    (void)uv_idle_start(&j->idle, job_step_cb);
    return 0;

fail_enc:
    store_encode_free(j->enc);
fail:
    *head = j->buf;   /* back to the caller, for reuse */
    term_buf_reset(head);
    mem_free(j);
    return rc;
}

/* ---- etsd:snapshot() --------------------------------------------------- */

/* Whether M:F(Args) is etsd:snapshot() and a hook can answer it later. */
static int is_snapshot(rpc_t *rp, const char *mod, const char *fun, const char *args,
                       size_t args_len)
{
    term_reader_t r;
    if (rp->stopping || !rp->snap.start || strcmp(mod, "etsd") != 0 ||
        strcmp(fun, "snapshot") != 0)
        return 0;
    term_reader_init(&r, args, args_len);
    return term_get_nil(&r) == 0 && r.pos == args_len;
}

static void snap_done_cb(void *ctx, int rc)
{
    rpc_job_t *j = ctx;
    j->snap_wait = 0;
    if (rc == 0) {
        term_put_atom(&j->buf, "ok");
    } else {
        /* {error, eio}: the errno's name, as file:* returns it */
        char a[32];
        const char *e = uv_err_name(rc);
        size_t i = 0;
        for (; e[i] && i + 1 < sizeof a; i++)
            a[i] = (char)(e[i] >= 'A' && e[i] <= 'Z' ? e[i] - 'A' + 'a' : e[i]);
        a[i] = 0;
        term_put_tuple(&j->buf, 2);
        term_put_atom(&j->buf, "error");
        term_put_atom(&j->buf, a);
    }
    log_debug("%s: rpc: etsd:snapshot(): %s after %llu ms", j->peer,
              rc == 0 ? "durable" : uv_strerror(rc),
              (unsigned long long)((uv_hrtime() - j->t0) / 1000000));
    if (j->buf.err) {
        job_end(j, NULL, 0);
        return;
    }
    job_reply(j);
}

/* Defers the reply, whose head is in *head (taken over on 0), until the
 * snapshot asked for now is durable. On failure the caller still owns mb
 * and runs the call the ordinary way. */
static int snap_start(rpc_t *rp, const char *peer, int kind, node_mbox_t *mb,
                      term_buf_t *head, rpc_job_t **out)
{
    int rc;
    if (head->err)
        return head->err;
    rpc_job_t *j = job_new(rp, kind, peer, "snapshot");
    if (!j)
        return -ENOMEM;
    if ((rc = uv_idle_init(node_loop(rp->node), &j->idle)) < 0) {
        mem_free(j);
        return rc;
    }
    j->idle.data = j;
    rc = rp->snap.start(rp->snap.arg, snap_done_cb, j);
    if (rc < 0) {
        /* Nothing started: the handle never ran and is closed at once;
         * *head stays the caller's. */
        uv_close((uv_handle_t *)&j->idle, job_close_cb);
        return rc;
    }
    j->snap_wait = 1;
    j->buf = *head;
    term_buf_init(head);
    j->mb = mb;
    j->next = rp->jobs;
    rp->jobs = j;
    *out = j;
    return 0;
}

/* ---- Parsing ---------------------------------------------------------- */

static int is_atom(term_reader_t *r, const char *want)
{
    char a[TERM_ATOM_MAX];
    term_reader_t c = *r;
    if (term_get_atom(&c, a) < 0 || strcmp(a, want) != 0)
        return 0;
    *r = c;
    return 1;
}

/* OptList: link, monitor and {monitor, Opts} matter; the rest (reply,
 * priority, ...) are the caller's or have no meaning here. */
static int parse_opts(const char *p, size_t len)
{
    term_reader_t r;
    uint32_t n, k;
    int flags = 0;
    term_reader_init(&r, p, len);
    if (term_peek(&r) != TERM_T_LIST || term_get_list(&r, &n) < 0)
        return 0;
    for (uint32_t i = 0; i < n; i++) {
        term_reader_t e = r;
        const char *ep;
        size_t el;
        if (term_get_any(&r, &ep, &el) < 0)
            break;
        if (is_atom(&e, "link"))
            flags |= RPC_SPAWN_LINK;
        else if (is_atom(&e, "monitor"))
            flags |= RPC_SPAWN_MONITOR;
        else if (term_get_tuple(&e, &k) == 0 && k == 2 && is_atom(&e, "monitor"))
            flags |= RPC_SPAWN_MONITOR;
    }
    return flags;
}

static int parse_call_args(const char *msg, size_t len, rpc_spawn_req_t *q, int with_ref)
{
    term_reader_t r;
    uint32_t n;
    term_reader_init(&r, msg, len);
    if (term_peek(&r) != TERM_T_LIST || term_get_list(&r, &n) < 0 ||
        n != (uint32_t)(with_ref ? 4 : 3))
        return -EPROTO;
    if (with_ref && term_get_any(&r, &q->ref, &q->ref_len) < 0)
        return -EPROTO;
    if (term_get_atom(&r, q->mod) < 0 || term_get_atom(&r, q->fun) < 0)
        return -EPROTO;
    term_type_t t = term_peek(&r);
    if (t != TERM_T_LIST && t != TERM_T_NIL && t != TERM_T_STRING)
        return -EPROTO;
    if (term_get_any(&r, &q->args, &q->args_len) < 0 || term_get_nil(&r) < 0 ||
        r.pos != len)
        return -EPROTO;
    return 0;
}

int rpc_parse_spawn_request(const char *ctl, size_t ctl_len, const char *msg,
                            size_t msg_len, rpc_spawn_req_t *q)
{
    term_reader_t r;
    uint32_t arity, k;
    int64_t op, fa;
    const char *p;
    size_t l;
    char m[TERM_ATOM_MAX], f[TERM_ATOM_MAX];

    memset(q, 0, sizeof(*q));
    q->kind = RPC_SPAWN_OTHER;
    term_reader_init(&r, ctl, ctl_len);
    /* SPAWN_REQUEST_TT {30, ..., OptList, Token} is the same with a
     * sequential trace token last (erl_dist_protocol); it is not read. */
    if (term_get_tuple(&r, &arity) < 0 || term_get_long(&r, &op) < 0 ||
        !((op == DOP_SPAWN_REQUEST && arity == 6) ||
          (op == DOP_SPAWN_REQUEST_TT && arity == 7)) ||
        term_get_ref(&r, &q->req_id) < 0 ||
        term_get_pid(&r, &q->from) < 0 || term_get_any(&r, &p, &l) < 0)
        return -EPROTO;
    /* {M, F, Arity} */
    int mfa_ok = term_get_tuple(&r, &k) == 0 && k == 3 && term_get_atom(&r, m) == 0 &&
                 term_get_atom(&r, f) == 0 && term_get_long(&r, &fa) == 0;
    if (!mfa_ok)
        return 0;
    if (term_get_any(&r, &p, &l) < 0)
        return 0;
    q->flags = parse_opts(p, l);
    if (!msg || strcmp(m, "erpc") != 0)
        return 0;
    if (strcmp(f, "execute_call") == 0 && fa == 4 &&
        parse_call_args(msg, msg_len, q, 1) == 0)
        q->kind = RPC_SPAWN_CALL;
    else if (strcmp(f, "execute_cast") == 0 && fa == 3 &&
             parse_call_args(msg, msg_len, q, 0) == 0)
        q->kind = RPC_SPAWN_CAST;
    return 0;
}

void rpc_encode_spawn_reply(term_buf_t *out, const rpc_spawn_req_t *q,
                            const term_pid_t *pid, const char *error)
{
    term_put_tuple(out, 5);
    term_put_long(out, DOP_SPAWN_REPLY);
    term_put_ref(out, &q->req_id);
    term_put_pid(out, &q->from);
    term_put_long(out, pid ? q->flags : 0);
    if (pid)
        term_put_pid(out, pid);
    else
        term_put_atom(out, error);
}

/* ---- SPAWN_REQUEST ---------------------------------------------------- */

/* An erpc "process" never receives anything: it exits before the loop runs
 * again. Messages that race with the exit are dropped. */
static void spawned_msg_cb(node_mbox_t *mb, const node_msg_t *m, void *data)
{
    (void)mb;
    (void)m;
    (void)data;
}

static void on_spawn_request(rpc_t *rp, const char *peer, const char *ctl, size_t ctl_len,
                             const char *msg, size_t msg_len)
{
    rpc_spawn_req_t q;
    node_mbox_t *mb = NULL;
    int rc = rpc_parse_spawn_request(ctl, ctl_len, msg, msg_len, &q);
    if (rc < 0) {
        log_warn("%s: rpc: malformed SPAWN_REQUEST dropped", peer);
        return;
    }
    term_buf_reset(&rp->out);
    if (q.kind == RPC_SPAWN_OTHER) {
        /* BEAM would load the module; etsd runs nothing but erpc's entry
         * points, and an atom here makes the caller's spawn fail at once. */
        rpc_encode_spawn_reply(&rp->out, &q, NULL, "notsup");
        goto send_reply;
    }
    rc = node_mbox_new(rp->node, NULL, spawned_msg_cb, rp, &mb);
    if (rc < 0) {
        rpc_encode_spawn_reply(&rp->out, &q, NULL, "system_limit");
        goto send_reply;
    }
    if ((q.flags & RPC_SPAWN_MONITOR) &&
        (rc = node_mbox_add_monitor(mb, &q.from, &q.req_id)) < 0)
        goto fail_mbox;
    if ((q.flags & RPC_SPAWN_LINK) && (rc = node_mbox_add_link(mb, &q.from)) < 0)
        goto fail_mbox;
    /* The SPAWN_REPLY must precede every other signal from the new pid. */
    rpc_encode_spawn_reply(&rp->out, &q, node_mbox_pid(mb), NULL);
    if (rp->out.err || (rc = node_send_ctl(rp->node, peer, rp->out.data, rp->out.len,
                                           NULL, 0)) < 0) {
        log_warn("%s: rpc: SPAWN_REPLY: %s", peer, strerror(rp->out.err ? -rp->out.err : -rc));
        node_mbox_close(mb, NULL, 0);
        return;
    }
    rp->calls++;
    char table[TERM_ATOM_MAX];
    store_table_t *t;
    if (q.kind == RPC_SPAWN_CALL &&
        (t = big_tab2list(rp, q.mod, q.fun, q.args, q.args_len, table)) != NULL) {
        size_t off = node_mbox_exit_headroom(mb);
        rpc_job_t *j = NULL;
        term_buf_reset(&rp->head);
        if (term_buf_reserve(&rp->head, off) == 0) {
            memset(rp->head.data, 0, off);
            rp->head.len = off;
        }
        term_put_tuple(&rp->head, 3);
        term_put_raw(&rp->head, q.ref, q.ref_len);
        term_put_atom(&rp->head, "return");
        if (job_start(rp, t, table, peer, JOB_ERPC, mb, &rp->head, &j) == 0) {
            metrics_rpc("ets", "tab2list", "return");
            if (j)
                j->off = off;
            return;
        }
        /* out of memory: try the ordinary way */
    }
    if (q.kind == RPC_SPAWN_CALL && is_snapshot(rp, q.mod, q.fun, q.args, q.args_len)) {
        size_t off = node_mbox_exit_headroom(mb);
        rpc_job_t *j = NULL;
        term_buf_reset(&rp->head);
        if (term_buf_reserve(&rp->head, off) == 0) {
            memset(rp->head.data, 0, off);
            rp->head.len = off;
        }
        term_put_tuple(&rp->head, 3);
        term_put_raw(&rp->head, q.ref, q.ref_len);
        term_put_atom(&rp->head, "return");
        if (snap_start(rp, peer, JOB_ERPC, mb, &rp->head, &j) == 0) {
            j->off = off;
            return;
        }
        /* no data dir, or no snapshot could start: rpc_exec answers */
    }
    rc = exec_call(rp, q.mod, q.fun, q.args, q.args_len, &rp->res);
    term_buf_reset(&rp->out);
    if (q.kind == RPC_SPAWN_CAST) {
        node_mbox_close(mb, NULL, 0);
        return;
    }
    if (rc < 0) {
        /* the call could not even produce an exception (out of memory) */
        term_put_tuple(&rp->out, 3);
        term_put_raw(&rp->out, q.ref, q.ref_len);
        term_put_atom(&rp->out, "exit");
        term_put_atom(&rp->out, rc == -ENOMEM ? "enomem" : "eproto");
    } else if (rp->res.cls == RPC_RETURN && rp->res.value.len > RPC_IN_PLACE) {
        const term_buf_t *b;
        term_buf_reset(&rp->head);
        term_put_tuple(&rp->head, 3);
        term_put_raw(&rp->head, q.ref, q.ref_len);
        term_put_atom(&rp->head, "return");
        if ((b = reply_with_head(rp, &rp->res.value)) != NULL) {
            node_mbox_close(mb, b->data, b->len);
            return;
        }
        rp->out.err = -ENOMEM;
    } else {
        rpc_encode_erpc_reason(&rp->out, q.ref, q.ref_len, &rp->res);
    }
    if (rp->out.err) {
        log_warn("%s: rpc: %s:%s: reply: %s", peer, q.mod, q.fun, strerror(-rp->out.err));
        static const char killed[] = { 119, 6, 'k', 'i', 'l', 'l', 'e', 'd' };
        node_mbox_close(mb, killed, sizeof(killed));
        return;
    }
    node_mbox_close(mb, rp->out.data, rp->out.len);
    return;

fail_mbox:
    term_buf_reset(&rp->out);
    rpc_encode_spawn_reply(&rp->out, &q, NULL, "system_limit");
send_reply:
    if (!rp->out.err)
        rc = node_send_ctl(rp->node, peer, rp->out.data, rp->out.len, NULL, 0);
    if (rp->out.err || rc < 0)
        log_warn("%s: rpc: SPAWN_REPLY failed", peer);
    /* Only after the reply: a monitor already placed on the mailbox then
     * fires after it, never ahead of it (which BEAM answers by dropping
     * the connection). */
    if (mb)
        node_mbox_close(mb, NULL, 0);
}

static void on_ctl(node_t *n, const char *peer, int op, const char *ctl, size_t ctl_len,
                   const char *msg, size_t msg_len, void *data)
{
    (void)n;
    if (op == DOP_SPAWN_REQUEST || op == DOP_SPAWN_REQUEST_TT) {
        /* A request with a trace token is answered like one without; the
         * token is not carried on (SPAWN_REPLY, not SPAWN_REPLY_TT). */
        uint64_t t0 = uv_hrtime();
        on_spawn_request(data, peer, ctl, ctl_len, msg, msg_len);
        trim_buffers(data);
        uint64_t dt = uv_hrtime() - t0;
        if (dt > RPC_SLOW_NS)
            log_warn("%s: rpc: a call held the loop for %llu ms", peer,
                     (unsigned long long)(dt / 1000000));
    } else
        log_debug("%s: rpc: control message %d dropped", peer, op);
}

/* ---- rex -------------------------------------------------------------- */

/* Reads {call | block_call | cast, M, F, A, GL}; 0 or -EPROTO. */
static int parse_rex_request(term_reader_t *r, char *kind, char *mod, char *fun,
                             const char **args, size_t *args_len)
{
    uint32_t k;
    const char *p;
    size_t l;
    if (term_get_tuple(r, &k) < 0 || k != 5 || term_get_atom(r, kind) < 0 ||
        term_get_atom(r, mod) < 0 || term_get_atom(r, fun) < 0)
        return -EPROTO;
    term_type_t t = term_peek(r);
    if (t != TERM_T_LIST && t != TERM_T_NIL && t != TERM_T_STRING)
        return -EPROTO;
    if (term_get_any(r, args, args_len) < 0 || term_get_any(r, &p, &l) < 0)
        return -EPROTO;
    return 0;
}

/* gen:reply/2: a Tag [alias | Alias] or [[alias | Alias] | _] is answered
 * through the alias, anything else by sending to the pid. */
static int tag_alias(const char *tag, size_t tag_len, term_ref_t *alias)
{
    term_reader_t r;
    uint32_t n;
    int use_alias = 0;
    term_reader_init(&r, tag, tag_len);
    if (term_peek(&r) == TERM_T_LIST && term_get_list(&r, &n) == 0 && n == 1) {
        if (is_atom(&r, "alias")) {
            use_alias = term_get_ref(&r, alias) == 0;
        } else if (term_peek(&r) == TERM_T_LIST && term_get_list(&r, &n) == 0 && n == 1 &&
                   is_atom(&r, "alias")) {
            use_alias = term_get_ref(&r, alias) == 0;
        }
    }
    return use_alias;
}

/* rex's answer to a big tab2list, deferred: 0 if the job took it. */
static int rex_start_job(rpc_t *rp, const char *peer, const term_pid_t *to,
                         const char *tag, size_t tag_len, store_table_t *t,
                         const char *table)
{
    term_ref_t alias;
    rpc_job_t *j = NULL;
    int use_alias = tag_alias(tag, tag_len, &alias);
    term_buf_reset(&rp->head);
    term_put_tuple(&rp->head, 2);
    term_put_raw(&rp->head, tag, tag_len);
    int rc = job_start(rp, t, table, peer, use_alias ? JOB_REX_ALIAS : JOB_REX_PID, NULL,
                       &rp->head, &j);
    if (rc == 0 && j) {
        j->to = *to;
        j->alias = alias;
    }
    return rc;
}

static int rex_reply(rpc_t *rp, const term_pid_t *to, const char *tag, size_t tag_len)
{
    term_ref_t alias;
    int use_alias;
    const term_buf_t *b = &rp->out;

    if (rp->res.cls == RPC_RETURN && rp->res.value.len > RPC_IN_PLACE) {
        term_buf_reset(&rp->head);
        term_put_tuple(&rp->head, 2);
        term_put_raw(&rp->head, tag, tag_len);
        if ((b = reply_with_head(rp, &rp->res.value)) == NULL)
            return -ENOMEM;
    } else {
        term_buf_reset(&rp->out);
        term_put_tuple(&rp->out, 2);
        term_put_raw(&rp->out, tag, tag_len);
        rpc_encode_rex_reply(&rp->out, &rp->res);
        if (rp->out.err)
            return rp->out.err;
    }
    use_alias = tag_alias(tag, tag_len, &alias);
    if (use_alias)
        return node_alias_send(rp->node, rp->rex, &alias, b->data, b->len);
    return node_send(rp->node, rp->rex, to, b->data, b->len);
}

static void rex_handle(rpc_t *rp, const node_msg_t *m);

static void rex_msg_cb(node_mbox_t *mb, const node_msg_t *m, void *data)
{
    uint64_t t0 = uv_hrtime();
    (void)mb;
    rex_handle(data, m);
    trim_buffers(data);
    uint64_t dt = uv_hrtime() - t0;
    if (dt > RPC_SLOW_NS)
        log_warn("%s: rex: a call held the loop for %llu ms", m->peer ? m->peer : "?",
                 (unsigned long long)(dt / 1000000));
}

static void rex_handle(rpc_t *rp, const node_msg_t *m)
{
    term_reader_t r;
    uint32_t k;
    char kind[TERM_ATOM_MAX], mod[TERM_ATOM_MAX], fun[TERM_ATOM_MAX];
    const char *args, *tag;
    size_t args_len, tag_len;
    term_pid_t from;
    int rc;

    term_reader_init(&r, m->msg, m->msg_len);
    if (term_get_tuple(&r, &k) < 0)
        goto ignore;
    if (k == 3 && is_atom(&r, "$gen_call")) {
        /* {'$gen_call', {From, Tag}, {call | block_call, M, F, A, GL}} */
        if (term_get_tuple(&r, &k) < 0 || k != 2 || term_get_pid(&r, &from) < 0 ||
            term_get_any(&r, &tag, &tag_len) < 0 ||
            parse_rex_request(&r, kind, mod, fun, &args, &args_len) < 0 ||
            (strcmp(kind, "call") != 0 && strcmp(kind, "block_call") != 0))
            goto ignore; /* rex ignores other calls (noreply) */
        rp->calls++;
        char table[TERM_ATOM_MAX];
        store_table_t *t = big_tab2list(rp, mod, fun, args, args_len, table);
        /* a local caller has no connection to watch: it is served at once */
        if (t && m->peer && strcmp(m->peer, node_name(rp->node)) != 0 &&
            rex_start_job(rp, m->peer, &from, tag, tag_len, t, table) == 0) {
            metrics_rpc("ets", "tab2list", "return");
            return;
        }
        if (m->peer && is_snapshot(rp, mod, fun, args, args_len)) {
            term_ref_t alias;
            rpc_job_t *j = NULL;
            int use_alias = tag_alias(tag, tag_len, &alias);
            term_buf_reset(&rp->head);
            term_put_tuple(&rp->head, 2);
            term_put_raw(&rp->head, tag, tag_len);
            if (snap_start(rp, m->peer, use_alias ? JOB_REX_ALIAS : JOB_REX_PID, NULL,
                           &rp->head, &j) == 0) {
                j->to = from;
                j->alias = alias;
                return;
            }
        }
        rc = exec_call(rp, mod, fun, args, args_len, &rp->res);
        if (rc < 0)
            goto internal;
        if ((rc = rex_reply(rp, &from, tag, tag_len)) < 0)
            log_warn("%s: rex: reply: %s", m->peer, strerror(-rc));
        return;
    }
    if (k == 2 && is_atom(&r, "$gen_cast")) {
        /* {'$gen_cast', {cast, M, F, A, GL}} */
        if (parse_rex_request(&r, kind, mod, fun, &args, &args_len) < 0 ||
            strcmp(kind, "cast") != 0)
            goto ignore;
        rp->calls++;
        (void)exec_call(rp, mod, fun, args, args_len, &rp->res);
        return;
    }
    if (k == 2 && term_peek(&r) == TERM_T_PID && term_get_pid(&r, &from) == 0) {
        term_reader_t c = r;
        if (is_atom(&c, "features_request")) {
            /* {features_reply, node(), [erpc]}: this node speaks erpc */
            term_buf_reset(&rp->out);
            term_put_tuple(&rp->out, 3);
            term_put_atom(&rp->out, "features_reply");
            term_put_atom(&rp->out, node_name(rp->node));
            term_put_list(&rp->out, 1);
            term_put_atom(&rp->out, "erpc");
            term_put_nil(&rp->out);
            if (!rp->out.err)
                (void)node_send(rp->node, rp->rex, &from, rp->out.data, rp->out.len);
            return;
        }
        /* {From, {call, M, F, A, GL}} from hidden C nodes: reply {rex, Reply} */
        if (parse_rex_request(&r, kind, mod, fun, &args, &args_len) < 0 ||
            strcmp(kind, "call") != 0)
            goto ignore;
        rp->calls++;
        if (m->peer && is_snapshot(rp, mod, fun, args, args_len)) {
            rpc_job_t *j = NULL;
            term_buf_reset(&rp->head);
            term_put_tuple(&rp->head, 2);
            term_put_atom(&rp->head, "rex");
            if (snap_start(rp, m->peer, JOB_REX_PID, NULL, &rp->head, &j) == 0) {
                j->to = from;
                return;
            }
        }
        rc = exec_call(rp, mod, fun, args, args_len, &rp->res);
        if (rc < 0)
            goto internal;
        term_buf_reset(&rp->out);
        term_put_tuple(&rp->out, 2);
        term_put_atom(&rp->out, "rex");
        rpc_encode_rex_reply(&rp->out, &rp->res);
        if (!rp->out.err)
            (void)node_send(rp->node, rp->rex, &from, rp->out.data, rp->out.len);
        return;
    }
ignore:
    log_debug("%s: rex: unexpected message ignored", m->peer ? m->peer : "?");
    return;
internal:
    log_warn("%s: rex: %s:%s: %s", m->peer, mod, fun, strerror(-rc));
}

static void rpc_on_shutdown(node_t *n, void *data)
{
    rpc_t *rp = data;
    (void)n;
    rp->stopping = 1;
    while (rp->jobs)
        job_end(rp->jobs, NULL, 0);
    if (rp->rex) {
        node_mbox_close(rp->rex, NULL, 0);
        rp->rex = NULL;
    }
}

int rpc_new(node_t *n, rpc_exec_t *x, rpc_t **out)
{
    int rc;
    rpc_t *rp = mem_calloc(1, sizeof(*rp));
    if (!rp)
        return -ENOMEM;
    rp->node = n;
    rp->exec = x;
    rpc_result_init(&rp->res);
    term_buf_init(&rp->out);
    term_buf_init(&rp->head);
    const node_config_t *cfg = node_config(n);
    char fsync[32];
    if (cfg->fsync == NODE_FSYNC_PERIODIC)
        snprintf(fsync, sizeof(fsync), "%ums", cfg->fsync_ms);
    else
        snprintf(fsync, sizeof(fsync), "%s", cfg->fsync == NODE_FSYNC_NEVER ? "never" : "always");
    if ((rc = rpc_exec_set_storage(x, cfg->data_dir, fsync)) < 0)
        goto fail_free;
    if ((rc = node_mbox_new(n, "rex", rex_msg_cb, rp, &rp->rex)) < 0)
        goto fail_free;
    if ((rc = node_on_ctl(n, on_ctl, rp)) < 0)
        goto fail_rex;
    if ((rc = node_on_shutdown(n, rpc_on_shutdown, rp)) < 0)
        goto fail_rex;
    *out = rp;
    return 0;

fail_rex:
    node_mbox_close(rp->rex, NULL, 0);
fail_free:
    rpc_result_release(&rp->res);
    term_buf_release(&rp->out);
    term_buf_release(&rp->head);
    mem_free(rp);
    return rc;
}

void rpc_free(rpc_t *rp)
{
    if (!rp)
        return;
    /* Jobs end at node_stop(); their handles are closed by the loop's
     * last run, which comes before this. */
    rpc_result_release(&rp->res);
    term_buf_release(&rp->out);
    term_buf_release(&rp->head);
    mem_free(rp);
}
