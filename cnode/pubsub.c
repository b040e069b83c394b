/* pubsub.c: the PG2 adapter's listener workers and broadcast, speaking
 * exactly what phoenix_pubsub 2.x's Phoenix.PubSub.PG2 and PG2Worker do. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "cnode/log.h"
#include "cnode/pubsub.h"
#include "term/mem.h"

#define PUBSUB_DISPATCHER "Elixir.Phoenix.PubSub"

typedef struct pubsub_sub {
    char *topic;
    size_t topic_len;
    pubsub_cb cb;
    void *data;
    struct pubsub_sub *next;
} pubsub_sub_t;

typedef struct pubsub_worker {
    pubsub_t *ps;
    char *group;
    node_mbox_t *mb;
} pubsub_worker_t;

struct pubsub {
    node_t *node;
    pg_t *pg;
    pubsub_worker_t *workers;
    unsigned nworkers;
    pubsub_sub_t *subs;
    int shut;
};

int pubsub_decode(const void *msg, size_t len, const char **topic, size_t *tlen,
                  const char **inner, size_t *ilen)
{
    term_reader_t r;
    uint32_t arity;
    char tag[TERM_ATOM_MAX];
    const char *disp;
    size_t dlen;

    term_reader_init(&r, msg, len);
    if (term_get_tuple(&r, &arity) < 0 || arity != 4 || term_get_atom(&r, tag) < 0 ||
        strcmp(tag, "forward_to_local") != 0 || term_get_binary(&r, topic, tlen) < 0 ||
        term_get_any(&r, inner, ilen) < 0 || term_get_any(&r, &disp, &dlen) < 0 ||
        r.pos != r.len)
        return -EPROTO;
    return 0;
}

/* PG2Worker.handle_info: {forward_to_local, Topic, Msg, Dispatcher} is
 * dispatched on Topic; everything else is ignored. */
static void worker_cb(node_mbox_t *mb, const node_msg_t *m, void *data)
{
    pubsub_worker_t *w = data;
    const char *topic, *msg;
    size_t tlen, mlen;
    (void)mb;

    if (w->ps->shut)
        return;
    if (pubsub_decode(m->msg, m->msg_len, &topic, &tlen, &msg, &mlen) < 0) {
        log_debug("%s: pubsub: %s: ignored a message that is not forward_to_local",
                  m->peer, w->group);
        return;
    }
    for (pubsub_sub_t *s = w->ps->subs; s; s = s->next) {
        if (s->topic_len == tlen && memcmp(s->topic, topic, tlen) == 0) {
            s->cb(w->ps, m->peer, msg, mlen, s->data);
            return;
        }
    }
}

static void shutdown_cb(node_t *n, void *data)
{
    pubsub_t *ps = data;
    (void)n;
    if (ps->shut)
        return;
    ps->shut = 1;
    for (unsigned i = 0; i < ps->nworkers; i++) {
        if (ps->workers[i].mb)
            node_mbox_close(ps->workers[i].mb, NULL, 0);
        ps->workers[i].mb = NULL;
    }
}

int pubsub_new(node_t *n, pg_t *pg, const char *server, unsigned pool_size,
               pubsub_t **out)
{
    pubsub_t *ps;
    char name[TERM_ATOM_MAX];
    const char *prefix = strncmp(server, "Elixir.", 7) == 0 ? "" : "Elixir.";
    int rc = -ENOMEM;

    if (pool_size < 1 || pool_size > 1024)
        return -EINVAL;
    if (!(ps = mem_calloc(1, sizeof *ps)))
        return -ENOMEM;
    ps->node = n;
    ps->pg = pg;
    if (!(ps->workers = mem_calloc(pool_size, sizeof *ps->workers)))
        goto fail;
    for (unsigned i = 0; i < pool_size; i++) {
        pubsub_worker_t *w = &ps->workers[i];
        /* phoenix_pubsub 2.x: the first group is the adapter name itself
         * (2.0 compatibility), then AdapterName_2 .. AdapterName_N. */
        int len = i == 0 ? snprintf(name, sizeof name, "%s%s.Adapter", prefix, server)
                         : snprintf(name, sizeof name, "%s%s.Adapter_%u", prefix,
                                    server, i + 1);
        if (len < 0 || (size_t)len >= sizeof name || len > 255) {
            rc = -EINVAL;
            goto fail;
        }
        w->ps = ps;
        if (!(w->group = mem_strdup(name))) {
            rc = -ENOMEM;
            goto fail;
        }
        ps->nworkers = i + 1;
        if ((rc = node_mbox_new(n, name, worker_cb, w, &w->mb)) < 0)
            goto fail;
        /* Listener traffic is {forward_to_local, ...} broadcasts that no
         * sender waits on: let the node read it in batches. */
        node_mbox_set_bulk(w->mb, 1);
        if ((rc = pg_join(pg, name, node_mbox_pid(w->mb))) < 0)
            goto fail;
    }
    if ((rc = node_on_shutdown(n, shutdown_cb, ps)) < 0)
        goto fail;
    *out = ps;
    return 0;

fail:
    shutdown_cb(n, ps);
    pubsub_free(ps);
    return rc;
}

