/* parse.c: reads Erlang literal syntax (what erl_scan + erl_parse:parse_term
 * accept for literals, and file:consult/1 files) into canonical ETF.
 * The parser keeps its own stack of open tuples, lists and maps, so hostile
 * nesting gives -E2BIG instead of a stack overflow. It writes a plain
 * (valid, non-canonical) encoding first and hands that to
 * term_canon_inner(), which owns every canonical-form rule. */
#include "term/term.h"
#include "term/mem.h"
#include "term/term_int.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Bounds on single tokens, so that one token costs time linear in its
 * length: integers are converted in O(digits^2 / 81). */
#define PARSE_MAX_DIGITS 100000
#define PARSE_MAX_FLOAT  1024
#define PARSE_MAX_BITS   64      /* largest Size in <<V:Size>> */

enum { F_TUPLE, F_LIST, F_MAP };
enum { S_ELEM, S_TAIL, S_KEY, S_VAL };

typedef struct frame {
    unsigned char kind;
    unsigned char state;
    uint32_t extra;     /* lists: '[' opened after '|' that need their ']' */
    uint32_t count;
    size_t hdr;         /* offset of the header in the output */
} frame_t;

typedef struct ps {
    const unsigned char *t;
    size_t len;
    size_t pos;
    term_buf_t *o;      /* the plain encoding being built */
    frame_t *stk;
    int depth;
} ps_t;

/* ---- Output of the plain encoding ------------------------------------ */

static void out_u8(term_buf_t *o, unsigned v)
{
    unsigned char c = (unsigned char)v;
    term_buf_append(o, &c, 1);
}

static void out_be32(term_buf_t *o, uint32_t v)
{
    unsigned char b[4] = { (unsigned char)(v >> 24), (unsigned char)(v >> 16),
                           (unsigned char)(v >> 8), (unsigned char)v };
    term_buf_append(o, b, 4);
}

static void patch_be32(term_buf_t *o, size_t at, uint32_t v)
{
    if (o->err || at + 4 > o->len)
        return;
    unsigned char *b = (unsigned char *)o->data + at;
    b[0] = (unsigned char)(v >> 24);
    b[1] = (unsigned char)(v >> 16);
    b[2] = (unsigned char)(v >> 8);
    b[3] = (unsigned char)v;
}

/* A character code as an integer element (chars are below 2^31). */
static void out_char(term_buf_t *o, uint32_t c)
{
    if (c < 256) {
        out_u8(o, 97);
        out_u8(o, c);
    } else {
        out_u8(o, 98);
        out_be32(o, c);
    }
}

/* An integer from its little-endian magnitude in 32-bit limbs. */
static void out_integer(term_buf_t *o, int neg, const uint32_t *w, size_t nw)
{
    while (nw > 0 && w[nw - 1] == 0)
        nw--;
    if (nw == 0) {
        out_u8(o, 97);
        out_u8(o, 0);
        return;
    }
    if (nw == 1 && !neg && w[0] < 256) {
        out_u8(o, 97);
        out_u8(o, w[0]);
        return;
    }
    if (nw == 1 && (neg ? w[0] <= 0x80000000u : w[0] <= 0x7FFFFFFFu)) {
        out_u8(o, 98);
        out_be32(o, neg ? (uint32_t)(0u - w[0]) : w[0]);
        return;
    }
    size_t nb = nw * 4;
    while (nb > 0 && ((w[(nb - 1) / 4] >> (8 * ((nb - 1) % 4))) & 0xFF) == 0)
        nb--;
    if (nb < 256) {
        out_u8(o, 110);
        out_u8(o, (unsigned)nb);
    } else {
        out_u8(o, 111);
        out_be32(o, (uint32_t)nb);
    }
    out_u8(o, neg ? 1 : 0);
    for (size_t i = 0; i < nb; i++)
        out_u8(o, (w[i / 4] >> (8 * (i % 4))) & 0xFF);
}

/* ---- Characters ------------------------------------------------------- */

static int at_end(const ps_t *s) { return s->pos >= s->len; }

/* Decodes one UTF-8 character at s->pos without consuming it. Returns its
 * byte length, or 0 for bytes that are not UTF-8 (or the end). */
static size_t peek_utf8(const ps_t *s, uint32_t *c)
{
    return term_int_utf8_decode((const unsigned char *)s->t + s->pos,
                                s->len - s->pos, c);
}


