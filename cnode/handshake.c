/* handshake.c: the distribution handshake, version 6 (OTP 23+), both
 * directions, as a pure state machine: bytes in, bytes out and events.
 * Reference: erl_dist_protocol "Distribution Handshake", kernel dist_util.erl. */
#include "cnode/cnode_int.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "term/md5.h"

void hs_digest(const char *cookie, uint32_t challenge, uint8_t out[16])
{
    /* dist_util:gen_digest/2: md5([atom_to_list(Cookie) | integer_to_list(Challenge)]) */
    char num[16];
    int k = snprintf(num, sizeof num, "%u", (unsigned)challenge);
    md5_ctx_t m;
    md5_init(&m);
    md5_update(&m, cookie, strlen(cookie));
    md5_update(&m, num, (size_t)k);
    md5_final(&m, out);
}

int hs_digest_equal(const uint8_t a[16], const uint8_t b[16])
{
    /* Constant time: no early exit, so timing tells nothing about where
     * a guessed digest goes wrong. */
    volatile uint8_t acc = 0;
    for (int i = 0; i < 16; i++)
        acc |= (uint8_t)(a[i] ^ b[i]);
    return acc == 0 ? 0 : -1;
}

/* ---- State machine ---------------------------------------------------- */

int hs_init(hs_t *hs, hs_role_t role, const char *this_name, const char *peer,
            const char *cookie, uint64_t flags, uint32_t creation, uint32_t challenge)
{
    memset(hs, 0, sizeof *hs);
    if (strlen(this_name) >= HS_NAME_MAX || strlen(cookie) >= sizeof hs->cookie)
        return -EINVAL;
    if (peer && strlen(peer) >= HS_NAME_MAX)
        return -EINVAL;
    hs->role = role;
    hs->state = role == HS_INITIATOR ? HS_S_SEND_NAME : HS_S_RECV_NAME;
    strcpy(hs->this_name, this_name);
    if (role == HS_INITIATOR && peer)
        strcpy(hs->peer_name, peer);
    strcpy(hs->cookie, cookie);
    hs->this_flags = flags;
    hs->this_creation = creation;
    hs->this_challenge = challenge;
    return 0;
}

static int put_msg_header(cbuf_t *out, size_t body)
{
    return cbuf_put16(out, (uint16_t)body);
}

int hs_start(hs_t *hs, cbuf_t *out)
{
    if (hs->role != HS_INITIATOR || hs->state != HS_S_SEND_NAME)
        return -EINVAL;
    /* 'N' Flags:64 Creation:32 Nlen:16 Name (OTP 23+ send_name). */
    size_t nlen = strlen(hs->this_name);
    size_t old = out->len;
    if (put_msg_header(out, 1 + 8 + 4 + 2 + nlen) || cbuf_put8(out, 'N') ||
        cbuf_put64(out, hs->this_flags) || cbuf_put32(out, hs->this_creation) ||
        cbuf_put16(out, (uint16_t)nlen) || cbuf_put(out, hs->this_name, nlen)) {
        out->len = old;
        return -ENOMEM;
    }
    hs->state = HS_S_RECV_STATUS;
    return 0;
}

static int fail(hs_t *hs, int rc, const char *why)
{
    hs->state = HS_S_FAILED;
    hs->why = why;
    return rc;
}

/* A node name must be alive@host with printable bytes; this is what
 * BEAM's split_node accepts, minus what would break our log lines. */
static int valid_node_name(const uint8_t *p, size_t n)
{
    if (n == 0 || n >= HS_NAME_MAX)
        return 0;
    int at = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < 0x21 || p[i] == 0x7f)
            return 0;
        if (p[i] == '@') {
            if (i == 0 || i == n - 1)
                return 0;
            at++;
        }
    }
    return at == 1;
}

uint64_t hs_expand_flags(uint64_t flags)
{
    /* dist_util.erl (OTP 27, 29) expand_mandatory_25_flag/1: "the single
     * flag ?DFLAG_MANDATORY_25_DIGEST can replace all the flags in
     * ?MANDATORY_DFLAGS_25", applied to the peer's word as it arrives. */
    if (flags & DFLAG_MANDATORY_25_DIGEST)
        flags |= DFLAG_MANDATORY_25;
    return flags;
}

static int check_peer_flags(hs_t *hs, uint64_t flags)
{
    if ((flags & DFLAG_MANDATORY_25) != DFLAG_MANDATORY_25)
        return fail(hs, -EPROTO, "peer lacks mandatory distribution flags");
    return 0;
}

static int send_challenge(hs_t *hs, cbuf_t *out)
{
    /* 'N' Flags:64 Challenge:32 Creation:32 Nlen:16 Name */
    size_t nlen = strlen(hs->this_name);
    if (put_msg_header(out, 1 + 8 + 4 + 4 + 2 + nlen) || cbuf_put8(out, 'N') ||
        cbuf_put64(out, hs->this_flags) || cbuf_put32(out, hs->this_challenge) ||
        cbuf_put32(out, hs->this_creation) || cbuf_put16(out, (uint16_t)nlen) ||
        cbuf_put(out, hs->this_name, nlen))
        return -ENOMEM;
    return 0;
}

