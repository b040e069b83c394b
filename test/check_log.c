/* check_log.c: the log's rate limit decision (log_limit_admit): a burst
 * per window, the rest counted, and the count handed back once. */
#include <check.h>

#include "cnode/log.h"

START_TEST(limit_burst_lines_are_admitted_then_counted)
{
    log_limit_t l = LOG_LIMIT_INIT(LOG_WARN, "test lines", 3, 1000);
    unsigned long summary = 99;
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(log_limit_admit(&l, 10 + (uint64_t)i, &summary), 1);
        ck_assert_uint_eq(summary, 0);
    }
    for (int i = 0; i < 2997; i++)
        ck_assert_int_eq(log_limit_admit(&l, 20, &summary), 0);
    ck_assert_uint_eq(l.dropped, 2997);
}
END_TEST

START_TEST(limit_new_window_hands_back_count_once)
{
    log_limit_t l = LOG_LIMIT_INIT(LOG_WARN, "test lines", 1, 1000);
    unsigned long summary;
    ck_assert_int_eq(log_limit_admit(&l, 0, &summary), 1);
    ck_assert_int_eq(log_limit_admit(&l, 1, &summary), 0);
    ck_assert_int_eq(log_limit_admit(&l, 999, &summary), 0);
    ck_assert_uint_eq(summary, 0);
    ck_assert_int_eq(log_limit_admit(&l, 1000, &summary), 1);
    ck_assert_uint_eq(summary, 2);
    ck_assert_int_eq(log_limit_admit(&l, 1001, &summary), 0);
    ck_assert_uint_eq(summary, 0);
}
END_TEST

START_TEST(limit_window_opens_at_first_line_after_quiet)
{
    log_limit_t l = LOG_LIMIT_INIT(LOG_WARN, "test lines", 2, 1000);
    unsigned long summary;
    ck_assert_int_eq(log_limit_admit(&l, 5000, &summary), 1);
    ck_assert_int_eq(log_limit_admit(&l, 5999, &summary), 1);
    ck_assert_int_eq(log_limit_admit(&l, 6000, &summary), 1);
    ck_assert_uint_eq(summary, 0);
    ck_assert_uint_eq(l.start_ms, 6000);
}
END_TEST

START_TEST(limit_flush_with_nothing_counted_writes_nothing)
{
    /* No limit was ever listed: flushing is a no-op and must not crash. */
    log_limit_flush(1);
    log_limit_flush(0);
}
END_TEST

Suite *log_suite(void)
{
    Suite *s = suite_create("log");
    TCase *tc = tcase_create("limit");
    tcase_add_test(tc, limit_burst_lines_are_admitted_then_counted);
    tcase_add_test(tc, limit_new_window_hands_back_count_once);
    tcase_add_test(tc, limit_window_opens_at_first_line_after_quiet);
    tcase_add_test(tc, limit_flush_with_nothing_counted_writes_nothing);
    suite_add_tcase(s, tc);
    return s;
}
