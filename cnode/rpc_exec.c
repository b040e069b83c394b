/* rpc_exec.c: M:F(A) for rpc callers, answered the way a BEAM node answers:
 * ets:* on the store, the etsd module, and the part of erlang a health check
 * needs. Every exception has the shape erpc:execute_call/4 gives it. */
#include "cnode/rpc_exec.h"

#include <errno.h>
#include <limits.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "term/mem.h"

/* Functions here take at most 4 arguments; a longer list is an undef. */
#define RPC_MAX_ARGS 8

struct rpc_exec {
    store_t *store;
    char node[TERM_ATOM_MAX];
    char version[64];
    struct timespec started;
    rpc_nodes_cb nodes_cb;
    void *nodes_arg;
    rpc_insert_cb insert_cb;
    void *insert_arg;
    rpc_info_cb info_cb;
    void *info_arg;
    rpc_action_cb sync_cb;
    void *sync_arg;
    rpc_action_cb snapshot_cb;
    void *snapshot_arg;
    int storage_known;      /* rpc_exec_set_storage() was called */
    char *data_dir;         /* NULL: memory only */
    char fsync[32];
    char *file_dir;         /* tab2file/file2tab stay in it; NULL: refused */
};

/* The argument list split into elements. STRING_EXT arguments (a list of
 * small integers, as term_to_binary writes [1, 2]) get their elements
 * re-encoded as SMALL_INTEGER_EXT in small[]. */
typedef struct rpc_args {
    const void *all;       /* the whole list, as received */
    size_t all_len;
    uint32_t argc;         /* every element, even past RPC_MAX_ARGS */
    const char *argv[RPC_MAX_ARGS];
    size_t argl[RPC_MAX_ARGS];
    char small[RPC_MAX_ARGS][2];
} rpc_args_t;

void rpc_result_init(rpc_result_t *r)
{
    r->cls = RPC_RETURN;
    term_buf_init(&r->value);
    term_buf_init(&r->stack);
}

void rpc_result_release(rpc_result_t *r)
{
    term_buf_release(&r->value);
    term_buf_release(&r->stack);
}

static void result_reset(rpc_result_t *r)
{
    r->cls = RPC_RETURN;
    term_buf_reset(&r->value);
    term_buf_reset(&r->stack);
}

int rpc_exec_new(store_t *s, const char *node_name, const char *version,
                 rpc_exec_t **out)
{
    if (!s || !node_name || !out || strlen(node_name) >= TERM_ATOM_MAX)
        return -EINVAL;
    rpc_exec_t *x = mem_calloc(1, sizeof(*x));
    if (!x)
        return -ENOMEM;
    x->store = s;
    strcpy(x->node, node_name);
    snprintf(x->version, sizeof(x->version), "%s", version ? version : "");
    clock_gettime(CLOCK_MONOTONIC, &x->started);
    *out = x;
    return 0;
}

store_t *rpc_exec_store(rpc_exec_t *x)
{
    return x->store;
}

void rpc_exec_free(rpc_exec_t *x)
{
    if (!x)
        return;
    mem_free(x->data_dir);
    mem_free(x->file_dir);
    mem_free(x);
}

int rpc_exec_set_file_dir(rpc_exec_t *x, const char *dir)
{
    char *d = NULL;
    if (dir && (dir[0] != '/' || !(d = mem_strdup(dir))))
        return dir[0] != '/' ? -EINVAL : -ENOMEM;
    /* "/" would make the confinement mean nothing; "/x/" is kept as "/x". */
    if (d && strlen(d) > 1 && d[strlen(d) - 1] == '/')
        d[strlen(d) - 1] = 0;
    mem_free(x->file_dir);
    x->file_dir = d;
    return 0;
}

int rpc_exec_set_storage(rpc_exec_t *x, const char *data_dir, const char *fsync)
{
    char *d = NULL;
    if (data_dir && !(d = mem_strdup(data_dir)))
        return -ENOMEM;
    mem_free(x->data_dir);
    x->data_dir = d;
    snprintf(x->fsync, sizeof(x->fsync), "%s", fsync ? fsync : "");
    x->storage_known = 1;
    return 0;
}

void rpc_exec_set_nodes_cb(rpc_exec_t *x, rpc_nodes_cb cb, void *arg)
{
    x->nodes_cb = cb;
    x->nodes_arg = arg;
}

void rpc_exec_set_insert_cb(rpc_exec_t *x, rpc_insert_cb cb, void *arg)
{
    x->insert_cb = cb;
    x->insert_arg = arg;
}

void rpc_exec_set_info_cb(rpc_exec_t *x, rpc_info_cb cb, void *arg)
{
    x->info_cb = cb;
    x->info_arg = arg;
}

void rpc_exec_set_sync_cb(rpc_exec_t *x, rpc_action_cb cb, void *arg)
{
    x->sync_cb = cb;
    x->sync_arg = arg;
}

void rpc_exec_set_snapshot_cb(rpc_exec_t *x, rpc_action_cb cb, void *arg)
{
    x->snapshot_cb = cb;
    x->snapshot_arg = arg;
}

/* ---- Arguments -------------------------------------------------------- */

static int args_split(const void *buf, size_t len, rpc_args_t *a)
{
    term_reader_t r;
    memset(a, 0, sizeof(*a));
    a->all = buf;
    a->all_len = len;
    term_reader_init(&r, buf, len);
    switch (term_peek(&r)) {
    case TERM_T_NIL:
        if (term_get_nil(&r) < 0)
            return -EPROTO;
        break;
    case TERM_T_STRING: {
        const char *p;
        size_t n;
        if (term_get_string(&r, &p, &n) < 0)
            return -EPROTO;
        a->argc = n > UINT32_MAX ? UINT32_MAX : (uint32_t)n;
        for (size_t i = 0; i < n && i < RPC_MAX_ARGS; i++) {
            a->small[i][0] = 97; /* SMALL_INTEGER_EXT */
            a->small[i][1] = p[i];
            a->argv[i] = a->small[i];
            a->argl[i] = 2;
        }
        break;
    }
    case TERM_T_LIST: {
        uint32_t n;
        if (term_get_list(&r, &n) < 0)
            return -EPROTO;
        a->argc = n;
        for (uint32_t i = 0; i < n; i++) {
            const char *p;
            size_t l;
            if (term_get_any(&r, &p, &l) < 0)
                return -EPROTO;
            if (i < RPC_MAX_ARGS) {
                a->argv[i] = p;
                a->argl[i] = l;
            }
        }
        /* erpc checks is_list(A) only; apply/3 itself needs a proper list */
        if (term_get_nil(&r) < 0)
            return -EPROTO;
        break;
    }
    default:
        return -EPROTO;
    }
    return r.pos == len ? 0 : -EPROTO;
}

static int arg_atom(const rpc_args_t *a, uint32_t i, char out[TERM_ATOM_MAX])
{
    term_reader_t r;
    if (i >= a->argc || i >= RPC_MAX_ARGS)
        return -EINVAL;
    term_reader_init(&r, a->argv[i], a->argl[i]);
    return term_get_atom(&r, out);
}

