/* check_frame.c: the distribution frame parser: ticks, frames split at
 * every byte boundary, size limits, and memory that follows real bytes. */
#include <check.h>
#include <errno.h>
#include <string.h>

#include "cnode/cnode_int.h"
#include "term/mem.h"

/* A stream: tick, 1-byte frame, 300-byte frame, tick, 1000-byte frame;
 * the big variant ends with a frame over the parser's first allocation. */
static cbuf_t stream;
static size_t sizes[] = {0, 1, 300, 0, 1000};
#define NFRAMES (sizeof sizes / sizeof sizes[0])

static void make_stream(void)
{
    cbuf_init(&stream);
    for (size_t f = 0; f < NFRAMES; f++) {
        cbuf_put32(&stream, (uint32_t)sizes[f]);
        for (size_t i = 0; i < sizes[f]; i++)
            cbuf_put8(&stream, (uint8_t)(f * 31 + i));
    }
}

/* Feeds stream[0..len) in two pieces split at `split`, checking every frame. */
static void feed_split(size_t split, size_t chunk)
{
    frame_parser_t fp;
    frame_parser_init(&fp, 1 << 20);
    size_t got = 0, pos = 0;
    while (pos < stream.len) {
        size_t end = pos < split ? split : stream.len;
        if (chunk && end - pos > chunk)
            end = pos + chunk;
        const char *p = stream.data + pos;
        size_t len = end - pos;
        while (len > 0) {
            size_t used;
            const char *fr;
            size_t flen;
            int rc = frame_feed(&fp, p, len, &used, &fr, &flen);
            ck_assert_int_ge(rc, 0);
            ck_assert_uint_le(used, len);
            p += used;
            len -= used;
            if (rc == 1) {
                ck_assert_uint_lt(got, NFRAMES);
                ck_assert_uint_eq(flen, sizes[got]);
                int bad = 0;
                for (size_t i = 0; i < flen; i++)
                    bad |= (uint8_t)fr[i] != (uint8_t)(got * 31 + i);
                ck_assert_int_eq(bad, 0);
                got++;
            } else {
                ck_assert_uint_eq(len, 0);
            }
        }
        pos = end;
    }
    ck_assert_uint_eq(got, NFRAMES);
    frame_parser_release(&fp);
}

START_TEST(stream_split_at_every_byte_boundary_yields_same_frames)
{
    make_stream();
    for (size_t split = 0; split <= stream.len; split++)
        feed_split(split, 0);
    cbuf_release(&stream);
}
END_TEST

START_TEST(stream_fed_one_byte_at_a_time_yields_same_frames)
{
    make_stream();
    feed_split(0, 1);
    feed_split(0, 3);
    cbuf_release(&stream);
    /* A frame larger than the first body allocation, grown while split. */
    sizes[4] = 200000;
    make_stream();
    feed_split(0, 4096);
    feed_split(0, 65536);
    for (size_t split = 0; split < 40; split++)
        feed_split(split, 0);
    feed_split(stream.len - 1, 0);
    feed_split(stream.len / 2, 0);
    cbuf_release(&stream);
    sizes[4] = 1000;
}
END_TEST

START_TEST(tick_is_empty_frame)
{
    frame_parser_t fp;
    frame_parser_init(&fp, 100);
    static const char tick[4] = {0};
    size_t used, flen = 99;
    const char *fr;
    ck_assert_int_eq(frame_feed(&fp, tick, 4, &used, &fr, &flen), 1);
    ck_assert_uint_eq(used, 4);
    ck_assert_uint_eq(flen, 0);
    frame_parser_release(&fp);
}
END_TEST

