/* fuzz_tls_record.c: libFuzzer target for hostile bytes on the TLS port:
 * the input is fed to a server session (whole, then in two pieces to a
 * fresh one) and, as a server's answer, to a client session that has sent
 * its hello. Every outcome is 0 or a refusal; nothing leaks. The server's
 * certificate is made once, at the first input, in a temporary folder. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "cnode/tls.h"

#define CHECK(c) do { if (!(c)) abort(); } while (0)

static tls_ctx_t *ctx;

static void make_ctx(void)
{
    char dir[] = "/tmp/fuzz_tls_XXXXXX", cert[64], key[64];
    CHECK(mkdtemp(dir));
    snprintf(cert, sizeof cert, "%s/c.pem", dir);
    snprintf(key, sizeof key, "%s/k.pem", dir);
    EVP_PKEY *k = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    CHECK(k && x);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    X509_set_pubkey(x, k);
    X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
                               (const unsigned char *)"fuzz", -1, -1, 0);
    X509_set_issuer_name(x, X509_get_subject_name(x));
    CHECK(X509_sign(x, k, EVP_sha256()) > 0);
    FILE *f = fopen(cert, "w");
    CHECK(f && PEM_write_X509(f, x));
    fclose(f);
    f = fopen(key, "w");
    CHECK(f && PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL));
    fclose(f);
    X509_free(x);
    EVP_PKEY_free(k);
    tls_opts_t o;
    char err[512];
    memset(&o, 0, sizeof o);
    o.server.verify = o.client.verify = 0;
    o.server.fail_if_no_peer_cert = o.client.fail_if_no_peer_cert = -1;
    o.server.depth = o.client.depth = -1;
    o.server.sni = o.client.sni = -1;
    snprintf(o.server.certfile, sizeof o.server.certfile, "%s", cert);
    snprintf(o.server.keyfile, sizeof o.server.keyfile, "%s", key);
    CHECK(tls_ctx_new(&o, &ctx, err, sizeof err) == 0);
    unlink(cert);
    unlink(key);
    rmdir(dir);
}

static void feed(int server, const uint8_t *data, size_t size, size_t split)
{
    tls_t *t;
    cbuf_t plain, net;
    cbuf_init(&plain);
    cbuf_init(&net);
    CHECK(tls_new(ctx, server, "127.0.0.1", &t) == 0);
    if (!server)
        CHECK(tls_start(t, &net) == 0);
    int rc = tls_feed(t, data, split, &plain, &net);
    if (rc == 0 && split < size)
        rc = tls_feed(t, data + split, size - split, &plain, &net);
    CHECK(rc == 0 || rc == -EPROTO || rc == -EACCES || rc == -ECONNRESET || rc == -ENOMEM);
    if (rc < 0)
        CHECK(tls_why(t)[0]);
    /* Nothing decrypts before a handshake that random bytes cannot finish. */
    CHECK(plain.len == 0 || tls_established(t));
    tls_free(t);
    cbuf_release(&plain);
    cbuf_release(&net);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!ctx)
        make_ctx();
    feed(1, data, size, size);
    feed(1, data, size, size / 2);
    feed(0, data, size, size);
    return 0;
}
