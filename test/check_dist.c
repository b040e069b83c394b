/* check_dist.c: decoding control messages exactly as BEAM encodes them:
 * the frames below are <<112, term_to_binary(Ctl), term_to_binary(Msg)>>
 * written by OTP 25 (ATOM_EXT atoms, NEW_PID_EXT, NEWER_REFERENCE_EXT). */
#include <check.h>
#include <errno.h>
#include <string.h>

#include "cnode/cnode_int.h"
#include "test/vectors/dist_otp29_vectors.h"

static const uint8_t reg_send[] = {112,131,104,4,97,6,88,100,0,9,97,64,98,46,99,46,100,46,101,0,0,0,5,0,0,0,1,0,0,0,7,100,0,0,100,0,9,101,116,115,100,95,101,99,104,111,131,104,2,88,100,0,9,97,64,98,46,99,46,100,46,101,0,0,0,5,0,0,0,1,0,0,0,7,100,0,5,104,101,108,108,111};
static const uint8_t send_sender[] = {112,131,104,3,97,22,88,100,0,9,97,64,98,46,99,46,100,46,101,0,0,0,5,0,0,0,1,0,0,0,7,88,100,0,9,97,64,98,46,99,46,100,46,101,0,0,0,5,0,0,0,1,0,0,0,7,131,107,0,3,1,2,3};
static const uint8_t monitor_p_name[] = {112,131,104,4,97,19,88,100,0,9,97,64,98,46,99,46,100,46,101,0,0,0,5,0,0,0,1,0,0,0,7,100,0,10,110,101,116,95,107,101,114,110,101,108,90,0,3,100,0,9,97,64,98,46,99,46,100,46,101,0,0,0,7,0,0,0,1,0,0,0,2,0,0,0,3};
static const uint8_t monitor_p_exit[] = {112,131,104,5,97,21,88,100,0,9,97,64,98,46,99,46,100,46,101,0,0,0,5,0,0,0,1,0,0,0,7,88,100,0,9,97,64,98,46,99,46,100,46,101,0,0,0,5,0,0,0,1,0,0,0,7,90,0,3,100,0,9,97,64,98,46,99,46,100,46,101,0,0,0,7,0,0,0,1,0,0,0,2,0,0,0,3,104,2,100,0,8,115,104,117,116,100,111,119,110,100,0,1,120};
static const uint8_t unlink_id[] = {112,131,104,4,97,35,110,5,0,20,26,153,190,28,88,100,0,9,97,64,98,46,99,46,100,46,101,0,0,0,5,0,0,0,1,0,0,0,7,88,100,0,9,97,64,98,46,99,46,100,46,101,0,0,0,5,0,0,0,1,0,0,0,7};
static const uint8_t alias_send[] = {112,131,104,3,97,33,88,100,0,9,97,64,98,46,99,46,100,46,101,0,0,0,5,0,0,0,1,0,0,0,7,90,0,3,100,0,9,97,64,98,46,99,46,100,46,101,0,0,0,7,0,0,0,1,0,0,0,2,0,0,0,3,131,100,0,2,111,107};
static const uint8_t exit2_tt[] = {112,131,104,5,97,18,88,100,0,9,97,64,98,46,99,46,100,46,101,0,0,0,5,0,0,0,1,0,0,0,7,88,100,0,9,97,64,98,46,99,46,100,46,101,0,0,0,5,0,0,0,1,0,0,0,7,100,0,5,116,111,107,101,110,100,0,4,107,105,108,108};
static const uint8_t spawn_request[] = {112,131,104,6,97,29,90,0,3,100,0,9,97,64,98,46,99,46,100,46,101,0,0,0,7,0,0,0,1,0,0,0,2,0,0,0,3,88,100,0,9,97,64,98,46,99,46,100,46,101,0,0,0,5,0,0,0,1,0,0,0,7,88,100,0,9,97,64,98,46,99,46,100,46,101,0,0,0,5,0,0,0,1,0,0,0,7,104,3,100,0,4,101,114,112,99,100,0,12,101,120,101,99,117,116,101,95,99,97,108,108,97,4,108,0,0,0,1,100,0,7,109,111,110,105,116,111,114,106,131,108,0,0,0,1,100,0,1,97,106};
static const uint8_t hello_msg[] = {131,104,2,88,100,0,9,97,64,98,46,99,46,100,46,101,0,0,0,5,0,0,0,1,0,0,0,7,100,0,5,104,101,108,108,111};

