/* epmd.c: the EPMD client: ALIVE2_X registration held open for the node's
 * life (and redone if EPMD restarts), PORT_PLEASE2 look-ups, NAMES. The
 * message codecs are pure functions; the rest runs on the libuv loop.
 * Reference: erl_dist_protocol, "EPMD Protocol". */
#include "cnode/cnode_int.h"
#include "cnode/epmd.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cnode/log.h"
#include "term/mem.h"

/* ---- Codecs ----------------------------------------------------------- */

int epmd_encode_alive2(cbuf_t *out, const char *alive, uint16_t port, int node_type)
{
    size_t n = strlen(alive);
    if (n == 0 || n >= HS_NAME_MAX)
        return -EINVAL;
    size_t old = out->len;
    /* 120 PortNo NodeType Protocol(0 = tcp/ip-v4) HighestVersion LowestVersion
     * Nlen NodeName Elen Extra */
    if (cbuf_put16(out, (uint16_t)(13 + n)) || cbuf_put8(out, EPMD_ALIVE2_REQ) ||
        cbuf_put16(out, port) || cbuf_put8(out, (uint8_t)node_type) ||
        cbuf_put8(out, 0) || cbuf_put16(out, 6) || cbuf_put16(out, 6) ||
        cbuf_put16(out, (uint16_t)n) || cbuf_put(out, alive, n) || cbuf_put16(out, 0)) {
        out->len = old;
        return -ENOMEM;
    }
    return 0;
}

int epmd_decode_alive2_resp(const void *data, size_t len, size_t *used, int *result,
                            uint32_t *creation)
{
    const uint8_t *p = data;
    if (len < 1)
        return 0;
    if (p[0] == EPMD_ALIVE2_X_RESP) {
        if (len < 6)
            return 0;
        *result = p[1];
        *creation = get32(p + 2);
        *used = 6;
        return 1;
    }
    if (p[0] == EPMD_ALIVE2_RESP) {
        /* Pre-OTP 23 EPMD: 16-bit creation. */
        if (len < 4)
            return 0;
        *result = p[1];
        *creation = get16(p + 2);
        *used = 4;
        return 1;
    }
    return -EPROTO;
}

int epmd_encode_port2(cbuf_t *out, const char *alive)
{
    size_t n = strlen(alive);
    if (n == 0 || n >= HS_NAME_MAX)
        return -EINVAL;
    size_t old = out->len;
    if (cbuf_put16(out, (uint16_t)(1 + n)) || cbuf_put8(out, EPMD_PORT2_REQ) ||
        cbuf_put(out, alive, n)) {
        out->len = old;
        return -ENOMEM;
    }
    return 0;
}

int epmd_decode_port2_resp(const void *data, size_t len, epmd_port_info_t *info)
{
    const uint8_t *p = data;
    memset(info, 0, sizeof *info);
    if (len < 2)
        return 0;
    if (p[0] != EPMD_PORT2_RESP)
        return -EPROTO;
    info->result = p[1];
    if (info->result != 0)
        return 1;
    /* PortNo NodeType Protocol HighestVersion LowestVersion Nlen Name Elen Extra */
    if (len < 12)
        return 0;
    info->port = get16(p + 2);
    info->node_type = p[4];
    info->protocol = p[5];
    info->high = get16(p + 6);
    info->low = get16(p + 8);
    size_t nlen = get16(p + 10);
    if (nlen >= HS_NAME_MAX)
        return -EPROTO;
    if (len < 12 + nlen + 2)
        return 0;
    memcpy(info->name, p + 12, nlen);
    info->name[nlen] = 0;
    size_t elen = get16(p + 12 + nlen);
    if (len < 12 + nlen + 2 + elen)
        return 0;
    return 1;
}

int epmd_encode_names(cbuf_t *out)
{
    size_t old = out->len;
    if (cbuf_put16(out, 1) || cbuf_put8(out, EPMD_NAMES_REQ)) {
        out->len = old;
        return -ENOMEM;
    }
    return 0;
}

