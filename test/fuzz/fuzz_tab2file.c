/* fuzz_tab2file: the ets:tab2file reader on arbitrary bytes, with and
 * without verify. Whatever it accepts must write back out and read back in
 * with the same number of objects. */
#include <stdint.h>
#include <stdlib.h>

#include "store/store.h"
#include "term/mem.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[256];
    for (int verify = 0; verify <= 1; verify++) {
        store_t *s;
        store_table_t *t = NULL;
        if (store_new(&s) < 0)
            abort();
        if (store_file2tab_mem(s, data, size, verify, &t, err, sizeof err) == 0) {
            term_buf_t f;
            term_buf_init(&f);
            if (store_tab2file_mem(t, STORE_T2F_OBJECT_COUNT | STORE_T2F_MD5SUM, &f) < 0)
                abort();
            store_t *s2;
            store_table_t *t2 = NULL;
            if (store_new(&s2) < 0)
                abort();
            if (store_file2tab_mem(s2, f.data, f.len, 1, &t2, err, sizeof err) < 0 ||
                store_table_size(t2) != store_table_size(t))
                abort();
            store_free(s2);
            term_buf_release(&f);
        }
        store_free(s);
    }
    return 0;
}
