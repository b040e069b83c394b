/* compare.c: Erlang term order over encoded terms in any encoding, as erts
 * orders them (erts_cmp): number < atom < reference < fun < port < pid <
 * tuple < map < nil < list < bitstring. The rules below were checked
 * against lists:sort/1 on OTP 25 (see erlang_test/term_SUITE.erl). */
#include "term/term.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "term/mem.h"
#include "term/term_int.h"

static int cmp_term(const uint8_t **pa, const uint8_t *ea, const uint8_t **pb,
                    const uint8_t *eb, int exact, int depth);

static int sgn(long long v)
{
    return (v > 0) - (v < 0);
}

static int rank(const term_hdr_t *h)
{
    switch (h->type) {
    case TERM_T_INTEGER:
    case TERM_T_FLOAT:
        return 1;
    case TERM_T_ATOM:
        return 2;
    case TERM_T_REF:
        return 3;
    case TERM_T_FUN:
        return 4;
    case TERM_T_PORT:
        return 5;
    case TERM_T_PID:
        return 6;
    case TERM_T_TUPLE:
        return 7;
    case TERM_T_MAP:
        return 8;
    case TERM_T_NIL:
        return 9;
    case TERM_T_STRING:
        return h->u.bin.len == 0 ? 9 : 10;
    case TERM_T_LIST:
        return 10;
    default:
        return 11; /* binaries and bitstrings */
    }
}

/* ---- Numbers ------------------------------------------------------------ */

static int cmp_mag(const uint8_t *a, size_t an, const uint8_t *b, size_t bn)
{
    if (an != bn)
        return an < bn ? -1 : 1;
    for (size_t i = an; i-- > 0;)
        if (a[i] != b[i])
            return a[i] < b[i] ? -1 : 1;
    return 0;
}

static int cmp_int(const term_hdr_t *a, const term_hdr_t *b)
{
    /* A bignum here is outside int64_t (term_int_hdr folds the rest). */
    if (!a->u.i.mag && !b->u.i.mag)
        return (a->u.i.v > b->u.i.v) - (a->u.i.v < b->u.i.v);
    if (!a->u.i.mag)
        return b->u.i.neg ? 1 : -1;
    if (!b->u.i.mag)
        return a->u.i.neg ? -1 : 1;
    if (a->u.i.neg != b->u.i.neg)
        return a->u.i.neg ? -1 : 1;
    int c = cmp_mag(a->u.i.mag, a->u.i.mlen, b->u.i.mag, b->u.i.mlen);
    return a->u.i.neg ? -c : c;
}

/* Exact comparison of an integer with a float (erts compares them without
 * rounding: 2^53+1 > 2^53 as a float). */
static int cmp_int_float(const term_hdr_t *a, double f)
{
    if (!a->u.i.mag) {
        int64_t v = a->u.i.v;
        if (f >= 9223372036854775808.0)
            return -1;
        if (f < -9223372036854775808.0)
            return 1;
        double fl = floor(f);
        int64_t t = (int64_t)fl;
        if (v != t)
            return v < t ? -1 : 1;
        return f > fl ? -1 : 0;
    }
    /* |a| >= 2^63 */
    int fneg = f < 0;
    if (fabs(f) < 9223372036854775808.0 || a->u.i.neg != fneg)
        return a->u.i.neg ? -1 : 1;
    /* f is an integer here: m * 2^(e-53) with a 53-bit m */
    int e;
    double fr = frexp(fabs(f), &e);
    uint64_t m = (uint64_t)ldexp(fr, 53);
    uint8_t mag[8 + 1024 / 8 + 2];
    memset(mag, 0, sizeof mag);
    int shift = e - 53;
    size_t byte = (size_t)(shift / 8);
    int bit = shift % 8;
    unsigned __int128 x = (unsigned __int128)m << bit;
    size_t n = byte;
    for (int i = 0; i < 9; i++) {
        mag[byte + (size_t)i] = (uint8_t)(x >> (8 * i));
        if (mag[byte + (size_t)i])
            n = byte + (size_t)i + 1;
    }
    int c = cmp_mag(a->u.i.mag, a->u.i.mlen, mag, n);
    return a->u.i.neg ? -c : c;
}