static int arg_long(const rpc_args_t *a, uint32_t i, int64_t *v)
{
    term_reader_t r;
    if (i >= a->argc || i >= RPC_MAX_ARGS)
        return -EINVAL;
    term_reader_init(&r, a->argv[i], a->argl[i]);
    return term_get_long(&r, v);
}

static term_type_t arg_type(const rpc_args_t *a, uint32_t i)
{
    term_reader_t r;
    if (i >= a->argc || i >= RPC_MAX_ARGS)
        return TERM_T_INVALID;
    term_reader_init(&r, a->argv[i], a->argl[i]);
    return term_peek(&r);
}

/* ---- Exceptions ------------------------------------------------------- */

/* STRING_EXT for a short C string (file names in stack frames). */
static void put_string(term_buf_t *b, const char *s)
{
    size_t n = strlen(s);
    unsigned char hdr[3] = { 107, (unsigned char)(n >> 8), (unsigned char)n };
    term_buf_append(b, hdr, 3);
    term_buf_append(b, s, n);
}

static void put_error_info(term_buf_t *b, const char *module, const char *cause)
{
    /* [{error_info, #{cause => C, module => M}}]: keys in term order */
    term_put_list(b, 1);
    term_put_tuple(b, 2);
    term_put_atom(b, "error_info");
    term_put_map(b, cause ? 2 : 1);
    if (cause) {
        term_put_atom(b, "cause");
        term_put_atom(b, cause);
    }
    term_put_atom(b, "module");
    term_put_atom(b, module);
    term_put_nil(b);
}

/* {Mod, Fun, ArityOrArgs, [{file, File}, {line, Line}]} */
static void put_source_frame(term_buf_t *b, const char *mod, const char *fun,
                             int arity, const char *file, int line)
{
    term_put_tuple(b, 4);
    term_put_atom(b, mod);
    term_put_atom(b, fun);
    term_put_long(b, arity);
    term_put_list(b, 2);
    term_put_tuple(b, 2);
    term_put_atom(b, "file");
    put_string(b, file);
    term_put_tuple(b, 2);
    term_put_atom(b, "line");
    term_put_long(b, line);
    term_put_nil(b);
}

/* error:Reason with the stack [{M, F, Args, []}] */
static int raise_error(rpc_result_t *res, const void *reason, size_t reason_len,
                       const char *mod, const char *fun, const rpc_args_t *a)
{
    result_reset(res);
    res->cls = RPC_ERROR;
    term_put_raw(&res->value, reason, reason_len);
    /* [{M, F, Args, []}]: erpc:trim_stack/4 cuts the stack to this frame */
    term_put_list(&res->stack, 1);
    term_put_tuple(&res->stack, 4);
    term_put_atom(&res->stack, mod);
    term_put_atom(&res->stack, fun);
    term_put_raw(&res->stack, a->all, a->all_len);
    term_put_nil(&res->stack);
    term_put_nil(&res->stack);
    return 0;
}

static int raise_undef(rpc_result_t *res, const char *mod, const char *fun,
                       const rpc_args_t *a)
{
    static const char undef[] = { 119, 5, 'u', 'n', 'd', 'e', 'f' };
    return raise_error(res, undef, sizeof(undef), mod, fun, a);
}

/* error:badarg raised by the BIF mod:fun(Args) with error_info from
 * erl_stdlib_errors (ets) or erl_erts_errors (erlang). */
static int raise_badarg(rpc_result_t *res, const char *mod, const char *fun,
                        const rpc_args_t *a, const char *info_mod, const char *cause)
{
    result_reset(res);
    res->cls = RPC_ERROR;
    term_put_atom(&res->value, "badarg");
    term_put_list(&res->stack, 1);
    term_put_tuple(&res->stack, 4);
    term_put_atom(&res->stack, mod);
    term_put_atom(&res->stack, fun);
    term_put_raw(&res->stack, a->all, a->all_len);
    put_error_info(&res->stack, info_mod, cause);
    term_put_nil(&res->stack);
    return 0;
}

/* A badarg from a BIF that an ets.erl function calls: the stack shows the
 * BIF with its own arguments, then the Erlang frame (ets.erl, ets_lines()). */
static int raise_wrapped_badarg(rpc_result_t *res, const char *bif,
                                const rpc_args_t *a, const void *tail, size_t tail_len,
                                const char *cause, const char *fun, int arity, int line)
{
    result_reset(res);
    res->cls = RPC_ERROR;
    term_put_atom(&res->value, "badarg");
    term_put_list(&res->stack, 2);
    term_put_tuple(&res->stack, 4);
    term_put_atom(&res->stack, "ets");
    term_put_atom(&res->stack, bif);
    term_put_list(&res->stack, 2);
    term_put_raw(&res->stack, a->argv[0], a->argl[0]);
    term_put_raw(&res->stack, tail, tail_len);
    term_put_nil(&res->stack);
    put_error_info(&res->stack, "erl_stdlib_errors", cause);
    put_source_frame(&res->stack, "ets", fun, arity, "ets.erl", line);
    term_put_nil(&res->stack);
    return 0;
}

static void put_errno_atom(term_buf_t *b, int err)
{
    char name[32];
    const char *n = strerrorname_np(err < 0 ? -err : err);
    size_t i = 0;
    if (!n)
        n = "unknown";
    for (; n[i] && i + 1 < sizeof(name); i++)
        name[i] = (char)(n[i] >= 'A' && n[i] <= 'Z' ? n[i] - 'A' + 'a' : n[i]);
    name[i] = 0;
    term_put_atom(b, name);
}

/* An internal failure (not an Erlang exception the call would raise on
 * BEAM): error:{etsd, Errno} with the call as the only frame. */
static int raise_internal(rpc_result_t *res, const char *mod, const char *fun,
                          const rpc_args_t *a, int err)
{
    result_reset(res);
    res->cls = RPC_ERROR;
    term_put_tuple(&res->value, 2);
    term_put_atom(&res->value, "etsd");
    put_errno_atom(&res->value, err);
    term_put_list(&res->stack, 1);
    term_put_tuple(&res->stack, 4);
    term_put_atom(&res->stack, mod);
    term_put_atom(&res->stack, fun);
    term_put_raw(&res->stack, a->all, a->all_len);
    term_put_nil(&res->stack);
    term_put_nil(&res->stack);
    return 0;
}

/* ---- ets -------------------------------------------------------------- */

static int ets_call2(rpc_exec_t *x, const char *fun, const char *a0, size_t l0,
                     const char *a1, size_t l1, term_buf_t *out)
{
    term_buf_t args;
    term_buf_init(&args);
    term_put_list(&args, 2);
    term_put_raw(&args, a0, l0);
    term_put_raw(&args, a1, l1);
    term_put_nil(&args);
    int rc = args.err ? args.err
                      : store_ets_call(x->store, fun, args.data, args.len, out);
    term_buf_release(&args);
    return rc;
}

