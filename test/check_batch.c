/* check_batch.c: group commit (store_batch_begin/end): one write and one
 * fsync per batch, recovery of batched records, honest failures. */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/store.h"
#include "store/store_int.h"
#include "store/wal_int.h"
#include "term/mem.h"

static char dir[256];
static char err[512];

static void setup(void)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/etsd-check-batch-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    wal_test_fail_write = 0;
    wal_test_fail_sync = 0;
}

static void teardown(void)
{
    static const char *const files[] = { WAL_LOG_FILE, WAL_SNAP_FILE,
                                         WAL_SNAP_TMP, WAL_LOCK_FILE,
                                         WAL_NEXT_FILE };
    char p[512];
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, files[i]);
        unlink(p);
    }
    rmdir(dir);
    mem_fail_after(0);
}

static long log_size(void)
{
    char p[512];
    struct stat st;
    snprintf(p, sizeof p, "%s/%s", dir, WAL_LOG_FILE);
    return stat(p, &st) < 0 ? -1 : (long)st.st_size;
}

/* {Key, Val, Pad} with pad bytes of padding, so big batches are quick. */
static int put(store_table_t *t, int64_t key, int64_t val, size_t pad)
{
    term_buf_t b;
    term_buf_init(&b);
    term_put_tuple(&b, 3);
    term_put_long(&b, key);
    term_put_long(&b, val);
    char *z = calloc(1, pad + 1);
    term_put_binary(&b, z, pad);
    free(z);
    int rc = b.err ? b.err : store_insert(t, b.data, b.len);
    term_buf_release(&b);
    return rc;
}

/* The value stored under key, or -1 if absent. */
static int64_t get(store_table_t *t, int64_t key)
{
    term_buf_t k, o;
    term_buf_init(&k);
    term_buf_init(&o);
    term_put_long(&k, key);
    int64_t v = -1;
    if (store_lookup(t, k.data, k.len, &o) == 0) {
        term_reader_t r;
        uint32_t a;
        int64_t kk;
        term_reader_init(&r, o.data, o.len);
        ck_assert_int_eq(term_get_tuple(&r, &a), 0);
        ck_assert_int_eq(term_get_long(&r, &kk), 0);
        ck_assert_int_eq(term_get_long(&r, &v), 0);
    }
    term_buf_release(&k);
    term_buf_release(&o);
    return v;
}

static store_t *open_ok(store_fsync_t policy, store_table_t **t)
{
    store_t *s = NULL;
    int rc = store_open(dir, policy, &s, err, sizeof err);
    ck_assert_msg(rc == 0, "store_open: %d %s", rc, err);
    *t = store_table_find(s, "t");
    if (!*t)
        ck_assert_int_eq(store_table_create(s, "t", 1, t), 0);
    return s;
}

START_TEST(batch_of_n_puts_syncs_once)
{
    store_table_t *t;
    store_t *s = open_ok(STORE_FSYNC_ALWAYS, &t);
    long before = log_size();
    unsigned long syncs = wal_test_syncs;
    store_batch_begin(s);
    for (int i = 0; i < 1000; i++)
        ck_assert_int_eq(put(t, i, i * 10, 0), 0);
    /* Nothing reaches the file before the batch ends. */
    ck_assert_int_eq(log_size(), before);
    ck_assert_uint_eq(wal_test_syncs, syncs);
    ck_assert_int_eq(store_batch_end(s), 0);
    ck_assert_uint_eq(wal_test_syncs, syncs + 1);
    ck_assert_int_gt(log_size(), before);
    store_free(s);
}
END_TEST

START_TEST(unbatched_puts_sync_each)
{
    store_table_t *t;
    store_t *s = open_ok(STORE_FSYNC_ALWAYS, &t);
    unsigned long syncs = wal_test_syncs;
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(put(t, i, i, 0), 0);
    ck_assert_uint_eq(wal_test_syncs, syncs + 3);
    store_free(s);
}
END_TEST

