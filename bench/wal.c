/* bench_wal: what durability costs. Inserts per second into a durable store
 * under each fsync policy, then the time and size of a snapshot of N seed
 * users and the time to recover them from the snapshot and from the log.
 *
 *   bench_wal DIR [N] [N_ALWAYS]     DIR must not exist or be empty of etsd
 *                                    files; defaults N=1000000, N_ALWAYS=2000 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "store/store.h"
#include "term/mem.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* A seed user: {Id, <<"user Id">>, Age, <<"userId@example.com">>}. */
static void user(term_buf_t *b, long id)
{
    char name[32], mail[48];
    snprintf(name, sizeof name, "user %ld", id);
    snprintf(mail, sizeof mail, "user%ld@example.com", id);
    term_buf_reset(b);
    term_put_tuple(b, 4);
    term_put_long(b, id);
    term_put_binary(b, name, strlen(name));
    term_put_long(b, 18 + id % 60);
    term_put_binary(b, mail, strlen(mail));
}

static void die(const char *what, int rc, const char *err)
{
    fprintf(stderr, "bench_wal: %s: %s %s\n", what, strerror(-rc), err ? err : "");
    exit(1);
}

static void clean(const char *dir)
{
    static const char *const files[] = { "store.wal", "store.snap", "LOCK",
                                         "store.wal.next" };
    char p[4096];
    for (size_t i = 0; i < 4; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, files[i]);
        unlink(p);
    }
}

static long fsize(const char *dir, const char *f)
{
    char p[4096];
    struct stat st;
    snprintf(p, sizeof p, "%s/%s", dir, f);
    return stat(p, &st) < 0 ? -1 : (long)st.st_size;
}

/* Inserts n users under policy; returns inserts per second. With batch,
 * every batch inserts go in one group commit (store_batch_begin/end). */
static double fill_batched(const char *dir, store_fsync_t policy, long n,
                           int flush_every, long batch)
{
    char err[512];
    store_t *s;
    store_table_t *t;
    term_buf_t b;
    clean(dir);
    int rc = store_open(dir, policy, &s, err, sizeof err);
    if (rc < 0)
        die("store_open", rc, err);
    if ((rc = store_table_create(s, "users", 1, &t)) < 0)
        die("create", rc, NULL);
    term_buf_init(&b);
    double t0 = now();
    for (long i = 1; i <= n; i++) {
        if (batch && i % batch == 1 % batch)
            store_batch_begin(s);
        user(&b, i);
        if ((rc = store_insert(t, b.data, b.len)) < 0)
            die("insert", rc, NULL);
        if (batch && (i % batch == 0 || i == n) && (rc = store_batch_end(s)) < 0)
            die("batch end", rc, NULL);
        if (flush_every && i % flush_every == 0 && (rc = store_flush(s)) < 0)
            die("flush", rc, NULL);
    }
    if ((rc = store_flush(s)) < 0)
        die("flush", rc, NULL);
    double dt = now() - t0;
    term_buf_release(&b);
    store_free(s);
    return n / dt;
}

static double fill(const char *dir, store_fsync_t policy, long n, int flush_every)
{
    return fill_batched(dir, policy, n, flush_every, 0);
}

static double reopen(const char *dir, long want)
{
    char err[512];
    store_t *s;
    double t0 = now();
    int rc = store_open(dir, STORE_FSYNC_NEVER, &s, err, sizeof err);
    double dt = now() - t0;
    if (rc < 0)
        die("reopen", rc, err);
    size_t got = store_table_size(store_table_find(s, "users"));
    if ((long)got != want) {
        fprintf(stderr, "bench_wal: recovered %zu of %ld\n", got, want);
        exit(1);
    }
    store_free(s);
    return dt;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: bench_wal DIR [N] [N_ALWAYS]\n");
        return 2;
    }
    const char *dir = argv[1];
    long n = argc > 2 ? atol(argv[2]) : 1000000;
    long na = argc > 3 ? atol(argv[3]) : 2000;
    if (mkdir(dir, 0777) < 0 && errno != EEXIST)
        die("mkdir", -errno, dir);

    printf("insert, fsync always:        %10.0f /s  (%ld users)\n",
           fill(dir, STORE_FSYNC_ALWAYS, na, 0), na);
    printf("insert, fsync always, batches of 64:    %10.0f /s  (%ld users)\n",
           fill_batched(dir, STORE_FSYNC_ALWAYS, 64 * na, 0, 64), 64 * na);
    printf("insert, fsync always, batches of 20000: %10.0f /s  (%ld users)\n",
           fill_batched(dir, STORE_FSYNC_ALWAYS, n, 0, 20000), n);
    printf("insert, fsync never, batches of 20000:  %10.0f /s  (%ld users)\n",
           fill_batched(dir, STORE_FSYNC_NEVER, n, 0, 20000), n);
    printf("insert, flush every 1000:    %10.0f /s  (%ld users)\n",
           fill(dir, STORE_FSYNC_PERIODIC, n, 1000), n);
    printf("insert, fsync never:         %10.0f /s  (%ld users)\n",
           fill(dir, STORE_FSYNC_NEVER, n, 0), n);
    long logsz = fsize(dir, "store.wal");
    printf("log size:                    %10.1f MB  (%.1f bytes/user)\n",
           logsz / 1e6, (double)logsz / n);
    printf("recover from log:            %10.3f s\n", reopen(dir, n));

    char err[512];
    store_t *s;
    int rc = store_open(dir, STORE_FSYNC_NEVER, &s, err, sizeof err);
    if (rc < 0)
        die("store_open", rc, err);
    double t0 = now();
    if ((rc = store_snapshot(s)) < 0)
        die("snapshot", rc, NULL);
    double dt = now() - t0;
    store_free(s);
    printf("snapshot:                    %10.3f s  (%.1f MB)\n", dt,
           fsize(dir, "store.snap") / 1e6);
    printf("recover from snapshot:       %10.3f s\n", reopen(dir, n));
    clean(dir);
    rmdir(dir);
    return 0;
}
