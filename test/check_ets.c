/* check_ets.c: store_ets_call(), one row per operation and per error case.
 * Expected results are what OTP 25 ETS returns for the same call on a set
 * table (store_ets_SUITE checks the same against a live BEAM). */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/store.h"
#include "store/store_int.h"
#include "term/mem.h"

static store_t *s;

static term_buf_t parse(const char *text)
{
    term_buf_t b;
    size_t used;
    term_buf_init(&b);
    int rc = term_parse(text, strlen(text), &used, &b);
    ck_assert_msg(rc == 0, "parse %s: %d", text, rc);
    return b;
}

/* Runs ets:Fun(Args) and returns rc; on 0 *res is the canonical result
 * printed as Erlang text (caller frees). */
static int call(const char *fun, const char *args, char **res)
{
    term_buf_t a = parse(args), out, c, p;
    term_buf_init(&out);
    int rc = store_ets_call(s, fun, a.data, a.len, &out);
    if (rc == 0 && res) {
        size_t used;
        term_buf_init(&c);
        term_buf_init(&p);
        ck_assert_int_eq(term_canon_inner(out.data, out.len, &used, &c), 0);
        ck_assert_uint_eq(used, out.len);
        ck_assert_int_eq(term_print(c.data, c.len, &p), 0);
        *res = strdup(p.data);
        term_buf_release(&c);
        term_buf_release(&p);
    }
    term_buf_release(&out);
    term_buf_release(&a);
    return rc;
}

/* Asserts ets:Fun(Args) returns expect (Erlang text, compared as terms
 * after parsing: canonical bytes equal <=> =:=). */
static void ok(const char *fun, const char *args, const char *expect)
{
    char *res = NULL;
    int rc = call(fun, args, &res);
    ck_assert_msg(rc == 0, "%s(%s): rc %d, wanted %s", fun, args, rc, expect);
    term_buf_t r = parse(res), e = parse(expect);
    ck_assert_msg(r.len == e.len && memcmp(r.data, e.data, e.len) == 0,
                  "%s(%s) = %s, wanted %s", fun, args, res, expect);
    term_buf_release(&r);
    term_buf_release(&e);
    free(res);
}

static void fails(const char *fun, const char *args, int want)
{
    int rc = call(fun, args, NULL);
    ck_assert_msg(rc == want, "%s(%s): rc %d, wanted %d", fun, args, rc, want);
}

static void setup(void)
{
    ck_assert_int_eq(store_new(&s), 0);
    store_set_node("nonode@nohost");
    ok("new", "[t, [named_table, public, set]]", "t");
    ok("new", "[t2, [named_table, {keypos, 2}]]", "t2");
    ok("insert", "[t, [{1, a, 10}, {<<\"k\">>, \"str\", 2.5}, {{x, 1}, #{a => 1}, []}]]", "true");
    ok("insert", "[t2, {v, 5, 7}]", "true");
}

static void teardown(void)
{
    store_free(s);
    s = NULL;
}

/* One call and its expected result; expect NULL means rc must be err. */
typedef struct row {
    const char *id, *fun, *args, *expect;
    int err;
    /* an optional second call checking the state afterwards */
    const char *then_fun, *then_args, *then_expect;
} row_t;

#define BADARG -EINVAL

/* Rows leave the fields they do not use out. */
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

