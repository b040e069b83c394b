/* check_dist.c: decoding control messages exactly as BEAM encodes them:
 * the frames below are <<112, term_to_binary(Ctl), term_to_binary(Msg)>>
 * written by OTP 25 (ATOM_EXT atoms, NEW_PID_EXT, NEWER_REFERENCE_EXT). */
#include <check.h>
#include <errno.h>
#include <string.h>

#include "cnode/cnode_int.h"

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
    return s;
}
