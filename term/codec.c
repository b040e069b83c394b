/* codec.c: ETF decoding, validation and canonical encoding, the growable
 * buffer, the term_put_*() encoders and the term_get_*() reader.
 * Every byte of input is hostile: each length is checked against the bytes
 * left before it is used, and nesting is bounded by TERM_MAX_DEPTH. */
#include "term/term.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "term/mem.h"
#include "term/term_int.h"

/* A compressed term (tag 80) may declare at most this many bytes once
 * inflated: messages of up to 1 GiB are legitimate, more is refused. */
#define TERM_INFLATE_MAX (1ul << 30)
/* deflate cannot expand its input by more than about 1032:1, so a declared
 * size beyond that is a lie and is refused before anything is allocated. */
#define TERM_INFLATE_RATIO 1032u

/* ---- Growable byte buffer -------------------------------------------- */

void term_buf_init(term_buf_t *b)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->err = 0;
}

void term_buf_release(term_buf_t *b)
{
    mem_free(b->data);
    term_buf_init(b);
}

void term_buf_reset(term_buf_t *b)
{
    b->len = 0;
    b->err = 0;
}

int term_buf_reserve(term_buf_t *b, size_t extra)
{
    if (b->err)
        return b->err;
    if (b->cap - b->len >= extra)
        return 0;
    if (extra > SIZE_MAX / 2 - b->len) {
        b->err = -ENOMEM;
        return b->err;
    }
    size_t cap = b->cap ? b->cap * 2 : 64;
    if (cap < b->len + extra)
        cap = b->len + extra;
    char *d = mem_realloc(b->data, cap);
    if (!d) {
        b->err = -ENOMEM;
        return b->err;
    }
    b->data = d;
    b->cap = cap;
    return 0;
}

/* Room for n more bytes at the end, already counted in len; NULL once the
 * buffer has failed. The hot path of every encoder. */
static inline uint8_t *buf_room(term_buf_t *b, size_t n)
{
    if (b->cap - b->len < n || b->err) {
        if (term_buf_reserve(b, n) < 0)
            return NULL;
    }
    uint8_t *p = (uint8_t *)b->data + b->len;
    b->len += n;
    return p;
}

void term_buf_append(term_buf_t *b, const void *p, size_t n)
{
    uint8_t *d = buf_room(b, n);
    if (d && n)
        memcpy(d, p, n);
}

char *term_buf_detach(term_buf_t *b, size_t *len)
{
    char *d = b->data;
    if (len)
        *len = b->len;
    term_buf_init(b);
    return d;
}

static inline void wr16(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static inline void wr32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* ---- Header decoding ---------------------------------------------------- */

/* Well-formed UTF-8 as erts accepts it for atoms: no overlong forms, no
 * surrogates, nothing above U+10FFFF. Counts characters. */
static int utf8_check(const uint8_t *p, size_t n, size_t *chars)
{
    size_t i = 0, c = 0;
    while (i < n) {
        uint8_t b = p[i];
        if (b < 0x80) {
            /* A peer with DFLAG_UTF8_ATOMS sends every atom as UTF-8, and
             * nearly all are ASCII: take 8 bytes at a time while none has
             * its top bit set. */
            i++;
            c++;
            while (n - i >= 8) {
                uint64_t w;
                memcpy(&w, p + i, 8);
                if (w & 0x8080808080808080ull)
                    break;
                i += 8;
                c += 8;
            }
            continue;
        } else if (b >= 0xC2 && b <= 0xDF) {
            if (n - i < 2 || (p[i + 1] & 0xC0) != 0x80)
                return -EPROTO;
            i += 2;
        } else if (b >= 0xE0 && b <= 0xEF) {
            if (n - i < 3 || (p[i + 1] & 0xC0) != 0x80 || (p[i + 2] & 0xC0) != 0x80)
                return -EPROTO;
            uint32_t cp = ((b & 0x0Fu) << 12) | ((p[i + 1] & 0x3Fu) << 6) | (p[i + 2] & 0x3Fu);
            if (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))
                return -EPROTO;
            i += 3;
        } else if (b >= 0xF0 && b <= 0xF4) {
            if (n - i < 4 || (p[i + 1] & 0xC0) != 0x80 || (p[i + 2] & 0xC0) != 0x80 ||
                (p[i + 3] & 0xC0) != 0x80)
                return -EPROTO;
            uint32_t cp = ((b & 0x07u) << 18) | ((p[i + 1] & 0x3Fu) << 12) |
                          ((p[i + 2] & 0x3Fu) << 6) | (p[i + 3] & 0x3Fu);
            if (cp < 0x10000 || cp > 0x10FFFF)
                return -EPROTO;
            i += 4;
        } else {
            return -EPROTO;
        }
        c++;
    }
    *chars = c;
    return 0;
}

/* An atom in any of its four encodings. erts refuses atoms over 255
 * characters. */
static int atom_at(const uint8_t *p, size_t len, term_atom_t *a, size_t *size)
{
    size_t hl, n;
    if (len < 2)
        return -EPROTO;
    switch (p[0]) {
    case TERM_TAG_ATOM:
    case TERM_TAG_ATOM_UTF8:
        if (len < 3)
            return -EPROTO;
        hl = 3;
        n = term_be16(p + 1);
        break;
    case TERM_TAG_SMALL_ATOM:
    case TERM_TAG_SMALL_ATOM_UTF8:
        hl = 2;
        n = p[1];
        break;
    default:
        return -EPROTO;
    }
    if (n > len - hl)
        return -EPROTO;
    a->p = p + hl;
    a->len = n;
    a->tag = p[0];
    a->latin1 = p[0] == TERM_TAG_ATOM || p[0] == TERM_TAG_SMALL_ATOM;
    if (a->latin1) {
        if (n > 255)
            return -EPROTO;
    } else {
        size_t chars;
        if (utf8_check(a->p, n, &chars) < 0 || chars > 255)
            return -EPROTO;
    }
    *size = hl + n;
    return 0;
}

size_t term_int_atom_utf8(const term_atom_t *a, uint8_t *out)
{
    if (!a->latin1) {
        memcpy(out, a->p, a->len);
        return a->len;
    }
    size_t o = 0;
    for (size_t i = 0; i < a->len; i++) {
        uint8_t c = a->p[i];
        if (c < 0x80) {
            out[o++] = c;
        } else {
            out[o++] = (uint8_t)(0xC0 | (c >> 6));
            out[o++] = (uint8_t)(0x80 | (c & 0x3F));
        }
    }
    return o;
}

/* Sets an integer header from sign and little-endian magnitude, folding
 * values that fit int64_t into the small form so that equal integers look
 * alike whatever their encoding. */
static void int_from_mag(term_hdr_t *h, int neg, const uint8_t *mag, size_t n)
{
    while (n > 0 && mag[n - 1] == 0)
        n--;
    h->u.i.neg = 0;
    h->u.i.mag = NULL;
    h->u.i.v = 0;
    if (n == 0)
        return;
    if (n <= 8) {
        uint64_t u = 0;
        for (size_t i = n; i-- > 0;)
            u = (u << 8) | mag[i];
        if (!neg && u <= (uint64_t)INT64_MAX) {
            h->u.i.v = (int64_t)u;
            return;
        }
        if (neg && u <= (uint64_t)INT64_MAX + 1) {
            h->u.i.v = (int64_t)(0 - u);
            h->u.i.neg = 1;
            return;
        }
    }
    h->u.i.neg = neg;
    h->u.i.mag = mag;
    h->u.i.mlen = n;
}

