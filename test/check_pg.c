/* check_pg.c: decoding what a remote pg scope sends (pg_decode), against
 * messages encoded by a real OTP node (test/vectors/services_vectors.h). */
#include <check.h>
#include <errno.h>
#include <string.h>

#include "cnode/pg.h"
#include "term/mem.h"
#include "term/term.h"
#include "test/vectors/services_vectors.h"

/* What the callback saw: group names and pid counts, in order. */
typedef struct seen {
    int calls;
    char group[4][TERM_ATOM_MAX];
    size_t npids[4];
    term_pid_t first[4];
    int fail_at;   /* call number that returns -ENOMEM, 0: none */
} seen_t;

static int record_cb(const char *group, const term_pid_t *pids, size_t n, void *data)
{
    seen_t *s = data;
    if (s->fail_at && s->calls + 1 == s->fail_at)
        return -ENOMEM;
    if (s->calls < 4) {
        strcpy(s->group[s->calls], group);
        s->npids[s->calls] = n;
        if (n)
            s->first[s->calls] = pids[0];
    }
    s->calls++;
    return 0;
}

static term_pid_t pid_of(const char *v, size_t len)
{
    term_reader_t r;
    term_pid_t p;
    term_reader_init(&r, v, len);
    ck_assert_int_eq(term_get_pid(&r, &p), 0);
    return p;
}

static int pid_eq(const term_pid_t *a, const term_pid_t *b)
{
    return a->num == b->num && a->serial == b->serial &&
           a->creation == b->creation && strcmp(a->node, b->node) == 0;
}

START_TEST(decode_discover_gives_peer_and_no_groups)
{
    seen_t s = {0};
    term_pid_t peer, want = pid_of(vec_pid1, vec_pid1_len);
    ck_assert_int_eq(pg_decode(vec_pg_discover, vec_pg_discover_len, &peer, record_cb, &s),
                     PG_MSG_DISCOVER);
    ck_assert(pid_eq(&peer, &want));
    ck_assert_int_eq(s.calls, 0);
}
END_TEST

START_TEST(decode_sync_calls_back_once_per_group)
{
    seen_t s = {0};
    term_pid_t peer, p2 = pid_of(vec_pid2, vec_pid2_len), p3 = pid_of(vec_pid3, vec_pid3_len);
    ck_assert_int_eq(pg_decode(vec_pg_sync_two, vec_pg_sync_two_len, &peer, record_cb, &s),
                     PG_MSG_SYNC);
    ck_assert_int_eq(s.calls, 2);
    ck_assert_str_eq(s.group[0], "Elixir.MyApp.PubSub.Adapter");
    ck_assert_int_eq(s.npids[0], 2);
    ck_assert(pid_eq(&s.first[0], &p2));
    ck_assert_str_eq(s.group[1], "Elixir.MyApp.PubSub.Adapter_2");
    ck_assert_int_eq(s.npids[1], 1);
    ck_assert(pid_eq(&s.first[1], &p3));
}
END_TEST

START_TEST(decode_sync_without_groups_is_a_sync)
{
    seen_t s = {0};
    term_pid_t peer;
    ck_assert_int_eq(pg_decode(vec_pg_sync_none, vec_pg_sync_none_len, &peer, record_cb, &s),
                     PG_MSG_SYNC);
    ck_assert_int_eq(s.calls, 0);
}
END_TEST

START_TEST(decode_join_takes_a_pid_or_a_list)
{
    seen_t s = {0}, t = {0};
    term_pid_t peer;
    ck_assert_int_eq(pg_decode(vec_pg_join_one, vec_pg_join_one_len, &peer, record_cb, &s),
                     PG_MSG_JOIN);
    ck_assert_int_eq(s.calls, 1);
    ck_assert_int_eq(s.npids[0], 1);
    ck_assert_int_eq(pg_decode(vec_pg_join_list, vec_pg_join_list_len, &peer, record_cb, &t),
                     PG_MSG_JOIN);
    ck_assert_int_eq(t.calls, 1);
    ck_assert_str_eq(t.group[0], "Elixir.MyApp.PubSub.Adapter_2");
    ck_assert_int_eq(t.npids[0], 2);
}
END_TEST

START_TEST(decode_leave_gives_the_pids_for_every_group)
{
    seen_t s = {0}, t = {0};
    term_pid_t peer;
    ck_assert_int_eq(pg_decode(vec_pg_leave_two, vec_pg_leave_two_len, &peer, record_cb, &s),
                     PG_MSG_LEAVE);
    ck_assert_int_eq(s.calls, 2);
    ck_assert_int_eq(s.npids[0], 2);
    ck_assert_int_eq(s.npids[1], 2);
    ck_assert_int_eq(pg_decode(vec_pg_leave_one, vec_pg_leave_one_len, &peer, record_cb, &t),
                     PG_MSG_LEAVE);
    ck_assert_int_eq(t.calls, 1);
    ck_assert_int_eq(t.npids[0], 1);
}
END_TEST

