/* check_term_codec.c: term/codec.c against bytes produced by a real BEAM
 * (OTP 25 term_to_binary; each vector names the expression), the error
 * paths of the decoder, depth limits and allocation failure. */
#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "term/mem.h"
#include "term/term.h"

typedef struct vec {
    const char *id;
    const char *in;      /* term_to_binary(T, Opts) */
    size_t in_len;
    const char *canon;   /* term_to_binary(T, [{minor_version, 2}]) without 131 */
    size_t canon_len;
} vec_t;

static const vec_t vecs[] = {
    /* term_to_binary(42, []) */
    {"small_int []", "\x83\x61\x2a", 3,
     "\x61\x2a", 2},
    /* term_to_binary(-1, []) */
    {"integer []", "\x83\x62\xff\xff\xff\xff", 6,
     "\x62\xff\xff\xff\xff", 5},
    /* term_to_binary(2147483647, []) */
    {"int_max32 []", "\x83\x62\x7f\xff\xff\xff", 6,
     "\x62\x7f\xff\xff\xff", 5},
    /* term_to_binary(2147483648, []) */
    {"big_2_31 []", "\x83\x6e\x04\x00\x00\x00\x00\x80", 8,
     "\x6e\x04\x00\x00\x00\x00\x80", 7},
    /* term_to_binary(-(1 bsl 64), []) */
    {"big_neg []", "\x83\x6e\x09\x01\x00\x00\x00\x00\x00\x00\x00\x00\x01", 13,
     "\x6e\x09\x01\x00\x00\x00\x00\x00\x00\x00\x00\x01", 12},
    /* term_to_binary(3.5, []) */
    {"float []", "\x83\x46\x40\x0c\x00\x00\x00\x00\x00\x00", 10,
     "\x46\x40\x0c\x00\x00\x00\x00\x00\x00", 9},
    /* term_to_binary('caf\x{e9}', []) */
    {"atom_latin1 []", "\x83\x64\x00\x04\x63\x61\x66\xe9", 8,
     "\x77\x05\x63\x61\x66\xc3\xa9", 7},
    /* term_to_binary(list_to_atom([16#263a]), []) */
    {"atom_unicode []", "\x83\x77\x03\xe2\x98\xba", 6,
     "\x77\x03\xe2\x98\xba", 5},
    /* term_to_binary(<<"abc">>, []) */
    {"binary []", "\x83\x6d\x00\x00\x00\x03\x61\x62\x63", 9,
     "\x6d\x00\x00\x00\x03\x61\x62\x63", 8},
    /* term_to_binary(<<5:3>>, []) */
    {"bitstring []", "\x83\x4d\x00\x00\x00\x01\x03\xa0", 8,
     "\x4d\x00\x00\x00\x01\x03\xa0", 7},
    /* term_to_binary("abc", []) */
    {"string []", "\x83\x6b\x00\x03\x61\x62\x63", 7,
     "\x6b\x00\x03\x61\x62\x63", 6},
    /* term_to_binary([a,1], []) */
    {"list []", "\x83\x6c\x00\x00\x00\x02\x64\x00\x01\x61\x61\x01\x6a", 13,
     "\x6c\x00\x00\x00\x02\x77\x01\x61\x61\x01\x6a", 11},
    /* term_to_binary([1|2], []) */
    {"improper []", "\x83\x6c\x00\x00\x00\x01\x61\x01\x61\x02", 10,
     "\x6c\x00\x00\x00\x01\x61\x01\x61\x02", 9},
    /* term_to_binary([], []) */
    {"nil []", "\x83\x6a", 2,
     "\x6a", 1},
    /* term_to_binary({a,<<>>,[]}, []) */
    {"tuple []", "\x83\x68\x03\x64\x00\x01\x61\x6d\x00\x00\x00\x00\x6a", 13,
     "\x68\x03\x77\x01\x61\x6d\x00\x00\x00\x00\x6a", 11},
    /* term_to_binary(#{a => 1, 1 => b, 2.0 => c}, []) */
    {"map []", "\x83\x74\x00\x00\x00\x03\x61\x01\x64\x00\x01\x62\x46\x40\x00\x00\x00\x00\x00\x00\x00\x64\x00\x01\x63\x64\x00\x01\x61\x61\x01", 31,
     "\x74\x00\x00\x00\x03\x61\x01\x77\x01\x62\x46\x40\x00\x00\x00\x00\x00\x00\x00\x77\x01\x63\x77\x01\x61\x61\x01", 27},
    /* term_to_binary(binary_to_term(<<131,88,119,3,"a@h",1:32,2:32,3:32>>), []) */
    {"pid []", "\x83\x58\x64\x00\x03\x61\x40\x68\x00\x00\x00\x01\x00\x00\x00\x02\x00\x00\x00\x03", 20,
     "\x58\x77\x03\x61\x40\x68\x00\x00\x00\x01\x00\x00\x00\x02\x00\x00\x00\x03", 18},
    /* term_to_binary(binary_to_term(<<131,89,119,3,"a@h",7:32,3:32>>), []) */
    {"port []", "\x83\x59\x64\x00\x03\x61\x40\x68\x00\x00\x00\x07\x00\x00\x00\x03", 16,
     "\x59\x77\x03\x61\x40\x68\x00\x00\x00\x07\x00\x00\x00\x03", 14},
    /* term_to_binary(binary_to_term(<<131,120,119,3,"a@h",(1 bsl 40):64,3:32>>), []) */
    {"v4port []", "\x83\x78\x64\x00\x03\x61\x40\x68\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x03", 20,
     "\x78\x77\x03\x61\x40\x68\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x03", 18},
    /* term_to_binary(binary_to_term(<<131,90,0,3,119,3,"a@h",3:32,1:32,2:32,3:32>>), []) */
    {"ref []", "\x83\x5a\x00\x03\x64\x00\x03\x61\x40\x68\x00\x00\x00\x03\x00\x00\x00\x01\x00\x00\x00\x02\x00\x00\x00\x03", 26,
     "\x5a\x00\x03\x77\x03\x61\x40\x68\x00\x00\x00\x03\x00\x00\x00\x01\x00\x00\x00\x02\x00\x00\x00\x03", 24},
    /* term_to_binary(fun lists:map/2, []) */
    {"export []", "\x83\x71\x64\x00\x05\x6c\x69\x73\x74\x73\x64\x00\x03\x6d\x61\x70\x61\x02", 18,
     "\x71\x77\x05\x6c\x69\x73\x74\x73\x77\x03\x6d\x61\x70\x61\x02", 15},
    /* term_to_binary([{1,x},{2.5,y}], []) */
    {"list_of_tuples []", "\x83\x6c\x00\x00\x00\x02\x68\x02\x61\x01\x64\x00\x01\x78\x68\x02\x46\x40\x04\x00\x00\x00\x00\x00\x00\x64\x00\x01\x79\x6a", 30,
     "\x6c\x00\x00\x00\x02\x68\x02\x61\x01\x77\x01\x78\x68\x02\x46\x40\x04\x00\x00\x00\x00\x00\x00\x77\x01\x79\x6a", 27},
    /* term_to_binary(<<0:400>>, []) */
    {"zeros []", "\x83\x6d\x00\x00\x00\x32\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00", 56,
     "\x6d\x00\x00\x00\x32\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00", 55},
    /* term_to_binary(<<0:400>>, [compressed]) */
    {"zeros [compressed]", "\x83\x50\x00\x00\x00\x37\x78\x9c\xcb\x65\x60\x60\x30\x62\x20\x19\x00\x00\x21\x98\x00\xa0", 22,
     "\x6d\x00\x00\x00\x32\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00", 55},
    /* term_to_binary(lists:duplicate(20, aaaa), []) */
    {"atoms []", "\x83\x6c\x00\x00\x00\x14\x64\x00\x04\x61\x61\x61\x61\x64\x00\x04\x61\x61\x61\x61\x64\x00\x04\x61\x61\x61\x61\x64\x00\x04\x61\x61\x61\x61\x64\x00\x04\x61\x61\x61\x61\x64\x00\x04\x61\x61\x61\x61\x64\x00\x04\x61\x61\x61\x61\x64\x00\x04\x61\x61\x61\x61\x64\x00\x04\x61\x61\x61\x61\x64\x00\x04\x61\x61\x61\x61\x64\x00\x04\x61\x61\x61\x61\x64\x00\x04\x61\x61\x61\x61\x64\x00\x04\x61\x61\x61\x61\x64\x00\x04\x61\x61\x61\x61\x64\x00\x04\x61\x61\x61\x61\x64\x00\x04\x61\x61\x61\x61\x64\x00\x04\x61\x61\x61\x61\x64\x00\x04\x61\x61\x61\x61\x64\x00\x04\x61\x61\x61\x61\x64\x00\x04\x61\x61\x61\x61\x6a", 147,
     "\x6c\x00\x00\x00\x14\x77\x04\x61\x61\x61\x61\x77\x04\x61\x61\x61\x61\x77\x04\x61\x61\x61\x61\x77\x04\x61\x61\x61\x61\x77\x04\x61\x61\x61\x61\x77\x04\x61\x61\x61\x61\x77\x04\x61\x61\x61\x61\x77\x04\x61\x61\x61\x61\x77\x04\x61\x61\x61\x61\x77\x04\x61\x61\x61\x61\x77\x04\x61\x61\x61\x61\x77\x04\x61\x61\x61\x61\x77\x04\x61\x61\x61\x61\x77\x04\x61\x61\x61\x61\x77\x04\x61\x61\x61\x61\x77\x04\x61\x61\x61\x61\x77\x04\x61\x61\x61\x61\x77\x04\x61\x61\x61\x61\x77\x04\x61\x61\x61\x61\x77\x04\x61\x61\x61\x61\x6a", 126},
    /* term_to_binary(lists:duplicate(20, aaaa), [compressed]) */
    {"atoms [compressed]", "\x83\x50\x00\x00\x00\x92\x78\x9c\xcb\x61\x60\x60\x10\x49\x61\x60\x49\x04\x82\x41\x41\x65\x01\x00\xf0\xd2\x27\x5b", 28,
     "\x6c\x00\x00\x00\x14\x77\x04\x61\x61\x61\x61\x77\x04\x61\x61\x61\x61\x77\x04\x61\x61\x61\x61\x77\x04\x61\x61\x61\x61\x77\x04\x61\x61\x61\x61\x77\x04\x61\x61\x61\x61\x77\x04\x61\x61\x61\x61\x77\x04\x61\x61\x61\x61\x77\x04\x61\x61\x61\x61\x77\x04\x61\x61\x61\x61\x77\x04\x61\x61\x61\x61\x77\x04\x61\x61\x61\x61\x77\x04\x61\x61\x61\x61\x77\x04\x61\x61\x61\x61\x77\x04\x61\x61\x61\x61\x77\x04\x61\x61\x61\x61\x77\x04\x61\x61\x61\x61\x77\x04\x61\x61\x61\x61\x77\x04\x61\x61\x61\x61\x77\x04\x61\x61\x61\x61\x6a", 126},
    /* term_to_binary([{<<"user1@example.com">>, <<"tok1">>}, {<<"u2">>, <<"t2">>, 7}, {<<"u3">>, 3}]) */
    {"seed records []", "\x83\x6c\x00\x00\x00\x03\x68\x02\x6d\x00\x00\x00\x11\x75\x73\x65\x72\x31\x40\x65\x78\x61\x6d\x70\x6c\x65\x2e\x63\x6f\x6d\x6d\x00\x00\x00\x04\x74\x6f\x6b\x31\x68\x03\x6d\x00\x00\x00\x02\x75\x32\x6d\x00\x00\x00\x02\x74\x32\x61\x07\x68\x02\x6d\x00\x00\x00\x02\x75\x33\x61\x03\x6a", 69,
     "\x6c\x00\x00\x00\x03\x68\x02\x6d\x00\x00\x00\x11\x75\x73\x65\x72\x31\x40\x65\x78\x61\x6d\x70\x6c\x65\x2e\x63\x6f\x6d\x6d\x00\x00\x00\x04\x74\x6f\x6b\x31\x68\x03\x6d\x00\x00\x00\x02\x75\x32\x6d\x00\x00\x00\x02\x74\x32\x61\x07\x68\x02\x6d\x00\x00\x00\x02\x75\x33\x61\x03\x6a", 68},
};