/* Node atom and the fixed fields of a pid, port or reference. */
static int id_at(const uint8_t *p, size_t len, term_hdr_t *h)
{
    size_t off, asz;
    int rc;
    uint8_t tag = p[0];
    if (tag == TERM_TAG_NEWER_REFERENCE || tag == TERM_TAG_NEW_REFERENCE) {
        if (len < 3)
            return -EPROTO;
        h->u.id.nwords = term_be16(p + 1);
        /* binary_to_term takes 0 to 5 words (0 words =:= one zero word) */
        if (h->u.id.nwords > 5)
            return -EPROTO;
        off = 3;
    } else {
        off = 1;
    }
    if ((rc = atom_at(p + off, len - off, &h->u.id.node, &asz)) < 0)
        return rc;
    off += asz;
    const uint8_t *q = p + off;
    size_t left = len - off, need;
    switch (tag) {
    case TERM_TAG_NEW_PID:
        need = 12;
        break;
    case TERM_TAG_PID:
        need = 9;
        break;
    case TERM_TAG_NEW_PORT:
        need = 8;
        break;
    case TERM_TAG_V4_PORT:
        need = 12;
        break;
    case TERM_TAG_PORT:
        need = 5;
        break;
    case TERM_TAG_NEWER_REFERENCE:
        need = 4 + 4 * (size_t)h->u.id.nwords;
        break;
    case TERM_TAG_NEW_REFERENCE:
        need = 1 + 4 * (size_t)h->u.id.nwords;
        break;
    default: /* REFERENCE_EXT */
        need = 5;
        break;
    }
    if (left < need)
        return -EPROTO;
    switch (tag) {
    case TERM_TAG_NEW_PID:
    case TERM_TAG_PID:
        h->type = TERM_T_PID;
        h->u.id.id = term_be32(q);
        h->u.id.serial = term_be32(q + 4);
        h->u.id.creation = tag == TERM_TAG_PID ? q[8] : term_be32(q + 8);
        break;
    case TERM_TAG_NEW_PORT:
    case TERM_TAG_PORT:
        h->type = TERM_T_PORT;
        h->u.id.id = term_be32(q);
        h->u.id.creation = tag == TERM_TAG_PORT ? q[4] : term_be32(q + 4);
        break;
    case TERM_TAG_V4_PORT:
        h->type = TERM_T_PORT;
        h->u.id.id = term_be64(q);
        h->u.id.creation = term_be32(q + 8);
        break;
    case TERM_TAG_NEWER_REFERENCE:
        h->type = TERM_T_REF;
        h->u.id.creation = term_be32(q);
        h->u.id.words = q + 4;
        break;
    case TERM_TAG_NEW_REFERENCE:
        h->type = TERM_T_REF;
        h->u.id.creation = q[0];
        h->u.id.words = q + 1;
        break;
    default:
        h->type = TERM_T_REF;
        h->u.id.nwords = 1;
        h->u.id.words = q;
        h->u.id.creation = q[4];
        break;
    }
    h->size = off + need;
    return 0;
}

static int small_int_at(const uint8_t *p, size_t len, int64_t *v, size_t *size)
{
    term_hdr_t h;
    int rc = term_int_hdr(p, len, &h);
    if (rc < 0)
        return rc;
    if (h.type != TERM_T_INTEGER || h.u.i.mag)
        return -EPROTO;
    *v = h.u.i.v;
    *size = h.size;
    return 0;
}

/* EXPORT_EXT and NEW_FUN_EXT up to (not including) the free variables. */
static int fun_at(const uint8_t *p, size_t len, term_hdr_t *h)
{
    size_t off, sz;
    int rc;
    h->type = TERM_T_FUN;
    if (p[0] == TERM_TAG_EXPORT) {
        h->u.fun.export = 1;
        off = 1;
        if ((rc = atom_at(p + off, len - off, &h->u.fun.module, &sz)) < 0)
            return rc;
        off += sz;
        if ((rc = atom_at(p + off, len - off, &h->u.fun.name, &sz)) < 0)
            return rc;
        off += sz;
        /* erl_ext_dist: Arity is a SMALL_INTEGER_EXT */
        if (len - off < 2 || p[off] != TERM_TAG_SMALL_INTEGER)
            return -EPROTO;
        h->u.fun.arity = p[off + 1];
        h->size = off + 2;
        h->n = 0;
        return 0;
    }
    /* NEW_FUN_EXT: Size(4) Arity(1) Uniq(16) Index(4) NumFree(4) Module
     * OldIndex OldUniq Pid FreeVars...; Size counts all but the tag. */
    if (len < 30)
        return -EPROTO;
    size_t total = (size_t)term_be32(p + 1) + 1;
    if (total > len || total < 30)
        return -EPROTO;
    h->u.fun.export = 0;
    h->u.fun.total = total;
    h->u.fun.fixed = p + 5;
    h->u.fun.arity = p[5];
    h->n = term_be32(p + 26);
    off = 30;
    if ((rc = atom_at(p + off, total - off, &h->u.fun.module, &sz)) < 0)
        return rc;
    off += sz;
    if ((rc = small_int_at(p + off, total - off, &h->u.fun.old_index, &sz)) < 0)
        return rc;
    off += sz;
    if ((rc = small_int_at(p + off, total - off, &h->u.fun.old_uniq, &sz)) < 0)
        return rc;
    off += sz;
    if (total - off < 1 || (p[off] != TERM_TAG_NEW_PID && p[off] != TERM_TAG_PID))
        return -EPROTO;
    term_hdr_t ph;
    if ((rc = id_at(p + off, total - off, &ph)) < 0)
        return rc;
    h->u.fun.pid = p + off;
    h->u.fun.pid_len = ph.size;
    off += ph.size;
    if (h->n > total - off)
        return -EPROTO;
    h->size = off;
    return 0;
}

