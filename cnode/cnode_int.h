/* cnode_int.h: helpers shared inside cnode/: the byte buffer, distribution
 * flags, the pure handshake state machine, EPMD message codecs, the frame
 * parser, and the pieces of conn/dist/node that talk to each other.
 * Services use node.h, not this. */
#ifndef ETSD_CNODE_INT_H
#define ETSD_CNODE_INT_H

#include <stddef.h>
#include <stdint.h>

/* ---- Byte buffer (no term/ dependency, so pure parts test alone) ---- */

typedef struct cbuf {
    char *data;   /* owned (mem_alloc) */
    size_t len, cap;
} cbuf_t;

void cbuf_init(cbuf_t *b);
void cbuf_release(cbuf_t *b);
/* Appends n bytes; 0 or -ENOMEM (b unchanged on failure). */
int cbuf_put(cbuf_t *b, const void *p, size_t n);
int cbuf_put8(cbuf_t *b, uint8_t v);
int cbuf_put16(cbuf_t *b, uint16_t v);   /* big endian, as on the wire */
int cbuf_put32(cbuf_t *b, uint32_t v);
int cbuf_put64(cbuf_t *b, uint64_t v);
/* Drops the first n bytes. */
void cbuf_consume(cbuf_t *b, size_t n);

static inline uint16_t get16(const void *p)
{
    const uint8_t *b = p;
    return (uint16_t)((b[0] << 8) | b[1]);
}
static inline uint32_t get32(const void *p)
{
    const uint8_t *b = p;
    return ((uint32_t)b[0] << 24) | ((uint32_t)b[1] << 16) | ((uint32_t)b[2] << 8) | b[3];
}
static inline uint64_t get64(const void *p)
{
    return ((uint64_t)get32(p) << 32) | get32((const uint8_t *)p + 4);
}

/* ---- Distribution flags (kernel/include/dist.hrl, OTP 25) ----------- */

#define DFLAG_PUBLISHED              0x01ULL
#define DFLAG_ATOM_CACHE             0x02ULL
#define DFLAG_EXTENDED_REFERENCES    0x04ULL
#define DFLAG_DIST_MONITOR           0x08ULL
#define DFLAG_FUN_TAGS               0x10ULL
#define DFLAG_DIST_MONITOR_NAME      0x20ULL
#define DFLAG_HIDDEN_ATOM_CACHE      0x40ULL
#define DFLAG_NEW_FUN_TAGS           0x80ULL
#define DFLAG_EXTENDED_PIDS_PORTS    0x100ULL
#define DFLAG_EXPORT_PTR_TAG         0x200ULL
#define DFLAG_BIT_BINARIES           0x400ULL
#define DFLAG_NEW_FLOATS             0x800ULL
#define DFLAG_UNICODE_IO             0x1000ULL
#define DFLAG_DIST_HDR_ATOM_CACHE    0x2000ULL
#define DFLAG_SMALL_ATOM_TAGS        0x4000ULL
#define DFLAG_UTF8_ATOMS             0x10000ULL
#define DFLAG_MAP_TAG                0x20000ULL
#define DFLAG_BIG_CREATION           0x40000ULL
#define DFLAG_SEND_SENDER            0x80000ULL
#define DFLAG_BIG_SEQTRACE_LABELS    0x100000ULL
#define DFLAG_EXIT_PAYLOAD           0x400000ULL
#define DFLAG_FRAGMENTS              0x800000ULL
#define DFLAG_HANDSHAKE_23           0x1000000ULL
#define DFLAG_UNLINK_ID              0x2000000ULL
#define DFLAG_MANDATORY_25_DIGEST    0x4000000ULL
#define DFLAG_SPAWN                  (1ULL << 32)
#define DFLAG_NAME_ME                (2ULL << 32)
#define DFLAG_V4_NC                  (4ULL << 32)
#define DFLAG_ALIAS                  (8ULL << 32)
/* OTP 29's dist.hrl: "only used internally"; a node that advertises it is
 * refused (PROTOCOL.md section 2). Never advertised. */
