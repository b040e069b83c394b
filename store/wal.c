/* wal.c: the write-ahead log. Encodes and decodes log records (length +
 * CRC32 framing, see wal_int.h) and implements the journal hooks store.c
 * calls before every physical change: append with write(2), then fsync
 * according to the policy. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "store/wal_int.h"
#include "term/mem.h"

/* ---- Buffer ------------------------------------------------------------ */

void wal_buf_release(wal_buf_t *b)
{
    mem_free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

static int wal_buf_reserve(wal_buf_t *b, size_t extra)
{
    if (extra > SIZE_MAX - b->len)
        return -ENOMEM;
    if (b->len + extra <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra)
        cap = cap > SIZE_MAX / 2 ? b->len + extra : cap * 2;
    uint8_t *p = mem_realloc(b->data, cap);
    if (!p)
        return -ENOMEM;
    b->data = p;
    b->cap = cap;
    return 0;
}

int wal_buf_append_raw(wal_buf_t *b, const void *p, size_t n)
{
    int rc = wal_buf_reserve(b, n);
    if (rc < 0)
        return rc;
    if (n > 0)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

static void put_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static void put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (24 - 8 * i));
}

static void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (56 - 8 * i));
}

static uint16_t get_u16(const uint8_t *p)
{
    return (uint16_t)((p[0] << 8) | p[1]);
}

static uint32_t get_u32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) |
           ((uint32_t)p[2] << 8) | p[3];
}

static uint64_t get_u64(const uint8_t *p)
{
    return ((uint64_t)get_u32(p) << 32) | get_u32(p + 4);
}

static uint32_t wal_crc(const uint8_t *p, size_t n)
{
    /* zlib's crc32 takes uInt lengths: feed large records in pieces. */
    uLong c = crc32(0L, Z_NULL, 0);
    while (n > 0) {
        uInt step = n > (1u << 30) ? (1u << 30) : (uInt)n;
        c = crc32(c, p, step);
        p += step;
        n -= step;
    }
    return (uint32_t)c;
}

/* ---- Codec ------------------------------------------------------------- */

int wal_encode(wal_buf_t *b, uint64_t seq, wal_type_t type, const char *name,
               unsigned keypos, const void *payload, size_t plen,
               uint64_t count)
{
    size_t nlen = 0, body;
    switch (type) {
    case WAL_CREATE:
    case WAL_DROP:
    case WAL_PUT:
    case WAL_DELETE:
    case WAL_CLEAR:
        if (!name)
            return -EINVAL;
        nlen = strlen(name);
        if (nlen > WAL_NAME_MAX)
            return -EINVAL;
        body = 2 + nlen;
        if (type == WAL_CREATE)
            body += 4;
        if (type == WAL_PUT || type == WAL_DELETE) {
            if (plen > WAL_REC_MAX)
                return -EINVAL;
            body += plen;
        }
        break;
    case WAL_END:
        body = 8;
        break;
    default:
        return -EINVAL;
    }
    size_t len = WAL_REC_MIN + body;
    if (len > WAL_REC_MAX)
        return -EINVAL;
    int rc = wal_buf_reserve(b, WAL_HDR_LEN + len);
    if (rc < 0)
        return rc;
    uint8_t *h = b->data + b->len, *p = h + WAL_HDR_LEN;
    put_u64(p, seq);
    p[8] = (uint8_t)type;
    p += WAL_REC_MIN;
    if (type == WAL_END) {
        put_u64(p, count);
    } else {
        put_u16(p, (uint16_t)nlen);
        memcpy(p + 2, name, nlen);
        p += 2 + nlen;
        if (type == WAL_CREATE)
            put_u32(p, keypos);
        else if ((type == WAL_PUT || type == WAL_DELETE) && plen > 0)
            memcpy(p, payload, plen);
    }
    put_u32(h, (uint32_t)len);
    put_u32(h + 4, wal_crc(h + WAL_HDR_LEN, len));
    b->len += WAL_HDR_LEN + len;
    return 0;
}

