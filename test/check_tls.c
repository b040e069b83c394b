/* check_tls.c: the -ssl_dist_optfile parser (each refusal names what it
 * refuses), contexts from options, TLS sessions pumped through memory
 * (handshake, bytes both ways, OTP's host name check, refused
 * certificates, plaintext), and two conns over TLS on a socketpair. The
 * certificates are made here with OpenSSL's API in a temporary folder. */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <uv.h>

#include "cnode/cnode_int.h"
#include "cnode/tls.h"
#include "term/mem.h"

/* ---- The optfile parser ------------------------------------------------ */

static int parse(const char *text, tls_opts_t *o, char *err, size_t errsz)
{
    err[0] = 0;
    return tls_opts_parse(text, strlen(text), o, err, errsz);
}

START_TEST(optfile_full_sides_parse_every_option)
{
    tls_opts_t o;
    char err[256];
    const char *t =
        "%% vm.args: -ssl_dist_optfile\n"
        "[{server, [{certfile, \"/c/s.pem\"}, {keyfile, <<\"/c/s.key\">>},\n"
        "           {cacertfile, \"/c/ca.pem\"}, {verify, verify_peer},\n"
        "           {fail_if_no_peer_cert, true}, {versions, ['tlsv1.3', 'tlsv1.2']},\n"
        "           {depth, 3}, {password, \"pw\"}]},\n"
        " {client, [{certfile, \"/c/c.pem\"}, {verify, verify_none},\n"
        "           {versions, ['tlsv1.3']}, {server_name_indication, \"app.internal\"}]}].\n";
    ck_assert_int_eq(parse(t, &o, err, sizeof err), 0);
    ck_assert_str_eq(o.server.certfile, "/c/s.pem");
    ck_assert_str_eq(o.server.keyfile, "/c/s.key");
    ck_assert_str_eq(o.server.cacertfile, "/c/ca.pem");
    ck_assert_str_eq(o.server.password, "pw");
    ck_assert_int_eq(o.server.verify, 1);
    ck_assert_int_eq(o.server.fail_if_no_peer_cert, 1);
    ck_assert_int_eq(o.server.min_version, TLS1_2_VERSION);
    ck_assert_int_eq(o.server.max_version, TLS1_3_VERSION);
    ck_assert_int_eq(o.server.depth, 3);
    ck_assert_int_eq(o.server.sni, -1);
    ck_assert_str_eq(o.client.certfile, "/c/c.pem");
    ck_assert_str_eq(o.client.keyfile, "");
    ck_assert_int_eq(o.client.verify, 0);
    ck_assert_int_eq(o.client.fail_if_no_peer_cert, -1);
    ck_assert_int_eq(o.client.min_version, TLS1_3_VERSION);
    ck_assert_int_eq(o.client.max_version, TLS1_3_VERSION);
    ck_assert_int_eq(o.client.depth, -1);
    ck_assert_int_eq(o.client.sni, 1);
    ck_assert_str_eq(o.client.sni_host, "app.internal");
}
END_TEST

START_TEST(optfile_empty_list_and_missing_sides_take_defaults)
{
    tls_opts_t o;
    char err[256];
    ck_assert_int_eq(parse("[].", &o, err, sizeof err), 0);
    ck_assert_int_eq(o.server.verify, -1);
    ck_assert_int_eq(parse("[{client, [{server_name_indication, disable}]}].", &o, err,
                           sizeof err), 0);
    ck_assert_int_eq(o.client.sni, 0);
    ck_assert_str_eq(o.server.certfile, "");
}
END_TEST

typedef struct refusal {
    int id;
    const char *text;
    int rc;
    const char *err;   /* a part of the message */
} refusal_t;

