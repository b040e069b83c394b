/* check_conn.c: two connections on a private libuv loop over a
 * socketpair: the handshake through libuv, frames both ways, a wrong
 * cookie, the tick timeout, and the slow-reader cut-off. */
#include <check.h>
#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include <uv.h>

#include "cnode/cnode_int.h"
#include "cnode/log.h"
#include "term/mem.h"

typedef struct side {
    conn_t *c;
    int up, closed, was_up, status;
    int frames;
    size_t last_len;
    char reason[128];
} side_t;

static const char *on_name(conn_t *c, void *data)
{
    (void)c;
    (void)data;
    return "ok";
}

static void on_up(conn_t *c, void *data)
{
    (void)c;
    ((side_t *)data)->up = 1;
}

static void on_frame(conn_t *c, const char *p, size_t n, void *data)
{
    (void)c;
    (void)p;
    side_t *s = data;
    s->frames++;
    s->last_len = n;
}

static void on_closed(conn_t *c, int was_up, int status, const char *reason, void *data)
{
    (void)c;
    side_t *s = data;
    s->closed = 1;
    s->was_up = was_up;
    s->status = status;
    snprintf(s->reason, sizeof s->reason, "%s", reason);
}

static const conn_ops_t ops = {on_name, NULL, on_up, on_frame, on_closed};

typedef struct rig {
    uv_loop_t loop;
    side_t a, b;  /* a initiates, b accepts */
    conn_limits_t lim;
} rig_t;

static void rig_start(rig_t *r, const char *cookie_a, const char *cookie_b, unsigned tick_ms,
                      uint64_t max_queue)
{
    memset(r, 0, sizeof *r);
    ck_assert_int_eq(uv_loop_init(&r->loop), 0);
    int sv[2];
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    r->lim.ticktime_ms = tick_ms;
    r->lim.setup_ms = 5000;
    r->lim.max_frame = 1 << 20;
    r->lim.max_queue = max_queue;
    hs_t ta, tb;
    hs_init(&ta, HS_INITIATOR, "a@host", "b@host", cookie_a, ETSD_DFLAGS, 1, 0);
    hs_init(&tb, HS_ACCEPTOR, "b@host", NULL, cookie_b, ETSD_DFLAGS, 2, 0);
    ck_assert_int_eq(conn_open_fd(&r->loop, sv[0], HS_INITIATOR, "b@host", &ta, &r->lim, &ops,
                                  &r->a, &r->a.c), 0);
    ck_assert_int_eq(conn_open_fd(&r->loop, sv[1], HS_ACCEPTOR, NULL, &tb, &r->lim, &ops,
                                  &r->b, &r->b.c), 0);
}

/* Runs the loop until cond holds or nothing is left to do. */
#define RUN_UNTIL(r, cond)                                         \
    do {                                                           \
        while (!(cond) && uv_run(&(r)->loop, UV_RUN_ONCE) != 0) { \
        }                                                          \
    } while (0)

static void rig_finish(rig_t *r)
{
    if (!r->a.closed)
        conn_close(r->a.c, 0, "test over");
    if (!r->b.closed)
        conn_close(r->b.c, 0, "test over");
    uv_run(&r->loop, UV_RUN_DEFAULT);
    ck_assert_int_eq(uv_loop_close(&r->loop), 0);
}

static char *frame_of(size_t body, size_t *len)
{
    char *f = mem_alloc(4 + body);
    ck_assert_ptr_nonnull(f);
    f[0] = (char)(body >> 24);
    f[1] = (char)(body >> 16);
    f[2] = (char)(body >> 8);
    f[3] = (char)body;
    memset(f + 4, 'x', body);
    *len = 4 + body;
    return f;
}

START_TEST(handshake_over_socketpair_brings_both_up)
{
    rig_t r;
    rig_start(&r, "c", "c", 60000, 1 << 20);
    RUN_UNTIL(&r, r.a.up && r.b.up);
    ck_assert_int_eq(r.a.up, 1);
    ck_assert_int_eq(r.b.up, 1);
    ck_assert_str_eq(conn_peer(r.b.c), "a@host");
    ck_assert_uint_eq(conn_peer_creation(r.b.c), 1);
    ck_assert_uint_eq(conn_peer_creation(r.a.c), 2);
    rig_finish(&r);
}
END_TEST