/* erl_scan's WHITE_SPACE: codes 0..32 and 128..160. */
static size_t white_len(const ps_t *s)
{
    uint32_t c;
    size_t k = peek_utf8(s, &c);
    if (k && (c <= ' ' || (c >= 0x80 && c <= 0xA0)))
        return k;
    return 0;
}

/* Skips white space and % comments. */
static void skip_ws(ps_t *s)
{
    while (!at_end(s)) {
        size_t k = white_len(s);
        if (k) {
            s->pos += k;
        } else if (s->t[s->pos] == '%') {
            while (!at_end(s) && s->t[s->pos] != '\n')
                s->pos++;
        } else {
            break;
        }
    }
}

static int peek(const ps_t *s) { return at_end(s) ? -1 : s->t[s->pos]; }

static int expect(ps_t *s, int c)
{
    skip_ws(s);
    if (peek(s) != c)
        return -EPROTO;
    s->pos++;
    return 0;
}

static int is_digit(int c) { return c >= '0' && c <= '9'; }

static int digit_val(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'Z')
        return c - 'A' + 10;
    return 99;
}

/* erl_scan: \x{...} must name a Unicode scalar other than FFFE and FFFF. */
static int is_unicode(uint32_t c)
{
    return c < 0xD800 || (c > 0xDFFF && c < 0xFFFE) || (c > 0xFFFF && c <= 0x10FFFF);
}

/* One character inside quotes or after $, escapes resolved (erl_scan's
 * scan_escape/2 and escape_char/1). */
static int read_char(ps_t *s, uint32_t *c)
{
    size_t k = peek_utf8(s, c);
    if (k == 0)
        return -EPROTO;
    s->pos += k;
    if (*c != '\\')
        return 0;
    k = peek_utf8(s, c);
    if (k == 0)
        return -EPROTO;    /* a backslash at the end, or not UTF-8 */
    int e = (int)*c;
    if (e >= '0' && e <= '7') {
        uint32_t v = 0;
        for (int i = 0; i < 3 && !at_end(s) && s->t[s->pos] >= '0' && s->t[s->pos] <= '7'; i++)
            v = v * 8 + (uint32_t)(s->t[s->pos++] - '0');
        *c = v;
        return 0;
    }
    if (e == 'x') {
        s->pos++;
        if (peek(s) == '{') {
            s->pos++;
            uint32_t v = 0;
            size_t nd = 0;
            while (!at_end(s) && digit_val(s->t[s->pos]) < 16) {
                if (v > 0x10FFFF)
                    return -EPROTO;
                v = v * 16 + (uint32_t)digit_val(s->t[s->pos++]);
                nd++;
            }
            if (nd == 0 || peek(s) != '}' || !is_unicode(v))
                return -EPROTO;
            s->pos++;
            *c = v;
            return 0;
        }
        if (s->len - s->pos < 2 || digit_val(s->t[s->pos]) >= 16 ||
            digit_val(s->t[s->pos + 1]) >= 16)
            return -EPROTO;
        *c = (uint32_t)(digit_val(s->t[s->pos]) * 16 + digit_val(s->t[s->pos + 1]));
        s->pos += 2;
        return 0;
    }
    if (e == '^') {
        s->pos++;
        k = peek_utf8(s, c);
        if (k == 0)
            return -EPROTO;
        s->pos += k;
        *c &= 31;
        return 0;
    }
    s->pos += k;
    switch (e) {
    case 'n': *c = '\n'; break;
    case 'r': *c = '\r'; break;
    case 't': *c = '\t'; break;
    case 'v': *c = '\v'; break;
    case 'b': *c = '\b'; break;
    case 'f': *c = '\f'; break;
    case 'e': *c = 27; break;
    case 's': *c = ' '; break;
    case 'd': *c = 127; break;
    default: break;    /* any other character stands for itself */
    }
    return 0;
}

/* Characters up to the closing quote q (the opening one is consumed).
 * -EPROTO for an unterminated string. Calls put(arg, c) for each. */
typedef int (*char_cb)(void *arg, uint32_t c);

static int read_quoted(ps_t *s, int q, char_cb put, void *arg)
{
    for (;;) {
        if (at_end(s))
            return -EPROTO;
        if (s->t[s->pos] == q) {
            s->pos++;
            return 0;
        }
        uint32_t c;
        int rc = read_char(s, &c);
        if (rc < 0)
            return rc;
        if ((rc = put(arg, c)) < 0)
            return rc;
    }
}

/* Adjacent string literals are one string ("ab" "c" is "abc"). Reads the
 * first (its quote is at s->pos) and any that follow; s->pos ends after
 * the last closing quote, not after white space. */
