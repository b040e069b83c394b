/* replicate.c: the seed app's Syncer and NodeListener, as etsd plays them.
 * Incoming writes go through one FIFO of jobs so that a {new, U} never
 * lands before a large sync that arrived ahead of it (the seed's Syncer
 * handles its mailbox in order). */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "cnode/log.h"
#include "cnode/metrics.h"
#include "cnode/replicate.h"
#include "cnode/pull.h"
#include "term/mem.h"

/* A pull whose table is missing there is retried this often. */
#define PULL_RETRY_MS 500
#define PULL_RETRIES 20
/* A push retries this often while the node's scope has not synced. */
#define PUSH_RETRY_MS 200
#define PUSH_RETRIES 100

typedef struct rep_read rep_read_t;

typedef struct rep_job {
    rep_read_t *read;      /* a chunk of this read of a node's table, or NULL */
    char *buf;             /* owned copy of the list (or one object) */
    size_t len;
    term_reader_t r;
    uint32_t left;         /* elements of the current LIST_EXT segment left */
    int single;            /* buf is one object, not a list */
    char *peer;
    const char *what;      /* "sync", "pull", "new" */
    size_t objects, bad;
    size_t failed;         /* refused by the store (not a bad object) */
    int err;               /* the last such refusal */
    uint64_t start_ms;
    uint64_t progress_ms;  /* last progress line */
    struct rep_job *next;
} rep_job_t;

/* What a merge did, for its log lines (report()). */
typedef struct rep_tally {
    const char *peer, *what;
    size_t objects, bytes, bad, failed;
    int err;               /* the last refusal by the store */
    size_t chunks;         /* a read's chunks, or 0 */
    uint64_t ms;
} rep_tally_t;

/* One read of a node's table (pull.h): its chunks are jobs in the FIFO,
 * and it is reported once, when it has ended and its last chunk is in. */
struct rep_read {
    replicate_t *r;
    char *peer;
    int for_sync;          /* an etsd:sync/0 pull */
    int refs;              /* chunks queued, + 1 until the read ends */
    int status;            /* how the read ended */
    rep_tally_t t;         /* its chunks so far; t.peer is peer */
    uint64_t start_ms;
    uint64_t progress_ms;  /* last progress line */
};

/* A node whose table could not be read yet ({badrpc, _}: its Syncer may not
 * have created it): the pull is tried again. */
typedef struct rep_retry {
    replicate_t *r;
    char *node;
    int tries;
    uv_timer_t timer;
    struct rep_retry *next;
} rep_retry_t;

typedef struct rep_push {
    replicate_t *r;
    char *node;
    int tries;
    uv_timer_t timer;
    uv_idle_t idle;        /* runs the encode a chunk per loop turn */
    int handles;           /* still to be closed before it is freed */
    store_encode_t *enc;   /* non-NULL while the table is being encoded */
    term_buf_t buf;        /* {sync, List, ... as far as it is encoded */
    size_t objects;        /* the table's size when the encode began */
    uint64_t t0;
    struct rep_push *next;
} rep_push_t;

struct replicate {
    node_t *node;
    pg_t *pg;
    pubsub_t *ps;
    pull_t *puller;
    store_t *store;
    store_table_t *tab;
    const node_config_t *cfg;
    rep_job_t *head, *tail;
    size_t backlog;
    uv_idle_t idle;
    rep_push_t *pushes;
    rep_retry_t *retries;
    unsigned sync_pulls;   /* etsd:sync/0 pulls still out */
    int sync_push;         /* push to every node once they are merged */
    int sub_id;
    int shut;
    size_t refused;        /* objects the store refused (log failures) */
    int defer;             /* durable store: queue even small inputs, so one
                            * loop turn's messages share one log batch */
};

/* Wall time for the log lines: uv_now() is the loop's cached time and does
 * not move inside one callback. */
static uint64_t now_ms(replicate_t *r)
{
    (void)r;
    return uv_hrtime() / 1000000;
}

/* ---- Applying writes ----------------------------------------------------- */