#define DFLAG_LOCAL_EXT              (0x10ULL << 32)
#define DFLAG_ALTACT_SIG             (0x20ULL << 32) /* OTP 28 */
#define DFLAG_NATIVE_RECORDS         (0x40ULL << 32) /* OTP 29, not spoken */

/* dist.hrl MANDATORY_DFLAGS_25: a peer without all of these is refused,
 * as OTP 25 refuses it. */
#define DFLAG_MANDATORY_25                                                   \
    (DFLAG_EXTENDED_REFERENCES | DFLAG_FUN_TAGS | DFLAG_EXTENDED_PIDS_PORTS | \
     DFLAG_NEW_FUN_TAGS | DFLAG_EXPORT_PTR_TAG | DFLAG_BIT_BINARIES |         \
     DFLAG_NEW_FLOATS | DFLAG_UTF8_ATOMS | DFLAG_MAP_TAG |                    \
     DFLAG_BIG_CREATION | DFLAG_HANDSHAKE_23)

/* What etsd advertises: PROTOCOL.md section 2. Hidden (no PUBLISHED), no
 * atom cache (frames arrive as pass-through 112), no FRAGMENTS. */
#define ETSD_DFLAGS                                                          \
    (DFLAG_MANDATORY_25 | DFLAG_MANDATORY_25_DIGEST | DFLAG_DIST_MONITOR |    \
     DFLAG_DIST_MONITOR_NAME | DFLAG_SMALL_ATOM_TAGS | DFLAG_V4_NC |          \
     DFLAG_UNLINK_ID | DFLAG_SPAWN | DFLAG_ALIAS | DFLAG_ALTACT_SIG)

/* ---- Handshake: a pure state machine (erl_dist_protocol, version 6) -- */

#define HS_MAX_MSG  2048   /* no handshake message is longer; more is -EPROTO */
#define HS_NAME_MAX 256

typedef enum hs_role { HS_INITIATOR = 1, HS_ACCEPTOR = 2 } hs_role_t;

typedef enum hs_event {
    HS_EV_NONE = 0,   /* consumed bytes, nothing to decide; feed more */
    HS_EV_NAME,       /* acceptor: the peer's name arrived (peer_name,
                         peer_flags, peer_creation set); call
                         hs_accept_status() before feeding more */
    HS_EV_DONE,       /* handshake complete; bytes after *used are frames */
    HS_EV_FAILED      /* status said no (nok, not_allowed, false): flush
                         out, then close; reason in hs->why */
} hs_event_t;

typedef enum hs_state {
    HS_S_SEND_NAME = 0,     /* initiator before hs_start() */
    HS_S_RECV_STATUS,       /* initiator */
    HS_S_RECV_ALIVE_ANSWER, /* acceptor after 'salive' */
    HS_S_RECV_CHALLENGE,    /* initiator */
    HS_S_RECV_ACK,          /* initiator */
    HS_S_RECV_NAME,         /* acceptor */
    HS_S_NAME_DECISION,     /* acceptor: waiting for hs_accept_status() */
    HS_S_RECV_REPLY,        /* acceptor (also takes 'c' complement) */
    HS_S_DONE,
    HS_S_FAILED
} hs_state_t;

typedef struct hs {
    hs_role_t role;
    hs_state_t state;
    char this_name[HS_NAME_MAX];
    char peer_name[HS_NAME_MAX];   /* initiator: expected; acceptor: as sent */
    char cookie[256];
    uint64_t this_flags, peer_flags;
    uint32_t this_creation, peer_creation;
    uint32_t this_challenge;       /* the challenge we send */
    uint32_t peer_challenge;       /* the challenge we answer */
    int old_name_msg;              /* acceptor: peer sent v5 'n' */
    const char *why;               /* static text for the last failure */
    /* a handshake message being reassembled: 2-byte length then body */
    uint8_t msg[HS_MAX_MSG + 2];
    size_t msg_have;
} hs_t;

/* Sets up hs. peer is the expected node for an initiator, ignored for an
 * acceptor. challenge is a random 32-bit number from the caller.
 * -EINVAL for a name or cookie too long. */
