/* cluster.c: cluster membership for a hidden node. BEAM nodes never tell a
 * hidden node about each other, so etsd asks the visible ones (nodes() over
 * rex); members.c decides what is retried and what is forgotten. */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "cnode/cluster.h"
#include "cnode/log.h"
#include "cnode/members.h"
#include "cnode/rexc.h"
#include "term/mem.h"

struct cluster {
    node_t *node;
    rexc_t *rexc;
    members_t members;
    uv_timer_t tick;    /* the next retry or forget (members_next_due) */
    uv_timer_t poll;
    unsigned poll_ms;
    uv_getaddrinfo_t *dns_req;
    int sub_id;
    int shut;
};

static uint64_t now_ms(cluster_t *c)
{
    return uv_now(node_loop(c->node));
}

/* Why a connect attempt failed, for the one line per state change. */
static const char *failure_text(int status)
{
    switch (status) {
    case -EHOSTUNREACH:
        return "host is unreachable";
    case -ECONNREFUSED:
        return "connection refused (epmd or the node is not listening)";
    case -ECONNRESET:
        return "connection closed during the handshake (a wrong cookie?)";
    case -EACCES:
        return "handshake refused (a wrong cookie?)";
    case -ETIMEDOUT:
        return "timed out";
    default:
        return uv_strerror(status);
    }
}

static void tick_cb(uv_timer_t *t);

/* Sets the tick timer to the next thing the members want done. */
static void rearm(cluster_t *c)
{
    uint64_t due, now;
    if (c->shut)
        return;
    due = members_next_due(&c->members);
    if (due == UINT64_MAX) {
        uv_timer_stop(&c->tick);
        return;
    }
    now = now_ms(c);
    uv_timer_start(&c->tick, tick_cb, due > now ? due - now : 0, 0);
}

static void connect_cb(node_t *n, const char *peer, int status, void *data)
{
    cluster_t *c = data;
    (void)n;
    if (c->shut)
        return;
    if (status == 0) {
        (void)members_up(&c->members, peer, now_ms(c));
    } else if (members_failed(&c->members, peer, status, now_ms(c)) == 1) {
        const char *at = strchr(peer, '@');
        if (status == -ENOENT && at)   /* EPMD answered, and does not know it */
            log_info("%s: cluster: cannot connect: no node named %.*s is registered with "
                     "EPMD on %s; retrying with backoff (logged again only if the reason "
                     "changes)", peer, (int)(at - peer), peer, at + 1);
        else
            log_info("%s: cluster: cannot connect: %s; retrying with backoff (logged again "
                     "only if the reason changes)", peer, failure_text(status));
    }
    rearm(c);
}

static void try_cb(members_node_t *e, void *data)
{
    cluster_t *c = data;
    int rc;
    if (node_is_connected(c->node, e->name)) {
        (void)members_up(&c->members, e->name, now_ms(c));
        return;
    }
    (void)members_connecting(&c->members, e->name);
    log_debug("%s: cluster: connecting", e->name);
    rc = node_connect(c->node, e->name, connect_cb, c);
    if (rc < 0 && members_failed(&c->members, e->name, rc, now_ms(c)) == 1)
        log_warn("%s: cluster: %s", e->name, uv_strerror(rc));
}

static void forget_cb(const members_node_t *e, void *data)
{
    cluster_t *c = data;
    log_info("%s: cluster: forgotten: in no member's nodes() and not connected for %llu s",
             e->name, (unsigned long long)(c->members.forget_after_ms / 1000));
}

static void tick_cb(uv_timer_t *t)
{
    cluster_t *c = t->data;
    members_tick(&c->members, now_ms(c), try_cb, forget_cb, c);
    rearm(c);
}

static int add(cluster_t *c, const char *name, members_origin_t origin)
{
    int rc;
    if (!strchr(name, '@') || strlen(name) >= TERM_ATOM_MAX)
        return -EINVAL;
    if (strcmp(name, node_name(c->node)) == 0)
        return 0;
    rc = members_add(&c->members, name, origin, now_ms(c));
    if (rc == 1)
        rearm(c);
    return rc;
}

