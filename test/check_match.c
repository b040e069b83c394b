/* check_match.c: match specifications: compiling (badarg cases), patterns,
 * guards, bodies, arithmetic and the 'EXIT' result, as OTP 25 ETS
 * evaluates them (store_ets_SUITE checks the same against a live BEAM). */
#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "store/match.h"
#include "term/mem.h"

static term_buf_t parse(const char *text)
{
    term_buf_t b;
    size_t used;
    term_buf_init(&b);
    int rc = term_parse(text, strlen(text), &used, &b);
    ck_assert_msg(rc == 0, "parse %s: %d", text, rc);
    return b;
}

typedef struct row {
    const char *id, *spec, *obj;
    const char *expect;   /* NULL: no clause matches */
} row_t;

static const row_t RUN_ROWS[] = {
    {"any_head", "[{'_', [], ['$_']}]", "{1, a}", "{1, a}"},
    {"var_head", "[{'$1', [], ['$1']}]", "{1, a}", "{1, a}"},
    {"atom_head_never_matches", "[{foo, [], ['$_']}]", "{1, a}", NULL},
    {"list_head_never_matches", "[{['$1'], [], ['$_']}]", "{1, a}", NULL},
    {"arity_mismatch", "[{{'$1'}, [], ['$1']}]", "{1, a}", NULL},
    {"literal_int_not_float", "[{{1.0, '_'}, [], [true]}]", "{1, a}", NULL},
    {"repeated_var_equal", "[{{'$1', '$1'}, [], ['$1']}]", "{x, x}", "x"},
    {"repeated_var_differs", "[{{'$1', '$1'}, [], ['$1']}]", "{1, 1.0}", NULL},
    {"allvars_in_number_order", "[{{'$10', '$2', '_'}, [], ['$$']}]", "{a, b, c}", "[b, a]"},
    {"cons_pattern_on_string", "[{{'_', ['$1' | '$2']}, [], [{{'$1', '$2'}}]}]", "{k, \"abc\"}", "{97, \"bc\"}"},
    {"cons_pattern_on_list", "[{{'_', ['$1' | '$2']}, [], ['$2']}]", "{k, [a, 2, 3]}", "[2, 3]"},
    {"cons_tail_becomes_nil", "[{{'_', [a, '$1' | '$2']}, [], ['$2']}]", "{k, [a, b]}", "[]"},
    {"map_pattern_subset", "[{{'_', #{a => '$1'}}, [], ['$1']}]", "{k, #{a => 1, b => 2}}", "1"},
    {"map_pattern_missing_key", "[{{'_', #{c => '$1'}}, [], ['$1']}]", "{k, #{a => 1}}", NULL},
    {"guard_true", "[{{'$1', '_'}, [{is_integer, '$1'}], [yes]}]", "{1, a}", "yes"},
    {"guard_false", "[{{'$1', '_'}, [{is_atom, '$1'}], [yes]}]", "{1, a}", NULL},
    {"guard_error_fails_clause", "[{{'$1', '_'}, [{'>', {'+', '$1', a}, 0}], [yes]}, {'_', [], [no]}]", "{1, a}", "no"},
    {"guard_non_boolean_fails", "[{{'$1', '_'}, ['$1'], [yes]}]", "{1, a}", NULL},
    {"equal_vs_exact", "[{{'$1', '_'}, [{'==', '$1', 1.0}], [{'=:=', '$1', 1.0}]}]", "{1, a}", "false"},
    {"andalso_short_circuit", "[{{'$1', '_'}, [{'andalso', false, {'+', a, 1}}], [yes]}, {'_', [], [no]}]", "{1, a}", "no"},
    {"orelse_short_circuit", "[{{'$1', '_'}, [{'orelse', true, {'+', a, 1}}], [yes]}]", "{1, a}", "yes"},
    {"andalso_returns_last", "[{'_', [], [{'andalso', true, 7}]}]", "{1}", "7"},
    {"and_non_boolean_fails", "[{'_', [{'and', true, 1}], [yes]}]", "{1}", NULL},
    {"xor", "[{'_', [], [{'xor', true, false}]}]", "{1}", "true"},
    {"body_error_is_exit", "[{{'$1', '$2'}, [], [{'+', '$2', 1}]}]", "{1, a}", "'EXIT'"},
    {"body_last_value", "[{{'$1', '$2'}, [], ['$1', '$2']}]", "{1, a}", "a"},
    {"const", "[{'_', [], [{const, {'$1', '$$'}}]}]", "{1}", "{'$1', '$$'}"},
    {"tuple_construct", "[{{'$1', '$2'}, [], [{{'$2', {{'$1'}}, {{}}}}]}]", "{1, a}", "{a, {1}, {}}"},
    {"list_construct_splices_tail", "[{{'$1', '$2'}, [], [['$1', 2 | '$2']]}]", "{1, [3, 4]}", "[1, 2, 3, 4]"},
    {"list_construct_of_ints_is_string", "[{{'$1', '_'}, [], [['$1', 98]]}]", "{97, x}", "\"ab\""},
    {"map_construct_computed_key", "[{{'$1', '$2'}, [], [#{'$1' => '$2', b => 1}]}]", "{a, z}", "#{a => z, b => 1}"},
    {"dollar_atom_literal", "[{'_', [], ['$foo']}]", "{1}", "'$foo'"},
    {"add_overflow_to_bignum", "[{{'$1'}, [], [{'+', '$1', 1}]}]", "{9223372036854775807}", "9223372036854775808"},
    {"mul_bignum", "[{'_', [], [{'*', 100000000000, 100000000000}]}]", "{1}", "10000000000000000000000"},
    {"bsl_bignum", "[{'_', [], [{'bsl', 1, 100}]}]", "{1}", "1267650600228229401496703205376"},
    {"div_bignum", "[{'_', [], [{'div', 100000000000000000000000, 7}]}]", "{1}", "14285714285714285714285"},
    {"band_bignum", "[{'_', [], [{'band', 1180591620717411303679, 255}]}]", "{1}", "255"},
    {"bor_negative_bignum", "[{'_', [], [{'bor', -1180591620717411303424, 1}]}]", "{1}", "-1180591620717411303423"},
    {"bsr_negative_bignum", "[{'_', [], [{'bsr', -1180591620717411303425, 68}]}]", "{1}", "-5"},
    {"bnot_bignum", "[{'_', [], [{'bnot', 1180591620717411303424}]}]", "{1}", "-1180591620717411303425"},
    {"rem_negative", "[{'_', [], [{'rem', -7, 2}]}]", "{1}", "-1"},
    {"div_by_zero_exit", "[{'_', [], [{'div', 1, 0}]}]", "{1}", "'EXIT'"},
    {"float_arith", "[{'_', [], [{'+', 1.5, 1}]}]", "{1}", "2.5"},
    {"fdiv", "[{'_', [], [{'/', 1, 2}]}]", "{1}", "0.5"},
    {"unary_minus_bignum", "[{'_', [], [{'-', 9223372036854775808}]}]", "{1}", "-9223372036854775808"},
    {"abs_round_trunc", "[{'_', [], [[{abs, -3}, {round, 2.5}, {trunc, -2.7}, {float, 2}]]}]", "{1}", "[3, 3, -2, 2.0]"},
    {"element_hd_tl", "[{{'$1'}, [], [[{element, 2, '$1'}, {hd, [a, b]}, {tl, [a, b]}]]}]", "{{x, y}}", "[y, a, [b]]"},
    {"element_out_of_range", "[{{'$1'}, [], [{element, 3, '$1'}]}]", "{{x, y}}", "'EXIT'"},
    {"length_improper_exit", "[{{'$1'}, [], [{length, '$1'}]}]", "{[a | b]}", "'EXIT'"},
    {"sizes", "[{{'$1', '$2'}, [], [[{size, '$1'}, {size, '$2'}, {byte_size, '$2'}, {bit_size, '$2'}]]}]",
     "{{a, b, c}, <<\"xyz\">>}", "[3, 3, 3, 24]"},
    {"binary_part", "[{{'$1'}, [], [[{binary_part, '$1', 1, 2}, {binary_part, '$1', {const, {3, -2}}}]]}]",
     "{<<\"abcd\">>}", "[<<\"bc\">>, <<\"bc\">>]"},
    {"map_functions", "[{{'$1'}, [], [[{map_size, '$1'}, {map_get, a, '$1'}, {is_map_key, b, '$1'}]]}]",
     "{#{a => 1}}", "[1, 1, false]"},
    {"is_record", "[{{'$1'}, [{is_record, '$1', r, 3}], [yes]}]", "{{r, 1, 2}}", "yes"},
    {"type_tests", "[{{'$1', '$2', '$3'}, [], [[{is_list, '$1'}, {is_binary, '$2'}, {is_float, '$3'}, {is_number, '$3'}]]}]",
     "{[], <<>>, 1.0}", "[true, true, true, true]"},
    {"node", "[{'_', [], [{node}]}]", "{1}", "nonode@nohost"},
    {"second_clause", "[{{a}, [], [first]}, {{'_'}, [], [second]}]", "{b}", "second"},
};

