/* format.c: term_format(), building a term from a template such as
 * "{forward_to_local,~s,{new,~t},'Elixir.Phoenix.PubSub'}" so that callers
 * never count arities or lengths by hand. Encoded terms given with ~t are
 * copied as they are, so a large table goes into a message by memcpy. */
#include "term/term.h"
#include "term/mem.h"

#include <errno.h>
#include <stdarg.h>
#include <string.h>

typedef struct fmt {
    const char *f;      /* the template, at the next character */
    term_buf_t *b;
    va_list ap;
} fmt_t;

static void skip_ws(fmt_t *s)
{
    while (*s->f == ' ' || *s->f == '\t' || *s->f == '\n' || *s->f == '\r')
        s->f++;
}

/* The number of elements of the structure whose opening bracket was just
 * consumed: top-level commas before the matching close, plus one, or 0
 * when it closes at once. -EINVAL for an unbalanced template. */
static long count_elems(const char *p, char close)
{
    int depth = 0;
    long commas = 0, any = 0;
    for (; *p; p++) {
        char c = *p;
        if (c == '\'') {
            for (p++; *p && *p != '\''; p++)
                if (*p == '\\' && p[1])
                    p++;
            if (!*p)
                return -EINVAL;
            any = 1;
        } else if (c == '{' || c == '[') {
            depth++;
            any = 1;
        } else if (c == '}' || c == ']') {
            if (depth == 0)
                return c == close ? (any ? commas + 1 : 0) : -EINVAL;
            depth--;
        } else if (c == ',' && depth == 0) {
            commas++;
        } else if (c != ' ' && c != '\t' && c != '\n' && c != '\r') {
            any = 1;
        }
    }
    return -EINVAL;
}

static int is_name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '_' || c == '@';
}

static int fmt_term(fmt_t *s, int depth);

/* After an element: ',' continues, close ends; anything else is -EINVAL. */
static int fmt_elems(fmt_t *s, long n, char close, int depth)
{
    for (long i = 0; i < n; i++) {
        int rc = fmt_term(s, depth + 1);
        if (rc < 0)
            return rc;
        skip_ws(s);
        if (i + 1 < n) {
            if (*s->f != ',')
                return -EINVAL;
            s->f++;
        }
    }
    skip_ws(s);
    if (*s->f != close)
        return -EINVAL;
    s->f++;
    return 0;
}

/* A proper list whose elements are all small integers is a STRING_EXT in
 * canonical form: rewrite the LIST_EXT just written at hdr. */
static void list_to_string(term_buf_t *b, size_t hdr, long n)
{
    if (b->err || n > 65535)
        return;
    const unsigned char *p = (const unsigned char *)b->data + hdr + 5;
    size_t body = b->len - hdr - 5 - 1;   /* without the final NIL */
    if (body != (size_t)n * 2)
        return;
    for (long i = 0; i < n; i++)
        if (p[2 * i] != 97)
            return;
    unsigned char *q = (unsigned char *)b->data + hdr;
    q[0] = 107;
    q[1] = (unsigned char)(n >> 8);
    q[2] = (unsigned char)n;
    for (long i = 0; i < n; i++)
        q[3 + i] = p[2 * i + 1];
    b->len = hdr + 3 + (size_t)n;
}

typedef struct span {
    size_t start, kend, end;
} span_t;

static int pair_order(term_buf_t *b, const span_t *x, const span_t *y)
{
    return term_compare(b->data + x->start, x->kend - x->start,
                        b->data + y->start, y->kend - y->start);
}

/* #{...}: pairs are written as given, then put in key order if they are
 * not (the caller may list keys in any order). */
static int fmt_map(fmt_t *s, int depth)
{
    long n = count_elems(s->f, '}');
    if (n < 0)
        return (int)n;
    term_put_map(s->b, (uint32_t)n);
    span_t *sp = n > 1 ? mem_calloc((size_t)n, sizeof *sp) : NULL;
    if (n > 1 && !sp) {
        if (s->b->err == 0)
            s->b->err = -ENOMEM;
        return -ENOMEM;
    }
    int rc = 0;
    for (long i = 0; i < n; i++) {
        if (sp)
            sp[i].start = s->b->len;
        if ((rc = fmt_term(s, depth + 1)) < 0)
            goto out;
        if (sp)
            sp[i].kend = s->b->len;
        skip_ws(s);
        if (s->f[0] != '=' || s->f[1] != '>') {
            rc = -EINVAL;
            goto out;
        }
        s->f += 2;
        if ((rc = fmt_term(s, depth + 1)) < 0)
            goto out;
        if (sp)
            sp[i].end = s->b->len;
        skip_ws(s);
        if (i + 1 < n) {
            if (*s->f != ',') {
                rc = -EINVAL;
                goto out;
            }
            s->f++;
        }
    }
    skip_ws(s);
    if (*s->f != '}') {
        rc = -EINVAL;
        goto out;
    }
    s->f++;
    if (!sp || s->b->err)
        goto out;
    /* Insertion sort on the spans: templates have a handful of keys. */
    int sorted = 1;
    for (long i = 1; i < n && sorted; i++)
        sorted = pair_order(s->b, &sp[i - 1], &sp[i]) <= 0;
    if (!sorted) {
        for (long i = 1; i < n; i++) {
            span_t t = sp[i];
            long j = i;
            while (j > 0 && pair_order(s->b, &sp[j - 1], &t) > 0) {
                sp[j] = sp[j - 1];
                j--;
            }
            sp[j] = t;
        }
        size_t lo = (size_t)-1, hi = 0;
        for (long i = 0; i < n; i++) {
            if (sp[i].start < lo)
                lo = sp[i].start;
            if (sp[i].end > hi)
                hi = sp[i].end;
        }
        char *tmp = mem_alloc(hi - lo);
        if (!tmp) {
            s->b->err = -ENOMEM;
            rc = -ENOMEM;
            goto out;
        }
        size_t at = 0;
        for (long i = 0; i < n; i++) {
            memcpy(tmp + at, s->b->data + sp[i].start, sp[i].end - sp[i].start);
            at += sp[i].end - sp[i].start;
        }
        memcpy(s->b->data + lo, tmp, hi - lo);
        mem_free(tmp);
    }
out:
    mem_free(sp);
    return rc;
}