#define NVECS (sizeof vecs / sizeof vecs[0])

/* A heap copy of exactly n bytes, so ASan sees any read past the end. */
static char *dup_exact(const void *p, size_t n)
{
    char *d = malloc(n ? n : 1);
    ck_assert_ptr_nonnull(d);
    memcpy(d, p, n);
    return d;
}

static int is_compressed(const vec_t *v)
{
    return v->in_len > 1 && (unsigned char)v->in[1] == 80;
}

START_TEST(canon_beam_vector_gives_minor_version_2_bytes)
{
    const vec_t *v = &vecs[_i];
    term_buf_t out;
    term_buf_init(&out);
    char *in = dup_exact(v->in, v->in_len);
    ck_assert_msg(term_canon(in, v->in_len, &out) == 0, "%s", v->id);
    ck_assert_uint_eq(out.len, v->canon_len);
    ck_assert_msg(memcmp(out.data, v->canon, v->canon_len) == 0, "%s", v->id);
    free(in);
    term_buf_release(&out);
}
END_TEST

START_TEST(canon_of_canon_is_identical)
{
    const vec_t *v = &vecs[_i];
    term_buf_t out;
    size_t used;
    term_buf_init(&out);
    ck_assert_int_eq(term_canon_inner(v->canon, v->canon_len, &used, &out), 0);
    ck_assert_uint_eq(used, v->canon_len);
    ck_assert_uint_eq(out.len, v->canon_len);
    ck_assert(memcmp(out.data, v->canon, v->canon_len) == 0);
    term_buf_release(&out);
}
END_TEST

START_TEST(skip_beam_vector_takes_whole_term)
{
    const vec_t *v = &vecs[_i];
    size_t used = 0;
    if (is_compressed(v)) {
        ck_assert_int_eq(term_skip(v->in + 1, v->in_len - 1, &used), -EPROTO);
        return;
    }
    ck_assert_int_eq(term_skip(v->in + 1, v->in_len - 1, &used), 0);
    ck_assert_uint_eq(used, v->in_len - 1);
}
END_TEST

START_TEST(compare_beam_vector_equals_its_canon)
{
    const vec_t *v = &vecs[_i];
    if (is_compressed(v))
        return;
    ck_assert_int_eq(term_compare(v->in + 1, v->in_len - 1, v->canon, v->canon_len), 0);
    ck_assert_int_eq(term_compare(v->canon, v->canon_len, v->in + 1, v->in_len - 1), 0);
}
END_TEST

START_TEST(canon_truncated_at_every_offset_returns_eproto)
{
    const vec_t *v = &vecs[_i];
    term_buf_t out;
    term_buf_init(&out);
    for (size_t k = 0; k < v->in_len; k++) {
        char *in = dup_exact(v->in, k);
        ck_assert_msg(term_canon(in, k, &out) == -EPROTO, "%s cut at %zu", v->id, k);
        ck_assert_uint_eq(out.len, 0);
        ck_assert_int_eq(out.err, 0);
        free(in);
    }
    term_buf_release(&out);
}
END_TEST

