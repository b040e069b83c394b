/* check_store.c: store.c's tables: create/find/drop, insert/lookup over
 * canonical keys (=:=, not ==), delete, traversal, growth and shrinking
 * against a model, and allocation failure on every mutation. */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/store.h"
#include "store/store_int.h"
#include "term/mem.h"

/* Canonical encoding of an Erlang literal, in a fresh buffer. */
static term_buf_t parse(const char *text)
{
    term_buf_t b;
    size_t used;
    term_buf_init(&b);
    int rc = term_parse(text, strlen(text), &used, &b);
    ck_assert_msg(rc == 0, "parse %s: %d", text, rc);
    return b;
}

static int insert_text(store_table_t *t, const char *text)
{
    term_buf_t b = parse(text);
    int rc = store_insert(t, b.data, b.len);
    term_buf_release(&b);
    return rc;
}

/* Looks key up and compares the object with expect (NULL: absent). */
static void assert_lookup(store_table_t *t, const char *key, const char *expect)
{
    term_buf_t k = parse(key), out;
    term_buf_init(&out);
    int rc = store_lookup(t, k.data, k.len, &out);
    if (!expect) {
        ck_assert_msg(rc == -ENOENT, "lookup %s: %d, wanted -ENOENT", key, rc);
    } else {
        term_buf_t e = parse(expect);
        ck_assert_msg(rc == 0, "lookup %s: %d", key, rc);
        ck_assert_msg(out.len == e.len && memcmp(out.data, e.data, e.len) == 0,
                      "lookup %s: not %s", key, expect);
        term_buf_release(&e);
    }
    term_buf_release(&out);
    term_buf_release(&k);
}

static store_t *s;
static store_table_t *t;

static void setup(void)
{
    ck_assert_int_eq(store_new(&s), 0);
    ck_assert_int_eq(store_table_create(s, "t", 1, &t), 0);
}

static void teardown(void)
{
    store_free(s);
    s = NULL;
}

/* ---- tables ------------------------------------------------------------ */

START_TEST(create_existing_name_returns_eexist)
{
    ck_assert_int_eq(store_table_create(s, "t", 1, NULL), -EEXIST);
}
END_TEST

START_TEST(create_keypos_zero_returns_einval)
{
    ck_assert_int_eq(store_table_create(s, "u", 0, NULL), -EINVAL);
    ck_assert_ptr_null(store_table_find(s, "u"));
}
END_TEST

START_TEST(drop_removes_table_and_unknown_returns_enoent)
{
    ck_assert_int_eq(insert_text(t, "{1,a}"), 0);
    ck_assert_int_eq(store_table_drop(s, "t"), 0);
    ck_assert_ptr_null(store_table_find(s, "t"));
    ck_assert_int_eq(store_table_drop(s, "t"), -ENOENT);
}
END_TEST

START_TEST(find_returns_table_with_name_and_keypos)
{
    store_table_t *u;
    ck_assert_int_eq(store_table_create(s, "u", 3, &u), 0);
    ck_assert_ptr_eq(store_table_find(s, "u"), u);
    ck_assert_str_eq(store_table_name(u), "u");
    ck_assert_uint_eq(store_table_keypos(u), 3);
}
END_TEST

/* ---- keys compare with =:= ----------------------------------------------- */

static const struct key_row {
    const char *id, *insert, *key, *expect;
} KEY_ROWS[] = {
    {"int_not_float", "{1,int}", "1.0", NULL},
    {"float_not_int", "{1.0,float}", "1", NULL},
    {"binary_not_string", "{<<\"a\">>,bin}", "\"a\"", NULL},
    {"string_not_binary", "{\"a\",str}", "<<\"a\">>", NULL},
    {"string_is_list_of_ints", "{\"ab\",str}", "[97,98]", "{\"ab\",str}"},
    {"map_order_irrelevant", "{#{a => 1, b => 2},m}", "#{b => 2, a => 1}", "{#{a => 1, b => 2},m}"},
    {"bignum_key", "{123456789012345678901234567890,big}", "123456789012345678901234567890",
     "{123456789012345678901234567890,big}"},
    {"tuple_key", "{{a,1,\"x\"},t}", "{a,1,\"x\"}", "{{a,1,\"x\"},t}"},
    {"improper_list_key", "{[1|2],l}", "[1|2]", "{[1|2],l}"},
};