static const refusal_t refusals[] = {
    {1, "not a term at all", -EPROTO, "not an Erlang term"},
    {2, "[{server, []}]", -EPROTO, "not an Erlang term"},
    {3, "[]. [].", -EPROTO, "exactly one term"},
    {4, "{server, []}.", -EINVAL, "want [{server, Opts}, {client, Opts}]"},
    {5, "[{other, []}].", -EINVAL, "other is not supported"},
    {6, "[{server, []}, {server, []}].", -EINVAL, "server given twice"},
    {7, "[{server, [{ciphers, []}]}].", -EINVAL, "server: option ciphers is not supported"},
    {8, "[{client, [{fail_if_no_peer_cert, true}]}].", -EINVAL,
     "client: option fail_if_no_peer_cert is not supported"},
    {9, "[{server, [{server_name_indication, \"x\"}]}].", -EINVAL,
     "server: option server_name_indication is not supported"},
    {10, "[{server, [{verify, maybe}]}].", -EINVAL, "server: option verify: bad value"},
    {11, "[{server, [{versions, ['tlsv1.1']}]}].", -EINVAL,
     "server: versions: tlsv1.1 is not supported"},
    {12, "[{server, [{versions, []}]}].", -EINVAL, "server: versions: empty list"},
    {13, "[{server, [{versions, [\"tlsv1.2\"]}]}].", -EINVAL, "want a list of atoms"},
    {14, "[{server, [{depth, -1}]}].", -EINVAL, "server: option depth: bad value"},
    {15, "[{server, [{certfile, 42}]}].", -EINVAL, "server: option certfile: bad value"},
    {16, "[{server, [certfile]}].", -EINVAL, "server: want {Option, Value} tuples"},
    {17, "[{server, [{certfile, \"a\", b}]}].", -EINVAL, "want {Option, Value} tuples"},
    {18, "[{client, [{server_name_indication, \"\"}]}].", -EINVAL,
     "client: option server_name_indication: bad value"},
    {19, "[{client, [{server_name_indication, enable}]}].", -EINVAL,
     "option server_name_indication: bad value"},
    {20, "[{server, [{fail_if_no_peer_cert, maybe}]}].", -EINVAL,
     "option fail_if_no_peer_cert: bad value"},
    {21, "[{server, {certfile, \"a\"}}].", -EINVAL, "server: want a list of options"},
    {22, "[{server, [{verify_fun, {m, f, []}}]}].", -EINVAL,
     "option verify_fun is not supported"},
    {23, "[{server, [{keyfile, <<0, 1>>}]}].", -EINVAL, "option keyfile: bad value"},
    {24, "[server].", -EINVAL, "want [{server, Opts}, {client, Opts}]"},
};

START_TEST(optfile_refusal_returns_error_naming_it)
{
    const refusal_t *r = &refusals[_i];
    tls_opts_t o;
    char err[256];
    ck_assert_msg(parse(r->text, &o, err, sizeof err) == r->rc, "case %d: rc", r->id);
    ck_assert_msg(strstr(err, r->err) != NULL, "case %d: '%s' lacks '%s'", r->id, err, r->err);
}
END_TEST

START_TEST(optfile_allocation_failure_returns_enomem_without_leak)
{
    const char *t = "[{server, [{certfile, \"/a\"}, {versions, ['tlsv1.2']}]}].";
    tls_opts_t o;
    char err[256];
    for (long k = 1;; k++) {
        mem_fail_after(k);
        int rc = parse(t, &o, err, sizeof err);
        long made = mem_alloc_count();
        mem_fail_after(0);
        if (rc == 0) {
            ck_assert_str_eq(o.server.certfile, "/a");
            break;
        }
        ck_assert_int_eq(rc, -ENOMEM);
        ck_assert_int_lt(k, 1000);
        (void)made;
    }
}
END_TEST

/* ---- Certificates --------------------------------------------------------- */

static char dir[64];
static char path_buf[16][256];
static int npaths;

static const char *path(const char *name)
{
    char *p = path_buf[npaths++ % 16];
    snprintf(p, 256, "%s/%s", dir, name);
    return p;
}

static void write_pem(const char *name, X509 *x, EVP_PKEY *k)
{
    char f[256];
    snprintf(f, sizeof f, "%s/%s.pem", dir, name);
    FILE *fp = fopen(f, "w");
    ck_assert_ptr_nonnull(fp);
    PEM_write_X509(fp, x);
    fclose(fp);
    snprintf(f, sizeof f, "%s/%s.key", dir, name);
    fp = fopen(f, "w");
    ck_assert_ptr_nonnull(fp);
    PEM_write_PrivateKey(fp, k, NULL, NULL, 0, NULL, NULL);
    fclose(fp);
}

