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

const char *store_table_name(const store_table_t *t);
unsigned store_table_keypos(const store_table_t *t);

#endif
