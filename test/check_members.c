/* check_members.c: the membership state machine (members.h): what is
 * retried and when, what is forgotten, and which failures are logged. Pure
 * logic: the clock is a number the tests move. */
#include <check.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "cnode/members.h"
#include "term/mem.h"

#define FORGET 10000 /* ms, the tests' --forget-after */

typedef struct ticked {
    int tries, forgets;
    char tried[8][64];
    char forgot[8][64];
} ticked_t;

static void forget_cb(const members_node_t *e, void *data)
{
    ticked_t *t = data;
    if (t->forgets < 8)
        strcpy(t->forgot[t->forgets], e->name);
    t->forgets++;
}

/* Like cluster.c: every due member gets an attempt. */
static members_t *tick_set;
static void try_and_connect_cb(members_node_t *e, void *data)
{
    ticked_t *t = data;
    if (t->tries < 8)
        strcpy(t->tried[t->tries], e->name);
    t->tries++;
    ck_assert_int_eq(members_connecting(tick_set, e->name), 0);
}

static ticked_t tick(members_t *m, uint64_t now)
{
    ticked_t t = {0};
    tick_set = m;
    members_tick(m, now, try_and_connect_cb, forget_cb, &t);
    return t;
}

START_TEST(add_new_node_returns_one_and_is_due_at_once)
{
    members_t m;
    members_init(&m, FORGET);
    ck_assert_int_eq(members_add(&m, "a@h", MEMBERS_JOIN, 100), 1);
    ck_assert_uint_eq(members_next_due(&m), 100);
    ticked_t t = tick(&m, 100);
    ck_assert_int_eq(t.tries, 1);
    ck_assert_str_eq(t.tried[0], "a@h");
    ck_assert_int_eq(members_find(&m, "a@h")->state, MEMBERS_CONNECTING);
    members_release(&m);
}
END_TEST

START_TEST(add_known_node_returns_zero_and_keeps_stronger_origin)
{
    members_t m;
    members_init(&m, FORGET);
    ck_assert_int_eq(members_add(&m, "a@h", MEMBERS_JOIN, 0), 1);
    ck_assert_int_eq(members_add(&m, "a@h", MEMBERS_LEARNED, 50), 0);
    ck_assert_int_eq(members_find(&m, "a@h")->origin, MEMBERS_JOIN);
    ck_assert_uint_eq(members_find(&m, "a@h")->seen_ms, 50);
    ck_assert_int_eq(members_add(&m, "b@h", MEMBERS_LEARNED, 0), 1);
    ck_assert_int_eq(members_add(&m, "b@h", MEMBERS_DNS, 0), 0);
    ck_assert_int_eq(members_find(&m, "b@h")->origin, MEMBERS_DNS);
    ck_assert_uint_eq(m.count, 2);
    members_release(&m);
}
END_TEST

START_TEST(add_name_without_at_returns_einval)
{
    members_t m;
    members_init(&m, FORGET);
    ck_assert_int_eq(members_add(&m, "nohost", MEMBERS_LEARNED, 0), -EINVAL);
    ck_assert_uint_eq(m.count, 0);
    members_release(&m);
}
END_TEST

START_TEST(add_out_of_memory_returns_enomem_and_leaves_set_unchanged)
{
    members_t m;
    members_init(&m, FORGET);
    int rc;
    long k;
    for (k = 1; k < 10; k++) {
        mem_fail_after(k);
        rc = members_add(&m, "a@h", MEMBERS_JOIN, 0);
        mem_fail_after(0);
        if (rc == 1)
            break;
        ck_assert_int_eq(rc, -ENOMEM);
        ck_assert_uint_eq(m.count, 0);
        ck_assert_ptr_null(members_find(&m, "a@h"));
    }
    ck_assert_int_eq(rc, 1);
    ck_assert_int_gt(k, 1);
    members_release(&m);
}
END_TEST

START_TEST(caller_that_is_no_member_is_not_retried)
{
    members_t m;
    members_init(&m, FORGET);
    /* A node that connected to us and left: cluster.c never added it. */
    ck_assert_int_eq(members_up(&m, "script@h", 0), -ENOENT);
    ck_assert_int_eq(members_down(&m, "script@h", 10), -ENOENT);
    ck_assert_int_eq(members_failed(&m, "script@h", -ECONNREFUSED, 10), -ENOENT);
    ck_assert_uint_eq(members_next_due(&m), UINT64_MAX);
    ck_assert_int_eq(tick(&m, 1000000).tries, 0);
    members_release(&m);
}
END_TEST

