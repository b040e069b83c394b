/* conn.c: one peer connection on the libuv loop: EPMD look-up and TCP
 * connect (initiator) or accept, the handshake (handshake.c), then frames
 * with a 4-byte length, ticks at net_ticktime/4, a tick timeout at
 * net_ticktime, and a byte-limited write queue that cuts off slow readers.
 * With a TLS context (inet_tls) all of it runs inside TLS (tls.c). */
#include "cnode/cnode_int.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "cnode/epmd.h"
#include "cnode/log.h"
#include "cnode/tls.h"
#include "term/mem.h"

/* Per connection; big frames are assembled by the frame parser anyway. */
#define CONN_READ_BUF (64 * 1024)

typedef struct wr {
    uv_write_t req;
    conn_t *c;
    char *buf;
    size_t len;
    int close_after;     /* the handshake said no: close once this is out */
    struct wr *next;
} wr_t;

/* A frame waiting to be encrypted (TLS). */
typedef struct tq {
    struct tq *next;
    char *buf;             /* owned */
    size_t len, off;
} tq_t;

struct conn {
    uv_loop_t *loop;
    uv_tcp_t tcp;
    uv_timer_t timer;      /* handshake time limit, then ticks */
    uv_timer_t pause;      /* ends a read pause (CONN_BULK_PAUSE_MS) */
    conn_state_t state;
    int initiator;
    int handles_open;      /* tcp + timer + pause + flush not yet closed */
    int frozen;            /* conn_freeze(): reading never restarts */
    int streak;            /* the last read with frames ended in a pause */
    uint64_t pause_end;    /* uv_now() when the last pause ended */
    int epmd_pending;      /* a PORT_PLEASE2 callback will still come */
    int in_callback;       /* guards against freeing while reading */
    conn_ops_t ops;
    void *data;
    conn_limits_t lim;
    hs_t hs;
    frame_parser_t fp;
    char peer[HS_NAME_MAX];
    char addr[64];         /* remote address, for logs before the name is known */
    char *rbuf;
    wr_t *pend_head, *pend_tail; /* frames queued before the handshake ended */
    uint64_t queued;       /* bytes handed to uv_write and not yet written */
    uint64_t pend_bytes;
    uint64_t rx, rx_seen, tx, tx_seen;
    unsigned missed;
    tls_t *tls;            /* inet_tls: the session, else NULL */
    /* TLS: frames written and not yet encrypted, in order (buffers owned).
     * The loop encrypts at most CONN_TLS_SLICE bytes of them per turn, so
     * a 44 MB sync never holds it, and small frames of one turn share one
     * record and one write. */
    struct tq *tq_head, *tq_tail;
    uint64_t tq_bytes;
    uv_idle_t flush;       /* active while tq holds frames */
    int tls_failed;        /* an alert is on its way; then close */
    /* inet_tls_dist runs the socket in {packet, 4} from the start, so the
     * handshake messages inside TLS have 4-byte lengths: one is gathered
     * here and handed to hs_feed() with the 2-byte length it expects. */
    uint8_t hs4[4 + HS_MAX_MSG];
    size_t hs4_have;
};

static void conn_maybe_free(conn_t *c)
{
    if (c->handles_open > 0 || c->epmd_pending || c->in_callback)
        return;
    frame_parser_release(&c->fp);
    tls_free(c->tls);
    while (c->tq_head) {
        struct tq *q = c->tq_head;
        c->tq_head = q->next;
        mem_free(q->buf);
        mem_free(q);
    }
    mem_free(c->rbuf);
    mem_free(c);
}

static void handle_closed(uv_handle_t *h)
{
    conn_t *c = h->data;
    c->handles_open--;
    conn_maybe_free(c);
}

const char *conn_peer(const conn_t *c) { return c->peer; }
conn_state_t conn_state(const conn_t *c) { return c->state; }
int conn_is_initiator(const conn_t *c) { return c->initiator; }
uint32_t conn_peer_creation(const conn_t *c) { return c->hs.peer_creation; }
uint64_t conn_peer_flags(const conn_t *c) { return c->hs.peer_flags; }
uint64_t conn_queued(const conn_t *c) { return c->queued + c->pend_bytes + c->tq_bytes; }
/* Paused exactly while the one-shot pause timer is pending (closing stops
 * it; libuv stops it before its callback runs). */
int conn_read_paused(const conn_t *c)
{
    return uv_is_active((const uv_handle_t *)&c->pause);
}

static const char *who(const conn_t *c)
{
    return c->peer[0] ? c->peer : c->addr[0] ? c->addr : "?";
}

/* A flood of sockets that never finish their handshake (idle, junk, or a
 * peer retrying with a wrong cookie) would write a line each: these lines
 * are rate limited, with a summary of the rest (log.h). */
