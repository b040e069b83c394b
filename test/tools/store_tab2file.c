/* store_tab2file: drives store/'s ets:tab2file support for tab2file_SUITE.
 *
 *   store_tab2file load FILE verify|noverify OUT
 *       store_file2tab(FILE); writes the table's objects to OUT as
 *       term_to_binary of a list and prints "ok NAME SIZE KEYPOS".
 *   store_tab2file write IN OUT NAME KEYPOS none|count|md5|both
 *       reads IN (term_to_binary of a list of tuples), fills table NAME with
 *       it and writes OUT with store_tab2file() and that extended_info.
 * On failure: prints "error: MESSAGE" and exits 1. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/store.h"
#include "store/store_int.h"
#include "term/mem.h"

static int fail(const char *what, int rc, const char *detail)
{
    printf("error: %s: %s%s%s\n", what, strerror(-rc), detail && *detail ? ": " : "",
           detail ? detail : "");
    return 1;
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 1 << 16, n;
    char *b = malloc(cap);
    *len = 0;
    while (b && (n = fread(b + *len, 1, cap - *len, f)) > 0) {
        *len += n;
        if (*len == cap) {
            char *nb = realloc(b, cap *= 2);
            if (!nb) {
                free(b);
                b = NULL;
            } else {
                b = nb;
            }
        }
    }
    fclose(f);
    return b;
}

static int do_load(const char *file, int verify, const char *out)
{
    store_t *s;
    store_table_t *t;
    char err[512];
    int rc = store_new(&s);
    if (rc < 0)
        return fail("store_new", rc, NULL);
    rc = store_file2tab(s, file, verify, &t, err, sizeof err);
    if (rc < 0) {
        store_free(s);
        printf("error: %s\n", err);
        return 1;
    }
    term_buf_t b;
    term_buf_init(&b);
    term_put_version(&b);
    rc = b.err ? b.err : store_tab2list(t, &b);
    FILE *f = rc == 0 ? fopen(out, "wb") : NULL;
    if (rc == 0 && (!f || fwrite(b.data, 1, b.len, f) != b.len))
        rc = -EIO;
    if (f && fclose(f) != 0)
        rc = -EIO;
    term_buf_release(&b);
    if (rc == 0)
        printf("ok %s %zu %u\n", store_table_name(t), store_table_size(t),
               store_table_keypos(t));
    store_free(s);
    return rc == 0 ? 0 : fail("dump", rc, out);
}

static int do_write(const char *in, const char *out, const char *name,
                    unsigned keypos, const char *flags)
{
    unsigned fl;
    if (!strcmp(flags, "none"))
        fl = 0;
    else if (!strcmp(flags, "count"))
        fl = STORE_T2F_OBJECT_COUNT;
    else if (!strcmp(flags, "md5"))
        fl = STORE_T2F_MD5SUM;
    else if (!strcmp(flags, "both"))
        fl = STORE_T2F_OBJECT_COUNT | STORE_T2F_MD5SUM;
    else
        return fail("flags", -EINVAL, flags);
    size_t len;
    char *buf = slurp(in, &len);
    if (!buf)
        return fail("read", -errno, in);
    store_t *s;
    store_table_t *t;
    int rc = store_new(&s);
    if (rc == 0)
        rc = store_table_create(s, name, keypos, &t);
    term_reader_t r;
    uint32_t n = 0;
    term_reader_init(&r, buf, len);
    if (rc == 0 && (term_get_version(&r) < 0 ||
                    (term_peek(&r) == TERM_T_NIL ? term_get_nil(&r) : term_get_list(&r, &n)) < 0))
        rc = -EPROTO;
    for (uint32_t i = 0; rc == 0 && i < n; i++) {
        const char *o;
        size_t ol;
        rc = term_get_any(&r, &o, &ol);
        if (rc == 0)
            rc = store_insert(t, o, ol);
    }
    if (rc == 0 && n > 0 && term_get_nil(&r) < 0)
        rc = -EPROTO;
    if (rc == 0)
        rc = store_tab2file(t, out, fl);
    store_free(s);
    free(buf);
    if (rc < 0)
        return fail("write", rc, out);
    printf("ok\n");
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 5 && !strcmp(argv[1], "load"))
        return do_load(argv[2], !strcmp(argv[3], "verify"), argv[4]);
    if (argc == 7 && !strcmp(argv[1], "write"))
        return do_write(argv[2], argv[3], argv[4], (unsigned)atoi(argv[5]), argv[6]);
    fprintf(stderr, "usage: store_tab2file load FILE verify|noverify OUT\n"
                    "       store_tab2file write IN OUT NAME KEYPOS none|count|md5|both\n");
    return 2;
}
