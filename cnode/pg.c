/* pg.c: etsd's pg scope. Mirrors kernel/src/pg.erl's peer protocol
 * (discover, sync, join, leave, monitors between scopes; and OTP 29's
 * data_publisher.erl version 1: discover/3, local_data, update) for one
 * scope, since a hidden node is never discovered by BEAM scopes on its own. */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "cnode/log.h"
#include "cnode/pg.h"
#include "term/mem.h"

typedef struct pg_group {
    char *name;
    term_pid_t *pids;
    size_t n, cap;
} pg_group_t;

typedef struct pg_groups {
    pg_group_t *g;
    size_t n, cap;
} pg_groups_t;

typedef struct pg_peer {
    term_pid_t pid;        /* the remote scope; pid.node is its node */
    term_ref_t mon;
    int monitored;
    int synced_to;         /* it has had our sync, so it may get join/leave */
    unsigned version;      /* 1 once it has sent a version 1 shape */
    pg_groups_t groups;
    struct pg_peer *next;
} pg_peer_t;

/* A connected node whose scope we do not know: it came up before its app
 * started the scope, or its scope went DOWN while the node stayed up. We
 * send it {discover, Self} until a scope answers: being hidden, etsd gets
 * no discover from a scope's init (it goes to nodes() only). */
typedef struct pg_redisc {
    char *node;
    unsigned attempts;
    struct pg_redisc *next;
} pg_redisc_t;

struct pg {
    node_t *node;
    node_mbox_t *mb;
    char *scope;
    pg_groups_t local;
    pg_peer_t *peers;
    pg_redisc_t *redisc;
    pg_redisc_t *seen;     /* nodes whose scope synced since they connected */
    pg_redisc_t *v1;       /* nodes whose scope spoke version 1 since then */
    uv_timer_t timer;
    int timer_init;
    int sub_id;
    int shut;
    pg_sync_cb sync_cb;
    void *sync_data;
};

/* ---- Group sets ------------------------------------------------------ */

static pg_group_t *groups_find(pg_groups_t *gs, const char *name)
{
    for (size_t i = 0; i < gs->n; i++)
        if (strcmp(gs->g[i].name, name) == 0)
            return &gs->g[i];
    return NULL;
}

static pg_group_t *groups_get(pg_groups_t *gs, const char *name)
{
    pg_group_t *g = groups_find(gs, name);
    if (g)
        return g;
    if (gs->n == gs->cap) {
        size_t cap = gs->cap ? gs->cap * 2 : 4;
        pg_group_t *ng = mem_realloc(gs->g, cap * sizeof *ng);
        if (!ng)
            return NULL;
        gs->g = ng;
        gs->cap = cap;
    }
    g = &gs->g[gs->n];
    memset(g, 0, sizeof *g);
    g->name = mem_strdup(name);
    if (!g->name)
        return NULL;
    gs->n++;
    return g;
}

static int group_add(pg_group_t *g, const term_pid_t *pid)
{
    if (g->n == g->cap) {
        size_t cap = g->cap ? g->cap * 2 : 4;
        term_pid_t *np = mem_realloc(g->pids, cap * sizeof *np);
        if (!np)
            return -ENOMEM;
        g->pids = np;
        g->cap = cap;
    }
    g->pids[g->n++] = *pid;
    return 0;
}

/* Removes one occurrence of pid, as lists:delete/2 / the -- operator. */
static void group_del(pg_group_t *g, const term_pid_t *pid)
{
    for (size_t i = 0; i < g->n; i++) {
        if (term_pid_eq(&g->pids[i], pid)) {
            memmove(&g->pids[i], &g->pids[i + 1], (g->n - i - 1) * sizeof *g->pids);
            g->n--;
            return;
        }
    }
}

static void groups_release(pg_groups_t *gs)
{
    for (size_t i = 0; i < gs->n; i++) {
        mem_free(gs->g[i].name);
        mem_free(gs->g[i].pids);
    }
    mem_free(gs->g);
    memset(gs, 0, sizeof *gs);
}

/* ---- Peers ------------------------------------------------------------ */

static pg_peer_t *peer_find(pg_t *pg, const term_pid_t *pid)
{
    for (pg_peer_t *p = pg->peers; p; p = p->next)
        if (term_pid_eq(&p->pid, pid))
            return p;
    return NULL;
}

static void list_drop(pg_redisc_t **list, const char *node)
{
    for (pg_redisc_t **r = list; *r; r = &(*r)->next) {
        if (strcmp((*r)->node, node) == 0) {
            pg_redisc_t *dead = *r;
            *r = dead->next;
            mem_free(dead->node);
            mem_free(dead);
            return;
        }
    }
}