START_TEST(frames_queued_before_up_arrive_in_order)
{
    rig_t r;
    rig_start(&r, "c", "c", 60000, 1 << 20);
    size_t len;
    /* Queued while the handshake runs. */
    char *f = frame_of(10, &len);
    ck_assert_int_eq(conn_send(r.a.c, f, len), 0);
    f = frame_of(300000, &len);
    ck_assert_int_eq(conn_send(r.a.c, f, len), 0);
    RUN_UNTIL(&r, r.b.frames == 2);
    ck_assert_int_eq(r.b.frames, 2);
    ck_assert_uint_eq(r.b.last_len, 300000);
    rig_finish(&r);
}
END_TEST

START_TEST(wrong_cookie_closes_without_up)
{
    rig_t r;
    rig_start(&r, "one", "two", 60000, 1 << 20);
    RUN_UNTIL(&r, r.a.closed && r.b.closed);
    ck_assert_int_eq(r.a.up, 0);
    ck_assert_int_eq(r.b.up, 0);
    ck_assert_int_eq(r.b.status, -EACCES);
    ck_assert_ptr_nonnull(strstr(r.b.reason, "cookie"));
    rig_finish(&r);
}
END_TEST

START_TEST(peer_close_is_seen_as_down_after_up)
{
    rig_t r;
    rig_start(&r, "c", "c", 60000, 1 << 20);
    RUN_UNTIL(&r, r.a.up && r.b.up);
    conn_close(r.b.c, 0, "closed by test");
    RUN_UNTIL(&r, r.a.closed);
    ck_assert_int_eq(r.a.was_up, 1);
    ck_assert_str_eq(r.a.reason, "connection closed by peer");
    rig_finish(&r);
}
END_TEST

/* A frozen peer: reads nothing, sends nothing (as a SIGSTOPped node). */
static void stop_reading(conn_t *c)
{
    conn_freeze(c);
}

START_TEST(slow_reader_is_cut_off_at_queue_limit)
{
    rig_t r;
    rig_start(&r, "c", "c", 60000, 256 * 1024);
    RUN_UNTIL(&r, r.a.up && r.b.up);
    stop_reading(r.b.c);
    /* b reads nothing more; a keeps sending until its queue passes the
     * limit and it closes b as a slow reader. */
    int rc = 0;
    for (int i = 0; i < 200 && rc == 0; i++) {
        size_t len;
        char *f = frame_of(64 * 1024, &len);
        rc = conn_send(r.a.c, f, len);
    }
    ck_assert_int_eq(rc, -ENOBUFS);
    ck_assert_int_eq(r.a.closed, 1);
    ck_assert_int_eq(r.a.status, -ENOBUFS);
    rig_finish(&r);
}
END_TEST

START_TEST(silent_peer_times_out_at_ticktime)
{
    rig_t r;
    rig_start(&r, "c", "c", 200, 1 << 20);
    RUN_UNTIL(&r, r.a.up && r.b.up);
    /* b stops reading and its tick timer stops: a hears nothing. */
    stop_reading(r.b.c);
    RUN_UNTIL(&r, r.a.closed);
    ck_assert_int_eq(r.a.closed, 1);
    ck_assert_int_eq(r.a.status, -ETIMEDOUT);
    ck_assert_str_eq(r.a.reason, "net_tick_timeout");
    rig_finish(&r);
}
END_TEST

Suite *conn_suite(void)
{
    Suite *s = suite_create("conn");
    log_set_level(LOG_ERROR); /* the refusals below log warnings by design */
    TCase *t = tcase_create("socketpair");
    tcase_add_test(t, handshake_over_socketpair_brings_both_up);
    tcase_add_test(t, frames_queued_before_up_arrive_in_order);
    tcase_add_test(t, wrong_cookie_closes_without_up);
    tcase_add_test(t, peer_close_is_seen_as_down_after_up);
    tcase_add_test(t, slow_reader_is_cut_off_at_queue_limit);
    tcase_add_test(t, silent_peer_times_out_at_ticktime);
    suite_add_tcase(s, t);
    return s;
}
