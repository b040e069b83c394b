/* fuzz_rpc.c: libFuzzer target for what a peer's rpc bytes reach: the
 * SPAWN_REQUEST parser and rpc_exec_call() on a store holding a table. Any
 * input must give an error or an answer, and every answer (erpc exit
 * reason and rex reply) must be one valid external term.
 * Input: byte 0 picks the form; for 0, byte 1 is the control term's length
 * and the rest is control then ArgList; otherwise byte 1 picks M:F and the
 * rest is the argument list. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cnode/rpc.h"
#include "cnode/rpc_exec.h"
#include "store/store.h"

#define CHECK(c) do { if (!(c)) abort(); } while (0)

static const char *const calls[][2] = {
    { "ets", "lookup" }, { "ets", "insert" }, { "ets", "update_counter" },
    { "ets", "update_element" }, { "ets", "select" }, { "ets", "match" },
    { "ets", "lookup_element" }, { "ets", "info" }, { "ets", "tab2list" },
    { "ets", "delete_all_objects" }, { "ets", "select_delete" }, { "ets", "new" },
    { "etsd", "insert" }, { "etsd", "info" }, { "erlang", "nodes" },
    { "erlang", "system_time" }, { "erlang", "error" }, { "erlang", "memory" },
    { "nosuchmod", "f" },
};

static void check_one_term(const term_buf_t *b)
{
    size_t used;
    CHECK(b->err == 0);
    CHECK(term_skip(b->data, b->len, &used) == 0);
    CHECK(used == b->len);
}

static void run(const char *mod, const char *fun, const void *args, size_t len)
{
    store_t *s;
    store_table_t *t;
    rpc_exec_t *x;
    rpc_result_t res;
    term_buf_t out;
    static const char obj[] = { 104, 2, 119, 1, 'a', 97, 1 }; /* {a, 1} */
    static const char ref[] = { 97, 7 };

    CHECK(store_new(&s) == 0);
    CHECK(store_table_create(s, "tt", 1, &t) == 0);
    CHECK(store_insert(t, obj, sizeof(obj)) == 0);
    CHECK(rpc_exec_new(s, "etsd@127.0.0.1", "0", &x) == 0);
    rpc_result_init(&res);
    term_buf_init(&out);
    if (rpc_exec_call(x, mod, fun, args, len, &res) == 0) {
        rpc_encode_erpc_reason(&out, ref, sizeof(ref), &res);
        check_one_term(&out);
        term_buf_reset(&out);
        rpc_encode_rex_reply(&out, &res);
        check_one_term(&out);
    }
    term_buf_release(&out);
    rpc_result_release(&res);
    rpc_exec_free(x);
    store_free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    if (data[0] == 0) {
        size_t k = data[1];
        rpc_spawn_req_t q;
        if (k > size - 2)
            return 0;
        const char *ctl = (const char *)data + 2;
        const char *msg = ctl + k;
        if (rpc_parse_spawn_request(ctl, k, msg, size - 2 - k, &q) < 0)
            return 0;
        term_buf_t out;
        term_buf_init(&out);
        rpc_encode_spawn_reply(&out, &q, NULL, "notsup");
        check_one_term(&out);
        term_buf_release(&out);
        if (q.kind != RPC_SPAWN_OTHER)
            run(q.mod, q.fun, q.args, q.args_len);
        return 0;
    }
    const char *const *c = calls[data[1] % (sizeof(calls) / sizeof(calls[0]))];
    run(c[0], c[1], data + 2, size - 2);
    return 0;
}
