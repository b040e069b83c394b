/* check_handshake.c: the distribution handshake state machine, both
 * directions, in memory: no sockets. */
#include <check.h>
#include <errno.h>
#include <string.h>

#include "cnode/cnode_int.h"
#include "term/md5.h"
#include "term/mem.h"

/* ---- MD5 and digests ---- */

START_TEST(md5_abc_matches_erlang_md5)
{
    /* erlang:md5("abc") */
    static const uint8_t want[16] = {144, 1, 80, 152, 60, 210, 79, 176,
                                     214, 150, 63, 125, 40, 225, 127, 114};
    uint8_t d[16];
    md5("abc", 3, d);
    ck_assert_mem_eq(d, want, 16);
}
END_TEST

START_TEST(md5_long_input_spanning_blocks_is_stable)
{
    /* RFC 1321 test suite: 80 digits */
    const char *s = "1234567890123456789012345678901234567890"
                    "1234567890123456789012345678901234567890";
    static const uint8_t want[16] = {0x57, 0xed, 0xf4, 0xa2, 0x2b, 0xe3, 0xc9, 0x55,
                                     0xac, 0x49, 0xda, 0x2e, 0x21, 0x07, 0xb6, 0x7a};
    uint8_t d[16];
    md5(s, strlen(s), d);
    ck_assert_mem_eq(d, want, 16);
}
END_TEST

START_TEST(digest_matches_dist_util_gen_digest)
{
    /* erlang:md5("secretcookie" ++ integer_to_list(3735928559)) */
    static const uint8_t want[16] = {77, 151, 87, 205, 122, 231, 115, 170,
                                     241, 160, 141, 0, 255, 152, 19, 24};
    uint8_t d[16];
    hs_digest("secretcookie", 3735928559u, d);
    ck_assert_mem_eq(d, want, 16);
}
END_TEST

START_TEST(digest_equal_detects_every_byte)
{
    uint8_t a[16], b[16];
    hs_digest("c", 1, a);
    memcpy(b, a, 16);
    ck_assert_int_eq(hs_digest_equal(a, b), 0);
    for (int i = 0; i < 16; i++) {
        b[i] ^= 1;
        ck_assert_int_ne(hs_digest_equal(a, b), 0);
        b[i] ^= 1;
    }
}
END_TEST

/* ---- A full handshake between two state machines ---- */

typedef struct pair {
    hs_t ini, acc;
    cbuf_t to_acc, to_ini;
    int ini_rc, acc_rc;
    int ini_done, acc_done, acc_name;
} pair_t;

static void pair_init(pair_t *p, const char *ini_cookie, const char *acc_cookie)
{
    memset(p, 0, sizeof *p);
    ck_assert_int_eq(hs_init(&p->ini, HS_INITIATOR, "a@host", "b@host", ini_cookie,
                             ETSD_DFLAGS, 11, 0x01020304), 0);
    ck_assert_int_eq(hs_init(&p->acc, HS_ACCEPTOR, "b@host", NULL, acc_cookie,
                             ETSD_DFLAGS, 22, 0xdeadbeef), 0);
    cbuf_init(&p->to_acc);
    cbuf_init(&p->to_ini);
    ck_assert_int_eq(hs_start(&p->ini, &p->to_acc), 0);
}

static void pair_release(pair_t *p)
{
    cbuf_release(&p->to_acc);
    cbuf_release(&p->to_ini);
}

/* Feeds pending bytes to one side, at most chunk bytes per hs_feed call. */
static int feed(hs_t *hs, cbuf_t *in, cbuf_t *out, size_t chunk, const char *status,
                int *done, int *named)
{
    while (in->len > 0 && hs->state != HS_S_DONE && hs->state != HS_S_FAILED) {
        size_t n = in->len < chunk ? in->len : chunk;
        size_t used;
        hs_event_t ev;
        int rc = hs_feed(hs, in->data, n, &used, out, &ev);
        cbuf_consume(in, used);
        if (rc < 0)
            return rc;
        if (ev == HS_EV_NAME) {
            *named = 1;
            rc = hs_accept_status(hs, status, out);
            if (rc < 0)
                return rc;
        }
        if (ev == HS_EV_DONE)
            *done = 1;
    }
    return 0;
}

