/* store.h: named tables with the semantics of ETS `set` tables, holding
 * objects as canonical ETF (term.h), optionally durable in a data directory
 * (write-ahead log + snapshot). store/ knows nothing of the network.
 *
 * Returns 0 or a negative errno. Where ETS raises badarg, store/ returns
 * -EINVAL. Objects and keys passed in are encodings without version byte. */
#ifndef ETSD_STORE_H
#define ETSD_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "term/term.h"

typedef struct store store_t;          /* a set of named tables */
typedef struct store_table store_table_t;

typedef enum store_fsync {
    STORE_FSYNC_NEVER = 0,
    STORE_FSYNC_ALWAYS,   /* fsync before every mutation returns */
    STORE_FSYNC_PERIODIC  /* the caller calls store_flush() on a timer */
} store_fsync_t;

/* A memory-only store. On success *out is new; free it with store_free(). */
int store_new(store_t **out);

/* A durable store in dir (created if absent): recovers snapshot then log,
 * tolerating a torn tail, and appends every later mutation to the log.
 * Damage elsewhere is -EBADMSG with a description in errbuf. */
int store_open(const char *dir, store_fsync_t policy, store_t **out,
               char *errbuf, size_t errlen);

/* Writes pending log records to disk (fsync). For STORE_FSYNC_PERIODIC. */
int store_flush(store_t *s);

/* Writes a snapshot and truncates the log: store_compact_begin(), _wait()
 * and _end() in a row, so it blocks until the snapshot is durable. */
int store_snapshot(store_t *s);

void store_free(store_t *s);

/* Creates the named set table; -EEXIST if the name is taken. keypos >= 1. */
int store_table_create(store_t *s, const char *name, unsigned keypos,
                       store_table_t **out);
/* The table, or NULL. Valid until store_table_drop() of it or store_free(). */
store_table_t *store_table_find(store_t *s, const char *name);
int store_table_drop(store_t *s, const char *name);

/* Inserts one object (canonical encoding of a tuple with at least keypos
 * elements; a non-canonical one is canonicalized), overwriting. */
int store_insert(store_table_t *t, const void *obj, size_t len);

/* Appends the object stored under key (any valid encoding) to out, or
 * returns -ENOENT. */
int store_lookup(store_table_t *t, const void *key, size_t len, term_buf_t *out);

size_t store_table_size(const store_table_t *t);

/* Makes room for n more objects than the table holds: inserts up to that
 * size then never rehash the table (a big merge known in advance saves
 * every intermediate growth). Never shrinks. 0, or -ENOMEM (the table is
 * left as it was). */
int store_table_reserve(store_table_t *t, size_t n);

/* Appends the whole table as one proper list (LIST_EXT of objects, or NIL)
 * to out, encoded without version byte. */
int store_tab2list(store_table_t *t, term_buf_t *out);

/* ---- Chunked tab2list ------------------------------------------------- */
/* A tab2list spread over many calls, so that encoding a big table does not
 * hold the caller's event loop (DESIGN.md: one loop, long work chunked).
 *
 * store_encode_begin() starts the list at out->len (a placeholder header;
 * out's contents before it are kept). Each store_encode_step() appends up
 * to max_objects objects to the same out (the caller must not change out's
 * contents from the start on between steps, though it may move in memory)
 * and returns 0 while there is more, 1 when the list is complete (out then
 * holds exactly one proper list from start on, the bytes store_tab2list()
 * writes when the table did not change in between), or a negative errno
 * (-ENOMEM; out's contents from start on are then garbage).
 *
 * The table may change between steps. The result then holds each key at
 * most once, whole objects only, every object present and unchanged during
 * the whole encode, and for the others either their old, their new or no
 * version (like ets:tab2list/1 against concurrent writers). When objects
 * may have moved between slots (a resize or a delete), the next step starts
 * over; the third time, it finishes in one go: correct, but it holds the
 * caller that once.
 * A table dropped (or its store freed) during the encode ends it with the
 * objects copied so far. On success *cursor is new: free it with
 * store_encode_free(), finished or not, before or after the table is gone. */
typedef struct store_encode store_encode_t;
int store_encode_begin(store_table_t *t, term_buf_t *out, store_encode_t **cursor);
int store_encode_step(store_encode_t *e, size_t max_objects, term_buf_t *out);
void store_encode_free(store_encode_t *e);

/* Canonicalizes every object of s again, under the OTP release term/
 * follows now (term_set_otp_release(); call this after a change for which
 * term_otp_canon_same() is 0). Objects whose bytes change are stored again,
 * journaled. Keys that become equal (0.0 and -0.0, going back before OTP
 * 27): the object already under the new key stays and the other is
 * deleted. *changed (may be NULL) gets the number of objects whose bytes
 * changed. One pass over every object (validation only for those that do
 * not change). 0, or a negative errno (-ENOMEM, or a journal error: the
 * objects handled so far stay handled). */
