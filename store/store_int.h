/* store_int.h: what store/'s modules share with each other and nobody else:
 * the table layout's iteration, and the journal hooks through which every
 * physical change reaches the write-ahead log. */
#ifndef ETSD_STORE_INT_H
#define ETSD_STORE_INT_H

#include "store/store.h"

/* Durability state (log file, fsync policy), owned by wal.c/snapshot.c.
 * NULL for a memory-only store. */
typedef struct store_durable store_durable_t;

/* store.c keeps these in struct store: */
store_durable_t *store_durable(store_t *s);
void store_set_durable(store_t *s, store_durable_t *d);
/* While replaying, mutations are applied without being journaled again. */
void store_set_replaying(store_t *s, int on);

/* Journal hooks: store.c calls one for every physical change, before it
 * changes memory, and does not change memory if it fails. Every ETS
 * operation (update_counter, take, select_delete, ...) decomposes into these.
 * With no durable state they return 0 at once. Defined in wal.c. */
int store_journal_create(store_t *s, const char *table, unsigned keypos);
int store_journal_drop(store_t *s, const char *table);
int store_journal_put(store_t *s, const char *table, const void *obj, size_t len);
int store_journal_delete(store_t *s, const char *table, const void *key, size_t len);
int store_journal_clear(store_t *s, const char *table);
/* Frees durable state (closing the log); NULL does nothing. Defined in wal.c. */
void store_durable_free(store_durable_t *d);

/* Iteration for snapshots and tab2list: calls cb for every object in t,
 * in unspecified order, with its canonical bytes, valid during the call.
 * A non-zero return from cb stops and is returned. */
typedef int (*store_object_cb)(void *arg, const void *obj, size_t len);
int store_table_foreach(store_table_t *t, store_object_cb cb, void *arg);

typedef int (*store_table_cb)(void *arg, store_table_t *t);
int store_foreach_table(store_t *s, store_table_cb cb, void *arg);

/* Writes a printf-style description of a failure into errbuf, for the
 * functions that take (errbuf, errlen); a NULL or empty errbuf is left
 * alone. Defined in snapshot.c. */
void store_set_err(char *errbuf, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

const char *store_table_name(const store_table_t *t);
unsigned store_table_keypos(const store_table_t *t);


/* ---- Table internals shared by store.c, ets.c and match.c ------------- */

/* ETF tags store/ reads directly (erl_ext_dist). Objects in a table are
 * canonical (term.h), so only these forms occur in them. */
enum {
    STORE_TAG_NEW_FLOAT = 70, STORE_TAG_BIT_BINARY = 77,
    STORE_TAG_NEW_PID = 88, STORE_TAG_NEW_PORT = 89, STORE_TAG_NEWER_REF = 90,
    STORE_TAG_SMALL_INT = 97, STORE_TAG_INT = 98, STORE_TAG_FLOAT = 99,
    STORE_TAG_ATOM = 100, STORE_TAG_REF = 101, STORE_TAG_PORT = 102,
    STORE_TAG_PID = 103, STORE_TAG_SMALL_TUPLE = 104,
    STORE_TAG_LARGE_TUPLE = 105, STORE_TAG_NIL = 106, STORE_TAG_STRING = 107,
    STORE_TAG_LIST = 108, STORE_TAG_BINARY = 109, STORE_TAG_SMALL_BIG = 110,
    STORE_TAG_LARGE_BIG = 111, STORE_TAG_NEW_FUN = 112, STORE_TAG_EXPORT = 113,
    STORE_TAG_NEW_REF = 114, STORE_TAG_SMALL_ATOM = 115, STORE_TAG_MAP = 116,
    STORE_TAG_ATOM_UTF8 = 118, STORE_TAG_SMALL_ATOM_UTF8 = 119,
    STORE_TAG_V4_PORT = 120
};

/* The ets:new/2 options a table remembers for ets:info/1,2. */
typedef struct store_table_opts {
    unsigned char protection;   /* 0 public, 1 protected, 2 private */
    unsigned char read_concurrency, decentralized_counters, compressed;
    unsigned char write_concurrency; /* 0 false, 1 true, 2 auto */
    char *heir;      /* encoded heir pid (owned), or NULL for none */
    size_t heir_len;
} store_table_opts_t;

store_table_opts_t *store_table_opts(store_table_t *t);
store_t *store_table_store(const store_table_t *t);

/* Finds the key of a canonical object: sets *key and *klen to the bytes of
 * element keypos. -EINVAL if obj is not a tuple with keypos elements. */
int store_obj_key(const void *obj, size_t len, unsigned keypos,
                  const char **key, size_t *klen);

/* Looks up a canonical key. Returns 1 with *obj and *len set (valid until the
 * next change to t), or 0 if absent. */
int store_table_get(store_table_t *t, const void *key, size_t klen,
                    const char **obj, size_t *len);

/* Inserts a canonical object, overwriting; journaled. -EINVAL if it is not
 * a tuple with keypos elements. */
int store_table_put(store_table_t *t, const void *obj, size_t len);

/* Inserts count canonical objects lying back to back in objs[0..len),
 * all or none: memory for all of them is taken before the first is
 * stored (only a journal failure can leave a prefix stored, as logged).
 * -EINVAL if one is not a tuple with keypos elements. */
int store_table_put_batch(store_table_t *t, const void *objs, size_t len, size_t count);

/* Deletes by canonical key; journaled. 0, or -ENOENT if absent. */
int store_table_remove(store_table_t *t, const void *key, size_t klen);

/* Deletes every object; journaled as one clear. */
int store_table_clear(store_table_t *t);

/* Traversal in the table's internal order (ets:first/next on a set).
 * first: 1 with the first object, or 0 if empty. next: 1 with the object
 * after the one whose canonical key is given, 0 at the end, -EINVAL if that
 * key is not in the table (ETS raises badarg then). Pointers are valid
 * until the next change to t. */
int store_table_first(store_table_t *t, const char **obj, size_t *len);
int store_table_next(store_table_t *t, const void *key, size_t klen,
                     const char **obj, size_t *len);

/* Bytes the table takes (objects with allocator overhead, slot array). */
size_t store_table_memory(const store_table_t *t);

/* Length of the slot array (a power of two; 0 before the first insert). */
size_t store_table_slots(const store_table_t *t);

/* Canonicalizes one term (no version byte) occupying exactly in[0..len)
 * into out, skipping the copy work when it is already canonical: *res
 * points either into in or into out. -EINVAL if the bytes are not one
 * valid term. */
int store_canon(const void *in, size_t len, term_buf_t *out,
                const char **res, size_t *rlen);

#endif