START_TEST(run_row)
{
    const row_t *r = &RUN_ROWS[_i];
    term_buf_t spec = parse(r->spec), obj = parse(r->obj), out;
    term_buf_init(&out);
    match_spec_t *ms;
    match_set_node("nonode@nohost");
    int rc = match_compile(spec.data, spec.len, &ms);
    ck_assert_msg(rc == 0, "%s: compile %d", r->id, rc);
    rc = match_run(ms, obj.data, obj.len, &out, NULL);
    if (!r->expect) {
        ck_assert_msg(rc == 0, "%s: matched (rc %d)", r->id, rc);
    } else {
        ck_assert_msg(rc == 1, "%s: rc %d", r->id, rc);
        term_buf_t e = parse(r->expect), p;
        term_buf_init(&p);
        term_print(out.data, out.len, &p);
        ck_assert_msg(out.len == e.len && memcmp(out.data, e.data, e.len) == 0,
                      "%s: got %s, wanted %s", r->id, p.data ? p.data : "?", r->expect);
        term_buf_release(&p);
        term_buf_release(&e);
    }
    match_free(ms);
    term_buf_release(&out);
    term_buf_release(&obj);
    term_buf_release(&spec);
}
END_TEST

static const struct bad_row {
    const char *id, *spec;
} BAD_ROWS[] = {
    {"not_a_list", "{a}"},
    {"improper_list", "[{'_', [], [true]} | x]"},
    {"clause_not_triple", "[{'_', []}]"},
    {"guards_not_list", "[{'_', x, [true]}]"},
    {"body_not_list", "[{'_', [], x}]"},
    {"body_empty", "[{'_', [], []}]"},
    {"body_improper", "[{'_', [], ['$_' | x]}]"},
    {"unbound_var_in_body", "[{{'$1'}, [], ['$2']}]"},
    {"unbound_var_in_guard", "[{{'$1'}, [{is_atom, '$2'}], [true]}]"},
    {"unknown_function", "[{'_', [], [{bogus, 1}]}]"},
    {"wrong_arity", "[{'_', [], [{is_atom, 1, 2}]}]"},
    {"tuple_size_not_allowed", "[{'_', [], [{tuple_size, {{}}}]}]"},
    {"xor_three_args", "[{'_', [], [{'xor', true, true, true}]}]"},
    {"and_no_args", "[{'_', [], [{'and'}]}]"},
    {"empty_tuple_expression", "[{'_', [], [{}]}]"},
    {"tuple_with_non_atom_head", "[{'_', [], [{'$_'}]}]"},
    {"const_arity", "[{'_', [], [{const, a, b}]}]"},
    {"map_pattern_var_key", "[{{#{'$1' => a}}, [], [true]}]"},
};