int store_recanon(store_t *s, size_t *changed);

/* Runs ets:Fun(Args...) on s, as a BEAM node would: args is the encoded
 * argument list. On 0, the result term is appended to out. -EINVAL: the call
 * raised error:badarg. -ENOENT: ets has no such function/arity (the caller
 * raises undef). Other negative values are internal failures. */
int store_ets_call(store_t *s, const char *fun, const void *args, size_t len,
                   term_buf_t *out);

/* The node name (an atom's text) that ets:info(T, node) and node() in
 * match specifications answer; default nonode@nohost. Process-wide. */
void store_set_node(const char *node);

/* ---- Durability notes -------------------------------------------------- */
/* store_open(): errbuf (may be NULL) is set to "" on success, or to a
 * one-line message worth logging when recovery cut a torn log tail (the
 * last append of a crashed run); on failure it says what failed and where.
 * -EBUSY: another process holds dir's lock. The data directory holds
 * LOCK, store.snap (the last snapshot), store.wal (the log since it),
 * store.wal.next (the next log, empty) and, while a compaction runs or
 * after one failed, store.wal.S segments (the log up to seq S) and
 * store.snap.tmp.
 * On a memory-only store store_snapshot() returns -EINVAL and store_flush()
 * returns 0. Both block on fsync: run them off the event loop if needed.
 * A mutation whose log append fails returns that error and changes nothing;
 * after a failed fsync every later mutation returns -EIO until the store is
 * freed and opened again (recovery then decides what reached the disk). */

/* ---- Group commit ------------------------------------------------------ */
/* Between store_batch_begin() and store_batch_end(), mutations append their
 * log records to an in-memory buffer (still before memory changes, and
 * each mutation still returns its own error) instead of writing each one;
 * store_batch_end() writes them with one write(2) (a few for a large batch)
 * and, under STORE_FSYNC_ALWAYS, one fdatasync. Outside a batch every
 * mutation is written (and synced under ALWAYS) before it returns, as ever.
 * Batches nest: only the outermost end writes. On a memory-only store both
 * do nothing and store_batch_end() returns 0.
 *
 * Durability: a mutation made inside a batch is applied in memory at once
 * but is durable only when store_batch_end() returns 0, so acknowledge or
 * broadcast it only then. store_batch_end() returns the first write or
 * fsync error of the batch (-EIO if the store broke during it); the
 * batch's mutations then remain applied in memory but are NOT durable (a
 * prefix of them may be), and every later mutation returns -EIO until the
 * store is freed and opened again, whose recovery decides what reached the
 * disk. store_flush() and store_snapshot() inside a batch also write (and
 * make durable) what it holds so far. */
void store_batch_begin(store_t *s);
int store_batch_end(store_t *s);

/* Process-wide: cb (NULL for none) is told how long each fdatasync of a
 * log took, in nanoseconds, on the thread that ran it. */
void store_set_sync_observer(void (*cb)(uint64_t ns));

/* Bytes in the log since the last snapshot (0 for a memory-only store):
 * the current log plus the segments no snapshot covers yet. */
uint64_t store_log_bytes(store_t *s);

/* ---- Compaction -------------------------------------------------------- */
/* A snapshot written without holding the caller's event loop, after which
 * the log up to it is deleted. Three steps:
 *
 * store_compact_begin() (the loop's thread, between mutations): makes the
 * log written so far durable under --fsync always, forks a child that
 * writes the tables as they are at the last seq S (its copy-on-write view
 * of memory) to store.snap.tmp and fsyncs it, and switches appends to
 * store.wal.next, a log made and synced ahead of time. It touches no file
 * name: the loop is held for the fork (1.5-2.5 ms of CPU for 1M objects,
 * bench/bench_compact.sh). Mutations go on at once, into the new log.
 *
 * store_compact_wait() (any thread, blocking; the libuv thread pool):
 * renames the old log to store.wal.S and store.wal.next to store.wal and
 * fsyncs the directory, waits for the child, renames store.snap.tmp to
 * store.snap, fsyncs the directory, deletes every segment the snapshot
 * covers, and makes the next store.wal.next. Touches only files and c,
 * never s, so the loop may mutate s meanwhile.
 *
 * store_compact_end() (the loop's thread, after wait returned): records the
 * outcome in s (counters, the size the next trigger is measured against)
 * and frees c. If the renames of the logs failed, the store refuses writes
 * (-EIO) until reopened, as after a failed fsync.
 *
 * A crash at any moment leaves files store_open() reads correctly: records
 * in store.wal.next (a crash before the renames) follow those of
 * store.wal, and are renamed as wait would have; until the snapshot's
 * rename, the old snapshot plus every segment and the log; after it, the
 * new snapshot, whose seq makes recovery skip (and delete) what it
 * covers. Only one compaction runs at a time. */
