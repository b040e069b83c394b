/* term_text_tool: drives term_print(), term_parse() and term_consult()
 * from term_text_SUITE, so BEAM can check the C text layer against
 * erl_parse, io_lib and file:consult.
 *
 *   term_text_tool print   IN OUT   IN: records of term_to_binary bytes
 *   term_text_tool parse   IN OUT   IN: records of Erlang text
 *   term_text_tool consult IN OUT   IN: a file:consult/1 text file
 *
 * A record is a 4-byte big-endian length and that many bytes. OUT holds one
 * result per input record: a 4-byte big-endian status (0 or a negative
 * errno) and a record (the text printed, or the canonical encoding without
 * the 131). For consult, OUT is the status, then one record per term. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "term/mem.h"
#include "term/term.h"

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 1 << 16, n = 0, r;
    char *buf = malloc(cap);
    while (buf && (r = fread(buf + n, 1, cap - n, f)) > 0) {
        n += r;
        if (n == cap) {
            char *nb = realloc(buf, cap *= 2);
            if (!nb) {
                free(buf);
                buf = NULL;
            }
            buf = nb;
        }
    }
    fclose(f);
    *len = n;
    return buf;
}

static void put_be32(term_buf_t *o, uint32_t v)
{
    unsigned char b[4] = { (unsigned char)(v >> 24), (unsigned char)(v >> 16),
                           (unsigned char)(v >> 8), (unsigned char)v };
    term_buf_append(o, b, 4);
}

static void put_result(term_buf_t *o, int rc, const void *p, size_t n)
{
    put_be32(o, (uint32_t)rc);
    put_be32(o, (uint32_t)n);
    term_buf_append(o, p, n);
}

/* One term_to_binary record: printed directly when plain, after
 * term_canon() when compressed (term_print takes uncompressed bytes). */
static int print_one(const unsigned char *p, size_t n, term_buf_t *txt)
{
    if (n < 2 || p[0] != TERM_VERSION_MAGIC)
        return -EPROTO;
    if (p[1] != 80)
        return term_print(p + 1, n - 1, txt);
    term_buf_t canon;
    term_buf_init(&canon);
    int rc = term_canon(p, n, &canon);
    if (rc == 0)
        rc = term_print(canon.data, canon.len, txt);
    term_buf_release(&canon);
    return rc;
}

static int parse_one(const unsigned char *p, size_t n, term_buf_t *out)
{
    size_t used;
    int rc = term_parse((const char *)p, n, &used, out);
    if (rc == 0 && used != n) {
        out->len = 0;
        rc = -EPROTO;
    }
    return rc;
}

static int each_record(const char *in, size_t len, term_buf_t *out,
                       int (*fn)(const unsigned char *, size_t, term_buf_t *))
{
    const unsigned char *p = (const unsigned char *)in;
    size_t pos = 0;
    term_buf_t res;
    term_buf_init(&res);
    while (pos < len) {
        if (len - pos < 4)
            return -EPROTO;
        size_t n = (size_t)p[pos] << 24 | (size_t)p[pos + 1] << 16 |
                   (size_t)p[pos + 2] << 8 | p[pos + 3];
        pos += 4;
        if (len - pos < n)
            return -EPROTO;
        term_buf_reset(&res);
        int rc = fn(p + pos, n, &res);
        put_result(out, rc, rc == 0 ? res.data : NULL, rc == 0 ? res.len : 0);
        pos += n;
    }
    term_buf_release(&res);
    return out->err;
}

static int consult(const char *in, size_t len, term_buf_t *out)
{
    term_buf_t terms;
    term_buf_init(&terms);
    size_t count = 0;
    int rc = term_consult(in, len, &terms, &count);
    put_be32(out, (uint32_t)rc);
    for (size_t i = 0, pos = 0; rc == 0 && i < count; i++) {
        size_t used;
        if (term_skip(terms.data + pos, terms.len - pos, &used) < 0)
            return -EPROTO;
        put_be32(out, (uint32_t)used);
        term_buf_append(out, terms.data + pos, used);
        pos += used;
    }
    term_buf_release(&terms);
    return out->err;
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
        fprintf(stderr, "usage: %s print|parse|consult IN OUT\n", argv[0]);
        return 2;
    }
    size_t len;
    char *in = read_file(argv[2], &len);
    if (!in) {
        perror(argv[2]);
        return 1;
    }
    term_buf_t out;
    term_buf_init(&out);
    int rc;
    if (strcmp(argv[1], "print") == 0)
        rc = each_record(in, len, &out, print_one);
    else if (strcmp(argv[1], "parse") == 0)
        rc = each_record(in, len, &out, parse_one);
    else if (strcmp(argv[1], "consult") == 0)
        rc = consult(in, len, &out);
    else
        rc = -EINVAL;
    free(in);
    if (rc < 0) {
        fprintf(stderr, "%s: %s\n", argv[1], strerror(-rc));
        term_buf_release(&out);
        return 1;
    }
    FILE *f = fopen(argv[3], "wb");
    if (!f || fwrite(out.data, 1, out.len, f) != out.len || fclose(f) != 0) {
        perror(argv[3]);
        term_buf_release(&out);
        return 1;
    }
    term_buf_release(&out);
    return 0;
}