static void run_pair(pair_t *p, size_t chunk, const char *status)
{
    int dummy = 0;
    for (int round = 0; round < 10; round++) {
        p->acc_rc = feed(&p->acc, &p->to_acc, &p->to_ini, chunk, status, &p->acc_done,
                         &p->acc_name);
        if (p->acc_rc < 0)
            return;
        p->ini_rc = feed(&p->ini, &p->to_ini, &p->to_acc, chunk, status, &p->ini_done, &dummy);
        if (p->ini_rc < 0)
            return;
    }
}

START_TEST(handshake_completes_with_any_chunking)
{
    for (size_t chunk = 1; chunk <= 64; chunk++) {
        pair_t p;
        pair_init(&p, "cookie", "cookie");
        run_pair(&p, chunk, "ok");
        ck_assert_int_eq(p.ini_rc, 0);
        ck_assert_int_eq(p.acc_rc, 0);
        ck_assert_int_eq(p.ini_done, 1);
        ck_assert_int_eq(p.acc_done, 1);
        ck_assert_str_eq(p.acc.peer_name, "a@host");
        ck_assert_str_eq(p.ini.peer_name, "b@host");
        ck_assert_uint_eq(p.acc.peer_creation, 11);
        ck_assert_uint_eq(p.ini.peer_creation, 22);
        ck_assert(p.acc.peer_flags == ETSD_DFLAGS);
        ck_assert(p.ini.peer_flags == ETSD_DFLAGS);
        pair_release(&p);
    }
}
END_TEST

START_TEST(handshake_ok_simultaneous_completes)
{
    pair_t p;
    pair_init(&p, "cookie", "cookie");
    run_pair(&p, 1000, "ok_simultaneous");
    ck_assert_int_eq(p.ini_done, 1);
    ck_assert_int_eq(p.acc_done, 1);
    pair_release(&p);
}
END_TEST

START_TEST(acceptor_wrong_cookie_returns_eacces)
{
    pair_t p;
    pair_init(&p, "one", "two");
    run_pair(&p, 1000, "ok");
    ck_assert_int_eq(p.acc_rc, -EACCES);
    ck_assert_int_eq(p.acc.state, HS_S_FAILED);
    ck_assert_ptr_nonnull(strstr(p.acc.why, "cookie"));
    pair_release(&p);
}
END_TEST

START_TEST(initiator_bad_ack_digest_returns_eacces)
{
    pair_t p;
    pair_init(&p, "cookie", "cookie");
    /* Run until the acceptor has written its ack, then corrupt it. */
    int d = 0, nm = 0;
    ck_assert_int_eq(feed(&p.acc, &p.to_acc, &p.to_ini, 1000, "ok", &d, &nm), 0);
    ck_assert_int_eq(feed(&p.ini, &p.to_ini, &p.to_acc, 1000, "ok", &d, &nm), 0);
    ck_assert_int_eq(feed(&p.acc, &p.to_acc, &p.to_ini, 1000, "ok", &d, &nm), 0);
    ck_assert_int_eq(p.acc.state, HS_S_DONE);
    ck_assert_uint_eq(p.to_ini.len, 19);
    p.to_ini.data[10] ^= 0x55;
    ck_assert_int_eq(feed(&p.ini, &p.to_ini, &p.to_acc, 1000, "ok", &d, &nm), -EACCES);
    pair_release(&p);
}
END_TEST

START_TEST(initiator_nok_returns_ealready)
{
    pair_t p;
    pair_init(&p, "cookie", "cookie");
    run_pair(&p, 1000, "nok");
    ck_assert_int_eq(p.acc.state, HS_S_FAILED);
    ck_assert_int_eq(p.ini_rc, -EALREADY);
    pair_release(&p);
}
END_TEST

START_TEST(initiator_not_allowed_returns_eacces)
{
    pair_t p;
    pair_init(&p, "cookie", "cookie");
    run_pair(&p, 1000, "not_allowed");
    ck_assert_int_eq(p.ini_rc, -EACCES);
    pair_release(&p);
}
END_TEST

START_TEST(alive_status_answered_true_and_completes)
{
    pair_t p;
    pair_init(&p, "cookie", "cookie");
    run_pair(&p, 1000, "alive");
    ck_assert_int_eq(p.ini_rc, 0);
    ck_assert_int_eq(p.acc_rc, 0);
    ck_assert_int_eq(p.ini_done, 1);
    ck_assert_int_eq(p.acc_done, 1);
    pair_release(&p);
}
END_TEST

