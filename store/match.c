/* match.c: ETS match specifications, interpreted over canonical objects.
 * A spec is compiled once into a tree (patterns, guard and body
 * expressions) and then run on each object's bytes without decoding the
 * object: variables bind to slices of it. Semantics follow erts's
 * match_spec.html ("ETS" grammar) and what OTP 25 ETS does. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "store/match.h"
#include "store/store_int.h"
#include "term/mem.h"

/* ---- Arena ---------------------------------------------------------------- */

/* Compile-time nodes and per-object values come from arenas, so a run
 * allocates nothing on the heap once the first chunk exists, and values
 * never move while they are referenced. */
typedef struct achunk {
    struct achunk *next;
    size_t cap, used;
    max_align_t data[];
} achunk_t;

typedef struct arena {
    achunk_t *head;
} arena_t;

static void *arena_alloc(arena_t *a, size_t n)
{
    n = (n + 15) & ~(size_t)15;
    achunk_t *c = a->head;
    if (!c || c->cap - c->used < n) {
        size_t cap = n > 4096 ? n : 4096;
        c = mem_alloc(sizeof(*c) + cap);
        if (!c)
            return NULL;
        c->cap = cap;
        c->used = 0;
        c->next = a->head;
        a->head = c;
    }
    void *p = (char *)c->data + c->used;
    c->used += n;
    return p;
}

/* Keeps the newest chunk (reused by the next run), frees the rest. */
static void arena_reset(arena_t *a)
{
    achunk_t *c = a->head;
    if (!c)
        return;
    achunk_t *n = c->next;
    c->next = NULL;
    c->used = 0;
    while (n) {
        achunk_t *x = n->next;
        mem_free(n);
        n = x;
    }
}

static void arena_release(arena_t *a)
{
    achunk_t *c = a->head;
    while (c) {
        achunk_t *x = c->next;
        mem_free(c);
        c = x;
    }
    a->head = NULL;
}

/* ---- Values --------------------------------------------------------------- */

/* A value is the canonical encoding of a term: a slice of the object, of
 * the compiled spec, or of the run arena. */
typedef struct mv {
    const unsigned char *p;
    size_t len;
} mv_t;

static const unsigned char ATOM_TRUE[] = {STORE_TAG_SMALL_ATOM_UTF8, 4, 't', 'r', 'u', 'e'};
static const unsigned char ATOM_FALSE[] = {STORE_TAG_SMALL_ATOM_UTF8, 5, 'f', 'a', 'l', 's', 'e'};
static const unsigned char ATOM_EXIT[] = {STORE_TAG_SMALL_ATOM_UTF8, 4, 'E', 'X', 'I', 'T'};
static const unsigned char NIL[] = {STORE_TAG_NIL};

static char node_name[TERM_ATOM_MAX] = "nonode@nohost";

void match_set_node(const char *node)
{
    size_t n = strlen(node);
    if (n == 0 || n >= 256)
        return;
    memcpy(node_name, node, n + 1);
}

static mv_t mv_of(const void *p, size_t len)
{
    mv_t v = {p, len};
    return v;
}

static int mv_eq(mv_t a, mv_t b)
{
    return a.len == b.len && memcmp(a.p, b.p, a.len) == 0;
}

static int mv_is_bool(mv_t v, int *b)
{
    if (mv_eq(v, mv_of(ATOM_TRUE, sizeof(ATOM_TRUE)))) {
        *b = 1;
        return 1;
    }
    if (mv_eq(v, mv_of(ATOM_FALSE, sizeof(ATOM_FALSE)))) {
        *b = 0;
        return 1;
    }
    return 0;
}

static mv_t mv_bool(int b)
{
    return b ? mv_of(ATOM_TRUE, sizeof(ATOM_TRUE)) : mv_of(ATOM_FALSE, sizeof(ATOM_FALSE));
}

static uint32_t be32(const unsigned char *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) |
           ((uint32_t)p[2] << 8) | p[3];
}

static void put_be32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

static int is_atom_tag(unsigned char t)
{
    return t == STORE_TAG_SMALL_ATOM_UTF8 || t == STORE_TAG_ATOM_UTF8 ||
           t == STORE_TAG_ATOM || t == STORE_TAG_SMALL_ATOM;
}

static int is_int_tag(unsigned char t)
{
    return t == STORE_TAG_SMALL_INT || t == STORE_TAG_INT ||
           t == STORE_TAG_SMALL_BIG || t == STORE_TAG_LARGE_BIG;
}

static int is_tuple_tag(unsigned char t)
{
    return t == STORE_TAG_SMALL_TUPLE || t == STORE_TAG_LARGE_TUPLE;
}

static int is_list_tag(unsigned char t)
{
    return t == STORE_TAG_LIST || t == STORE_TAG_STRING || t == STORE_TAG_NIL;
}

/* The atom's name as bytes; 0 if v is not an atom. */
static int atom_name(mv_t v, const char **name, size_t *n)
{
    if (v.len < 2)
        return 0;
    switch (v.p[0]) {
    case STORE_TAG_SMALL_ATOM_UTF8:
    case STORE_TAG_SMALL_ATOM:
        *n = v.p[1];
        *name = (const char *)v.p + 2;
        return *n <= v.len - 2;
    case STORE_TAG_ATOM_UTF8:
    case STORE_TAG_ATOM:
        if (v.len < 3)
            return 0;
        *n = ((size_t)v.p[1] << 8) | v.p[2];
        *name = (const char *)v.p + 3;
        return *n <= v.len - 3;
    default:
        return 0;
    }
}

static int atom_is(mv_t v, const char *s)
{
    const char *n;
    size_t len;
    return atom_name(v, &n, &len) && len == strlen(s) && memcmp(n, s, len) == 0;
}

/* Tuple arity and the offset of its first element. */
static int tuple_hdr(mv_t v, uint32_t *arity, size_t *off)
{
    if (v.len >= 2 && v.p[0] == STORE_TAG_SMALL_TUPLE) {
        *arity = v.p[1];
        *off = 2;
        return 1;
    }
    if (v.len >= 5 && v.p[0] == STORE_TAG_LARGE_TUPLE) {
        *arity = be32(v.p + 1);
        *off = 5;
        return 1;
    }
    return 0;
}

static size_t skip(const unsigned char *p, size_t len)
{
    size_t used = 0;
    if (term_skip(p, len, &used) < 0)
        return 0;
    return used;
}

/* ---- Cursors over object bytes ------------------------------------------- */

/* Head patterns walk the object in place. A list tail inside STRING_EXT or
 * LIST_EXT has no encoding of its own, so a cursor can also stand for one;
 * it is only turned into bytes if a variable binds to it. */
typedef enum { CUR_TERM, CUR_STR, CUR_LTAIL } cur_kind_t;
typedef struct cur {
    cur_kind_t kind;
    const unsigned char *p;
    size_t n;     /* CUR_STR: chars left; CUR_LTAIL: elements left (>= 1) */
    size_t len;   /* bytes available from p */
} cur_t;

/* ---- Compiled form -------------------------------------------------------- */

typedef enum nkind {
    P_ANY, P_VAR, P_LIT, P_TUPLE, P_CONS, P_MAP,
    E_VAR, E_OBJ, E_ALLVARS, E_CONST, E_TUPLE, E_LIST, E_MAP, E_CALL
} nkind_t;

typedef enum fn {
    F_IS_ATOM, F_IS_FLOAT, F_IS_INTEGER, F_IS_LIST, F_IS_NUMBER, F_IS_PID,
    F_IS_PORT, F_IS_REFERENCE, F_IS_TUPLE, F_IS_MAP, F_IS_MAP_KEY,
    F_IS_BINARY, F_IS_FUNCTION, F_IS_RECORD,
    F_AND, F_OR, F_NOT, F_XOR, F_ANDALSO, F_ORELSE,
    F_ABS, F_ELEMENT, F_HD, F_TL, F_LENGTH, F_MAP_GET, F_MAP_SIZE, F_NODE0,
    F_NODE1, F_ROUND, F_SIZE, F_BIT_SIZE, F_BYTE_SIZE, F_TRUNC, F_FLOAT,
    F_BINARY_PART2, F_BINARY_PART3, F_SELF,
    /* from OTP 27 (checked with ets:match_spec_compile/1 on 25, 27, 29) */
    F_TUPLE_SIZE, F_MIN, F_MAX, F_CEIL, F_FLOOR, F_IS_FUNCTION2, F_IS_BITSTRING,
    F_PLUS, F_MINUS, F_TIMES, F_FDIV, F_DIV, F_REM, F_BAND, F_BOR, F_BXOR,
    F_BNOT, F_BSL, F_BSR, F_NEG, F_UPLUS,
    F_GT, F_GE, F_LT, F_LE, F_EXEQ, F_EQ, F_EXNE, F_NE
} fn_t;

/* arity -1: any number of arguments, at least one. */
static const struct fndef {
    const char *name;
    int arity;
    fn_t fn;
} fntab[] = {
    {"is_atom", 1, F_IS_ATOM}, {"is_float", 1, F_IS_FLOAT},
    {"is_integer", 1, F_IS_INTEGER}, {"is_list", 1, F_IS_LIST},
    {"is_number", 1, F_IS_NUMBER}, {"is_pid", 1, F_IS_PID},
    {"is_port", 1, F_IS_PORT}, {"is_reference", 1, F_IS_REFERENCE},
    {"is_tuple", 1, F_IS_TUPLE}, {"is_map", 1, F_IS_MAP},
    {"is_map_key", 2, F_IS_MAP_KEY}, {"is_binary", 1, F_IS_BINARY},
    {"is_function", 1, F_IS_FUNCTION}, {"is_record", 3, F_IS_RECORD},
    {"and", -1, F_AND}, {"or", -1, F_OR}, {"not", 1, F_NOT},
    {"xor", 2, F_XOR}, {"andalso", -1, F_ANDALSO}, {"orelse", -1, F_ORELSE},
    {"abs", 1, F_ABS}, {"element", 2, F_ELEMENT}, {"hd", 1, F_HD},
    {"tl", 1, F_TL}, {"length", 1, F_LENGTH}, {"map_get", 2, F_MAP_GET},
    {"map_size", 1, F_MAP_SIZE}, {"node", 0, F_NODE0}, {"node", 1, F_NODE1},
    {"round", 1, F_ROUND}, {"size", 1, F_SIZE}, {"bit_size", 1, F_BIT_SIZE},
    {"byte_size", 1, F_BYTE_SIZE}, {"trunc", 1, F_TRUNC},
    {"float", 1, F_FLOAT}, {"binary_part", 2, F_BINARY_PART2},
    {"binary_part", 3, F_BINARY_PART3}, {"self", 0, F_SELF},
    {"+", 2, F_PLUS}, {"-", 2, F_MINUS}, {"*", 2, F_TIMES}, {"/", 2, F_FDIV},
    {"div", 2, F_DIV}, {"rem", 2, F_REM}, {"band", 2, F_BAND},
    {"bor", 2, F_BOR}, {"bxor", 2, F_BXOR}, {"bnot", 1, F_BNOT},
    {"bsl", 2, F_BSL}, {"bsr", 2, F_BSR}, {"-", 1, F_NEG}, {"+", 1, F_UPLUS},
    {">", 2, F_GT}, {">=", 2, F_GE}, {"<", 2, F_LT}, {"=<", 2, F_LE},
    {"=:=", 2, F_EXEQ}, {"==", 2, F_EQ}, {"=/=", 2, F_EXNE}, {"/=", 2, F_NE},
    {"tuple_size", 1, F_TUPLE_SIZE}, {"min", 2, F_MIN}, {"max", 2, F_MAX},
    {"ceil", 1, F_CEIL}, {"floor", 1, F_FLOOR}, {"is_function", 2, F_IS_FUNCTION2},
    {"is_bitstring", 1, F_IS_BITSTRING},
};

