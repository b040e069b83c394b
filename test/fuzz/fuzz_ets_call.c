/* fuzz_ets_call: store_ets_call() on arbitrary argument bytes, as the rpc
 * layer passes them from the network. The first byte picks the function;
 * the rest is the argument list (ETF without version byte). Every success
 * must produce one valid term, and the tables must stay listable. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "store/store.h"
#include "store/store_int.h"

static const char *const funs[] = {
    "new", "insert", "insert_new", "lookup", "lookup_element", "member",
    "delete", "delete_object", "delete_all_objects", "take", "update_element",
    "update_counter", "tab2list", "info", "first", "next", "last", "prev",
    "match", "match_object", "select", "select_count", "select_delete",
    "all", "whereis",
};

static void put_text(store_table_t *t, const char *text)
{
    term_buf_t b;
    size_t used;
    term_buf_init(&b);
    if (term_parse(text, strlen(text), &used, &b) < 0 || store_insert(t, b.data, b.len) < 0)
        abort();
    term_buf_release(&b);
}

static int valid_cb(void *arg, store_table_t *t)
{
    term_buf_t *b = arg;
    size_t used;
    term_buf_reset(b);
    if (store_tab2list(t, b) < 0 || term_skip(b->data, b->len, &used) < 0 || used != b->len)
        abort();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    store_t *s;
    store_table_t *t, *u;
    if (store_new(&s) < 0 || store_table_create(s, "t", 1, &t) < 0 ||
        store_table_create(s, "u", 2, &u) < 0)
        abort();
    put_text(t, "{1, a, 10}");
    put_text(t, "{<<\"k\">>, \"str\", 2.5, [x | y]}");
    put_text(t, "{#{a => 1, b => [1, 2]}, {x, 1.0}, 123456789012345678901234567890}");
    put_text(u, "{v, 5, 7}");
    term_buf_t out;
    term_buf_init(&out);
    const char *fun = funs[data[0] % (sizeof(funs) / sizeof(funs[0]))];
    int rc = store_ets_call(s, fun, data + 1, size - 1, &out);
    if (rc == 0) {
        size_t used;
        if (term_skip(out.data, out.len, &used) < 0 || used != out.len)
            abort();
    }
    store_foreach_table(s, valid_cb, &out);
    term_buf_release(&out);
    store_free(s);
    return 0;
}
