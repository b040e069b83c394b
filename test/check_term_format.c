/* check_term_format.c: term_format() templates against the bytes BEAM
 * gives for the same term: term_to_binary(T, [{minor_version, 2}])
 * without the 131. */
#include <check.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "term/mem.h"
#include "term/term.h"

static size_t unhex(const char *h, unsigned char *out)
{
    size_t n = strlen(h) / 2;
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        sscanf(h + 2 * i, "%2x", &v);
        out[i] = (unsigned char)v;
    }
    return n;
}

static void assert_bytes(const term_buf_t *b, const char *hex)
{
    unsigned char want[512];
    size_t n = unhex(hex, want);
    ck_assert_int_eq(b->err, 0);
    ck_assert_uint_eq(b->len, n);
    ck_assert_int_eq(memcmp(b->data, want, n), 0);
}

#define USER_HEX "68026d000000036140786d0000000174"

START_TEST(format_forward_to_local_matches_beam)
{
    unsigned char user[64];
    size_t un = unhex(USER_HEX, user);
    term_buf_t b;
    term_buf_init(&b);
    ck_assert_int_eq(term_format(&b, "{forward_to_local,~s,{new,~t},'Elixir.Phoenix.PubSub'}",
                                 "new", (const void *)user, un), 0);
    assert_bytes(&b, "68047710666f72776172645f746f5f6c6f63616c6d000000036e6577680277036e6577"
                     "68026d000000036140786d00000001747715456c697869722e50686f656e69782e507562537562");
    term_buf_release(&b);
}
END_TEST

START_TEST(format_binary_args_match_beam)
{
    term_buf_t b;
    term_buf_init(&b);
    ck_assert_int_eq(term_format(&b, "{~b, ~s}", (const void *)"a@x", (size_t)3, "t"), 0);
    assert_bytes(&b, USER_HEX);
    term_buf_release(&b);
}
END_TEST

static const struct {
    const char *id, *fmt, *hex;
} literal_rows[] = {
    { "nil", "[]", "6a" },
    { "nil_spaced", "[ ]", "6a" },
    { "small_int_list_is_string", "[1,2,3]", "6b0003010203" },
    { "map_keys_sorted", "#{b => 1, a => 2}", "740000000277016161027701626101" },
    { "map_empty", "#{}", "7400000000" },
    { "tuple_empty", "{}", "6800" },
    { "bool_atoms", "{true,false}", "6802770474727565770566616c7365" },
    { "nested", "{a, [{b, #{c => [d]}}], <<\"s\">>}", NULL },   /* binaries are not template syntax */
    { "quoted_atom", "{sync, [], 'etsd@127.0.0.1'}", "6803770473796e636a770e65747364403132372e302e302e31" },
};

START_TEST(format_literal_template_matches_beam)
{
    term_buf_t b;
    term_buf_init(&b);
    int rc = term_format(&b, literal_rows[_i].fmt);
    if (literal_rows[_i].hex) {
        ck_assert_msg(rc == 0, "%s: rc %d", literal_rows[_i].id, rc);
        assert_bytes(&b, literal_rows[_i].hex);
    } else {
        ck_assert_int_eq(rc, -EINVAL);
        ck_assert_uint_eq(b.len, 0);
    }
    term_buf_release(&b);
}
END_TEST

START_TEST(format_nested_matches_beam)
{
    term_buf_t b;
    term_buf_init(&b);
    ck_assert_int_eq(term_format(&b, "{a, [{b, #{c => [d]}}], ~s}", "s"), 0);
    assert_bytes(&b, "68037701616c00000001680277016274000000017701636c000000017701646a6a6d0000000173");
    term_buf_release(&b);
}
END_TEST

START_TEST(format_numbers_match_beam)
{
    term_buf_t b;
    term_buf_init(&b);
    ck_assert_int_eq(term_format(&b, "{~a, ~u, ~f}", "ok", (uint64_t)UINT64_MAX, 1.5), 0);
    assert_bytes(&b, "680377026f6b6e0800ffffffffffffffff463ff8000000000000");
    term_buf_reset(&b);
    ck_assert_int_eq(term_format(&b, "{-5, ~i}", (int64_t)INT64_MIN), 0);
    assert_bytes(&b, "680262fffffffb6e08010000000000000080");
    term_buf_reset(&b);
    ck_assert_int_eq(term_format(&b, "[a, ~i]", (int64_t)1000), 0);
    assert_bytes(&b, "6c0000000277016162000003e86a");
    term_buf_release(&b);
}
END_TEST

