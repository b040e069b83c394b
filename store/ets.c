/* ets.c: the ets module's API over store/ tables, for rpc callers:
 * store_ets_call() decodes the argument list, runs the function with ETS's
 * semantics for set tables, and encodes the result. Where ETS raises
 * badarg, it returns -EINVAL. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/match.h"
#include "store/store_int.h"
#include "term/mem.h"

#define MAX_ARGS 4

typedef struct mv {
    const char *p;
    size_t len;
} mv_t;

typedef struct ectx {
    store_t *s;
    term_buf_t *out;
    term_buf_t key;     /* canonical key */
    term_buf_t tmp;     /* canonical objects, result lists */
    term_buf_t tmp2;
    mv_t a[MAX_ARGS];
    int n;
    char small[MAX_ARGS][2];   /* args that came inside a STRING_EXT */
} ectx_t;

#define BADARG (-EINVAL)

/* ---- Lists ------------------------------------------------------------ */

/* Iterates a list in any encoding (NIL, STRING_EXT, LIST_EXT). */
typedef struct iter {
    term_reader_t r;
    uint32_t left;
    const char *str;
    size_t slen, si;
    char tmp[2];
} iter_t;

static int iter_init(iter_t *it, mv_t v)
{
    memset(it, 0, sizeof(*it));
    term_reader_init(&it->r, v.p, v.len);
    switch (term_peek(&it->r)) {
    case TERM_T_NIL:
        it->left = 0;
        return term_get_nil(&it->r) < 0 ? BADARG : 0;
    case TERM_T_STRING:
        if (term_get_string(&it->r, &it->str, &it->slen) < 0)
            return BADARG;
        return 0;
    case TERM_T_LIST:
        return term_get_list(&it->r, &it->left) < 0 ? BADARG : 0;
    default:
        return BADARG;
    }
}

/* 1 with the next element, 0 at the end of a proper list, BADARG for an
 * improper one. Elements of a STRING_EXT are built in it->tmp. */
static int iter_next(iter_t *it, mv_t *e)
{
    if (it->str) {
        if (it->si == it->slen)
            return 0;
        it->tmp[0] = (char)STORE_TAG_SMALL_INT;
        it->tmp[1] = it->str[it->si++];
        e->p = it->tmp;
        e->len = 2;
        return 1;
    }
    if (it->left == 0) {
        if (it->r.pos == it->r.len)
            return 0;    /* NIL already consumed, or an empty NIL */
        return term_get_nil(&it->r) < 0 ? BADARG : (it->r.pos = it->r.len, 0);
    }
    if (term_get_any(&it->r, &e->p, &e->len) < 0)
        return BADARG;
    it->left--;
    return 1;
}

/* ---- Small helpers ---------------------------------------------------- */

static int atom_of(mv_t v, char name[TERM_ATOM_MAX])
{
    term_reader_t r;
    term_reader_init(&r, v.p, v.len);
    if (term_peek(&r) != TERM_T_ATOM || term_get_atom(&r, name) < 0)
        return 0;
    return 1;
}

static int atom_eq(mv_t v, const char *s)
{
    char name[TERM_ATOM_MAX];
    return atom_of(v, name) && strcmp(name, s) == 0;
}

static int long_of(mv_t v, int64_t *x)
{
    term_reader_t r;
    term_reader_init(&r, v.p, v.len);
    if (term_peek(&r) != TERM_T_INTEGER)
        return 0;
    return term_get_long(&r, x) == 0;
}

static int is_integer(mv_t v)
{
    term_reader_t r;
    term_reader_init(&r, v.p, v.len);
    return term_peek(&r) == TERM_T_INTEGER;
}

/* Tuple elements: count and slices into the bytes. */
static int tuple_elems(mv_t v, uint32_t *arity, mv_t **el, term_buf_t *store)
{
    term_reader_t r;
    term_reader_init(&r, v.p, v.len);
    if (term_peek(&r) != TERM_T_TUPLE || term_get_tuple(&r, arity) < 0)
        return BADARG;
    if (!el)
        return 0;
    term_buf_reset(store);
    if (term_buf_reserve(store, (*arity + 1) * sizeof(mv_t)) < 0)
        return -ENOMEM;
    mv_t *a = (mv_t *)(void *)store->data;
    for (uint32_t i = 0; i < *arity; i++)
        if (term_get_any(&r, &a[i].p, &a[i].len) < 0)
            return BADARG;
    *el = a;
    return 0;
}

static void put_tuple_of(term_buf_t *b, mv_t *el, uint32_t n)
{
    term_put_tuple(b, n);
    for (uint32_t i = 0; i < n; i++)
        term_put_raw(b, el[i].p, el[i].len);
}

/* The canonical form of v in b (reset first). */
static int canon(term_buf_t *b, mv_t v, mv_t *c)
{
    term_buf_reset(b);
    return store_canon(v.p, v.len, b, &c->p, &c->len);
}

static int table_of(ectx_t *x, mv_t v, store_table_t **t)
{
    char name[TERM_ATOM_MAX];
    if (!atom_of(v, name))
        return BADARG;
    *t = store_table_find(x->s, name);
    return *t ? 0 : BADARG;
}

static void put_obj_list_start(term_buf_t *b, size_t n)
{
    if (n)
        term_put_list(b, (uint32_t)n);
}

static void put_list_end(term_buf_t *b)
{
    term_put_nil(b);
}

/* ---- new -------------------------------------------------------------- */

