/* pubsub.h: Phoenix.PubSub's PG2 adapter (phoenix_pubsub 2.x,
 * PROTOCOL.md section 6) on etsd: one mailbox per listener group,
 * registered under the group name and joined to it in the pg scope;
 * {forward_to_local, Topic, Msg, Dispatcher} to any of them is a delivery
 * on Topic; a broadcast sends that tuple to the members of one group on
 * every other node. */
#ifndef ETSD_PUBSUB_H
#define ETSD_PUBSUB_H

#include <stddef.h>

#include "cnode/node.h"
#include "cnode/pg.h"

typedef struct pubsub pubsub_t;

/* A delivery on a subscribed topic. msg is the message term (without
 * version byte), borrowed for the call; peer is the node it came from. */
typedef void (*pubsub_cb)(pubsub_t *ps, const char *peer, const char *msg,
                          size_t len, void *data);

/* Starts the adapter of PubSub server `server` ("MyApp.PubSub"; an
 * "Elixir." prefix is added when absent) with pool_size listener groups
 * ('Elixir.MyApp.PubSub.Adapter', then '..._2' to '..._N') on scope pg.
 * On success *out is new; pubsub_free() it after the loop ends. */
int pubsub_new(node_t *n, pg_t *pg, const char *server, unsigned pool_size,
               pubsub_t **out);
void pubsub_free(pubsub_t *ps);

/* Calls cb for every message that arrives on topic. One callback per
 * topic; a second subscribe replaces it. */
int pubsub_subscribe(pubsub_t *ps, const char *topic, pubsub_cb cb, void *data);

/* Sends {forward_to_local, Topic, Msg, 'Elixir.Phoenix.PubSub'} to every
 * member of the first listener group on every other node (as
 * Phoenix.PubSub.broadcast_from/4 from etsd: no local delivery). Sets
 * *sent (may be NULL) to the number of pids it went to. */
int pubsub_broadcast(pubsub_t *ps, const char *topic, const void *msg,
                     size_t len, size_t *sent);

/* The same, to the members on one node only. -ENOENT when none is known
 * there yet (its scope has not synced). */
int pubsub_send_node(pubsub_t *ps, const char *node, const char *topic,
                     const void *msg, size_t len);

/* Name of listener group i (0-based), or NULL past the pool. */
const char *pubsub_group(const pubsub_t *ps, unsigned i);

/* ---- Pure parts, for tests ------------------------------------------- */

/* Decodes {forward_to_local, Topic, Msg, Dispatcher} (without version
 * byte): Topic must be a binary; *topic and *inner point into msg.
 * Returns 0 or -EPROTO (any other shape, trailing bytes). */
int pubsub_decode(const void *msg, size_t len, const char **topic, size_t *tlen,
                  const char **inner, size_t *ilen);

#endif