static void add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX v;
    X509V3_set_ctx_nodb(&v);
    X509V3_set_ctx(&v, issuer, x, NULL, NULL, 0);
    X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &v, nid, value);
    ck_assert_ptr_nonnull(e);
    X509_add_ext(x, e, -1);
    X509_EXTENSION_free(e);
}

/* A P-256 key and certificate: a CA when ca is NULL, else signed by it.
 * Valid from days_from to days_to (days from now). */
static X509 *make_cert(const char *name, X509 *ca, EVP_PKEY *ca_key, const char *san,
                       long days_from, long days_to, EVP_PKEY **key_out)
{
    static long serial = 1;
    EVP_PKEY *k = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    ck_assert_ptr_nonnull(k);
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), serial++);
    X509_gmtime_adj(X509_getm_notBefore(x), days_from * 86400);
    X509_gmtime_adj(X509_getm_notAfter(x), days_to * 86400);
    X509_set_pubkey(x, k);
    X509_NAME *n = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)name, -1, -1, 0);
    X509_set_issuer_name(x, ca ? X509_get_subject_name(ca) : n);
    if (!ca)
        add_ext(x, x, NID_basic_constraints, "critical,CA:TRUE");
    if (san)
        add_ext(x, ca ? ca : x, NID_subject_alt_name, san);
    ck_assert_int_gt(X509_sign(x, ca ? ca_key : k, EVP_sha256()), 0);
    write_pem(name, x, k);
    if (key_out)
        *key_out = k;
    else
        EVP_PKEY_free(k);
    return x;
}

static void pki_setup(void)
{
    snprintf(dir, sizeof dir, "/tmp/check_tls_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    EVP_PKEY *ca_key, *rogue_key;
    X509 *ca = make_cert("ca", NULL, NULL, NULL, 0, 30, &ca_key);
    X509 *rogue_ca = make_cert("rogue_ca", NULL, NULL, NULL, 0, 30, &rogue_key);
    X509_free(make_cert("node", ca, ca_key, "DNS:127.0.0.1,DNS:app.internal", 0, 30, NULL));
    X509_free(make_cert("ipsan", ca, ca_key, "IP:127.0.0.1", 0, 30, NULL));
    X509_free(make_cert("expired", ca, ca_key, "DNS:127.0.0.1", -30, -1, NULL));
    X509_free(make_cert("rogue", rogue_ca, rogue_key, "DNS:127.0.0.1", 0, 30, NULL));
    X509_free(make_cert("cn_only", ca, ca_key, NULL, 0, 30, NULL));
    X509_free(make_cert("wild", ca, ca_key, "DNS:*.wild.internal", 0, 30, NULL));
    X509_free(ca);
    X509_free(rogue_ca);
    EVP_PKEY_free(ca_key);
    EVP_PKEY_free(rogue_key);
}

static void pki_teardown(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
}

/* Options for one side: cert NAME.pem/.key, the CA, verify_peer. */
static void side(tls_side_opts_t *s, const char *cert, const char *ca, int verify, int fail_nc,
                 int version)
{
    memset(s, 0, sizeof *s);
    s->verify = verify;
    s->fail_if_no_peer_cert = fail_nc;
    s->depth = -1;
    s->sni = -1;
    if (cert) {
        snprintf(s->certfile, sizeof s->certfile, "%s/%s.pem", dir, cert);
        snprintf(s->keyfile, sizeof s->keyfile, "%s/%s.key", dir, cert);
    }
    if (ca)
        snprintf(s->cacertfile, sizeof s->cacertfile, "%s/%s.pem", dir, ca);
    s->min_version = s->max_version = version;
}

static tls_ctx_t *ctx_of(const char *srv_cert, const char *cli_cert, const char *ca,
                         int version)
{
    tls_opts_t o;
    tls_ctx_t *c = NULL;
    char err[512];
    side(&o.server, srv_cert, ca, 1, 1, version);
    side(&o.client, cli_cert, ca, 1, -1, version);
    ck_assert_msg(tls_ctx_new(&o, &c, err, sizeof err) == 0, "%s", err);
    return c;
}

START_TEST(ctx_refusals_name_the_option)
{
    tls_opts_t o;
    tls_ctx_t *c = NULL;
    char err[512];
    side(&o.server, NULL, "ca", 1, 1, 0);
    side(&o.client, "node", "ca", 1, -1, 0);
    ck_assert_int_eq(tls_ctx_new(&o, &c, err, sizeof err), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "server: certfile is missing"));
    side(&o.server, "node", "ca", 1, 1, 0);
    side(&o.client, "node", NULL, -1, -1, 0);
    ck_assert_int_eq(tls_ctx_new(&o, &c, err, sizeof err), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "client: verify_peer needs a cacertfile"));
    side(&o.client, "node", "ca", 1, -1, 0);
    side(&o.server, "node", "ca", 0, 1, 0);
    ck_assert_int_eq(tls_ctx_new(&o, &c, err, sizeof err), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "fail_if_no_peer_cert needs"));
    side(&o.server, "absent", "ca", 1, 1, 0);
    ck_assert_int_eq(tls_ctx_new(&o, &c, err, sizeof err), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "server: certfile "));
    ck_assert_ptr_nonnull(strstr(err, "absent.pem"));
    side(&o.server, "node", "ca", 1, 1, 0);
    snprintf(o.server.keyfile, sizeof o.server.keyfile, "%s", path("ipsan.key"));
    ck_assert_int_eq(tls_ctx_new(&o, &c, err, sizeof err), -EINVAL);
    ck_assert_msg(strstr(err, "server: keyfile") && strstr(err, "mismatch"), "%s", err);
    ck_assert_ptr_null(c);
}
END_TEST

