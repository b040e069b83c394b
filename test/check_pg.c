/* check_pg.c: decoding what a remote pg scope sends (pg_decode) and
 * encoding what etsd sends it (pg_put_*), against messages encoded by real
 * OTP nodes: version 0 shapes by OTP 25 (test/vectors/services_vectors.h),
 * version 1 shapes and etsd's own by OTP 29 (test/vectors/pg_v1_vectors.h). */
#include <check.h>
#include <errno.h>
#include <string.h>

#include "cnode/pg.h"
#include "term/mem.h"
#include "term/term.h"
#include "test/vectors/pg_v1_vectors.h"
#include "test/vectors/services_vectors.h"

/* What the callback saw: group names and pid counts, in order. */
typedef struct seen {
    int calls;
    char group[4][TERM_ATOM_MAX];
    size_t npids[4];
    int remove[4];
    term_pid_t first[4];
    int fail_at;   /* call number that returns -ENOMEM, 0: none */
} seen_t;

static int record_cb(const char *group, int remove, const term_pid_t *pids, size_t n,
                     void *data)
{
    seen_t *s = data;
    if (s->fail_at && s->calls + 1 == s->fail_at)
        return -ENOMEM;
    if (s->calls < 4) {
        strcpy(s->group[s->calls], group);
        s->npids[s->calls] = n;
        s->remove[s->calls] = remove;
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
    ck_assert_int_eq(pg_decode(vec_pg_discover, vec_pg_discover_len, &peer, NULL, record_cb, &s),
                     PG_MSG_DISCOVER);
    ck_assert(pid_eq(&peer, &want));
    ck_assert_int_eq(s.calls, 0);
}
END_TEST

START_TEST(decode_sync_calls_back_once_per_group)
{
    seen_t s = {0};
    term_pid_t peer, p2 = pid_of(vec_pid2, vec_pid2_len), p3 = pid_of(vec_pid3, vec_pid3_len);
    ck_assert_int_eq(pg_decode(vec_pg_sync_two, vec_pg_sync_two_len, &peer, NULL, record_cb, &s),
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
    ck_assert_int_eq(pg_decode(vec_pg_sync_none, vec_pg_sync_none_len, &peer, NULL, record_cb, &s),
                     PG_MSG_SYNC);
    ck_assert_int_eq(s.calls, 0);
}
END_TEST

START_TEST(decode_join_takes_a_pid_or_a_list)
{
    seen_t s = {0}, t = {0};
    term_pid_t peer;
    ck_assert_int_eq(pg_decode(vec_pg_join_one, vec_pg_join_one_len, &peer, NULL, record_cb, &s),
                     PG_MSG_JOIN);
    ck_assert_int_eq(s.calls, 1);
    ck_assert_int_eq(s.npids[0], 1);
    ck_assert_int_eq(pg_decode(vec_pg_join_list, vec_pg_join_list_len, &peer, NULL, record_cb, &t),
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
    ck_assert_int_eq(pg_decode(vec_pg_leave_two, vec_pg_leave_two_len, &peer, NULL, record_cb, &s),
                     PG_MSG_LEAVE);
    ck_assert_int_eq(s.calls, 2);
    ck_assert_int_eq(s.npids[0], 2);
    ck_assert_int_eq(s.npids[1], 2);
    ck_assert_int_eq(pg_decode(vec_pg_leave_one, vec_pg_leave_one_len, &peer, NULL, record_cb, &t),
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
    ck_assert_msg(pg_decode(row->msg, row->len, &peer, NULL, record_cb, &s) == -EPROTO,
                  "row %s", row->id);
    ck_assert_msg(s.calls == 0, "row %s", row->id);
}
END_TEST

START_TEST(decode_truncated_at_every_byte_returns_eproto)
{
    seen_t s = {0};
    term_pid_t peer;
    for (size_t n = 0; n < vec_pg_sync_two_len; n++)
        ck_assert_int_eq(pg_decode(vec_pg_sync_two, n, &peer, NULL, record_cb, &s), -EPROTO);
    ck_assert_int_eq(s.calls, 0);
}
END_TEST

START_TEST(decode_trailing_bytes_return_eproto)
{
    char buf[64];
    term_pid_t peer;
    memcpy(buf, vec_pg_discover, vec_pg_discover_len);
    buf[vec_pg_discover_len] = 'j';
    ck_assert_int_eq(pg_decode(buf, vec_pg_discover_len + 1, &peer, NULL, NULL, NULL), -EPROTO);
}
END_TEST

START_TEST(decode_callback_error_stops_and_is_returned)
{
    seen_t s = {.fail_at = 2};
    term_pid_t peer;
    ck_assert_int_eq(pg_decode(vec_pg_sync_two, vec_pg_sync_two_len, &peer, NULL, record_cb, &s),
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
        rc = pg_decode(vec_pg_sync_two, vec_pg_sync_two_len, &peer, NULL, record_cb, &s);
        mem_fail_after(0);
        ck_assert(rc == -ENOMEM || rc == PG_MSG_SYNC);
    }
    ck_assert_int_eq(rc, PG_MSG_SYNC);
}
END_TEST

/* ---- Version 1 (OTP 29 data_publisher) ---------------------------------- */

#define G1 "Elixir.MyApp.PubSub.Adapter"
#define G2 "Elixir.MyApp.PubSub.Adapter_2"

START_TEST(decode_discover_with_version_gives_that_version)
{
    term_pid_t peer, want = pid_of(vec_pg1_pid1, vec_pg1_pid1_len);
    unsigned v = 99;
    ck_assert_int_eq(pg_decode(vec_pg1_discover, vec_pg1_discover_len, &peer, &v, NULL, NULL),
                     PG_MSG_DISCOVER);
    ck_assert_uint_eq(v, 1);
    ck_assert(pid_eq(&peer, &want));
    ck_assert_int_eq(pg_decode(vec_pg1_discover_v0, vec_pg1_discover_v0_len, &peer, &v, NULL,
                               NULL), PG_MSG_DISCOVER);
    ck_assert_uint_eq(v, 0);
}
END_TEST

START_TEST(decode_discover_without_version_gives_version_0)
{
    term_pid_t peer;
    unsigned v = 99;
    ck_assert_int_eq(pg_decode(vec_pg_discover, vec_pg_discover_len, &peer, &v, NULL, NULL),
                     PG_MSG_DISCOVER);
    ck_assert_uint_eq(v, 0);
}
END_TEST

START_TEST(decode_local_data_cast_calls_back_once_per_group)
{
    seen_t s = {0};
    term_pid_t peer, p1 = pid_of(vec_pg1_pid1, vec_pg1_pid1_len);
    term_pid_t p2 = pid_of(vec_pg1_pid2, vec_pg1_pid2_len);
    unsigned v = 99;
    ck_assert_int_eq(pg_decode(vec_pg1_local_data_cast, vec_pg1_local_data_cast_len, &peer, &v,
                               record_cb, &s), PG_MSG_LOCAL_DATA);
    ck_assert_uint_eq(v, 1);
    ck_assert(pid_eq(&peer, &p1));
    ck_assert_int_eq(s.calls, 1);
    ck_assert_str_eq(s.group[0], G1);
    ck_assert_int_eq(s.npids[0], 2);
    ck_assert_int_eq(s.remove[0], 0);
    ck_assert(pid_eq(&s.first[0], &p2));
}
END_TEST

START_TEST(decode_local_data_plain_is_local_data)
{
    seen_t s = {0};
    term_pid_t peer;
    ck_assert_int_eq(pg_decode(vec_pg1_local_data_plain, vec_pg1_local_data_plain_len, &peer,
                               NULL, record_cb, &s), PG_MSG_LOCAL_DATA);
    ck_assert_int_eq(s.calls, 1);
    ck_assert_str_eq(s.group[0], G2);
    ck_assert_int_eq(s.npids[0], 1);
}
END_TEST

START_TEST(decode_local_data_empty_map_has_no_groups)
{
    seen_t s = {0};
    term_pid_t peer;
    ck_assert_int_eq(pg_decode(vec_pg1_local_data_empty, vec_pg1_local_data_empty_len, &peer,
                               NULL, record_cb, &s), PG_MSG_LOCAL_DATA);
    ck_assert_int_eq(s.calls, 0);
}
END_TEST

START_TEST(decode_update_gives_adds_then_removes_per_group)
{
    seen_t s = {0};
    term_pid_t peer, p2 = pid_of(vec_pg1_pid2, vec_pg1_pid2_len);
    term_pid_t p3 = pid_of(vec_pg1_pid3, vec_pg1_pid3_len);
    unsigned v = 99;
    ck_assert_int_eq(pg_decode(vec_pg1_update_two, vec_pg1_update_two_len, &peer, &v,
                               record_cb, &s), PG_MSG_UPDATE);
    ck_assert_uint_eq(v, 1);
    ck_assert_int_eq(s.calls, 4);
    ck_assert_str_eq(s.group[0], G1);
    ck_assert_int_eq(s.remove[0], 0);
    ck_assert_int_eq(s.npids[0], 1);
    ck_assert(pid_eq(&s.first[0], &p3));
    ck_assert_str_eq(s.group[1], G1);
    ck_assert_int_eq(s.remove[1], 1);
    ck_assert_int_eq(s.npids[1], 1);
    ck_assert(pid_eq(&s.first[1], &p2));
    ck_assert_str_eq(s.group[2], G2);
    ck_assert_int_eq(s.remove[2], 0);
    ck_assert_int_eq(s.npids[2], 1);
    ck_assert_str_eq(s.group[3], G2);
    ck_assert_int_eq(s.remove[3], 1);
    ck_assert_int_eq(s.npids[3], 0);
}
END_TEST

START_TEST(decode_update_leave_removes_every_pid)
{
    seen_t s = {0};
    term_pid_t peer;
    ck_assert_int_eq(pg_decode(vec_pg1_update_leave, vec_pg1_update_leave_len, &peer, NULL,
                               record_cb, &s), PG_MSG_UPDATE);
    ck_assert_int_eq(s.calls, 2);
    ck_assert_int_eq(s.npids[0], 0);
    ck_assert_int_eq(s.remove[1], 1);
    ck_assert_int_eq(s.npids[1], 2);
}
END_TEST

START_TEST(decode_leave_marks_pids_as_removed)
{
    seen_t s = {0};
    term_pid_t peer;
    ck_assert_int_eq(pg_decode(vec_pg_leave_one, vec_pg_leave_one_len, &peer, NULL, record_cb,
                               &s), PG_MSG_LEAVE);
    ck_assert_int_eq(s.remove[0], 1);
}
END_TEST

START_TEST(decode_sync_without_cast_is_a_sync)
{
    seen_t s = {0};
    term_pid_t peer;
    unsigned v = 99;
    ck_assert_int_eq(pg_decode(vec_pg1_sync_plain, vec_pg1_sync_plain_len, &peer, &v,
                               record_cb, &s), PG_MSG_SYNC);
    ck_assert_uint_eq(v, 0);
    ck_assert_int_eq(s.calls, 1);
    ck_assert_str_eq(s.group[0], G2);
}
END_TEST

static const struct bad_row bad_v1_rows[] = {
    {"discover_version_atom", vec_pg1_bad_discover_version, vec_pg1_bad_discover_version_len},
    {"local_data_list", vec_pg1_bad_local_data_list, vec_pg1_bad_local_data_list_len},
    {"local_data_atom_pid", vec_pg1_bad_local_data_pid, vec_pg1_bad_local_data_pid_len},
    {"update_arity", vec_pg1_bad_update_arity, vec_pg1_bad_update_arity_len},
    {"update_improper", vec_pg1_bad_update_tail, vec_pg1_bad_update_tail_len},
};

START_TEST(decode_malformed_v1_returns_eproto_before_any_callback)
{
    seen_t s = {0};
    term_pid_t peer;
    const struct bad_row *row = &bad_v1_rows[_i];
    ck_assert_msg(pg_decode(row->msg, row->len, &peer, NULL, record_cb, &s) == -EPROTO,
                  "row %s", row->id);
    ck_assert_msg(s.calls == 0, "row %s", row->id);
}
END_TEST

static const struct bad_row good_v1_rows[] = {
    {"discover", vec_pg1_discover, vec_pg1_discover_len},
    {"local_data_cast", vec_pg1_local_data_cast, vec_pg1_local_data_cast_len},
    {"local_data_plain", vec_pg1_local_data_plain, vec_pg1_local_data_plain_len},
    {"update_two", vec_pg1_update_two, vec_pg1_update_two_len},
    {"update_leave", vec_pg1_update_leave, vec_pg1_update_leave_len},
};

START_TEST(decode_v1_truncated_or_extended_returns_eproto)
{
    const struct bad_row *row = &good_v1_rows[_i];
    char buf[512];
    seen_t s = {0};
    term_pid_t peer;
    for (size_t n = 0; n < row->len; n++)
        ck_assert_msg(pg_decode(row->msg, n, &peer, NULL, record_cb, &s) == -EPROTO,
                      "row %s cut at %zu", row->id, n);
    ck_assert_msg(s.calls == 0, "row %s", row->id);
    ck_assert_uint_lt(row->len, sizeof buf);
    memcpy(buf, row->msg, row->len);
    buf[row->len] = 'j';
    ck_assert_msg(pg_decode(buf, row->len + 1, &peer, NULL, record_cb, &s) == -EPROTO,
                  "row %s with a trailing byte", row->id);
}
END_TEST

START_TEST(decode_update_allocation_failure_returns_enomem)
{
    term_pid_t peer;
    int rc = -ENOMEM;
    for (long k = 1; rc == -ENOMEM && k < 100; k++) {
        seen_t s = {0};
        mem_fail_after(k);
        rc = pg_decode(vec_pg1_update_two, vec_pg1_update_two_len, &peer, NULL, record_cb, &s);
        mem_fail_after(0);
        ck_assert(rc == -ENOMEM || rc == PG_MSG_UPDATE);
    }
    ck_assert_int_eq(rc, PG_MSG_UPDATE);
}
END_TEST

/* ---- What etsd sends, byte for byte as a BEAM scope sends it ------------- */

typedef void (*put_fn)(term_buf_t *b, const term_pid_t *self, unsigned version,
                       const term_pid_t *pids);

static void put_discover(term_buf_t *b, const term_pid_t *self, unsigned v,
                         const term_pid_t *pids)
{
    (void)pids;
    pg_put_discover(b, self, v);
}

static void put_local(term_buf_t *b, const term_pid_t *self, unsigned v,
                      const term_pid_t *pids)
{
    /* An empty group is left out, as pg never holds one. */
    pg_group_pids_t gs[2] = {{G2, pids, 0}, {G1, pids, 2}};
    pg_put_local(b, self, v, gs, 2);
}

static void put_join(term_buf_t *b, const term_pid_t *self, unsigned v,
                     const term_pid_t *pids)
{
    pg_put_join(b, self, v, G1, pids, 1);
}

static void put_leave(term_buf_t *b, const term_pid_t *self, unsigned v,
                      const term_pid_t *pids)
{
    pg_put_leave(b, self, v, G1, pids, 2);
}

static const struct put_row {
    const char *id;
    put_fn put;
    unsigned version;
    const char *want;
    size_t len;
} put_rows[] = {
    {"discover_v0", put_discover, 0, vec_pg0_out_discover, vec_pg0_out_discover_len},
    {"discover_v1", put_discover, 1, vec_pg1_out_discover, vec_pg1_out_discover_len},
    {"sync_v0", put_local, 0, vec_pg0_out_sync, vec_pg0_out_sync_len},
    {"local_data_v1", put_local, 1, vec_pg1_out_local_data, vec_pg1_out_local_data_len},
    {"join_v0", put_join, 0, vec_pg0_out_join, vec_pg0_out_join_len},
    {"join_v1", put_join, 1, vec_pg1_out_join, vec_pg1_out_join_len},
    {"leave_v0", put_leave, 0, vec_pg0_out_leave, vec_pg0_out_leave_len},
    {"leave_v1", put_leave, 1, vec_pg1_out_leave, vec_pg1_out_leave_len},
};

START_TEST(put_matches_otp_bytes)
{
    const struct put_row *row = &put_rows[_i];
    term_pid_t self = pid_of(vec_pg1_pid1, vec_pg1_pid1_len);
    term_pid_t pids[2] = {pid_of(vec_pg1_pid2, vec_pg1_pid2_len),
                          pid_of(vec_pg1_pid3, vec_pg1_pid3_len)};
    term_buf_t b;
    term_buf_init(&b);
    row->put(&b, &self, row->version, pids);
    ck_assert_int_eq(b.err, 0);
    ck_assert_msg(b.len == row->len && memcmp(b.data, row->want, b.len) == 0,
                  "row %s: %zu bytes, OTP gives %zu", row->id, b.len, row->len);
    term_buf_release(&b);
}
END_TEST

START_TEST(put_local_data_writes_groups_in_atom_order)
{
    term_pid_t self = pid_of(vec_pg1_pid1, vec_pg1_pid1_len);
    term_pid_t p2 = pid_of(vec_pg1_pid2, vec_pg1_pid2_len);
    pg_group_pids_t gs[3] = {{"b", &p2, 1}, {"c", &p2, 1}, {"a", &p2, 1}};
    seen_t s = {0};
    term_pid_t peer;
    term_buf_t b;
    term_buf_init(&b);
    pg_put_local(&b, &self, 1, gs, 3);
    ck_assert_int_eq(pg_decode(b.data, b.len, &peer, NULL, record_cb, &s), PG_MSG_LOCAL_DATA);
    ck_assert_int_eq(s.calls, 3);
    ck_assert_str_eq(s.group[0], "a");
    ck_assert_str_eq(s.group[1], "b");
    ck_assert_str_eq(s.group[2], "c");
    term_buf_release(&b);
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
    tcase_add_test(tc, decode_leave_marks_pids_as_removed);
    suite_add_tcase(s, tc);

    tc = tcase_create("decode_v1");
    tcase_add_test(tc, decode_discover_with_version_gives_that_version);
    tcase_add_test(tc, decode_discover_without_version_gives_version_0);
    tcase_add_test(tc, decode_local_data_cast_calls_back_once_per_group);
    tcase_add_test(tc, decode_local_data_plain_is_local_data);
    tcase_add_test(tc, decode_local_data_empty_map_has_no_groups);
    tcase_add_test(tc, decode_update_gives_adds_then_removes_per_group);
    tcase_add_test(tc, decode_update_leave_removes_every_pid);
    tcase_add_test(tc, decode_sync_without_cast_is_a_sync);
    tcase_add_loop_test(tc, decode_malformed_v1_returns_eproto_before_any_callback, 0,
                        sizeof bad_v1_rows / sizeof bad_v1_rows[0]);
    tcase_add_loop_test(tc, decode_v1_truncated_or_extended_returns_eproto, 0,
                        sizeof good_v1_rows / sizeof good_v1_rows[0]);
    tcase_add_test(tc, decode_update_allocation_failure_returns_enomem);
    suite_add_tcase(s, tc);

    tc = tcase_create("encode");
    tcase_add_loop_test(tc, put_matches_otp_bytes, 0, sizeof put_rows / sizeof put_rows[0]);
    tcase_add_test(tc, put_local_data_writes_groups_in_atom_order);
    suite_add_tcase(s, tc);
    return s;
}