#define DEC(arr, m) dist_decode((const char *)(arr), sizeof(arr), (m))

START_TEST(reg_send_decodes_from_name_and_message)
{
    dist_msg_t m;
    ck_assert_int_eq(DEC(reg_send, &m), 0);
    ck_assert_int_eq(m.op, DOP_REG_SEND);
    ck_assert_int_eq(m.has_from, 1);
    ck_assert_str_eq(m.from.node, "a@b.c.d.e");
    ck_assert_uint_eq(m.from.num, 5);
    ck_assert_uint_eq(m.from.serial, 1);
    ck_assert_uint_eq(m.from.creation, 7);
    ck_assert_str_eq(m.to_name, "etsd_echo");
    /* The message is term_to_binary({Pid, hello}) without its 131. */
    ck_assert_uint_eq(m.msg_len, sizeof hello_msg - 1);
    ck_assert_mem_eq(m.msg, hello_msg + 1, m.msg_len);
}
END_TEST

START_TEST(send_sender_decodes_both_pids)
{
    dist_msg_t m;
    ck_assert_int_eq(DEC(send_sender, &m), 0);
    ck_assert_int_eq(m.op, DOP_SEND_SENDER);
    ck_assert_int_eq(m.has_from, 1);
    ck_assert_int_eq(m.has_to_pid, 1);
    ck_assert_ptr_nonnull(m.msg);
}
END_TEST

START_TEST(monitor_p_by_name_decodes_atom_target)
{
    dist_msg_t m;
    ck_assert_int_eq(DEC(monitor_p_name, &m), 0);
    ck_assert_int_eq(m.op, DOP_MONITOR_P);
    ck_assert_int_eq(m.has_to_pid, 0);
    ck_assert_str_eq(m.to_name, "net_kernel");
    ck_assert_int_eq(m.has_ref, 1);
    ck_assert_int_eq(m.ref.len, 3);
    ck_assert_uint_eq(m.ref.n[2], 3);
    ck_assert_ptr_null(m.msg);
}
END_TEST

START_TEST(monitor_p_exit_decodes_reason)
{
    dist_msg_t m;
    ck_assert_int_eq(DEC(monitor_p_exit, &m), 0);
    ck_assert_int_eq(m.op, DOP_MONITOR_P_EXIT);
    ck_assert_ptr_nonnull(m.reason);
    term_reader_t r;
    term_reader_init(&r, m.reason, m.reason_len);
    uint32_t ar;
    char a[TERM_ATOM_MAX];
    ck_assert_int_eq(term_get_tuple(&r, &ar), 0);
    ck_assert_uint_eq(ar, 2);
    ck_assert_int_eq(term_get_atom(&r, a), 0);
    ck_assert_str_eq(a, "shutdown");
}
END_TEST

START_TEST(unlink_id_decodes_big_id)
{
    dist_msg_t m;
    ck_assert_int_eq(DEC(unlink_id, &m), 0);
    ck_assert_int_eq(m.op, DOP_UNLINK_ID);
    ck_assert_uint_eq(m.id, 123456789012ULL);
}
END_TEST

START_TEST(alias_send_decodes_alias_ref)
{
    dist_msg_t m;
    ck_assert_int_eq(DEC(alias_send, &m), 0);
    ck_assert_int_eq(m.op, DOP_ALIAS_SEND);
    ck_assert_int_eq(m.has_ref, 1);
    ck_assert_str_eq(m.ref.node, "a@b.c.d.e");
}
END_TEST

START_TEST(exit2_tt_skips_trace_token)
{
    dist_msg_t m;
    ck_assert_int_eq(DEC(exit2_tt, &m), 0);
    ck_assert_int_eq(m.op, DOP_EXIT2_TT);
    term_reader_t r;
    term_reader_init(&r, m.reason, m.reason_len);
    char a[TERM_ATOM_MAX];
    ck_assert_int_eq(term_get_atom(&r, a), 0);
    ck_assert_str_eq(a, "kill");
}
END_TEST