static const row_t ROWS[] = {
    /* new */
    {"new_existing_name", "new", "[t, [named_table]]", NULL, BADARG},
    {"new_keypos_zero", "new", "[u, [named_table, {keypos, 0}]]", NULL, BADARG},
    {"new_unknown_option", "new", "[u, [named_table, bogus]]", NULL, BADARG},
    {"new_name_not_atom", "new", "[\"u\", [named_table]]", NULL, BADARG},
    {"new_options_improper", "new", "[u, [named_table | public]]", NULL, BADARG},
    {"new_bag_unsupported", "new", "[u, [named_table, bag]]", NULL, BADARG},
    {"new_unnamed_unsupported", "new", "[u, [public]]", NULL, BADARG},
    {"new_all_set_options", "new",
     "[u, [set, protected, named_table, {keypos, 2}, {read_concurrency, true}, "
     "{write_concurrency, auto}, {decentralized_counters, false}, compressed, {heir, none}]]",
     "u", 0, "info", "[u, protection]", "protected"},
    /* insert, insert_new */
    {"insert_one", "insert", "[t, {2, b}]", "true", 0, "lookup", "[t, 2]", "[{2, b}]"},
    {"insert_list_last_wins", "insert", "[t, [{3, a}, {3, b}]]", "true", 0, "lookup", "[t, 3]", "[{3, b}]"},
    {"insert_empty_list", "insert", "[t, []]", "true", 0, "info", "[t, size]", "3"},
    {"insert_bad_element_inserts_nothing", "insert", "[t, [{4, a}, x]]", NULL, BADARG, "member", "[t, 4]", "false"},
    {"insert_improper_list", "insert", "[t, [{4, a} | x]]", NULL, BADARG},
    {"insert_empty_tuple", "insert", "[t, {}]", NULL, BADARG},
    {"insert_short_for_keypos", "insert", "[t2, {a}]", NULL, BADARG},
    {"insert_no_table", "insert", "[nosuch, {1}]", NULL, BADARG},
    {"insert_table_not_atom", "insert", "[{t}, {1}]", NULL, BADARG},
    {"insert_new_existing", "insert_new", "[t, {1, z}]", "false", 0, "lookup", "[t, 1]", "[{1, a, 10}]"},
    {"insert_new_list_one_exists", "insert_new", "[t, [{9, z}, {1, z}]]", "false", 0, "member", "[t, 9]", "false"},
    {"insert_new_list", "insert_new", "[t, [{9, z}, {8, y}]]", "true", 0, "info", "[t, size]", "5"},
    /* lookup, member, lookup_element */
    {"lookup_int_not_float", "lookup", "[t, 1.0]", "[]"},
    {"lookup_binary_key", "lookup", "[t, <<\"k\">>]", "[{<<\"k\">>, \"str\", 2.5}]"},
    {"lookup_keypos2", "lookup", "[t2, 5]", "[{v, 5, 7}]"},
    {"member_true", "member", "[t, {x, 1}]", "true"},
    {"member_no_table", "member", "[nosuch, 1]", NULL, BADARG},
    {"lookup_element", "lookup_element", "[t, 1, 3]", "10"},
    {"lookup_element_past_end", "lookup_element", "[t, 1, 4]", NULL, BADARG},
    {"lookup_element_zero", "lookup_element", "[t, 1, 0]", NULL, BADARG},
    {"lookup_element_missing_key", "lookup_element", "[t, 99, 1]", NULL, BADARG},
    {"lookup_element_pos_not_int", "lookup_element", "[t, 1, a]", NULL, BADARG},
    /* delete, delete_object, delete_all_objects, take */
    {"delete_key", "delete", "[t, 1]", "true", 0, "member", "[t, 1]", "false"},
    {"delete_absent_key", "delete", "[t, 99]", "true"},
    {"delete_table", "delete", "[t]", "true", 0, "info", "[t]", "undefined"},
    {"delete_no_table", "delete", "[nosuch]", NULL, BADARG},
    {"delete_object_equal", "delete_object", "[t, {1, a, 10}]", "true", 0, "member", "[t, 1]", "false"},
    {"delete_object_different", "delete_object", "[t, {1, a, 10.0}]", "true", 0, "member", "[t, 1]", "true"},
    {"delete_object_not_tuple", "delete_object", "[t, x]", NULL, BADARG},
    {"delete_all_objects", "delete_all_objects", "[t]", "true", 0, "tab2list", "[t]", "[]"},
    {"take_present", "take", "[t, 1]", "[{1, a, 10}]", 0, "member", "[t, 1]", "false"},
    {"take_absent", "take", "[t, 99]", "[]"},
    /* update_element */
    {"update_element_one", "update_element", "[t, 1, {2, b}]", "true", 0, "lookup", "[t, 1]", "[{1, b, 10}]"},
    {"update_element_list", "update_element", "[t, 1, [{2, b}, {3, c}, {2, d}]]", "true", 0, "lookup", "[t, 1]", "[{1, d, c}]"},
    {"update_element_empty_list", "update_element", "[t, 1, []]", "true"},
    {"update_element_missing_key", "update_element", "[t, 99, {1, x}]", "false"},
    {"update_element_key_pos", "update_element", "[t, 1, {1, x}]", NULL, BADARG},
    {"update_element_past_end", "update_element", "[t, 1, {4, x}]", NULL, BADARG},
    {"update_element_bad_spec", "update_element", "[t, 1, x]", NULL, BADARG},
    {"update_element_missing_key_bad_spec", "update_element", "[t, 99, x]", "false"},
    {"update_counter_default_not_tuple", "update_counter", "[t2, 5, 1, x]", NULL, BADARG},
    {"update_counter_default_short_unused", "update_counter", "[t2, 5, 1, {a}]", "8"},
    {"update_element_keypos2", "update_element", "[t2, 5, {1, w}]", "true", 0, "lookup", "[t2, 5]", "[{w, 5, 7}]"},
    /* update_counter */
    {"update_counter_incr_not_integer", "update_counter", "[t, 1, 5]", NULL, BADARG},
    {"update_counter_incr", "update_counter", "[t2, 5, 5]", "12"},
    {"update_counter_pos", "update_counter", "[t, 1, {3, -3}]", "7"},
    {"update_counter_threshold_up", "update_counter", "[t, 1, {3, 5, 12, 0}]", "0"},
    {"update_counter_threshold_down", "update_counter", "[t, 1, {3, -20, 0, 100}]", "100"},
    {"update_counter_list", "update_counter", "[t, 1, [{3, 1}, {3, 1}]]", "[11, 12]", 0, "lookup", "[t, 1]", "[{1, a, 12}]"},
    {"update_counter_empty_list", "update_counter", "[t, 1, []]", "[]"},
    {"update_counter_bignum", "update_counter", "[t, 1, {3, 1180591620717411303424}]", "1180591620717411303434"},
    {"update_counter_back_from_bignum", "update_counter", "[t, 1, [{3, 36893488147419103232}, {3, -36893488147419103232}]]",
     "[36893488147419103242, 10]"},
    {"update_counter_default", "update_counter", "[t, 7, {2, 1}, {0, 10, 20}]", "11", 0, "lookup", "[t, 7]", "[{7, 11, 20}]"},
    {"update_counter_default_too_short", "update_counter", "[t, 7, {2, 1}, {0}]", NULL, BADARG},
    {"update_counter_missing_key", "update_counter", "[t, 7, 1]", NULL, BADARG},
    {"update_counter_key_pos", "update_counter", "[t, 1, {1, 1}]", NULL, BADARG},
    {"update_counter_not_integer", "update_counter", "[t, 1, {2, 1}]", NULL, BADARG},
    {"update_counter_float_incr", "update_counter", "[t, 1, {3, 1.0}]", NULL, BADARG},
    {"update_counter_bad_setvalue", "update_counter", "[t, 1, {3, 1, 100, a}]", NULL, BADARG},
    {"update_counter_past_end", "update_counter", "[t, 1, {4, 1}]", NULL, BADARG},
    {"update_counter_keypos2_default_pos", "update_counter", "[t2, 5, 1]", "8"},
    /* traversal */
    {"first_empty", "first", "[t2x]", NULL, BADARG},
    {"next_absent_key", "next", "[t, 99]", NULL, BADARG},
    {"next_single", "next", "[t2, 5]", "'$end_of_table'"},
    {"first_single", "last", "[t2]", "5"},
    /* info */
    {"info_size", "info", "[t, size]", "3"},
    {"info_keypos", "info", "[t2, keypos]", "2"},
    {"info_type", "info", "[t, type]", "set"},
    {"info_named", "info", "[t, named_table]", "true"},
    {"info_node", "info", "[t, node]", "nonode@nohost"},
    {"info_bad_item", "info", "[t, bogus]", NULL, BADARG},
    {"info_no_table", "info", "[nosuch, size]", "undefined"},
    {"info_not_table", "info", "[1, size]", NULL, BADARG},
    {"info1_no_table", "info", "[nosuch]", "undefined"},
    /* match specs */
    {"select_all", "select", "[t2, [{'_', [], ['$_']}]]", "[{v, 5, 7}]"},
    {"select_body_tuple", "select", "[t2, [{{'$1', '$2', '_'}, [], [{{'$2', '$1'}}]}]]", "[{5, v}]"},
    {"select_guard", "select", "[t, [{{'$1', '_', '$2'}, [{is_integer, '$2'}], ['$1']}]]", "[1]"},
    {"select_bad_spec", "select", "[t, x]", NULL, BADARG},
    {"select_unbound_var", "select", "[t, [{{'$1', '_', '_'}, [], ['$2']}]]", NULL, BADARG},
    {"select_count", "select_count", "[t, [{'_', [], [true]}]]", "3"},
    {"select_delete", "select_delete", "[t, [{{'$1', '_', '_'}, [{is_integer, '$1'}], [true]}]]", "1",
     0, "member", "[t, 1]", "false"},
    {"match", "match", "[t2, {'$2', '$1', '_'}]", "[[5, v]]"},
    {"match_object", "match_object", "[t2, {'_', 5, '_'}]", "[{v, 5, 7}]"},
    {"match_bound_map_key_is_exact", "match", "[t, {#{}, '$1', '_'}]", "[]"},
    /* all, whereis, tab2list */
    {"whereis", "whereis", "[t]", "t"},
    {"whereis_absent", "whereis", "[nosuch]", "undefined"},
    {"whereis_not_atom", "whereis", "[\"t\"]", NULL, BADARG},
    {"tab2list_no_table", "tab2list", "[nosuch]", NULL, BADARG},
    /* unknown functions */
    {"unknown_function", "bogus", "[t]", NULL, -ENOENT},
    {"wrong_arity", "lookup", "[t]", NULL, -ENOENT},
    {"args_not_list", "lookup", "t", NULL, -EINVAL},
};

