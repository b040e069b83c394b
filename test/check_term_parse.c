/* check_term_parse.c: term_parse() and term_consult() against erl_scan +
 * erl_parse:parse_term on OTP 25. The vectors were made on BEAM: each text
 * was parsed there to a term T, and the hex is term_to_binary(T,
 * [{minor_version, 2}]) without the 131. */
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

/* A copy of the text without a NUL after it, so ASan sees any read past
 * len. Free it with free(). */
static char *exact(const char *text, size_t len)
{
    char *p = malloc(len ? len : 1);
    memcpy(p, text, len);
    return p;
}

static int parse_text(const char *text, term_buf_t *b, size_t *used)
{
    size_t n = strlen(text);
    char *p = exact(text, n);
    term_buf_init(b);
    int rc = term_parse(p, n, used, b);
    free(p);
    return rc;
}

static const struct {
    const char *text, *hex;
} beam_rows[] = {
    { "hello", "770568656c6c6f" },
    { "'hello world'", "770b68656c6c6f20776f726c64" },
    { "'a\\nb\\x{101}\\101\\x41\\^A\\s\\q'", "770a610a62c4814141012071" },
    { "node@host", "77096e6f646540686f7374" },
    { "\303\251", "7702c3a9" },
    { "'\\''", "770127" },
    { "0", "6100" },
    { "42", "612a" },
    { "-42", "62ffffffd6" },
    { "- 7", "62fffffff9" },
    { "+7", "6107" },
    { "1_000_000", "62000f4240" },
    { "16#FF", "61ff" },
    { "-16#ff", "62ffffff01" },
    { "2#1010", "610a" },
    { "36#Zz", "620000050f" },
    { "$a", "6161" },
    { "$\\n", "610a" },
    { "$\\x{101}", "6200000101" },
    { "-$a", "62ffffff9f" },
    { "$ ", "6120" },
    { "123456789012345678901234567890", "6e0d00d20a3f4eeee073c3f60fe98e01" },
    { "-9223372036854775808", "6e08010000000000000080" },
    { "4294967296", "6e05000000000001" },
    { "2147483648", "6e040000000080" },
    { "1.5", "463ff8000000000000" },
    { "-0.25", "46bfd0000000000000" },
    { "1.0e10", "464202a05f20000000" },
    { "1.5E-3", "463f589374bc6a7efa" },
    { "2.0e+2", "464069000000000000" },
    { "1_0.5", "464025000000000000" },
    { "\"abc\"", "6b0003616263" },
    { "\"\"", "6a" },
    { "\"a\\tb\"", "6b0003610962" },
    { "\"ab\" \"cd\"", "6b000461626364" },
    { "\"\\x{100}\"", "6c0000000162000001006a" },
    { "[]", "6a" },
    { "[1,2,3]", "6b0003010203" },
    { "[a|b]", "6c00000001770161770162" },
    { "[1|[2,3]]", "6b0003010203" },
    { "[1|[]]", "6b000101" },
    { "[$a|\"bc\"]", "6b0003616263" },
    { "[1,2|[3|[4]]]", "6b000401020304" },
    { "[1000]", "6c0000000162000003e86a" },
    { "[\"a\"]", "6c000000016b0001616a" },
    { "[[]]", "6c000000016a6a" },
    { "{}", "6800" },
    { "{a,{b,c},[]}", "680377016168027701627701636a" },
    { "{ a , 1 }", "68027701616101" },
    { "<<>>", "6d00000000" },
    { "<<\"abc\">>", "6d00000003616263" },
    { "<<1,2,3>>", "6d00000003010203" },
    { "<<\"a\",98,\"c\">>", "6d00000003616263" },
    { "<<1:3>>", "4d000000010320" },
    { "<<97,98,5:4>>", "4d0000000304616250" },
    { "<<256>>", "6d0000000100" },
    { "<<-1>>", "6d00000001ff" },
    { "<<1:16>>", "6d000000020001" },
    { "#{}", "7400000000" },
    { "#{a => 1}", "74000000017701616101" },
    { "#{b => 2, a => 1}", "740000000277016161017701626102" },
    { "#{a => 1, a => 2}", "74000000017701616102" },
    { "#{1 => a, 1.0 => b}", "74000000026101770161463ff0000000000000770162" },
    { "# { k => [v] }", "740000000177016b6c000000017701766a" },
    { "% comment\012  atom", "770461746f6d" },
    { "[1, % c\012 2]", "6b00020102" },
};