/* Functions a match spec may call only from that release on. */
static int fn_release(fn_t fn)
{
    return fn >= F_TUPLE_SIZE && fn <= F_IS_BITSTRING ? 27 : 0;
}

typedef struct mnode {
    nkind_t kind;
    fn_t fn;
    uint32_t n;              /* children, or the variable's slot */
    mv_t lit;                /* P_LIT, E_CONST; P_MAP keys are kid lits */
    struct mnode **kid;
} mnode_t;

typedef struct mclause {
    mnode_t *head;           /* NULL: the head can never match */
    mnode_t **guard, **body;
    uint32_t nguard, nbody;
    uint32_t *cvar;          /* sorted '$N' numbers of the head: '$$' order */
    uint32_t ncvar;
    mv_t head_bytes;         /* the head as written (canonical) */
} mclause_t;

struct match_spec {
    arena_t a;               /* nodes and the canonical spec */
    arena_t run;             /* per-object values */
    mclause_t *cl;
    uint32_t ncl;
    uint32_t nvars;          /* slots over all clauses */
    mv_t *vars;              /* nvars bound values during a run */
    /* compile state for the current clause */
    uint32_t *cvar;          /* sorted distinct '$N' numbers in the head */
    uint32_t ncvar;
    /* run state */
    const unsigned char *obj;
    size_t objlen;
    uint32_t run_ncvar;
    term_buf_t tmp;
};

/* '$N' -> N, or -1 if the atom is not a match variable. */
static long var_number(mv_t v)
{
    const char *n;
    size_t len;
    if (!atom_name(v, &n, &len) || len < 2 || len > 10 || n[0] != '$')
        return -1;
    long x = 0;
    for (size_t i = 1; i < len; i++) {
        if (n[i] < '0' || n[i] > '9')
            return -1;
        x = x * 10 + (n[i] - '0');
    }
    if (x > 100000000)   /* ETS's own limit on '$N' */
        return -1;
    return x;
}

static mnode_t *node_new(match_spec_t *ms, nkind_t kind, uint32_t nkids)
{
    mnode_t *nd = arena_alloc(&ms->a, sizeof(*nd) + nkids * sizeof(mnode_t *));
    if (!nd)
        return NULL;
    memset(nd, 0, sizeof(*nd));
    nd->kind = kind;
    nd->n = nkids;
    nd->kid = (mnode_t **)(nd + 1);
    return nd;
}

/* Collects the variable numbers of a head into a sorted distinct set. */
static int collect_vars(match_spec_t *ms, const unsigned char *p, size_t len,
                        uint32_t **set, uint32_t *n, uint32_t *cap, int depth)
{
    if (depth > TERM_MAX_DEPTH)
        return -EINVAL;
    mv_t v = mv_of(p, len);
    long x = var_number(v);
    if (x >= 0) {
        uint32_t i = 0;
        while (i < *n && (*set)[i] < (uint32_t)x)
            i++;
        if (i < *n && (*set)[i] == (uint32_t)x)
            return 0;
        if (*n == *cap) {
            uint32_t nc = *cap ? *cap * 2 : 8;
            uint32_t *ns = arena_alloc(&ms->a, nc * sizeof(uint32_t));
            if (!ns)
                return -ENOMEM;
            if (*n)
                memcpy(ns, *set, *n * sizeof(uint32_t));
            *set = ns;
            *cap = nc;
        }
        memmove(*set + i + 1, *set + i, (*n - i) * sizeof(uint32_t));
        (*set)[i] = (uint32_t)x;
        (*n)++;
        return 0;
    }
    term_reader_t r;
    term_reader_init(&r, p, len);
    uint32_t arity;
    const char *e;
    size_t elen;
    switch (term_peek(&r)) {
    case TERM_T_TUPLE:
        if (term_get_tuple(&r, &arity) < 0)
            return -EINVAL;
        for (uint32_t i = 0; i < arity; i++) {
            if (term_get_any(&r, &e, &elen) < 0)
                return -EINVAL;
            int rc = collect_vars(ms, (const unsigned char *)e, elen, set, n, cap, depth + 1);
            if (rc < 0)
                return rc;
        }
        return 0;
    case TERM_T_LIST:
        if (term_get_list(&r, &arity) < 0)
            return -EINVAL;
        for (uint32_t i = 0; i <= arity; i++) {   /* elements and tail */
            if (term_get_any(&r, &e, &elen) < 0)
                return -EINVAL;
            int rc = collect_vars(ms, (const unsigned char *)e, elen, set, n, cap, depth + 1);
            if (rc < 0)
                return rc;
        }
        return 0;
    case TERM_T_MAP:
        if (term_get_map(&r, &arity) < 0)
            return -EINVAL;
        for (uint32_t i = 0; i < 2 * arity; i++) {
            if (term_get_any(&r, &e, &elen) < 0)
                return -EINVAL;
            if (i % 2 == 0)
                continue;
            int rc = collect_vars(ms, (const unsigned char *)e, elen, set, n, cap, depth + 1);
            if (rc < 0)
                return rc;
        }
        return 0;
    default:
        return 0;
    }
}

static uint32_t var_slot(match_spec_t *ms, uint32_t x)
{
    for (uint32_t i = 0; i < ms->ncvar; i++)
        if (ms->cvar[i] == x)
            return i;
    return UINT32_MAX;
}

/* Whether a term holds '_' or '$N' anywhere. With map_is_part, any map
 * counts too: in a pattern maps match by subset, never by equality, so a
 * pattern holding one cannot be treated as a literal. Without it, maps are
 * searched like tuples (keys and values). */
static int scan_vars(const unsigned char *p, size_t len, int depth, int map_is_part)
{
    if (depth > TERM_MAX_DEPTH)
        return 1;
    mv_t v = mv_of(p, len);
    if (atom_is(v, "_") || var_number(v) >= 0)
        return 1;
    term_reader_t r;
    term_reader_init(&r, p, len);
    uint32_t n;
    const char *e;
    size_t elen;
    switch (term_peek(&r)) {
    case TERM_T_TUPLE:
        if (term_get_tuple(&r, &n) < 0)
            return 1;
        break;
    case TERM_T_LIST:
        if (term_get_list(&r, &n) < 0 || n == UINT32_MAX)
            return 1;
        n++;   /* the tail */
        break;
    case TERM_T_MAP:
        if (map_is_part)
            return 1;
        if (term_get_map(&r, &n) < 0 || n > UINT32_MAX / 2)
            return 1;
        n *= 2;
        break;
    default:
        return 0;
    }
    for (uint32_t i = 0; i < n; i++) {
        if (term_get_any(&r, &e, &elen) < 0)
            return 1;
        if (scan_vars((const unsigned char *)e, elen, depth + 1, map_is_part))
            return 1;
    }
    return 0;
}

/* Whether a term holds anything a pattern treats specially: '_', '$N',
 * or a map. */
static int has_pattern_parts(const unsigned char *p, size_t len, int depth)
{
    return scan_vars(p, len, depth, 1);
}

/* Whether a term holds '_' or '$N' anywhere (map keys and values included). */
static int has_vars(const unsigned char *p, size_t len, int depth)
{
    return scan_vars(p, len, depth, 0);
}

static mnode_t *compile_pat(match_spec_t *ms, const unsigned char *p, size_t len,
                            int depth, int *err);

static mnode_t *lit_node(match_spec_t *ms, nkind_t kind, const unsigned char *p,
                         size_t len, int *err)
{
    mnode_t *nd = node_new(ms, kind, 0);
    if (!nd) {
        *err = -ENOMEM;
        return NULL;
    }
    nd->lit = mv_of(p, len);
    return nd;
}

static mnode_t *compile_pat(match_spec_t *ms, const unsigned char *p, size_t len,
                            int depth, int *err)
{
    if (depth > TERM_MAX_DEPTH) {
        *err = -EINVAL;
        return NULL;
    }
    mv_t v = mv_of(p, len);
    if (atom_is(v, "_")) {
        mnode_t *nd = node_new(ms, P_ANY, 0);
        if (!nd)
            *err = -ENOMEM;
        return nd;
    }
    long x = var_number(v);
    if (x >= 0) {
        mnode_t *nd = node_new(ms, P_VAR, 0);
        if (!nd) {
            *err = -ENOMEM;
            return NULL;
        }
        nd->n = var_slot(ms, (uint32_t)x);
        return nd;
    }
    if (!has_pattern_parts(p, len, depth))
        return lit_node(ms, P_LIT, p, len, err);
    term_reader_t r;
    term_reader_init(&r, p, len);
    uint32_t n;
    const char *e;
    size_t elen;
    switch (term_peek(&r)) {
    case TERM_T_TUPLE: {
        if (term_get_tuple(&r, &n) < 0)
            goto bad;
        mnode_t *nd = node_new(ms, P_TUPLE, n);
        if (!nd)
            goto nomem;
        for (uint32_t i = 0; i < n; i++) {
            if (term_get_any(&r, &e, &elen) < 0)
                goto bad;
            nd->kid[i] = compile_pat(ms, (const unsigned char *)e, elen, depth + 1, err);
            if (!nd->kid[i])
                return NULL;
        }
        return nd;
    }
    case TERM_T_LIST: {
        /* [H | T]: the tail is the rest of the list (LIST_EXT has n
         * elements then a tail), built back to front. */
        if (term_get_list(&r, &n) < 0 || n > len)
            goto bad;
        const char **elems = arena_alloc(&ms->a, (n + 1) * sizeof(*elems));
        size_t *lens = arena_alloc(&ms->a, (n + 1) * sizeof(*lens));
        if (!elems || !lens)
            goto nomem;
        for (uint32_t i = 0; i < n; i++)
            if (term_get_any(&r, &elems[i], &lens[i]) < 0)
                goto bad;
        if (term_get_any(&r, &e, &elen) < 0)
            goto bad;
        mnode_t *tail = compile_pat(ms, (const unsigned char *)e, elen, depth + 1, err);
        if (!tail)
            return NULL;
        for (uint32_t i = n; i-- > 0;) {
            mnode_t *c = node_new(ms, P_CONS, 2);
            if (!c)
                goto nomem;
            c->kid[0] = compile_pat(ms, (const unsigned char *)elems[i], lens[i], depth + 1, err);
            if (!c->kid[0])
                return NULL;
            c->kid[1] = tail;
            tail = c;
        }
        return tail;
    }
    case TERM_T_MAP: {
        if (term_get_map(&r, &n) < 0)
            goto bad;
        mnode_t *nd = node_new(ms, P_MAP, 2 * n);
        if (!nd)
            goto nomem;
        for (uint32_t i = 0; i < n; i++) {
            if (term_get_any(&r, &e, &elen) < 0)
                goto bad;
            /* ETS: a key of a map pattern must be a literal. */
            if (has_pattern_parts((const unsigned char *)e, elen, depth + 1))
                goto bad;
            nd->kid[2 * i] = lit_node(ms, P_LIT, (const unsigned char *)e, elen, err);
            if (!nd->kid[2 * i])
                return NULL;
            if (term_get_any(&r, &e, &elen) < 0)
                goto bad;
            nd->kid[2 * i + 1] = compile_pat(ms, (const unsigned char *)e, elen, depth + 1, err);
            if (!nd->kid[2 * i + 1])
                return NULL;
        }
        return nd;
    }
    default:
        return lit_node(ms, P_LIT, p, len, err);
    }
bad:
    *err = -EINVAL;
    return NULL;
nomem:
    *err = -ENOMEM;
    return NULL;
}