START_TEST(compile_bad_returns_einval)
{
    term_buf_t spec = parse(BAD_ROWS[_i].spec);
    match_spec_t *ms = NULL;
    int rc = match_compile(spec.data, spec.len, &ms);
    ck_assert_msg(rc == -EINVAL, "%s: rc %d", BAD_ROWS[_i].id, rc);
    term_buf_release(&spec);
}
END_TEST

START_TEST(pattern_bindings_and_object)
{
    term_buf_t pat = parse("{'$2', '_', '$1'}"), obj = parse("{a, b, c}"), out;
    term_buf_init(&out);
    match_spec_t *ms;
    ck_assert_int_eq(match_compile_pattern(pat.data, pat.len, MATCH_BINDINGS, &ms), 0);
    ck_assert_int_eq(match_run(ms, obj.data, obj.len, &out, NULL), 1);
    term_buf_t e = parse("[c, a]");
    ck_assert(out.len == e.len && memcmp(out.data, e.data, e.len) == 0);
    match_free(ms);
    term_buf_release(&e);
    term_buf_reset(&out);
    ck_assert_int_eq(match_compile_pattern(pat.data, pat.len, MATCH_OBJECT, &ms), 0);
    ck_assert_int_eq(match_run(ms, obj.data, obj.len, &out, NULL), 1);
    ck_assert(out.len == obj.len && memcmp(out.data, obj.data, obj.len) == 0);
    match_free(ms);
    term_buf_release(&out);
    term_buf_release(&obj);
    term_buf_release(&pat);
}
END_TEST

