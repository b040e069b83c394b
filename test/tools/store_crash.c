/* store_crash: the crash test's writer and checker (durability_SUITE).
 *
 *   store_crash write DIR START [COUNT [BATCH]]   opens DIR with fsync
 *       always and applies the deterministic operations START, START+1, ...
 *       to tables "crash" and "crash_aux" (created and dropped as it goes),
 *       printing "ack N" once operation N is durable. Runs until killed, or
 *       stops cleanly after COUNT operations. With BATCH > 1, about two
 *       thirds of the operations run in group commits (store_batch_begin/
 *       end) of 2..BATCH operations, acknowledged only once
 *       store_batch_end() returned 0; the rest one by one.
 *   store_crash check DIR ACKED [SLACK]   opens DIR and compares both
 *       tables with the model after operations 1..N for N from ACKED+SLACK
 *       down to ACKED (default SLACK 1: an operation may be durable without
 *       having been acknowledged; a batch of B makes that up to B). Prints
 *       "ok N" for the first (largest) N matched, exit 0; or describes the
 *       difference from ACKED and ACKED+1, exit 1.
 * Messages from recovery (a cut torn tail) go to stderr as "note: ...".
 *
 * The writer compacts as etsd does: every 50th operation starts a
 * compaction (store_compact_begin()), waited for in a second thread while
 * writes go on, and ended between two operations; every 150th operation
 * instead runs store_snapshot(), the blocking form, inside a batch if one
 * is open. STORE_CRASH_STEP=N (a store_step_t) makes the writer die by
 * SIGKILL at that step of a compaction, as a crash there would. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/store.h"
#include "store/store_int.h"
#include "store/wal_int.h"
#include "term/mem.h"

#define KEYS 64
#define AUX_KEYS 16
#define TABLE "crash"
#define AUX "crash_aux"  /* created by its first put, dropped now and then */

static uint64_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

typedef enum { OP_PUT, OP_DELETE, OP_CLEAR, OP_AUX_PUT, OP_AUX_DROP } op_kind_t;

/* Operation i (i >= 1): mostly puts to TABLE, some deletes, rare clears;
 * puts to AUX and rare drops of it. Every 50th operation is followed by a
 * snapshot in the writer. */
static op_kind_t op_kind(uint64_t i, unsigned *key)
{
    uint64_t h = mix(i);
    *key = (unsigned)(h % KEYS);
    unsigned r = (unsigned)((h >> 20) % 200);
    if (r < 140)
        return OP_PUT;
    if (r < 180)
        return OP_DELETE;
    if (r < 182)
        return OP_CLEAR;
    *key %= AUX_KEYS;
    return r < 198 ? OP_AUX_PUT : OP_AUX_DROP;
}

/* The object op i puts: {Key, I, <<Payload>>}, payload 0..299 bytes. */
static void encode_obj(term_buf_t *b, unsigned key, uint64_t i)
{
    uint8_t payload[300];
    size_t n = (size_t)(mix(i ^ 0x5555) % sizeof payload);
    for (size_t j = 0; j < n; j++)
        payload[j] = (uint8_t)(i + j * 7);
    term_put_tuple(b, 3);
    term_put_long(b, key);
    term_put_long(b, (int64_t)i);
    term_put_binary(b, payload, n);
}

static void encode_key(term_buf_t *b, unsigned key)
{
    term_put_long(b, key);
}

/* ---- Compaction in the background ------------------------------------- */

static store_compact_t *compacting;
static pthread_t waiter;
static atomic_int waited;

static void *wait_main(void *arg)
{
    (void)store_compact_wait(arg);
    atomic_store(&waited, 1);
    return NULL;
}

/* Ends the running compaction if its wait is over (or, with block, once
 * it is). 0, or its error. */