static int apply_one(replicate_t *r, const char *obj, size_t len)
{
    term_reader_t t;
    uint32_t arity;
    term_reader_init(&t, obj, len);
    if (term_peek(&t) != TERM_T_TUPLE || term_get_tuple(&t, &arity) < 0 ||
        arity < r->cfg->keypos)
        return -EINVAL;
    return store_insert(r->tab, obj, len);
}

/* ---- Reporting ---------------------------------------------------------- */

/* Logs the outcome of merging a list (or a read's chunks); single objects
 * only log refusals. */
static void report(replicate_t *r, const rep_tally_t *t, int single)
{
    /* A store that broke refuses every write until restart: say so at the
     * first refusal and then now and then, not once per {new, U}. */
    if (t->failed && (r->refused == 0 || r->refused / 10000 != (r->refused + t->failed) / 10000))
        log_error("%s: %s: %zu objects not stored: %s (%zu refused so far)", t->peer,
                  t->what, t->failed, uv_strerror(t->err), r->refused + t->failed);
    r->refused += t->failed;
    if (t->bad)
        log_warn("%s: %s: %zu objects not applied (not tuples of at least %u "
                 "elements, or malformed)", t->peer, t->what, t->bad, r->cfg->keypos);
    if (single)
        return;
    char chunks[48] = "";
    if (t->chunks)
        snprintf(chunks, sizeof chunks, " in %zu chunk%s", t->chunks, t->chunks == 1 ? "" : "s");
    if (t->objects >= REPLICATE_CHUNK || t->ms >= 100)
        log_info("%s: %s: merged %zu objects (%zu bytes%s) in %llu ms; table has %zu",
                 t->peer, t->what, t->objects, t->bytes, chunks, (unsigned long long)t->ms,
                 store_table_size(r->tab));
    else
        log_debug("%s: %s: merged %zu objects (%zu bytes%s)", t->peer, t->what, t->objects,
                  t->bytes, chunks);
}

static void read_free(rep_read_t *rd)
{
    mem_free(rd->peer);
    mem_free(rd);
}

/* Drops one hold on rd; the last reports the read (unless shutting down). */
static void read_release(rep_read_t *rd)
{
    if (--rd->refs > 0)
        return;
    replicate_t *r = rd->r;
    if (rd->status == 0 && !r->shut) {
        rd->t.ms = now_ms(r) - rd->start_ms;
        report(r, &rd->t, 0);
    }
    read_free(rd);
}

/* A chunk of rd is merged: add it up, and say how far a long read got. */
static void read_add(rep_read_t *rd, const rep_job_t *j)
{
    rd->t.objects += j->objects;
    rd->t.bad += j->bad;
    rd->t.failed += j->failed;
    if (j->failed)
        rd->t.err = j->err;
    uint64_t now = now_ms(rd->r);
    if (now - (rd->progress_ms ? rd->progress_ms : rd->start_ms) >= 1000) {
        rd->progress_ms = now;
        log_info("%s: pull: %zu objects merged so far (%zu bytes in %zu chunks), %llu ms",
                 rd->peer, rd->t.objects, rd->t.bytes, rd->t.chunks,
                 (unsigned long long)(now - rd->start_ms));
    }
}

static void job_free(rep_job_t *j)
{
    if (j->read)
        read_release(j->read);
    mem_free(j->buf);
    mem_free(j->peer);
    mem_free(j);
}

/* Applies up to max objects of j; returns 1 when j is done. */
/* Counts the outcome of applying one object. */
static void job_count(rep_job_t *j, int rc)
{
    if (rc == 0) {
        j->objects++;
        metrics_inc(j->single ? METRICS_NEW_APPLIED : METRICS_SYNC_MERGED);
    } else if (rc == -EINVAL) {
        j->bad++;
    } else {
        j->failed++;
        j->err = rc;
    }
}

