/* pg.h: a pg scope (OTP 23+ `pg`, PROTOCOL.md sections 5 and 10) on etsd:
 * a mailbox registered under the scope name that discovers the scope on
 * every node it connects to, keeps each remote scope's group members,
 * publishes etsd's own members, and rediscovers a remote scope that
 * restarts. It speaks pg's protocol version 0 (OTP 23 to 28: discover,
 * sync, join, leave) to every scope, and version 1 (OTP 29's
 * data_publisher: discover/3, local_data, update) only to a scope that has
 * sent a version 1 shape itself: an OTP 25 scope crashes on one. */
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
 * scopes that have had etsd's sync or local_data, so none gets a leave for
 * a group it never saw; each in its own protocol version), then closes the
 * mailbox. For the node's shutdown hook. */
void pg_shutdown(pg_t *pg);

/* pg_shutdown() if not done, then frees. pg_free(NULL) does nothing. */
void pg_free(pg_t *pg);

/* Makes the local pid a member of group (an atom name) and tells every
 * remote scope already synced ({join, Self, Group, Pid}, or an update to a
 * version 1 scope). */
int pg_join(pg_t *pg, const char *group, const term_pid_t *pid);

/* Remote members of group, optionally only those on node `on_node` (NULL:
 * every other node). Fills out[0..max) and returns the total count (may
 * exceed max). The pointers are valid until the scope next handles a
 * message or node event. */
size_t pg_members(pg_t *pg, const char *group, const char *on_node,
                  const term_pid_t **out, size_t max);

/* 1 if the scope on `node` is known (its sync has arrived). */
int pg_knows_node(pg_t *pg, const char *node);

/* Called after each sync or local_data from a remote scope (its members
 * are now known); first is 1 for the first one from that node since it
 * connected. */
typedef void (*pg_sync_cb)(pg_t *pg, const char *node, int first, void *data);
void pg_on_sync(pg_t *pg, pg_sync_cb cb, void *data);

/* The scope mailbox's pid. */
const term_pid_t *pg_pid(const pg_t *pg);

/* A connected node whose scope is unknown (not started yet, or restarted)
 * gets {discover, Self} ({discover, Self, 1} if a scope on it spoke
 * version 1 since it connected) every PG_REDISCOVER_MS for the first
 * PG_REDISCOVER_FAST tries, then every tenth interval. */
#define PG_REDISCOVER_MS 500
#define PG_REDISCOVER_FAST 20

/* ---- Pure parts, for tests ------------------------------------------- */

enum {
    PG_MSG_DISCOVER = 1, PG_MSG_SYNC, PG_MSG_JOIN, PG_MSG_LEAVE, /* version 0 */
    PG_MSG_LOCAL_DATA, PG_MSG_UPDATE                            /* version 1 */
};

/* The newest pg protocol version etsd speaks (kernel/src/pg.erl version/0
 * on OTP 29). */
#define PG_VERSION 1

/* Called once per group and direction a message names, with its pids
 * (borrowed for the call): remove is 0 for pids that join (or are listed
 * as members), 1 for pids that leave. Returns 0, or a negative errno that
 * stops the decoding. */
typedef int (*pg_group_cb)(const char *group, int remove, const term_pid_t *pids,
                           size_t n, void *data);

/* Decodes one message from a remote scope (msg without version byte):
 *   {discover, Peer}                              PG_MSG_DISCOVER, version 0
 *   {discover, Peer, Version}                     PG_MSG_DISCOVER, Version
 *   {'$gen_cast', {sync, Peer, [{G, Pids}]}}      PG_MSG_SYNC, cb per group
 *   {join, Peer, G, PidOrPids}                    PG_MSG_JOIN, cb once
 *   {leave, Peer, PidOrPids, [G]}                 PG_MSG_LEAVE, cb per group
 *   {'$gen_cast', {local_data, Peer, Version, #{G => Pids}}}
 *                                                 PG_MSG_LOCAL_DATA, cb per
 *                                                 group, version Version
 *   {update, Peer, [{G, AddPids, RemovePids}]}    PG_MSG_UPDATE, cb twice per
 *                                                 group (add, then remove)
 * sync and local_data are also accepted without the '$gen_cast' wrapper
 * (OTP 29's scope hands casts to handle_info). Versions are integers from
 * 0 to 2^31-1. Groups must be atoms. Sets *peer and, when version is not
 * NULL, *version (0 for the version 0 shapes, 1 for update), and returns
 * the kind; -EPROTO for anything else (trailing bytes included), checked
 * in full before cb first runs; cb may be NULL. -ENOMEM, or cb's own
 * error. */
int pg_decode(const void *msg, size_t len, term_pid_t *peer, unsigned *version,
              pg_group_cb cb, void *data);

/* One group's pids, borrowed, for the encoders below. */
typedef struct pg_group_pids {
    const char *group;
    const term_pid_t *pids;
    size_t n;
} pg_group_pids_t;

/* The shapes etsd sends to a remote scope, appended without version byte
 * to b (errors land in b->err). version 0 gives pg.erl's OTP 23 shapes,
 * version 1 data_publisher's; any other version is taken as 1.
 *   pg_put_discover: {discover, Self} | {discover, Self, 1}
 *   pg_put_local:    {'$gen_cast', {sync, Self, [{G, Pids}]}} |
 *                    {'$gen_cast', {local_data, Self, 1, #{G => Pids}}}
 *                    (groups without pids are left out; names distinct)
 *   pg_put_join:     {join, Self, G, Pid | Pids} | {update, Self, [{G, Pids, []}]}
 *   pg_put_leave:    {leave, Self, Pids, [G]} | {update, Self, [{G, [], Pids}]} */
void pg_put_discover(term_buf_t *b, const term_pid_t *self, unsigned version);
void pg_put_local(term_buf_t *b, const term_pid_t *self, unsigned version,
                  const pg_group_pids_t *groups, size_t ngroups);
void pg_put_join(term_buf_t *b, const term_pid_t *self, unsigned version,
                 const char *group, const term_pid_t *pids, size_t n);
void pg_put_leave(term_buf_t *b, const term_pid_t *self, unsigned version,
                  const char *group, const term_pid_t *pids, size_t n);

#endif
