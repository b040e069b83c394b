/* check_metrics.c: the Prometheus text (names, labels, escaping, the
 * histogram), the bound on rpc series, --metrics-port parsing, and the HTTP
 * server on a private loop over a socketpair: each request gets its answer
 * and its connection closed. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <uv.h>

#include "cnode/metrics.h"
#include "term/mem.h"

/* Renders into a NUL-terminated string; free it with mem_free(). */
static char *render(void)
{
    term_buf_t b;
    term_buf_init(&b);
    ck_assert_int_eq(metrics_render(&b), 0);
    term_buf_append(&b, "", 1);
    ck_assert_int_eq(b.err, 0);
    size_t len;
    return term_buf_detach(&b, &len);
}

#define ck_assert_has(text, line) \
    do { if (!strstr((text), (line))) ck_abort_msg("missing: %s\n%s", (line), (text)); } while (0)

START_TEST(render_counters_have_their_labels)
{
    metrics_reset();
    metrics_inc(METRICS_CONN_UP);
    metrics_inc(METRICS_CONN_UP);
    metrics_inc(METRICS_CONN_DOWN);
    metrics_add(METRICS_BYTES_IN, 1234);
    metrics_inc(METRICS_NEW_APPLIED);
    metrics_add(METRICS_SYNC_MERGED, 7);
    metrics_inc(METRICS_COMPACTIONS);
    char *t = render();
    ck_assert_has(t, "# TYPE etsd_connection_events_total counter\n");
    ck_assert_has(t, "\netsd_connection_events_total{event=\"up\"} 2\n");
    ck_assert_has(t, "\netsd_connection_events_total{event=\"down\"} 1\n");
    ck_assert_has(t, "\netsd_dist_bytes_total{direction=\"in\"} 1234\n");
    ck_assert_has(t, "\netsd_new_applied_total 1\n");
    ck_assert_has(t, "\netsd_sync_objects_merged_total 7\n");
    ck_assert_has(t, "\netsd_compactions_total 1\n");
    mem_free(t);
}
END_TEST

START_TEST(render_each_type_line_appears_once)
{
    metrics_reset();
    char *t = render();
    const char *p = strstr(t, "# TYPE etsd_dist_messages_total");
    ck_assert_ptr_nonnull(p);
    ck_assert_ptr_null(strstr(p + 1, "# TYPE etsd_dist_messages_total"));
    mem_free(t);
}
END_TEST

START_TEST(rpc_label_values_are_escaped)
{
    metrics_reset();
    metrics_rpc("ets", "we\"ird\\na\nme", "return");
    char *t = render();
    ck_assert_has(t, "etsd_rpc_calls_total{module=\"ets\",function=\"we\\\"ird\\\\na\\nme\","
                     "result=\"return\"} 1\n");
    mem_free(t);
}
END_TEST

START_TEST(rpc_unknown_module_counts_as_other)
{
    metrics_reset();
    metrics_rpc("os", "cmd", "error");
    metrics_rpc("file", "read_file", "error");
    char *t = render();
    ck_assert_has(t, "{module=\"other\",function=\"other\",result=\"error\"} 2\n");
    ck_assert_ptr_null(strstr(t, "\"os\""));
    mem_free(t);
}
END_TEST

START_TEST(rpc_series_past_the_limit_share_one)
{
    metrics_reset();
    char fun[32];
    for (int i = 0; i < METRICS_RPC_MAX + 50; i++) {
        snprintf(fun, sizeof fun, "f%d", i);
        metrics_rpc("ets", fun, "return");
    }
    char *t = render();
    size_t n = 0;
    for (const char *p = t; (p = strstr(p, "etsd_rpc_calls_total{")) != NULL; p++)
        n++;
    ck_assert_uint_eq(n, METRICS_RPC_MAX + 1);
    ck_assert_has(t, "{module=\"other\",function=\"other\",result=\"other\"} 50\n");
    mem_free(t);
}
END_TEST

START_TEST(fsync_histogram_is_cumulative)
{
    metrics_reset();
    metrics_fsync_observe(300000);        /* 0.3 ms */
    metrics_fsync_observe(3000000);       /* 3 ms */
    metrics_fsync_observe(3000000000ull); /* 3 s: past every bound */
    char *t = render();
    ck_assert_has(t, "etsd_fsync_duration_seconds_bucket{le=\"0.0005\"} 1\n");
    ck_assert_has(t, "etsd_fsync_duration_seconds_bucket{le=\"0.0025\"} 1\n");
    ck_assert_has(t, "etsd_fsync_duration_seconds_bucket{le=\"0.005\"} 2\n");
    ck_assert_has(t, "etsd_fsync_duration_seconds_bucket{le=\"2.5\"} 2\n");
    ck_assert_has(t, "etsd_fsync_duration_seconds_bucket{le=\"+Inf\"} 3\n");
    ck_assert_has(t, "etsd_fsync_duration_seconds_count 3\n");
    ck_assert_has(t, "etsd_fsync_duration_seconds_sum 3.003300000\n");
    mem_free(t);
}
END_TEST

/* Every allocation in turn fails: -ENOMEM, and nothing leaks (the buffer
 * is released as usual), until the render succeeds. */
START_TEST(render_out_of_memory_returns_enomem)
{
    metrics_reset();
    metrics_rpc("ets", "lookup", "return");
    for (long k = 1;; k++) {
        term_buf_t b;
        term_buf_init(&b);
        mem_fail_after(k);
        int rc = metrics_render(&b);
        long used = mem_alloc_count();
        mem_fail_after(0);
        term_buf_release(&b);
        if (rc == 0) {
            ck_assert_int_lt(used, k);
            break;
        }
        ck_assert_int_eq(rc, -ENOMEM);
        ck_assert_int_lt(k, 1000);
    }
}
END_TEST

