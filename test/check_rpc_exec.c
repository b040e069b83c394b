/* check_rpc_exec.c: rpc_exec against what a BEAM node answers over rpc for
 * the same calls (test/vectors/rpc_exec_vectors.h, from term_to_binary). */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cnode/rpc_exec.h"
#include "store/store.h"
#include "term/mem.h"
#include "term/term.h"
#include "test/vectors/rpc_exec_vectors.h"

#define NVECTORS (sizeof(rpc_exec_vectors) / sizeof(rpc_exec_vectors[0]))

static const char fake_ref[] = { 97, 7 }; /* the vectors use 7 as Ref */

/* A store with table tt = {a, 1}, {b, x}, as the vectors were made. */
static store_t *fresh_store(void)
{
    store_t *s;
    store_table_t *t;
    term_buf_t b;
    ck_assert_int_eq(store_new(&s), 0);
    ck_assert_int_eq(store_table_create(s, "tt", 1, &t), 0);
    term_buf_init(&b);
    ck_assert_int_eq(term_format(&b, "{a,1}"), 0);
    ck_assert_int_eq(store_insert(t, b.data, b.len), 0);
    term_buf_reset(&b);
    ck_assert_int_eq(term_format(&b, "{b,x}"), 0);
    ck_assert_int_eq(store_insert(t, b.data, b.len), 0);
    term_buf_release(&b);
    return s;
}

/* Canonical bytes, so that ATOM_EXT from term_to_binary and our
 * SMALL_ATOM_UTF8_EXT compare equal when the terms are =:=. */
static void canon(const void *p, size_t len, term_buf_t *out)
{
    size_t used;
    term_buf_reset(out);
    ck_assert_int_eq(term_canon_inner(p, len, &used, out), 0);
    ck_assert_uint_eq(used, len);
}

static void assert_same_term(const char *id, const void *got, size_t got_len,
                             const void *want, size_t want_len)
{
    term_buf_t a, b, pa, pb;
    term_buf_init(&a);
    term_buf_init(&b);
    term_buf_init(&pa);
    term_buf_init(&pb);
    canon(got, got_len, &a);
    canon(want, want_len, &b);
    ck_assert_int_eq(term_print(a.data, a.len, &pa), 0);
    ck_assert_int_eq(term_print(b.data, b.len, &pb), 0);
    ck_assert_msg(a.len == b.len && memcmp(a.data, b.data, a.len) == 0,
                  "%s:\n got  %s\n want %s", id, pa.data, pb.data);
    term_buf_release(&a);
    term_buf_release(&b);
    term_buf_release(&pa);
    term_buf_release(&pb);
}

/* ---- vectors: erpc reason and rex reply equal BEAM's ------------------- */

START_TEST(call_matches_beam_erpc_reason)
{
    const struct rpc_exec_vector *v = &rpc_exec_vectors[_i];
    store_t *s = fresh_store();
    rpc_exec_t *x;
    rpc_result_t res;
    term_buf_t out;
    ck_assert_int_eq(rpc_exec_new(s, "etsd@127.0.0.1", "0", &x), 0);
    rpc_result_init(&res);
    term_buf_init(&out);
    ck_assert_int_eq(rpc_exec_call(x, v->mod, v->fun, v->args, v->args_len, &res), 0);
    rpc_encode_erpc_reason(&out, fake_ref, sizeof(fake_ref), &res);
    ck_assert_int_eq(out.err, 0);
    assert_same_term(v->id, out.data, out.len, v->reason, v->reason_len);
    term_buf_release(&out);
    rpc_result_release(&res);
    rpc_exec_free(x);
    store_free(s);
}
END_TEST