static int ets_info_long(rpc_exec_t *x, const char *tab, size_t tab_len,
                         const char *item, int64_t *v)
{
    term_buf_t it, out;
    term_reader_t r;
    term_buf_init(&it);
    term_buf_init(&out);
    term_put_atom(&it, item);
    int rc = it.err ? it.err : ets_call2(x, "info", tab, tab_len, it.data, it.len, &out);
    if (rc == 0 && out.err)
        rc = out.err;
    if (rc == 0) {
        term_reader_init(&r, out.data, out.len);
        rc = term_get_long(&r, v) < 0 ? -EPROTO : 0;
    }
    term_buf_release(&it);
    term_buf_release(&out);
    return rc;
}

/* The object stored under key (its tuple bytes) appended to obj, nothing
 * if there is none. */
static int ets_lookup_object(rpc_exec_t *x, const rpc_args_t *a, term_buf_t *obj)
{
    term_buf_t out;
    term_reader_t r;
    uint32_t n;
    const char *p;
    size_t l;
    term_buf_init(&out);
    int rc = ets_call2(x, "lookup", a->argv[0], a->argl[0], a->argv[1], a->argl[1], &out);
    if (rc == 0 && out.err)
        rc = out.err;
    if (rc == 0) {
        term_reader_init(&r, out.data, out.len);
        if (term_peek(&r) == TERM_T_LIST && term_get_list(&r, &n) == 0 && n > 0 &&
            term_get_any(&r, &p, &l) == 0)
            term_put_raw(obj, p, l);
    }
    term_buf_release(&out);
    return rc;
}

/* How update_counter's ops fare against an object, in order, as erl_db.c
 * checks them: the first op with a bad position gives the cause; an op
 * that fails otherwise first (not an integer there) gives none. */
enum { POS_OK = 0, POS_OUT_OF_RANGE, POS_IS_KEY, POS_PLAIN_BADARG };

static int element_is_integer(const char *obj, size_t len, int64_t pos)
{
    term_reader_t r;
    uint32_t arity;
    const char *p;
    size_t l;
    term_reader_init(&r, obj, len);
    if (term_get_tuple(&r, &arity) < 0 || pos < 1 || pos > (int64_t)arity)
        return 0;
    for (int64_t i = 1; i < pos; i++)
        if (term_get_any(&r, &p, &l) < 0)
            return 0;
    return term_peek(&r) == TERM_T_INTEGER;
}

static int check_counter_op(int64_t pos, int incr_ok, int64_t keypos, const char *obj,
                            size_t len)
{
    term_reader_t r;
    uint32_t arity;
    term_reader_init(&r, obj, len);
    /* the op's shape (an integer increment) is checked before its position */
    if (term_get_tuple(&r, &arity) < 0 || !incr_ok)
        return POS_PLAIN_BADARG;
    if (pos == keypos)
        return POS_IS_KEY;
    if (pos < 1 || pos > (int64_t)arity)
        return POS_OUT_OF_RANGE;
    if (!element_is_integer(obj, len, pos))
        return POS_PLAIN_BADARG;
    return POS_OK;
}

/* UpdateOp: Incr | {Pos, Incr} | {Pos, Incr, Thr, Set} or a list of those. */
static int counter_ops_check(const char *p, size_t l, int64_t keypos, const char *obj,
                             size_t len)
{
    term_reader_t r;
    uint32_t n, k;
    const char *e;
    size_t el;
    int64_t pos;
    term_reader_init(&r, p, l);
    switch (term_peek(&r)) {
    case TERM_T_INTEGER:
        return check_counter_op(keypos + 1, 1, keypos, obj, len);
    case TERM_T_TUPLE:
        if (term_get_tuple(&r, &k) < 0 || (k != 2 && k != 4) || term_get_long(&r, &pos) < 0)
            return POS_PLAIN_BADARG;
        return check_counter_op(pos, term_peek(&r) == TERM_T_INTEGER, keypos, obj, len);
    case TERM_T_LIST:
        if (term_get_list(&r, &n) < 0)
            return POS_PLAIN_BADARG;
        for (uint32_t i = 0; i < n; i++) {
            int rc;
            if (term_get_any(&r, &e, &el) < 0)
                return POS_PLAIN_BADARG;
            if ((rc = counter_ops_check(e, el, keypos, obj, len)) != POS_OK)
                return rc;
        }
        return POS_OK;
    default:
        return POS_PLAIN_BADARG;
    }
}

/* update_element's {Pos, Value} or a list of them, checked in order as
 * erl_db.c does: the first op that fails gives the cause, keypos for the
 * key's position, position (from OTP 27; none before) for one outside the
 * object, and none for a malformed op. NULL: no cause. */
static const char *element_ops_cause(const char *p, size_t l, int64_t keypos, int64_t arity)
{
    term_reader_t r;
    uint32_t n, k;
    const char *e;
    size_t el;
    int64_t pos;
    term_reader_init(&r, p, l);
    switch (term_peek(&r)) {
    case TERM_T_TUPLE:
        if (term_get_tuple(&r, &k) < 0 || k != 2 || term_get_long(&r, &pos) < 0)
            return NULL;
        if (pos == keypos)
            return "keypos";
        if (pos < 1 || pos > arity)
            return term_otp_release() >= 27 ? "position" : NULL;
        return "";
    case TERM_T_LIST:
        if (term_get_list(&r, &n) < 0)
            return NULL;
        for (uint32_t i = 0; i < n; i++) {
            const char *c;
            if (term_get_any(&r, &e, &el) < 0)
                return NULL;
            if (!(c = element_ops_cause(e, el, keypos, arity)) || *c)
                return c;
        }
        return "";
    default:
        return NULL;
    }
}

/* The number of elements of an object (a tuple), or 0. */
static int64_t object_arity(const char *obj, size_t len)
{
    term_reader_t r;
    uint32_t arity;
    term_reader_init(&r, obj, len);
    return term_get_tuple(&r, &arity) < 0 ? 0 : (int64_t)arity;
}

/* Does the table named by the first argument exist in the store? */
static int table_exists(rpc_exec_t *x, const rpc_args_t *a)
{
    char name[TERM_ATOM_MAX];
    if (arg_atom(a, 0, name) == 0)
        return store_table_find(x->store, name) != NULL;
    /* a tid: the table exists while info/2 answers an integer size */
    int64_t size;
    return arg_type(a, 0) == TERM_T_REF &&
           ets_info_long(x, a->argv[0], a->argl[0], "size", &size) == 0;
}

/* The error_info cause ERTS gives a badarg from ets:fun (erl_db.c): type
 * for a table argument that is neither atom nor tid, id for a table that
 * does not exist, then the per-function ones. NULL: no cause. */
