/* node.c: the node: identity (name, creation from EPMD), pids and refs,
 * mailboxes and registered names, monitors and links in both directions,
 * the connection table with BEAM's simultaneous-connect rules, node
 * events, and the built-in net_kernel and etsd_echo mailboxes. */
#include "cnode/node.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cnode/cnode_int.h"
#include "cnode/epmd.h"
#include "cnode/log.h"
#include "cnode/metrics.h"
#include "term/mem.h"

/* ---- Types ---------------------------------------------------------------- */

typedef struct mon_in {          /* a remote process monitors one of ours */
    struct mon_in *next;
    term_pid_t watcher;
    term_ref_t ref;
    int by_name;                 /* monitored by registered name */
} mon_in_t;

typedef struct link_ent {
    struct link_ent *next;
    term_pid_t pid;
} link_ent_t;

typedef struct alias_ent {
    struct alias_ent *next;
    term_ref_t ref;
} alias_ent_t;

struct node_mbox {
    node_t *node;
    struct node_mbox *hnext;     /* pid hash chain */
    struct node_mbox *nnext;     /* list of registered mailboxes */
    term_pid_t pid;
    char *name;                  /* registered name or NULL */
    node_msg_cb cb;
    void *data;
    mon_in_t *mons;
    link_ent_t *links;
    alias_ent_t *aliases;
    int closed;
    int busy;                    /* inside its callback */
    int bulk;                    /* node_mbox_set_bulk(): its messages may wait */
};

typedef struct mon_out {         /* a monitor one of our mailboxes placed */
    struct mon_out *next;
    term_ref_t ref;
    node_mbox_t *watcher;
    int by_name;
    term_pid_t pid;
    char name[TERM_ATOM_MAX];
    char node[TERM_ATOM_MAX];
} mon_out_t;

typedef struct peer {            /* one connection (any state) */
    struct peer *next;
    conn_t *conn;
    node_t *node;
    int up;
    int published;               /* the peer's handshake flags had DFLAG_PUBLISHED */
    int superseded;              /* dropped for another connection to the same node */
    unsigned bad_frames;         /* malformed or unknown frames seen (log limit) */
} peer_t;

/* A peer that sends junk gets this many warnings, then silence (debug). */
#define PEER_BAD_FRAME_LOGS 20

typedef struct waiter {
    struct waiter *next;
    char peer[TERM_ATOM_MAX];
    node_connect_cb cb;
    void *data;
    int status;                  /* for deferred delivery */
    int ready;
} waiter_t;

typedef struct orphan {      /* frames of a connection that lost a simultaneous connect */
    struct orphan *next;
    char peer[TERM_ATOM_MAX];
    conn_queue_t *q;
} orphan_t;

typedef struct sub {
    struct sub *next;
    int id;
    node_event_cb cb;
    void *data;
} sub_t;

typedef struct hook {
    struct hook *next;
    node_shutdown_cb cb;
    void *data;
} hook_t;

typedef struct local_msg {       /* a message to this node, delivered later */
    struct local_msg *next;
    node_msg_kind_t kind;
    int has_from;
    term_pid_t from;
    int to_kind;                 /* 0 pid, 1 name, 2 alias */
    term_pid_t to_pid;
    char *to_name;
    term_ref_t alias;
    char *msg;
    size_t len;
} local_msg_t;

struct node {
    uv_loop_t *loop;
    node_config_t cfg;
    char name[TERM_ATOM_MAX];
    char alive[HS_NAME_MAX], host[HS_NAME_MAX];
    uint32_t creation;
    int reg_status;              /* registration result while starting */
    int registered;
    uv_tcp_t listener;
    uv_idle_t idle;
    epmd_reg_t *epmd;
    int port;
    int stopping;
    int handles_open;
    hs_t hs_template;
    conn_limits_t lim;
    peer_t *peers;
    waiter_t *waiters;
    sub_t *subs;
    int next_sub;
    hook_t *hooks;
    node_ctl_cb ctl_cb;
    void *ctl_data;
    /* mailboxes */
    node_mbox_t **pidtab;
    size_t pidtab_size, nmbox;
    uint32_t next_num, next_serial;
    uint64_t ref_counter;
    uint32_t ref_salt;
    mon_out_t *mons_out;
    node_mbox_t *named;          /* registered mailboxes: few, so a list */
    struct test_mbox *tests;     /* diagnostic mailboxes' state */
    orphan_t *orphans;
    local_msg_t *lq_head, *lq_tail;
    node_mbox_t *net_kernel, *echo;
};

/* ---- Small helpers ------------------------------------------------------- */

void node_config_defaults(node_config_t *c)
{
    memset(c, 0, sizeof *c);
    c->longnames = 1;
    c->net_ticktime = 60;
    c->log_level = LOG_INFO;
    c->table = "users";
    c->keypos = 1;
    c->pubsub = "MyApp.PubSub";
    c->pool_size = 1;
    c->topic_new = "new";
    c->topic_sync = "node_up";
    c->sync_delay_ms = 3000;
    c->forget_after_ms = 600000;
    c->fsync = NODE_FSYNC_ALWAYS;
    c->fsync_ms = 1000;
    c->max_frame = 1536ULL * 1024 * 1024;
    c->max_queue = 2560ULL * 1024 * 1024;
    c->family = AF_INET;
}

uv_loop_t *node_loop(node_t *n) { return n->loop; }
const node_config_t *node_config(node_t *n) { return &n->cfg; }
const char *node_name(node_t *n) { return n->name; }
uint32_t node_creation(node_t *n) { return n->creation; }
const term_pid_t *node_mbox_pid(const node_mbox_t *mb) { return &mb->pid; }
const char *node_mbox_name(const node_mbox_t *mb) { return mb->name; }
node_t *node_mbox_node(const node_mbox_t *mb) { return mb->node; }
void node_mbox_set_bulk(node_mbox_t *mb, int bulk) { mb->bulk = bulk != 0; }

int node_is_local_pid(node_t *n, const term_pid_t *pid)
{
    return pid->creation == n->creation && strcmp(pid->node, n->name) == 0;
}

void node_make_ref(node_t *n, term_ref_t *out)
{
    memset(out, 0, sizeof *out);
    strcpy(out->node, n->name);
    out->creation = n->creation;
    uint64_t c = ++n->ref_counter;
    /* BEAM keeps 18 bits in the first word of a ref. */
    out->len = 3;
    out->n[0] = (uint32_t)(c & 0x3ffff);
    out->n[1] = (uint32_t)(c >> 18);
    out->n[2] = n->ref_salt;
}

static void put_pid_or_name(term_buf_t *b, const term_pid_t *pid, const char *name)
{
    if (pid)
        term_put_pid(b, pid);
    else
        term_put_atom(b, name);
}

/* ---- Connections: lookup and sending ---------------------------------- */

static peer_t *find_peer(node_t *n, const char *name, int up_only)
{
    for (peer_t *p = n->peers; p; p = p->next)
        if (!p->superseded && conn_state(p->conn) != CONN_CLOSED &&
            strcmp(conn_peer(p->conn), name) == 0 && (!up_only || p->up))
            return p;
    return NULL;
}

static const conn_ops_t peer_ops;

static int start_connect(node_t *n, const char *name, peer_t **out)
{
    if (n->stopping)
        return -ESHUTDOWN;
    if (strcmp(name, n->name) == 0)
        return -EINVAL;
    peer_t *p = mem_calloc(1, sizeof *p);
    if (!p)
        return -ENOMEM;
    p->node = n;
    int rc = conn_connect(n->loop, name, &n->hs_template, &n->lim, &peer_ops, p, &p->conn);
    if (rc < 0) {
        mem_free(p);
        return rc;
    }
    p->next = n->peers;
    n->peers = p;
    log_debug("%s: connecting", name);
    *out = p;
    return 0;
}

/* The connection to use for sending to node name, connecting if needed. */
static int peer_for(node_t *n, const char *name, peer_t **out)
{
    peer_t *p = find_peer(n, name, 1);
    if (!p)
        p = find_peer(n, name, 0);
    if (p) {
        *out = p;
        return 0;
    }
    return start_connect(n, name, out);
}

static int send_frame(node_t *n, const char *to_node, const void *ctl, size_t ctl_len,
                      const void *msg, size_t msg_len)
{
    peer_t *p;
    int rc = peer_for(n, to_node, &p);
    if (rc < 0)
        return rc;
    cbuf_t out;
    cbuf_init(&out);
    rc = dist_encode(&out, ctl, ctl_len, msg, msg_len);
    if (rc < 0) {
        cbuf_release(&out);
        return rc;
    }
    metrics_inc(METRICS_MSGS_OUT);
    metrics_add(METRICS_BYTES_OUT, out.len);
    return conn_send(p->conn, out.data, out.len);
}

