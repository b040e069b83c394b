/* replicate.h: the seed app's replication on etsd (PROTOCOL.md section 8).
 * {new, User} on the new-topic is inserted; {sync, Table[, Node[, _]]} on
 * the sync-topic is merged; when a node's pg scope first syncs with etsd
 * (the node runs the PubSub), etsd pulls its table over rex (in chunks,
 * pull.h) and, after the sync delay, sends it {sync, Table,
 * node()} as the seed's NodeListener would; etsd's own writes go out as
 * {new, Object}. Incoming writes are applied in arrival order; large lists
 * are applied in chunks so the loop keeps serving ticks and peers. */
#ifndef ETSD_REPLICATE_H
#define ETSD_REPLICATE_H

#include <stddef.h>
#include <stdint.h>

#include "cnode/node.h"
#include "cnode/pg.h"
#include "cnode/pubsub.h"
#include "store/store.h"

typedef struct replicate replicate_t;

/* A list of at most REPLICATE_INLINE objects arriving with nothing queued
 * is applied at once; anything larger is queued and applied at most
 * REPLICATE_CHUNK objects or REPLICATE_SLICE_MS per loop turn, checking
 * the time every REPLICATE_STEP objects. */
#define REPLICATE_INLINE 16
#define REPLICATE_CHUNK 20000
#define REPLICATE_SLICE_MS 20
#define REPLICATE_STEP 64
/* A node's word on its table's size makes room for at most this many. */
#define REPLICATE_RESERVE_MAX 10000000
/* How long a pull of a node's table may take. */
#define REPLICATE_PULL_TIMEOUT_MS 120000

/* Replicates table node_config(n)->table (created in s with its keypos if
 * absent) over ps, with the topics and delay of node_config(n); takes pg's
 * sync hook (pg_on_sync). pg, s and ps are borrowed and must outlive r. On success *out is new; replicate_free() it
 * after the loop ends. */
int replicate_new(node_t *n, pg_t *pg, pubsub_t *ps, store_t *s, replicate_t **out);
void replicate_free(replicate_t *r);

/* Broadcasts {new, Obj} for an object already stored in table. Objects of
 * other tables are not replicated (returns 0). Matches rpc_insert_cb. */
int replicate_insert_cb(void *arg, const char *table, const void *obj, size_t len);

/* etsd:sync/0: pulls every connected node's table now and, once all of them
 * are in and merged, pushes the union to every connected node; appends `ok`
 * to out at once (the work goes on on the loop). Matches rpc_action_cb. */
int replicate_sync_cb(void *arg, term_buf_t *out);

/* etsd:info/0 entry: appends the key `replication` and its value
 * #{backlog => N, pubsub_nodes => [Node]} (the connected nodes whose pg
 * scope etsd knows) and adds 1 to *count. Matches rpc_info_cb. */
int replicate_info_cb(void *arg, term_buf_t *out, uint32_t *count);

/* Writes received and not yet applied (objects). */
size_t replicate_backlog(const replicate_t *r);

/* ---- Pure parts, for tests ------------------------------------------- */

enum { REPLICATE_MSG_NEW = 1, REPLICATE_MSG_SYNC };

/* Decodes a seed message (without version byte): {new, Object} gives
 * REPLICATE_MSG_NEW with *payload the object; {sync, Table},
 * {sync, Table, Node} and {sync, Table, Node, _} with Table a list (or [])
 * give REPLICATE_MSG_SYNC with *payload the list. Pointers are into msg.
 * Anything else (trailing bytes included) is -EPROTO. Objects are not
 * checked here: each is checked when applied. */
int replicate_decode(const void *msg, size_t len, const char **payload, size_t *plen);

#endif
