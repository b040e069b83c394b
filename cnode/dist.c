/* dist.c: distribution frames in and out: the pass-through form
 * <<112, 131, Control, 131, Message>> (no atom cache, PROTOCOL.md
 * section 2), decoded into a dist_msg_t with every field type-checked. */
#include "cnode/cnode_int.h"

#include <errno.h>
#include <string.h>

/* Reads a pid or an atom (MONITOR_P's ToProc, MONITOR_P_EXIT's FromProc)
 * into the to_* fields (into_to) or the from/to_name fields. */
static int get_proc(term_reader_t *r, dist_msg_t *m, int into_to)
{
    term_type_t t = term_peek(r);
    if (t == TERM_T_ATOM)
        return term_get_atom(r, m->to_name) == 0 ? 0 : -EPROTO;
    if (t != TERM_T_PID)
        return -EPROTO;
    if (into_to) {
        if (term_get_pid(r, &m->to_pid) < 0)
            return -EPROTO;
        m->has_to_pid = 1;
    } else {
        if (term_get_pid(r, &m->from) < 0)
            return -EPROTO;
        m->has_from = 1;
    }
    return 0;
}

static int get_from(term_reader_t *r, dist_msg_t *m)
{
    if (term_get_pid(r, &m->from) < 0)
        return -EPROTO;
    m->has_from = 1;
    return 0;
}

static int get_to(term_reader_t *r, dist_msg_t *m)
{
    if (term_get_pid(r, &m->to_pid) < 0)
        return -EPROTO;
    m->has_to_pid = 1;
    return 0;
}

static int get_ref(term_reader_t *r, dist_msg_t *m)
{
    if (term_get_ref(r, &m->ref) < 0)
        return -EPROTO;
    m->has_ref = 1;
    return 0;
}

static int skip(term_reader_t *r)
{
    const char *p;
    size_t n;
    return term_get_any(r, &p, &n) < 0 ? -EPROTO : 0;
}

static int get_reason(term_reader_t *r, dist_msg_t *m)
{
    return term_get_any(r, &m->reason, &m->reason_len) < 0 ? -EPROTO : 0;
}

