/* check_rpc_batch.c: rpc writes on a durable store go to the log as one
 * group commit per call, and their reply (and etsd:insert's broadcast)
 * follows only a successful batch end. */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cnode/rpc_exec.h"
#include "store/store.h"
#include "store/wal_int.h"
#include "term/term.h"

static char dir[256];

typedef struct fixture {
    store_t *s;
    rpc_exec_t *x;
    rpc_result_t res;
    term_buf_t args, text;
} fixture_t;

typedef struct seen {
    int n;
    unsigned long syncs_at_first; /* wal_test_syncs when the hook first ran */
} seen_t;

static int record_insert(void *arg, const char *table, const void *obj, size_t len)
{
    seen_t *s = arg;
    (void)table;
    (void)obj;
    (void)len;
    if (s->n++ == 0)
        s->syncs_at_first = wal_test_syncs;
    return 0;
}

static void fx_init(fixture_t *f)
{
    const char *tmp = getenv("TMPDIR");
    char err[256];
    store_table_t *t;
    snprintf(dir, sizeof dir, "%s/etsd-check-rpcb-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    wal_test_fail_write = wal_test_fail_sync = 0;
    ck_assert_int_eq(store_open(dir, STORE_FSYNC_ALWAYS, &f->s, err, sizeof err), 0);
    ck_assert_int_eq(store_table_create(f->s, "tt", 1, &t), 0);
    ck_assert_int_eq(rpc_exec_new(f->s, "etsd@127.0.0.1", "1", &f->x), 0);
    rpc_result_init(&f->res);
    term_buf_init(&f->args);
    term_buf_init(&f->text);
}

static void fx_release(fixture_t *f)
{
    static const char *const files[] = { WAL_LOG_FILE, WAL_SNAP_FILE,
                                         WAL_SNAP_TMP, WAL_LOCK_FILE,
                                         WAL_NEXT_FILE };
    char p[512];
    term_buf_release(&f->args);
    term_buf_release(&f->text);
    rpc_result_release(&f->res);
    rpc_exec_free(f->x);
    store_free(f->s);
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, files[i]);
        unlink(p);
    }
    rmdir(dir);
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

START_TEST(ets_insert_list_syncs_once)
{
    fixture_t f;
    fx_init(&f);
    unsigned long syncs = wal_test_syncs;
    ck_assert_str_eq(fx_call(&f, "ets", "insert", "[tt,[{a,1},{b,2},{c,3},{d,4}]]"), "true");
    ck_assert_uint_eq(wal_test_syncs, syncs + 1);
    /* A read logs nothing and syncs nothing. */
    ck_assert_str_eq(fx_call(&f, "ets", "lookup", "[tt,c]"), "[{c,3}]");
    ck_assert_uint_eq(wal_test_syncs, syncs + 1);
    fx_release(&f);
}
END_TEST

START_TEST(ets_select_delete_syncs_once)
{
    fixture_t f;
    fx_init(&f);
    ck_assert_str_eq(fx_call(&f, "ets", "insert", "[tt,[{a,1},{b,2},{c,3}]]"), "true");
    unsigned long syncs = wal_test_syncs;
    ck_assert_str_eq(fx_call(&f, "ets", "select_delete", "[tt,[{'_',[],[true]}]]"), "3");
    ck_assert_uint_eq(wal_test_syncs, syncs + 1);
    fx_release(&f);
}
END_TEST

START_TEST(etsd_insert_list_broadcasts_after_its_one_sync)
{
    fixture_t f;
    seen_t seen = { 0 };
    fx_init(&f);
    rpc_exec_set_insert_cb(f.x, record_insert, &seen);
    unsigned long syncs = wal_test_syncs;
    ck_assert_str_eq(fx_call(&f, "etsd", "insert", "[tt,[{a,1},{b,2},{c,3}]]"), "true");
    ck_assert_int_eq(seen.n, 3);
    ck_assert_uint_eq(wal_test_syncs, syncs + 1);
    /* The first broadcast came after the batch's fsync. */
    ck_assert_uint_eq(seen.syncs_at_first, syncs + 1);
    fx_release(&f);
}
END_TEST

START_TEST(etsd_insert_failed_sync_raises_and_broadcasts_nothing)
{
    fixture_t f;
    seen_t seen = { 0 };
    fx_init(&f);
    rpc_exec_set_insert_cb(f.x, record_insert, &seen);
    wal_test_fail_sync = -EIO;
    ck_assert_str_eq(fx_call(&f, "etsd", "insert", "[tt,[{a,1},{b,2}]]"), "{etsd,eio}");
    ck_assert_int_eq(f.res.cls, RPC_ERROR);
    ck_assert_int_eq(seen.n, 0);
    /* The store refuses writes until reopened. */
    ck_assert_str_eq(fx_call(&f, "etsd", "insert", "[tt,{c,3}]"), "{etsd,eio}");
    ck_assert_int_eq(seen.n, 0);
    fx_release(&f);
}
END_TEST

START_TEST(ets_insert_failed_write_raises_not_true)
{
    fixture_t f;
    fx_init(&f);
    wal_test_fail_write = -ENOSPC;
    ck_assert_str_eq(fx_call(&f, "ets", "insert", "[tt,[{a,1},{b,2}]]"), "{etsd,enospc}");
    ck_assert_int_eq(f.res.cls, RPC_ERROR);
    ck_assert_str_eq(fx_call(&f, "ets", "insert", "[tt,{c,3}]"), "{etsd,eio}");
    fx_release(&f);
}
END_TEST

Suite *rpc_batch_suite(void)
{
    Suite *s = suite_create("rpc_batch");
    TCase *tc = tcase_create("durable");
    tcase_add_test(tc, ets_insert_list_syncs_once);
    tcase_add_test(tc, ets_select_delete_syncs_once);
    tcase_add_test(tc, etsd_insert_list_broadcasts_after_its_one_sync);
    tcase_add_test(tc, etsd_insert_failed_sync_raises_and_broadcasts_nothing);
    tcase_add_test(tc, ets_insert_failed_write_raises_not_true);
    suite_add_tcase(s, tc);
    return s;
}
