/* bench_compact: what a compaction costs the loop. Fills a durable store
 * with N seed users, then runs compactions as etsd does: times
 * store_compact_begin() (the only part on the loop: log rotation and the
 * fork), keeps writing while the child writes the snapshot (the longest
 * single write shows the copy-on-write faults), and times the whole.
 *
 *   bench_compact DIR [N] [ROUNDS] [always|never]
 *       defaults N=1000000, ROUNDS=3, fsync always (writes during the
 *       compaction then each sync, as etsd's rpc inserts do) */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "store/store.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void user(term_buf_t *b, long id, long gen)
{
    char name[32], mail[48];
    snprintf(name, sizeof name, "user %ld", id);
    snprintf(mail, sizeof mail, "user%ld@example.com", id);
    term_buf_reset(b);
    term_put_tuple(b, 4);
    term_put_long(b, id);
    term_put_binary(b, name, strlen(name));
    term_put_long(b, 18 + (id + gen) % 60);
    term_put_binary(b, mail, strlen(mail));
}

static void die(const char *what, int rc)
{
    fprintf(stderr, "bench_compact: %s: %s\n", what, strerror(-rc));
    exit(1);
}

static long rss_mb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
            break;
    if (f)
        fclose(f);
    return kb / 1024;
}

static atomic_int done;

static void *wait_main(void *c)
{
    (void)store_compact_wait(c);
    atomic_store(&done, 1);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: bench_compact DIR [N] [ROUNDS]\n");
        return 2;
    }
    long n = argc > 2 ? atol(argv[2]) : 1000000;
    int rounds = argc > 3 ? atoi(argv[3]) : 3;
    char err[512];
    store_t *s;
    store_table_t *t;
    term_buf_t b;
    store_fsync_t policy = argc > 4 && strcmp(argv[4], "never") == 0 ? STORE_FSYNC_NEVER
                                                                     : STORE_FSYNC_ALWAYS;
    int rc = store_open(argv[1], policy, &s, err, sizeof err);
    if (rc < 0)
        die(err, rc);
    if (!(t = store_table_find(s, "users")) && (rc = store_table_create(s, "users", 1, &t)) < 0)
        die("create", rc);
    term_buf_init(&b);
    double t0 = now();
    store_batch_begin(s);
    for (long i = 1; i <= n; i++) {
        user(&b, i, 0);
        if ((rc = store_insert(t, b.data, b.len)) < 0)
            die("insert", rc);
        if (i % 10000 == 0) {
            if ((rc = store_batch_end(s)) < 0)
                die("batch", rc);
            store_batch_begin(s);
        }
    }
    if ((rc = store_batch_end(s)) < 0)
        die("batch", rc);
    printf("filled %ld users in %.2f s, RSS %ld MB, log %.1f MB\n", n, now() - t0, rss_mb(),
           store_log_bytes(s) / 1e6);
    {
        /* The same group commits for a second without a compaction, for
         * comparison with those made while one runs. */
        double worst = 0, end = now() + 1.0;
        long writes = 0;
        while (now() < end) {
            double w = now();
            store_batch_begin(s);
            for (int k = 0; k < 10; k++) {
                user(&b, (writes + k) % n + 1, 99);
                if ((rc = store_insert(t, b.data, b.len)) < 0)
                    die("insert", rc);
            }
            if ((rc = store_batch_end(s)) < 0)
                die("batch", rc);
            w = now() - w;
            if (w > worst)
                worst = w;
            writes += 10;
        }
        printf("no compaction: %ld writes in 1 s, longest group commit of 10 %.2f ms\n",
               writes, worst * 1e3);
    }
    for (int r = 1; r <= rounds; r++) {
        /* A bare fork of this process, for comparison with the begin. */
        double f = now();
        pid_t fp = fork();
        if (fp == 0)
            _exit(0);
        f = now() - f;
        waitpid(fp, NULL, 0);
        store_compact_t *c;
        double a = now();
        if ((rc = store_compact_begin(s, &c)) < 0)
            die("begin", rc);
        double held = now() - a;
        pthread_t th;
        atomic_store(&done, 0);
        pthread_create(&th, NULL, wait_main, c);
        /* Writes during the compaction, as the loop would take them. */
        long writes = 0;
        double worst = 0;
        while (!atomic_load(&done)) {
            /* a group commit of 10 writes, as a loop turn of {new, User} */
            long id = 1 + (long)(((unsigned long)writes * 2654435761u) % (unsigned long)n);
            double w = now();
            store_batch_begin(s);
            for (int k = 0; k < 10; k++) {
                user(&b, (id + k) % n + 1, r);
                if ((rc = store_insert(t, b.data, b.len)) < 0)
                    die("insert during compaction", rc);
            }
            if ((rc = store_batch_end(s)) < 0)
                die("batch during compaction", rc);
            w = now() - w;
            if (w > worst)
                worst = w;
            writes += 10;
        }
        pthread_join(th, NULL);
        store_compact_info_t info;
        if ((rc = store_compact_end(s, c, &info)) < 0)
            die("compaction", rc);
        printf("round %d: bare fork %.2f ms; loop held %.2f ms (begin; %.2f ms CPU), total %.0f ms, snapshot %.1f MB of %llu "
               "objects; %ld writes meanwhile, longest group commit of 10 %.2f ms; RSS %ld MB\n",
               r, f * 1e3, held * 1e3, info.begin_cpu_ns / 1e6, info.total_ns / 1e6, info.snap_bytes / 1e6,
               (unsigned long long)info.objects, writes, worst * 1e3, rss_mb());
    }
    term_buf_release(&b);
    store_free(s);
    return 0;
}
