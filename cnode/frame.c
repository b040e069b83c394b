/* frame.c: the byte buffer and the distribution frame parser (4-byte
 * big-endian length, then the body; length 0 is a tick). Pure: no sockets. */
#include "cnode/cnode_int.h"

#include <errno.h>
#include <string.h>

#include "term/mem.h"

void cbuf_init(cbuf_t *b)
{
    b->data = NULL;
    b->len = b->cap = 0;
}

void cbuf_release(cbuf_t *b)
{
    mem_free(b->data);
    cbuf_init(b);
}

int cbuf_put(cbuf_t *b, const void *p, size_t n)
{
    if (n > SIZE_MAX - b->len)
        return -ENOMEM;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->len + n)
            cap = cap > SIZE_MAX / 2 ? b->len + n : cap * 2;
        char *d = mem_realloc(b->data, cap);
        if (!d)
            return -ENOMEM;
        b->data = d;
        b->cap = cap;
    }
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

int cbuf_put8(cbuf_t *b, uint8_t v)
{
    return cbuf_put(b, &v, 1);
}

int cbuf_put16(cbuf_t *b, uint16_t v)
{
    uint8_t x[2] = {(uint8_t)(v >> 8), (uint8_t)v};
    return cbuf_put(b, x, 2);
}

int cbuf_put32(cbuf_t *b, uint32_t v)
{
    uint8_t x[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
    return cbuf_put(b, x, 4);
}

int cbuf_put64(cbuf_t *b, uint64_t v)
{
    int rc = cbuf_put32(b, (uint32_t)(v >> 32));
    return rc ? rc : cbuf_put32(b, (uint32_t)v);
}

void cbuf_consume(cbuf_t *b, size_t n)
{
    if (n >= b->len) {
        b->len = 0;
        return;
    }
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
}

int node_split_name(const char *node, char alive[HS_NAME_MAX], char host[HS_NAME_MAX])
{
    const char *at = strchr(node, '@');
    if (!at || strchr(at + 1, '@'))
        return -EINVAL;
    size_t a = (size_t)(at - node), h = strlen(at + 1);
    if (a == 0 || h == 0 || a >= HS_NAME_MAX || h >= HS_NAME_MAX)
        return -EINVAL;
    memcpy(alive, node, a);
    alive[a] = 0;
    memcpy(host, at + 1, h + 1);
    return 0;
}

/* ---- Frame parser ----------------------------------------------------- */

/* A frame body buffer starts at most this big and then grows with the
 * bytes that arrive, so a peer that announces 1 GiB and sends 10 bytes
 * costs 64 KiB, not 1 GiB. */
#define FRAME_FIRST_ALLOC (64 * 1024)

void frame_parser_init(frame_parser_t *fp, uint64_t max)
{
    memset(fp, 0, sizeof *fp);
    fp->max = max;
}

void frame_parser_release(frame_parser_t *fp)
{
    mem_free(fp->body);
    fp->body = NULL;
    fp->body_cap = fp->body_have = fp->body_len = 0;
    fp->hdr_have = 0;
    fp->in_body = 0;
}

int frame_feed(frame_parser_t *fp, const void *data, size_t len, size_t *used,
               const char **frame, size_t *flen)
{
    const char *p = data;
    size_t i = 0;
    *used = 0;
    if (fp->in_body && fp->body_have == fp->body_len) {
        /* The previous call returned this frame; start over. */
        fp->in_body = 0;
        fp->hdr_have = 0;
        fp->body_have = fp->body_len = 0;
        if (fp->body_cap > FRAME_FIRST_ALLOC) {
            /* Don't hold on to a 100 MB buffer after one big message. */
            mem_free(fp->body);
            fp->body = NULL;
            fp->body_cap = 0;
        }
    }
    while (!fp->in_body) {
        /* Fast path: a whole header and body in the input, no copy. */
        if (fp->hdr_have == 0 && len - i >= 4) {
            uint32_t n = get32(p + i);
            if (n > fp->max) {
                *used = i;
                return -EMSGSIZE;
            }
            if (len - i - 4 >= n) {
                *frame = p + i + 4;
                *flen = n;
                *used = i + 4 + n;
                return 1;
            }
        }
        if (i == len) {
            *used = i;
            return 0;
        }
        fp->hdr[fp->hdr_have++] = (uint8_t)p[i++];
        if (fp->hdr_have < 4)
            continue;
        uint32_t n = get32(fp->hdr);
        if (n > fp->max) {
            *used = i;
            fp->hdr_have = 0;
            return -EMSGSIZE;
        }
        if (n == 0) {
            fp->hdr_have = 0;
            *frame = "";
            *flen = 0;
            *used = i;
            return 1;
        }
        fp->in_body = 1;
        fp->body_len = n;
        fp->body_have = 0;
    }
    while (i < len) {
        size_t k = fp->body_len - fp->body_have;
        if (k > len - i)
            k = len - i;
        if (fp->body_have + k > fp->body_cap) {
            size_t cap = fp->body_cap ? fp->body_cap : FRAME_FIRST_ALLOC;
            while (cap < fp->body_have + k)
                cap *= 2;
            if (cap > fp->body_len)
                cap = fp->body_len;
            char *b = mem_realloc(fp->body, cap);
            if (!b) {
                *used = i;
                return -ENOMEM;
            }
            fp->body = b;
            fp->body_cap = cap;
        }
        memcpy(fp->body + fp->body_have, p + i, k);
        fp->body_have += k;
        i += k;
        if (fp->body_have == fp->body_len) {
            *frame = fp->body;
            *flen = fp->body_len;
            *used = i;
            return 1;
        }
    }
    *used = i;
    return 0;
}