int term_int_hdr(const uint8_t *p, size_t len, term_hdr_t *h)
{
    if (len < 1)
        return -EPROTO;
    h->tag = p[0];
    h->n = 0;
    switch (p[0]) {
    case TERM_TAG_SMALL_INTEGER:
        if (len < 2)
            return -EPROTO;
        h->type = TERM_T_INTEGER;
        h->size = 2;
        h->u.i.neg = 0;
        h->u.i.mag = NULL;
        h->u.i.v = p[1];
        return 0;
    case TERM_TAG_INTEGER:
        if (len < 5)
            return -EPROTO;
        h->type = TERM_T_INTEGER;
        h->size = 5;
        h->u.i.v = (int32_t)term_be32(p + 1);
        h->u.i.neg = h->u.i.v < 0;
        h->u.i.mag = NULL;
        return 0;
    case TERM_TAG_SMALL_BIG:
    case TERM_TAG_LARGE_BIG: {
        size_t hl = p[0] == TERM_TAG_SMALL_BIG ? 3 : 6;
        if (len < hl)
            return -EPROTO;
        size_t n = p[0] == TERM_TAG_SMALL_BIG ? p[1] : term_be32(p + 1);
        if (n > len - hl)
            return -EPROTO;
        h->type = TERM_T_INTEGER;
        h->size = hl + n;
        int_from_mag(h, p[hl - 1] != 0, p + hl, n);
        return 0;
    }
    case TERM_TAG_NEW_FLOAT: {
        if (len < 9)
            return -EPROTO;
        uint64_t bits = term_be64(p + 1);
        double d;
        memcpy(&d, &bits, sizeof d);
        /* Erlang has no infinities or NaNs; binary_to_term refuses them. */
        if (!isfinite(d))
            return -EPROTO;
        h->type = TERM_T_FLOAT;
        h->size = 9;
        h->u.f = d;
        return 0;
    }
    case TERM_TAG_FLOAT: {
        /* Old FLOAT_EXT: 31 bytes of "%.20e" text, NUL padded. */
        if (len < 32)
            return -EPROTO;
        char s[32];
        memcpy(s, p + 1, 31);
        s[31] = 0;
        char *end;
        double d = strtod(s, &end);
        if (end == s || !isfinite(d))
            return -EPROTO;
        for (; end < s + 31; end++)
            if (*end != 0)
                return -EPROTO;
        h->type = TERM_T_FLOAT;
        h->size = 32;
        h->u.f = d;
        return 0;
    }
    case TERM_TAG_ATOM:
    case TERM_TAG_ATOM_UTF8:
    case TERM_TAG_SMALL_ATOM:
    case TERM_TAG_SMALL_ATOM_UTF8:
        h->type = TERM_T_ATOM;
        return atom_at(p, len, &h->u.atom, &h->size);
    case TERM_TAG_BINARY:
        if (len < 5)
            return -EPROTO;
        h->u.bin.len = term_be32(p + 1);
        if (h->u.bin.len > len - 5)
            return -EPROTO;
        h->type = TERM_T_BINARY;
        h->size = 5 + h->u.bin.len;
        h->u.bin.p = p + 5;
        h->u.bin.bits = 8;
        return 0;
    case TERM_TAG_BIT_BINARY: {
        if (len < 6)
            return -EPROTO;
        size_t n = term_be32(p + 1);
        int bits = p[5];
        if (n > len - 6)
            return -EPROTO;
        /* binary_to_term: bits 1..8, or an empty bitstring with 0 bits */
        if (n == 0 ? bits != 0 : (bits < 1 || bits > 8))
            return -EPROTO;
        h->size = 6 + n;
        h->u.bin.p = p + 6;
        h->u.bin.len = n;
        h->u.bin.bits = n == 0 ? 8 : bits;
        h->type = h->u.bin.bits == 8 ? TERM_T_BINARY : TERM_T_BITSTRING;
        return 0;
    }
    case TERM_TAG_NIL:
        h->type = TERM_T_NIL;
        h->size = 1;
        return 0;
    case TERM_TAG_STRING:
        if (len < 3)
            return -EPROTO;
        h->u.bin.len = term_be16(p + 1);
        if (h->u.bin.len > len - 3)
            return -EPROTO;
        h->type = TERM_T_STRING;
        h->size = 3 + h->u.bin.len;
        h->u.bin.p = p + 3;
        h->u.bin.bits = 8;
        h->n = h->u.bin.len;
        return 0;
    case TERM_TAG_SMALL_TUPLE:
        if (len < 2)
            return -EPROTO;
        h->type = TERM_T_TUPLE;
        h->size = 2;
        h->n = p[1];
        return h->n > len - 2 ? -EPROTO : 0;
    case TERM_TAG_LARGE_TUPLE:
        if (len < 5)
            return -EPROTO;
        h->type = TERM_T_TUPLE;
        h->size = 5;
        h->n = term_be32(p + 1);
        return h->n > len - 5 ? -EPROTO : 0;
    case TERM_TAG_LIST:
        if (len < 5)
            return -EPROTO;
        h->type = TERM_T_LIST;
        h->size = 5;
        h->n = term_be32(p + 1);
        /* n elements and a tail, each at least one byte */
        return h->n + 1 > len - 5 ? -EPROTO : 0;
    case TERM_TAG_MAP:
        if (len < 5)
            return -EPROTO;
        h->type = TERM_T_MAP;
        h->size = 5;
        h->n = term_be32(p + 1);
        return 2 * h->n > len - 5 ? -EPROTO : 0;
    case TERM_TAG_NEW_PID:
    case TERM_TAG_PID:
    case TERM_TAG_NEW_PORT:
    case TERM_TAG_V4_PORT:
    case TERM_TAG_PORT:
    case TERM_TAG_NEWER_REFERENCE:
    case TERM_TAG_NEW_REFERENCE:
    case TERM_TAG_REFERENCE:
        return id_at(p, len, h);
    case TERM_TAG_EXPORT:
    case TERM_TAG_NEW_FUN:
        return fun_at(p, len, h);
    default:
        /* COMPRESSED is only valid at the top (term_canon); FUN_EXT and
         * atom cache references never reach a node without those flags. */
        return -EPROTO;
    }
}

/* ---- Validation --------------------------------------------------------- */

static int skip_term(const uint8_t *p, const uint8_t *end, int depth, const uint8_t **next);

/* Children of a container: each is one level deeper. */
static int skip_children(const uint8_t *p, const uint8_t *end, uint64_t n, int depth,
                         const uint8_t **next)
{
    for (uint64_t i = 0; i < n; i++) {
        int rc = skip_term(p, end, depth, &p);
        if (rc < 0)
            return rc;
    }
    *next = p;
    return 0;
}

static int skip_term(const uint8_t *p, const uint8_t *end, int depth, const uint8_t **next)
{
    term_hdr_t h;
    int rc;
    if (depth > TERM_MAX_DEPTH)
        return -E2BIG;
    /* The shapes of a typical message ({new, {<<"key">>, 42}} and its
     * envelopes) without filling a whole header: the same checks as
     * term_int_hdr() for these tags, every length against the bytes left. */
    size_t left = (size_t)(end - p), n;
    if (left >= 2) {
        switch (p[0]) {
        case TERM_TAG_SMALL_INTEGER:
            *next = p + 2;
            return 0;
        case TERM_TAG_SMALL_ATOM_UTF8:
            n = p[1];
            if (n > left - 2 || utf8_check(p + 2, n, &n) < 0)
                return -EPROTO;
            *next = p + 2 + p[1];
            return 0;
        case TERM_TAG_SMALL_TUPLE:
            if (p[1] > left - 2)
                return -EPROTO;
            return skip_children(p + 2, end, p[1], depth + 1, next);
        case TERM_TAG_BINARY:
            if (left < 5 || (n = term_be32(p + 1)) > left - 5)
                return -EPROTO;
            *next = p + 5 + n;
            return 0;
        default:
            break;
        }
    }
    if ((rc = term_int_hdr(p, left, &h)) < 0)
        return rc;
    switch (h.type) {
    case TERM_T_TUPLE:
        return skip_children(p + h.size, end, h.n, depth + 1, next);
    case TERM_T_MAP:
        return skip_children(p + h.size, end, 2 * h.n, depth + 1, next);
    case TERM_T_FUN:
        if (h.u.fun.export) {
            *next = p + h.size;
            return 0;
        }
        /* free variables live inside the fun's declared size */
        if ((rc = skip_children(p + h.size, p + h.u.fun.total, h.n, depth + 1, next)) < 0)
            return rc;
        return *next == p + h.u.fun.total ? 0 : -EPROTO;
    case TERM_T_LIST:
        /* Iterate along tails: [a|[b|[c]]] may arrive as nested LIST_EXTs
         * and must not cost a level of recursion each. */
        for (;;) {
            if ((rc = skip_children(p + h.size, end, h.n, depth + 1, &p)) < 0)
                return rc;
            if ((rc = term_int_hdr(p, (size_t)(end - p), &h)) < 0)
                return rc;
            if (h.type != TERM_T_LIST)
                return skip_term(p, end, depth + 1, next);
        }
    default:
        *next = p + h.size;
        return 0;
    }
}

int term_skip(const void *in, size_t len, size_t *used)
{
    const uint8_t *p = in, *next;
    if (!in && len)
        return -EINVAL;
    int rc = skip_term(p, p + len, 0, &next);
    if (rc < 0)
        return rc;
    *used = (size_t)(next - p);
    return 0;
}

/* ---- Canonical encoding ------------------------------------------------- */

static void put_atom_text(term_buf_t *b, const uint8_t *utf8, size_t len)
{
    uint8_t *d;
    if (len <= 255) {
        if (!(d = buf_room(b, 2 + len)))
            return;
        d[0] = TERM_TAG_SMALL_ATOM_UTF8;
        d[1] = (uint8_t)len;
        memcpy(d + 2, utf8, len);
    } else {
        if (!(d = buf_room(b, 3 + len)))
            return;
        d[0] = TERM_TAG_ATOM_UTF8;
        wr16(d + 1, (uint32_t)len);
        memcpy(d + 3, utf8, len);
    }
}

static void put_atom_hdr(term_buf_t *b, const term_atom_t *a)
{
    uint8_t tmp[TERM_ATOM_MAX];
    if (!a->latin1) {
        put_atom_text(b, a->p, a->len);
        return;
    }
    put_atom_text(b, tmp, term_int_atom_utf8(a, tmp));
}

/* A canonical bignum: magnitude without high zero bytes, too large for
 * the small forms. */
static void put_big(term_buf_t *b, int neg, const uint8_t *mag, size_t n)
{
    uint8_t *d;
    if (n <= 255) {
        if (!(d = buf_room(b, 3 + n)))
            return;
        d[0] = TERM_TAG_SMALL_BIG;
        d[1] = (uint8_t)n;
        d[2] = (uint8_t)(neg != 0);
        memcpy(d + 3, mag, n);
    } else {
        if (!(d = buf_room(b, 6 + n)))
            return;
        d[0] = TERM_TAG_LARGE_BIG;
        wr32(d + 1, (uint32_t)n);
        d[5] = (uint8_t)(neg != 0);
        memcpy(d + 6, mag, n);
    }
}

