/* mem.h: the one allocation wrapper every layer uses, so that unit tests
 * can make the k-th allocation fail and check for -ENOMEM and no leak. */
#ifndef ETSD_MEM_H
#define ETSD_MEM_H

#include <stddef.h>

void *mem_alloc(size_t n);
void *mem_calloc(size_t count, size_t n);
void *mem_realloc(void *p, size_t n);
void mem_free(void *p);
char *mem_strdup(const char *s);

/* Test hook: the k-th allocation from now (1 is the next one) and every one
 * after it return NULL; k <= 0 switches failure injection off. */
void mem_fail_after(long k);
/* Allocations made since the last mem_fail_after(), for tests that loop
 * k = 1 .. count until the operation succeeds. */
long mem_alloc_count(void);

#endif