static int decode(const void *buf, size_t len, wal_rec_t *rec, int check_crc)
{
    const uint8_t *h = buf;
    if (len < WAL_HDR_LEN)
        return -EAGAIN;
    uint32_t rlen = get_u32(h);
    if (rlen < WAL_REC_MIN || rlen > WAL_REC_MAX)
        return -EBADMSG;
    if (len - WAL_HDR_LEN < rlen)
        return -EAGAIN;
    const uint8_t *p = h + WAL_HDR_LEN;
    if (check_crc && wal_crc(p, rlen) != get_u32(h + 4))
        return -EBADMSG;

    /* The CRC matched, so what follows is what we wrote, unless a writer
     * of another version or a forger made it: still check every length. */
    memset(rec, 0, sizeof *rec);
    rec->seq = get_u64(p);
    if (rec->seq > WAL_SEQ_MAX)
        return -EBADMSG;
    rec->type = (wal_type_t)p[8];
    rec->size = WAL_HDR_LEN + rlen;
    const uint8_t *b = p + WAL_REC_MIN;
    size_t blen = rlen - WAL_REC_MIN;
    if (rec->type == WAL_END) {
        if (blen != 8)
            return -EBADMSG;
        rec->count = get_u64(b);
        return 0;
    }
    if (rec->type < WAL_CREATE || rec->type > WAL_CLEAR)
        return -EBADMSG;
    if (blen < 2)
        return -EBADMSG;
    size_t nlen = get_u16(b);
    if (nlen == 0 || nlen > WAL_NAME_MAX || nlen > blen - 2)
        return -EBADMSG;
    if (memchr(b + 2, 0, nlen))
        return -EBADMSG;
    memcpy(rec->name, b + 2, nlen);
    rec->name[nlen] = '\0';
    b += 2 + nlen;
    blen -= 2 + nlen;
    switch (rec->type) {
    case WAL_CREATE:
        if (blen != 4)
            return -EBADMSG;
        rec->keypos = get_u32(b);
        if (rec->keypos < 1)
            return -EBADMSG;
        return 0;
    case WAL_PUT:
    case WAL_DELETE:
        if (blen == 0)
            return -EBADMSG;
        rec->payload = b;
        rec->plen = blen;
        return 0;
    default: /* DROP, CLEAR */
        return blen == 0 ? 0 : -EBADMSG;
    }
}

int wal_decode(const void *buf, size_t len, wal_rec_t *rec)
{
    return decode(buf, len, rec, 1);
}

int wal_decode_trusted(const void *buf, size_t len, wal_rec_t *rec)
{
    return decode(buf, len, rec, 0);
}

int wal_valid_record_follows(const void *buf, size_t len, uint64_t after_seq)
{
    const uint8_t *p = buf;
    wal_rec_t rec;
    for (size_t off = 0; off + WAL_HDR_LEN + WAL_REC_MIN <= len; off++) {
        /* Cheap tests first (length, seq, type): most offsets fail them,
         * so the CRC is computed only where a record could really start. */
        uint32_t rlen = get_u32(p + off);
        if (rlen < WAL_REC_MIN || rlen > len - off - WAL_HDR_LEN)
            continue;
        uint64_t seq = get_u64(p + off + WAL_HDR_LEN);
        uint8_t type = p[off + WAL_HDR_LEN + 8];
        if (seq <= after_seq || seq > WAL_SEQ_MAX || type < WAL_CREATE || type > WAL_CLEAR)
            continue;
        if (wal_decode(p + off, len - off, &rec) == 0 && rec.type != WAL_END &&
            rec.seq > after_seq)
            return 1;
    }
    return 0;
}

size_t wal_scatter_stride(size_t n)
{
    if (n <= 2)
        return 1;
    size_t step = (size_t)((double)n * 0.6180339887) | 1;
    for (;; step++) {
        size_t a = step, b = n;
        while (b) {
            size_t t = a % b;
            a = b;
            b = t;
        }
        if (a == 1)
            return step;
    }
}

/* ---- Durable state ----------------------------------------------------- */

int wal_durable_new(const char *dir, store_fsync_t policy, store_durable_t **out)
{
    store_durable_t *d = mem_calloc(1, sizeof *d);
    if (!d)
        return -ENOMEM;
    d->dir = mem_strdup(dir);
    if (!d->dir) {
        mem_free(d);
        return -ENOMEM;
    }
    d->dir_fd = d->lock_fd = d->log_fd = d->next_fd = -1;
    d->policy = policy;
    d->next_seq = 1;
    *out = d;
    return 0;
}