/* {password, P} opens an encrypted keyfile; without it the key fails. */
START_TEST(ctx_password_opens_an_encrypted_keyfile)
{
    char f[256];
    snprintf(f, sizeof f, "%s/node.key", dir);
    FILE *in = fopen(f, "r");
    ck_assert_ptr_nonnull(in);
    EVP_PKEY *k = PEM_read_PrivateKey(in, NULL, NULL, NULL);
    fclose(in);
    ck_assert_ptr_nonnull(k);
    snprintf(f, sizeof f, "%s/node_enc.key", dir);
    FILE *out = fopen(f, "w");
    ck_assert_ptr_nonnull(out);
    ck_assert_int_eq(PEM_write_PrivateKey(out, k, EVP_aes_128_cbc(), (unsigned char *)"s3cret",
                                          6, NULL, NULL), 1);
    fclose(out);
    EVP_PKEY_free(k);
    tls_opts_t o;
    tls_ctx_t *c = NULL;
    char err[512];
    side(&o.server, "node", "ca", 1, 1, 0);
    side(&o.client, "node", "ca", 1, -1, 0);
    snprintf(o.server.keyfile, sizeof o.server.keyfile, "%s", f);
    ck_assert_int_eq(tls_ctx_new(&o, &c, err, sizeof err), -EINVAL); /* no prompt */
    ck_assert_msg(strstr(err, "server: keyfile") != NULL, "%s", err);
    snprintf(o.server.password, sizeof o.server.password, "wrong");
    ck_assert_int_eq(tls_ctx_new(&o, &c, err, sizeof err), -EINVAL);
    ck_assert_msg(strstr(err, "server: keyfile") != NULL, "%s", err);
    snprintf(o.server.password, sizeof o.server.password, "s3cret");
    ck_assert_msg(tls_ctx_new(&o, &c, err, sizeof err) == 0, "%s", err);
    tls_ctx_free(c);
}
END_TEST

START_TEST(ctx_load_reads_an_optfile)
{
    char f[256], text[2048];
    snprintf(f, sizeof f, "%s/opt.conf", dir);
    snprintf(text, sizeof text,
             "[{server, [{certfile, \"%s/node.pem\"}, {keyfile, \"%s/node.key\"},"
             " {cacertfile, \"%s/ca.pem\"}, {verify, verify_peer}]},"
             " {client, [{cacertfile, \"%s/ca.pem\"}]}].\n",
             dir, dir, dir, dir);
    FILE *fp = fopen(f, "w");
    ck_assert_ptr_nonnull(fp);
    fputs(text, fp);
    fclose(fp);
    tls_ctx_t *c = NULL;
    char err[512] = "";
    ck_assert_msg(tls_ctx_load(f, &c, err, sizeof err) == 0, "%s", err);
    tls_ctx_free(c);
    ck_assert_int_eq(tls_ctx_load(path("nonexistent.conf"), &c, err, sizeof err), -ENOENT);
    ck_assert_ptr_nonnull(strstr(err, "nonexistent.conf"));
}
END_TEST

