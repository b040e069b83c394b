/* tab2file.c: the file format of ets:tab2file/2,3 and ets:file2tab/1,2.
 * Such a file is a disk_log "halt" log in internal format (kernel's
 * disk_log_1.erl): an 8-byte head, then items <<Size:32, Magic:32,
 * [MD5 of Size], term_to_binary(T)>>. The first item is a tuple of
 * {Key, Value} pairs (ets:info/1 plus version and extended_info); objects
 * follow, and with extended_info the last item is
 * ['$end_of_table', [{count, N}, {md5, Digest}]] (stdlib's ets.erl). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/store_int.h"
#include "store/wal_int.h"
#include "term/md5.h"
#include "term/mem.h"

/* disk_log.hrl */
static const uint8_t DL_LOGMAGIC[4] = { 1, 2, 3, 4 };
static const uint8_t DL_OPENED[4] = { 6, 7, 8, 9 };
static const uint8_t DL_CLOSED[4] = { 99, 88, 77, 11 };
static const uint8_t DL_BIGMAGIC[4] = { 98, 87, 76, 65 };
static const uint8_t DL_MAGIC_V2[4] = { 12, 33, 44, 55 };  /* before 2(a) */
#define DL_HEADSZ      8
#define DL_HEADERSZ    8
#define DL_MIN_MD5_TERM 65528   /* items this big carry an MD5 of their size */

static void size_md5(uint32_t size, uint8_t out[16])
{
    uint8_t b[4] = { (uint8_t)(size >> 24), (uint8_t)(size >> 16),
                     (uint8_t)(size >> 8), (uint8_t)size };
    md5_ctx_t c;
    md5_init(&c);
    md5_update(&c, b, 4);
    md5_final(&c, out);
}

/* ---- Reading ----------------------------------------------------------- */

/* One disk_log item: the term_to_binary bytes. */
typedef struct dl_item {
    const uint8_t *p;
    size_t len;
} dl_item_t;

/* Reads the item at *off. Returns 1 with *it set, 0 at the end of the data,
 * or -EBADMSG with *why set. */
static int dl_next(const uint8_t *buf, size_t len, size_t *off, dl_item_t *it,
                   const char **why)
{
    size_t o = *off;
    if (o == len)
        return 0;
    if (len - o < DL_HEADERSZ) {
        *why = "truncated: file ends inside an item header";
        return -EBADMSG;
    }
    uint32_t size = ((uint32_t)buf[o] << 24) | ((uint32_t)buf[o + 1] << 16) |
                    ((uint32_t)buf[o + 2] << 8) | buf[o + 3];
    const uint8_t *magic = buf + o + 4;
    o += DL_HEADERSZ;
    if (!memcmp(magic, DL_BIGMAGIC, 4)) {
        if (size >= DL_MIN_MD5_TERM) {
            uint8_t want[16];
            if (len - o < 16) {
                *why = "truncated: file ends inside an item header";
                return -EBADMSG;
            }
            size_md5(size, want);
            if (memcmp(want, buf + o, 16)) {
                *why = "corrupt: item size does not match its MD5";
                return -EBADMSG;
            }
            o += 16;
        }
    } else if (memcmp(magic, DL_MAGIC_V2, 4)) {
        *why = "corrupt: bad item magic";
        return -EBADMSG;
    }
    if (len - o < size) {
        *why = "truncated: file ends inside an item";
        return -EBADMSG;
    }
    it->p = buf + o;
    it->len = size;
    *off = o + size;
    return 1;
}

/* What the header item declares. */
typedef struct t2f_header {
    char name[TERM_ATOM_MAX];
    char type[TERM_ATOM_MAX];
    int64_t keypos;
    int64_t size;
    int mandatory;      /* how many of the six mandatory tags were seen */
    int object_count;   /* extended_info */
    int md5sum;
    int64_t major;
    int protection;     /* as store_table_opts_t: 0 public, 1 protected, 2 private */
} t2f_header_t;