START_TEST(lookup_compares_keys_exactly)
{
    const struct key_row *r = &KEY_ROWS[_i];
    ck_assert_int_eq(insert_text(t, r->insert), 0);
    assert_lookup(t, r->key, r->expect);
}
END_TEST

START_TEST(lookup_accepts_non_canonical_key_encoding)
{
    /* [1,2] as LIST_EXT of SMALL_INTEGER_EXT, where canonical is STRING_EXT */
    static const unsigned char key[] = {108, 0, 0, 0, 2, 97, 1, 97, 2, 106};
    term_buf_t out;
    term_buf_init(&out);
    ck_assert_int_eq(insert_text(t, "{[1,2],v}"), 0);
    ck_assert_int_eq(store_lookup(t, key, sizeof(key), &out), 0);
    term_buf_release(&out);
}
END_TEST

START_TEST(insert_non_canonical_object_stores_canonical)
{
    /* {300, [1]} with 300 as a SMALL_BIG_EXT and [1] as LIST_EXT */
    static const unsigned char obj[] = {104, 2, 110, 2, 0, 0x2c, 0x01, 108, 0, 0, 0, 1, 97, 1, 106};
    ck_assert_int_eq(store_insert(t, obj, sizeof(obj)), 0);
    assert_lookup(t, "300", "{300,[1]}");
}
END_TEST

/* ---- insert errors --------------------------------------------------------- */

static const struct bad_row {
    const char *id, *obj;
} BAD_ROWS[] = {
    {"empty_tuple", "{}"},
    {"atom", "a"},
    {"list", "[{1,a}]"},
    {"binary", "<<\"x\">>"},
};

START_TEST(insert_non_tuple_returns_einval)
{
    ck_assert_int_eq(insert_text(t, BAD_ROWS[_i].obj), -EINVAL);
    ck_assert_uint_eq(store_table_size(t), 0);
}
END_TEST

START_TEST(insert_tuple_shorter_than_keypos_returns_einval)
{
    store_table_t *u;
    ck_assert_int_eq(store_table_create(s, "u", 3, &u), 0);
    ck_assert_int_eq(insert_text(u, "{a,b}"), -EINVAL);
    ck_assert_int_eq(insert_text(u, "{a,b,c}"), 0);
    assert_lookup(u, "c", "{a,b,c}");
}
END_TEST

START_TEST(insert_malformed_bytes_returns_einval)
{
    static const unsigned char obj[] = {104, 2, 97, 1, 109, 0, 0, 0, 9, 'x'};
    ck_assert_int_eq(store_insert(t, obj, sizeof(obj)), -EINVAL);
    static const unsigned char trailing[] = {104, 1, 97, 1, 97};
    ck_assert_int_eq(store_insert(t, trailing, sizeof(trailing)), -EINVAL);
}
END_TEST

START_TEST(insert_same_key_overwrites)
{
    ck_assert_int_eq(insert_text(t, "{k,1}"), 0);
    ck_assert_int_eq(insert_text(t, "{k,2,3}"), 0);
    ck_assert_uint_eq(store_table_size(t), 1);
    assert_lookup(t, "k", "{k,2,3}");
}
END_TEST

/* ---- delete, clear, traversal ---------------------------------------------- */

START_TEST(remove_absent_returns_enoent)
{
    term_buf_t k = parse("nope");
    ck_assert_int_eq(store_table_remove(t, k.data, k.len), -ENOENT);
    term_buf_release(&k);
}
END_TEST