static int decode_fields(term_reader_t *r, uint32_t arity, dist_msg_t *m)
{
    /* Field layouts from erl_dist_protocol; _TT variants carry a trace
     * token as their last element, which is skipped. */
    int64_t v;
    switch (m->op) {
    case DOP_LINK:
    case DOP_UNLINK:
    case DOP_GROUP_LEADER:
        if (arity != 3)
            return -EPROTO;
        return get_from(r, m) || get_to(r, m) ? -EPROTO : 0;
    case DOP_SEND:
    case DOP_SEND_TT:
        if (arity != (m->op == DOP_SEND ? 3u : 4u))
            return -EPROTO;
        return skip(r) || get_to(r, m) ? -EPROTO : 0;
    case DOP_SEND_SENDER:
    case DOP_SEND_SENDER_TT:
        if (arity != (m->op == DOP_SEND_SENDER ? 3u : 4u))
            return -EPROTO;
        return get_from(r, m) || get_to(r, m) ? -EPROTO : 0;
    case DOP_EXIT:
    case DOP_EXIT2:
        if (arity != 4)
            return -EPROTO;
        return get_from(r, m) || get_to(r, m) || get_reason(r, m) ? -EPROTO : 0;
    case DOP_EXIT_TT:
    case DOP_EXIT2_TT:
        if (arity != 5)
            return -EPROTO;
        return get_from(r, m) || get_to(r, m) || skip(r) || get_reason(r, m) ? -EPROTO : 0;
    case DOP_PAYLOAD_EXIT:
    case DOP_PAYLOAD_EXIT2:
        if (arity != 3)
            return -EPROTO;
        return get_from(r, m) || get_to(r, m) ? -EPROTO : 0;
    case DOP_PAYLOAD_EXIT_TT:
    case DOP_PAYLOAD_EXIT2_TT:
        if (arity != 4)
            return -EPROTO;
        return get_from(r, m) || get_to(r, m) ? -EPROTO : 0;
    case DOP_REG_SEND:
    case DOP_REG_SEND_TT:
        if (arity != (m->op == DOP_REG_SEND ? 4u : 5u))
            return -EPROTO;
        if (get_from(r, m) || skip(r))
            return -EPROTO;
        return term_get_atom(r, m->to_name) < 0 ? -EPROTO : 0;
    case DOP_MONITOR_P:
    case DOP_DEMONITOR_P:
        if (arity != 4)
            return -EPROTO;
        return get_from(r, m) || get_proc(r, m, 1) || get_ref(r, m) ? -EPROTO : 0;
    case DOP_MONITOR_P_EXIT:
        if (arity != 5)
            return -EPROTO;
        return get_proc(r, m, 0) || get_to(r, m) || get_ref(r, m) || get_reason(r, m)
                   ? -EPROTO : 0;
    case DOP_PAYLOAD_MONITOR_P_EXIT:
        if (arity != 4)
            return -EPROTO;
        return get_proc(r, m, 0) || get_to(r, m) || get_ref(r, m) ? -EPROTO : 0;
    case DOP_ALIAS_SEND:
    case DOP_ALIAS_SEND_TT:
        if (arity != (m->op == DOP_ALIAS_SEND ? 3u : 4u))
            return -EPROTO;
        return get_from(r, m) || get_ref(r, m) ? -EPROTO : 0;
    case DOP_ALTACT_SIG_SEND:
        /* {37, Flags, SenderPid, To} or, with the TOKEN flag, {37, Flags,
         * SenderPid, To, Token} (erts dist.c, OTP 28). Later elements, if
         * a release adds any, are skipped. */
        if (arity < 4 || term_get_long(r, &v) < 0 || v < 0 || v > UINT32_MAX)
            return -EPROTO;
        m->altact = (uint32_t)v;
        if ((m->altact & DIST_ALTACT_TOKEN) && arity < 5)
            return -EPROTO;
        if ((m->altact & DIST_ALTACT_NAME) &&
            (m->altact & (DIST_ALTACT_ALIAS | DIST_ALTACT_EXIT)))
            return -EPROTO; /* a name is never an alias, nor an exit target */
        if (get_from(r, m) < 0)
            return -EPROTO;
        if (m->altact & DIST_ALTACT_ALIAS) {
            if (get_ref(r, m) < 0)
                return -EPROTO;
        } else if (m->altact & DIST_ALTACT_NAME) {
            if (term_get_atom(r, m->to_name) < 0)
                return -EPROTO;
        } else if (get_to(r, m) < 0) {
            return -EPROTO;
        }
        for (uint32_t i = 4; i < arity; i++)
            if (skip(r) < 0)
                return -EPROTO;
        return 0;
    case DOP_UNLINK_ID:
    case DOP_UNLINK_ID_ACK:
        if (arity != 4)
            return -EPROTO;
        if (term_get_long(r, &v) < 0 || v < 0)
            return -EPROTO;
        m->id = (uint64_t)v;
        return get_from(r, m) || get_to(r, m) ? -EPROTO : 0;
    default:
        /* Unknown or handled elsewhere (SPAWN_*): the caller gets ctl/msg. */
        for (uint32_t i = 1; i < arity; i++)
            if (skip(r) < 0)
                return -EPROTO;
        return 0;
    }
}

/* Ops whose frames carry a message (or payload) term after the control. */
static int op_has_msg(int op)
{
    switch (op) {
    case DOP_SEND: case DOP_SEND_TT: case DOP_SEND_SENDER: case DOP_SEND_SENDER_TT:
    case DOP_REG_SEND: case DOP_REG_SEND_TT: case DOP_ALIAS_SEND: case DOP_ALIAS_SEND_TT:
    case DOP_PAYLOAD_EXIT: case DOP_PAYLOAD_EXIT_TT: case DOP_PAYLOAD_EXIT2:
    case DOP_PAYLOAD_EXIT2_TT: case DOP_PAYLOAD_MONITOR_P_EXIT:
    case DOP_SPAWN_REQUEST: case DOP_SPAWN_REQUEST_TT: case DOP_ALTACT_SIG_SEND:
        return 1;
    default:
        return 0;
    }
}