START_TEST(spawn_request_passes_ctl_and_args_through)
{
    dist_msg_t m;
    ck_assert_int_eq(DEC(spawn_request, &m), 0);
    ck_assert_int_eq(m.op, DOP_SPAWN_REQUEST);
    ck_assert_ptr_nonnull(m.ctl);
    ck_assert_ptr_nonnull(m.msg);
}
END_TEST

START_TEST(every_truncation_returns_eproto)
{
    static const struct { const uint8_t *p; size_t n; } frames[] = {
        {reg_send, sizeof reg_send}, {send_sender, sizeof send_sender},
        {monitor_p_name, sizeof monitor_p_name}, {monitor_p_exit, sizeof monitor_p_exit},
        {unlink_id, sizeof unlink_id}, {alias_send, sizeof alias_send},
        {exit2_tt, sizeof exit2_tt}, {spawn_request, sizeof spawn_request}};
    for (size_t f = 0; f < sizeof frames / sizeof frames[0]; f++) {
        for (size_t k = 0; k < frames[f].n; k++) {
            dist_msg_t m;
            int rc = dist_decode((const char *)frames[f].p, k, &m);
            /* A control-only frame cut exactly after the control term is
             * complete; everything else is malformed. */
            if (rc == 0)
                ck_assert_ptr_null(m.msg);
            else
                ck_assert_int_eq(rc, -EPROTO);
        }
    }
}
END_TEST

START_TEST(trailing_bytes_return_eproto)
{
    uint8_t buf[sizeof reg_send + 1];
    memcpy(buf, reg_send, sizeof reg_send);
    buf[sizeof reg_send] = 0;
    dist_msg_t m;
    ck_assert_int_eq(dist_decode((const char *)buf, sizeof buf, &m), -EPROTO);
}
END_TEST

START_TEST(wrong_field_type_returns_eproto)
{
    /* {6, not_a_pid, '', etsd_echo} + 'x' */
    static const uint8_t f[] = {112, 131, 104, 4, 97, 6, 100, 0, 1, 'n', 100, 0, 0,
                                100, 0, 1, 'e', 131, 100, 0, 1, 'x'};
    dist_msg_t m;
    ck_assert_int_eq(dist_decode((const char *)f, sizeof f, &m), -EPROTO);
}
END_TEST

/* ---- ALTACT_SIG_SEND (OTP 28+), frames written by OTP 29 ---- */

#define DEC29(name, m) dist_decode(frame_##name, frame_##name##_len, (m))

START_TEST(altact_to_pid_decodes_sender_pid_and_message)
{
    dist_msg_t m;
    ck_assert_int_eq(DEC29(altact_pid, &m), 0);
    ck_assert_int_eq(m.op, DOP_ALTACT_SIG_SEND);
    ck_assert_uint_eq(m.altact, 0);
    ck_assert_int_eq(m.has_from, 1);
    ck_assert_int_eq(m.has_to_pid, 1);
    ck_assert_int_eq(m.has_ref, 0);
    ck_assert_ptr_nonnull(m.msg);
    ck_assert_ptr_null(m.reason);
}
END_TEST

START_TEST(altact_alias_decodes_alias_ref)
{
    dist_msg_t m;
    ck_assert_int_eq(DEC29(altact_alias, &m), 0);
    ck_assert_uint_eq(m.altact, DIST_ALTACT_ALIAS);
    ck_assert_int_eq(m.has_ref, 1);
    ck_assert_int_eq(m.has_to_pid, 0);
    ck_assert_str_eq(m.ref.node, "nonode@nohost");
    ck_assert_ptr_nonnull(m.msg);
}
END_TEST

START_TEST(altact_name_decodes_registered_name)
{
    dist_msg_t m;
    ck_assert_int_eq(DEC29(altact_name, &m), 0);
    ck_assert_uint_eq(m.altact, DIST_ALTACT_NAME);
    ck_assert_str_eq(m.to_name, "etsd_echo");
    ck_assert_ptr_nonnull(m.msg);
}
END_TEST

