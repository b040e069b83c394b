/* node.h: the distributed Erlang node as services see it: identity,
 * mailboxes (pids and registered names), sending, monitors, node events,
 * connections, and the parsed command line. Services never touch sockets;
 * everything runs on the one libuv loop (node_loop()), single-threaded.
 *
 * Term bytes: every message and control term passed in or out of this API
 * is ONE encoded term WITHOUT the version byte 131 (what term_put_*() and
 * term_format() append to a term_buf_t). The node adds and strips 131 on the
 * wire. Returns are 0 or a negative errno (uv_strerror() prints them). */
#ifndef ETSD_NODE_H
#define ETSD_NODE_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "term/term.h"

typedef struct node node_t;
typedef struct node_mbox node_mbox_t;

/* ---- Configuration: the whole command line (DESIGN.md) -------------- */

typedef enum node_fsync {
    NODE_FSYNC_NEVER = 0,
    NODE_FSYNC_ALWAYS,
    NODE_FSYNC_PERIODIC   /* every fsync_ms milliseconds */
} node_fsync_t;

#define NODE_MAX_JOIN 64

typedef struct node_config {
    /* identity */
    char name[TERM_ATOM_MAX];     /* full node name "alive@host" */
    int longnames;                /* 1: --name, 0: --sname */
    char cookie[256];
    /* network */
    int port;                     /* listen port, 0: any */
    unsigned net_ticktime;        /* seconds, default 60 */
    int log_level;                /* a LOG_* value from log.h */
    /* cluster discovery (cluster.c) */
    const char *join[NODE_MAX_JOIN];  /* --join, split at commas */
    size_t njoin;
    const char *dns;              /* --dns NAME or NULL */
    const char *basename;         /* --basename B or NULL */
    uint64_t forget_after_ms;     /* --forget-after: a learned member gone that
                                     long is dropped; default 10 minutes */
    /* replication and PubSub (pg.c, pubsub.c, replicate.c) */
    const char *table;            /* default "users" */
    unsigned keypos;              /* default 1 */
    const char *pubsub;           /* default "MyApp.PubSub" (without "Elixir.") */
    unsigned pool_size;           /* default 1 */
    const char *topic_new;        /* default "new" */
    const char *topic_sync;       /* default "node_up" */
    unsigned sync_delay_ms;       /* default 3000 */
    /* durability (store/) */
    const char *data_dir;         /* NULL: memory only */
    node_fsync_t fsync;           /* default NODE_FSYNC_ALWAYS when data_dir set */
    unsigned fsync_ms;
    /* limits (--max-frame, --max-queue) */
    uint64_t max_frame;           /* incoming frame limit, default 1.5 GiB */
    uint64_t max_queue;           /* per-connection outgoing bytes before a
                                     slow reader is cut off, default 2.5 GiB */
    /* carrier (--proto-dist, --ssl-dist-optfile) */
    int family;                   /* AF_INET (default) or AF_INET6: EPMD,
                                     listening (dual-stack) and connecting */
    struct tls_ctx *tls;          /* TLS for every connection (tls.h), or
                                     NULL; owned by the caller */
} node_config_t;

/* Fills c with the defaults above (name and cookie empty). */
void node_config_defaults(node_config_t *c);

/* ---- Lifecycle -------------------------------------------------------- */

/* Creates the node on loop: listens on cfg->port, registers with EPMD
 * (kept registered as long as the node lives; node_new runs the loop until
 * EPMD has answered with the creation every pid carries, at most 10 s:
 * -ETIMEDOUT, -EADDRINUSE for a name in use), and answers net_kernel
 * is_auth (so net_adm:ping works) and the diagnostic name etsd_echo
 * ({Pid, Msg} is answered with Msg sent to Pid). cfg is copied (its string
 * pointers must stay valid for the node's life). On success *out is new;
 * node_stop() it, run the loop to the end, then node_free() it. */