int epmd_decode_names(const void *data, size_t len,
                      void (*cb)(const char *name, int port, void *data), void *cbdata)
{
    const char *p = data;
    if (len < 4)
        return -EPROTO;
    size_t i = 4;
    while (i < len) {
        const char *nl = memchr(p + i, '\n', len - i);
        size_t end = nl ? (size_t)(nl - p) : len;
        /* "name " NAME " at port " PORT */
        char line[512];
        size_t ll = end - i;
        if (ll < sizeof line) {
            memcpy(line, p + i, ll);
            line[ll] = 0;
            char *at = strstr(line, " at port ");
            if (strncmp(line, "name ", 5) == 0 && at) {
                *at = 0;
                char *e;
                long port = strtol(at + 9, &e, 10);
                if (*e == 0 && port > 0 && port < 65536)
                    cb(line + 5, (int)port, cbdata);
            }
        }
        i = end + 1;
    }
    return 0;
}

/* ---- libuv client ----------------------------------------------------- */

static int epmd_port(void)
{
    /* erl honours ERL_EPMD_PORT; so do we, so tests can run a private EPMD. */
    const char *e = getenv("ERL_EPMD_PORT");
    if (e) {
        int v = atoi(e);
        if (v > 0 && v < 65536)
            return v;
    }
    return 4369;
}

/* Registration ---------------------------------------------------------- */

struct epmd_reg {
    uv_loop_t *loop;
    uv_tcp_t tcp;
    uv_connect_t creq;
    uv_write_t wreq;
    uv_timer_t retry;
    cbuf_t out, in;
    char alive[HS_NAME_MAX];
    uint16_t port;
    int family;
    epmd_reg_cb cb;
    void *data;
    int tcp_open;      /* tcp handle initialized and not yet closed */
    int registered;
    int stopping;
    int closing_handles;
};

static void reg_connect(epmd_reg_t *r);

static void reg_retry(uv_timer_t *t)
{
    reg_connect(t->data);
}

static void reg_tcp_closed(uv_handle_t *h)
{
    epmd_reg_t *r = h->data;
    r->tcp_open = 0;
    if (r->stopping) {
        if (--r->closing_handles == 0) {
            cbuf_release(&r->out);
            cbuf_release(&r->in);
            mem_free(r);
        }
        return;
    }
    /* EPMD went away (restart) or refused: try again in a second. */
    uv_timer_start(&r->retry, reg_retry, 1000, 0);
}

static void reg_close_tcp(epmd_reg_t *r)
{
    if (r->tcp_open && !uv_is_closing((uv_handle_t *)&r->tcp))
        uv_close((uv_handle_t *)&r->tcp, reg_tcp_closed);
}

static void reg_alloc(uv_handle_t *h, size_t sz, uv_buf_t *buf)
{
    (void)h;
    (void)sz;
    static char slab[256];
    buf->base = slab;
    buf->len = sizeof slab;
}

static void reg_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    epmd_reg_t *r = s->data;
    if (nread < 0) {
        if (r->registered)
            log_warn("epmd: registration connection lost (%s); registering again",
                     uv_strerror((int)nread));
        r->registered = 0;
        reg_close_tcp(r);
        return;
    }
    if (nread == 0)
        return;
    if (r->registered)
        return; /* EPMD sends nothing more; ignore */
    if (cbuf_put(&r->in, buf->base, (size_t)nread) < 0) {
        reg_close_tcp(r);
        return;
    }
    size_t used = 0;
    int result = 0;
    uint32_t creation = 0;
    int rc = epmd_decode_alive2_resp(r->in.data, r->in.len, &used, &result, &creation);
    if (rc == 0)
        return;
    if (rc < 0 || result != 0) {
        log_error("epmd: registration of %s refused (%s)", r->alive,
                  rc < 0 ? "bad answer" : "name taken?");
        r->cb(r, rc < 0 ? rc : -EADDRINUSE, 0, r->data);
        r->in.len = 0;
        reg_close_tcp(r);
        return;
    }
    r->in.len = 0;
    r->registered = 1;
    log_info("epmd: registered %s port %u creation %u", r->alive, r->port, creation);
    r->cb(r, 0, creation, r->data);
}

static void reg_written(uv_write_t *w, int status)
{
    epmd_reg_t *r = w->data;
    if (status < 0)
        reg_close_tcp(r);
}