static void redisc_drop(pg_t *pg, const char *node)
{
    list_drop(&pg->redisc, node);
}

static int list_has(const pg_redisc_t *list, const char *node)
{
    for (; list; list = list->next)
        if (strcmp(list->node, node) == 0)
            return 1;
    return 0;
}

/* The version to speak to whatever scope runs on node: 1 once one of its
 * scopes has shown it (a restarted scope runs the same release). */
static unsigned node_version(pg_t *pg, const char *node)
{
    return list_has(pg->v1, node) ? 1 : 0;
}

/* A peer showed a version 1 shape: speak version 1 to it and to the scope
 * that may replace it on the same node. */
static void peer_speaks_v1(pg_t *pg, pg_peer_t *peer)
{
    pg_redisc_t *v;

    peer->version = 1;
    if (list_has(pg->v1, peer->pid.node))
        return;
    v = mem_calloc(1, sizeof *v);
    if (v && (v->node = mem_strdup(peer->pid.node))) {
        v->next = pg->v1;
        pg->v1 = v;
        log_debug("%s: pg: scope speaks version 1", peer->pid.node);
    } else {
        mem_free(v);
    }
}

/* A scope we did not know: monitor it (pg.erl does, on discover and on
 * sync from an unknown peer). */
static pg_peer_t *peer_add(pg_t *pg, const term_pid_t *pid)
{
    pg_peer_t *p = mem_calloc(1, sizeof *p);
    int rc;
    if (!p)
        return NULL;
    p->pid = *pid;
    p->version = node_version(pg, pid->node);
    rc = node_monitor(pg->node, pg->mb, pid, NULL, NULL, &p->mon);
    if (rc < 0)
        log_warn("%s: pg: monitor of scope failed: %s", pid->node, uv_strerror(rc));
    else
        p->monitored = 1;
    p->next = pg->peers;
    pg->peers = p;
    redisc_drop(pg, pid->node);
    log_info("%s: pg: scope %s discovered", pid->node, pg->scope);
    return p;
}

static void peer_remove(pg_t *pg, pg_peer_t *peer, int demonitor)
{
    for (pg_peer_t **p = &pg->peers; *p; p = &(*p)->next) {
        if (*p == peer) {
            *p = peer->next;
            break;
        }
    }
    if (demonitor && peer->monitored)
        (void)node_demonitor(pg->node, &peer->mon);
    groups_release(&peer->groups);
    mem_free(peer);
}

/* ---- Messages out ------------------------------------------------------ */

void pg_put_discover(term_buf_t *b, const term_pid_t *self, unsigned version)
{
    /* pg.erl (OTP 23-28): {discover, self()}; data_publisher.erl init/1
     * and handle_info: {discover, self(), Version}. */
    term_put_tuple(b, version ? 3 : 2);
    term_put_atom(b, "discover");
    term_put_pid(b, self);
    if (version)
        term_put_long(b, PG_VERSION);
}

static void put_pid_list(term_buf_t *b, const term_pid_t *pids, size_t n)
{
    if (n) {
        term_put_list(b, (uint32_t)n);
        for (size_t i = 0; i < n; i++)
            term_put_pid(b, &pids[i]);
    }
    term_put_nil(b);
}

/* The index of the group after `prev` (NULL: the first) in atom order,
 * skipping empty ones; n if none. Atoms order by their text, and strcmp
 * on UTF-8 orders by code point. */
static size_t next_group(const pg_group_pids_t *gs, size_t n, const char *prev)
{
    size_t best = n;
    for (size_t i = 0; i < n; i++) {
        if (!gs[i].n || (prev && strcmp(gs[i].group, prev) <= 0))
            continue;
        if (best == n || strcmp(gs[i].group, gs[best].group) < 0)
            best = i;
    }
    return best;
}

void pg_put_local(term_buf_t *b, const term_pid_t *self, unsigned version,
                  const pg_group_pids_t *groups, size_t ngroups)
{
    size_t n = 0;
    for (size_t i = 0; i < ngroups; i++)
        if (groups[i].n)
            n++;
    term_put_tuple(b, 2);
    term_put_atom(b, "$gen_cast");
    if (!version) {
        /* pg.erl handle_discover: gen_server:cast(Peer, {sync, self(),
         * all_local_pids(Local)}), a list of {Group, Pids}. */
        term_put_tuple(b, 3);
        term_put_atom(b, "sync");
        term_put_pid(b, self);
        if (n) {
            term_put_list(b, (uint32_t)n);
            for (size_t i = 0; i < ngroups; i++) {
                if (!groups[i].n)
                    continue;
                term_put_tuple(b, 2);
                term_put_atom(b, groups[i].group);
                put_pid_list(b, groups[i].pids, groups[i].n);
            }
        }
        term_put_nil(b);
        return;
    }
    /* data_publisher.erl translate_local_data/3: {local_data, self(),
     * Version, LocalData}, pg's local data being #{Group => [Pid]}. A map
     * is written with its keys in term order. */
    term_put_tuple(b, 4);
    term_put_atom(b, "local_data");
    term_put_pid(b, self);
    term_put_long(b, PG_VERSION);
    term_put_map(b, (uint32_t)n);
    for (size_t i = next_group(groups, ngroups, NULL); i < ngroups;
         i = next_group(groups, ngroups, groups[i].group)) {
        term_put_atom(b, groups[i].group);
        put_pid_list(b, groups[i].pids, groups[i].n);
    }
}

