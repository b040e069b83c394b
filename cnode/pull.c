/* pull.c: a table read in chunks over rex (erl_eval of PULL_SOURCE), and
 * ets:tab2list/1 for a node that refuses it. The chunks and the answer
 * come from the same rex worker to the same pid (rexc's), so every chunk
 * is in before the answer that counts them. */
#include <errno.h>
#include <string.h>

#include "cnode/log.h"
#include "cnode/pull.h"
#include "cnode/rexc.h"
#include "term/mem.h"

/* A refusal is quoted in the log up to this many bytes. */
#define PULL_WHY_MAX 300

typedef struct pull_req {
    pull_t *p;
    char *peer;
    char *table;
    term_ref_t ref;        /* tags this read's chunks */
    pull_ops_t ops;
    void *data;
    unsigned timeout_ms;
    uint64_t chunks;       /* delivered so far */
    int plain;             /* asked for ets:tab2list/1 */
    char *why;             /* why the chunked read was refused (for the log) */
    struct pull_req *next;
} pull_req_t;

struct pull {
    node_t *node;
    rexc_t *rc;
    term_buf_t expr;       /* PULL_FORMS, encoded */
    pull_req_t *reqs;
};

static void req_free(pull_req_t *q)
{
    mem_free(q->peer);
    mem_free(q->table);
    mem_free(q->why);
    mem_free(q);
}

/* Unlinks q, reports status, frees q. */
static void finish(pull_req_t *q, int status)
{
    for (pull_req_t **pp = &q->p->reqs; *pp; pp = &(*pp)->next) {
        if (*pp == q) {
            *pp = q->next;
            break;
        }
    }
    q->ops.done(q->peer, status, q->data);
    req_free(q);
}

/* ---- ets:tab2list/1 ---------------------------------------------------- */

static void plain_cb(rexc_t *rc, const char *peer, int status, const char *res, size_t len,
                     void *data)
{
    pull_req_t *q = data;
    term_reader_t t;
    (void)rc;
    (void)peer;

    if (status < 0) {
        finish(q, status);
        return;
    }
    term_reader_init(&t, res, len);
    if (term_peek(&t) != TERM_T_LIST && term_peek(&t) != TERM_T_NIL) {
        /* {badrpc, _}: no such table there (maybe not yet). */
        finish(q, -ENOENT);
        return;
    }
    if (q->why)
        log_info("%s: pull: %s read with ets:tab2list/1: the chunked read was refused (%s)",
                 q->peer, q->table, q->why);
    q->ops.chunk(q->peer, res, len, q->data);
    finish(q, 0);
}

static void read_plain(pull_req_t *q)
{
    term_buf_t args;
    int rc;

    q->plain = 1;
    term_buf_init(&args);
    term_format(&args, "[~a]", q->table);
    rc = args.err ? args.err
                  : rexc_call(q->p->rc, q->peer, "ets", "tab2list", args.data, args.len,
                              q->timeout_ms, plain_cb, q);
    term_buf_release(&args);
    if (rc < 0)
        finish(q, rc);
}

/* ---- The chunked read -------------------------------------------------- */

/* Keeps the start of the printed refusal, for the log line. */
static void note_refusal(pull_req_t *q, const char *res, size_t len)
{
    term_buf_t b;
    term_buf_init(&b);
    if (term_print(res, len, &b) == 0 && b.data) {
        if (b.len > PULL_WHY_MAX)
            strcpy(b.data + PULL_WHY_MAX - 3, "...");
        q->why = mem_strdup(b.data);
    }
    term_buf_release(&b);
}

static void eval_cb(rexc_t *rc, const char *peer, int status, const char *res, size_t len,
                    void *data)
{
    pull_req_t *q = data;
    term_reader_t t;
    int64_t n;
    (void)rc;
    (void)peer;

    if (status < 0) {
        finish(q, status);
        return;
    }
    term_reader_init(&t, res, len);
    if (term_peek(&t) == TERM_T_INTEGER && term_get_long(&t, &n) == 0 && t.pos == t.len) {
        if (n >= 0 && (uint64_t)n == q->chunks) {
            finish(q, 0);
            return;
        }
        /* Cannot happen with one sender and one receiver; if it does, the
         * chunks that came were real objects, and tab2list brings all. */
        log_warn("%s: pull: %lld chunks announced, %llu arrived: reading %s again "
                 "with ets:tab2list/1", q->peer, (long long)n,
                 (unsigned long long)q->chunks, q->table);
    } else {
        note_refusal(q, res, len);
        log_debug("%s: pull: chunked read refused (%s)", q->peer, q->why ? q->why : "?");
    }
    read_plain(q);
}