/* ---- Sessions pumped through memory ----------------------------------------- */

typedef struct pair {
    tls_t *cli, *srv;
    cbuf_t cli_plain, srv_plain;
    int cli_rc, srv_rc;
} pair_t;

/* Moves bytes both ways until neither side has any to send. */
static void pump(pair_t *p, cbuf_t *to_srv, cbuf_t *to_cli)
{
    for (int round = 0; round < 20 && (to_srv->len || to_cli->len); round++) {
        cbuf_t a, b;
        cbuf_init(&a);
        cbuf_init(&b);
        if (to_srv->len && p->srv_rc == 0)
            p->srv_rc = tls_feed(p->srv, to_srv->data, to_srv->len, &p->srv_plain, &b);
        to_srv->len = 0;
        if (to_cli->len && p->cli_rc == 0)
            p->cli_rc = tls_feed(p->cli, to_cli->data, to_cli->len, &p->cli_plain, &a);
        to_cli->len = 0;
        cbuf_put(to_srv, a.data, a.len);
        cbuf_put(to_cli, b.data, b.len);
        cbuf_release(&a);
        cbuf_release(&b);
    }
}

static void pair_run(pair_t *p, tls_ctx_t *srv_ctx, tls_ctx_t *cli_ctx, const char *host,
                     const char *cli_says)
{
    memset(p, 0, sizeof *p);
    cbuf_init(&p->cli_plain);
    cbuf_init(&p->srv_plain);
    ck_assert_int_eq(tls_new(srv_ctx, 1, NULL, &p->srv), 0);
    ck_assert_int_eq(tls_new(cli_ctx, 0, host, &p->cli), 0);
    cbuf_t to_srv, to_cli;
    cbuf_init(&to_srv);
    cbuf_init(&to_cli);
    ck_assert_int_eq(tls_start(p->cli, &to_srv), 0);
    ck_assert_uint_gt(to_srv.len, 0);
    if (cli_says)
        ck_assert_int_eq(tls_write(p->cli, cli_says, strlen(cli_says), &to_srv), 0);
    pump(p, &to_srv, &to_cli);
    cbuf_release(&to_srv);
    cbuf_release(&to_cli);
}

static void pair_free(pair_t *p)
{
    tls_free(p->cli);
    tls_free(p->srv);
    cbuf_release(&p->cli_plain);
    cbuf_release(&p->srv_plain);
}

static const int versions[] = {TLS1_2_VERSION, TLS1_3_VERSION};

START_TEST(session_handshake_carries_bytes_both_ways)
{
    tls_ctx_t *c = ctx_of("node", "node", "ca", versions[_i]);
    pair_t p;
    /* Written before the handshake ended: waits, then goes first. */
    pair_run(&p, c, c, "127.0.0.1", "hello from the client");
    ck_assert_int_eq(p.cli_rc, 0);
    ck_assert_int_eq(p.srv_rc, 0);
    ck_assert(tls_established(p.cli) && tls_established(p.srv));
    ck_assert_str_eq(tls_version(p.cli), versions[_i] == TLS1_3_VERSION ? "TLSv1.3" : "TLSv1.2");
    ck_assert_uint_eq(p.srv_plain.len, strlen("hello from the client"));
    ck_assert(memcmp(p.srv_plain.data, "hello from the client", p.srv_plain.len) == 0);
    /* A 1 MiB message from the server, fed back in small pieces. */
    size_t big = 1 << 20;
    char *msg = malloc(big);
    for (size_t i = 0; i < big; i++)
        msg[i] = (char)(i * 7);
    cbuf_t net;
    cbuf_init(&net);
    ck_assert_int_eq(tls_write(p.srv, msg, big, &net), 0);
    ck_assert_uint_gt(net.len, big);
    for (size_t off = 0; off < net.len; off += 1000) {
        cbuf_t back;
        cbuf_init(&back);
        size_t n = net.len - off < 1000 ? net.len - off : 1000;
        ck_assert_int_eq(tls_feed(p.cli, net.data + off, n, &p.cli_plain, &back), 0);
        cbuf_release(&back);
    }
    ck_assert_uint_eq(p.cli_plain.len, big);
    ck_assert(memcmp(p.cli_plain.data, msg, big) == 0);
    free(msg);
    cbuf_release(&net);
    pair_free(&p);
    tls_ctx_free(c);
}
END_TEST

