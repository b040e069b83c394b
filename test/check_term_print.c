/* check_term_print.c: term_print() against io_lib:format("~w", [T]) on
 * OTP 25. The vectors were made on BEAM: the hex is term_to_binary(T,
 * [{minor_version, 2}]) without the 131, the text is what ~w wrote. */
#include <check.h>
#include <errno.h>
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

/* Prints the hex-encoded term into a fresh buffer; the caller releases. */
static int print_hex(const char *hex, term_buf_t *b)
{
    unsigned char bytes[512];
    size_t n = unhex(hex, bytes);
    term_buf_init(b);
    return term_print(bytes, n, b);
}

static const struct {
    const char *id, *hex, *text;
} beam_rows[] = {
    { "atom_plain", "770568656c6c6f", "hello" },
    { "atom_reserved", "77056166746572", "'after'" },
    { "atom_upper", "770548656c6c6f", "'Hello'" },
    { "atom_empty", "7700", "''" },
    { "atom_space", "7703612062", "'a b'" },
    { "atom_quote", "770469742773", "'it\\'s'" },
    { "atom_backslash", "7703615c62", "'a\\\\b'" },
    { "atom_newline", "7703610a62", "'a\\nb'" },
    { "atom_del", "77017f", "'\\d'" },
    { "atom_ctrl", "770101", "'\\001'" },
    { "atom_c1", "7702c285", "'\\205'" },
    { "atom_latin1", "7702c3a9", "\303\251" },
    { "atom_latin1_start", "7703c39f78", "\303\237x" },
    { "atom_unicode", "770461c48162", "'a\\x{101}b'" },
    { "atom_at", "77096e6f646540686f7374", "node@host" },
    { "atom_digit_start", "77023161", "'1a'" },
    { "atom_true", "770474727565", "true" },
    { "int_zero", "6100", "0" },
    { "int_small", "61ff", "255" },
    { "int_256", "6200000100", "256" },
    { "int_neg", "62ffffffff", "-1" },
    { "int_min32", "6280000000", "-2147483648" },
    { "int_max32", "627fffffff", "2147483647" },
    { "int_2_31", "6e040000000080", "2147483648" },
    { "int_2_64", "6e0900000000000000000001", "18446744073709551616" },
    { "int_neg_big", "6e0d01d20a3f4eeee073c3f60fe98e01", "-123456789012345678901234567890" },
    { "float_one", "463ff0000000000000", "1.0" },
    { "float_tenth", "463fb999999999999a", "0.1" },
    { "float_e10", "464202a05f20000000", "1.0e10" },
    { "float_neg", "46c004000000000000", "-2.5" },
    { "float_tiny", "460000000000000001", "5.0e-324" },
    { "float_max", "467fefffffffffffff", "1.7976931348623157e308" },
    { "float_1e3", "46408f400000000000", "1.0e3" },
    { "float_fixed", "4642dc12218377de40", "123456789012345.0" },
    { "float_1e_4", "463f1a36e2eb1c432d", "0.0001" },
    { "float_1e_5", "463ee4f8b588e368f1", "1.0e-5" },
    { "float_third", "463fd5555555555555", "0.3333333333333333" },
    { "nil", "6a", "[]" },
    { "string", "6b0003616263", "[97,98,99]" },
    { "list", "6c0000000361017701616b0001626a", "[1,a,[98]]" },
    { "improper", "6c0000000161016102", "[1|2]" },
    { "tuple_empty", "6800", "{}" },
    { "tuple", "680377016161016801770162", "{a,1,{b}}" },
    { "binary", "6d00000003616263", "<<97,98,99>>" },
    { "binary_empty", "6d00000000", "<<>>" },
    { "bits", "4d000000010320", "<<1:3>>" },
    { "bits_bytes", "4d0000000304616250", "<<97,98,5:4>>" },
    { "map_empty", "7400000000", "#{}" },
    { "map", "740000000277016161016d000000016b6c000000017701786a", "#{a => 1,<<107>> => [x]}" },
    { "export", "7177056c6973747377036d61706102", "fun lists:map/2" },
};