static int read_strings(ps_t *s, char_cb put, void *arg)
{
    for (;;) {
        s->pos++;
        int rc = read_quoted(s, '"', put, arg);
        if (rc < 0)
            return rc;
        size_t end = s->pos;
        skip_ws(s);
        if (peek(s) != '"') {
            s->pos = end;
            return 0;
        }
    }
}

/* ---- Atoms ------------------------------------------------------------ */

typedef struct atom_acc {
    char buf[TERM_ATOM_MAX];
    size_t len;
    size_t chars;
} atom_acc_t;

static int atom_put(void *arg, uint32_t c)
{
    atom_acc_t *a = arg;
    if (a->chars == 255)
        return -EPROTO;     /* erl_scan: atom too long */
    a->len += term_int_utf8_encode(c, a->buf + a->len);
    a->chars++;
    return 0;
}

static void out_atom(term_buf_t *o, const atom_acc_t *a)
{
    out_u8(o, 118);   /* ATOM_UTF8_EXT */
    out_u8(o, (unsigned)(a->len >> 8));
    out_u8(o, (unsigned)(a->len & 0xFF));
    term_buf_append(o, a->buf, a->len);
}

static int name_start(uint32_t c)
{
    return (c >= 'a' && c <= 'z') || (c >= 0xDF && c <= 0xFF && c != 0xF7);
}

static int name_char(uint32_t c)
{
    return name_start(c) || (c >= 'A' && c <= 'Z') ||
           (c >= 0xC0 && c <= 0xDE && c != 0xD7) || is_digit((int)c) ||
           c == '_' || c == '@';
}

static int reserved_word(const char *w, size_t n)
{
    static const char *const words[] = {
        "after", "begin", "case", "try", "cond", "catch", "andalso", "orelse",
        "end", "fun", "if", "let", "of", "receive", "when", "bnot", "not",
        "div", "rem", "band", "and", "bor", "bxor", "bsl", "bsr", "or", "xor",
    };
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
        if (strlen(words[i]) == n && memcmp(words[i], w, n) == 0)
            return 1;
    return 0;
}

static int parse_name(ps_t *s)
{
    atom_acc_t a = { .len = 0, .chars = 0 };
    uint32_t c;
    size_t k;
    while ((k = peek_utf8(s, &c)) != 0 && name_char(c)) {
        int rc = atom_put(&a, c);
        if (rc < 0)
            return rc;
        s->pos += k;
    }
    if (reserved_word(a.buf, a.len))
        return -EPROTO;
    out_atom(s->o, &a);
    return 0;
}

static int parse_quoted_atom(ps_t *s)
{
    atom_acc_t a = { .len = 0, .chars = 0 };
    s->pos++;
    int rc = read_quoted(s, '\'', atom_put, &a);
    if (rc < 0)
        return rc;
    out_atom(s->o, &a);
    return 0;
}

/* ---- Numbers ---------------------------------------------------------- */

typedef struct num {
    int is_float;
    double d;
    int neg;
    uint32_t small[4];
    uint32_t *w;        /* small, or a heap array for large integers */
    size_t nw;
} num_t;

static void num_release(num_t *n)
{
    if (n->w != n->small)
        mem_free(n->w);
    n->w = n->small;
}

/* w = w * mul + add over nw limbs; returns the carry out. */
static uint32_t limbs_muladd(uint32_t *w, size_t nw, uint32_t mul, uint32_t add)
{
    uint64_t carry = add;
    for (size_t i = 0; i < nw; i++) {
        uint64_t v = (uint64_t)w[i] * mul + carry;
        w[i] = (uint32_t)v;
        carry = v >> 32;
    }
    return (uint32_t)carry;
}

/* Digits in base (underscores allowed between digits, as erl_scan does)
 * from s->pos into n. At least one digit is required. */