/* OTP: {dns_id, "127.0.0.1"} matches a DNS entry, never an IP entry. */
START_TEST(client_refuses_ip_only_certificate_with_hostname_check_failed)
{
    tls_ctx_t *srv = ctx_of("ipsan", "node", "ca", 0);
    tls_ctx_t *cli = ctx_of("node", "node", "ca", 0);
    pair_t p;
    pair_run(&p, srv, cli, "127.0.0.1", NULL);
    ck_assert_int_eq(p.cli_rc, -EACCES);
    ck_assert_ptr_nonnull(strstr(tls_why(p.cli), "hostname_check_failed"));
    ck_assert(!tls_established(p.srv));
    pair_free(&p);
    tls_ctx_free(srv);
    tls_ctx_free(cli);
}
END_TEST

/* Host, certificate and rule: what OTP 25's and OTP 27's ssl clients say
 * (checked with ssl:connect/3 on both releases). */
static const struct host_case {
    int id;
    tls_host_rule_t rule;
    const char *srv_cert, *host;
    int ok;
} host_cases[] = {
    {1, TLS_HOST_OTP25, "node", "127.0.0.1", 1},
    {2, TLS_HOST_OTP25, "ipsan", "127.0.0.1", 0},
    {3, TLS_HOST_OTP25, "node", "app.internal", 1},
    {4, TLS_HOST_OTP25, "node", "APP.internal", 1},
    {5, TLS_HOST_OTP25, "node", "other.internal", 0},
    {6, TLS_HOST_OTP25, "cn_only", "cn_only", 1},
    {7, TLS_HOST_OTP25, "cn_only", "x", 0},
    {8, TLS_HOST_OTP25, "wild", "a.wild.internal", 0},
    {9, TLS_HOST_OTP27, "node", "127.0.0.1", 0},
    {10, TLS_HOST_OTP27, "ipsan", "127.0.0.1", 1},
    {11, TLS_HOST_OTP27, "node", "app.internal", 1},
    {12, TLS_HOST_OTP27, "cn_only", "cn_only", 0},
    {13, TLS_HOST_OTP27, "ipsan", "127.0.0.2", 0},
};

START_TEST(client_host_check_follows_the_otp_release_rule)
{
    const struct host_case *k = &host_cases[_i];
    tls_ctx_t *cli = ctx_of("node", "node", "ca", 0);
    tls_ctx_t *srv = ctx_of(k->srv_cert, "node", "ca", 0);
    tls_ctx_set_host_rule(cli, k->rule);
    pair_t p;
    pair_run(&p, srv, cli, k->host, NULL);
    ck_assert_msg((p.cli_rc == 0) == k->ok, "case %d: %s for %s: %d %s", k->id, k->srv_cert,
                  k->host, p.cli_rc, p.cli_rc ? tls_why(p.cli) : "");
    if (!k->ok)
        ck_assert_ptr_nonnull(strstr(tls_why(p.cli), "hostname_check_failed"));
    pair_free(&p);
    tls_ctx_free(srv);
    tls_ctx_free(cli);
}
END_TEST

typedef struct cert_case {
    int id;
    const char *cli_cert;
    const char *why;
} cert_case_t;

static const cert_case_t refused_clients[] = {
    {1, "rogue", "unable to get local issuer certificate"},
    {2, "expired", "certificate has expired"},
    {3, NULL, "peer sent no certificate"},
};

START_TEST(server_refuses_bad_client_certificate_saying_which)
{
    const cert_case_t *k = &refused_clients[_i];
    tls_ctx_t *srv = ctx_of("node", "node", "ca", 0);
    tls_opts_t o;
    tls_ctx_t *cli = NULL;
    char err[512];
    side(&o.server, "node", "ca", 1, 1, 0);
    side(&o.client, k->cli_cert, "ca", 1, -1, 0);
    ck_assert_msg(tls_ctx_new(&o, &cli, err, sizeof err) == 0, "%s", err);
    pair_t p;
    pair_run(&p, srv, cli, "127.0.0.1", "hi");
    ck_assert_int_eq(p.srv_rc, -EACCES);
    ck_assert_msg(strstr(tls_why(p.srv), k->why) != NULL, "case %d: %s", k->id, tls_why(p.srv));
    ck_assert_uint_eq(p.srv_plain.len, 0);
    pair_free(&p);
    tls_ctx_free(srv);
    tls_ctx_free(cli);
}
END_TEST

