/* fuzz_store_log: store_open's recovery (snapshot, then log) on arbitrary
 * bytes. The input is split at its first 4 bytes (a big-endian length) into
 * a snapshot file and a log file, written to a private directory. Recovery
 * must succeed or fail cleanly; once it succeeds, writing, snapshotting and
 * reopening must preserve every table's size. */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store/store.h"
#include "store/store_int.h"
#include "store/wal_int.h"

static char dir[256];

static void put_file(const char *name, const uint8_t *p, size_t n)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        abort();
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w <= 0)
            abort();
        p += w;
        n -= (size_t)w;
    }
    close(fd);
}

static void drop_file(const char *name)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    unlink(path);
}

static int size_cb(void *arg, store_table_t *t)
{
    size_t *sum = arg;
    /* Order-independent: tables may come back in another order. */
    *sum += store_table_size(t) * 1000003u + 1;
    return 0;
}

static size_t shape(store_t *s)
{
    size_t sum = 0;
    store_foreach_table(s, size_cb, &sum);
    return sum;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[512];
    if (!dir[0]) {
        const char *tmp = getenv("TMPDIR");
        snprintf(dir, sizeof dir, "%s/etsd-fuzz-log-XXXXXX", tmp && *tmp ? tmp : "/tmp");
        if (!mkdtemp(dir))
            abort();
    }
    size_t snap = 0;
    if (size >= 4) {
        snap = ((size_t)data[0] << 24 | (size_t)data[1] << 16 |
                (size_t)data[2] << 8 | data[3]);
        data += 4;
        size -= 4;
        if (snap > size)
            snap = size;
    }
    drop_file(WAL_SNAP_TMP);
    if (snap > 0)
        put_file(WAL_SNAP_FILE, data, snap);
    else
        drop_file(WAL_SNAP_FILE);
    put_file(WAL_LOG_FILE, data + snap, size - snap);

    store_t *s;
    if (store_open(dir, STORE_FSYNC_NEVER, &s, err, sizeof err) == 0) {
        size_t before = shape(s);
        /* The recovered log must accept appends that replay after it. */
        store_table_t *t = store_table_find(s, "fz");
        if (!t && store_table_create(s, "fz", 1, &t) < 0)
            abort();
        static const uint8_t obj[] = { 104, 1, 97, 7 }; /* {7} */
        if (store_table_keypos(t) == 1 && store_insert(t, obj, sizeof obj) < 0)
            abort();
        size_t mid = shape(s);
        store_free(s);
        if (store_open(dir, STORE_FSYNC_NEVER, &s, err, sizeof err) < 0 || shape(s) != mid)
            abort();
        if (store_snapshot(s) < 0)
            abort();
        store_free(s);
        if (store_open(dir, STORE_FSYNC_NEVER, &s, err, sizeof err) < 0 || shape(s) != mid)
            abort();
        store_free(s);
        (void)before;
    }
    return 0;
}