START_TEST(clear_empties_table_and_it_stays_usable)
{
    for (int i = 0; i < 100; i++) {
        char b[32];
        snprintf(b, sizeof b, "{%d,x}", i);
        ck_assert_int_eq(insert_text(t, b), 0);
    }
    ck_assert_int_eq(store_table_clear(t), 0);
    ck_assert_uint_eq(store_table_size(t), 0);
    assert_lookup(t, "5", NULL);
    ck_assert_int_eq(insert_text(t, "{5,y}"), 0);
    assert_lookup(t, "5", "{5,y}");
}
END_TEST

static int count_cb(void *arg, const void *obj, size_t len)
{
    (void)obj;
    (void)len;
    (*(int *)arg)++;
    return 0;
}

START_TEST(first_next_visit_every_object_once)
{
    enum { N = 500 };
    for (int i = 0; i < N; i++) {
        char b[32];
        snprintf(b, sizeof b, "{%d,x}", i);
        ck_assert_int_eq(insert_text(t, b), 0);
    }
    static char seen[N];
    memset(seen, 0, sizeof seen);
    const char *obj, *k;
    size_t len, klen;
    int n = 0, rc = store_table_first(t, &obj, &len);
    while (rc == 1) {
        term_reader_t r;
        int64_t v;
        ck_assert_int_eq(store_obj_key(obj, len, 1, &k, &klen), 0);
        term_reader_init(&r, k, klen);
        ck_assert_int_eq(term_get_long(&r, &v), 0);
        ck_assert(v >= 0 && v < N && !seen[v]);
        seen[v] = 1;
        n++;
        rc = store_table_next(t, k, klen, &obj, &len);
    }
    ck_assert_int_eq(rc, 0);
    ck_assert_int_eq(n, N);
    int m = 0;
    ck_assert_int_eq(store_table_foreach(t, count_cb, &m), 0);
    ck_assert_int_eq(m, N);
}
END_TEST

START_TEST(next_of_absent_key_returns_einval)
{
    const char *obj;
    size_t len;
    term_buf_t k = parse("7");
    ck_assert_int_eq(store_table_next(t, k.data, k.len, &obj, &len), -EINVAL);
    ck_assert_int_eq(insert_text(t, "{1,a}"), 0);
    ck_assert_int_eq(store_table_next(t, k.data, k.len, &obj, &len), -EINVAL);
    term_buf_release(&k);
}
END_TEST

/* Random inserts, overwrites and deletes against a model array: after
 * every step the table holds exactly the model (backward-shift deletion
 * keeps every probe chain intact). */
START_TEST(random_churn_matches_model)
{
    enum { KEYS = 2000, STEPS = 20000 };
    static int model[KEYS];   /* 0 absent, else value */
    memset(model, 0, sizeof model);
    unsigned seed = 12345;
    for (int step = 0; step < STEPS; step++) {
        seed = seed * 1103515245u + 12345u;
        int key = (int)((seed >> 8) % KEYS);
        char b[64];
        term_buf_t kb;
        if ((seed >> 28) % 3 == 0) {
            snprintf(b, sizeof b, "<<\"k%d\">>", key);
            kb = parse(b);
            int rc = store_table_remove(t, kb.data, kb.len);
            ck_assert_int_eq(rc, model[key] ? 0 : -ENOENT);
            model[key] = 0;
            term_buf_release(&kb);
        } else {
            snprintf(b, sizeof b, "{<<\"k%d\">>,%d}", key, step + 1);
            ck_assert_int_eq(insert_text(t, b), 0);
            model[key] = step + 1;
        }
    }
    size_t n = 0;
    for (int key = 0; key < KEYS; key++) {
        char kt[32], ot[64];
        snprintf(kt, sizeof kt, "<<\"k%d\">>", key);
        snprintf(ot, sizeof ot, "{<<\"k%d\">>,%d}", key, model[key]);
        assert_lookup(t, kt, model[key] ? ot : NULL);
        n += model[key] != 0;
    }
    ck_assert_uint_eq(store_table_size(t), n);
}
END_TEST

