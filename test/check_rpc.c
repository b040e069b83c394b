/* check_rpc.c: the rpc service's wire parts (SPAWN_REQUEST in, SPAWN_REPLY
 * out) against the bytes a BEAM node sends and expects
 * (test/vectors/rpc_exec_vectors.h, from term_to_binary). */
#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cnode/rpc.h"
#include "term/term.h"
#include "test/vectors/dist_otp29_vectors.h"
#include "test/vectors/rpc_exec_vectors.h"

#define LEN(a) (sizeof(a) - 1)

static void assert_same_term(const void *got, size_t got_len, const void *want, size_t want_len)
{
    term_buf_t a, b;
    size_t used;
    term_buf_init(&a);
    term_buf_init(&b);
    ck_assert_int_eq(term_canon_inner(got, got_len, &used, &a), 0);
    ck_assert_uint_eq(used, got_len);
    ck_assert_int_eq(term_canon_inner(want, want_len, &used, &b), 0);
    ck_assert_uint_eq(used, want_len);
    ck_assert_uint_eq(a.len, b.len);
    ck_assert_mem_eq(a.data, b.data, a.len);
    term_buf_release(&a);
    term_buf_release(&b);
}

static void new_pid(term_pid_t *pid)
{
    term_reader_t r;
    term_reader_init(&r, spawn_new_pid, LEN(spawn_new_pid));
    ck_assert_int_eq(term_get_pid(&r, pid), 0);
}

START_TEST(parse_erpc_call_reads_monitor_mfa_and_args)
{
    rpc_spawn_req_t q;
    ck_assert_int_eq(rpc_parse_spawn_request(spawn_call_ctl, LEN(spawn_call_ctl),
                                             spawn_call_args, LEN(spawn_call_args), &q), 0);
    ck_assert_int_eq(q.kind, RPC_SPAWN_CALL);
    ck_assert_int_eq(q.flags, RPC_SPAWN_MONITOR);
    ck_assert_str_eq(q.mod, "ets");
    ck_assert_str_eq(q.fun, "lookup");
    assert_same_term(q.args, q.args_len, spawn_call_a, LEN(spawn_call_a));
    assert_same_term(q.ref, q.ref_len, spawn_call_res, LEN(spawn_call_res));
}
END_TEST

START_TEST(spawn_reply_for_call_matches_beam)
{
    rpc_spawn_req_t q;
    term_pid_t pid;
    term_buf_t out;
    term_buf_init(&out);
    new_pid(&pid);
    ck_assert_int_eq(rpc_parse_spawn_request(spawn_call_ctl, LEN(spawn_call_ctl),
                                             spawn_call_args, LEN(spawn_call_args), &q), 0);
    rpc_encode_spawn_reply(&out, &q, &pid, NULL);
    ck_assert_int_eq(out.err, 0);
    assert_same_term(out.data, out.len, spawn_call_reply, LEN(spawn_call_reply));
    term_buf_release(&out);
}
END_TEST

START_TEST(parse_erpc_cast_has_no_flags_and_replies_flags_0)
{
    rpc_spawn_req_t q;
    term_pid_t pid;
    term_buf_t out;
    term_buf_init(&out);
    new_pid(&pid);
    ck_assert_int_eq(rpc_parse_spawn_request(spawn_cast_ctl, LEN(spawn_cast_ctl),
                                             spawn_cast_args, LEN(spawn_cast_args), &q), 0);
    ck_assert_int_eq(q.kind, RPC_SPAWN_CAST);
    ck_assert_int_eq(q.flags, 0);
    ck_assert_str_eq(q.mod, "etsd");
    ck_assert_str_eq(q.fun, "insert");
    assert_same_term(q.args, q.args_len, spawn_cast_a, LEN(spawn_cast_a));
    rpc_encode_spawn_reply(&out, &q, &pid, NULL);
    assert_same_term(out.data, out.len, spawn_cast_reply, LEN(spawn_cast_reply));
    term_buf_release(&out);
}
END_TEST

START_TEST(other_mfa_is_other_and_gets_atom_error_reply)
{
    rpc_spawn_req_t q;
    term_buf_t out;
    term_buf_init(&out);
    ck_assert_int_eq(rpc_parse_spawn_request(spawn_other_ctl, LEN(spawn_other_ctl),
                                             spawn_other_args, LEN(spawn_other_args), &q), 0);
    ck_assert_int_eq(q.kind, RPC_SPAWN_OTHER);
    ck_assert_int_eq(q.flags, RPC_SPAWN_LINK);
    rpc_encode_spawn_reply(&out, &q, NULL, "notsup");
    assert_same_term(out.data, out.len, spawn_other_reply, LEN(spawn_other_reply));
    term_buf_release(&out);
}
END_TEST

START_TEST(erpc_call_with_wrong_args_is_other)
{
    rpc_spawn_req_t q;
    /* the cast's three-element ArgList under execute_call/4 */
    ck_assert_int_eq(rpc_parse_spawn_request(spawn_call_ctl, LEN(spawn_call_ctl),
                                             spawn_cast_args, LEN(spawn_cast_args), &q), 0);
    ck_assert_int_eq(q.kind, RPC_SPAWN_OTHER);
    ck_assert_int_eq(rpc_parse_spawn_request(spawn_call_ctl, LEN(spawn_call_ctl), NULL, 0, &q),
                     0);
    ck_assert_int_eq(q.kind, RPC_SPAWN_OTHER);
}
END_TEST