START_TEST(call_matches_beam_rex_reply)
{
    const struct rpc_exec_vector *v = &rpc_exec_vectors[_i];
    store_t *s = fresh_store();
    rpc_exec_t *x;
    rpc_result_t res;
    term_buf_t out;
    ck_assert_int_eq(rpc_exec_new(s, "etsd@127.0.0.1", "0", &x), 0);
    rpc_result_init(&res);
    term_buf_init(&out);
    ck_assert_int_eq(rpc_exec_call(x, v->mod, v->fun, v->args, v->args_len, &res), 0);
    rpc_encode_rex_reply(&out, &res);
    ck_assert_int_eq(out.err, 0);
    assert_same_term(v->id, out.data, out.len, v->rex, v->rex_len);
    term_buf_release(&out);
    rpc_result_release(&res);
    rpc_exec_free(x);
    store_free(s);
}
END_TEST

/* ---- erlang ------------------------------------------------------------ */

typedef struct fixture {
    store_t *s;
    rpc_exec_t *x;
    rpc_result_t res;
    term_buf_t args, text;
} fixture_t;

static void fx_init(fixture_t *f)
{
    f->s = fresh_store();
    ck_assert_int_eq(rpc_exec_new(f->s, "etsd@127.0.0.1", "1.2.3", &f->x), 0);
    rpc_result_init(&f->res);
    term_buf_init(&f->args);
    term_buf_init(&f->text);
}

static void fx_release(fixture_t *f)
{
    term_buf_release(&f->args);
    term_buf_release(&f->text);
    rpc_result_release(&f->res);
    rpc_exec_free(f->x);
    store_free(f->s);
}

/* Runs mod:fun with args given as Erlang text, returns the value printed. */
static const char *fx_call(fixture_t *f, const char *mod, const char *fun, const char *args)
{
    size_t used;
    term_buf_reset(&f->args);
    term_buf_reset(&f->text);
    ck_assert_int_eq(term_parse(args, strlen(args), &used, &f->args), 0);
    ck_assert_int_eq(rpc_exec_call(f->x, mod, fun, f->args.data, f->args.len, &f->res), 0);
    ck_assert_int_eq(term_print(f->res.value.data, f->res.value.len, &f->text), 0);
    return f->text.data;
}

START_TEST(node_returns_node_name_atom)
{
    fixture_t f;
    fx_init(&f);
    ck_assert_str_eq(fx_call(&f, "erlang", "node", "[]"), "'etsd@127.0.0.1'");
    ck_assert_int_eq(f.res.cls, RPC_RETURN);
    fx_release(&f);
}
END_TEST

START_TEST(nodes_without_hook_returns_empty_list)
{
    fixture_t f;
    fx_init(&f);
    ck_assert_str_eq(fx_call(&f, "erlang", "nodes", "[]"), "[]");
    ck_assert_str_eq(fx_call(&f, "erlang", "nodes", "[hidden]"), "[]");
    fx_release(&f);
}
END_TEST

static int two_peers(void *arg, term_buf_t *out)
{
    (void)arg;
    return term_format(out, "['a@127.0.0.1','b@127.0.0.1']");
}

START_TEST(nodes_with_hook_lists_peers_and_this)
{
    fixture_t f;
    fx_init(&f);
    rpc_exec_set_nodes_cb(f.x, two_peers, NULL);
    ck_assert_str_eq(fx_call(&f, "erlang", "nodes", "[]"), "['a@127.0.0.1','b@127.0.0.1']");
    ck_assert_str_eq(fx_call(&f, "erlang", "nodes", "[[this,connected]]"),
                     "['etsd@127.0.0.1','a@127.0.0.1','b@127.0.0.1']");
    ck_assert_str_eq(fx_call(&f, "erlang", "nodes", "[this]"), "['etsd@127.0.0.1']");
    fx_release(&f);
}
END_TEST

START_TEST(system_time_millisecond_lies_between_two_clock_reads)
{
    fixture_t f;
    struct timespec a, b;
    term_reader_t r;
    int64_t v;
    fx_init(&f);
    clock_gettime(CLOCK_REALTIME, &a);
    fx_call(&f, "erlang", "system_time", "[millisecond]");
    clock_gettime(CLOCK_REALTIME, &b);
    term_reader_init(&r, f.res.value.data, f.res.value.len);
    ck_assert_int_eq(term_get_long(&r, &v), 0);
    ck_assert_int_ge(v, (int64_t)a.tv_sec * 1000 + a.tv_nsec / 1000000);
    ck_assert_int_le(v, (int64_t)b.tv_sec * 1000 + b.tv_nsec / 1000000);
    fx_release(&f);
}
END_TEST

