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

/* Writes a snapshot and truncates the log. */
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

/* Appends the whole table as one proper list (LIST_EXT of objects, or NIL)
 * to out, encoded without version byte. */
int store_tab2list(store_table_t *t, term_buf_t *out);

/* Runs ets:Fun(Args...) on s, as a BEAM node would: args is the encoded
 * argument list. On 0, the result term is appended to out. -EINVAL: the call
 * raised error:badarg. -ENOENT: ets has no such function/arity (the caller
 * raises undef). Other negative values are internal failures. */
int store_ets_call(store_t *s, const char *fun, const void *args, size_t len,
                   term_buf_t *out);

#endif