START_TEST(empty_batch_syncs_nothing)
{
    store_table_t *t;
    store_t *s = open_ok(STORE_FSYNC_ALWAYS, &t);
    unsigned long syncs = wal_test_syncs;
    store_batch_begin(s);
    ck_assert_int_eq(store_batch_end(s), 0);
    ck_assert_uint_eq(wal_test_syncs, syncs);
    store_free(s);
}
END_TEST

START_TEST(batch_on_memory_store_returns_0)
{
    store_t *s;
    store_table_t *t;
    ck_assert_int_eq(store_new(&s), 0);
    ck_assert_int_eq(store_table_create(s, "t", 1, &t), 0);
    store_batch_begin(s);
    ck_assert_int_eq(put(t, 1, 1, 0), 0);
    ck_assert_int_eq(store_batch_end(s), 0);
    ck_assert_int_eq(get(t, 1), 1);
    /* An end without a begin is harmless too. */
    ck_assert_int_eq(store_batch_end(s), 0);
    store_free(s);
}
END_TEST

START_TEST(batch_records_survive_reopen)
{
    store_table_t *t;
    store_t *s = open_ok(STORE_FSYNC_ALWAYS, &t);
    ck_assert_int_eq(put(t, 0, 7, 0), 0);
    store_batch_begin(s);
    for (int i = 1; i <= 500; i++)
        ck_assert_int_eq(put(t, i, i * 10, 0), 0);
    ck_assert_int_eq(put(t, 0, 8, 0), 0);
    ck_assert_int_eq(store_batch_end(s), 0);
    ck_assert_int_eq(put(t, 501, 5010, 0), 0);
    store_free(s);
    s = open_ok(STORE_FSYNC_ALWAYS, &t);
    ck_assert_uint_eq(store_table_size(t), 502);
    ck_assert_int_eq(get(t, 0), 8);
    for (int i = 1; i <= 501; i++)
        ck_assert_int_eq(get(t, i), i * 10);
    store_free(s);
}
END_TEST

START_TEST(nested_batch_writes_at_outer_end)
{
    store_table_t *t;
    store_t *s = open_ok(STORE_FSYNC_ALWAYS, &t);
    unsigned long syncs = wal_test_syncs;
    long before = log_size();
    store_batch_begin(s);
    store_batch_begin(s);
    ck_assert_int_eq(put(t, 1, 1, 0), 0);
    ck_assert_int_eq(store_batch_end(s), 0);
    ck_assert_int_eq(log_size(), before);
    ck_assert_int_eq(put(t, 2, 2, 0), 0);
    ck_assert_int_eq(store_batch_end(s), 0);
    ck_assert_uint_eq(wal_test_syncs, syncs + 1);
    store_free(s);
    s = open_ok(STORE_FSYNC_ALWAYS, &t);
    ck_assert_uint_eq(store_table_size(t), 2);
    store_free(s);
}
END_TEST

START_TEST(large_batch_writes_midway_syncs_once_and_recovers)
{
    store_table_t *t;
    store_t *s = open_ok(STORE_FSYNC_ALWAYS, &t);
    unsigned long syncs = wal_test_syncs;
    long before = log_size();
    const int n = (int)(3 * WAL_BATCH_FLUSH / 1000);
    store_batch_begin(s);
    for (int i = 0; i < n; i++)
        ck_assert_int_eq(put(t, i, i, 1000), 0);
    /* Past WAL_BATCH_FLUSH the buffer went to the file, unsynced. */
    ck_assert_int_gt(log_size(), before);
    ck_assert_uint_eq(wal_test_syncs, syncs);
    ck_assert_int_eq(store_batch_end(s), 0);
    ck_assert_uint_eq(wal_test_syncs, syncs + 1);
    store_free(s);
    s = open_ok(STORE_FSYNC_ALWAYS, &t);
    ck_assert_uint_eq(store_table_size(t), (size_t)n);
    ck_assert_int_eq(get(t, n - 1), n - 1);
    store_free(s);
}
END_TEST

