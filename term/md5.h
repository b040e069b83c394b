/* md5.h: MD5 (RFC 1321). Distribution handshakes digest the cookie with it
 * (erl_dist_protocol) and ets:tab2file's md5sum uses it; it lives here,
 * in the lowest layer, so both use one copy. */
#ifndef ETSD_MD5_H
#define ETSD_MD5_H

#include <stddef.h>
#include <stdint.h>

typedef struct md5_ctx {
    uint32_t a, b, c, d;
    uint64_t bytes;
    uint8_t buf[64];
} md5_ctx_t;

void md5_init(md5_ctx_t *c);
void md5_update(md5_ctx_t *c, const void *data, size_t n);
/* Writes the digest; c must be initialised again before reuse. */
void md5_final(md5_ctx_t *c, uint8_t out[16]);
/* The digest of one buffer. */
void md5(const void *data, size_t n, uint8_t out[16]);

#endif
