/* rexc.c: outgoing rex calls (gen_server:call to {rex, Node}), each with a
 * monitor on {rex, Node}, as gen:call places one, and a timeout. */
#include <errno.h>
#include <string.h>

#include "cnode/log.h"
#include "cnode/rexc.h"
#include "term/mem.h"

typedef struct rexc_call {
    rexc_t *rc;
    term_ref_t tag;        /* the call's Ref, echoed in {Ref, Result} */
    term_ref_t mon;        /* monitor on {rex, Peer} */
    int monitored;
    char *peer;
    rexc_cb cb;
    void *data;
    uv_timer_t timer;
    struct rexc_call *next;
} rexc_call_t;

struct rexc {
    node_t *node;
    node_mbox_t *mb;
    rexc_call_t *calls;
    size_t npending;
    rexc_other_cb other;
    void *other_data;
};

static void call_closed_cb(uv_handle_t *h)
{
    rexc_call_t *c = h->data;
    mem_free(c->peer);
    mem_free(c);
}

/* Unlinks c, runs its callback, then releases it. */
static void call_finish(rexc_call_t *c, int status, const char *res, size_t len)
{
    rexc_t *rc = c->rc;
    for (rexc_call_t **p = &rc->calls; *p; p = &(*p)->next) {
        if (*p == c) {
            *p = c->next;
            break;
        }
    }
    rc->npending--;
    if (c->monitored)
        (void)node_demonitor(rc->node, &c->mon);
    uv_timer_stop(&c->timer);
    c->cb(rc, c->peer, status, res, len, c->data);
    uv_close((uv_handle_t *)&c->timer, call_closed_cb);
}

static void call_timeout_cb(uv_timer_t *t)
{
    rexc_call_t *c = t->data;
    log_warn("%s: rex call timed out", c->peer);
    call_finish(c, -ETIMEDOUT, NULL, 0);
}

/* {Ref, Result} from the rex worker, or {'DOWN', MRef, process, _, Reason}. */
static void rexc_msg_cb(node_mbox_t *mb, const node_msg_t *m, void *data)
{
    rexc_t *rc = data;
    term_reader_t r;
    uint32_t arity;
    term_ref_t ref;
    (void)mb;

    term_reader_init(&r, m->msg, m->msg_len);
    if (term_get_tuple(&r, &arity) < 0)
        goto other;
    if (m->kind == NODE_MSG_DOWN) {
        char atom[TERM_ATOM_MAX], reason[TERM_ATOM_MAX] = "";
        const char *p;
        size_t len;
        if (arity != 5 || term_get_atom(&r, atom) < 0 || term_get_ref(&r, &ref) < 0 ||
            term_get_any(&r, &p, &len) < 0 || term_get_any(&r, &p, &len) < 0)
            return;
        if (term_peek(&r) == TERM_T_ATOM)
            (void)term_get_atom(&r, reason);
        for (rexc_call_t *c = rc->calls; c; c = c->next) {
            if (c->monitored && term_ref_eq(&c->mon, &ref)) {
                c->monitored = 0;
                call_finish(c, strcmp(reason, "noproc") == 0 ? -ENOENT : -ECONNRESET,
                            NULL, 0);
                return;
            }
        }
        return;
    }
    if (arity != 2 || term_peek(&r) != TERM_T_REF || term_get_ref(&r, &ref) < 0)
        goto other;
    for (rexc_call_t *c = rc->calls; c; c = c->next) {
        if (term_ref_eq(&c->tag, &ref)) {
            const char *res;
            size_t len;
            if (term_get_any(&r, &res, &len) < 0)
                return;
            call_finish(c, 0, res, len);
            return;
        }
    }
    /* A late answer to a call that timed out is dropped, as gen:call does,
     * unless the owner wants what is not an answer. */
other:
    if (rc->other)
        rc->other(rc, m, rc->other_data);
}

const term_pid_t *rexc_pid(const rexc_t *rc)
{
    return node_mbox_pid(rc->mb);
}

void rexc_on_other(rexc_t *rc, rexc_other_cb cb, void *data)
{
    rc->other = cb;
    rc->other_data = data;
}

int rexc_new(node_t *n, rexc_t **out)
{
    rexc_t *rc = mem_calloc(1, sizeof *rc);
    int rc_;
    if (!rc)
        return -ENOMEM;
    rc->node = n;
    rc_ = node_mbox_new(n, NULL, rexc_msg_cb, rc, &rc->mb);
    if (rc_ < 0) {
        mem_free(rc);
        return rc_;
    }
    *out = rc;
    return 0;
}

void rexc_free(rexc_t *rc)
{
    if (!rc)
        return;
    while (rc->calls)
        call_finish(rc->calls, -ECANCELED, NULL, 0);
    node_mbox_close(rc->mb, NULL, 0);
    mem_free(rc);
}

size_t rexc_pending(const rexc_t *rc)
{
    return rc->npending;
}

int rexc_call(rexc_t *rc, const char *peer, const char *mod, const char *fun,
              const void *args, size_t args_len, unsigned timeout_ms,
              rexc_cb cb, void *data)
{
    term_buf_t b;
    rexc_call_t *c;
    int rv;

    if (!peer || !mod || !fun || !cb)
        return -EINVAL;
    c = mem_calloc(1, sizeof *c);
    if (!c)
        return -ENOMEM;
    c->peer = mem_strdup(peer);
    if (!c->peer) {
        rv = -ENOMEM;
        goto fail_call;
    }
    c->rc = rc;
    c->cb = cb;
    c->data = data;
    node_make_ref(rc->node, &c->tag);

    term_buf_init(&b);
    /* rpc.erl: rex handles {call, M, F, A, GroupLeader}; `user` is a group
     * leader it accepts by name (set_group_leader(user)). */
    rv = term_format(&b, "{'$gen_call',{~p,~r},{call,~a,~a,~t,user}}",
                     node_mbox_pid(rc->mb), &c->tag, mod, fun, args, args_len);
    if (rv < 0 || b.err < 0) {
        rv = rv < 0 ? rv : b.err;
        goto fail_buf;
    }
    /* Monitor first, so a rex that is missing or dies is seen, as gen:call. */
    rv = node_monitor(rc->node, rc->mb, NULL, "rex", peer, &c->mon);
    if (rv < 0)
        goto fail_buf;
    c->monitored = 1;
    rv = node_reg_send(rc->node, rc->mb, "rex", peer, b.data, b.len);
    if (rv < 0)
        goto fail_mon;
    term_buf_release(&b);

    uv_timer_init(node_loop(rc->node), &c->timer);
    c->timer.data = c;
    uv_timer_start(&c->timer, call_timeout_cb, timeout_ms, 0);
    c->next = rc->calls;
    rc->calls = c;
    rc->npending++;
    return 0;

fail_mon:
    (void)node_demonitor(rc->node, &c->mon);
fail_buf:
    term_buf_release(&b);
    mem_free(c->peer);
fail_call:
    mem_free(c);
    return rv;
}
