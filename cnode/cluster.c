/* cluster.c: cluster membership for a hidden node. BEAM nodes never tell a
 * hidden node about each other, so etsd asks them (nodes() over rex). */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "cnode/cluster.h"
#include "cnode/log.h"
#include "cnode/rexc.h"
#include "term/mem.h"

typedef struct cl_node {
    cluster_t *c;
    char *name;
    unsigned backoff_ms;
    int connecting;
    int failures;
    uv_timer_t timer;
    struct cl_node *next;
} cl_node_t;

struct cluster {
    node_t *node;
    rexc_t *rexc;
    cl_node_t *nodes;
    uv_timer_t poll;
    unsigned poll_ms;
    uv_getaddrinfo_t *dns_req;
    int sub_id;
    int shut;
};

static void attempt(cl_node_t *e);

static void retry_cb(uv_timer_t *t)
{
    attempt(t->data);
}

static void schedule(cl_node_t *e, unsigned ms)
{
    if (!e->c->shut)
        uv_timer_start(&e->timer, retry_cb, ms, 0);
}

static void connect_cb(node_t *n, const char *peer, int status, void *data)
{
    cl_node_t *e = data;
    (void)n;
    e->connecting = 0;
    if (e->c->shut)
        return;
    if (status == 0) {
        e->backoff_ms = CLUSTER_BACKOFF_MIN_MS;
        e->failures = 0;
        return;
    }
    /* Log the first failure and then every tenth, not every retry. */
    if (e->failures++ % 10 == 0) {
        const char *at = strchr(peer, '@');
        if (status == -ENOENT && at)
            log_info("%s: cluster: connect failed: no node named %.*s is registered "
                     "with EPMD on %s; retrying", peer, (int)(at - peer), peer, at + 1);
        else
            log_info("%s: cluster: connect failed: %s; retrying", peer, uv_strerror(status));
    }
    schedule(e, e->backoff_ms);
    e->backoff_ms = e->backoff_ms * 2 > CLUSTER_BACKOFF_MAX_MS ? CLUSTER_BACKOFF_MAX_MS
                                                              : e->backoff_ms * 2;
}

static void attempt(cl_node_t *e)
{
    int rc;
    if (e->c->shut || e->connecting || node_is_connected(e->c->node, e->name))
        return;
    e->connecting = 1;
    rc = node_connect(e->c->node, e->name, connect_cb, e);
    if (rc < 0) {
        e->connecting = 0;
        log_warn("%s: cluster: %s", e->name, uv_strerror(rc));
        schedule(e, CLUSTER_BACKOFF_MAX_MS);
    }
}

static cl_node_t *find(cluster_t *c, const char *name)
{
    for (cl_node_t *e = c->nodes; e; e = e->next)
        if (strcmp(e->name, name) == 0)
            return e;
    return NULL;
}

int cluster_add(cluster_t *c, const char *name)
{
    cl_node_t *e;
    if (!strchr(name, '@') || strlen(name) >= TERM_ATOM_MAX)
        return -EINVAL;
    if (strcmp(name, node_name(c->node)) == 0 || find(c, name))
        return 0;
    if (!(e = mem_calloc(1, sizeof *e)) || !(e->name = mem_strdup(name))) {
        mem_free(e);
        return -ENOMEM;
    }
    e->c = c;
    e->backoff_ms = CLUSTER_BACKOFF_MIN_MS;
    uv_timer_init(node_loop(c->node), &e->timer);
    e->timer.data = e;
    e->next = c->nodes;
    c->nodes = e;
    log_debug("%s: cluster: added", name);
    schedule(e, 0);
    return 0;
}