START_TEST(parse_beam_vector_gives_canonical_bytes)
{
    unsigned char want[512];
    size_t wn = unhex(beam_rows[_i].hex, want);
    term_buf_t b;
    size_t used = 0;
    int rc = parse_text(beam_rows[_i].text, &b, &used);
    ck_assert_msg(rc == 0, "%s: rc %d at %zu", beam_rows[_i].text, rc, used);
    ck_assert_uint_eq(used, strlen(beam_rows[_i].text));
    ck_assert_uint_eq(b.len, wn);
    ck_assert_msg(memcmp(b.data, want, wn) == 0, "%s: bytes differ", beam_rows[_i].text);
    term_buf_release(&b);
}
END_TEST

/* Every prefix of every vector: an error or a shorter term, never a read
 * past len (the copy has exactly len bytes). */
START_TEST(parse_every_prefix_stays_in_bounds)
{
    const char *t = beam_rows[_i].text;
    size_t n = strlen(t);
    for (size_t cut = 0; cut < n; cut++) {
        char *p = exact(t, cut);
        term_buf_t b;
        term_buf_init(&b);
        size_t used = 0;
        int rc = term_parse(p, cut, &used, &b);
        ck_assert_uint_le(used, cut);
        if (rc < 0)
            ck_assert_uint_eq(b.len, 0);
        term_buf_release(&b);
        free(p);
    }
}
END_TEST

static const struct {
    const char *id, *text;
    int rc;
} error_rows[] = {
    { "empty", "", -EPROTO },
    { "only_comment", "% nothing\n", -EPROTO },
    { "unterminated_string", "\"abc", -EPROTO },
    { "unterminated_atom", "'abc", -EPROTO },
    { "unterminated_escape", "\"ab\\", -EPROTO },
    { "bad_escape_x_nonhex", "\"\\xZZ\"", -EPROTO },
    { "bad_escape_x_short", "\"\\x4\"", -EPROTO },
    { "bad_escape_x_brace_empty", "\"\\x{}\"", -EPROTO },
    { "bad_escape_x_brace_unclosed", "\"\\x{41\"", -EPROTO },
    { "bad_escape_x_too_big", "\"\\x{110000}\"", -EPROTO },
    { "bad_escape_x_surrogate", "'\\x{D800}'", -EPROTO },
    { "bad_utf8_in_string", "\"\xff\"", -EPROTO },
    { "overlong_utf8", "\"\xc0\xaf\"", -EPROTO },
    { "unclosed_list", "[1,2", -EPROTO },
    { "unclosed_tuple", "{a,b", -EPROTO },
    { "missing_element", "{a,}", -EPROTO },
    { "leading_comma", "[,1]", -EPROTO },
    { "double_tail", "[1|2|3]", -EPROTO },
    { "tail_then_element", "[1|2,3]", -EPROTO },
    { "empty_tail", "[1|]", -EPROTO },
    { "map_without_arrow", "#{a}", -EPROTO },
    { "map_exact_assoc", "#{a := 1}", -EPROTO },
    { "record", "#r{a = 1}", -EPROTO },
    { "variable", "Var", -EPROTO },
    { "underscore", "_", -EPROTO },
    { "reserved_word", "after", -EPROTO },
    { "reserved_word_in_list", "[a, of]", -EPROTO },
    { "base_too_big", "37#1", -EPROTO },
    { "base_without_digits", "16#", -EPROTO },
    { "digit_out_of_base", "2#2", -EPROTO },
    { "float_overflow", "1.0e400", -EPROTO },
    { "sign_without_number", "- a", -EPROTO },
    { "double_sign", "--1", -EPROTO },
    { "float_in_binary", "<<1.5>>", -EPROTO },
    { "atom_in_binary", "<<a>>", -EPROTO },
    { "unclosed_binary", "<<1,2", -EPROTO },
    { "negative_size", "<<1:-1>>", -EPROTO },
    { "size_too_big", "<<1:65>>", -E2BIG },
    { "type_specifier", "<<1/utf8>>", -EPROTO },
    { "pid", "<0.1.2>", -EPROTO },
    { "ref", "#Ref<0.1.2.3>", -EPROTO },
    { "fun", "fun lists:map/2", -EPROTO },
    { "dollar_at_end", "$", -EPROTO },
    { "unicode_unquoted_atom", "\xc4\x81", -EPROTO },
    { "atom_256_chars",
      "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
      "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
      "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
      "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", -EPROTO },
};