static const struct fndef *fn_lookup(mv_t atom, int nargs)
{
    const char *name;
    size_t n;
    if (!atom_name(atom, &name, &n))
        return NULL;
    for (size_t i = 0; i < sizeof(fntab) / sizeof(fntab[0]); i++) {
        const struct fndef *f = &fntab[i];
        if (strlen(f->name) == n && memcmp(f->name, name, n) == 0 &&
            (f->arity == nargs || (f->arity < 0 && nargs >= 1)) &&
            fn_release(f->fn) <= term_otp_release())
            return f;
    }
    return NULL;
}

static mnode_t *compile_expr(match_spec_t *ms, const unsigned char *p, size_t len,
                             int depth, int *err)
{
    if (depth > TERM_MAX_DEPTH)
        goto bad;
    mv_t v = mv_of(p, len);
    term_reader_t r;
    term_reader_init(&r, p, len);
    uint32_t n;
    const char *e;
    size_t elen;
    switch (term_peek(&r)) {
    case TERM_T_ATOM: {
        if (atom_is(v, "$_") || atom_is(v, "$$")) {
            mnode_t *nd = node_new(ms, atom_is(v, "$_") ? E_OBJ : E_ALLVARS, 0);
            if (!nd)
                goto nomem;
            return nd;
        }
        long x = var_number(v);
        if (x >= 0) {
            uint32_t slot = var_slot(ms, (uint32_t)x);
            if (slot == UINT32_MAX)
                goto bad;   /* unbound variable */
            mnode_t *nd = node_new(ms, E_VAR, 0);
            if (!nd)
                goto nomem;
            nd->n = slot;
            return nd;
        }
        return lit_node(ms, E_CONST, p, len, err);
    }
    case TERM_T_TUPLE: {
        if (term_get_tuple(&r, &n) < 0 || n == 0)
            goto bad;
        if (term_get_any(&r, &e, &elen) < 0)
            goto bad;
        mv_t first = mv_of(e, elen);
        if (n == 1 && is_tuple_tag(first.p[0])) {
            /* {{...}}: build a tuple of the inner tuple's expressions */
            term_reader_t ri;
            uint32_t m;
            term_reader_init(&ri, e, elen);
            if (term_get_tuple(&ri, &m) < 0)
                goto bad;
            mnode_t *nd = node_new(ms, E_TUPLE, m);
            if (!nd)
                goto nomem;
            for (uint32_t i = 0; i < m; i++) {
                const char *ee;
                size_t eel;
                if (term_get_any(&ri, &ee, &eel) < 0)
                    goto bad;
                nd->kid[i] = compile_expr(ms, (const unsigned char *)ee, eel, depth + 1, err);
                if (!nd->kid[i])
                    return NULL;
            }
            return nd;
        }
        if (!is_atom_tag(first.p[0]))
            goto bad;
        if (atom_is(first, "const")) {
            if (n != 2 || term_get_any(&r, &e, &elen) < 0)
                goto bad;
            return lit_node(ms, E_CONST, (const unsigned char *)e, elen, err);
        }
        const struct fndef *f = fn_lookup(first, (int)n - 1);
        if (!f)
            goto bad;
        mnode_t *nd = node_new(ms, E_CALL, n - 1);
        if (!nd)
            goto nomem;
        nd->fn = f->fn;
        for (uint32_t i = 0; i + 1 < n; i++) {
            if (term_get_any(&r, &e, &elen) < 0)
                goto bad;
            nd->kid[i] = compile_expr(ms, (const unsigned char *)e, elen, depth + 1, err);
            if (!nd->kid[i])
                return NULL;
        }
        return nd;
    }
    case TERM_T_LIST: {
        if (term_get_list(&r, &n) < 0 || n == UINT32_MAX)
            goto bad;
        mnode_t *nd = node_new(ms, E_LIST, n + 1);
        if (!nd)
            goto nomem;
        for (uint32_t i = 0; i <= n; i++) {
            if (term_get_any(&r, &e, &elen) < 0)
                goto bad;
            nd->kid[i] = compile_expr(ms, (const unsigned char *)e, elen, depth + 1, err);
            if (!nd->kid[i])
                return NULL;
        }
        return nd;
    }
    case TERM_T_MAP: {
        if (term_get_map(&r, &n) < 0 || n > UINT32_MAX / 2)
            goto bad;
        mnode_t *nd = node_new(ms, E_MAP, 2 * n);
        if (!nd)
            goto nomem;
        for (uint32_t i = 0; i < 2 * n; i++) {
            if (term_get_any(&r, &e, &elen) < 0)
                goto bad;
            nd->kid[i] = compile_expr(ms, (const unsigned char *)e, elen, depth + 1, err);
            if (!nd->kid[i])
                return NULL;
        }
        return nd;
    }
    default:
        return lit_node(ms, E_CONST, p, len, err);
    }
bad:
    *err = -EINVAL;
    return NULL;
nomem:
    *err = -ENOMEM;
    return NULL;
}

/* Reads a proper list's elements (LIST_EXT with NIL tail, or NIL) into a
 * new arena array. STRING_EXT is never a valid guard/body/spec list. */
static int read_list(match_spec_t *ms, const unsigned char *p, size_t len,
                     mv_t **out, uint32_t *count)
{
    term_reader_t r;
    term_reader_init(&r, p, len);
    uint32_t n;
    if (term_peek(&r) == TERM_T_NIL) {
        *count = 0;
        *out = NULL;
        return 0;
    }
    if (term_peek(&r) != TERM_T_LIST || term_get_list(&r, &n) < 0)
        return -EINVAL;
    mv_t *a = arena_alloc(&ms->a, (size_t)n * sizeof(mv_t));
    if (!a)
        return -ENOMEM;
    for (uint32_t i = 0; i < n; i++) {
        const char *e;
        size_t elen;
        if (term_get_any(&r, &e, &elen) < 0)
            return -EINVAL;
        a[i] = mv_of(e, elen);
    }
    if (term_get_nil(&r) < 0)
        return -EINVAL;
    *out = a;
    *count = n;
    return 0;
}

static int compile_clause(match_spec_t *ms, mv_t cl, mclause_t *out)
{
    term_reader_t r;
    term_reader_init(&r, cl.p, cl.len);
    uint32_t n;
    const char *e;
    size_t elen;
    mv_t head, guards, body;
    if (term_get_tuple(&r, &n) < 0 || n != 3)
        return -EINVAL;
    if (term_get_any(&r, &e, &elen) < 0)
        return -EINVAL;
    head = mv_of(e, elen);
    if (term_get_any(&r, &e, &elen) < 0)
        return -EINVAL;
    guards = mv_of(e, elen);
    if (term_get_any(&r, &e, &elen) < 0)
        return -EINVAL;
    body = mv_of(e, elen);

    uint32_t cap = 0;
    ms->cvar = NULL;
    ms->ncvar = 0;
    int rc = collect_vars(ms, head.p, head.len, &ms->cvar, &ms->ncvar, &cap, 0);
    if (rc < 0)
        return rc;
    if (ms->ncvar > ms->nvars)
        ms->nvars = ms->ncvar;
    int err = 0;
    out->head_bytes = head;
    /* ETS: a head other than a tuple, '_' or '$N' never matches. */
    if (is_tuple_tag(head.p[0]) || atom_is(head, "_") || var_number(head) >= 0) {
        out->head = compile_pat(ms, head.p, head.len, 0, &err);
        if (!out->head)
            return err;
    } else {
        out->head = NULL;
    }
    mv_t *g, *b;
    if ((rc = read_list(ms, guards.p, guards.len, &g, &out->nguard)) < 0)
        return rc;
    if ((rc = read_list(ms, body.p, body.len, &b, &out->nbody)) < 0)
        return rc;
    if (out->nbody == 0)
        return -EINVAL;
    out->guard = arena_alloc(&ms->a, (out->nguard + 1) * sizeof(mnode_t *));
    out->body = arena_alloc(&ms->a, out->nbody * sizeof(mnode_t *));
    if (!out->guard || !out->body)
        return -ENOMEM;
    for (uint32_t i = 0; i < out->nguard; i++)
        if (!(out->guard[i] = compile_expr(ms, g[i].p, g[i].len, 0, &err)))
            return err;
    for (uint32_t i = 0; i < out->nbody; i++)
        if (!(out->body[i] = compile_expr(ms, b[i].p, b[i].len, 0, &err)))
            return err;
    out->cvar = ms->cvar;
    out->ncvar = ms->ncvar;
    return 0;
}

static int spec_new(const void *spec, size_t len, match_spec_t **out,
                    const unsigned char **canon, size_t *clen)
{
    match_spec_t *ms = mem_calloc(1, sizeof(*ms));
    if (!ms)
        return -ENOMEM;
    term_buf_init(&ms->tmp);
    term_buf_t b;
    term_buf_init(&b);
    size_t used;
    int rc = term_canon_inner(spec, len, &used, &b);
    if (rc < 0 || used != len) {
        term_buf_release(&b);
        mem_free(ms);
        return rc == -ENOMEM ? rc : -EINVAL;
    }
    unsigned char *c = arena_alloc(&ms->a, b.len);
    if (!c) {
        term_buf_release(&b);
        match_free(ms);
        return -ENOMEM;
    }
    memcpy(c, b.data, b.len);
    *clen = b.len;
    term_buf_release(&b);
    *canon = c;
    *out = ms;
    return 0;
}

