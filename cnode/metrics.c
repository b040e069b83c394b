/* metrics.c: the counters of metrics.h, their Prometheus text and
 * etsd:info() map, the loop-turn watch, and the GET /metrics server
 * (http_parser from libhttp-parser-dev, on the loop). */
#include "cnode/metrics.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <http_parser.h>

#include "cnode/log.h"
#include "term/mem.h"

/* ---- Counters ----------------------------------------------------------- */

static uint64_t counters[METRICS_N];

static const struct {
    const char *prom;   /* Prometheus name */
    const char *help;
    const char *label;  /* "k=\"v\"" when several counters share one name */
    const char *info;   /* key in etsd:info()'s metrics map */
} counter_meta[METRICS_N] = {
    [METRICS_CONN_UP] = {"etsd_connection_events_total",
                         "Distribution connections that came up or went down.",
                         "event=\"up\"", "connections_up"},
    [METRICS_CONN_DOWN] = {"etsd_connection_events_total", NULL, "event=\"down\"",
                           "connections_down"},
    [METRICS_MSGS_IN] = {"etsd_dist_messages_total",
                         "Distribution frames received or sent, ticks not counted.",
                         "direction=\"in\"", "messages_in"},
    [METRICS_MSGS_OUT] = {"etsd_dist_messages_total", NULL, "direction=\"out\"",
                          "messages_out"},
    [METRICS_BYTES_IN] = {"etsd_dist_bytes_total",
                          "Bytes of the distribution frames received or sent.",
                          "direction=\"in\"", "bytes_in"},
    [METRICS_BYTES_OUT] = {"etsd_dist_bytes_total", NULL, "direction=\"out\"", "bytes_out"},
    [METRICS_NEW_APPLIED] = {"etsd_new_applied_total",
                             "Objects from {new, Object} messages stored.", NULL,
                             "new_applied"},
    [METRICS_SYNC_MERGED] = {"etsd_sync_objects_merged_total",
                             "Objects from syncs and pulls stored.", NULL, "sync_merged"},
    [METRICS_COMPACTIONS] = {"etsd_compactions_total",
                             "Log compactions (snapshots written, log truncated).", NULL,
                             "compactions"},
};

void metrics_inc(metrics_id_t id)
{
    if ((unsigned)id < METRICS_N)
        counters[id]++;
}

void metrics_add(metrics_id_t id, uint64_t v)
{
    if ((unsigned)id < METRICS_N)
        counters[id] += v;
}

uint64_t metrics_get(metrics_id_t id)
{
    return (unsigned)id < METRICS_N ? counters[id] : 0;
}

/* ---- rpc calls by function and result ---------------------------------- */

typedef struct rpc_series {
    char *mod, *fun, *result;
    uint64_t n;
} rpc_series_t;

static rpc_series_t rpc_series[METRICS_RPC_MAX + 1];
static size_t rpc_n;

void metrics_rpc(const char *mod, const char *fun, const char *result)
{
    if (strcmp(mod, "ets") != 0 && strcmp(mod, "etsd") != 0 && strcmp(mod, "erlang") != 0)
        mod = fun = "other";
    for (size_t i = 0; i < rpc_n; i++) {
        rpc_series_t *s = &rpc_series[i];
        if (strcmp(s->fun, fun) == 0 && strcmp(s->mod, mod) == 0 &&
            strcmp(s->result, result) == 0) {
            s->n++;
            return;
        }
    }
    if (rpc_n >= METRICS_RPC_MAX) {
        /* The last slot holds every series past the limit. */
        mod = fun = "other";
        rpc_series_t *s = &rpc_series[METRICS_RPC_MAX];
        if (!s->mod) {
            s->mod = mem_strdup("other");
            s->fun = mem_strdup("other");
            s->result = mem_strdup("other");
            if (!s->mod || !s->fun || !s->result) {
                mem_free(s->mod), mem_free(s->fun), mem_free(s->result);
                s->mod = s->fun = s->result = NULL;
                return;
            }
        }
        s->n++;
        return;
    }
    rpc_series_t *s = &rpc_series[rpc_n];
    s->mod = mem_strdup(mod);
    s->fun = mem_strdup(fun);
    s->result = mem_strdup(result);
    if (!s->mod || !s->fun || !s->result) {
        mem_free(s->mod), mem_free(s->fun), mem_free(s->result);
        s->mod = s->fun = s->result = NULL;
        return;
    }
    s->n = 1;
    rpc_n++;
}

