/* fuzz_seed_msg.c: libFuzzer target for the decoders of PubSub deliveries
 * and the seed app's messages (pubsub_decode, replicate_decode): any bytes
 * give a result or an error, and every pointer given back lies inside the
 * input. */
/* uv.h (through node.h) needs POSIX types that -std=c11 hides. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdint.h>
#include <stdlib.h>

#include "cnode/pubsub.h"
#include "cnode/replicate.h"

#define CHECK(c) do { if (!(c)) abort(); } while (0)

static void inside(const uint8_t *data, size_t size, const char *p, size_t n)
{
    CHECK((const uint8_t *)p >= data && n <= size &&
          (const uint8_t *)p + n <= data + size);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *topic, *inner, *payload;
    size_t tlen, ilen, plen;

    if (pubsub_decode(data, size, &topic, &tlen, &inner, &ilen) == 0) {
        inside(data, size, topic, tlen);
        inside(data, size, inner, ilen);
        data = (const uint8_t *)inner;
        size = ilen;
    }
    int kind = replicate_decode(data, size, &payload, &plen);
    CHECK(kind < 0 || kind == REPLICATE_MSG_NEW || kind == REPLICATE_MSG_SYNC);
    if (kind > 0)
        inside(data, size, payload, plen);
    return 0;
}