static int fmt_quoted_atom(fmt_t *s)
{
    char name[TERM_ATOM_MAX];
    size_t n = 0;
    s->f++;
    while (*s->f && *s->f != '\'') {
        if (*s->f == '\\' && s->f[1])
            s->f++;
        if (n + 1 >= sizeof name)
            return -EINVAL;
        name[n++] = *s->f++;
    }
    if (*s->f != '\'')
        return -EINVAL;
    s->f++;
    term_put_atom_len(s->b, name, n);
    return 0;
}

static int fmt_directive(fmt_t *s)
{
    char d = s->f[1];
    s->f += 2;
    switch (d) {
    case 'a':
        term_put_atom(s->b, va_arg(s->ap, const char *));
        return 0;
    case 'i':
        term_put_long(s->b, va_arg(s->ap, int64_t));
        return 0;
    case 'u':
        term_put_ulong(s->b, va_arg(s->ap, uint64_t));
        return 0;
    case 'f':
        term_put_double(s->b, va_arg(s->ap, double));
        return 0;
    case 's': {
        const char *str = va_arg(s->ap, const char *);
        term_put_binary(s->b, str, strlen(str));
        return 0;
    }
    case 'b': {
        const void *p = va_arg(s->ap, const void *);
        size_t n = va_arg(s->ap, size_t);
        term_put_binary(s->b, p, n);
        return 0;
    }
    case 'p':
        term_put_pid(s->b, va_arg(s->ap, const term_pid_t *));
        return 0;
    case 'r':
        term_put_ref(s->b, va_arg(s->ap, const term_ref_t *));
        return 0;
    case 't': {
        const void *p = va_arg(s->ap, const void *);
        size_t n = va_arg(s->ap, size_t);
        term_put_raw(s->b, p, n);
        return 0;
    }
    default:
        return -EINVAL;
    }
}

static int fmt_term(fmt_t *s, int depth)
{
    if (depth > TERM_MAX_DEPTH)
        return -EINVAL;
    skip_ws(s);
    char c = *s->f;
    if (c == '{') {
        s->f++;
        long n = count_elems(s->f, '}');
        if (n < 0)
            return (int)n;
        term_put_tuple(s->b, (uint32_t)n);
        return fmt_elems(s, n, '}', depth);
    }
    if (c == '[') {
        s->f++;
        long n = count_elems(s->f, ']');
        if (n < 0)
            return (int)n;
        if (n == 0) {
            s->f = strchr(s->f, ']') + 1;
            term_put_nil(s->b);
            return 0;
        }
        size_t hdr = s->b->len;
        term_put_list(s->b, (uint32_t)n);
        int rc = fmt_elems(s, n, ']', depth);
        if (rc < 0)
            return rc;
        term_put_nil(s->b);
        list_to_string(s->b, hdr, n);
        return 0;
    }
    if (c == '#' && s->f[1] == '{') {
        s->f += 2;
        return fmt_map(s, depth);
    }
    if (c == '~')
        return fmt_directive(s);
    if (c == '\'')
        return fmt_quoted_atom(s);
    if (c >= 'a' && c <= 'z') {
        const char *start = s->f;
        while (is_name_char(*s->f))
            s->f++;
        term_put_atom_len(s->b, start, (size_t)(s->f - start));
        return 0;
    }
    if ((c >= '0' && c <= '9') || (c == '-' && s->f[1] >= '0' && s->f[1] <= '9')) {
        int neg = c == '-';
        if (neg)
            s->f++;
        uint64_t v = 0;
        while (*s->f >= '0' && *s->f <= '9') {
            uint64_t d = (uint64_t)(*s->f++ - '0');
            if (v > (UINT64_MAX - d) / 10)
                return -EINVAL;
            v = v * 10 + d;
        }
        if (neg) {
            if (v > (uint64_t)INT64_MAX + 1)
                return -EINVAL;
            term_put_long(s->b, v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v);
        } else {
            term_put_ulong(s->b, v);
        }
        return 0;
    }
    return -EINVAL;
}

int term_format(term_buf_t *b, const char *fmt, ...)
{
    if (!b || !fmt)
        return -EINVAL;
    if (b->err)
        return b->err;
    size_t start = b->len;
    fmt_t s = { .f = fmt, .b = b };
    va_start(s.ap, fmt);
    int rc = fmt_term(&s, 0);
    va_end(s.ap);
    if (rc == 0) {
        skip_ws(&s);
        if (*s.f)
            rc = -EINVAL;
    }
    /* An allocation failure wins over a template error, and stays sticky
     * in b; a template error leaves b as it was. */
    if (b->err)
        rc = b->err;
    if (rc < 0)
        b->len = start;
    return rc;
}
