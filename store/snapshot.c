/* snapshot.c: a durable store's data directory. Opening it (lock, load the
 * snapshot, replay log segments and the log through the store's own
 * functions, cut a torn tail), the snapshot file's writer, and flushing
 * the log. Compaction (writing snapshots) is in compact.c. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <dirent.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/wal_int.h"
#include "term/mem.h"

void store_set_err(char *errbuf, size_t errlen, const char *fmt, ...)
{
    if (!errbuf || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errbuf, errlen, fmt, ap);
    va_end(ap);
}

/* A file mapped read-only; an empty file maps to len 0 and data NULL. */
typedef struct mapped {
    const uint8_t *data;
    size_t len;
} mapped_t;

static int map_fd(int fd, mapped_t *m)
{
    struct stat st;
    m->data = NULL;
    m->len = 0;
    if (fstat(fd, &st) < 0)
        return -errno;
    if (st.st_size == 0)
        return 0;
    if ((uint64_t)st.st_size > SIZE_MAX)
        return -EFBIG;
    void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED)
        return -errno;
    m->data = p;
    m->len = (size_t)st.st_size;
    return 0;
}

static void unmap(mapped_t *m)
{
    if (m->data)
        munmap((void *)m->data, m->len);
    m->data = NULL;
    m->len = 0;
}

/* ---- Applying records -------------------------------------------------- */

/* Applies one record through the store's normal functions (the journal
 * hooks do nothing: the durable state is attached after recovery).
 * Returns 0, -ENOMEM, or -EBADMSG with *why set: a record that does not
 * fit the state built so far is damage too. */
static int apply_record(store_t *s, const wal_rec_t *r, const char **why)
{
    store_table_t *t = NULL;
    int rc;
    if (r->type != WAL_CREATE) {
        t = store_table_find(s, r->name);
        if (!t) {
            *why = "record for a table that does not exist";
            return -EBADMSG;
        }
    }
    switch (r->type) {
    case WAL_CREATE:
        rc = store_table_create(s, r->name, r->keypos, &t);
        if (rc == -EEXIST)
            *why = "creates a table that already exists";
        else if (rc == -EINVAL)
            *why = "creates a table with an invalid keypos";
        break;
    case WAL_DROP:
        rc = store_table_drop(s, r->name);
        break;
    case WAL_PUT:
        rc = store_insert(t, r->payload, r->plen);
        if (rc == -EINVAL || rc == -EPROTO)
            *why = "object is not a valid tuple for its table";
        break;
    case WAL_DELETE:
        /* Keys are journaled in canonical form. A delete is journaled only
         * for a present key, but absent is harmless: the result is the same. */
        rc = store_table_remove(t, r->payload, r->plen);
        if (rc == -ENOENT)
            rc = 0;
        else if (rc == -EINVAL || rc == -EPROTO)
            *why = "key is not a valid term";
        break;
    case WAL_CLEAR:
        rc = store_table_clear(t);
        break;
    default:
        *why = "unexpected record type";
        return -EBADMSG;
    }
    if (rc == -ENOMEM || rc == 0)
        return rc;
    if (!*why)
        *why = "store refused the record";
    return -EBADMSG;
}

/* ---- Snapshot ---------------------------------------------------------- */

/* Applies the PUT records at offs[0..n) in an order far from the one they
 * were written in, the table's hash-slot order (see wal_scatter_stride()). */
static int apply_scattered(store_t *s, const mapped_t *m, const size_t *offs,
                           size_t n, size_t *bad_off, const char **why)
{
    size_t step = wal_scatter_stride(n);
    size_t j = 0;
    for (size_t k = 0; k < n; k++) {
        wal_rec_t r;
        size_t off = offs[j];
        /* Validated in the first pass; the second skips only the CRC and
         * still checks every length. */
        if (wal_decode_trusted(m->data + off, m->len - off, &r) < 0)
            return -EIO;
        int rc = apply_record(s, &r, why);
        if (rc < 0) {
            *bad_off = off;
            return rc;
        }
        j += step;
        if (j >= n)
            j -= n;
    }
    return 0;
}