static log_limit_t setup_in_log =
    LOG_LIMIT_INIT(LOG_WARN, "incoming connections that failed during setup", 50, 60000);
static log_limit_t setup_out_log =
    LOG_LIMIT_INIT(LOG_WARN, "outgoing connections that failed during the handshake", 50, 60000);
static log_limit_t setup_note_log =
    LOG_LIMIT_INIT(LOG_INFO, "connections refused or ended during the handshake", 50, 60000);
#define setup_log(c, ...) \
    log_limited(conn_is_initiator(c) ? &setup_out_log : &setup_in_log, __VA_ARGS__)

/* Marks c closed and closes its handles (all three were initialised by
 * conn_alloc()); c is freed once every close callback ran and nothing else
 * holds it (conn_maybe_free()). Closing a timer stops it, so a pending
 * pause never fires. */
static void close_handles(conn_t *c)
{
    c->state = CONN_CLOSED;
    uv_close((uv_handle_t *)&c->tcp, handle_closed);
    uv_close((uv_handle_t *)&c->timer, handle_closed);
    uv_close((uv_handle_t *)&c->pause, handle_closed);
    uv_close((uv_handle_t *)&c->flush, handle_closed);
}

static int tls_pump(conn_t *c, uint64_t budget, int close_after);

void conn_close(conn_t *c, int status, const char *reason)
{
    if (c->state == CONN_CLOSED)
        return;
    /* Frames gathered for TLS this turn go to the socket like any written
     * frame (a clean shutdown's last messages, say). */
    if (c->tls && c->tq_head && c->state == CONN_UP)
        (void)tls_pump(c, UINT64_MAX, 0);
    if (c->state == CONN_CLOSED)
        return;
    int was_up = c->state == CONN_UP;
    uv_read_stop((uv_stream_t *)&c->tcp);
    close_handles(c);
    /* The owner may take the unsent frames (conn_detach_pending) here. */
    c->in_callback++;
    c->ops.closed(c, was_up, status, reason, c->data);
    c->in_callback--;
    while (c->pend_head) {
        wr_t *w = c->pend_head;
        c->pend_head = w->next;
        mem_free(w->buf);
        mem_free(w);
    }
    c->pend_tail = NULL;
    c->pend_bytes = 0;
    conn_maybe_free(c);
}

/* ---- Writing ------------------------------------------------------------ */

static void written(uv_write_t *req, int status)
{
    wr_t *w = (wr_t *)req;
    conn_t *c = w->c;
    c->queued -= w->len;
    int close_after = w->close_after;
    mem_free(w->buf);
    mem_free(w);
    if (c->state == CONN_CLOSED)
        return;
    if (status < 0) {
        log_info("%s: write failed: %s", who(c), uv_strerror(status));
        conn_close(c, status, "write failed");
    } else if (close_after) {
        conn_close(c, -EACCES, c->hs.why ? c->hs.why : "handshake refused");
    }
}

static int write_raw(conn_t *c, char *buf, size_t len, int close_after)
{
    wr_t *w = mem_alloc(sizeof *w);
    if (!w) {
        mem_free(buf);
        return -ENOMEM;
    }
    w->c = c;
    w->buf = buf;
    w->len = len;
    w->close_after = close_after;
    w->next = NULL;
    uv_buf_t b = uv_buf_init(buf, (unsigned)len);
    int rc = uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, written);
    if (rc < 0) {
        mem_free(buf);
        mem_free(w);
        return rc;
    }
    c->queued += len;
    c->tx += len;
    return 0;
}

/* Bytes of plaintext encrypted per loop turn (about a millisecond), and
 * the size under which frames are copied together into one record. */
#define CONN_TLS_SLICE (256 * 1024)
#define CONN_TLS_GATHER (16 * 1024)

/* Encrypts queued frames, about budget bytes of them, and writes the
 * result (close_after on the last write). Small frames are gathered into
 * one record; a large one is encrypted slice by slice from its own
 * buffer. 0 or a negative errno (the connection is left to the caller). */