static const char *ets_badarg_cause(rpc_exec_t *x, const char *fun, const rpc_args_t *a)
{
    int64_t keypos;
    if (strcmp(fun, "new") == 0) {
        char name[TERM_ATOM_MAX];
        if (a->argc == 2 && arg_atom(a, 0, name) == 0 &&
            store_table_find(x->store, name) != NULL)
            return "already_exists";
        return NULL;
    }
    if (strcmp(fun, "whereis") == 0 || strcmp(fun, "all") == 0 || a->argc == 0)
        return NULL;
    term_type_t t = arg_type(a, 0);
    if (t != TERM_T_ATOM && t != TERM_T_REF)
        return "type";
    if (!table_exists(x, a))
        return "id";
    if (a->argc < 2 || a->argc > RPC_MAX_ARGS)
        return NULL;
    if (strcmp(fun, "update_counter") == 0 && (a->argc == 3 || a->argc == 4)) {
        const char *cause = NULL;
        term_buf_t obj;
        term_buf_init(&obj);
        if (ets_info_long(x, a->argv[0], a->argl[0], "keypos", &keypos) < 0 ||
            ets_lookup_object(x, a, &obj) < 0 || obj.err)
            goto counter_done;
        if (obj.len == 0) {
            if (a->argc == 3) {
                cause = "badkey";
                goto counter_done;
            }
            term_put_raw(&obj, a->argv[3], a->argl[3]); /* the default object */
        }
        switch (counter_ops_check(a->argv[2], a->argl[2], keypos, obj.data, obj.len)) {
        case POS_IS_KEY: cause = "keypos"; break;
        case POS_OUT_OF_RANGE: cause = "position"; break;
        default: break;
        }
counter_done:
        term_buf_release(&obj);
        return cause;
    }
    if (strcmp(fun, "lookup_element") == 0 && a->argc == 3) {
        int64_t pos;
        /* erl_db.c checks the position before it looks the key up */
        if (arg_long(a, 2, &pos) < 0 || pos < 1)
            return NULL;
        term_buf_t obj;
        term_buf_init(&obj);
        int missing = ets_lookup_object(x, a, &obj) == 0 && !obj.err && obj.len == 0;
        term_buf_release(&obj);
        return missing ? "badkey" : NULL;
    }
    if (strcmp(fun, "update_element") == 0 && a->argc == 3) {
        const char *cause = NULL;
        term_buf_t obj;
        term_buf_init(&obj);
        if (ets_info_long(x, a->argv[0], a->argl[0], "keypos", &keypos) == 0 &&
            ets_lookup_object(x, a, &obj) == 0 && !obj.err && obj.len > 0)
            cause = element_ops_cause(a->argv[2], a->argl[2], keypos,
                                      object_arity(obj.data, obj.len));
        term_buf_release(&obj);
        return cause && *cause ? cause : NULL;
    }
    return NULL;
}

/* Lines of ets.erl functions that call another BIF, in the stack frame
 * BEAM shows for them: the sources of OTP 25.2, 27.3 and 29.1. Another
 * release (or patch level) takes the row of the newest one not above it,
 * and its lines may differ: the rest of the frame is the same everywhere. */
typedef struct ets_lines {
    int release;
    int tab2list, delete_all_objects, select_delete_all, select_delete;
} ets_lines_t;

static const ets_lines_t ETS_LINES[] = {
    {25, 771, 126, 399, 401},
    {27, 2263, 359, 1485, 1487},
    {29, 2773, 387, 1850, 1852},
};

static const ets_lines_t *ets_lines(void)
{
    const ets_lines_t *l = &ETS_LINES[0];
    for (size_t i = 0; i < sizeof ETS_LINES / sizeof ETS_LINES[0]; i++)
        if (ETS_LINES[i].release <= term_otp_release())
            l = &ETS_LINES[i];
    return l;
}

static int ets_badarg(rpc_exec_t *x, const char *fun, const rpc_args_t *a, rpc_result_t *res)
{
    const char *cause = ets_badarg_cause(x, fun, a);
    const ets_lines_t *lines = ets_lines();
    /* ets.erl functions that call another BIF */
    if (strcmp(fun, "tab2list") == 0 && a->argc == 1) {
        static const char any[] = { 100, 0, 1, '_' }; /* ATOM_EXT '_' */
        return raise_wrapped_badarg(res, "match_object", a, any, sizeof(any), cause,
                                    "tab2list", 1, lines->tab2list);
    }
    if (strcmp(fun, "delete_all_objects") == 0 && a->argc == 1) {
        static const char undef[] = { 119, 9, 'u', 'n', 'd', 'e', 'f', 'i', 'n', 'e', 'd' };
        return raise_wrapped_badarg(res, "internal_delete_all", a, undef, sizeof(undef),
                                    cause, "delete_all_objects", 1,
                                    lines->delete_all_objects);
    }
    if (strcmp(fun, "select_delete") == 0 && a->argc == 2) {
        /* [{'_',[],[true]}] goes to internal_delete_all, others to
         * internal_select_delete */
        static const char all_ms[] = { 108, 0, 0, 0, 1, 104, 3, 119, 1, '_', 106,
                                       108, 0, 0, 0, 1, 119, 4, 't', 'r', 'u', 'e', 106, 106 };
        term_buf_t canon;
        size_t used;
        int is_all = 0;
        term_buf_init(&canon);
        if (term_canon_inner(a->argv[1], a->argl[1], &used, &canon) == 0 &&
            canon.len == sizeof(all_ms) && memcmp(canon.data, all_ms, sizeof(all_ms)) == 0)
            is_all = 1;
        term_buf_release(&canon);
        if (is_all) {
            static const char undef[] = { 119, 9, 'u', 'n', 'd', 'e', 'f', 'i', 'n', 'e', 'd' };
            return raise_wrapped_badarg(res, "internal_delete_all", a, undef,
                                        sizeof(undef), cause, "select_delete", 2,
                                        lines->select_delete_all);
        }
        return raise_wrapped_badarg(res, "internal_select_delete", a, a->argv[1],
                                    a->argl[1], cause, "select_delete", 2, lines->select_delete);
    }
    return raise_badarg(res, "ets", fun, a, "erl_stdlib_errors", cause);
}

/* match/3, match_object/3 and select/3 return {Chunk, Continuation}; the
 * store answers the whole match, so the continuation carries the rest:
 * {'$etsd_continuation', Limit, Rest}, or '$end_of_table' when nothing is
 * left (ets:match('$end_of_table') answers '$end_of_table' on BEAM too). */
static const char cont_tag[] = "$etsd_continuation";

static int put_chunk(term_buf_t *out, int64_t limit, const char *list, size_t len)
{
    term_reader_t r;
    uint32_t n = 0;
    const char *p;
    size_t l;
    term_reader_init(&r, list, len);
    if (term_peek(&r) == TERM_T_NIL) {
        term_put_atom(out, "$end_of_table");
        return 0;
    }
    if (term_peek(&r) != TERM_T_LIST || term_get_list(&r, &n) < 0)
        return -EPROTO;
    uint32_t take = (int64_t)n < limit ? n : (uint32_t)limit;
    term_put_tuple(out, 2);
    term_put_list(out, take);
    for (uint32_t i = 0; i < take; i++) {
        if (term_get_any(&r, &p, &l) < 0)
            return -EPROTO;
        term_put_raw(out, p, l);
    }
    term_put_nil(out);
    if (take == n) {
        term_put_atom(out, "$end_of_table");
        return 0;
    }
    term_put_tuple(out, 3);
    term_put_atom(out, cont_tag);
    term_put_long(out, limit);
    term_put_list(out, n - take);
    /* the rest of the elements and the tail, as received */
    term_put_raw(out, r.buf + r.pos, r.len - r.pos);
    return 0;
}

