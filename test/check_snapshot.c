/* check_snapshot.c: a durable store's data directory: recovery from log and
 * snapshot, torn tails, damage, the directory lock, and fsync policies. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/store.h"
#include "store/store_int.h"
#include "store/wal_int.h"
#include "term/mem.h"

static char dir[256];
static char err[512];

static void make_dir(void)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/etsd-check-snap-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void remove_dir(void)
{
    static const char *const files[] = { WAL_LOG_FILE, WAL_SNAP_FILE,
                                         WAL_SNAP_TMP, WAL_LOCK_FILE };
    char p[512];
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, files[i]);
        unlink(p);
    }
    rmdir(dir);
}

static void path_of(char *p, size_t n, const char *file)
{
    snprintf(p, n, "%s/%s", dir, file);
}

static long file_size(const char *file)
{
    char p[512];
    struct stat st;
    path_of(p, sizeof p, file);
    return stat(p, &st) < 0 ? -1 : (long)st.st_size;
}

static uint8_t *read_all(const char *file, size_t *len)
{
    char p[512];
    path_of(p, sizeof p, file);
    FILE *f = fopen(p, "rb");
    ck_assert_ptr_nonnull(f);
    fseek(f, 0, SEEK_END);
    *len = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc(*len + 1);
    ck_assert_uint_eq(fread(b, 1, *len, f), *len);
    fclose(f);
    return b;
}

static void write_all(const char *file, const void *b, size_t len)
{
    char p[512];
    path_of(p, sizeof p, file);
    FILE *f = fopen(p, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(b, 1, len, f), len);
    fclose(f);
}

static void put(store_table_t *t, int64_t key, int64_t val)
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

static void del(store_table_t *t, int64_t key)
{
    term_buf_t k;
    term_buf_init(&k);
    term_put_long(&k, key);
    ck_assert_int_eq(store_table_remove(t, k.data, k.len), 0);
    term_buf_release(&k);
}

static store_t *open_ok(store_fsync_t policy)
{
    store_t *s = NULL;
    int rc = store_open(dir, policy, &s, err, sizeof err);
    ck_assert_msg(rc == 0, "store_open: %d %s", rc, err);
    return s;
}

/* Writes table t with keys 1..n (value key*10) and closes. */
static void fill(int n, int snapshot_at)
{
    store_t *s = open_ok(STORE_FSYNC_ALWAYS);
    store_table_t *t;
    ck_assert_int_eq(store_table_create(s, "t", 1, &t), 0);
    for (int i = 1; i <= n; i++) {
        put(t, i, i * 10);
        if (i == snapshot_at)
            ck_assert_int_eq(store_snapshot(s), 0);
    }
    store_free(s);
}

static void setup(void)
{
    make_dir();
}

static void teardown(void)
{
    remove_dir();
}

/* ---- Recovery ---------------------------------------------------------- */

START_TEST(open_new_dir_creates_log_and_lock)
{
    store_t *s = open_ok(STORE_FSYNC_ALWAYS);
    ck_assert_str_eq(err, "");
    ck_assert_int_eq(file_size(WAL_LOG_FILE), WAL_MAGIC_LEN);
    ck_assert_int_ge(file_size(WAL_LOCK_FILE), 0);
    store_free(s);
}
END_TEST

START_TEST(open_creates_missing_dir)
{
    char sub[300];
    snprintf(sub, sizeof sub, "%s/sub", dir);
    store_t *s = NULL;
    ck_assert_int_eq(store_open(sub, STORE_FSYNC_NEVER, &s, err, sizeof err), 0);
    store_free(s);
    char p[400];
    snprintf(p, sizeof p, "%s/%s", sub, WAL_LOG_FILE);
    unlink(p);
    snprintf(p, sizeof p, "%s/%s", sub, WAL_LOCK_FILE);
    unlink(p);
    ck_assert_int_eq(rmdir(sub), 0);
}
END_TEST

START_TEST(reopen_replays_log)
{
    fill(20, 0);
    store_t *s = open_ok(STORE_FSYNC_ALWAYS);
    store_table_t *t = store_table_find(s, "t");
    ck_assert_ptr_nonnull(t);
    ck_assert_uint_eq(store_table_size(t), 20);
    for (int i = 1; i <= 20; i++)
        ck_assert_int_eq(get(t, i), i * 10);
    store_free(s);
}
END_TEST

