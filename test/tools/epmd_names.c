/* epmd_names.c: prints what the local EPMD lists, one "NAME PORT" line
 * per node, through etsd's own EPMD client (epmd_names()), so a Common
 * Test case can compare it with net_adm:names(). Exit 1 on error. */
#include <stdio.h>

#include <uv.h>

#include "cnode/epmd.h"

static int result = 1;

static void on_names(int status, const char *const *names, const int *ports, size_t count,
                     void *data)
{
    (void)data;
    if (status < 0) {
        fprintf(stderr, "epmd_names: %s\n", uv_strerror(status));
        return;
    }
    for (size_t i = 0; i < count; i++)
        printf("%s %d\n", names[i], ports[i]);
    result = 0;
}

int main(void)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    int rc = epmd_names(&loop, NULL, on_names, NULL);
    if (rc < 0) {
        fprintf(stderr, "epmd_names: %s\n", uv_strerror(rc));
        return 1;
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    return result;
}