static int tls_pump(conn_t *c, uint64_t budget, int close_after)
{
    cbuf_t net, small;
    cbuf_init(&net);
    cbuf_init(&small);
    uint64_t done = 0;
    int rc = 0;
    while (c->tq_head && done < budget && rc == 0) {
        tq_t *q = c->tq_head;
        size_t n = q->len - q->off;
        if (n <= CONN_TLS_GATHER) {
            rc = cbuf_put(&small, q->buf + q->off, n);
        } else {
            if (small.len) {
                rc = tls_write(c->tls, small.data, small.len, &net);
                small.len = 0;
            }
            if (n > CONN_TLS_SLICE && budget != UINT64_MAX)
                n = CONN_TLS_SLICE;
            if (rc == 0)
                rc = tls_write(c->tls, q->buf + q->off, n, &net);
        }
        if (rc < 0)
            break;
        q->off += n;
        c->tq_bytes -= n;
        done += n;
        if (q->off == q->len) {
            c->tq_head = q->next;
            if (!c->tq_head)
                c->tq_tail = NULL;
            mem_free(q->buf);
            mem_free(q);
        }
    }
    if (rc == 0 && small.len)
        rc = tls_write(c->tls, small.data, small.len, &net);
    cbuf_release(&small);
    if (!c->tq_head)
        uv_idle_stop(&c->flush);
    if (rc < 0) {
        cbuf_release(&net);
        return rc;
    }
    if (net.len == 0) { /* waits in the session for the TLS handshake */
        if (close_after)
            conn_close(c, -EACCES, c->hs.why ? c->hs.why : "handshake refused");
        return 0;
    }
    return write_raw(c, net.data, net.len, close_after);
}

static void on_flush(uv_idle_t *h)
{
    conn_t *c = h->data;
    if (c->state == CONN_CLOSED)
        return;
    int rc = tls_pump(c, CONN_TLS_SLICE, 0);
    if (rc < 0)
        conn_close(c, rc, "write failed");
}

/* Writes buf (taking it), through TLS when the connection has it: queued,
 * and encrypted from the next loop turn on (close_after: all at once). */
static int write_now(conn_t *c, char *buf, size_t len, int close_after)
{
    if (!c->tls)
        return write_raw(c, buf, len, close_after);
    tq_t *q = mem_alloc(sizeof *q);
    if (!q) {
        mem_free(buf);
        return -ENOMEM;
    }
    q->next = NULL;
    q->buf = buf;
    q->len = len;
    q->off = 0;
    if (c->tq_tail)
        c->tq_tail->next = q;
    else
        c->tq_head = q;
    c->tq_tail = q;
    c->tq_bytes += len;
    if (close_after)
        return tls_pump(c, UINT64_MAX, 1);
    if (!uv_is_active((uv_handle_t *)&c->flush))
        uv_idle_start(&c->flush, on_flush);
    return 0;
}

/* Writes what the handshake produced in out, and empties out. */
static int write_cbuf(conn_t *c, cbuf_t *out, int close_after)
{
    if (out->len == 0) {
        if (close_after)
            conn_close(c, -EACCES, c->hs.why ? c->hs.why : "handshake refused");
        return 0;
    }
    if (c->tls) {
        /* 2-byte handshake lengths become 4-byte ones ({packet, 4}). */
        cbuf_t w;
        cbuf_init(&w);
        for (size_t i = 0; i + 2 <= out->len;) {
            size_t n = get16(out->data + i);
            if (i + 2 + n > out->len || cbuf_put32(&w, (uint32_t)n) < 0 ||
                cbuf_put(&w, out->data + i + 2, n) < 0) {
                cbuf_release(&w);
                return -ENOMEM;
            }
            i += 2 + n;
        }
        cbuf_release(out);
        char *buf = w.data;
        size_t len = w.len;
        return write_now(c, buf, len, close_after);
    }
    char *buf = out->data;
    size_t len = out->len;
    cbuf_init(out);
    return write_now(c, buf, len, close_after);
}


int conn_send(conn_t *c, char *buf, size_t len)
{
    if (c->state == CONN_CLOSED) {
        mem_free(buf);
        return -ENOTCONN;
    }
    if (conn_queued(c) + len > c->lim.max_queue) {
        mem_free(buf);
        log_warn("%s: write queue over %llu bytes (slow reader): disconnecting",
                 who(c), (unsigned long long)c->lim.max_queue);
        conn_close(c, -ENOBUFS, "write queue over limit (slow reader)");
        return -ENOBUFS;
    }
    if (c->state != CONN_UP) {
        wr_t *w = mem_alloc(sizeof *w);
        if (!w) {
            mem_free(buf);
            return -ENOMEM;
        }
        w->c = c;
        w->buf = buf;
        w->len = len;
        w->close_after = 0;
        w->next = NULL;
        if (c->pend_tail)
            c->pend_tail->next = w;
        else
            c->pend_head = w;
        c->pend_tail = w;
        c->pend_bytes += len;
        return 0;
    }
    int rc = write_now(c, buf, len, 0);
    if (rc < 0 && rc != -ENOMEM)
        conn_close(c, rc, "write failed");
    return rc;
}