/* data_publisher.erl do_update/2: {update, self(), [{Group, Add, Remove}]}. */
static void put_update(term_buf_t *b, const term_pid_t *self, const char *group,
                       const term_pid_t *pids, size_t n, int remove)
{
    term_put_tuple(b, 3);
    term_put_atom(b, "update");
    term_put_pid(b, self);
    term_put_list(b, 1);
    term_put_tuple(b, 3);
    term_put_atom(b, group);
    put_pid_list(b, remove ? NULL : pids, remove ? 0 : n);
    put_pid_list(b, remove ? pids : NULL, remove ? n : 0);
    term_put_nil(b);
}

void pg_put_join(term_buf_t *b, const term_pid_t *self, unsigned version,
                 const char *group, const term_pid_t *pids, size_t n)
{
    if (version) {
        put_update(b, self, group, pids, n, 0);
        return;
    }
    /* pg.erl join_local: {join, self(), Group, PidOrPids}. */
    term_put_tuple(b, 4);
    term_put_atom(b, "join");
    term_put_pid(b, self);
    term_put_atom(b, group);
    if (n == 1)
        term_put_pid(b, &pids[0]);
    else
        put_pid_list(b, pids, n);
}

void pg_put_leave(term_buf_t *b, const term_pid_t *self, unsigned version,
                  const char *group, const term_pid_t *pids, size_t n)
{
    if (version) {
        put_update(b, self, group, pids, n, 1);
        return;
    }
    /* pg.erl leave: {leave, self(), PidOrPids, [Group]}. */
    term_put_tuple(b, 4);
    term_put_atom(b, "leave");
    term_put_pid(b, self);
    put_pid_list(b, pids, n);
    term_put_list(b, 1);
    term_put_atom(b, group);
    term_put_nil(b);
}

static void send_buf(pg_t *pg, const term_pid_t *to, term_buf_t *b, const char *what)
{
    int rc = b->err;
    if (rc == 0)
        rc = node_send(pg->node, pg->mb, to, b->data, b->len);
    if (rc < 0)
        log_warn("%s: pg: sending %s failed: %s", to->node, what, uv_strerror(rc));
}

/* Our whole membership: gen_server:cast(Peer, {sync, Self, Groups}), or
 * local_data to a version 1 scope. */
static void send_local(pg_t *pg, pg_peer_t *peer)
{
    pg_group_pids_t *gs = NULL;
    term_buf_t b;

    term_buf_init(&b);
    if (pg->local.n && !(gs = mem_alloc(pg->local.n * sizeof *gs))) {
        b.err = -ENOMEM;
    } else {
        for (size_t i = 0; i < pg->local.n; i++) {
            gs[i].group = pg->local.g[i].name;
            gs[i].pids = pg->local.g[i].pids;
            gs[i].n = pg->local.g[i].n;
        }
        pg_put_local(&b, node_mbox_pid(pg->mb), peer->version, gs, pg->local.n);
    }
    send_buf(pg, &peer->pid, &b, peer->version ? "local_data" : "sync");
    term_buf_release(&b);
    mem_free(gs);
    peer->synced_to = 1;
}

static void send_discover_pid(pg_t *pg, pg_peer_t *peer)
{
    term_buf_t b;
    term_buf_init(&b);
    pg_put_discover(&b, node_mbox_pid(pg->mb), peer->version);
    send_buf(pg, &peer->pid, &b, "discover");
    term_buf_release(&b);
}

static void send_discover_node(pg_t *pg, const char *node)
{
    term_buf_t b;
    int rc;
    term_buf_init(&b);
    pg_put_discover(&b, node_mbox_pid(pg->mb), node_version(pg, node));
    rc = b.err ? b.err : node_reg_send(pg->node, pg->mb, pg->scope, node, b.data, b.len);
    if (rc < 0)
        log_warn("%s: pg: discover failed: %s", node, uv_strerror(rc));
    term_buf_release(&b);
}

/* ---- Messages in --------------------------------------------------------- */