START_TEST(up_member_is_not_retried)
{
    members_t m;
    members_init(&m, FORGET);
    members_add(&m, "a@h", MEMBERS_LEARNED, 0);
    members_connecting(&m, "a@h");
    ck_assert_int_eq(members_up(&m, "a@h", 5), 0);
    ck_assert_uint_eq(members_next_due(&m), UINT64_MAX);
    ck_assert_int_eq(tick(&m, 5 + 10 * FORGET).tries, 0);
    ck_assert_ptr_nonnull(members_find(&m, "a@h"));
    members_release(&m);
}
END_TEST

START_TEST(down_member_is_retried_after_minimum_backoff)
{
    members_t m;
    members_init(&m, FORGET);
    members_add(&m, "a@h", MEMBERS_LEARNED, 0);
    members_up(&m, "a@h", 0);
    ck_assert_int_eq(members_down(&m, "a@h", 1000), 0);
    ck_assert_uint_eq(members_next_due(&m), 1000 + MEMBERS_BACKOFF_MIN_MS);
    ck_assert_int_eq(tick(&m, 1000 + MEMBERS_BACKOFF_MIN_MS - 1).tries, 0);
    ck_assert_int_eq(tick(&m, 1000 + MEMBERS_BACKOFF_MIN_MS).tries, 1);
    members_release(&m);
}
END_TEST

START_TEST(failures_double_backoff_up_to_the_maximum)
{
    members_t m;
    members_init(&m, 1000000);
    members_add(&m, "a@h", MEMBERS_JOIN, 0);
    uint64_t now = 0;
    unsigned want = MEMBERS_BACKOFF_MIN_MS;
    for (int i = 0; i < 12; i++) {
        ck_assert_int_eq(tick(&m, now).tries, 1);
        members_failed(&m, "a@h", -ECONNREFUSED, now);
        ck_assert_uint_eq(members_next_due(&m), now + want);
        ck_assert_int_eq(tick(&m, now + want - 1).tries, 0);
        now += want;
        want = want * 2 > MEMBERS_BACKOFF_MAX_MS ? MEMBERS_BACKOFF_MAX_MS : want * 2;
    }
    ck_assert_uint_eq(members_find(&m, "a@h")->backoff_ms, MEMBERS_BACKOFF_MAX_MS);
    ck_assert_uint_eq(members_find(&m, "a@h")->failures, 12);
    members_release(&m);
}
END_TEST

START_TEST(up_resets_backoff_to_minimum)
{
    members_t m;
    members_init(&m, FORGET);
    members_add(&m, "a@h", MEMBERS_JOIN, 0);
    for (int i = 0; i < 6; i++)
        members_failed(&m, "a@h", -ECONNREFUSED, 0);
    ck_assert_uint_gt(members_find(&m, "a@h")->backoff_ms, MEMBERS_BACKOFF_MIN_MS);
    members_up(&m, "a@h", 0);
    members_down(&m, "a@h", 100);
    members_failed(&m, "a@h", -ECONNREFUSED, 300);
    ck_assert_uint_eq(members_next_due(&m), 300 + MEMBERS_BACKOFF_MIN_MS);
    members_release(&m);
}
END_TEST

START_TEST(repeated_failure_is_logged_once)
{
    members_t m;
    members_init(&m, FORGET);
    members_add(&m, "a@h", MEMBERS_JOIN, 0);
    ck_assert_int_eq(members_failed(&m, "a@h", -EHOSTUNREACH, 0), 1);
    for (int i = 1; i < 50; i++)
        ck_assert_int_eq(members_failed(&m, "a@h", -EHOSTUNREACH, (uint64_t)i * 5000), 0);
    members_release(&m);
}
END_TEST