START_TEST(altact_with_token_skips_token_and_keeps_prio)
{
    dist_msg_t m;
    ck_assert_int_eq(DEC29(altact_prio_token, &m), 0);
    ck_assert_uint_eq(m.altact, DIST_ALTACT_PRIO | DIST_ALTACT_TOKEN);
    ck_assert_int_eq(m.has_to_pid, 1);
    ck_assert_ptr_nonnull(m.msg);
}
END_TEST

static void assert_reason_atom(const dist_msg_t *m, const char *want)
{
    term_reader_t r;
    char a[TERM_ATOM_MAX];
    ck_assert_ptr_nonnull(m->reason);
    term_reader_init(&r, m->reason, m->reason_len);
    ck_assert_int_eq(term_get_atom(&r, a), 0);
    ck_assert_str_eq(a, want);
}

START_TEST(altact_exit_payload_is_the_reason)
{
    dist_msg_t m;
    ck_assert_int_eq(DEC29(altact_exit, &m), 0);
    ck_assert_uint_eq(m.altact, DIST_ALTACT_EXIT);
    ck_assert_int_eq(m.has_to_pid, 1);
    assert_reason_atom(&m, "kill");
}
END_TEST

START_TEST(altact_exit_to_alias_has_ref_and_reason)
{
    dist_msg_t m;
    ck_assert_int_eq(DEC29(altact_exit_alias, &m), 0);
    ck_assert_uint_eq(m.altact, DIST_ALTACT_EXIT | DIST_ALTACT_ALIAS);
    ck_assert_int_eq(m.has_ref, 1);
    assert_reason_atom(&m, "shutdown");
}
END_TEST

static const struct frame_row {
    const char *id;
    const char *p;
    size_t n;
} altact_bad[] = {
    {"alias_flag_with_pid", frame_altact_bad_alias_pid, frame_altact_bad_alias_pid_len},
    {"name_flag_with_pid", frame_altact_bad_name_pid, frame_altact_bad_name_pid_len},
    {"no_flag_with_atom", frame_altact_bad_pid_atom, frame_altact_bad_pid_atom_len},
    {"exit_to_name", frame_altact_bad_exit_name, frame_altact_bad_exit_name_len},
    {"negative_flags", frame_altact_bad_negative, frame_altact_bad_negative_len},
    {"arity_3", frame_altact_bad_arity, frame_altact_bad_arity_len},
};

START_TEST(altact_malformed_returns_eproto)
{
    dist_msg_t m;
    ck_assert_msg(dist_decode(altact_bad[_i].p, altact_bad[_i].n, &m) == -EPROTO, "row %s",
                  altact_bad[_i].id);
}
END_TEST

static const struct frame_row altact_good[] = {
    {"pid", frame_altact_pid, frame_altact_pid_len},
    {"alias", frame_altact_alias, frame_altact_alias_len},
    {"name", frame_altact_name, frame_altact_name_len},
    {"prio_token", frame_altact_prio_token, frame_altact_prio_token_len},
    {"exit", frame_altact_exit, frame_altact_exit_len},
    {"exit_alias", frame_altact_exit_alias, frame_altact_exit_alias_len},
    {"spawn_request_tt", frame_spawn_request_tt, frame_spawn_request_tt_len},
};

START_TEST(altact_without_payload_or_truncated_returns_eproto)
{
    /* Every one of these carries a payload: a frame cut anywhere is
     * malformed, the control term alone included. */
    const struct frame_row *f = &altact_good[_i];
    for (size_t k = 0; k < f->n; k++) {
        dist_msg_t m;
        ck_assert_msg(dist_decode(f->p, k, &m) == -EPROTO, "row %s cut at %zu", f->id, k);
    }
}
END_TEST

START_TEST(spawn_request_tt_passes_ctl_and_args_through)
{
    dist_msg_t m;
    ck_assert_int_eq(DEC29(spawn_request_tt, &m), 0);
    ck_assert_int_eq(m.op, DOP_SPAWN_REQUEST_TT);
    ck_assert_ptr_nonnull(m.ctl);
    ck_assert_ptr_nonnull(m.msg);
}
END_TEST

/* ---- Alias sends out, byte for byte as OTP 29 writes the control ---- */