START_TEST(tab2list_lists_every_object)
{
    term_buf_t out, e;
    term_buf_init(&out);
    ck_assert_int_eq(store_tab2list(t, &out), 0);
    e = parse("[]");
    ck_assert(out.len == e.len && memcmp(out.data, e.data, e.len) == 0);
    term_buf_release(&e);
    ck_assert_int_eq(insert_text(t, "{a,1}"), 0);
    term_buf_reset(&out);
    ck_assert_int_eq(store_tab2list(t, &out), 0);
    e = parse("[{a,1}]");
    ck_assert(out.len == e.len && memcmp(out.data, e.data, e.len) == 0);
    term_buf_release(&e);
    term_buf_release(&out);
}
END_TEST

/* ---- allocation failure ----------------------------------------------------- */

START_TEST(insert_alloc_failure_returns_enomem_and_changes_nothing)
{
    /* Fill past several growths so a failure can hit a resize too. */
    for (int i = 0; i < 11; i++) {
        char b[32];
        snprintf(b, sizeof b, "{%d,x}", i);
        ck_assert_int_eq(insert_text(t, b), 0);
    }
    term_buf_t o = parse("{<<\"new\">>,\"v\",1.5}");
    int rc;
    long k;
    for (k = 1; k < 100; k++) {
        mem_fail_after(k);
        rc = store_insert(t, o.data, o.len);
        mem_fail_after(0);
        if (rc == 0)
            break;
        ck_assert_int_eq(rc, -ENOMEM);
        ck_assert_uint_eq(store_table_size(t), 11);
        assert_lookup(t, "<<\"new\">>", NULL);
    }
    ck_assert_int_eq(rc, 0);
    ck_assert_int_gt(k, 1);
    assert_lookup(t, "<<\"new\">>", "{<<\"new\">>,\"v\",1.5}");
    ck_assert_uint_eq(store_table_size(t), 12);
    term_buf_release(&o);
}
END_TEST

START_TEST(reserve_makes_room_once_and_inserts_then_never_grow)
{
    ck_assert_int_eq(insert_text(t, "{0,x}"), 0);
    ck_assert_int_eq(store_table_reserve(t, 1000), 0);
    size_t slots = store_table_slots(t);
    /* 1001 objects at most 3/4 full: 2048 slots, in one resize. */
    ck_assert_uint_eq(slots, 2048);
    for (int i = 1; i <= 1000; i++) {
        char b[32];
        snprintf(b, sizeof b, "{%d,x}", i);
        ck_assert_int_eq(insert_text(t, b), 0);
        ck_assert_uint_eq(store_table_slots(t), slots);
    }
    ck_assert_uint_eq(store_table_size(t), 1001);
    assert_lookup(t, "0", "{0,x}");
    assert_lookup(t, "1000", "{1000,x}");
    /* Room already there: nothing changes; it never shrinks. */
    ck_assert_int_eq(store_table_reserve(t, 10), 0);
    ck_assert_uint_eq(store_table_slots(t), slots);
    ck_assert_int_eq(store_table_reserve(t, 0), 0);
    ck_assert_uint_eq(store_table_slots(t), slots);
}
END_TEST

START_TEST(reserve_failure_leaves_table_as_it_was)
{
    for (int i = 0; i < 11; i++) {
        char b[32];
        snprintf(b, sizeof b, "{%d,x}", i);
        ck_assert_int_eq(insert_text(t, b), 0);
    }
    size_t slots = store_table_slots(t);
    ck_assert_int_eq(store_table_reserve(t, SIZE_MAX / 4), -ENOMEM);
    mem_fail_after(1);
    int rc = store_table_reserve(t, 100000);
    mem_fail_after(0);
    ck_assert_int_eq(rc, -ENOMEM);
    ck_assert_uint_eq(store_table_slots(t), slots);
    ck_assert_uint_eq(store_table_size(t), 11);
    for (int i = 0; i < 11; i++) {
        char k[16], o[32];
        snprintf(k, sizeof k, "%d", i);
        snprintf(o, sizeof o, "{%d,x}", i);
        assert_lookup(t, k, o);
    }
}
END_TEST