START_TEST(bound_key_detected_only_without_vars)
{
    const char *keys[4];
    size_t lens[4], n;
    match_spec_t *ms;
    term_buf_t a = parse("[{{#{a => 1}, '$1'}, [], ['$1']}]");
    term_buf_t b = parse("[{{#{a => '$2'}, '$1'}, [], ['$1']}]");
    ck_assert_int_eq(match_compile(a.data, a.len, &ms), 0);
    ck_assert_int_eq(match_bound_keys(ms, 1, keys, lens, 4, &n), 1);
    ck_assert_uint_eq(n, 1);
    ck_assert_int_eq(match_bound_keys(ms, 2, keys, lens, 4, &n), 0);
    match_free(ms);
    ck_assert_int_eq(match_compile(b.data, b.len, &ms), 0);
    ck_assert_int_eq(match_bound_keys(ms, 1, keys, lens, 4, &n), 0);
    match_free(ms);
    term_buf_release(&a);
    term_buf_release(&b);
}
END_TEST

START_TEST(int_add_handles_bignums)
{
    term_buf_t a = parse("18446744073709551616"), b = parse("-18446744073709551617"), out;
    term_buf_init(&out);
    ck_assert_int_eq(match_int_add(a.data, a.len, b.data, b.len, &out), 0);
    term_buf_t e = parse("-1");
    ck_assert(out.len == e.len && memcmp(out.data, e.data, e.len) == 0);
    term_buf_t f = parse("1.0");
    ck_assert_int_eq(match_int_add(a.data, a.len, f.data, f.len, &out), -EINVAL);
    term_buf_release(&a);
    term_buf_release(&b);
    term_buf_release(&e);
    term_buf_release(&f);
    term_buf_release(&out);
}
END_TEST

START_TEST(compile_and_run_alloc_failure_return_enomem)
{
    term_buf_t spec = parse("[{{'$1', ['$2' | '$3']}, [{is_integer, '$1'}], "
                            "[{{'$3', {'*', '$1', 100000000000000000000}, #{k => '$2'}}}]}]");
    term_buf_t obj = parse("{7, [a, b, c]}"), out;
    term_buf_init(&out);
    match_spec_t *ms = NULL;
    int rc = -ENOMEM;
    for (long k = 1; k < 200 && rc != 0; k++) {
        mem_fail_after(k);
        rc = match_compile(spec.data, spec.len, &ms);
        mem_fail_after(0);
        if (rc)
            ck_assert_int_eq(rc, -ENOMEM);
    }
    ck_assert_int_eq(rc, 0);
    rc = -ENOMEM;
    for (long k = 1; k < 200 && rc != 1; k++) {
        term_buf_reset(&out);
        mem_fail_after(k);
        rc = match_run(ms, obj.data, obj.len, &out, NULL);
        mem_fail_after(0);
        if (rc != 1)
            ck_assert_int_eq(rc, -ENOMEM);
    }
    ck_assert_int_eq(rc, 1);
    term_buf_t e = parse("{[b, c], 700000000000000000000, #{k => a}}");
    ck_assert(out.len == e.len && memcmp(out.data, e.data, e.len) == 0);
    match_free(ms);
    term_buf_release(&e);
    term_buf_release(&out);
    term_buf_release(&obj);
    term_buf_release(&spec);
}
END_TEST

/* The rows above are OTP 25's behaviour; OTP 27's differences follow. */
static void otp25_setup(void)
{
    ck_assert_int_eq(term_set_otp_release(25), 0);
}