START_TEST(reopen_replays_delete_clear_and_drop)
{
    store_t *s = open_ok(STORE_FSYNC_ALWAYS);
    store_table_t *t, *u, *v;
    ck_assert_int_eq(store_table_create(s, "t", 1, &t), 0);
    ck_assert_int_eq(store_table_create(s, "u", 1, &u), 0);
    ck_assert_int_eq(store_table_create(s, "v", 2, &v), 0);
    put(t, 1, 10);
    put(t, 2, 20);
    put(t, 1, 11);
    del(t, 2);
    put(u, 5, 50);
    ck_assert_int_eq(store_table_clear(u), 0);
    put(u, 6, 60);
    ck_assert_int_eq(store_table_drop(s, "v"), 0);
    store_free(s);

    s = open_ok(STORE_FSYNC_ALWAYS);
    t = store_table_find(s, "t");
    u = store_table_find(s, "u");
    ck_assert_ptr_nonnull(t);
    ck_assert_ptr_nonnull(u);
    ck_assert_ptr_null(store_table_find(s, "v"));
    ck_assert_uint_eq(store_table_size(t), 1);
    ck_assert_int_eq(get(t, 1), 11);
    ck_assert_int_eq(get(t, 2), -1);
    ck_assert_uint_eq(store_table_size(u), 1);
    ck_assert_int_eq(get(u, 6), 60);
    store_free(s);
}
END_TEST

START_TEST(log_bytes_grow_with_writes_and_reset_on_snapshot)
{
    store_t *s = open_ok(STORE_FSYNC_NEVER), *m;
    store_table_t *t;
    ck_assert_uint_eq(store_log_bytes(s), 0);
    ck_assert_int_eq(store_table_create(s, "t", 1, &t), 0);
    put(t, 1, 10);
    ck_assert_uint_eq(store_log_bytes(s), (uint64_t)file_size(WAL_LOG_FILE) - WAL_MAGIC_LEN);
    ck_assert_uint_gt(store_log_bytes(s), 0);
    ck_assert_int_eq(store_snapshot(s), 0);
    ck_assert_uint_eq(store_log_bytes(s), 0);
    store_free(s);
    ck_assert_int_eq(store_new(&m), 0);
    ck_assert_uint_eq(store_log_bytes(m), 0);
    store_free(m);
}
END_TEST

START_TEST(snapshot_truncates_log_and_restores)
{
    fill(30, 30);
    ck_assert_int_eq(file_size(WAL_LOG_FILE), WAL_MAGIC_LEN);
    ck_assert_int_gt(file_size(WAL_SNAP_FILE), WAL_MAGIC_LEN);
    store_t *s = open_ok(STORE_FSYNC_ALWAYS);
    store_table_t *t = store_table_find(s, "t");
    ck_assert_ptr_nonnull(t);
    ck_assert_uint_eq(store_table_size(t), 30);
    ck_assert_int_eq(get(t, 17), 170);
    store_free(s);
}
END_TEST

START_TEST(writes_after_snapshot_come_from_log)
{
    fill(30, 10);
    store_t *s = open_ok(STORE_FSYNC_ALWAYS);
    store_table_t *t = store_table_find(s, "t");
    ck_assert_uint_eq(store_table_size(t), 30);
    ck_assert_int_eq(get(t, 5), 50);
    ck_assert_int_eq(get(t, 25), 250);
    /* Another round: snapshot of a recovered store, then more writes. */
    ck_assert_int_eq(store_snapshot(s), 0);
    put(t, 31, 310);
    store_free(s);
    s = open_ok(STORE_FSYNC_ALWAYS);
    t = store_table_find(s, "t");
    ck_assert_uint_eq(store_table_size(t), 31);
    ck_assert_int_eq(get(t, 31), 310);
    store_free(s);
}
END_TEST

