/* check_replicate.c: decoding the seed app's messages and the PG2
 * adapter's forward_to_local envelope (replicate_decode, pubsub_decode),
 * against messages encoded by a real OTP node. */
#include <check.h>
#include <errno.h>
#include <string.h>

#include "cnode/pubsub.h"
#include "cnode/replicate.h"
#include "term/term.h"
#include "test/vectors/services_vectors.h"

START_TEST(forward_to_local_gives_topic_and_message)
{
    const char *topic, *inner;
    size_t tlen, ilen;
    ck_assert_int_eq(pubsub_decode(vec_fwd_new, vec_fwd_new_len, &topic, &tlen, &inner, &ilen), 0);
    ck_assert_int_eq(tlen, 3);
    ck_assert_int_eq(memcmp(topic, "new", 3), 0);
    ck_assert_int_eq(ilen, vec_rep_new_len);
    ck_assert_int_eq(memcmp(inner, vec_rep_new, ilen), 0);
}
END_TEST

START_TEST(forward_to_local_with_list_topic_or_wrong_arity_is_eproto)
{
    const char *topic, *inner;
    size_t tlen, ilen;
    ck_assert_int_eq(pubsub_decode(vec_fwd_bad_topic_list, vec_fwd_bad_topic_list_len,
                                   &topic, &tlen, &inner, &ilen), -EPROTO);
    ck_assert_int_eq(pubsub_decode(vec_fwd_bad_arity, vec_fwd_bad_arity_len,
                                   &topic, &tlen, &inner, &ilen), -EPROTO);
    ck_assert_int_eq(pubsub_decode(vec_rep_new, vec_rep_new_len,
                                   &topic, &tlen, &inner, &ilen), -EPROTO);
}
END_TEST

START_TEST(new_gives_the_object)
{
    const char *p;
    size_t n;
    ck_assert_int_eq(replicate_decode(vec_rep_new, vec_rep_new_len, &p, &n), REPLICATE_MSG_NEW);
    ck_assert_int_eq(n, vec_user_len);
    ck_assert_int_eq(memcmp(p, vec_user, n), 0);
}
END_TEST

static const struct sync_row {
    const char *id;
    const char *msg;
    size_t len;
    uint32_t elements;
} sync_rows[] = {
    {"sync/2", vec_rep_sync2, vec_rep_sync2_len, 2},
    {"sync/3", vec_rep_sync3, vec_rep_sync3_len, 1},
    {"sync/4 empty", vec_rep_sync4, vec_rep_sync4_len, 0},
};

START_TEST(sync_of_every_arity_gives_the_list)
{
    const struct sync_row *row = &sync_rows[_i];
    const char *p;
    size_t n;
    uint32_t count = 0;
    term_reader_t r;
    ck_assert_msg(replicate_decode(row->msg, row->len, &p, &n) == REPLICATE_MSG_SYNC,
                  "row %s", row->id);
    term_reader_init(&r, p, n);
    if (term_peek(&r) == TERM_T_LIST)
        ck_assert_int_eq(term_get_list(&r, &count), 0);
    ck_assert_msg(count == row->elements, "row %s", row->id);
}
END_TEST

static const struct bad_row {
    const char *id;
    const char *msg;
    size_t len;
} bad_rows[] = {
    {"sync of a string", vec_rep_bad_sync_string, vec_rep_bad_sync_string_len},
    {"sync of an atom", vec_rep_bad_sync_atom, vec_rep_bad_sync_atom_len},
    {"sync/5", vec_rep_bad_sync_arity, vec_rep_bad_sync_arity_len},
    {"new/3", vec_rep_bad_new_arity, vec_rep_bad_new_arity_len},
    {"other", vec_rep_bad_other, vec_rep_bad_other_len},
    {"forward_to_local", vec_fwd_new, vec_fwd_new_len},
    {"empty", "", 0},
};

START_TEST(other_shapes_are_eproto)
{
    const struct bad_row *row = &bad_rows[_i];
    const char *p;
    size_t n;
    ck_assert_msg(replicate_decode(row->msg, row->len, &p, &n) == -EPROTO, "row %s", row->id);
}
END_TEST

START_TEST(truncated_at_every_byte_is_eproto)
{
    const char *p;
    size_t n;
    for (size_t k = 0; k < vec_rep_sync3_len; k++)
        ck_assert_int_eq(replicate_decode(vec_rep_sync3, k, &p, &n), -EPROTO);
    for (size_t k = 0; k < vec_fwd_new_len; k++) {
        const char *t, *i;
        size_t tl, il;
        ck_assert_int_eq(pubsub_decode(vec_fwd_new, k, &t, &tl, &i, &il), -EPROTO);
    }
}
END_TEST

Suite *replicate_suite(void)
{
    Suite *s = suite_create("replicate");
    TCase *tc = tcase_create("decode");
    tcase_add_test(tc, forward_to_local_gives_topic_and_message);
    tcase_add_test(tc, forward_to_local_with_list_topic_or_wrong_arity_is_eproto);
    tcase_add_test(tc, new_gives_the_object);
    tcase_add_loop_test(tc, sync_of_every_arity_gives_the_list, 0,
                        sizeof sync_rows / sizeof sync_rows[0]);
    tcase_add_loop_test(tc, other_shapes_are_eproto, 0, sizeof bad_rows / sizeof bad_rows[0]);
    tcase_add_test(tc, truncated_at_every_byte_is_eproto);
    suite_add_tcase(s, tc);
    return s;
}