static int parse_digits(ps_t *s, unsigned base, num_t *n)
{
    size_t start = s->pos, nd = 0;
    while (!at_end(s)) {
        int c = s->t[s->pos];
        if ((unsigned)digit_val(c) < base) {
            nd++;
            s->pos++;
        } else if (c == '_' && nd > 0 && s->pos + 1 < s->len &&
                   (unsigned)digit_val(s->t[s->pos + 1]) < base &&
                   s->t[s->pos - 1] != '_') {
            s->pos++;
        } else {
            break;
        }
    }
    if (nd == 0)
        return -EPROTO;
    if (nd > PARSE_MAX_DIGITS)
        return -E2BIG;
    /* Each digit is at most log2(36) < 6 bits. */
    size_t cap = nd * 6 / 32 + 2;
    if (cap > sizeof n->small / sizeof n->small[0]) {
        n->w = mem_calloc(cap, sizeof *n->w);
        if (!n->w) {
            n->w = n->small;
            return -ENOMEM;
        }
    }
    memset(n->w, 0, sizeof *n->w * (cap > 4 ? cap : 4));
    n->nw = 0;
    uint64_t cmul = 1, cval = 0;
    for (size_t i = start; i < s->pos; i++) {
        if (s->t[i] == '_')
            continue;
        if (cmul * base > 0xFFFFFFFFu) {
            uint32_t carry = limbs_muladd(n->w, n->nw, (uint32_t)cmul, (uint32_t)cval);
            if (carry)
                n->w[n->nw++] = carry;
            cmul = 1;
            cval = 0;
        }
        cmul *= base;
        cval = cval * base + (uint64_t)digit_val(s->t[i]);
    }
    uint32_t carry = limbs_muladd(n->w, n->nw, (uint32_t)cmul, (uint32_t)cval);
    if (carry)
        n->w[n->nw++] = carry;
    return 0;
}

/* The fraction and exponent after "Digits." (s->pos at the '.'), as
 * erl_scan reads a float; converted with strtod. */
static int parse_float_tail(ps_t *s, size_t start, num_t *n)
{
    char buf[PARSE_MAX_FLOAT + 1];
    size_t bl = 0;
    s->pos++;   /* the '.' */
    while (!at_end(s) && (is_digit(s->t[s->pos]) ||
           (s->t[s->pos] == '_' && s->pos + 1 < s->len && is_digit(s->t[s->pos + 1]) &&
            is_digit(s->t[s->pos - 1]))))
        s->pos++;
    if (s->len - s->pos >= 2 && (s->t[s->pos] == 'e' || s->t[s->pos] == 'E')) {
        size_t e = s->pos + 1;
        if (e < s->len && (s->t[e] == '+' || s->t[e] == '-'))
            e++;
        if (e < s->len && is_digit(s->t[e])) {
            s->pos = e;
            while (!at_end(s) && (is_digit(s->t[s->pos]) ||
                   (s->t[s->pos] == '_' && s->pos + 1 < s->len &&
                    is_digit(s->t[s->pos + 1]) && is_digit(s->t[s->pos - 1]))))
                s->pos++;
        }
    }
    for (size_t i = start; i < s->pos; i++) {
        if (s->t[i] == '_')
            continue;
        if (bl == PARSE_MAX_FLOAT)
            return -E2BIG;
        buf[bl++] = (char)s->t[i];
    }
    buf[bl] = 0;
    char *end;
    double d = strtod(buf, &end);
    if (*end != 0 || !isfinite(d))
        return -EPROTO;   /* erl_scan: illegal float */
    n->is_float = 1;
    n->d = d;
    return 0;
}

/* An unsigned number at s->pos: decimal or Base#Digits integer, float, or
 * $c character. */
static int parse_unsigned(ps_t *s, num_t *n)
{
    n->is_float = 0;
    n->w = n->small;
    n->nw = 0;
    if (peek(s) == '$') {
        s->pos++;
        uint32_t c;
        int rc = read_char(s, &c);
        if (rc < 0)
            return rc;
        n->small[0] = c;
        n->nw = 1;
        return 0;
    }
    size_t start = s->pos;
    int rc = parse_digits(s, 10, n);
    if (rc < 0)
        return rc;
    if (peek(s) == '#') {
        /* The base is the decimal number before '#': 2..36. */
        if (n->nw > 1 || n->w[0] < 2 || n->w[0] > 36)
            return -EPROTO;
        unsigned base = n->w[0];
        s->pos++;
        num_release(n);
        return parse_digits(s, base, n);
    }
    if (s->len - s->pos >= 2 && s->t[s->pos] == '.' && is_digit(s->t[s->pos + 1])) {
        num_release(n);
        return parse_float_tail(s, start, n);
    }
    return 0;
}