/* ---- fsync latency ------------------------------------------------------ */

/* Upper bounds of the histogram's buckets, in microseconds. */
static const uint64_t fsync_le_us[] = {500, 1000, 2500, 5000, 10000, 25000, 50000,
                                       100000, 250000, 500000, 1000000, 2500000};
#define FSYNC_BUCKETS (sizeof fsync_le_us / sizeof fsync_le_us[0])
static uint64_t fsync_bucket[FSYNC_BUCKETS]; /* not cumulative */
static uint64_t fsync_count, fsync_sum_ns, fsync_max_ns;

void metrics_fsync_observe(uint64_t ns)
{
    size_t i = 0;
    while (i < FSYNC_BUCKETS && ns > fsync_le_us[i] * 1000)
        i++;
    if (i < FSYNC_BUCKETS)
        __atomic_fetch_add(&fsync_bucket[i], 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&fsync_count, 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&fsync_sum_ns, ns, __ATOMIC_RELAXED);
    uint64_t m = __atomic_load_n(&fsync_max_ns, __ATOMIC_RELAXED);
    while (ns > m && !__atomic_compare_exchange_n(&fsync_max_ns, &m, ns, 0, __ATOMIC_RELAXED,
                                                  __ATOMIC_RELAXED))
        ;
}

/* ---- Gauges ------------------------------------------------------------- */

static metrics_gauges_cb gauges_cb;
static void *gauges_arg;

void metrics_set_gauges_cb(metrics_gauges_cb cb, void *arg)
{
    gauges_cb = cb;
    gauges_arg = arg;
}

static void read_gauges(metrics_gauges_t *g)
{
    memset(g, 0, sizeof *g);
    if (gauges_cb)
        gauges_cb(gauges_arg, g);
}

void metrics_reset(void)
{
    memset(counters, 0, sizeof counters);
    for (size_t i = 0; i <= METRICS_RPC_MAX; i++) {
        mem_free(rpc_series[i].mod);
        mem_free(rpc_series[i].fun);
        mem_free(rpc_series[i].result);
    }
    memset(rpc_series, 0, sizeof rpc_series);
    rpc_n = 0;
    memset(fsync_bucket, 0, sizeof fsync_bucket);
    fsync_count = fsync_sum_ns = fsync_max_ns = 0;
}

/* ---- The loop's longest turn --------------------------------------------- */

static uv_prepare_t turn_watch;
static int turn_on;
static uint64_t turn_last, turn_idle_last, turn_max;

/* Runs just before the loop polls: the time since the last poll, minus
 * the time spent waiting in it, is the work of the turn in between. */
static void turn_cb(uv_prepare_t *h)
{
    uint64_t now = uv_hrtime(), idle = uv_metrics_idle_time(h->loop);
    if (turn_last) {
        uint64_t busy = now - turn_last, waited = idle - turn_idle_last;
        busy = busy > waited ? busy - waited : 0;
        if (busy > turn_max)
            turn_max = busy;
    }
    turn_last = now;
    turn_idle_last = idle;
}

int metrics_loop_start(uv_loop_t *loop)
{
    int rc = uv_prepare_init(loop, &turn_watch);
    if (rc < 0)
        return rc;
    turn_on = 1;
    /* It must not keep the loop alive by itself. */
    uv_unref((uv_handle_t *)&turn_watch);
    return uv_prepare_start(&turn_watch, turn_cb);
}

void metrics_loop_close(void)
{
    if (!turn_on)
        return;
    turn_on = 0;
    uv_close((uv_handle_t *)&turn_watch, NULL);
}