static void put_id_fields(term_buf_t *b, const term_hdr_t *h)
{
    uint8_t *d;
    put_atom_hdr(b, &h->u.id.node);
    switch (h->type) {
    case TERM_T_PID:
        if ((d = buf_room(b, 12))) {
            wr32(d, (uint32_t)h->u.id.id);
            wr32(d + 4, h->u.id.serial);
            wr32(d + 8, h->u.id.creation);
        }
        break;
    case TERM_T_PORT:
        if (term_int_v4_ports() || h->u.id.id > UINT32_MAX) {
            if ((d = buf_room(b, 12))) {
                wr32(d, (uint32_t)(h->u.id.id >> 32));
                wr32(d + 4, (uint32_t)h->u.id.id);
                wr32(d + 8, h->u.id.creation);
            }
        } else if ((d = buf_room(b, 8))) {
            wr32(d, (uint32_t)h->u.id.id);
            wr32(d + 4, h->u.id.creation);
        }
        break;
    default:
        break;
    }
}

/* NEWER_REFERENCE_EXT with the words as given. erts compares refs with
 * their high zero words ignored, yet hashes [1] and [1,0,0] apart (a map
 * over 32 keys holds both as distinct keys, checked on OTP 25), so the
 * words are kept, as term_to_binary keeps them. */
static void put_ref_words(term_buf_t *b, const term_atom_t *node, const term_ref_t *ref)
{
    uint8_t *d;
    int nw = ref->len;
    if ((d = buf_room(b, 3))) {
        d[0] = TERM_TAG_NEWER_REFERENCE;
        wr16(d + 1, (uint32_t)nw);
    }
    put_atom_hdr(b, node);
    if ((d = buf_room(b, 4 + 4 * (size_t)nw))) {
        wr32(d, ref->creation);
        for (int i = 0; i < nw; i++)
            wr32(d + 4 + 4 * i, ref->n[i]);
    }
}

/* Pids, ports and refs as term_to_binary writes them: NEW_PID_EXT,
 * NEWER_REFERENCE_EXT, and V4_PORT_EXT from OTP 26 (before, NEW_PORT_EXT
 * below 2^32). */
static void put_id(term_buf_t *b, const term_hdr_t *h)
{
    uint8_t *d;
    switch (h->type) {
    case TERM_T_PID:
        if ((d = buf_room(b, 1)))
            d[0] = TERM_TAG_NEW_PID;
        put_id_fields(b, h);
        break;
    case TERM_T_PORT:
        term_int_count_release_term();
        if ((d = buf_room(b, 1)))
            d[0] = term_int_v4_ports() || h->u.id.id > UINT32_MAX ? TERM_TAG_V4_PORT
                                                                 : TERM_TAG_NEW_PORT;
        put_id_fields(b, h);
        break;
    default: {
        term_ref_t ref;
        ref.creation = h->u.id.creation;
        ref.len = h->u.id.nwords; /* 0 to 5, kept (see put_ref_words) */
        for (int i = 0; i < 5; i++)
            ref.n[i] = i < h->u.id.nwords ? term_be32(h->u.id.words + 4 * i) : 0;
        put_ref_words(b, &h->u.id.node, &ref);
        break;
    }
    }
}


/* Map key order of two canonical keys. Canonical atoms of up to 255 bytes
 * are SMALL_ATOM_UTF8, and atoms sort by code points, which is their UTF-8
 * byte order: atom keys (the maps OTP 26 and later send out of term order)
 * skip the decoder. */
static int key_cmp(const uint8_t *ka, size_t kalen, const uint8_t *kb, size_t kblen)
{
    if (ka[0] == TERM_TAG_SMALL_ATOM_UTF8 && kb[0] == TERM_TAG_SMALL_ATOM_UTF8) {
        size_t la = ka[1], lb = kb[1];
        int c = memcmp(ka + 2, kb + 2, la < lb ? la : lb);
        if (c)
            return c < 0 ? -1 : 1;
        return (la > lb) - (la < lb);
    }
    return term_int_cmp_exact(ka, kalen, kb, kblen);
}

/* ---- Already canonical? ------------------------------------------------- */

/* Most input comes from term_to_binary and is canonical already (always
 * for binaries, tuples and lists; atoms only with minor_version 2). Such a
 * term is validated and then copied with one memcpy instead of being
 * re-encoded piece by piece. check_term() validates like skip_term() and
 * returns 1 when the bytes are canonical, 0 when they are not (it stops at
 * the first piece that is not) and on any error (canon_term then finds
 * it again and reports it). */

static int atom_canonical(const term_atom_t *a)
{
    return a->tag == TERM_TAG_SMALL_ATOM_UTF8 || (a->tag == TERM_TAG_ATOM_UTF8 && a->len > 255);
}

/* Is this leaf (or fun/id header) written as term_put_*() would write it? */
static int leaf_canonical(const uint8_t *p, const term_hdr_t *h)
{
    switch (h->type) {
    case TERM_T_INTEGER:
        if (h->tag == TERM_TAG_SMALL_INTEGER)
            return 1;
        if (h->tag == TERM_TAG_INTEGER)
            return h->u.i.v < 0 || h->u.i.v > 255;
        if (h->tag == TERM_TAG_SMALL_BIG) {
            size_t n = p[1];
            if (p[2] > 1 || n == 0 || p[2 + n] == 0)
                return 0;
            if (!h->u.i.mag) {
                /* fits int64: a bignum only outside int32, and minimal */
                int64_t v = h->u.i.v;
                return (v < INT32_MIN || v > INT32_MAX) && p[2] == (v < 0);
            }
            return 1;
        }
        /* LARGE_BIG: only past 255 bytes, minimal */
        return h->u.i.mag && term_be32(p + 1) > 255 && p[5] <= 1 && h->u.i.mlen == term_be32(p + 1);
    case TERM_T_FLOAT:
        if (term_be64(p + 1) != 0x8000000000000000ull)
            return h->tag == TERM_TAG_NEW_FLOAT;
        term_int_count_release_term();
        return h->tag == TERM_TAG_NEW_FLOAT && term_int_zeros_distinct();
    case TERM_T_ATOM:
        return atom_canonical(&h->u.atom);
    case TERM_T_BINARY:
        return h->tag == TERM_TAG_BINARY;
    case TERM_T_BITSTRING:
        return (h->u.bin.p[h->u.bin.len - 1] & (0xFF >> h->u.bin.bits)) == 0;
    case TERM_T_NIL:
        return 1;
    case TERM_T_STRING:
        return h->u.bin.len > 0;
    case TERM_T_PID:
        return h->tag == TERM_TAG_NEW_PID && atom_canonical(&h->u.id.node);
    case TERM_T_PORT:
        term_int_count_release_term();
        if (term_int_v4_ports() || h->u.id.id > UINT32_MAX)
            return h->tag == TERM_TAG_V4_PORT && atom_canonical(&h->u.id.node);
        return h->tag == TERM_TAG_NEW_PORT && atom_canonical(&h->u.id.node);
    case TERM_T_REF:
        return h->tag == TERM_TAG_NEWER_REFERENCE && atom_canonical(&h->u.id.node);
    default:
        return 0;
    }
}

static int small_int_canonical(const uint8_t *p)
{
    return p[0] == TERM_TAG_SMALL_INTEGER ||
           (p[0] == TERM_TAG_INTEGER && ((int32_t)term_be32(p + 1) < 0 || term_be32(p + 1) > 255));
}

static int check_term(const uint8_t *p, const uint8_t *end, int depth, const uint8_t **next);

static int check_children(const uint8_t *p, const uint8_t *end, uint64_t n, int depth,
                          const uint8_t **next)
{
    for (uint64_t i = 0; i < n; i++) {
        if (check_term(p, end, depth, &p) != 1)
            return 0;
    }
    *next = p;
    return 1;
}