int node_new(uv_loop_t *loop, const node_config_t *cfg, node_t **out);

/* Clean shutdown: runs the shutdown hooks (node_on_shutdown), unregisters
 * from EPMD, closes every connection (peers see nodedown at once) and every
 * handle the node owns, so uv_run() returns once services have closed
 * theirs. Idempotent. */
void node_stop(node_t *n);

/* Frees a stopped node whose loop has finished. node_free(NULL) is a no-op. */
void node_free(node_t *n);

typedef void (*node_shutdown_cb)(node_t *n, void *data);
/* cb runs once at the start of node_stop(), while connections are still up
 * (so a service can send goodbyes, e.g. pg leave) and must close the
 * service's own timers and handles. Hooks run in registration order. */
int node_on_shutdown(node_t *n, node_shutdown_cb cb, void *data);

/* ---- Identity --------------------------------------------------------- */

uv_loop_t *node_loop(node_t *n);           /* for the services' timers */
const node_config_t *node_config(node_t *n);
const char *node_name(node_t *n);         /* "alive@host" */
uint32_t node_creation(node_t *n);        /* from EPMD; 0 until registered */

/* A new reference of this node (for monitors, call tags, ...). */
void node_make_ref(node_t *n, term_ref_t *out);

/* 1 if pid/ref belongs to this node incarnation. */
int node_is_local_pid(node_t *n, const term_pid_t *pid);

/* ---- Mailboxes -------------------------------------------------------- */

typedef enum node_msg_kind {
    NODE_MSG_SEND = 2,         /* SEND: no sender (from == NULL) */
    NODE_MSG_REG_SEND = 6,     /* REG_SEND to a registered name */
    NODE_MSG_SEND_SENDER = 22, /* SEND_SENDER */
    NODE_MSG_ALIAS_SEND = 33,  /* ALIAS_SEND to an alias of the mailbox */
    NODE_MSG_DOWN = 1000,      /* a monitor this mailbox placed fired; msg is
                                  {'DOWN', Ref, process, Pid | {Name, Node}, Reason}
                                  exactly as BEAM delivers it; from is the
                                  monitored pid when it was a pid, else NULL */
    NODE_MSG_EXIT = 1001       /* EXIT/EXIT2 to this mailbox; msg is
                                  {'EXIT', FromPid, Reason}; never kills it */
} node_msg_kind_t;

/* What came with a message. Every pointer is borrowed and valid only
 * during the callback; copy what you keep. */
typedef struct node_msg {
    node_msg_kind_t kind;
    const term_pid_t *from;   /* sender pid, or NULL when there is none */
    const char *peer;         /* node it came from (this node's name for
                                 local sends) */
    const char *to_name;      /* REG_SEND: the name it was sent to, else NULL */
    const term_ref_t *alias;  /* ALIAS_SEND: the alias, else NULL */
    const char *msg;          /* the message, without version byte */
    size_t msg_len;
} node_msg_t;

typedef void (*node_msg_cb)(node_mbox_t *mb, const node_msg_t *m, void *data);

/* Creates a mailbox with a fresh pid; with name != NULL it is also
 * registered under that atom (-EEXIST if taken). cb runs for each message,
 * on the loop, never re-entrantly from inside a node_send*() call. On
 * success *out belongs to the node until node_mbox_close(). */
int node_mbox_new(node_t *n, const char *name, node_msg_cb cb, void *data,
                  node_mbox_t **out);

/* The mailbox's pid / registered name (NULL if none) / owner data.
 * Valid while the mailbox is open. */
const term_pid_t *node_mbox_pid(const node_mbox_t *mb);
const char *node_mbox_name(const node_mbox_t *mb);
node_t *node_mbox_node(const node_mbox_t *mb);