static int compact_reap(store_t *s, int block)
{
    if (!compacting || (!block && !atomic_load(&waited)))
        return 0;
    pthread_join(waiter, NULL);
    store_compact_info_t info;
    int rc = store_compact_end(s, compacting, &info);
    compacting = NULL;
    if (rc < 0)
        fprintf(stderr, "error: compaction: %s\n", strerror(-rc));
    return rc;
}

/* After operation i: the compaction schedule described at the top. */
static int compact_tick(store_t *s, uint64_t i)
{
    int rc = compact_reap(s, 0);
    if (rc < 0 || i % 50 != 0)
        return rc;
    if (i % 150 == 0) {
        if ((rc = compact_reap(s, 1)) < 0)
            return rc;
        if ((rc = store_snapshot(s)) < 0)
            fprintf(stderr, "error: snapshot: %s\n", strerror(-rc));
        return rc;
    }
    if (compacting)
        return 0;
    rc = store_compact_begin(s, &compacting);
    if (rc < 0) {
        compacting = NULL;
        fprintf(stderr, "error: compaction begin: %s\n", strerror(-rc));
        return rc;
    }
    atomic_store(&waited, 0);
    if (pthread_create(&waiter, NULL, wait_main, compacting) != 0) {
        (void)store_compact_wait(compacting);
        atomic_store(&waited, 1);
        pthread_create(&waiter, NULL, wait_main, compacting); /* joins at once */
    }
    return 0;
}

static void close_store(store_t *s)
{
    (void)compact_reap(s, 1);
    store_free(s);
}

static int open_store(const char *dir, store_t **s)
{
    char err[512];
    int rc = store_open(dir, STORE_FSYNC_ALWAYS, s, err, sizeof err);
    if (err[0])
        fprintf(stderr, "%s: %s\n", rc < 0 ? "error" : "note", err);
    if (rc < 0)
        fprintf(stderr, "error: store_open: %s\n", strerror(-rc));
    return rc;
}

static int apply(store_t *s, store_table_t *t, uint64_t i)
{
    unsigned key;
    op_kind_t k = op_kind(i, &key);
    term_buf_t b;
    term_buf_init(&b);
    int rc = 0;
    store_table_t *aux = store_table_find(s, AUX);
    switch (k) {
    case OP_PUT:
        encode_obj(&b, key, i);
        rc = b.err ? b.err : store_insert(t, b.data, b.len);
        break;
    case OP_DELETE:
        encode_key(&b, key);
        rc = b.err ? b.err : store_table_remove(t, b.data, b.len);
        if (rc == -ENOENT)
            rc = 0;
        break;
    case OP_CLEAR:
        rc = store_table_clear(t);
        break;
    case OP_AUX_PUT:
        if (!aux)
            rc = store_table_create(s, AUX, 1, &aux);
        encode_obj(&b, key, i);
        if (rc == 0)
            rc = b.err ? b.err : store_insert(aux, b.data, b.len);
        break;
    case OP_AUX_DROP:
        if (aux)
            rc = store_table_drop(s, AUX);
        break;
    }
    term_buf_release(&b);
    return rc;
}

static int ack_range(uint64_t from, uint64_t to)
{
    for (uint64_t i = from; i <= to; i++)
        printf("ack %llu\n", (unsigned long long)i);
    return fflush(stdout);
}

/* Operations i .. i+n-1 as one group commit; acknowledged after its end. */
static int write_batch(store_t *s, store_table_t *t, uint64_t i, uint64_t n)
{
    int rc = 0;
    store_batch_begin(s);
    for (uint64_t j = i; j < i + n && rc == 0; j++) {
        rc = apply(s, t, j);
        if (rc < 0)
            fprintf(stderr, "error: op %llu: %s\n", (unsigned long long)j, strerror(-rc));
        /* A compaction inside a batch writes the batch so far first. */
        else
            rc = compact_tick(s, j);
    }
    int brc = store_batch_end(s);
    if (rc == 0 && brc < 0) {
        fprintf(stderr, "error: batch end at op %llu: %s\n",
                (unsigned long long)(i + n - 1), strerror(-brc));
        rc = brc;
    }
    if (rc == 0)
        ack_range(i, i + n - 1);
    return rc;
}