START_TEST(old_log_left_by_crash_after_snapshot_is_skipped)
{
    /* A crash between the snapshot's rename and the log's truncation
     * leaves records the snapshot already holds: they must not apply
     * twice (the delete and re-put below would otherwise reorder). */
    store_t *s = open_ok(STORE_FSYNC_ALWAYS);
    store_table_t *t;
    ck_assert_int_eq(store_table_create(s, "t", 1, &t), 0);
    put(t, 1, 10);
    del(t, 1);
    put(t, 2, 20);
    size_t len;
    uint8_t *old = read_all(WAL_LOG_FILE, &len);
    put(t, 1, 99);
    ck_assert_int_eq(store_snapshot(s), 0);
    store_free(s);
    write_all(WAL_LOG_FILE, old, len);
    free(old);
    s = open_ok(STORE_FSYNC_ALWAYS);
    t = store_table_find(s, "t");
    ck_assert_uint_eq(store_table_size(t), 2);
    ck_assert_int_eq(get(t, 1), 99);
    ck_assert_int_eq(get(t, 2), 20);
    /* New writes continue after the old seqs: they replay next time. */
    put(t, 3, 30);
    store_free(s);
    s = open_ok(STORE_FSYNC_ALWAYS);
    ck_assert_int_eq(get(store_table_find(s, "t"), 3), 30);
    store_free(s);
}
END_TEST

START_TEST(long_unicode_table_name_survives_reopen)
{
    /* An atom of 255 characters, each two bytes of UTF-8. */
    char name[511];
    for (int i = 0; i < 255; i++) {
        name[2 * i] = (char)0xc3;
        name[2 * i + 1] = (char)0xa9;
    }
    name[510] = '\0';
    store_t *s = open_ok(STORE_FSYNC_ALWAYS);
    store_table_t *t;
    ck_assert_int_eq(store_table_create(s, name, 1, &t), 0);
    put(t, 1, 10);
    store_free(s);
    s = open_ok(STORE_FSYNC_ALWAYS);
    t = store_table_find(s, name);
    ck_assert_ptr_nonnull(t);
    ck_assert_int_eq(get(t, 1), 10);
    ck_assert_int_eq(store_snapshot(s), 0);
    store_free(s);
    s = open_ok(STORE_FSYNC_ALWAYS);
    ck_assert_int_eq(get(store_table_find(s, name), 1), 10);
    store_free(s);
}
END_TEST

START_TEST(leftover_snapshot_tmp_is_removed)
{
    fill(3, 0);
    write_all(WAL_SNAP_TMP, "garbage", 7);
    store_t *s = open_ok(STORE_FSYNC_ALWAYS);
    ck_assert_int_eq(file_size(WAL_SNAP_TMP), -1);
    ck_assert_uint_eq(store_table_size(store_table_find(s, "t")), 3);
    store_free(s);
}
END_TEST

/* ---- Torn tails -------------------------------------------------------- */

START_TEST(torn_tail_every_cut_recovers_prefix)
{
    fill(5, 0);
    size_t len;
    uint8_t *log = read_all(WAL_LOG_FILE, &len);
    /* Every cut inside the last record: the first four survive. */
    wal_rec_t r;
    size_t off = WAL_MAGIC_LEN, last = 0;
    while (off < len) {
        ck_assert_int_eq(wal_decode(log + off, len - off, &r), 0);
        last = off;
        off += r.size;
    }
    for (size_t cut = last + 1; cut < len; cut++) {
        write_all(WAL_LOG_FILE, log, cut);
        store_t *s = open_ok(STORE_FSYNC_ALWAYS);
        ck_assert_msg(strstr(err, "torn tail") != NULL, "cut %zu: %s", cut, err);
        store_table_t *t = store_table_find(s, "t");
        ck_assert_uint_eq(store_table_size(t), 4);
        ck_assert_int_eq(get(t, 5), -1);
        store_free(s);
        ck_assert_int_eq(file_size(WAL_LOG_FILE), (long)last);
    }
    free(log);
}
END_TEST

START_TEST(zero_filled_tail_is_torn)
{
    fill(5, 0);
    size_t len;
    uint8_t *log = read_all(WAL_LOG_FILE, &len);
    uint8_t *big = calloc(1, len + 4096);
    memcpy(big, log, len);
    write_all(WAL_LOG_FILE, big, len + 4096);
    store_t *s = open_ok(STORE_FSYNC_ALWAYS);
    ck_assert_ptr_nonnull(strstr(err, "torn tail"));
    ck_assert_uint_eq(store_table_size(store_table_find(s, "t")), 5);
    store_free(s);
    ck_assert_int_eq(file_size(WAL_LOG_FILE), (long)len);
    free(log);
    free(big);
}
END_TEST

