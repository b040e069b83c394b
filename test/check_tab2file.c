/* check_tab2file.c: reading files that ets:tab2file/2,3 wrote on a real
 * BEAM (test/fuzz/seeds/tab2file/, made by OTP 25), refusing damaged ones,
 * and writing files our reader and BEAM's file2tab accept. */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/store.h"
#include "store/store_int.h"
#include "term/mem.h"

#define SEEDS "test/fuzz/seeds/tab2file/"

static char err[512];

static uint8_t *slurp(const char *name, size_t *len)
{
    char p[256];
    snprintf(p, sizeof p, SEEDS "%s", name);
    FILE *f = fopen(p, "rb");
    ck_assert_msg(f != NULL, "%s (run from the project root)", p);
    fseek(f, 0, SEEK_END);
    *len = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc(*len + 1);
    ck_assert_uint_eq(fread(b, 1, *len, f), *len);
    fclose(f);
    return b;
}

/* Bytes of term_to_binary(T, [{minor_version, 2}]) on OTP 25, without the
 * version byte, for objects of the "users" table the seeds hold. */
static const uint8_t ALICE[] = { 104, 3, 97, 1, 109, 0, 0, 0, 5, 'a', 'l', 'i',
                                 'c', 'e', 97, 30 };                /* {1,<<"alice">>,30} */
static const uint8_t KEY1[] = { 97, 1 };
static const uint8_t KEY_MINUS5[] = { 98, 0xff, 0xff, 0xff, 0xfb }; /* -5 */

static const struct seed_row {
    const char *id;     /* file under SEEDS */
    const char *table;
    size_t size;
} SEED_ROWS[] = {
    { "plain.tab", "users", 5 }, /* ets:tab2file(T, F) */
    { "ext.tab", "users", 5 },   /* {extended_info, [object_count, md5sum]} */
    { "count.tab", "users", 5 }, /* {extended_info, [object_count]} */
    { "md5.tab", "users", 5 },   /* {extended_info, [md5sum]} */
    { "empty.tab", "empty", 0 },
    { "big.tab", "big", 2 },     /* keypos 2, a 70000-byte object */
};

START_TEST(beam_file_loads_with_verify)
{
    const struct seed_row *row = &SEED_ROWS[_i];
    size_t len;
    uint8_t *f = slurp(row->id, &len);
    store_t *s;
    store_table_t *t = NULL;
    ck_assert_int_eq(store_new(&s), 0);
    int rc = store_file2tab_mem(s, f, len, 1, &t, err, sizeof err);
    ck_assert_msg(rc == 0, "%s: %d %s", row->id, rc, err);
    ck_assert_ptr_eq(t, store_table_find(s, row->table));
    ck_assert_uint_eq(store_table_size(t), row->size);
    if (!strcmp(row->table, "users")) {
        term_buf_t o;
        term_buf_init(&o);
        ck_assert_int_eq(store_lookup(t, KEY1, sizeof KEY1, &o), 0);
        ck_assert_uint_eq(o.len, sizeof ALICE);
        ck_assert_mem_eq(o.data, ALICE, sizeof ALICE);
        term_buf_reset(&o);
        ck_assert_int_eq(store_lookup(t, KEY_MINUS5, sizeof KEY_MINUS5, &o), 0);
        term_buf_release(&o);
    }
    if (!strcmp(row->table, "big"))
        ck_assert_uint_eq(store_table_keypos(t), 2);
    store_free(s);
    free(f);
}
END_TEST

START_TEST(beam_file_loads_from_path)
{
    store_t *s;
    ck_assert_int_eq(store_new(&s), 0);
    ck_assert_int_eq(store_file2tab(s, SEEDS "ext.tab", 1, NULL, err, sizeof err), 0);
    ck_assert_uint_eq(store_table_size(store_table_find(s, "users")), 5);
    store_free(s);
}
END_TEST

START_TEST(missing_file_returns_enoent)
{
    store_t *s;
    ck_assert_int_eq(store_new(&s), 0);
    ck_assert_int_eq(store_file2tab(s, SEEDS "no-such.tab", 1, NULL, err, sizeof err),
                     -ENOENT);
    ck_assert_ptr_nonnull(strstr(err, "no-such.tab"));
    store_free(s);
}
END_TEST

START_TEST(bag_file_returns_enotsup)
{
    size_t len;
    uint8_t *f = slurp("bag.tab", &len);
    store_t *s;
    ck_assert_int_eq(store_new(&s), 0);
    ck_assert_int_eq(store_file2tab_mem(s, f, len, 1, NULL, err, sizeof err), -ENOTSUP);
    ck_assert_ptr_nonnull(strstr(err, "bag"));
    ck_assert_ptr_null(store_table_find(s, "b"));
    store_free(s);
    free(f);
}
END_TEST