unsigned long wal_test_syncs;
int wal_test_fail_write;
int wal_test_fail_sync;

static void (*sync_observer)(uint64_t ns);

void store_set_sync_observer(void (*cb)(uint64_t ns))
{
    sync_observer = cb;
}

/* fdatasync of the log, through the test hooks, timed for the observer. */
static int log_sync(store_durable_t *d)
{
    struct timespec t0, t1;
    wal_test_syncs++;
    if (wal_test_fail_sync) {
        int rc = wal_test_fail_sync;
        wal_test_fail_sync = 0;
        return rc;
    }
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int rc = fdatasync(d->log_fd) < 0 ? -errno : 0;
    if (sync_observer) {
        clock_gettime(CLOCK_MONOTONIC, &t1);
        sync_observer((uint64_t)(t1.tv_sec - t0.tv_sec) * 1000000000u +
                      (uint64_t)t1.tv_nsec - (uint64_t)t0.tv_nsec);
    }
    return rc;
}

void store_durable_free(store_durable_t *d)
{
    if (!d)
        return;
    wal_compact_discard(d->compacting);
    /* A batch left open is a caller bug, but its records are applied in
     * memory: write them rather than drop them. */
    if (d->batch_depth > 0 && !d->broken)
        (void)wal_batch_write(d);
    /* A periodic policy promises durability within one period; closing
     * cleanly is the end of the last period. */
    if (d->policy != STORE_FSYNC_NEVER)
        (void)wal_sync(d);
    if (d->log_fd >= 0)
        close(d->log_fd);
    if (d->next_fd >= 0)
        close(d->next_fd);
    if (d->dir_fd >= 0)
        close(d->dir_fd);
    /* Closing the lock file releases the flock: do it last. */
    if (d->lock_fd >= 0)
        close(d->lock_fd);
    wal_buf_release(&d->scratch);
    wal_buf_release(&d->pend);
    mem_free(d->dir);
    mem_free(d);
}

int wal_sync(store_durable_t *d)
{
    if (!d || d->log_fd < 0)
        return 0;
    /* A periodic flush in the middle of a batch makes what the batch has
     * appended so far durable too. */
    int rc = wal_batch_write(d);
    if (rc < 0)
        return rc;
    if (!d->dirty)
        return 0;
    rc = log_sync(d);
    if (rc < 0) {
        d->broken = 1; /* as in wal_append() */
        return rc;
    }
    d->dirty = 0;
    return 0;
}

/* Writes all of buf at offset off. pwrite, not write: the log's end is
 * what we say it is, whatever the file offset. */