static int job_step(replicate_t *r, rep_job_t *j, size_t max)
{
    const char *p;
    size_t len;

    if (j->single) {
        job_count(j, apply_one(r, j->buf, j->len));
        return 1;
    }
    while (max--) {
        if (j->left == 0) {
            /* The tail of the current segment: NIL ends the list; anything
             * else is an improper list, which no seed node sends. */
            if (term_peek(&j->r) == TERM_T_NIL) {
                (void)term_get_nil(&j->r);
                return 1;
            }
            if (term_peek(&j->r) != TERM_T_LIST || term_get_list(&j->r, &j->left) < 0) {
                j->bad++;
                return 1;
            }
            continue;
        }
        if (term_get_any(&j->r, &p, &len) < 0) {
            j->bad++;
            return 1;
        }
        j->left--;
        if (r->backlog)
            r->backlog--;
        job_count(j, apply_one(r, p, len));
    }
    return 0;
}

static void job_done(replicate_t *r, rep_job_t *j)
{
    if (j->read) {
        /* Reported with its read. */
        read_add(j->read, j);
        read_release(j->read);
        j->read = NULL;
        return;
    }
    rep_tally_t t = {j->peer, j->what, j->objects, j->len, j->bad, j->failed, j->err, 0,
                     now_ms(r) - j->start_ms};
    report(r, &t, j->single);
}

static void sync_push_if_ready(replicate_t *r);

/* Runs once per loop turn while jobs are queued. */
static void idle_cb(uv_idle_t *h)
{
    replicate_t *r = h->data;
    size_t budget = REPLICATE_CHUNK;
    uint64_t t0 = uv_hrtime();
    size_t applied = 0;

    /* Group commit: everything applied in this turn (a slice of a sync,
     * or a run of queued {new, U}) goes to the log in one write and, under
     * --fsync always, one fdatasync, instead of one per object. */
    store_batch_begin(r->store);
    while (r->head && budget && uv_hrtime() - t0 < REPLICATE_SLICE_MS * 1000000ull) {
        rep_job_t *j = r->head;
        /* Slices of REPLICATE_STEP objects until the chunk or the time
         * slice is used: the loop must get back to ticks and peers. */
        size_t before = j->objects + j->bad + j->failed;
        size_t step = budget < REPLICATE_STEP ? budget : REPLICATE_STEP;
        int done = job_step(r, j, step);
        size_t used = j->objects + j->bad + j->failed - before;
        applied += used;
        budget = used >= budget ? 0 : budget - used;
        if (!done && budget && uv_hrtime() - t0 < REPLICATE_SLICE_MS * 1000000ull)
            continue;
        if (!done) {
            uint64_t now = now_ms(r);
            if (now - (j->progress_ms ? j->progress_ms : j->start_ms) >= 1000) {
                j->progress_ms = now;
                log_info("%s: %s: %zu objects merged so far (%zu bytes in all), "
                         "%llu ms", j->peer, j->what, j->objects, j->len,
                         (unsigned long long)(now - j->start_ms));
            }
            break;
        }
        r->head = j->next;
        if (!r->head)
            r->tail = NULL;
        if (j->single && r->backlog)
            r->backlog--;
        job_done(r, j);
        job_free(j);
    }
    int rc = store_batch_end(r->store);
    if (rc < 0)
        log_error("replication: writing the log failed (%s): up to %zu objects merged "
                  "in memory are not durable, and the store takes no more writes "
                  "until etsd restarts", uv_strerror(rc), applied);
    if (!r->head) {
        uv_idle_stop(&r->idle);
        sync_push_if_ready(r);
    }
}

/* Queues (or, with nothing queued and a small input, applies at once) the
 * list or single object in bytes/len; a chunk of read rd holds it until
 * merged. */
