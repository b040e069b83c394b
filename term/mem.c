/* mem.c: allocation wrapper with failure injection for tests. */
#include "term/mem.h"

#include <stdlib.h>
#include <string.h>

/* Single-threaded use only matters for tests; the hot path is one
 * predictable branch. */
static long fail_at;   /* 0: never fail */
static long count;

static int should_fail(void)
{
    count++;
    return fail_at > 0 && count >= fail_at;
}

void *mem_alloc(size_t n)
{
    return should_fail() ? NULL : malloc(n ? n : 1);
}

void *mem_calloc(size_t nmemb, size_t n)
{
    return should_fail() ? NULL : calloc(nmemb ? nmemb : 1, n ? n : 1);
}

void *mem_realloc(void *p, size_t n)
{
    return should_fail() ? NULL : realloc(p, n ? n : 1);
}

void mem_free(void *p)
{
    free(p);
}

char *mem_strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = mem_alloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}

void mem_fail_after(long k)
{
    fail_at = k > 0 ? k : 0;
    count = 0;
}

long mem_alloc_count(void)
{
    return count;
}
