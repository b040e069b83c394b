/* store_port.c: a port program ({packet, 4}) that runs ets calls on one
 * memory-only store, so Common Test can apply the same operations to real
 * ETS and to store/ and compare. Each request is term_to_binary({Fun,
 * Args}); each reply is {ok, Result}, {error, badarg}, {error, undef} or
 * {error, {errno, N}}. Usage: store_port [--node NAME] */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store/store.h"
#include "term/mem.h"

static int read_full(int fd, void *buf, size_t n)
{
    char *p = buf;
    while (n > 0) {
        ssize_t r = read(fd, p, n);
        if (r <= 0)
            return -1;
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

static int write_full(int fd, const void *buf, size_t n)
{
    const char *p = buf;
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static void put_error(term_buf_t *out, const char *why)
{
    term_put_tuple(out, 2);
    term_put_atom(out, "error");
    term_put_atom(out, why);
}

/* Answers one request in out (with version byte). */
static void handle(store_t *s, const char *req, size_t len, term_buf_t *out)
{
    term_reader_t r;
    char fun[TERM_ATOM_MAX];
    uint32_t arity;
    const char *args;
    size_t alen;
    term_reader_init(&r, req, len);
    term_put_version(out);
    if (term_get_version(&r) < 0 || term_get_tuple(&r, &arity) < 0 || arity != 2 ||
        term_get_atom(&r, fun) < 0 || term_get_any(&r, &args, &alen) < 0) {
        put_error(out, "bad_request");
        return;
    }
    size_t mark = out->len;
    term_put_tuple(out, 2);
    term_put_atom(out, "ok");
    int rc = store_ets_call(s, fun, args, alen, out);
    if (rc == 0)
        return;
    out->len = mark;
    if (rc == -EINVAL) {
        put_error(out, "badarg");
    } else if (rc == -ENOENT) {
        put_error(out, "undef");
    } else {
        term_put_tuple(out, 2);
        term_put_atom(out, "error");
        term_put_tuple(out, 2);
        term_put_atom(out, "errno");
        term_put_long(out, -rc);
    }
}

int main(int argc, char **argv)
{
    store_t *s;
    /* ETSD_OTP_RELEASE: the release of the BEAM node the suite compares with */
    const char *rel = getenv("ETSD_OTP_RELEASE");
    if (rel && term_set_otp_release(atoi(rel)) < 0) {
        fprintf(stderr, "bad ETSD_OTP_RELEASE %s\n", rel);
        return 2;
    }
    /* --node NAME: what node() and ets:info(T, node) answer */
    if (argc == 3 && strcmp(argv[1], "--node") == 0)
        store_set_node(argv[2]);
    if (store_new(&s) < 0)
        return 1;
    term_buf_t out;
    term_buf_init(&out);
    char *req = NULL;
    size_t cap = 0;
    for (;;) {
        unsigned char hdr[4];
        if (read_full(0, hdr, 4) < 0)
            break;
        size_t n = ((size_t)hdr[0] << 24) | ((size_t)hdr[1] << 16) |
                   ((size_t)hdr[2] << 8) | hdr[3];
        if (n > cap) {
            char *nr = realloc(req, n);
            if (!nr)
                break;
            req = nr;
            cap = n;
        }
        if (read_full(0, req, n) < 0)
            break;
        term_buf_reset(&out);
        handle(s, req, n, &out);
        if (out.err)
            break;
        unsigned char h[4] = {(unsigned char)(out.len >> 24), (unsigned char)(out.len >> 16),
                              (unsigned char)(out.len >> 8), (unsigned char)out.len};
        if (write_full(1, h, 4) < 0 || write_full(1, out.data, out.len) < 0)
            break;
    }
    free(req);
    term_buf_release(&out);
    store_free(s);
    return 0;
}
