/* check_snapshot.c: a durable store's data directory: recovery from log and
 * snapshot, torn tails, damage, the directory lock, and fsync policies. */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
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

/* The segments in dir (store.wal.S), counted. */
static int count_segments(void)
{
    DIR *dp = opendir(dir);
    ck_assert_ptr_nonnull(dp);
    int n = 0;
    struct dirent *e;
    uint64_t seq;
    while ((e = readdir(dp)) != NULL)
        n += wal_segment_name(e->d_name, &seq);
    closedir(dp);
    return n;
}

static void remove_dir(void)
{
    char p[512];
    DIR *dp = opendir(dir);
    struct dirent *e;
    while (dp && (e = readdir(dp)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        unlink(p);
    }
    if (dp)
        closedir(dp);
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
    snprintf(p, sizeof p, "%s/%s", sub, WAL_NEXT_FILE);
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

/* ---- Compaction --------------------------------------------------------- */

/* Reopens dir and checks table t holds keys 1..n, value key*10. */
static void expect_keys(int n)
{
    store_t *s = open_ok(STORE_FSYNC_ALWAYS);
    store_table_t *t = store_table_find(s, "t");
    ck_assert_ptr_nonnull(t);
    ck_assert_uint_eq(store_table_size(t), (size_t)n);
    for (int i = 1; i <= n; i++)
        ck_assert_int_eq(get(t, i), i * 10);
    store_free(s);
}

START_TEST(compact_keeps_writes_made_while_it_runs)
{
    fill(20, 0);
    store_t *s = open_ok(STORE_FSYNC_ALWAYS);
    store_table_t *t = store_table_find(s, "t");
    store_compact_t *c;
    long before = file_size(WAL_LOG_FILE);
    ck_assert_int_eq(file_size(WAL_NEXT_FILE), WAL_MAGIC_LEN);
    ck_assert_int_eq(store_compact_begin(s, &c), 0);
    /* The loop only switched files: the next log takes these; the names
     * change in the wait. */
    uint64_t seg = store_log_bytes(s);
    ck_assert_uint_gt(seg, 0);
    for (int i = 21; i <= 30; i++)
        put(t, i, i * 10);
    ck_assert_uint_gt(store_log_bytes(s), seg);
    ck_assert_int_eq(file_size(WAL_LOG_FILE), before);
    ck_assert_int_gt(file_size(WAL_NEXT_FILE), WAL_MAGIC_LEN);
    ck_assert_int_eq(store_compact_begin(s, &(store_compact_t *){NULL}), -EBUSY);
    ck_assert_int_eq(store_compact_wait(c), 0);
    store_compact_info_t info;
    ck_assert_int_eq(store_compact_end(s, c, &info), 0);
    ck_assert_int_eq(info.rc, 0);
    ck_assert_uint_eq(info.objects, 20);
    ck_assert_uint_eq(info.log_bytes, seg);
    ck_assert_uint_eq(info.snap_bytes, (uint64_t)file_size(WAL_SNAP_FILE));
    ck_assert_uint_le(info.begin_ns, info.total_ns);
    ck_assert_int_eq(count_segments(), 0);
    ck_assert_int_eq(file_size(WAL_SNAP_TMP), -1);
    ck_assert_int_eq(file_size(WAL_NEXT_FILE), WAL_MAGIC_LEN); /* for the next one */
    /* What remains in the log is exactly the writes made meanwhile. */
    ck_assert_uint_eq(store_log_bytes(s), (uint64_t)file_size(WAL_LOG_FILE) - WAL_MAGIC_LEN);
    ck_assert_uint_lt(store_log_bytes(s), seg);
    store_compact_stats_t st;
    store_compact_stats(s, &st);
    ck_assert_uint_eq(st.done, 1);
    ck_assert_uint_eq(st.failed, 0);
    ck_assert_int_eq(st.running, 0);
    ck_assert_uint_eq(st.last_ns, info.total_ns);
    store_free(s);
    expect_keys(30);
}
END_TEST

START_TEST(compact_due_when_log_passes_compact_at)
{
    store_t *s = open_ok(STORE_FSYNC_NEVER);
    store_table_t *t;
    ck_assert_int_eq(store_table_create(s, "t", 1, &t), 0);
    ck_assert_int_eq(store_compact_due(s), 0);   /* default: 64 MB */
    store_set_compact_at(s, 4096);
    int i = 1;
    while (!store_compact_due(s)) {
        ck_assert_uint_lt(store_log_bytes(s), 4096);
        put(t, i, i * 10);
        i++;
    }
    ck_assert_uint_ge(store_log_bytes(s), 4096);
    store_compact_t *c;
    ck_assert_int_eq(store_compact_begin(s, &c), 0);
    ck_assert_int_eq(store_compact_due(s), 0);   /* one at a time */
    ck_assert_int_eq(store_compact_wait(c), 0);
    ck_assert_int_eq(store_compact_end(s, c, NULL), 0);
    ck_assert_int_eq(store_compact_due(s), 0);
    ck_assert_uint_eq(store_log_bytes(s), 0);
    store_free(s);
    expect_keys(i - 1);
}
END_TEST

START_TEST(compact_due_default_is_twice_the_snapshot_and_at_least_64_mb)
{
    fill(10, 10);
    store_t *s = open_ok(STORE_FSYNC_NEVER);
    /* a tiny snapshot: the 64 MB floor rules */
    ck_assert_int_eq(store_compact_due(s), 0);
    store_set_compact_at(s, 0);
    ck_assert_int_eq(store_compact_due(s), 0);
    store_free(s);
}
END_TEST

START_TEST(memory_store_has_nothing_to_compact)
{
    store_t *s;
    store_compact_t *c = NULL;
    ck_assert_int_eq(store_new(&s), 0);
    ck_assert_int_eq(store_compact_begin(s, &c), -EINVAL);
    ck_assert_int_eq(store_compact_due(s), 0);
    store_compact_stats_t st;
    store_compact_stats(s, &st);
    ck_assert_uint_eq(st.done + st.failed, 0);
    store_free(s);
}
END_TEST

/* Steps that fail with an I/O error: each leaves every write readable
 * and the next compaction (after a restart, if the renames of the logs
 * failed and the store stopped taking writes) cleans up. */
static const struct step_case {
    const char *id;
    store_step_t step;
    int in_begin;    /* the error comes from store_compact_begin() */
    int rc;          /* the compaction's result */
    int breaks;      /* the store refuses writes until reopened */
    int segments;    /* segments left after the failed compaction */
} step_cases[] = {
    { "fork", STORE_STEP_FORK, 1, -ENOSPC, 0, 0 },
    { "rename log", STORE_STEP_ROTATE, 0, -ENOSPC, 1, 0 },
    { "rename next", STORE_STEP_NEWLOG, 0, -ENOSPC, 1, 1 },
    { "write", STORE_STEP_WRITE, 0, -ENOSPC, 0, 1 },
    { "sync", STORE_STEP_SYNC, 0, -ENOSPC, 0, 1 },
    { "rename snapshot", STORE_STEP_RENAME, 0, -ENOSPC, 0, 1 },
    { "dir sync", STORE_STEP_DIRSYNC, 0, -ENOSPC, 0, 1 },
    { "unlink", STORE_STEP_UNLINK, 0, -ENOSPC, 0, 1 },
    { "next log", STORE_STEP_NEXT, 0, 0, 0, 0 },
};

START_TEST(compact_io_failure_at_each_step_loses_nothing)
{
    const struct step_case *sc = &step_cases[_i];
    fill(20, 5);
    store_t *s = open_ok(STORE_FSYNC_ALWAYS);
    store_table_t *t = store_table_find(s, "t");
    store_compact_t *c = NULL;
    store_test_fail_step = sc->step;
    store_test_fail_errno = -ENOSPC;
    int rc = store_compact_begin(s, &c);
    if (sc->in_begin) {
        ck_assert_msg(rc == sc->rc, "%s: begin %d", sc->id, rc);
        put(t, 21, 210);
    } else {
        ck_assert_int_eq(rc, 0);
        put(t, 21, 210);
        ck_assert_int_eq(store_compact_wait(c), sc->rc);
        ck_assert_int_eq(store_compact_end(s, c, NULL), sc->rc);
    }
    ck_assert_int_eq(store_test_fail_step, STORE_STEP_NONE);
    ck_assert_msg(count_segments() == sc->segments, "%s: %d segments", sc->id,
                  count_segments());
    ck_assert_int_eq(file_size(WAL_SNAP_TMP), -1);
    store_compact_stats_t st;
    store_compact_stats(s, &st);
    ck_assert_uint_eq(st.failed, sc->rc < 0);
    int keys = 21;
    if (sc->breaks) {
        term_buf_t b;
        term_buf_init(&b);
        term_put_tuple(&b, 2);
        term_put_long(&b, 22);
        term_put_long(&b, 220);
        ck_assert_int_eq(store_insert(t, b.data, b.len), -EIO);
        term_buf_release(&b);
    } else {
        put(t, 22, 220);
        keys = 22;
    }
    /* after a failure, not due again until the log grows */
    store_set_compact_at(s, 1);
    ck_assert_int_eq(store_compact_due(s), sc->rc == 0 && !sc->breaks);
    store_free(s);
    expect_keys(keys);
    /* The next compaction covers what the failed one left. */
    s = open_ok(STORE_FSYNC_ALWAYS);
    ck_assert_int_eq(store_snapshot(s), 0);
    ck_assert_int_eq(count_segments(), 0);
    ck_assert_uint_eq(store_log_bytes(s), 0);
    store_free(s);
    expect_keys(keys);
}
END_TEST

/* A crash (SIGKILL) at each step, in a child process that writes keys
 * 1..20, starts a compaction, writes 21..25, then waits for it: the next
 * open reads every write that returned. Steps in the compaction's own
 * child (write, sync) kill the writer wherever it is in 21..25. */
START_TEST(compact_crash_at_each_step_recovers_every_write)
{
    const struct step_case *sc = &step_cases[_i];
    fill(20, 7);
    int pfd[2];
    ck_assert_int_eq(pipe(pfd), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        close(pfd[0]);
        store_t *s = NULL;
        if (store_open(dir, STORE_FSYNC_ALWAYS, &s, NULL, 0) < 0)
            _exit(3);
        store_table_t *t = store_table_find(s, "t");
        store_compact_t *c;
        store_test_crash_step = sc->step;
        if (store_compact_begin(s, &c) < 0)
            _exit(4);
        for (int i = 21; i <= 25; i++) {
            term_buf_t b;
            term_buf_init(&b);
            term_put_tuple(&b, 2);
            term_put_long(&b, i);
            term_put_long(&b, i * 10);
            if (b.err || store_insert(t, b.data, b.len) < 0)
                _exit(5);
            term_buf_release(&b);
            unsigned char k = (unsigned char)i;
            if (write(pfd[1], &k, 1) != 1)
                _exit(6);
        }
        (void)store_compact_wait(c);
        _exit(7);   /* the step was never reached */
    }
    close(pfd[1]);
    int st;
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    ck_assert_msg(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "%s: status %d", sc->id, st);
    int acked = 20;
    unsigned char k;
    while (read(pfd[0], &k, 1) == 1)
        acked = k;
    close(pfd[0]);
    if (sc->in_begin)
        ck_assert_int_eq(acked, 20);
    else if (sc->step != STORE_STEP_WRITE && sc->step != STORE_STEP_SYNC)
        ck_assert_int_eq(acked, 25);
    /* Acknowledged writes are there; one more may be (written, not acked). */
    store_t *s = open_ok(STORE_FSYNC_ALWAYS);
    store_table_t *t = store_table_find(s, "t");
    size_t n = store_table_size(t);
    ck_assert_msg(n == (size_t)acked || n == (size_t)acked + 1, "%s: %zu vs %d", sc->id,
                  n, acked);
    for (int i = 1; i <= (int)n; i++)
        ck_assert_int_eq(get(t, i), i * 10);
    ck_assert_int_eq(file_size(WAL_SNAP_TMP), -1);
    /* and it compacts cleanly from there */
    ck_assert_int_eq(store_snapshot(s), 0);
    ck_assert_int_eq(count_segments(), 0);
    store_free(s);
}
END_TEST

START_TEST(compact_alloc_failure_returns_enomem_and_keeps_writes)
{
    fill(10, 0);
    store_t *s = open_ok(STORE_FSYNC_ALWAYS);
    store_table_t *t = store_table_find(s, "t");
    int next = 11;
    for (long k = 1;; k++) {
        store_compact_t *c = NULL;
        mem_fail_after(k);
        int rc = store_compact_begin(s, &c);
        if (rc == 0)
            rc = store_compact_wait(c);   /* the child allocates too */
        mem_fail_after(0);
        if (c)
            ck_assert_int_eq(store_compact_end(s, c, NULL), rc);
        if (rc == 0)
            break;
        ck_assert_int_eq(rc, -ENOMEM);
        ck_assert_int_eq(file_size(WAL_SNAP_TMP), -1);
        put(t, next, next * 10);
        next++;
        ck_assert_int_lt(k, 1000);
    }
    ck_assert_int_eq(count_segments(), 0);
    store_free(s);
    expect_keys(next - 1);
}
END_TEST

START_TEST(segment_left_by_failed_compaction_replays_and_reports_its_torn_tail)
{
    fill(20, 0);
    store_t *s = open_ok(STORE_FSYNC_ALWAYS);
    store_compact_t *c;
    store_test_fail_step = STORE_STEP_WRITE;
    store_test_fail_errno = -EIO;
    ck_assert_int_eq(store_compact_begin(s, &c), 0);
    put(store_table_find(s, "t"), 21, 210);
    ck_assert_int_eq(store_compact_wait(c), -EIO);
    ck_assert_int_eq(store_compact_end(s, c, NULL), -EIO);
    store_free(s);
    ck_assert_int_eq(count_segments(), 1);
    expect_keys(21);
    /* Garbage after the segment's last record (its unsynced end lost with
     * the machine) is noted and ignored: every record before it counts. */
    DIR *dp = opendir(dir);
    struct dirent *e;
    char seg[256] = "";
    uint64_t seq;
    while ((e = readdir(dp)) != NULL)
        if (wal_segment_name(e->d_name, &seq))
            snprintf(seg, sizeof seg, "%s", e->d_name);
    closedir(dp);
    size_t len;
    uint8_t *b = read_all(seg, &len);
    uint8_t *g = malloc(len + 5);
    memcpy(g, b, len);
    memcpy(g + len, "\0\0\0\x30x", 5);
    write_all(seg, g, len + 5);
    free(b);
    free(g);
    store_t *s2 = open_ok(STORE_FSYNC_ALWAYS);
    ck_assert_ptr_nonnull(strstr(err, "torn tail"));
    ck_assert_ptr_nonnull(strstr(err, seg));
    ck_assert_uint_eq(store_table_size(store_table_find(s2, "t")), 21);
    store_free(s2);
}
END_TEST

START_TEST(segment_record_past_its_name_returns_ebadmsg)
{
    fill(20, 0);
    /* The whole log renamed as a segment that claims to end at seq 3. */
    char from[512], to[512];
    path_of(from, sizeof from, WAL_LOG_FILE);
    path_of(to, sizeof to, WAL_SEG_PREFIX "3");
    ck_assert_int_eq(rename(from, to), 0);
    store_t *s = NULL;
    ck_assert_int_eq(store_open(dir, STORE_FSYNC_ALWAYS, &s, err, sizeof err), -EBADMSG);
    ck_assert_ptr_nonnull(strstr(err, "past the segment"));
}
END_TEST

START_TEST(segment_covered_by_snapshot_is_deleted_at_open)
{
    fill(20, 0);
    size_t len;
    uint8_t *old = read_all(WAL_LOG_FILE, &len);
    store_t *s = open_ok(STORE_FSYNC_ALWAYS);
    ck_assert_int_eq(store_snapshot(s), 0);
    store_free(s);
    /* A crash after the snapshot's rename, before the segment's deletion. */
    char name[64];
    snprintf(name, sizeof name, WAL_SEG_PREFIX "%d", 21);
    write_all(name, old, len);
    free(old);
    ck_assert_int_eq(count_segments(), 1);
    expect_keys(20);
    ck_assert_int_eq(count_segments(), 0);
}
END_TEST

/* Splits the log after its k-th record: the rest goes to store.wal.next,
 * as a crash after a compaction switched logs, before its renames,
 * leaves them. Returns the bytes of the first record moved. */
static size_t split_log(int k, size_t *first_len)
{
    size_t len;
    uint8_t *log = read_all(WAL_LOG_FILE, &len);
    size_t off = WAL_MAGIC_LEN;
    for (int i = 0; i < k; i++) {
        wal_rec_t r;
        ck_assert_int_eq(wal_decode(log + off, len - off, &r), 0);
        off += r.size;
    }
    wal_rec_t r;
    ck_assert_int_eq(wal_decode(log + off, len - off, &r), 0);
    *first_len = r.size;
    uint8_t *next = malloc(len - off + WAL_MAGIC_LEN);
    memcpy(next, WAL_LOG_MAGIC, WAL_MAGIC_LEN);
    memcpy(next + WAL_MAGIC_LEN, log + off, len - off);
    write_all(WAL_LOG_FILE, log, off);
    write_all(WAL_NEXT_FILE, next, len - off + WAL_MAGIC_LEN);
    free(log);
    free(next);
    return off;
}

START_TEST(next_log_with_records_is_renamed_at_open)
{
    fill(20, 0);
    size_t first;
    split_log(12, &first);
    expect_keys(20);
    /* store.wal became the segment before it, store.wal.next the log */
    ck_assert_int_eq(count_segments(), 1);
    ck_assert_int_eq(file_size(WAL_NEXT_FILE), WAL_MAGIC_LEN);
    store_t *s = open_ok(STORE_FSYNC_ALWAYS);
    ck_assert_int_eq(store_snapshot(s), 0);
    ck_assert_int_eq(count_segments(), 0);
    store_free(s);
    expect_keys(20);
}
END_TEST

START_TEST(next_log_with_torn_first_record_is_dropped)
{
    fill(20, 0);
    size_t first, len;
    split_log(12, &first);
    uint8_t *next = read_all(WAL_NEXT_FILE, &len);
    /* only half of the first record reached the disk */
    write_all(WAL_NEXT_FILE, next, WAL_MAGIC_LEN + first / 2);
    free(next);
    store_t *s = open_ok(STORE_FSYNC_ALWAYS);
    store_table_t *t = store_table_find(s, "t");
    ck_assert_uint_eq(store_table_size(t), 11);   /* create + 11 puts kept */
    ck_assert_int_eq(count_segments(), 0);
    ck_assert_int_eq(file_size(WAL_NEXT_FILE), WAL_MAGIC_LEN);
    store_free(s);
}
END_TEST

START_TEST(next_log_with_damaged_first_record_returns_ebadmsg)
{
    fill(20, 0);
    size_t first, len;
    split_log(12, &first);
    uint8_t *next = read_all(WAL_NEXT_FILE, &len);
    next[WAL_MAGIC_LEN + 6] ^= 0x40;   /* its CRC: later records are intact */
    write_all(WAL_NEXT_FILE, next, len);
    free(next);
    store_t *s = NULL;
    ck_assert_int_eq(store_open(dir, STORE_FSYNC_ALWAYS, &s, err, sizeof err), -EBADMSG);
    ck_assert_ptr_nonnull(strstr(err, WAL_NEXT_FILE));
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
    tc = tcase_create("compact");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, compact_keeps_writes_made_while_it_runs);
    tcase_add_test(tc, compact_due_when_log_passes_compact_at);
    tcase_add_test(tc, compact_due_default_is_twice_the_snapshot_and_at_least_64_mb);
    tcase_add_test(tc, memory_store_has_nothing_to_compact);
    tcase_add_loop_test(tc, compact_io_failure_at_each_step_loses_nothing, 0,
                        (int)(sizeof step_cases / sizeof step_cases[0]));
    tcase_add_loop_test(tc, compact_crash_at_each_step_recovers_every_write, 0,
                        (int)(sizeof step_cases / sizeof step_cases[0]));
    tcase_add_test(tc, compact_alloc_failure_returns_enomem_and_keeps_writes);
    tcase_add_test(tc, segment_left_by_failed_compaction_replays_and_reports_its_torn_tail);
    tcase_add_test(tc, segment_record_past_its_name_returns_ebadmsg);
    tcase_add_test(tc, segment_covered_by_snapshot_is_deleted_at_open);
    tcase_add_test(tc, next_log_with_records_is_renamed_at_open);
    tcase_add_test(tc, next_log_with_torn_first_record_is_dropped);
    tcase_add_test(tc, next_log_with_damaged_first_record_returns_ebadmsg);
    suite_add_tcase(s, tc);
    return s;
}