START_TEST(create_alloc_failure_returns_enomem_and_leaves_nothing)
{
    int rc;
    for (long k = 1; k < 50; k++) {
        mem_fail_after(k);
        rc = store_table_create(s, "u", 1, NULL);
        mem_fail_after(0);
        if (rc == 0)
            break;
        ck_assert_int_eq(rc, -ENOMEM);
        ck_assert_ptr_null(store_table_find(s, "u"));
    }
    ck_assert_int_eq(rc, 0);
}
END_TEST

START_TEST(new_alloc_failure_returns_enomem)
{
    store_t *x = NULL;
    mem_fail_after(1);
    ck_assert_int_eq(store_new(&x), -ENOMEM);
    mem_fail_after(0);
    store_free(NULL);
}
END_TEST

/* ---- 0.0 and -0.0, ports: per OTP release (term.h) ----------------------- */

static void release_teardown(void)
{
    teardown();
    term_set_otp_release(TERM_OTP_DEFAULT);
}

/* OTP 25: a set holds one of them (ETS keeps the object written last;
 * etsd writes -0.0 as 0.0 in it). */
START_TEST(lookup_minus_zero_otp25_finds_zero)
{
    ck_assert_int_eq(term_set_otp_release(25), 0);
    ck_assert_int_eq(insert_text(t, "{-0.0,z}"), 0);
    assert_lookup(t, "0.0", "{0.0,z}");
    assert_lookup(t, "-0.0", "{0.0,z}");
    ck_assert_uint_eq(store_table_size(t), 1);
}
END_TEST

/* OTP 27: two keys, each object kept bit for bit. */
START_TEST(lookup_minus_zero_otp27_is_another_key)
{
    ck_assert_int_eq(term_set_otp_release(27), 0);
    ck_assert_int_eq(insert_text(t, "{-0.0,z}"), 0);
    assert_lookup(t, "0.0", NULL);
    assert_lookup(t, "-0.0", "{-0.0,z}");
    ck_assert_int_eq(insert_text(t, "{0.0,p}"), 0);
    assert_lookup(t, "0.0", "{0.0,p}");
    ck_assert_uint_eq(store_table_size(t), 2);
}
END_TEST

/* Back to OTP 25 semantics: the object under 0.0 stays, the one under -0.0
 * goes, and -0.0 inside other objects becomes 0.0. */
START_TEST(recanon_to_otp25_merges_zero_keys)
{
    size_t changed = 0;
    ck_assert_int_eq(term_set_otp_release(27), 0);
    ck_assert_int_eq(insert_text(t, "{-0.0,neg}"), 0);
    ck_assert_int_eq(insert_text(t, "{0.0,pos}"), 0);
    ck_assert_int_eq(insert_text(t, "{k,[-0.0]}"), 0);
    ck_assert_int_eq(insert_text(t, "{j,1.5}"), 0);
    ck_assert_int_eq(term_set_otp_release(25), 0);
    ck_assert_int_eq(store_recanon(s, &changed), 0);
    ck_assert_uint_eq(changed, 2);
    ck_assert_uint_eq(store_table_size(t), 3);
    assert_lookup(t, "0.0", "{0.0,pos}");
    assert_lookup(t, "k", "{k,[0.0]}");
    assert_lookup(t, "j", "{j,1.5}");
}
END_TEST

/* {Port, x} with Port as NEW_PORT_EXT (a@h, id 7, creation 3), as OTP 25
 * writes it; OTP 26 and later write V4_PORT_EXT. */