static int ets_new(ectx_t *x)
{
    char name[TERM_ATOM_MAX], opt[TERM_ATOM_MAX];
    if (!atom_of(x->a[0], name))
        return BADARG;
    iter_t it;
    int rc = iter_init(&it, x->a[1]);
    if (rc < 0)
        return rc;
    store_table_opts_t o = {0};
    o.protection = 1;   /* ETS's default: protected */
    unsigned keypos = 1;
    int named = 0, set = 1;
    mv_t e;
    char *heir = NULL;
    size_t heir_len = 0;
    while ((rc = iter_next(&it, &e)) == 1) {
        if (atom_of(e, opt)) {
            if (!strcmp(opt, "set"))
                set = 1;
            else if (!strcmp(opt, "ordered_set") || !strcmp(opt, "bag") ||
                     !strcmp(opt, "duplicate_bag"))
                set = 0;
            else if (!strcmp(opt, "public"))
                o.protection = 0;
            else if (!strcmp(opt, "protected"))
                o.protection = 1;
            else if (!strcmp(opt, "private"))
                o.protection = 2;
            else if (!strcmp(opt, "named_table"))
                named = 1;
            else if (!strcmp(opt, "compressed"))
                o.compressed = 1;
            else
                goto bad;
            continue;
        }
        uint32_t arity;
        mv_t *el;
        if ((rc = tuple_elems(e, &arity, &el, &x->tmp2)) < 0)
            goto fail;
        if (arity < 2 || !atom_of(el[0], opt))
            goto bad;
        int b1 = atom_eq(el[1], "true"), b0 = atom_eq(el[1], "false");
        if (arity == 2 && !strcmp(opt, "keypos")) {
            int64_t k;
            if (!long_of(el[1], &k) || k < 1 || k > 0x7fffffff)
                goto bad;
            keypos = (unsigned)k;
        } else if (arity == 2 && !strcmp(opt, "read_concurrency") && (b1 || b0)) {
            o.read_concurrency = (unsigned char)b1;
        } else if (arity == 2 && !strcmp(opt, "write_concurrency") &&
                   (b1 || b0 || atom_eq(el[1], "auto"))) {
            o.write_concurrency = b1 ? 1 : b0 ? 0 : 2;
        } else if (arity == 2 && !strcmp(opt, "decentralized_counters") && (b1 || b0)) {
            o.decentralized_counters = (unsigned char)b1;
        } else if (arity == 2 && !strcmp(opt, "heir") && atom_eq(el[1], "none")) {
            mem_free(heir);
            heir = NULL;
        } else if (arity == 3 && !strcmp(opt, "heir")) {
            term_reader_t r;
            term_reader_init(&r, el[1].p, el[1].len);
            if (term_peek(&r) != TERM_T_PID)
                goto bad;
            mem_free(heir);
            heir = mem_alloc(el[1].len);
            if (!heir) {
                rc = -ENOMEM;
                goto fail;
            }
            memcpy(heir, el[1].p, el[1].len);
            heir_len = el[1].len;
        } else {
            goto bad;
        }
    }
    if (rc < 0)
        goto fail;
    /* XXX: only named set tables: etsd has no process to own an unnamed
     * table's reference, and other types are not implemented. */
    if (!set || !named)
        goto bad;
    store_table_t *t;
    rc = store_table_create(x->s, name, keypos, &t);
    if (rc == -EEXIST)
        goto bad;
    if (rc < 0)
        goto fail;
    o.heir = heir;
    o.heir_len = heir_len;
    *store_table_opts(t) = o;
    term_put_atom(x->out, name);
    return 0;
bad:
    rc = BADARG;
fail:
    mem_free(heir);
    return rc;
}

/* ---- insert ----------------------------------------------------------- */

/* Canonical objects of an insert argument, all checked before any is
 * stored (ETS inserts all or nothing). Appended to b as a sequence;
 * *count gets how many. */
static int collect_objects(store_table_t *t, mv_t arg, term_buf_t *b, size_t *count)
{
    term_buf_reset(b);
    *count = 0;
    term_reader_t r;
    term_reader_init(&r, arg.p, arg.len);
    const char *c, *k;
    size_t clen, klen;
    if (term_peek(&r) == TERM_T_TUPLE) {
        int rc = store_canon(arg.p, arg.len, b, &c, &clen);
        if (rc < 0)
            return rc == -ENOMEM ? rc : BADARG;
        if (store_obj_key(c, clen, store_table_keypos(t), &k, &klen) < 0)
            return BADARG;
        if (c != b->data) {
            term_buf_reset(b);
            term_buf_append(b, c, clen);
        }
        *count = 1;
        return b->err;
    }
    iter_t it;
    int rc = iter_init(&it, arg);
    if (rc < 0)
        return rc;
    mv_t e;
    while ((rc = iter_next(&it, &e)) == 1) {
        size_t start = b->len;
        term_reader_t er;
        term_reader_init(&er, e.p, e.len);
        if (term_peek(&er) != TERM_T_TUPLE)
            return BADARG;
        size_t used;
        rc = term_canon_inner(e.p, e.len, &used, b);
        if (rc < 0)
            return rc == -ENOMEM ? rc : BADARG;
        if (store_obj_key(b->data + start, b->len - start, store_table_keypos(t), &k, &klen) < 0)
            return BADARG;
        (*count)++;
    }
    return rc < 0 ? rc : 0;
}

static int put_all(store_table_t *t, term_buf_t *b, size_t count)
{
    return store_table_put_batch(t, b->data, b->len, count);
}

static int ets_insert(ectx_t *x, int only_new)
{
    store_table_t *t;
    size_t count;
    int rc;
    if ((rc = table_of(x, x->a[0], &t)) < 0)
        return rc;
    if ((rc = collect_objects(t, x->a[1], &x->tmp, &count)) < 0)
        return rc;
    if (only_new) {
        size_t off = 0;
        for (size_t i = 0; i < count; i++) {
            size_t used, klen, olen;
            const char *k, *o;
            term_skip(x->tmp.data + off, x->tmp.len - off, &used);
            store_obj_key(x->tmp.data + off, used, store_table_keypos(t), &k, &klen);
            if (store_table_get(t, k, klen, &o, &olen)) {
                term_put_bool(x->out, 0);
                return 0;
            }
            off += used;
        }
    }
    if ((rc = put_all(t, &x->tmp, count)) < 0)
        return rc;
    term_put_bool(x->out, 1);
    return 0;
}

/* ---- by key ----------------------------------------------------------- */

/* Resolves table and canonical key from args 0 and 1. */
static int table_key(ectx_t *x, store_table_t **t, mv_t *key)
{
    int rc = table_of(x, x->a[0], t);
    if (rc < 0)
        return rc;
    rc = canon(&x->key, x->a[1], key);
    return rc < 0 ? (rc == -ENOMEM ? rc : BADARG) : 0;
}