static void otp27_setup(void)
{
    ck_assert_int_eq(term_set_otp_release(27), 0);
}

static void release_teardown(void)
{
    term_set_otp_release(TERM_OTP_DEFAULT);
}

/* OTP 27 scans for a key holding a map: ets:match(T, {#{1 => 1}, '$1'})
 * finds {#{1 => 1, 2 => 2}, v} there and nothing on OTP 25 (checked). */
START_TEST(bound_key_with_map_otp27_is_scanned)
{
    const char *keys[4];
    size_t lens[4], n;
    match_spec_t *ms;
    term_buf_t a = parse("[{{{a, #{a => 1}}, '$1'}, [], ['$1']}]");
    term_buf_t b = parse("[{{{a, 1}, '$1'}, [], ['$1']}]");
    ck_assert_int_eq(match_compile(a.data, a.len, &ms), 0);
    ck_assert_int_eq(match_bound_keys(ms, 1, keys, lens, 4, &n), 0);
    match_free(ms);
    ck_assert_int_eq(match_compile(b.data, b.len, &ms), 0);
    ck_assert_int_eq(match_bound_keys(ms, 1, keys, lens, 4, &n), 1);
    ck_assert_uint_eq(n, 1);
    match_free(ms);
    term_buf_release(&a);
    term_buf_release(&b);
}
END_TEST

/* From OTP 27 these compile (ets:match_spec_compile/1 on 27 and 29). */
static const struct {
    const char *id, *spec;
} OTP27_ROWS[] = {
    {"tuple_size", "[{'_', [], [{tuple_size, {{}}}]}]"},
    {"min", "[{'_', [], [{min, 1, 2}]}]"},
    {"max", "[{'_', [], [{max, 1, 2}]}]"},
    {"ceil", "[{'_', [], [{ceil, 1.5}]}]"},
    {"floor", "[{'_', [], [{floor, 1.5}]}]"},
    {"is_function_2", "[{'_', [{is_function, '$_', 1}], [true]}]"},
    {"is_bitstring", "[{'_', [{is_bitstring, '$_'}], [true]}]"},
};

START_TEST(compile_otp27_function_succeeds_only_from_otp27)
{
    term_buf_t spec = parse(OTP27_ROWS[_i].spec);
    match_spec_t *ms = NULL;
    ck_assert_msg(match_compile(spec.data, spec.len, &ms) == 0, "%s", OTP27_ROWS[_i].id);
    match_free(ms);
    ck_assert_int_eq(term_set_otp_release(25), 0);
    ck_assert_int_eq(match_compile(spec.data, spec.len, &ms), -EINVAL);
    term_buf_release(&spec);
}
END_TEST

Suite *match_suite(void)
{
    Suite *su = suite_create("match");
    TCase *tc = tcase_create("run");
    tcase_add_checked_fixture(tc, otp25_setup, release_teardown);
    tcase_add_loop_test(tc, run_row, 0, sizeof(RUN_ROWS) / sizeof(RUN_ROWS[0]));
    tcase_add_test(tc, pattern_bindings_and_object);
    tcase_add_test(tc, bound_key_detected_only_without_vars);
    tcase_add_test(tc, int_add_handles_bignums);
    suite_add_tcase(su, tc);

    tc = tcase_create("compile");
    tcase_add_checked_fixture(tc, otp25_setup, release_teardown);
    tcase_add_loop_test(tc, compile_bad_returns_einval, 0, sizeof(BAD_ROWS) / sizeof(BAD_ROWS[0]));
    suite_add_tcase(su, tc);

    tc = tcase_create("otp27");
    tcase_add_checked_fixture(tc, otp27_setup, release_teardown);
    tcase_add_test(tc, bound_key_with_map_otp27_is_scanned);
    tcase_add_loop_test(tc, compile_otp27_function_succeeds_only_from_otp27, 0,
                        sizeof(OTP27_ROWS) / sizeof(OTP27_ROWS[0]));
    suite_add_tcase(su, tc);

    tc = tcase_create("alloc_failure");
    tcase_add_test(tc, compile_and_run_alloc_failure_return_enomem);
    suite_add_tcase(su, tc);
    return su;
}