/* Marks mb as bulk (bulk != 0) or not (the default). A bulk mailbox takes
 * fire-and-forget traffic whose sender waits for nothing, such as PubSub's
 * {forward_to_local, ...}: its messages may be held back a little so that
 * they are read from the socket in batches. When every frame of a read
 * from a peer was a message to a bulk mailbox (at least two of them, or
 * one right after such a pause), the node stops reading that connection
 * for at most a millisecond, so the next read hands over a whole batch;
 * any other frame (rpc, calls, monitors, links) in a read keeps reading
 * going at once, and a message after a quiet spell is never held back.
 * Everything from that peer waits alike, so order is kept. Never mark a
 * mailbox that answers calls or rpc. */
void node_mbox_set_bulk(node_mbox_t *mb, int bulk);

/* Closes the mailbox as a process exit: every remote monitor of it gets
 * MONITOR_P_EXIT with Reason, every link gets EXIT with Reason, monitors
 * it placed are removed (DEMONITOR_P sent), the name is freed. reason is an
 * encoded term (NULL means 'normal'). Safe inside its own callback: no
 * callback runs for it afterwards. */
void node_mbox_close(node_mbox_t *mb, const void *reason, size_t reason_len);

/* node_mbox_close() for a big reason, without copying it: reason is the
 * term in b->data[off..b->len), and the off bytes before it are free.
 * When off equals node_mbox_exit_headroom(mb) (asked before building b,
 * and still true: the monitors did not change), the exit frame is built
 * in those bytes and b's data is handed to the connection (b is left
 * empty); otherwise this is node_mbox_close() and b is left as it was.
 * Either way the caller still releases b. */
void node_mbox_close_buf(node_mbox_t *mb, term_buf_t *b, size_t off);
/* Bytes node_mbox_close_buf() needs in front of the reason, or 0 when mb
 * has other than exactly one remote monitor (then it copies anyway). */
size_t node_mbox_exit_headroom(node_mbox_t *mb);

/* Records that pid `watcher` monitors mb under ref, as if MONITOR_P had
 * arrived (rpc uses it for spawn_request's monitor option, with the
 * request id as ref). */
int node_mbox_add_monitor(node_mbox_t *mb, const term_pid_t *watcher,
                          const term_ref_t *ref);
/* Records a link to pid, as if LINK had arrived (spawn_request's link). */
int node_mbox_add_link(node_mbox_t *mb, const term_pid_t *pid);

/* Creates an alias of mb: ALIAS_SEND to *out is delivered to mb with kind
 * NODE_MSG_ALIAS_SEND. The alias lives until the mailbox closes. */
int node_mbox_alias(node_mbox_t *mb, term_ref_t *out);

/* ---- Sending ---------------------------------------------------------- */
/* from may be NULL (SEND without sender). msg is copied. A message to a
 * node that is not connected starts a connection (as BEAM does) and is
 * queued until the handshake ends; it is dropped if that fails. A message
 * to this node is delivered on a later loop turn. Errors: -ENOMEM, -EINVAL
 * (bad node name), -ENOBUFS (peer's queue over its limit: it is being cut
 * off). A message to a missing local pid or name is dropped with 0, as BEAM
 * does. */
int node_send(node_t *n, node_mbox_t *from, const term_pid_t *to,
              const void *msg, size_t len);
/* REG_SEND {Name, Node} ! Msg. to_node NULL means this node. */
int node_reg_send(node_t *n, node_mbox_t *from, const char *to_name,
                  const char *to_node, const void *msg, size_t len);
/* ALIAS_SEND Alias ! Msg (the alias's node is taken from the ref). */
int node_alias_send(node_t *n, node_mbox_t *from, const term_ref_t *alias,
                    const void *msg, size_t len);

/* Sends a raw control message (and optional message, msg == NULL for none)
 * to a connected or connectable node, e.g. SPAWN_REPLY from rpc. ctl is the
 * control tuple without version byte. Ordered with every other signal on
 * that connection. */