/* Sends a control tuple built in b (a term_buf_t). */
static int send_ctl_buf(node_t *n, const char *to_node, term_buf_t *b, const void *msg,
                        size_t msg_len)
{
    int rc = b->err;
    if (rc == 0)
        rc = send_frame(n, to_node, b->data, b->len, msg, msg_len);
    term_buf_release(b);
    return rc;
}

int node_send_ctl(node_t *n, const char *to_node, const void *ctl, size_t ctl_len,
                  const void *msg, size_t msg_len)
{
    if (!to_node || strcmp(to_node, n->name) == 0)
        return -EINVAL;
    return send_frame(n, to_node, ctl, ctl_len, msg, msg_len);
}

/* MONITOR_P_EXIT {21, FromProc, ToPid, Ref, Reason} */
static void send_monitor_exit(node_t *n, const term_pid_t *from_pid, const char *from_name,
                              const term_pid_t *to, const term_ref_t *ref,
                              const void *reason, size_t reason_len)
{
    term_buf_t b;
    term_buf_init(&b);
    term_put_tuple(&b, 5);
    term_put_long(&b, DOP_MONITOR_P_EXIT);
    put_pid_or_name(&b, from_pid, from_name);
    term_put_pid(&b, to);
    term_put_ref(&b, ref);
    if (reason)
        term_put_raw(&b, reason, reason_len);
    else
        term_put_atom(&b, "normal");
    send_ctl_buf(n, to->node, &b, NULL, 0);
}

/* ---- Mailbox tables ------------------------------------------------------ */

static size_t pid_slot(node_t *n, uint32_t num, uint32_t serial)
{
    return ((size_t)num * 2654435761u + serial) & (n->pidtab_size - 1);
}

static node_mbox_t *find_pid(node_t *n, const term_pid_t *pid)
{
    if (!node_is_local_pid(n, pid) || n->pidtab_size == 0)
        return NULL;
    for (node_mbox_t *mb = n->pidtab[pid_slot(n, pid->num, pid->serial)]; mb; mb = mb->hnext)
        if (mb->pid.num == pid->num && mb->pid.serial == pid->serial && !mb->closed)
            return mb;
    return NULL;
}

/* Names are few (services register a handful): a list is enough. */
static node_mbox_t *find_name(node_t *n, const char *name)
{
    for (node_mbox_t *mb = n->named; mb; mb = mb->nnext)
        if (!mb->closed && strcmp(mb->name, name) == 0)
            return mb;
    return NULL;
}

static node_mbox_t *find_alias(node_t *n, const term_ref_t *ref)
{
    if (strcmp(ref->node, n->name) != 0)
        return NULL;
    for (size_t i = 0; i < n->pidtab_size; i++)
        for (node_mbox_t *mb = n->pidtab[i]; mb; mb = mb->hnext)
            for (alias_ent_t *a = mb->aliases; a; a = a->next)
                if (!mb->closed && term_ref_eq(&a->ref, ref))
                    return mb;
    return NULL;
}

static int pidtab_grow(node_t *n)
{
    size_t ns = n->pidtab_size ? n->pidtab_size * 2 : 256;
    node_mbox_t **t = mem_calloc(ns, sizeof *t);
    if (!t)
        return -ENOMEM;
    node_mbox_t **old = n->pidtab;
    size_t os = n->pidtab_size;
    n->pidtab = t;
    n->pidtab_size = ns;
    for (size_t i = 0; i < os; i++) {
        node_mbox_t *mb = old[i];
        while (mb) {
            node_mbox_t *next = mb->hnext;
            size_t s = pid_slot(n, mb->pid.num, mb->pid.serial);
            mb->hnext = t[s];
            t[s] = mb;
            mb = next;
        }
    }
    mem_free(old);
    return 0;
}

static void mbox_free(node_mbox_t *mb)
{
    while (mb->mons) {
        mon_in_t *m = mb->mons;
        mb->mons = m->next;
        mem_free(m);
    }
    while (mb->links) {
        link_ent_t *l = mb->links;
        mb->links = l->next;
        mem_free(l);
    }
    while (mb->aliases) {
        alias_ent_t *a = mb->aliases;
        mb->aliases = a->next;
        mem_free(a);
    }
    mem_free(mb->name);
    mem_free(mb);
}

static void mbox_unlink_table(node_t *n, node_mbox_t *mb)
{
    node_mbox_t **pp = &n->pidtab[pid_slot(n, mb->pid.num, mb->pid.serial)];
    while (*pp && *pp != mb)
        pp = &(*pp)->hnext;
    if (*pp)
        *pp = mb->hnext;
    n->nmbox--;
    if (mb->name) {
        node_mbox_t **np = &n->named;
        while (*np && *np != mb)
            np = &(*np)->nnext;
        if (*np)
            *np = mb->nnext;
    }
}

int node_mbox_new(node_t *n, const char *name, node_msg_cb cb, void *data,
                  node_mbox_t **out)
{
    if (name && (strlen(name) == 0 || strlen(name) >= TERM_ATOM_MAX))
        return -EINVAL;
    if (name && find_name(n, name))
        return -EEXIST;
    if ((n->nmbox + 1) * 2 > n->pidtab_size) {
        int rc = pidtab_grow(n);
        if (rc < 0)
            return rc;
    }
    node_mbox_t *mb = mem_calloc(1, sizeof *mb);
    if (!mb)
        return -ENOMEM;
    if (name && !(mb->name = mem_strdup(name))) {
        mem_free(mb);
        return -ENOMEM;
    }
    mb->node = n;
    mb->cb = cb;
    mb->data = data;
    strcpy(mb->pid.node, n->name);
    mb->pid.creation = n->creation;
    /* 15-bit number, 13-bit serial: what every peer accepts in a pid. */
    do {
        mb->pid.num = n->next_num;
        mb->pid.serial = n->next_serial;
        if (++n->next_num > 0x7fff) {
            n->next_num = 1;
            n->next_serial = (n->next_serial + 1) & 0x1fff;
        }
    } while (find_pid(n, &mb->pid));
    size_t s = pid_slot(n, mb->pid.num, mb->pid.serial);
    mb->hnext = n->pidtab[s];
    n->pidtab[s] = mb;
    n->nmbox++;
    if (mb->name) {
        mb->nnext = n->named;
        n->named = mb;
    }
    *out = mb;
    return 0;
}

int node_mbox_add_monitor(node_mbox_t *mb, const term_pid_t *watcher, const term_ref_t *ref)
{
    mon_in_t *m = mem_calloc(1, sizeof *m);
    if (!m)
        return -ENOMEM;
    m->watcher = *watcher;
    m->ref = *ref;
    m->next = mb->mons;
    mb->mons = m;
    return 0;
}

int node_mbox_add_link(node_mbox_t *mb, const term_pid_t *pid)
{
    for (link_ent_t *l = mb->links; l; l = l->next)
        if (term_pid_eq(&l->pid, pid))
            return 0;
    link_ent_t *l = mem_calloc(1, sizeof *l);
    if (!l)
        return -ENOMEM;
    l->pid = *pid;
    l->next = mb->links;
    mb->links = l;
    return 0;
}

static int remove_link(node_mbox_t *mb, const term_pid_t *pid)
{
    for (link_ent_t **pp = &mb->links; *pp; pp = &(*pp)->next) {
        if (term_pid_eq(&(*pp)->pid, pid)) {
            link_ent_t *l = *pp;
            *pp = l->next;
            mem_free(l);
            return 1;
        }
    }
    return 0;
}

int node_mbox_alias(node_mbox_t *mb, term_ref_t *out)
{
    alias_ent_t *a = mem_calloc(1, sizeof *a);
    if (!a)
        return -ENOMEM;
    node_make_ref(mb->node, &a->ref);
    a->next = mb->aliases;
    mb->aliases = a;
    *out = a->ref;
    return 0;
}

/* ---- Delivery ---------------------------------------------------------------- */

static void deliver(node_mbox_t *mb, node_msg_kind_t kind, const term_pid_t *from,
                    const char *peer, const char *to_name, const term_ref_t *alias,
                    const char *msg, size_t len)
{
    if (mb->closed)
        return;
    node_msg_t m = {kind, from, peer, to_name, alias, msg, len};
    mb->busy++;
    mb->cb(mb, &m, mb->data);
    mb->busy--;
    if (mb->closed && mb->busy == 0)
        mbox_free(mb);
}

static void lq_start(node_t *n);

static int enqueue_local(node_t *n, local_msg_t *lm)
{
    lm->next = NULL;
    if (n->lq_tail)
        n->lq_tail->next = lm;
    else
        n->lq_head = lm;
    n->lq_tail = lm;
    lq_start(n);
    return 0;
}

static void lm_free(local_msg_t *lm)
{
    mem_free(lm->to_name);
    mem_free(lm->msg);
    mem_free(lm);
}

static void deliver_down(node_t *n, mon_out_t *m, const void *reason, size_t reason_len);