START_TEST(client_refuses_server_from_unknown_ca_or_expired)
{
    static const char *const certs[] = {"rogue", "expired"};
    static const char *const why[] = {"unable to get local issuer certificate",
                                      "certificate has expired"};
    tls_ctx_t *cli = ctx_of("node", "node", "ca", 0);
    tls_ctx_t *srv = ctx_of(certs[_i], "node", "ca", 0);
    pair_t p;
    pair_run(&p, srv, cli, "127.0.0.1", NULL);
    ck_assert_int_eq(p.cli_rc, -EACCES);
    ck_assert_msg(strstr(tls_why(p.cli), why[_i]) != NULL, "%s", tls_why(p.cli));
    pair_free(&p);
    tls_ctx_free(srv);
    tls_ctx_free(cli);
}
END_TEST

START_TEST(server_refuses_plaintext_distribution_as_not_tls)
{
    tls_ctx_t *c = ctx_of("node", "node", "ca", 0);
    tls_t *t;
    ck_assert_int_eq(tls_new(c, 1, NULL, &t), 0);
    cbuf_t plain, net;
    cbuf_init(&plain);
    cbuf_init(&net);
    /* A plain 'N' name message: 2-byte length first. */
    static const char n[] = "\0\x15N\0\0\0\0\0\0\0\0\0\0\0\0\0\x05x@a.b";
    ck_assert_int_eq(tls_feed(t, n, sizeof n - 1, &plain, &net), -EPROTO);
    ck_assert_ptr_nonnull(strstr(tls_why(t), "not a TLS peer"));
    ck_assert_uint_eq(plain.len, 0);
    tls_free(t);
    cbuf_release(&plain);
    cbuf_release(&net);
    tls_ctx_free(c);
}
END_TEST

START_TEST(truncated_record_waits_and_junk_record_fails)
{
    tls_ctx_t *c = ctx_of("node", "node", "ca", 0);
    tls_t *t;
    cbuf_t plain, net;
    cbuf_init(&plain);
    cbuf_init(&net);
    ck_assert_int_eq(tls_new(c, 1, NULL, &t), 0);
    static const char trunc[] = {22, 3, 1, 0, (char)200, 1, 0, 0};
    ck_assert_int_eq(tls_feed(t, trunc, sizeof trunc, &plain, &net), 0);
    ck_assert(!tls_established(t));
    ck_assert_uint_eq(net.len, 0);
    tls_free(t);
    ck_assert_int_eq(tls_new(c, 1, NULL, &t), 0);
    static const char junk[] = {22, 3, 1, 0, 5, -1, -1, -1, -1, -1};
    ck_assert_int_eq(tls_feed(t, junk, sizeof junk, &plain, &net), -EPROTO);
    ck_assert_uint_gt(net.len, 0); /* an alert */
    tls_free(t);
    cbuf_release(&plain);
    cbuf_release(&net);
    tls_ctx_free(c);
}
END_TEST

/* ---- Two conns over TLS on a socketpair ----------------------------------- */

typedef struct cside {
    conn_t *c;
    int up, closed, frames;
    size_t last_len;
} cside_t;

static const char *on_name(conn_t *c, void *d) { (void)c; (void)d; return "ok"; }
static void on_up(conn_t *c, void *d) { (void)c; ((cside_t *)d)->up = 1; }
static int on_frame(conn_t *c, const char *p, size_t n, void *d)
{
    (void)c;
    (void)p;
    ((cside_t *)d)->frames++;
    ((cside_t *)d)->last_len = n;
    return 0;
}
static void on_closed(conn_t *c, int was_up, int status, const char *reason, void *d)
{
    (void)c;
    (void)was_up;
    (void)status;
    (void)reason;
    ((cside_t *)d)->closed = 1;
}
static const conn_ops_t cops = {on_name, NULL, on_up, on_frame, on_closed};

