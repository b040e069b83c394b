/* fuzz_pg_decode.c: libFuzzer target for pg_decode(), the decoder of what
 * remote pg scopes send: any bytes must give a kind or an error, with every
 * group the callback sees holding only what the input held. */
/* uv.h (through node.h) needs POSIX types that -std=c11 hides. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cnode/pg.h"

#define CHECK(c) do { if (!(c)) abort(); } while (0)

static int count_cb(const char *group, const term_pid_t *pids, size_t n, void *data)
{
    size_t *size = data;
    CHECK(strlen(group) < TERM_ATOM_MAX);
    for (size_t i = 0; i < n; i++)
        CHECK(strlen(pids[i].node) < TERM_ATOM_MAX);
    /* Each pid takes at least 12 bytes of input. */
    CHECK(n * 12 <= *size);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    term_pid_t peer;
    int kind = pg_decode(data, size, &peer, count_cb, &size);
    CHECK(kind < 0 || (kind >= PG_MSG_DISCOVER && kind <= PG_MSG_LEAVE));
    return 0;
}