static int atom_is(term_reader_t *r, const char *want)
{
    char a[TERM_ATOM_MAX];
    term_reader_t save = *r;
    if (term_get_atom(r, a) == 0 && strcmp(a, want) == 0)
        return 1;
    *r = save;
    return 0;
}

/* Parses the header tuple (canonical bytes, no version byte), the way
 * ets:file2tab reads it: {Tag, Value} pairs in any order; other elements
 * are ignored. */
static int parse_header(const char *p, size_t len, t2f_header_t *h, const char **why)
{
    term_reader_t r;
    uint32_t arity;
    memset(h, 0, sizeof *h);
    term_reader_init(&r, p, len);
    if (term_get_tuple(&r, &arity) < 0) {
        *why = "header is not a tuple";
        return -EBADMSG;
    }
    int have_name = 0, have_type = 0, have_keypos = 0, have_size = 0;
    for (uint32_t i = 0; i < arity; i++) {
        term_reader_t e = r;
        uint32_t ea;
        char tag[TERM_ATOM_MAX];
        const char *skip;
        size_t skiplen;
        if (term_get_tuple(&e, &ea) < 0 || ea != 2 || term_get_atom(&e, tag) < 0) {
            if (term_get_any(&r, &skip, &skiplen) < 0)
                goto bad;
            continue;
        }
        static const char *const mandatory[] = {
            "name", "type", "protection", "named_table", "keypos", "size"
        };
        for (size_t k = 0; k < sizeof mandatory / sizeof *mandatory; k++)
            if (!strcmp(tag, mandatory[k]))
                h->mandatory++;
        if (!strcmp(tag, "name") && !have_name) {
            if (term_get_atom(&e, h->name) < 0) {
                *why = "header: name is not an atom";
                return -EBADMSG;
            }
            have_name = 1;
        } else if (!strcmp(tag, "type") && !have_type) {
            if (term_get_atom(&e, h->type) < 0) {
                *why = "header: type is not an atom";
                return -EBADMSG;
            }
            have_type = 1;
        } else if (!strcmp(tag, "keypos") && !have_keypos) {
            if (term_get_long(&e, &h->keypos) < 0 || h->keypos < 1 ||
                h->keypos > 0xffffff) {
                *why = "header: keypos is not a positive integer";
                return -EBADMSG;
            }
            have_keypos = 1;
        } else if (!strcmp(tag, "size") && !have_size) {
            if (term_get_long(&e, &h->size) < 0 || h->size < 0) {
                *why = "header: size is not a non-negative integer";
                return -EBADMSG;
            }
            have_size = 1;
        } else if (!strcmp(tag, "protection")) {
            /* Kept for ets:info/2; etsd itself has one owner, so it
             * changes nothing here. Unknown values read as public. */
            if (atom_is(&e, "protected"))
                h->protection = 1;
            else if (atom_is(&e, "private"))
                h->protection = 2;
        } else if (!strcmp(tag, "major_version")) {
            if (term_get_long(&e, &h->major) < 0)
                h->major = 0;
        } else if (!strcmp(tag, "extended_info")) {
            uint32_t n;
            if (term_peek(&e) == TERM_T_LIST && term_get_list(&e, &n) == 0) {
                for (uint32_t k = 0; k < n; k++) {
                    if (atom_is(&e, "object_count"))
                        h->object_count = 1;
                    else if (atom_is(&e, "md5sum"))
                        h->md5sum = 1;
                    else if (term_get_any(&e, &skip, &skiplen) < 0)
                        goto bad;
                }
            }
        }
        if (term_get_any(&r, &skip, &skiplen) < 0)
            goto bad;
    }
    if (r.pos != r.len)
        goto bad;
    if (h->mandatory != 6 || !have_name || !have_type || !have_keypos || !have_size) {
        *why = "header lacks name, type, protection, named_table, keypos or size";
        return -EBADMSG;
    }
    return 0;
bad:
    *why = "header is not a valid term";
    return -EBADMSG;
}

/* The end record ['$end_of_table', Info]: 1 if p is one (with *count and
 * md5 filled from Info when present), 0 if not. */