static int get(store_table_t *t, mv_t key, mv_t *obj)
{
    return store_table_get(t, key.p, key.len, &obj->p, &obj->len);
}

static int ets_lookup(ectx_t *x)
{
    store_table_t *t;
    mv_t key, obj;
    int rc = table_key(x, &t, &key);
    if (rc < 0)
        return rc;
    if (get(t, key, &obj)) {
        term_put_list(x->out, 1);
        term_put_raw(x->out, obj.p, obj.len);
    }
    term_put_nil(x->out);
    return 0;
}

static int ets_member(ectx_t *x)
{
    store_table_t *t;
    mv_t key, obj;
    int rc = table_key(x, &t, &key);
    if (rc < 0)
        return rc;
    term_put_bool(x->out, get(t, key, &obj));
    return 0;
}

static int ets_lookup_element(ectx_t *x)
{
    store_table_t *t;
    mv_t key, obj, *el;
    int64_t pos;
    uint32_t arity;
    int rc = table_key(x, &t, &key);
    if (rc < 0)
        return rc;
    if (!long_of(x->a[2], &pos) || pos < 1)
        return BADARG;
    if (!get(t, key, &obj))
        return BADARG;
    if ((rc = tuple_elems(obj, &arity, &el, &x->tmp2)) < 0)
        return rc;
    if (pos > (int64_t)arity)
        return BADARG;
    term_put_raw(x->out, el[pos - 1].p, el[pos - 1].len);
    return 0;
}

static int ets_delete2(ectx_t *x)
{
    store_table_t *t;
    mv_t key;
    int rc = table_key(x, &t, &key);
    if (rc < 0)
        return rc;
    rc = store_table_remove(t, key.p, key.len);
    if (rc < 0 && rc != -ENOENT)
        return rc;
    term_put_bool(x->out, 1);
    return 0;
}

static int ets_take(ectx_t *x)
{
    store_table_t *t;
    mv_t key, obj;
    int rc = table_key(x, &t, &key);
    if (rc < 0)
        return rc;
    if (get(t, key, &obj)) {
        /* Copy out before the object is freed. */
        size_t start = x->out->len;
        term_put_list(x->out, 1);
        term_put_raw(x->out, obj.p, obj.len);
        term_put_nil(x->out);
        if (x->out->err)
            return x->out->err;
        rc = store_table_remove(t, key.p, key.len);
        if (rc < 0) {
            x->out->len = start;
            return rc;
        }
        return 0;
    }
    term_put_nil(x->out);
    return 0;
}

static int ets_delete_object(ectx_t *x)
{
    store_table_t *t;
    mv_t obj, cur;
    const char *k;
    size_t klen;
    int rc = table_of(x, x->a[0], &t);
    if (rc < 0)
        return rc;
    rc = canon(&x->tmp, x->a[1], &obj);
    if (rc < 0)
        return rc == -ENOMEM ? rc : BADARG;
    if (store_obj_key(obj.p, obj.len, store_table_keypos(t), &k, &klen) < 0)
        return BADARG;
    if (store_table_get(t, k, klen, &cur.p, &cur.len) && cur.len == obj.len &&
        memcmp(cur.p, obj.p, obj.len) == 0) {
        if ((rc = store_table_remove(t, k, klen)) < 0)
            return rc;
    }
    term_put_bool(x->out, 1);
    return 0;
}

static int ets_delete1(ectx_t *x)
{
    store_table_t *t;
    int rc = table_of(x, x->a[0], &t);
    if (rc < 0)
        return rc;
    if ((rc = store_table_drop(x->s, store_table_name(t))) < 0)
        return rc;
    term_put_bool(x->out, 1);
    return 0;
}

static int ets_delete_all(ectx_t *x)
{
    store_table_t *t;
    int rc = table_of(x, x->a[0], &t);
    if (rc < 0)
        return rc;
    if (store_table_size(t) > 0 && (rc = store_table_clear(t)) < 0)
        return rc;
    term_put_bool(x->out, 1);
    return 0;
}

/* ---- update_element --------------------------------------------------- */

static int ets_update_element(ectx_t *x)
{
    store_table_t *t;
    mv_t key, obj, *el;
    uint32_t arity, n;
    int rc = table_key(x, &t, &key);
    if (rc < 0)
        return rc;
    /* ETS answers false for a missing key before it looks at the
     * changes at all. */
    if (!get(t, key, &obj)) {
        term_put_bool(x->out, 0);
        return 0;
    }
    /* The {Pos, Value} pairs, checked for shape. */
    mv_t pairs[64];
    mv_t *pv = pairs;
    size_t np = 0, cap = 64;
    term_buf_t pbuf;
    term_buf_init(&pbuf);
    term_reader_t r;
    term_reader_init(&r, x->a[2].p, x->a[2].len);
    if (term_peek(&r) == TERM_T_TUPLE) {
        pairs[0] = x->a[2];
        np = 1;
    } else {
        iter_t it;
        mv_t e;
        if ((rc = iter_init(&it, x->a[2])) < 0)
            goto out;
        while ((rc = iter_next(&it, &e)) == 1) {
            if (np == cap) {
                cap *= 2;
                term_buf_reset(&pbuf);
                if (term_buf_reserve(&pbuf, cap * sizeof(mv_t)) < 0) {
                    rc = -ENOMEM;
                    goto out;
                }
                memcpy(pbuf.data, pv, np * sizeof(mv_t));
                pv = (mv_t *)(void *)pbuf.data;
            }
            pv[np++] = e;
        }
        if (rc < 0)
            goto out;
    }
    for (size_t i = 0; i < np; i++) {
        mv_t *pe;
        int64_t pos;
        if ((rc = tuple_elems(pv[i], &n, &pe, &x->tmp2)) < 0)
            goto out;
        if (n != 2 || !long_of(pe[0], &pos)) {
            rc = BADARG;
            goto out;
        }
    }
    /* Work on a copy: obj belongs to the table. */
    term_buf_reset(&x->tmp);
    term_buf_append(&x->tmp, obj.p, obj.len);
    if (x->tmp.err) {
        rc = x->tmp.err;
        goto out;
    }
    obj.p = x->tmp.data;
    term_buf_t elbuf;
    term_buf_init(&elbuf);
    if ((rc = tuple_elems(obj, &arity, &el, &elbuf)) < 0) {
        term_buf_release(&elbuf);
        goto out;
    }
    /* Values are canonicalized into cbuf, which must not move while el
     * points into it: size it first. */
    term_buf_t cbuf;
    term_buf_init(&cbuf);
    size_t need = 0;
    for (size_t i = 0; i < np; i++)
        need += pv[i].len + 16;
    if (term_buf_reserve(&cbuf, need * 2 + 64) < 0) {
        rc = -ENOMEM;
        goto out2;
    }
    for (size_t i = 0; i < np; i++) {
        mv_t *pe;
        int64_t pos;
        tuple_elems(pv[i], &n, &pe, &x->tmp2);
        long_of(pe[0], &pos);
        if (pos < 1 || pos > (int64_t)arity || pos == (int64_t)store_table_keypos(t)) {
            rc = BADARG;
            goto out2;
        }
        size_t start = cbuf.len, used;
        char *before = cbuf.data;
        rc = term_canon_inner(pe[1].p, pe[1].len, &used, &cbuf);
        if (rc < 0 || cbuf.data != before) {
            rc = rc < 0 ? (rc == -ENOMEM ? rc : BADARG) : -ENOMEM;
            goto out2;
        }
        el[pos - 1].p = cbuf.data + start;
        el[pos - 1].len = cbuf.len - start;
    }
    term_buf_reset(&x->tmp2);
    put_tuple_of(&x->tmp2, el, arity);
    if (x->tmp2.err) {
        rc = x->tmp2.err;
        goto out2;
    }
    if ((rc = store_table_put(t, x->tmp2.data, x->tmp2.len)) < 0)
        goto out2;
    term_put_bool(x->out, 1);
    rc = 0;
out2:
    term_buf_release(&cbuf);
    term_buf_release(&elbuf);
out:
    term_buf_release(&pbuf);
    return rc;
}