int hs_init(hs_t *hs, hs_role_t role, const char *this_name,
            const char *peer, const char *cookie, uint64_t flags,
            uint32_t creation, uint32_t challenge);

/* Initiator: appends the 'N' name message to out. */
int hs_start(hs_t *hs, cbuf_t *out);

/* Feeds received bytes. Consumes at most up to the end of one handshake
 * message that produces an event (so bytes after DONE stay unconsumed),
 * sets *used, appends any reply to out and sets *ev. Returns 0 or
 * -EPROTO (malformed, wrong peer name, missing flags), -EACCES (wrong
 * cookie), -EALREADY (initiator got 'nok': a simultaneous connect the
 * other side wins), -ENOMEM. Every error leaves the state HS_S_FAILED and
 * hs->why set; the caller closes. */
int hs_feed(hs_t *hs, const void *data, size_t len, size_t *used,
            cbuf_t *out, hs_event_t *ev);

/* Acceptor, after HS_EV_NAME: status is "ok", "ok_simultaneous", "nok",
 * "not_allowed" or "alive" (dist_util.erl's answers). Appends the status
 * and, for ok*, the challenge to out. With "nok"/"not_allowed" the state
 * becomes FAILED (flush and close). With "alive" the peer's 'strue' makes
 * the handshake go on (the caller must then drop its old connection) and
 * 'sfalse' fails it. */
int hs_accept_status(hs_t *hs, const char *status, cbuf_t *out);

/* A peer's flag word as dist_util (OTP 25+) reads it: with
 * DFLAG_MANDATORY_25_DIGEST set, every flag of DFLAG_MANDATORY_25 is
 * taken as set too. hs_feed() applies it to both 'N' messages. */
uint64_t hs_expand_flags(uint64_t flags);

/* MD5(cookie ++ decimal(challenge)), as dist_util:gen_digest/2. */
void hs_digest(const char *cookie, uint32_t challenge, uint8_t out[16]);

/* 0 if the 16 bytes are equal; time independent of where they differ. */
int hs_digest_equal(const uint8_t a[16], const uint8_t b[16]);

/* ---- EPMD message codecs (erl_dist_protocol section "EPMD") --------- */

#define EPMD_ALIVE2_REQ    120
#define EPMD_ALIVE2_RESP   121
#define EPMD_ALIVE2_X_RESP 118
#define EPMD_PORT2_REQ     122
#define EPMD_PORT2_RESP    119
#define EPMD_NAMES_REQ     110

#define EPMD_NODE_HIDDEN 72
#define EPMD_NODE_NORMAL 77

/* Appends a complete ALIVE2_REQ (with its 2-byte length) for alive name
 * (the part before @), port, node type, versions 6..6. */
int epmd_encode_alive2(cbuf_t *out, const char *alive, uint16_t port, int node_type);
/* Parses an ALIVE2_X_RESP or ALIVE2_RESP at the start of p. Returns 1 and
 * sets *result and *creation when complete (*used bytes), 0 when more bytes
 * are needed, -EPROTO for anything else. */
int epmd_decode_alive2_resp(const void *p, size_t len, size_t *used,
                            int *result, uint32_t *creation);
/* Appends a PORT_PLEASE2_REQ for alive name. */
int epmd_encode_port2(cbuf_t *out, const char *alive);

typedef struct epmd_port_info {
    int result;              /* 0: found */
    uint16_t port;
    int node_type, protocol;
    uint16_t high, low;
    char name[HS_NAME_MAX];
} epmd_port_info_t;

/* Parses a PORT2_RESP; 1 complete, 0 need more, -EPROTO. A result other
 * than 0 is complete after 2 bytes. */
int epmd_decode_port2_resp(const void *p, size_t len, epmd_port_info_t *info);
/* Appends a NAMES_REQ. */
int epmd_encode_names(cbuf_t *out);
/* Parses a complete NAMES answer (the stream up to EOF): calls cb for each
 * "name N at port P" line. -EPROTO if shorter than the 4-byte port. */