static void on_idle(uv_idle_t *h)
{
    node_t *n = h->data;
    /* Deliver what is queued now; messages queued by these callbacks wait
     * for the next turn, so a mailbox sending to itself cannot spin here. */
    local_msg_t *head = n->lq_head;
    n->lq_head = n->lq_tail = NULL;
    while (head) {
        local_msg_t *lm = head;
        head = lm->next;
        node_mbox_t *mb = NULL;
        if (lm->to_kind == 0)
            mb = find_pid(n, &lm->to_pid);
        else if (lm->to_kind == 1)
            mb = find_name(n, lm->to_name);
        else
            mb = find_alias(n, &lm->alias);
        if (mb)
            deliver(mb, lm->kind, lm->has_from ? &lm->from : NULL, n->name,
                    lm->to_kind == 1 ? lm->to_name : NULL,
                    lm->to_kind == 2 ? &lm->alias : NULL, lm->msg, lm->len);
        lm_free(lm);
    }
    /* node_connect() callers for a node that was already up. */
    for (waiter_t **pp = &n->waiters; *pp;) {
        waiter_t *w = *pp;
        if (w->ready) {
            *pp = w->next;
            if (w->cb)
                w->cb(n, w->peer, 0, w->data);
            mem_free(w);
            pp = &n->waiters; /* the callback may have changed the list */
        } else {
            pp = &w->next;
        }
    }
    if (!n->lq_head)
        uv_idle_stop(&n->idle);
}

static void lq_start(node_t *n)
{
    if (!uv_is_closing((uv_handle_t *)&n->idle))
        uv_idle_start(&n->idle, on_idle);
}

static local_msg_t *lm_new(node_mbox_t *from, node_msg_kind_t kind, const void *msg,
                           size_t len)
{
    local_msg_t *lm = mem_calloc(1, sizeof *lm);
    if (!lm)
        return NULL;
    lm->msg = mem_alloc(len ? len : 1);
    if (!lm->msg) {
        mem_free(lm);
        return NULL;
    }
    memcpy(lm->msg, msg, len);
    lm->len = len;
    lm->kind = kind;
    if (from) {
        lm->has_from = 1;
        lm->from = from->pid;
    }
    return lm;
}

/* ---- Sending ------------------------------------------------------------------ */

int node_send(node_t *n, node_mbox_t *from, const term_pid_t *to, const void *msg,
              size_t len)
{
    if (strcmp(to->node, n->name) == 0) {
        if (to->creation != n->creation)
            return 0; /* an earlier incarnation of this node: dropped, as BEAM does */
        local_msg_t *lm = lm_new(from, from ? NODE_MSG_SEND_SENDER : NODE_MSG_SEND, msg, len);
        if (!lm)
            return -ENOMEM;
        lm->to_kind = 0;
        lm->to_pid = *to;
        return enqueue_local(n, lm);
    }
    term_buf_t b;
    term_buf_init(&b);
    if (from) {
        /* Only a peer that advertised DFLAG_SEND_SENDER understands op 22. */
        peer_t *p = find_peer(n, to->node, 1);
        if (p && (conn_peer_flags(p->conn) & DFLAG_SEND_SENDER)) {
            term_put_tuple(&b, 3);
            term_put_long(&b, DOP_SEND_SENDER);
            term_put_pid(&b, &from->pid);
            term_put_pid(&b, to);
            return send_ctl_buf(n, to->node, &b, msg, len);
        }
    }
    term_put_tuple(&b, 3);
    term_put_long(&b, DOP_SEND);
    term_put_atom(&b, "");
    term_put_pid(&b, to);
    return send_ctl_buf(n, to->node, &b, msg, len);
}

int node_reg_send(node_t *n, node_mbox_t *from, const char *to_name, const char *to_node,
                  const void *msg, size_t len)
{
    if (!to_name || strlen(to_name) >= TERM_ATOM_MAX)
        return -EINVAL;
    if (!to_node || strcmp(to_node, n->name) == 0) {
        local_msg_t *lm = lm_new(from, NODE_MSG_REG_SEND, msg, len);
        if (!lm)
            return -ENOMEM;
        lm->to_kind = 1;
        if (!(lm->to_name = mem_strdup(to_name))) {
            lm_free(lm);
            return -ENOMEM;
        }
        return enqueue_local(n, lm);
    }
    /* REG_SEND {6, FromPid, Unused, ToName}: From must be a pid. A
     * mailbox-less send uses the net_kernel mailbox's pid. */
    if (!from && !n->net_kernel)
        return -ESHUTDOWN;
    const term_pid_t *fp = from ? &from->pid : &n->net_kernel->pid;
    term_buf_t b;
    term_buf_init(&b);
    term_put_tuple(&b, 4);
    term_put_long(&b, DOP_REG_SEND);
    term_put_pid(&b, fp);
    term_put_atom(&b, "");
    term_put_atom(&b, to_name);
    return send_ctl_buf(n, to_node, &b, msg, len);
}

int node_alias_send(node_t *n, node_mbox_t *from, const term_ref_t *alias,
                    const void *msg, size_t len)
{
    if (strcmp(alias->node, n->name) == 0) {
        local_msg_t *lm = lm_new(from, NODE_MSG_ALIAS_SEND, msg, len);
        if (!lm)
            return -ENOMEM;
        lm->to_kind = 2;
        lm->alias = *alias;
        return enqueue_local(n, lm);
    }
    if (!from && !n->net_kernel)
        return -ESHUTDOWN;
    const term_pid_t *fp = from ? &from->pid : &n->net_kernel->pid;
    /* The op depends on the peer's flags; a peer not connected yet is
     * taken to have DFLAG_ALIAS (every OTP 24+ node has it). */
    peer_t *p = find_peer(n, alias->node, 1);
    uint64_t flags = p ? conn_peer_flags(p->conn) : DFLAG_ALIAS;
    term_buf_t b;
    term_buf_init(&b);
    if (dist_put_alias_send(&b, flags, fp, alias) < 0) {
        log_debug("%s: alias send to a node without aliases: dropped", alias->node);
        term_buf_release(&b);
        return 0;
    }
    return send_ctl_buf(n, alias->node, &b, msg, len);
}

int node_on_ctl(node_t *n, node_ctl_cb cb, void *data)
{
    n->ctl_cb = cb;
    n->ctl_data = data;
    return 0;
}

/* ---- Monitors placed by us -------------------------------------------------- */

/* {'DOWN', Ref, process, Obj, Reason} to the watcher. */
static void deliver_down(node_t *n, mon_out_t *m, const void *reason, size_t reason_len)
{
    term_buf_t b;
    term_buf_init(&b);
    term_put_tuple(&b, 5);
    term_put_atom(&b, "DOWN");
    term_put_ref(&b, &m->ref);
    term_put_atom(&b, "process");
    if (m->by_name) {
        term_put_tuple(&b, 2);
        term_put_atom(&b, m->name);
        term_put_atom(&b, m->node);
    } else {
        term_put_pid(&b, &m->pid);
    }
    term_put_raw(&b, reason, reason_len);
    if (b.err == 0) {
        /* Delivered on a later turn, like every local signal: the caller
         * may be inside a callback of the watcher. */
        local_msg_t *lm = lm_new(NULL, NODE_MSG_DOWN, b.data, b.len);
        if (lm) {
            lm->to_kind = 0;
            lm->to_pid = m->watcher->pid;
            if (!m->by_name) {
                lm->has_from = 1;
                lm->from = m->pid;
            }
            enqueue_local(n, lm);
        }
    }
    term_buf_release(&b);
}

static void put_atom_term(term_buf_t *b, const char *atom)
{
    term_buf_init(b);
    term_put_atom(b, atom);
}

int node_monitor(node_t *n, node_mbox_t *watcher, const term_pid_t *pid,
                 const char *to_name, const char *to_node, term_ref_t *ref)
{
    if (!pid && (!to_name || strlen(to_name) >= TERM_ATOM_MAX))
        return -EINVAL;
    const char *target_node = pid ? pid->node : to_node ? to_node : n->name;
    if (strlen(target_node) >= TERM_ATOM_MAX)
        return -EINVAL;
    mon_out_t *m = mem_calloc(1, sizeof *m);
    if (!m)
        return -ENOMEM;
    node_make_ref(n, &m->ref);
    m->watcher = watcher;
    if (pid) {
        m->pid = *pid;
    } else {
        m->by_name = 1;
        strcpy(m->name, to_name);
    }
    strcpy(m->node, target_node);
    *ref = m->ref;
    m->next = n->mons_out;
    n->mons_out = m;
    if (strcmp(target_node, n->name) == 0) {
        node_mbox_t *t = pid ? find_pid(n, pid) : find_name(n, to_name);
        if (!t) {
            n->mons_out = m->next;
            term_buf_t r;
            put_atom_term(&r, "noproc");
            deliver_down(n, m, r.data, r.len);
            term_buf_release(&r);
            mem_free(m);
        }
        return 0;
    }
    /* MONITOR_P {19, FromPid, ToProc, Ref} */
    term_buf_t b;
    term_buf_init(&b);
    term_put_tuple(&b, 4);
    term_put_long(&b, DOP_MONITOR_P);
    term_put_pid(&b, &watcher->pid);
    put_pid_or_name(&b, pid, to_name);
    term_put_ref(&b, &m->ref);
    int rc = send_ctl_buf(n, target_node, &b, NULL, 0);
    if (rc < 0 && rc != -ENOBUFS) {
        n->mons_out = m->next;
        mem_free(m);
        return rc;
    }
    return 0;
}

