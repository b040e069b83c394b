/* compact.h: automatic log compaction for a durable store, on the loop.
 * Starts store_compact_begin() when store_compact_due() says the log has
 * grown past its threshold (or when asked, for etsd:snapshot()), waits for
 * it in the libuv thread pool, and ends it back on the loop with one log
 * line. The loop is held only by store_compact_begin(). */
#ifndef ETSD_COMPACT_H
#define ETSD_COMPACT_H

#include <stdint.h>

#include <uv.h>

#include "store/store.h"

typedef struct compact compact_t;

/* Called once per request, on the loop, with 0 once a snapshot holding
 * every write made before the request is durable, or a negative errno
 * (-ECANCELED: etsd is stopping). */
typedef void (*compact_done_cb)(void *ctx, int rc);

/* Watches s (borrowed; outlives cp) on loop. compact_at: the log size that
 * starts a compaction, 0 for the store's default (twice the snapshot, at
 * least 64 MB). On success *out is new; stop it with compact_stop() before
 * the loop's last run and free it with compact_free() after. Returns 0,
 * -ENOMEM or a libuv error. */
int compact_new(uv_loop_t *loop, store_t *s, uint64_t compact_at, compact_t **out);

/* Asks for a snapshot of everything written so far: starts a compaction
 * now, or after the one running (whose snapshot may miss later writes).
 * done is never called from inside this function. Returns 0, or a
 * negative errno when nothing was started (done is then never called):
 * -EINVAL for a memory-only store, -ESHUTDOWN after compact_stop(), or
 * the error of store_compact_begin(). */
int compact_request(compact_t *cp, compact_done_cb done, void *ctx);

/* Withdraws every request made with ctx: done will not be called for it. */
void compact_cancel(compact_t *cp, void *ctx);

/* Stops starting compactions, kills a running one's child (its wait ends
 * soon after, on the loop's next turns) and answers every request with
 * -ECANCELED. */
void compact_stop(compact_t *cp);

/* Frees cp after the loop has finished; NULL does nothing. */
void compact_free(compact_t *cp);

#endif
