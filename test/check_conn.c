/* check_conn.c: two connections on a private libuv loop over a
 * socketpair: the handshake through libuv, frames both ways, a wrong
 * cookie, the tick timeout, the slow-reader cut-off, and the read pause
 * after a batch of frames that may wait. */
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

/* A frame whose body starts with 'w' may wait (as a message to a bulk
 * mailbox does in node.c); any other does not. */
static int on_frame(conn_t *c, const char *p, size_t n, void *data)
{
    (void)c;
    side_t *s = data;
    s->frames++;
    s->last_len = n;
    return p[0] == 'w';
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

/* One buffer holding a frame per character of kinds ('w': may wait, 'x':
 * may not, 't': a tick), each body 100 bytes, so that a single write puts
 * them all in one read on the other side. */
static char *burst_of(const char *kinds, size_t *len)
{
    size_t n = strlen(kinds), total = 0;
    for (size_t i = 0; i < n; i++)
        total += kinds[i] == 't' ? 4 : 104;
    char *f = mem_alloc(total);
    ck_assert_ptr_nonnull(f);
    char *p = f;
    for (size_t i = 0; i < n; i++) {
        size_t body = kinds[i] == 't' ? 0 : 100;
        p[0] = p[1] = 0;
        p[2] = (char)(body >> 8);
        p[3] = (char)body;
        memset(p + 4, kinds[i], body);
        p += 4 + body;
    }
    *len = total;
    return f;
}

/* Brings the rig up and has a send b one burst; returns once b has it. */
static void rig_up_and_burst(rig_t *r, const char *kinds)
{
    rig_start(r, "c", "c", 60000, 1 << 20);
    RUN_UNTIL(r, r->a.up && r->b.up);
    ck_assert_int_eq(r->b.up, 1);
    size_t len, want = 0;
    for (const char *k = kinds; *k; k++)
        want += *k != 't';
    char *f = burst_of(kinds, &len);
    ck_assert_int_eq(conn_send(r->a.c, f, len), 0);
    RUN_UNTIL(r, (size_t)r->b.frames == want);
    ck_assert_int_eq(r->b.frames, (int)want);
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

START_TEST(burst_of_frames_that_may_wait_pauses_reading)
{
    rig_t r;
    rig_up_and_burst(&r, "wwtw");
    ck_assert_int_eq(conn_read_paused(r.b.c), 1);
    rig_finish(&r);
}
END_TEST

START_TEST(frames_after_a_pause_are_all_delivered)
{
    rig_t r;
    rig_up_and_burst(&r, "ww");
    ck_assert_int_eq(conn_read_paused(r.b.c), 1);
    /* Sent while b is not reading: they wait in the socket until the pause
     * ends, then arrive, none lost. */
    size_t len;
    char *f = burst_of("xwx", &len);
    ck_assert_int_eq(conn_send(r.a.c, f, len), 0);
    f = frame_of(300000, &len);
    ck_assert_int_eq(conn_send(r.a.c, f, len), 0);
    RUN_UNTIL(&r, r.b.frames == 6);
    ck_assert_int_eq(r.b.frames, 6);
    ck_assert_uint_eq(r.b.last_len, 300000);
    /* That read held frames that may not wait: reading goes on. */
    ck_assert_int_eq(conn_read_paused(r.b.c), 0);
    ck_assert_int_eq(r.b.closed, 0);
    rig_finish(&r);
}
END_TEST

START_TEST(burst_with_a_frame_that_may_not_wait_keeps_reading)
{
    rig_t r;
    rig_up_and_burst(&r, "wwxw");
    ck_assert_int_eq(conn_read_paused(r.b.c), 0);
    rig_finish(&r);
}
END_TEST

START_TEST(lone_frame_that_may_wait_keeps_reading)
{
    rig_t r;
    rig_up_and_burst(&r, "tw");
    ck_assert_int_eq(conn_read_paused(r.b.c), 0);
    rig_finish(&r);
}
END_TEST

START_TEST(frozen_conn_is_not_restarted_by_the_pause)
{
    rig_t r;
    rig_up_and_burst(&r, "ww");
    ck_assert_int_eq(conn_read_paused(r.b.c), 1);
    conn_freeze(r.b.c);
    size_t len;
    char *f = burst_of("x", &len);
    ck_assert_int_eq(conn_send(r.a.c, f, len), 0);
    /* The pause timer fires (paused drops to 0) and must leave reading
     * stopped: the frame sent meanwhile stays in the socket. */
    RUN_UNTIL(&r, !conn_read_paused(r.b.c));
    ck_assert_int_eq(conn_read_paused(r.b.c), 0);
    for (int i = 0; i < 8; i++)
        uv_run(&r.loop, UV_RUN_NOWAIT);
    ck_assert_int_eq(r.b.frames, 2);
    ck_assert_int_eq(r.b.closed, 0);
    rig_finish(&r);
}
END_TEST

START_TEST(closed_conn_is_not_restarted_by_the_pause)
{
    rig_t r;
    rig_up_and_burst(&r, "www");
    ck_assert_int_eq(conn_read_paused(r.b.c), 1);
    /* Closing closes the pause timer with the socket: its callback never
     * runs on the freed conn (ASan checks that), and the loop ends. */
    conn_close(r.b.c, 0, "closed by test");
    ck_assert_int_eq(r.b.closed, 1);
    RUN_UNTIL(&r, r.a.closed);
    ck_assert_int_eq(r.a.was_up, 1);
    ck_assert_int_eq(r.b.frames, 3);
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
    TCase *p = tcase_create("read_pause");
    tcase_add_test(p, burst_of_frames_that_may_wait_pauses_reading);
    tcase_add_test(p, frames_after_a_pause_are_all_delivered);
    tcase_add_test(p, burst_with_a_frame_that_may_not_wait_keeps_reading);
    tcase_add_test(p, lone_frame_that_may_wait_keeps_reading);
    tcase_add_test(p, frozen_conn_is_not_restarted_by_the_pause);
    tcase_add_test(p, closed_conn_is_not_restarted_by_the_pause);
    suite_add_tcase(s, p);
    return s;
}
