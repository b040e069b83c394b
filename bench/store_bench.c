/* store_bench.c: insert and lookup rates of store/ for N seed users
 * {<<"userI@example.com">>, <<"tokI">>}, and bytes per object. Prints
 * "key value" lines that bench_store.sh sets beside ETS's figures.
 * Usage: bench_store_bench [N [RUNS]] */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "store/store.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(*v), cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 1000000;
    int runs = argc > 2 ? atoi(argv[2]) : 5;
    if (n < 1 || runs < 1 || runs > 100)
        return 2;

    /* The objects and keys as they arrive from the network: ETF bytes. */
    term_buf_t objs, keys;
    term_buf_init(&objs);
    term_buf_init(&keys);
    size_t *ooff = malloc((size_t)(n + 1) * sizeof(size_t));
    size_t *koff = malloc((size_t)(n + 1) * sizeof(size_t));
    if (!ooff || !koff)
        return 1;
    char a[64], b[64];
    for (long i = 0; i < n; i++) {
        int al = snprintf(a, sizeof(a), "user%ld@example.com", i);
        int bl = snprintf(b, sizeof(b), "tok%ld", i);
        ooff[i] = objs.len;
        term_put_tuple(&objs, 2);
        term_put_binary(&objs, a, (size_t)al);
        term_put_binary(&objs, b, (size_t)bl);
        koff[i] = keys.len;
        term_put_binary(&keys, a, (size_t)al);
    }
    ooff[n] = objs.len;
    koff[n] = keys.len;
    if (objs.err || keys.err)
        return 1;

    double ins[100], look[100];
    double bytes_per_obj = 0, table_per_obj = 0;
    term_buf_t out;
    term_buf_init(&out);
    for (int r = 0; r < runs; r++) {
        store_t *s;
        store_table_t *t;
        struct mallinfo2 m0 = mallinfo2();
        if (store_new(&s) < 0 || store_table_create(s, "users", 1, &t) < 0)
            return 1;
        double t0 = now();
        for (long i = 0; i < n; i++)
            if (store_insert(t, objs.data + ooff[i], ooff[i + 1] - ooff[i]) < 0)
                return 1;
        double t1 = now();
        struct mallinfo2 m1 = mallinfo2();
        long found = 0;
        for (long i = 0; i < n; i++) {
            term_buf_reset(&out);
            found += store_lookup(t, keys.data + koff[i], koff[i + 1] - koff[i], &out) == 0;
        }
        double t2 = now();
        if (found != n || store_table_size(t) != (size_t)n) {
            fprintf(stderr, "lookup found %ld of %ld\n", found, n);
            return 1;
        }
        ins[r] = (t1 - t0) / (double)n * 1e9;
        look[r] = (t2 - t1) / (double)n * 1e9;
        /* Real heap growth (allocator overhead included) and the store's
         * own accounting (what ets:info(T, memory) reports for it). */
        bytes_per_obj = (double)(m1.uordblks - m0.uordblks) / (double)n;
        term_buf_reset(&out);
        store_ets_call(s, "info", "\x6c\0\0\0\x02\x77\x05users\x77\x06memory\x6a", 21, &out);
        table_per_obj = 0;
        {
            term_reader_t rd;
            int64_t words;
            term_reader_init(&rd, out.data, out.len);
            if (term_get_long(&rd, &words) == 0)
                table_per_obj = (double)words * 8 / (double)n;
        }
        store_free(s);
    }
    printf("objects %ld\nruns %d\n", n, runs);
    printf("c_insert_ns %.1f\nc_lookup_ns %.1f\n", median(ins, runs), median(look, runs));
    printf("c_bytes_per_object %.1f\nc_info_bytes_per_object %.1f\n", bytes_per_obj, table_per_obj);
    term_buf_release(&out);
    term_buf_release(&objs);
    term_buf_release(&keys);
    free(ooff);
    free(koff);
    return 0;
}
