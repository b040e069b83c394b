/* check_store_encode.c: the chunked tab2list (store_encode_*): the bytes of
 * store_tab2list() when nothing changes, and a correct list (each key at
 * most once, whole objects, every untouched object) when the table changes,
 * resizes or is dropped between steps; allocation failure. */
#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "store/store.h"
#include "store/store_int.h"
#include "term/mem.h"

#define KEYS 4000

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
}

/* Inserts {Key, Val}. */
static void put(int64_t key, int64_t val)
{
    term_buf_t b;
    term_buf_init(&b);
    term_put_tuple(&b, 2);
    term_put_long(&b, key);
    term_put_long(&b, val);
    ck_assert_int_eq(b.err, 0);
    ck_assert_int_eq(store_insert(t, b.data, b.len), 0);
    term_buf_release(&b);
}

static void del(int64_t key)
{
    term_buf_t b;
    term_buf_init(&b);
    term_put_long(&b, key);
    int rc = store_table_remove(t, b.data, b.len);
    ck_assert(rc == 0 || rc == -ENOENT);
    term_buf_release(&b);
}

/* Runs an encode of max objects per step to the end, calling between(i)
 * after step i; returns the steps taken. */
static int encode_all(term_buf_t *out, size_t max, void (*between)(int))
{
    store_encode_t *e;
    int rc, steps = 0;
    ck_assert_int_eq(store_encode_begin(t, out, &e), 0);
    while ((rc = store_encode_step(e, max, out)) == 0) {
        if (between)
            between(steps);
        steps++;
    }
    ck_assert_int_eq(rc, 1);
    store_encode_free(e);
    return steps;
}

/* Decodes a list of {Key, Val} (keys in [0, KEYS * 2)) into val[] (-1 for
 * absent), failing on a duplicate key or a malformed object. */
static void decode(const term_buf_t *b, int64_t *val)
{
    term_reader_t r;
    uint32_t n = 0, k;
    for (int i = 0; i < KEYS * 2; i++)
        val[i] = -1;
    term_reader_init(&r, b->data, b->len);
    if (term_get_nil(&r) == 0) {
        ck_assert_uint_eq(r.pos, b->len);
        return;
    }
    ck_assert_int_eq(term_get_list(&r, &n), 0);
    for (uint32_t i = 0; i < n; i++) {
        int64_t key, v;
        ck_assert_int_eq(term_get_tuple(&r, &k), 0);
        ck_assert_uint_eq(k, 2);
        ck_assert_int_eq(term_get_long(&r, &key), 0);
        ck_assert_int_eq(term_get_long(&r, &v), 0);
        ck_assert(key >= 0 && key < KEYS * 2);
        ck_assert_msg(val[key] == -1, "key %lld twice", (long long)key);
        val[key] = v;
    }
    ck_assert_int_eq(term_get_nil(&r), 0);
    ck_assert_uint_eq(r.pos, b->len);
}

START_TEST(encode_unchanged_table_equals_tab2list)
{
    term_buf_t a, b;
    term_buf_init(&a);
    term_buf_init(&b);
    /* empty table: [] */
    ck_assert_int_eq(store_tab2list(t, &a), 0);
    encode_all(&b, 7, NULL);
    ck_assert(a.len == b.len && memcmp(a.data, b.data, a.len) == 0);
    for (int i = 0; i < KEYS; i++)
        put(i, i * 3);
    term_buf_reset(&a);
    term_buf_reset(&b);
    /* bytes before the list are kept */
    term_put_atom(&b, "head");
    size_t head = b.len;
    ck_assert_int_eq(store_tab2list(t, &a), 0);
    ck_assert_int_gt(encode_all(&b, 7, NULL), 100);
    ck_assert_uint_eq(b.len - head, a.len);
    ck_assert_int_eq(memcmp(a.data, b.data + head, a.len), 0);
    term_buf_release(&a);
    term_buf_release(&b);
}
END_TEST

/* Keys [0, KEYS/2) are never touched; the rest are overwritten, deleted
 * and added to between steps. */
static void churn(int step)
{
    int64_t k = KEYS / 2 + (step * 37) % (KEYS / 2);
    switch (step % 3) {
    case 0: put(k, 1000000 + step); break;   /* overwrite */
    case 1: put(KEYS + step % KEYS, step); break;  /* new key */
    default: break;
    }
}

static void churn_deletes(int step)
{
    churn(step);
    if (step % 5 == 4)
        del(KEYS / 2 + (step * 11) % (KEYS / 2));
}