/* erl_parse:parse_term/1 folds one unary + or - into a number literal. */
static int parse_number(ps_t *s)
{
    int neg = 0;
    if (peek(s) == '-' || peek(s) == '+') {
        neg = peek(s) == '-';
        s->pos++;
        skip_ws(s);
        if (peek(s) != '$' && !is_digit(peek(s)))
            return -EPROTO;
    }
    num_t n;
    int rc = parse_unsigned(s, &n);
    if (rc < 0) {
        num_release(&n);
        return rc;
    }
    if (n.is_float) {
        double d = neg ? -n.d : n.d;
        uint64_t bits;
        memcpy(&bits, &d, sizeof bits);
        out_u8(s->o, 70);
        out_be32(s->o, (uint32_t)(bits >> 32));
        out_be32(s->o, (uint32_t)bits);
    } else {
        out_integer(s->o, neg, n.w, n.nw);
    }
    num_release(&n);
    return 0;
}

/* ---- Strings and binaries --------------------------------------------- */

typedef struct list_acc {
    term_buf_t *o;
    uint32_t count;
} list_acc_t;

static int list_put(void *arg, uint32_t c)
{
    list_acc_t *l = arg;
    if (l->count == UINT32_MAX)
        return -E2BIG;
    out_char(l->o, c);
    l->count++;
    return 0;
}

/* A string value: a list of character codes. */
static int parse_string(ps_t *s)
{
    size_t hdr = s->o->len;
    out_u8(s->o, 108);
    out_be32(s->o, 0);
    list_acc_t l = { s->o, 0 };
    int rc = read_strings(s, list_put, &l);
    if (rc < 0)
        return rc;
    if (l.count == 0) {
        if (s->o->err == 0)
            s->o->len = hdr;
    } else {
        patch_be32(s->o, hdr + 1, l.count);
    }
    out_u8(s->o, 106);
    return 0;
}

typedef struct bits {
    term_buf_t b;
    uint64_t nbits;
} bits_t;

static void bits_put(bits_t *bs, uint64_t v, unsigned size)
{
    for (unsigned i = size; i-- > 0;) {
        if (bs->nbits % 8 == 0) {
            unsigned char z = 0;
            term_buf_append(&bs->b, &z, 1);
            if (bs->b.err)
                return;
        }
        if ((v >> i) & 1)
            bs->b.data[bs->b.len - 1] |= (char)(0x80 >> (bs->nbits % 8));
        bs->nbits++;
    }
}

static int bits_char(void *arg, uint32_t c)
{
    bits_put(arg, c & 0xFF, 8);
    return 0;
}

/* An integer literal inside << >>, which must fit in 64 bits. */
static int parse_small_int(ps_t *s, int64_t *v)
{
    int neg = 0;
    if (peek(s) == '-' || peek(s) == '+') {
        neg = peek(s) == '-';
        s->pos++;
        skip_ws(s);
    }
    if (peek(s) != '$' && !is_digit(peek(s)))
        return -EPROTO;
    num_t n;
    int rc = parse_unsigned(s, &n);
    if (rc == 0 && n.is_float)
        rc = -EPROTO;
    size_t nw = n.nw;
    while (rc == 0 && nw > 0 && n.w[nw - 1] == 0)
        nw--;
    if (rc == 0 && nw > 2)
        rc = -E2BIG;
    if (rc == 0) {
        uint64_t m = nw == 0 ? 0 : nw == 1 ? n.w[0] : (uint64_t)n.w[1] << 32 | n.w[0];
        if (m > (uint64_t)INT64_MAX)
            rc = -E2BIG;
        else
            *v = neg ? -(int64_t)m : (int64_t)m;
    }
    num_release(&n);
    return rc;
}

/* << Elements >>: strings, and integers with an optional :Size in bits;
 * s->pos is at the first '<'. */