static void flush_pending(conn_t *c)
{
    while (c->pend_head && c->state == CONN_UP) {
        wr_t *w = c->pend_head;
        c->pend_head = w->next;
        if (!c->pend_head)
            c->pend_tail = NULL;
        c->pend_bytes -= w->len;
        char *buf = w->buf;
        size_t len = w->len;
        mem_free(w);
        int rc = write_now(c, buf, len, 0);
        if (rc < 0) {
            conn_close(c, rc, "write failed");
            return;
        }
    }
}

/* ---- Timers ------------------------------------------------------------- */

static void on_tick(uv_timer_t *t)
{
    conn_t *c = t->data;
    if (c->state != CONN_UP) {
        setup_log(c, "%s: handshake not finished in %u ms: closing", who(c), c->lim.setup_ms);
        conn_close(c, -ETIMEDOUT, "handshake timeout");
        return;
    }
    /* net_kernel's ticker: the peer is down after 4 intervals of silence. */
    if (c->rx == c->rx_seen) {
        if (++c->missed >= 4) {
            log_warn("%s: no data for net_ticktime (%u ms): net_tick_timeout", who(c),
                     c->lim.ticktime_ms);
            conn_close(c, -ETIMEDOUT, "net_tick_timeout");
            return;
        }
    } else {
        c->missed = 0;
    }
    c->rx_seen = c->rx;
    if (c->tx == c->tx_seen) {
        char *tick = mem_calloc(1, 4);
        if (tick)
            write_now(c, tick, 4, 0);
    }
    c->tx_seen = c->tx;
}

static void go_up(conn_t *c)
{
    c->state = CONN_UP;
    strcpy(c->peer, c->hs.peer_name);
    uv_timer_stop(&c->timer);
    unsigned iv = c->lim.ticktime_ms / 4;
    if (iv == 0)
        iv = 1;
    uv_timer_start(&c->timer, on_tick, iv, iv);
    c->rx_seen = c->rx;
    c->tx_seen = c->tx;
    c->ops.up(c, c->data);
    if (c->state == CONN_UP)
        flush_pending(c);
}

/* ---- Reading ------------------------------------------------------------ */

static void on_alloc(uv_handle_t *h, size_t sz, uv_buf_t *buf)
{
    (void)sz;
    conn_t *c = h->data;
    buf->base = c->rbuf;
    buf->len = CONN_READ_BUF;
}

static void handshake_error(conn_t *c, int rc)
{
    const char *why = c->hs.why ? c->hs.why : uv_strerror(rc);
    if (rc == -EALREADY)
        log_info("%s: %s", who(c), why);
    else
        setup_log(c, "%s: handshake failed: %s", who(c), why);
    conn_close(c, rc, why);
}