static int enqueue(replicate_t *r, const char *peer, const char *what,
                   const char *bytes, size_t len, int single, rep_read_t *rd)
{
    rep_job_t *j;
    uint32_t n = 0;

    if (!r->head && !r->defer) {
        /* Fast path: nothing ahead of it, small enough for one turn. */
        if (single) {
            int rc = apply_one(r, bytes, len);
            if (rc == 0)
                metrics_inc(METRICS_NEW_APPLIED);
            return rc;
        }
        rep_job_t tmp = {0};
        term_reader_init(&tmp.r, bytes, len);
        if (term_peek(&tmp.r) == TERM_T_NIL)
            return 0;
        if (term_peek(&tmp.r) == TERM_T_LIST) {
            term_reader_t probe = tmp.r;
            if (term_get_list(&probe, &n) == 0 && n <= REPLICATE_INLINE) {
                tmp.buf = (char *)bytes;
                tmp.len = len;
                tmp.peer = (char *)peer;
                tmp.what = what;
                tmp.start_ms = now_ms(r);
                if ((tmp.read = rd))
                    rd->refs++;
                while (!job_step(r, &tmp, SIZE_MAX))
                    ;
                job_done(r, &tmp);
                return 0;
            }
        }
    }
    if (!(j = mem_calloc(1, sizeof *j)))
        return -ENOMEM;
    if (!(j->buf = mem_alloc(len ? len : 1)) || !(j->peer = mem_strdup(peer))) {
        job_free(j);
        return -ENOMEM;
    }
    memcpy(j->buf, bytes, len);
    if ((j->read = rd))
        rd->refs++;
    j->len = len;
    j->single = single;
    j->what = what;
    j->start_ms = now_ms(r);
    term_reader_init(&j->r, j->buf, j->len);
    if (!single) {
        term_reader_t probe = j->r;
        if (term_peek(&probe) == TERM_T_LIST && term_get_list(&probe, &n) == 0)
            r->backlog += n;
    } else {
        r->backlog++;
    }
    if (r->tail)
        r->tail->next = j;
    else
        r->head = j;
    r->tail = j;
    uv_idle_start(&r->idle, idle_cb);
    return 0;
}

/* ---- Messages from PubSub -------------------------------------------- */

int replicate_decode(const void *msg, size_t len, const char **payload, size_t *plen)
{
    term_reader_t t;
    uint32_t arity;
    char tag[TERM_ATOM_MAX];
    const char *p;
    size_t l;

    term_reader_init(&t, msg, len);
    if (term_get_tuple(&t, &arity) < 0 || term_get_atom(&t, tag) < 0)
        return -EPROTO;
    if (strcmp(tag, "new") == 0 && arity == 2) {
        if (term_get_any(&t, payload, plen) < 0 || t.pos != t.len)
            return -EPROTO;
        return REPLICATE_MSG_NEW;
    }
    /* PROTOCOL.md 8: {sync, T}, {sync, T, Node} and {sync, T, Node, _}. */
    if (strcmp(tag, "sync") == 0 && arity >= 2 && arity <= 4) {
        if ((term_peek(&t) != TERM_T_LIST && term_peek(&t) != TERM_T_NIL) ||
            term_get_any(&t, payload, plen) < 0)
            return -EPROTO;
        for (uint32_t i = 2; i < arity; i++)
            if (term_get_any(&t, &p, &l) < 0)
                return -EPROTO;
        return t.pos == t.len ? REPLICATE_MSG_SYNC : -EPROTO;
    }
    return -EPROTO;
}

/* The seed's Syncer: whatever arrives on its two topics, {new, U} is
 * inserted and {sync, T, ...} merged, in arrival order. */
static void on_message(pubsub_t *ps, const char *peer, const char *msg, size_t len,
                       void *data)
{
    replicate_t *r = data;
    const char *payload;
    size_t plen;
    int kind, rc;
    (void)ps;

    kind = replicate_decode(msg, len, &payload, &plen);
    if (kind < 0) {
        log_debug("%s: replication: ignored a message that is neither {new, Object} "
                  "nor {sync, Table, ...}", peer);
        return;
    }
    if (kind == REPLICATE_MSG_NEW)
        rc = enqueue(r, peer, "new", payload, plen, 1, NULL);
    else
        rc = enqueue(r, peer, "sync", payload, plen, 0, NULL);
    if (rc < 0)
        log_warn("%s: %s: not stored: %s", peer, kind == REPLICATE_MSG_NEW ? "new" : "sync",
                 uv_strerror(rc));
}

/* ---- Pull: the node's table, in chunks (pull.h) ------------------------ */

static int pull(replicate_t *r, const char *peer, int for_sync);

static rep_retry_t *retry_find(replicate_t *r, const char *node)
{
    for (rep_retry_t *q = r->retries; q; q = q->next)
        if (strcmp(q->node, node) == 0)
            return q;
    return NULL;
}