static int check_term(const uint8_t *p, const uint8_t *end, int depth, const uint8_t **next)
{
    term_hdr_t h;
    size_t left = (size_t)(end - p);
    if (depth > TERM_MAX_DEPTH)
        return 0;
    /* The tags of records (tuples of binaries and small integers) first,
     * without the general header decoder: this loop is the hot path. */
    if (left >= 2) {
        switch (p[0]) {
        case TERM_TAG_BINARY: {
            if (left < 5 || term_be32(p + 1) > left - 5)
                return 0;
            *next = p + 5 + term_be32(p + 1);
            return 1;
        }
        case TERM_TAG_SMALL_INTEGER:
            *next = p + 2;
            return 1;
        case TERM_TAG_SMALL_TUPLE:
            if (p[1] > left - 2)
                return 0;
            return check_children(p + 2, end, p[1], depth + 1, next);
        default:
            break;
        }
    }
    if (term_int_hdr(p, left, &h) < 0)
        return 0;
    switch (h.type) {
    case TERM_T_TUPLE:
        if (h.tag == TERM_TAG_LARGE_TUPLE && h.n <= 255)
            return 0;
        return check_children(p + h.size, end, h.n, depth + 1, next);
    case TERM_T_LIST: {
        /* one LIST_EXT, then [] or a tail that is no list; not a list of
         * bytes that term_to_binary would write as a string */
        if (h.n == 0)
            return 0;
        const uint8_t *q = p + h.size;
        int all_bytes = 1;
        for (uint64_t i = 0; i < h.n; i++) {
            const uint8_t *e = q;
            /* A record of binaries, the seed's {Email, Token}: walked here
             * without a call per field. */
            /* the walk is bound by memory latency: ask for what follows */
            if ((size_t)(end - q) > 1024)
                __builtin_prefetch(q + 1024);
            if (end - q >= 2 && q[0] == TERM_TAG_SMALL_TUPLE && depth + 2 <= TERM_MAX_DEPTH) {
                const uint8_t *r = q + 2;
                int ar = q[1];
                while (ar > 0 && end - r >= 5 && r[0] == TERM_TAG_BINARY &&
                       term_be32(r + 1) <= (size_t)(end - r) - 5) {
                    r += 5 + term_be32(r + 1);
                    ar--;
                }
                if (ar == 0) {
                    q = r;
                    all_bytes = 0;
                    continue;
                }
            }
            if (check_term(q, end, depth + 1, &q) != 1)
                return 0;
            if (*e != TERM_TAG_SMALL_INTEGER)
                all_bytes = 0;
        }
        term_hdr_t t;
        if (term_int_hdr(q, (size_t)(end - q), &t) < 0 || t.type == TERM_T_LIST ||
            t.type == TERM_T_STRING)
            return 0;
        if (t.type == TERM_T_NIL) {
            if (all_bytes && h.n <= 65535)
                return 0;
            *next = q + 1;
            return 1;
        }
        return check_term(q, end, depth + 1, next);
    }
    case TERM_T_MAP: {
        /* keys canonical and strictly ascending in map key order */
        const uint8_t *q = p + h.size, *pk = NULL;
        size_t pklen = 0;
        for (uint64_t i = 0; i < h.n; i++) {
            const uint8_t *k = q;
            if (check_term(q, end, depth + 1, &q) != 1)
                return 0;
            if (pk && key_cmp(pk, pklen, k, (size_t)(q - k)) >= 0)
                return 0;
            pk = k;
            pklen = (size_t)(q - k);
            if (check_term(q, end, depth + 1, &q) != 1)
                return 0;
        }
        *next = q;
        return 1;
    }
    case TERM_T_FUN: {
        if (!atom_canonical(&h.u.fun.module))
            return 0;
        if (h.u.fun.export) {
            if (!atom_canonical(&h.u.fun.name))
                return 0;
            *next = p + h.size;
            return 1;
        }
        /* module, old index, old uniq, pid, free variables */
        const uint8_t *q = h.u.fun.module.p + h.u.fun.module.len;
        if (!small_int_canonical(q))
            return 0;
        q += *q == TERM_TAG_SMALL_INTEGER ? 2 : 5;
        if (!small_int_canonical(q))
            return 0;
        term_hdr_t ph;
        const uint8_t *fend = p + h.u.fun.total;
        if (term_int_hdr(h.u.fun.pid, (size_t)(fend - h.u.fun.pid), &ph) < 0 ||
            !leaf_canonical(h.u.fun.pid, &ph))
            return 0;
        if (check_children(p + h.size, fend, h.n, depth + 1, &q) != 1 || q != fend)
            return 0;
        *next = fend;
        return 1;
    }
    default:
        if (!leaf_canonical(p, &h))
            return 0;
        *next = p + h.size;
        return 1;
    }
}

/* Copies the term at p when it is canonical already: 1 and *next set, or 0
 * with nothing written. canon_term() tries it on list elements only while
 * `fast` is set, and clears it below an element that failed the check, so
 * no byte is checked more than twice whatever the nesting. */
static int copy_if_canonical(const uint8_t *p, const uint8_t *end, int depth, term_buf_t *out,
                             const uint8_t **next)
{
    const uint8_t *q;
    if (check_term(p, end, depth, &q) != 1)
        return 0;
    term_buf_append(out, p, (size_t)(q - p));
    *next = q;
    return 1;
}

static int canon_term(const uint8_t *p, const uint8_t *end, int depth, int fast, term_buf_t *out,
                      const uint8_t **next);

/* Lists: the chain of LIST_EXT headers along the tails, STRING_EXT tails
 * and a NIL or improper tail become one LIST_EXT (or one STRING_EXT when the
 * list is proper, all elements are 0..255 and it has at most 65535 of them,
 * which is the form term_to_binary picks). */
static int canon_list(const uint8_t *p, const uint8_t *end, int depth, int fast, term_buf_t *out,
                      const uint8_t **next)
{
    term_hdr_t h;
    int rc;
    size_t start = out->len;
    uint64_t count = 0;
    int all_bytes = 1, proper = 1;
    uint8_t *d;

    if (!buf_room(out, 5))
        return out->err;
    for (;;) {
        if ((rc = term_int_hdr(p, (size_t)(end - p), &h)) < 0)
            return rc;
        if (h.type == TERM_T_LIST) {
            p += h.size;
            for (uint64_t i = 0; i < h.n; i++) {
                size_t e = out->len;
                /* A long list of records: most of them are canonical. */
                if (fast && copy_if_canonical(p, end, depth + 1, out, &p))
                    rc = 0;
                else if ((rc = canon_term(p, end, depth + 1, 0, out, &p)) < 0)
                    return rc;
                if (out->err)
                    return out->err;
                if (out->data[e] != TERM_TAG_SMALL_INTEGER)
                    all_bytes = 0;
            }
            count += h.n;
            continue;
        }
        if (h.type == TERM_T_STRING) {
            if (!(d = buf_room(out, 2 * h.u.bin.len)))
                return out->err;
            for (size_t i = 0; i < h.u.bin.len; i++) {
                d[2 * i] = TERM_TAG_SMALL_INTEGER;
                d[2 * i + 1] = h.u.bin.p[i];
            }
            count += h.u.bin.len;
            p += h.size;
        } else if (h.type == TERM_T_NIL) {
            p += h.size;
        } else {
            if ((rc = canon_term(p, end, depth + 1, fast, out, &p)) < 0)
                return rc;
            proper = 0;
        }
        break;
    }
    if (out->err)
        return out->err;
    if (count > UINT32_MAX)
        return -E2BIG;
    *next = p;
    uint8_t *s = (uint8_t *)out->data + start;
    if (count == 0) {
        /* [] or, for LIST_EXT with 0 elements, just its tail */
        size_t tail = out->len - start - 5;
        memmove(s, s + 5, tail);
        out->len = start + tail;
        if (proper) {
            if ((d = buf_room(out, 1)))
                d[0] = TERM_TAG_NIL;
        }
        return out->err;
    }
    if (proper && all_bytes && count <= 65535) {
        s[0] = TERM_TAG_STRING;
        wr16(s + 1, (uint32_t)count);
        for (size_t i = 0; i < count; i++)
            s[3 + i] = s[5 + 2 * i + 1];
        out->len = start + 3 + count;
        return 0;
    }
    s[0] = TERM_TAG_LIST;
    wr32(s + 1, (uint32_t)count);
    if (proper && (d = buf_room(out, 1)))
        d[0] = TERM_TAG_NIL;
    return out->err;
}