static void reg_connected(uv_connect_t *c, int status)
{
    epmd_reg_t *r = c->data;
    if (status < 0) {
        if (status != UV_ECANCELED)
            log_debug("epmd: connect: %s", uv_strerror(status));
        reg_close_tcp(r);
        return;
    }
    r->out.len = 0;
    r->in.len = 0;
    if (epmd_encode_alive2(&r->out, r->alive, r->port, EPMD_NODE_HIDDEN) < 0) {
        reg_close_tcp(r);
        return;
    }
    uv_buf_t b = uv_buf_init(r->out.data, (unsigned)r->out.len);
    r->wreq.data = r;
    if (uv_read_start((uv_stream_t *)&r->tcp, reg_alloc, reg_read) < 0 ||
        uv_write(&r->wreq, (uv_stream_t *)&r->tcp, &b, 1, reg_written) < 0)
        reg_close_tcp(r);
}

static void reg_connect(epmd_reg_t *r)
{
    if (r->stopping)
        return;
    /* erl_epmd:do_register_node/3: the loopback address of the family. */
    struct sockaddr_storage sa;
    if (r->family == AF_INET6)
        uv_ip6_addr("::1", epmd_port(), (struct sockaddr_in6 *)&sa);
    else
        uv_ip4_addr("127.0.0.1", epmd_port(), (struct sockaddr_in *)&sa);
    if (uv_tcp_init(r->loop, &r->tcp) < 0) {
        uv_timer_start(&r->retry, reg_retry, 1000, 0);
        return;
    }
    r->tcp.data = r;
    r->tcp_open = 1;
    r->creq.data = r;
    if (uv_tcp_connect(&r->creq, &r->tcp, (const struct sockaddr *)&sa, reg_connected) < 0)
        reg_close_tcp(r);
}

int epmd_register(uv_loop_t *loop, const char *alive, uint16_t port, int family,
                  epmd_reg_cb cb, void *data, epmd_reg_t **out)
{
    if (strlen(alive) == 0 || strlen(alive) >= HS_NAME_MAX)
        return -EINVAL;
    if (family != AF_INET && family != AF_INET6)
        return -EAFNOSUPPORT;
    epmd_reg_t *r = mem_calloc(1, sizeof *r);
    if (!r)
        return -ENOMEM;
    r->loop = loop;
    strcpy(r->alive, alive);
    r->port = port;
    r->family = family;
    r->cb = cb;
    r->data = data;
    cbuf_init(&r->out);
    cbuf_init(&r->in);
    uv_timer_init(loop, &r->retry);
    r->retry.data = r;
    reg_connect(r);
    *out = r;
    return 0;
}

static void reg_timer_closed(uv_handle_t *h)
{
    epmd_reg_t *r = h->data;
    if (--r->closing_handles == 0) {
        cbuf_release(&r->out);
        cbuf_release(&r->in);
        mem_free(r);
    }
}

void epmd_unregister(epmd_reg_t *r)
{
    if (!r || r->stopping)
        return;
    /* Closing the socket is the unregistration (EPMD drops the name). */
    r->stopping = 1;
    r->closing_handles = 1;
    uv_close((uv_handle_t *)&r->retry, reg_timer_closed);
    if (r->tcp_open) {
        r->closing_handles++;
        if (!uv_is_closing((uv_handle_t *)&r->tcp))
            uv_close((uv_handle_t *)&r->tcp, reg_tcp_closed);
    }
}

/* PORT_PLEASE2 ---------------------------------------------------------- */

typedef struct epmd_q {
    uv_loop_t *loop;
    uv_getaddrinfo_t gai;
    uv_tcp_t tcp;
    uv_connect_t creq;
    uv_write_t wreq;
    cbuf_t out, in;
    char alive[HS_NAME_MAX];
    epmd_port_cb cb;
    void *data;
    int status;
    epmd_port_info_t info;
    struct sockaddr_storage addr;
    int done;
} epmd_q_t;

static void q_closed(uv_handle_t *h)
{
    epmd_q_t *q = h->data;
    if (q->cb)
        q->cb(q->status, q->status == 0 ? q->info.port : 0,
              (const struct sockaddr *)&q->addr, q->data);
    cbuf_release(&q->out);
    cbuf_release(&q->in);
    mem_free(q);
}

static void q_finish(epmd_q_t *q, int status)
{
    if (q->done)
        return;
    q->done = 1;
    q->status = status;
    uv_close((uv_handle_t *)&q->tcp, q_closed);
}

static void q_alloc(uv_handle_t *h, size_t sz, uv_buf_t *buf)
{
    (void)h;
    (void)sz;
    static char slab[1024];
    buf->base = slab;
    buf->len = sizeof slab;
}