/* ---- update_counter --------------------------------------------------- */

typedef struct ucop {
    int64_t pos;
    mv_t incr, thr, setv;
    int has_thr;
} ucop_t;

static int parse_ucop(mv_t v, ucop_t *op, term_buf_t *scratch)
{
    uint32_t n;
    mv_t *el;
    int rc = tuple_elems(v, &n, &el, scratch);
    if (rc < 0)
        return rc;
    if ((n != 2 && n != 4) || !long_of(el[0], &op->pos) || !is_integer(el[1]))
        return BADARG;
    op->incr = el[1];
    op->has_thr = n == 4;
    if (n == 4) {
        if (!is_integer(el[2]) || !is_integer(el[3]))
            return BADARG;
        op->thr = el[2];
        op->setv = el[3];
    }
    return 0;
}

static int ets_update_counter(ectx_t *x)
{
    store_table_t *t;
    mv_t key, obj, *el;
    uint32_t arity;
    int rc = table_key(x, &t, &key);
    if (rc < 0)
        return rc;
    unsigned keypos = store_table_keypos(t);
    if (x->n == 4) {
        /* The default must be a tuple even when the key exists. */
        term_reader_t dr;
        term_reader_init(&dr, x->a[3].p, x->a[3].len);
        if (term_peek(&dr) != TERM_T_TUPLE)
            return BADARG;
    }
    term_buf_t ops, elbuf, vals, obuf, canonb;
    term_buf_init(&ops);
    term_buf_init(&elbuf);
    term_buf_init(&vals);
    term_buf_init(&obuf);
    term_buf_init(&canonb);
    size_t nops = 0;
    int is_list = 0;
    ucop_t one;
    memset(&one, 0, sizeof(one));
    term_reader_t r;
    term_reader_init(&r, x->a[2].p, x->a[2].len);
    /* Operations: Incr, {Pos, Incr}, {Pos, Incr, Threshold, SetValue}, or
     * a list of the tuple forms. */
    if (term_peek(&r) == TERM_T_INTEGER) {
        one.pos = keypos + 1;
        one.incr = x->a[2];
        one.has_thr = 0;
        if ((rc = term_buf_reserve(&ops, sizeof(ucop_t))) < 0)
            goto out;
        memcpy(ops.data, &one, sizeof(one));
        nops = 1;
    } else if (term_peek(&r) == TERM_T_TUPLE) {
        if ((rc = parse_ucop(x->a[2], &one, &x->tmp2)) < 0)
            goto out;
        if ((rc = term_buf_reserve(&ops, sizeof(ucop_t))) < 0)
            goto out;
        memcpy(ops.data, &one, sizeof(one));
        nops = 1;
    } else {
        iter_t it;
        mv_t e;
        is_list = 1;
        if ((rc = iter_init(&it, x->a[2])) < 0)
            goto out;
        while ((rc = iter_next(&it, &e)) == 1) {
            if ((rc = parse_ucop(e, &one, &x->tmp2)) < 0)
                goto out;
            term_buf_append(&ops, &one, sizeof(one));
            nops++;
        }
        if (rc < 0 || (rc = ops.err) < 0)
            goto out;
    }
    ucop_t *op = (ucop_t *)(void *)ops.data;

    if (!get(t, key, &obj)) {
        if (x->n < 4) {
            rc = BADARG;
            goto out;
        }
        /* Default object, with its key replaced by Key. */
        mv_t dc, *del;
        uint32_t darity;
        if ((rc = canon(&canonb, x->a[3], &dc)) < 0) {
            rc = rc == -ENOMEM ? rc : BADARG;
            goto out;
        }
        if ((rc = tuple_elems(dc, &darity, &del, &elbuf)) < 0)
            goto out;
        if (darity < keypos) {
            rc = BADARG;
            goto out;
        }
        del[keypos - 1] = key;
        put_tuple_of(&obuf, del, darity);
    } else {
        term_buf_append(&obuf, obj.p, obj.len);
    }
    if ((rc = obuf.err) < 0)
        goto out;
    obj.p = obuf.data;
    obj.len = obuf.len;
    if ((rc = tuple_elems(obj, &arity, &el, &elbuf)) < 0)
        goto out;
    /* New values accumulate in vals; reserve so pointers stay put. */
    size_t need = 64;
    for (size_t i = 0; i < nops; i++)
        need += 2 * (op[i].incr.len + 16) + (op[i].has_thr ? op[i].setv.len : 0);
    for (uint32_t i = 0; i < arity; i++)
        need += el[i].len;
    if ((rc = term_buf_reserve(&vals, need * 2)) < 0)
        goto out;
    char *base = vals.data;
    term_buf_t res;   /* the results, in op order */
    term_buf_init(&res);
    if (is_list)
        put_obj_list_start(&res, nops);
    for (size_t i = 0; i < nops; i++) {
        if (op[i].pos < 1 || op[i].pos > (int64_t)arity || op[i].pos == (int64_t)keypos) {
            rc = BADARG;
            goto out_res;
        }
        mv_t *cur = &el[op[i].pos - 1];
        mv_t inc;
        if ((rc = canon(&canonb, op[i].incr, &inc)) < 0) {
            rc = rc == -ENOMEM ? rc : BADARG;
            goto out_res;
        }
        size_t start = vals.len;
        rc = match_int_add(cur->p, cur->len, inc.p, inc.len, &vals);
        if (rc < 0 || vals.data != base) {
            rc = rc < 0 ? rc : -ENOMEM;
            goto out_res;
        }
        mv_t nv = {vals.data + start, vals.len - start};
        if (op[i].has_thr) {
            mv_t thr, setv;
            int neg = inc.p[0] == STORE_TAG_INT ? (inc.p[1] & 0x80) != 0
                    : (inc.p[0] == STORE_TAG_SMALL_BIG || inc.p[0] == STORE_TAG_LARGE_BIG)
                        ? inc.p[inc.p[0] == STORE_TAG_SMALL_BIG ? 2 : 5] != 0 : 0;
            if ((rc = canon(&canonb, op[i].thr, &thr)) < 0)
                goto out_res;
            int c = term_compare(nv.p, nv.len, thr.p, thr.len);
            if (neg ? c < 0 : c > 0) {
                if ((rc = canon(&canonb, op[i].setv, &setv)) < 0)
                    goto out_res;
                vals.len = start;
                term_buf_append(&vals, setv.p, setv.len);
                if (vals.err || vals.data != base) {
                    rc = -ENOMEM;
                    goto out_res;
                }
                nv.p = vals.data + start;
                nv.len = setv.len;
            }
        }
        *cur = nv;
        term_put_raw(&res, nv.p, nv.len);
    }
    if (is_list)
        put_list_end(&res);
    term_buf_reset(&x->tmp2);
    put_tuple_of(&x->tmp2, el, arity);
    if ((rc = x->tmp2.err) < 0 || (rc = res.err) < 0)
        goto out_res;
    /* The reply must not fail once the counter has moved. */
    if ((rc = term_buf_reserve(x->out, res.len + 1)) < 0)
        goto out_res;
    if ((rc = store_table_put(t, x->tmp2.data, x->tmp2.len)) < 0)
        goto out_res;
    if (is_list && nops == 0) {
        term_put_nil(x->out);
    } else {
        term_put_raw(x->out, res.data, res.len);
    }
    rc = 0;
out_res:
    term_buf_release(&res);
out:
    term_buf_release(&ops);
    term_buf_release(&elbuf);
    term_buf_release(&vals);
    term_buf_release(&obuf);
    term_buf_release(&canonb);
    return rc;
}