static int finish(match_spec_t *ms)
{
    if (ms->nvars) {
        ms->vars = arena_alloc(&ms->a, ms->nvars * sizeof(mv_t));
        if (!ms->vars)
            return -ENOMEM;
    }
    return 0;
}

int match_compile(const void *spec, size_t len, match_spec_t **out)
{
    match_spec_t *ms;
    const unsigned char *c;
    size_t clen;
    int rc = spec_new(spec, len, &ms, &c, &clen);
    if (rc < 0)
        return rc;
    mv_t *cls;
    uint32_t n;
    if ((rc = read_list(ms, c, clen, &cls, &n)) < 0)
        goto fail;
    ms->cl = arena_alloc(&ms->a, (n + 1) * sizeof(mclause_t));
    if (!ms->cl) {
        rc = -ENOMEM;
        goto fail;
    }
    ms->ncl = n;
    for (uint32_t i = 0; i < n; i++) {
        mclause_t *ce = &ms->cl[i];
        if ((rc = compile_clause(ms, cls[i], ce)) < 0)
            goto fail;
    }
    if ((rc = finish(ms)) < 0)
        goto fail;
    *out = ms;
    return 0;
fail:
    match_free(ms);
    return rc;
}

int match_compile_pattern(const void *pat, size_t len, match_kind_t kind,
                          match_spec_t **out)
{
    match_spec_t *ms;
    const unsigned char *c;
    size_t clen;
    int rc = spec_new(pat, len, &ms, &c, &clen);
    if (rc < 0)
        return rc;
    ms->cl = arena_alloc(&ms->a, sizeof(mclause_t));
    if (!ms->cl) {
        rc = -ENOMEM;
        goto fail;
    }
    ms->ncl = 1;
    mclause_t *ce = ms->cl;
    memset(ce, 0, sizeof(*ce));   /* a head that can never match stays NULL */
    uint32_t cap = 0;
    ms->cvar = NULL;
    ms->ncvar = 0;
    if ((rc = collect_vars(ms, c, clen, &ms->cvar, &ms->ncvar, &cap, 0)) < 0)
        goto fail;
    ms->nvars = ms->ncvar;
    int err = 0;
    mv_t head = mv_of(c, clen);
    ce->head_bytes = head;
    if (is_tuple_tag(c[0]) || atom_is(head, "_") || var_number(head) >= 0) {
        if (!(ce->head = compile_pat(ms, c, clen, 0, &err))) {
            rc = err;
            goto fail;
        }
    }
    ce->nguard = 0;
    ce->nbody = 1;
    ce->body = arena_alloc(&ms->a, sizeof(mnode_t *));
    if (!ce->body || !(ce->body[0] = node_new(ms, kind == MATCH_OBJECT ? E_OBJ : E_ALLVARS, 0))) {
        rc = -ENOMEM;
        goto fail;
    }
    ce->ncvar = ms->ncvar;
    ce->cvar = ms->cvar;
    if ((rc = finish(ms)) < 0)
        goto fail;
    *out = ms;
    return 0;
fail:
    match_free(ms);
    return rc;
}

void match_free(match_spec_t *ms)
{
    if (!ms)
        return;
    arena_release(&ms->a);
    arena_release(&ms->run);
    term_buf_release(&ms->tmp);
    mem_free(ms);
}

int match_bound_keys(match_spec_t *ms, unsigned keypos, const char **keys,
                     size_t *lens, size_t max, size_t *n)
{
    *n = 0;
    for (uint32_t c = 0; c < ms->ncl; c++) {
        mclause_t *cl = &ms->cl[c];
        if (!cl->head)
            continue;
        uint32_t arity;
        size_t off;
        mv_t h = cl->head_bytes;
        if (!tuple_hdr(h, &arity, &off) || arity < keypos)
            return 0;
        for (unsigned i = 1; i < keypos; i++)
            off += skip(h.p + off, h.len - off);
        size_t klen = skip(h.p + off, h.len - off);
        if (!klen || has_vars(h.p + off, klen, 0) || *n == max)
            return 0;
        /* OTP 27 scans when the key holds a map, which then matches as a
         * sub-map pattern (checked on 25, 27 and 29) */
        if (term_otp_release() >= 27 && has_pattern_parts(h.p + off, klen, 0))
            return 0;
        keys[*n] = (const char *)h.p + off;
        lens[*n] = klen;
        (*n)++;
    }
    return 1;
}

/* ---- Running: errors -------------------------------------------------- */

/* Evaluation returns 0 with a value, EXC (> 0) for an Erlang exception in
 * the spec, or a negative errno for our own failure (ENOMEM). */
#define EXC 1

static void *ralloc(match_spec_t *ms, size_t n)
{
    return arena_alloc(&ms->run, n ? n : 1);
}

/* Copies ms->tmp's bytes into the run arena as a value. */
static int tmp_value(match_spec_t *ms, mv_t *out)
{
    if (ms->tmp.err)
        return ms->tmp.err;
    unsigned char *p = ralloc(ms, ms->tmp.len);
    if (!p)
        return -ENOMEM;
    memcpy(p, ms->tmp.data, ms->tmp.len);
    *out = mv_of(p, ms->tmp.len);
    return 0;
}

/* Canonicalizes the (valid, maybe non-canonical) bytes in ms->tmp. */
static int tmp_canon_value(match_spec_t *ms, mv_t *out)
{
    if (ms->tmp.err)
        return ms->tmp.err;
    term_buf_t c;
    term_buf_init(&c);
    size_t used;
    int rc = term_canon_inner(ms->tmp.data, ms->tmp.len, &used, &c);
    if (rc < 0) {
        term_buf_release(&c);
        return rc == -ENOMEM ? rc : EXC;
    }
    unsigned char *p = ralloc(ms, c.len);
    if (!p) {
        term_buf_release(&c);
        return -ENOMEM;
    }
    memcpy(p, c.data, c.len);
    *out = mv_of(p, c.len);
    term_buf_release(&c);
    return 0;
}

/* ---- Cursors ---------------------------------------------------------- */

static cur_t cur_term(const unsigned char *p, size_t len)
{
    cur_t c = {CUR_TERM, p, 0, len};
    return c;
}

/* The encoding of what the cursor stands for. */
static int cur_value(match_spec_t *ms, cur_t c, mv_t *out)
{
    switch (c.kind) {
    case CUR_TERM: {
        size_t n = skip(c.p, c.len);
        if (!n)
            return EXC;
        *out = mv_of(c.p, n);
        return 0;
    }
    case CUR_STR: {
        if (c.n == 0) {
            *out = mv_of(NIL, 1);
            return 0;
        }
        unsigned char *p = ralloc(ms, 3 + c.n);
        if (!p)
            return -ENOMEM;
        p[0] = STORE_TAG_STRING;
        p[1] = (unsigned char)(c.n >> 8);
        p[2] = (unsigned char)c.n;
        memcpy(p + 3, c.p, c.n);
        *out = mv_of(p, 3 + c.n);
        return 0;
    }
    case CUR_LTAIL: {
        /* n elements, then the tail: find where the tail ends */
        size_t off = 0;
        for (size_t i = 0; i <= c.n; i++) {
            size_t k = skip(c.p + off, c.len - off);
            if (!k)
                return EXC;
            off += k;
        }
        term_buf_reset(&ms->tmp);
        unsigned char h[5] = {STORE_TAG_LIST};
        put_be32(h + 1, (uint32_t)c.n);
        term_buf_append(&ms->tmp, h, 5);
        term_buf_append(&ms->tmp, c.p, off);
        return tmp_canon_value(ms, out);
    }
    }
    return EXC;
}

/* For a non-empty list: its head and tail cursors. 0 if not a cons. */
static int cur_cons(match_spec_t *ms, cur_t c, cur_t *hd, cur_t *tl, int *err)
{
    *err = 0;
    switch (c.kind) {
    case CUR_TERM:
        if (c.len >= 5 && c.p[0] == STORE_TAG_LIST) {
            uint32_t n = be32(c.p + 1);
            if (n == 0)
                return 0;
            *hd = cur_term(c.p + 5, c.len - 5);
            size_t k = skip(c.p + 5, c.len - 5);
            if (!k)
                return 0;
            if (n == 1) {
                *tl = cur_term(c.p + 5 + k, c.len - 5 - k);
            } else {
                tl->kind = CUR_LTAIL;
                tl->p = c.p + 5 + k;
                tl->len = c.len - 5 - k;
                tl->n = n - 1;
            }
            return 1;
        }
        if (c.len >= 3 && c.p[0] == STORE_TAG_STRING) {
            size_t n = ((size_t)c.p[1] << 8) | c.p[2];
            if (n == 0 || n > c.len - 3)
                return 0;
            c.kind = CUR_STR;
            c.n = n;
            c.p += 3;
            c.len -= 3;
            /* fall through to CUR_STR handling */
        } else {
            return 0;
        }
        /* FALLTHROUGH */
    case CUR_STR: {
        if (c.n == 0)
            return 0;
        unsigned char *p = ralloc(ms, 2);
        if (!p) {
            *err = -ENOMEM;
            return 0;
        }
        p[0] = STORE_TAG_SMALL_INT;
        p[1] = c.p[0];
        *hd = cur_term(p, 2);
        tl->kind = CUR_STR;
        tl->p = c.p + 1;
        tl->n = c.n - 1;
        tl->len = c.len - 1;
        return 1;
    }
    case CUR_LTAIL: {
        *hd = cur_term(c.p, c.len);
        size_t k = skip(c.p, c.len);
        if (!k)
            return 0;
        if (c.n == 1) {
            *tl = cur_term(c.p + k, c.len - k);
        } else {
            tl->kind = CUR_LTAIL;
            tl->p = c.p + k;
            tl->len = c.len - k;
            tl->n = c.n - 1;
        }
        return 1;
    }
    }
    return 0;
}

/* ---- Running: patterns ------------------------------------------------ */

/* Finds key (canonical) in a canonical map value; sets *val. */
static int map_find(mv_t map, mv_t key, mv_t *val)
{
    if (map.len < 5 || map.p[0] != STORE_TAG_MAP)
        return 0;
    uint32_t n = be32(map.p + 1);
    size_t off = 5;
    for (uint32_t i = 0; i < n; i++) {
        size_t k = skip(map.p + off, map.len - off);
        if (!k)
            return 0;
        size_t v = skip(map.p + off + k, map.len - off - k);
        if (!v)
            return 0;
        if (k == key.len && memcmp(map.p + off, key.p, k) == 0) {
            *val = mv_of(map.p + off + k, v);
            return 1;
        }
        off += k + v;
    }
    return 0;
}