static int parse_end(const char *p, size_t len, int64_t *count, int *has_count,
                     uint8_t md5[16], int *has_md5)
{
    term_reader_t r;
    uint32_t n, m;
    term_reader_init(&r, p, len);
    *has_count = *has_md5 = 0;
    if (term_peek(&r) != TERM_T_LIST || term_get_list(&r, &n) < 0 || n != 2 ||
        !atom_is(&r, "$end_of_table"))
        return 0;
    if (term_peek(&r) == TERM_T_NIL)
        return term_get_nil(&r) == 0 && term_get_nil(&r) == 0 && r.pos == r.len;
    if (term_peek(&r) != TERM_T_LIST || term_get_list(&r, &m) < 0)
        return 0;
    for (uint32_t i = 0; i < m; i++) {
        uint32_t a;
        const char *bp, *skip;
        size_t bl, skiplen;
        term_reader_t e = r;
        if (term_get_tuple(&e, &a) == 0 && a == 2) {
            if (atom_is(&e, "count") && term_get_long(&e, count) == 0) {
                *has_count = 1;
            } else if (atom_is(&e, "md5") && term_get_binary(&e, &bp, &bl) == 0 &&
                       bl == 16) {
                memcpy(md5, bp, 16);
                *has_md5 = 1;
            }
        }
        if (term_get_any(&r, &skip, &skiplen) < 0)
            return 0;
    }
    if (term_get_nil(&r) < 0 || term_get_nil(&r) < 0 || r.pos != r.len)
        return 0;
    return 1;
}

/* Canonicalizes and inserts items[0..n), scattered or in file order. On
 * failure *off is the failing item's end and *why says what was wrong. */
static int insert_items(store_table_t *t, const dl_item_t *items, size_t n,
                        int scattered, term_buf_t *tb, size_t *off,
                        const uint8_t *buf, const char **why)
{
    size_t step = scattered ? wal_scatter_stride(n) : 1, j = 0;
    for (size_t k = 0; k < n; k++) {
        const dl_item_t *it = &items[j];
        term_buf_reset(tb);
        int rc = term_canon(it->p, it->len, tb);
        if (rc == 0)
            rc = store_insert(t, tb->data, tb->len);
        if (rc < 0) {
            *off = (size_t)(it->p - buf) + it->len;
            if (rc == -ENOMEM)
                return rc;
            *why = tb->len ? "an object is not a tuple with keypos elements"
                           : "corrupt: an item is not a valid term";
            return -EBADMSG;
        }
        j += step;
        if (j >= n)
            j -= n;
    }
    return 0;
}