/* ---- traversal -------------------------------------------------------- */

static int put_key_of(ectx_t *x, store_table_t *t, int found, mv_t obj)
{
    if (!found) {
        term_put_atom(x->out, "$end_of_table");
        return 0;
    }
    const char *k;
    size_t klen;
    if (store_obj_key(obj.p, obj.len, store_table_keypos(t), &k, &klen) < 0)
        return -EIO;
    term_put_raw(x->out, k, klen);
    return 0;
}

static int ets_first(ectx_t *x)
{
    store_table_t *t;
    mv_t obj;
    int rc = table_of(x, x->a[0], &t);
    if (rc < 0)
        return rc;
    return put_key_of(x, t, store_table_first(t, &obj.p, &obj.len), obj);
}

static int ets_next(ectx_t *x)
{
    store_table_t *t;
    mv_t key, obj;
    int rc = table_key(x, &t, &key);
    if (rc < 0)
        return rc;
    rc = store_table_next(t, key.p, key.len, &obj.p, &obj.len);
    if (rc < 0)
        return BADARG;
    return put_key_of(x, t, rc, obj);
}

/* ---- match specs ------------------------------------------------------ */

typedef enum { SEL_LIST, SEL_COUNT, SEL_DELETE } sel_mode_t;

typedef struct selctx {
    match_spec_t *ms;
    term_buf_t *res;
    size_t count;
    sel_mode_t mode;
    store_table_t *t;
    term_buf_t *keys;   /* SEL_DELETE: canonical keys to delete */
} selctx_t;

static int select_cb(void *arg, const void *obj, size_t len)
{
    selctx_t *c = arg;
    int is_true = 0;
    int rc = match_run(c->ms, obj, len, c->mode == SEL_LIST ? c->res : NULL, &is_true);
    if (rc < 0)
        return rc;
    if (rc == 0)
        return 0;
    if (c->mode == SEL_LIST) {
        c->count++;
    } else if (is_true) {
        c->count++;
        if (c->mode == SEL_DELETE) {
            const char *k;
            size_t klen;
            if (store_obj_key(obj, len, store_table_keypos(c->t), &k, &klen) < 0)
                return -EIO;
            term_buf_append(c->keys, k, klen);
        }
    }
    return 0;
}