START_TEST(skip_truncated_at_every_offset_returns_eproto)
{
    const vec_t *v = &vecs[_i];
    size_t used;
    for (size_t k = 0; k < v->canon_len; k++) {
        char *in = dup_exact(v->canon, k);
        ck_assert_msg(term_skip(in, k, &used) == -EPROTO, "%s cut at %zu", v->id, k);
        free(in);
    }
}
END_TEST

START_TEST(canon_trailing_byte_returns_eproto)
{
    const vec_t *v = &vecs[_i];
    term_buf_t out;
    term_buf_init(&out);
    char *in = malloc(v->in_len + 1);
    memcpy(in, v->in, v->in_len);
    in[v->in_len] = 'j';
    ck_assert_int_eq(term_canon(in, v->in_len + 1, &out), -EPROTO);
    ck_assert_uint_eq(out.len, 0);
    free(in);
    term_buf_release(&out);
}
END_TEST

START_TEST(canon_allocation_failure_returns_enomem_and_leaves_buffer)
{
    const vec_t *v = &vecs[_i];
    for (long k = 1;; k++) {
        term_buf_t out;
        term_buf_init(&out);
        mem_fail_after(k);
        int rc = term_canon(v->in, v->in_len, &out);
        mem_fail_after(0);
        if (rc == 0) {
            ck_assert_uint_eq(out.len, v->canon_len);
            term_buf_release(&out);
            break;
        }
        ck_assert_msg(rc == -ENOMEM, "%s k=%ld rc=%d", v->id, k, rc);
        ck_assert_uint_eq(out.len, 0);
        ck_assert_int_eq(out.err, 0);
        term_buf_release(&out);
        ck_assert_int_lt(k, 100);
    }
}
END_TEST

START_TEST(hash_of_canon_same_across_encodings)
{
    const vec_t *v = &vecs[_i];
    term_buf_t out;
    term_buf_init(&out);
    ck_assert_int_eq(term_canon(v->in, v->in_len, &out), 0);
    ck_assert_uint_eq(term_hash(out.data, out.len), term_hash(v->canon, v->canon_len));
    term_buf_release(&out);
}
END_TEST

/* ---- lengths and depth -------------------------------------------------- */

START_TEST(canon_list_claiming_2_32_elements_returns_eproto)
{
    static const char in[] = "\x83\x6c\xff\xff\xff\xff\x61\x01\x6a\x6a";
    term_buf_t out;
    term_buf_init(&out);
    mem_fail_after(2); /* nothing beyond the output buffer (input-sized) */
    ck_assert_int_eq(term_canon(in, sizeof in - 1, &out), -EPROTO);
    mem_fail_after(0);
    term_buf_release(&out);
}
END_TEST

START_TEST(canon_binary_longer_than_input_returns_eproto)
{
    static const char in[] = "\x83\x6d\x7f\xff\xff\xff\x61\x62";
    term_buf_t out;
    term_buf_init(&out);
    ck_assert_int_eq(term_canon(in, sizeof in - 1, &out), -EPROTO);
    term_buf_release(&out);
}
END_TEST

START_TEST(canon_map_claiming_more_pairs_than_bytes_returns_eproto)
{
    static const char in[] = "\x83\x74\x10\x00\x00\x00\x61\x01\x61\x02";
    term_buf_t out;
    term_buf_init(&out);
    mem_fail_after(2); /* the input-sized output buffer only */
    ck_assert_int_eq(term_canon(in, sizeof in - 1, &out), -EPROTO);
    mem_fail_after(0);
    term_buf_release(&out);
}
END_TEST

START_TEST(canon_tuple_arity_past_input_returns_eproto)
{
    static const char in[] = "\x83\x69\x00\x01\x00\x00\x6a";
    term_buf_t out;
    term_buf_init(&out);
    ck_assert_int_eq(term_canon(in, sizeof in - 1, &out), -EPROTO);
    term_buf_release(&out);
}
END_TEST

START_TEST(canon_compressed_claiming_huge_size_returns_error_without_alloc)
{
    /* declares 4 GiB - 1 inflated from 3 bytes */
    static const char in[] = "\x83\x50\xff\xff\xff\xff\x78\x9c\x03";
    static const char in2[] = "\x83\x50\x00\x10\x00\x00\x78\x9c\x03";
    term_buf_t out;
    term_buf_init(&out);
    mem_fail_after(1);
    ck_assert_int_eq(term_canon(in, sizeof in - 1, &out), -E2BIG);
    ck_assert_int_eq(term_canon(in2, sizeof in2 - 1, &out), -EPROTO);
    mem_fail_after(0);
    term_buf_release(&out);
}
END_TEST

START_TEST(canon_compressed_size_mismatch_returns_eproto)
{
    /* term_to_binary(<<0:400>>, [compressed]) with the declared size one
     * too small, then one too large */
    const vec_t *v = NULL;
    for (size_t i = 0; i < NVECS; i++)
        if (strcmp(vecs[i].id, "zeros [compressed]") == 0)
            v = &vecs[i];
    ck_assert_ptr_nonnull(v);
    term_buf_t out;
    term_buf_init(&out);
    char *in = dup_exact(v->in, v->in_len);
    in[5]--;
    ck_assert_int_eq(term_canon(in, v->in_len, &out), -EPROTO);
    in[5] += 2;
    ck_assert_int_eq(term_canon(in, v->in_len, &out), -EPROTO);
    free(in);
    term_buf_release(&out);
}
END_TEST

/* n nested one-element tuples around [] (or lists if list != 0) */
static char *nested(size_t n, int list, size_t *len)
{
    size_t per = list ? 5 : 2;
    char *b = malloc(1 + per * n + 1 + (list ? n : 0));
    size_t o = 0;
    b[o++] = (char)131;
    for (size_t i = 0; i < n; i++) {
        if (list) {
            memcpy(b + o, "\x6c\x00\x00\x00\x01", 5);
        } else {
            memcpy(b + o, "\x68\x01", 2);
        }
        o += per;
    }
    b[o++] = 'j';
    if (list) {
        memset(b + o, 'j', n);
        o += n;
    }
    *len = o;
    return b;
}

START_TEST(canon_million_deep_tuple_returns_e2big)
{
    size_t len, used;
    char *b = nested(1000000, 0, &len);
    term_buf_t out;
    term_buf_init(&out);
    ck_assert_int_eq(term_canon(b, len, &out), -E2BIG);
    ck_assert_uint_eq(out.len, 0);
    ck_assert_int_eq(term_skip(b + 1, len - 1, &used), -E2BIG);
    term_buf_release(&out);
    free(b);
}
END_TEST

START_TEST(canon_million_deep_list_returns_e2big)
{
    size_t len, used;
    char *b = nested(1000000, 1, &len);
    term_buf_t out;
    term_buf_init(&out);
    ck_assert_int_eq(term_canon(b, len, &out), -E2BIG);
    ck_assert_int_eq(term_skip(b + 1, len - 1, &used), -E2BIG);
    term_buf_release(&out);
    free(b);
}
END_TEST

START_TEST(canon_depth_limit_is_exact)
{
    size_t len, used;
    term_buf_t out;
    term_buf_init(&out);
    char *b = nested(TERM_MAX_DEPTH, 0, &len);
    ck_assert_int_eq(term_canon(b, len, &out), 0);
    ck_assert_int_eq(term_skip(b + 1, len - 1, &used), 0);
    free(b);
    b = nested(TERM_MAX_DEPTH + 1, 0, &len);
    ck_assert_int_eq(term_canon(b, len, &out), -E2BIG);
    ck_assert_int_eq(term_skip(b + 1, len - 1, &used), -E2BIG);
    free(b);
    term_buf_release(&out);
}
END_TEST