static int ets_limited(rpc_exec_t *x, const char *fun, const rpc_args_t *a, rpc_result_t *res)
{
    int64_t limit;
    term_buf_t all;
    if (arg_long(a, 2, &limit) < 0 || limit < 1)
        return ets_badarg(x, fun, a, res);
    term_buf_init(&all);
    int rc = ets_call2(x, fun, a->argv[0], a->argl[0], a->argv[1], a->argl[1], &all);
    if (rc == 0 && all.err)
        rc = all.err;
    if (rc == 0)
        rc = put_chunk(&res->value, limit, all.data, all.len);
    term_buf_release(&all);
    if (rc == -EINVAL)
        return ets_badarg(x, fun, a, res);
    if (rc < 0)
        return raise_internal(res, "ets", fun, a, rc);
    return 0;
}

static int ets_continue(const char *fun, const rpc_args_t *a, rpc_result_t *res)
{
    char tag[TERM_ATOM_MAX];
    term_reader_t r;
    uint32_t k;
    int64_t limit;
    const char *p;
    size_t l;
    term_reader_init(&r, a->argv[0], a->argl[0]);
    if (term_peek(&r) == TERM_T_ATOM && term_get_atom(&r, tag) == 0 &&
        strcmp(tag, "$end_of_table") == 0) {
        term_put_atom(&res->value, "$end_of_table");
        return 0;
    }
    term_reader_init(&r, a->argv[0], a->argl[0]);
    if (term_get_tuple(&r, &k) == 0 && k == 3 && term_get_atom(&r, tag) == 0 &&
        strcmp(tag, cont_tag) == 0 && term_get_long(&r, &limit) == 0 && limit > 0 &&
        term_get_any(&r, &p, &l) == 0 && put_chunk(&res->value, limit, p, l) == 0)
        return 0;
    return raise_badarg(res, "ets", fun, a, "erl_stdlib_errors", NULL);
}

static int is_limited_fun(const char *fun)
{
    return strcmp(fun, "match") == 0 || strcmp(fun, "match_object") == 0 ||
           strcmp(fun, "select") == 0;
}


/* ---- tab2file / file2tab confinement -------------------------------------- */

/* The file name argument as ETS takes it: a string, a binary, an atom or a
 * flat list of bytes. -EINVAL for anything else. */
static int file_arg(const char *p, size_t len, char *path, size_t cap)
{
    term_reader_t r;
    const char *s;
    size_t n;
    uint32_t k;
    term_reader_init(&r, p, len);
    switch (term_peek(&r)) {
    case TERM_T_STRING:
        if (term_get_string(&r, &s, &n) < 0)
            return -EINVAL;
        break;
    case TERM_T_BINARY:
        if (term_get_binary(&r, &s, &n) < 0)
            return -EINVAL;
        break;
    case TERM_T_ATOM:
        if (term_get_atom(&r, path) < 0 || strlen(path) >= cap)
            return -EINVAL;
        return 0;
    case TERM_T_LIST:
        if (term_get_list(&r, &k) < 0 || k >= cap)
            return -EINVAL;
        for (uint32_t i = 0; i < k; i++) {
            int64_t c;
            if (term_get_long(&r, &c) < 0 || c < 1 || c > 255)
                return -EINVAL;
            path[i] = (char)c;
        }
        if (term_get_nil(&r) < 0)
            return -EINVAL;
        path[k] = 0;
        return 0;
    default:
        return -EINVAL;
    }
    if (n >= cap || memchr(s, 0, n))
        return -EINVAL;
    memcpy(path, s, n);
    path[n] = 0;
    return 0;
}

/* 1 if real is dir or inside it. */
static int under_dir(const char *dir, const char *real)
{
    size_t n = strlen(dir);
    return strncmp(real, dir, n) == 0 && (real[n] == 0 || real[n] == '/' || n == 1);
}

/* Checks name against the file folder and writes the path to use to out.
 * Returns NULL when it may be used, else the reason atom for
 * {error, {Reason, Name}}: parent_dir_in_path (a ".." component),
 * outside_file_dir (an absolute path elsewhere), symlink_outside_file_dir
 * (a symlink on the way whose target is elsewhere or missing). With
 * check_tmp, name ".tmp" (tab2file writes it first) is checked too. */
static const char *confine(const char *dir, const char *name, int check_tmp, char *out,
                           size_t cap)
{
    for (const char *c = name; (c = strstr(c, "..")) != NULL; c += 2)
        if ((c == name || c[-1] == '/') && (c[2] == 0 || c[2] == '/'))
            return "parent_dir_in_path";
    if (name[0] == '/') {
        if (!under_dir(dir, name) || strlen(name) >= cap)
            return "outside_file_dir";
        snprintf(out, cap, "%s", name);
    } else if ((size_t)snprintf(out, cap, "%s/%s", dir, name) >= cap) {
        return "outside_file_dir";
    }
    /* Every component after the folder that is a symlink must resolve to
     * a place inside it. */
    char walk[PATH_MAX + 8], real[PATH_MAX];
    size_t n = strlen(out);
    if (n + 5 > sizeof walk)
        return "outside_file_dir";
    memcpy(walk, out, n + 1);
    if (check_tmp)
        memcpy(walk + n, ".tmp", 5);
    for (int pass = 0; pass < (check_tmp ? 2 : 1); pass++) {
        size_t end = pass ? n + 4 : n;
        for (size_t i = strlen(dir) + 1; i <= end; i++) {
            if (walk[i] != '/' && i != end)
                continue;
            char save = walk[i];
            walk[i] = 0;
            struct stat st;
            int bad = lstat(walk, &st) == 0 && S_ISLNK(st.st_mode) &&
                      (!realpath(walk, real) || !under_dir(dir, real));
            walk[i] = save;
            if (bad)
                return "symlink_outside_file_dir";
        }
    }
    return NULL;
}

/* ets:tab2file/2,3 and file2tab/1,2 over rpc: the file name is taken
 * inside the file folder (relative names) or must lie in it (absolute
 * ones). Returns 1 when *res already holds the answer (a refusal), 0 with
 * *args set to the call's arguments with the checked path, 2 for a call
 * that is not one of these, 3 for a file argument that is no file name
 * (ETS's badarg: it never reaches the store unchecked), or a negative
 * errno. */