START_TEST(changed_failure_reason_is_logged_again)
{
    members_t m;
    members_init(&m, FORGET);
    members_add(&m, "a@h", MEMBERS_JOIN, 0);
    ck_assert_int_eq(members_failed(&m, "a@h", -EHOSTUNREACH, 0), 1);
    ck_assert_int_eq(members_failed(&m, "a@h", -EHOSTUNREACH, 1), 0);
    ck_assert_int_eq(members_failed(&m, "a@h", -ECONNREFUSED, 2), 1);
    ck_assert_int_eq(members_failed(&m, "a@h", -ECONNREFUSED, 3), 0);
    ck_assert_int_eq(members_failed(&m, "a@h", -EHOSTUNREACH, 4), 1);
    members_release(&m);
}
END_TEST

START_TEST(up_after_logged_failure_returns_one_and_rearms_log)
{
    members_t m;
    members_init(&m, FORGET);
    members_add(&m, "a@h", MEMBERS_JOIN, 0);
    ck_assert_int_eq(members_up(&m, "a@h", 0), 0);
    members_down(&m, "a@h", 1);
    ck_assert_int_eq(members_failed(&m, "a@h", -EHOSTUNREACH, 2), 1);
    ck_assert_int_eq(members_up(&m, "a@h", 3), 1);
    ck_assert_int_eq(members_up(&m, "a@h", 4), 0);
    members_down(&m, "a@h", 5);
    /* The same reason as before the recovery is a new state change. */
    ck_assert_int_eq(members_failed(&m, "a@h", -EHOSTUNREACH, 6), 1);
    members_release(&m);
}
END_TEST

START_TEST(stale_failure_of_up_member_is_ignored)
{
    members_t m;
    members_init(&m, FORGET);
    members_add(&m, "a@h", MEMBERS_JOIN, 0);
    members_up(&m, "a@h", 0);
    ck_assert_int_eq(members_failed(&m, "a@h", -EALREADY, 1), 0);
    ck_assert_int_eq(members_find(&m, "a@h")->state, MEMBERS_UP);
    members_release(&m);
}
END_TEST

START_TEST(learned_member_unseen_for_forget_after_is_forgotten)
{
    members_t m;
    members_init(&m, FORGET);
    members_add(&m, "b@h", MEMBERS_LEARNED, 0);
    members_up(&m, "b@h", 0);
    members_down(&m, "b@h", 1000);
    ck_assert_uint_eq(members_next_due(&m), 1000 + MEMBERS_BACKOFF_MIN_MS);
    /* Retried meanwhile, failing each time. */
    uint64_t now = 1000;
    while (now < 1000 + FORGET - MEMBERS_BACKOFF_MAX_MS) {
        now = members_next_due(&m);
        ticked_t t = tick(&m, now);
        ck_assert_int_eq(t.forgets, 0);
        members_failed(&m, "b@h", -EHOSTUNREACH, now);
    }
    ck_assert_uint_le(members_next_due(&m), 1000 + FORGET);
    ticked_t t = tick(&m, 1000 + FORGET - 1);
    ck_assert_int_eq(t.forgets, 0);
    if (t.tries)
        members_failed(&m, "b@h", -EHOSTUNREACH, 1000 + FORGET - 1);
    t = tick(&m, 1000 + FORGET);
    ck_assert_int_eq(t.forgets, 1);
    ck_assert_str_eq(t.forgot[0], "b@h");
    ck_assert_int_eq(t.tries, 0);
    ck_assert_ptr_null(members_find(&m, "b@h"));
    ck_assert_uint_eq(m.count, 0);
    ck_assert_uint_eq(members_next_due(&m), UINT64_MAX);
    members_release(&m);
}
END_TEST

START_TEST(member_listed_again_is_not_forgotten)
{
    members_t m;
    members_init(&m, FORGET);
    members_add(&m, "b@h", MEMBERS_LEARNED, 0);
    members_failed(&m, "b@h", -ECONNREFUSED, 0);
    /* Another member's nodes() still lists it every 5 s. */
    for (uint64_t now = 5000; now <= 5 * FORGET; now += 5000) {
        members_add(&m, "b@h", MEMBERS_LEARNED, now);
        ticked_t t = tick(&m, now);
        ck_assert_int_eq(t.forgets, 0);
        if (t.tries)
            members_failed(&m, "b@h", -ECONNREFUSED, now);
    }
    ck_assert_ptr_nonnull(members_find(&m, "b@h"));
    members_release(&m);
}
END_TEST