static int do_write_batched(const char *dir, uint64_t start, uint64_t count,
                            uint64_t batch)
{
    store_t *s;
    if (open_store(dir, &s) < 0)
        return 2;
    store_table_t *t = store_table_find(s, TABLE);
    int rc = 0;
    if (!t)
        rc = store_table_create(s, TABLE, 1, &t);
    if (rc < 0) {
        fprintf(stderr, "error: create: %s\n", strerror(-rc));
        store_free(s);
        return 2;
    }
    printf("ready\n");
    fflush(stdout);
    for (uint64_t i = start; i < start + count && rc == 0;) {
        uint64_t h = mix(i ^ 0xb47c), n = 1;
        if (h % 3 != 0)
            n = 2 + (h >> 8) % (batch - 1);
        if (n > start + count - i)
            n = start + count - i;
        if (n == 1) {
            rc = apply(s, t, i);
            if (rc < 0)
                fprintf(stderr, "error: op %llu: %s\n", (unsigned long long)i,
                        strerror(-rc));
            else
                ack_range(i, i);
            if (rc == 0)
                rc = compact_tick(s, i);
        } else {
            rc = write_batch(s, t, i, n);
        }
        i += n;
    }
    close_store(s);
    return rc < 0 ? 2 : 0;
}

static int do_write(const char *dir, uint64_t start, uint64_t count)
{
    store_t *s;
    if (open_store(dir, &s) < 0)
        return 2;
    store_table_t *t = store_table_find(s, TABLE);
    int rc = 0;
    if (!t)
        rc = store_table_create(s, TABLE, 1, &t);
    if (rc < 0) {
        fprintf(stderr, "error: create: %s\n", strerror(-rc));
        store_free(s);
        return 2;
    }
    printf("ready\n");
    fflush(stdout);
    for (uint64_t i = start; i < start + count; i++) {
        rc = apply(s, t, i);
        if (rc < 0) {
            fprintf(stderr, "error: op %llu: %s\n", (unsigned long long)i,
                    strerror(-rc));
            store_free(s);
            return 2;
        }
        printf("ack %llu\n", (unsigned long long)i);
        fflush(stdout);
        if ((rc = compact_tick(s, i)) < 0) {
            close_store(s);
            return 2;
        }
    }
    close_store(s);
    return 0;
}

/* The model after operations 1..n: for each key of TABLE and of AUX, the
 * op that last put it, or 0. A dropped AUX is empty, as is one never
 * created: the checker reads an absent table as empty. */
static void model(uint64_t n, uint64_t last[KEYS], uint64_t aux[AUX_KEYS])
{
    memset(last, 0, KEYS * sizeof *last);
    memset(aux, 0, AUX_KEYS * sizeof *aux);
    for (uint64_t i = 1; i <= n; i++) {
        unsigned key;
        switch (op_kind(i, &key)) {
        case OP_PUT:
            last[key] = i;
            break;
        case OP_DELETE:
            last[key] = 0;
            break;
        case OP_CLEAR:
            memset(last, 0, KEYS * sizeof *last);
            break;
        case OP_AUX_PUT:
            aux[key] = i;
            break;
        case OP_AUX_DROP:
            memset(aux, 0, AUX_KEYS * sizeof *aux);
            break;
        }
    }
}

/* 0 if t (NULL: absent, so empty) holds exactly the model; else 1 with a
 * description of the first difference in why. */