int epmd_decode_names(const void *p, size_t len,
                      void (*cb)(const char *name, int port, void *data),
                      void *data);

/* Splits "alive@host" into its parts; -EINVAL if there is no single '@'
 * or either side is empty or too long. */
int node_split_name(const char *node, char alive[HS_NAME_MAX], char host[HS_NAME_MAX]);

/* ---- Frames: 4-byte big-endian length, then the body ---------------- */

typedef struct frame_parser {
    uint64_t max;       /* larger declared lengths are -EMSGSIZE */
    uint8_t hdr[4];
    size_t hdr_have;
    int in_body;
    char *body;         /* owned, while assembling a frame split over reads */
    size_t body_len, body_have, body_cap;
} frame_parser_t;

void frame_parser_init(frame_parser_t *fp, uint64_t max);
void frame_parser_release(frame_parser_t *fp);

/* Feeds bytes. Returns 1 when a frame is complete: *frame and *flen point to
 * its body (len 0 is a tick), valid until the next call; *used says how
 * much input was consumed. Returns 0 when all input was consumed without
 * completing a frame. -EMSGSIZE for a length over max, -ENOMEM. The
 * buffer grows with the bytes that actually arrive, so a false length
 * costs no memory. */
int frame_feed(frame_parser_t *fp, const void *data, size_t len, size_t *used,
               const char **frame, size_t *flen);

/* ---- Distribution messages (dist.c) --------------------------------- */

#include "term/term.h"

/* Control message operations (erl_dist_protocol "Protocol between
 * connected nodes"). */
enum {
    DOP_LINK = 1, DOP_SEND = 2, DOP_EXIT = 3, DOP_UNLINK = 4,
    DOP_REG_SEND = 6, DOP_GROUP_LEADER = 7, DOP_EXIT2 = 8,
    DOP_SEND_TT = 12, DOP_EXIT_TT = 13, DOP_REG_SEND_TT = 16, DOP_EXIT2_TT = 18,
    DOP_MONITOR_P = 19, DOP_DEMONITOR_P = 20, DOP_MONITOR_P_EXIT = 21,
    DOP_SEND_SENDER = 22, DOP_SEND_SENDER_TT = 23,
    DOP_PAYLOAD_EXIT = 24, DOP_PAYLOAD_EXIT_TT = 25,
    DOP_PAYLOAD_EXIT2 = 26, DOP_PAYLOAD_EXIT2_TT = 27,
    DOP_PAYLOAD_MONITOR_P_EXIT = 28,
    DOP_SPAWN_REQUEST = 29, DOP_SPAWN_REQUEST_TT = 30, DOP_SPAWN_REPLY = 31,
    DOP_SPAWN_REPLY_TT = 32, DOP_ALIAS_SEND = 33, DOP_ALIAS_SEND_TT = 34,
    DOP_UNLINK_ID = 35, DOP_UNLINK_ID_ACK = 36,
    DOP_ALTACT_SIG_SEND = 37  /* OTP 28, peers with DFLAG_ALTACT_SIG */
};

/* ALTACT_SIG_SEND {37, Flags, SenderPid, To[, Token]} flag bits (erts
 * dist.h ERTS_DOP_ALTACT_SIG_FLG_*): To is an alias with ALIAS, a
 * registered name with NAME, else a pid; the Token element is there with
 * TOKEN; with EXIT the payload is an exit reason, not a message. */
#define DIST_ALTACT_PRIO  0x01u
#define DIST_ALTACT_TOKEN 0x02u
#define DIST_ALTACT_ALIAS 0x04u
#define DIST_ALTACT_NAME  0x08u
#define DIST_ALTACT_EXIT  0x10u

#define DIST_PASS_THROUGH 112

/* One decoded frame. Pointers point into the frame. Which fields are set
 * depends on op; the rest are zero. */