typedef struct map_pair {
    size_t koff, klen, vlen;
} map_pair_t;

static int pair_cmp(const void *a, const void *b, void *ctx)
{
    const map_pair_t *x = a, *y = b;
    const uint8_t *base = ctx;
    return key_cmp(base + x->koff, x->klen, base + y->koff, y->klen);
}

/* Small maps (most of them) sort in place: insertion sort, no qsort_r. */
static void pairs_sort(map_pair_t *pairs, uint64_t n, const uint8_t *base)
{
    if (n > 16) {
        qsort_r(pairs, n, sizeof *pairs, pair_cmp, (void *)base);
        return;
    }
    for (uint64_t i = 1; i < n; i++) {
        map_pair_t t = pairs[i];
        uint64_t j = i;
        for (; j > 0 && pair_cmp(&pairs[j - 1], &t, (void *)base) > 0; j--)
            pairs[j] = pairs[j - 1];
        pairs[j] = t;
    }
}

/* Maps: pairs in key order as BEAM's flatmaps keep them (integers before
 * floats), whatever order they arrived in; a repeated key is an error, as
 * binary_to_term makes it. */
static int canon_map(const uint8_t *p, const uint8_t *end, uint64_t n, int depth, int fast,
                     term_buf_t *out, const uint8_t **next)
{
    uint8_t *d = buf_room(out, 5);
    int rc = 0;
    if (!d)
        return out->err;
    d[0] = TERM_TAG_MAP;
    wr32(d + 1, (uint32_t)n);
    if (n == 0) {
        *next = p;
        return 0;
    }
    /* small maps keep their pairs and the copy below on the stack */
    map_pair_t pairs_small[16];
    uint8_t copy_small[512];
    map_pair_t *pairs = n <= 16 ? pairs_small : mem_alloc(n * sizeof *pairs);
    if (!pairs)
        return -ENOMEM;
    size_t region = out->len;
    int sorted = 1;
    for (uint64_t i = 0; i < n; i++) {
        pairs[i].koff = out->len;
        if ((rc = canon_term(p, end, depth + 1, fast, out, &p)) < 0)
            goto out;
        pairs[i].klen = out->len - pairs[i].koff;
        size_t v = out->len;
        if ((rc = canon_term(p, end, depth + 1, fast, out, &p)) < 0)
            goto out;
        pairs[i].vlen = out->len - v;
        if (out->err) {
            rc = out->err;
            goto out;
        }
        if (i > 0) {
            int c = pair_cmp(&pairs[i - 1], &pairs[i], out->data);
            if (c == 0) {
                rc = -EPROTO;
                goto out;
            }
            if (c > 0)
                sorted = 0;
        }
    }
    if (!sorted) {
        pairs_sort(pairs, n, (const uint8_t *)out->data);
        for (uint64_t i = 1; i < n; i++) {
            if (pair_cmp(&pairs[i - 1], &pairs[i], out->data) == 0) {
                rc = -EPROTO;
                goto out;
            }
        }
        size_t rlen = out->len - region;
        uint8_t *copy = rlen <= sizeof copy_small ? copy_small : mem_alloc(rlen);
        if (!copy) {
            rc = -ENOMEM;
            goto out;
        }
        memcpy(copy, out->data + region, rlen);
        uint8_t *w = (uint8_t *)out->data + region;
        for (uint64_t i = 0; i < n; i++) {
            size_t kv = pairs[i].klen + pairs[i].vlen;
            memcpy(w, copy + (pairs[i].koff - region), kv);
            w += kv;
        }
        if (copy != copy_small)
            mem_free(copy);
    }
    *next = p;
out:
    if (pairs != pairs_small)
        mem_free(pairs);
    return rc;
}

static int canon_fun(const uint8_t *p, const uint8_t *end, const term_hdr_t *h, int depth, int fast,
                     term_buf_t *out, const uint8_t **next)
{
    uint8_t *d;
    int rc;
    (void)end;
    if (h->u.fun.export) {
        if ((d = buf_room(out, 1)))
            d[0] = TERM_TAG_EXPORT;
        put_atom_hdr(out, &h->u.fun.module);
        put_atom_hdr(out, &h->u.fun.name);
        if ((d = buf_room(out, 2))) {
            d[0] = TERM_TAG_SMALL_INTEGER;
            d[1] = (uint8_t)h->u.fun.arity;
        }
        *next = p + h->size;
        return out->err;
    }
    size_t start = out->len;
    if (!(d = buf_room(out, 30)))
        return out->err;
    d[0] = TERM_TAG_NEW_FUN;
    memcpy(d + 5, h->u.fun.fixed, 25);
    put_atom_hdr(out, &h->u.fun.module);
    term_put_long(out, h->u.fun.old_index);
    term_put_long(out, h->u.fun.old_uniq);
    const uint8_t *q, *fend = p + h->u.fun.total;
    if ((rc = canon_term(h->u.fun.pid, fend, depth + 1, fast, out, &q)) < 0)
        return rc;
    q = p + h->size;
    for (uint64_t i = 0; i < h->n; i++) {
        if ((rc = canon_term(q, fend, depth + 1, fast, out, &q)) < 0)
            return rc;
    }
    if (q != fend)
        return -EPROTO;
    if (out->err)
        return out->err;
    if (out->len - start - 1 > UINT32_MAX)
        return -E2BIG;
    wr32((uint8_t *)out->data + start + 1, (uint32_t)(out->len - start - 1));
    *next = fend;
    return 0;
}

static int canon_term(const uint8_t *p, const uint8_t *end, int depth, int fast, term_buf_t *out,
                      const uint8_t **next)
{
    term_hdr_t h;
    int rc;
    uint8_t *d;
    if (depth > TERM_MAX_DEPTH)
        return -E2BIG;
    if ((rc = term_int_hdr(p, (size_t)(end - p), &h)) < 0)
        return rc;
    *next = p + h.size;
    switch (h.type) {
    case TERM_T_INTEGER:
        if (h.u.i.mag)
            put_big(out, h.u.i.neg, h.u.i.mag, h.u.i.mlen);
        else if (h.tag == TERM_TAG_SMALL_INTEGER)
            term_buf_append(out, p, 2);
        else
            term_put_long(out, h.u.i.v);
        break;
    case TERM_T_FLOAT:
        term_put_double(out, h.u.f);
        break;
    case TERM_T_ATOM:
        if (h.tag == TERM_TAG_SMALL_ATOM_UTF8)
            term_buf_append(out, p, h.size);
        else
            put_atom_hdr(out, &h.u.atom);
        break;
    case TERM_T_BINARY:
        if (h.tag == TERM_TAG_BINARY) {
            term_buf_append(out, p, h.size);
        } else {
            term_put_binary(out, h.u.bin.p, h.u.bin.len);
        }
        break;
    case TERM_T_BITSTRING:
        if ((d = buf_room(out, 6 + h.u.bin.len))) {
            d[0] = TERM_TAG_BIT_BINARY;
            wr32(d + 1, (uint32_t)h.u.bin.len);
            d[5] = (uint8_t)h.u.bin.bits;
            memcpy(d + 6, h.u.bin.p, h.u.bin.len);
            /* the unused low bits are not part of the value */
            d[6 + h.u.bin.len - 1] &= (uint8_t)(0xFF << (8 - h.u.bin.bits));
        }
        break;
    case TERM_T_NIL:
        if ((d = buf_room(out, 1)))
            d[0] = TERM_TAG_NIL;
        break;
    case TERM_T_STRING:
        if (h.u.bin.len == 0) {
            if ((d = buf_room(out, 1)))
                d[0] = TERM_TAG_NIL;
        } else {
            term_buf_append(out, p, h.size);
        }
        break;
    case TERM_T_LIST:
        return canon_list(p, end, depth, fast, out, next);
    case TERM_T_TUPLE:
        term_put_tuple(out, (uint32_t)h.n);
        p += h.size;
        for (uint64_t i = 0; i < h.n; i++) {
            if ((rc = canon_term(p, end, depth + 1, fast, out, &p)) < 0)
                return rc;
        }
        *next = p;
        break;
    case TERM_T_MAP:
        return canon_map(p + h.size, end, h.n, depth, fast, out, next);
    case TERM_T_PID:
    case TERM_T_PORT:
    case TERM_T_REF:
        put_id(out, &h);
        break;
    case TERM_T_FUN:
        return canon_fun(p, end, &h, depth, fast, out, next);
    default:
        return -EPROTO;
    }
    return out->err;
}