/* 1 match, 0 no match, negative errno. */
static int pmatch(match_spec_t *ms, const mnode_t *nd, cur_t c, uint8_t *bound)
{
    int rc, err;
    mv_t v;
    switch (nd->kind) {
    case P_ANY:
        return 1;
    case P_VAR:
        rc = cur_value(ms, c, &v);
        if (rc)
            return rc < 0 ? rc : 0;
        if (bound[nd->n])
            return mv_eq(ms->vars[nd->n], v);
        bound[nd->n] = 1;
        ms->vars[nd->n] = v;
        return 1;
    case P_LIT:
        if (c.kind == CUR_TERM) {
            return c.len >= nd->lit.len && memcmp(c.p, nd->lit.p, nd->lit.len) == 0;
        }
        rc = cur_value(ms, c, &v);
        if (rc)
            return rc < 0 ? rc : 0;
        return mv_eq(v, nd->lit);
    case P_TUPLE: {
        uint32_t arity;
        size_t off;
        if (c.kind != CUR_TERM || !tuple_hdr(mv_of(c.p, c.len), &arity, &off) ||
            arity != nd->n)
            return 0;
        for (uint32_t i = 0; i < arity; i++) {
            rc = pmatch(ms, nd->kid[i], cur_term(c.p + off, c.len - off), bound);
            if (rc <= 0)
                return rc;
            size_t k = skip(c.p + off, c.len - off);
            if (!k)
                return 0;
            off += k;
        }
        return 1;
    }
    case P_CONS: {
        cur_t hd, tl;
        if (!cur_cons(ms, c, &hd, &tl, &err))
            return err;
        rc = pmatch(ms, nd->kid[0], hd, bound);
        if (rc <= 0)
            return rc;
        return pmatch(ms, nd->kid[1], tl, bound);
    }
    case P_MAP: {
        if (c.kind != CUR_TERM)
            return 0;
        size_t mlen = skip(c.p, c.len);
        mv_t m = mv_of(c.p, mlen);
        for (uint32_t i = 0; i < nd->n; i += 2) {
            if (!map_find(m, nd->kid[i]->lit, &v))
                return 0;
            rc = pmatch(ms, nd->kid[i + 1], cur_term(v.p, v.len), bound);
            if (rc <= 0)
                return rc;
        }
        return 1;
    }
    default:
        return 0;
    }
}

/* ---- Running: numbers ------------------------------------------------- */

/* An integer as sign and magnitude, little-endian bytes. */
typedef struct big {
    int neg;
    size_t n;
    unsigned char *d;
} big_t;

typedef enum { N_NONE, N_INT, N_BIG, N_FLOAT } nkind2_t;
typedef struct num {
    nkind2_t kind;
    int64_t i;
    double f;
    big_t b;
} num_t;

static nkind2_t num_get(mv_t v, num_t *x)
{
    x->kind = N_NONE;
    if (v.len < 1)
        return N_NONE;
    switch (v.p[0]) {
    case STORE_TAG_SMALL_INT:
        if (v.len < 2)
            return N_NONE;
        x->i = v.p[1];
        return x->kind = N_INT;
    case STORE_TAG_INT:
        if (v.len < 5)
            return N_NONE;
        x->i = (int32_t)be32(v.p + 1);
        return x->kind = N_INT;
    case STORE_TAG_NEW_FLOAT: {
        if (v.len < 9)
            return N_NONE;
        uint64_t bits = ((uint64_t)be32(v.p + 1) << 32) | be32(v.p + 5);
        memcpy(&x->f, &bits, 8);
        return x->kind = N_FLOAT;
    }
    case STORE_TAG_SMALL_BIG:
    case STORE_TAG_LARGE_BIG: {
        size_t n, off;
        if (v.p[0] == STORE_TAG_SMALL_BIG) {
            if (v.len < 3)
                return N_NONE;
            n = v.p[1];
            off = 2;
        } else {
            if (v.len < 6)
                return N_NONE;
            n = be32(v.p + 1);
            off = 5;
        }
        if (n > v.len - off - 1)
            return N_NONE;
        x->b.neg = v.p[off] != 0;
        x->b.d = (unsigned char *)v.p + off + 1;   /* read only */
        x->b.n = n;
        while (x->b.n && x->b.d[x->b.n - 1] == 0)
            x->b.n--;
        /* Canonical bignums are outside int64 only if they need it. */
        if (x->b.n <= 8) {
            uint64_t m = 0;
            for (size_t i = x->b.n; i-- > 0;)
                m = (m << 8) | x->b.d[i];
            if (!x->b.neg && m <= INT64_MAX) {
                x->i = (int64_t)m;
                return x->kind = N_INT;
            }
            if (x->b.neg && m <= (uint64_t)INT64_MAX + 1) {
                x->i = m == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)m;
                return x->kind = N_INT;
            }
        }
        return x->kind = N_BIG;
    }
    default:
        return N_NONE;
    }
}

/* A big with room for n bytes, in arena a (or heap if a is NULL). */
static int big_alloc(match_spec_t *ms, big_t *b, size_t n)
{
    b->d = ralloc(ms, n);
    if (!b->d)
        return -ENOMEM;
    memset(b->d, 0, n ? n : 1);
    b->n = n;
    b->neg = 0;
    return 0;
}

static int big_from_int(match_spec_t *ms, int64_t v, big_t *b)
{
    if (big_alloc(ms, b, 8) < 0)
        return -ENOMEM;
    uint64_t m = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    b->neg = v < 0;
    for (int i = 0; i < 8; i++)
        b->d[i] = (unsigned char)(m >> (8 * i));
    while (b->n && b->d[b->n - 1] == 0)
        b->n--;
    return 0;
}

static int num_to_big(match_spec_t *ms, const num_t *x, big_t *b)
{
    if (x->kind == N_BIG) {
        *b = x->b;
        return 0;
    }
    return big_from_int(ms, x->i, b);
}

static int mag_cmp(const big_t *a, const big_t *b)
{
    size_t an = a->n, bn = b->n;
    while (an && a->d[an - 1] == 0)
        an--;
    while (bn && b->d[bn - 1] == 0)
        bn--;
    if (an != bn)
        return an < bn ? -1 : 1;
    for (size_t i = an; i-- > 0;)
        if (a->d[i] != b->d[i])
            return a->d[i] < b->d[i] ? -1 : 1;
    return 0;
}

static int mag_add(match_spec_t *ms, const big_t *a, const big_t *b, big_t *r)
{
    size_t n = (a->n > b->n ? a->n : b->n) + 1;
    if (big_alloc(ms, r, n) < 0)
        return -ENOMEM;
    unsigned carry = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned s = carry + (i < a->n ? a->d[i] : 0) + (i < b->n ? b->d[i] : 0);
        r->d[i] = (unsigned char)s;
        carry = s >> 8;
    }
    return 0;
}

/* |a| >= |b| */
static int mag_sub(match_spec_t *ms, const big_t *a, const big_t *b, big_t *r)
{
    if (big_alloc(ms, r, a->n) < 0)
        return -ENOMEM;
    int borrow = 0;
    for (size_t i = 0; i < a->n; i++) {
        int s = a->d[i] - (i < b->n ? b->d[i] : 0) - borrow;
        borrow = s < 0;
        r->d[i] = (unsigned char)(s + (borrow ? 256 : 0));
    }
    return 0;
}

static int big_add(match_spec_t *ms, const big_t *a, const big_t *b, big_t *r)
{
    int rc;
    if (a->neg == b->neg) {
        rc = mag_add(ms, a, b, r);
        r->neg = a->neg;
        return rc;
    }
    if (mag_cmp(a, b) >= 0) {
        rc = mag_sub(ms, a, b, r);
        r->neg = a->neg;
    } else {
        rc = mag_sub(ms, b, a, r);
        r->neg = b->neg;
    }
    return rc;
}

static int big_mul(match_spec_t *ms, const big_t *a, const big_t *b, big_t *r)
{
    if (big_alloc(ms, r, a->n + b->n + 1) < 0)
        return -ENOMEM;
    for (size_t i = 0; i < a->n; i++) {
        unsigned carry = 0;
        for (size_t j = 0; j < b->n; j++) {
            unsigned t = r->d[i + j] + (unsigned)a->d[i] * b->d[j] + carry;
            r->d[i + j] = (unsigned char)t;
            carry = t >> 8;
        }
        for (size_t k = i + b->n; carry; k++) {
            unsigned t = r->d[k] + carry;
            r->d[k] = (unsigned char)t;
            carry = t >> 8;
        }
    }
    r->neg = a->neg != b->neg;
    return 0;
}

/* Truncating division of magnitudes, bit by bit: the numbers in a match
 * spec are small, simplicity wins. */
static int big_divmod(match_spec_t *ms, const big_t *a, const big_t *b,
                      big_t *q, big_t *r)
{
    if (big_alloc(ms, q, a->n) < 0 || big_alloc(ms, r, b->n + 1) < 0)
        return -ENOMEM;
    r->n = b->n + 1;
    for (size_t bit = a->n * 8; bit-- > 0;) {
        /* r = r * 2 + bit */
        unsigned carry = (a->d[bit / 8] >> (bit % 8)) & 1;
        for (size_t i = 0; i < r->n; i++) {
            unsigned t = ((unsigned)r->d[i] << 1) | carry;
            r->d[i] = (unsigned char)t;
            carry = t >> 8;
        }
        if (mag_cmp(r, b) >= 0) {
            int borrow = 0;
            for (size_t i = 0; i < r->n; i++) {
                int s = r->d[i] - (i < b->n ? b->d[i] : 0) - borrow;
                borrow = s < 0;
                r->d[i] = (unsigned char)(s + (borrow ? 256 : 0));
            }
            q->d[bit / 8] |= (unsigned char)(1u << (bit % 8));
        }
    }
    q->neg = a->neg != b->neg;
    r->neg = a->neg;
    return 0;
}

/* Canonical integer encoding of a big (term_to_binary's choice of form). */
static int big_value(match_spec_t *ms, big_t *b, mv_t *out)
{
    while (b->n && b->d[b->n - 1] == 0)
        b->n--;
    if (b->n <= 8) {
        uint64_t m = 0;
        for (size_t i = b->n; i-- > 0;)
            m = (m << 8) | b->d[i];
        int64_t v;
        int fits = 0;
        if (!b->neg && m <= 0x7fffffffu) {
            v = (int64_t)m;
            fits = 1;
        } else if (b->neg && m <= 0x80000000u) {
            v = -(int64_t)m;
            fits = 1;
        }
        if (fits) {
            unsigned char *p;
            if (v >= 0 && v <= 255) {
                if (!(p = ralloc(ms, 2)))
                    return -ENOMEM;
                p[0] = STORE_TAG_SMALL_INT;
                p[1] = (unsigned char)v;
                *out = mv_of(p, 2);
            } else {
                if (!(p = ralloc(ms, 5)))
                    return -ENOMEM;
                p[0] = STORE_TAG_INT;
                put_be32(p + 1, (uint32_t)(int32_t)v);
                *out = mv_of(p, 5);
            }
            return 0;
        }
    }
    size_t hdr = b->n <= 255 ? 3 : 6;
    unsigned char *p = ralloc(ms, hdr + b->n);
    if (!p)
        return -ENOMEM;
    if (hdr == 3) {
        p[0] = STORE_TAG_SMALL_BIG;
        p[1] = (unsigned char)b->n;
        p[2] = (unsigned char)b->neg;
    } else {
        p[0] = STORE_TAG_LARGE_BIG;
        put_be32(p + 1, (uint32_t)b->n);
        p[5] = (unsigned char)b->neg;
    }
    memcpy(p + hdr, b->d, b->n);
    *out = mv_of(p, hdr + b->n);
    return 0;
}