static void check_untouched(const term_buf_t *b)
{
    static int64_t val[KEYS * 2];
    decode(b, val);
    for (int i = 0; i < KEYS / 2; i++)
        ck_assert_msg(val[i] == i * 3, "untouched key %d: %lld", i, (long long)val[i]);
}

START_TEST(encode_with_inserts_between_steps_keeps_keys_once)
{
    /* 4000 objects in 8192 slots: 2144 more fit before a resize, so the
     * cursor stays valid and the steps stay chunked. */
    for (int i = 0; i < KEYS; i++)
        put(i, i * 3);
    term_buf_t b;
    term_buf_init(&b);
    ck_assert_int_gt(encode_all(&b, 10, churn), 300);
    check_untouched(&b);
    term_buf_release(&b);
}
END_TEST

START_TEST(encode_with_deletes_and_resizes_between_steps_keeps_keys_once)
{
    /* Small enough that the new keys resize the table mid-encode. */
    for (int i = 0; i < KEYS; i++)
        put(i, i * 3);
    for (int i = KEYS / 2 + 200; i < KEYS; i++)
        del(i);
    term_buf_t b;
    term_buf_init(&b);
    encode_all(&b, 3, churn_deletes);
    check_untouched(&b);
    term_buf_release(&b);
}
END_TEST

static void drop_table(int step)
{
    if (step == 5)
        ck_assert_int_eq(store_table_drop(s, "t"), 0);
}

START_TEST(encode_of_dropped_table_ends_with_objects_so_far)
{
    for (int i = 0; i < KEYS; i++)
        put(i, i);
    term_buf_t b;
    term_buf_init(&b);
    store_encode_t *e;
    ck_assert_int_eq(store_encode_begin(t, &b, &e), 0);
    int rc, step = 0;
    while ((rc = store_encode_step(e, 10, &b)) == 0)
        drop_table(step++);
    ck_assert_int_eq(rc, 1);
    store_encode_free(e);
    term_reader_t r;
    uint32_t n;
    term_reader_init(&r, b.data, b.len);
    ck_assert_int_eq(term_get_list(&r, &n), 0);
    ck_assert_uint_eq(n, 60);
    term_buf_release(&b);
}
END_TEST

START_TEST(encode_freed_before_table_and_after_store_is_safe)
{
    put(1, 1);
    term_buf_t b;
    term_buf_init(&b);
    store_encode_t *e1, *e2;
    ck_assert_int_eq(store_encode_begin(t, &b, &e1), 0);
    ck_assert_int_eq(store_encode_begin(t, &b, &e2), 0);
    store_encode_free(e1);
    store_free(s);
    ck_assert_int_eq(store_encode_step(e2, 10, &b), 1);
    store_encode_free(e2);
    store_encode_free(NULL);
    term_buf_release(&b);
    ck_assert_int_eq(store_new(&s), 0); /* for teardown */
}
END_TEST

START_TEST(encode_alloc_failure_returns_enomem_and_leaks_nothing)
{
    for (int i = 0; i < 300; i++)
        put(i, i * 3);
    term_buf_t a;
    term_buf_init(&a);
    ck_assert_int_eq(store_tab2list(t, &a), 0);
    int rc = -1;
    long k;
    for (k = 1; k < 100; k++) {
        term_buf_t b;
        term_buf_init(&b);
        store_encode_t *e = NULL;
        mem_fail_after(k);
        rc = store_encode_begin(t, &b, &e);
        while (rc == 0)
            rc = store_encode_step(e, 16, &b);
        mem_fail_after(0);
        store_encode_free(e);
        if (rc == 1) {
            ck_assert(a.len == b.len && memcmp(a.data, b.data, a.len) == 0);
            term_buf_release(&b);
            break;
        }
        ck_assert_int_eq(rc, -ENOMEM);
        term_buf_release(&b);
    }
    ck_assert_int_eq(rc, 1);
    ck_assert_int_gt(k, 1);
    term_buf_release(&a);
}
END_TEST

Suite *store_encode_suite(void)
{
    Suite *su = suite_create("store_encode");
    TCase *tc = tcase_create("encode");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, encode_unchanged_table_equals_tab2list);
    tcase_add_test(tc, encode_with_inserts_between_steps_keeps_keys_once);
    tcase_add_test(tc, encode_with_deletes_and_resizes_between_steps_keeps_keys_once);
    tcase_add_test(tc, encode_of_dropped_table_ends_with_objects_so_far);
    tcase_add_test(tc, encode_freed_before_table_and_after_store_is_safe);
    suite_add_tcase(su, tc);
    tc = tcase_create("alloc_failure");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, encode_alloc_failure_returns_enomem_and_leaks_nothing);
    suite_add_tcase(su, tc);
    return su;
}