void pubsub_free(pubsub_t *ps)
{
    if (!ps)
        return;
    for (unsigned i = 0; i < ps->nworkers; i++) {
        if (ps->workers[i].mb)
            node_mbox_close(ps->workers[i].mb, NULL, 0);
        mem_free(ps->workers[i].group);
    }
    mem_free(ps->workers);
    while (ps->subs) {
        pubsub_sub_t *s = ps->subs;
        ps->subs = s->next;
        mem_free(s->topic);
        mem_free(s);
    }
    mem_free(ps);
}

int pubsub_subscribe(pubsub_t *ps, const char *topic, pubsub_cb cb, void *data)
{
    pubsub_sub_t *s;
    size_t tlen = strlen(topic);

    for (s = ps->subs; s; s = s->next) {
        if (s->topic_len == tlen && memcmp(s->topic, topic, tlen) == 0) {
            s->cb = cb;
            s->data = data;
            return 0;
        }
    }
    if (!(s = mem_calloc(1, sizeof *s)))
        return -ENOMEM;
    if (!(s->topic = mem_strdup(topic))) {
        mem_free(s);
        return -ENOMEM;
    }
    s->topic_len = tlen;
    s->cb = cb;
    s->data = data;
    s->next = ps->subs;
    ps->subs = s;
    return 0;
}

const char *pubsub_group(const pubsub_t *ps, unsigned i)
{
    return i < ps->nworkers ? ps->workers[i].group : NULL;
}

/* Sends the forward_to_local tuple to the first group's members on
 * on_node (NULL: every other node). Always the first group: Phoenix picks
 * one by phash2(self()), so one sender always uses one group, and a
 * single group keeps etsd's messages to a node in order. */
static int send_members(pubsub_t *ps, const char *on_node, const char *topic,
                        const void *msg, size_t len, size_t *sent)
{
    const term_pid_t *stack[64], **pids = stack;
    size_t n, ok = 0;
    term_buf_t b;
    int rc = 0;

    if (sent)
        *sent = 0;
    if (ps->shut || !ps->nworkers)
        return -ESHUTDOWN;
    n = pg_members(ps->pg, ps->workers[0].group, on_node, stack, 64);
    if (n > 64) {
        if (!(pids = mem_alloc(n * sizeof *pids)))
            return -ENOMEM;
        n = pg_members(ps->pg, ps->workers[0].group, on_node, pids, n);
    }
    if (n == 0)
        return on_node ? -ENOENT : 0;
    term_buf_init(&b);
    term_buf_reserve(&b, len + strlen(topic) + 64);
    term_format(&b, "{forward_to_local,~s,~t,~a}", topic, msg, len, PUBSUB_DISPATCHER);
    if (b.err < 0) {
        rc = b.err;
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        if (node_is_local_pid(ps->node, pids[i]))
            continue;
        int r = node_send(ps->node, ps->workers[0].mb, pids[i], b.data, b.len);
        if (r < 0) {
            log_warn("%s: pubsub: send on %s failed: %s", pids[i]->node, topic,
                     uv_strerror(r));
            rc = r;
        } else {
            ok++;
        }
    }
out:
    term_buf_release(&b);
    if (pids != stack)
        mem_free(pids);
    if (sent)
        *sent = ok;
    return ok ? 0 : rc;
}

int pubsub_broadcast(pubsub_t *ps, const char *topic, const void *msg,
                     size_t len, size_t *sent)
{
    return send_members(ps, NULL, topic, msg, len, sent);
}

int pubsub_send_node(pubsub_t *ps, const char *node, const char *topic,
                     const void *msg, size_t len)
{
    return send_members(ps, node, topic, msg, len, NULL);
}