START_TEST(write_after_torn_tail_recovers_too)
{
    fill(5, 0);
    size_t len;
    uint8_t *log = read_all(WAL_LOG_FILE, &len);
    write_all(WAL_LOG_FILE, log, len - 3);
    free(log);
    store_t *s = open_ok(STORE_FSYNC_ALWAYS);
    put(store_table_find(s, "t"), 6, 60);
    store_free(s);
    s = open_ok(STORE_FSYNC_ALWAYS);
    ck_assert_str_eq(err, "");
    store_table_t *t = store_table_find(s, "t");
    ck_assert_uint_eq(store_table_size(t), 5);
    ck_assert_int_eq(get(t, 6), 60);
    store_free(s);
}
END_TEST

/* ---- Damage ------------------------------------------------------------ */

START_TEST(corrupt_middle_record_returns_ebadmsg)
{
    fill(5, 0);
    size_t len;
    uint8_t *log = read_all(WAL_LOG_FILE, &len);
    log[WAL_MAGIC_LEN + 40] ^= 0x40; /* inside the first PUT */
    write_all(WAL_LOG_FILE, log, len);
    store_t *s = NULL;
    ck_assert_int_eq(store_open(dir, STORE_FSYNC_ALWAYS, &s, err, sizeof err),
                     -EBADMSG);
    ck_assert_ptr_null(s);
    ck_assert_ptr_nonnull(strstr(err, "damaged at offset"));
    /* Nothing was cut: the damage is still there for a human to look at. */
    ck_assert_int_eq(file_size(WAL_LOG_FILE), (long)len);
    free(log);
}
END_TEST

START_TEST(grown_length_field_in_middle_returns_ebadmsg)
{
    /* A flipped bit makes the first PUT claim to run past the end of the
     * file, like a torn append; but valid records follow it. */
    fill(5, 0);
    size_t len;
    uint8_t *log = read_all(WAL_LOG_FILE, &len);
    wal_rec_t r;
    ck_assert_int_eq(wal_decode(log + WAL_MAGIC_LEN, len - WAL_MAGIC_LEN, &r), 0);
    size_t put1 = WAL_MAGIC_LEN + r.size;
    log[put1 + 1] ^= 0x10; /* length += 1 MiB */
    write_all(WAL_LOG_FILE, log, len);
    store_t *s = NULL;
    ck_assert_int_eq(store_open(dir, STORE_FSYNC_ALWAYS, &s, err, sizeof err),
                     -EBADMSG);
    ck_assert_ptr_nonnull(strstr(err, "followed by valid records"));
    ck_assert_int_eq(file_size(WAL_LOG_FILE), (long)len);
    free(log);
}
END_TEST

START_TEST(bad_log_magic_returns_ebadmsg)
{
    write_all(WAL_LOG_FILE, "NOTALOG!xxxxxxxx", 16);
    store_t *s = NULL;
    ck_assert_int_eq(store_open(dir, STORE_FSYNC_ALWAYS, &s, err, sizeof err),
                     -EBADMSG);
    ck_assert_ptr_nonnull(strstr(err, "not a log file"));
}
END_TEST

START_TEST(corrupt_snapshot_returns_ebadmsg)
{
    fill(10, 10);
    size_t len;
    uint8_t *snap = read_all(WAL_SNAP_FILE, &len);
    for (size_t i = 0; i < len; i += 7) {
        snap[i] ^= 0x01;
        write_all(WAL_SNAP_FILE, snap, len);
        store_t *s = NULL;
        ck_assert_int_eq(store_open(dir, STORE_FSYNC_ALWAYS, &s, err, sizeof err),
                         -EBADMSG);
        ck_assert_ptr_nonnull(strstr(err, WAL_SNAP_FILE));
        snap[i] ^= 0x01;
    }
    free(snap);
}
END_TEST