static void retry_closed_cb(uv_handle_t *h)
{
    rep_retry_t *q = h->data;
    mem_free(q->node);
    mem_free(q);
}

static void retry_drop(replicate_t *r, rep_retry_t *q)
{
    for (rep_retry_t **p = &r->retries; *p; p = &(*p)->next) {
        if (*p == q) {
            *p = q->next;
            break;
        }
    }
    uv_timer_stop(&q->timer);
    uv_close((uv_handle_t *)&q->timer, retry_closed_cb);
}

static void retry_timer_cb(uv_timer_t *t)
{
    rep_retry_t *q = t->data;
    if (!node_is_connected(q->r->node, q->node) || pull(q->r, q->node, 0) < 0)
        retry_drop(q->r, q);
}

/* Room for the node's objects before they come: a million inserts then
 * never rehash the table. A hint from the network, so bounded. */
static void read_size_cb(const char *peer, uint64_t objects, void *data)
{
    rep_read_t *rd = data;
    size_t n = objects < REPLICATE_RESERVE_MAX ? (size_t)objects : REPLICATE_RESERVE_MAX;
    int e = store_table_reserve(rd->r->tab, n);
    if (e < 0)
        log_debug("%s: pull: no room made for %zu objects: %s", peer, n, uv_strerror(e));
}

/* A chunk goes into the FIFO behind whatever arrived before it. */
static void read_chunk_cb(const char *peer, const char *list, size_t len, void *data)
{
    rep_read_t *rd = data;
    int e;

    rd->t.chunks++;
    rd->t.bytes += len;
    if ((e = enqueue(rd->r, peer, "pull", list, len, 0, rd)) < 0)
        log_warn("%s: pull: a chunk of %zu bytes not merged: %s", peer, len, uv_strerror(e));
}

static void read_done_cb(const char *peer, int status, void *data)
{
    rep_read_t *rd = data;
    replicate_t *r = rd->r;
    rep_retry_t *q;

    rd->status = status;
    if (status != -ECANCELED && !r->shut) {
        q = retry_find(r, peer);
        if (status == -ENOENT && q && ++q->tries < PULL_RETRIES) {
            /* No table there yet: a Syncer starts after the PubSub whose
             * sync brought us here. */
            uv_timer_start(&q->timer, retry_timer_cb, PULL_RETRY_MS, 0);
        } else {
            if (status == -ENOENT)
                log_info("%s: pull: %s is not a table there; skipped", peer, r->cfg->table);
            else if (status < 0)
                log_info("%s: pull: %s not read: %s", peer, r->cfg->table,
                         uv_strerror(status));
            if (q)
                retry_drop(r, q);
        }
        /* etsd:sync/0: when the last pull is in, push to every node. */
        if (rd->for_sync && r->sync_pulls && --r->sync_pulls == 0) {
            r->sync_push = 1;
            sync_push_if_ready(r);
        }
    }
    read_release(rd);
}

/* The first pull from a node, retried while its table does not exist. */
static void pull_first(replicate_t *r, const char *peer)
{
    rep_retry_t *q = retry_find(r, peer);
    if (!q) {
        if (!(q = mem_calloc(1, sizeof *q)) || !(q->node = mem_strdup(peer))) {
            mem_free(q);
            log_warn("%s: pull: %s", peer, uv_strerror(-ENOMEM));
            return;
        }
        q->r = r;
        uv_timer_init(node_loop(r->node), &q->timer);
        q->timer.data = q;
        q->next = r->retries;
        r->retries = q;
    }
    q->tries = 0;
    if (pull(r, peer, 0) < 0)
        retry_drop(r, q);
}