static int cmp_num(const term_hdr_t *a, const term_hdr_t *b, int exact)
{
    if (a->type == TERM_T_INTEGER && b->type == TERM_T_INTEGER)
        return cmp_int(a, b);
    if (a->type == TERM_T_FLOAT && b->type == TERM_T_FLOAT) {
        /* OTP 27: -0.0 =/= 0.0, and map key order puts -0.0 first */
        if (exact && a->u.f == 0 && b->u.f == 0 && term_int_zeros_distinct())
            return !!signbit(b->u.f) - !!signbit(a->u.f);
        return (a->u.f > b->u.f) - (a->u.f < b->u.f);
    }
    /* Map key order (and =:=): integers sort before all floats. */
    if (exact)
        return a->type == TERM_T_INTEGER ? -1 : 1;
    if (a->type == TERM_T_INTEGER)
        return cmp_int_float(a, b->u.f);
    return -cmp_int_float(b, a->u.f);
}

/* ---- Atoms, identifiers, bits ------------------------------------------ */

/* Atoms compare by their characters (code points), which is the byte order
 * of their UTF-8 text. */
static int cmp_atom(const term_atom_t *a, const term_atom_t *b)
{
    uint8_t ba[TERM_ATOM_MAX], bb[TERM_ATOM_MAX];
    const uint8_t *x = a->p, *y = b->p;
    size_t xn = a->len, yn = b->len;
    if (a->latin1) {
        xn = term_int_atom_utf8(a, ba);
        x = ba;
    }
    if (b->latin1) {
        yn = term_int_atom_utf8(b, bb);
        y = bb;
    }
    int c = memcmp(x, y, xn < yn ? xn : yn);
    if (c)
        return c < 0 ? -1 : 1;
    return (xn > yn) - (xn < yn);
}

static int cmp_u64(uint64_t a, uint64_t b)
{
    return (a > b) - (a < b);
}

/* erts CMP_NODES: node name, then creation. */
static int cmp_node(const term_hdr_t *a, const term_hdr_t *b)
{
    int c = cmp_atom(&a->u.id.node, &b->u.id.node);
    return c ? c : cmp_u64(a->u.id.creation, b->u.id.creation);
}

static int cmp_id(const term_hdr_t *a, const term_hdr_t *b, int exact)
{
    int c;
    switch (a->type) {
    case TERM_T_PID:
        /* pid data (serial, then number) before the node */
        if ((c = cmp_u64(a->u.id.serial, b->u.id.serial)))
            return c;
        if ((c = cmp_u64(a->u.id.id, b->u.id.id)))
            return c;
        return cmp_node(a, b);
    case TERM_T_PORT:
        if ((c = cmp_node(a, b)))
            return c;
        return cmp_u64(a->u.id.id, b->u.id.id);
    default: {
        /* refs: node, then the words from the most significant one, high
         * zero words ignored (erts ref_common) */
        if ((c = cmp_node(a, b)))
            return c;
        int an = a->u.id.nwords, bn = b->u.id.nwords;
        an = an ? an : 1; /* 0 words =:= one zero word */
        bn = bn ? bn : 1;
        while (an > 1 && term_be32(a->u.id.words + 4 * (an - 1)) == 0)
            an--;
        while (bn > 1 && term_be32(b->u.id.words + 4 * (bn - 1)) == 0)
            bn--;
        if (an != bn)
            return an < bn ? -1 : 1;
        for (int i = an; i-- > 0;) {
            uint32_t x = i < a->u.id.nwords ? term_be32(a->u.id.words + 4 * i) : 0;
            uint32_t y = i < b->u.id.nwords ? term_be32(b->u.id.words + 4 * i) : 0;
            c = cmp_u64(x, y);
            if (c)
                return c;
        }
        /* == ignores high zero words, but BEAM keeps and hashes them (a
         * map holds [1] and [1,0,0] as two keys): exactly, they differ. */
        return exact ? sgn((long long)a->u.id.nwords - (long long)b->u.id.nwords) : 0;
    }
    }
}

/* Bitstrings compare as sequences of bits; a prefix sorts first. */
static int cmp_bits(const term_hdr_t *a, const term_hdr_t *b)
{
    uint64_t an = a->u.bin.len ? (uint64_t)(a->u.bin.len - 1) * 8 + (uint64_t)a->u.bin.bits : 0;
    uint64_t bn = b->u.bin.len ? (uint64_t)(b->u.bin.len - 1) * 8 + (uint64_t)b->u.bin.bits : 0;
    uint64_t n = an < bn ? an : bn;
    size_t full = (size_t)(n / 8);
    int c = memcmp(a->u.bin.p, b->u.bin.p, full);
    if (c)
        return c < 0 ? -1 : 1;
    int rem = (int)(n % 8);
    if (rem) {
        uint8_t mask = (uint8_t)(0xFF << (8 - rem));
        uint8_t x = a->u.bin.p[full] & mask, y = b->u.bin.p[full] & mask;
        if (x != y)
            return x < y ? -1 : 1;
    }
    return cmp_u64(an, bn);
}