START_TEST(parse_bad_text_returns_error)
{
    term_buf_t b;
    size_t used = 0;
    term_buf_init(&b);
    term_buf_append(&b, "x", 1);
    size_t n = strlen(error_rows[_i].text);
    char *p = exact(error_rows[_i].text, n);
    int rc = term_parse(p, n, &used, &b);
    free(p);
    ck_assert_msg(rc == error_rows[_i].rc, "%s: rc %d", error_rows[_i].id, rc);
    ck_assert_uint_eq(b.len, 1);
    ck_assert_int_eq(b.err, 0);
    ck_assert_uint_le(used, n);
    term_buf_release(&b);
}
END_TEST

START_TEST(parse_atom_255_chars_succeeds)
{
    char t[256];
    memset(t, 'b', 255);
    t[255] = 0;
    term_buf_t b;
    size_t used;
    ck_assert_int_eq(parse_text(t, &b, &used), 0);
    ck_assert_uint_eq(used, 255);
    term_buf_release(&b);
}
END_TEST

START_TEST(parse_error_sets_used_at_offending_byte)
{
    term_buf_t b;
    size_t used = 0;
    ck_assert_int_eq(parse_text("{a, Var}", &b, &used), -EPROTO);
    ck_assert_uint_eq(used, 4);
    term_buf_release(&b);
}
END_TEST

START_TEST(parse_stops_after_term)
{
    term_buf_t b;
    size_t used = 0;
    ck_assert_int_eq(parse_text("  foo bar", &b, &used), 0);
    ck_assert_uint_eq(used, 5);
    term_buf_release(&b);
    ck_assert_int_eq(parse_text("1.5.", &b, &used), 0);
    ck_assert_uint_eq(used, 3);
    term_buf_release(&b);
    ck_assert_int_eq(parse_text("\"a\"  ", &b, &used), 0);
    ck_assert_uint_eq(used, 3);
    term_buf_release(&b);
}
END_TEST

/* Nesting: TERM_MAX_DEPTH levels parse (the codec accepts as many);
 * one more, or far more, is -E2BIG. */
static int parse_nested(size_t depth, char open, char close)
{
    char *t = malloc(2 * depth + 1);
    memset(t, open, depth);
    t[depth] = '1';
    memset(t + depth + 1, close, depth);
    term_buf_t b;
    term_buf_init(&b);
    size_t used;
    int rc = term_parse(t, 2 * depth + 1, &used, &b);
    term_buf_release(&b);
    free(t);
    return rc;
}