static void q_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    epmd_q_t *q = s->data;
    if (q->done)
        return;
    if (nread < 0) {
        q_finish(q, nread == UV_EOF ? -EPROTO : (int)nread);
        return;
    }
    if (cbuf_put(&q->in, buf->base, (size_t)nread) < 0 || q->in.len > 4096) {
        q_finish(q, -EPROTO);
        return;
    }
    int rc = epmd_decode_port2_resp(q->in.data, q->in.len, &q->info);
    if (rc == 0)
        return;
    if (rc < 0)
        q_finish(q, rc);
    else if (q->info.result != 0)
        q_finish(q, -ENOENT);
    else if (q->info.high < 6 || q->info.low > 6)
        q_finish(q, -EPROTONOSUPPORT);
    else
        q_finish(q, 0);
}

static void q_written(uv_write_t *w, int status)
{
    epmd_q_t *q = w->data;
    if (status < 0)
        q_finish(q, status);
}

static void q_connected(uv_connect_t *c, int status)
{
    epmd_q_t *q = c->data;
    if (status < 0) {
        q_finish(q, status);
        return;
    }
    uv_buf_t b = uv_buf_init(q->out.data, (unsigned)q->out.len);
    q->wreq.data = q;
    int rc = uv_read_start((uv_stream_t *)&q->tcp, q_alloc, q_read);
    if (rc == 0)
        rc = uv_write(&q->wreq, (uv_stream_t *)&q->tcp, &b, 1, q_written);
    if (rc < 0)
        q_finish(q, rc);
}

static void q_resolved(uv_getaddrinfo_t *g, int status, struct addrinfo *res)
{
    epmd_q_t *q = g->data;
    if (status < 0 || !res) {
        if (res)
            uv_freeaddrinfo(res);
        q->status = status < 0 ? status : -EHOSTUNREACH;
        /* The tcp handle is already initialized: close it to report. */
        q->done = 1;
        uv_close((uv_handle_t *)&q->tcp, q_closed);
        return;
    }
    memcpy(&q->addr, res->ai_addr, res->ai_addrlen);
    uv_freeaddrinfo(res);
    if (q->addr.ss_family == AF_INET)
        ((struct sockaddr_in *)&q->addr)->sin_port = htons((uint16_t)epmd_port());
    else
        ((struct sockaddr_in6 *)&q->addr)->sin6_port = htons((uint16_t)epmd_port());
    q->creq.data = q;
    int rc = uv_tcp_connect(&q->creq, &q->tcp, (const struct sockaddr *)&q->addr, q_connected);
    if (rc < 0)
        q_finish(q, rc);
}

int epmd_port_please(uv_loop_t *loop, const char *host, const char *alive, int family,
                     epmd_port_cb cb, void *data)
{
    if (family != AF_INET && family != AF_INET6)
        return -EAFNOSUPPORT;
    epmd_q_t *q = mem_calloc(1, sizeof *q);
    if (!q)
        return -ENOMEM;
    q->loop = loop;
    q->cb = cb;
    q->data = data;
    cbuf_init(&q->out);
    cbuf_init(&q->in);
    int rc = epmd_encode_port2(&q->out, alive);
    if (rc < 0)
        goto fail_q;
    rc = uv_tcp_init(loop, &q->tcp);
    if (rc < 0)
        goto fail_q;
    q->tcp.data = q;
    q->gai.data = q;
    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = family; /* inet:getaddr(Host, Family), as erl_epmd */
    if (family == AF_INET6)
        hints.ai_flags = AI_V4MAPPED; /* inet6 reaches IPv4 hosts as ::ffff:a.b.c.d */
    hints.ai_socktype = SOCK_STREAM;
    rc = uv_getaddrinfo(loop, &q->gai, q_resolved, host, NULL, &hints);
    if (rc < 0) {
        /* Synchronous failure: no callback, as STYLE.md asks. */
        q->cb = NULL;
        uv_close((uv_handle_t *)&q->tcp, q_closed);
        return rc;
    }
    return 0;
fail_q:
    cbuf_release(&q->out);
    mem_free(q);
    return rc;
}

/* NAMES ----------------------------------------------------------------- */

#define EPMD_NAMES_MAX_BYTES (1 << 20) /* more than any EPMD would list */
#define EPMD_NAMES_MAX 1024

