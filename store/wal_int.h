/* wal_int.h: the write-ahead log's record format and the durable state,
 * shared by wal.c (appending) and snapshot.c (recovery, snapshots) and by
 * their unit tests. Nothing outside store/ includes it.
 *
 * A record on disk is
 *     u32 len | u32 crc | u64 seq | u8 type | body          (big-endian)
 * where len counts seq, type and body (at least WAL_REC_MIN), and crc is
 * zlib's crc32 over those same len bytes. Bodies:
 *     CREATE  u16 n | name[n] | u32 keypos
 *     DROP    u16 n | name[n]
 *     PUT     u16 n | name[n] | object (canonical ETF, no version byte)
 *     DELETE  u16 n | name[n] | key    (ETF, no version byte)
 *     CLEAR   u16 n | name[n]
 *     END     u64 records before it          (snapshot files only)
 * The log file is WAL_LOG_MAGIC followed by records with strictly increasing
 * seq. A snapshot file is WAL_SNAP_MAGIC, then CREATE and PUT records whose
 * seq is the last log seq the snapshot contains, then one END record. */
#ifndef ETSD_WAL_INT_H
#define ETSD_WAL_INT_H

#include <stddef.h>
#include <stdint.h>

#include "store/store_int.h"

#define WAL_LOG_MAGIC   "ETSDWAL1"
#define WAL_SNAP_MAGIC  "ETSDSNP1"
#define WAL_MAGIC_LEN   8
#define WAL_HDR_LEN     8            /* len + crc */
#define WAL_REC_MIN     9            /* seq + type */
/* Larger records are refused on write and read as damage: a length field
 * past this is far likelier a flipped bit than a real 1 GiB object. */
#define WAL_REC_MAX     (1u << 30)
#define WAL_NAME_MAX    (TERM_ATOM_MAX - 1) /* table names are atoms: 255 chars of UTF-8 */
/* Seqs count appends from 1; one far past any real count is damage (and
 * would make the next seq wrap). */
#define WAL_SEQ_MAX     (UINT64_C(1) << 62)

#define WAL_LOG_FILE    "store.wal"
#define WAL_SNAP_FILE   "store.snap"
#define WAL_SNAP_TMP    "store.snap.tmp"
#define WAL_LOCK_FILE   "LOCK"
/* A log segment renamed away by a compaction: WAL_LOG_FILE "." S, where S
 * (decimal) is the last seq it can hold. */
#define WAL_SEG_PREFIX  "store.wal."
/* The next log, created empty and durable ahead of time, so that a
 * compaction switches logs on the loop without touching the directory.
 * Once records are appended to it, it is the log even under this name
 * (a crash before the compaction's renames): recovery renames it. */
#define WAL_NEXT_FILE   "store.wal.next"

typedef enum wal_type {
    WAL_CREATE = 1,
    WAL_DROP = 2,
    WAL_PUT = 3,
    WAL_DELETE = 4,
    WAL_CLEAR = 5,
    WAL_END = 6
} wal_type_t;

/* A growable byte buffer for encoding records (the WAL does not depend on
 * term/'s buffer so its codec stands alone). */
typedef struct wal_buf {
    uint8_t *data;
    size_t len, cap;
} wal_buf_t;

void wal_buf_release(wal_buf_t *b);
/* Appends n bytes; 0 or -ENOMEM (b unchanged). */
int wal_buf_append_raw(wal_buf_t *b, const void *p, size_t n);

/* Appends one complete record to b. name is NUL-terminated (at most
 * WAL_NAME_MAX bytes); payload is the object, key or nothing; keypos is used
 * by CREATE only, and for END `keypos` is ignored and `count` is the body.
 * Returns 0, -EINVAL (name too long, record over WAL_REC_MAX) or -ENOMEM;
 * on error b->len is as on entry. */
int wal_encode(wal_buf_t *b, uint64_t seq, wal_type_t type, const char *name,
               unsigned keypos, const void *payload, size_t plen,
               uint64_t count);

/* One decoded record. Pointers point into the decoded buffer. */
typedef struct wal_rec {
    uint64_t seq;
    wal_type_t type;
    char name[WAL_NAME_MAX + 1];
    unsigned keypos;         /* CREATE */
    uint64_t count;          /* END */
    const uint8_t *payload;  /* PUT, DELETE */
    size_t plen;
    size_t size;             /* bytes the record takes, header included */
} wal_rec_t;

/* Decodes the record at the start of buf[0..len).
 * Returns 0 with *rec filled, -EAGAIN if buf ends inside the record (its
 * header or its body: a torn append), or -EBADMSG if the bytes present are
 * not a valid record (CRC, length, type or body damage). */
int wal_decode(const void *buf, size_t len, wal_rec_t *rec);

/* wal_decode() without the CRC check, for bytes wal_decode() accepted
 * before and that have not changed since. */
int wal_decode_trusted(const void *buf, size_t len, wal_rec_t *rec);

/* Whether some offset in buf[0..len) starts a complete, valid record with a
 * seq greater than after_seq. Recovery uses this to tell a torn tail (only
 * garbage after the damage) from damage in the middle of the log. */
int wal_valid_record_follows(const void *buf, size_t len, uint64_t after_seq);

/* A stride coprime with n, near n/phi: visiting j = 0, step, 2*step, ...
 * mod n reaches every index once, scattered. Snapshots and files written
 * from a store hold a table in its hash-slot order, and inserting keys in
 * another table's slot order into a growing linear-probing table builds
 * long clusters (measured: 700k users took 15-24 s to load in order, about
 * 1 s scattered); loaders insert in this order instead. */