static int send_status(cbuf_t *out, const char *status)
{
    size_t n = strlen(status);
    if (put_msg_header(out, 1 + n) || cbuf_put8(out, 's') || cbuf_put(out, status, n))
        return -ENOMEM;
    return 0;
}

int hs_accept_status(hs_t *hs, const char *status, cbuf_t *out)
{
    if (hs->role != HS_ACCEPTOR || hs->state != HS_S_NAME_DECISION)
        return -EINVAL;
    size_t old = out->len;
    int rc = send_status(out, status);
    if (rc == 0 && (strcmp(status, "ok") == 0 || strcmp(status, "ok_simultaneous") == 0)) {
        rc = send_challenge(hs, out);
        if (rc == 0)
            hs->state = HS_S_RECV_REPLY;
    } else if (rc == 0 && strcmp(status, "alive") == 0) {
        hs->state = HS_S_RECV_ALIVE_ANSWER;
    } else if (rc == 0) {
        hs->state = HS_S_FAILED;
        hs->why = "refused by status";
    }
    if (rc < 0)
        out->len = old;
    return rc;
}

/* Handles one complete message body (p, n) in the current state. */
static int handle_msg(hs_t *hs, const uint8_t *p, size_t n, cbuf_t *out, hs_event_t *ev)
{
    *ev = HS_EV_NONE;
    if (n == 0)
        return fail(hs, -EPROTO, "empty handshake message");
    switch (hs->state) {
    case HS_S_RECV_NAME:
        if (p[0] == 'N') {
            /* 'N' Flags:64 Creation:32 Nlen:16 Name */
            if (n < 15)
                return fail(hs, -EPROTO, "short name message");
            uint64_t flags = hs_expand_flags(get64(p + 1));
            uint32_t creation = get32(p + 9);
            size_t nlen = get16(p + 13);
            /* erl_dist_protocol: "any extra data after the node Name must
             * be accepted and ignored" (dist_util.erl recv_name_new/2
             * drops the _Residue). */
            if (15 + nlen > n || !valid_node_name(p + 15, nlen))
                return fail(hs, -EPROTO, "bad name in name message");
            int rc = check_peer_flags(hs, flags);
            if (rc < 0)
                return rc;
            hs->peer_flags = flags;
            hs->peer_creation = creation;
            memcpy(hs->peer_name, p + 15, nlen);
            hs->peer_name[nlen] = 0;
        } else if (p[0] == 'n') {
            /* v5 'n' Version:16 Flags:32 Name: accepted when the peer can do
             * the OTP 23 handshake; it then sends a 'c' complement. */
            if (n < 7)
                return fail(hs, -EPROTO, "short name message");
            uint64_t flags = hs_expand_flags(get32(p + 3));
            size_t nlen = n - 7;
            if (!valid_node_name(p + 7, nlen))
                return fail(hs, -EPROTO, "bad name in name message");
            if (!(flags & DFLAG_HANDSHAKE_23))
                return fail(hs, -EPROTO, "peer does not speak handshake version 6");
            hs->peer_flags = flags; /* high half comes in the complement */
            hs->old_name_msg = 1;
            memcpy(hs->peer_name, p + 7, nlen);
            hs->peer_name[nlen] = 0;
        } else {
            return fail(hs, -EPROTO, "expected a name message");
        }
        hs->state = HS_S_NAME_DECISION;
        *ev = HS_EV_NAME;
        return 0;

    case HS_S_RECV_ALIVE_ANSWER:
        if (n == 5 && memcmp(p, "strue", 5) == 0) {
            int rc = send_challenge(hs, out);
            if (rc < 0)
                return fail(hs, rc, "out of memory");
            hs->state = HS_S_RECV_REPLY;
            return 0;
        }
        if (n == 6 && memcmp(p, "sfalse", 6) == 0) {
            hs->state = HS_S_FAILED;
            hs->why = "peer says its old connection is alive";
            *ev = HS_EV_FAILED;
            return 0;
        }
        return fail(hs, -EPROTO, "bad answer to alive status");

    case HS_S_RECV_REPLY:
        if (p[0] == 'c' && hs->old_name_msg) {
            /* complement: FlagsHigh:32 Creation:32 */
            if (n != 9)
                return fail(hs, -EPROTO, "bad complement message");
            hs->peer_flags |= (uint64_t)get32(p + 1) << 32;
            hs->peer_creation = get32(p + 5);
            hs->old_name_msg = 0;
            return 0;
        }
        if (p[0] != 'r' || n != 21)
            return fail(hs, -EPROTO, "expected a challenge reply");
        {
            uint8_t want[16];
            hs_digest(hs->cookie, hs->this_challenge, want);
            if (hs_digest_equal(want, p + 5) != 0)
                return fail(hs, -EACCES, "wrong cookie (bad challenge reply digest)");
            hs->peer_challenge = get32(p + 1);
            uint8_t d[16];
            hs_digest(hs->cookie, hs->peer_challenge, d);
            if (put_msg_header(out, 17) || cbuf_put8(out, 'a') || cbuf_put(out, d, 16))
                return fail(hs, -ENOMEM, "out of memory");
            hs->state = HS_S_DONE;
            *ev = HS_EV_DONE;
            return 0;
        }

    case HS_S_RECV_STATUS:
        if (p[0] != 's')
            return fail(hs, -EPROTO, "expected a status message");
        if ((n == 3 && memcmp(p + 1, "ok", 2) == 0) ||
            (n == 16 && memcmp(p + 1, "ok_simultaneous", 15) == 0)) {
            hs->state = HS_S_RECV_CHALLENGE;
            return 0;
        }
        if (n == 6 && memcmp(p + 1, "alive", 5) == 0) {
            /* The peer still has a connection from an earlier us. We are
             * really connecting (dist_util is_pending is true), so 'true'. */
            if (send_status(out, "true") < 0)
                return fail(hs, -ENOMEM, "out of memory");
            hs->state = HS_S_RECV_CHALLENGE;
            return 0;
        }
        if (n == 4 && memcmp(p + 1, "nok", 3) == 0)
            return fail(hs, -EALREADY, "simultaneous connect: the peer's attempt wins");
        if (n == 12 && memcmp(p + 1, "not_allowed", 11) == 0)
            return fail(hs, -EACCES, "peer says not_allowed");
        return fail(hs, -EPROTO, "unknown status");

    case HS_S_RECV_CHALLENGE: {
        /* 'N' Flags:64 Challenge:32 Creation:32 Nlen:16 Name */
        if (p[0] != 'N' || n < 19)
            return fail(hs, -EPROTO, "expected a challenge message");
        uint64_t flags = hs_expand_flags(get64(p + 1));
        uint32_t challenge = get32(p + 9);
        uint32_t creation = get32(p + 13);
        size_t nlen = get16(p + 17);
        /* Extra data after Name is ignored here too (dist_util.erl
         * recv_challenge_new/2). */
        if (19 + nlen > n || !valid_node_name(p + 19, nlen))
            return fail(hs, -EPROTO, "bad name in challenge");
        if (hs->peer_name[0] &&
            (strlen(hs->peer_name) != nlen || memcmp(hs->peer_name, p + 19, nlen) != 0))
            return fail(hs, -EPROTO, "challenge from a different node than expected");
        int rc = check_peer_flags(hs, flags);
        if (rc < 0)
            return rc;
        hs->peer_flags = flags;
        hs->peer_creation = creation;
        hs->peer_challenge = challenge;
        memcpy(hs->peer_name, p + 19, nlen);
        hs->peer_name[nlen] = 0;
        uint8_t d[16];
        hs_digest(hs->cookie, challenge, d);
        if (put_msg_header(out, 21) || cbuf_put8(out, 'r') ||
            cbuf_put32(out, hs->this_challenge) || cbuf_put(out, d, 16))
            return fail(hs, -ENOMEM, "out of memory");
        hs->state = HS_S_RECV_ACK;
        return 0;
    }

    case HS_S_RECV_ACK: {
        if (p[0] != 'a' || n != 17)
            return fail(hs, -EPROTO, "expected a challenge ack");
        uint8_t want[16];
        hs_digest(hs->cookie, hs->this_challenge, want);
        if (hs_digest_equal(want, p + 1) != 0)
            return fail(hs, -EACCES, "wrong cookie (bad challenge ack digest)");
        hs->state = HS_S_DONE;
        *ev = HS_EV_DONE;
        return 0;
    }

    default:
        return fail(hs, -EPROTO, "handshake message in a wrong state");
    }
}