START_TEST(memory_returns_nine_pairs_with_total_first)
{
    fixture_t f;
    fx_init(&f);
    const char *m = fx_call(&f, "erlang", "memory", "[]");
    ck_assert_msg(strncmp(m, "[{total,", 8) == 0, "%s", m);
    ck_assert_ptr_nonnull(strstr(m, "{ets,"));
    fx_release(&f);
}
END_TEST

START_TEST(match_with_limit_returns_chunks_and_continuation)
{
    fixture_t f;
    fx_init(&f);
    const char *first = fx_call(&f, "ets", "match", "[tt,{'$1','_'},1]");
    ck_assert_msg(strncmp(first, "{[[", 3) == 0 && strstr(first, "'$etsd_continuation'"),
                  "%s", first);
    /* feed the continuation back, as the caller would */
    term_buf_t cont;
    term_buf_init(&cont);
    term_reader_t r;
    uint32_t k;
    const char *p;
    size_t l;
    term_reader_init(&r, f.res.value.data, f.res.value.len);
    ck_assert_int_eq(term_get_tuple(&r, &k), 0);
    ck_assert_int_eq(term_get_any(&r, &p, &l), 0);
    ck_assert_int_eq(term_get_any(&r, &p, &l), 0);
    term_put_list(&cont, 1);
    term_put_raw(&cont, p, l);
    term_put_nil(&cont);
    ck_assert_int_eq(rpc_exec_call(f.x, "ets", "match", cont.data, cont.len, &f.res), 0);
    term_buf_reset(&f.text);
    ck_assert_int_eq(term_print(f.res.value.data, f.res.value.len, &f.text), 0);
    ck_assert_msg(strstr(f.text.data, ",'$end_of_table'}") != NULL, "%s", f.text.data);
    term_buf_release(&cont);
    ck_assert_str_eq(fx_call(&f, "ets", "match", "[tt,{zzz,'_'},5]"), "'$end_of_table'");
    fx_release(&f);
}
END_TEST

/* ---- etsd ------------------------------------------------------------- */

typedef struct seen {
    int n;
    char table[32];
    char last[64];
} seen_t;

static int record_insert(void *arg, const char *table, const void *obj, size_t len)
{
    seen_t *s = arg;
    term_buf_t t;
    term_buf_init(&t);
    ck_assert_int_eq(term_print(obj, len, &t), 0);
    snprintf(s->table, sizeof(s->table), "%s", table);
    snprintf(s->last, sizeof(s->last), "%s", t.data);
    s->n++;
    term_buf_release(&t);
    return 0;
}

START_TEST(etsd_insert_stores_and_calls_hook_per_object)
{
    fixture_t f;
    seen_t seen = { 0 };
    fx_init(&f);
    rpc_exec_set_insert_cb(f.x, record_insert, &seen);
    ck_assert_str_eq(fx_call(&f, "etsd", "insert", "[tt,[{c,3},{d,4}]]"), "true");
    ck_assert_int_eq(seen.n, 2);
    ck_assert_str_eq(seen.table, "tt");
    ck_assert_str_eq(seen.last, "{d,4}");
    ck_assert_str_eq(fx_call(&f, "etsd", "insert", "[tt,{e,5}]"), "true");
    ck_assert_int_eq(seen.n, 3);
    ck_assert_str_eq(fx_call(&f, "ets", "lookup", "[tt,e]"), "[{e,5}]");
    fx_release(&f);
}
END_TEST