int store_file2tab_mem(store_t *s, const void *data, size_t len, int verify,
                       store_table_t **out, char *errbuf, size_t errlen)
{
    const uint8_t *buf = data;
    size_t off = DL_HEADSZ;
    const char *why = NULL;
    dl_item_t it;
    term_buf_t tb;
    t2f_header_t h;
    store_table_t *t = NULL;
    md5_ctx_t md5;
    dl_item_t *items = NULL;
    uint64_t objects = 0, cap = 0;
    int64_t end_count = 0;
    int ended = 0, has_count = 0, has_md5 = 0, rc;
    uint8_t end_md5[16];

    if (errbuf && errlen)
        errbuf[0] = '\0';
    if (!s)
        return -EINVAL;
    term_buf_init(&tb);
    if (len < DL_HEADSZ || memcmp(buf, DL_LOGMAGIC, 4) ||
        (memcmp(buf + 4, DL_CLOSED, 4) && memcmp(buf + 4, DL_OPENED, 4))) {
        why = "not a disk_log file (bad head)";
        off = 0;
        goto bad;
    }
    rc = dl_next(buf, len, &off, &it, &why);
    if (rc <= 0) {
        if (rc == 0)
            why = "truncated: no header item";
        goto bad;
    }
    rc = term_canon(it.p, it.len, &tb);
    if (rc == -ENOMEM)
        goto fail;
    if (rc < 0) {
        why = "header is not a valid term";
        goto bad;
    }
    rc = parse_header(tb.data, tb.len, &h, &why);
    if (rc < 0)
        goto bad;
    if (h.major > 1) {
        why = "unsupported file version";
        goto bad;
    }
    if (strcmp(h.type, "set")) {
        store_set_err(errbuf, errlen, "tab2file: table type %s is not supported "
                "(only set)", h.type);
        rc = -ENOTSUP;
        goto fail;
    }
    md5_init(&md5);
    md5_update(&md5, it.p, it.len);
    /* Pass 1: framing, the end record, md5 and count, before any insert. */
    while ((rc = dl_next(buf, len, &off, &it, &why)) == 1) {
        if (ended) {
            why = "items after the end record";
            goto bad;
        }
        /* Objects are tuples; only another term can be the end record. */
        if (it.len < 2 || (it.p[1] != 104 && it.p[1] != 105)) {
            term_buf_reset(&tb);
            rc = term_canon(it.p, it.len, &tb);
            if (rc == -ENOMEM)
                goto fail;
            if (rc < 0) {
                why = "corrupt: an item is not a valid term";
                goto bad;
            }
            if (parse_end(tb.data, tb.len, &end_count, &has_count, end_md5,
                          &has_md5)) {
                ended = 1;
                continue;
            }
        }
        if (objects == cap) {
            size_t ncap = cap ? cap * 2 : 256;
            dl_item_t *n = mem_realloc(items, ncap * sizeof *items);
            if (!n) {
                rc = -ENOMEM;
                goto fail;
            }
            items = n;
            cap = ncap;
        }
        items[objects++] = it;
        if (verify && h.md5sum)
            md5_update(&md5, it.p, it.len);
    }
    if (rc < 0)
        goto bad;
    if (verify) {
        /* As ets:file2tab/2 with {verify, true}: what extended_info
         * declares must be in the end record and must match; without
         * extended_info the header's size must match. */
        if ((h.md5sum || h.object_count) && !ended) {
            why = "truncated: extended_info declared but no end record";
            goto bad;
        }
        if (h.md5sum) {
            uint8_t got[16];
            md5_final(&md5, got);
            if (!has_md5 || memcmp(got, end_md5, 16)) {
                why = "checksum error: md5 does not match the objects";
                goto bad;
            }
        }
        if (h.object_count && (!has_count || (uint64_t)end_count != objects)) {
            why = "invalid object count: end record differs from the objects";
            goto bad;
        }
        if (!h.object_count && !h.md5sum && objects != (uint64_t)h.size) {
            why = "invalid object count: header size differs from the objects";
            goto bad;
        }
    }
    rc = store_table_create(s, h.name, (unsigned)h.keypos, &t);
    if (rc < 0) {
        store_set_err(errbuf, errlen, "tab2file: cannot create table %s: %s", h.name,
                rc == -EEXIST ? "a table of that name exists" : strerror(-rc));
        t = NULL;
        goto fail;
    }
    store_table_opts(t)->protection = (unsigned char)h.protection;
    /* Pass 2: insert. A file written from a store holds the table in
     * hash-slot order: scatter it (wal_scatter_stride()). */
    rc = insert_items(t, items, (size_t)objects, 1, &tb, &off, buf, &why);
    if (rc == 0 && store_table_size(t) != objects) {
        /* Duplicate keys: BEAM's last one wins, so insert in file order. */
        rc = store_table_clear(t);
        if (rc == 0)
            rc = insert_items(t, items, (size_t)objects, 0, &tb, &off, buf, &why);
    }
    if (rc == -ENOMEM)
        goto fail;
    if (rc < 0)
        goto bad;
    mem_free(items);
    term_buf_release(&tb);
    if (out)
        *out = t;
    return 0;

bad:
    store_set_err(errbuf, errlen, "tab2file: %s (at byte %zu)", why ? why : "bad file", off);
    rc = -EBADMSG;
fail:
    if (t)
        (void)store_table_drop(s, h.name);
    mem_free(items);
    term_buf_release(&tb);
    if (errbuf && errlen && !errbuf[0])
        store_set_err(errbuf, errlen, "tab2file: %s", strerror(-rc));
    return rc;
}