START_TEST(parse_deep_nesting_returns_e2big)
{
    ck_assert_int_eq(parse_nested(100, '[', ']'), 0);
    ck_assert_int_eq(parse_nested(100, '{', '}'), 0);
    ck_assert_int_eq(parse_nested(TERM_MAX_DEPTH, '[', ']'), 0);
    ck_assert_int_eq(parse_nested(TERM_MAX_DEPTH, '{', '}'), 0);
    ck_assert_int_eq(parse_nested(TERM_MAX_DEPTH + 1, '[', ']'), -E2BIG);
    ck_assert_int_eq(parse_nested(1000000, '{', '}'), -E2BIG);
}
END_TEST

/* [1|[2|[3|...]]] nests in the text but is one flat list. */
START_TEST(parse_long_tail_chain_is_flat)
{
    size_t n = 5000;
    char *t = malloc(4 * n + 8);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        memcpy(t + k, "[1|", 3);
        k += 3;
    }
    t[k++] = '[';
    t[k++] = ']';
    memset(t + k, ']', n);
    k += n;
    term_buf_t b;
    term_buf_init(&b);
    size_t used;
    ck_assert_int_eq(term_parse(t, k, &used, &b), 0);
    ck_assert_uint_eq(used, k);
    /* STRING_EXT of 5000 ones */
    ck_assert_uint_eq(b.len, 3 + n);
    ck_assert_int_eq((unsigned char)b.data[0], 107);
    term_buf_release(&b);
    free(t);
}
END_TEST

START_TEST(parse_huge_integer_is_bignum)
{
    /* 10^300: LARGE? no, 997 bits fits SMALL_BIG_EXT with 125 bytes. */
    char t[302];
    t[0] = '1';
    memset(t + 1, '0', 300);
    term_buf_t b;
    term_buf_init(&b);
    size_t used;
    ck_assert_int_eq(term_parse(t, 301, &used, &b), 0);
    ck_assert_int_eq((unsigned char)b.data[0], 110);
    ck_assert_int_eq((unsigned char)b.data[1], 125);
    /* and it prints back to the same digits */
    term_buf_t txt;
    term_buf_init(&txt);
    ck_assert_int_eq(term_print(b.data, b.len, &txt), 0);
    ck_assert_uint_eq(txt.len, 301);
    ck_assert_int_eq(memcmp(txt.data, t, 301), 0);
    term_buf_release(&txt);
    term_buf_release(&b);
}
END_TEST

static const char consult_text[] =
    "%% a file:consult/1 file\n"
    "{user, <<\"a@example.com\">>, \"tok\"}.\n"
    "[1, 2.5, 'x y'] .  % trailing comment\n"
    "#{k => v}.";

START_TEST(consult_reads_every_term)
{
    term_buf_t b, want;
    term_buf_init(&b);
    term_buf_init(&want);
    size_t count = 0, used;
    size_t n = strlen(consult_text);
    char *p = exact(consult_text, n);
    ck_assert_int_eq(term_consult(p, n, &b, &count), 0);
    free(p);
    ck_assert_uint_eq(count, 3);
    ck_assert_int_eq(term_parse("{user,<<\"a@example.com\">>,\"tok\"}", 32, &used, &want), 0);
    ck_assert_int_eq(term_parse("[1,2.5,'x y']", 13, &used, &want), 0);
    ck_assert_int_eq(term_parse("#{k=>v}", 7, &used, &want), 0);
    ck_assert_uint_eq(b.len, want.len);
    ck_assert_int_eq(memcmp(b.data, want.data, b.len), 0);
    term_buf_release(&b);
    term_buf_release(&want);
}
END_TEST