START_TEST(ets_call_row)
{
    const row_t *r = &ROWS[_i];
    if (r->expect)
        ok(r->fun, r->args, r->expect);
    else
        fails(r->fun, r->args, r->err);
    if (r->then_fun)
        ok(r->then_fun, r->then_args, r->then_expect);
}
END_TEST

START_TEST(all_lists_table_names)
{
    char *res = NULL;
    ck_assert_int_eq(call("all", "[]", &res), 0);
    ck_assert_msg(!strcmp(res, "[t2,t]") || !strcmp(res, "[t,t2]"), "%s", res);
    free(res);
}
END_TEST

START_TEST(first_next_chain_visits_all_keys)
{
    char *k = NULL, *next = NULL, args[256];
    int n = 0;
    ck_assert_int_eq(call("first", "[t]", &k), 0);
    while (strcmp(k, "'$end_of_table'") != 0) {
        n++;
        snprintf(args, sizeof args, "[t, %s]", k);
        ck_assert_int_eq(call("next", args, &next), 0);
        free(k);
        k = next;
    }
    free(k);
    ck_assert_int_eq(n, 3);
}
END_TEST

START_TEST(info1_lists_properties)
{
    char *res = NULL;
    ck_assert_int_eq(call("info", "[t2]", &res), 0);
    ck_assert_ptr_nonnull(strstr(res, "{keypos,2}"));
    ck_assert_ptr_nonnull(strstr(res, "{size,1}"));
    ck_assert_ptr_nonnull(strstr(res, "{type,set}"));
    ck_assert_ptr_nonnull(strstr(res, "{protection,protected}"));
    free(res);
}
END_TEST