static int file_call_confine(rpc_exec_t *x, const char *fun, const rpc_args_t *a,
                             term_buf_t *args, rpc_result_t *res)
{
    uint32_t idx;
    int tab2file = strcmp(fun, "tab2file") == 0;
    if (tab2file && (a->argc == 2 || a->argc == 3))
        idx = 1;
    else if (strcmp(fun, "file2tab") == 0 && (a->argc == 1 || a->argc == 2))
        idx = 0;
    else
        return 2;   /* not a file call */
    char name[PATH_MAX], path[PATH_MAX];
    if (idx >= RPC_MAX_ARGS || file_arg(a->argv[idx], a->argl[idx], name, sizeof name) < 0)
        return 3;
    const char *why = !x->file_dir ? "no_file_dir"
                                   : confine(x->file_dir, name, tab2file, path, sizeof path);
    if (why) {
        /* {error, no_file_dir} | {error, {Why, Name}} */
        term_put_tuple(&res->value, 2);
        term_put_atom(&res->value, "error");
        if (!x->file_dir) {
            term_put_atom(&res->value, why);
        } else {
            term_put_tuple(&res->value, 2);
            term_put_atom(&res->value, why);
            term_put_raw(&res->value, a->argv[idx], a->argl[idx]);
        }
        return 1;
    }
    term_put_list(args, a->argc);
    for (uint32_t i = 0; i < a->argc; i++) {
        if (i == idx)
            term_put_binary(args, path, strlen(path));
        else
            term_put_raw(args, a->argv[i], a->argl[i]);
    }
    term_put_nil(args);
    return args->err;
}

static int call_ets(rpc_exec_t *x, const char *fun, const rpc_args_t *a, rpc_result_t *res)
{
    if (a->argc == 3 && is_limited_fun(fun))
        return ets_limited(x, fun, a, res);
    if (a->argc == 1 && is_limited_fun(fun))
        return ets_continue(fun, a, res);
    /* ETS looks the table up before it looks at the item, and the key up
     * before it looks at the element specs: info/2 of a missing table is
     * undefined whatever the item, update_element/3 of a missing key false
     * whatever the specs. */
    if (a->argc == 2 && strcmp(fun, "info") == 0 &&
        (arg_type(a, 0) == TERM_T_ATOM || arg_type(a, 0) == TERM_T_REF) &&
        !table_exists(x, a)) {
        term_put_atom(&res->value, "undefined");
        return 0;
    }
    if (a->argc == 3 && strcmp(fun, "update_element") == 0 && table_exists(x, a)) {
        term_buf_t obj;
        term_buf_init(&obj);
        int missing = ets_lookup_object(x, a, &obj) == 0 && !obj.err && obj.len == 0;
        term_buf_release(&obj);
        if (missing) {
            term_put_atom(&res->value, "false");
            return 0;
        }
    }
    term_buf_t fargs;
    term_buf_init(&fargs);
    int rc = file_call_confine(x, fun, a, &fargs, res);
    if (rc == 1 || rc == 3 || rc < 0) {
        term_buf_release(&fargs);
        return rc < 0 ? raise_internal(res, "ets", fun, a, rc)
               : rc == 3 ? ets_badarg(x, fun, a, res) : 0;
    }
    if (rc == 0)
        rc = store_ets_call(x->store, fun, fargs.data, fargs.len, &res->value);
    else
        rc = store_ets_call(x->store, fun, a->all, a->all_len, &res->value);
    term_buf_release(&fargs);
    if (rc == 0 && res->value.err)
        rc = res->value.err;
    if (rc == 0)
        return 0;
    if (rc == -EINVAL)
        return ets_badarg(x, fun, a, res);
    if (rc == -ENOENT)
        return raise_undef(res, "ets", fun, a);
    return raise_internal(res, "ets", fun, a, rc);
}

/* ---- etsd ------------------------------------------------------------- */

static int etsd_insert(rpc_exec_t *x, const rpc_args_t *a, rpc_result_t *res)
{
    char table[TERM_ATOM_MAX];
    /* A list is logged as one batch (one write, one fsync); the objects
     * are broadcast only once the batch is durable (DESIGN.md: every write
     * reaches the WAL before it is acknowledged or broadcast). */
    store_batch_begin(x->store);
    int rc = store_ets_call(x->store, "insert", a->all, a->all_len, &res->value);
    int brc = store_batch_end(x->store);
    if (rc == 0 && res->value.err)
        rc = res->value.err;
    if (rc == 0 && brc < 0)
        return raise_internal(res, "etsd", "insert", a, brc);
    if (rc == -EINVAL)
        return raise_badarg(res, "etsd", "insert", a, "erl_stdlib_errors",
                            ets_badarg_cause(x, "insert", a));
    if (rc < 0)
        return raise_internal(res, "etsd", "insert", a, rc);
    if (!x->insert_cb || arg_atom(a, 0, table) < 0)
        return 0;
    term_reader_t r;
    term_reader_init(&r, a->argv[1], a->argl[1]);
    if (term_peek(&r) == TERM_T_TUPLE) {
        x->insert_cb(x->insert_arg, table, a->argv[1], a->argl[1]);
    } else {
        uint32_t n;
        const char *p;
        size_t l;
        if (term_peek(&r) != TERM_T_LIST || term_get_list(&r, &n) < 0)
            return 0;
        for (uint32_t i = 0; i < n; i++) {
            if (term_get_any(&r, &p, &l) < 0)
                break;
            x->insert_cb(x->insert_arg, table, p, l);
        }
    }
    return 0;
}

/* One #{memory => Words, name => T, size => N} per table. */
static int put_tables(rpc_exec_t *x, term_buf_t *b)
{
    term_buf_t all;
    term_reader_t r;
    uint32_t n = 0;
    static const char nil[] = { 106 };
    term_buf_init(&all);
    int rc = store_ets_call(x->store, "all", nil, 1, &all);
    if (rc == 0 && all.err)
        rc = all.err;
    if (rc < 0)
        goto out;
    term_reader_init(&r, all.data, all.len);
    if (term_peek(&r) == TERM_T_LIST && term_get_list(&r, &n) < 0) {
        rc = -EPROTO;
        goto out;
    }
    if (n)
        term_put_list(b, n);
    for (uint32_t i = 0; i < n; i++) {
        const char *t;
        size_t tl;
        int64_t size = 0, mem = 0;
        if (term_get_any(&r, &t, &tl) < 0) {
            rc = -EPROTO;
            goto out;
        }
        (void)ets_info_long(x, t, tl, "size", &size);
        (void)ets_info_long(x, t, tl, "memory", &mem);
        term_put_map(b, 3);
        term_put_atom(b, "memory");
        term_put_long(b, mem);
        term_put_atom(b, "name");
        term_put_raw(b, t, tl);
        term_put_atom(b, "size");
        term_put_long(b, size);
    }
    term_put_nil(b);
out:
    term_buf_release(&all);
    return rc;
}