static int pull(replicate_t *r, const char *peer, int for_sync)
{
    static const pull_ops_t ops = {read_size_cb, read_chunk_cb, read_done_cb};
    rep_read_t *rd = mem_calloc(1, sizeof *rd);
    int rc = -ENOMEM;

    if (rd && (rd->peer = mem_strdup(peer))) {
        rd->r = r;
        rd->t.peer = rd->peer;
        rd->t.what = "pull";
        rd->for_sync = for_sync;
        rd->refs = 1;
        rd->start_ms = now_ms(r);
        rc = pull_table(r->puller, peer, r->cfg->table, REPLICATE_PULL_TIMEOUT_MS, &ops, rd);
    }
    if (rc < 0) {
        log_warn("%s: pull: %s", peer, uv_strerror(rc));
        if (rd)
            read_free(rd);
    }
    return rc;
}

/* ---- Push: {sync, Table, node()} to one node -------------------------- */

/* A sync push encodes the table PUSH_CHUNK objects per loop turn: a
 * million objects in one go held the loop (ticks, every peer) ~0.3 s. */
#define PUSH_CHUNK 20000u

static void push_closed_cb(uv_handle_t *h)
{
    rep_push_t *p = h->data;
    if (--p->handles > 0)
        return;
    mem_free(p->node);
    mem_free(p);
}

static void push_stop_encode(rep_push_t *p)
{
    uv_idle_stop(&p->idle);
    store_encode_free(p->enc);
    p->enc = NULL;
    term_buf_release(&p->buf);
}

static void push_drop(replicate_t *r, rep_push_t *p)
{
    for (rep_push_t **q = &r->pushes; *q; q = &(*q)->next) {
        if (*q == p) {
            *q = p->next;
            break;
        }
    }
    push_stop_encode(p);
    uv_timer_stop(&p->timer);
    uv_close((uv_handle_t *)&p->timer, push_closed_cb);
    uv_close((uv_handle_t *)&p->idle, push_closed_cb);
}

static void push_timer_cb(uv_timer_t *t);

/* The list is complete: {sync, List, node()} goes to the node's PubSub. */
static void push_send(replicate_t *r, rep_push_t *p)
{
    int rc;
    term_put_atom(&p->buf, node_name(r->node));
    rc = p->buf.err;
    if (rc == 0)
        rc = pubsub_send_node(r->ps, p->node, r->cfg->topic_sync, p->buf.data, p->buf.len);
    if (rc == 0)
        log_info("%s: sync: sent %zu objects (%zu bytes) in %llu ms", p->node, p->objects,
                 p->buf.len, (unsigned long long)(now_ms(r) - p->t0));
    else if (rc != -ENOENT)
        log_warn("%s: sync: not sent: %s", p->node, uv_strerror(rc));
    push_stop_encode(p);
    /* -ENOENT: the node's members are not known yet; encoded again later,
     * with what the table holds then. */
    if (rc == -ENOENT && ++p->tries < PUSH_RETRIES) {
        uv_timer_start(&p->timer, push_timer_cb, PUSH_RETRY_MS, 0);
        return;
    }
    if (p->tries >= PUSH_RETRIES)
        log_info("%s: sync: no PubSub members there; not sent", p->node);
    push_drop(r, p);
}

static void push_idle_cb(uv_idle_t *h)
{
    rep_push_t *p = h->data;
    replicate_t *r = p->r;
    if (!node_is_connected(r->node, p->node)) {
        push_drop(r, p);
        return;
    }
    int rc = store_encode_step(p->enc, PUSH_CHUNK, &p->buf);
    if (rc == 0)
        return;
    if (rc < 0) {
        log_warn("%s: sync: not sent: %s", p->node, uv_strerror(rc));
        push_drop(r, p);
        return;
    }
    push_send(r, p);
}

static void push_timer_cb(uv_timer_t *t)
{
    rep_push_t *p = t->data;
    replicate_t *r = p->r;
    int rc;

    if (!node_is_connected(r->node, p->node)) {
        push_drop(r, p);
        return;
    }
    /* An encode under way sends the table as it is when it ends. */
    if (p->enc)
        return;
    p->objects = store_table_size(r->tab);
    if (p->objects == 0) {
        push_drop(r, p);
        return;
    }
    p->t0 = now_ms(r);
    term_buf_init(&p->buf);
    term_put_tuple(&p->buf, 3);
    term_put_atom(&p->buf, "sync");
    rc = p->buf.err;
    if (rc == 0)
        rc = store_encode_begin(r->tab, &p->buf, &p->enc);
    if (rc < 0) {
        log_warn("%s: sync: not sent: %s", p->node, uv_strerror(rc));
        push_drop(r, p);
        return;
    }
    /* uv_idle_start() fails only on a closing handle, never here */
    (void)uv_idle_start(&p->idle, push_idle_cb);
}