typedef struct store_compact store_compact_t;

/* What a finished compaction did, for the caller's log line and metrics. */
typedef struct store_compact_info {
    int rc;                  /* 0, or why it failed */
    uint64_t seq;            /* the snapshot holds the log up to this seq */
    uint64_t snap_bytes;     /* the new snapshot's size */
    uint64_t log_bytes;      /* log bytes it made obsolete */
    uint64_t objects;        /* objects written */
    uint64_t begin_ns;       /* time store_compact_begin() held the caller */
    uint64_t begin_cpu_ns;   /* the CPU time of it (without waits for a core) */
    uint64_t total_ns;       /* from begin to the end of wait */
} store_compact_info_t;

/* Starts a compaction. On 0, *out is new: pass it to store_compact_wait()
 * and then store_compact_end(), which frees it. Errors (nothing to wait
 * for, the store unchanged unless said): -EINVAL (memory-only store),
 * -EBUSY (one is running), -EIO (the store is broken), or an errno of the
 * fork or pipe (or of creating store.wal.next, when the last compaction
 * could not make it ahead of time). */
int store_compact_begin(store_t *s, store_compact_t **out);

/* Blocks until the compaction is durable or failed; returns 0 or a
 * negative errno (-ECHILD: the child died without a result). */
int store_compact_wait(store_compact_t *c);

/* Makes a running child stop at once (SIGKILL): wait then returns an
 * error and leaves the old snapshot. Safe from any thread while wait runs. */
void store_compact_abort(store_compact_t *c);

/* Ends a waited compaction, fills *info (may be NULL), frees c; returns
 * info->rc. */
int store_compact_end(store_t *s, store_compact_t *c, store_compact_info_t *info);

/* The log size that makes store_compact_due() true: bytes (0 restores the
 * default, twice the last snapshot's size and at least
 * STORE_COMPACT_MIN). */
#define STORE_COMPACT_MIN (UINT64_C(64) << 20)
void store_set_compact_at(store_t *s, uint64_t bytes);

/* 1 when the log has grown past the threshold and no compaction is
 * running; 0 otherwise (always for a memory-only or broken store). After
 * a failed compaction the next one is due only when the log has grown by
 * the threshold again. */
int store_compact_due(store_t *s);

/* Compactions finished since store_open(), for metrics. */
typedef struct store_compact_stats {
    uint64_t done, failed;
    uint64_t total_ns, last_ns, max_ns;  /* durations of the successful ones */
    uint64_t max_begin_ns;               /* longest store_compact_begin() */
    int running;
} store_compact_stats_t;
void store_compact_stats(store_t *s, store_compact_stats_t *out);

/* ---- ets:tab2file format ----------------------------------------------- */

#define STORE_T2F_OBJECT_COUNT 1u  /* {extended_info, [object_count]} */
#define STORE_T2F_MD5SUM       2u  /* {extended_info, [md5sum]} */

/* Writes t to path in the format of ets:tab2file/3 with the extended_info
 * the flags ask for, so that ets:file2tab(Path, [{verify, true}]) on BEAM
 * recreates it (a named set with t's protection). The file is written to
 * Path.tmp, fsynced and renamed. Returns 0, -EINVAL for bad flags, or a
 * negative errno from the file system. */
int store_tab2file(store_table_t *t, const char *path, unsigned flags);

/* The same file contents, appended to out. On error out may hold a part
 * of them. */
int store_tab2file_mem(store_table_t *t, unsigned flags, term_buf_t *out);

/* Reads a file written by ets:tab2file/2,3 (or store_tab2file) and creates
 * the table it names in s, filled with its objects. With verify, checks
 * what the file declares as ets:file2tab(F, [{verify, true}]) does: the
 * md5sum and object_count of its extended_info, or else the header's size.
 * Truncated or corrupt files are always refused. On success *out (may be
 * NULL) is the new table. Errors: -EBADMSG (damaged or not such a file),
 * -ENOTSUP (a bag, duplicate_bag or ordered_set), -EEXIST (a table of that
 * name exists), -ENOMEM, or a file system errno; errbuf (may be NULL) gets
 * a one-line description, and no table is left behind. */
int store_file2tab(store_t *s, const char *path, int verify, store_table_t **out,
                   char *errbuf, size_t errlen);

/* store_file2tab() on the file's bytes. */
int store_file2tab_mem(store_t *s, const void *data, size_t len, int verify,
                       store_table_t **out, char *errbuf, size_t errlen);

#endif