START_TEST(truncated_snapshot_returns_ebadmsg)
{
    fill(10, 10);
    size_t len;
    uint8_t *snap = read_all(WAL_SNAP_FILE, &len);
    for (size_t cut = 0; cut < len; cut += 5) {
        write_all(WAL_SNAP_FILE, snap, cut);
        store_t *s = NULL;
        ck_assert_int_eq(store_open(dir, STORE_FSYNC_ALWAYS, &s, err, sizeof err),
                         -EBADMSG);
    }
    free(snap);
}
END_TEST

/* ---- Lock, policies, allocation failure -------------------------------- */

START_TEST(second_open_returns_ebusy)
{
    store_t *s = open_ok(STORE_FSYNC_ALWAYS), *s2 = NULL;
    ck_assert_int_eq(store_open(dir, STORE_FSYNC_ALWAYS, &s2, err, sizeof err),
                     -EBUSY);
    ck_assert_ptr_nonnull(strstr(err, "in use"));
    store_free(s);
    s2 = open_ok(STORE_FSYNC_ALWAYS);
    store_free(s2);
}
END_TEST

START_TEST(periodic_policy_flush_makes_writes_durable)
{
    store_t *s = open_ok(STORE_FSYNC_PERIODIC);
    store_table_t *t;
    ck_assert_int_eq(store_table_create(s, "t", 1, &t), 0);
    put(t, 1, 10);
    ck_assert_int_eq(store_flush(s), 0);
    ck_assert_int_eq(store_flush(s), 0);
    store_free(s);
    s = open_ok(STORE_FSYNC_NEVER);
    ck_assert_int_eq(get(store_table_find(s, "t"), 1), 10);
    put(store_table_find(s, "t"), 2, 20);
    store_free(s);
    s = open_ok(STORE_FSYNC_NEVER);
    ck_assert_int_eq(get(store_table_find(s, "t"), 2), 20);
    store_free(s);
}
END_TEST

START_TEST(open_bad_policy_returns_einval)
{
    store_t *s = NULL;
    ck_assert_int_eq(store_open(dir, (store_fsync_t)9, &s, err, sizeof err), -EINVAL);
}
END_TEST

START_TEST(open_alloc_failure_returns_enomem_without_leak)
{
    fill(10, 5);
    for (long k = 1;; k++) {
        store_t *s = NULL;
        mem_fail_after(k);
        int rc = store_open(dir, STORE_FSYNC_ALWAYS, &s, err, sizeof err);
        mem_fail_after(0);
        if (rc == 0) {
            ck_assert_uint_eq(store_table_size(store_table_find(s, "t")), 10);
            store_free(s);
            break;
        }
        ck_assert_msg(rc == -ENOMEM, "k=%ld rc=%d %s", k, rc, err);
        ck_assert_ptr_null(s);
        ck_assert_int_lt(k, 100000);
    }
}
END_TEST

START_TEST(snapshot_alloc_failure_keeps_old_state)
{
    fill(10, 5);
    store_t *s = open_ok(STORE_FSYNC_ALWAYS);
    for (long k = 1;; k++) {
        mem_fail_after(k);
        int rc = store_snapshot(s);
        mem_fail_after(0);
        if (rc == 0)
            break;
        ck_assert_int_eq(rc, -ENOMEM);
        ck_assert_int_eq(file_size(WAL_SNAP_TMP), -1);
    }
    store_free(s);
    s = open_ok(STORE_FSYNC_ALWAYS);
    ck_assert_uint_eq(store_table_size(store_table_find(s, "t")), 10);
    store_free(s);
}
END_TEST

/* ---- Appends ----------------------------------------------------------- */

START_TEST(append_failure_leaves_no_partial_record)
{
    /* A file size limit makes the kernel write part of the record and
     * refuse the rest (EFBIG): a real short write, no mock. */
    fill(3, 0);
    store_t *s = open_ok(STORE_FSYNC_ALWAYS);
    store_table_t *t = store_table_find(s, "t");
    long before = file_size(WAL_LOG_FILE);
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit old, lim;
    ck_assert_int_eq(getrlimit(RLIMIT_FSIZE, &old), 0);
    lim = old;
    lim.rlim_cur = (rlim_t)before + 100;
    ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &lim), 0);
    term_buf_t b;
    term_buf_init(&b);
    static char big[1000];
    term_put_tuple(&b, 2);
    term_put_long(&b, 9);
    term_put_binary(&b, big, sizeof big);
    ck_assert_int_eq(store_insert(t, b.data, b.len), -EFBIG);
    term_buf_release(&b);
    ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &old), 0);
    ck_assert_int_eq(file_size(WAL_LOG_FILE), before);
    ck_assert_uint_eq(store_table_size(t), 3);
    put(t, 4, 40);
    store_free(s);
    s = open_ok(STORE_FSYNC_ALWAYS);
    ck_assert_str_eq(err, "");
    t = store_table_find(s, "t");
    ck_assert_uint_eq(store_table_size(t), 4);
    ck_assert_int_eq(get(t, 9), -1);
    ck_assert_int_eq(get(t, 4), 40);
    store_free(s);
}
END_TEST