START_TEST(failed_batch_write_returns_error_then_eio)
{
    store_table_t *t;
    store_t *s = open_ok(STORE_FSYNC_ALWAYS, &t);
    ck_assert_int_eq(put(t, 1, 1, 0), 0);
    long before = log_size();
    store_batch_begin(s);
    for (int i = 2; i <= 50; i++)
        ck_assert_int_eq(put(t, i, i, 0), 0);
    wal_test_fail_write = -ENOSPC;
    ck_assert_int_eq(store_batch_end(s), -ENOSPC);
    /* Applied in memory, documented as not durable. */
    ck_assert_int_eq(get(t, 50), 50);
    /* The torn piece was cut off. */
    ck_assert_int_eq(log_size(), before);
    ck_assert_int_eq(put(t, 99, 99, 0), -EIO);
    store_batch_begin(s);
    ck_assert_int_eq(put(t, 98, 98, 0), -EIO);
    ck_assert_int_eq(store_batch_end(s), 0);
    ck_assert_int_eq(store_snapshot(s), -EIO);
    store_free(s);
    /* Recovery keeps what reached the disk: the write before the batch. */
    s = open_ok(STORE_FSYNC_ALWAYS, &t);
    ck_assert_uint_eq(store_table_size(t), 1);
    ck_assert_int_eq(get(t, 1), 1);
    ck_assert_int_eq(put(t, 2, 2, 0), 0);
    store_free(s);
}
END_TEST

START_TEST(failed_batch_sync_returns_error_then_eio)
{
    store_table_t *t;
    store_t *s = open_ok(STORE_FSYNC_ALWAYS, &t);
    store_batch_begin(s);
    for (int i = 1; i <= 10; i++)
        ck_assert_int_eq(put(t, i, i, 0), 0);
    wal_test_fail_sync = -EIO;
    ck_assert_int_eq(store_batch_end(s), -EIO);
    ck_assert_int_eq(put(t, 11, 11, 0), -EIO);
    store_free(s);
}
END_TEST

START_TEST(failed_midway_write_fails_the_batch)
{
    store_table_t *t;
    store_t *s = open_ok(STORE_FSYNC_ALWAYS, &t);
    const int n = (int)(2 * WAL_BATCH_FLUSH / 1000);
    int failed = 0;
    store_batch_begin(s);
    wal_test_fail_write = -ENOSPC;
    for (int i = 0; i < n; i++) {
        int rc = put(t, i, i, 1000);
        if (rc < 0) {
            /* The first mutation after the failed write is refused. */
            ck_assert_int_eq(rc, failed ? -EIO : -ENOSPC);
            failed++;
        }
    }
    ck_assert_int_gt(failed, 0);
    ck_assert_int_eq(store_batch_end(s), -ENOSPC);
    ck_assert_int_eq(put(t, n, n, 0), -EIO);
    store_free(s);
}
END_TEST

START_TEST(periodic_batch_writes_once_flush_syncs)
{
    store_table_t *t;
    store_t *s = open_ok(STORE_FSYNC_PERIODIC, &t);
    unsigned long syncs = wal_test_syncs;
    store_batch_begin(s);
    for (int i = 0; i < 100; i++)
        ck_assert_int_eq(put(t, i, i, 0), 0);
    ck_assert_int_eq(store_batch_end(s), 0);
    ck_assert_uint_eq(wal_test_syncs, syncs);
    ck_assert_int_eq(store_flush(s), 0);
    ck_assert_uint_eq(wal_test_syncs, syncs + 1);
    store_free(s);
    s = open_ok(STORE_FSYNC_PERIODIC, &t);
    ck_assert_uint_eq(store_table_size(t), 100);
    store_free(s);
}
END_TEST

