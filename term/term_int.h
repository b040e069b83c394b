/* term_int.h: helpers shared inside term/ (not part of the public API):
 * ETF tag numbers, big-endian access, and one decoder for the header of the
 * next term that codec.c, compare.c and the text modules all build on. */
#ifndef ETSD_TERM_INT_H
#define ETSD_TERM_INT_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "term/term.h"

/* erl_ext_dist: tag bytes */
enum {
    TERM_TAG_NEW_FLOAT = 70,
    TERM_TAG_BIT_BINARY = 77,
    TERM_TAG_COMPRESSED = 80,
    TERM_TAG_NEW_PID = 88,
    TERM_TAG_NEW_PORT = 89,
    TERM_TAG_NEWER_REFERENCE = 90,
    TERM_TAG_SMALL_INTEGER = 97,
    TERM_TAG_INTEGER = 98,
    TERM_TAG_FLOAT = 99,
    TERM_TAG_ATOM = 100,
    TERM_TAG_REFERENCE = 101,
    TERM_TAG_PORT = 102,
    TERM_TAG_PID = 103,
    TERM_TAG_SMALL_TUPLE = 104,
    TERM_TAG_LARGE_TUPLE = 105,
    TERM_TAG_NIL = 106,
    TERM_TAG_STRING = 107,
    TERM_TAG_LIST = 108,
    TERM_TAG_BINARY = 109,
    TERM_TAG_SMALL_BIG = 110,
    TERM_TAG_LARGE_BIG = 111,
    TERM_TAG_NEW_FUN = 112,
    TERM_TAG_EXPORT = 113,
    TERM_TAG_NEW_REFERENCE = 114,
    TERM_TAG_SMALL_ATOM = 115,
    TERM_TAG_MAP = 116,
    TERM_TAG_ATOM_UTF8 = 118,
    TERM_TAG_SMALL_ATOM_UTF8 = 119,
    TERM_TAG_V4_PORT = 120,
};

static inline uint16_t term_be16(const uint8_t *p)
{
    return (uint16_t)((p[0] << 8) | p[1]);
}

static inline uint32_t term_be32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static inline uint64_t term_be64(const uint8_t *p)
{
    return ((uint64_t)term_be32(p) << 32) | term_be32(p + 4);
}

/* An atom as it sits in the input: text bytes and their encoding. */
typedef struct term_atom {
    const uint8_t *p;
    size_t len;   /* bytes */
    int latin1;   /* ATOM_EXT / SMALL_ATOM_EXT: one byte per character */
    uint8_t tag;
} term_atom_t;

/* The decoded header of one term. For leaves (everything except tuples,
 * lists, maps and funs) size covers the whole term; for containers the
 * children follow the header: tuple n elements, LIST_EXT n elements and a
 * tail, map n key/value pairs, fun n free variables. */
typedef struct term_hdr {
    uint8_t tag;
    term_type_t type;
    size_t size;
    uint64_t n;
    union {
        struct {          /* TERM_T_INTEGER: sign and little-endian magnitude */
            int neg;
            const uint8_t *mag; /* NULL for a small: use v */
            size_t mlen;        /* without high zero bytes */
            int64_t v;          /* valid when mag == NULL */
        } i;
        double f;
        term_atom_t atom;
        struct {          /* BINARY, BITSTRING, STRING: payload */
            const uint8_t *p;
            size_t len;   /* bytes */
            int bits;     /* bits used in the last byte, 1..8 (8 when len == 0) */
        } bin;
        struct {          /* PID, PORT, REF */
            term_atom_t node;
            uint32_t creation;
            uint64_t id;          /* pid number, port id */
            uint32_t serial;      /* pid */
            int nwords;           /* ref */
            const uint8_t *words; /* ref: nwords big-endian uint32 */
        } id;
        struct {          /* FUN (local or export) */
            term_atom_t module;
            term_atom_t name;     /* export only */
            uint32_t arity;
            int export;
            const uint8_t *fixed; /* NEW_FUN_EXT: arity, uniq, index, numfree (25 bytes) */
            size_t total;         /* NEW_FUN_EXT: the Size field plus the tag */
            int64_t old_index, old_uniq;
            const uint8_t *pid;   /* the creator pid term */
            size_t pid_len;
        } fun;
    } u;
} term_hdr_t;

/* Decodes the header of the term at p (len bytes left). Leaves are fully
 * validated; containers are checked to have at least as many bytes left as
 * they claim children. Returns 0 or -EPROTO. */
int term_int_hdr(const uint8_t *p, size_t len, term_hdr_t *h);

/* Writes the atom's text as UTF-8 to out (TERM_ATOM_MAX bytes is enough)
 * and returns its length. */
size_t term_int_atom_utf8(const term_atom_t *a, uint8_t *out);

/* Decodes one UTF-8 character strictly (no overlongs, no surrogates, none
 * above U+10FFFF), as binary_to_term does for UTF-8 atoms. Returns its
 * length in bytes, or 0 if p holds no valid character. Defined in utf8.c. */
size_t term_int_utf8_decode(const unsigned char *p, size_t n, uint32_t *c);
/* Encodes the code point c (at most U+10FFFF) into u; returns the length. */
size_t term_int_utf8_encode(uint32_t c, char u[4]);

/* The release term/ follows (release.c). OTP 27 made 0.0 and -0.0 two
 * terms (=/=, -0.0 first in exact order); OTP 26 writes every port as
 * V4_PORT_EXT. */
extern _Atomic int term_int_otp;
/* -0.0 floats and ports canonicalized or validated (term_release_terms_seen).
 * Atomic, relaxed: the loop sets the release, and term/ may run on the
 * libuv thread pool too. */
extern _Atomic uint64_t term_int_release_terms;
static inline void term_int_count_release_term(void)
{
    atomic_fetch_add_explicit(&term_int_release_terms, 1, memory_order_relaxed);
}
static inline int term_int_zeros_distinct(void)
{
    return atomic_load_explicit(&term_int_otp, memory_order_relaxed) >= 27;
}
static inline int term_int_v4_ports(void)
{
    return atomic_load_explicit(&term_int_otp, memory_order_relaxed) >= 26;
}

/* Exact term order (=:= is 0), as BEAM orders map keys: integers sort
 * before floats. Both must be valid; used to sort canonical map keys. */
int term_int_cmp_exact(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen);

#endif