static int etsd_info(rpc_exec_t *x, rpc_result_t *res)
{
    term_buf_t extra, tables;
    uint32_t extra_n = 0;
    struct timespec now;
    term_buf_init(&extra);
    term_buf_init(&tables);
    int rc = put_tables(x, &tables);
    if (rc == 0 && tables.err)
        rc = tables.err;
    if (rc < 0) {
        term_buf_reset(&tables);
        term_put_nil(&tables);
    }
    if (x->info_cb && (x->info_cb(x->info_arg, &extra, &extra_n) < 0 || extra.err)) {
        term_buf_reset(&extra);
        extra_n = 0;
    }
    clock_gettime(CLOCK_MONOTONIC, &now);
    int64_t up = (int64_t)(now.tv_sec - x->started.tv_sec) * 1000 +
                 (now.tv_nsec - x->started.tv_nsec) / 1000000;
    term_buf_t *v = &res->value;
    term_put_map(v, 5 + extra_n + (x->storage_known ? 2 : 0));
    if (x->storage_known) {
        /* data_dir => <<"...">> | undefined, fsync => <<"always">> | ... */
        term_put_atom(v, "data_dir");
        if (x->data_dir)
            term_put_binary(v, x->data_dir, strlen(x->data_dir));
        else
            term_put_atom(v, "undefined");
        term_put_atom(v, "fsync");
        if (x->data_dir)
            term_put_binary(v, x->fsync, strlen(x->fsync));
        else
            term_put_atom(v, "undefined");
    }
    term_put_atom(v, "node");
    term_put_atom(v, x->node);
    /* the release whose term semantics etsd follows (term.h) */
    term_put_atom(v, "otp_release");
    term_put_long(v, term_otp_release());
    term_put_atom(v, "tables");
    term_put_raw(v, tables.data, tables.len);
    term_put_atom(v, "uptime_ms");
    term_put_long(v, up);
    term_put_atom(v, "version");
    term_put_binary(v, x->version, strlen(x->version));
    if (extra_n)
        term_put_raw(v, extra.data, extra.len);
    term_buf_release(&extra);
    term_buf_release(&tables);
    return 0;
}

static int etsd_action(rpc_exec_t *x, const char *fun, const rpc_args_t *a, rpc_result_t *res)
{
    rpc_action_cb cb = fun[1] == 'y' ? x->sync_cb : x->snapshot_cb;
    void *arg = fun[1] == 'y' ? x->sync_arg : x->snapshot_arg;
    if (cb) {
        int rc = cb(arg, &res->value);
        if (rc < 0 || res->value.err)
            return raise_internal(res, "etsd", fun, a, rc < 0 ? rc : res->value.err);
        return 0;
    }
    if (fun[1] == 'y') {
        term_put_tuple(&res->value, 2);
        term_put_atom(&res->value, "error");
        term_put_atom(&res->value, "not_clustered");
        return 0;
    }
    if (x->storage_known && !x->data_dir) {
        term_put_tuple(&res->value, 2);
        term_put_atom(&res->value, "error");
        term_put_atom(&res->value, "no_data_dir");
        return 0;
    }
    int rc = store_snapshot(x->store);
    if (rc == 0) {
        term_put_atom(&res->value, "ok");
    } else {
        term_put_tuple(&res->value, 2);
        term_put_atom(&res->value, "error");
        put_errno_atom(&res->value, rc);
    }
    return 0;
}

static int call_etsd(rpc_exec_t *x, const char *fun, const rpc_args_t *a, rpc_result_t *res)
{
    if (strcmp(fun, "insert") == 0 && a->argc == 2)
        return etsd_insert(x, a, res);
    if (strcmp(fun, "info") == 0 && a->argc == 0)
        return etsd_info(x, res);
    if ((strcmp(fun, "sync") == 0 || strcmp(fun, "snapshot") == 0) && a->argc == 0)
        return etsd_action(x, fun, a, res);
    return raise_undef(res, "etsd", fun, a);
}

/* ---- erlang ----------------------------------------------------------- */

/* erlang:nodes/1 argument kinds, as bits. */
enum { NODES_VISIBLE = 1, NODES_HIDDEN = 2, NODES_CONNECTED = 4, NODES_THIS = 8,
       NODES_KNOWN = 16 };

static int nodes_kind(const char *name)
{
    static const struct { const char *n; int bit; } kinds[] = {
        { "visible", NODES_VISIBLE }, { "hidden", NODES_HIDDEN },
        { "connected", NODES_CONNECTED }, { "this", NODES_THIS }, { "known", NODES_KNOWN },
    };
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
        if (strcmp(name, kinds[i].n) == 0)
            return kinds[i].bit;
    return 0;
}

/* Parses nodes/1's argument (an atom or a list of them); 0 for a badarg. */
static int nodes_arg(const rpc_args_t *a)
{
    char name[TERM_ATOM_MAX];
    term_reader_t r;
    uint32_t n;
    int bits = 0;
    term_reader_init(&r, a->argv[0], a->argl[0]);
    switch (term_peek(&r)) {
    case TERM_T_ATOM:
        return term_get_atom(&r, name) == 0 ? nodes_kind(name) : 0;
    case TERM_T_NIL:
        return 0;
    case TERM_T_LIST:
        if (term_get_list(&r, &n) < 0)
            return 0;
        for (uint32_t i = 0; i < n; i++) {
            int k;
            if (term_get_atom(&r, name) < 0 || (k = nodes_kind(name)) == 0)
                return 0;
            bits |= k;
        }
        return term_get_nil(&r) == 0 ? bits : 0;
    default:
        return 0;
    }
}

/* etsd is a hidden node to the BEAM nodes, but for a health check the peers
 * it is connected to are its cluster: nodes() and nodes(visible) list them,
 * nodes(hidden) is []. (README says so.) */
static int erlang_nodes(rpc_exec_t *x, int bits, rpc_result_t *res)
{
    term_buf_t *v = &res->value;
    int peers = bits & (NODES_VISIBLE | NODES_CONNECTED | NODES_KNOWN);
    if (bits & (NODES_THIS | NODES_KNOWN)) {
        /* [node() | Peers]: LIST_EXT with one element and the peer list as tail */
        term_put_list(v, 1);
        term_put_atom(v, x->node);
    }
    if (peers && x->nodes_cb) {
        size_t mark = v->len;
        int rc = x->nodes_cb(x->nodes_arg, v);
        if (rc < 0 || v->err) {
            if (v->err)
                return v->err;
            v->len = mark;
            term_put_nil(v);
        }
    } else {
        term_put_nil(v);
    }
    return 0;
}

static int time_unit_per_second(const rpc_args_t *a, int64_t *per)
{
    static const struct { const char *n; int64_t per; } units[] = {
        { "second", 1 }, { "seconds", 1 },
        { "millisecond", 1000 }, { "milli_seconds", 1000 },
        { "microsecond", 1000000 }, { "micro_seconds", 1000000 },
        { "nanosecond", 1000000000 }, { "nano_seconds", 1000000000 },
        { "native", 1000000000 }, { "perf_counter", 1000000000 },
    };
    char name[TERM_ATOM_MAX];
    if (arg_long(a, 0, per) == 0)
        return *per > 0 ? 0 : -EINVAL;
    if (arg_atom(a, 0, name) < 0)
        return -EINVAL;
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
        if (strcmp(name, units[i].n) == 0) {
            *per = units[i].per;
            return 0;
        }
    return -EINVAL;
}