/* Every mutation through the ets API under allocation failure: -ENOMEM
 * and the table unchanged, until it succeeds. */
static const struct fail_row {
    const char *id, *fun, *args, *check_args, *before, *after;
} FAIL_ROWS[] = {
    {"insert_list", "insert", "[t, [{20, a}, {21, \"b\"}, {22, #{c => 1}}]]", "[t, 22]", "[]", "[{22, #{c => 1}}]"},
    {"update_counter", "update_counter", "[t, 1, [{3, 1180591620717411303424}, {3, 1}]]", "[t, 1]",
     "[{1, a, 10}]", "[{1, a, 1180591620717411303435}]"},
    {"update_element", "update_element", "[t, 1, [{2, [x, y]}]]", "[t, 1]", "[{1, a, 10}]", "[{1, [x, y], 10}]"},
    {"select_delete", "select_delete", "[t, [{{'$1', '_', '_'}, [{'==', '$1', 1}], [true]}]]", "[t, 1]",
     "[{1, a, 10}]", "[]"},
    {"take", "take", "[t, 1]", "[t, 1]", "[{1, a, 10}]", "[]"},
};

START_TEST(mutation_alloc_failure_leaves_table_unchanged)
{
    const struct fail_row *r = &FAIL_ROWS[_i];
    term_buf_t a = parse(r->args), out;
    term_buf_init(&out);
    int rc = -ENOMEM;
    long k;
    for (k = 1; k < 500 && rc != 0; k++) {
        term_buf_reset(&out);
        mem_fail_after(k);
        rc = store_ets_call(s, r->fun, a.data, a.len, &out);
        mem_fail_after(0);
        if (rc != 0) {
            ck_assert_msg(rc == -ENOMEM, "%s at %ld: %d", r->id, k, rc);
            ok("lookup", r->check_args, r->before);
        }
    }
    ck_assert_int_eq(rc, 0);
    ok("lookup", r->check_args, r->after);
    term_buf_release(&out);
    term_buf_release(&a);
}
END_TEST

/* The rows of "calls" are OTP 25's answers (a map in a bound key matches
 * by =:= there, and is scanned for from OTP 27). */
static void otp25_setup(void)
{
    setup();
    ck_assert_int_eq(term_set_otp_release(25), 0);
}

static void release_teardown(void)
{
    teardown();
    term_set_otp_release(TERM_OTP_DEFAULT);
}

Suite *ets_suite(void)
{
    Suite *su = suite_create("ets");
    TCase *tc = tcase_create("calls");
    tcase_add_checked_fixture(tc, otp25_setup, release_teardown);
    tcase_add_loop_test(tc, ets_call_row, 0, sizeof(ROWS) / sizeof(ROWS[0]));
    tcase_add_test(tc, all_lists_table_names);
    tcase_add_test(tc, first_next_chain_visits_all_keys);
    suite_add_tcase(su, tc);

    tc = tcase_create("info");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, info1_lists_properties);
    suite_add_tcase(su, tc);

    tc = tcase_create("alloc_failure");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_loop_test(tc, mutation_alloc_failure_leaves_table_unchanged, 0,
                        sizeof(FAIL_ROWS) / sizeof(FAIL_ROWS[0]));
    suite_add_tcase(su, tc);
    return su;
}
