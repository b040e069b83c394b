/* check_wal.c: the write-ahead log's record codec (framing, CRC, torn and
 * corrupt records) and the journal hooks of a memory-only store. */
#include <check.h>
#include <errno.h>
#include <string.h>

#include "store/wal_int.h"
#include "term/mem.h"

static const uint8_t OBJ[] = { 104, 2, 97, 1, 109, 0, 0, 0, 1, 'x' }; /* {1,<<"x">>} */
static const uint8_t KEY[] = { 97, 1 };

static wal_buf_t encode_one(uint64_t seq, wal_type_t type)
{
    wal_buf_t b = { 0 };
    int rc = wal_encode(&b, seq, type, "users", 3, type == WAL_PUT ? OBJ : KEY,
                        type == WAL_PUT ? sizeof OBJ : sizeof KEY, 77);
    ck_assert_int_eq(rc, 0);
    return b;
}

static const struct type_row {
    const char *id;
    wal_type_t type;
} TYPE_ROWS[] = {
    { "create", WAL_CREATE }, { "drop", WAL_DROP }, { "put", WAL_PUT },
    { "delete", WAL_DELETE }, { "clear", WAL_CLEAR }, { "end", WAL_END },
};

START_TEST(decode_each_type_round_trips)
{
    const struct type_row *row = &TYPE_ROWS[_i];
    wal_buf_t b = encode_one(42, row->type);
    wal_rec_t r;
    ck_assert_msg(wal_decode(b.data, b.len, &r) == 0, "%s", row->id);
    ck_assert_uint_eq(r.seq, 42);
    ck_assert_int_eq(r.type, row->type);
    ck_assert_uint_eq(r.size, b.len);
    switch (row->type) {
    case WAL_CREATE:
        ck_assert_uint_eq(r.keypos, 3);
        ck_assert_str_eq(r.name, "users");
        break;
    case WAL_PUT:
        ck_assert_uint_eq(r.plen, sizeof OBJ);
        ck_assert_mem_eq(r.payload, OBJ, sizeof OBJ);
        break;
    case WAL_DELETE:
        ck_assert_uint_eq(r.plen, sizeof KEY);
        ck_assert_mem_eq(r.payload, KEY, sizeof KEY);
        break;
    case WAL_END:
        ck_assert_uint_eq(r.count, 77);
        break;
    default:
        ck_assert_str_eq(r.name, "users");
        break;
    }
    wal_buf_release(&b);
}
END_TEST

START_TEST(decode_every_prefix_returns_eagain)
{
    wal_buf_t b = encode_one(1, WAL_PUT);
    wal_rec_t r;
    for (size_t n = 0; n < b.len; n++)
        ck_assert_int_eq(wal_decode(b.data, n, &r), -EAGAIN);
    wal_buf_release(&b);
}
END_TEST

START_TEST(decode_any_flipped_bit_fails)
{
    wal_buf_t b = encode_one(1, WAL_PUT);
    wal_rec_t r;
    for (size_t i = 0; i < b.len; i++) {
        for (int bit = 0; bit < 8; bit++) {
            b.data[i] ^= (uint8_t)(1 << bit);
            int rc = wal_decode(b.data, b.len, &r);
            ck_assert_msg(rc == -EBADMSG || rc == -EAGAIN,
                          "byte %zu bit %d decoded as %d", i, bit, rc);
            b.data[i] ^= (uint8_t)(1 << bit);
        }
    }
    wal_buf_release(&b);
}
END_TEST

START_TEST(decode_zero_length_returns_ebadmsg)
{
    uint8_t zeros[64] = { 0 };
    wal_rec_t r;
    ck_assert_int_eq(wal_decode(zeros, sizeof zeros, &r), -EBADMSG);
}
END_TEST

START_TEST(decode_huge_length_returns_ebadmsg)
{
    uint8_t h[32] = { 0xff, 0xff, 0xff, 0xff };
    wal_rec_t r;
    ck_assert_int_eq(wal_decode(h, sizeof h, &r), -EBADMSG);
}
END_TEST

START_TEST(encode_long_name_returns_einval)
{
    char name[WAL_NAME_MAX + 2];
    memset(name, 'a', sizeof name - 1);
    name[sizeof name - 1] = '\0';
    wal_buf_t b = { 0 };
    ck_assert_int_eq(wal_encode(&b, 1, WAL_CLEAR, name, 0, NULL, 0, 0), -EINVAL);
    ck_assert_uint_eq(b.len, 0);
    wal_buf_release(&b);
}
END_TEST

START_TEST(encode_alloc_failure_returns_enomem)
{
    wal_buf_t b = { 0 };
    mem_fail_after(1);
    int rc = wal_encode(&b, 1, WAL_PUT, "t", 0, OBJ, sizeof OBJ, 0);
    mem_fail_after(0);
    ck_assert_int_eq(rc, -ENOMEM);
    ck_assert_uint_eq(b.len, 0);
    wal_buf_release(&b);
}
END_TEST

START_TEST(records_concatenate_and_decode_in_order)
{
    wal_buf_t b = { 0 };
    for (uint64_t s = 1; s <= 5; s++)
        ck_assert_int_eq(wal_encode(&b, s, WAL_PUT, "t", 0, OBJ, sizeof OBJ, 0), 0);
    size_t off = 0;
    uint64_t want = 1;
    wal_rec_t r;
    while (off < b.len) {
        ck_assert_int_eq(wal_decode(b.data + off, b.len - off, &r), 0);
        ck_assert_uint_eq(r.seq, want++);
        off += r.size;
    }
    ck_assert_uint_eq(want, 6);
    wal_buf_release(&b);
}
END_TEST