/* Returns bytes consumed, or -1 when the connection closed. */
static ssize_t feed_handshake(conn_t *c, const char *p, size_t len)
{
    cbuf_t out;
    cbuf_init(&out);
    size_t used = 0;
    hs_event_t ev;
    hs_state_t before = c->hs.state;
    int rc = hs_feed(&c->hs, p, len, &used, &out, &ev);
    if (rc < 0) {
        cbuf_release(&out);
        handshake_error(c, rc);
        return -1;
    }
    if (ev == HS_EV_NAME) {
        strcpy(c->peer, c->hs.peer_name);
        const char *status = c->ops.hs_name(c, c->data);
        if (c->state == CONN_CLOSED) {
            cbuf_release(&out);
            return -1;
        }
        rc = hs_accept_status(&c->hs, status, &out);
        if (rc < 0) {
            cbuf_release(&out);
            handshake_error(c, rc);
            return -1;
        }
        if (c->hs.state == HS_S_FAILED) {
            log_limited(&setup_note_log, "%s: connection refused with status %s", who(c), status);
            c->hs.why = status;
            write_cbuf(c, &out, 1);
            return -1;
        }
    }
    if (ev == HS_EV_FAILED) {
        log_limited(&setup_note_log, "%s: handshake ended: %s", who(c), c->hs.why);
        write_cbuf(c, &out, 1);
        return -1;
    }
    int was_alive_wait = before == HS_S_RECV_ALIVE_ANSWER &&
                         c->hs.state == HS_S_RECV_REPLY && c->ops.hs_alive_confirmed;
    rc = write_cbuf(c, &out, 0);
    cbuf_release(&out);
    if (rc < 0) {
        conn_close(c, rc, "write failed");
        return -1;
    }
    if (was_alive_wait)
        c->ops.hs_alive_confirmed(c, c->data);
    if (c->state == CONN_CLOSED)
        return -1;
    if (ev == HS_EV_DONE) {
        go_up(c);
        if (c->state == CONN_CLOSED)
            return -1;
    }
    return (ssize_t)used;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

static void on_pause_end(uv_timer_t *t)
{
    conn_t *c = t->data;
    c->pause_end = uv_now(c->loop);
    /* A freeze during the pause wins: reading stays stopped. */
    if (c->state == CONN_CLOSED || c->frozen)
        return;
    int rc = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    if (rc < 0) {
        log_warn("%s: read restart: %s: closing", who(c), uv_strerror(rc));
        conn_close(c, rc, "read failed");
    }
}

/* Read coalescing. Each small frame used to cost a wake-up of the loop
 * (epoll_wait, a context switch) for a handful of frames. After a read
 * whose frames all may wait (the streak rule in on_read()), stop reading
 * for CONN_BULK_PAUSE_MS: the kernel's socket buffer collects what
 * follows, and the next read takes it in one go. A frame that may not wait
 * is delayed at most that long, and only when it arrives inside such a
 * pause. Ticks are unaffected: the tick timer counts bytes, and the pause
 * is far below net_ticktime. */
static void pause_reading(conn_t *c)
{
    uv_read_stop((uv_stream_t *)&c->tcp);
    uv_timer_start(&c->pause, on_pause_end, CONN_BULK_PAUSE_MS, 0);
}

/* TLS: gathers one 4-byte-length handshake message and feeds it to the
 * handshake with a 2-byte length. Returns bytes consumed, or -1 when the
 * connection closed. */
static ssize_t feed_handshake4(conn_t *c, const char *p, size_t len)
{
    size_t take = 0;
    if (c->hs4_have < 4) {
        take = 4 - c->hs4_have < len ? 4 - c->hs4_have : len;
        memcpy(c->hs4 + c->hs4_have, p, take);
        c->hs4_have += take;
        if (c->hs4_have < 4)
            return (ssize_t)take;
    }
    uint32_t n = get32(c->hs4);
    if (n == 0 || n > HS_MAX_MSG) {
        c->hs.why = "handshake message length out of range";
        handshake_error(c, -EPROTO);
        return -1;
    }
    size_t more = 4 + n - c->hs4_have;
    if (more > len - take)
        more = len - take;
    memcpy(c->hs4 + c->hs4_have, p + take, more);
    c->hs4_have += more;
    take += more;
    if (c->hs4_have < 4 + n)
        return (ssize_t)take;
    c->hs4_have = 0;
    uint8_t msg[2 + HS_MAX_MSG];
    msg[0] = (uint8_t)(n >> 8);
    msg[1] = (uint8_t)n;
    memcpy(msg + 2, c->hs4 + 4, n);
    ssize_t used = feed_handshake(c, (const char *)msg, 2 + n);
    if (used < 0)
        return -1;
    if ((size_t)used != 2 + n) {
        c->hs.why = "handshake message with trailing bytes";
        handshake_error(c, -EPROTO);
        return -1;
    }
    return (ssize_t)take;
}

static void process(conn_t *c, const char *p, size_t len);

/* TLS: decrypts what arrived and sends what the session answers. A failed
 * TLS handshake is logged once, its alert is sent, and the connection
 * closes when that is out (or at the handshake time limit). */
static void on_read_tls(conn_t *c, const char *p, size_t len)
{
    cbuf_t plain, net;
    cbuf_init(&plain);
    cbuf_init(&net);
    int was_established = tls_established(c->tls);
    int rc = tls_feed(c->tls, p, len, &plain, &net);
    if (rc < 0) {
        cbuf_release(&plain);
        const char *why = tls_why(c->tls);
        if (rc == -ECONNRESET)
            log_info("%s: %s", who(c), why);
        else
            log_warn("%s: %s", who(c), why);
        c->tls_failed = 1;
        c->hs.why = why;
        uv_read_stop((uv_stream_t *)&c->tcp);
        if (net.len > 0 && c->state != CONN_UP) {
            if (write_raw(c, net.data, net.len, 1) < 0)
                conn_close(c, rc, why);
        } else {
            cbuf_release(&net);
            conn_close(c, c->state == CONN_UP ? 0 : rc, why);
        }
        return;
    }
    if (!was_established && tls_established(c->tls))
        log_debug("%s: %s established", who(c), tls_version(c->tls));
    if (net.len > 0 && write_raw(c, net.data, net.len, 0) < 0) {
        cbuf_release(&plain);
        conn_close(c, -EIO, "write failed");
        return;
    }
    if (plain.len > 0)
        process(c, plain.data, plain.len);
    cbuf_release(&plain);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    conn_t *c = s->data;
    if (c->state == CONN_CLOSED || c->tls_failed)
        return;
    if (nread < 0) {
        int up = c->state == CONN_UP;
        const char *why = nread == UV_EOF ? "connection closed by peer" : uv_strerror((int)nread);
        if (up)
            log_info("%s: %s", who(c), why);
        else if (c->tls && !tls_established(c->tls))
            log_warn("%s: TLS handshake failed: %s", who(c), why);
        else
            setup_log(c, "%s: handshake failed: %s", who(c), why);
        conn_close(c, up ? 0 : -ECONNRESET, why);
        return;
    }
    c->rx += (uint64_t)nread;
    if (c->tls) {
        c->in_callback++;
        on_read_tls(c, buf->base, (size_t)nread);
        c->in_callback--;
        if (c->state == CONN_CLOSED)
            conn_maybe_free(c);
        return;
    }
    process(c, buf->base, (size_t)nread);
}

/* Handshake bytes, then frames, as they arrived (or came out of TLS). */
static void process(conn_t *c, const char *p, size_t len)
{
    unsigned frames = 0, may_wait = 0; /* ticks count as neither */
    c->in_callback++;
    while (len > 0 && c->state != CONN_CLOSED) {
        if (c->state == CONN_HANDSHAKE) {
            ssize_t used = c->tls ? feed_handshake4(c, p, len) : feed_handshake(c, p, len);
            if (used < 0)
                break;
            p += used;
            len -= (size_t)used;
            continue;
        }
        const char *frame;
        size_t flen, used;
        int rc = frame_feed(&c->fp, p, len, &used, &frame, &flen);
        p += used;
        len -= used;
        if (rc < 0) {
            log_warn("%s: %s: closing", who(c),
                     rc == -EMSGSIZE ? "frame over the size limit" : uv_strerror(rc));
            conn_close(c, rc, rc == -EMSGSIZE ? "frame too large" : "out of memory");
            break;
        }
        if (rc == 1 && flen > 0) {
            frames++;
            if (c->ops.frame(c, frame, flen, c->data))
                may_wait++;
        }
    }
    c->in_callback--;
    if (c->state == CONN_CLOSED) {
        conn_maybe_free(c);
        return;
    }
    if (frames > 0 && c->state == CONN_UP && !c->frozen) {
        /* A streak starts with a read of at least two frames that all may
         * wait, and goes on while the reads that follow its pauses (soon:
         * within CONN_BULK_STREAK_MS) hold only such frames, even one.
         * Without that, a sender that got little CPU during one pause
         * drops the connection back to a wake-up per frame until two
         * frames happen to meet in one read again. Any frame that may not
         * wait ends the streak. */
        int streak = c->streak && uv_now(c->loop) - c->pause_end <= CONN_BULK_STREAK_MS;
        c->streak = may_wait == frames && (frames >= 2 || streak);
        if (c->streak)
            pause_reading(c);
    }
}

/* ---- Setup ---------------------------------------------------------------- */

static int conn_alloc(uv_loop_t *loop, const hs_t *hs_template, const conn_limits_t *lim,
                      const conn_ops_t *ops, void *data, conn_t **out)
{
    conn_t *c = mem_calloc(1, sizeof *c);
    if (!c)
        return -ENOMEM;
    c->rbuf = mem_alloc(CONN_READ_BUF);
    if (!c->rbuf) {
        mem_free(c);
        return -ENOMEM;
    }
    c->loop = loop;
    c->hs = *hs_template;
    c->lim = *lim;
    c->ops = *ops;
    c->data = data;
    frame_parser_init(&c->fp, lim->max_frame);
    int rc = uv_tcp_init(loop, &c->tcp);
    if (rc < 0) {
        mem_free(c->rbuf);
        mem_free(c);
        return rc;
    }
    uv_timer_init(loop, &c->timer);
    uv_timer_init(loop, &c->pause);
    uv_idle_init(loop, &c->flush);
    c->flush.data = c;
    c->tcp.data = c;
    c->timer.data = c;
    c->pause.data = c;
    c->handles_open = 4;
    *out = c;
    return 0;
}

static uint32_t random32(void)
{
    uint32_t v = 0;
    if (uv_random(NULL, NULL, &v, sizeof v, 0, NULL) < 0) {
        uv_timeval64_t tv;
        uv_gettimeofday(&tv);
        v = (uint32_t)(tv.tv_usec ^ (tv.tv_sec << 12) ^ (uintptr_t)&v);
    }
    return v;
}

/* inet_tls: starts the TLS session (a client sends its hello at once);
 * the distribution handshake written after this waits inside it. For a
 * client, host is the host part of the peer's name (the certificate
 * check). Nothing to do without TLS. */
static int tls_begin(conn_t *c, int server, const char *host)
{
    if (!c->lim.tls)
        return 0;
    int rc = tls_new(c->lim.tls, server, host, &c->tls);
    if (rc < 0 || server)
        return rc;
    cbuf_t net;
    cbuf_init(&net);
    rc = tls_start(c->tls, &net);
    if (rc < 0) {
        log_warn("%s: %s", who(c), tls_why(c->tls));
        cbuf_release(&net);
        return rc;
    }
    return net.len ? write_raw(c, net.data, net.len, 0) : 0;
}

static const char *peer_host(const conn_t *c)
{
    const char *at = strchr(c->peer, '@');
    return at ? at + 1 : "";
}

int conn_accept(uv_stream_t *server, const hs_t *hs_template, const conn_limits_t *lim,
                const conn_ops_t *ops, void *data, conn_t **out)
{
    conn_t *c;
    int rc = conn_alloc(server->loop, hs_template, lim, ops, data, &c);
    if (rc < 0)
        return rc;
    rc = uv_accept(server, (uv_stream_t *)&c->tcp);
    if (rc < 0) {
        close_handles(c);
        return rc;
    }
    hs_init(&c->hs, HS_ACCEPTOR, hs_template->this_name, NULL, hs_template->cookie,
            hs_template->this_flags, hs_template->this_creation, random32());
    struct sockaddr_storage ss;
    int sl = sizeof ss;
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &sl) == 0) {
        char ip[48] = "?";
        int port = 0;
        if (ss.ss_family == AF_INET) {
            uv_ip4_name((struct sockaddr_in *)&ss, ip, sizeof ip);
            port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
        } else if (ss.ss_family == AF_INET6) {
            uv_ip6_name((struct sockaddr_in6 *)&ss, ip, sizeof ip);
            port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
        }
        snprintf(c->addr, sizeof c->addr, "%s:%d", ip, port);
    }
    uv_tcp_nodelay(&c->tcp, 1);
    c->state = CONN_HANDSHAKE;
    uv_timer_start(&c->timer, on_tick, lim->setup_ms, 0);
    rc = tls_begin(c, 1, NULL);
    if (rc == 0)
        rc = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    if (rc < 0) {
        close_handles(c);
        return rc;
    }
    log_debug("%s: incoming connection", c->addr);
    *out = c;
    return 0;
}