static void pid_ref29(term_pid_t *pid, term_ref_t *ref)
{
    term_reader_t r;
    term_reader_init(&r, t29_pid1, t29_pid1_len);
    ck_assert_int_eq(term_get_pid(&r, pid), 0);
    term_reader_init(&r, t29_alias1, t29_alias1_len);
    ck_assert_int_eq(term_get_ref(&r, ref), 0);
}

START_TEST(alias_send_to_altact_peer_is_altact_sig_send)
{
    term_pid_t pid;
    term_ref_t ref;
    term_buf_t b;
    pid_ref29(&pid, &ref);
    term_buf_init(&b);
    ck_assert_int_eq(dist_put_alias_send(&b, ETSD_DFLAGS, &pid, &ref), 0);
    ck_assert_int_eq(b.err, 0);
    ck_assert_uint_eq(b.len, t29_altact_alias_ctl_len);
    ck_assert_mem_eq(b.data, t29_altact_alias_ctl, b.len);
    term_buf_release(&b);
}
END_TEST

START_TEST(alias_send_to_alias_only_peer_is_alias_send)
{
    term_pid_t pid;
    term_ref_t ref;
    term_buf_t b;
    pid_ref29(&pid, &ref);
    term_buf_init(&b);
    ck_assert_int_eq(dist_put_alias_send(&b, ETSD_DFLAGS & ~DFLAG_ALTACT_SIG, &pid, &ref), 0);
    ck_assert_uint_eq(b.len, t29_alias_send_ctl_len);
    ck_assert_mem_eq(b.data, t29_alias_send_ctl, b.len);
    term_buf_release(&b);
}
END_TEST

START_TEST(alias_send_to_peer_without_aliases_returns_enotsup)
{
    term_pid_t pid;
    term_ref_t ref;
    term_buf_t b;
    pid_ref29(&pid, &ref);
    term_buf_init(&b);
    ck_assert_int_eq(dist_put_alias_send(&b, DFLAG_MANDATORY_25, &pid, &ref), -ENOTSUP);
    ck_assert_uint_eq(b.len, 0);
    term_buf_release(&b);
}
END_TEST

Suite *dist_suite(void)
{
    Suite *s = suite_create("dist");
    TCase *t = tcase_create("decode");
    tcase_add_test(t, reg_send_decodes_from_name_and_message);
    tcase_add_test(t, send_sender_decodes_both_pids);
    tcase_add_test(t, monitor_p_by_name_decodes_atom_target);
    tcase_add_test(t, monitor_p_exit_decodes_reason);
    tcase_add_test(t, unlink_id_decodes_big_id);
    tcase_add_test(t, alias_send_decodes_alias_ref);
    tcase_add_test(t, exit2_tt_skips_trace_token);
    tcase_add_test(t, spawn_request_passes_ctl_and_args_through);
    suite_add_tcase(s, t);
    t = tcase_create("malformed");
    tcase_add_test(t, every_truncation_returns_eproto);
    tcase_add_test(t, trailing_bytes_return_eproto);
    tcase_add_test(t, wrong_field_type_returns_eproto);
    suite_add_tcase(s, t);
    t = tcase_create("otp28");
    tcase_add_test(t, altact_to_pid_decodes_sender_pid_and_message);
    tcase_add_test(t, altact_alias_decodes_alias_ref);
    tcase_add_test(t, altact_name_decodes_registered_name);
    tcase_add_test(t, altact_with_token_skips_token_and_keeps_prio);
    tcase_add_test(t, altact_exit_payload_is_the_reason);
    tcase_add_test(t, altact_exit_to_alias_has_ref_and_reason);
    tcase_add_loop_test(t, altact_malformed_returns_eproto, 0,
                        sizeof altact_bad / sizeof altact_bad[0]);
    tcase_add_loop_test(t, altact_without_payload_or_truncated_returns_eproto, 0,
                        sizeof altact_good / sizeof altact_good[0]);
    tcase_add_test(t, spawn_request_tt_passes_ctl_and_args_through);
    tcase_add_test(t, alias_send_to_altact_peer_is_altact_sig_send);
    tcase_add_test(t, alias_send_to_alias_only_peer_is_alias_send);
    tcase_add_test(t, alias_send_to_peer_without_aliases_returns_enotsup);
    suite_add_tcase(s, t);
    return s;
}
