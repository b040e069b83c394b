/* bench_term_decode: decodes and canonicalizes one external term file with
 * term_canon() RUNS times and prints the median, so bench_term_decode.sh can
 * set it against binary_to_term on the same bytes.
 *   bench_term_decode FILE [RUNS]   prints: c_canon_ms <median> */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "term/term.h"

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: bench_term_decode FILE [RUNS]\n");
        return 2;
    }
    int runs = argc > 2 ? atoi(argv[2]) : 5;
    if (runs < 1 || runs > 100)
        runs = 5;
    FILE *f = fopen(argv[1], "rb");
    if (!f) {
        perror(argv[1]);
        return 1;
    }
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *in = malloc(len > 0 ? (size_t)len : 1);
    if (!in || fread(in, 1, (size_t)len, f) != (size_t)len) {
        fprintf(stderr, "read %s failed\n", argv[1]);
        return 1;
    }
    fclose(f);

    term_buf_t out;
    term_buf_init(&out);
    double t[100];
    for (int i = 0; i < runs; i++) {
        /* a fresh buffer each run: the allocation is part of the work */
        term_buf_release(&out);
        double t0 = now_ms();
        int rc = term_canon(in, (size_t)len, &out);
        t[i] = now_ms() - t0;
        if (rc < 0) {
            fprintf(stderr, "term_canon: %d\n", rc);
            return 1;
        }
    }
    qsort(t, (size_t)runs, sizeof t[0], cmp_double);
    printf("input_bytes %ld\ncanonical_bytes %zu\nc_canon_ms %.1f\n", len, out.len, t[runs / 2]);
    term_buf_release(&out);
    free(in);
    return 0;
}