int store_file2tab(store_t *s, const char *path, int verify, store_table_t **out,
                   char *errbuf, size_t errlen)
{
    if (errbuf && errlen)
        errbuf[0] = '\0';
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int rc = -errno;
        store_set_err(errbuf, errlen, "%s: %s", path, strerror(-rc));
        return rc;
    }
    struct stat st;
    if (fstat(fd, &st) < 0) {
        int rc = -errno;
        close(fd);
        store_set_err(errbuf, errlen, "%s: %s", path, strerror(-rc));
        return rc;
    }
    void *p = NULL;
    size_t len = (size_t)st.st_size;
    if (len > 0) {
        p = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            int rc = -errno;
            close(fd);
            store_set_err(errbuf, errlen, "%s: %s", path, strerror(-rc));
            return rc;
        }
    }
    close(fd);
    int rc = store_file2tab_mem(s, p ? p : "", len, verify, out, errbuf, errlen);
    if (p)
        munmap(p, len);
    if (rc < 0 && errbuf && errlen) {
        /* Name the file: "tab2file: x" becomes "PATH: x". */
        char tmp[512];
        const char *msg = strncmp(errbuf, "tab2file: ", 10) ? errbuf : errbuf + 10;
        snprintf(tmp, sizeof tmp, "%s: %s", path, msg);
        snprintf(errbuf, errlen, "%s", tmp);
    }
    return rc;
}

/* ---- Writing ----------------------------------------------------------- */

typedef struct t2f_writer {
    term_buf_t out;     /* the whole file */
    md5_ctx_t md5;
    int64_t count;
} t2f_writer_t;

/* Appends one disk_log item holding 131 + term. */
static void dl_put_item(t2f_writer_t *w, const void *term, size_t len, int md5)
{
    size_t size = len + 1;
    uint8_t h[DL_HEADERSZ + 16];
    size_t hl = DL_HEADERSZ;
    if (size > UINT32_MAX) {
        if (!w->out.err)
            w->out.err = -E2BIG;
        return;
    }
    h[0] = (uint8_t)(size >> 24);
    h[1] = (uint8_t)(size >> 16);
    h[2] = (uint8_t)(size >> 8);
    h[3] = (uint8_t)size;
    memcpy(h + 4, DL_BIGMAGIC, 4);
    if (size >= DL_MIN_MD5_TERM) {
        size_md5((uint32_t)size, h + DL_HEADERSZ);
        hl += 16;
    }
    uint8_t v = TERM_VERSION_MAGIC;
    term_buf_append(&w->out, h, hl);
    term_buf_append(&w->out, &v, 1);
    term_buf_append(&w->out, term, len);
    if (md5) {
        md5_update(&w->md5, &v, 1);
        md5_update(&w->md5, term, len);
    }
}

static int t2f_object_cb(void *arg, const void *obj, size_t len)
{
    t2f_writer_t *w = arg;
    dl_put_item(w, obj, len, 1);
    w->count++;
    return w->out.err;
}

/* Writes buf to path through a temporary file, so a crash never leaves a
 * half-written file under the final name. */
static int write_file_atomic(const char *path, const void *buf, size_t len)
{
    size_t plen = strlen(path);
    char *tmp = mem_alloc(plen + 5);
    if (!tmp)
        return -ENOMEM;
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp", 5);
    int rc = 0;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        rc = -errno;
        goto out;
    }
    const uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            rc = -errno;
            break;
        }
        p += n;
        len -= (size_t)n;
    }
    if (rc == 0 && fsync(fd) < 0)
        rc = -errno;
    if (close(fd) < 0 && rc == 0)
        rc = -errno;
    if (rc == 0 && rename(tmp, path) < 0)
        rc = -errno;
    if (rc < 0)
        (void)unlink(tmp);
out:
    mem_free(tmp);
    return rc;
}