START_TEST(valid_record_after_garbage_is_found)
{
    wal_buf_t b = { 0 };
    uint8_t garbage[40];
    memset(garbage, 0x5a, sizeof garbage);
    ck_assert_int_eq(wal_buf_append_raw(&b, garbage, sizeof garbage), 0);
    ck_assert_int_eq(wal_encode(&b, 9, WAL_PUT, "t", 0, OBJ, sizeof OBJ, 0), 0);
    ck_assert_int_eq(wal_valid_record_follows(b.data, b.len, 8), 1);
    wal_buf_release(&b);
}
END_TEST

START_TEST(older_record_after_garbage_is_not_counted)
{
    wal_buf_t b = { 0 };
    uint8_t garbage[3] = { 1, 2, 3 };
    ck_assert_int_eq(wal_buf_append_raw(&b, garbage, sizeof garbage), 0);
    ck_assert_int_eq(wal_encode(&b, 4, WAL_PUT, "t", 0, OBJ, sizeof OBJ, 0), 0);
    ck_assert_int_eq(wal_valid_record_follows(b.data, b.len, 8), 0);
    wal_buf_release(&b);
}
END_TEST

START_TEST(garbage_alone_has_no_valid_record)
{
    uint8_t garbage[4096];
    for (size_t i = 0; i < sizeof garbage; i++)
        garbage[i] = (uint8_t)(i * 131 + 7);
    ck_assert_int_eq(wal_valid_record_follows(garbage, sizeof garbage, 0), 0);
    uint8_t zeros[4096] = { 0 };
    ck_assert_int_eq(wal_valid_record_follows(zeros, sizeof zeros, 0), 0);
}
END_TEST

START_TEST(journal_on_memory_store_returns_0)
{
    store_t *s;
    ck_assert_int_eq(store_new(&s), 0);
    ck_assert_int_eq(store_journal_create(s, "t", 1), 0);
    ck_assert_int_eq(store_journal_put(s, "t", OBJ, sizeof OBJ), 0);
    ck_assert_int_eq(store_journal_delete(s, "t", KEY, sizeof KEY), 0);
    ck_assert_int_eq(store_journal_clear(s, "t"), 0);
    ck_assert_int_eq(store_journal_drop(s, "t"), 0);
    ck_assert_int_eq(store_flush(s), 0);
    ck_assert_int_eq(store_snapshot(s), -EINVAL);
    store_free(s);
}
END_TEST

/* ---- Segment names ------------------------------------------------------ */

static const struct seg_case {
    const char *id, *name;
    int ok;
    uint64_t seq;
} seg_cases[] = {
    { "one", "store.wal.1", 1, 1 },
    { "big", "store.wal.4611686018427387904", 1, UINT64_C(1) << 62 },
    { "past max", "store.wal.4611686018427387905", 0, 0 },
    { "overflow", "store.wal.99999999999999999999999", 0, 0 },
    { "zero", "store.wal.0", 0, 0 },
    { "leading zero", "store.wal.01", 0, 0 },
    { "empty", "store.wal.", 0, 0 },
    { "sign", "store.wal.+1", 0, 0 },
    { "suffix", "store.wal.12x", 0, 0 },
    { "the log", "store.wal", 0, 0 },
    { "tmp", "store.snap.tmp", 0, 0 },
};

START_TEST(segment_name_parses_only_canonical_seqs)
{
    const struct seg_case *c = &seg_cases[_i];
    uint64_t seq = 0;
    ck_assert_msg(wal_segment_name(c->name, &seq) == c->ok, "%s", c->id);
    if (c->ok)
        ck_assert_uint_eq(seq, c->seq);
}
END_TEST

Suite *wal_suite(void)
{
    Suite *s = suite_create("wal");
    TCase *tc = tcase_create("codec");
    tcase_add_loop_test(tc, decode_each_type_round_trips, 0,
                        sizeof TYPE_ROWS / sizeof *TYPE_ROWS);
    tcase_add_test(tc, decode_every_prefix_returns_eagain);
    tcase_add_test(tc, decode_any_flipped_bit_fails);
    tcase_add_test(tc, decode_zero_length_returns_ebadmsg);
    tcase_add_test(tc, decode_huge_length_returns_ebadmsg);
    tcase_add_test(tc, encode_long_name_returns_einval);
    tcase_add_test(tc, encode_alloc_failure_returns_enomem);
    tcase_add_test(tc, records_concatenate_and_decode_in_order);
    suite_add_tcase(s, tc);
    tc = tcase_create("scan");
    tcase_add_test(tc, valid_record_after_garbage_is_found);
    tcase_add_test(tc, older_record_after_garbage_is_not_counted);
    tcase_add_test(tc, garbage_alone_has_no_valid_record);
    suite_add_tcase(s, tc);
    tc = tcase_create("hooks");
    tcase_add_test(tc, journal_on_memory_store_returns_0);
    tcase_add_loop_test(tc, segment_name_parses_only_canonical_seqs, 0,
                        (int)(sizeof seg_cases / sizeof seg_cases[0]));
    suite_add_tcase(s, tc);
    return s;
}