START_TEST(format_pid_and_ref_match_put)
{
    term_pid_t pid = { .num = 1, .serial = 2, .creation = 3 };
    strcpy(pid.node, "a@b");
    term_ref_t ref = { .creation = 3, .len = 3, .n = { 1, 2, 3 } };
    strcpy(ref.node, "a@b");
    term_buf_t b, want;
    term_buf_init(&b);
    term_buf_init(&want);
    ck_assert_int_eq(term_format(&b, "{~p,~r}", &pid, &ref), 0);
    term_put_tuple(&want, 2);
    term_put_pid(&want, &pid);
    term_put_ref(&want, &ref);
    ck_assert_uint_eq(b.len, want.len);
    ck_assert_int_eq(memcmp(b.data, want.data, b.len), 0);
    term_buf_release(&b);
    term_buf_release(&want);
}
END_TEST

/* The result is one valid term: term_skip agrees on its length. */
START_TEST(format_large_tuple_has_large_header)
{
    char fmt[2 + 300 * 2 + 1];
    size_t k = 0;
    fmt[k++] = '{';
    for (int i = 0; i < 300; i++) {
        fmt[k++] = 'a';
        fmt[k++] = i == 299 ? '}' : ',';
    }
    fmt[k] = 0;
    term_buf_t b;
    term_buf_init(&b);
    ck_assert_int_eq(term_format(&b, fmt), 0);
    ck_assert_int_eq((unsigned char)b.data[0], 105);
    size_t used;
    ck_assert_int_eq(term_skip(b.data, b.len, &used), 0);
    ck_assert_uint_eq(used, b.len);
    term_buf_release(&b);
}
END_TEST

static const char *const bad_templates[] = {
    "", "{a", "{a,}", "[a b]", "a b", "#{a}", "#{a => }", "~z", "{a}}", "'open", "Upper", "[1|2]",
};

START_TEST(format_bad_template_returns_einval)
{
    term_buf_t b;
    term_buf_init(&b);
    term_buf_append(&b, "x", 1);
    ck_assert_int_eq(term_format(&b, bad_templates[_i]), -EINVAL);
    ck_assert_uint_eq(b.len, 1);
    ck_assert_int_eq(b.err, 0);
    term_buf_release(&b);
}
END_TEST

START_TEST(format_allocation_failure_returns_enomem)
{
    for (long k = 1;; k++) {
        term_buf_t b;
        term_buf_init(&b);
        mem_fail_after(k);
        int rc = term_format(&b, "{x, #{b => ~s, a => [1, 2]}, ~i}", "bin", (int64_t)7);
        mem_fail_after(0);
        term_buf_release(&b);
        if (rc == 0) {
            ck_assert_int_gt(k, 1);
            break;
        }
        ck_assert_int_eq(rc, -ENOMEM);
        ck_assert_int_lt(k, 1000);
    }
}
END_TEST

Suite *term_format_suite(void)
{
    Suite *s = suite_create("term_format");
    TCase *tc = tcase_create("beam");
    tcase_add_test(tc, format_forward_to_local_matches_beam);
    tcase_add_test(tc, format_binary_args_match_beam);
    tcase_add_loop_test(tc, format_literal_template_matches_beam, 0,
                        sizeof literal_rows / sizeof literal_rows[0]);
    tcase_add_test(tc, format_nested_matches_beam);
    tcase_add_test(tc, format_numbers_match_beam);
    tcase_add_test(tc, format_pid_and_ref_match_put);
    tcase_add_test(tc, format_large_tuple_has_large_header);
    suite_add_tcase(s, tc);
    tc = tcase_create("errors");
    tcase_add_loop_test(tc, format_bad_template_returns_einval, 0,
                        sizeof bad_templates / sizeof bad_templates[0]);
    tcase_add_test(tc, format_allocation_failure_returns_enomem);
    suite_add_tcase(s, tc);
    return s;
}