static int int_value(match_spec_t *ms, int64_t v, mv_t *out)
{
    big_t b;
    if (big_from_int(ms, v, &b) < 0)
        return -ENOMEM;
    return big_value(ms, &b, out);
}

static int float_value(match_spec_t *ms, double f, mv_t *out)
{
    if (!isfinite(f))
        return EXC;   /* badarith */
    f = term_canon_double(f);   /* -0.0 before OTP 27 is canonical 0.0 */
    unsigned char *p = ralloc(ms, 9);
    if (!p)
        return -ENOMEM;
    uint64_t bits;
    memcpy(&bits, &f, 8);
    p[0] = STORE_TAG_NEW_FLOAT;
    put_be32(p + 1, (uint32_t)(bits >> 32));
    put_be32(p + 5, (uint32_t)bits);
    *out = mv_of(p, 9);
    return 0;
}

static double num_double(const num_t *x)
{
    if (x->kind == N_FLOAT)
        return x->f;
    if (x->kind == N_INT)
        return (double)x->i;
    double d = 0;
    for (size_t i = x->b.n; i-- > 0;)
        d = d * 256.0 + x->b.d[i];
    return x->b.neg ? -d : d;
}

/* A double's integer part as a value (round/trunc). */
static int float_to_int(match_spec_t *ms, double f, mv_t *out)
{
    if (f > -9.2e18 && f < 9.2e18)
        return int_value(ms, (int64_t)f, out);
    if (!isfinite(f))
        return EXC;
    big_t b;
    int e;
    double m = frexp(fabs(f), &e);   /* f = m * 2^e, e > 63 here */
    size_t n = (size_t)e / 8 + 2;
    if (big_alloc(ms, &b, n) < 0)
        return -ENOMEM;
    uint64_t mant = (uint64_t)ldexp(m, 53);
    int shift = e - 53;
    for (int i = 0; i < 53; i++)
        if ((mant >> i) & 1) {
            int bit = i + shift;
            b.d[bit / 8] |= (unsigned char)(1u << (bit % 8));
        }
    b.neg = f < 0;
    return big_value(ms, &b, out);
}

typedef enum { AR_ADD, AR_SUB, AR_MUL } arop_t;

static int arith(match_spec_t *ms, arop_t op, mv_t a, mv_t b, mv_t *out)
{
    num_t x, y;
    if (!num_get(a, &x) || !num_get(b, &y))
        return EXC;
    if (x.kind == N_FLOAT || y.kind == N_FLOAT) {
        double p = num_double(&x), q = num_double(&y);
        return float_value(ms, op == AR_ADD ? p + q : op == AR_SUB ? p - q : p * q, out);
    }
    if (x.kind == N_INT && y.kind == N_INT) {
        int64_t r;
        int ovf = op == AR_ADD ? __builtin_add_overflow(x.i, y.i, &r)
                : op == AR_SUB ? __builtin_sub_overflow(x.i, y.i, &r)
                               : __builtin_mul_overflow(x.i, y.i, &r);
        if (!ovf)
            return int_value(ms, r, out);
    }
    big_t p, q, r;
    if (num_to_big(ms, &x, &p) < 0 || num_to_big(ms, &y, &q) < 0)
        return -ENOMEM;
    int rc;
    if (op == AR_SUB) {
        q.neg = !q.neg;
        rc = big_add(ms, &p, &q, &r);
    } else if (op == AR_ADD) {
        rc = big_add(ms, &p, &q, &r);
    } else {
        rc = big_mul(ms, &p, &q, &r);
    }
    if (rc < 0)
        return rc;
    return big_value(ms, &r, out);
}

static int int_divrem(match_spec_t *ms, int want_rem, mv_t a, mv_t b, mv_t *out)
{
    num_t x, y;
    if (num_get(a, &x) != N_INT && x.kind != N_BIG)
        return EXC;
    if (num_get(b, &y) != N_INT && y.kind != N_BIG)
        return EXC;
    if (y.kind == N_INT && y.i == 0)
        return EXC;
    if (x.kind == N_INT && y.kind == N_INT && !(x.i == INT64_MIN && y.i == -1))
        return int_value(ms, want_rem ? x.i % y.i : x.i / y.i, out);
    big_t p, q, qq, rr;
    if (num_to_big(ms, &x, &p) < 0 || num_to_big(ms, &y, &q) < 0 ||
        big_divmod(ms, &p, &q, &qq, &rr) < 0)
        return -ENOMEM;
    return big_value(ms, want_rem ? &rr : &qq, out);
}

/* x in two's complement over n bytes, little-endian; n must exceed the
 * magnitude's length so the sign bit is free. */
static unsigned char *to_twos(match_spec_t *ms, const big_t *x, size_t n)
{
    unsigned char *t = ralloc(ms, n);
    if (!t)
        return NULL;
    memset(t, 0, n);
    memcpy(t, x->d, x->n);
    if (x->neg) {
        unsigned carry = 1;
        for (size_t i = 0; i < n; i++) {
            unsigned v = (unsigned)(unsigned char)~t[i] + carry;
            t[i] = (unsigned char)v;
            carry = v >> 8;
        }
    }
    return t;
}

static int from_twos(match_spec_t *ms, unsigned char *t, size_t n, mv_t *out)
{
    big_t r = {0, n, t};
    if (n && (t[n - 1] & 0x80)) {
        r.neg = 1;
        unsigned carry = 1;
        for (size_t i = 0; i < n; i++) {
            unsigned v = (unsigned)(unsigned char)~t[i] + carry;
            t[i] = (unsigned char)v;
            carry = v >> 8;
        }
    }
    return big_value(ms, &r, out);
}

/* band, bor, bxor, bnot, bsl, bsr on integers of any size. */
static int bitop(match_spec_t *ms, fn_t fn, mv_t a, mv_t b, mv_t *out)
{
    num_t x, y;
    big_t p, q;
    if (num_get(a, &x) != N_INT && x.kind != N_BIG)
        return EXC;
    if (fn == F_BNOT) {
        /* bnot X = -X - 1 */
        unsigned char m1[5] = {STORE_TAG_INT, 0xff, 0xff, 0xff, 0xff};
        return arith(ms, AR_SUB, mv_of(m1, 5), a, out);
    }
    if (num_get(b, &y) != N_INT && y.kind != N_BIG)
        return EXC;
    if (fn == F_BAND || fn == F_BOR || fn == F_BXOR) {
        if (x.kind == N_INT && y.kind == N_INT)
            return int_value(ms, fn == F_BAND ? (x.i & y.i) : fn == F_BOR ? (x.i | y.i) : (x.i ^ y.i), out);
        if (num_to_big(ms, &x, &p) < 0 || num_to_big(ms, &y, &q) < 0)
            return -ENOMEM;
        size_t n = (p.n > q.n ? p.n : q.n) + 1;
        unsigned char *tp = to_twos(ms, &p, n), *tq = to_twos(ms, &q, n);
        if (!tp || !tq)
            return -ENOMEM;
        for (size_t i = 0; i < n; i++)
            tp[i] = fn == F_BAND ? (tp[i] & tq[i]) : fn == F_BOR ? (tp[i] | tq[i]) : (tp[i] ^ tq[i]);
        return from_twos(ms, tp, n, out);
    }
    if (y.kind != N_INT || y.i == INT64_MIN)
        return EXC;   /* a shift that large is a system_limit in ETS too */
    int64_t sh = fn == F_BSL ? y.i : -y.i;
    if (num_to_big(ms, &x, &p) < 0)
        return -ENOMEM;
    if (sh < 0) {
        /* arithmetic shift right: floor(X / 2^k) */
        uint64_t k = (uint64_t)(-(sh + 1)) + 1;
        size_t n = p.n + 1;
        unsigned char *t = to_twos(ms, &p, n), *r = ralloc(ms, n);
        if (!t || !r)
            return -ENOMEM;
        unsigned sign = (t[n - 1] >> 7) & 1;
        memset(r, 0, n);
        for (size_t i = 0; i < n * 8; i++) {
            uint64_t src = i + k;
            unsigned bit = src < n * 8 ? (t[src / 8] >> (src % 8)) & 1 : sign;
            if (src < i)   /* overflow: k huge */
                bit = sign;
            r[i / 8] |= (unsigned char)(bit << (i % 8));
        }
        return from_twos(ms, r, n, out);
    }
    if (p.n == 0 || sh == 0)
        return big_value(ms, &p, out);
    if (sh > (1 << 24))
        return EXC;   /* system_limit in ETS */
    big_t r;
    size_t n = p.n + (size_t)sh / 8 + 1;
    if (big_alloc(ms, &r, n) < 0)
        return -ENOMEM;
    for (size_t i = 0; i < p.n * 8; i++)
        if ((p.d[i / 8] >> (i % 8)) & 1) {
            size_t bit = i + (size_t)sh;
            r.d[bit / 8] |= (unsigned char)(1u << (bit % 8));
        }
    r.neg = p.neg;
    return big_value(ms, &r, out);
}

int match_is_integer(const void *p, size_t len)
{
    return len >= 1 && is_int_tag(((const unsigned char *)p)[0]);
}

int match_int_add(const void *a, size_t alen, const void *b, size_t blen,
                  term_buf_t *out)
{
    if (!match_is_integer(a, alen) || !match_is_integer(b, blen))
        return -EINVAL;
    match_spec_t ms;
    memset(&ms, 0, sizeof(ms));
    mv_t r;
    int rc = arith(&ms, AR_ADD, mv_of(a, alen), mv_of(b, blen), &r);
    if (rc == 0) {
        term_buf_append(out, r.p, r.len);
        rc = out->err;
    } else if (rc > 0) {
        rc = -EINVAL;
    }
    arena_release(&ms.run);
    return rc;
}

/* ---- Running: expressions --------------------------------------------- */

static int eval(match_spec_t *ms, const mnode_t *nd, mv_t *out);

/* List elements of a canonical list value, for length/hd/tl/'$$' and for
 * splicing a tail into a constructed list. */
static int list_len(mv_t v, size_t *n)
{
    size_t count = 0;
    for (;;) {
        if (v.len < 1)
            return 0;
        if (v.p[0] == STORE_TAG_NIL) {
            *n = count;
            return 1;
        }
        if (v.p[0] == STORE_TAG_STRING && v.len >= 3) {
            *n = count + (((size_t)v.p[1] << 8) | v.p[2]);
            return 1;
        }
        if (v.p[0] != STORE_TAG_LIST || v.len < 5)
            return 0;
        uint32_t k = be32(v.p + 1);
        size_t off = 5;
        for (uint32_t i = 0; i < k; i++) {
            size_t s = skip(v.p + off, v.len - off);
            if (!s)
                return 0;
            off += s;
        }
        count += k;
        v = mv_of(v.p + off, v.len - off);
    }
}