START_TEST(alive_answered_false_fails_acceptor)
{
    hs_t acc;
    cbuf_t out;
    cbuf_init(&out);
    hs_init(&acc, HS_ACCEPTOR, "b@h", NULL, "c", ETSD_DFLAGS, 1, 2);
    hs_t ini;
    cbuf_t name;
    cbuf_init(&name);
    hs_init(&ini, HS_INITIATOR, "a@h", "b@h", "c", ETSD_DFLAGS, 1, 2);
    hs_start(&ini, &name);
    size_t used;
    hs_event_t ev;
    ck_assert_int_eq(hs_feed(&acc, name.data, name.len, &used, &out, &ev), 0);
    ck_assert_int_eq(ev, HS_EV_NAME);
    ck_assert_int_eq(hs_accept_status(&acc, "alive", &out), 0);
    static const char sfalse[] = {0, 6, 's', 'f', 'a', 'l', 's', 'e'};
    ck_assert_int_eq(hs_feed(&acc, sfalse, sizeof sfalse, &used, &out, &ev), 0);
    ck_assert_int_eq(ev, HS_EV_FAILED);
    cbuf_release(&out);
    cbuf_release(&name);
}
END_TEST

START_TEST(initiator_name_message_has_otp23_layout)
{
    hs_t ini;
    cbuf_t out;
    cbuf_init(&out);
    hs_init(&ini, HS_INITIATOR, "a@h", "b@h", "c", ETSD_DFLAGS, 0x11223344, 2);
    hs_start(&ini, &out);
    /* Len:16 'N' Flags:64 Creation:32 Nlen:16 Name */
    ck_assert_uint_eq(out.len, 2 + 1 + 8 + 4 + 2 + 3);
    ck_assert_uint_eq(get16(out.data), 18);
    ck_assert_int_eq(out.data[2], 'N');
    ck_assert(get64(out.data + 3) == ETSD_DFLAGS);
    ck_assert_uint_eq(get32(out.data + 11), 0x11223344);
    ck_assert_uint_eq(get16(out.data + 15), 3);
    ck_assert_mem_eq(out.data + 17, "a@h", 3);
    cbuf_release(&out);
}
END_TEST

static void acceptor_gets(const void *msg, size_t len, int want_rc)
{
    hs_t acc;
    cbuf_t out;
    cbuf_init(&out);
    hs_init(&acc, HS_ACCEPTOR, "b@h", NULL, "c", ETSD_DFLAGS, 1, 2);
    size_t used;
    hs_event_t ev;
    int rc = hs_feed(&acc, msg, len, &used, &out, &ev);
    ck_assert_int_eq(rc, want_rc);
    cbuf_release(&out);
}

START_TEST(acceptor_peer_without_mandatory_flags_returns_eproto)
{
    cbuf_t m;
    cbuf_init(&m);
    cbuf_put16(&m, 18);
    cbuf_put8(&m, 'N');
    /* Without the digest flag too, which stands for the whole set. */
    cbuf_put64(&m, ETSD_DFLAGS & ~(DFLAG_MAP_TAG | DFLAG_MANDATORY_25_DIGEST));
    cbuf_put32(&m, 1);
    cbuf_put16(&m, 3);
    cbuf_put(&m, "a@h", 3);
    acceptor_gets(m.data, m.len, -EPROTO);
    cbuf_release(&m);
}
END_TEST

START_TEST(acceptor_name_without_at_returns_eproto)
{
    cbuf_t m;
    cbuf_init(&m);
    cbuf_put16(&m, 18);
    cbuf_put8(&m, 'N');
    cbuf_put64(&m, ETSD_DFLAGS);
    cbuf_put32(&m, 1);
    cbuf_put16(&m, 3);
    cbuf_put(&m, "abh", 3);
    acceptor_gets(m.data, m.len, -EPROTO);
    cbuf_release(&m);
}
END_TEST

START_TEST(acceptor_name_length_past_message_returns_eproto)
{
    cbuf_t m;
    cbuf_init(&m);
    cbuf_put16(&m, 18);
    cbuf_put8(&m, 'N');
    cbuf_put64(&m, ETSD_DFLAGS);
    cbuf_put32(&m, 1);
    cbuf_put16(&m, 300);
    cbuf_put(&m, "a@h", 3);
    acceptor_gets(m.data, m.len, -EPROTO);
    cbuf_release(&m);
}
END_TEST

