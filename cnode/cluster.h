/* cluster.h: finding and keeping the cluster's nodes. etsd connects to the
 * --join nodes (retrying with backoff while they are down), asks every
 * connected visible node (one that published itself) for nodes() over rex
 * each poll interval and connects to the ones it lacks, optionally adds
 * every A/AAAA record of --dns NAME as node BASENAME@IP, and reconnects
 * with backoff to any of these members that drops (members.h). A node that
 * only connected to etsd (a script, a shell, a C node) is served but not
 * tried again once it leaves; hidden peers are never asked for nodes().
 * A member that no nodes() or DNS answer lists, and that is not connected,
 * for --forget-after is dropped with one log line. Connect failures are
 * logged once per change of reason. */
#ifndef ETSD_CLUSTER_H
#define ETSD_CLUSTER_H

#include <stdint.h>

#include "cnode/node.h"

typedef struct cluster cluster_t;

#define CLUSTER_POLL_MS 5000        /* nodes() and DNS poll interval */

/* Starts discovery with node_config(n)'s join, dns, basename and
 * forget_after_ms. poll_ms 0 means CLUSTER_POLL_MS. The poll also writes
 * the summaries of rate-limited log lines (log_limit_flush()). On success
 * *out is new; cluster_free() it after the loop ends (its shutdown hook
 * stops its timers). */
int cluster_new(node_t *n, unsigned poll_ms, cluster_t **out);
void cluster_free(cluster_t *c);

/* Adds a node to keep connected for good (as if listed in --join). */
int cluster_add(cluster_t *c, const char *node);

/* Appends the proper list of connected node atoms to out (erlang:nodes/0 on
 * etsd). Matches rpc_nodes_cb. */
int cluster_nodes_cb(void *arg, term_buf_t *out);

/* etsd:info/0 entry: appends the key `peers` and its value, a list of
 * {Node, up | connecting | down} for every member (callers are not
 * listed), and adds 1 to *count. Matches rpc_info_cb. */
int cluster_info_cb(void *arg, term_buf_t *out, uint32_t *count);

#endif