static mon_out_t *take_mon_out(node_t *n, const term_ref_t *ref)
{
    for (mon_out_t **pp = &n->mons_out; *pp; pp = &(*pp)->next) {
        if (term_ref_eq(&(*pp)->ref, ref)) {
            mon_out_t *m = *pp;
            *pp = m->next;
            return m;
        }
    }
    return NULL;
}

int node_demonitor(node_t *n, const term_ref_t *ref)
{
    mon_out_t *m = take_mon_out(n, ref);
    if (!m)
        return -ENOENT;
    if (strcmp(m->node, n->name) != 0 && find_peer(n, m->node, 0)) {
        term_buf_t b;
        term_buf_init(&b);
        term_put_tuple(&b, 4);
        term_put_long(&b, DOP_DEMONITOR_P);
        term_put_pid(&b, &m->watcher->pid);
        put_pid_or_name(&b, m->by_name ? NULL : &m->pid, m->name);
        term_put_ref(&b, &m->ref);
        send_ctl_buf(n, m->node, &b, NULL, 0);
    }
    mem_free(m);
    return 0;
}

/* Fires DOWN for every local monitor whose target is mb (it closed). */
static void fire_local_monitors(node_t *n, node_mbox_t *mb, const void *reason,
                                size_t reason_len)
{
    mon_out_t **pp = &n->mons_out;
    while (*pp) {
        mon_out_t *m = *pp;
        int hit = strcmp(m->node, n->name) == 0 &&
                  (m->by_name ? (mb->name && strcmp(m->name, mb->name) == 0)
                              : term_pid_eq(&m->pid, &mb->pid));
        if (hit) {
            *pp = m->next;
            deliver_down(n, m, reason, reason_len);
            mem_free(m);
        } else {
            pp = &m->next;
        }
    }
}

void node_mbox_close(node_mbox_t *mb, const void *reason, size_t reason_len)
{
    if (!mb || mb->closed)
        return;
    node_t *n = mb->node;
    term_buf_t normal;
    term_buf_init(&normal);
    if (!reason) {
        term_put_atom(&normal, "normal");
        reason = normal.data;
        reason_len = normal.len;
    }
    /* Tell every process that monitors or links to it, as a BEAM process
     * exit does. */
    for (mon_in_t *m = mb->mons; m; m = m->next)
        send_monitor_exit(n, m->by_name ? NULL : &mb->pid, mb->name, &m->watcher, &m->ref,
                          reason, reason_len);
    for (link_ent_t *l = mb->links; l; l = l->next) {
        if (strcmp(l->pid.node, n->name) == 0)
            continue;
        term_buf_t b;
        term_buf_init(&b);
        term_put_tuple(&b, 4);
        term_put_long(&b, DOP_EXIT);
        term_put_pid(&b, &mb->pid);
        term_put_pid(&b, &l->pid);
        term_put_raw(&b, reason, reason_len);
        send_ctl_buf(n, l->pid.node, &b, NULL, 0);
    }
    fire_local_monitors(n, mb, reason, reason_len);
    /* Monitors it placed go away with it. */
    mon_out_t **pp = &n->mons_out;
    while (*pp) {
        if ((*pp)->watcher == mb) {
            term_ref_t r = (*pp)->ref;
            node_demonitor(n, &r);
            pp = &n->mons_out;
        } else {
            pp = &(*pp)->next;
        }
    }
    term_buf_release(&normal);
    mb->closed = 1;
    mbox_unlink_table(n, mb);
    if (mb == n->net_kernel)
        n->net_kernel = NULL;
    if (mb == n->echo)
        n->echo = NULL;
    if (mb->busy == 0)
        mbox_free(mb);
}

/* The control tuple of mb's exit signal up to its reason, when that is
 * the only remote signal it sends (one remote monitor, no links), so
 * that the frame can be built in front of a reason the caller already
 * holds. 0 with the monitor in *mon, or -1. */
static int exit_ctl_prefix(node_mbox_t *mb, term_buf_t *ctl, mon_in_t **mon)
{
    node_t *n = mb->node;
    mon_in_t *m = mb->mons;
    if (mb->closed || !m || m->next || mb->links || n->stopping ||
        strcmp(m->watcher.node, n->name) == 0)
        return -1;
    term_put_tuple(ctl, 5);
    term_put_long(ctl, DOP_MONITOR_P_EXIT);
    put_pid_or_name(ctl, m->by_name ? NULL : &mb->pid, mb->name);
    term_put_pid(ctl, &m->watcher);
    term_put_ref(ctl, &m->ref);
    if (ctl->err)
        return -1;
    *mon = m;
    return 0;
}

/* Frame head: 4-byte length, pass-through, version (dist_encode()). */
#define EXIT_FRAME_HEAD 6

size_t node_mbox_exit_headroom(node_mbox_t *mb)
{
    term_buf_t ctl;
    mon_in_t *m;
    size_t room = 0;
    term_buf_init(&ctl);
    if (exit_ctl_prefix(mb, &ctl, &m) == 0)
        room = EXIT_FRAME_HEAD + ctl.len;
    term_buf_release(&ctl);
    return room;
}

void node_mbox_close_buf(node_mbox_t *mb, term_buf_t *b, size_t off)
{
    term_buf_t ctl;
    mon_in_t *m;
    peer_t *p;
    if (!mb || mb->closed)
        return;
    node_t *n = mb->node;
    term_buf_init(&ctl);
    if (b->err || off > b->len || exit_ctl_prefix(mb, &ctl, &m) < 0 ||
        EXIT_FRAME_HEAD + ctl.len != off || b->len - 4 > UINT32_MAX ||
        peer_for(n, m->watcher.node, &p) < 0) {
        /* the general way, with a copy */
        term_buf_release(&ctl);
        node_mbox_close(mb, b->data + off, b->len - off);
        return;
    }
    /* Detached first: node_mbox_close() then does the rest (local
     * monitors, monitors it placed) without signalling it a second time. */
    mb->mons = NULL;
    node_mbox_close(mb, b->data + off, b->len - off);
    unsigned char *h = (unsigned char *)b->data;
    uint32_t total = (uint32_t)(b->len - 4);
    h[0] = (unsigned char)(total >> 24);
    h[1] = (unsigned char)(total >> 16);
    h[2] = (unsigned char)(total >> 8);
    h[3] = (unsigned char)total;
    h[4] = DIST_PASS_THROUGH;
    h[5] = TERM_VERSION_MAGIC;
    memcpy(h + EXIT_FRAME_HEAD, ctl.data, ctl.len);
    /* conn_send() takes the buffer (both go through mem.h) */
    metrics_inc(METRICS_MSGS_OUT);
    metrics_add(METRICS_BYTES_OUT, b->len);
    (void)conn_send(p->conn, b->data, b->len);
    term_buf_init(b);
    term_buf_release(&ctl);
    mem_free(m);
}

/* ---- Incoming control messages ------------------------------------------- */

/* ALTACT_SIG_SEND (OTP 28) carries what older ops carry: a message to a
 * pid (as SEND_SENDER), to a name (REG_SEND) or to an alias (ALIAS_SEND),
 * or, with the EXIT flag, an exit signal (as PAYLOAD_EXIT2). Rewrites m
 * into that op; the PRIO flag only orders delivery on BEAM, and etsd's
 * mailboxes take every message in arrival order anyway. An exit to an
 * alias that is not active is dropped, as erts drops it. */
static int altact_as_classic(node_t *n, dist_msg_t *m)
{
    if (m->altact & DIST_ALTACT_EXIT) {
        if (m->altact & DIST_ALTACT_ALIAS) {
            node_mbox_t *mb = find_alias(n, &m->ref);
            if (!mb)
                return -ENOENT;
            m->to_pid = mb->pid;
            m->has_to_pid = 1;
        }
        m->op = DOP_PAYLOAD_EXIT2;
    } else if (m->altact & DIST_ALTACT_NAME) {
        m->op = DOP_REG_SEND;
    } else if (m->altact & DIST_ALTACT_ALIAS) {
        m->op = DOP_ALIAS_SEND;
    } else {
        m->op = DOP_SEND_SENDER;
    }
    return 0;
}

/* Handles one frame. Returns 1 when the frame may wait (conn.c's read
 * coalescing): a message delivered to a bulk mailbox, or one dropped for
 * want of a receiver (nobody waits for it); 0 for everything else (control
 * signals, rpc, calls), whose latency counts. */