START_TEST(print_beam_vector_matches_io_lib_w)
{
    term_buf_t b;
    int rc = print_hex(beam_rows[_i].hex, &b);
    ck_assert_msg(rc == 0, "%s: rc %d", beam_rows[_i].id, rc);
    ck_assert_str_eq(b.data, beam_rows[_i].text);
    ck_assert_uint_eq(b.len, strlen(beam_rows[_i].text));
    term_buf_release(&b);
}
END_TEST

/* Encodings that BEAM also accepts but that are not canonical, and the
 * node-local terms: each must print as the term it stands for. */
static const struct {
    const char *id, *hex, *text;
} other_rows[] = {
    { "atom_ext_latin1", "640001e9", "\303\251" },
    { "small_atom_ext", "7301e9", "\303\251" },
    { "atom_ext_reserved", "6400026f66", "'of'" },
    { "list_of_small_ints", "6c00000002610161026a", "[1,2]" },
    { "list_tail_is_list", "6c0000000161016c0000000161026a", "[1,2]" },
    { "list_tail_is_string", "6c0000000161016b00026162", "[1,97,98]" },
    { "list_tail_improper_after_list", "6c0000000161016c00000001610261 03", "[1,2|3]" },
    { "old_float_ext", "63312e3530303030303030303030303030303030303030652b30300000000000", "1.5" },
    { "small_big_small_value", "6e0100 05", "5" },
    { "small_big_negative", "6e020101 00", "-1" },
    { "large_big", "6f0000000100 07", "7" },
    { "large_tuple", "69000000016100", "{0}" },
    { "bit_binary_8_bits", "4d0000000108ff", "<<255>>" },
    { "new_pid", "5864000d6e6f6e6f6465406e6f686f7374000000090000000000000000", "<0.9.0>" },
    { "newer_ref", "5a000364000d6e6f6e6f6465406e6f686f73740000000000030fcd7bb80001e5e9b165", "#Ref<0.3857297765.2075656193.200653>" },
    { "new_port", "5964000d6e6f6e6f6465406e6f686f73740000000000000000", "#Port<0.0>" },
    { "new_fun", "70000000460051a05798fb15554390345f914639c19f00000000000000006400027632610062028d02bc5864000d6e6f6e6f6465406e6f686f7374000000090000000000000000", "#Fun<v2.0.42795708>" },
    { "v4_port", "78770d6e6f6e6f6465406e6f686f7374000000000000000300000000", "#Port<0.3>" },
    { "neg_zero_float", "468000000000000000", "-0.0" },
};

/* Hex with spaces is allowed above for readability. */
static size_t unhex_spaced(const char *h, unsigned char *out)
{
    char clean[1024];
    size_t n = 0;
    for (; *h && n + 1 < sizeof clean; h++)
        if (*h != ' ')
            clean[n++] = *h;
    clean[n] = 0;
    return unhex(clean, out);
}

START_TEST(print_other_encoding_prints_term)
{
    unsigned char bytes[512];
    size_t n = unhex_spaced(other_rows[_i].hex, bytes);
    term_buf_t b;
    term_buf_init(&b);
    int rc = term_print(bytes, n, &b);
    ck_assert_msg(rc == 0, "%s: rc %d", other_rows[_i].id, rc);
    ck_assert_str_eq(b.data, other_rows[_i].text);
    term_buf_release(&b);
}
END_TEST

/* Every proper prefix of every vector is an error, and out is unchanged. */
START_TEST(print_truncated_at_every_offset_returns_eproto)
{
    unsigned char bytes[512];
    size_t n = unhex(beam_rows[_i].hex, bytes);
    for (size_t cut = 0; cut < n; cut++) {
        /* A copy of exactly cut bytes, so ASan sees any read past it. */
        unsigned char *p = malloc(cut ? cut : 1);
        memcpy(p, bytes, cut);
        term_buf_t b;
        term_buf_init(&b);
        term_buf_append(&b, "x", 1);
        int rc = term_print(p, cut, &b);
        ck_assert_msg(rc == -EPROTO, "%s cut %zu: rc %d", beam_rows[_i].id, cut, rc);
        ck_assert_uint_eq(b.len, 1);
        ck_assert_int_eq(b.err, 0);
        term_buf_release(&b);
        free(p);
    }
}
END_TEST