/* ---- Lists -------------------------------------------------------------- */

/* Walks a list along LIST_EXT chains and STRING_EXT runs. */
typedef struct list_it {
    const uint8_t *p, *end;
    uint64_t left;          /* elements left in the current LIST_EXT */
    const uint8_t *s;       /* bytes left in a STRING_EXT */
    size_t slen;
    int in_string;
} list_it_t;

enum { IT_ELEM, IT_BYTE, IT_NIL, IT_TAIL };

static int it_next(list_it_t *it, uint8_t *byte)
{
    for (;;) {
        if (it->in_string) {
            if (it->slen) {
                *byte = *it->s++;
                it->slen--;
                return IT_BYTE;
            }
            return IT_NIL; /* p is already past the string */
        }
        if (it->left) {
            it->left--;
            return IT_ELEM;
        }
        term_hdr_t h;
        if (term_int_hdr(it->p, (size_t)(it->end - it->p), &h) < 0)
            return IT_NIL;
        if (h.type == TERM_T_LIST) {
            it->left = h.n;
            it->p += h.size;
        } else if (h.type == TERM_T_STRING) {
            it->in_string = 1;
            it->s = h.u.bin.p;
            it->slen = h.u.bin.len;
            it->p += h.size;
        } else if (h.type == TERM_T_NIL) {
            it->p += h.size;
            return IT_NIL;
        } else {
            return IT_TAIL;
        }
    }
}

static int tail_rank(const list_it_t *it)
{
    term_hdr_t h;
    if (term_int_hdr(it->p, (size_t)(it->end - it->p), &h) < 0)
        return 0;
    return rank(&h);
}

static int cmp_list(const uint8_t **pa, const uint8_t *ea, const uint8_t **pb,
                    const uint8_t *eb, int exact, int depth)
{
    list_it_t a = {.p = *pa, .end = ea}, b = {.p = *pb, .end = eb};
    for (;;) {
        uint8_t ba = 0, bb = 0;
        int ka = it_next(&a, &ba), kb = it_next(&b, &bb);
        int ea_ = ka == IT_ELEM || ka == IT_BYTE, eb_ = kb == IT_ELEM || kb == IT_BYTE;
        if (ea_ && eb_) {
            if (ka == IT_BYTE && kb == IT_BYTE) {
                if (ba != bb)
                    return ba < bb ? -1 : 1;
                continue;
            }
            uint8_t sa[2] = {TERM_TAG_SMALL_INTEGER, ba}, sb[2] = {TERM_TAG_SMALL_INTEGER, bb};
            const uint8_t *xa = ka == IT_BYTE ? sa : a.p, *xb = kb == IT_BYTE ? sb : b.p;
            const uint8_t *xea = ka == IT_BYTE ? sa + 2 : ea, *xeb = kb == IT_BYTE ? sb + 2 : eb;
            int c = cmp_term(&xa, xea, &xb, xeb, exact, depth + 1);
            if (c)
                return c;
            if (ka == IT_ELEM)
                a.p = xa;
            if (kb == IT_ELEM)
                b.p = xb;
            continue;
        }
        /* One or both lists ended: what is left is a non-empty list (rank
         * 10), [] (rank 9) or an improper tail. */
        int ra = ea_ ? 10 : ka == IT_NIL ? 9 : tail_rank(&a);
        int rb = eb_ ? 10 : kb == IT_NIL ? 9 : tail_rank(&b);
        if (ra != rb)
            return ra < rb ? -1 : 1;
        if (ka == IT_TAIL && kb == IT_TAIL) {
            int c = cmp_term(&a.p, ea, &b.p, eb, exact, depth + 1);
            if (c)
                return c;
        }
        *pa = a.p;
        *pb = b.p;
        return 0;
    }
}

/* ---- Maps --------------------------------------------------------------- */

typedef struct kv {
    const uint8_t *k, *v, *vend;
} kv_t;

static int kv_cmp(const void *x, const void *y, void *ctx)
{
    const kv_t *a = x, *b = y;
    const uint8_t *pa = a->k, *pb = b->k;
    (void)ctx;
    return cmp_term(&pa, a->v, &pb, b->v, 1, 0);
}