START_TEST(canon_flat_million_element_list_succeeds)
{
    size_t n = 1000000, len = 1 + 5 + 3 * n + 1, used;
    char *b = malloc(len);
    b[0] = (char)131;
    memcpy(b + 1, "\x6c\x00\x0f\x42\x40", 5); /* 1000000 */
    for (size_t i = 0; i < n; i++)
        memcpy(b + 6 + 3 * i, "\x77\x01\x78", 3); /* x */
    b[len - 1] = 'j';
    term_buf_t out;
    term_buf_init(&out);
    ck_assert_int_eq(term_canon(b, len, &out), 0);
    ck_assert_uint_eq(out.len, len - 1);
    ck_assert(memcmp(out.data, b + 1, len - 1) == 0);
    ck_assert_int_eq(term_skip(b + 1, len - 1, &used), 0);
    ck_assert_uint_eq(used, len - 1);
    term_buf_release(&out);
    free(b);
}
END_TEST

START_TEST(canon_million_tails_chain_becomes_flat_list)
{
    /* [x|[x|[x|...[]]]] written as a million one-element LIST_EXTs: valid
     * ETF (binary_to_term accepts it), iterated rather than recursed. */
    size_t n = 1000000, len = 1 + 8 * n + 1, used;
    char *b = malloc(len);
    b[0] = (char)131;
    for (size_t i = 0; i < n; i++)
        memcpy(b + 1 + 8 * i, "\x6c\x00\x00\x00\x01\x77\x01\x78", 8);
    b[len - 1] = 'j';
    term_buf_t out;
    term_buf_init(&out);
    ck_assert_int_eq(term_canon(b, len, &out), 0);
    ck_assert_uint_eq(out.len, 5 + 3 * n + 1);
    ck_assert(memcmp(out.data, "\x6c\x00\x0f\x42\x40\x77\x01\x78", 8) == 0);
    ck_assert_int_eq(term_skip(b + 1, len - 1, &used), 0);
    ck_assert_uint_eq(used, len - 1);
    ck_assert_int_eq(term_compare(b + 1, len - 1, out.data, out.len), 0);
    term_buf_release(&out);
    free(b);
}
END_TEST

/* ---- non-canonical encodings -------------------------------------------- */

typedef struct alt {
    const char *id;
    const char *in;
    size_t len;
    const char *canon;
    size_t canon_len;
} alt_t;

/* Accepted by binary_to_term on OTP 25 (checked), with the canonical bytes
 * of the term it returns: term_to_binary(binary_to_term(In), [{minor_version,2}]). */
static const alt_t alts[] = {
    /* binary_to_term(<<131,108,0,0,0,0,100,0,1,97>>) =:= a */
    {"empty LIST_EXT is its tail", "\x83\x6c\x00\x00\x00\x00\x64\x00\x01\x61", 10, "\x77\x01\x61", 3},
    /* <<131,77,0,0,0,0,0>> is <<>> */
    {"empty bitstring", "\x83\x4d\x00\x00\x00\x00\x00", 7, "\x6d\x00\x00\x00\x00", 5},
    /* <<131,77,0,0,0,1,3,255>> is <<7:3>> */
    {"bitstring unused bits", "\x83\x4d\x00\x00\x00\x01\x03\xff", 8, "\x4d\x00\x00\x00\x01\x03\xe0", 7},
    /* <<131,77,0,0,0,1,8,5>> is <<5>> */
    {"bitstring of 8 bits", "\x83\x4d\x00\x00\x00\x01\x08\x05", 8, "\x6d\x00\x00\x00\x01\x05", 6},
    /* <<131,110,2,0,5,0>> is 5 */
    {"big with zero top byte", "\x83\x6e\x02\x00\x05\x00", 6, "\x61\x05", 2},
    /* <<131,110,0,1>> is 0 */
    {"negative empty big", "\x83\x6e\x00\x01", 4, "\x61\x00", 2},
    /* <<131,98,0,0,0,7>> is 7 */
    {"INTEGER_EXT small", "\x83\x62\x00\x00\x00\x07", 6, "\x61\x07", 2},
    /* <<131,107,0,0>> is [] */
    {"empty string", "\x83\x6b\x00\x00", 4, "\x6a", 1},
    /* <<131,108,0,0,0,2,97,104,97,105,106>> is "hi" */
    {"list of bytes", "\x83\x6c\x00\x00\x00\x02\x61\x68\x61\x69\x6a", 11, "\x6b\x00\x02\x68\x69", 5},
    /* <<131,108,0,0,0,1,97,104,107,0,1,105>> is "hi" */
    {"string tail", "\x83\x6c\x00\x00\x00\x01\x61\x68\x6b\x00\x01\x69", 12, "\x6b\x00\x02\x68\x69", 5},
    /* <<131,70,128,0,0,0,0,0,0,0>> is -0.0, =:= 0.0 on OTP 25 */
    {"minus zero", "\x83\x46\x80\x00\x00\x00\x00\x00\x00\x00", 10, "\x46\x00\x00\x00\x00\x00\x00\x00\x00", 9},
    /* <<131,116,0,0,0,2,100,0,1,98,97,1,100,0,1,97,97,2>> is #{a => 2, b => 1} */
    {"map out of order", "\x83\x74\x00\x00\x00\x02\x64\x00\x01\x62\x61\x01\x64\x00\x01\x61\x61\x02", 18,
     "\x74\x00\x00\x00\x02\x77\x01\x61\x61\x02\x77\x01\x62\x61\x01", 15},
    /* a 3-word ref whose high words are 0: term_to_binary keeps the words */
    {"ref high zero words", "\x83\x5a\x00\x03\x64\x00\x01\x61\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00", 24,
     "\x5a\x00\x03\x77\x01\x61\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00", 22},
    /* <<131,90,0,0,100,0,1,97,0,0,0,0>>: a ref of 0 words, kept so */
    {"ref of 0 words", "\x83\x5a\x00\x00\x64\x00\x01\x61\x00\x00\x00\x00", 12,
     "\x5a\x00\x00\x77\x01\x61\x00\x00\x00\x00", 10},
};

START_TEST(canon_alternative_encoding_gives_canonical)
{
    const alt_t *a = &alts[_i];
    term_buf_t out;
    size_t used;
    term_buf_init(&out);
    ck_assert_msg(term_canon(a->in, a->len, &out) == 0, "%s", a->id);
    ck_assert_uint_eq(out.len, a->canon_len);
    ck_assert_msg(memcmp(out.data, a->canon, a->canon_len) == 0, "%s", a->id);
    ck_assert_int_eq(term_skip(a->in + 1, a->len - 1, &used), 0);
    ck_assert_uint_eq(used, a->len - 1);
    ck_assert_int_eq(term_compare(a->in + 1, a->len - 1, a->canon, a->canon_len), 0);
    term_buf_release(&out);
}
END_TEST

START_TEST(canon_alternative_allocation_failure_returns_enomem)
{
    const alt_t *a = &alts[_i];
    for (long k = 1;; k++) {
        term_buf_t out;
        term_buf_init(&out);
        mem_fail_after(k);
        int rc = term_canon(a->in, a->len, &out);
        mem_fail_after(0);
        term_buf_release(&out);
        if (rc == 0)
            break;
        ck_assert_msg(rc == -ENOMEM, "%s k=%ld rc=%d", a->id, k, rc);
        ck_assert_int_lt(k, 100);
    }
}
END_TEST