int dist_decode(const char *frame, size_t len, dist_msg_t *m)
{
    /* Not a memset: the struct holds 4 KiB of name buffers that the
     * decoders fill when they are used, and this runs for every frame. */
    m->op = 0;
    m->ctl = m->msg = m->reason = NULL;
    m->ctl_len = m->msg_len = m->reason_len = 0;
    m->has_from = m->has_to_pid = m->has_ref = 0;
    m->to_name[0] = 0;
    m->id = 0;
    m->altact = 0;
    if (len < 2 || (uint8_t)frame[0] != DIST_PASS_THROUGH)
        return -EPROTO;
    term_reader_t r;
    term_reader_init(&r, frame + 1, len - 1);
    if (term_get_version(&r) < 0)
        return -EPROTO;
    size_t ctl_start = r.pos;
    term_reader_t t = r;
    uint32_t arity;
    int64_t op;
    if (term_get_tuple(&t, &arity) < 0 || arity < 1 || term_get_long(&t, &op) < 0 ||
        op < 0 || op > 1000)
        return -EPROTO;
    m->op = (int)op;
    if (decode_fields(&t, arity, m) < 0)
        return -EPROTO;
    m->ctl = r.buf + ctl_start;
    m->ctl_len = t.pos - ctl_start;
    if (t.pos == t.len) {
        /* A message-carrying op without a message is malformed. */
        return op_has_msg(m->op) ? -EPROTO : 0;
    }
    if (term_get_version(&t) < 0)
        return -EPROTO;
    size_t msg_start = t.pos;
    const char *p;
    size_t n;
    if (term_get_any(&t, &p, &n) < 0 || t.pos != t.len)
        return -EPROTO;
    m->msg = t.buf + msg_start;
    m->msg_len = n;
    if (m->op == DOP_PAYLOAD_EXIT || m->op == DOP_PAYLOAD_EXIT_TT ||
        m->op == DOP_PAYLOAD_EXIT2 || m->op == DOP_PAYLOAD_EXIT2_TT ||
        m->op == DOP_PAYLOAD_MONITOR_P_EXIT ||
        (m->op == DOP_ALTACT_SIG_SEND && (m->altact & DIST_ALTACT_EXIT))) {
        m->reason = m->msg;
        m->reason_len = m->msg_len;
    }
    return 0;
}

int dist_encode(cbuf_t *out, const void *ctl, size_t ctl_len, const void *msg,
                size_t msg_len)
{
    uint64_t total = 1 + 1 + (uint64_t)ctl_len + (msg ? 1 + (uint64_t)msg_len : 0);
    if (total > UINT32_MAX)
        return -EMSGSIZE;
    size_t old = out->len;
    if (cbuf_put32(out, (uint32_t)total) || cbuf_put8(out, DIST_PASS_THROUGH) ||
        cbuf_put8(out, TERM_VERSION_MAGIC) || cbuf_put(out, ctl, ctl_len) ||
        (msg && (cbuf_put8(out, TERM_VERSION_MAGIC) || cbuf_put(out, msg, msg_len)))) {
        out->len = old;
        return -ENOMEM;
    }
    return 0;
}

int dist_put_alias_send(term_buf_t *b, uint64_t peer_flags, const term_pid_t *from,
                        const term_ref_t *alias)
{
    /* OTP 28 deprecates ALIAS_SEND (to go in OTP 30) for ALTACT_SIG_SEND,
     * which a peer takes only with DFLAG_ALTACT_SIG; erts dist.c picks
     * the same way and drops an alias send to a peer without DFLAG_ALIAS. */
    if (peer_flags & DFLAG_ALTACT_SIG) {
        term_put_tuple(b, 4);
        term_put_long(b, DOP_ALTACT_SIG_SEND);
        term_put_long(b, DIST_ALTACT_ALIAS);
    } else if (peer_flags & DFLAG_ALIAS) {
        term_put_tuple(b, 3);
        term_put_long(b, DOP_ALIAS_SEND);
    } else {
        return -ENOTSUP;
    }
    term_put_pid(b, from);
    term_put_ref(b, alias);
    return 0;
}