/* Reads a pid or a proper list of pids into *out (new array, mem_free it). */
static int get_pids(term_reader_t *r, term_pid_t **out, size_t *n)
{
    uint32_t len;
    term_pid_t *pids;

    *out = NULL;
    *n = 0;
    switch (term_peek(r)) {
    case TERM_T_PID:
        pids = mem_alloc(sizeof *pids);
        if (!pids)
            return -ENOMEM;
        if (term_get_pid(r, pids) < 0) {
            mem_free(pids);
            return -EPROTO;
        }
        *out = pids;
        *n = 1;
        return 0;
    case TERM_T_NIL:
        return term_get_nil(r) < 0 ? -EPROTO : 0;
    case TERM_T_LIST:
        /* Each pid takes several bytes: a count past the bytes left is a
         * lie, refused before allocating for it. */
        if (term_get_list(r, &len) < 0 || len > r->len - r->pos)
            return -EPROTO;
        pids = mem_alloc((size_t)len * sizeof *pids + 1);
        if (!pids)
            return -ENOMEM;
        for (uint32_t i = 0; i < len; i++) {
            if (term_get_pid(r, &pids[i]) < 0) {
                mem_free(pids);
                return -EPROTO;
            }
        }
        if (term_get_nil(r) < 0) {
            mem_free(pids);
            return -EPROTO;
        }
        *out = pids;
        *n = len;
        return 0;
    default:
        return -EPROTO;
    }
}

/* Reads [] or the header of a proper list; *n elements follow, then NIL
 * (read with list_end()). */
static int list_begin(term_reader_t *r, uint32_t *n)
{
    if (term_peek(r) == TERM_T_NIL) {
        *n = 0;
        return term_get_nil(r) < 0 ? -EPROTO : 0;
    }
    return term_get_list(r, n) < 0 ? -EPROTO : 0;
}

static int list_end(term_reader_t *r, uint32_t n)
{
    return n == 0 || term_get_nil(r) == 0 ? 0 : -EPROTO;
}

/* A protocol version: a non-negative integer (pg.erl's version/0 gives 0
 * or 1; data_publisher leaves it open, so a later one may be larger). */
static int get_version(term_reader_t *r, unsigned *v)
{
    int64_t x;
    if (term_get_long(r, &x) < 0 || x < 0 || x > INT32_MAX)
        return -EPROTO;
    *v = (unsigned)x;
    return 0;
}

/* One {Group, Pids} entry of a sync list, or one Group => Pids association
 * of a local_data map (the tuple header already read for a sync). */
static int group_pids(term_reader_t *r, pg_group_cb cb, void *data)
{
    char group[TERM_ATOM_MAX];
    term_pid_t *pids;
    size_t np;
    int rc;

    if (term_get_atom(r, group) < 0)
        return -EPROTO;
    if ((rc = get_pids(r, &pids, &np)) < 0)
        return rc;
    rc = cb ? cb(group, 0, pids, np, data) : 0;
    mem_free(pids);
    return rc;
}

/* {sync, Peer, [{G, Pids}]} after its tuple header and tag. */
static int sync_body(term_reader_t *r, term_pid_t *peer, pg_group_cb cb, void *data)
{
    uint32_t n, garity;
    int rc;

    if (term_get_pid(r, peer) < 0 || list_begin(r, &n) < 0)
        return -EPROTO;
    for (uint32_t i = 0; i < n; i++) {
        if (term_get_tuple(r, &garity) < 0 || garity != 2)
            return -EPROTO;
        if ((rc = group_pids(r, cb, data)) < 0)
            return rc;
    }
    return list_end(r, n);
}

/* {local_data, Peer, Version, #{G => Pids}} after its tuple header and tag
 * (data_publisher.erl handle_info/2). */
static int local_data_body(term_reader_t *r, term_pid_t *peer, unsigned *version,
                           pg_group_cb cb, void *data)
{
    uint32_t n;
    int rc;

    if (term_get_pid(r, peer) < 0 || get_version(r, version) < 0 ||
        term_get_map(r, &n) < 0)
        return -EPROTO;
    for (uint32_t i = 0; i < n; i++)
        if ((rc = group_pids(r, cb, data)) < 0)
            return rc;
    return 0;
}

/* {update, Peer, [{G, Add, Remove}]} after its tuple header and tag
 * (data_publisher.erl do_update/2, pg.erl's update() type). */
