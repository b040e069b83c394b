/* compact.c: when the store's log has outgrown its snapshot, write a new
 * one without holding the loop: store_compact_begin() on the loop (a
 * rotation and a fork), store_compact_wait() in the libuv thread pool,
 * store_compact_end() back on the loop. */
#include "cnode/compact.h"

#include <errno.h>

#include "cnode/log.h"
#include "cnode/metrics.h"
#include "term/mem.h"

typedef struct waiter {
    compact_done_cb done;
    void *ctx;
    struct waiter *next;
} waiter_t;

struct compact {
    uv_loop_t *loop;
    store_t *store;
    uv_check_t check;
    int check_on;
    int stopping;
    store_compact_t *running;
    uv_work_t work;
    waiter_t *cur;    /* answered when the running compaction ends */
    waiter_t *next;   /* arrived while one ran: need the one after it */
    uint64_t count;   /* compactions started, for the log line */
};

static void answer(waiter_t **list, int rc)
{
    waiter_t *w = *list;
    *list = NULL;
    while (w) {
        waiter_t *n = w->next;
        w->done(w->ctx, rc);
        mem_free(w);
        w = n;
    }
}

static void work_cb(uv_work_t *req)
{
    compact_t *cp = req->data;
    (void)store_compact_wait(cp->running);
}

static int start(compact_t *cp);

static void after_work_cb(uv_work_t *req, int status)
{
    compact_t *cp = req->data;
    store_compact_info_t info;
    (void)status; /* never cancelled: uv_cancel is not used */
    int rc = store_compact_end(cp->store, cp->running, &info);
    cp->running = NULL;
    if (rc == 0)
        metrics_inc(METRICS_COMPACTIONS);
    if (rc == 0)
        log_info("store: compaction %llu: snapshot of %llu objects at seq %llu, "
                 "%.1f MB, replaces %.1f MB of log; %.0f ms, loop held %.2f ms "
                 "(%.2f ms CPU)",
                 (unsigned long long)cp->count, (unsigned long long)info.objects,
                 (unsigned long long)info.seq, (double)info.snap_bytes / 1e6,
                 (double)info.log_bytes / 1e6, (double)info.total_ns / 1e6,
                 (double)info.begin_ns / 1e6, (double)info.begin_cpu_ns / 1e6);
    else if (!cp->stopping)
        log_error("store: compaction %llu failed after %.0f ms: %s; the log is kept",
                  (unsigned long long)cp->count, (double)info.total_ns / 1e6,
                  uv_strerror(rc));
    else
        log_info("store: compaction %llu stopped with etsd; the log is kept",
                 (unsigned long long)cp->count);
    answer(&cp->cur, cp->stopping ? -ECANCELED : rc);
    if (cp->next && !cp->stopping) {
        cp->cur = cp->next;
        cp->next = NULL;
        if ((rc = start(cp)) < 0)
            answer(&cp->cur, rc);
    }
}

/* Begins a compaction and hands its wait to the thread pool. */
static int start(compact_t *cp)
{
    store_compact_t *c;
    int rc = store_compact_begin(cp->store, &c);
    if (rc < 0) {
        if (rc != -EINVAL)
            log_error("store: compaction: %s; the log is kept", uv_strerror(rc));
        return rc;
    }
    cp->count++;
    cp->running = c;
    cp->work.data = cp;
    rc = uv_queue_work(cp->loop, &cp->work, work_cb, after_work_cb);
    if (rc < 0) {
        /* Cannot happen with a valid loop and callbacks; still, end it. */
        (void)store_compact_wait(c);
        (void)store_compact_end(cp->store, c, NULL);
        cp->running = NULL;
    }
    return rc;
}

/* Every loop turn: a comparison, and a compaction when it is due. */
static void check_cb(uv_check_t *h)
{
    compact_t *cp = h->data;
    if (!cp->running && store_compact_due(cp->store))
        (void)start(cp);
}

int compact_new(uv_loop_t *loop, store_t *s, uint64_t compact_at, compact_t **out)
{
    compact_t *cp = mem_calloc(1, sizeof *cp);
    if (!cp)
        return -ENOMEM;
    cp->loop = loop;
    cp->store = s;
    store_set_compact_at(s, compact_at);
    int rc = uv_check_init(loop, &cp->check);
    if (rc < 0) {
        mem_free(cp);
        return rc;
    }
    cp->check.data = cp;
    cp->check_on = 1;
    (void)uv_check_start(&cp->check, check_cb);
    /* The check runs after each poll; it must not keep an idle loop alive. */
    uv_unref((uv_handle_t *)&cp->check);
    *out = cp;
    return 0;
}

int compact_request(compact_t *cp, compact_done_cb done, void *ctx)
{
    if (cp->stopping)
        return -ESHUTDOWN;
    waiter_t *w = mem_calloc(1, sizeof *w);
    if (!w)
        return -ENOMEM;
    w->done = done;
    w->ctx = ctx;
    if (cp->running) {
        w->next = cp->next;
        cp->next = w;
        return 0;
    }
    int rc = start(cp);
    if (rc < 0) {
        mem_free(w);
        return rc;
    }
    w->next = cp->cur;
    cp->cur = w;
    return 0;
}

static void drop(waiter_t **list, void *ctx)
{
    for (waiter_t **p = list; *p;) {
        if ((*p)->ctx == ctx) {
            waiter_t *w = *p;
            *p = w->next;
            mem_free(w);
        } else {
            p = &(*p)->next;
        }
    }
}

void compact_cancel(compact_t *cp, void *ctx)
{
    if (!cp)
        return;
    drop(&cp->cur, ctx);
    drop(&cp->next, ctx);
}

void compact_stop(compact_t *cp)
{
    if (!cp || cp->stopping)
        return;
    cp->stopping = 1;
    if (cp->check_on) {
        uv_check_stop(&cp->check);
        uv_close((uv_handle_t *)&cp->check, NULL);
        cp->check_on = 0;
    }
    if (cp->running)
        store_compact_abort(cp->running);
    answer(&cp->next, -ECANCELED);
    if (!cp->running)
        answer(&cp->cur, -ECANCELED);
}

void compact_free(compact_t *cp)
{
    if (!cp)
        return;
    answer(&cp->cur, -ECANCELED);
    answer(&cp->next, -ECANCELED);
    mem_free(cp);
}