static const struct {
    const char *id, *text;
    int rc;
    size_t count;
} consult_rows[] = {
    { "empty", "", 0, 0 },
    { "only_space_and_comments", "  % x\n\t% y", 0, 0 },
    { "dot_at_end", "a.", 0, 1 },
    { "float_then_dot", "1.5.\n", 0, 1 },
    { "dot_before_comment", "a.%c\nb.", 0, 2 },
    { "missing_dot", "a", -EPROTO, 0 },
    { "missing_last_dot", "a. b", -EPROTO, 0 },
    { "trailing_garbage", "a. b c.", -EPROTO, 0 },
    { "dot_not_followed_by_space", "a.b.", -EPROTO, 0 },
    { "two_terms_one_dot", "a b.", -EPROTO, 0 },
    { "unterminated_string", "\"abc.\n", -EPROTO, 0 },
};

START_TEST(consult_row_gives_count_or_error)
{
    term_buf_t b;
    term_buf_init(&b);
    size_t count = 99;
    size_t n = strlen(consult_rows[_i].text);
    char *p = exact(consult_rows[_i].text, n);
    int rc = term_consult(p, n, &b, &count);
    free(p);
    ck_assert_msg(rc == consult_rows[_i].rc, "%s: rc %d", consult_rows[_i].id, rc);
    if (rc == 0)
        ck_assert_uint_eq(count, consult_rows[_i].count);
    else
        ck_assert_uint_eq(b.len, 0);
    term_buf_release(&b);
}
END_TEST

/* k-th allocation fails for k = 1.. until the parse succeeds. */
START_TEST(parse_allocation_failure_returns_enomem)
{
    const char *t = "{#{b => 1, a => 2, b => 3}, [1, \"abc\" | x], <<\"bin\", 1:3>>, "
                    "123456789012345678901234567890, 1.5, 'q'}";
    size_t n = strlen(t);
    for (long k = 1;; k++) {
        term_buf_t b;
        term_buf_init(&b);
        size_t used;
        mem_fail_after(k);
        int rc = term_parse(t, n, &used, &b);
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

START_TEST(consult_allocation_failure_returns_enomem)
{
    size_t n = strlen(consult_text);
    for (long k = 1;; k++) {
        term_buf_t b;
        term_buf_init(&b);
        size_t count;
        mem_fail_after(k);
        int rc = term_consult(consult_text, n, &b, &count);
        mem_fail_after(0);
        if (rc == 0) {
            ck_assert_uint_eq(count, 3);
            term_buf_release(&b);
            break;
        }
        ck_assert_int_eq(rc, -ENOMEM);
        term_buf_release(&b);
        ck_assert_int_lt(k, 1000);
    }
}
END_TEST

Suite *term_parse_suite(void)
{
    Suite *s = suite_create("term_parse");
    TCase *tc = tcase_create("beam");
    tcase_add_loop_test(tc, parse_beam_vector_gives_canonical_bytes, 0,
                        sizeof beam_rows / sizeof beam_rows[0]);
    tcase_add_loop_test(tc, parse_every_prefix_stays_in_bounds, 0,
                        sizeof beam_rows / sizeof beam_rows[0]);
    tcase_add_test(tc, parse_atom_255_chars_succeeds);
    tcase_add_test(tc, parse_stops_after_term);
    tcase_add_test(tc, parse_long_tail_chain_is_flat);
    tcase_add_test(tc, parse_huge_integer_is_bignum);
    suite_add_tcase(s, tc);
    tc = tcase_create("errors");
    tcase_add_loop_test(tc, parse_bad_text_returns_error, 0,
                        sizeof error_rows / sizeof error_rows[0]);
    tcase_add_test(tc, parse_error_sets_used_at_offending_byte);
    tcase_add_test(tc, parse_deep_nesting_returns_e2big);
    tcase_add_test(tc, parse_allocation_failure_returns_enomem);
    suite_add_tcase(s, tc);
    tc = tcase_create("consult");
    tcase_add_test(tc, consult_reads_every_term);
    tcase_add_loop_test(tc, consult_row_gives_count_or_error, 0,
                        sizeof consult_rows / sizeof consult_rows[0]);
    tcase_add_test(tc, consult_allocation_failure_returns_enomem);
    suite_add_tcase(s, tc);
    return s;
}