START_TEST(existing_table_returns_eexist)
{
    size_t len;
    uint8_t *f = slurp("plain.tab", &len);
    store_t *s;
    store_table_t *t;
    ck_assert_int_eq(store_new(&s), 0);
    ck_assert_int_eq(store_table_create(s, "users", 1, &t), 0);
    ck_assert_int_eq(store_file2tab_mem(s, f, len, 0, NULL, err, sizeof err), -EEXIST);
    ck_assert_uint_eq(store_table_size(t), 0);
    store_free(s);
    free(f);
}
END_TEST

/* ---- Damage ------------------------------------------------------------ */

static void truncated_fails_verify(const struct seed_row *row, const uint8_t *f,
                                   size_t cut)
{
    store_t *s;
    ck_assert_int_eq(store_new(&s), 0);
    int rc = store_file2tab_mem(s, f, cut, 1, NULL, err, sizeof err);
    ck_assert_msg(rc == -EBADMSG, "%s cut at %zu: %d", row->id, cut, rc);
    ck_assert_msg(strstr(err, "truncated") || strstr(err, "count") ||
                  strstr(err, "not a disk_log") || strstr(err, "header"),
                  "%s cut at %zu: %s", row->id, cut, err);
    ck_assert_ptr_null(store_table_find(s, row->table));
    store_free(s);
}

START_TEST(every_truncation_fails_verify)
{
    const struct seed_row *row = &SEED_ROWS[_i];
    size_t len;
    uint8_t *f = slurp(row->id, &len);
    /* Every cut of the small files; of the 70 KB one a stride (each cut
     * reparses the file) plus the last byte. */
    size_t step = len > 4096 ? 61 : 1;
    for (size_t cut = 0; cut < len; cut += step)
        truncated_fails_verify(row, f, cut);
    truncated_fails_verify(row, f, len - 1);
    free(f);
}
END_TEST

START_TEST(truncation_inside_an_item_fails_without_verify)
{
    size_t len;
    uint8_t *f = slurp("plain.tab", &len);
    store_t *s;
    ck_assert_int_eq(store_new(&s), 0);
    ck_assert_int_eq(store_file2tab_mem(s, f, len - 3, 0, NULL, err, sizeof err),
                     -EBADMSG);
    ck_assert_ptr_nonnull(strstr(err, "truncated"));
    store_free(s);
    free(f);
}
END_TEST

START_TEST(flipped_byte_in_objects_fails_md5_verify)
{
    size_t len;
    uint8_t *f = slurp("md5.tab", &len);
    /* Objects start after the head and the header item. */
    size_t hdr = 8 + 8 + (((size_t)f[8] << 24) | ((size_t)f[9] << 16) |
                          ((size_t)f[10] << 8) | f[11]);
    for (size_t i = hdr; i < len; i++) {
        store_t *s;
        ck_assert_int_eq(store_new(&s), 0);
        f[i] ^= 0x20;
        int rc = store_file2tab_mem(s, f, len, 1, NULL, err, sizeof err);
        f[i] ^= 0x20;
        ck_assert_msg(rc == -EBADMSG, "byte %zu: %d", i, rc);
        store_free(s);
    }
    free(f);
}
END_TEST

START_TEST(not_a_disk_log_returns_ebadmsg)
{
    store_t *s;
    ck_assert_int_eq(store_new(&s), 0);
    ck_assert_int_eq(store_file2tab_mem(s, "hello world, not a log", 22, 0, NULL,
                                        err, sizeof err), -EBADMSG);
    ck_assert_ptr_nonnull(strstr(err, "not a disk_log file"));
    store_free(s);
}
END_TEST

/* ---- Writing ----------------------------------------------------------- */

static store_table_t *users_from_seed(store_t *s)
{
    size_t len;
    uint8_t *f = slurp("plain.tab", &len);
    store_table_t *t = NULL;
    ck_assert_int_eq(store_file2tab_mem(s, f, len, 1, &t, err, sizeof err), 0);
    free(f);
    return t;
}

static const unsigned FLAG_ROWS[] = {
    0, STORE_T2F_OBJECT_COUNT, STORE_T2F_MD5SUM,
    STORE_T2F_OBJECT_COUNT | STORE_T2F_MD5SUM
};