static const struct listen_row {
    const char *id, *spec;
    int ok, family, port;
} listen_rows[] = {
    {"port only", "9100", 1, AF_INET, 9100},
    {"v4 and port", "0.0.0.0:80", 1, AF_INET, 80},
    {"v6 in brackets", "[::1]:9100", 1, AF_INET6, 9100},
    {"port zero", "0", 1, AF_INET, 0},
    {"word", "abc", 0, 0, 0},
    {"too big", "70000", 0, 0, 0},
    {"signed", "+80", 0, 0, 0},
    {"empty port", "1.2.3.4:", 0, 0, 0},
    {"empty host", ":80", 0, 0, 0},
    {"bad v4", "300.1.1.1:80", 0, 0, 0},
    {"v6 without brackets", "::1", 0, 0, 0},
};

START_TEST(parse_listen_accepts_port_and_address)
{
    const struct listen_row *r = &listen_rows[_i];
    struct sockaddr_storage ss;
    int rc = metrics_parse_listen(r->spec, &ss);
    if (!r->ok) {
        ck_assert_msg(rc == -EINVAL, "%s: '%s' accepted", r->id, r->spec);
        return;
    }
    ck_assert_msg(rc == 0, "%s: '%s' refused", r->id, r->spec);
    ck_assert_int_eq(ss.ss_family, r->family);
    int port = r->family == AF_INET ? ntohs(((struct sockaddr_in *)&ss)->sin_port)
                                    : ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    ck_assert_int_eq(port, r->port);
}
END_TEST

/* Sends req to a server on a private loop over a socketpair, runs the loop
 * until the server has closed the connection, and returns what came back
 * (NUL-terminated, in a static buffer). */
static const char *exchange(const char *req, size_t len)
{
    static char got[65536];
    uv_loop_t loop;
    metrics_server_t *s;
    int sv[2];
    ck_assert_int_eq(uv_loop_init(&loop), 0);
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    ck_assert_int_eq(metrics_server_new(&loop, &s), 0);
    ck_assert_int_eq(metrics_server_open_fd(s, sv[1]), 0);
    /* The socket buffer takes the whole request at once. */
    ck_assert_int_eq(write(sv[0], req, len), (ssize_t)len);
    shutdown(sv[0], SHUT_WR);
    uv_run(&loop, UV_RUN_DEFAULT);
    size_t n = 0;
    ssize_t r;
    while (n < sizeof got - 1 && (r = read(sv[0], got + n, sizeof got - 1 - n)) > 0)
        n += (size_t)r;
    got[n] = 0;
    close(sv[0]);
    metrics_server_close(s);
    uv_run(&loop, UV_RUN_DEFAULT);
    ck_assert_int_eq(uv_loop_close(&loop), 0);
    return got;
}

static const struct http_row {
    const char *id, *req, *status;
} http_rows[] = {
    {"get metrics", "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 200 OK\r\n"},
    {"query string", "GET /metrics?x=1 HTTP/1.0\r\n\r\n", "HTTP/1.1 200 OK\r\n"},
    {"other path", "GET / HTTP/1.1\r\n\r\n", "HTTP/1.1 404 "},
    {"post", "POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n", "HTTP/1.1 405 "},
    {"junk", "\x01\x02\x03 hello\r\n\r\n", "HTTP/1.1 400 "},
    {"bad version", "GET /metrics HTTP/x\r\n\r\n", "HTTP/1.1 400 "},
    {"half a request", "GET /metr", ""},
};

START_TEST(http_request_gets_its_answer_and_is_closed)
{
    const struct http_row *r = &http_rows[_i];
    const char *got = exchange(r->req, strlen(r->req));
    if (!r->status[0]) {
        /* EOF before a whole request: closed without an answer. */
        ck_assert_str_eq(got, "");
        return;
    }
    ck_assert_msg(strncmp(got, r->status, strlen(r->status)) == 0, "%s: got %.60s", r->id, got);
    ck_assert_ptr_nonnull(strstr(got, "Connection: close\r\n"));
    if (strstr(r->status, "200"))
        ck_assert_ptr_nonnull(strstr(got, "\r\n\r\n# HELP etsd_peers_up"));
}
END_TEST

START_TEST(http_oversized_request_gets_431)
{
    char req[METRICS_HTTP_MAX_REQUEST + 200];
    size_t n = (size_t)snprintf(req, sizeof req, "GET /metrics HTTP/1.1\r\nX-Big: ");
    memset(req + n, 'v', sizeof req - n);
    const char *got = exchange(req, sizeof req);
    ck_assert_msg(strncmp(got, "HTTP/1.1 431 ", 13) == 0, "got %.60s", got);
}
END_TEST

Suite *metrics_suite(void)
{
    Suite *s = suite_create("metrics");
    TCase *t = tcase_create("text");
    tcase_add_test(t, render_counters_have_their_labels);
    tcase_add_test(t, render_each_type_line_appears_once);
    tcase_add_test(t, rpc_label_values_are_escaped);
    tcase_add_test(t, rpc_unknown_module_counts_as_other);
    tcase_add_test(t, rpc_series_past_the_limit_share_one);
    tcase_add_test(t, fsync_histogram_is_cumulative);
    tcase_add_test(t, render_out_of_memory_returns_enomem);
    tcase_add_loop_test(t, parse_listen_accepts_port_and_address, 0,
                        sizeof listen_rows / sizeof listen_rows[0]);
    suite_add_tcase(s, t);
    t = tcase_create("http");
    tcase_add_loop_test(t, http_request_gets_its_answer_and_is_closed, 0,
                        sizeof http_rows / sizeof http_rows[0]);
    tcase_add_test(t, http_oversized_request_gets_431);
    suite_add_tcase(s, t);
    return s;
}