/* binary_to_term on OTP 25 raises badarg for each of these (checked). */
static const alt_t bad[] = {
    {"duplicate map key", "\x83\x74\x00\x00\x00\x02\x61\x01\x61\x02\x61\x01\x61\x03", 14, NULL, 0},
    {"infinite float", "\x83\x46\x7f\xf0\x00\x00\x00\x00\x00\x00", 10, NULL, 0},
    {"bitstring 0 bits", "\x83\x4d\x00\x00\x00\x01\x00\xff", 8, NULL, 0},
    {"latin1 atom of 256", "\x83\x64\x01\x00", 4, NULL, 0},
    {"surrogate in atom", "\x83\x77\x03\xed\xa0\x80", 6, NULL, 0},
    {"overlong in atom", "\x83\x77\x02\xc0\x80", 5, NULL, 0},
    {"ref of 6 words", "\x83\x5a\x00\x06\x64\x00\x01\x61\x00\x00\x00\x00"
                       "\x00\x00\x00\x01\x00\x00\x00\x01\x00\x00\x00\x01\x00\x00\x00\x01\x00\x00\x00\x01\x00\x00\x00\x01", 36, NULL, 0},
    {"unknown tag", "\x83\x01", 2, NULL, 0},
    {"no version", "\x61\x01", 2, NULL, 0},
};

START_TEST(canon_invalid_returns_eproto)
{
    const alt_t *a = &bad[_i];
    term_buf_t out;
    term_buf_init(&out);
    ck_assert_msg(term_canon(a->in, a->len, &out) == -EPROTO, "%s", a->id);
    ck_assert_uint_eq(out.len, 0);
    term_buf_release(&out);
}
END_TEST

/* UTF-8 atoms whose fault comes after a run of ASCII long enough for the
 * 8-bytes-at-a-time scan, and valid ones that mix both. */
static const struct utf8_row {
    const char *id;
    const char *in;   /* with version byte */
    size_t len;
    int ok;
} utf8_rows[] = {
    {"stray continuation after 9 ascii", "\x83\x77\x0a" "abcdefghi" "\x80", 13, 0},
    {"overlong after 9 ascii", "\x83\x77\x0b" "abcdefghi" "\xc0\x80", 14, 0},
    {"surrogate after 16 ascii", "\x83\x77\x13" "abcdefghijklmnop" "\xed\xa0\x80", 22, 0},
    {"0xff as 8th byte of a word", "\x83\x77\x0a" "abcdefg" "\xff" "hi", 13, 0},
    {"truncated 2-byte form at the end", "\x83\x77\x11" "abcdefghijklmnop" "\xc3", 20, 0},
    {"e-acute between ascii runs", "\x83\x77\x1a" "abcdefghijklmnop" "\xc3\xa9" "abcdefgh", 29, 1},
    {"ascii of 8 exactly", "\x83\x77\x08" "abcdefgh", 11, 1},
    {"ascii of 17", "\x83\x77\x11" "abcdefghijklmnopq", 20, 1},
};

START_TEST(atom_utf8_after_ascii_run_checked)
{
    const struct utf8_row *row = &utf8_rows[_i];
    size_t used = 0;
    term_buf_t out;
    term_buf_init(&out);
    int want = row->ok ? 0 : -EPROTO;
    ck_assert_msg(term_skip(row->in + 1, row->len - 1, &used) == want, "skip %s", row->id);
    if (row->ok)
        ck_assert_uint_eq(used, row->len - 1);
    ck_assert_msg(term_canon(row->in, row->len, &out) == want, "canon %s", row->id);
    term_buf_release(&out);
}
END_TEST

/* ---- encoders ----------------------------------------------------------- */

START_TEST(put_long_matches_beam_at_boundaries)
{
    static const struct { int64_t v; const char *bytes; size_t len; } cases[] = {
        {0, "\x61\x00", 2},                       /* term_to_binary(0) */
        {255, "\x61\xff", 2},                     /* term_to_binary(255) */
        {256, "\x62\x00\x00\x01\x00", 5},         /* term_to_binary(256) */
        {-1, "\x62\xff\xff\xff\xff", 5},          /* term_to_binary(-1) */
        {2147483647, "\x62\x7f\xff\xff\xff", 5},  /* term_to_binary(2147483647) */
        {2147483648, "\x6e\x04\x00\x00\x00\x00\x80", 7},   /* term_to_binary(2147483648) */
        {-2147483649LL, "\x6e\x04\x01\x01\x00\x00\x80", 7}, /* term_to_binary(-2147483649) */
        {INT64_MIN, "\x6e\x08\x01\x00\x00\x00\x00\x00\x00\x00\x80", 11}, /* term_to_binary(-(1 bsl 63)) */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        term_buf_t b;
        term_buf_init(&b);
        term_put_long(&b, cases[i].v);
        ck_assert_int_eq(b.err, 0);
        ck_assert_uint_eq(b.len, cases[i].len);
        ck_assert_msg(memcmp(b.data, cases[i].bytes, b.len) == 0, "case %zu", i);
        term_buf_release(&b);
    }
}
END_TEST

START_TEST(put_message_matches_beam)
{
    /* term_to_binary({forward_to_local, <<"new">>, {new, {<<"u">>, 1.5}},
     *                 'Elixir.Phoenix.PubSub'}, [{minor_version, 2}]) */
    static const char want[] =
        "\x83\x68\x04\x77\x10\x66\x6f\x72\x77\x61\x72\x64\x5f\x74\x6f\x5f\x6c\x6f\x63\x61\x6c"
        "\x6d\x00\x00\x00\x03\x6e\x65\x77\x68\x02\x77\x03\x6e\x65\x77\x68\x02\x6d\x00\x00\x00"
        "\x01\x75\x46\x3f\xf8\x00\x00\x00\x00\x00\x00\x77\x15\x45\x6c\x69\x78\x69\x72\x2e\x50"
        "\x68\x6f\x65\x6e\x69\x78\x2e\x50\x75\x62\x53\x75\x62";
    term_buf_t b;
    term_buf_init(&b);
    term_put_version(&b);
    term_put_tuple(&b, 4);
    term_put_atom(&b, "forward_to_local");
    term_put_binary(&b, "new", 3);
    term_put_tuple(&b, 2);
    term_put_atom(&b, "new");
    term_put_tuple(&b, 2);
    term_put_binary(&b, "u", 1);
    term_put_double(&b, 1.5);
    term_put_atom(&b, "Elixir.Phoenix.PubSub");
    ck_assert_int_eq(b.err, 0);
    ck_assert_uint_eq(b.len, sizeof want - 1);
    ck_assert(memcmp(b.data, want, b.len) == 0);
    term_buf_release(&b);
}
END_TEST

START_TEST(put_pid_ref_match_beam)
{
    term_buf_t b;
    term_buf_init(&b);
    term_pid_t pid = {.node = "a@h", .num = 1, .serial = 2, .creation = 3};
    term_ref_t ref = {.node = "a@h", .creation = 3, .len = 3, .n = {1, 2, 3}};
    term_put_pid(&b, &pid);
    term_put_ref(&b, &ref);
    ck_assert_int_eq(b.err, 0);
    const vec_t *vp = NULL, *vr = NULL;
    for (size_t i = 0; i < NVECS; i++) {
        if (strcmp(vecs[i].id, "pid []") == 0)
            vp = &vecs[i];
        if (strcmp(vecs[i].id, "ref []") == 0)
            vr = &vecs[i];
    }
    ck_assert_uint_eq(b.len, vp->canon_len + vr->canon_len);
    ck_assert(memcmp(b.data, vp->canon, vp->canon_len) == 0);
    ck_assert(memcmp(b.data + vp->canon_len, vr->canon, vr->canon_len) == 0);
    term_buf_release(&b);
}
END_TEST

START_TEST(put_invalid_atom_sets_einval)
{
    term_buf_t b;
    term_buf_init(&b);
    term_put_atom_len(&b, "\xc0\x80", 2);
    ck_assert_int_eq(b.err, -EINVAL);
    term_put_atom(&b, "ok"); /* sticky: nothing more is written */
    ck_assert_uint_eq(b.len, 0);
    term_buf_release(&b);
}
END_TEST

