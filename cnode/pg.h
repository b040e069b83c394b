/* pg.h: a pg scope (OTP 23+ `pg`, PROTOCOL.md section 5) on etsd: a mailbox
 * registered under the scope name that discovers the scope on every node it
 * connects to, keeps each remote scope's group members, publishes etsd's
 * own members, and rediscovers a remote scope that restarts. It sends a
 * remote scope only discover, sync, join and leave. */
#ifndef ETSD_PG_H
#define ETSD_PG_H

#include <stddef.h>

#include "cnode/node.h"

#define PG_SCOPE_PHOENIX "Elixir.Phoenix.PubSub"

typedef struct pg pg_t;

/* Starts the scope `scope` on n: registers the mailbox, subscribes to node
 * events and sends {discover, Self} to the scope on every node that comes
 * up. On success *out is new; pg_free() it. -EEXIST if the name is taken. */
int pg_new(node_t *n, const char *scope, pg_t **out);

/* Tells every remote scope that etsd's members leave their groups (only
 * scopes that have had etsd's sync, so none gets a leave for a group it
 * never saw), then closes the mailbox. For the node's shutdown hook. */
void pg_shutdown(pg_t *pg);

/* pg_shutdown() if not done, then frees. pg_free(NULL) does nothing. */
void pg_free(pg_t *pg);

/* Makes the local pid a member of group (an atom name) and tells every
 * remote scope already synced ({join, Self, Group, Pid}). */
int pg_join(pg_t *pg, const char *group, const term_pid_t *pid);

/* Remote members of group, optionally only those on node `on_node` (NULL:
 * every other node). Fills out[0..max) and returns the total count (may
 * exceed max). The pointers are valid until the scope next handles a
 * message or node event. */
size_t pg_members(pg_t *pg, const char *group, const char *on_node,
                  const term_pid_t **out, size_t max);

/* 1 if the scope on `node` is known (its sync has arrived). */
int pg_knows_node(pg_t *pg, const char *node);

/* Called after each sync from a remote scope (its members are now known);
 * first is 1 for the first sync from that node since it connected. */
typedef void (*pg_sync_cb)(pg_t *pg, const char *node, int first, void *data);
void pg_on_sync(pg_t *pg, pg_sync_cb cb, void *data);

/* The scope mailbox's pid. */
const term_pid_t *pg_pid(const pg_t *pg);

/* A connected node whose scope is unknown (not started yet, or restarted)
 * gets {discover, Self} every PG_REDISCOVER_MS for the first
 * PG_REDISCOVER_FAST tries, then every tenth interval. */
#define PG_REDISCOVER_MS 500
#define PG_REDISCOVER_FAST 20

/* ---- Pure parts, for tests ------------------------------------------- */

enum { PG_MSG_DISCOVER = 1, PG_MSG_SYNC, PG_MSG_JOIN, PG_MSG_LEAVE };

/* Called once per group a message names, with its pids (borrowed for the
 * call). Returns 0, or a negative errno that stops the decoding. */
typedef int (*pg_group_cb)(const char *group, const term_pid_t *pids, size_t n,
                           void *data);

/* Decodes one message from a remote scope (msg without version byte):
 *   {discover, Peer}                          PG_MSG_DISCOVER, no cb
 *   {'$gen_cast', {sync, Peer, [{G, Pids}]}}  PG_MSG_SYNC, cb per group
 *   {join, Peer, G, PidOrPids}                PG_MSG_JOIN, cb once
 *   {leave, Peer, PidOrPids, [G]}             PG_MSG_LEAVE, cb per group
 * Sets *peer and returns the kind; -EPROTO for anything else (trailing
 * bytes included), checked in full before cb first runs; cb may be NULL.
 * -ENOMEM, or cb's own error. */
int pg_decode(const void *msg, size_t len, term_pid_t *peer, pg_group_cb cb,
              void *data);

#endif