static const struct bad_row {
    const char *id;
    const char *msg;
    size_t len;
} bad_rows[] = {
    {"discover_atom", vec_pg_bad_discover_atom, vec_pg_bad_discover_atom_len},
    {"sync_atom_pid", vec_pg_bad_sync_atom_pid, vec_pg_bad_sync_atom_pid_len},
    {"sync_second_group", vec_pg_bad_sync_second_group, vec_pg_bad_sync_second_group_len},
    {"sync_improper", vec_pg_bad_sync_improper, vec_pg_bad_sync_improper_len},
    {"join_arity", vec_pg_bad_join_arity, vec_pg_bad_join_arity_len},
    {"leave_groups", vec_pg_bad_leave_groups, vec_pg_bad_leave_groups_len},
    {"unknown", vec_pg_bad_unknown, vec_pg_bad_unknown_len},
    {"gen_call", vec_pg_bad_call, vec_pg_bad_call_len},
    {"fwd_not_pg", vec_fwd_new, vec_fwd_new_len},
    {"empty", "", 0},
};

START_TEST(decode_malformed_returns_eproto_before_any_callback)
{
    seen_t s = {0};
    term_pid_t peer;
    const struct bad_row *row = &bad_rows[_i];
    ck_assert_msg(pg_decode(row->msg, row->len, &peer, record_cb, &s) == -EPROTO,
                  "row %s", row->id);
    ck_assert_msg(s.calls == 0, "row %s", row->id);
}
END_TEST

START_TEST(decode_truncated_at_every_byte_returns_eproto)
{
    seen_t s = {0};
    term_pid_t peer;
    for (size_t n = 0; n < vec_pg_sync_two_len; n++)
        ck_assert_int_eq(pg_decode(vec_pg_sync_two, n, &peer, record_cb, &s), -EPROTO);
    ck_assert_int_eq(s.calls, 0);
}
END_TEST

START_TEST(decode_trailing_bytes_return_eproto)
{
    char buf[64];
    term_pid_t peer;
    memcpy(buf, vec_pg_discover, vec_pg_discover_len);
    buf[vec_pg_discover_len] = 'j';
    ck_assert_int_eq(pg_decode(buf, vec_pg_discover_len + 1, &peer, NULL, NULL), -EPROTO);
}
END_TEST

START_TEST(decode_callback_error_stops_and_is_returned)
{
    seen_t s = {.fail_at = 2};
    term_pid_t peer;
    ck_assert_int_eq(pg_decode(vec_pg_sync_two, vec_pg_sync_two_len, &peer, record_cb, &s),
                     -ENOMEM);
    ck_assert_int_eq(s.calls, 1);
}
END_TEST

START_TEST(decode_allocation_failure_returns_enomem)
{
    term_pid_t peer;
    int rc = -ENOMEM;
    for (long k = 1; rc == -ENOMEM && k < 100; k++) {
        seen_t s = {0};
        mem_fail_after(k);
        rc = pg_decode(vec_pg_sync_two, vec_pg_sync_two_len, &peer, record_cb, &s);
        mem_fail_after(0);
        ck_assert(rc == -ENOMEM || rc == PG_MSG_SYNC);
    }
    ck_assert_int_eq(rc, PG_MSG_SYNC);
}
END_TEST

Suite *pg_suite(void)
{
    Suite *s = suite_create("pg");
    TCase *tc = tcase_create("decode");
    tcase_add_test(tc, decode_discover_gives_peer_and_no_groups);
    tcase_add_test(tc, decode_sync_calls_back_once_per_group);
    tcase_add_test(tc, decode_sync_without_groups_is_a_sync);
    tcase_add_test(tc, decode_join_takes_a_pid_or_a_list);
    tcase_add_test(tc, decode_leave_gives_the_pids_for_every_group);
    tcase_add_loop_test(tc, decode_malformed_returns_eproto_before_any_callback, 0,
                        sizeof bad_rows / sizeof bad_rows[0]);
    tcase_add_test(tc, decode_truncated_at_every_byte_returns_eproto);
    tcase_add_test(tc, decode_trailing_bytes_return_eproto);
    tcase_add_test(tc, decode_callback_error_stops_and_is_returned);
    tcase_add_test(tc, decode_allocation_failure_returns_enomem);
    suite_add_tcase(s, tc);
    return s;
}