START_TEST(print_trailing_bytes_returns_eproto)
{
    const unsigned char two[] = { 97, 1, 97, 2 };
    term_buf_t b;
    term_buf_init(&b);
    ck_assert_int_eq(term_print(two, sizeof two, &b), -EPROTO);
    ck_assert_uint_eq(b.len, 0);
    term_buf_release(&b);
}
END_TEST

START_TEST(print_unknown_tag_returns_eproto)
{
    const unsigned char bad[] = { 104, 1, 200 };
    term_buf_t b;
    term_buf_init(&b);
    ck_assert_int_eq(term_print(bad, sizeof bad, &b), -EPROTO);
    term_buf_release(&b);
}
END_TEST

START_TEST(print_invalid_utf8_atom_returns_eproto)
{
    const unsigned char bad[] = { 119, 2, 0xC0, 0x80 };   /* overlong NUL */
    term_buf_t b;
    term_buf_init(&b);
    ck_assert_int_eq(term_print(bad, sizeof bad, &b), -EPROTO);
    term_buf_release(&b);
}
END_TEST

START_TEST(print_bit_binary_zero_bits_returns_eproto)
{
    const unsigned char bad[] = { 77, 0, 0, 0, 1, 0, 0xFF };
    term_buf_t b;
    term_buf_init(&b);
    ck_assert_int_eq(term_print(bad, sizeof bad, &b), -EPROTO);
    term_buf_release(&b);
}
END_TEST

/* A NEW_FUN_EXT whose Size ends before its module atom: the fields past
 * Size are not read (found by fuzz_term_parse). */
START_TEST(print_fun_shorter_than_its_fields_returns_eproto)
{
    unsigned char f[] = { 112, 0, 0, 0, 29, 0,
                          0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                          0, 0, 0, 0, 0, 0, 0, 0,
                          119, 1, 'm', 97, 0, 97, 0, 106 };
    unsigned char *p = malloc(sizeof f);
    memcpy(p, f, sizeof f);
    term_buf_t b;
    term_buf_init(&b);
    ck_assert_int_eq(term_print(p, 30, &b), -EPROTO);
    ck_assert_int_eq(term_print(p, sizeof f, &b), -EPROTO);
    ck_assert_uint_eq(b.len, 0);
    term_buf_release(&b);
    free(p);
}
END_TEST

/* {{{...}}} nested deeper than TERM_MAX_DEPTH: -E2BIG, not a crash. */
START_TEST(print_deep_nesting_returns_e2big)
{
    size_t depth = TERM_MAX_DEPTH + 10;
    unsigned char *p = malloc(depth * 2 + 1);
    for (size_t i = 0; i < depth; i++) {
        p[2 * i] = 104;
        p[2 * i + 1] = 1;
    }
    p[2 * depth] = 106;
    term_buf_t b;
    term_buf_init(&b);
    ck_assert_int_eq(term_print(p, depth * 2 + 1, &b), -E2BIG);
    ck_assert_uint_eq(b.len, 0);
    term_buf_release(&b);
    free(p);
}
END_TEST

/* A flat list of 100000 elements is not nesting. */
START_TEST(print_long_flat_list_succeeds)
{
    size_t n = 100000;
    unsigned char *p = malloc(5 + 2 * n + 1);
    p[0] = 108;
    p[1] = (unsigned char)(n >> 24);
    p[2] = (unsigned char)(n >> 16);
    p[3] = (unsigned char)(n >> 8);
    p[4] = (unsigned char)n;
    for (size_t i = 0; i < n; i++) {
        p[5 + 2 * i] = 97;
        p[6 + 2 * i] = 7;
    }
    p[5 + 2 * n] = 106;
    term_buf_t b;
    term_buf_init(&b);
    ck_assert_int_eq(term_print(p, 6 + 2 * n, &b), 0);
    ck_assert_uint_eq(b.len, 2 * n + 1);
    term_buf_release(&b);
    free(p);
}
END_TEST