START_TEST(written_file_reads_back_equal)
{
    unsigned flags = FLAG_ROWS[_i];
    store_t *s, *s2;
    ck_assert_int_eq(store_new(&s), 0);
    ck_assert_int_eq(store_new(&s2), 0);
    store_table_t *t = users_from_seed(s), *t2 = NULL;
    term_buf_t file, a, b;
    term_buf_init(&file);
    term_buf_init(&a);
    term_buf_init(&b);
    ck_assert_int_eq(store_tab2file_mem(t, flags, &file), 0);
    ck_assert_int_eq(store_file2tab_mem(s2, file.data, file.len, 1, &t2, err,
                                        sizeof err), 0);
    ck_assert_uint_eq(store_table_size(t2), store_table_size(t));
    /* Same contents: every object of t is found, byte for byte, in t2. */
    ck_assert_int_eq(store_tab2list(t, &a), 0);
    term_reader_t r;
    uint32_t n;
    term_reader_init(&r, a.data, a.len);
    ck_assert_int_eq(term_get_list(&r, &n), 0);
    for (uint32_t i = 0; i < n; i++) {
        const char *o, *k;
        size_t ol, kl;
        ck_assert_int_eq(term_get_any(&r, &o, &ol), 0);
        ck_assert_int_eq(store_obj_key(o, ol, 1, &k, &kl), 0);
        term_buf_reset(&b);
        ck_assert_int_eq(store_lookup(t2, k, kl, &b), 0);
        ck_assert_uint_eq(b.len, ol);
        ck_assert_mem_eq(b.data, o, ol);
    }
    term_buf_release(&file);
    term_buf_release(&a);
    term_buf_release(&b);
    store_free(s);
    store_free(s2);
}
END_TEST

START_TEST(written_file_with_md5_detects_flip)
{
    store_t *s, *s2;
    ck_assert_int_eq(store_new(&s), 0);
    store_table_t *t = users_from_seed(s);
    term_buf_t file;
    term_buf_init(&file);
    ck_assert_int_eq(store_tab2file_mem(t, STORE_T2F_MD5SUM, &file), 0);
    file.data[file.len - 60] ^= 1; /* inside the last object or end record */
    ck_assert_int_eq(store_new(&s2), 0);
    ck_assert_int_eq(store_file2tab_mem(s2, file.data, file.len, 1, NULL, err,
                                        sizeof err), -EBADMSG);
    term_buf_release(&file);
    store_free(s);
    store_free(s2);
}
END_TEST

/* Appends one disk_log item holding 131 + the term bytes. */
static void put_item(term_buf_t *f, const void *term, size_t len)
{
    size_t size = len + 1;
    uint8_t h[9] = { (uint8_t)(size >> 24), (uint8_t)(size >> 16), (uint8_t)(size >> 8),
                     (uint8_t)size, 98, 87, 76, 65, 131 };
    term_buf_append(f, h, sizeof h);
    term_buf_append(f, term, len);
}

START_TEST(duplicate_keys_last_one_wins)
{
    /* The head and header item of a BEAM file, then {1,a}, {2,x}, {1,b}. */
    size_t len;
    uint8_t *seed = slurp("plain.tab", &len);
    size_t hdr = 8 + 8 + (((size_t)seed[8] << 24) | ((size_t)seed[9] << 16) |
                          ((size_t)seed[10] << 8) | seed[11]);
    term_buf_t f, o;
    term_buf_init(&f);
    term_buf_init(&o);
    term_buf_append(&f, seed, hdr);
    static const uint8_t a1[] = { 104, 2, 97, 1, 119, 1, 'a' };
    static const uint8_t x2[] = { 104, 2, 97, 2, 119, 1, 'x' };
    static const uint8_t b1[] = { 104, 2, 97, 1, 119, 1, 'b' };
    put_item(&f, a1, sizeof a1);
    put_item(&f, x2, sizeof x2);
    put_item(&f, b1, sizeof b1);
    store_t *s;
    store_table_t *t = NULL;
    ck_assert_int_eq(store_new(&s), 0);
    ck_assert_int_eq(store_file2tab_mem(s, f.data, f.len, 0, &t, err, sizeof err), 0);
    ck_assert_uint_eq(store_table_size(t), 2);
    ck_assert_int_eq(store_lookup(t, KEY1, sizeof KEY1, &o), 0);
    ck_assert_uint_eq(o.len, sizeof b1);
    ck_assert_mem_eq(o.data, b1, sizeof b1);
    term_buf_release(&f);
    term_buf_release(&o);
    store_free(s);
    free(seed);
}
END_TEST