START_TEST(conns_over_tls_on_a_socketpair_shake_hands_and_carry_frames)
{
    tls_ctx_t *ctx = ctx_of("node", "node", "ca", versions[_i]);
    uv_loop_t loop;
    ck_assert_int_eq(uv_loop_init(&loop), 0);
    int sv[2];
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    conn_limits_t lim = {.ticktime_ms = 60000, .setup_ms = 5000, .max_frame = 1 << 24,
                         .max_queue = 1 << 26, .tls = ctx};
    hs_t ta, tb;
    hs_init(&ta, HS_INITIATOR, "a@127.0.0.1", "b@127.0.0.1", "cookie", ETSD_DFLAGS, 1, 0);
    hs_init(&tb, HS_ACCEPTOR, "b@127.0.0.1", NULL, "cookie", ETSD_DFLAGS, 2, 0);
    cside_t a = {0}, b = {0};
    ck_assert_int_eq(conn_open_fd(&loop, sv[0], HS_INITIATOR, "b@127.0.0.1", &ta, &lim, &cops,
                                  &a, &a.c), 0);
    ck_assert_int_eq(conn_open_fd(&loop, sv[1], HS_ACCEPTOR, NULL, &tb, &lim, &cops, &b, &b.c),
                     0);
    while (!(a.up && b.up) && !a.closed && !b.closed && uv_run(&loop, UV_RUN_ONCE) != 0) {
    }
    ck_assert(a.up && b.up);
    size_t body = 300000;
    char *f = mem_alloc(4 + body);
    f[0] = (char)(body >> 24);
    f[1] = (char)(body >> 16);
    f[2] = (char)(body >> 8);
    f[3] = (char)body;
    memset(f + 4, 'x', body);
    ck_assert_int_eq(conn_send(a.c, f, 4 + body), 0);
    while (b.frames < 1 && !b.closed && uv_run(&loop, UV_RUN_ONCE) != 0) {
    }
    ck_assert_int_eq(b.frames, 1);
    ck_assert_uint_eq(b.last_len, body);
    conn_close(a.c, 0, "test over");
    while (!b.closed && uv_run(&loop, UV_RUN_ONCE) != 0) {
    }
    ck_assert(b.closed);
    uv_run(&loop, UV_RUN_DEFAULT);
    ck_assert_int_eq(uv_loop_close(&loop), 0);
    tls_ctx_free(ctx);
}
END_TEST

Suite *tls_suite(void)
{
    Suite *s = suite_create("tls");
    TCase *t = tcase_create("optfile");
    tcase_add_test(t, optfile_full_sides_parse_every_option);
    tcase_add_test(t, optfile_empty_list_and_missing_sides_take_defaults);
    tcase_add_loop_test(t, optfile_refusal_returns_error_naming_it, 0,
                        (int)(sizeof refusals / sizeof refusals[0]));
    tcase_add_test(t, optfile_allocation_failure_returns_enomem_without_leak);
    suite_add_tcase(s, t);

    TCase *k = tcase_create("sessions");
    tcase_add_unchecked_fixture(k, pki_setup, pki_teardown);
    tcase_add_test(k, ctx_refusals_name_the_option);
    tcase_add_test(k, ctx_password_opens_an_encrypted_keyfile);
    tcase_add_test(k, ctx_load_reads_an_optfile);
    tcase_add_loop_test(k, session_handshake_carries_bytes_both_ways, 0, 2);
    tcase_add_test(k, client_refuses_ip_only_certificate_with_hostname_check_failed);
    tcase_add_loop_test(k, client_host_check_follows_the_otp_release_rule, 0,
                        (int)(sizeof host_cases / sizeof host_cases[0]));
    tcase_add_loop_test(k, server_refuses_bad_client_certificate_saying_which, 0,
                        (int)(sizeof refused_clients / sizeof refused_clients[0]));
    tcase_add_loop_test(k, client_refuses_server_from_unknown_ca_or_expired, 0, 2);
    tcase_add_test(k, server_refuses_plaintext_distribution_as_not_tls);
    tcase_add_test(k, truncated_record_waits_and_junk_record_fails);
    tcase_add_loop_test(k, conns_over_tls_on_a_socketpair_shake_hands_and_carry_frames, 0, 2);
    suite_add_tcase(s, k);
    return s;
}