static int dispatch(node_t *n, peer_t *p, const char *frame, size_t len)
{
    const char *peer = conn_peer(p->conn);
    dist_msg_t m;
    if (dist_decode(frame, len, &m) < 0) {
        if (++p->bad_frames <= PEER_BAD_FRAME_LOGS)
            log_warn("%s: malformed distribution frame (%zu bytes): dropped%s", peer, len,
                     p->bad_frames == PEER_BAD_FRAME_LOGS ? " (further ones logged at debug)"
                                                          : "");
        else
            log_debug("%s: malformed distribution frame (%zu bytes): dropped", peer, len);
        return 0;
    }
    node_mbox_t *mb = NULL;
    term_buf_t b;
    int bulk;
    if (m.op == DOP_ALTACT_SIG_SEND && altact_as_classic(n, &m) < 0)
        return 0;
    switch (m.op) {
    case DOP_SEND:
    case DOP_SEND_TT:
    case DOP_SEND_SENDER:
    case DOP_SEND_SENDER_TT:
        if (!(mb = find_pid(n, &m.to_pid))) {
            log_debug("%s: message to unknown pid <%u.%u>: dropped", peer, m.to_pid.num,
                      m.to_pid.serial);
            return 1;
        }
        bulk = mb->bulk; /* read first: the callback may close and free mb */
        deliver(mb, m.op == DOP_SEND || m.op == DOP_SEND_TT ? NODE_MSG_SEND
                                                            : NODE_MSG_SEND_SENDER,
                m.has_from ? &m.from : NULL, peer, NULL, NULL, m.msg, m.msg_len);
        return bulk;
    case DOP_REG_SEND:
    case DOP_REG_SEND_TT:
        if (!(mb = find_name(n, m.to_name))) {
            log_debug("%s: message to unregistered name %s: dropped", peer, m.to_name);
            return 1;
        }
        bulk = mb->bulk;
        deliver(mb, NODE_MSG_REG_SEND, &m.from, peer, m.to_name, NULL, m.msg, m.msg_len);
        return bulk;
    case DOP_ALIAS_SEND:
    case DOP_ALIAS_SEND_TT:
        if (!(mb = find_alias(n, &m.ref)))
            return 1;
        bulk = mb->bulk;
        deliver(mb, NODE_MSG_ALIAS_SEND, &m.from, peer, NULL, &m.ref, m.msg, m.msg_len);
        return bulk;
    case DOP_LINK:
        if ((mb = find_pid(n, &m.to_pid))) {
            node_mbox_add_link(mb, &m.from);
        } else {
            /* Linking to a dead process gives an exit with noproc. */
            term_buf_init(&b);
            term_put_tuple(&b, 4);
            term_put_long(&b, DOP_EXIT);
            term_put_pid(&b, &m.to_pid);
            term_put_pid(&b, &m.from);
            term_put_atom(&b, "noproc");
            send_ctl_buf(n, peer, &b, NULL, 0);
        }
        return 0;
    case DOP_UNLINK:
        if ((mb = find_pid(n, &m.to_pid)))
            remove_link(mb, &m.from);
        return 0;
    case DOP_UNLINK_ID:
        if ((mb = find_pid(n, &m.to_pid)))
            remove_link(mb, &m.from);
        /* UNLINK_ID_ACK {36, Id, FromPid, ToPid}: from us to the unlinker. */
        term_buf_init(&b);
        term_put_tuple(&b, 4);
        term_put_long(&b, DOP_UNLINK_ID_ACK);
        term_put_ulong(&b, m.id);
        term_put_pid(&b, &m.to_pid);
        term_put_pid(&b, &m.from);
        send_ctl_buf(n, peer, &b, NULL, 0);
        return 0;
    case DOP_UNLINK_ID_ACK:
    case DOP_GROUP_LEADER:
        return 0;
    case DOP_EXIT:
    case DOP_EXIT_TT:
    case DOP_PAYLOAD_EXIT:
    case DOP_PAYLOAD_EXIT_TT:
    case DOP_EXIT2:
    case DOP_EXIT2_TT:
    case DOP_PAYLOAD_EXIT2:
    case DOP_PAYLOAD_EXIT2_TT:
        if (!(mb = find_pid(n, &m.to_pid)))
            return 0;
        if (m.op == DOP_EXIT || m.op == DOP_EXIT_TT || m.op == DOP_PAYLOAD_EXIT ||
            m.op == DOP_PAYLOAD_EXIT_TT) {
            if (!remove_link(mb, &m.from))
                return 0; /* not linked: BEAM ignores it */
        }
        /* Mailboxes trap exits: the signal becomes a message, never a kill. */
        term_buf_init(&b);
        term_put_tuple(&b, 3);
        term_put_atom(&b, "EXIT");
        term_put_pid(&b, &m.from);
        if (m.reason)
            term_put_raw(&b, m.reason, m.reason_len);
        else
            term_put_atom(&b, "normal");
        if (b.err == 0)
            deliver(mb, NODE_MSG_EXIT, &m.from, peer, NULL, NULL, b.data, b.len);
        term_buf_release(&b);
        return 0;
    case DOP_MONITOR_P: {
        mb = m.has_to_pid ? find_pid(n, &m.to_pid) : find_name(n, m.to_name);
        if (mb && node_mbox_add_monitor(mb, &m.from, &m.ref) == 0) {
            mb->mons->by_name = !m.has_to_pid;
            return 0;
        }
        term_buf_t r;
        put_atom_term(&r, "noproc");
        send_monitor_exit(n, m.has_to_pid ? &m.to_pid : NULL, m.to_name, &m.from, &m.ref,
                          r.data, r.len);
        term_buf_release(&r);
        return 0;
    }
    case DOP_DEMONITOR_P:
        mb = m.has_to_pid ? find_pid(n, &m.to_pid) : find_name(n, m.to_name);
        if (mb) {
            for (mon_in_t **pp = &mb->mons; *pp; pp = &(*pp)->next) {
                if (term_ref_eq(&(*pp)->ref, &m.ref)) {
                    mon_in_t *x = *pp;
                    *pp = x->next;
                    mem_free(x);
                    break;
                }
            }
        }
        return 0;
    case DOP_MONITOR_P_EXIT:
    case DOP_PAYLOAD_MONITOR_P_EXIT: {
        mon_out_t *mo = take_mon_out(n, &m.ref);
        if (mo) {
            if (m.reason)
                deliver_down(n, mo, m.reason, m.reason_len);
            mem_free(mo);
        }
        return 0;
    }
    case DOP_SPAWN_REQUEST:
    case DOP_SPAWN_REQUEST_TT:
    case DOP_SPAWN_REPLY:
    case DOP_SPAWN_REPLY_TT:
        if (n->ctl_cb) {
            n->ctl_cb(n, peer, m.op, m.ctl, m.ctl_len, m.msg, m.msg_len, n->ctl_data);
            return 0;
        }
        log_warn("%s: control message %d with no handler: dropped", peer, m.op);
        return 0;
    default:
        if (++p->bad_frames <= PEER_BAD_FRAME_LOGS)
            log_warn("%s: unknown control message %d: dropped", peer, m.op);
        else
            log_debug("%s: unknown control message %d: dropped", peer, m.op);
        return 0;
    }
}

/* ---- Node events --------------------------------------------------------- */

static void emit(node_t *n, node_event_t ev, const char *peer, const char *reason)
{
    for (sub_t *s = n->subs; s;) {
        sub_t *next = s->next; /* a callback may unsubscribe itself */
        s->cb(n, ev, peer, reason, s->data);
        s = next;
    }
}

int node_subscribe(node_t *n, node_event_cb cb, void *data, int *id)
{
    sub_t *s = mem_calloc(1, sizeof *s);
    if (!s)
        return -ENOMEM;
    s->id = ++n->next_sub;
    s->cb = cb;
    s->data = data;
    /* Append: events reach subscribers in subscription order. */
    sub_t **pp = &n->subs;
    while (*pp)
        pp = &(*pp)->next;
    *pp = s;
    if (id)
        *id = s->id;
    return 0;
}

void node_unsubscribe(node_t *n, int id)
{
    for (sub_t **pp = &n->subs; *pp; pp = &(*pp)->next) {
        if ((*pp)->id == id) {
            sub_t *s = *pp;
            *pp = s->next;
            mem_free(s);
            return;
        }
    }
}

static void finish_waiters(node_t *n, const char *peer, int status)
{
    waiter_t **pp = &n->waiters;
    while (*pp) {
        waiter_t *w = *pp;
        if (strcmp(w->peer, peer) == 0) {
            *pp = w->next;
            if (w->cb)
                w->cb(n, peer, status, w->data);
            mem_free(w);
        } else {
            pp = &w->next;
        }
    }
}