START_TEST(large_table_round_trips)
{
    store_t *s, *s2;
    store_table_t *t, *t2 = NULL;
    ck_assert_int_eq(store_new(&s), 0);
    ck_assert_int_eq(store_new(&s2), 0);
    ck_assert_int_eq(store_table_create(s, "many", 1, &t), 0);
    term_buf_t b, file;
    term_buf_init(&b);
    term_buf_init(&file);
    for (int64_t i = 0; i < 20000; i++) {
        term_buf_reset(&b);
        term_put_tuple(&b, 2);
        term_put_long(&b, i);
        term_put_long(&b, i * 3);
        ck_assert_int_eq(store_insert(t, b.data, b.len), 0);
    }
    ck_assert_int_eq(store_tab2file_mem(t, STORE_T2F_MD5SUM | STORE_T2F_OBJECT_COUNT,
                                        &file), 0);
    ck_assert_int_eq(store_file2tab_mem(s2, file.data, file.len, 1, &t2, err,
                                        sizeof err), 0);
    ck_assert_uint_eq(store_table_size(t2), 20000);
    for (int64_t i = 0; i < 20000; i += 997) {
        term_buf_t k, o;
        term_buf_init(&k);
        term_buf_init(&o);
        term_put_long(&k, i);
        ck_assert_int_eq(store_lookup(t2, k.data, k.len, &o), 0);
        term_buf_reset(&b);
        term_put_tuple(&b, 2);
        term_put_long(&b, i);
        term_put_long(&b, i * 3);
        ck_assert_uint_eq(o.len, b.len);
        ck_assert_mem_eq(o.data, b.data, b.len);
        term_buf_release(&k);
        term_buf_release(&o);
    }
    term_buf_release(&b);
    term_buf_release(&file);
    store_free(s);
    store_free(s2);
}
END_TEST

START_TEST(protection_round_trips)
{
    store_t *s, *s2;
    store_table_t *t, *t2 = NULL;
    ck_assert_int_eq(store_new(&s), 0);
    ck_assert_int_eq(store_new(&s2), 0);
    ck_assert_int_eq(store_table_create(s, "p", 1, &t), 0);
    store_table_opts(t)->protection = 1;
    term_buf_t file;
    term_buf_init(&file);
    ck_assert_int_eq(store_tab2file_mem(t, 0, &file), 0);
    ck_assert_int_eq(store_file2tab_mem(s2, file.data, file.len, 1, &t2, err,
                                        sizeof err), 0);
    ck_assert_int_eq(store_table_opts(t2)->protection, 1);
    term_buf_release(&file);
    store_free(s);
    store_free(s2);
}
END_TEST

START_TEST(write_bad_flags_returns_einval)
{
    store_t *s;
    store_table_t *t;
    ck_assert_int_eq(store_new(&s), 0);
    ck_assert_int_eq(store_table_create(s, "x", 1, &t), 0);
    term_buf_t file;
    term_buf_init(&file);
    ck_assert_int_eq(store_tab2file_mem(t, 8, &file), -EINVAL);
    term_buf_release(&file);
    store_free(s);
}
END_TEST

START_TEST(file2tab_alloc_failure_returns_enomem_without_leak)
{
    size_t len;
    uint8_t *f = slurp("ext.tab", &len);
    for (long k = 1;; k++) {
        store_t *s;
        ck_assert_int_eq(store_new(&s), 0);
        mem_fail_after(k);
        int rc = store_file2tab_mem(s, f, len, 1, NULL, err, sizeof err);
        mem_fail_after(0);
        if (rc == 0) {
            ck_assert_uint_eq(store_table_size(store_table_find(s, "users")), 5);
            store_free(s);
            break;
        }
        ck_assert_msg(rc == -ENOMEM, "k=%ld rc=%d %s", k, rc, err);
        ck_assert_ptr_null(store_table_find(s, "users"));
        store_free(s);
    }
    free(f);
}
END_TEST

Suite *tab2file_suite(void)
{
    Suite *s = suite_create("tab2file");
    TCase *tc = tcase_create("read");
    tcase_add_loop_test(tc, beam_file_loads_with_verify, 0,
                        sizeof SEED_ROWS / sizeof *SEED_ROWS);
    tcase_add_test(tc, beam_file_loads_from_path);
    tcase_add_test(tc, missing_file_returns_enoent);
    tcase_add_test(tc, bag_file_returns_enotsup);
    tcase_add_test(tc, existing_table_returns_eexist);
    suite_add_tcase(s, tc);
    tc = tcase_create("damage");
    tcase_add_loop_test(tc, every_truncation_fails_verify, 0,
                        sizeof SEED_ROWS / sizeof *SEED_ROWS);
    tcase_add_test(tc, truncation_inside_an_item_fails_without_verify);
    tcase_add_test(tc, flipped_byte_in_objects_fails_md5_verify);
    tcase_add_test(tc, not_a_disk_log_returns_ebadmsg);
    suite_add_tcase(s, tc);
    tc = tcase_create("write");
    tcase_add_loop_test(tc, written_file_reads_back_equal, 0,
                        sizeof FLAG_ROWS / sizeof *FLAG_ROWS);
    tcase_add_test(tc, written_file_with_md5_detects_flip);
    tcase_add_test(tc, duplicate_keys_last_one_wins);
    tcase_add_test(tc, large_table_round_trips);
    tcase_add_test(tc, protection_round_trips);
    tcase_add_test(tc, write_bad_flags_returns_einval);
    tcase_add_test(tc, file2tab_alloc_failure_returns_enomem_without_leak);
    suite_add_tcase(s, tc);
    return s;
}