/* Loads the snapshot, if any, into s and sets *lsn to the last log seq it
 * contains (0 without a snapshot). The whole file is validated before
 * anything is applied, so damage never leaves a half-loaded store. */
static int load_snapshot(store_durable_t *d, store_t *s, uint64_t *lsn,
                         char *errbuf, size_t errlen)
{
    *lsn = 0;
    int fd = openat(d->dir_fd, WAL_SNAP_FILE, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            return 0;
        int rc = -errno;
        store_set_err(errbuf, errlen, "%s/%s: %s", d->dir, WAL_SNAP_FILE, strerror(-rc));
        return rc;
    }
    mapped_t m;
    int rc = map_fd(fd, &m);
    close(fd);
    if (rc < 0) {
        store_set_err(errbuf, errlen, "%s/%s: %s", d->dir, WAL_SNAP_FILE, strerror(-rc));
        return rc;
    }
    const char *why = NULL;
    size_t off = 0, *offs = NULL, cap = 0;
    uint64_t records = 0, seq = 0;
    int ended = 0;
    if (m.len < WAL_MAGIC_LEN || memcmp(m.data, WAL_SNAP_MAGIC, WAL_MAGIC_LEN)) {
        why = "not a snapshot file (bad magic)";
        goto bad;
    }
    /* Pass 1: framing, CRCs, seqs, types and the end record. */
    off = WAL_MAGIC_LEN;
    while (off < m.len) {
        wal_rec_t r;
        rc = wal_decode(m.data + off, m.len - off, &r);
        if (rc == -EAGAIN) {
            why = "truncated record";
            goto bad;
        }
        if (rc < 0) {
            why = "corrupt record (length or CRC)";
            goto bad;
        }
        if (records == 0 && r.type != WAL_END)
            seq = r.seq;
        if (r.type == WAL_END) {
            if (r.count != records) {
                why = "record count in the end record does not match";
                goto bad;
            }
            if (records > 0 && r.seq != seq) {
                why = "end record seq differs from its records";
                goto bad;
            }
            seq = r.seq;
            off += r.size;
            if (off != m.len) {
                why = "bytes after the end record";
                goto bad;
            }
            ended = 1;
            break;
        }
        if (r.seq != seq) {
            why = "records with different seq";
            goto bad;
        }
        if (r.type != WAL_CREATE && r.type != WAL_PUT) {
            why = "record type not allowed in a snapshot";
            goto bad;
        }
        if (records == cap) {
            size_t ncap = cap ? cap * 2 : 1024;
            size_t *n = mem_realloc(offs, ncap * sizeof *offs);
            if (!n) {
                rc = -ENOMEM;
                goto oom;
            }
            offs = n;
            cap = ncap;
        }
        offs[records++] = off;
        off += r.size;
    }
    if (!ended) {
        why = "no end record (truncated snapshot)";
        goto bad;
    }
    /* Pass 2: each CREATE, then that table's PUTs, scattered. */
    for (size_t i = 0; i < records;) {
        wal_rec_t r;
        off = offs[i];
        if (wal_decode_trusted(m.data + off, m.len - off, &r) < 0 ||
            r.type != WAL_CREATE) {
            why = "objects before their table's create record";
            records = i;
            goto bad;
        }
        rc = apply_record(s, &r, &why);
        if (rc == -ENOMEM)
            goto oom;
        if (rc < 0) {
            records = i;
            goto bad;
        }
        size_t a = ++i;
        while (i < records && m.data[offs[i] + WAL_HDR_LEN + 8] == WAL_PUT)
            i++;
        rc = apply_scattered(s, &m, offs + a, i - a, &off, &why);
        if (rc == -ENOMEM)
            goto oom;
        if (rc < 0) {
            records = a;
            goto bad;
        }
    }
    mem_free(offs);
    d->snap_bytes = m.len;
    unmap(&m);
    *lsn = seq;
    return 0;

oom:
    store_set_err(errbuf, errlen, "%s/%s: out of memory", d->dir, WAL_SNAP_FILE);
    mem_free(offs);
    unmap(&m);
    return rc;
bad:
    store_set_err(errbuf, errlen, "%s/%s: damaged at offset %zu (record %llu): %s",
            d->dir, WAL_SNAP_FILE, off, (unsigned long long)records + 1,
            why ? why : "invalid record");
    mem_free(offs);
    unmap(&m);
    return -EBADMSG;
}

