/* otprel.c: learns the OTP release of the cluster from its nodes and makes
 * term/ and the store follow the oldest one connected (otprel.h). */
#include <errno.h>
#include <string.h>

#include "cnode/log.h"
#include "cnode/otprel.h"
#include "cnode/rexc.h"
#include "term/mem.h"

#define OTPREL_ASK_MS 10000   /* a node that has not answered by then is left out */

typedef struct peer_rel {
    char *name;
    int release;              /* 0 until it answered */
    struct peer_rel *next;
} peer_rel_t;

struct otprel {
    node_t *node;
    store_t *store;
    rexc_t *rexc;
    int sub_id;
    int shut;
    peer_rel_t *peers;
};

static peer_rel_t *find(otprel_t *o, const char *peer)
{
    for (peer_rel_t *p = o->peers; p; p = p->next)
        if (strcmp(p->name, peer) == 0)
            return p;
    return NULL;
}

static void forget(otprel_t *o, const char *peer)
{
    for (peer_rel_t **pp = &o->peers; *pp; pp = &(*pp)->next) {
        if (strcmp((*pp)->name, peer) == 0) {
            peer_rel_t *p = *pp;
            *pp = p->next;
            mem_free(p->name);
            mem_free(p);
            return;
        }
    }
}

/* Follows the oldest release among the peers that answered; none: keeps
 * the one followed. */
static void decide(otprel_t *o)
{
    int oldest = 0, cur = term_otp_release();
    for (peer_rel_t *p = o->peers; p; p = p->next)
        if (p->release && (!oldest || p->release < oldest))
            oldest = p->release;
    if (!oldest || oldest == cur)
        return;
    if (term_set_otp_release(oldest) < 0)
        return;
    log_info("cluster runs OTP %d: following its term semantics (was OTP %d)", oldest, cur);
    /* No -0.0 or port was ever canonicalized: nothing stored depends on
     * the release (seed users never do), and the pass is skipped. */
    if (term_otp_canon_same(cur, oldest) || term_release_terms_seen() == 0)
        return;
    size_t changed = 0;
    int rc = store_recanon(o->store, &changed);
    if (rc < 0)
        log_error("store: canonical form of OTP %d: %s", oldest, uv_strerror(rc));
    else if (changed)
        log_info("store: %zu objects rewritten in the canonical form of OTP %d",
                 changed, oldest);
}

/* erlang:system_info(otp_release) is a string of digits such as "27". */
static int parse_release(const char *res, size_t len)
{
    term_reader_t r;
    const char *s;
    size_t n;
    int v = 0;
    term_reader_init(&r, res, len);
    if (term_get_string(&r, &s, &n) < 0 || r.pos != len || n == 0 || n > 2)
        return -EPROTO;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -EPROTO;
        v = v * 10 + (s[i] - '0');
    }
    return v >= TERM_OTP_MIN && v <= TERM_OTP_MAX ? v : -EPROTO;
}

static void answer_cb(rexc_t *rc, const char *peer, int status, const char *res,
                      size_t len, void *data)
{
    otprel_t *o = data;
    (void)rc;
    if (o->shut || status == -ECANCELED)
        return;
    peer_rel_t *p = find(o, peer);
    if (!p)
        return;   /* went down meanwhile */
    int v = status < 0 ? status : parse_release(res, len);
    if (v < 0) {
        /* a C node has no rex; a BEAM node always answers */
        log_debug("%s: otp_release: %s", peer, uv_strerror(v));
        return;
    }
    p->release = v;
    log_info("%s: runs OTP %d", peer, v);
    decide(o);
}

static void event_cb(node_t *n, node_event_t ev, const char *peer, const char *reason,
                     void *data)
{
    otprel_t *o = data;
    (void)reason;
    if (o->shut)
        return;
    if (ev != NODE_UP) {
        /* The oldest node leaving lets the next oldest decide. */
        forget(o, peer);
        decide(o);
        return;
    }
    /* A hidden peer (a C node, a remote shell) is not of the cluster, and
     * a C node would read the question in place of its own rpc replies. */
    if (find(o, peer) || node_peer_published(n, peer) != 1)
        return;
    peer_rel_t *p = mem_calloc(1, sizeof *p);
    if (!p || !(p->name = mem_strdup(peer))) {
        mem_free(p);
        return;
    }
    p->next = o->peers;
    o->peers = p;
    /* args [otp_release] */
    static const char args[] = {108, 0, 0, 0, 1, 119, 11, 'o', 't', 'p', '_', 'r', 'e',
                                'l', 'e', 'a', 's', 'e', 106};
    int rc = rexc_call(o->rexc, peer, "erlang", "system_info", args, sizeof args,
                       OTPREL_ASK_MS, answer_cb, o);
    if (rc < 0)
        log_warn("%s: otp_release not asked: %s", peer, uv_strerror(rc));
}

static void shutdown_cb(node_t *n, void *data)
{
    otprel_t *o = data;
    if (o->shut)
        return;
    o->shut = 1;
    if (o->rexc) {
        node_unsubscribe(n, o->sub_id);
        rexc_free(o->rexc);
        o->rexc = NULL;
    }
}

int otprel_new(node_t *n, store_t *s, int fixed, otprel_t **out)
{
    otprel_t *o;
    int rc;
    if (fixed && (rc = term_set_otp_release(fixed)) < 0)
        return rc;
    if (!(o = mem_calloc(1, sizeof *o)))
        return -ENOMEM;
    o->node = n;
    o->store = s;
    if (fixed) {
        log_info("following the term semantics of OTP %d (--otp-release)", fixed);
        *out = o;
        return 0;
    }
    if ((rc = rexc_new(n, &o->rexc)) < 0)
        goto fail;
    if ((rc = node_subscribe(n, event_cb, o, &o->sub_id)) < 0)
        goto fail_rexc;
    if ((rc = node_on_shutdown(n, shutdown_cb, o)) < 0)
        goto fail_sub;
    *out = o;
    return 0;

fail_sub:
    node_unsubscribe(n, o->sub_id);
fail_rexc:
    rexc_free(o->rexc);
fail:
    mem_free(o);
    return rc;
}

void otprel_free(otprel_t *o)
{
    if (!o)
        return;
    rexc_free(o->rexc);
    while (o->peers) {
        peer_rel_t *p = o->peers;
        o->peers = p->next;
        mem_free(p->name);
        mem_free(p);
    }
    mem_free(o);
}
