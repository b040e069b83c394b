/* fuzz_store_log: store_open's recovery (snapshot, then log) on arbitrary
 * bytes. The input is split at its first 4 bytes (a big-endian length) into
 * a snapshot file and a log file, written to a private directory; if the
 * length's top bit is set, every record's CRC is recomputed first, so the
 * fuzzer also reaches replay with well-framed but hostile records. Recovery
 * must succeed or fail cleanly; once it succeeds, writing, snapshotting and
 * reopening must preserve every table's size. */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

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

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Rewrites the CRC of every record that the framing reaches in p[0..n),
 * after the 8-byte magic. */
static void fix_crcs(uint8_t *p, size_t n)
{
    size_t off = WAL_MAGIC_LEN;
    while (off + WAL_HDR_LEN <= n) {
        uint32_t len = get32(p + off);
        if (len < WAL_REC_MIN || len > n - off - WAL_HDR_LEN)
            return;
        uint32_t c = (uint32_t)crc32(crc32(0L, Z_NULL, 0), p + off + WAL_HDR_LEN, len);
        p[off + 4] = (uint8_t)(c >> 24);
        p[off + 5] = (uint8_t)(c >> 16);
        p[off + 6] = (uint8_t)(c >> 8);
        p[off + 7] = (uint8_t)c;
        off += WAL_HDR_LEN + len;
    }
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

static void remove_dir(void)
{
    drop_file(WAL_LOG_FILE);
    drop_file(WAL_SNAP_FILE);
    drop_file(WAL_SNAP_TMP);
    drop_file(WAL_NEXT_FILE);
    drop_file(WAL_LOCK_FILE);
    rmdir(dir);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[512];
    if (!dir[0]) {
        const char *tmp = getenv("TMPDIR");
        snprintf(dir, sizeof dir, "%s/etsd-fuzz-log-XXXXXX", tmp && *tmp ? tmp : "/tmp");
        if (!mkdtemp(dir))
            abort();
        atexit(remove_dir);
    }
    size_t snap = 0;
    int fix = 0;
    if (size >= 4) {
        snap = get32(data) & 0x7fffffffu;
        fix = (data[0] & 0x80) != 0;
        data += 4;
        size -= 4;
        if (snap > size)
            snap = size;
    }
    uint8_t *copy = malloc(size ? size : 1);
    if (!copy)
        abort();
    memcpy(copy, data, size);
    if (fix) {
        fix_crcs(copy, snap);
        fix_crcs(copy + snap, size - snap);
    }
    drop_file(WAL_SNAP_TMP);
    drop_file(WAL_NEXT_FILE);
    if (snap > 0)
        put_file(WAL_SNAP_FILE, copy, snap);
    else
        drop_file(WAL_SNAP_FILE);
    put_file(WAL_LOG_FILE, copy + snap, size - snap);
    free(copy);

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