/* Hostile input: every truncation of the control and of the arguments
 * parses to an error or to a request, never past the end (ASan checks). */
START_TEST(parse_truncated_input_never_reads_past_end)
{
    rpc_spawn_req_t q;
    for (size_t n = 0; n < LEN(spawn_call_ctl); n++) {
        char *c = malloc(n ? n : 1);
        memcpy(c, spawn_call_ctl, n);
        int rc = rpc_parse_spawn_request(c, n, spawn_call_args, LEN(spawn_call_args), &q);
        ck_assert(rc == -EPROTO || (rc == 0 && q.kind == RPC_SPAWN_OTHER));
        free(c);
    }
    for (size_t n = 0; n < LEN(spawn_call_args); n++) {
        char *a = malloc(n ? n : 1);
        memcpy(a, spawn_call_args, n);
        ck_assert_int_eq(rpc_parse_spawn_request(spawn_call_ctl, LEN(spawn_call_ctl), a, n, &q),
                         0);
        ck_assert_int_eq(q.kind, RPC_SPAWN_OTHER);
        free(a);
    }
}
END_TEST

/* SPAWN_REQUEST_TT {30, ReqId, From, GroupLeader, MFA, OptList, Token}
 * (erl_dist_protocol), as OTP 29 encodes it with a seq_trace token. */
START_TEST(parse_spawn_request_tt_is_an_erpc_call)
{
    rpc_spawn_req_t q;
    ck_assert_int_eq(rpc_parse_spawn_request(t29_spawn_request_tt_ctl,
                                             t29_spawn_request_tt_ctl_len,
                                             t29_spawn_request_tt_args,
                                             t29_spawn_request_tt_args_len, &q), 0);
    ck_assert_int_eq(q.kind, RPC_SPAWN_CALL);
    ck_assert_int_eq(q.flags, RPC_SPAWN_MONITOR);
    ck_assert_str_eq(q.mod, "ets");
    ck_assert_str_eq(q.fun, "lookup");
}
END_TEST

START_TEST(spawn_request_tt_is_answered_with_spawn_reply)
{
    rpc_spawn_req_t q;
    term_pid_t pid;
    term_reader_t r;
    term_buf_t out;
    /* {30, ReqId, P1, P2, ...}: the reply names P2 as the new process. */
    term_reader_init(&r, t29_spawn_request_tt_ctl, t29_spawn_request_tt_ctl_len);
    uint32_t arity;
    int64_t op;
    term_ref_t ref;
    term_pid_t from;
    ck_assert_int_eq(term_get_tuple(&r, &arity), 0);
    ck_assert_int_eq(term_get_long(&r, &op), 0);
    ck_assert_int_eq(term_get_ref(&r, &ref), 0);
    ck_assert_int_eq(term_get_pid(&r, &from), 0);
    ck_assert_int_eq(term_get_pid(&r, &pid), 0);
    ck_assert_int_eq(rpc_parse_spawn_request(t29_spawn_request_tt_ctl,
                                             t29_spawn_request_tt_ctl_len,
                                             t29_spawn_request_tt_args,
                                             t29_spawn_request_tt_args_len, &q), 0);
    term_buf_init(&out);
    rpc_encode_spawn_reply(&out, &q, &pid, NULL);
    ck_assert_int_eq(out.err, 0);
    assert_same_term(out.data, out.len, t29_spawn_request_tt_reply,
                     t29_spawn_request_tt_reply_len);
    term_buf_release(&out);
}
END_TEST

START_TEST(spawn_request_tt_with_extra_element_returns_eproto)
{
    rpc_spawn_req_t q;
    ck_assert_int_eq(rpc_parse_spawn_request(t29_spawn_request_tt_bad_token_arity,
                                             t29_spawn_request_tt_bad_token_arity_len,
                                             t29_spawn_request_tt_args,
                                             t29_spawn_request_tt_args_len, &q), -EPROTO);
}
END_TEST

Suite *rpc_suite(void)
{
    Suite *s = suite_create("rpc");
    TCase *tc = tcase_create("spawn_request");
    tcase_add_test(tc, parse_erpc_call_reads_monitor_mfa_and_args);
    tcase_add_test(tc, spawn_reply_for_call_matches_beam);
    tcase_add_test(tc, parse_erpc_cast_has_no_flags_and_replies_flags_0);
    tcase_add_test(tc, other_mfa_is_other_and_gets_atom_error_reply);
    tcase_add_test(tc, erpc_call_with_wrong_args_is_other);
    tcase_add_test(tc, parse_truncated_input_never_reads_past_end);
    tcase_add_test(tc, parse_spawn_request_tt_is_an_erpc_call);
    tcase_add_test(tc, spawn_request_tt_is_answered_with_spawn_reply);
    tcase_add_test(tc, spawn_request_tt_with_extra_element_returns_eproto);
    suite_add_tcase(s, tc);
    return s;
}