START_TEST(length_over_limit_returns_emsgsize)
{
    frame_parser_t fp;
    frame_parser_init(&fp, 1000);
    static const uint8_t hdr[4] = {0, 0, 3, 233}; /* 1001 */
    size_t used, flen;
    const char *fr;
    ck_assert_int_eq(frame_feed(&fp, hdr, 4, &used, &fr, &flen), -EMSGSIZE);
    frame_parser_release(&fp);
    /* Split header too. */
    frame_parser_init(&fp, 1000);
    ck_assert_int_eq(frame_feed(&fp, hdr, 2, &used, &fr, &flen), 0);
    ck_assert_int_eq(frame_feed(&fp, hdr + 2, 2, &used, &fr, &flen), -EMSGSIZE);
    frame_parser_release(&fp);
}
END_TEST

START_TEST(length_at_limit_is_accepted)
{
    frame_parser_t fp;
    frame_parser_init(&fp, 0xffffffffu);
    static const uint8_t hdr[5] = {0xff, 0xff, 0xff, 0xff, 7};
    size_t used, flen;
    const char *fr;
    ck_assert_int_eq(frame_feed(&fp, hdr, 5, &used, &fr, &flen), 0);
    ck_assert_uint_eq(used, 5);
    frame_parser_release(&fp);
}
END_TEST

START_TEST(absurd_length_allocates_only_what_arrived)
{
    frame_parser_t fp;
    frame_parser_init(&fp, 1ULL << 31);
    static const uint8_t m[14] = {0x7f, 0xff, 0xff, 0xff, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    size_t used, flen;
    const char *fr;
    ck_assert_int_eq(frame_feed(&fp, m, sizeof m, &used, &fr, &flen), 0);
    ck_assert_uint_le(fp.body_cap, 64 * 1024);
    frame_parser_release(&fp);
}
END_TEST

START_TEST(allocation_failure_returns_enomem_and_no_leak)
{
    static uint8_t m[4 + 100];
    m[3] = 100;
    for (long k = 1; k < 10; k++) {
        frame_parser_t fp;
        frame_parser_init(&fp, 1000);
        size_t used, flen;
        const char *fr;
        /* Split so the body must be assembled in an allocated buffer. */
        int rc = frame_feed(&fp, m, 10, &used, &fr, &flen);
        mem_fail_after(k);
        if (rc == 0)
            rc = frame_feed(&fp, m + 10, sizeof m - 10, &used, &fr, &flen);
        mem_fail_after(0);
        ck_assert(rc == 1 || rc == -ENOMEM);
        frame_parser_release(&fp);
    }
}
END_TEST

START_TEST(dist_encode_then_parse_round_trips)
{
    cbuf_t out;
    cbuf_init(&out);
    ck_assert_int_eq(dist_encode(&out, "\x6a", 1, "\x6a", 1), 0);
    /* Len:32 112 131 ctl 131 msg */
    ck_assert_uint_eq(out.len, 4 + 5);
    ck_assert_uint_eq(get32(out.data), 5);
    ck_assert_uint_eq((uint8_t)out.data[4], 112);
    ck_assert_uint_eq((uint8_t)out.data[5], 131);
    ck_assert_uint_eq((uint8_t)out.data[7], 131);
    cbuf_release(&out);
}
END_TEST

Suite *frame_suite(void)
{
    Suite *s = suite_create("frame");
    TCase *t = tcase_create("parse");
    tcase_set_timeout(t, 60);
    tcase_add_test(t, stream_split_at_every_byte_boundary_yields_same_frames);
    tcase_add_test(t, stream_fed_one_byte_at_a_time_yields_same_frames);
    tcase_add_test(t, tick_is_empty_frame);
    suite_add_tcase(s, t);
    t = tcase_create("limits");
    tcase_add_test(t, length_over_limit_returns_emsgsize);
    tcase_add_test(t, length_at_limit_is_accepted);
    tcase_add_test(t, absurd_length_allocates_only_what_arrived);
    tcase_add_test(t, allocation_failure_returns_enomem_and_no_leak);
    tcase_add_test(t, dist_encode_then_parse_round_trips);
    suite_add_tcase(s, t);
    return s;
}