START_TEST(join_member_is_never_forgotten)
{
    members_t m;
    members_init(&m, FORGET);
    members_add(&m, "a@h", MEMBERS_JOIN, 0);
    members_failed(&m, "a@h", -EHOSTUNREACH, 0);
    ticked_t t = tick(&m, 100 * FORGET);
    ck_assert_int_eq(t.forgets, 0);
    ck_assert_int_eq(t.tries, 1);
    ck_assert_ptr_nonnull(members_find(&m, "a@h"));
    members_release(&m);
}
END_TEST

START_TEST(connected_member_is_not_forgotten)
{
    members_t m;
    members_init(&m, FORGET);
    members_add(&m, "b@h", MEMBERS_DNS, 0);
    members_up(&m, "b@h", 0);
    ck_assert_int_eq(tick(&m, 100 * FORGET).forgets, 0);
    members_connecting(&m, "b@h");
    ck_assert_int_eq(members_find(&m, "b@h")->state, MEMBERS_UP);
    members_down(&m, "b@h", 100 * FORGET);
    members_connecting(&m, "b@h");
    /* An attempt under way is not cut short. */
    ck_assert_int_eq(tick(&m, 200 * FORGET).forgets, 0);
    members_release(&m);
}
END_TEST

START_TEST(forget_clock_starts_when_connection_is_lost)
{
    members_t m;
    members_init(&m, FORGET);
    members_add(&m, "b@h", MEMBERS_LEARNED, 0);
    members_up(&m, "b@h", 0);
    /* Up for a long time, listed by nobody: the connection is the proof. */
    members_down(&m, "b@h", 50 * FORGET);
    ticked_t t = tick(&m, 50 * FORGET + 1);
    ck_assert_int_eq(t.forgets, 0);
    members_failed(&m, "b@h", -ECONNREFUSED, 50 * FORGET + 1);
    ck_assert_int_eq(tick(&m, 51 * FORGET).forgets, 1);
    members_release(&m);
}
END_TEST

START_TEST(default_forget_after_is_ten_minutes)
{
    members_t m;
    members_init(&m, 0);
    ck_assert_uint_eq(m.forget_after_ms, 600000);
    members_release(&m);
}
END_TEST

Suite *members_suite(void)
{
    Suite *s = suite_create("members");
    TCase *tc = tcase_create("set");
    tcase_add_test(tc, add_new_node_returns_one_and_is_due_at_once);
    tcase_add_test(tc, add_known_node_returns_zero_and_keeps_stronger_origin);
    tcase_add_test(tc, add_name_without_at_returns_einval);
    tcase_add_test(tc, add_out_of_memory_returns_enomem_and_leaves_set_unchanged);
    tcase_add_test(tc, default_forget_after_is_ten_minutes);
    suite_add_tcase(s, tc);

    tc = tcase_create("retry");
    tcase_add_test(tc, caller_that_is_no_member_is_not_retried);
    tcase_add_test(tc, up_member_is_not_retried);
    tcase_add_test(tc, down_member_is_retried_after_minimum_backoff);
    tcase_add_test(tc, failures_double_backoff_up_to_the_maximum);
    tcase_add_test(tc, up_resets_backoff_to_minimum);
    tcase_add_test(tc, stale_failure_of_up_member_is_ignored);
    suite_add_tcase(s, tc);

    tc = tcase_create("log_once");
    tcase_add_test(tc, repeated_failure_is_logged_once);
    tcase_add_test(tc, changed_failure_reason_is_logged_again);
    tcase_add_test(tc, up_after_logged_failure_returns_one_and_rearms_log);
    suite_add_tcase(s, tc);

    tc = tcase_create("forget");
    tcase_add_test(tc, learned_member_unseen_for_forget_after_is_forgotten);
    tcase_add_test(tc, member_listed_again_is_not_forgotten);
    tcase_add_test(tc, join_member_is_never_forgotten);
    tcase_add_test(tc, connected_member_is_not_forgotten);
    tcase_add_test(tc, forget_clock_starts_when_connection_is_lost);
    suite_add_tcase(s, tc);
    return s;
}
