/* check_mem.c: the allocation wrapper's failure injection. */
#include <check.h>

#include "term/mem.h"

START_TEST(alloc_fail_after_k_fails_kth_and_later)
{
    mem_fail_after(2);
    void *a = mem_alloc(8);
    ck_assert_ptr_nonnull(a);
    ck_assert_ptr_null(mem_alloc(8));
    ck_assert_ptr_null(mem_strdup("x"));
    ck_assert_int_eq(mem_alloc_count(), 3);
    mem_fail_after(0);
    void *b = mem_alloc(8);
    ck_assert_ptr_nonnull(b);
    mem_free(a);
    mem_free(b);
}
END_TEST

START_TEST(free_null_does_nothing)
{
    mem_free(NULL);
    ck_assert_int_eq(mem_alloc_count() >= 0, 1);
}
END_TEST

Suite *mem_suite(void)
{
    Suite *s = suite_create("mem");
    TCase *tc = tcase_create("inject");
    tcase_add_test(tc, alloc_fail_after_k_fails_kth_and_later);
    tcase_add_test(tc, free_null_does_nothing);
    suite_add_tcase(s, tc);
    return s;
}