/* nodes() of a peer: connect to every node it lists that we lack. */
static void nodes_cb(rexc_t *rc, const char *peer, int status, const char *res,
                     size_t len, void *data)
{
    cluster_t *c = data;
    term_reader_t r;
    uint32_t n;
    char atom[TERM_ATOM_MAX];
    (void)rc;

    if (status < 0 || c->shut)
        return;
    term_reader_init(&r, res, len);
    if (term_peek(&r) == TERM_T_NIL || term_get_list(&r, &n) < 0)
        return;
    for (uint32_t i = 0; i < n; i++) {
        if (term_get_atom(&r, atom) < 0)
            return;
        if (!find(c, atom) && strcmp(atom, node_name(c->node)) != 0) {
            log_info("%s: cluster: learned %s from its nodes()", peer, atom);
            (void)cluster_add(c, atom);
        }
    }
}

static void dns_cb(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    cluster_t *c = req->data;
    const node_config_t *cfg;
    char ip[INET6_ADDRSTRLEN], name[TERM_ATOM_MAX];

    mem_free(req);
    if (status == UV_ECANCELED)
        return;
    c->dns_req = NULL;
    cfg = node_config(c->node);
    if (status < 0) {
        log_warn("cluster: dns %s: %s", cfg->dns, uv_strerror(status));
        return;
    }
    for (struct addrinfo *a = res; a && !c->shut; a = a->ai_next) {
        const void *addr = a->ai_family == AF_INET
                               ? (const void *)&((struct sockaddr_in *)a->ai_addr)->sin_addr
                               : (const void *)&((struct sockaddr_in6 *)a->ai_addr)->sin6_addr;
        if ((a->ai_family != AF_INET && a->ai_family != AF_INET6) ||
            !inet_ntop(a->ai_family, addr, ip, sizeof ip))
            continue;
        snprintf(name, sizeof name, "%s@%s", cfg->basename, ip);
        if (!find(c, name) && strcmp(name, node_name(c->node)) != 0) {
            log_info("cluster: dns %s: %s", cfg->dns, name);
            (void)cluster_add(c, name);
        }
    }
    uv_freeaddrinfo(res);
}

static void dns_lookup(cluster_t *c)
{
    const node_config_t *cfg = node_config(c->node);
    struct addrinfo hints = {0};
    uv_getaddrinfo_t *req;
    int rc;

    if (!cfg->dns || !cfg->basename || c->dns_req)
        return;
    if (!(req = mem_calloc(1, sizeof *req)))
        return;
    req->data = c;
    /* The carrier's records: A for inet_*, AAAA for inet6_* (node names
     * B@IP must be addresses of that family, as erl's would be). */
    hints.ai_family = cfg->family == AF_INET6 ? AF_INET6 : AF_INET;
    hints.ai_socktype = SOCK_STREAM;
    rc = uv_getaddrinfo(node_loop(c->node), req, dns_cb, cfg->dns, NULL, &hints);
    if (rc < 0) {
        mem_free(req);
        log_warn("cluster: dns %s: %s", cfg->dns, uv_strerror(rc));
        return;
    }
    c->dns_req = req;
}

static void poll_cb(uv_timer_t *t)
{
    cluster_t *c = t->data;
    const char *names[256];
    size_t n = node_connected(c->node, names, 256);

    if (n > 256)
        n = 256;
    for (size_t i = 0; i < n; i++) {
        /* A BEAM node answers with its visible nodes; a node without rex
         * (another C node) times out quietly. */
        int rc = rexc_call(c->rexc, names[i], "erlang", "nodes", "j", 1,
                           c->poll_ms, nodes_cb, c);
        if (rc < 0)
            log_warn("%s: cluster: nodes(): %s", names[i], uv_strerror(rc));
    }
    dns_lookup(c);
}

static void event_cb(node_t *n, node_event_t ev, const char *peer,
                     const char *reason, void *data)
{
    cluster_t *c = data;
    cl_node_t *e;
    (void)n;
    (void)reason;
    if (c->shut)
        return;
    e = find(c, peer);
    if (ev == NODE_UP) {
        /* A node that connected to us is one to keep. */
        if (!e)
            (void)cluster_add(c, peer);
        /* Ask it for the rest of the cluster at once. */
        if (rexc_call(c->rexc, peer, "erlang", "nodes", "j", 1, c->poll_ms,
                      nodes_cb, c) < 0)
            log_debug("%s: cluster: nodes() not asked", peer);
        return;
    }
    if (e) {
        e->backoff_ms = CLUSTER_BACKOFF_MIN_MS;
        schedule(e, CLUSTER_BACKOFF_MIN_MS);
    }
}