static int erlang_system_time(int64_t per, rpc_result_t *res)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    __int128 ns = (__int128)ts.tv_sec * 1000000000 + ts.tv_nsec;
    /* erlang:convert_time_unit/3 rounds toward negative infinity */
    __int128 v = ns * per / 1000000000;
    if (v > INT64_MAX)
        term_put_double(&res->value, (double)v); /* XXX: bignum units beyond 9.2e18 */
    else
        term_put_long(&res->value, (int64_t)v);
    return 0;
}

static int erlang_memory(rpc_exec_t *x, rpc_result_t *res)
{
    struct mallinfo2 mi = mallinfo2();
    int64_t total = (int64_t)(mi.uordblks + mi.hblkhd);
    int64_t ets_words = 0;
    term_buf_t all;
    term_reader_t r;
    uint32_t n = 0;
    static const char nil[] = { 106 };
    term_buf_init(&all);
    if (store_ets_call(x->store, "all", nil, 1, &all) == 0 && !all.err) {
        term_reader_init(&r, all.data, all.len);
        if (term_peek(&r) == TERM_T_LIST && term_get_list(&r, &n) == 0) {
            for (uint32_t i = 0; i < n; i++) {
                const char *t;
                size_t tl;
                int64_t w = 0;
                if (term_get_any(&r, &t, &tl) < 0)
                    break;
                if (ets_info_long(x, t, tl, "memory", &w) == 0)
                    ets_words += w;
            }
        }
    }
    term_buf_release(&all);
    int64_t ets_bytes = ets_words * (int64_t)sizeof(void *);
    static const char *const keys[] = { "total", "processes", "processes_used", "system",
                                        "atom", "atom_used", "binary", "code", "ets" };
    int64_t vals[] = { total, 0, 0, total, 0, 0, 0, 0, ets_bytes };
    term_buf_t *v = &res->value;
    term_put_list(v, 9);
    for (int i = 0; i < 9; i++) {
        term_put_tuple(v, 2);
        term_put_atom(v, keys[i]);
        term_put_long(v, vals[i]);
    }
    term_put_nil(v);
    return 0;
}

static int call_erlang(rpc_exec_t *x, const char *fun, const rpc_args_t *a, rpc_result_t *res)
{
    if (strcmp(fun, "node") == 0 && a->argc == 0) {
        term_put_atom(&res->value, x->node);
        return 0;
    }
    if (strcmp(fun, "nodes") == 0 && a->argc == 0)
        return erlang_nodes(x, NODES_VISIBLE, res);
    if (strcmp(fun, "nodes") == 0 && a->argc == 1) {
        int bits = nodes_arg(a);
        if (!bits)
            return raise_badarg(res, "erlang", fun, a, "erl_erts_errors", NULL);
        return erlang_nodes(x, bits, res);
    }
    if (strcmp(fun, "system_time") == 0 && a->argc == 0)
        return erlang_system_time(1000000000, res);
    if (strcmp(fun, "system_time") == 0 && a->argc == 1) {
        int64_t per;
        if (time_unit_per_second(a, &per) < 0)
            return raise_badarg(res, "erlang", fun, a, "erl_erts_errors", NULL);
        return erlang_system_time(per, res);
    }
    if (strcmp(fun, "memory") == 0 && a->argc == 0)
        return erlang_memory(x, res);
    /* throw/1, exit/1 and error/1,2: so callers can see each exception
     * class arrive exactly as from a BEAM node */
    if (strcmp(fun, "throw") == 0 && a->argc == 1) {
        res->cls = RPC_THROW;
        term_put_raw(&res->value, a->argv[0], a->argl[0]);
        return 0;
    }
    if (strcmp(fun, "exit") == 0 && a->argc == 1) {
        res->cls = RPC_EXIT;
        term_put_raw(&res->value, a->argv[0], a->argl[0]);
        return 0;
    }
    if (strcmp(fun, "error") == 0 && (a->argc == 1 || a->argc == 2))
        return raise_error(res, a->argv[0], a->argl[0], "erlang", "error", a);
    return raise_undef(res, "erlang", fun, a);
}

/* ---- Dispatch --------------------------------------------------------- */

int rpc_exec_call(rpc_exec_t *x, const char *mod, const char *fun,
                  const void *args, size_t len, rpc_result_t *res)
{
    rpc_args_t a;
    int rc;
    result_reset(res);
    if (args_split(args, len, &a) < 0)
        return -EPROTO;
    if (strcmp(mod, "ets") == 0) {
        /* Whatever an ets call writes (a list insert, a select_delete) is
         * logged as one batch, and the reply, sent when this returns, goes
         * out only once the batch is durable. */
        store_batch_begin(x->store);
        rc = call_ets(x, fun, &a, res);
        int brc = store_batch_end(x->store);
        if (rc == 0 && brc < 0 && !res->value.err && !res->stack.err)
            rc = raise_internal(res, "ets", fun, &a, brc);
    }
    else if (strcmp(mod, "etsd") == 0)
        rc = call_etsd(x, fun, &a, res);
    else if (strcmp(mod, "erlang") == 0)
        rc = call_erlang(x, fun, &a, res);
    else
        rc = raise_undef(res, mod, fun, &a);
    if (rc == 0 && (res->value.err || res->stack.err))
        rc = res->value.err ? res->value.err : res->stack.err;
    return rc;
}

/* ---- Reply shapes ----------------------------------------------------- */

static const char *class_atom(rpc_class_t c)
{
    switch (c) {
    case RPC_THROW: return "throw";
    case RPC_EXIT: return "exit";
    case RPC_ERROR: return "error";
    default: return "return";
    }
}

void rpc_encode_erpc_reason(term_buf_t *out, const void *ref, size_t ref_len,
                            const rpc_result_t *res)
{
    term_put_tuple(out, res->cls == RPC_ERROR ? 4 : 3);
    term_put_raw(out, ref, ref_len);
    term_put_atom(out, class_atom(res->cls));
    term_put_raw(out, res->value.data, res->value.len);
    if (res->cls == RPC_ERROR)
        term_put_raw(out, res->stack.data, res->stack.len);
}

void rpc_encode_rex_reply(term_buf_t *out, const rpc_result_t *res)
{
    switch (res->cls) {
    case RPC_RETURN:
    case RPC_THROW:
        term_put_raw(out, res->value.data, res->value.len);
        break;
    case RPC_EXIT:
    case RPC_ERROR:
        term_put_tuple(out, 2);
        term_put_atom(out, "badrpc");
        term_put_tuple(out, 2);
        term_put_atom(out, "EXIT");
        if (res->cls == RPC_ERROR) {
            term_put_tuple(out, 2);
            term_put_raw(out, res->value.data, res->value.len);
            term_put_raw(out, res->stack.data, res->stack.len);
        } else {
            term_put_raw(out, res->value.data, res->value.len);
        }
        break;
    }
}
