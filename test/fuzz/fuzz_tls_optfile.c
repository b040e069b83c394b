/* fuzz_tls_optfile.c: libFuzzer target for the -ssl_dist_optfile parser
 * (tls_opts_parse). Any input gives 0 or a refusal with a message; what
 * parses holds only the values the parser promises. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cnode/tls.h"

#define CHECK(c) do { if (!(c)) abort(); } while (0)

static void check_side(const tls_side_opts_t *s)
{
    CHECK(memchr(s->certfile, 0, sizeof s->certfile));
    CHECK(memchr(s->keyfile, 0, sizeof s->keyfile));
    CHECK(memchr(s->cacertfile, 0, sizeof s->cacertfile));
    CHECK(memchr(s->password, 0, sizeof s->password));
    CHECK(memchr(s->sni_host, 0, sizeof s->sni_host));
    CHECK(s->verify >= -1 && s->verify <= 1);
    CHECK(s->fail_if_no_peer_cert >= -1 && s->fail_if_no_peer_cert <= 1);
    CHECK(s->sni >= -1 && s->sni <= 1);
    CHECK(s->sni != 1 || s->sni_host[0]);
    CHECK(s->depth >= -1 && s->depth <= 100);
    CHECK((s->min_version == 0) == (s->max_version == 0));
    CHECK(s->min_version <= s->max_version);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size ? size : 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    tls_opts_t o;
    char err[256];
    err[0] = 0;
    int rc = tls_opts_parse(text, size, &o, err, sizeof err);
    if (rc == 0) {
        check_side(&o.server);
        check_side(&o.client);
        CHECK(o.server.sni == -1);
        CHECK(o.client.fail_if_no_peer_cert == -1);
    } else {
        CHECK(rc == -EINVAL || rc == -EPROTO || rc == -ENOMEM);
        CHECK(err[0] && memchr(err, 0, sizeof err));
    }
    free(text);
    return 0;
}