static int is_small_int(mv_t v)
{
    return v.len == 2 && v.p[0] == STORE_TAG_SMALL_INT;
}

/* Builds the canonical list [e0, ..., e(n-1) | tail]. */
static int build_list(match_spec_t *ms, mv_t *el, size_t n, mv_t tail, mv_t *out)
{
    term_buf_reset(&ms->tmp);
    if (n == 0) {
        *out = tail;
        return 0;
    }
    unsigned char h[5] = {STORE_TAG_LIST};
    put_be32(h + 1, (uint32_t)n);
    term_buf_append(&ms->tmp, h, 5);
    for (size_t i = 0; i < n; i++)
        term_buf_append(&ms->tmp, el[i].p, el[i].len);
    term_buf_append(&ms->tmp, tail.p, tail.len);
    /* Only a list of small integers changes form (STRING_EXT), or one
     * whose tail is itself a list: let term/ decide. */
    int plain = tail.p[0] != STORE_TAG_LIST && tail.p[0] != STORE_TAG_STRING;
    if (plain && tail.p[0] == STORE_TAG_NIL) {
        for (size_t i = 0; i < n && plain; i++)
            plain = !is_small_int(el[i]);
        if (!plain)
            plain = 0;
    }
    return plain ? tmp_value(ms, out) : tmp_canon_value(ms, out);
}

static int eval_call(match_spec_t *ms, const mnode_t *nd, mv_t *out);

static int eval(match_spec_t *ms, const mnode_t *nd, mv_t *out)
{
    int rc;
    switch (nd->kind) {
    case E_CONST:
        *out = nd->lit;
        return 0;
    case E_VAR:
        *out = ms->vars[nd->n];
        return 0;
    case E_OBJ:
        *out = mv_of(ms->obj, ms->objlen);
        return 0;
    case E_ALLVARS: {
        mv_t *el = ralloc(ms, (ms->run_ncvar + 1) * sizeof(mv_t));
        if (!el)
            return -ENOMEM;
        for (uint32_t i = 0; i < ms->run_ncvar; i++)
            el[i] = ms->vars[i];
        return build_list(ms, el, ms->run_ncvar, mv_of(NIL, 1), out);
    }
    case E_TUPLE: {
        mv_t *el = ralloc(ms, (nd->n + 1) * sizeof(mv_t));
        if (!el)
            return -ENOMEM;
        size_t total = nd->n <= 255 ? 2 : 5;
        for (uint32_t i = 0; i < nd->n; i++) {
            if ((rc = eval(ms, nd->kid[i], &el[i])) != 0)
                return rc;
            total += el[i].len;
        }
        unsigned char *p = ralloc(ms, total);
        if (!p)
            return -ENOMEM;
        size_t off;
        if (nd->n <= 255) {
            p[0] = STORE_TAG_SMALL_TUPLE;
            p[1] = (unsigned char)nd->n;
            off = 2;
        } else {
            p[0] = STORE_TAG_LARGE_TUPLE;
            put_be32(p + 1, nd->n);
            off = 5;
        }
        for (uint32_t i = 0; i < nd->n; i++) {
            memcpy(p + off, el[i].p, el[i].len);
            off += el[i].len;
        }
        *out = mv_of(p, total);
        return 0;
    }
    case E_LIST: {
        uint32_t n = nd->n - 1;
        mv_t *el = ralloc(ms, nd->n * sizeof(mv_t));
        if (!el)
            return -ENOMEM;
        for (uint32_t i = 0; i < nd->n; i++)
            if ((rc = eval(ms, nd->kid[i], &el[i])) != 0)
                return rc;
        return build_list(ms, el, n, el[n], out);
    }
    case E_MAP: {
        mv_t *el = ralloc(ms, (nd->n + 1) * sizeof(mv_t));
        if (!el)
            return -ENOMEM;
        for (uint32_t i = 0; i < nd->n; i++)
            if ((rc = eval(ms, nd->kid[i], &el[i])) != 0)
                return rc;
        term_buf_reset(&ms->tmp);
        unsigned char h[5] = {STORE_TAG_MAP};
        put_be32(h + 1, nd->n / 2);
        term_buf_append(&ms->tmp, h, 5);
        for (uint32_t i = 0; i < nd->n; i++)
            term_buf_append(&ms->tmp, el[i].p, el[i].len);
        /* Keys may be computed: term/ puts them in canonical order. */
        return tmp_canon_value(ms, out);
    }
    case E_CALL:
        return eval_call(ms, nd, out);
    default:
        return EXC;
    }
}

static int type_test(fn_t fn, mv_t v)
{
    unsigned char t = v.p[0];
    switch (fn) {
    case F_IS_ATOM: return is_atom_tag(t);
    case F_IS_FLOAT: return t == STORE_TAG_NEW_FLOAT || t == STORE_TAG_FLOAT;
    case F_IS_INTEGER: return is_int_tag(t);
    case F_IS_LIST: return is_list_tag(t);
    case F_IS_NUMBER: return is_int_tag(t) || t == STORE_TAG_NEW_FLOAT || t == STORE_TAG_FLOAT;
    case F_IS_PID: return t == STORE_TAG_NEW_PID || t == STORE_TAG_PID;
    case F_IS_PORT: return t == STORE_TAG_NEW_PORT || t == STORE_TAG_PORT || t == STORE_TAG_V4_PORT;
    case F_IS_REFERENCE: return t == STORE_TAG_NEWER_REF || t == STORE_TAG_NEW_REF || t == STORE_TAG_REF;
    case F_IS_TUPLE: return is_tuple_tag(t);
    case F_IS_MAP: return t == STORE_TAG_MAP;
    case F_IS_BINARY:
        return t == STORE_TAG_BINARY || (t == STORE_TAG_BIT_BINARY && v.len >= 6 && v.p[5] == 8);
    case F_IS_FUNCTION: return t == STORE_TAG_NEW_FUN || t == STORE_TAG_EXPORT;
    default: return 0;
    }
}

/* Byte and bit sizes of a binary or bitstring. */
static int bin_info(mv_t v, const unsigned char **data, size_t *bytes, size_t *bits)
{
    if (v.len >= 5 && v.p[0] == STORE_TAG_BINARY) {
        *bytes = be32(v.p + 1);
        *bits = *bytes * 8;
        *data = v.p + 5;
        return 1;
    }
    if (v.len >= 6 && v.p[0] == STORE_TAG_BIT_BINARY) {
        *bytes = be32(v.p + 1);
        unsigned last = v.p[5];
        *bits = *bytes ? (*bytes - 1) * 8 + last : 0;
        *data = v.p + 6;
        return 1;
    }
    return 0;
}

static int cmp_fn(fn_t fn, mv_t a, mv_t b)
{
    switch (fn) {
    case F_EXEQ: return mv_eq(a, b);
    case F_EXNE: return !mv_eq(a, b);
    default: break;
    }
    int c = term_compare(a.p, a.len, b.p, b.len);
    switch (fn) {
    case F_GT: return c > 0;
    case F_GE: return c >= 0;
    case F_LT: return c < 0;
    case F_LE: return c <= 0;
    case F_EQ: return c == 0;
    case F_NE: return c != 0;
    default: return 0;
    }
}