/* Everything that node peer held on us goes when its connection does. */
static void peer_gone(node_t *n, const char *peer)
{
    term_buf_t r;
    put_atom_term(&r, "noconnection");
    mon_out_t **pp = &n->mons_out;
    while (*pp) {
        mon_out_t *m = *pp;
        if (strcmp(m->node, peer) == 0) {
            *pp = m->next;
            deliver_down(n, m, r.data, r.len);
            mem_free(m);
        } else {
            pp = &m->next;
        }
    }
    term_buf_release(&r);
    for (size_t i = 0; i < n->pidtab_size; i++) {
        for (node_mbox_t *mb = n->pidtab[i]; mb; mb = mb->hnext) {
            for (mon_in_t **mp = &mb->mons; *mp;) {
                if (strcmp((*mp)->watcher.node, peer) == 0) {
                    mon_in_t *x = *mp;
                    *mp = x->next;
                    mem_free(x);
                } else {
                    mp = &(*mp)->next;
                }
            }
            for (link_ent_t **lp = &mb->links; *lp;) {
                if (strcmp((*lp)->pid.node, peer) == 0) {
                    link_ent_t *x = *lp;
                    *lp = x->next;
                    mem_free(x);
                } else {
                    lp = &(*lp)->next;
                }
            }
        }
    }
}

/* ---- Connection callbacks --------------------------------------------------- */

/* Gives c the frames a lost simultaneous-connect attempt to its peer left. */
static void adopt_orphans(node_t *n, conn_t *c)
{
    for (orphan_t **pp = &n->orphans; *pp;) {
        orphan_t *o = *pp;
        if (strcmp(o->peer, conn_peer(c)) == 0) {
            *pp = o->next;
            conn_attach_pending(c, o->q);
            mem_free(o);
        } else {
            pp = &o->next;
        }
    }
}

static const char *peer_hs_name(conn_t *c, void *data)
{
    peer_t *p = data;
    node_t *n = p->node;
    const char *name = conn_peer(c);
    if (n->stopping)
        return "not_allowed";
    if (strcmp(name, n->name) == 0)
        return "not_allowed";
    /* next is taken first: conn_close() below frees o (peer_closed). */
    for (peer_t *o = n->peers, *next; o; o = next) {
        next = o->next;
        if (o == p || o->superseded || conn_state(o->conn) == CONN_CLOSED ||
            strcmp(conn_peer(o->conn), name) != 0)
            continue;
        if (o->up)
            return "alive"; /* dist_util do_alive: the peer says if it is really new */
        if (conn_is_initiator(o->conn)) {
            /* Simultaneous connect (net_kernel accept_pending): the node
             * with the greater name keeps its own attempt. */
            if (strcmp(n->name, name) > 0)
                return "nok";
            o->superseded = 1;
            conn_take_pending(c, o->conn);
            log_info("%s: simultaneous connect: taking the incoming connection", name);
            conn_close(o->conn, -EALREADY, "simultaneous connect resolved");
            adopt_orphans(n, c);
            return "ok_simultaneous";
        }
        /* An earlier incoming attempt still in its handshake: replace it.
         * Closing it can free it and other peers (peer_closed), so scan
         * again from the start; it is marked, or gone, either way. */
        o->superseded = 1;
        conn_close(o->conn, -EALREADY, "replaced by a newer connection attempt");
        next = n->peers;
    }
    adopt_orphans(n, c);
    return "ok";
}

static void peer_alive_confirmed(conn_t *c, void *data)
{
    /* Nothing yet: as dist_util does, the old connection is dropped only
     * once the new one has proved the cookie (peer_up), so a stranger
     * using a connected node's name cannot cut that node off. */
    (void)c;
    (void)data;
}

static void peer_up(conn_t *c, void *data)
{
    peer_t *p = data;
    node_t *n = p->node;
    metrics_inc(METRICS_CONN_UP);
    /* A node that came back before we saw its old connection die
     * ('alive' status): the old one goes first, with its nodedown. */
    for (peer_t *o = n->peers; o;) {
        peer_t *next = o->next;
        if (o != p && o->up && conn_state(o->conn) != CONN_CLOSED &&
            strcmp(conn_peer(o->conn), conn_peer(c)) == 0) {
            log_info("%s: reconnected; dropping the old connection", conn_peer(c));
            conn_close(o->conn, 0, "replaced by a new connection");
            next = n->peers; /* the list changed */
        }
        o = next;
    }
    p->up = 1;
    /* dist_util:publish_type/1: a peer is visible only if it published
     * itself; a hidden BEAM node, a remote shell or an ei node did not. */
    p->published = (conn_peer_flags(c) & DFLAG_PUBLISHED) != 0;
    adopt_orphans(n, c);
    log_info("%s: nodeup (%s)", conn_peer(c), conn_is_initiator(c) ? "outgoing" : "incoming");
    emit(n, NODE_UP, conn_peer(c), NULL);
    finish_waiters(n, conn_peer(c), 0);
}

static int peer_frame(conn_t *c, const char *f, size_t len, void *data)
{
    (void)c;
    peer_t *p = data;
    metrics_inc(METRICS_MSGS_IN);
    metrics_add(METRICS_BYTES_IN, len);
    return dispatch(p->node, p, f, len);
}

static void peer_closed(conn_t *c, int was_up, int status, const char *reason, void *data)
{
    peer_t *p = data;
    node_t *n = p->node;
    char name[TERM_ATOM_MAX];
    snprintf(name, sizeof name, "%s", conn_peer(c));
    if (was_up)
        metrics_inc(METRICS_CONN_DOWN);
    for (peer_t **pp = &n->peers; *pp; pp = &(*pp)->next) {
        if (*pp == p) {
            *pp = p->next;
            break;
        }
    }
    int superseded = p->superseded;
    mem_free(p);
    if (status == -EALREADY && !superseded && name[0] && !n->stopping) {
        /* Our attempt lost a simultaneous connect ('nok'): the peer's own
         * connection is coming. Keep what was queued for it. */
        peer_t *other = find_peer(n, name, 0);
        conn_queue_t *q = conn_detach_pending(c);
        if (other) {
            conn_attach_pending(other->conn, q);
        } else if (q) {
            orphan_t *o = mem_calloc(1, sizeof *o);
            if (o) {
                snprintf(o->peer, sizeof o->peer, "%s", name);
                o->q = q;
                o->next = n->orphans;
                n->orphans = o;
            } else {
                conn_queue_free(q);
            }
        }
        return; /* no nodedown, no failure for waiters: the peer's attempt is coming */
    }
    if (was_up) {
        log_info("%s: nodedown: %s", name, reason);
        peer_gone(n, name);
        emit(n, NODE_DOWN, name, reason);
        return;
    }
    if (superseded || !name[0])
        return;
    if (find_peer(n, name, 0))
        return; /* another connection to that node carries on */
    /* A failed setup: no nodedown, but monitors and connect callers learn. */
    peer_gone(n, name);
    finish_waiters(n, name, status < 0 ? status : -ECONNABORTED);
    (void)reason;
}

static const conn_ops_t peer_ops = {
    peer_hs_name, peer_alive_confirmed, peer_up, peer_frame, peer_closed,
};

/* ---- Public connection API ---------------------------------------------- */

int node_connect(node_t *n, const char *peer, node_connect_cb cb, void *data)
{
    char a[HS_NAME_MAX], h[HS_NAME_MAX];
    if (strlen(peer) >= TERM_ATOM_MAX || node_split_name(peer, a, h) < 0)
        return -EINVAL;
    if (strcmp(peer, n->name) == 0)
        return -EINVAL;
    waiter_t *w = mem_calloc(1, sizeof *w);
    if (!w)
        return -ENOMEM;
    strcpy(w->peer, peer);
    w->cb = cb;
    w->data = data;
    if (find_peer(n, peer, 1)) {
        /* Already up: report on a later turn through the local queue's idle. */
        w->ready = 1;
        w->next = n->waiters;
        n->waiters = w;
        lq_start(n);
        return 0;
    }
    if (!find_peer(n, peer, 0)) {
        peer_t *p;
        int rc = start_connect(n, peer, &p);
        if (rc < 0) {
            mem_free(w);
            return rc;
        }
    }
    w->next = n->waiters;
    n->waiters = w;
    return 0;
}

int node_disconnect(node_t *n, const char *peer)
{
    peer_t *p = find_peer(n, peer, 0);
    if (!p)
        return -ENOTCONN;
    conn_close(p->conn, 0, "disconnected by etsd");
    return 0;
}

size_t node_connected(node_t *n, const char **names, size_t max)
{
    size_t k = 0;
    for (peer_t *p = n->peers; p; p = p->next) {
        if (!p->up || conn_state(p->conn) == CONN_CLOSED)
            continue;
        if (k < max)
            names[k] = conn_peer(p->conn);
        k++;
    }
    return k;
}

int node_is_connected(node_t *n, const char *peer)
{
    return find_peer(n, peer, 1) != NULL;
}

int node_peer_published(node_t *n, const char *peer)
{
    peer_t *p = find_peer(n, peer, 1);
    return p ? p->published : -ENOTCONN;
}

