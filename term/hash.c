/* hash.c: a 64-bit hash over encoded bytes. Over canonical encodings equal
 * terms (=:=) have equal bytes and so equal hashes. The mixing is
 * MurmurHash64A's (public domain), read 8 bytes at a time. */
#include "term/term.h"

#include <string.h>

uint64_t term_hash(const void *p, size_t len)
{
    const uint64_t m = 0xc6a4a7935bd1e995ull;
    const int r = 47;
    const unsigned char *d = p;
    uint64_t h = 0x9e3779b97f4a7c15ull ^ (len * m);

    for (size_t i = 0; i + 8 <= len; i += 8) {
        uint64_t k;
        memcpy(&k, d + i, 8); /* unaligned-safe */
        k *= m;
        k ^= k >> r;
        k *= m;
        h ^= k;
        h *= m;
    }
    const unsigned char *t = d + (len & ~(size_t)7);
    switch (len & 7) {
    case 7: h ^= (uint64_t)t[6] << 48; /* fall through */
    case 6: h ^= (uint64_t)t[5] << 40; /* fall through */
    case 5: h ^= (uint64_t)t[4] << 32; /* fall through */
    case 4: h ^= (uint64_t)t[3] << 24; /* fall through */
    case 3: h ^= (uint64_t)t[2] << 16; /* fall through */
    case 2: h ^= (uint64_t)t[1] << 8;  /* fall through */
    case 1: h ^= (uint64_t)t[0];
            h *= m;
    }
    h ^= h >> r;
    h *= m;
    h ^= h >> r;
    return h;
}