/* A chunk, {Ref, Objects}, or the size first, {Ref, Size}. */
static void other_cb(rexc_t *rc, const node_msg_t *m, void *data)
{
    pull_t *p = data;
    term_reader_t t;
    uint32_t arity;
    term_ref_t ref;
    const char *list;
    size_t len;
    (void)rc;

    if (m->kind != NODE_MSG_SEND && m->kind != NODE_MSG_SEND_SENDER)
        return;
    term_reader_init(&t, m->msg, m->msg_len);
    if (term_get_tuple(&t, &arity) < 0 || arity != 2 || term_get_ref(&t, &ref) < 0)
        return;
    int is_size = term_peek(&t) == TERM_T_INTEGER;
    if ((!is_size && term_peek(&t) != TERM_T_LIST && term_peek(&t) != TERM_T_NIL) ||
        term_get_any(&t, &list, &len) < 0 || t.pos != t.len)
        return;
    for (pull_req_t *q = p->reqs; q; q = q->next) {
        /* Only the node being read may add to its read. */
        if (q->plain || !term_ref_eq(&q->ref, &ref) || strcmp(q->peer, m->peer) != 0)
            continue;
        if (is_size) {
            term_reader_t s;
            int64_t n;
            term_reader_init(&s, list, len);
            if (q->ops.size && q->chunks == 0 && term_get_long(&s, &n) == 0 && n >= 0)
                q->ops.size(q->peer, (uint64_t)n, q->data);
            return;
        }
        q->chunks++;
        q->ops.chunk(q->peer, list, len, q->data);
        return;
    }
    log_debug("%s: pull: a chunk for no read under way: dropped", m->peer);
}

int pull_table(pull_t *p, const char *peer, const char *table, unsigned timeout_ms,
               const pull_ops_t *ops, void *data)
{
    pull_req_t *q;
    term_buf_t args;
    int rc;

    if (!p || !peer || !table || !ops || !ops->chunk || !ops->done)
        return -EINVAL;
    if (!(q = mem_calloc(1, sizeof *q)))
        return -ENOMEM;
    if (!(q->peer = mem_strdup(peer)) || !(q->table = mem_strdup(table))) {
        req_free(q);
        return -ENOMEM;
    }
    q->p = p;
    q->ops = *ops;
    q->data = data;
    q->timeout_ms = timeout_ms;
    node_make_ref(p->node, &q->ref);

    /* erl_eval:expr(Forms, Bindings, none, none, value): the bindings are
     * an orddict (sorted by name); `value` answers the value alone. */
    term_buf_init(&args);
    term_format(&args, "[~t,[{'Chunk',~u},{'Pid',~p},{'Ref',~r},{'Tab',~a}],none,none,value]",
                p->expr.data, p->expr.len, (uint64_t)PULL_CHUNK_OBJECTS, rexc_pid(p->rc),
                &q->ref, table);
    rc = args.err ? args.err
                  : rexc_call(p->rc, peer, "erl_eval", "expr", args.data, args.len,
                              timeout_ms, eval_cb, q);
    term_buf_release(&args);
    if (rc < 0) {
        req_free(q);
        return rc;
    }
    q->next = p->reqs;
    p->reqs = q;
    return 0;
}

int pull_new(node_t *n, pull_t **out)
{
    pull_t *p = mem_calloc(1, sizeof *p);
    size_t used;
    int rc;

    if (!p)
        return -ENOMEM;
    p->node = n;
    term_buf_init(&p->expr);
    if ((rc = term_parse(PULL_FORMS, strlen(PULL_FORMS), &used, &p->expr)) < 0 ||
        (rc = p->expr.err) < 0)
        goto fail;
    if ((rc = rexc_new(n, &p->rc)) < 0)
        goto fail;
    rexc_on_other(p->rc, other_cb, p);
    *out = p;
    return 0;

fail:
    term_buf_release(&p->expr);
    mem_free(p);
    return rc;
}

void pull_free(pull_t *p)
{
    if (!p)
        return;
    /* Cancels every call: each read finishes with -ECANCELED. */
    rexc_free(p->rc);
    while (p->reqs)
        finish(p->reqs, -ECANCELED);
    term_buf_release(&p->expr);
    mem_free(p);
}