static int run_select(ectx_t *x, store_table_t *t, match_spec_t *ms, sel_mode_t mode)
{
    selctx_t c = {ms, &x->tmp, 0, mode, t, &x->tmp2};
    term_buf_reset(&x->tmp);
    term_buf_reset(&x->tmp2);
    const char *keys[16];
    size_t lens[16], nk;
    int rc = 0;
    if (match_bound_keys(ms, store_table_keypos(t), keys, lens, 16, &nk)) {
        for (size_t i = 0; i < nk && rc == 0; i++) {
            int dup = 0;
            for (size_t j = 0; j < i; j++)
                dup |= lens[j] == lens[i] && memcmp(keys[j], keys[i], lens[i]) == 0;
            const char *o;
            size_t olen;
            if (!dup && store_table_get(t, keys[i], lens[i], &o, &olen))
                rc = select_cb(&c, o, olen);
        }
    } else {
        rc = store_table_foreach(t, select_cb, &c);
    }
    if (rc < 0)
        return rc;
    if (x->tmp.err || x->tmp2.err)
        return -ENOMEM;
    if (mode == SEL_LIST) {
        if (c.count)
            term_put_list(x->out, (uint32_t)c.count);
        term_put_raw(x->out, x->tmp.data, x->tmp.len);
        term_put_nil(x->out);
        return 0;
    }
    if (mode == SEL_DELETE) {
        size_t off = 0;
        while (off < x->tmp2.len) {
            size_t used;
            if (term_skip(x->tmp2.data + off, x->tmp2.len - off, &used) < 0)
                return -EIO;
            rc = store_table_remove(t, x->tmp2.data + off, used);
            if (rc < 0 && rc != -ENOENT)
                return rc;
            off += used;
        }
    }
    term_put_ulong(x->out, c.count);
    return 0;
}

static int ets_select(ectx_t *x, sel_mode_t mode, int pattern, match_kind_t kind)
{
    store_table_t *t;
    match_spec_t *ms;
    int rc = table_of(x, x->a[0], &t);
    if (rc < 0)
        return rc;
    rc = pattern ? match_compile_pattern(x->a[1].p, x->a[1].len, kind, &ms)
                 : match_compile(x->a[1].p, x->a[1].len, &ms);
    if (rc < 0)
        return rc == -ENOMEM ? rc : BADARG;
    rc = run_select(x, t, ms, mode);
    match_free(ms);
    return rc;
}

/* ---- info ------------------------------------------------------------- */

static const char *const info_items[] = {
    "id", "decentralized_counters", "read_concurrency", "write_concurrency",
    "compressed", "memory", "owner", "heir", "name", "size", "node",
    "named_table", "type", "keypos", "protection"
};

static const char *node_of(store_t *s);

static int put_info_item(ectx_t *x, store_table_t *t, const char *item)
{
    store_table_opts_t *o = store_table_opts(t);
    term_buf_t *b = x->out;
    if (!strcmp(item, "id") || !strcmp(item, "name"))
        term_put_atom(b, store_table_name(t));
    else if (!strcmp(item, "decentralized_counters"))
        term_put_bool(b, o->decentralized_counters);
    else if (!strcmp(item, "read_concurrency"))
        term_put_bool(b, o->read_concurrency);
    else if (!strcmp(item, "write_concurrency")) {
        if (o->write_concurrency == 2)
            term_put_atom(b, "auto");
        else
            term_put_bool(b, o->write_concurrency);
    } else if (!strcmp(item, "compressed"))
        term_put_bool(b, o->compressed);
    else if (!strcmp(item, "memory"))
        term_put_ulong(b, (store_table_memory(t) + 7) / 8);   /* words */
    else if (!strcmp(item, "owner"))
        /* XXX: a C node table has no owner process: 'none' stands in. */
        term_put_atom(b, "none");
    else if (!strcmp(item, "heir")) {
        if (o->heir)
            term_put_raw(b, o->heir, o->heir_len);
        else
            term_put_atom(b, "none");
    } else if (!strcmp(item, "size"))
        term_put_ulong(b, store_table_size(t));
    else if (!strcmp(item, "node"))
        term_put_atom(b, node_of(x->s));
    else if (!strcmp(item, "named_table"))
        term_put_bool(b, 1);
    else if (!strcmp(item, "type"))
        term_put_atom(b, "set");
    else if (!strcmp(item, "keypos"))
        term_put_ulong(b, store_table_keypos(t));
    else if (!strcmp(item, "protection"))
        term_put_atom(b, o->protection == 0 ? "public" : o->protection == 1 ? "protected" : "private");
    else if (!strcmp(item, "fixed") || !strcmp(item, "safe_fixed") ||
             !strcmp(item, "safe_fixed_monotonic_time"))
        term_put_bool(b, 0);
    else
        return BADARG;
    return 0;
}

/* An rpc caller may name a table that does not exist: info says
 * undefined for an atom (or reference), badarg for anything else. */
static int info_table(ectx_t *x, store_table_t **t)
{
    char name[TERM_ATOM_MAX];
    term_reader_t r;
    term_reader_init(&r, x->a[0].p, x->a[0].len);
    term_type_t ty = term_peek(&r);
    *t = NULL;
    if (ty == TERM_T_REF)
        return 0;
    if (!atom_of(x->a[0], name))
        return BADARG;
    *t = store_table_find(x->s, name);
    return 0;
}

static int ets_info1(ectx_t *x)
{
    store_table_t *t;
    int rc = info_table(x, &t);
    if (rc < 0)
        return rc;
    if (!t) {
        term_put_atom(x->out, "undefined");
        return 0;
    }
    size_t n = sizeof(info_items) / sizeof(info_items[0]);
    term_put_list(x->out, (uint32_t)n);
    for (size_t i = 0; i < n; i++) {
        term_put_tuple(x->out, 2);
        term_put_atom(x->out, info_items[i]);
        put_info_item(x, t, info_items[i]);
    }
    term_put_nil(x->out);
    return 0;
}

static int ets_info2(ectx_t *x)
{
    store_table_t *t;
    char item[TERM_ATOM_MAX];
    int rc = info_table(x, &t);
    if (rc < 0)
        return rc;
    if (!atom_of(x->a[1], item))
        return BADARG;
    if (!t) {
        term_put_atom(x->out, "undefined");
        return 0;
    }
    return put_info_item(x, t, item);
}

/* ---- all, whereis, tab2list ------------------------------------------- */