int node_send_ctl(node_t *n, const char *to_node, const void *ctl,
                  size_t ctl_len, const void *msg, size_t msg_len);

/* The spawn control messages, which the node does not handle itself
 * (SPAWN_REQUEST 29 and 30, SPAWN_REPLY 31 and 32), go to this hook, once
 * per message; op is the control tuple's first element. Without a hook
 * they are logged and dropped; operations unknown to the node are always
 * logged and dropped. ctl/msg are borrowed for the call; msg is NULL when
 * absent. */
typedef void (*node_ctl_cb)(node_t *n, const char *peer, int op,
                            const char *ctl, size_t ctl_len,
                            const char *msg, size_t msg_len, void *data);
int node_on_ctl(node_t *n, node_ctl_cb cb, void *data);

/* ---- Monitors etsd places --------------------------------------------- */

/* watcher monitors the remote process pid (or the registered name
 * to_name on to_node when pid is NULL). *ref is set to the monitor
 * reference. When it fires, watcher gets a NODE_MSG_DOWN message
 * {'DOWN', Ref, process, Obj, Reason}: Reason as the peer sent it, noproc
 * if it did not exist, noconnection when the connection is lost or cannot
 * be made. A monitor on a local pid/name fires only when that mailbox
 * closes (noproc at once if absent). */
int node_monitor(node_t *n, node_mbox_t *watcher, const term_pid_t *pid,
                 const char *to_name, const char *to_node, term_ref_t *ref);
/* Removes the monitor (sends DEMONITOR_P); no DOWN comes after this.
 * -ENOENT if unknown or already fired. */
int node_demonitor(node_t *n, const term_ref_t *ref);

/* ---- Node events and connections -------------------------------------- */

typedef enum node_event {
    NODE_UP = 1,
    NODE_DOWN = 2
} node_event_t;

/* cb runs for every connection made (after the handshake) or lost (socket
 * closed, tick timeout, shutdown). reason is a short text ("connection
 * closed", "net_tick_timeout", ...), NULL for NODE_UP. *id gets a handle for
 * node_unsubscribe(). */
typedef void (*node_event_cb)(node_t *n, node_event_t ev, const char *peer,
                              const char *reason, void *data);
int node_subscribe(node_t *n, node_event_cb cb, void *data, int *id);
void node_unsubscribe(node_t *n, int id);

/* Connects to a node by name ("alive@host"): EPMD PORT_PLEASE2, then the
 * handshake. cb (may be NULL) runs once: status 0 when the node is up (at
 * once on a later loop turn if it already is), or a negative errno
 * (-ECONNREFUSED, -EHOSTUNREACH, -ENOENT when EPMD does not know the name,
 * -EACCES for a refused handshake, ...).
 * A failed attempt raises no NODE_DOWN. */
typedef void (*node_connect_cb)(node_t *n, const char *peer, int status,
                                void *data);
int node_connect(node_t *n, const char *peer, node_connect_cb cb, void *data);

/* Closes the connection to peer (NODE_DOWN follows), -ENOTCONN if none. */
int node_disconnect(node_t *n, const char *peer);

/* Fills names[0..max) with the connected nodes (handshake done) and
 * returns how many there are (may exceed max). The strings are valid until
 * the next loop turn. */
size_t node_connected(node_t *n, const char **names, size_t max);

/* 1 if peer is connected (handshake done). */
int node_is_connected(node_t *n, const char *peer);

/* 1 if peer is connected and published itself (DFLAG_PUBLISHED in its
 * handshake flags: a visible BEAM node), 0 if it is connected but hidden
 * (a BEAM node started with -hidden, a remote shell, an ei or other C
 * node), -ENOTCONN if it is not connected. BEAM treats a hidden peer as
 * dist_util:publish_type/1 says: pg sends it no discover and nothing
 * reconnects to it; services do the same. */
int node_peer_published(node_t *n, const char *peer);

#endif
