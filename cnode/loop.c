/* loop.c: signals on the libuv loop: clean shutdown on SIGTERM and SIGINT
 * (unregister from EPMD, close every connection so peers see nodedown at
 * once, exit 0), SIGPIPE ignored. */
#include "cnode/loop.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>

#include "cnode/log.h"
#include "term/mem.h"

struct loop_sig {
    uv_signal_t term, intr;
    uv_timer_t deadline;
    node_t *node;
    int fired;
    int closing;
    int open;
};

static void deadline_cb(uv_timer_t *t)
{
    (void)t;
    /* Something still holds the loop (a service that did not close its
     * handles). The node itself is already closed: leave. */
    log_warn("shutdown: handles still open after 5 s; exiting");
    exit(0);
}

static void closed_cb(uv_handle_t *h)
{
    loop_sig_t *s = h->data;
    s->open--;
}

void loop_signals_close(loop_sig_t *s)
{
    if (!s || s->closing)
        return;
    s->closing = 1;
    uv_close((uv_handle_t *)&s->term, closed_cb);
    uv_close((uv_handle_t *)&s->intr, closed_cb);
}

static void on_signal(uv_signal_t *h, int signum)
{
    loop_sig_t *s = h->data;
    if (s->fired)
        return;
    s->fired = 1;
    log_info("%s: shutting down", signum == SIGTERM ? "SIGTERM" : "SIGINT");
    node_stop(s->node);
    loop_signals_close(s);
    uv_timer_start(&s->deadline, deadline_cb, 5000, 0);
    /* The deadline must not keep the loop alive by itself. */
    uv_unref((uv_handle_t *)&s->deadline);
}

int loop_signals_start(uv_loop_t *loop, node_t *n, loop_sig_t **out)
{
    signal(SIGPIPE, SIG_IGN);
    loop_sig_t *s = mem_calloc(1, sizeof *s);
    if (!s)
        return -ENOMEM;
    s->node = n;
    uv_signal_init(loop, &s->term);
    uv_signal_init(loop, &s->intr);
    uv_timer_init(loop, &s->deadline);
    s->term.data = s->intr.data = s->deadline.data = s;
    s->open = 3;
    uv_unref((uv_handle_t *)&s->deadline);
    int rc = uv_signal_start(&s->term, on_signal, SIGTERM);
    if (rc == 0)
        rc = uv_signal_start(&s->intr, on_signal, SIGINT);
    if (rc < 0) {
        loop_signals_close(s);
        uv_close((uv_handle_t *)&s->deadline, closed_cb);
        /* Caller runs the loop; s is freed by loop_signals_free(). */
        *out = s;
        return rc;
    }
    *out = s;
    return 0;
}

int loop_signals_fired(const loop_sig_t *s)
{
    return s && s->fired;
}

void loop_signals_free(loop_sig_t *s)
{
    if (!s)
        return;
    if (!uv_is_closing((uv_handle_t *)&s->deadline))
        uv_close((uv_handle_t *)&s->deadline, closed_cb);
    loop_signals_close(s);
    uv_loop_t *loop = s->deadline.loop;
    while (s->open > 0)
        uv_run(loop, UV_RUN_ONCE);
    mem_free(s);
}