static void on_connected(uv_connect_t *req, int status)
{
    conn_t *c = req->data;
    mem_free(req);
    if (c->state == CONN_CLOSED)
        return;
    if (status < 0) {
        log_debug("%s: connect: %s", who(c), uv_strerror(status)); /* the caller logs it */
        conn_close(c, status, "connect failed");
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    c->state = CONN_HANDSHAKE;
    cbuf_t out;
    cbuf_init(&out);
    int rc = tls_begin(c, 0, peer_host(c));
    if (rc == 0)
        rc = hs_start(&c->hs, &out);
    if (rc == 0)
        rc = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    if (rc == 0)
        rc = write_cbuf(c, &out, 0);
    cbuf_release(&out);
    if (rc < 0)
        conn_close(c, rc, "handshake start failed");
}

static void on_port(int status, uint16_t port, const struct sockaddr *addr, void *data)
{
    conn_t *c = data;
    c->epmd_pending = 0;
    if (c->state == CONN_CLOSED) {
        conn_maybe_free(c);
        return;
    }
    if (status < 0) {
        log_debug("%s: epmd look-up: %s", who(c), /* the caller logs it */
                  status == -ENOENT ? "not registered" : uv_strerror(status));
        /* -ENOENT: EPMD answered, and does not know the name. */
        conn_close(c, status, "epmd look-up failed");
        return;
    }
    struct sockaddr_storage ss;
    memcpy(&ss, addr, addr->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                                  : sizeof(struct sockaddr_in));
    if (ss.ss_family == AF_INET6)
        ((struct sockaddr_in6 *)&ss)->sin6_port = htons(port);
    else
        ((struct sockaddr_in *)&ss)->sin_port = htons(port);
    uv_connect_t *req = mem_alloc(sizeof *req);
    if (!req) {
        conn_close(c, -ENOMEM, "out of memory");
        return;
    }
    req->data = c;
    c->state = CONN_CONNECTING;
    int rc = uv_tcp_connect(req, &c->tcp, (struct sockaddr *)&ss, on_connected);
    if (rc < 0) {
        mem_free(req);
        conn_close(c, rc, "connect failed");
    }
}

int conn_connect(uv_loop_t *loop, const char *peer, const hs_t *hs_template,
                 const conn_limits_t *lim, const conn_ops_t *ops, void *data,
                 conn_t **out)
{
    char alive[HS_NAME_MAX], host[HS_NAME_MAX];
    int rc = node_split_name(peer, alive, host);
    if (rc == 0 && epmd_check_host(host, !lim->shortnames, lim->family) < 0) {
        log_warn("%s: illegal host name for %s names over %s", peer,
                 lim->shortnames ? "short" : "long", lim->family == AF_INET6 ? "IPv6" : "IPv4");
        rc = -EINVAL;
    }
    if (rc < 0)
        return rc;
    conn_t *c;
    rc = conn_alloc(loop, hs_template, lim, ops, data, &c);
    if (rc < 0)
        return rc;
    hs_init(&c->hs, HS_INITIATOR, hs_template->this_name, peer, hs_template->cookie,
            hs_template->this_flags, hs_template->this_creation, random32());
    strcpy(c->peer, peer);
    c->initiator = 1;
    c->state = CONN_RESOLVING;
    rc = epmd_port_please(loop, host, alive, lim->family ? lim->family : AF_INET, on_port, c);
    if (rc < 0) {
        close_handles(c);
        return rc;
    }
    c->epmd_pending = 1;
    uv_timer_start(&c->timer, on_tick, lim->setup_ms, 0);
    *out = c;
    return 0;
}

struct conn_queue {
    wr_t *head, *tail;
    uint64_t bytes;
};

conn_queue_t *conn_detach_pending(conn_t *c)
{
    if (!c->pend_head)
        return NULL;
    conn_queue_t *q = mem_alloc(sizeof *q);
    if (!q)
        return NULL;
    q->head = c->pend_head;
    q->tail = c->pend_tail;
    q->bytes = c->pend_bytes;
    c->pend_head = c->pend_tail = NULL;
    c->pend_bytes = 0;
    return q;
}

void conn_queue_free(conn_queue_t *q)
{
    if (!q)
        return;
    while (q->head) {
        wr_t *w = q->head;
        q->head = w->next;
        mem_free(w->buf);
        mem_free(w);
    }
    mem_free(q);
}

void conn_attach_pending(conn_t *to, conn_queue_t *q)
{
    if (!q)
        return;
    if (to->state == CONN_CLOSED) {
        conn_queue_free(q);
        return;
    }
    wr_t *head = q->head;
    if (to->state == CONN_UP) {
        q->head = NULL;
        mem_free(q);
        while (head) {
            wr_t *w = head;
            head = w->next;
            char *buf = w->buf;
            size_t len = w->len;
            mem_free(w);
            if (to->state == CONN_CLOSED)
                mem_free(buf);
            else
                write_now(to, buf, len, 0); /* frees buf when it fails */
        }
        return;
    }
    if (to->pend_tail)
        to->pend_tail->next = head;
    else
        to->pend_head = head;
    to->pend_tail = q->tail;
    to->pend_bytes += q->bytes;
    mem_free(q);
}

void conn_take_pending(conn_t *to, conn_t *from)
{
    conn_attach_pending(to, conn_detach_pending(from));
}

int conn_open_fd(uv_loop_t *loop, uv_os_sock_t fd, hs_role_t role, const char *peer,
                 const hs_t *hs_template, const conn_limits_t *lim, const conn_ops_t *ops,
                 void *data, conn_t **out)
{
    conn_t *c;
    int rc = conn_alloc(loop, hs_template, lim, ops, data, &c);
    if (rc < 0)
        return rc;
    rc = uv_tcp_open(&c->tcp, fd);
    if (rc == 0)
        rc = hs_init(&c->hs, role, hs_template->this_name, peer, hs_template->cookie,
                     hs_template->this_flags, hs_template->this_creation, random32());
    if (rc < 0) {
        close_handles(c);
        return rc;
    }
    snprintf(c->addr, sizeof c->addr, "fd %d", (int)fd);
    c->initiator = role == HS_INITIATOR;
    if (c->initiator)
        snprintf(c->peer, sizeof c->peer, "%s", peer);
    c->state = CONN_HANDSHAKE;
    uv_timer_start(&c->timer, on_tick, lim->setup_ms, 0);
    cbuf_t hello;
    cbuf_init(&hello);
    rc = tls_begin(c, !c->initiator, peer_host(c));
    if (rc == 0)
        rc = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    if (rc == 0 && c->initiator) {
        rc = hs_start(&c->hs, &hello);
        if (rc == 0)
            rc = write_cbuf(c, &hello, 0);
    }
    cbuf_release(&hello);
    if (rc < 0) {
        close_handles(c);
        return rc;
    }
    *out = c;
    return 0;
}

void conn_freeze(conn_t *c)
{
    if (c->state == CONN_CLOSED)
        return;
    /* A pending read pause still fires, and sees frozen. */
    c->frozen = 1;
    uv_read_stop((uv_stream_t *)&c->tcp);
    uv_timer_stop(&c->timer);
}