START_TEST(buf_allocation_failure_is_sticky)
{
    term_buf_t b;
    term_buf_init(&b);
    mem_fail_after(1);
    term_put_atom(&b, "ok");
    mem_fail_after(0);
    ck_assert_int_eq(b.err, -ENOMEM);
    term_put_atom(&b, "ok");
    ck_assert_int_eq(b.err, -ENOMEM);
    ck_assert_uint_eq(b.len, 0);
    term_buf_reset(&b);
    term_put_atom(&b, "ok");
    ck_assert_int_eq(b.err, 0);
    ck_assert_uint_eq(b.len, 4);
    size_t n;
    char *d = term_buf_detach(&b, &n);
    ck_assert_uint_eq(n, 4);
    ck_assert_ptr_null(b.data);
    mem_free(d);
}
END_TEST

/* ---- reader ------------------------------------------------------------- */

START_TEST(reader_walks_beam_tuple)
{
    /* term_to_binary({a, <<>>, []}) */
    static const char in[] = "\x83\x68\x03\x64\x00\x01\x61\x6d\x00\x00\x00\x00\x6a";
    term_reader_t r;
    uint32_t arity;
    char atom[TERM_ATOM_MAX];
    const char *p;
    size_t len;
    term_reader_init(&r, in, sizeof in - 1);
    ck_assert_int_eq(term_get_tuple(&r, &arity), -EPROTO);
    ck_assert_uint_eq(r.pos, 0);
    ck_assert_int_eq(term_get_version(&r), 0);
    ck_assert_int_eq(term_peek(&r), TERM_T_TUPLE);
    ck_assert_int_eq(term_get_tuple(&r, &arity), 0);
    ck_assert_uint_eq(arity, 3);
    ck_assert_int_eq(term_get_atom(&r, atom), 0);
    ck_assert_str_eq(atom, "a");
    ck_assert_int_eq(term_get_long(&r, &(int64_t){0}), -EPROTO);
    ck_assert_int_eq(term_get_binary(&r, &p, &len), 0);
    ck_assert_uint_eq(len, 0);
    ck_assert_int_eq(term_get_nil(&r), 0);
    ck_assert_uint_eq(r.pos, r.len);
    ck_assert_int_eq(term_peek(&r), TERM_T_INVALID);
}
END_TEST

START_TEST(reader_gets_numbers_pid_ref)
{
    term_reader_t r;
    int64_t v;
    double d;
    term_pid_t pid;
    term_ref_t ref;
    for (size_t i = 0; i < NVECS; i++) {
        const vec_t *x = &vecs[i];
        term_reader_init(&r, x->in, x->in_len);
        ck_assert_int_eq(term_get_version(&r), 0);
        if (strcmp(x->id, "big_2_31 []") == 0) {
            ck_assert_int_eq(term_get_long(&r, &v), 0);
            ck_assert_int_eq(v, 2147483648LL);
        } else if (strcmp(x->id, "big_neg []") == 0) {
            ck_assert_int_eq(term_get_long(&r, &v), -ERANGE);
            ck_assert_uint_eq(r.pos, 1);
        } else if (strcmp(x->id, "integer []") == 0) {
            ck_assert_int_eq(term_get_long(&r, &v), 0);
            ck_assert_int_eq(v, -1);
        } else if (strcmp(x->id, "float []") == 0) {
            ck_assert_int_eq(term_get_double(&r, &d), 0);
            ck_assert(d == 3.5);
        } else if (strcmp(x->id, "pid []") == 0) {
            ck_assert_int_eq(term_get_pid(&r, &pid), 0);
            ck_assert_str_eq(pid.node, "a@h");
            ck_assert_uint_eq(pid.num, 1);
            ck_assert_uint_eq(pid.serial, 2);
            ck_assert_uint_eq(pid.creation, 3);
        } else if (strcmp(x->id, "ref []") == 0) {
            ck_assert_int_eq(term_get_ref(&r, &ref), 0);
            ck_assert_str_eq(ref.node, "a@h");
            ck_assert_int_eq(ref.len, 3);
            ck_assert_uint_eq(ref.n[2], 3);
        } else if (strcmp(x->id, "atom_latin1 []") == 0) {
            char a[TERM_ATOM_MAX];
            ck_assert_int_eq(term_get_atom(&r, a), 0);
            ck_assert_str_eq(a, "caf\xc3\xa9");
        } else if (strcmp(x->id, "string []") == 0) {
            const char *p;
            size_t n;
            ck_assert_int_eq(term_get_list(&r, &(uint32_t){0}), -EPROTO);
            ck_assert_int_eq(term_get_string(&r, &p, &n), 0);
            ck_assert_uint_eq(n, 3);
        } else if (strcmp(x->id, "list_of_tuples []") == 0) {
            uint32_t n;
            const char *p;
            size_t len;
            ck_assert_int_eq(term_get_list(&r, &n), 0);
            ck_assert_uint_eq(n, 2);
            ck_assert_int_eq(term_get_any(&r, &p, &len), 0);
            ck_assert_uint_eq(len, 8); /* {1,x}: 104,2,97,1,100,0,1,120 */
        }
    }
}
END_TEST

/* ---- OTP 27 and later ----------------------------------------------------- */

/* The vectors above are OTP 25's; their tests run under its semantics. */
static void otp25_setup(void)
{
    ck_assert_int_eq(term_set_otp_release(25), 0);
}

static void otp27_setup(void)
{
    ck_assert_int_eq(term_set_otp_release(27), 0);
}

static void release_teardown(void)
{
    term_set_otp_release(TERM_OTP_DEFAULT);
}

/* Written by test/vectors/gen_otp27_vectors.erl: term_to_binary(T) on a
 * real OTP 27 node (rows "otp29 ...": on OTP 29, which writes the atom-keyed
 * maps in yet another order), and the canonical form: term_to_binary of
 * every leaf with map pairs in BEAM's exact key order. OTP 29 gives the
 * same canonical bytes for every row. */