size_t wal_scatter_stride(size_t n);

/* The durable state of a store opened with store_open(). */
struct store_durable {
    char *dir;
    int dir_fd;
    int lock_fd;
    int log_fd;
    store_fsync_t policy;
    uint64_t next_seq;   /* seq of the next record appended */
    uint64_t log_end;    /* bytes of valid log: appends go here */
    int dirty;           /* records written since the last fsync */
    int broken;          /* an fsync failed, or a failed append could not be
                          * undone: refuse writes until reopened */
    wal_buf_t scratch;   /* reused per append */
    /* Group commit (store_batch_begin/end): while batch_depth > 0, records
     * are encoded into pend instead of being written one by one; pend is
     * written at log_end when it passes WAL_BATCH_FLUSH and at the
     * outermost store_batch_end(), which then syncs once. */
    unsigned batch_depth;
    wal_buf_t pend;
    int batch_err;       /* first error of the open batch, or 0 */
    uint64_t batch_recs; /* records the open batch has appended */
    /* Compaction (compact.c). */
    int next_fd;             /* WAL_NEXT_FILE, empty and durable, or -1 */
    uint64_t seg_bytes;      /* record bytes in segments no snapshot covers */
    uint64_t snap_bytes;     /* size of the last snapshot (0: none) */
    uint64_t compact_at;     /* fixed threshold, or 0 for the default rule */
    uint64_t compact_retry;  /* after a failure: due again at this size */
    store_compact_t *compacting;
    store_compact_stats_t stats;
};

/* Pending batch bytes past this are written out before the batch ends
 * (still synced only at its end), so a huge batch needs no huge buffer. */
#define WAL_BATCH_FLUSH (4u << 20)

/* Writes the records an open batch holds so far at the log's end, without
 * syncing (store_snapshot() calls it so the log and memory agree before a
 * snapshot). On failure the store is broken (-EIO for later writes) and
 * the error is returned. 0 if nothing is pending or d is NULL. */
int wal_batch_write(store_durable_t *d);

/* Test hooks (unit tests only): every fdatasync of the log counts in
 * wal_test_syncs; a non-zero wal_test_fail_write / wal_test_fail_sync makes
 * the next log write / fdatasync fail with that negative errno (then it is
 * reset to 0). */
extern unsigned long wal_test_syncs;
extern int wal_test_fail_write;
extern int wal_test_fail_sync;

/* Creates durable state for dir. Opens nothing: snapshot.c fills the fds. */
int wal_durable_new(const char *dir, store_fsync_t policy, store_durable_t **out);

/* Makes the log durable (fdatasync) if records were written since the last
 * time. Returns 0 or a negative errno. */
int wal_sync(store_durable_t *d);

/* Writes every table of s as a snapshot file (magic, records with seq,
 * END) to fd, from its current offset. incremental: write back every
 * WAL_SNAP_SYNC_STEP as it goes (sync_file_range), so the caller's final
 * fsync is short; it still must fsync. *bytes and *objects (may be NULL)
 * get what was written. Defined in snapshot.c. */
#define WAL_SNAP_SYNC_STEP (8u << 20)
int wal_snapshot_write(store_t *s, int fd, uint64_t seq, int incremental,
                       uint64_t *bytes, uint64_t *objects);

/* Parses a segment's file name: 1 with *seq set for WAL_SEG_PREFIX
 * followed by a decimal seq (no sign, no leading zero), else 0. */
int wal_segment_name(const char *name, uint64_t *seq);

/* Creates WAL_NEXT_FILE (replacing any) with the log magic, makes it and
 * its name durable, and returns its descriptor in *fd. hooks: the
 * STORE_STEP_NEXT test hooks apply (a compaction's, not store_open()'s).
 * Defined in compact.c. */
int wal_next_create(int dir_fd, int *fd, int hooks);

/* Stops and frees a compaction its caller never ended (store_free() of a
 * store with one running). Defined in compact.c. */
void wal_compact_discard(store_compact_t *c);

/* Compaction steps, for the test hooks below. */
typedef enum store_step {
    STORE_STEP_NONE = 0,
    STORE_STEP_FORK,     /* starting the child (the loop's part) */
    STORE_STEP_ROTATE,   /* renaming store.wal to its segment name */
    STORE_STEP_NEWLOG,   /* renaming store.wal.next to store.wal */
    STORE_STEP_WRITE,    /* the child writing store.snap.tmp (half done) */
    STORE_STEP_SYNC,     /* the child's fsync of store.snap.tmp */
    STORE_STEP_RENAME,   /* store.snap.tmp -> store.snap */
    STORE_STEP_DIRSYNC,  /* the directory's fsync after it */
    STORE_STEP_UNLINK,   /* deleting a covered segment */
    STORE_STEP_NEXT,     /* creating the following store.wal.next */
    STORE_STEP_COUNT
} store_step_t;

/* Test hooks (unit tests and the crash tool only). store_test_fail_step:
 * that step fails with store_test_fail_errno (once; then reset to NONE).
 * store_test_crash_step: the process (and, for the child's steps, its
 * parent first) dies by SIGKILL at that step, to simulate a crash there. */
extern store_step_t store_test_fail_step;
extern int store_test_fail_errno;
extern store_step_t store_test_crash_step;

#endif