/* A 600-digit bignum: 2^2000 - 1. */
START_TEST(print_large_bignum_is_decimal)
{
    unsigned char p[3 + 250];
    p[0] = 110;
    p[1] = 250;
    p[2] = 0;
    memset(p + 3, 0xFF, 250);
    term_buf_t b;
    term_buf_init(&b);
    ck_assert_int_eq(term_print(p, sizeof p, &b), 0);
    ck_assert_uint_eq(b.len, 603);   /* 2^2000 has 603 decimal digits */
    ck_assert_int_eq(b.data[0], '1');
    ck_assert_str_eq(b.data + 597, "029375");   /* (2^2000-1) rem 10^6 on BEAM */
    term_buf_release(&b);
}
END_TEST

START_TEST(print_appends_after_existing_bytes)
{
    const unsigned char one[] = { 97, 1 };
    term_buf_t b;
    term_buf_init(&b);
    term_buf_append(&b, "x=", 2);
    ck_assert_int_eq(term_print(one, sizeof one, &b), 0);
    ck_assert_uint_eq(b.len, 3);
    ck_assert_str_eq(b.data, "x=1");
    term_buf_release(&b);
}
END_TEST

/* Fails the k-th allocation for k = 1.. until printing succeeds: every
 * failure is -ENOMEM with nothing appended, and nothing leaks (ASan). */
START_TEST(print_allocation_failure_returns_enomem)
{
    unsigned char p[3 + 40];
    p[0] = 110;
    p[1] = 40;
    p[2] = 1;
    memset(p + 3, 0x5A, 40);
    unsigned char t[600];
    size_t tn = 0;
    t[tn++] = 104;
    t[tn++] = 3;
    memcpy(t + tn, p, sizeof p);
    tn += sizeof p;
    tn += unhex("740000000277016161016d000000016b6c000000017701786a", t + tn);
    tn += unhex("6b0003616263", t + tn);
    for (long k = 1;; k++) {
        term_buf_t b;
        term_buf_init(&b);
        mem_fail_after(k);
        int rc = term_print(t, tn, &b);
        mem_fail_after(0);
        if (rc == 0) {
            ck_assert_int_gt(k, 1);
            term_buf_release(&b);
            break;
        }
        ck_assert_int_eq(rc, -ENOMEM);
        ck_assert_uint_eq(b.len, 0);
        term_buf_release(&b);
        ck_assert_int_lt(k, 1000);
    }
}
END_TEST

Suite *term_print_suite(void)
{
    Suite *s = suite_create("term_print");
    TCase *tc = tcase_create("beam");
    tcase_add_loop_test(tc, print_beam_vector_matches_io_lib_w, 0,
                        sizeof beam_rows / sizeof beam_rows[0]);
    tcase_add_loop_test(tc, print_other_encoding_prints_term, 0,
                        sizeof other_rows / sizeof other_rows[0]);
    suite_add_tcase(s, tc);
    tc = tcase_create("errors");
    tcase_add_loop_test(tc, print_truncated_at_every_offset_returns_eproto, 0,
                        sizeof beam_rows / sizeof beam_rows[0]);
    tcase_add_test(tc, print_trailing_bytes_returns_eproto);
    tcase_add_test(tc, print_unknown_tag_returns_eproto);
    tcase_add_test(tc, print_invalid_utf8_atom_returns_eproto);
    tcase_add_test(tc, print_bit_binary_zero_bits_returns_eproto);
    tcase_add_test(tc, print_fun_shorter_than_its_fields_returns_eproto);
    tcase_add_test(tc, print_deep_nesting_returns_e2big);
    suite_add_tcase(s, tc);
    tc = tcase_create("limits");
    tcase_add_test(tc, print_long_flat_list_succeeds);
    tcase_add_test(tc, print_large_bignum_is_decimal);
    tcase_add_test(tc, print_appends_after_existing_bytes);
    tcase_add_test(tc, print_allocation_failure_returns_enomem);
    suite_add_tcase(s, tc);
    return s;
}
