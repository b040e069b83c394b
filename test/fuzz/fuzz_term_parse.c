/* fuzz_term_parse.c: libFuzzer target for the Erlang literal parser. Feeds
 * the input to term_parse() and term_consult(); every term that parses must
 * print with term_print() and that text must parse again to the same
 * canonical bytes. The same input is also taken as ETF: whatever the
 * codec accepts must print, and literals must read back. Run it with the
 * term_decode seeds too, so it starts from valid ETF as well as text. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "term/term.h"

#define CHECK(c) do { if (!(c)) abort(); } while (0)

/* c is one canonical term: print it, parse the text, compare. */
static void check_round_trip(const char *c, size_t n)
{
    term_buf_t txt, again;
    size_t used = 0;
    term_buf_init(&txt);
    term_buf_init(&again);
    CHECK(term_print(c, n, &txt) == 0);
    CHECK(memchr(txt.data, 0, txt.len) == NULL);
    CHECK(term_parse(txt.data, txt.len, &used, &again) == 0);
    CHECK(used == txt.len);
    CHECK(again.len == n && memcmp(again.data, c, n) == 0);
    term_buf_release(&txt);
    term_buf_release(&again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* A copy with nothing after it, so a read past size is an ASan error
     * even when libFuzzer's buffer has slack. */
    char *text = malloc(size ? size : 1);
    if (!text)
        return 0;
    memcpy(text, data, size);

    term_buf_t out;
    size_t used = 0;
    term_buf_init(&out);
    int rc = term_parse(text, size, &used, &out);
    CHECK(used <= size);
    if (rc == 0)
        check_round_trip(out.data, out.len);
    else
        CHECK(out.len == 0 && (rc == -EPROTO || rc == -E2BIG));
    term_buf_reset(&out);

    size_t count = 0;
    rc = term_consult(text, size, &out, &count);
    if (rc == 0) {
        size_t pos = 0;
        for (size_t i = 0; i < count; i++) {
            size_t n;
            CHECK(term_skip(out.data + pos, out.len - pos, &n) == 0);
            check_round_trip(out.data + pos, n);
            pos += n;
        }
        CHECK(pos == out.len);
    } else {
        CHECK(out.len == 0 && (rc == -EPROTO || rc == -E2BIG));
    }
    term_buf_reset(&out);

    /* The same bytes as ETF: the printer must never crash on them. */
    rc = term_print(text, size, &out);
    CHECK(rc == 0 || out.len == 0);
    term_buf_reset(&out);

    /* Any term the codec accepts prints; when it is a literal (no pid,
     * port, ref or fun), its text parses back to the canonical bytes. */
    rc = size > 0 && (unsigned char)text[0] == TERM_VERSION_MAGIC
             ? term_canon(text, size, &out)
             : term_canon_inner(text, size, &used, &out);
    if (rc == 0) {
        term_buf_t txt, again;
        term_buf_init(&txt);
        term_buf_init(&again);
        CHECK(term_print(out.data, out.len, &txt) == 0);
        size_t tused;
        if (term_parse(txt.data, txt.len, &tused, &again) == 0 && tused == txt.len) {
            CHECK(again.len == out.len && memcmp(again.data, out.data, out.len) == 0);
        } else {
            CHECK(strstr(txt.data, "<0.") || strstr(txt.data, "#Ref<") ||
                  strstr(txt.data, "#Port<") || strstr(txt.data, "#Fun<") ||
                  strstr(txt.data, "fun "));
        }
        term_buf_release(&txt);
        term_buf_release(&again);
    }
    term_buf_release(&out);
    free(text);
    return 0;
}