static int all_cb(void *arg, store_table_t *t)
{
    term_buf_t *b = arg;
    term_put_atom(b, store_table_name(t));
    return 0;
}

static int count_cb(void *arg, store_table_t *t)
{
    (void)t;
    (*(size_t *)arg)++;
    return 0;
}

static int ets_all(ectx_t *x)
{
    size_t n = 0;
    store_foreach_table(x->s, count_cb, &n);
    if (n)
        term_put_list(x->out, (uint32_t)n);
    store_foreach_table(x->s, all_cb, x->out);
    term_put_nil(x->out);
    return 0;
}

static int ets_whereis(ectx_t *x)
{
    char name[TERM_ATOM_MAX];
    if (!atom_of(x->a[0], name))
        return BADARG;
    /* XXX: BEAM answers a table reference; etsd's tables are known by
     * name only, so the name stands in for it. */
    if (store_table_find(x->s, name))
        term_put_atom(x->out, name);
    else
        term_put_atom(x->out, "undefined");
    return 0;
}

static int ets_tab2list(ectx_t *x)
{
    store_table_t *t;
    int rc = table_of(x, x->a[0], &t);
    if (rc < 0)
        return rc;
    return store_tab2list(t, x->out);
}

/* ---- tab2file / file2tab ---------------------------------------------- */

/* A file name as file: takes it: a string, binary or atom. */
static int filename_of(mv_t v, char *path, size_t cap)
{
    term_reader_t r;
    term_reader_init(&r, v.p, v.len);
    const char *p;
    size_t n;
    switch (term_peek(&r)) {
    case TERM_T_STRING:
        if (term_get_string(&r, &p, &n) < 0 || n >= cap || memchr(p, 0, n))
            return BADARG;
        memcpy(path, p, n);
        path[n] = 0;
        break;
    case TERM_T_BINARY:
        if (term_get_binary(&r, &p, &n) < 0 || n >= cap || memchr(p, 0, n))
            return BADARG;
        memcpy(path, p, n);
        path[n] = 0;
        break;
    case TERM_T_ATOM: {
        char a[TERM_ATOM_MAX];
        if (term_get_atom(&r, a) < 0 || strlen(a) >= cap)
            return BADARG;
        strcpy(path, a);
        break;
    }
    case TERM_T_LIST: {
        iter_t it;
        mv_t e;
        int rc;
        n = 0;
        if (iter_init(&it, v) < 0)
            return BADARG;
        while ((rc = iter_next(&it, &e)) == 1) {
            int64_t c;
            if (!long_of(e, &c) || c < 1 || c > 255 || n + 1 >= cap)
                return BADARG;
            path[n++] = (char)c;
        }
        if (rc < 0)
            return BADARG;
        path[n] = 0;
        break;
    }
    default:
        return BADARG;
    }
    return 0;
}

/* ets:tab2file/file2tab report failures as {error, Reason} values, not
 * exceptions; these are the reasons OTP 25 gives. */
static const char *errno_atom(int rc)
{
    switch (rc) {
    case -ENOENT: return "enoent";
    case -EACCES: return "eacces";
    case -EISDIR: return "eisdir";
    case -ENOTDIR: return "enotdir";
    case -ENOSPC: return "enospc";
    case -EROFS: return "erofs";
    default: return "eio";
    }
}

static void put_error_atom(term_buf_t *b, const char *why)
{
    term_put_tuple(b, 2);
    term_put_atom(b, "error");
    term_put_atom(b, why);
}

static void put_unknown_option(term_buf_t *b, mv_t opt)
{
    term_put_tuple(b, 2);
    term_put_atom(b, "error");
    term_put_tuple(b, 2);
    term_put_atom(b, "unknown_option");
    term_put_raw(b, opt.p, opt.len);
}

/* {file_error, FileNameAsGiven, Errno} */
static void put_file_error(term_buf_t *b, mv_t name, int rc)
{
    term_put_tuple(b, 3);
    term_put_atom(b, "file_error");
    term_put_raw(b, name.p, name.len);
    term_put_atom(b, errno_atom(rc));
}

static int ets_tab2file(ectx_t *x)
{
    store_table_t *t;
    char path[4096];
    unsigned flags = 0;
    int rc;
    if (table_of(x, x->a[0], &t) < 0) {
        put_error_atom(x->out, "badtab");
        return 0;
    }
    if ((rc = filename_of(x->a[1], path, sizeof(path))) < 0)
        return rc;
    if (x->n == 3) {
        iter_t it, it2;
        mv_t e, *el, f;
        uint32_t n;
        if (iter_init(&it, x->a[2]) < 0)
            return BADARG;
        while ((rc = iter_next(&it, &e)) == 1) {
            int known = tuple_elems(e, &n, &el, &x->tmp2) == 0 && n == 2;
            if (known && atom_eq(el[0], "sync")) {
                known = atom_eq(el[1], "true") || atom_eq(el[1], "false");
            } else if (known && atom_eq(el[0], "extended_info")) {
                known = iter_init(&it2, el[1]) == 0;
                while (known && (rc = iter_next(&it2, &f)) == 1) {
                    if (atom_eq(f, "object_count"))
                        flags |= STORE_T2F_OBJECT_COUNT;
                    else if (atom_eq(f, "md5sum"))
                        flags |= STORE_T2F_MD5SUM;
                    else
                        known = 0;
                }
                if (rc < 0)
                    known = 0;
            } else {
                known = 0;
            }
            if (!known) {
                put_unknown_option(x->out, e);
                return 0;
            }
        }
        if (rc < 0)
            return BADARG;
    }
    rc = store_tab2file(t, path, flags);
    if (rc == -ENOMEM)
        return rc;
    if (rc < 0) {
        term_put_tuple(x->out, 2);
        term_put_atom(x->out, "error");
        put_file_error(x->out, x->a[1], rc);
    } else {
        term_put_atom(x->out, "ok");
    }
    return 0;
}