static int parse_binary(ps_t *s)
{
    bits_t bs = { .nbits = 0 };
    term_buf_init(&bs.b);
    int rc = 0;
    s->pos += 2;
    skip_ws(s);
    if (s->len - s->pos >= 2 && s->t[s->pos] == '>' && s->t[s->pos + 1] == '>') {
        s->pos += 2;
        goto done;
    }
    for (;;) {
        skip_ws(s);
        if (peek(s) == '"') {
            if ((rc = read_strings(s, bits_char, &bs)) < 0)
                goto out;
        } else {
            int64_t v, size = 8;
            if ((rc = parse_small_int(s, &v)) < 0)
                goto out;
            skip_ws(s);
            if (peek(s) == ':') {
                s->pos++;
                skip_ws(s);
                if ((rc = parse_small_int(s, &size)) < 0)
                    goto out;
                if (size < 0) {
                    rc = -EPROTO;
                    goto out;
                }
                if (size > PARSE_MAX_BITS) {
                    rc = -E2BIG;
                    goto out;
                }
            }
            bits_put(&bs, (uint64_t)v, (unsigned)size);
        }
        if (bs.b.err) {
            rc = bs.b.err;
            goto out;
        }
        skip_ws(s);
        if (peek(s) == ',') {
            s->pos++;
            continue;
        }
        if (s->len - s->pos >= 2 && s->t[s->pos] == '>' && s->t[s->pos + 1] == '>') {
            s->pos += 2;
            break;
        }
        rc = -EPROTO;
        goto out;
    }
done:
    if (bs.nbits > UINT32_MAX) {
        rc = -E2BIG;
        goto out;
    }
    if (bs.nbits % 8 == 0) {
        out_u8(s->o, 109);
        out_be32(s->o, (uint32_t)bs.b.len);
    } else {
        out_u8(s->o, 77);
        out_be32(s->o, (uint32_t)bs.b.len);
        out_u8(s->o, (unsigned)(bs.nbits % 8));
    }
    term_buf_append(s->o, bs.b.data, bs.b.len);
out:
    term_buf_release(&bs.b);
    return rc;
}

/* ---- Maps: later keys win, as in maps:from_list/1 --------------------- */

/* Skips one term of the plain encoding this file writes. Iterative: the
 * number of terms still to skip replaces recursion. */
static size_t plain_skip(const unsigned char *p, size_t at)
{
    uint64_t todo = 1;
    while (todo--) {
        switch (p[at]) {
        case 97: at += 2; break;
        case 98: at += 5; break;
        case 70: at += 9; break;
        case 106: at += 1; break;
        case 110: at += 3 + (size_t)p[at + 1]; break;
        case 111: at += 6 + (size_t)((uint32_t)p[at + 1] << 24 | (uint32_t)p[at + 2] << 16 |
                                     (uint32_t)p[at + 3] << 8 | p[at + 4]); break;
        case 118: at += 3 + (size_t)((uint32_t)p[at + 1] << 8 | p[at + 2]); break;
        case 109:
        case 77: {
            size_t n = (uint32_t)p[at + 1] << 24 | (uint32_t)p[at + 2] << 16 |
                       (uint32_t)p[at + 3] << 8 | p[at + 4];
            at += (p[at] == 109 ? 5 : 6) + n;
            break;
        }
        case 105:
        case 108:
        case 116: {
            uint64_t n = (uint32_t)p[at + 1] << 24 | (uint32_t)p[at + 2] << 16 |
                         (uint32_t)p[at + 3] << 8 | p[at + 4];
            todo += p[at] == 105 ? n : p[at] == 108 ? n + 1 : 2 * n;
            at += 5;
            break;
        }
        default:
            return at;  /* unreachable: only the tags above are written */
        }
    }
    return at;
}

typedef struct pair {
    size_t kstart, vend;     /* in the plain encoding */
    size_t cstart, clen;     /* canonical key in the scratch buffer */
    uint32_t idx;
} pair_t;

/* Orders pairs by canonical key bytes, then by position; arg is the
 * buffer the canonical keys are in. */