static int wal_write_all(int fd, const uint8_t *p, size_t n, uint64_t off)
{
    if (wal_test_fail_write) {
        int rc = wal_test_fail_write;
        wal_test_fail_write = 0;
        /* Leave a torn piece behind, as a real short write could. */
        if (n > 1 && pwrite(fd, p, n / 2, (off_t)off) < 0)
            return -errno;
        return rc;
    }
    while (n > 0) {
        ssize_t w = pwrite(fd, p, n, (off_t)off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (w == 0)
            return -EIO;
        p += w;
        n -= (size_t)w;
        off += (uint64_t)w;
    }
    return 0;
}

int wal_batch_write(store_durable_t *d)
{
    if (!d || d->pend.len == 0)
        return 0;
    if (d->broken)
        return -EIO;
    int rc = wal_write_all(d->log_fd, d->pend.data, d->pend.len, d->log_end);
    if (rc < 0) {
        /* The records are applied in memory already, so unlike a single
         * append this cannot be undone by refusing the mutation: cut the
         * torn bytes off (recovery would stop there anyway) and take no
         * more writes until a reopen recovers what reached the disk. */
        if (ftruncate(d->log_fd, (off_t)d->log_end) < 0) {
            /* Broken below either way; recovery cuts a torn tail. */
        }
        d->broken = 1;
        d->pend.len = 0;
        return rc;
    }
    d->log_end += d->pend.len;
    d->pend.len = 0;
    d->dirty = 1;
    return 0;
}

/* Appends one record; the mutation may go ahead only if this returns 0. */
static int wal_append(store_t *s, wal_type_t type, const char *table,
                      unsigned keypos, const void *payload, size_t plen)
{
    store_durable_t *d = store_durable(s);
    if (!d)
        return 0;
    if (d->broken)
        return -EIO;
    if (d->batch_depth > 0) {
        /* Group commit: the record joins the batch's buffer. It counts as
         * appended (the caller changes memory now); store_batch_end()
         * makes it durable or reports that it is not. */
        if (d->pend.len >= WAL_BATCH_FLUSH) {
            int rc = wal_batch_write(d);
            if (rc < 0) {
                if (!d->batch_err)
                    d->batch_err = rc;
                return rc;
            }
        }
        int rc = wal_encode(&d->pend, d->next_seq, type, table, keypos,
                            payload, plen, 0);
        if (rc < 0)
            return rc;
        d->next_seq++;
        d->batch_recs++;
        return 0;
    }
    d->scratch.len = 0;
    int rc = wal_encode(&d->scratch, d->next_seq, type, table, keypos,
                        payload, plen, 0);
    if (rc < 0)
        return rc;
    rc = wal_write_all(d->log_fd, d->scratch.data, d->scratch.len, d->log_end);
    if (rc == 0 && d->policy == STORE_FSYNC_ALWAYS) {
        rc = log_sync(d);
        /* After a failed fsync the kernel may have dropped dirty pages of
         * earlier records too: nothing written since the last good sync can
         * be trusted, so take no more writes until a restart recovers. */
        if (rc < 0)
            d->broken = 1;
    }
    if (rc < 0) {
        /* Part of the record may be on disk. Cut it off, or the next append
         * would follow garbage and recovery would see damage mid-log. If
         * even that fails, refuse all later writes rather than risk it. */
        if (ftruncate(d->log_fd, (off_t)d->log_end) < 0)
            d->broken = 1;
        return rc;
    }
    d->log_end += d->scratch.len;
    d->next_seq++;
    d->dirty = d->policy != STORE_FSYNC_ALWAYS;
    /* A large object would otherwise keep its buffer for good. */
    if (d->scratch.cap > (1u << 20))
        wal_buf_release(&d->scratch);
    return 0;
}

void store_batch_begin(store_t *s)
{
    store_durable_t *d = s ? store_durable(s) : NULL;
    if (!d)
        return;
    if (d->batch_depth++ == 0) {
        d->batch_err = 0;
        d->batch_recs = 0;
    }
}

int store_batch_end(store_t *s)
{
    store_durable_t *d = s ? store_durable(s) : NULL;
    if (!d || d->batch_depth == 0)
        return 0;
    if (--d->batch_depth > 0)
        return 0;
    int rc = d->batch_err;
    d->batch_err = 0;
    /* Broken mid-batch (say a periodic flush failed): what the batch
     * appended is in memory but may not be on disk. */
    if (rc == 0 && d->broken && d->batch_recs > 0)
        rc = -EIO;
    if (rc == 0)
        rc = wal_batch_write(d);
    if (rc == 0 && d->policy == STORE_FSYNC_ALWAYS && d->dirty) {
        rc = log_sync(d);
        if (rc < 0)
            d->broken = 1; /* see wal_append() */
        else
            d->dirty = 0;
    }
    d->pend.len = 0;
    /* A big batch would otherwise keep its buffer for good. */
    if (d->pend.cap > 2 * WAL_BATCH_FLUSH)
        wal_buf_release(&d->pend);
    return rc;
}

int store_journal_create(store_t *s, const char *table, unsigned keypos)
{
    return wal_append(s, WAL_CREATE, table, keypos, NULL, 0);
}

int store_journal_drop(store_t *s, const char *table)
{
    return wal_append(s, WAL_DROP, table, 0, NULL, 0);
}

int store_journal_put(store_t *s, const char *table, const void *obj, size_t len)
{
    if (len == 0)
        return -EINVAL;
    return wal_append(s, WAL_PUT, table, 0, obj, len);
}

int store_journal_delete(store_t *s, const char *table, const void *key, size_t len)
{
    if (len == 0)
        return -EINVAL;
    return wal_append(s, WAL_DELETE, table, 0, key, len);
}

int store_journal_clear(store_t *s, const char *table)
{
    return wal_append(s, WAL_CLEAR, table, 0, NULL, 0);
}
