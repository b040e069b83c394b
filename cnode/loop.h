/* loop.h: process-level plumbing around the libuv loop: SIGTERM/SIGINT
 * turn into a clean node_stop(), SIGPIPE is ignored, and a stuck shutdown
 * is cut short. */
#ifndef ETSD_LOOP_H
#define ETSD_LOOP_H

#include <uv.h>

#include "cnode/node.h"

typedef struct loop_sig loop_sig_t;

/* Ignores SIGPIPE (a write to a peer that just closed must be an error
 * return, not the end of the process) and watches SIGTERM and SIGINT on
 * loop: the first one calls node_stop(n) and closes the watchers, so the
 * loop ends once the services have closed their handles; if that takes
 * more than 5 s the process exits 0 anyway. On success *out is new; free
 * it with loop_signals_free() after the loop has ended. */
int loop_signals_start(uv_loop_t *loop, node_t *n, loop_sig_t **out);

/* Stops watching (if still watching) and frees; NULL is a no-op. Run the
 * loop afterwards so the handles finish closing. */
void loop_signals_close(loop_sig_t *s);
void loop_signals_free(loop_sig_t *s);

/* 1 once a signal asked for shutdown. */
int loop_signals_fired(const loop_sig_t *s);

#endif