START_TEST(etsd_insert_bad_object_raises_badarg_without_hook)
{
    fixture_t f;
    seen_t seen = { 0 };
    fx_init(&f);
    rpc_exec_set_insert_cb(f.x, record_insert, &seen);
    ck_assert_str_eq(fx_call(&f, "etsd", "insert", "[tt,foo]"), "badarg");
    ck_assert_int_eq(f.res.cls, RPC_ERROR);
    ck_assert_int_eq(seen.n, 0);
    fx_release(&f);
}
END_TEST

START_TEST(etsd_info_reports_node_version_and_tables)
{
    fixture_t f;
    fx_init(&f);
    const char *m = fx_call(&f, "etsd", "info", "[]");
    ck_assert_msg(strstr(m, "node => 'etsd@127.0.0.1'") != NULL, "%s", m);
    ck_assert_msg(strstr(m, "version => <<49,46,50,46,51>>") != NULL, "%s", m);
    ck_assert_msg(strstr(m, "name => tt") != NULL && strstr(m, "size => 2") != NULL, "%s", m);
    fx_release(&f);
}
END_TEST

static int info_extra(void *arg, term_buf_t *out, uint32_t *count)
{
    (void)arg;
    term_put_atom(out, "peers");
    term_put_nil(out);
    *count += 1;
    return 0;
}

START_TEST(etsd_info_includes_hook_entries)
{
    fixture_t f;
    fx_init(&f);
    rpc_exec_set_info_cb(f.x, info_extra, NULL);
    const char *m = fx_call(&f, "etsd", "info", "[]");
    ck_assert_msg(strstr(m, "peers => []") != NULL, "%s", m);
    fx_release(&f);
}
END_TEST

START_TEST(etsd_info_and_snapshot_without_data_dir)
{
    fixture_t f;
    fx_init(&f);
    ck_assert_int_eq(rpc_exec_set_storage(f.x, NULL, "always"), 0);
    const char *m = fx_call(&f, "etsd", "info", "[]");
    ck_assert_msg(strstr(m, "data_dir => undefined") != NULL, "%s", m);
    ck_assert_str_eq(fx_call(&f, "etsd", "snapshot", "[]"), "{error,no_data_dir}");
    ck_assert_int_eq(rpc_exec_set_storage(f.x, "/var/lib/etsd", "100ms"), 0);
    m = fx_call(&f, "etsd", "info", "[]");
    ck_assert_msg(strstr(m, "fsync => <<49,48,48,109,115>>") != NULL, "%s", m);
    fx_release(&f);
}
END_TEST

START_TEST(etsd_sync_without_hook_returns_not_clustered)
{
    fixture_t f;
    fx_init(&f);
    ck_assert_str_eq(fx_call(&f, "etsd", "sync", "[]"), "{error,not_clustered}");
    fx_release(&f);
}
END_TEST

static int action_ok(void *arg, term_buf_t *out)
{
    ++*(int *)arg;
    term_put_atom(out, "ok");
    return 0;
}

START_TEST(etsd_sync_and_snapshot_run_their_hooks)
{
    fixture_t f;
    int calls = 0;
    fx_init(&f);
    rpc_exec_set_sync_cb(f.x, action_ok, &calls);
    rpc_exec_set_snapshot_cb(f.x, action_ok, &calls);
    ck_assert_str_eq(fx_call(&f, "etsd", "sync", "[]"), "ok");
    ck_assert_str_eq(fx_call(&f, "etsd", "snapshot", "[]"), "ok");
    ck_assert_int_eq(calls, 2);
    fx_release(&f);
}
END_TEST

/* ---- input and allocation failure -------------------------------------- */

START_TEST(call_args_not_a_list_returns_eproto)
{
    fixture_t f;
    static const char improper[] = { 108, 0, 0, 0, 1, 97, 1, 97, 2 }; /* [1|2] */
    static const char atom[] = { 119, 1, 'x' };
    fx_init(&f);
    ck_assert_int_eq(rpc_exec_call(f.x, "ets", "all", improper, sizeof(improper), &f.res),
                     -EPROTO);
    ck_assert_int_eq(rpc_exec_call(f.x, "ets", "all", atom, sizeof(atom), &f.res), -EPROTO);
    ck_assert_int_eq(rpc_exec_call(f.x, "ets", "all", atom, 2, &f.res), -EPROTO);
    fx_release(&f);
}
END_TEST