/* ---- Built-in mailboxes ---------------------------------------------------- */

/* net_kernel: {'$gen_call', {From, Tag}, {is_auth, _}} -> {Tag, yes}, which is
 * all net_adm:ping/1 needs. */
static void net_kernel_cb(node_mbox_t *mb, const node_msg_t *m, void *data)
{
    node_t *n = data;
    term_reader_t r;
    term_reader_init(&r, m->msg, m->msg_len);
    uint32_t ar;
    char atom[TERM_ATOM_MAX];
    term_pid_t from;
    const char *tag;
    size_t tag_len;
    if (term_get_tuple(&r, &ar) < 0 || ar != 3 || term_get_atom(&r, atom) < 0 ||
        strcmp(atom, "$gen_call") != 0 || term_get_tuple(&r, &ar) < 0 || ar != 2 ||
        term_get_pid(&r, &from) < 0 || term_get_any(&r, &tag, &tag_len) < 0 ||
        term_get_tuple(&r, &ar) < 0 || ar < 1 || term_get_atom(&r, atom) < 0) {
        log_debug("net_kernel: unexpected message from %s: dropped", m->peer);
        return;
    }
    term_buf_t b;
    term_buf_init(&b);
    term_put_tuple(&b, 2);
    term_put_raw(&b, tag, tag_len);
    if (strcmp(atom, "is_auth") == 0)
        term_put_atom(&b, "yes");
    else
        term_put_atom(&b, "error");
    if (b.err == 0)
        node_send(n, mb, &from, b.data, b.len);
    term_buf_release(&b);
}

/* Diagnostic mailboxes for the test suites. A test mailbox (made with
 * {new_mailbox, ReplyTo, Name | undefined} to etsd_echo) understands:
 *   {Pid, Msg}                  Msg is sent to Pid (as etsd_echo does)
 *   {close, Reason}             it closes with exit reason Reason
 *   {monitor, Pid | {Name, Node}, ReplyTo}
 *                               it monitors that process, answers
 *                               {monitored, Ref}, and forwards the DOWN
 *   {link_exit_to, ReplyTo}     EXIT signals it gets are forwarded there
 *   {make_alias, ReplyTo}       answers {alias, Alias}; {Pid, Msg} sent to
 *                               the alias is echoed like any other
 *   {send_alias, Alias, Msg}    Msg is sent to a remote alias */
typedef struct test_mbox {
    struct test_mbox *next;      /* node's list, so node_free() frees them */
    int has_reply;
    term_pid_t reply_to;
} test_mbox_t;

static void test_mbox_free(node_t *n, test_mbox_t *t)
{
    for (test_mbox_t **pp = &n->tests; *pp; pp = &(*pp)->next) {
        if (*pp == t) {
            *pp = t->next;
            break;
        }
    }
    mem_free(t);
}

static void echo_pair(node_t *n, node_mbox_t *mb, term_reader_t *r)
{
    term_pid_t to;
    const char *msg;
    size_t len;
    if (term_get_pid(r, &to) == 0 && term_get_any(r, &msg, &len) == 0)
        node_send(n, mb, &to, msg, len);
}

static void test_mbox_cb(node_mbox_t *mb, const node_msg_t *m, void *data)
{
    test_mbox_t *t = data;
    node_t *n = node_mbox_node(mb);
    if (m->kind == NODE_MSG_DOWN || m->kind == NODE_MSG_EXIT) {
        if (t->has_reply)
            node_send(n, mb, &t->reply_to, m->msg, m->msg_len);
        return;
    }
    term_reader_t r;
    term_reader_init(&r, m->msg, m->msg_len);
    uint32_t ar;
    char atom[TERM_ATOM_MAX];
    if (term_get_tuple(&r, &ar) < 0)
        return;
    if (ar == 2 && term_peek(&r) == TERM_T_PID) {
        echo_pair(n, mb, &r);
        return;
    }
    if (term_get_atom(&r, atom) < 0)
        return;
    if (ar == 2 && strcmp(atom, "close") == 0) {
        const char *reason;
        size_t len;
        if (term_get_any(&r, &reason, &len) == 0) {
            node_mbox_close(mb, reason, len);
            test_mbox_free(n, t);
        }
        return;
    }
    if (ar == 2 && strcmp(atom, "make_alias") == 0) {
        /* {make_alias, ReplyTo} -> {alias, Alias} */
        term_pid_t reply;
        term_ref_t alias;
        if (term_get_pid(&r, &reply) < 0 || node_mbox_alias(mb, &alias) < 0)
            return;
        term_buf_t b;
        term_buf_init(&b);
        term_put_tuple(&b, 2);
        term_put_atom(&b, "alias");
        term_put_ref(&b, &alias);
        if (b.err == 0)
            node_send(n, mb, &reply, b.data, b.len);
        term_buf_release(&b);
        return;
    }
    if (ar == 3 && strcmp(atom, "send_alias") == 0) {
        /* {send_alias, Alias, Msg}: Msg sent to a (remote) alias */
        term_ref_t alias;
        const char *msg;
        size_t len;
        if (term_get_ref(&r, &alias) == 0 && term_get_any(&r, &msg, &len) == 0)
            node_alias_send(n, mb, &alias, msg, len);
        return;
    }
    if (ar == 2 && strcmp(atom, "link_exit_to") == 0) {
        if (term_get_pid(&r, &t->reply_to) == 0)
            t->has_reply = 1;
        return;
    }
    if (ar == 3 && strcmp(atom, "monitor") == 0) {
        term_pid_t target, reply;
        char name[TERM_ATOM_MAX], node[TERM_ATOM_MAX];
        term_ref_t ref;
        int rc;
        if (term_peek(&r) == TERM_T_PID) {
            if (term_get_pid(&r, &target) < 0 || term_get_pid(&r, &reply) < 0)
                return;
            t->reply_to = reply;
            t->has_reply = 1;
            rc = node_monitor(n, mb, &target, NULL, NULL, &ref);
        } else {
            if (term_get_tuple(&r, &ar) < 0 || ar != 2 || term_get_atom(&r, name) < 0 ||
                term_get_atom(&r, node) < 0 || term_get_pid(&r, &reply) < 0)
                return;
            t->reply_to = reply;
            t->has_reply = 1;
            rc = node_monitor(n, mb, NULL, name, node, &ref);
        }
        if (rc == 0) {
            term_buf_t b;
            term_buf_init(&b);
            term_put_tuple(&b, 2);
            term_put_atom(&b, "monitored");
            term_put_ref(&b, &ref);
            if (b.err == 0)
                node_send(n, mb, &t->reply_to, b.data, b.len);
            term_buf_release(&b);
        }
    }
}

/* etsd_echo: {Pid, Msg} -> Msg sent to Pid. {new_mailbox, ReplyTo, Name}
 * makes a test mailbox and answers {mailbox, Pid}. Test aids. */
static void echo_cb(node_mbox_t *mb, const node_msg_t *m, void *data)
{
    node_t *n = data;
    term_reader_t r;
    term_reader_init(&r, m->msg, m->msg_len);
    uint32_t ar;
    if (term_get_tuple(&r, &ar) < 0)
        return;
    if (ar == 2) {
        echo_pair(n, mb, &r);
        return;
    }
    char atom[TERM_ATOM_MAX], name[TERM_ATOM_MAX];
    term_pid_t reply;
    if (ar != 3 || term_get_atom(&r, atom) < 0 || strcmp(atom, "new_mailbox") != 0 ||
        term_get_pid(&r, &reply) < 0 || term_get_atom(&r, name) < 0)
        return;
    test_mbox_t *t = mem_calloc(1, sizeof *t);
    if (!t)
        return;
    node_mbox_t *nb;
    if (node_mbox_new(n, strcmp(name, "undefined") == 0 ? NULL : name, test_mbox_cb, t,
                      &nb) < 0) {
        mem_free(t);
        return;
    }
    t->next = n->tests;
    n->tests = t;
    term_buf_t b;
    term_buf_init(&b);
    term_put_tuple(&b, 2);
    term_put_atom(&b, "mailbox");
    term_put_pid(&b, node_mbox_pid(nb));
    if (b.err == 0)
        node_send(n, nb, &reply, b.data, b.len);
    term_buf_release(&b);
}

/* ---- Lifecycle ------------------------------------------------------------ */

/* Out of file descriptors, accept fails once per pending connection:
 * a flood must not write a line each (log.h). */
static log_limit_t accept_log = LOG_LIMIT_INIT(LOG_WARN, "failed accepts", 20, 60000);

static void on_connection(uv_stream_t *server, int status)
{
    node_t *n = server->data;
    if (status < 0) {
        log_limited(&accept_log, "accept: %s", uv_strerror(status));
        return;
    }
    peer_t *p = mem_calloc(1, sizeof *p);
    if (!p)
        return;
    p->node = n;
    int rc = conn_accept(server, &n->hs_template, &n->lim, &peer_ops, p, &p->conn);
    if (rc < 0) {
        log_limited(&accept_log, "accept: %s", uv_strerror(rc));
        mem_free(p);
        return;
    }
    p->next = n->peers;
    n->peers = p;
}