int hs_feed(hs_t *hs, const void *data, size_t len, size_t *used, cbuf_t *out,
            hs_event_t *ev)
{
    const uint8_t *p = data;
    size_t i = 0;
    *ev = HS_EV_NONE;
    *used = 0;
    if (hs->state == HS_S_DONE || hs->state == HS_S_FAILED ||
        hs->state == HS_S_NAME_DECISION || hs->state == HS_S_SEND_NAME)
        return hs->state == HS_S_FAILED ? -EPROTO : -EINVAL;
    while (i < len) {
        /* Reassemble 2-byte length + body in hs->msg. */
        if (hs->msg_have < 2) {
            hs->msg[hs->msg_have++] = p[i++];
            if (hs->msg_have == 2 && get16(hs->msg) > HS_MAX_MSG) {
                *used = i;
                return fail(hs, -EPROTO, "handshake message too long");
            }
            if (hs->msg_have < 2 || get16(hs->msg) > 0)
                continue;
        } else {
            size_t want = (size_t)get16(hs->msg) + 2 - hs->msg_have;
            size_t k = len - i < want ? len - i : want;
            memcpy(hs->msg + hs->msg_have, p + i, k);
            hs->msg_have += k;
            i += k;
        }
        size_t body = get16(hs->msg);
        if (hs->msg_have < body + 2)
            continue;
        hs->msg_have = 0;
        int rc = handle_msg(hs, hs->msg + 2, body, out, ev);
        *used = i;
        if (rc < 0 || *ev != HS_EV_NONE)
            return rc;
    }
    *used = i;
    return 0;
}