int store_tab2file_mem(store_table_t *t, unsigned flags, term_buf_t *out)
{
    t2f_writer_t w;
    term_buf_t hdr;
    int md5 = (flags & STORE_T2F_MD5SUM) != 0;
    int cnt = (flags & STORE_T2F_OBJECT_COUNT) != 0;
    if (!t || !out || (flags & ~(unsigned)(STORE_T2F_MD5SUM | STORE_T2F_OBJECT_COUNT)))
        return -EINVAL;
    w.out = *out;
    w.count = 0;
    md5_init(&w.md5);
    term_buf_init(&hdr);

    /* The fields file2tab needs (ets.erl create_tab/2), in ets:info/1's
     * order, then the version and extended_info that tab2file adds. */
    term_put_tuple(&hdr, 9);
    term_put_tuple(&hdr, 2);
    term_put_atom(&hdr, "name");
    term_put_atom(&hdr, store_table_name(t));
    term_put_tuple(&hdr, 2);
    term_put_atom(&hdr, "size");
    term_put_ulong(&hdr, store_table_size(t));
    term_put_tuple(&hdr, 2);
    term_put_atom(&hdr, "named_table");
    term_put_bool(&hdr, 1);
    term_put_tuple(&hdr, 2);
    term_put_atom(&hdr, "type");
    term_put_atom(&hdr, "set");
    term_put_tuple(&hdr, 2);
    term_put_atom(&hdr, "keypos");
    term_put_ulong(&hdr, store_table_keypos(t));
    term_put_tuple(&hdr, 2);
    term_put_atom(&hdr, "protection");
    unsigned prot = store_table_opts(t)->protection;
    term_put_atom(&hdr, prot == 1 ? "protected" : prot == 2 ? "private" : "public");
    term_put_tuple(&hdr, 2);
    term_put_atom(&hdr, "major_version");
    term_put_long(&hdr, 1);
    term_put_tuple(&hdr, 2);
    term_put_atom(&hdr, "minor_version");
    term_put_long(&hdr, 0);
    term_put_tuple(&hdr, 2);
    term_put_atom(&hdr, "extended_info");
    if (cnt + md5 > 0) {
        term_put_list(&hdr, (uint32_t)(cnt + md5));
        if (cnt)
            term_put_atom(&hdr, "object_count");
        if (md5)
            term_put_atom(&hdr, "md5sum");
    }
    term_put_nil(&hdr);
    int rc = hdr.err;
    if (rc == 0) {
        term_buf_append(&w.out, DL_LOGMAGIC, 4);
        term_buf_append(&w.out, DL_CLOSED, 4);
        dl_put_item(&w, hdr.data, hdr.len, 1);
        rc = w.out.err;
    }
    if (rc == 0)
        rc = store_table_foreach(t, t2f_object_cb, &w);
    if (rc == 0 && (cnt || md5)) {
        /* ['$end_of_table', [{count, N}, {md5, Digest}]] */
        uint8_t digest[16];
        md5_final(&w.md5, digest);
        term_buf_reset(&hdr);
        term_put_list(&hdr, 2);
        term_put_atom(&hdr, "$end_of_table");
        term_put_list(&hdr, (uint32_t)(cnt + md5));
        if (cnt) {
            term_put_tuple(&hdr, 2);
            term_put_atom(&hdr, "count");
            term_put_long(&hdr, w.count);
        }
        if (md5) {
            term_put_tuple(&hdr, 2);
            term_put_atom(&hdr, "md5");
            term_put_binary(&hdr, digest, 16);
        }
        term_put_nil(&hdr);
        term_put_nil(&hdr);
        rc = hdr.err;
        if (rc == 0) {
            dl_put_item(&w, hdr.data, hdr.len, 0);
            rc = w.out.err;
        }
    }
    term_buf_release(&hdr);
    *out = w.out;
    return rc;
}

int store_tab2file(store_table_t *t, const char *path, unsigned flags)
{
    term_buf_t b;
    term_buf_init(&b);
    int rc = store_tab2file_mem(t, flags, &b);
    if (rc == 0)
        rc = write_file_atomic(path, b.data, b.len);
    term_buf_release(&b);
    return rc;
}