static int update_body(term_reader_t *r, term_pid_t *peer, pg_group_cb cb, void *data)
{
    char group[TERM_ATOM_MAX];
    uint32_t n, arity;
    term_pid_t *add = NULL, *del = NULL;
    size_t nadd, ndel;
    int rc;

    if (term_get_pid(r, peer) < 0 || list_begin(r, &n) < 0)
        return -EPROTO;
    for (uint32_t i = 0; i < n; i++) {
        if (term_get_tuple(r, &arity) < 0 || arity != 3 || term_get_atom(r, group) < 0)
            return -EPROTO;
        if ((rc = get_pids(r, &add, &nadd)) < 0)
            return rc;
        if ((rc = get_pids(r, &del, &ndel)) == 0 && cb) {
            rc = cb(group, 0, add, nadd, data);
            if (rc == 0)
                rc = cb(group, 1, del, ndel, data);
        }
        mem_free(add);
        mem_free(del);
        if (rc < 0)
            return rc;
    }
    return list_end(r, n);
}

/* One pass over a message; cb NULL only validates. */
static int decode_pass(const void *msg, size_t len, term_pid_t *peer, unsigned *version,
                       pg_group_cb cb, void *data)
{
    term_reader_t r;
    uint32_t arity, n;
    char tag[TERM_ATOM_MAX], group[TERM_ATOM_MAX];
    term_pid_t *pids = NULL;
    size_t np;
    int rc = -EPROTO, kind;

    *version = 0;
    term_reader_init(&r, msg, len);
    if (term_get_tuple(&r, &arity) < 0 || term_get_atom(&r, tag) < 0)
        return -EPROTO;
    if (strcmp(tag, "$gen_cast") == 0 && arity == 2) {
        /* A cast: sync (pg.erl) or local_data (data_publisher.erl). */
        if (term_get_tuple(&r, &arity) < 0 || term_get_atom(&r, tag) < 0)
            return -EPROTO;
        if (strcmp(tag, "sync") != 0 && strcmp(tag, "local_data") != 0)
            return -EPROTO;
    }
    if (strcmp(tag, "discover") == 0 && (arity == 2 || arity == 3)) {
        /* {discover, Peer} (v0), {discover, Peer, Version} (OTP 26+ accept
         * it, data_publisher.erl sends it). */
        kind = PG_MSG_DISCOVER;
        if (term_get_pid(&r, peer) < 0 || (arity == 3 && get_version(&r, version) < 0))
            return -EPROTO;
    } else if (strcmp(tag, "sync") == 0 && arity == 3) {
        kind = PG_MSG_SYNC;
        if ((rc = sync_body(&r, peer, cb, data)) < 0)
            return rc;
    } else if (strcmp(tag, "local_data") == 0 && arity == 4) {
        kind = PG_MSG_LOCAL_DATA;
        if ((rc = local_data_body(&r, peer, version, cb, data)) < 0)
            return rc;
    } else if (strcmp(tag, "update") == 0 && arity == 3) {
        kind = PG_MSG_UPDATE;
        *version = 1;
        if ((rc = update_body(&r, peer, cb, data)) < 0)
            return rc;
    } else if (strcmp(tag, "join") == 0 && arity == 4) {
        /* {join, Peer, Group, PidOrPids} */
        kind = PG_MSG_JOIN;
        if (term_get_pid(&r, peer) < 0 || term_get_atom(&r, group) < 0)
            return -EPROTO;
        if ((rc = get_pids(&r, &pids, &np)) < 0)
            return rc;
        rc = cb ? cb(group, 0, pids, np, data) : 0;
        mem_free(pids);
        if (rc < 0)
            return rc;
    } else if (strcmp(tag, "leave") == 0 && arity == 4) {
        /* {leave, Peer, PidOrPids, [G]} */
        kind = PG_MSG_LEAVE;
        if (term_get_pid(&r, peer) < 0)
            return -EPROTO;
        if ((rc = get_pids(&r, &pids, &np)) < 0)
            return rc;
        rc = list_begin(&r, &n);
        for (uint32_t i = 0; rc == 0 && i < n; i++) {
            if (term_get_atom(&r, group) < 0)
                rc = -EPROTO;
            else if (cb)
                rc = cb(group, 1, pids, np, data);
        }
        if (rc == 0)
            rc = list_end(&r, n);
        mem_free(pids);
        if (rc < 0)
            return rc;
    } else {
        return -EPROTO;
    }
    return r.pos == r.len ? kind : -EPROTO;
}

int pg_decode(const void *msg, size_t len, term_pid_t *peer, unsigned *version,
              pg_group_cb cb, void *data)
{
    unsigned v;
    int kind = decode_pass(msg, len, peer, &v, NULL, NULL);
    if (kind >= 0 && cb && kind != PG_MSG_DISCOVER) {
        int rc = decode_pass(msg, len, peer, &v, cb, data);
        if (rc < 0)
            return rc;
    }
    if (kind >= 0 && version)
        *version = v;
    return kind;
}