static const unsigned char port_obj25[] = {104, 2, 89, 119, 3, 'a', '@', 'h', 0, 0, 0, 7,
                                           0, 0, 0, 3, 119, 1, 'x'};

START_TEST(recanon_to_otp27_rewrites_ports)
{
    size_t changed = 0;
    term_buf_t out;
    term_buf_init(&out);
    ck_assert_int_eq(term_set_otp_release(25), 0);
    ck_assert_int_eq(store_insert(t, port_obj25, sizeof port_obj25), 0);
    ck_assert_int_eq(term_set_otp_release(27), 0);
    ck_assert_int_eq(store_recanon(s, &changed), 0);
    ck_assert_uint_eq(changed, 1);
    ck_assert_int_eq(store_lookup(t, port_obj25 + 2, sizeof port_obj25 - 5, &out), 0);
    ck_assert_uint_eq(out.len, sizeof port_obj25 + 4);
    ck_assert_int_eq((unsigned char)out.data[2], 120);
    /* nothing left to change */
    ck_assert_int_eq(store_recanon(s, &changed), 0);
    ck_assert_uint_eq(changed, 0);
    term_buf_release(&out);
}
END_TEST

Suite *store_suite(void)
{
    Suite *su = suite_create("store");
    TCase *tc = tcase_create("tables");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, create_existing_name_returns_eexist);
    tcase_add_test(tc, create_keypos_zero_returns_einval);
    tcase_add_test(tc, drop_removes_table_and_unknown_returns_enoent);
    tcase_add_test(tc, find_returns_table_with_name_and_keypos);
    suite_add_tcase(su, tc);

    tc = tcase_create("keys");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_loop_test(tc, lookup_compares_keys_exactly, 0, sizeof(KEY_ROWS) / sizeof(KEY_ROWS[0]));
    tcase_add_test(tc, lookup_accepts_non_canonical_key_encoding);
    tcase_add_test(tc, insert_non_canonical_object_stores_canonical);
    suite_add_tcase(su, tc);

    tc = tcase_create("otp_release");
    tcase_add_checked_fixture(tc, setup, release_teardown);
    tcase_add_test(tc, lookup_minus_zero_otp25_finds_zero);
    tcase_add_test(tc, lookup_minus_zero_otp27_is_another_key);
    tcase_add_test(tc, recanon_to_otp25_merges_zero_keys);
    tcase_add_test(tc, recanon_to_otp27_rewrites_ports);
    suite_add_tcase(su, tc);

    tc = tcase_create("insert");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_loop_test(tc, insert_non_tuple_returns_einval, 0, sizeof(BAD_ROWS) / sizeof(BAD_ROWS[0]));
    tcase_add_test(tc, insert_tuple_shorter_than_keypos_returns_einval);
    tcase_add_test(tc, insert_malformed_bytes_returns_einval);
    tcase_add_test(tc, insert_same_key_overwrites);
    tcase_add_test(tc, reserve_makes_room_once_and_inserts_then_never_grow);
    tcase_add_test(tc, reserve_failure_leaves_table_as_it_was);
    suite_add_tcase(su, tc);

    tc = tcase_create("delete_traverse");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, remove_absent_returns_enoent);
    tcase_add_test(tc, clear_empties_table_and_it_stays_usable);
    tcase_add_test(tc, first_next_visit_every_object_once);
    tcase_add_test(tc, next_of_absent_key_returns_einval);
    tcase_add_test(tc, random_churn_matches_model);
    tcase_add_test(tc, tab2list_lists_every_object);
    suite_add_tcase(su, tc);

    tc = tcase_create("alloc_failure");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, insert_alloc_failure_returns_enomem_and_changes_nothing);
    tcase_add_test(tc, create_alloc_failure_returns_enomem_and_leaves_nothing);
    tcase_add_test(tc, new_alloc_failure_returns_enomem);
    suite_add_tcase(su, tc);
    return su;
}