static void shutdown_cb(node_t *n, void *data)
{
    cluster_t *c = data;
    if (c->shut)
        return;
    c->shut = 1;
    node_unsubscribe(n, c->sub_id);
    uv_timer_stop(&c->poll);
    uv_close((uv_handle_t *)&c->poll, NULL);
    for (cl_node_t *e = c->nodes; e; e = e->next) {
        uv_timer_stop(&e->timer);
        uv_close((uv_handle_t *)&e->timer, NULL);
    }
    if (c->dns_req)
        uv_cancel((uv_req_t *)c->dns_req);
    c->dns_req = NULL;
    rexc_free(c->rexc);
    c->rexc = NULL;
}

int cluster_new(node_t *n, unsigned poll_ms, cluster_t **out)
{
    const node_config_t *cfg = node_config(n);
    cluster_t *c = mem_calloc(1, sizeof *c);
    int rc;

    if (!c)
        return -ENOMEM;
    c->node = n;
    c->poll_ms = poll_ms ? poll_ms : CLUSTER_POLL_MS;
    if ((rc = rexc_new(n, &c->rexc)) < 0)
        goto fail;
    if ((rc = node_subscribe(n, event_cb, c, &c->sub_id)) < 0)
        goto fail_rexc;
    if ((rc = node_on_shutdown(n, shutdown_cb, c)) < 0)
        goto fail_sub;
    uv_timer_init(node_loop(n), &c->poll);
    c->poll.data = c;
    uv_timer_start(&c->poll, poll_cb, c->poll_ms, c->poll_ms);
    for (size_t i = 0; i < cfg->njoin; i++)
        if ((rc = cluster_add(c, cfg->join[i])) < 0)
            log_warn("cluster: --join %s: %s", cfg->join[i], uv_strerror(rc));
    dns_lookup(c);
    *out = c;
    return 0;

fail_sub:
    node_unsubscribe(n, c->sub_id);
fail_rexc:
    rexc_free(c->rexc);
fail:
    mem_free(c);
    return rc;
}

void cluster_free(cluster_t *c)
{
    if (!c)
        return;
    rexc_free(c->rexc);
    while (c->nodes) {
        cl_node_t *e = c->nodes;
        c->nodes = e->next;
        mem_free(e->name);
        mem_free(e);
    }
    mem_free(c);
}

int cluster_nodes_cb(void *arg, term_buf_t *out)
{
    cluster_t *c = arg;
    const char *names[1024];
    size_t n = node_connected(c->node, names, 1024);

    if (n > 1024)
        n = 1024;
    if (n)
        term_put_list(out, (uint32_t)n);
    for (size_t i = 0; i < n; i++)
        term_put_atom(out, names[i]);
    term_put_nil(out);
    return out->err;
}

int cluster_info_cb(void *arg, term_buf_t *out, uint32_t *count)
{
    cluster_t *c = arg;
    size_t n = 0;

    for (cl_node_t *e = c->nodes; e; e = e->next)
        n++;
    /* peers => [{Node, up | connecting | down}] for every node etsd keeps. */
    term_put_atom(out, "peers");
    if (n)
        term_put_list(out, (uint32_t)n);
    for (cl_node_t *e = c->nodes; e; e = e->next) {
        term_put_tuple(out, 2);
        term_put_atom(out, e->name);
        term_put_atom(out, node_is_connected(c->node, e->name) ? "up"
                           : e->connecting                     ? "connecting"
                                                               : "down");
    }
    term_put_nil(out);
    (*count)++;
    return out->err;
}