static void on_registered(epmd_reg_t *r, int status, uint32_t creation, void *data)
{
    (void)r;
    node_t *n = data;
    if (status < 0) {
        n->reg_status = status;
        return;
    }
    if (!n->registered) {
        n->creation = creation;
        n->registered = 1;
    } else if (creation != n->creation) {
        /* EPMD restarted and gave a new creation. Our pids keep the first
         * one: peers already hold them, and the handshake sends it. */
        log_info("epmd: re-registered with creation %u (keeping %u)", creation, n->creation);
    }
}

static void handle_closed(uv_handle_t *h)
{
    node_t *n = h->data;
    n->handles_open--;
}

static void wait_timer_cb(uv_timer_t *t)
{
    *(int *)t->data = 1;
}

static void wait_timer_closed(uv_handle_t *h)
{
    *(int *)h->data = 2;
}

int node_new(uv_loop_t *loop, const node_config_t *cfg, node_t **out)
{
    /* A write to a peer that has just closed must be an error return,
     * not the end of the process (loop.c ignores it too, but a node can
     * live on a loop without loop.c's signal handling). */
    signal(SIGPIPE, SIG_IGN);
    node_t *n = mem_calloc(1, sizeof *n);
    if (!n)
        return -ENOMEM;
    n->loop = loop;
    n->cfg = *cfg;
    int rc = -EINVAL;
    if (strlen(cfg->name) >= sizeof n->name ||
        node_split_name(cfg->name, n->alive, n->host) < 0) {
        log_error("bad node name '%s' (want alive@host)", cfg->name);
        goto fail_node;
    }
    strcpy(n->name, cfg->name);
    n->next_num = 1;
    uint32_t salt = 0;
    uv_random(NULL, NULL, &salt, sizeof salt, 0, NULL);
    n->ref_salt = salt;
    n->lim.ticktime_ms = (cfg->net_ticktime ? cfg->net_ticktime : 60) * 1000;
    n->lim.setup_ms = 7000;
    n->lim.max_frame = cfg->max_frame;
    n->lim.max_queue = cfg->max_queue;
    n->lim.family = cfg->family == AF_INET6 ? AF_INET6 : AF_INET;
    n->lim.tls = cfg->tls;
    n->lim.shortnames = !cfg->longnames;
    if (epmd_check_host(n->host, cfg->longnames, n->lim.family) < 0) {
        log_error("bad node name '%s': with %s names over %s its host is illegal", cfg->name,
                  cfg->longnames ? "long" : "short", n->lim.family == AF_INET6 ? "IPv6" : "IPv4");
        rc = -EINVAL;
        goto fail_node;
    }

    rc = uv_tcp_init(loop, &n->listener);
    if (rc < 0)
        goto fail_node;
    n->listener.data = n;
    n->handles_open++;
    uv_idle_init(loop, &n->idle);
    n->idle.data = n;
    n->handles_open++;

    /* inet6_*: "::" without IPV6_V6ONLY takes IPv4 peers too (dual-stack). */
    struct sockaddr_storage sa;
    if (n->lim.family == AF_INET6)
        uv_ip6_addr("::", cfg->port, (struct sockaddr_in6 *)&sa);
    else
        uv_ip4_addr("0.0.0.0", cfg->port, (struct sockaddr_in *)&sa);
    rc = uv_tcp_bind(&n->listener, (const struct sockaddr *)&sa, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&n->listener, 128, on_connection);
    if (rc < 0) {
        log_error("listen on port %d: %s", cfg->port, uv_strerror(rc));
        goto fail_handles;
    }
    struct sockaddr_storage ss;
    int sl = sizeof ss;
    uv_tcp_getsockname(&n->listener, (struct sockaddr *)&ss, &sl);
    n->port = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                       : ntohs(((struct sockaddr_in *)&ss)->sin_port);

    rc = epmd_register(loop, n->alive, (uint16_t)n->port, n->lim.family, on_registered, n,
                       &n->epmd);
    if (rc < 0)
        goto fail_handles;
    /* Wait (running the loop) for the creation: every pid carries it, so
     * no mailbox can exist before. EPMD may take a moment to start. */
    uv_timer_t wait;
    int expired = 0;
    uv_timer_init(loop, &wait);
    wait.data = &expired;
    uv_timer_start(&wait, wait_timer_cb, 10000, 0);
    while (!n->registered && !n->reg_status && !expired)
        uv_run(loop, UV_RUN_ONCE);
    wait.data = &expired;
    uv_close((uv_handle_t *)&wait, wait_timer_closed);
    while (expired != 2)
        uv_run(loop, UV_RUN_ONCE);
    if (!n->registered) {
        rc = n->reg_status ? n->reg_status : -ETIMEDOUT;
        log_error("epmd: cannot register %s: %s", n->alive,
                  rc == -EADDRINUSE ? "name in use" : uv_strerror(rc));
        epmd_unregister(n->epmd);
        n->epmd = NULL;
        goto fail_handles;
    }
    rc = hs_init(&n->hs_template, HS_ACCEPTOR, n->name, NULL, cfg->cookie, ETSD_DFLAGS,
                 n->creation, 0);
    if (rc < 0)
        goto fail_reg;
    rc = node_mbox_new(n, "net_kernel", net_kernel_cb, n, &n->net_kernel);
    if (rc == 0)
        rc = node_mbox_new(n, "etsd_echo", echo_cb, n, &n->echo);
    if (rc < 0)
        goto fail_reg;
    log_info("node %s up: port %d, creation %u, net_ticktime %u s", n->name, n->port,
             n->creation, cfg->net_ticktime);
    *out = n;
    return 0;

fail_reg:
    epmd_unregister(n->epmd);
    n->epmd = NULL;
fail_handles:
    uv_close((uv_handle_t *)&n->listener, handle_closed);
    uv_close((uv_handle_t *)&n->idle, handle_closed);
    while (n->handles_open > 0)
        uv_run(loop, UV_RUN_ONCE);
    for (size_t i = 0; i < n->pidtab_size; i++)
        while (n->pidtab[i]) {
            node_mbox_t *mb = n->pidtab[i];
            n->pidtab[i] = mb->hnext;
            mbox_free(mb);
        }
    mem_free(n->pidtab);
fail_node:
    mem_free(n);
    return rc;
}

int node_on_shutdown(node_t *n, node_shutdown_cb cb, void *data)
{
    hook_t *h = mem_calloc(1, sizeof *h);
    if (!h)
        return -ENOMEM;
    h->cb = cb;
    h->data = data;
    hook_t **pp = &n->hooks;
    while (*pp)
        pp = &(*pp)->next;
    *pp = h;
    return 0;
}

void node_stop(node_t *n)
{
    if (n->stopping)
        return;
    log_info("node %s stopping", n->name);
    for (hook_t *h = n->hooks; h; h = h->next)
        h->cb(n, h->data);
    /* Deliver what the hooks queued for remote peers: it is already in
     * the connections' write queues; local messages are dropped. */
    n->stopping = 1;
    epmd_unregister(n->epmd);
    n->epmd = NULL;
    while (n->peers) {
        peer_t *p = n->peers;
        conn_close(p->conn, 0, "etsd shutting down"); /* removes p */
        if (n->peers == p) /* defensive: never loop forever */
            n->peers = p->next;
    }
    uv_close((uv_handle_t *)&n->listener, handle_closed);
    uv_close((uv_handle_t *)&n->idle, handle_closed);
}

void node_free(node_t *n)
{
    if (!n)
        return;
    while (n->lq_head) {
        local_msg_t *lm = n->lq_head;
        n->lq_head = lm->next;
        lm_free(lm);
    }
    for (size_t i = 0; i < n->pidtab_size; i++)
        while (n->pidtab[i]) {
            node_mbox_t *mb = n->pidtab[i];
            n->pidtab[i] = mb->hnext;
            mbox_free(mb);
        }
    mem_free(n->pidtab);
    while (n->mons_out) {
        mon_out_t *m = n->mons_out;
        n->mons_out = m->next;
        mem_free(m);
    }
    while (n->tests) {
        struct test_mbox *t = n->tests;
        n->tests = t->next;
        mem_free(t);
    }
    while (n->orphans) {
        orphan_t *o = n->orphans;
        n->orphans = o->next;
        conn_queue_free(o->q);
        mem_free(o);
    }
    while (n->waiters) {
        waiter_t *w = n->waiters;
        n->waiters = w->next;
        mem_free(w);
    }
    while (n->subs) {
        sub_t *s = n->subs;
        n->subs = s->next;
        mem_free(s);
    }
    while (n->hooks) {
        hook_t *h = n->hooks;
        n->hooks = h->next;
        mem_free(h);
    }
    mem_free(n);
}