static void push_later(replicate_t *r, const char *peer, unsigned delay_ms)
{
    rep_push_t *p;
    for (p = r->pushes; p; p = p->next) {
        if (strcmp(p->node, peer) == 0) {
            uv_timer_start(&p->timer, push_timer_cb, delay_ms, 0);
            return;
        }
    }
    if (!(p = mem_calloc(1, sizeof *p)) || !(p->node = mem_strdup(peer))) {
        mem_free(p);
        log_warn("%s: sync: %s", peer, uv_strerror(-ENOMEM));
        return;
    }
    p->r = r;
    uv_timer_init(node_loop(r->node), &p->timer);
    uv_idle_init(node_loop(r->node), &p->idle);
    p->timer.data = p;
    p->idle.data = p;
    p->handles = 2;
    term_buf_init(&p->buf);
    p->next = r->pushes;
    r->pushes = p;
    uv_timer_start(&p->timer, push_timer_cb, delay_ms, 0);
}

/* ---- Node events ----------------------------------------------------------- */

/* The first sync of a node's pg scope since it connected: it runs the
 * PubSub, so it is a seed node. Hidden, etsd is seen by no NodeListener,
 * so it fetches the node's table itself and plays NodeListener for it:
 * counting the delay from here, not from the connection, gives a node that
 * is still starting its app the same time a BEAM node would. */
static void scope_synced_cb(pg_t *pg, const char *peer, int first, void *data)
{
    replicate_t *r = data;
    (void)pg;
    if (!first || r->shut)
        return;
    pull_first(r, peer);
    push_later(r, peer, r->cfg->sync_delay_ms);
}

static void event_cb(node_t *n, node_event_t ev, const char *peer,
                     const char *reason, void *data)
{
    replicate_t *r = data;
    rep_retry_t *q;
    (void)n;
    (void)reason;
    if (r->shut || ev != NODE_DOWN)
        return;
    for (rep_push_t *p = r->pushes, *next; p; p = next) {
        next = p->next;
        if (strcmp(p->node, peer) == 0)
            push_drop(r, p);
    }
    if ((q = retry_find(r, peer)))
        retry_drop(r, q);
}

static void shutdown_cb(node_t *n, void *data)
{
    replicate_t *r = data;
    if (r->shut)
        return;
    r->shut = 1;
    node_unsubscribe(n, r->sub_id);
    while (r->pushes)
        push_drop(r, r->pushes);
    while (r->retries)
        retry_drop(r, r->retries);
    /* Received writes not applied yet: single {new, U} objects are applied
     * (cheap), lists are dropped, not drained: a large backlog under
     * --fsync always would hold the exit for minutes, and what they carry
     * is in the cluster's tables, which etsd pulls again when it joins. */
    size_t dropped = 0;
    store_batch_begin(r->store);
    while (r->head) {
        rep_job_t *j = r->head;
        r->head = j->next;
        if (j->single)
            (void)job_step(r, j, 1);
        else
            dropped++;
        job_free(j);
    }
    int rc = store_batch_end(r->store);
    if (rc < 0)
        log_error("replication: writing the log at shutdown failed: %s",
                  uv_strerror(rc));
    if (dropped)
        log_warn("replication: shutting down with %zu received lists not fully "
                 "applied; the next join pulls them again", dropped);
    r->tail = NULL;
    uv_idle_stop(&r->idle);
    uv_close((uv_handle_t *)&r->idle, NULL);
    pull_free(r->puller);
    r->puller = NULL;
}