START_TEST(call_alloc_failure_returns_enomem_or_result_and_no_leak)
{
    const struct rpc_exec_vector *v = &rpc_exec_vectors[2]; /* lookup_no_table */
    int done = 0;
    for (long k = 1; k < 500 && !done; k++) {
        store_t *s = fresh_store();
        rpc_exec_t *x;
        rpc_result_t res;
        term_buf_t out;
        ck_assert_int_eq(rpc_exec_new(s, "etsd@127.0.0.1", "0", &x), 0);
        rpc_result_init(&res);
        term_buf_init(&out);
        mem_fail_after(k);
        int rc = rpc_exec_call(x, v->mod, v->fun, v->args, v->args_len, &res);
        mem_fail_after(0);
        if (rc == 0) {
            /* {etsd, enomem}: a failure inside the store, reported as such */
            int internal = res.cls == RPC_ERROR && res.value.len > 0 && res.value.data[0] == 104;
            if (!internal) {
                rpc_encode_erpc_reason(&out, fake_ref, sizeof(fake_ref), &res);
                assert_same_term(v->id, out.data, out.len, v->reason, v->reason_len);
                done = 1;
            }
        } else {
            ck_assert_int_eq(rc, -ENOMEM);
        }
        term_buf_release(&out);
        rpc_result_release(&res);
        rpc_exec_free(x);
        store_free(s);
    }
    ck_assert_int_eq(done, 1);
}
END_TEST

/* rpc_exec_vectors.h holds OTP 25's answers: stack lines and error_info
 * causes are those of the release etsd follows. */
static void otp25_setup(void)
{
    ck_assert_int_eq(term_set_otp_release(25), 0);
}

static void release_teardown(void)
{
    term_set_otp_release(TERM_OTP_DEFAULT);
}

Suite *rpc_exec_suite(void)
{
    Suite *s = suite_create("rpc_exec");
    TCase *tc = tcase_create("beam_vectors");
    tcase_add_checked_fixture(tc, otp25_setup, release_teardown);
    tcase_add_loop_test(tc, call_matches_beam_erpc_reason, 0, NVECTORS);
    tcase_add_loop_test(tc, call_matches_beam_rex_reply, 0, NVECTORS);
    suite_add_tcase(s, tc);
    tc = tcase_create("erlang");
    tcase_add_test(tc, node_returns_node_name_atom);
    tcase_add_test(tc, nodes_without_hook_returns_empty_list);
    tcase_add_test(tc, nodes_with_hook_lists_peers_and_this);
    tcase_add_test(tc, system_time_millisecond_lies_between_two_clock_reads);
    tcase_add_test(tc, memory_returns_nine_pairs_with_total_first);
    tcase_add_test(tc, match_with_limit_returns_chunks_and_continuation);
    suite_add_tcase(s, tc);
    tc = tcase_create("etsd");
    tcase_add_test(tc, etsd_insert_stores_and_calls_hook_per_object);
    tcase_add_test(tc, etsd_insert_bad_object_raises_badarg_without_hook);
    tcase_add_test(tc, etsd_info_reports_node_version_and_tables);
    tcase_add_test(tc, etsd_info_includes_hook_entries);
    tcase_add_test(tc, etsd_info_and_snapshot_without_data_dir);
    tcase_add_test(tc, etsd_sync_without_hook_returns_not_clustered);
    tcase_add_test(tc, etsd_sync_and_snapshot_run_their_hooks);
    suite_add_tcase(s, tc);
    tc = tcase_create("input");
    tcase_add_test(tc, call_args_not_a_list_returns_eproto);
    tcase_add_test(tc, call_alloc_failure_returns_enomem_or_result_and_no_leak);
    suite_add_tcase(s, tc);
    return s;
}