typedef struct epmd_n {
    uv_tcp_t tcp;
    uv_connect_t creq;
    uv_write_t wreq;
    cbuf_t out, in;
    epmd_names_cb cb;
    void *data;
    int status;
    int done;
    /* decoded result */
    char *names[EPMD_NAMES_MAX];
    int ports[EPMD_NAMES_MAX];
    size_t count;
} epmd_n_t;

static void n_collect(const char *name, int port, void *data)
{
    epmd_n_t *q = data;
    if (q->count >= EPMD_NAMES_MAX)
        return;
    char *s = mem_strdup(name);
    if (!s)
        return;
    q->names[q->count] = s;
    q->ports[q->count++] = port;
}

static void n_closed(uv_handle_t *h)
{
    epmd_n_t *q = h->data;
    if (q->cb) {
        if (q->status == 0 && epmd_decode_names(q->in.data, q->in.len, n_collect, q) < 0)
            q->status = -EPROTO;
        q->cb(q->status, (const char *const *)q->names, q->ports,
              q->status == 0 ? q->count : 0, q->data);
    }
    for (size_t i = 0; i < q->count; i++)
        mem_free(q->names[i]);
    cbuf_release(&q->out);
    cbuf_release(&q->in);
    mem_free(q);
}

static void n_finish(epmd_n_t *q, int status)
{
    if (q->done)
        return;
    q->done = 1;
    q->status = status;
    uv_close((uv_handle_t *)&q->tcp, n_closed);
}

static void n_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    epmd_n_t *q = s->data;
    if (q->done)
        return;
    if (nread == UV_EOF) {
        n_finish(q, 0); /* EPMD closes after the list */
        return;
    }
    if (nread < 0) {
        n_finish(q, (int)nread);
        return;
    }
    if (q->in.len + (size_t)nread > EPMD_NAMES_MAX_BYTES ||
        cbuf_put(&q->in, buf->base, (size_t)nread) < 0)
        n_finish(q, -EPROTO);
}

static void n_written(uv_write_t *w, int status)
{
    epmd_n_t *q = w->data;
    if (status < 0)
        n_finish(q, status);
}

static void n_connected(uv_connect_t *c, int status)
{
    epmd_n_t *q = c->data;
    if (status < 0) {
        n_finish(q, status);
        return;
    }
    uv_buf_t b = uv_buf_init(q->out.data, (unsigned)q->out.len);
    q->wreq.data = q;
    int rc = uv_read_start((uv_stream_t *)&q->tcp, q_alloc, n_read);
    if (rc == 0)
        rc = uv_write(&q->wreq, (uv_stream_t *)&q->tcp, &b, 1, n_written);
    if (rc < 0)
        n_finish(q, rc);
}

int epmd_names(uv_loop_t *loop, const struct sockaddr_in *epmd, epmd_names_cb cb, void *data)
{
    epmd_n_t *q = mem_calloc(1, sizeof *q);
    if (!q)
        return -ENOMEM;
    q->cb = cb;
    q->data = data;
    cbuf_init(&q->out);
    cbuf_init(&q->in);
    struct sockaddr_in sa;
    if (epmd) {
        sa = *epmd;
    } else {
        uv_ip4_addr("127.0.0.1", epmd_port(), &sa);
    }
    int rc = epmd_encode_names(&q->out);
    if (rc == 0)
        rc = uv_tcp_init(loop, &q->tcp);
    if (rc < 0) {
        cbuf_release(&q->out);
        mem_free(q);
        return rc;
    }
    q->tcp.data = q;
    q->creq.data = q;
    rc = uv_tcp_connect(&q->creq, &q->tcp, (const struct sockaddr *)&sa, n_connected);
    if (rc < 0) {
        /* Synchronous failure: no callback; q goes with the handle. */
        q->cb = NULL;
        q->done = 1;
        uv_close((uv_handle_t *)&q->tcp, n_closed);
        return rc;
    }
    return 0;
}

/* Host rules ------------------------------------------------------------ */

int epmd_check_host(const char *host, int longnames, int family)
{
    unsigned char ip[16];
    if (!host[0])
        return -EINVAL;
    if (!strchr(host, '.'))
        /* inet_tcp_dist:splitnode/3: a dotless long name host must parse
         * as an address of the carrier's family (inet:parse_strict_address). */
        return !longnames || inet_pton(family == AF_INET6 ? AF_INET6 : AF_INET, host, ip) == 1
                   ? 0
                   : -EINVAL;
    return longnames ? 0 : -EINVAL;
}