int replicate_new(node_t *n, pg_t *pg, pubsub_t *ps, store_t *s, replicate_t **out)
{
    replicate_t *r = mem_calloc(1, sizeof *r);
    int rc;

    if (!r)
        return -ENOMEM;
    r->node = n;
    r->pg = pg;
    r->ps = ps;
    r->store = s;
    r->cfg = node_config(n);
    r->defer = r->cfg->data_dir != NULL;
    r->tab = store_table_find(s, r->cfg->table);
    if (!r->tab && (rc = store_table_create(s, r->cfg->table, r->cfg->keypos, &r->tab)) < 0)
        goto fail;
    if ((rc = pull_new(n, &r->puller)) < 0)
        goto fail;
    if ((rc = pubsub_subscribe(ps, r->cfg->topic_new, on_message, r)) < 0 ||
        (rc = pubsub_subscribe(ps, r->cfg->topic_sync, on_message, r)) < 0)
        goto fail_pull;
    if ((rc = node_subscribe(n, event_cb, r, &r->sub_id)) < 0)
        goto fail_pull;
    if ((rc = node_on_shutdown(n, shutdown_cb, r)) < 0)
        goto fail_sub;
    pg_on_sync(pg, scope_synced_cb, r);
    uv_idle_init(node_loop(n), &r->idle);
    r->idle.data = r;
    *out = r;
    return 0;

fail_sub:
    node_unsubscribe(n, r->sub_id);
fail_pull:
    pull_free(r->puller);
fail:
    mem_free(r);
    return rc;
}

void replicate_free(replicate_t *r)
{
    if (!r)
        return;
    while (r->head) {
        rep_job_t *j = r->head;
        r->head = j->next;
        job_free(j);
    }
    pull_free(r->puller);
    mem_free(r);
}

size_t replicate_backlog(const replicate_t *r)
{
    return r->backlog;
}

int replicate_insert_cb(void *arg, const char *table, const void *obj, size_t len)
{
    replicate_t *r = arg;
    term_buf_t b;
    int rc;

    if (r->shut || strcmp(table, r->cfg->table) != 0)
        return 0;
    term_buf_init(&b);
    term_format(&b, "{new,~t}", obj, len);
    rc = b.err ? b.err : pubsub_broadcast(r->ps, r->cfg->topic_new, b.data, b.len, NULL);
    term_buf_release(&b);
    return rc;
}

/* After etsd:sync/0's pulls are all in and merged: every node gets the
 * union at once. */
static void sync_push_if_ready(replicate_t *r)
{
    const char *names[256];
    size_t n;

    if (!r->sync_push || r->head || r->shut)
        return;
    r->sync_push = 0;
    n = node_connected(r->node, names, 256);
    for (size_t i = 0; i < n && i < 256; i++)
        push_later(r, names[i], 0);
}

int replicate_sync_cb(void *arg, term_buf_t *out)
{
    replicate_t *r = arg;
    const char *names[256];
    size_t n = node_connected(r->node, names, 256);

    if (n > 256)
        n = 256;
    /* A sync already under way absorbs this one: its push comes after
     * these pulls too. */
    for (size_t i = 0; i < n; i++)
        if (pull(r, names[i], 1) == 0)
            r->sync_pulls++;
    if (r->sync_pulls == 0) {
        r->sync_push = 1;
        sync_push_if_ready(r);
    }
    term_put_atom(out, "ok");
    return out->err;
}

int replicate_info_cb(void *arg, term_buf_t *out, uint32_t *count)
{
    replicate_t *r = arg;
    const char *names[256];
    size_t n = node_connected(r->node, names, 256), k = 0;

    if (n > 256)
        n = 256;
    for (size_t i = 0; i < n; i++)
        if (pg_knows_node(r->pg, names[i]))
            k++;
    /* replication => #{backlog => N, pubsub_nodes => [Node]} (keys in
     * term order). */
    term_put_atom(out, "replication");
    term_put_map(out, 2);
    term_put_atom(out, "backlog");
    term_put_ulong(out, r->backlog);
    term_put_atom(out, "pubsub_nodes");
    if (k)
        term_put_list(out, (uint32_t)k);
    for (size_t i = 0; i < n; i++)
        if (pg_knows_node(r->pg, names[i]))
            term_put_atom(out, names[i]);
    term_put_nil(out);
    (*count)++;
    return out->err;
}