/* A message's groups: members listed or joining, and members leaving. */
typedef struct pg_change {
    pg_groups_t add, del;
} pg_change_t;

static int collect_cb(const char *group, int remove, const term_pid_t *pids, size_t n,
                      void *data)
{
    pg_change_t *c = data;
    pg_group_t *g = groups_get(remove ? &c->del : &c->add, group);
    if (!g)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++)
        if (group_add(g, &pids[i]) < 0)
            return -ENOMEM;
    return 0;
}

/* {sync, Peer, Groups} or {local_data, Peer, V, Groups}: replaces what we
 * knew of that peer (data_publisher diffs the two, which comes to the
 * same). gs is taken. */
static int handle_sync(pg_t *pg, const term_pid_t *from, int v1, pg_groups_t *gs)
{
    pg_peer_t *peer = peer_find(pg, from);
    int isnew = 0;

    if (node_is_local_pid(pg->node, from)) {
        groups_release(gs);
        return 0;
    }
    if (!peer) {
        if (!(peer = peer_add(pg, from))) {
            groups_release(gs);
            return -ENOMEM;
        }
        isnew = 1;
    }
    if (v1)
        peer_speaks_v1(pg, peer);
    groups_release(&peer->groups);
    peer->groups = *gs;
    memset(gs, 0, sizeof *gs);
    /* A sync from a scope that has not had ours (it answered a discover we
     * sent before a restart, say): offer ours by the expected route, a
     * discover, which it answers with a sync and no more. */
    if (isnew && !peer->synced_to)
        send_discover_pid(pg, peer);
    log_debug("%s: pg: %s with %zu groups", from->node, v1 ? "local_data" : "sync",
              peer->groups.n);
    int first = !list_has(pg->seen, from->node);
    if (first) {
        pg_redisc_t *sn = mem_calloc(1, sizeof *sn);
        if (sn && (sn->node = mem_strdup(from->node))) {
            sn->next = pg->seen;
            pg->seen = sn;
        } else {
            mem_free(sn);
        }
    }
    if (pg->sync_cb)
        pg->sync_cb(pg, from->node, first, pg->sync_data);
    return 0;
}

/* {discover, Peer[, Version]}: answer with our membership in the version
 * it speaks; monitor and discover it if new (data_publisher.erl and
 * pg.erl handle_discover). */
static int handle_discover(pg_t *pg, const term_pid_t *from, unsigned version)
{
    pg_peer_t *peer;
    int isnew = 0;

    if (node_is_local_pid(pg->node, from))
        return 0;
    if (!(peer = peer_find(pg, from))) {
        if (!(peer = peer_add(pg, from)))
            return -ENOMEM;
        isnew = 1;
    }
    if (version >= 1)
        peer_speaks_v1(pg, peer);
    send_local(pg, peer);
    if (isnew)
        send_discover_pid(pg, peer);
    return 0;
}

/* join, leave or update from a known peer (pg.erl and data_publisher.erl
 * drop them from unknown ones). Pids leave first, then join: pg.erl's
 * update_global_view_and_notify computes Add ++ (All -- Remove). */
static int handle_change(pg_t *pg, int kind, const term_pid_t *from, pg_change_t *c)
{
    pg_peer_t *peer = peer_find(pg, from);
    int rc = 0;

    if (peer && kind == PG_MSG_UPDATE)
        peer_speaks_v1(pg, peer);
    for (size_t i = 0; peer && i < c->del.n; i++) {
        pg_group_t *src = &c->del.g[i], *g = groups_find(&peer->groups, src->name);
        for (size_t j = 0; g && j < src->n; j++)
            group_del(g, &src->pids[j]);
    }
    for (size_t i = 0; peer && i < c->add.n && rc == 0; i++) {
        pg_group_t *src = &c->add.g[i], *g;
        if (!src->n)
            continue;
        if (!(g = groups_get(&peer->groups, src->name)))
            rc = -ENOMEM;
        for (size_t j = 0; rc == 0 && j < src->n; j++)
            rc = group_add(g, &src->pids[j]);
    }
    return rc;
}

static void timer_cb(uv_timer_t *t)
{
    pg_t *pg = t->data;
    for (pg_redisc_t *r = pg->redisc; r; r = r->next) {
        /* Every tick for the first PG_REDISCOVER_FAST tries, then one in
         * ten: a node that never runs the scope costs little. */
        if (node_is_connected(pg->node, r->node) &&
            (r->attempts < PG_REDISCOVER_FAST || r->attempts % 10 == 0))
            send_discover_node(pg, r->node);
        r->attempts++;
    }
    if (!pg->redisc)
        uv_timer_stop(&pg->timer);
}