uint64_t metrics_loop_turn_max(void)
{
    return turn_max;
}

/* ---- Prometheus text ----------------------------------------------------- */

static void put_str(term_buf_t *out, const char *s)
{
    term_buf_append(out, s, strlen(s));
}

static void putf(term_buf_t *out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void putf(term_buf_t *out, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n > 0)
        term_buf_append(out, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
}

/* A label value: backslash, double quote and newline escaped, as the text
 * format requires. */
static void put_label(term_buf_t *out, const char *s)
{
    for (; *s; s++) {
        if (*s == '\\' || *s == '"')
            term_buf_append(out, "\\", 1), term_buf_append(out, s, 1);
        else if (*s == '\n')
            term_buf_append(out, "\\n", 2);
        else
            term_buf_append(out, s, 1);
    }
}

static void put_head(term_buf_t *out, const char *name, const char *type, const char *help)
{
    putf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

int metrics_render(term_buf_t *out)
{
    metrics_gauges_t g;
    read_gauges(&g);

    put_head(out, "etsd_peers_up", "gauge", "Nodes connected now (handshake done).");
    putf(out, "etsd_peers_up %" PRIu64 "\n", g.peers_up);
    for (int i = 0; i < METRICS_N; i++) {
        if (counter_meta[i].help)
            put_head(out, counter_meta[i].prom, "counter", counter_meta[i].help);
        if (counter_meta[i].label)
            putf(out, "%s{%s} %" PRIu64 "\n", counter_meta[i].prom, counter_meta[i].label,
                 counters[i]);
        else
            putf(out, "%s %" PRIu64 "\n", counter_meta[i].prom, counters[i]);
    }

    put_head(out, "etsd_rpc_calls_total", "counter",
             "rpc calls by module, function and how they ended.");
    for (size_t i = 0; i <= METRICS_RPC_MAX; i++) {
        const rpc_series_t *s = &rpc_series[i];
        if (!s->mod)
            continue;
        put_str(out, "etsd_rpc_calls_total{module=\"");
        put_label(out, s->mod);
        put_str(out, "\",function=\"");
        put_label(out, s->fun);
        put_str(out, "\",result=\"");
        put_label(out, s->result);
        putf(out, "\"} %" PRIu64 "\n", s->n);
    }

    if (g.table) {
        put_head(out, "etsd_table_objects", "gauge", "Objects in the mirrored table.");
        put_str(out, "etsd_table_objects{table=\"");
        put_label(out, g.table);
        putf(out, "\"} %" PRIu64 "\n", g.table_objects);
        put_head(out, "etsd_table_memory_bytes", "gauge",
                 "Memory the mirrored table uses, as ets:info(T, memory) in bytes.");
        put_str(out, "etsd_table_memory_bytes{table=\"");
        put_label(out, g.table);
        putf(out, "\"} %" PRIu64 "\n", g.table_memory_bytes);
    }
    put_head(out, "etsd_log_bytes", "gauge", "Bytes in the write-ahead log since the last snapshot.");
    putf(out, "etsd_log_bytes %" PRIu64 "\n", g.log_bytes);

    put_head(out, "etsd_fsync_duration_seconds", "histogram",
             "Time each fdatasync of the write-ahead log took.");
    uint64_t cum = 0;
    for (size_t i = 0; i < FSYNC_BUCKETS; i++) {
        cum += __atomic_load_n(&fsync_bucket[i], __ATOMIC_RELAXED);
        putf(out, "etsd_fsync_duration_seconds_bucket{le=\"%g\"} %" PRIu64 "\n",
             (double)fsync_le_us[i] / 1e6, cum);
    }
    uint64_t count = __atomic_load_n(&fsync_count, __ATOMIC_RELAXED);
    putf(out, "etsd_fsync_duration_seconds_bucket{le=\"+Inf\"} %" PRIu64 "\n", count);
    putf(out, "etsd_fsync_duration_seconds_sum %.9f\n",
         (double)__atomic_load_n(&fsync_sum_ns, __ATOMIC_RELAXED) / 1e9);
    putf(out, "etsd_fsync_duration_seconds_count %" PRIu64 "\n", count);

    put_head(out, "etsd_loop_turn_max_seconds", "gauge",
             "Longest time one turn of the event loop worked without polling.");
    putf(out, "etsd_loop_turn_max_seconds %.9f\n", (double)turn_max / 1e9);
    return out->err;
}

/* ---- etsd:info() map ------------------------------------------------------- */

int metrics_info(term_buf_t *out)
{
    metrics_gauges_t g;
    read_gauges(&g);
    size_t nrpc = 0;
    for (size_t i = 0; i <= METRICS_RPC_MAX; i++)
        nrpc += rpc_series[i].mod != NULL;

    term_put_map(out, METRICS_N + 7);
    for (int i = 0; i < METRICS_N; i++) {
        term_put_atom(out, counter_meta[i].info);
        term_put_ulong(out, counters[i]);
    }
    term_put_atom(out, "peers_up");
    term_put_ulong(out, g.peers_up);
    term_put_atom(out, "table_objects");
    term_put_ulong(out, g.table_objects);
    term_put_atom(out, "table_memory_bytes");
    term_put_ulong(out, g.table_memory_bytes);
    term_put_atom(out, "log_bytes");
    term_put_ulong(out, g.log_bytes);
    term_put_atom(out, "loop_turn_max_us");
    term_put_ulong(out, turn_max / 1000);
    term_put_atom(out, "fsync");
    term_put_map(out, 3);
    term_put_atom(out, "count");
    term_put_ulong(out, __atomic_load_n(&fsync_count, __ATOMIC_RELAXED));
    term_put_atom(out, "max_us");
    term_put_ulong(out, __atomic_load_n(&fsync_max_ns, __ATOMIC_RELAXED) / 1000);
    term_put_atom(out, "sum_us");
    term_put_ulong(out, __atomic_load_n(&fsync_sum_ns, __ATOMIC_RELAXED) / 1000);
    term_put_atom(out, "rpc");
    if (nrpc)
        term_put_list(out, (uint32_t)nrpc);
    for (size_t i = 0; i <= METRICS_RPC_MAX; i++) {
        const rpc_series_t *s = &rpc_series[i];
        if (!s->mod)
            continue;
        term_put_tuple(out, 4);
        term_put_binary(out, s->mod, strlen(s->mod));
        term_put_binary(out, s->fun, strlen(s->fun));
        term_put_binary(out, s->result, strlen(s->result));
        term_put_ulong(out, s->n);
    }
    term_put_nil(out);
    return out->err;
}

/* ---- HTTP ---------------------------------------------------------------- */

typedef struct http_conn http_conn_t;

struct metrics_server {
    uv_tcp_t listen;
    http_conn_t *conns;     /* open connections */
    size_t nconns;
    int closing;
    int open;               /* handles not closed yet, the listener included */
};

struct http_conn {
    metrics_server_t *s;
    http_conn_t *next, **pprev;
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_write_t wr;
    http_parser parser;
    char url[64];
    size_t url_len;
    int url_long;
    size_t got;             /* request bytes read */
    int answered;
    int closing;
    int open;               /* 2 handles until both are closed */
    char *reply;
    char rbuf[2048];
};

static void server_maybe_free(metrics_server_t *s)
{
    if (s->closing && s->open == 0)
        mem_free(s);
}

static void conn_closed_cb(uv_handle_t *h)
{
    http_conn_t *c = h->data;
    if (--c->open > 0)
        return;
    metrics_server_t *s = c->s;
    mem_free(c->reply);
    mem_free(c);
    s->open--;
    server_maybe_free(s);
}

static void conn_close(http_conn_t *c)
{
    if (c->closing)
        return;
    c->closing = 1;
    *c->pprev = c->next;
    if (c->next)
        c->next->pprev = c->pprev;
    c->s->nconns--;
    uv_close((uv_handle_t *)&c->tcp, conn_closed_cb);
    uv_close((uv_handle_t *)&c->timer, conn_closed_cb);
}

static void write_cb(uv_write_t *w, int status)
{
    (void)status;
    conn_close(w->data);
}

/* Sends one response and closes the connection once it is written. */
static void respond(http_conn_t *c, int code, const char *reason, const char *type,
                    const char *body, size_t body_len)
{
    if (c->answered)
        return;
    c->answered = 1;
    uv_read_stop((uv_stream_t *)&c->tcp);
    char head[256];
    int hn = snprintf(head, sizeof head,
                      "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                      "Connection: close\r\n\r\n",
                      code, reason, type, body_len);
    c->reply = mem_alloc((size_t)hn + body_len);
    if (!c->reply) {
        conn_close(c);
        return;
    }
    memcpy(c->reply, head, (size_t)hn);
    if (body_len)
        memcpy(c->reply + hn, body, body_len);
    uv_buf_t b = uv_buf_init(c->reply, (unsigned)((size_t)hn + body_len));
    c->wr.data = c;
    if (uv_write(&c->wr, (uv_stream_t *)&c->tcp, &b, 1, write_cb) < 0)
        conn_close(c);
}

static void respond_text(http_conn_t *c, int code, const char *reason)
{
    char body[64];
    int n = snprintf(body, sizeof body, "%d %s\n", code, reason);
    respond(c, code, reason, "text/plain; charset=utf-8", body, (size_t)n);
}

static int on_url(http_parser *p, const char *at, size_t len)
{
    http_conn_t *c = p->data;
    if (c->url_len + len >= sizeof c->url) {
        c->url_long = 1;
        return 0;
    }
    memcpy(c->url + c->url_len, at, len);
    c->url_len += len;
    c->url[c->url_len] = 0;
    return 0;
}

static int on_message_complete(http_parser *p)
{
    http_conn_t *c = p->data;
    if (p->method != HTTP_GET && p->method != HTTP_HEAD) {
        respond_text(c, 405, "Method Not Allowed");
    } else if (c->url_long || (strcmp(c->url, "/metrics") != 0 &&
                               strncmp(c->url, "/metrics?", 9) != 0)) {
        respond_text(c, 404, "Not Found");
    } else {
        term_buf_t b;
        term_buf_init(&b);
        if (metrics_render(&b) < 0) {
            term_buf_release(&b);
            respond_text(c, 500, "Internal Server Error");
        } else {
            respond(c, 200, "OK", "text/plain; version=0.0.4; charset=utf-8", b.data,
                    p->method == HTTP_HEAD ? 0 : b.len);
            term_buf_release(&b);
        }
    }
    /* One request per connection: stop parsing what follows. */
    return 1;
}

static const http_parser_settings parser_settings = {
    .on_url = on_url,
    .on_message_complete = on_message_complete,
};

static void alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    http_conn_t *c = h->data;
    (void)hint;
    *buf = uv_buf_init(c->rbuf, sizeof c->rbuf);
}

static void read_cb(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
    http_conn_t *c = st->data;
    if (n == 0 || c->answered)
        return;
    if (n < 0) {
        conn_close(c);
        return;
    }
    c->got += (size_t)n;
    if (c->got > METRICS_HTTP_MAX_REQUEST) {
        respond_text(c, 431, "Request Header Fields Too Large");
        return;
    }
    size_t used = http_parser_execute(&c->parser, &parser_settings, buf->base, (size_t)n);
    if (c->answered)
        return;
    if (HTTP_PARSER_ERRNO(&c->parser) != HPE_OK || used != (size_t)n) {
        log_debug("metrics: bad request: %s",
                  http_errno_name(HTTP_PARSER_ERRNO(&c->parser)));
        respond_text(c, 400, "Bad Request");
    }
}

static void timeout_cb(uv_timer_t *t)
{
    http_conn_t *c = t->data;
    /* A client too slow to send one request, or to read the answer. */
    conn_close(c);
}

/* Takes a new connection into s's list; the caller connects c->tcp. */
static http_conn_t *conn_new(metrics_server_t *s, uv_loop_t *loop)
{
    http_conn_t *c = mem_calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->s = s;
    uv_tcp_init(loop, &c->tcp);
    uv_timer_init(loop, &c->timer);
    c->tcp.data = c->timer.data = c;
    c->open = 2;
    s->open++;
    c->next = s->conns;
    if (c->next)
        c->next->pprev = &c->next;
    c->pprev = &s->conns;
    s->conns = c;
    s->nconns++;
    return c;
}

/* Starts reading the request, with its time limit. */
static int conn_serve(http_conn_t *c)
{
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
    uv_timer_start(&c->timer, timeout_cb, METRICS_HTTP_TIMEOUT_MS, 0);
    return uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb);
}