START_TEST(acceptor_oversized_message_returns_eproto)
{
    static const uint8_t m[] = {0xff, 0xff, 'N'};
    acceptor_gets(m, sizeof m, -EPROTO);
}
END_TEST

START_TEST(acceptor_garbage_returns_eproto)
{
    static const char m[] = "\x00\x05GET /";
    acceptor_gets(m, 7, -EPROTO);
}
END_TEST

START_TEST(acceptor_truncated_message_waits_for_more)
{
    static const uint8_t m[] = {0, 18, 'N', 0, 0};
    acceptor_gets(m, sizeof m, 0);
}
END_TEST

START_TEST(initiator_challenge_from_other_node_returns_eproto)
{
    pair_t p;
    memset(&p, 0, sizeof p);
    hs_init(&p.ini, HS_INITIATOR, "a@host", "b@host", "c", ETSD_DFLAGS, 1, 2);
    hs_init(&p.acc, HS_ACCEPTOR, "x@host", NULL, "c", ETSD_DFLAGS, 1, 2);
    cbuf_init(&p.to_acc);
    cbuf_init(&p.to_ini);
    hs_start(&p.ini, &p.to_acc);
    run_pair(&p, 1000, "ok");
    ck_assert_int_eq(p.ini_rc, -EPROTO);
    pair_release(&p);
}
END_TEST

START_TEST(frames_after_ack_are_left_unconsumed)
{
    pair_t p;
    pair_init(&p, "cookie", "cookie");
    int d = 0, nm = 0;
    feed(&p.acc, &p.to_acc, &p.to_ini, 1000, "ok", &d, &nm);
    feed(&p.ini, &p.to_ini, &p.to_acc, 1000, "ok", &d, &nm);
    /* The reply followed by a tick in the same read. */
    cbuf_put32(&p.to_acc, 0);
    size_t used;
    hs_event_t ev;
    ck_assert_int_eq(hs_feed(&p.acc, p.to_acc.data, p.to_acc.len, &used, &p.to_ini, &ev), 0);
    ck_assert_int_eq(ev, HS_EV_DONE);
    ck_assert_uint_eq(p.to_acc.len - used, 4);
    pair_release(&p);
}
END_TEST

/* ---- Newer OTP (PROTOCOL.md section 10) ---- */

/* dist_util.erl send_name/1 (OTP 23+): <<$N, Flags:64, Creation:32,
 * NameLen:16>>, NameBin, behind the 2-byte length; extra bytes after it. */
static void put_name_msg(cbuf_t *m, uint64_t flags, const char *name, const char *extra)
{
    size_t nlen = strlen(name), xlen = strlen(extra);
    cbuf_put16(m, (uint16_t)(1 + 8 + 4 + 2 + nlen + xlen));
    cbuf_put8(m, 'N');
    cbuf_put64(m, flags);
    cbuf_put32(m, 7);
    cbuf_put16(m, (uint16_t)nlen);
    cbuf_put(m, name, nlen);
    cbuf_put(m, extra, xlen);
}

/* dist_util.erl send_challenge/2: <<$N, Flags:64, Challenge:32,
 * Creation:32, NameLen:16>>, NameBin; after the status message "sok". */
static void put_challenge_msg(cbuf_t *m, uint64_t flags, const char *name, const char *extra)
{
    size_t nlen = strlen(name), xlen = strlen(extra);
    cbuf_put16(m, 3);
    cbuf_put(m, "sok", 3);
    cbuf_put16(m, (uint16_t)(1 + 8 + 4 + 4 + 2 + nlen + xlen));
    cbuf_put8(m, 'N');
    cbuf_put64(m, flags);
    cbuf_put32(m, 0xcafe);
    cbuf_put32(m, 9);
    cbuf_put16(m, (uint16_t)nlen);
    cbuf_put(m, name, nlen);
    cbuf_put(m, extra, xlen);
}

/* Feeds m to a fresh acceptor; returns hs_feed's code, *ev and the state. */
static int acceptor_takes(hs_t *acc, const cbuf_t *m, hs_event_t *ev)
{
    cbuf_t out;
    size_t used;
    cbuf_init(&out);
    hs_init(acc, HS_ACCEPTOR, "b@h", NULL, "c", ETSD_DFLAGS, 1, 2);
    int rc = hs_feed(acc, m->data, m->len, &used, &out, ev);
    cbuf_release(&out);
    return rc;
}

