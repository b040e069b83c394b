/* fuzz_pg_decode.c: libFuzzer target for pg_decode(), the decoder of what
 * remote pg scopes send (protocol versions 0 and 1): any bytes must give a
 * kind or an error, with every group the callback sees holding only what
 * the input held. A message that decodes is encoded again with pg_put_*()
 * in its own version, which must not fail. */
/* uv.h (through node.h) needs POSIX types that -std=c11 hides. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cnode/pg.h"

#define CHECK(c) do { if (!(c)) abort(); } while (0)

typedef struct fuzz_seen {
    size_t size;
    term_buf_t out;
    const term_pid_t *self;
    unsigned version;
} fuzz_seen_t;

static int count_cb(const char *group, int remove, const term_pid_t *pids, size_t n,
                    void *data)
{
    fuzz_seen_t *s = data;
    CHECK(strlen(group) < TERM_ATOM_MAX);
    CHECK(remove == 0 || remove == 1);
    for (size_t i = 0; i < n; i++)
        CHECK(strlen(pids[i].node) < TERM_ATOM_MAX);
    /* Each pid takes at least 12 bytes of input. */
    CHECK(n * 12 <= s->size);
    if (remove)
        pg_put_leave(&s->out, s->self, s->version, group, pids, n);
    else
        pg_put_join(&s->out, s->self, s->version, group, pids, n);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    term_pid_t peer;
    unsigned version = 0;
    fuzz_seen_t s = {.size = size, .self = &peer};
    term_buf_init(&s.out);
    int kind = pg_decode(data, size, &peer, &version, NULL, NULL);
    CHECK(kind < 0 || (kind >= PG_MSG_DISCOVER && kind <= PG_MSG_UPDATE));
    if (kind > 0) {
        s.version = version;
        CHECK(pg_decode(data, size, &peer, &version, count_cb, &s) == kind);
        CHECK(s.out.err == 0);
        CHECK(kind != PG_MSG_UPDATE || version == 1);
        pg_put_discover(&s.out, &peer, version);
        CHECK(s.out.err == 0);
    }
    term_buf_release(&s.out);
    return 0;
}