/* Inflates a COMPRESSED term body (after the tag) into a new buffer. */
static void *zalloc_cb(void *opaque, unsigned items, unsigned size)
{
    (void)opaque;
    return mem_calloc(items, size);
}

static void zfree_cb(void *opaque, void *p)
{
    (void)opaque;
    mem_free(p);
}

static int inflate_term(const uint8_t *p, size_t len, uint8_t **outp, size_t *olen,
                        size_t *used)
{
    if (len < 4)
        return -EPROTO;
    size_t usize = term_be32(p);
    p += 4;
    len -= 4;
    if (usize > TERM_INFLATE_MAX)
        return -E2BIG;
    if (usize == 0 || usize / TERM_INFLATE_RATIO > len)
        return -EPROTO;
    uint8_t *buf = mem_alloc(usize);
    if (!buf)
        return -ENOMEM;
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    zs.zalloc = zalloc_cb;
    zs.zfree = zfree_cb;
    int zr = inflateInit(&zs);
    if (zr != Z_OK) {
        mem_free(buf);
        return zr == Z_MEM_ERROR ? -ENOMEM : -EPROTO;
    }
    int rc = 0;
    size_t in_done = 0, out_done = 0;
    /* avail_* are 32-bit; feed in chunks so any len works */
    for (;;) {
        size_t in_left = len - in_done, out_left = usize - out_done;
        zs.next_in = (Bytef *)(p + in_done);
        zs.avail_in = in_left > UINT32_MAX ? UINT32_MAX : (uInt)in_left;
        zs.next_out = buf + out_done;
        zs.avail_out = out_left > UINT32_MAX ? UINT32_MAX : (uInt)out_left;
        uInt ai = zs.avail_in, ao = zs.avail_out;
        zr = inflate(&zs, Z_NO_FLUSH);
        in_done += ai - zs.avail_in;
        out_done += ao - zs.avail_out;
        if (zr == Z_STREAM_END)
            break;
        if (zr == Z_MEM_ERROR) {
            rc = -ENOMEM;
            break;
        }
        /* Out of input, out of declared room, or corrupt: all malformed. */
        if (zr != Z_OK || (ai == zs.avail_in && ao == zs.avail_out)) {
            rc = -EPROTO;
            break;
        }
    }
    inflateEnd(&zs);
    if (rc == 0 && out_done != usize)
        rc = -EPROTO;
    if (rc < 0) {
        mem_free(buf);
        return rc;
    }
    *outp = buf;
    *olen = usize;
    *used = 4 + in_done;
    return 0;
}

int term_canon_inner(const void *in, size_t len, size_t *used, term_buf_t *out)
{
    const uint8_t *p = in, *next;
    size_t len0 = out->len;
    int err0 = out->err, rc;
    if (!in && len)
        return -EINVAL;
    if (err0)
        return err0;
    if (len > 0 && p[0] == TERM_TAG_COMPRESSED) {
        uint8_t *raw;
        size_t rlen, zused;
        if ((rc = inflate_term(p + 1, len - 1, &raw, &rlen, &zused)) < 0)
            return rc;
        if (term_buf_reserve(out, rlen) < 0)
            rc = out->err;
        else if (!copy_if_canonical(raw, raw + rlen, 0, out, &next))
            rc = canon_term(raw, raw + rlen, 0, 1, out, &next);
        else
            rc = out->err;
        if (rc == 0 && next != raw + rlen)
            rc = -EPROTO;
        mem_free(raw);
        if (rc == 0)
            *used = 1 + zused;
    } else {
        /* The canonical form is about as long as the input. */
        if (term_buf_reserve(out, len) < 0)
            rc = out->err;
        else if (!copy_if_canonical(p, p + len, 0, out, &next))
            rc = canon_term(p, p + len, 0, 1, out, &next);
        else
            rc = out->err;
        if (rc == 0)
            *used = (size_t)(next - p);
    }
    if (rc < 0) {
        out->len = len0;
        out->err = err0;
    }
    return rc;
}

int term_canon(const void *in, size_t len, term_buf_t *out)
{
    const uint8_t *p = in;
    size_t used;
    if (!in && len)
        return -EINVAL;
    if (len < 1 || p[0] != TERM_VERSION_MAGIC)
        return -EPROTO;
    size_t len0 = out->len;
    int rc = term_canon_inner(p + 1, len - 1, &used, out);
    if (rc < 0)
        return rc;
    if (used != len - 1) {
        out->len = len0;
        return -EPROTO;
    }
    return 0;
}

/* ---- Encoders ----------------------------------------------------------- */

void term_put_version(term_buf_t *b)
{
    uint8_t *d = buf_room(b, 1);
    if (d)
        d[0] = TERM_VERSION_MAGIC;
}

void term_put_tuple(term_buf_t *b, uint32_t arity)
{
    uint8_t *d;
    if (arity <= 255) {
        if ((d = buf_room(b, 2))) {
            d[0] = TERM_TAG_SMALL_TUPLE;
            d[1] = (uint8_t)arity;
        }
    } else if ((d = buf_room(b, 5))) {
        d[0] = TERM_TAG_LARGE_TUPLE;
        wr32(d + 1, arity);
    }
}

/* With n == 0 nothing is written: "zero elements and a tail" is the tail. */
void term_put_list(term_buf_t *b, uint32_t n)
{
    uint8_t *d;
    if (n == 0)
        return;
    if ((d = buf_room(b, 5))) {
        d[0] = TERM_TAG_LIST;
        wr32(d + 1, n);
    }
}

void term_put_nil(term_buf_t *b)
{
    uint8_t *d = buf_room(b, 1);
    if (d)
        d[0] = TERM_TAG_NIL;
}

void term_put_map(term_buf_t *b, uint32_t arity)
{
    uint8_t *d = buf_room(b, 5);
    if (d) {
        d[0] = TERM_TAG_MAP;
        wr32(d + 1, arity);
    }
}

void term_put_atom_len(term_buf_t *b, const char *utf8, size_t len)
{
    size_t chars;
    if (b->err)
        return;
    if (len > TERM_ATOM_MAX - 1 || utf8_check((const uint8_t *)utf8, len, &chars) < 0 ||
        chars > 255) {
        b->err = -EINVAL;
        return;
    }
    put_atom_text(b, (const uint8_t *)utf8, len);
}

void term_put_atom(term_buf_t *b, const char *utf8)
{
    term_put_atom_len(b, utf8, strlen(utf8));
}

void term_put_bool(term_buf_t *b, int v)
{
    if (v)
        put_atom_text(b, (const uint8_t *)"true", 4);
    else
        put_atom_text(b, (const uint8_t *)"false", 5);
}

/* erts: 0..255 SMALL_INTEGER_EXT, other int32 INTEGER_EXT, else a bignum
 * of the fewest bytes. */
static void put_u64_mag(term_buf_t *b, int neg, uint64_t m)
{
    uint8_t mag[8];
    size_t n = 0;
    while (m) {
        mag[n++] = (uint8_t)m;
        m >>= 8;
    }
    put_big(b, neg, mag, n);
}

void term_put_long(term_buf_t *b, int64_t v)
{
    uint8_t *d;
    if (v >= 0 && v <= 255) {
        if ((d = buf_room(b, 2))) {
            d[0] = TERM_TAG_SMALL_INTEGER;
            d[1] = (uint8_t)v;
        }
    } else if (v >= INT32_MIN && v <= INT32_MAX) {
        if ((d = buf_room(b, 5))) {
            d[0] = TERM_TAG_INTEGER;
            wr32(d + 1, (uint32_t)(int32_t)v);
        }
    } else if (v < 0) {
        put_u64_mag(b, 1, 0 - (uint64_t)v);
    } else {
        put_u64_mag(b, 0, (uint64_t)v);
    }
}