/* ---- Log --------------------------------------------------------------- */

static int fsync_dir(store_durable_t *d)
{
    return fsync(d->dir_fd) < 0 ? -errno : 0;
}

/* Writes a fresh log header over whatever the file holds. */
static int log_init(store_durable_t *d)
{
    if (ftruncate(d->log_fd, 0) < 0)
        return -errno;
    ssize_t w = pwrite(d->log_fd, WAL_LOG_MAGIC, WAL_MAGIC_LEN, 0);
    if (w != WAL_MAGIC_LEN)
        return w < 0 ? -errno : -EIO;
    if (fdatasync(d->log_fd) < 0)
        return -errno;
    d->log_end = WAL_MAGIC_LEN;
    return fsync_dir(d);
}

/* Replays one log file (mapped in m, named name for messages) into s,
 * skipping records the snapshot already holds (seq <= lsn). *prev is the
 * last seq seen before this file (seqs must increase across files) and is
 * updated; *last is the last seq applied. *end gets the offset where valid
 * records end: a torn tail starts there. max_seq (0: none) is the largest
 * seq a segment named after it may hold. */
static int replay_mapped(store_durable_t *d, store_t *s, const mapped_t *m,
                         const char *name, uint64_t lsn, uint64_t max_seq,
                         uint64_t *prev, uint64_t *last, size_t *end,
                         char *errbuf, size_t errlen)
{
    size_t off = WAL_MAGIC_LEN;
    const char *why = NULL;
    int rc;
    if (m->len < WAL_MAGIC_LEN || memcmp(m->data, WAL_LOG_MAGIC, WAL_MAGIC_LEN)) {
        store_set_err(errbuf, errlen, "%s/%s: not a log file (bad magic)", d->dir, name);
        return -EBADMSG;
    }
    while (off < m->len) {
        wal_rec_t r;
        rc = wal_decode(m->data + off, m->len - off, &r);
        /* A crash can only tear the last append, so a valid later record
         * means this one was damaged in place: refuse, never drop it. That
         * covers a length field grown by a flipped bit, which looks like a
         * record running past the end (-EAGAIN). (A record forged inside
         * an object's bytes, torn mid-append, would be refused too.) */
        if (rc < 0 &&
            wal_valid_record_follows(m->data + off + 1, m->len - off - 1, *prev)) {
            why = "corrupt record (length or CRC) followed by valid records";
            goto bad;
        }
        if (rc < 0)
            break; /* torn tail: the caller decides */
        if (r.type == WAL_END) {
            why = "end record in a log";
            goto bad;
        }
        if (r.seq <= *prev) {
            why = "record seq not increasing";
            goto bad;
        }
        if (max_seq && r.seq > max_seq) {
            why = "record seq past the segment's last";
            goto bad;
        }
        *prev = r.seq;
        if (r.seq > lsn) {
            why = NULL;
            rc = apply_record(s, &r, &why);
            if (rc == -ENOMEM) {
                store_set_err(errbuf, errlen, "%s/%s: out of memory", d->dir, name);
                return rc;
            }
            if (rc < 0)
                goto bad;
            *last = r.seq;
        }
        off += r.size;
    }
    *end = off;
    return 0;

bad:
    store_set_err(errbuf, errlen, "%s/%s: damaged at offset %zu (after record seq "
            "%llu): %s", d->dir, name, off, (unsigned long long)*prev,
            why ? why : "invalid record");
    return -EBADMSG;
}

/* Segments a compaction renamed away and no snapshot covers yet, in seq
 * order; the covered ones (seq <= lsn: a crash before their deletion) are
 * deleted here. On success *out (NULL when none) is new: mem_free() it. */