START_TEST(insert_alloc_failure_on_durable_store_logs_nothing)
{
    fill(3, 0);
    store_t *s = open_ok(STORE_FSYNC_ALWAYS);
    store_table_t *t = store_table_find(s, "t");
    long before = file_size(WAL_LOG_FILE);
    term_buf_t b;
    term_buf_init(&b);
    static char big[5000]; /* larger than the journal's reusable buffer */
    term_put_tuple(&b, 2);
    term_put_long(&b, 9);
    term_put_binary(&b, big, sizeof big);
    for (long k = 1;; k++) {
        mem_fail_after(k);
        int rc = store_insert(t, b.data, b.len);
        mem_fail_after(0);
        if (rc == 0)
            break;
        ck_assert_int_eq(rc, -ENOMEM);
        ck_assert_int_eq(file_size(WAL_LOG_FILE), before);
        ck_assert_uint_eq(store_table_size(t), 3);
    }
    term_buf_release(&b);
    ck_assert_int_gt(file_size(WAL_LOG_FILE), before);
    store_free(s);
    s = open_ok(STORE_FSYNC_ALWAYS);
    ck_assert_uint_eq(store_table_size(store_table_find(s, "t")), 4);
    store_free(s);
}
END_TEST

Suite *snapshot_suite(void)
{
    Suite *s = suite_create("snapshot");
    TCase *tc = tcase_create("recovery");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, open_new_dir_creates_log_and_lock);
    tcase_add_test(tc, open_creates_missing_dir);
    tcase_add_test(tc, reopen_replays_log);
    tcase_add_test(tc, reopen_replays_delete_clear_and_drop);
    tcase_add_test(tc, log_bytes_grow_with_writes_and_reset_on_snapshot);
    tcase_add_test(tc, snapshot_truncates_log_and_restores);
    tcase_add_test(tc, writes_after_snapshot_come_from_log);
    tcase_add_test(tc, old_log_left_by_crash_after_snapshot_is_skipped);
    tcase_add_test(tc, long_unicode_table_name_survives_reopen);
    tcase_add_test(tc, leftover_snapshot_tmp_is_removed);
    suite_add_tcase(s, tc);
    tc = tcase_create("torn");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, torn_tail_every_cut_recovers_prefix);
    tcase_add_test(tc, zero_filled_tail_is_torn);
    tcase_add_test(tc, write_after_torn_tail_recovers_too);
    suite_add_tcase(s, tc);
    tc = tcase_create("damage");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, corrupt_middle_record_returns_ebadmsg);
    tcase_add_test(tc, grown_length_field_in_middle_returns_ebadmsg);
    tcase_add_test(tc, bad_log_magic_returns_ebadmsg);
    tcase_add_test(tc, corrupt_snapshot_returns_ebadmsg);
    tcase_add_test(tc, truncated_snapshot_returns_ebadmsg);
    suite_add_tcase(s, tc);
    tc = tcase_create("append");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, append_failure_leaves_no_partial_record);
    tcase_add_test(tc, insert_alloc_failure_on_durable_store_logs_nothing);
    suite_add_tcase(s, tc);
    tc = tcase_create("misc");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, second_open_returns_ebusy);
    tcase_add_test(tc, periodic_policy_flush_makes_writes_durable);
    tcase_add_test(tc, open_bad_policy_returns_einval);
    tcase_add_test(tc, open_alloc_failure_returns_enomem_without_leak);
    tcase_add_test(tc, snapshot_alloc_failure_keeps_old_state);
    suite_add_tcase(s, tc);
    return s;
}