void term_put_ulong(term_buf_t *b, uint64_t v)
{
    if (v <= INT64_MAX)
        term_put_long(b, (int64_t)v);
    else
        put_u64_mag(b, 0, v);
}

void term_put_double(term_buf_t *b, double v)
{
    uint8_t *d;
    uint64_t bits;
    if (b->err)
        return;
    if (!isfinite(v)) {
        b->err = -EINVAL;
        return;
    }
    v = term_canon_double(v);
    memcpy(&bits, &v, sizeof bits);
    if ((d = buf_room(b, 9))) {
        d[0] = TERM_TAG_NEW_FLOAT;
        wr32(d + 1, (uint32_t)(bits >> 32));
        wr32(d + 5, (uint32_t)bits);
    }
}

void term_put_binary(term_buf_t *b, const void *p, size_t len)
{
    uint8_t *d;
    if (b->err)
        return;
    if (len > UINT32_MAX) {
        b->err = -E2BIG;
        return;
    }
    if ((d = buf_room(b, 5 + len))) {
        d[0] = TERM_TAG_BINARY;
        wr32(d + 1, (uint32_t)len);
        if (len)
            memcpy(d + 5, p, len);
    }
}

void term_put_pid(term_buf_t *b, const term_pid_t *pid)
{
    uint8_t *d;
    if ((d = buf_room(b, 1)))
        d[0] = TERM_TAG_NEW_PID;
    term_put_atom(b, pid->node);
    if ((d = buf_room(b, 12))) {
        wr32(d, pid->num);
        wr32(d + 4, pid->serial);
        wr32(d + 8, pid->creation);
    }
}

void term_put_ref(term_buf_t *b, const term_ref_t *ref)
{
    if (b->err)
        return;
    if (ref->len < 1 || ref->len > 5) {
        b->err = -EINVAL;
        return;
    }
    size_t n = strlen(ref->node), chars;
    if (n > TERM_ATOM_MAX - 1 || utf8_check((const uint8_t *)ref->node, n, &chars) < 0 ||
        chars > 255) {
        b->err = -EINVAL;
        return;
    }
    term_atom_t node = {.p = (const uint8_t *)ref->node, .len = n, .latin1 = 0};
    put_ref_words(b, &node, ref);
}

void term_put_raw(term_buf_t *b, const void *p, size_t len)
{
    term_buf_append(b, p, len);
}

/* ---- Reader ------------------------------------------------------------- */

void term_reader_init(term_reader_t *r, const void *buf, size_t len)
{
    r->buf = buf;
    r->len = len;
    r->pos = 0;
}

static int rd_hdr(const term_reader_t *r, term_hdr_t *h)
{
    if (r->pos >= r->len)
        return -EPROTO;
    return term_int_hdr((const uint8_t *)r->buf + r->pos, r->len - r->pos, h);
}

int term_get_version(term_reader_t *r)
{
    if (r->pos >= r->len || (uint8_t)r->buf[r->pos] != TERM_VERSION_MAGIC)
        return -EPROTO;
    r->pos++;
    return 0;
}

term_type_t term_peek(const term_reader_t *r)
{
    term_hdr_t h;
    if (rd_hdr(r, &h) < 0)
        return TERM_T_INVALID;
    return h.type;
}

int term_get_tuple(term_reader_t *r, uint32_t *arity)
{
    term_hdr_t h;
    int rc = rd_hdr(r, &h);
    if (rc < 0)
        return rc;
    if (h.type != TERM_T_TUPLE)
        return -EPROTO;
    *arity = (uint32_t)h.n;
    r->pos += h.size;
    return 0;
}

int term_get_list(term_reader_t *r, uint32_t *n)
{
    term_hdr_t h;
    int rc = rd_hdr(r, &h);
    if (rc < 0)
        return rc;
    if (h.type != TERM_T_LIST && h.type != TERM_T_NIL)
        return -EPROTO;
    *n = (uint32_t)h.n;
    r->pos += h.size;
    return 0;
}

int term_get_nil(term_reader_t *r)
{
    term_hdr_t h;
    int rc = rd_hdr(r, &h);
    if (rc < 0)
        return rc;
    if (h.type != TERM_T_NIL)
        return -EPROTO;
    r->pos += h.size;
    return 0;
}

int term_get_string(term_reader_t *r, const char **p, size_t *len)
{
    term_hdr_t h;
    int rc = rd_hdr(r, &h);
    if (rc < 0)
        return rc;
    if (h.type != TERM_T_STRING)
        return -EPROTO;
    *p = (const char *)h.u.bin.p;
    *len = h.u.bin.len;
    r->pos += h.size;
    return 0;
}

int term_get_map(term_reader_t *r, uint32_t *arity)
{
    term_hdr_t h;
    int rc = rd_hdr(r, &h);
    if (rc < 0)
        return rc;
    if (h.type != TERM_T_MAP)
        return -EPROTO;
    *arity = (uint32_t)h.n;
    r->pos += h.size;
    return 0;
}

int term_get_atom(term_reader_t *r, char out[TERM_ATOM_MAX])
{
    term_hdr_t h;
    int rc = rd_hdr(r, &h);
    if (rc < 0)
        return rc;
    if (h.type != TERM_T_ATOM)
        return -EPROTO;
    size_t n = term_int_atom_utf8(&h.u.atom, (uint8_t *)out);
    out[n] = 0;
    r->pos += h.size;
    return 0;
}

int term_get_long(term_reader_t *r, int64_t *v)
{
    term_hdr_t h;
    int rc = rd_hdr(r, &h);
    if (rc < 0)
        return rc;
    if (h.type != TERM_T_INTEGER)
        return -EPROTO;
    if (h.u.i.mag)
        return -ERANGE;
    *v = h.u.i.v;
    r->pos += h.size;
    return 0;
}

int term_get_double(term_reader_t *r, double *v)
{
    term_hdr_t h;
    int rc = rd_hdr(r, &h);
    if (rc < 0)
        return rc;
    if (h.type != TERM_T_FLOAT)
        return -EPROTO;
    *v = h.u.f;
    r->pos += h.size;
    return 0;
}

int term_get_binary(term_reader_t *r, const char **p, size_t *len)
{
    term_hdr_t h;
    int rc = rd_hdr(r, &h);
    if (rc < 0)
        return rc;
    if (h.type != TERM_T_BINARY)
        return -EPROTO;
    *p = (const char *)h.u.bin.p;
    *len = h.u.bin.len;
    r->pos += h.size;
    return 0;
}

static void atom_to_cstr(const term_atom_t *a, char out[TERM_ATOM_MAX])
{
    size_t n = term_int_atom_utf8(a, (uint8_t *)out);
    out[n] = 0;
}

int term_get_pid(term_reader_t *r, term_pid_t *pid)
{
    term_hdr_t h;
    int rc = rd_hdr(r, &h);
    if (rc < 0)
        return rc;
    if (h.type != TERM_T_PID)
        return -EPROTO;
    atom_to_cstr(&h.u.id.node, pid->node);
    pid->num = (uint32_t)h.u.id.id;
    pid->serial = h.u.id.serial;
    pid->creation = h.u.id.creation;
    r->pos += h.size;
    return 0;
}

int term_get_ref(term_reader_t *r, term_ref_t *ref)
{
    term_hdr_t h;
    int rc = rd_hdr(r, &h);
    if (rc < 0)
        return rc;
    if (h.type != TERM_T_REF)
        return -EPROTO;
    atom_to_cstr(&h.u.id.node, ref->node);
    ref->creation = h.u.id.creation;
    ref->len = h.u.id.nwords ? h.u.id.nwords : 1;
    for (int i = 0; i < 5; i++)
        ref->n[i] = i < h.u.id.nwords ? term_be32(h.u.id.words + 4 * i) : 0;
    r->pos += h.size;
    return 0;
}

int term_get_any(term_reader_t *r, const char **p, size_t *len)
{
    size_t used;
    if (r->pos >= r->len)
        return -EPROTO;
    int rc = term_skip(r->buf + r->pos, r->len - r->pos, &used);
    if (rc < 0)
        return rc;
    *p = r->buf + r->pos;
    *len = used;
    r->pos += used;
    return 0;
}