/* Feeds m to an initiator that has sent its name to b@h. */
static int initiator_takes(hs_t *ini, const cbuf_t *m, cbuf_t *out)
{
    size_t used;
    hs_event_t ev;
    hs_init(ini, HS_INITIATOR, "a@h", "b@h", "c", ETSD_DFLAGS, 1, 2);
    ck_assert_int_eq(hs_start(ini, out), 0);
    out->len = 0;
    return hs_feed(ini, m->data, m->len, &used, out, &ev);
}

START_TEST(acceptor_name_with_extra_data_after_name_is_accepted)
{
    hs_t acc;
    hs_event_t ev;
    cbuf_t m;
    cbuf_init(&m);
    put_name_msg(&m, ETSD_DFLAGS, "a@h", "future data");
    ck_assert_int_eq(acceptor_takes(&acc, &m, &ev), 0);
    ck_assert_int_eq(ev, HS_EV_NAME);
    ck_assert_str_eq(acc.peer_name, "a@h");
    ck_assert_uint_eq(acc.peer_creation, 7);
    cbuf_release(&m);
}
END_TEST

START_TEST(initiator_challenge_with_extra_data_after_name_is_answered)
{
    hs_t ini;
    cbuf_t m, out;
    cbuf_init(&m);
    cbuf_init(&out);
    put_challenge_msg(&m, ETSD_DFLAGS, "b@h", "\x01\x02\x03");
    ck_assert_int_eq(initiator_takes(&ini, &m, &out), 0);
    ck_assert_int_eq(ini.state, HS_S_RECV_ACK);
    ck_assert_uint_eq(ini.peer_challenge, 0xcafe);
    /* The challenge reply: Len:16 'r' Challenge:32 Digest:16 bytes. */
    ck_assert_uint_eq(out.len, 2 + 21);
    ck_assert_int_eq(out.data[2], 'r');
    cbuf_release(&m);
    cbuf_release(&out);
}
END_TEST

START_TEST(acceptor_name_shorter_than_its_name_length_returns_eproto)
{
    hs_t acc;
    hs_event_t ev;
    cbuf_t m;
    cbuf_init(&m);
    put_name_msg(&m, ETSD_DFLAGS, "a@h", "");
    /* Claim 4 name bytes where 3 follow. */
    m.data[2 + 1 + 8 + 4 + 1] = 4;
    ck_assert_int_eq(acceptor_takes(&acc, &m, &ev), -EPROTO);
    cbuf_release(&m);
}
END_TEST

/* A peer that sends only the digest flag of the OTP 25 mandatory set, as
 * dist_util.erl allows (expand_mandatory_25_flag/1). */
#define DIGEST_ONLY (DFLAG_MANDATORY_25_DIGEST | DFLAG_DIST_MONITOR | DFLAG_SPAWN)

START_TEST(expand_flags_adds_mandatory_25_set_to_digest_flag)
{
    uint64_t f = hs_expand_flags(DIGEST_ONLY);
    ck_assert((f & DFLAG_MANDATORY_25) == DFLAG_MANDATORY_25);
    ck_assert(f == (DIGEST_ONLY | DFLAG_MANDATORY_25));
}
END_TEST

START_TEST(expand_flags_without_digest_flag_changes_nothing)
{
    uint64_t f = DFLAG_MANDATORY_25 & ~DFLAG_MAP_TAG;
    ck_assert(hs_expand_flags(f) == f);
    ck_assert(hs_expand_flags(0) == 0);
}
END_TEST

START_TEST(acceptor_digest_only_name_is_accepted_with_expanded_flags)
{
    hs_t acc;
    hs_event_t ev;
    cbuf_t m;
    cbuf_init(&m);
    put_name_msg(&m, DIGEST_ONLY, "a@h", "");
    ck_assert_int_eq(acceptor_takes(&acc, &m, &ev), 0);
    ck_assert_int_eq(ev, HS_EV_NAME);
    ck_assert(acc.peer_flags == (DIGEST_ONLY | DFLAG_MANDATORY_25));
    cbuf_release(&m);
}
END_TEST