static int eval_call(match_spec_t *ms, const mnode_t *nd, mv_t *out)
{
    mv_t a[3];
    int rc, b;
    fn_t fn = nd->fn;

    /* The boolean operators evaluate their arguments themselves. */
    if (fn == F_ANDALSO || fn == F_ORELSE) {
        for (uint32_t i = 0; i < nd->n; i++) {
            if ((rc = eval(ms, nd->kid[i], &a[0])) != 0)
                return rc;
            if (i + 1 == nd->n) {
                *out = a[0];   /* the last one is returned as it is */
                return 0;
            }
            if (!mv_is_bool(a[0], &b))
                return EXC;
            if (fn == F_ANDALSO ? !b : b) {
                *out = a[0];
                return 0;
            }
        }
        return EXC;
    }
    if (fn == F_AND || fn == F_OR) {
        int acc = fn == F_AND;
        for (uint32_t i = 0; i < nd->n; i++) {
            if ((rc = eval(ms, nd->kid[i], &a[0])) != 0)
                return rc;
            if (!mv_is_bool(a[0], &b))
                return EXC;
            acc = fn == F_AND ? acc && b : acc || b;
        }
        *out = mv_bool(acc);
        return 0;
    }
    for (uint32_t i = 0; i < nd->n && i < 3; i++)
        if ((rc = eval(ms, nd->kid[i], &a[i])) != 0)
            return rc;

    num_t x;
    uint32_t arity;
    size_t off, n, bits;
    const unsigned char *data;
    switch (fn) {
    case F_IS_ATOM: case F_IS_FLOAT: case F_IS_INTEGER: case F_IS_LIST:
    case F_IS_NUMBER: case F_IS_PID: case F_IS_PORT: case F_IS_REFERENCE:
    case F_IS_TUPLE: case F_IS_MAP: case F_IS_BINARY: case F_IS_FUNCTION:
        *out = mv_bool(type_test(fn, a[0]));
        return 0;
    case F_IS_MAP_KEY: {
        mv_t v;
        if (a[1].p[0] != STORE_TAG_MAP)
            return EXC;
        *out = mv_bool(map_find(a[1], a[0], &v));
        return 0;
    }
    case F_IS_RECORD: {
        num_t sz;
        if (!is_atom_tag(a[1].p[0]) || num_get(a[2], &sz) != N_INT)
            return EXC;
        int ok = tuple_hdr(a[0], &arity, &off) && arity >= 1 && (int64_t)arity == sz.i &&
                 mv_eq(mv_of(a[0].p + off, skip(a[0].p + off, a[0].len - off)), a[1]);
        *out = mv_bool(ok);
        return 0;
    }
    case F_NOT:
        if (!mv_is_bool(a[0], &b))
            return EXC;
        *out = mv_bool(!b);
        return 0;
    case F_XOR: {
        int c;
        if (!mv_is_bool(a[0], &b) || !mv_is_bool(a[1], &c))
            return EXC;
        *out = mv_bool(b != c);
        return 0;
    }
    case F_GT: case F_GE: case F_LT: case F_LE:
    case F_EXEQ: case F_EQ: case F_EXNE: case F_NE:
        *out = mv_bool(cmp_fn(fn, a[0], a[1]));
        return 0;
    case F_PLUS: return arith(ms, AR_ADD, a[0], a[1], out);
    case F_MINUS: return arith(ms, AR_SUB, a[0], a[1], out);
    case F_TIMES: return arith(ms, AR_MUL, a[0], a[1], out);
    case F_NEG: {
        unsigned char zero[2] = {STORE_TAG_SMALL_INT, 0};
        if (!num_get(a[0], &x))
            return EXC;
        if (x.kind == N_FLOAT)
            return float_value(ms, -x.f, out);
        return arith(ms, AR_SUB, mv_of(zero, 2), a[0], out);
    }
    case F_UPLUS:
        if (!num_get(a[0], &x))
            return EXC;
        *out = a[0];
        return 0;
    case F_ABS:
        if (!num_get(a[0], &x))
            return EXC;
        if (x.kind == N_FLOAT)
            return float_value(ms, fabs(x.f), out);
        if ((x.kind == N_INT && x.i >= 0) || (x.kind == N_BIG && !x.b.neg)) {
            *out = a[0];
            return 0;
        } else {
            unsigned char zero[2] = {STORE_TAG_SMALL_INT, 0};
            return arith(ms, AR_SUB, mv_of(zero, 2), a[0], out);
        }
    case F_FDIV: {
        num_t y;
        if (!num_get(a[0], &x) || !num_get(a[1], &y))
            return EXC;
        double d = num_double(&y);
        if (d == 0.0)
            return EXC;
        return float_value(ms, num_double(&x) / d, out);
    }
    case F_DIV: return int_divrem(ms, 0, a[0], a[1], out);
    case F_REM: return int_divrem(ms, 1, a[0], a[1], out);
    case F_BAND: case F_BOR: case F_BXOR: case F_BSL: case F_BSR: case F_BNOT:
        return bitop(ms, fn, a[0], a[1], out);
    case F_ROUND:
    case F_TRUNC:
        if (!num_get(a[0], &x))
            return EXC;
        if (x.kind != N_FLOAT) {
            *out = a[0];
            return 0;
        }
        return float_to_int(ms, fn == F_ROUND ? round(x.f) : trunc(x.f), out);
    case F_FLOAT:
        if (!num_get(a[0], &x))
            return EXC;
        return float_value(ms, num_double(&x), out);
    case F_ELEMENT: {
        if (num_get(a[0], &x) != N_INT || !tuple_hdr(a[1], &arity, &off) ||
            x.i < 1 || x.i > (int64_t)arity)
            return EXC;
        for (int64_t i = 1; i < x.i; i++)
            off += skip(a[1].p + off, a[1].len - off);
        *out = mv_of(a[1].p + off, skip(a[1].p + off, a[1].len - off));
        return 0;
    }
    case F_HD:
    case F_TL: {
        cur_t hd, tl;
        int err;
        if (!cur_cons(ms, cur_term(a[0].p, a[0].len), &hd, &tl, &err))
            return err ? err : EXC;
        return cur_value(ms, fn == F_HD ? hd : tl, out);
    }
    case F_LENGTH: {
        if (!list_len(a[0], &n))
            return EXC;
        /* an improper list ends in something other than NIL */
        mv_t v = a[0];
        while (v.p[0] == STORE_TAG_LIST) {
            uint32_t k = be32(v.p + 1);
            size_t o = 5;
            for (uint32_t i = 0; i < k; i++)
                o += skip(v.p + o, v.len - o);
            v = mv_of(v.p + o, v.len - o);
        }
        if (v.p[0] != STORE_TAG_NIL && v.p[0] != STORE_TAG_STRING)
            return EXC;
        return int_value(ms, (int64_t)n, out);
    }
    case F_TUPLE_SIZE:
        if (!tuple_hdr(a[0], &arity, &off))
            return EXC;
        return int_value(ms, arity, out);
    case F_MIN:   /* erlang:min/2: the first when they compare equal */
        *out = term_compare(a[0].p, a[0].len, a[1].p, a[1].len) > 0 ? a[1] : a[0];
        return 0;
    case F_MAX:   /* erlang:max/2: the first when they compare equal */
        *out = term_compare(a[0].p, a[0].len, a[1].p, a[1].len) < 0 ? a[1] : a[0];
        return 0;
    case F_CEIL:
    case F_FLOOR:
        if (!num_get(a[0], &x))
            return EXC;
        if (x.kind != N_FLOAT) {
            *out = a[0];
            return 0;
        }
        return float_to_int(ms, fn == F_CEIL ? ceil(x.f) : floor(x.f), out);
    case F_IS_FUNCTION2: {
        int64_t want;
        if (num_get(a[1], &x) != N_INT || x.i < 0)
            return EXC;
        want = x.i;
        if (a[0].p[0] == STORE_TAG_NEW_FUN && a[0].len >= 6) {
            *out = mv_bool(a[0].p[5] == want);
        } else if (a[0].p[0] == STORE_TAG_EXPORT) {
            /* module atom, function atom, arity as a small integer */
            size_t o = 1;
            o += skip(a[0].p + o, a[0].len - o);
            o += skip(a[0].p + o, a[0].len - o);
            *out = mv_bool(o + 2 <= a[0].len && a[0].p[o] == STORE_TAG_SMALL_INT &&
                           a[0].p[o + 1] == want);
        } else {
            *out = mv_bool(0);
        }
        return 0;
    }
    case F_IS_BITSTRING:
        *out = mv_bool(a[0].p[0] == STORE_TAG_BINARY || a[0].p[0] == STORE_TAG_BIT_BINARY);
        return 0;
    case F_SIZE:
        if (tuple_hdr(a[0], &arity, &off))
            return int_value(ms, arity, out);
        if (bin_info(a[0], &data, &n, &bits))
            return int_value(ms, (int64_t)n, out);
        return EXC;
    case F_BYTE_SIZE:
        if (!bin_info(a[0], &data, &n, &bits))
            return EXC;
        return int_value(ms, (int64_t)n, out);
    case F_BIT_SIZE:
        if (!bin_info(a[0], &data, &n, &bits))
            return EXC;
        return int_value(ms, (int64_t)bits, out);
    case F_MAP_SIZE:
        if (a[0].len < 5 || a[0].p[0] != STORE_TAG_MAP)
            return EXC;
        return int_value(ms, be32(a[0].p + 1), out);
    case F_MAP_GET:
        if (a[1].p[0] != STORE_TAG_MAP || !map_find(a[1], a[0], out))
            return EXC;
        return 0;
    case F_NODE0: {
        size_t len = strlen(node_name);
        unsigned char *p = ralloc(ms, len + 2);
        if (!p)
            return -ENOMEM;
        p[0] = STORE_TAG_SMALL_ATOM_UTF8;
        p[1] = (unsigned char)len;
        memcpy(p + 2, node_name, len);
        *out = mv_of(p, len + 2);
        return 0;
    }
    case F_NODE1: {
        /* The node atom opens every pid, port and reference encoding. */
        unsigned char t = a[0].p[0];
        if (t != STORE_TAG_NEW_PID && t != STORE_TAG_PID && t != STORE_TAG_NEW_PORT &&
            t != STORE_TAG_PORT && t != STORE_TAG_V4_PORT && t != STORE_TAG_NEWER_REF &&
            t != STORE_TAG_NEW_REF && t != STORE_TAG_REF)
            return EXC;
        size_t o = (t == STORE_TAG_NEWER_REF || t == STORE_TAG_NEW_REF) ? 3 : 1;
        if (o >= a[0].len)
            return EXC;
        *out = mv_of(a[0].p + o, skip(a[0].p + o, a[0].len - o));
        return out->len ? 0 : EXC;
    }
    case F_BINARY_PART2:
    case F_BINARY_PART3: {
        int64_t start, len;
        num_t y;
        if (!bin_info(a[0], &data, &n, &bits) || bits != n * 8)
            return EXC;
        if (fn == F_BINARY_PART2) {
            if (!tuple_hdr(a[1], &arity, &off) || arity != 2)
                return EXC;
            size_t k = skip(a[1].p + off, a[1].len - off);
            if (num_get(mv_of(a[1].p + off, k), &x) != N_INT ||
                num_get(mv_of(a[1].p + off + k, a[1].len - off - k), &y) != N_INT)
                return EXC;
        } else if (num_get(a[1], &x) != N_INT || num_get(a[2], &y) != N_INT) {
            return EXC;
        }
        start = x.i;
        len = y.i;
        if (len < 0) {
            start += len;
            len = -len;
        }
        if (start < 0 || start > (int64_t)n || len > (int64_t)n - start)
            return EXC;
        unsigned char *p = ralloc(ms, 5 + (size_t)len);
        if (!p)
            return -ENOMEM;
        p[0] = STORE_TAG_BINARY;
        put_be32(p + 1, (uint32_t)len);
        memcpy(p + 5, data + start, (size_t)len);
        *out = mv_of(p, 5 + (size_t)len);
        return 0;
    }
    case F_SELF:
        /* XXX: no calling process exists in a C node; ETS would return
         * the caller's pid. Treated as an exception. */
        return EXC;
    default:
        return EXC;
    }
}

/* ---- Running ------------------------------------------------------------ */

int match_run(match_spec_t *ms, const void *obj, size_t len, term_buf_t *out,
              int *is_true)
{
    uint8_t bound_small[64];
    uint8_t *bound = bound_small;
    if (ms->nvars > sizeof(bound_small)) {
        bound = mem_alloc(ms->nvars);
        if (!bound)
            return -ENOMEM;
    }
    ms->obj = obj;
    ms->objlen = len;
    int result = 0;
    for (uint32_t c = 0; c < ms->ncl && result == 0; c++) {
        mclause_t *ce = &ms->cl[c];
        if (!ce->head)
            continue;
        arena_reset(&ms->run);
        memset(bound, 0, ms->nvars ? ms->nvars : 1);
        int rc = pmatch(ms, ce->head, cur_term(obj, len), bound);
        if (rc < 0) {
            result = rc;
            break;
        }
        if (rc == 0)
            continue;
        ms->run_ncvar = ce->ncvar;
        int ok = 1;
        for (uint32_t g = 0; g < ce->nguard && ok; g++) {
            mv_t v;
            rc = eval(ms, ce->guard[g], &v);
            if (rc < 0) {
                result = rc;
                break;
            }
            ok = rc == 0 && mv_eq(v, mv_of(ATOM_TRUE, sizeof(ATOM_TRUE)));
        }
        if (result < 0)
            break;
        if (!ok)
            continue;
        mv_t v = mv_of(ATOM_EXIT, sizeof(ATOM_EXIT));
        for (uint32_t i = 0; i < ce->nbody; i++) {
            rc = eval(ms, ce->body[i], &v);
            if (rc < 0) {
                result = rc;
                break;
            }
            if (rc > 0) {
                v = mv_of(ATOM_EXIT, sizeof(ATOM_EXIT));
                break;
            }
        }
        if (result < 0)
            break;
        if (is_true)
            *is_true = mv_eq(v, mv_of(ATOM_TRUE, sizeof(ATOM_TRUE)));
        if (out) {
            term_buf_append(out, v.p, v.len);
            if (out->err) {
                result = out->err;
                break;
            }
        }
        result = 1;
    }
    if (bound != bound_small)
        mem_free(bound);
    return result;
}