/* Collects the pairs of a map body and sorts them by key (map key order).
 * *pairs is new (mem_free it); NULL with -ENOMEM when allocation fails. */
static int map_pairs(const uint8_t *p, const uint8_t *end, uint64_t n, kv_t **pairs,
                     const uint8_t **next)
{
    kv_t *kv = mem_alloc(n * sizeof *kv);
    if (!kv)
        return -1;
    for (uint64_t i = 0; i < n; i++) {
        size_t used;
        kv[i].k = p;
        if (term_skip(p, (size_t)(end - p), &used) < 0)
            goto bad;
        p += used;
        kv[i].v = p;
        if (term_skip(p, (size_t)(end - p), &used) < 0)
            goto bad;
        p += used;
        kv[i].vend = p;
    }
    qsort_r(kv, n, sizeof *kv, kv_cmp, NULL);
    *pairs = kv;
    *next = p;
    return 0;
bad:
    mem_free(kv);
    return -2;
}

/* Fallback without memory: the smallest key greater than prev. */
static void map_min_after(const uint8_t *p, const uint8_t *end, uint64_t n, const kv_t *prev,
                          kv_t *out)
{
    out->k = NULL;
    for (uint64_t i = 0; i < n; i++) {
        size_t used;
        kv_t c = {.k = p};
        if (term_skip(p, (size_t)(end - p), &used) < 0)
            return;
        c.v = p += used;
        if (term_skip(p, (size_t)(end - p), &used) < 0)
            return;
        c.vend = p += used;
        if (prev && kv_cmp(&c, prev, NULL) <= 0)
            continue;
        if (!out->k || kv_cmp(&c, out, NULL) < 0)
            *out = c;
    }
}

static int cmp_map(const uint8_t **pa, const uint8_t *ea, uint64_t n, const uint8_t **pb,
                   const uint8_t *eb, int exact, int depth)
{
    kv_t *ka = NULL, *kb = NULL;
    const uint8_t *na = *pa, *nb = *pb;
    int c = 0;
    if (n == 0)
        return 0;
    int ra = map_pairs(*pa, ea, n, &ka, &na);
    int rb = ra == 0 ? map_pairs(*pb, eb, n, &kb, &nb) : -1;
    if (ra == 0 && rb == 0) {
        /* keys first (exactly), then values in key order */
        for (uint64_t i = 0; i < n && !c; i++)
            c = kv_cmp(&ka[i], &kb[i], NULL);
        for (uint64_t i = 0; i < n && !c; i++) {
            const uint8_t *x = ka[i].v, *y = kb[i].v;
            c = cmp_term(&x, ka[i].vend, &y, kb[i].vend, exact, depth + 1);
        }
        mem_free(ka);
        mem_free(kb);
        if (!c) {
            *pa = na;
            *pb = nb;
        }
        return c;
    }
    mem_free(ka);
    if (ra == -2 || rb == -2)
        return 0; /* invalid input: undefined */
    kv_t xa, xb, pra, prb;
    int have = 0;
    for (int pass = 0; pass < 2 && !c; pass++) {
        have = 0;
        for (uint64_t i = 0; i < n && !c; i++) {
            map_min_after(*pa, ea, n, have ? &pra : NULL, &xa);
            map_min_after(*pb, eb, n, have ? &prb : NULL, &xb);
            if (!xa.k || !xb.k)
                return 0;
            if (pass == 0) {
                c = kv_cmp(&xa, &xb, NULL);
            } else {
                const uint8_t *x = xa.v, *y = xb.v;
                c = cmp_term(&x, xa.vend, &y, xb.vend, exact, depth + 1);
            }
            pra = xa;
            prb = xb;
            have = 1;
        }
    }
    if (!c) {
        size_t used;
        if (term_skip(*pa - 5, (size_t)(ea - *pa + 5), &used) == 0)
            *pa = *pa - 5 + used;
        if (term_skip(*pb - 5, (size_t)(eb - *pb + 5), &used) == 0)
            *pb = *pb - 5 + used;
    }
    return c;
}

/* ---- Funs --------------------------------------------------------------- */

/* Local funs sort before exports (checked on OTP 25). Local funs: module,
 * old index, old uniq, number of free variables, then the free variables;
 * exports: module, function, arity. */