static int list_segments(store_durable_t *d, uint64_t lsn, uint64_t **out, size_t *n,
                         char *errbuf, size_t errlen)
{
    *out = NULL;
    *n = 0;
    /* A descriptor of its own: a dup would share the read position. */
    int fd = openat(d->dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    DIR *dp = fdopendir(fd);
    if (!dp) {
        int rc = -errno;
        close(fd);
        return rc;
    }
    uint64_t *v = NULL;
    size_t cap = 0, k = 0;
    int rc = 0;
    struct dirent *e;
    while ((e = readdir(dp)) != NULL) {
        uint64_t seq;
        if (!wal_segment_name(e->d_name, &seq))
            continue;
        if (seq <= lsn) {
            /* Harmless if it stays: recovery skips its records. */
            (void)unlinkat(d->dir_fd, e->d_name, 0);
            continue;
        }
        if (k == cap) {
            size_t nc = cap ? cap * 2 : 8;
            uint64_t *nv = mem_realloc(v, nc * sizeof *nv);
            if (!nv) {
                rc = -ENOMEM;
                store_set_err(errbuf, errlen, "%s: out of memory", d->dir);
                break;
            }
            v = nv;
            cap = nc;
        }
        v[k++] = seq;
    }
    closedir(dp);
    if (rc < 0) {
        mem_free(v);
        return rc;
    }
    /* Few segments (one per failed compaction): insertion sort. */
    for (size_t i = 1; i < k; i++)
        for (size_t j = i; j > 0 && v[j - 1] > v[j]; j--) {
            uint64_t t = v[j];
            v[j] = v[j - 1];
            v[j - 1] = t;
        }
    *out = v;
    *n = k;
    return 0;
}

/* Replays the segments, then the log, into s, skipping records the
 * snapshot already holds (seq <= lsn). A torn tail of the log is cut off
 * and described in errbuf; one in a segment (its unsynced end lost with
 * the machine, under --fsync never or MS) is described and left: the next
 * compaction deletes the segment. */
static int replay_log(store_durable_t *d, store_t *s, uint64_t lsn,
                      char *errbuf, size_t errlen)
{
    uint64_t *segs = NULL, prev = 0, last = lsn;
    size_t nsegs = 0, end = 0;
    mapped_t m;
    char name[64];
    int rc = list_segments(d, lsn, &segs, &nsegs, errbuf, errlen);
    if (rc < 0) {
        if (errbuf && !errbuf[0])
            store_set_err(errbuf, errlen, "%s: listing segments: %s", d->dir, strerror(-rc));
        return rc;
    }
    char note[256] = "";
    for (size_t i = 0; i < nsegs; i++) {
        snprintf(name, sizeof name, WAL_SEG_PREFIX "%llu", (unsigned long long)segs[i]);
        int fd = openat(d->dir_fd, name, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            rc = -errno;
            store_set_err(errbuf, errlen, "%s/%s: %s", d->dir, name, strerror(-rc));
            goto out;
        }
        rc = map_fd(fd, &m);
        close(fd);
        if (rc < 0) {
            store_set_err(errbuf, errlen, "%s/%s: %s", d->dir, name, strerror(-rc));
            goto out;
        }
        rc = replay_mapped(d, s, &m, name, lsn, segs[i], &prev, &last, &end, errbuf,
                           errlen);
        if (rc == 0 && end < m.len)
            snprintf(note, sizeof note, "%s/%s: torn tail at offset %zu: %zu bytes "
                     "after record seq %llu ignored", d->dir, name, end, m.len - end,
                     (unsigned long long)prev);
        if (rc == 0)
            d->seg_bytes += end - WAL_MAGIC_LEN;
        unmap(&m);
        if (rc < 0)
            goto out;
    }

    d->log_fd = openat(d->dir_fd, WAL_LOG_FILE, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (d->log_fd < 0) {
        rc = -errno;
        store_set_err(errbuf, errlen, "%s/%s: %s", d->dir, WAL_LOG_FILE, strerror(-rc));
        goto out;
    }
    rc = map_fd(d->log_fd, &m);
    if (rc < 0) {
        store_set_err(errbuf, errlen, "%s/%s: %s", d->dir, WAL_LOG_FILE, strerror(-rc));
        goto out;
    }
    if (m.len < WAL_MAGIC_LEN && memcmp(m.data ? (const void *)m.data : "",
                                        WAL_LOG_MAGIC, m.len) == 0) {
        /* New, or a crash while it was being created. */
        unmap(&m);
        rc = log_init(d);
        if (rc < 0)
            store_set_err(errbuf, errlen, "%s/%s: %s", d->dir, WAL_LOG_FILE, strerror(-rc));
        d->next_seq = (prev > last ? prev : last) + 1;
        goto out;
    }
    rc = replay_mapped(d, s, &m, WAL_LOG_FILE, lsn, 0, &prev, &last, &end, errbuf, errlen);
    size_t total = m.len;
    unmap(&m);
    if (rc < 0)
        goto out;
    if (end < total) {
        if (ftruncate(d->log_fd, (off_t)end) < 0 || fdatasync(d->log_fd) < 0) {
            rc = -errno;
            store_set_err(errbuf, errlen, "%s/%s: cutting torn tail: %s", d->dir,
                    WAL_LOG_FILE, strerror(-rc));
            goto out;
        }
        store_set_err(errbuf, errlen,
                "%s/%s: torn tail at offset %zu: dropped %zu bytes after "
                "record seq %llu (an append cut short by a crash)",
                d->dir, WAL_LOG_FILE, end, total - end, (unsigned long long)prev);
    } else if (note[0]) {
        store_set_err(errbuf, errlen, "%s", note);
    }
    d->log_end = end;
    d->next_seq = (prev > last ? prev : last) + 1;
out:
    mem_free(segs);
    return rc;
}

/* A crash after a compaction switched logs, before its thread renamed
 * them, leaves the log in store.wal.next (it has records) and the one
 * before it in store.wal: put the names right before reading, as the
 * thread would have. A store.wal.next without records was made ahead of
 * time and never used: it goes (store_open() makes a new one). */
static int promote_next(store_durable_t *d, char *errbuf, size_t errlen)
{
    int fd = openat(d->dir_fd, WAL_NEXT_FILE, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            return 0;
        int rc = -errno;
        store_set_err(errbuf, errlen, "%s/%s: %s", d->dir, WAL_NEXT_FILE, strerror(-rc));
        return rc;
    }
    mapped_t m;
    int rc = map_fd(fd, &m);
    close(fd);
    if (rc < 0) {
        store_set_err(errbuf, errlen, "%s/%s: %s", d->dir, WAL_NEXT_FILE, strerror(-rc));
        return rc;
    }
    wal_rec_t r;
    uint64_t first = 0;
    int has = m.len > WAL_MAGIC_LEN && memcmp(m.data, WAL_LOG_MAGIC, WAL_MAGIC_LEN) == 0 &&
              wal_decode(m.data + WAL_MAGIC_LEN, m.len - WAL_MAGIC_LEN, &r) == 0 &&
              r.type != WAL_END;
    if (has)
        first = r.seq;
    /* Its first record torn (the crash cut the first append): nothing in
     * it was acknowledged, unless valid records follow: damage, not a tear. */
    int damaged = !has && m.len > WAL_MAGIC_LEN + 1 &&
                  wal_valid_record_follows(m.data + WAL_MAGIC_LEN + 1,
                                           m.len - WAL_MAGIC_LEN - 1, 0);
    unmap(&m);
    if (damaged) {
        store_set_err(errbuf, errlen, "%s/%s: damaged at offset %d: corrupt first "
                      "record followed by valid records", d->dir, WAL_NEXT_FILE,
                      WAL_MAGIC_LEN);
        return -EBADMSG;
    }
    if (!has) {
        if (unlinkat(d->dir_fd, WAL_NEXT_FILE, 0) < 0 && errno != ENOENT)
            return -errno;
        return 0;
    }
    struct stat st;
    if (fstatat(d->dir_fd, WAL_LOG_FILE, &st, 0) == 0) {
        if (st.st_size > WAL_MAGIC_LEN) {
            char seg[64];
            if (first <= 1) {
                store_set_err(errbuf, errlen, "%s/%s: its first record (seq %llu) cannot "
                              "follow %s", d->dir, WAL_NEXT_FILE,
                              (unsigned long long)first, WAL_LOG_FILE);
                return -EBADMSG;
            }
            snprintf(seg, sizeof seg, WAL_SEG_PREFIX "%llu", (unsigned long long)first - 1);
            if (renameat2(d->dir_fd, WAL_LOG_FILE, d->dir_fd, seg, RENAME_NOREPLACE) < 0)
                goto fail;
        } else if (unlinkat(d->dir_fd, WAL_LOG_FILE, 0) < 0) {
            goto fail;
        }
    } else if (errno != ENOENT) {
        goto fail;
    }
    if (renameat(d->dir_fd, WAL_NEXT_FILE, d->dir_fd, WAL_LOG_FILE) < 0 ||
        fsync_dir(d) < 0)
        goto fail;
    return 0;
fail:
    rc = -errno;
    store_set_err(errbuf, errlen, "%s: renaming %s to %s: %s", d->dir, WAL_NEXT_FILE,
                  WAL_LOG_FILE, strerror(-rc));
    return rc;
}

/* ---- Public ------------------------------------------------------------ */

int store_open(const char *dir, store_fsync_t policy, store_t **out,
               char *errbuf, size_t errlen)
{
    store_durable_t *d = NULL;
    store_t *s = NULL;
    uint64_t lsn = 0;
    int rc;

    if (errbuf && errlen)
        errbuf[0] = '\0';
    if (!dir || !out || policy < STORE_FSYNC_NEVER || policy > STORE_FSYNC_PERIODIC)
        return -EINVAL;
    if (mkdir(dir, 0777) < 0 && errno != EEXIST) {
        rc = -errno;
        store_set_err(errbuf, errlen, "%s: cannot create: %s", dir, strerror(-rc));
        return rc;
    }
    rc = wal_durable_new(dir, policy, &d);
    if (rc < 0)
        return rc;
    d->dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (d->dir_fd < 0) {
        rc = -errno;
        store_set_err(errbuf, errlen, "%s: %s", dir, strerror(-rc));
        goto fail_d;
    }
    /* One etsd per directory: two writers appending to one log would
     * interleave records. flock is released by the kernel when we die. */
    d->lock_fd = openat(d->dir_fd, WAL_LOCK_FILE, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (d->lock_fd < 0) {
        rc = -errno;
        store_set_err(errbuf, errlen, "%s/%s: %s", dir, WAL_LOCK_FILE, strerror(-rc));
        goto fail_d;
    }
    if (flock(d->lock_fd, LOCK_EX | LOCK_NB) < 0) {
        rc = errno == EWOULDBLOCK ? -EBUSY : -errno;
        store_set_err(errbuf, errlen, "%s: in use by another process (lock on %s/%s)",
                dir, dir, WAL_LOCK_FILE);
        goto fail_d;
    }
    /* A crash during store_snapshot() leaves a partial temporary file. */
    if (unlinkat(d->dir_fd, WAL_SNAP_TMP, 0) < 0 && errno != ENOENT) {
        rc = -errno;
        store_set_err(errbuf, errlen, "%s/%s: %s", dir, WAL_SNAP_TMP, strerror(-rc));
        goto fail_d;
    }
    if ((rc = promote_next(d, errbuf, errlen)) < 0)
        goto fail_d;
    rc = store_new(&s);
    if (rc < 0)
        goto fail_d;
    store_set_replaying(s, 1);
    rc = load_snapshot(d, s, &lsn, errbuf, errlen);
    if (rc < 0)
        goto fail_s;
    rc = replay_log(d, s, lsn, errbuf, errlen);
    if (rc < 0)
        goto fail_s;
    store_set_replaying(s, 0);
    /* The log the first compaction switches to. Without it, that
     * compaction makes it (on its caller's loop). */
    if (wal_next_create(d->dir_fd, &d->next_fd, 0) < 0)
        d->next_fd = -1;
    store_set_durable(s, d);
    *out = s;
    return 0;

fail_s:
    store_free(s);
fail_d:
    store_durable_free(d);
    return rc;
}

uint64_t store_log_bytes(store_t *s)
{
    store_durable_t *d = s ? store_durable(s) : NULL;
    if (!d)
        return 0;
    return d->seg_bytes + (d->log_end > WAL_MAGIC_LEN ? d->log_end - WAL_MAGIC_LEN : 0);
}

int store_flush(store_t *s)
{
    return wal_sync(store_durable(s));
}

/* Snapshot writer: records buffered and written in large pieces. */
typedef struct snap_writer {
    int fd;
    uint64_t seq;
    uint64_t records, objects, bytes;
    uint64_t synced;     /* incremental: bytes already written back */
    const char *table;   /* the table being written, for its PUT records */
    wal_buf_t buf;
} snap_writer_t;

static int snap_drain(snap_writer_t *w, size_t keep_below)
{
    if (w->buf.len < keep_below)
        return 0;
    size_t off = 0;
    while (off < w->buf.len) {
        ssize_t n = write(w->fd, w->buf.data + off, w->buf.len - off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        off += (size_t)n;
    }
    w->bytes += w->buf.len;
    w->buf.len = 0;
    /* Incremental write-back, as Redis's aof-rewrite-incremental-fsync:
     * start writing each WAL_SNAP_SYNC_STEP as it fills and wait for the
     * one before, so dirty pages never pile up for one huge final fsync
     * that the log's own fdatasyncs would queue behind. */
    if (w->synced != UINT64_MAX && w->bytes - w->synced >= WAL_SNAP_SYNC_STEP) {
        uint64_t from = w->synced;
        (void)sync_file_range(w->fd, (off_t)from, (off_t)(w->bytes - from),
                              SYNC_FILE_RANGE_WRITE);
        if (from >= WAL_SNAP_SYNC_STEP)
            (void)sync_file_range(w->fd, (off_t)(from - WAL_SNAP_SYNC_STEP),
                                  WAL_SNAP_SYNC_STEP,
                                  SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
                                  SYNC_FILE_RANGE_WAIT_AFTER);
        w->synced = w->bytes;
    }
    return 0;
}

static int snap_object_cb(void *arg, const void *obj, size_t len)
{
    snap_writer_t *w = arg;
    int rc = wal_encode(&w->buf, w->seq, WAL_PUT, w->table, 0, obj, len, 0);
    if (rc < 0)
        return rc;
    w->records++;
    w->objects++;
    return snap_drain(w, 1u << 20);
}

static int snap_table_cb(void *arg, store_table_t *t)
{
    snap_writer_t *w = arg;
    w->table = store_table_name(t);
    int rc = wal_encode(&w->buf, w->seq, WAL_CREATE, w->table,
                        store_table_keypos(t), NULL, 0, 0);
    if (rc < 0)
        return rc;
    w->records++;
    return store_table_foreach(t, snap_object_cb, w);
}

int wal_snapshot_write(store_t *s, int fd, uint64_t seq, int incremental,
                       uint64_t *bytes, uint64_t *objects)
{
    snap_writer_t w = { .fd = fd, .seq = seq, .synced = incremental ? 0 : UINT64_MAX };
    int rc = wal_buf_append_raw(&w.buf, WAL_SNAP_MAGIC, WAL_MAGIC_LEN);
    if (rc == 0)
        rc = store_foreach_table(s, snap_table_cb, &w);
    if (rc == 0)
        rc = wal_encode(&w.buf, w.seq, WAL_END, NULL, 0, NULL, 0, w.records);
    if (rc == 0)
        rc = snap_drain(&w, 0);
    wal_buf_release(&w.buf);
    if (bytes)
        *bytes = w.bytes;
    if (objects)
        *objects = w.objects;
    return rc;
}