static void accept_cb(uv_stream_t *ls, int status)
{
    metrics_server_t *s = ls->data;
    if (status < 0 || s->closing)
        return;
    http_conn_t *c = conn_new(s, ls->loop);
    if (!c)
        return;
    if (uv_accept(ls, (uv_stream_t *)&c->tcp) < 0 || s->nconns > METRICS_HTTP_MAX_CONNS ||
        conn_serve(c) < 0)
        conn_close(c);
}

int metrics_server_open_fd(metrics_server_t *s, uv_os_sock_t fd)
{
    if (s->closing)
        return -EINVAL;
    http_conn_t *c = conn_new(s, s->listen.loop);
    if (!c) {
        close(fd);
        return -ENOMEM;
    }
    int rc = uv_tcp_open(&c->tcp, fd);
    if (rc < 0)
        close(fd);
    else
        rc = conn_serve(c);
    if (rc < 0)
        conn_close(c);
    return rc;
}

static void listen_closed_cb(uv_handle_t *h)
{
    metrics_server_t *s = h->data;
    s->open--;
    server_maybe_free(s);
}

int metrics_parse_listen(const char *spec, struct sockaddr_storage *ss)
{
    char host[64] = "127.0.0.1";
    const char *port = spec;
    const char *colon = strrchr(spec, ':');
    if (colon) {
        const char *h = spec;
        size_t hl = (size_t)(colon - spec);
        if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']')
            h++, hl -= 2;
        if (hl == 0 || hl >= sizeof host)
            return -EINVAL;
        memcpy(host, h, hl);
        host[hl] = 0;
        port = colon + 1;
    }
    char *e;
    errno = 0;
    unsigned long p = strtoul(port, &e, 10);
    if (errno || *e || e == port || port[0] == '-' || port[0] == '+' || p > 65535)
        return -EINVAL;
    memset(ss, 0, sizeof *ss);
    if (uv_ip4_addr(host, (int)p, (struct sockaddr_in *)ss) == 0)
        return 0;
    if (uv_ip6_addr(host, (int)p, (struct sockaddr_in6 *)ss) == 0 && strchr(host, ':'))
        return 0;
    return -EINVAL;
}

int metrics_server_new(uv_loop_t *loop, metrics_server_t **out)
{
    metrics_server_t *s = mem_calloc(1, sizeof *s);
    if (!s)
        return -ENOMEM;
    int rc = uv_tcp_init(loop, &s->listen);
    if (rc < 0) {
        mem_free(s);
        return rc;
    }
    s->listen.data = s;
    s->open = 1;
    *out = s;
    return 0;
}

int metrics_server_start(uv_loop_t *loop, const struct sockaddr *addr,
                         metrics_server_t **out)
{
    metrics_server_t *s;
    int rc = metrics_server_new(loop, &s);
    if (rc < 0)
        return rc;
    rc = uv_tcp_bind(&s->listen, addr, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&s->listen, 64, accept_cb);
    if (rc < 0) {
        metrics_server_close(s);
        return rc;
    }
    *out = s;
    return 0;
}

void metrics_server_close(metrics_server_t *s)
{
    if (!s || s->closing)
        return;
    s->closing = 1;
    while (s->conns)
        conn_close(s->conns);
    uv_close((uv_handle_t *)&s->listen, listen_closed_cb);
}