typedef struct dist_msg {
    int op;
    const char *ctl;          /* control tuple, without version byte */
    size_t ctl_len;
    const char *msg;          /* message term without version byte, or NULL */
    size_t msg_len;
    int has_from;             /* from is set */
    term_pid_t from;
    int has_to_pid;
    term_pid_t to_pid;
    char to_name[TERM_ATOM_MAX]; /* REG_SEND target, or MONITOR_P by name */
    int has_ref;
    term_ref_t ref;           /* monitor ref, alias (ALIAS_SEND) */
    const char *reason;       /* EXIT/EXIT2/MONITOR_P_EXIT reason */
    size_t reason_len;
    uint64_t id;              /* UNLINK_ID(_ACK) id */
    uint32_t altact;          /* ALTACT_SIG_SEND flags (DIST_ALTACT_*) */
} dist_msg_t;

/* Decodes a frame body (after the 4-byte length, non-empty): 112, then
 * 131 + control tuple, then optionally 131 + message. Known operations get
 * their fields checked and filled in; an unknown op is returned with only
 * op/ctl/msg set. -EPROTO for a malformed frame (not pass-through, bad
 * control tuple, wrong field types, trailing bytes). */
int dist_decode(const char *frame, size_t len, dist_msg_t *m);

/* Appends a complete frame (4-byte length, 112, 131 ctl, [131 msg]) to
 * out. msg NULL: control only. -EMSGSIZE over 4 GiB, -ENOMEM. */
int dist_encode(cbuf_t *out, const void *ctl, size_t ctl_len, const void *msg,
                size_t msg_len);

/* Appends the control tuple (no version byte) that sends a message from
 * `from` to a process alias on a peer with flag word peer_flags:
 * ALTACT_SIG_SEND {37, ALIAS, From, Alias} to a peer with
 * DFLAG_ALTACT_SIG, else ALIAS_SEND {33, From, Alias} to a peer with
 * DFLAG_ALIAS. -ENOTSUP (b untouched) for a peer with neither: erts drops
 * such a message. */
int dist_put_alias_send(term_buf_t *b, uint64_t peer_flags, const term_pid_t *from,
                        const term_ref_t *alias);

/* ---- A peer connection (conn.c) ------------------------------------- */

#include <uv.h>

typedef struct conn conn_t;

typedef enum conn_state {
    CONN_RESOLVING = 1, /* initiator: EPMD look-up */
    CONN_CONNECTING,    /* initiator: TCP connect */
    CONN_HANDSHAKE,
    CONN_UP,
    CONN_CLOSED
} conn_state_t;

/* What a connection tells its owner (node.c). Every callback gets the
 * owner's data pointer. */
typedef struct conn_ops {
    /* Acceptor: the peer's name arrived; return the status to answer:
     * "ok", "ok_simultaneous", "nok", "not_allowed" or "alive". */
    const char *(*hs_name)(conn_t *c, void *data);
    /* Acceptor with "alive": the peer confirmed; the owner drops the old
     * connection. */
    void (*hs_alive_confirmed)(conn_t *c, void *data);
    /* Handshake done; queued frames are flushed after this returns. */
    void (*up)(conn_t *c, void *data);
    /* One non-tick frame; borrowed for the call. Returns nonzero when the
     * frame may wait (a message nobody waits on, see node_mbox_set_bulk()):
     * after a read whose frames (at least two, ticks not counted) all may
     * wait, the connection stops reading for CONN_BULK_PAUSE_MS, so the
     * next read takes a larger batch (and reads right after a pause go on
     * pausing, see CONN_BULK_STREAK_MS). 0 keeps reading at once. */
    int (*frame)(conn_t *c, const char *p, size_t n, void *data);
    /* The connection is gone: status 0 when it was up, else the negative
     * errno of the failed setup; reason is text for logs. Called once;
     * the conn is freed after (do not touch it again). */
    void (*closed)(conn_t *c, int was_up, int status, const char *reason, void *data);
} conn_ops_t;