static int redisc_add(pg_t *pg, const char *node)
{
    pg_redisc_t *rd;
    for (rd = pg->redisc; rd; rd = rd->next)
        if (strcmp(rd->node, node) == 0)
            return 0;
    rd = mem_calloc(1, sizeof *rd);
    if (!rd || !(rd->node = mem_strdup(node))) {
        mem_free(rd);
        return -ENOMEM;
    }
    rd->next = pg->redisc;
    pg->redisc = rd;
    if (!uv_is_active((uv_handle_t *)&pg->timer))
        uv_timer_start(&pg->timer, timer_cb, PG_REDISCOVER_MS, PG_REDISCOVER_MS);
    return 0;
}

/* {'DOWN', Ref, process, Pid, Reason} for a scope we monitor. */
static int handle_down(pg_t *pg, term_reader_t *r)
{
    term_ref_t ref;
    char atom[TERM_ATOM_MAX], reason[TERM_ATOM_MAX] = "";
    const char *p;
    size_t len;

    if (term_get_ref(r, &ref) < 0 || term_get_atom(r, atom) < 0 ||
        term_get_any(r, &p, &len) < 0)
        return -EPROTO;
    if (term_peek(r) == TERM_T_ATOM)
        (void)term_get_atom(r, reason);
    for (pg_peer_t *peer = pg->peers; peer; peer = peer->next) {
        if (!peer->monitored || !term_ref_eq(&peer->mon, &ref))
            continue;
        char node[TERM_ATOM_MAX];
        snprintf(node, sizeof node, "%s", peer->pid.node);
        peer->monitored = 0;
        peer_remove(pg, peer, 0);
        if (strcmp(reason, "noconnection") == 0 || pg->shut ||
            !node_is_connected(pg->node, node))
            return 0;
        /* PROTOCOL.md 5: a restarted scope knows nothing of us. */
        log_info("%s: pg: scope went down (%s); rediscovering", node,
                 reason[0] ? reason : "?");
        return redisc_add(pg, node);
    }
    return 0;
}

static void pg_msg_cb(node_mbox_t *mb, const node_msg_t *m, void *data)
{
    pg_t *pg = data;
    pg_change_t c = {{0}, {0}};
    term_pid_t peer;
    unsigned version;
    term_reader_t r;
    uint32_t arity;
    char tag[TERM_ATOM_MAX];
    int rc;
    (void)mb;

    if (pg->shut)
        return;
    if (m->kind == NODE_MSG_DOWN) {
        term_reader_init(&r, m->msg, m->msg_len);
        rc = term_get_tuple(&r, &arity) < 0 || arity != 5 || term_get_atom(&r, tag) < 0
                 ? -EPROTO
                 : handle_down(pg, &r);
    } else {
        rc = pg_decode(m->msg, m->msg_len, &peer, &version, collect_cb, &c);
        switch (rc) {
        case PG_MSG_DISCOVER:
            rc = handle_discover(pg, &peer, version);
            break;
        case PG_MSG_SYNC:
        case PG_MSG_LOCAL_DATA:
            rc = handle_sync(pg, &peer, rc == PG_MSG_LOCAL_DATA, &c.add);
            break;
        case PG_MSG_JOIN:
        case PG_MSG_LEAVE:
        case PG_MSG_UPDATE:
            rc = handle_change(pg, rc, &peer, &c);
            break;
        default:
            break;
        }
        groups_release(&c.add);
        groups_release(&c.del);
    }
    if (rc < 0)
        log_warn("%s: pg: message dropped: %s", m->peer, uv_strerror(rc));
}

static void pg_event_cb(node_t *n, node_event_t ev, const char *peer,
                          const char *reason, void *data)
{
    pg_t *pg = data;
    (void)n;
    (void)reason;
    if (pg->shut)
        return;
    if (ev == NODE_UP) {
        /* pg.erl hears of visible nodes only (monitor_nodes/1, nodes()):
         * a hidden peer (ei node, remote shell) gets no discover. */
        if (node_peer_published(n, peer) != 1)
            return;
        /* pg.erl's nodeup clause: ask that node's scope to exchange, and
         * ask again until it answers (its app may not have started it). */
        send_discover_node(pg, peer);
        if (!pg_knows_node(pg, peer) && redisc_add(pg, peer) < 0)
            log_warn("%s: pg: %s", peer, uv_strerror(-ENOMEM));
        return;
    }
    redisc_drop(pg, peer);
    list_drop(&pg->seen, peer);
    list_drop(&pg->v1, peer);
    for (pg_peer_t *p = pg->peers, *next; p; p = next) {
        next = p->next;
        if (strcmp(p->pid.node, peer) == 0)
            peer_remove(pg, p, 0);
    }
}