static int pair_cmp(const void *a, const void *b, void *arg)
{
    const pair_t *x = a, *y = b;
    const char *sort_base = arg;
    if (x->clen != y->clen)
        return x->clen < y->clen ? -1 : 1;
    int c = memcmp(sort_base + x->cstart, sort_base + y->cstart, x->clen);
    if (c)
        return c;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

static int pair_idx_cmp(const void *a, const void *b)
{
    const pair_t *x = a, *y = b;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/* Drops pairs whose key is =:= a later key, and sets the map's arity. */
static int close_map(ps_t *s, frame_t *f)
{
    term_buf_t *o = s->o;
    if (o->err)
        return o->err;
    if (f->count < 2) {
        patch_be32(o, f->hdr + 1, f->count);
        return 0;
    }
    int rc = 0;
    term_buf_t keys, body;
    term_buf_init(&keys);
    term_buf_init(&body);
    pair_t *pairs = mem_calloc(f->count, sizeof *pairs);
    if (!pairs)
        return -ENOMEM;
    const unsigned char *p = (const unsigned char *)o->data;
    size_t at = f->hdr + 5;
    for (uint32_t i = 0; i < f->count; i++) {
        size_t kend = plain_skip(p, at), used;
        pairs[i].kstart = at;
        pairs[i].idx = i;
        pairs[i].cstart = keys.len;
        if ((rc = term_canon_inner(p + at, kend - at, &used, &keys)) < 0)
            goto out;
        pairs[i].clen = keys.len - pairs[i].cstart;
        at = plain_skip(p, kend);
        pairs[i].vend = at;
    }
    qsort_r(pairs, f->count, sizeof *pairs, pair_cmp, keys.data);
    uint32_t kept = 0;
    for (uint32_t i = 0; i < f->count; i++) {
        int dup = i + 1 < f->count && pairs[i + 1].clen == pairs[i].clen &&
                  memcmp(keys.data + pairs[i].cstart, keys.data + pairs[i + 1].cstart,
                         pairs[i].clen) == 0;
        if (!dup)
            pairs[kept++] = pairs[i];
    }
    if (kept < f->count) {
        qsort(pairs, kept, sizeof *pairs, pair_idx_cmp);
        for (uint32_t i = 0; i < kept; i++)
            term_buf_append(&body, p + pairs[i].kstart, pairs[i].vend - pairs[i].kstart);
        if (body.err) {
            rc = body.err;
            goto out;
        }
        o->len = f->hdr + 5;
        term_buf_append(o, body.data, body.len);
    }
    patch_be32(o, f->hdr + 1, kept);
out:
    mem_free(pairs);
    term_buf_release(&keys);
    term_buf_release(&body);
    return rc;
}

/* ---- The parser ------------------------------------------------------- */

static int push(ps_t *s, int kind, int state, unsigned tag)
{
    if (s->depth >= TERM_MAX_DEPTH)
        return -E2BIG;
    frame_t *f = &s->stk[s->depth++];
    f->kind = (unsigned char)kind;
    f->state = (unsigned char)state;
    f->extra = 0;
    f->count = 0;
    f->hdr = s->o->len;
    out_u8(s->o, tag);
    out_be32(s->o, 0);
    return 0;
}

/* The ']' that closes a list has been read: read the ']' of every list
 * that continued it after '|', end it with [] unless a tail was given,
 * and set its length. */
static int close_list(ps_t *s, frame_t *f, int nil)
{
    for (uint32_t i = 0; i < f->extra; i++)
        if (expect(s, ']') < 0)
            return -EPROTO;
    if (nil)
        out_u8(s->o, 106);
    patch_be32(s->o, f->hdr + 1, f->count);
    s->depth--;
    return 0;
}

/* Parses one term at s->pos into s->o. */
static int parse_term(ps_t *s)
{
    int rc;
    uint32_t c;
value:
    skip_ws(s);
    if (at_end(s))
        return -EPROTO;
    switch (s->t[s->pos]) {
    case '{':
        s->pos++;
        if ((rc = push(s, F_TUPLE, S_ELEM, 105)) < 0)
            return rc;
        skip_ws(s);
        if (peek(s) == '}') {
            s->pos++;
            s->depth--;
            goto after;
        }
        goto value;
    case '[':
        s->pos++;
        skip_ws(s);
        if (peek(s) == ']') {
            s->pos++;
            out_u8(s->o, 106);
            goto after;
        }
        if ((rc = push(s, F_LIST, S_ELEM, 108)) < 0)
            return rc;
        goto value;
    case '#':
        s->pos++;
        if ((rc = expect(s, '{')) < 0)
            return rc;
        if ((rc = push(s, F_MAP, S_KEY, 116)) < 0)
            return rc;
        skip_ws(s);
        if (peek(s) == '}') {
            s->pos++;
            s->depth--;
            goto after;
        }
        goto value;
    case '<':
        if (s->len - s->pos < 2 || s->t[s->pos + 1] != '<')
            return -EPROTO;
        if ((rc = parse_binary(s)) < 0)
            return rc;
        goto after;
    case '"':
        if ((rc = parse_string(s)) < 0)
            return rc;
        goto after;
    case '\'':
        if ((rc = parse_quoted_atom(s)) < 0)
            return rc;
        goto after;
    case '$': case '-': case '+':
    case '0': case '1': case '2': case '3': case '4':
    case '5': case '6': case '7': case '8': case '9':
        if ((rc = parse_number(s)) < 0)
            return rc;
        goto after;
    default:
        if (peek_utf8(s, &c) == 0 || !name_start(c))
            return -EPROTO;
        if ((rc = parse_name(s)) < 0)
            return rc;
        goto after;
    }

after:
    if (s->o->err)
        return s->o->err;
    if (s->depth == 0)
        return 0;
    {
        frame_t *f = &s->stk[s->depth - 1];
        skip_ws(s);
        int ch = peek(s);
        switch (f->kind) {
        case F_TUPLE:
            f->count++;
            if (ch == ',') {
                s->pos++;
                goto value;
            }
            if (ch == '}') {
                s->pos++;
                patch_be32(s->o, f->hdr + 1, f->count);
                s->depth--;
                goto after;
            }
            break;
        case F_LIST:
            if (f->state == S_TAIL) {
                if (ch != ']')
                    break;
                s->pos++;
                if ((rc = close_list(s, f, 0)) < 0)
                    return rc;
                goto after;
            }
            f->count++;
            if (ch == ',') {
                s->pos++;
                goto value;
            }
            if (ch == ']') {
                s->pos++;
                if ((rc = close_list(s, f, 1)) < 0)
                    return rc;
                goto after;
            }
            if (ch == '|') {
                s->pos++;
                skip_ws(s);
                if (peek(s) == '[') {
                    /* [A|[B...]] is [A,B...]: continue this list. */
                    s->pos++;
                    f->extra++;
                    skip_ws(s);
                    if (peek(s) == ']') {
                        s->pos++;
                        if ((rc = close_list(s, f, 1)) < 0)
                            return rc;
                        goto after;
                    }
                    goto value;
                }
                if (peek(s) == '"') {
                    list_acc_t l = { s->o, f->count };
                    if ((rc = read_strings(s, list_put, &l)) < 0)
                        return rc;
                    f->count = l.count;
                    if ((rc = expect(s, ']')) < 0)
                        return rc;
                    if ((rc = close_list(s, f, 1)) < 0)
                        return rc;
                    goto after;
                }
                f->state = S_TAIL;
                goto value;
            }
            break;
        case F_MAP:
            if (f->state == S_KEY) {
                if (s->len - s->pos >= 2 && s->t[s->pos] == '=' && s->t[s->pos + 1] == '>') {
                    s->pos += 2;
                    f->state = S_VAL;
                    goto value;
                }
                break;
            }
            f->count++;
            f->state = S_KEY;
            if (ch == ',') {
                s->pos++;
                goto value;
            }
            if (ch == '}') {
                s->pos++;
                if ((rc = close_map(s, f)) < 0)
                    return rc;
                s->depth--;
                goto after;
            }
            break;
        }
        return -EPROTO;
    }
}

/* Parses one term at s->pos and appends its canonical encoding to out. */
static int parse_canon(ps_t *s, term_buf_t *out)
{
    frame_t stk[TERM_MAX_DEPTH];
    term_buf_t plain;
    term_buf_init(&plain);
    s->o = &plain;
    s->stk = stk;
    s->depth = 0;
    int rc = parse_term(s);
    if (rc == 0 && plain.err)
        rc = plain.err;
    if (rc == 0) {
        size_t used;
        rc = term_canon_inner(plain.data, plain.len, &used, out);
        if (rc == 0 && used != plain.len)
            rc = -EPROTO;   /* cannot happen: the plain form is one term */
    }
    term_buf_release(&plain);
    return rc;
}

int term_parse(const char *text, size_t len, size_t *used, term_buf_t *out)
{
    if ((!text && len) || !out)
        return -EINVAL;
    if (out->err)
        return out->err;
    size_t start = out->len;
    ps_t s = { .t = (const unsigned char *)text, .len = len, .pos = 0 };
    skip_ws(&s);
    int rc = parse_canon(&s, out);
    if (used)
        *used = s.pos;
    if (rc < 0 && out->err == 0)
        out->len = start;
    return rc;
}

int term_consult(const char *text, size_t len, term_buf_t *out, size_t *count)
{
    if ((!text && len) || !out)
        return -EINVAL;
    if (out->err)
        return out->err;
    size_t start = out->len, n = 0;
    ps_t s = { .t = (const unsigned char *)text, .len = len, .pos = 0 };
    int rc = 0;
    for (;;) {
        skip_ws(&s);
        if (at_end(&s))
            break;
        if ((rc = parse_canon(&s, out)) < 0)
            break;
        /* erl_scan: a dot ends a form only before white space, % or the end. */
        skip_ws(&s);
        if (peek(&s) != '.') {
            rc = -EPROTO;
            break;
        }
        s.pos++;
        if (!at_end(&s) && !white_len(&s) && s.t[s.pos] != '%') {
            rc = -EPROTO;
            break;
        }
        n++;
    }
    if (rc < 0) {
        if (out->err == 0)
            out->len = start;
        return rc;
    }
    if (count)
        *count = n;
    return 0;
}