static const vec_t vecs27[] = {
    {"minus_zero", "\x83\x46\x80\x00\x00\x00\x00\x00\x00\x00", 10, "\x46\x80\x00\x00\x00\x00\x00\x00\x00", 9},
    {"zero", "\x83\x46\x00\x00\x00\x00\x00\x00\x00\x00", 10, "\x46\x00\x00\x00\x00\x00\x00\x00\x00", 9},
    {"map_both_zeros", "\x83\x74\x00\x00\x00\x02\x46\x80\x00\x00\x00\x00\x00\x00\x00\x77\x01\x62\x46\x00\x00\x00\x00\x00\x00\x00\x00\x77\x01\x61", 30, "\x74\x00\x00\x00\x02\x46\x80\x00\x00\x00\x00\x00\x00\x00\x77\x01\x62\x46\x00\x00\x00\x00\x00\x00\x00\x00\x77\x01\x61", 29},
    {"tuple_minus_zero_key", "\x83\x68\x02\x46\x80\x00\x00\x00\x00\x00\x00\x00\x77\x03\x6e\x65\x67", 17, "\x68\x02\x46\x80\x00\x00\x00\x00\x00\x00\x00\x77\x03\x6e\x65\x67", 16},
    {"port", "\x83\x78\x77\x03\x61\x40\x68\x00\x00\x00\x00\x00\x00\x00\x07\x00\x00\x00\x03", 19, "\x78\x77\x03\x61\x40\x68\x00\x00\x00\x00\x00\x00\x00\x07\x00\x00\x00\x03", 18},
    {"atom_map_5", "\x83\x74\x00\x00\x00\x05\x77\x01\x63\x61\x03\x77\x01\x61\x61\x02\x77\x01\x62\x61\x01\x77\x02\x61\x61\x61\x05\x77\x02\x7a\x7a\x61\x04", 33, "\x74\x00\x00\x00\x05\x77\x01\x61\x61\x02\x77\x02\x61\x61\x61\x05\x77\x01\x62\x61\x01\x77\x01\x63\x61\x03\x77\x02\x7a\x7a\x61\x04", 32},
    {"atom_map_26", "\x83\x74\x00\x00\x00\x1a\x77\x01\x63\x61\x63\x77\x01\x70\x61\x70\x77\x01\x69\x61\x69\x77\x01\x61\x61\x61\x77\x01\x76\x61\x76\x77\x01\x6b\x61\x6b\x77\x01\x71\x61\x71\x77\x01\x6d\x61\x6d\x77\x01\x66\x61\x66\x77\x01\x62\x61\x62\x77\x01\x73\x61\x73\x77\x01\x68\x61\x68\x77\x01\x72\x61\x72\x77\x01\x6a\x61\x6a\x77\x01\x77\x61\x77\x77\x01\x64\x61\x64\x77\x01\x6c\x61\x6c\x77\x01\x79\x61\x79\x77\x01\x7a\x61\x7a\x77\x01\x78\x61\x78\x77\x01\x75\x61\x75\x77\x01\x74\x61\x74\x77\x01\x6f\x61\x6f\x77\x01\x6e\x61\x6e\x77\x01\x67\x61\x67\x77\x01\x65\x61\x65", 136, "\x74\x00\x00\x00\x1a\x77\x01\x61\x61\x61\x77\x01\x62\x61\x62\x77\x01\x63\x61\x63\x77\x01\x64\x61\x64\x77\x01\x65\x61\x65\x77\x01\x66\x61\x66\x77\x01\x67\x61\x67\x77\x01\x68\x61\x68\x77\x01\x69\x61\x69\x77\x01\x6a\x61\x6a\x77\x01\x6b\x61\x6b\x77\x01\x6c\x61\x6c\x77\x01\x6d\x61\x6d\x77\x01\x6e\x61\x6e\x77\x01\x6f\x61\x6f\x77\x01\x70\x61\x70\x77\x01\x71\x61\x71\x77\x01\x72\x61\x72\x77\x01\x73\x61\x73\x77\x01\x74\x61\x74\x77\x01\x75\x61\x75\x77\x01\x76\x61\x76\x77\x01\x77\x61\x77\x77\x01\x78\x61\x78\x77\x01\x79\x61\x79\x77\x01\x7a\x61\x7a", 135},
    {"atom_map_in_tuple", "\x83\x68\x02\x77\x04\x75\x73\x65\x72\x74\x00\x00\x00\x04\x77\x02\x69\x64\x61\x01\x77\x04\x6e\x61\x6d\x65\x6d\x00\x00\x00\x03\x61\x6e\x6e\x77\x03\x61\x67\x65\x61\x07\x77\x05\x65\x6d\x61\x69\x6c\x6d\x00\x00\x00\x03\x61\x40\x78", 56, "\x68\x02\x77\x04\x75\x73\x65\x72\x74\x00\x00\x00\x04\x77\x03\x61\x67\x65\x61\x07\x77\x05\x65\x6d\x61\x69\x6c\x6d\x00\x00\x00\x03\x61\x40\x78\x77\x02\x69\x64\x61\x01\x77\x04\x6e\x61\x6d\x65\x6d\x00\x00\x00\x03\x61\x6e\x6e", 55},
    {"otp29 atom_map_5", "\x83\x74\x00\x00\x00\x05\x77\x01\x63\x61\x03\x77\x01\x62\x61\x01\x77\x01\x61\x61\x02\x77\x02\x61\x61\x61\x05\x77\x02\x7a\x7a\x61\x04", 33, "\x74\x00\x00\x00\x05\x77\x01\x61\x61\x02\x77\x02\x61\x61\x61\x05\x77\x01\x62\x61\x01\x77\x01\x63\x61\x03\x77\x02\x7a\x7a\x61\x04", 32},
    {"otp29 atom_map_26", "\x83\x74\x00\x00\x00\x1a\x77\x01\x78\x61\x78\x77\x01\x79\x61\x79\x77\x01\x63\x61\x63\x77\x01\x70\x61\x70\x77\x01\x76\x61\x76\x77\x01\x6b\x61\x6b\x77\x01\x71\x61\x71\x77\x01\x6d\x61\x6d\x77\x01\x66\x61\x66\x77\x01\x62\x61\x62\x77\x01\x73\x61\x73\x77\x01\x69\x61\x69\x77\x01\x61\x61\x61\x77\x01\x68\x61\x68\x77\x01\x72\x61\x72\x77\x01\x6a\x61\x6a\x77\x01\x77\x61\x77\x77\x01\x64\x61\x64\x77\x01\x6c\x61\x6c\x77\x01\x7a\x61\x7a\x77\x01\x75\x61\x75\x77\x01\x74\x61\x74\x77\x01\x6f\x61\x6f\x77\x01\x6e\x61\x6e\x77\x01\x67\x61\x67\x77\x01\x65\x61\x65", 136, "\x74\x00\x00\x00\x1a\x77\x01\x61\x61\x61\x77\x01\x62\x61\x62\x77\x01\x63\x61\x63\x77\x01\x64\x61\x64\x77\x01\x65\x61\x65\x77\x01\x66\x61\x66\x77\x01\x67\x61\x67\x77\x01\x68\x61\x68\x77\x01\x69\x61\x69\x77\x01\x6a\x61\x6a\x77\x01\x6b\x61\x6b\x77\x01\x6c\x61\x6c\x77\x01\x6d\x61\x6d\x77\x01\x6e\x61\x6e\x77\x01\x6f\x61\x6f\x77\x01\x70\x61\x70\x77\x01\x71\x61\x71\x77\x01\x72\x61\x72\x77\x01\x73\x61\x73\x77\x01\x74\x61\x74\x77\x01\x75\x61\x75\x77\x01\x76\x61\x76\x77\x01\x77\x61\x77\x77\x01\x78\x61\x78\x77\x01\x79\x61\x79\x77\x01\x7a\x61\x7a", 135},
};

START_TEST(canon_otp27_vector_gives_canonical_bytes)
{
    const vec_t *v = &vecs27[_i];
    term_buf_t out;
    size_t used;
    term_buf_init(&out);
    char *in = dup_exact(v->in, v->in_len);
    ck_assert_msg(term_canon(in, v->in_len, &out) == 0, "%s", v->id);
    ck_assert_uint_eq(out.len, v->canon_len);
    ck_assert_msg(memcmp(out.data, v->canon, v->canon_len) == 0, "%s", v->id);
    /* the canonical bytes are canonical: copied as they are */
    term_buf_reset(&out);
    ck_assert_int_eq(term_canon_inner(v->canon, v->canon_len, &used, &out), 0);
    ck_assert_uint_eq(used, v->canon_len);
    ck_assert_msg(out.len == v->canon_len && memcmp(out.data, v->canon, v->canon_len) == 0,
                  "%s", v->id);
    ck_assert_int_eq(term_compare(in + 1, v->in_len - 1, v->canon, v->canon_len), 0);
    free(in);
    term_buf_release(&out);
}
END_TEST

/* vecs27[0] is -0.0 and vecs27[1] 0.0: two terms on OTP 27, one before. */
START_TEST(canon_minus_zero_otp27_keeps_sign)
{
    term_buf_t a, b;
    term_buf_init(&a);
    term_buf_init(&b);
    ck_assert_int_eq(term_canon(vecs27[0].in, vecs27[0].in_len, &a), 0);
    ck_assert_int_eq(term_canon(vecs27[1].in, vecs27[1].in_len, &b), 0);
    ck_assert_uint_eq(a.len, b.len);
    ck_assert_int_ne(memcmp(a.data, b.data, a.len), 0);
    /* == still: they sort as equal */
    ck_assert_int_eq(term_compare(a.data, a.len, b.data, b.len), 0);
    term_buf_release(&a);
    term_buf_release(&b);
}
END_TEST