static void shutdown_cb(node_t *n, void *data)
{
    (void)n;
    pg_shutdown(data);
}

int pg_new(node_t *n, const char *scope, pg_t **out)
{
    pg_t *pg = mem_calloc(1, sizeof *pg);
    int rc = -ENOMEM;

    if (!pg)
        return -ENOMEM;
    pg->node = n;
    if (!(pg->scope = mem_strdup(scope)))
        goto fail_scope;
    rc = node_mbox_new(n, scope, pg_msg_cb, pg, &pg->mb);
    if (rc < 0)
        goto fail_mbox;
    rc = node_subscribe(n, pg_event_cb, pg, &pg->sub_id);
    if (rc < 0)
        goto fail_sub;
    rc = node_on_shutdown(n, shutdown_cb, pg);
    if (rc < 0)
        goto fail_hook;
    uv_timer_init(node_loop(n), &pg->timer);
    pg->timer.data = pg;
    pg->timer_init = 1;
    *out = pg;
    return 0;

fail_hook:
    node_unsubscribe(n, pg->sub_id);
fail_sub:
    node_mbox_close(pg->mb, NULL, 0);
fail_mbox:
    mem_free(pg->scope);
fail_scope:
    mem_free(pg);
    return rc;
}

void pg_shutdown(pg_t *pg)
{
    if (!pg || pg->shut)
        return;
    pg->shut = 1;
    /* {leave, Self, Pids, [Group]} per group, only to scopes that have our
     * sync: pg.erl's leave_remote does maps:get(Group, ...) and would crash
     * on a group it never saw from us. */
    for (pg_peer_t *p = pg->peers; p; p = p->next) {
        if (!p->synced_to)
            continue;
        for (size_t i = 0; i < pg->local.n; i++) {
            pg_group_t *g = &pg->local.g[i];
            term_buf_t b;
            if (!g->n)
                continue;
            term_buf_init(&b);
            pg_put_leave(&b, node_mbox_pid(pg->mb), p->version, g->name, g->pids, g->n);
            send_buf(pg, &p->pid, &b, "leave");
            term_buf_release(&b);
        }
    }
    while (pg->peers)
        peer_remove(pg, pg->peers, 1);
    while (pg->redisc)
        redisc_drop(pg, pg->redisc->node);
    while (pg->seen)
        list_drop(&pg->seen, pg->seen->node);
    while (pg->v1)
        list_drop(&pg->v1, pg->v1->node);
    node_unsubscribe(pg->node, pg->sub_id);
    node_mbox_close(pg->mb, NULL, 0);
    pg->mb = NULL;
    if (pg->timer_init) {
        uv_timer_stop(&pg->timer);
        uv_close((uv_handle_t *)&pg->timer, NULL);
    }
}

void pg_free(pg_t *pg)
{
    if (!pg)
        return;
    pg_shutdown(pg);
    groups_release(&pg->local);
    mem_free(pg->scope);
    mem_free(pg);
}

int pg_join(pg_t *pg, const char *group, const term_pid_t *pid)
{
    pg_group_t *g;
    int rc;

    if (pg->shut)
        return -ESHUTDOWN;
    g = groups_get(&pg->local, group);
    if (!g)
        return -ENOMEM;
    if ((rc = group_add(g, pid)) < 0)
        return rc;
    for (pg_peer_t *p = pg->peers; p; p = p->next) {
        term_buf_t b;
        if (!p->synced_to)
            continue;
        term_buf_init(&b);
        pg_put_join(&b, node_mbox_pid(pg->mb), p->version, group, pid, 1);
        send_buf(pg, &p->pid, &b, "join");
        term_buf_release(&b);
    }
    return 0;
}

size_t pg_members(pg_t *pg, const char *group, const char *on_node,
                  const term_pid_t **out, size_t max)
{
    size_t n = 0;
    for (pg_peer_t *p = pg->peers; p; p = p->next) {
        pg_group_t *g;
        if (on_node && strcmp(p->pid.node, on_node) != 0)
            continue;
        if (!(g = groups_find(&p->groups, group)))
            continue;
        for (size_t i = 0; i < g->n; i++, n++)
            if (n < max)
                out[n] = &g->pids[i];
    }
    return n;
}

int pg_knows_node(pg_t *pg, const char *node)
{
    for (pg_peer_t *p = pg->peers; p; p = p->next)
        if (strcmp(p->pid.node, node) == 0)
            return 1;
    return 0;
}

void pg_on_sync(pg_t *pg, pg_sync_cb cb, void *data)
{
    pg->sync_cb = cb;
    pg->sync_data = data;
}

const term_pid_t *pg_pid(const pg_t *pg)
{
    return node_mbox_pid(pg->mb);
}
