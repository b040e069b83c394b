/* fuzz_term_decode.c: libFuzzer target for the ETF decoder. Feeds the input
 * to term_canon() and term_canon_inner() and checks the invariants the store
 * relies on: canonical bytes are a fixed point, term_skip() agrees on the
 * length, the canonical form compares equal to the input and itself. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "term/term.h"

#define CHECK(c) do { if (!(c)) abort(); } while (0)

static void check_canonical(const uint8_t *c, size_t n)
{
    term_buf_t again;
    size_t used = 0;
    term_buf_init(&again);
    CHECK(term_canon_inner(c, n, &used, &again) == 0);
    CHECK(used == n && again.len == n && memcmp(again.data, c, n) == 0);
    CHECK(term_skip(c, n, &used) == 0 && used == n);
    CHECK(term_compare(c, n, c, n) == 0);
    CHECK(term_hash(again.data, again.len) == term_hash(c, n));
    term_buf_release(&again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    term_buf_t out;
    size_t used = 0, sused = 0;
    term_buf_init(&out);

    /* As a whole message: 131, maybe compressed, nothing after. */
    int rc = term_canon(data, size, &out);
    CHECK(rc == 0 || out.len == 0);
    if (rc == 0) {
        check_canonical((const uint8_t *)out.data, out.len);
        if (size >= 2 && data[1] != 80) {
            CHECK(term_skip(data + 1, size - 1, &sused) == 0 && sused == size - 1);
            CHECK(term_compare(data + 1, size - 1, out.data, out.len) == 0);
            CHECK(term_compare(out.data, out.len, data + 1, size - 1) == 0);
        }
    }
    term_buf_reset(&out);

    /* As a term without version byte, with bytes after it. */
    rc = term_canon_inner(data, size, &used, &out);
    int src = term_skip(data, size, &sused);
    if (rc == 0) {
        CHECK(used <= size);
        check_canonical((const uint8_t *)out.data, out.len);
        if (size > 0 && data[0] != 80) {
            CHECK(src == 0 && sused == used);
            CHECK(term_compare(data, used, out.data, out.len) == 0);
        }
    } else if (size > 0 && data[0] != 80) {
        /* term_skip allocates nothing and so cannot see repeated map keys;
         * anything else term_canon refuses, term_skip refuses too. */
        CHECK(src != 0 || rc == -EPROTO);
    }
    term_buf_release(&out);
    return 0;
}
