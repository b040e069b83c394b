/* term_tool: drives term_canon(), term_compare() and term_hash() from
 * term_SUITE, so BEAM can check the C codec against binary_to_term and
 * lists:sort/1.
 *
 *   term_tool canon IN OUT  IN: records of term_to_binary bytes (any options).
 *                           OUT per record: status (4 bytes, 0 or a negative
 *                           errno), a record with the canonical bytes
 *                           (without 131), then term_hash of them (8 bytes).
 *   term_tool cmp IN OUT    IN: pairs of records (uncompressed
 *                           term_to_binary). OUT: one signed byte per pair,
 *                           -1, 0 or 1 as term_compare orders them.
 *   term_tool sort IN OUT   IN: groups, each a 4-byte count N and N records.
 *                           OUT per group: N 4-byte indexes, the group
 *                           stably sorted with term_compare.
 *
 * A record is a 4-byte big-endian length and that many bytes. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "term/mem.h"
#include "term/term.h"

typedef struct rd {
    const unsigned char *p;
    size_t len, pos;
} rd_t;

static int rd_u32(rd_t *r, uint32_t *v)
{
    if (r->len - r->pos < 4)
        return -1;
    const unsigned char *p = r->p + r->pos;
    *v = ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
    r->pos += 4;
    return 0;
}

static int rd_rec(rd_t *r, const unsigned char **p, size_t *n)
{
    uint32_t len;
    if (rd_u32(r, &len) < 0 || r->len - r->pos < len)
        return -1;
    *p = r->p + r->pos;
    *n = len;
    r->pos += len;
    return 0;
}

static void wr_u32(FILE *f, uint32_t v)
{
    unsigned char b[4] = {(unsigned char)(v >> 24), (unsigned char)(v >> 16),
                          (unsigned char)(v >> 8), (unsigned char)v};
    fwrite(b, 1, 4, f);
}

static unsigned char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 1 << 16, n = 0, r;
    unsigned char *buf = malloc(cap);
    while (buf && (r = fread(buf + n, 1, cap - n, f)) > 0) {
        n += r;
        if (n == cap) {
            unsigned char *nb = realloc(buf, cap *= 2);
            if (!nb)
                free(buf);
            buf = nb;
        }
    }
    fclose(f);
    *len = n;
    return buf;
}

static int do_canon(rd_t *r, FILE *out)
{
    term_buf_t b;
    term_buf_init(&b);
    while (r->pos < r->len) {
        const unsigned char *p;
        size_t n;
        if (rd_rec(r, &p, &n) < 0)
            return -1;
        term_buf_reset(&b);
        int rc = term_canon(p, n, &b);
        wr_u32(out, (uint32_t)rc);
        wr_u32(out, rc == 0 ? (uint32_t)b.len : 0);
        if (rc == 0)
            fwrite(b.data, 1, b.len, out);
        uint64_t h = rc == 0 ? term_hash(b.data, b.len) : 0;
        wr_u32(out, (uint32_t)(h >> 32));
        wr_u32(out, (uint32_t)h);
    }
    term_buf_release(&b);
    return 0;
}

/* Compares terms given as term_to_binary bytes: skip the 131. */
static int cmp_ext(const unsigned char *a, size_t an, const unsigned char *b, size_t bn)
{
    int c = term_compare(a + 1, an - 1, b + 1, bn - 1);
    return (c > 0) - (c < 0);
}

static int do_cmp(rd_t *r, FILE *out)
{
    while (r->pos < r->len) {
        const unsigned char *a, *b;
        size_t an, bn;
        if (rd_rec(r, &a, &an) < 0 || rd_rec(r, &b, &bn) < 0 || an < 1 || bn < 1)
            return -1;
        signed char s = (signed char)cmp_ext(a, an, b, bn);
        fwrite(&s, 1, 1, out);
    }
    return 0;
}

typedef struct item {
    const unsigned char *p;
    size_t n;
    uint32_t idx;
} item_t;

/* Merge sort: stable, like lists:sort/1 keeps equal elements in order. */
static void msort(item_t *v, item_t *tmp, size_t n)
{
    if (n < 2)
        return;
    size_t h = n / 2;
    msort(v, tmp, h);
    msort(v + h, tmp, n - h);
    size_t i = 0, j = h, k = 0;
    while (i < h && j < n)
        tmp[k++] = cmp_ext(v[j].p, v[j].n, v[i].p, v[i].n) < 0 ? v[j++] : v[i++];
    while (i < h)
        tmp[k++] = v[i++];
    while (j < n)
        tmp[k++] = v[j++];
    memcpy(v, tmp, n * sizeof *v);
}

static int do_sort(rd_t *r, FILE *out)
{
    while (r->pos < r->len) {
        uint32_t n;
        if (rd_u32(r, &n) < 0 || n > r->len)
            return -1;
        item_t *v = calloc(n ? n : 1, sizeof *v), *tmp = calloc(n ? n : 1, sizeof *v);
        if (!v || !tmp)
            return -1;
        for (uint32_t i = 0; i < n; i++) {
            if (rd_rec(r, &v[i].p, &v[i].n) < 0 || v[i].n < 1)
                return -1;
            v[i].idx = i;
        }
        msort(v, tmp, n);
        for (uint32_t i = 0; i < n; i++)
            wr_u32(out, v[i].idx);
        free(v);
        free(tmp);
    }
    return 0;
}

int main(int argc, char **argv)
{
    /* ETSD_OTP_RELEASE: the release of the BEAM node the suite compares with */
    const char *rel = getenv("ETSD_OTP_RELEASE");
    if (rel && term_set_otp_release(atoi(rel)) < 0) {
        fprintf(stderr, "bad ETSD_OTP_RELEASE %s\n", rel);
        return 2;
    }
    if (argc != 4) {
        fprintf(stderr, "usage: term_tool canon|cmp|sort IN OUT\n");
        return 2;
    }
    size_t len;
    unsigned char *in = read_all(argv[2], &len);
    if (!in) {
        perror(argv[2]);
        return 1;
    }
    FILE *out = fopen(argv[3], "wb");
    if (!out) {
        perror(argv[3]);
        return 1;
    }
    rd_t r = {.p = in, .len = len, .pos = 0};
    int rc;
    if (strcmp(argv[1], "canon") == 0)
        rc = do_canon(&r, out);
    else if (strcmp(argv[1], "cmp") == 0)
        rc = do_cmp(&r, out);
    else if (strcmp(argv[1], "sort") == 0)
        rc = do_sort(&r, out);
    else
        rc = -1;
    if (fclose(out) != 0)
        rc = -1;
    free(in);
    if (rc < 0) {
        fprintf(stderr, "term_tool %s: bad input\n", argv[1]);
        return 1;
    }
    return 0;
}