START_TEST(canon_minus_zero_otp25_folds_to_zero)
{
    term_buf_t a, b;
    term_buf_init(&a);
    term_buf_init(&b);
    ck_assert_int_eq(term_set_otp_release(25), 0);
    ck_assert_int_eq(term_canon(vecs27[0].in, vecs27[0].in_len, &a), 0);
    ck_assert_int_eq(term_canon(vecs27[1].in, vecs27[1].in_len, &b), 0);
    ck_assert_uint_eq(a.len, b.len);
    ck_assert_int_eq(memcmp(a.data, b.data, a.len), 0);
    term_buf_release(&a);
    term_buf_release(&b);
}
END_TEST

/* vecs27[2] is #{0.0 => a, -0.0 => b}: two keys on OTP 27; before, its
 * canonical form would repeat a key. */
START_TEST(canon_map_of_both_zeros_otp25_returns_eproto)
{
    term_buf_t out;
    term_buf_init(&out);
    ck_assert_int_eq(term_set_otp_release(25), 0);
    ck_assert_int_eq(term_canon(vecs27[2].in, vecs27[2].in_len, &out), -EPROTO);
    ck_assert_uint_eq(out.len, 0);
    term_buf_release(&out);
}
END_TEST

START_TEST(set_otp_release_out_of_range_returns_einval)
{
    ck_assert_int_eq(term_set_otp_release(24), -EINVAL);
    ck_assert_int_eq(term_set_otp_release(TERM_OTP_MAX + 1), -EINVAL);
    ck_assert_int_eq(term_otp_release(), 27);
    ck_assert_int_eq(term_otp_canon_same(27, 29), 1);
    ck_assert_int_eq(term_otp_canon_same(25, 27), 0);
}
END_TEST

START_TEST(canon_otp27_allocation_failure_returns_enomem)
{
    const vec_t *v = &vecs27[_i];
    for (int k = 1;; k++) {
        term_buf_t out;
        term_buf_init(&out);
        mem_fail_after(k);
        int rc = term_canon(v->in, v->in_len, &out);
        mem_fail_after(0);
        if (rc == 0) {
            ck_assert_uint_eq(out.len, v->canon_len);
            term_buf_release(&out);
            break;
        }
        ck_assert_int_eq(rc, -ENOMEM);
        ck_assert_uint_eq(out.len, 0);
        term_buf_release(&out);
    }
}
END_TEST

/* vecs27[0] is -0.0, [1] 0.0, [4] a port: only -0.0 and ports count. */
START_TEST(release_terms_seen_counts_minus_zero_and_ports)
{
    term_buf_t out;
    term_buf_init(&out);
    uint64_t n = term_release_terms_seen();
    ck_assert_int_eq(term_canon(vecs27[1].in, vecs27[1].in_len, &out), 0);
    ck_assert_uint_eq(term_release_terms_seen(), n);
    ck_assert_int_eq(term_canon(vecs27[0].in, vecs27[0].in_len, &out), 0);
    ck_assert_uint_eq(term_release_terms_seen(), n + 1);
    ck_assert_int_eq(term_canon(vecs27[4].in, vecs27[4].in_len, &out), 0);
    ck_assert_uint_eq(term_release_terms_seen(), n + 2);
    term_buf_release(&out);
}
END_TEST

#define NVECS27 (sizeof vecs27 / sizeof vecs27[0])

Suite *term_codec_suite(void)
{
    Suite *s = suite_create("term_codec");
    TCase *tc = tcase_create("beam_vectors");
    tcase_add_checked_fixture(tc, otp25_setup, release_teardown);
    tcase_add_loop_test(tc, canon_beam_vector_gives_minor_version_2_bytes, 0, NVECS);
    tcase_add_loop_test(tc, canon_of_canon_is_identical, 0, NVECS);
    tcase_add_loop_test(tc, skip_beam_vector_takes_whole_term, 0, NVECS);
    tcase_add_loop_test(tc, compare_beam_vector_equals_its_canon, 0, NVECS);
    tcase_add_loop_test(tc, hash_of_canon_same_across_encodings, 0, NVECS);
    suite_add_tcase(s, tc);

    tc = tcase_create("malformed");
    tcase_add_checked_fixture(tc, otp25_setup, release_teardown);
    tcase_add_loop_test(tc, canon_truncated_at_every_offset_returns_eproto, 0, NVECS);
    tcase_add_loop_test(tc, skip_truncated_at_every_offset_returns_eproto, 0, NVECS);
    tcase_add_loop_test(tc, canon_trailing_byte_returns_eproto, 0, NVECS);
    tcase_add_test(tc, canon_list_claiming_2_32_elements_returns_eproto);
    tcase_add_test(tc, canon_binary_longer_than_input_returns_eproto);
    tcase_add_test(tc, canon_map_claiming_more_pairs_than_bytes_returns_eproto);
    tcase_add_test(tc, canon_tuple_arity_past_input_returns_eproto);
    tcase_add_test(tc, canon_compressed_claiming_huge_size_returns_error_without_alloc);
    tcase_add_test(tc, canon_compressed_size_mismatch_returns_eproto);
    tcase_add_loop_test(tc, canon_invalid_returns_eproto, 0, sizeof bad / sizeof bad[0]);
    tcase_add_loop_test(tc, atom_utf8_after_ascii_run_checked, 0,
                        sizeof utf8_rows / sizeof utf8_rows[0]);
    suite_add_tcase(s, tc);

    tc = tcase_create("depth");
    tcase_add_checked_fixture(tc, otp25_setup, release_teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, canon_million_deep_tuple_returns_e2big);
    tcase_add_test(tc, canon_million_deep_list_returns_e2big);
    tcase_add_test(tc, canon_depth_limit_is_exact);
    tcase_add_test(tc, canon_flat_million_element_list_succeeds);
    tcase_add_test(tc, canon_million_tails_chain_becomes_flat_list);
    suite_add_tcase(s, tc);

    tc = tcase_create("canonical_forms");
    tcase_add_checked_fixture(tc, otp25_setup, release_teardown);
    tcase_add_loop_test(tc, canon_alternative_encoding_gives_canonical, 0, sizeof alts / sizeof alts[0]);
    tcase_add_loop_test(tc, canon_allocation_failure_returns_enomem_and_leaves_buffer, 0, NVECS);
    tcase_add_loop_test(tc, canon_alternative_allocation_failure_returns_enomem, 0,
                        sizeof alts / sizeof alts[0]);
    suite_add_tcase(s, tc);

    tc = tcase_create("encode_read");
    tcase_add_checked_fixture(tc, otp25_setup, release_teardown);
    tcase_add_test(tc, put_long_matches_beam_at_boundaries);
    tcase_add_test(tc, put_message_matches_beam);
    tcase_add_test(tc, put_pid_ref_match_beam);
    tcase_add_test(tc, put_invalid_atom_sets_einval);
    tcase_add_test(tc, buf_allocation_failure_is_sticky);
    tcase_add_test(tc, reader_walks_beam_tuple);
    tcase_add_test(tc, reader_gets_numbers_pid_ref);
    suite_add_tcase(s, tc);

    tc = tcase_create("otp27_vectors");
    tcase_add_checked_fixture(tc, otp27_setup, release_teardown);
    tcase_add_loop_test(tc, canon_otp27_vector_gives_canonical_bytes, 0, NVECS27);
    tcase_add_loop_test(tc, canon_otp27_allocation_failure_returns_enomem, 0, NVECS27);
    tcase_add_test(tc, canon_minus_zero_otp27_keeps_sign);
    tcase_add_test(tc, canon_minus_zero_otp25_folds_to_zero);
    tcase_add_test(tc, canon_map_of_both_zeros_otp25_returns_eproto);
    tcase_add_test(tc, set_otp_release_out_of_range_returns_einval);
    tcase_add_test(tc, release_terms_seen_counts_minus_zero_and_ports);
    suite_add_tcase(s, tc);
    return s;
}