static int compare(const char *name, store_table_t *t, const uint64_t *last,
                   unsigned keys, char *why, size_t wl)
{
    size_t want = 0;
    term_buf_t k, o, got;
    term_buf_init(&k);
    term_buf_init(&o);
    term_buf_init(&got);
    int diff = 0;
    for (unsigned key = 0; key < keys && !diff; key++) {
        term_buf_reset(&k);
        term_buf_reset(&got);
        encode_key(&k, key);
        int rc = t ? store_lookup(t, k.data, k.len, &got) : -ENOENT;
        if (last[key] == 0) {
            if (rc != -ENOENT) {
                snprintf(why, wl, "%s key %u: present, model says absent", name, key);
                diff = 1;
            }
            continue;
        }
        want++;
        term_buf_reset(&o);
        encode_obj(&o, key, last[key]);
        if (rc < 0) {
            snprintf(why, wl, "%s key %u: absent (%s), model has op %llu", name, key,
                     strerror(-rc), (unsigned long long)last[key]);
            diff = 1;
        } else if (got.len != o.len || memcmp(got.data, o.data, o.len)) {
            snprintf(why, wl, "%s key %u: object differs from op %llu", name, key,
                     (unsigned long long)last[key]);
            diff = 1;
        }
    }
    if (!diff && (t ? store_table_size(t) : 0) != want) {
        snprintf(why, wl, "%s size %zu, model %zu", name, t ? store_table_size(t) : 0,
                 want);
        diff = 1;
    }
    term_buf_release(&k);
    term_buf_release(&o);
    term_buf_release(&got);
    return diff;
}

static int do_check(const char *dir, uint64_t acked, uint64_t slack)
{
    store_t *s;
    if (open_store(dir, &s) < 0)
        return 1;
    store_table_t *t = store_table_find(s, TABLE), *a = store_table_find(s, AUX);
    uint64_t last[KEYS], aux[AUX_KEYS];
    char why1[256], why2[256], why[256];
    /* Prefer the later state: if two match, the ops between them changed
     * nothing and applying them again is harmless. */
    for (uint64_t n = acked + slack;; n--) {
        model(n, last, aux);
        int d = compare(TABLE, t, last, KEYS, why, sizeof why) ||
                compare(AUX, a, aux, AUX_KEYS, why, sizeof why);
        if (!d) {
            store_free(s);
            printf("ok %llu\n", (unsigned long long)n);
            return 0;
        }
        if (n == acked + 1)
            memcpy(why2, why, sizeof why);
        if (n == acked) {
            memcpy(why1, why, sizeof why);
            break;
        }
    }
    store_free(s);
    printf("mismatch after %llu acknowledged ops: %s; against one more: %s\n",
           (unsigned long long)acked, why1, why2);
    return 1;
}

static int parse_u64(const char *a, unsigned long long *v)
{
    char *end;
    errno = 0;
    *v = strtoull(a, &end, 10);
    if (errno || *end || !*a) {
        fprintf(stderr, "store_crash: bad number %s\n", a);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 4 || argc > 6) {
        fprintf(stderr, "usage: store_crash write DIR START [COUNT [BATCH]] | "
                        "check DIR ACKED [SLACK]\n");
        return 2;
    }
    unsigned long long n, count = UINT64_MAX / 2, extra = 1;
    const char *crash = getenv("STORE_CRASH_STEP");
    if (crash && *crash) {
        unsigned long long st;
        if (parse_u64(crash, &st) < 0 || st >= STORE_STEP_COUNT)
            return 2;
        store_test_crash_step = (store_step_t)st;
    }
    if (parse_u64(argv[3], &n) < 0 || (argc >= 5 && parse_u64(argv[4], &count) < 0) ||
        (argc == 6 && parse_u64(argv[5], &extra) < 0))
        return 2;
    if (!strcmp(argv[1], "write") && argc == 6 && extra > 1)
        return do_write_batched(argv[2], n < 1 ? 1 : n, count, extra);
    if (!strcmp(argv[1], "write"))
        return do_write(argv[2], n < 1 ? 1 : n, count);
    if (!strcmp(argv[1], "check") && argc <= 5)
        return do_check(argv[2], n, argc == 5 ? (count < 1 ? 1 : count) : 1);
    fprintf(stderr, "store_crash: unknown mode %s\n", argv[1]);
    return 2;
}