START_TEST(initiator_digest_only_challenge_is_accepted_with_expanded_flags)
{
    hs_t ini;
    cbuf_t m, out;
    cbuf_init(&m);
    cbuf_init(&out);
    put_challenge_msg(&m, DIGEST_ONLY, "b@h", "");
    ck_assert_int_eq(initiator_takes(&ini, &m, &out), 0);
    ck_assert_int_eq(ini.state, HS_S_RECV_ACK);
    ck_assert(ini.peer_flags == (DIGEST_ONLY | DFLAG_MANDATORY_25));
    cbuf_release(&m);
    cbuf_release(&out);
}
END_TEST

START_TEST(allocation_failure_returns_enomem_or_completes)
{
    /* Every allocation of both sides fails in turn: each step returns
     * -ENOMEM or goes on; nothing leaks (ASan build). */
    for (long k = 1; k < 40; k++) {
        pair_t p;
        memset(&p, 0, sizeof p);
        hs_init(&p.ini, HS_INITIATOR, "a@host", "b@host", "c", ETSD_DFLAGS, 1, 2);
        hs_init(&p.acc, HS_ACCEPTOR, "b@host", NULL, "c", ETSD_DFLAGS, 3, 4);
        cbuf_init(&p.to_acc);
        cbuf_init(&p.to_ini);
        mem_fail_after(k);
        int rc = hs_start(&p.ini, &p.to_acc);
        if (rc == 0)
            run_pair(&p, 7, "ok");
        mem_fail_after(0);
        ck_assert(rc == 0 || rc == -ENOMEM);
        ck_assert(p.ini_rc == 0 || p.ini_rc == -ENOMEM || p.acc_rc == -ENOMEM ||
                  p.ini_rc == -EPROTO);
        pair_release(&p);
    }
}
END_TEST

Suite *handshake_suite(void)
{
    Suite *s = suite_create("handshake");
    TCase *t = tcase_create("digest");
    tcase_add_test(t, md5_abc_matches_erlang_md5);
    tcase_add_test(t, md5_long_input_spanning_blocks_is_stable);
    tcase_add_test(t, digest_matches_dist_util_gen_digest);
    tcase_add_test(t, digest_equal_detects_every_byte);
    suite_add_tcase(s, t);
    t = tcase_create("exchange");
    tcase_add_test(t, handshake_completes_with_any_chunking);
    tcase_add_test(t, handshake_ok_simultaneous_completes);
    tcase_add_test(t, initiator_name_message_has_otp23_layout);
    tcase_add_test(t, frames_after_ack_are_left_unconsumed);
    tcase_add_test(t, allocation_failure_returns_enomem_or_completes);
    suite_add_tcase(s, t);
    t = tcase_create("newer_otp");
    tcase_add_test(t, acceptor_name_with_extra_data_after_name_is_accepted);
    tcase_add_test(t, initiator_challenge_with_extra_data_after_name_is_answered);
    tcase_add_test(t, acceptor_name_shorter_than_its_name_length_returns_eproto);
    tcase_add_test(t, expand_flags_adds_mandatory_25_set_to_digest_flag);
    tcase_add_test(t, expand_flags_without_digest_flag_changes_nothing);
    tcase_add_test(t, acceptor_digest_only_name_is_accepted_with_expanded_flags);
    tcase_add_test(t, initiator_digest_only_challenge_is_accepted_with_expanded_flags);
    suite_add_tcase(s, t);
    t = tcase_create("refusals");
    tcase_add_test(t, acceptor_wrong_cookie_returns_eacces);
    tcase_add_test(t, initiator_bad_ack_digest_returns_eacces);
    tcase_add_test(t, initiator_nok_returns_ealready);
    tcase_add_test(t, initiator_not_allowed_returns_eacces);
    tcase_add_test(t, alive_status_answered_true_and_completes);
    tcase_add_test(t, alive_answered_false_fails_acceptor);
    tcase_add_test(t, initiator_challenge_from_other_node_returns_eproto);
    suite_add_tcase(s, t);
    t = tcase_create("hostile");
    tcase_add_test(t, acceptor_peer_without_mandatory_flags_returns_eproto);
    tcase_add_test(t, acceptor_name_without_at_returns_eproto);
    tcase_add_test(t, acceptor_name_length_past_message_returns_eproto);
    tcase_add_test(t, acceptor_oversized_message_returns_eproto);
    tcase_add_test(t, acceptor_garbage_returns_eproto);
    tcase_add_test(t, acceptor_truncated_message_waits_for_more);
    suite_add_tcase(s, t);
    return s;
}