int cluster_add(cluster_t *c, const char *name)
{
    int rc = add(c, name, MEMBERS_JOIN);
    return rc < 0 ? rc : 0;
}

/* nodes() of a peer: its visible nodes are members; connect to new ones. */
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
        /* Listed again: the forget clock of a known member starts over. */
        if (add(c, atom, MEMBERS_LEARNED) == 1)
            log_info("%s: cluster: learned %s from its nodes()", peer, atom);
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
        if (add(c, name, MEMBERS_DNS) == 1)
            log_info("cluster: dns %s: %s", cfg->dns, name);
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

/* Asks peer for nodes() if it is a visible node. A hidden peer (hidden
 * BEAM node, remote shell, ei node) is never asked: BEAM asks nobody, and
 * a C node reading its socket would take the call for its own reply. */
static void ask_nodes(cluster_t *c, const char *peer)
{
    int rc;
    if (node_peer_published(c->node, peer) != 1)
        return;
    rc = rexc_call(c->rexc, peer, "erlang", "nodes", "j", 1, c->poll_ms, nodes_cb, c);
    if (rc < 0)
        log_debug("%s: cluster: nodes() not asked: %s", peer, uv_strerror(rc));
}

static void poll_cb(uv_timer_t *t)
{
    cluster_t *c = t->data;
    const char *names[256];
    size_t n = node_connected(c->node, names, 256);

    if (n > 256)
        n = 256;
    for (size_t i = 0; i < n; i++)
        ask_nodes(c, names[i]);
    dns_lookup(c);
    /* Rate-limited log lines (log.h) get their summary within a poll. */
    log_limit_flush(0);
}

static void event_cb(node_t *n, node_event_t ev, const char *peer,
                     const char *reason, void *data)
{
    cluster_t *c = data;
    int rc;
    (void)reason;
    if (c->shut)
        return;
    if (ev == NODE_UP) {
        rc = members_up(&c->members, peer, now_ms(c));
        if (rc == 1)
            log_info("%s: cluster: connected again", peer);
        else if (rc == -ENOENT)
            /* A caller (a script, a shell, a C node): served while it
             * stays, not tried again once it leaves. */
            log_debug("%s: cluster: %s caller, not a member", peer,
                      node_peer_published(n, peer) == 1 ? "visible" : "hidden");
        /* Ask a visible node for the rest of the cluster at once. */
        ask_nodes(c, peer);
    } else if (members_down(&c->members, peer, now_ms(c)) == -ENOENT) {
        log_debug("%s: cluster: caller left; not retried", peer);
    }
    rearm(c);
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
    uv_timer_stop(&c->tick);
    uv_close((uv_handle_t *)&c->tick, NULL);
    if (c->dns_req)
        uv_cancel((uv_req_t *)c->dns_req);
    c->dns_req = NULL;
    rexc_free(c->rexc);
    c->rexc = NULL;
    log_limit_flush(1);
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
    members_init(&c->members, cfg->forget_after_ms);
    if ((rc = rexc_new(n, &c->rexc)) < 0)
        goto fail;
    if ((rc = node_subscribe(n, event_cb, c, &c->sub_id)) < 0)
        goto fail_rexc;
    if ((rc = node_on_shutdown(n, shutdown_cb, c)) < 0)
        goto fail_sub;
    uv_timer_init(node_loop(n), &c->tick);
    c->tick.data = c;
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
    members_release(&c->members);
    mem_free(c);
    return rc;
}

void cluster_free(cluster_t *c)
{
    if (!c)
        return;
    rexc_free(c->rexc);
    members_release(&c->members);
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

    /* peers => [{Node, up | connecting | down}] for every member. */
    term_put_atom(out, "peers");
    if (c->members.count)
        term_put_list(out, (uint32_t)c->members.count);
    for (members_node_t *e = c->members.head; e; e = e->next) {
        term_put_tuple(out, 2);
        term_put_atom(out, e->name);
        term_put_atom(out, node_is_connected(c->node, e->name) ? "up"
                           : e->state == MEMBERS_CONNECTING    ? "connecting"
                                                               : "down");
    }
    term_put_nil(out);
    (*count)++;
    return out->err;
}