START_TEST(snapshot_inside_batch_keeps_every_record)
{
    store_table_t *t;
    store_t *s = open_ok(STORE_FSYNC_ALWAYS, &t);
    store_batch_begin(s);
    for (int i = 0; i < 20; i++)
        ck_assert_int_eq(put(t, i, i, 0), 0);
    ck_assert_int_eq(store_snapshot(s), 0);
    for (int i = 20; i < 40; i++)
        ck_assert_int_eq(put(t, i, i, 0), 0);
    ck_assert_int_eq(store_batch_end(s), 0);
    store_free(s);
    s = open_ok(STORE_FSYNC_ALWAYS, &t);
    ck_assert_uint_eq(store_table_size(t), 40);
    ck_assert_int_eq(get(t, 39), 39);
    store_free(s);
}
END_TEST

START_TEST(free_with_open_batch_writes_its_records)
{
    store_table_t *t;
    store_t *s = open_ok(STORE_FSYNC_ALWAYS, &t);
    store_batch_begin(s);
    for (int i = 0; i < 30; i++)
        ck_assert_int_eq(put(t, i, i, 0), 0);
    store_free(s);
    s = open_ok(STORE_FSYNC_ALWAYS, &t);
    ck_assert_uint_eq(store_table_size(t), 30);
    store_free(s);
}
END_TEST

/* Every allocation in a batch of inserts failing in turn: each insert
 * either succeeds or returns -ENOMEM with nothing changed, the batch end
 * succeeds, and the reopened store holds exactly what memory held. */
START_TEST(batch_alloc_failure_loop_recovers_what_memory_holds)
{
    for (long k = 1;; k++) {
        store_table_t *t;
        store_t *s = open_ok(STORE_FSYNC_ALWAYS, &t);
        ck_assert_int_eq(store_table_clear(t), 0);
        int ok[40] = { 0 };
        mem_fail_after(k);
        store_batch_begin(s);
        int failures = 0;
        for (int i = 0; i < 40; i++) {
            int rc = put(t, i, i + k, 0);
            ck_assert_msg(rc == 0 || rc == -ENOMEM, "k=%ld rc=%d", k, rc);
            ok[i] = rc == 0;
            failures += rc != 0;
        }
        int end = store_batch_end(s);
        mem_fail_after(0);
        ck_assert_msg(end == 0 || end == -ENOMEM, "k=%ld end=%d", k, end);
        size_t want = 0;
        for (int i = 0; i < 40; i++)
            want += (size_t)ok[i];
        ck_assert_uint_eq(store_table_size(t), want);
        store_free(s);
        if (end == 0) {
            s = open_ok(STORE_FSYNC_ALWAYS, &t);
            ck_assert_uint_eq(store_table_size(t), want);
            for (int i = 0; i < 40; i++)
                ck_assert_int_eq(get(t, i), ok[i] ? i + k : -1);
            store_free(s);
        }
        if (failures == 0 && end == 0)
            break;
    }
}
END_TEST

Suite *batch_suite(void)
{
    Suite *s = suite_create("batch");
    TCase *tc = tcase_create("commit");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, batch_of_n_puts_syncs_once);
    tcase_add_test(tc, unbatched_puts_sync_each);
    tcase_add_test(tc, empty_batch_syncs_nothing);
    tcase_add_test(tc, batch_on_memory_store_returns_0);
    tcase_add_test(tc, batch_records_survive_reopen);
    tcase_add_test(tc, nested_batch_writes_at_outer_end);
    tcase_add_test(tc, large_batch_writes_midway_syncs_once_and_recovers);
    tcase_add_test(tc, periodic_batch_writes_once_flush_syncs);
    tcase_add_test(tc, snapshot_inside_batch_keeps_every_record);
    tcase_add_test(tc, free_with_open_batch_writes_its_records);
    suite_add_tcase(s, tc);
    tc = tcase_create("failure");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, failed_batch_write_returns_error_then_eio);
    tcase_add_test(tc, failed_batch_sync_returns_error_then_eio);
    tcase_add_test(tc, failed_midway_write_fails_the_batch);
    tcase_add_test(tc, batch_alloc_failure_loop_recovers_what_memory_holds);
    suite_add_tcase(s, tc);
    return s;
}