typedef struct conn_limits {
    unsigned ticktime_ms;   /* net_ticktime in milliseconds */
    unsigned setup_ms;      /* handshake time limit (BEAM net_setuptime: 7 s) */
    uint64_t max_frame;
    uint64_t max_queue;
    int family;             /* AF_INET (inet_*) or AF_INET6 (inet6_*): EPMD
                               look-ups and connects use it; 0 is AF_INET */
    struct tls_ctx *tls;    /* inet_tls/inet6_tls: every connection runs
                               TLS (tls.h), borrowed; NULL: plain TCP */
    int shortnames;         /* -sname: peer host names follow its rules
                               (epmd_check_host()); 0: long names */
} conn_limits_t;

/* Accepts one pending connection from server and starts the acceptor
 * handshake. On success *out is new and owned by its callbacks. */
int conn_accept(uv_stream_t *server, const hs_t *hs_template,
                const conn_limits_t *lim, const conn_ops_t *ops, void *data,
                conn_t **out);

/* Starts connecting to node peer: EPMD PORT_PLEASE2 at its host, TCP,
 * initiator handshake. hs_template carries our name, cookie, flags and
 * creation. On success *out is new; ops->closed runs if it fails. */
int conn_connect(uv_loop_t *loop, const char *peer, const hs_t *hs_template,
                 const conn_limits_t *lim, const conn_ops_t *ops, void *data,
                 conn_t **out);

/* Runs a connection on an already connected socket fd (taken over, e.g.
 * one end of a socketpair in unit tests): the handshake in role (an
 * initiator expects peer), then frames, exactly as for a TCP peer. */
int conn_open_fd(uv_loop_t *loop, uv_os_sock_t fd, hs_role_t role, const char *peer,
                 const hs_t *hs_template, const conn_limits_t *lim, const conn_ops_t *ops,
                 void *data, conn_t **out);

/* Test hook: stops reading and ticking, as a frozen (SIGSTOPped) peer
 * would; the connection stays open. A read pause running meanwhile ends
 * without restarting reading. */
void conn_freeze(conn_t *c);

/* How long a connection stops reading after a read of frames that all may
 * wait (conn_ops_t.frame). Bounds the extra latency of any frame. */
#define CONN_BULK_PAUSE_MS 1
/* Once a read of at least two such frames started pausing, a read that
 * comes within this long after a pause ended and holds only frames that
 * may wait pauses again even with a single frame (a streak); a frame that
 * may not wait ends it. */
#define CONN_BULK_STREAK_MS 10

/* 1 while c's reading is paused for coalescing (the pause timer is
 * pending), else 0. For tests and diagnostics. */
int conn_read_paused(const conn_t *c);

/* Queues a complete frame (4-byte length included) taking ownership of
 * buf (a mem_alloc'd block; freed even on error). Before the handshake
 * ends it waits in order. -ENOBUFS when the peer's queue passes max_queue:
 * the connection is then closed as a slow reader. -ENOTCONN when closed. */
int conn_send(conn_t *c, char *buf, size_t len);

/* Closes with a reason for the log (static text). Idempotent. ops->closed
 * runs before this returns. */
void conn_close(conn_t *c, int status, const char *reason);

const char *conn_peer(const conn_t *c);   /* "" until known (acceptor) */
conn_state_t conn_state(const conn_t *c);
int conn_is_initiator(const conn_t *c);
uint32_t conn_peer_creation(const conn_t *c);
uint64_t conn_peer_flags(const conn_t *c);
uint64_t conn_queued(const conn_t *c);

/* Moves the frames queued on from (not yet sent: its handshake did not
 * finish) to the end of to's queue, in order. Used when a simultaneous
 * connect drops one of two connections to the same node. */
void conn_take_pending(conn_t *to, conn_t *from);

/* Unsent frames taken off a connection (for a simultaneous connect lost
 * before the winning connection exists). */
typedef struct conn_queue conn_queue_t;
/* Takes c's unsent frames; NULL if none (or out of memory: then they
 * stay and are dropped with c). Callable from ops->closed. */
conn_queue_t *conn_detach_pending(conn_t *c);
/* Appends q's frames to to's queue (or writes them if it is up); takes q. */
void conn_attach_pending(conn_t *to, conn_queue_t *q);
void conn_queue_free(conn_queue_t *q);

#endif
