/* metrics.h: etsd's counters and gauges, one process-wide set, shown as
 * Prometheus text on GET /metrics (--metrics-port) and as the metrics map
 * of etsd:info(). Any module may count through metrics_inc()/metrics_add();
 * everything runs on the one loop thread, except metrics_fsync_observe(),
 * which may also be called from a libuv pool thread. */
#ifndef ETSD_METRICS_H
#define ETSD_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "term/term.h"

/* Counters. Each only grows; the names are the Prometheus ones. */
typedef enum metrics_id {
    METRICS_CONN_UP = 0,     /* connections whose handshake finished */
    METRICS_CONN_DOWN,       /* connections lost after they were up */
    METRICS_MSGS_IN,         /* distribution frames received (ticks not counted) */
    METRICS_MSGS_OUT,        /* distribution frames sent */
    METRICS_BYTES_IN,        /* bytes of those frames */
    METRICS_BYTES_OUT,
    METRICS_NEW_APPLIED,     /* {new, User} objects stored */
    METRICS_SYNC_MERGED,     /* objects stored from syncs and pulls */
    METRICS_COMPACTIONS,     /* log compactions (snapshots) done */
    METRICS_N
} metrics_id_t;

/* Adds 1 (or v) to counter id. An id out of range is ignored. */
void metrics_inc(metrics_id_t id);
void metrics_add(metrics_id_t id, uint64_t v);
uint64_t metrics_get(metrics_id_t id);

/* Counts one rpc call of mod:fun that ended with result ("return",
 * "throw", "exit", "error" or "failed" for one that could not run). The
 * strings are copied when new. Modules other than ets, etsd and erlang
 * count as module "other", function "other", and past METRICS_RPC_MAX
 * distinct functions every new one counts as "other" too, so a peer
 * cannot grow the set of series without bound. */
#define METRICS_RPC_MAX 96
void metrics_rpc(const char *mod, const char *fun, const char *result);

/* One fdatasync of the log took ns nanoseconds. */
void metrics_fsync_observe(uint64_t ns);

/* Figures read when they are shown (peers, table, log), filled in by the
 * gauges hook. table is borrowed for the call. */
typedef struct metrics_gauges {
    uint64_t peers_up;
    const char *table;            /* NULL: no table to report */
    uint64_t table_objects;
    uint64_t table_memory_bytes;
    uint64_t log_bytes;
} metrics_gauges_t;
typedef void (*metrics_gauges_cb)(void *arg, metrics_gauges_t *g);
/* Registers the hook (NULL removes it); without one the gauges are 0. */
void metrics_set_gauges_cb(metrics_gauges_cb cb, void *arg);

/* Appends every metric in Prometheus text exposition format 0.0.4 to out.
 * Returns 0 or out->err. */
int metrics_render(term_buf_t *out);

/* Appends the same figures as an Erlang map (for etsd:info/0's metrics
 * key): counters under their short names, peers_up, table_objects,
 * table_memory_bytes, log_bytes, loop_turn_max_us, fsync
 * (#{count, sum_us, max_us}) and rpc ([{Mod, Fun, Result, N}], binaries).
 * Returns 0 or out->err. */
int metrics_info(term_buf_t *out);

/* Zeroes every counter and forgets the rpc series (unit tests). */
void metrics_reset(void);

/* ---- The loop's longest turn ------------------------------------------- */

/* Measures, on loop, how long each turn of the loop works (its time minus
 * the time it waited in poll: the loop must have been configured with
 * UV_METRICS_IDLE_TIME before it ran) and keeps the longest. Returns 0
 * or a negative errno. metrics_loop_close() closes the handle; run the
 * loop afterwards to finish closing it. */
int metrics_loop_start(uv_loop_t *loop);
void metrics_loop_close(void);
/* The longest turn measured so far, in nanoseconds. */
uint64_t metrics_loop_turn_max(void);

/* ---- GET /metrics over HTTP ------------------------------------------- */

/* The HTTP server: one request per connection, parsed by http_parser.
 * GET /metrics answers 200 with metrics_render(); other paths 404, other
 * methods 405, a malformed request 400, a request over
 * METRICS_HTTP_MAX_REQUEST bytes 431. A connection that has not sent a
 * whole request within METRICS_HTTP_TIMEOUT_MS is closed, and past
 * METRICS_HTTP_MAX_CONNS open connections a new one is closed at once, so
 * a hostile client costs only its own connections. */
#define METRICS_HTTP_MAX_REQUEST 8192
#define METRICS_HTTP_TIMEOUT_MS 5000
#define METRICS_HTTP_MAX_CONNS 32
typedef struct metrics_server metrics_server_t;

/* Parses "[ADDR:]PORT" as --metrics-port takes it (ADDR an IPv4 address,
 * or an IPv6 one in brackets; default 127.0.0.1) into *ss. Returns 0 or
 * -EINVAL. */
int metrics_parse_listen(const char *spec, struct sockaddr_storage *ss);

/* Listens on addr. On success *out is new; metrics_server_close() it
 * before the loop ends. Returns 0 or a negative errno (-EADDRINUSE, ...),
 * and then *out is untouched and nothing is left open. */
int metrics_server_start(uv_loop_t *loop, const struct sockaddr *addr,
                         metrics_server_t **out);
/* A server that listens nowhere (yet): metrics_server_open_fd() gives it
 * connections. Same ownership as metrics_server_start(). */
int metrics_server_new(uv_loop_t *loop, metrics_server_t **out);
/* Serves one connection on fd, an already connected stream socket (such
 * as one end of a socketpair in unit tests), as if it had been accepted;
 * the server owns fd from then on, even when this fails. */
int metrics_server_open_fd(metrics_server_t *s, uv_os_sock_t fd);

/* Closes the listener and every connection; the server frees itself once
 * the loop has closed them. metrics_server_close(NULL) does nothing. */
void metrics_server_close(metrics_server_t *s);

#endif