static int cmp_fun(const term_hdr_t *a, const term_hdr_t *b, const uint8_t **pa,
                   const uint8_t **pb, int exact, int depth)
{
    int c;
    if (a->u.fun.export != b->u.fun.export)
        return a->u.fun.export ? 1 : -1;
    if ((c = cmp_atom(&a->u.fun.module, &b->u.fun.module)))
        return c;
    if (a->u.fun.export) {
        if ((c = cmp_atom(&a->u.fun.name, &b->u.fun.name)))
            return c;
        if ((c = cmp_u64(a->u.fun.arity, b->u.fun.arity)))
            return c;
        *pa += a->size;
        *pb += b->size;
        return 0;
    }
    if ((c = sgn(a->u.fun.old_index - b->u.fun.old_index)))
        return c;
    if ((c = sgn(a->u.fun.old_uniq - b->u.fun.old_uniq)))
        return c;
    if ((c = cmp_u64(a->n, b->n)))
        return c;
    const uint8_t *x = *pa + a->size, *y = *pb + b->size;
    const uint8_t *xe = *pa + a->u.fun.total, *ye = *pb + b->u.fun.total;
    for (uint64_t i = 0; i < a->n; i++) {
        if ((c = cmp_term(&x, xe, &y, ye, exact, depth + 1)))
            return c;
    }
    *pa = xe;
    *pb = ye;
    return 0;
}

/* ---- Dispatch ----------------------------------------------------------- */

static int cmp_term(const uint8_t **pa, const uint8_t *ea, const uint8_t **pb,
                    const uint8_t *eb, int exact, int depth)
{
    term_hdr_t a, b;
    int c;
    if (depth > TERM_MAX_DEPTH + 1)
        return 0; /* deeper than any valid term: undefined */
    /* LIST_EXT with no elements is just its tail. */
    for (;;) {
        if (term_int_hdr(*pa, (size_t)(ea - *pa), &a) < 0)
            return term_int_hdr(*pb, (size_t)(eb - *pb), &b) < 0 ? 0 : -1;
        if (a.type != TERM_T_LIST || a.n)
            break;
        *pa += a.size;
    }
    for (;;) {
        if (term_int_hdr(*pb, (size_t)(eb - *pb), &b) < 0)
            return 1;
        if (b.type != TERM_T_LIST || b.n)
            break;
        *pb += b.size;
    }
    int ra = rank(&a), rb = rank(&b);
    if (ra != rb)
        return ra < rb ? -1 : 1;
    switch (ra) {
    case 1:
        c = cmp_num(&a, &b, exact);
        break;
    case 2:
        c = cmp_atom(&a.u.atom, &b.u.atom);
        break;
    case 3:
    case 5:
    case 6:
        c = cmp_id(&a, &b, exact);
        break;
    case 4:
        return cmp_fun(&a, &b, pa, pb, exact, depth);
    case 7: {
        if ((c = cmp_u64(a.n, b.n)))
            return c;
        const uint8_t *x = *pa + a.size, *y = *pb + b.size;
        for (uint64_t i = 0; i < a.n; i++) {
            if ((c = cmp_term(&x, ea, &y, eb, exact, depth + 1)))
                return c;
        }
        *pa = x;
        *pb = y;
        return 0;
    }
    case 8: {
        if ((c = cmp_u64(a.n, b.n)))
            return c;
        const uint8_t *x = *pa + a.size, *y = *pb + b.size;
        if ((c = cmp_map(&x, ea, a.n, &y, eb, exact, depth)))
            return c;
        *pa = x;
        *pb = y;
        return 0;
    }
    case 9:
        c = 0;
        break;
    case 10:
        return cmp_list(pa, ea, pb, eb, exact, depth);
    default:
        c = cmp_bits(&a, &b);
        break;
    }
    if (c == 0) {
        *pa += a.size;
        *pb += b.size;
    }
    return c;
}

int term_compare(const void *a, size_t alen, const void *b, size_t blen)
{
    const uint8_t *pa = a, *pb = b;
    return cmp_term(&pa, pa + alen, &pb, pb + blen, 0, 0);
}

int term_int_cmp_exact(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
    return cmp_term(&a, a + alen, &b, b + blen, 1, 0);
}

int term_pid_eq(const term_pid_t *a, const term_pid_t *b)
{
    return a->num == b->num && a->serial == b->serial && a->creation == b->creation &&
           strcmp(a->node, b->node) == 0;
}

int term_ref_eq(const term_ref_t *a, const term_ref_t *b)
{
    if (a->len != b->len || a->creation != b->creation || strcmp(a->node, b->node) != 0)
        return 0;
    for (int i = 0; i < a->len && i < 5; i++)
        if (a->n[i] != b->n[i])
            return 0;
    return 1;
}