static int ets_file2tab(ectx_t *x)
{
    char path[4096];
    int verify = 0, rc;
    if ((rc = filename_of(x->a[0], path, sizeof(path))) < 0)
        return rc;
    if (x->n == 2) {
        iter_t it;
        mv_t e, *el;
        uint32_t n;
        if (iter_init(&it, x->a[1]) < 0)
            return BADARG;
        while ((rc = iter_next(&it, &e)) == 1) {
            if (tuple_elems(e, &n, &el, &x->tmp2) == 0 && n == 2 &&
                atom_eq(el[0], "verify") && (atom_eq(el[1], "true") || atom_eq(el[1], "false"))) {
                verify = atom_eq(el[1], "true");
            } else {
                put_unknown_option(x->out, e);
                return 0;
            }
        }
        if (rc < 0)
            return BADARG;
    }
    store_table_t *t;
    rc = store_file2tab(x->s, path, verify, &t, NULL, 0);
    if (rc == -ENOMEM)
        return rc;
    if (rc < 0) {
        term_put_tuple(x->out, 2);
        term_put_atom(x->out, "error");
        if (rc == -EEXIST) {
            term_put_atom(x->out, "cannot_create_table");
        } else if (rc == -EBADMSG || rc == -ENOTSUP) {
            /* XXX: OTP words damage in many ways (not_a_log_file,
             * checksum_error, ...); one reason stands for all of them. */
            term_put_tuple(x->out, 2);
            term_put_atom(x->out, "read_error");
            term_put_tuple(x->out, 2);
            term_put_atom(x->out, "not_a_log_file");
            term_put_raw(x->out, x->a[0].p, x->a[0].len);
        } else {
            term_put_tuple(x->out, 2);
            term_put_atom(x->out, "read_error");
            put_file_error(x->out, x->a[0], rc);
        }
        return 0;
    }
    term_put_tuple(x->out, 2);
    term_put_atom(x->out, "ok");
    term_put_atom(x->out, store_table_name(t));
    return 0;
}

/* ---- dispatch ----------------------------------------------------------- */

static char store_node[TERM_ATOM_MAX] = "nonode@nohost";

static const char *node_of(store_t *s)
{
    (void)s;
    return store_node;
}

void store_set_node(const char *node)
{
    if (!node || strlen(node) >= 256 || !*node)
        return;
    strcpy(store_node, node);
    match_set_node(node);
}

typedef int (*ets_fn)(ectx_t *x);

static int f_insert(ectx_t *x) { return ets_insert(x, 0); }
static int f_insert_new(ectx_t *x) { return ets_insert(x, 1); }
static int f_match(ectx_t *x) { return ets_select(x, SEL_LIST, 1, MATCH_BINDINGS); }
static int f_match_object(ectx_t *x) { return ets_select(x, SEL_LIST, 1, MATCH_OBJECT); }
static int f_select(ectx_t *x) { return ets_select(x, SEL_LIST, 0, 0); }
static int f_select_count(ectx_t *x) { return ets_select(x, SEL_COUNT, 0, 0); }
static int f_select_delete(ectx_t *x) { return ets_select(x, SEL_DELETE, 0, 0); }

static const struct {
    const char *name;
    int arity;
    ets_fn fn;
} ets_tab[] = {
    {"new", 2, ets_new},
    {"insert", 2, f_insert},
    {"insert_new", 2, f_insert_new},
    {"lookup", 2, ets_lookup},
    {"lookup_element", 3, ets_lookup_element},
    {"member", 2, ets_member},
    {"delete", 1, ets_delete1},
    {"delete", 2, ets_delete2},
    {"delete_object", 2, ets_delete_object},
    {"delete_all_objects", 1, ets_delete_all},
    {"take", 2, ets_take},
    {"update_element", 3, ets_update_element},
    {"update_counter", 3, ets_update_counter},
    {"update_counter", 4, ets_update_counter},
    {"tab2list", 1, ets_tab2list},
    {"info", 1, ets_info1},
    {"info", 2, ets_info2},
    /* set tables: last/prev are first/next (ets documentation) */
    {"first", 1, ets_first},
    {"last", 1, ets_first},
    {"next", 2, ets_next},
    {"prev", 2, ets_next},
    {"match", 2, f_match},
    {"match_object", 2, f_match_object},
    {"select", 2, f_select},
    {"select_count", 2, f_select_count},
    {"select_delete", 2, f_select_delete},
    {"all", 0, ets_all},
    {"whereis", 1, ets_whereis},
    {"tab2file", 2, ets_tab2file},
    {"tab2file", 3, ets_tab2file},
    {"file2tab", 1, ets_file2tab},
    {"file2tab", 2, ets_file2tab},
};

int store_ets_call(store_t *s, const char *fun, const void *args, size_t len,
                   term_buf_t *out)
{
    ectx_t x;
    memset(&x, 0, sizeof(x));
    x.s = s;
    x.out = out;
    /* The argument list: at most MAX_ARGS elements. */
    iter_t it;
    mv_t e;
    int rc;
    if (iter_init(&it, (mv_t){args, len}) < 0)
        return -EINVAL;
    while ((rc = iter_next(&it, &e)) == 1) {
        if (x.n == MAX_ARGS)
            return -ENOENT;   /* no ets function takes more */
        if (e.p == it.tmp) {
            memcpy(x.small[x.n], it.tmp, 2);
            e.p = x.small[x.n];
        }
        x.a[x.n++] = e;
    }
    if (rc < 0)
        return -EINVAL;
    ets_fn fn = NULL;
    for (size_t i = 0; i < sizeof(ets_tab) / sizeof(ets_tab[0]); i++)
        if (ets_tab[i].arity == x.n && strcmp(ets_tab[i].name, fun) == 0)
            fn = ets_tab[i].fn;
    if (!fn)
        return -ENOENT;
    /* Small replies (true, a count, a counter) are encoded after the
     * table has changed: make sure they cannot fail then. */
    if (term_buf_reserve(out, 64) < 0)
        return -ENOMEM;
    term_buf_init(&x.key);
    term_buf_init(&x.tmp);
    term_buf_init(&x.tmp2);
    size_t start = out->len;
    rc = fn(&x);
    if (rc == 0 && out->err)
        rc = out->err;
    if (rc < 0)
        out->len = start;
    term_buf_release(&x.key);
    term_buf_release(&x.tmp);
    term_buf_release(&x.tmp2);
    return rc;
}
