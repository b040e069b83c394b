/* tls.c: TLS for the distribution, as OTP's inet_tls_dist runs it: the
 * -ssl_dist_optfile parsed with term/'s parser, OpenSSL contexts, and
 * sessions over memory BIOs, so the libuv loop only ever moves bytes. */
#include "cnode/tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "term/mem.h"
#include "term/term.h"

/* ---- The optfile ------------------------------------------------------- */

static void side_defaults(tls_side_opts_t *s)
{
    memset(s, 0, sizeof *s);
    s->verify = -1;
    s->fail_if_no_peer_cert = -1;
    s->depth = -1;
    s->sni = -1;
}

/* A string value: "..." (STRING_EXT), [] or <<"...">>, NUL-free. */
static int get_text(term_reader_t *r, char *out, size_t outsz)
{
    const char *p;
    size_t n;
    term_type_t t = term_peek(r);
    if (t == TERM_T_NIL) {
        if (term_get_nil(r) < 0)
            return -EINVAL;
        out[0] = 0;
        return 0;
    }
    if (t == TERM_T_STRING) {
        if (term_get_string(r, &p, &n) < 0)
            return -EINVAL;
    } else if (t == TERM_T_BINARY) {
        if (term_get_binary(r, &p, &n) < 0)
            return -EINVAL;
    } else {
        return -EINVAL;
    }
    if (n >= outsz || memchr(p, 0, n))
        return -EINVAL;
    memcpy(out, p, n);
    out[n] = 0;
    return 0;
}

static int get_bool(term_reader_t *r, int *v)
{
    char a[TERM_ATOM_MAX];
    if (term_peek(r) != TERM_T_ATOM || term_get_atom(r, a) < 0)
        return -EINVAL;
    if (strcmp(a, "true") == 0)
        *v = 1;
    else if (strcmp(a, "false") == 0)
        *v = 0;
    else
        return -EINVAL;
    return 0;
}

/* ssl's versions: a list of atoms; etsd speaks 'tlsv1.2' and 'tlsv1.3'. */
static int get_versions(term_reader_t *r, tls_side_opts_t *s, char *err, size_t errsz,
                        const char *side)
{
    uint32_t n;
    if (term_peek(r) == TERM_T_NIL) {
        snprintf(err, errsz, "%s: versions: empty list", side);
        return -EINVAL;
    }
    if (term_peek(r) != TERM_T_LIST || term_get_list(r, &n) < 0)
        goto bad;
    s->min_version = s->max_version = 0;
    for (uint32_t i = 0; i < n; i++) {
        char a[TERM_ATOM_MAX];
        if (term_peek(r) != TERM_T_ATOM || term_get_atom(r, a) < 0)
            goto bad;
        int v;
        if (strcmp(a, "tlsv1.2") == 0) {
            v = TLS1_2_VERSION;
        } else if (strcmp(a, "tlsv1.3") == 0) {
            v = TLS1_3_VERSION;
        } else {
            snprintf(err, errsz, "%s: versions: %s is not supported (tlsv1.2, tlsv1.3)", side,
                     a);
            return -EINVAL;
        }
        if (!s->min_version || v < s->min_version)
            s->min_version = v;
        if (v > s->max_version)
            s->max_version = v;
    }
    if (term_get_nil(r) < 0)
        goto bad;
    return 0;
bad:
    snprintf(err, errsz, "%s: versions: want a list of atoms", side);
    return -EINVAL;
}

static int parse_side(term_reader_t *r, tls_side_opts_t *s, const char *side, char *err,
                      size_t errsz)
{
    uint32_t n;
    if (term_peek(r) == TERM_T_NIL)
        return term_get_nil(r) < 0 ? -EINVAL : 0;
    if (term_peek(r) != TERM_T_LIST || term_get_list(r, &n) < 0) {
        snprintf(err, errsz, "%s: want a list of options", side);
        return -EINVAL;
    }
    for (uint32_t i = 0; i < n; i++) {
        uint32_t ar;
        char key[TERM_ATOM_MAX];
        if (term_peek(r) != TERM_T_TUPLE || term_get_tuple(r, &ar) < 0 || ar != 2 ||
            term_peek(r) != TERM_T_ATOM || term_get_atom(r, key) < 0) {
            snprintf(err, errsz, "%s: want {Option, Value} tuples", side);
            return -EINVAL;
        }
        int rc = 0;
        int server = strcmp(side, "server") == 0;
        if (strcmp(key, "certfile") == 0) {
            rc = get_text(r, s->certfile, sizeof s->certfile);
        } else if (strcmp(key, "keyfile") == 0) {
            rc = get_text(r, s->keyfile, sizeof s->keyfile);
        } else if (strcmp(key, "cacertfile") == 0) {
            rc = get_text(r, s->cacertfile, sizeof s->cacertfile);
        } else if (strcmp(key, "password") == 0) {
            rc = get_text(r, s->password, sizeof s->password);
        } else if (strcmp(key, "verify") == 0) {
            char a[TERM_ATOM_MAX];
            rc = term_peek(r) == TERM_T_ATOM && term_get_atom(r, a) == 0 ? 0 : -EINVAL;
            if (rc == 0 && strcmp(a, "verify_peer") == 0)
                s->verify = 1;
            else if (rc == 0 && strcmp(a, "verify_none") == 0)
                s->verify = 0;
            else
                rc = -EINVAL;
        } else if (strcmp(key, "fail_if_no_peer_cert") == 0 && server) {
            rc = get_bool(r, &s->fail_if_no_peer_cert);
        } else if (strcmp(key, "versions") == 0) {
            if ((rc = get_versions(r, s, err, errsz, side)) < 0)
                return rc;
        } else if (strcmp(key, "depth") == 0) {
            int64_t d;
            rc = term_peek(r) == TERM_T_INTEGER && term_get_long(r, &d) == 0 && d >= 0 &&
                         d <= 100
                     ? 0
                     : -EINVAL;
            if (rc == 0)
                s->depth = (int)d;
        } else if (strcmp(key, "server_name_indication") == 0 && !server) {
            char a[TERM_ATOM_MAX];
            if (term_peek(r) == TERM_T_ATOM) {
                rc = term_get_atom(r, a) == 0 && strcmp(a, "disable") == 0 ? 0 : -EINVAL;
                s->sni = 0;
            } else {
                rc = get_text(r, s->sni_host, sizeof s->sni_host);
                if (rc == 0 && !s->sni_host[0])
                    rc = -EINVAL;
                s->sni = 1;
            }
        } else {
            snprintf(err, errsz, "%s: option %s is not supported", side, key);
            return -EINVAL;
        }
        if (rc < 0) {
            snprintf(err, errsz, "%s: option %s: bad value", side, key);
            return -EINVAL;
        }
    }
    if (term_get_nil(r) < 0) {
        snprintf(err, errsz, "%s: want a proper list of options", side);
        return -EINVAL;
    }
    return 0;
}

int tls_opts_parse(const char *text, size_t len, tls_opts_t *out, char *err, size_t errsz)
{
    term_buf_t b;
    size_t count = 0;
    int rc;

    side_defaults(&out->server);
    side_defaults(&out->client);
    term_buf_init(&b);
    rc = term_consult(text, len, &b, &count);
    if (rc < 0 || count != 1) {
        snprintf(err, errsz, "%s", rc == -ENOMEM ? "out of memory"
                                   : rc < 0      ? "not an Erlang term ended by a dot"
                                                 : "want exactly one term");
        term_buf_release(&b);
        return rc == -ENOMEM ? rc : -EPROTO;
    }
    term_reader_t r;
    term_reader_init(&r, b.data, b.len);
    if (b.len && (unsigned char)b.data[0] == 131)
        r.pos = 1;
    uint32_t n = 0;
    int seen[2] = {0, 0};
    rc = -EINVAL;
    if (term_peek(&r) == TERM_T_NIL) {
        rc = 0;
        goto done;
    }
    if (term_peek(&r) != TERM_T_LIST || term_get_list(&r, &n) < 0) {
        snprintf(err, errsz, "want [{server, Opts}, {client, Opts}]");
        goto done;
    }
    for (uint32_t i = 0; i < n; i++) {
        uint32_t ar;
        char key[TERM_ATOM_MAX];
        if (term_peek(&r) != TERM_T_TUPLE || term_get_tuple(&r, &ar) < 0 || ar != 2 ||
            term_peek(&r) != TERM_T_ATOM || term_get_atom(&r, key) < 0) {
            snprintf(err, errsz, "want [{server, Opts}, {client, Opts}]");
            goto done;
        }
        int k = strcmp(key, "server") == 0 ? 0 : strcmp(key, "client") == 0 ? 1 : -1;
        if (k < 0) {
            snprintf(err, errsz, "%s is not supported (server, client)", key);
            goto done;
        }
        if (seen[k]++) {
            snprintf(err, errsz, "%s given twice", key);
            goto done;
        }
        if (parse_side(&r, k ? &out->client : &out->server, key, err, errsz) < 0)
            goto done;
    }
    if (term_get_nil(&r) < 0) {
        snprintf(err, errsz, "want a proper list");
        goto done;
    }
    rc = 0;
done:
    term_buf_release(&b);
    return rc;
}

/* ---- Contexts ------------------------------------------------------------ */

struct tls_ctx {
    SSL_CTX *server, *client;
    tls_opts_t opts;
    tls_host_rule_t host_rule;
};

void tls_ctx_set_host_rule(tls_ctx_t *ctx, tls_host_rule_t rule) { ctx->host_rule = rule; }

static int ex_index = -1;   /* SSL ex_data slot holding the tls_t */

/* OpenSSL's reason for the last failure, or fallback. */
static const char *ossl_reason(const char *fallback)
{
    unsigned long e = ERR_peek_last_error();
    const char *s = e ? ERR_reason_error_string(e) : NULL;
    return s ? s : fallback;
}

static int pass_cb(char *buf, int size, int rwflag, void *u)
{
    (void)rwflag;
    const char *pw = u;
    int n = (int)strlen(pw);
    if (n == 0 || n >= size)
        return -1;
    memcpy(buf, pw, (size_t)n);
    return n;
}

static int verify_cb(int ok, X509_STORE_CTX *xs);

static SSL_CTX *make_ctx(int server, tls_side_opts_t *s, char *err, size_t errsz)
{
    const char *side = server ? "server" : "client";
    SSL_CTX *ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
    if (!ctx) {
        snprintf(err, errsz, "%s: %s", side, ossl_reason("cannot create an SSL context"));
        return NULL;
    }
    /* ssl's versions default: TLS 1.2 and 1.3. */
    SSL_CTX_set_min_proto_version(ctx, s->min_version ? s->min_version : TLS1_2_VERSION);
    SSL_CTX_set_max_proto_version(ctx, s->max_version ? s->max_version : TLS1_3_VERSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE);
    if (server)
        SSL_CTX_set_num_tickets(ctx, 0); /* no resumption: nothing to hand out */
    /* Always ours: OpenSSL's default asks on the terminal, which would
     * hold the start of a daemon with an encrypted key and no password. */
    SSL_CTX_set_default_passwd_cb(ctx, pass_cb);
    SSL_CTX_set_default_passwd_cb_userdata(ctx, s->password);
    if (s->certfile[0]) {
        const char *key = s->keyfile[0] ? s->keyfile : s->certfile;
        if (SSL_CTX_use_certificate_chain_file(ctx, s->certfile) != 1) {
            snprintf(err, errsz, "%s: certfile %s: %s", side, s->certfile,
                     ossl_reason("cannot load"));
            goto fail;
        }
        if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
            snprintf(err, errsz, "%s: keyfile %s: %s", side, key, ossl_reason("cannot load"));
            goto fail;
        }
        if (SSL_CTX_check_private_key(ctx) != 1) {
            snprintf(err, errsz, "%s: keyfile %s does not match certfile %s", side, key,
                     s->certfile);
            goto fail;
        }
    } else if (server) {
        snprintf(err, errsz, "server: certfile is missing (a TLS server needs one)");
        goto fail;
    } else if (s->keyfile[0]) {
        snprintf(err, errsz, "client: keyfile without certfile");
        goto fail;
    }
    if (s->cacertfile[0]) {
        if (SSL_CTX_load_verify_locations(ctx, s->cacertfile, NULL) != 1) {
            snprintf(err, errsz, "%s: cacertfile %s: %s", side, s->cacertfile,
                     ossl_reason("cannot load"));
            goto fail;
        }
        if (server) {
            STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(s->cacertfile);
            if (names)
                SSL_CTX_set_client_CA_list(ctx, names);
        }
    }
    /* ssl's defaults: the server does not ask for a certificate, the
     * client (OTP 26 and later) verifies the server's. */
    int verify = s->verify >= 0 ? s->verify : !server;
    if (verify && !s->cacertfile[0]) {
        snprintf(err, errsz, "%s: verify_peer needs a cacertfile%s", side,
                 server ? "" : " (the default since OTP 26; give {verify, verify_none} to skip)");
        goto fail;
    }
    if (s->fail_if_no_peer_cert == 1 && !verify) {
        snprintf(err, errsz, "server: fail_if_no_peer_cert needs {verify, verify_peer}");
        goto fail;
    }
    int mode = verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE;
    if (verify && server && s->fail_if_no_peer_cert == 1)
        mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
    SSL_CTX_set_verify(ctx, mode, verify ? verify_cb : NULL);
    SSL_CTX_set_verify_depth(ctx, s->depth >= 0 ? s->depth : 10); /* ssl's default depth */
    s->verify = verify;
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

int tls_ctx_new(const tls_opts_t *opts, tls_ctx_t **out, char *err, size_t errsz)
{
    if (ex_index < 0) {
        ex_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
        if (ex_index < 0) {
            snprintf(err, errsz, "OpenSSL: no ex_data index");
            return -ENOMEM;
        }
    }
    tls_ctx_t *c = mem_calloc(1, sizeof *c);
    if (!c) {
        snprintf(err, errsz, "out of memory");
        return -ENOMEM;
    }
    c->opts = *opts;
    ERR_clear_error();
    c->server = make_ctx(1, &c->opts.server, err, errsz);
    if (c->server)
        c->client = make_ctx(0, &c->opts.client, err, errsz);
    if (!c->client) {
        tls_ctx_free(c);
        ERR_clear_error();
        return -EINVAL;
    }
    *out = c;
    return 0;
}

int tls_ctx_load(const char *file, tls_ctx_t **out, char *err, size_t errsz)
{
    FILE *f = fopen(file, "rb");
    if (!f) {
        int e = errno;
        snprintf(err, errsz, "%s: %s", file, strerror(e));
        return -e;
    }
    char *text = mem_alloc(1 << 20);
    size_t n = text ? fread(text, 1, 1 << 20, f) : 0;
    int big = text && n == 1 << 20;
    fclose(f);
    if (!text || big) {
        mem_free(text);
        snprintf(err, errsz, "%s: %s", file, text ? "larger than 1 MiB" : "out of memory");
        return text ? -EFBIG : -ENOMEM;
    }
    tls_opts_t *o = mem_alloc(sizeof *o);
    int rc = o ? tls_opts_parse(text, n, o, err, errsz) : -ENOMEM;
    mem_free(text);
    if (rc == 0)
        rc = tls_ctx_new(o, out, err, errsz);
    mem_free(o);
    return rc;
}

void tls_ctx_free(tls_ctx_t *c)
{
    if (!c)
        return;
    SSL_CTX_free(c->server);
    SSL_CTX_free(c->client);
    mem_free(c);
}

/* ---- Sessions ------------------------------------------------------------- */

struct tls {
    SSL *ssl;
    BIO *rbio, *wbio;        /* network in, network out (owned by ssl) */
    int server, established, got_bytes, not_tls;
    int check_host;          /* client: hostname check (mirrors OTP) */
    tls_host_rule_t host_rule;
    char host[256];
    cbuf_t pending;          /* plaintext written before the handshake ended */
    char why[512];
};

/* ssl_certificate:verify_hostname/4 then public_key:pkix_verify_hostname/3
 * of the release (tls_host_rule_t). OTP 25: [{dns_id, Host}] always; when
 * the certificate has subjectAltName entries (of any type) only its DNS
 * entries count, else the common name. OTP 27: a host that
 * inet:parse_strict_address/1 takes is {ip, IP} and matches IP entries
 * only; no subjectAltName is no match. */
static int host_matches(X509 *cert, const char *host, tls_host_rule_t rule)
{
    GENERAL_NAMES *gens = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
    int has_san = gens && sk_GENERAL_NAME_num(gens) > 0;
    GENERAL_NAMES_free(gens);
    unsigned dns_only = X509_CHECK_FLAG_NO_WILDCARDS | X509_CHECK_FLAG_NEVER_CHECK_SUBJECT;
    if (rule == TLS_HOST_OTP27) {
        unsigned char ip[16];
        if (!has_san)
            return 0;
        if (inet_pton(AF_INET, host, ip) == 1 || inet_pton(AF_INET6, host, ip) == 1)
            return X509_check_ip_asc(cert, host, 0) == 1;
        return X509_check_host(cert, host, 0, dns_only, NULL) == 1;
    }
    return X509_check_host(cert, host, 0,
                           has_san ? dns_only
                                   : X509_CHECK_FLAG_NO_WILDCARDS |
                                         X509_CHECK_FLAG_ALWAYS_CHECK_SUBJECT,
                           NULL) == 1;
}

static int verify_cb(int ok, X509_STORE_CTX *xs)
{
    SSL *ssl = X509_STORE_CTX_get_ex_data(xs, SSL_get_ex_data_X509_STORE_CTX_idx());
    tls_t *t = ssl ? SSL_get_ex_data(ssl, ex_index) : NULL;
    if (!ok || !t || !t->check_host || X509_STORE_CTX_get_error_depth(xs) != 0)
        return ok;
    if (!host_matches(X509_STORE_CTX_get_current_cert(xs), t->host, t->host_rule)) {
        X509_STORE_CTX_set_error(xs, X509_V_ERR_HOSTNAME_MISMATCH);
        return 0;
    }
    return 1;
}

int tls_new(tls_ctx_t *ctx, int server, const char *host, tls_t **out)
{
    tls_t *t = mem_calloc(1, sizeof *t);
    if (!t)
        return -ENOMEM;
    cbuf_init(&t->pending);
    t->server = server;
    t->ssl = SSL_new(server ? ctx->server : ctx->client);
    t->rbio = BIO_new(BIO_s_mem());
    t->wbio = BIO_new(BIO_s_mem());
    if (!t->ssl || !t->rbio || !t->wbio) {
        BIO_free(t->rbio);
        BIO_free(t->wbio);
        SSL_free(t->ssl);
        mem_free(t);
        ERR_clear_error();
        return -ENOMEM;
    }
    BIO_set_mem_eof_return(t->rbio, -1); /* empty means "more later" */
    SSL_set_bio(t->ssl, t->rbio, t->wbio);
    SSL_set_ex_data(t->ssl, ex_index, t);
    if (server) {
        SSL_set_accept_state(t->ssl);
    } else {
        const tls_side_opts_t *c = &ctx->opts.client;
        const char *name = c->sni == 1 ? c->sni_host : host ? host : "";
        snprintf(t->host, sizeof t->host, "%s", name);
        t->host_rule = ctx->host_rule;
        /* inet_tls_dist: {server_name_indication, Host} unless the optfile
         * says otherwise; disable turns the hostname check off too. */
        t->check_host = c->verify == 1 && c->sni != 0 && t->host[0];
        unsigned char ip[16];
        if (c->sni != 0 && t->host[0] && inet_pton(AF_INET, t->host, ip) != 1 &&
            inet_pton(AF_INET6, t->host, ip) != 1)
            SSL_set_tlsext_host_name(t->ssl, t->host); /* RFC 6066: no IP literals */
        SSL_set_connect_state(t->ssl);
    }
    *out = t;
    return 0;
}

void tls_free(tls_t *t)
{
    if (!t)
        return;
    SSL_free(t->ssl); /* frees both BIOs */
    cbuf_release(&t->pending);
    mem_free(t);
}

int tls_established(const tls_t *t) { return t->established; }
const char *tls_why(const tls_t *t) { return t->why[0] ? t->why : "TLS error"; }
const char *tls_version(const tls_t *t) { return SSL_get_version(t->ssl); }

/* Moves what OpenSSL wrote for the network into net. */
static int drain(tls_t *t, cbuf_t *net)
{
    char buf[16384];
    int n;
    while ((n = BIO_read(t->wbio, buf, sizeof buf)) > 0)
        if (cbuf_put(net, buf, (size_t)n) < 0)
            return -ENOMEM;
    return 0;
}

/* Sets why from the verify result or OpenSSL's error queue; returns the
 * errno for the failure. */
static int fail(tls_t *t, const char *what)
{
    long vr = SSL_get_verify_result(t->ssl);
    unsigned long e = ERR_peek_last_error();
    int rc = -EPROTO;
    if (t->not_tls) {
        snprintf(t->why, sizeof t->why, "%s: not a TLS peer (plaintext distribution?)", what);
    } else if (vr == X509_V_ERR_HOSTNAME_MISMATCH) {
        snprintf(t->why, sizeof t->why, "%s: hostname_check_failed (certificate not for %s)",
                 what, t->host);
        rc = -EACCES;
    } else if (vr != X509_V_OK) {
        snprintf(t->why, sizeof t->why, "%s: peer certificate: %s", what,
                 X509_verify_cert_error_string(vr));
        rc = -EACCES;
    } else if (e && ERR_GET_REASON(e) == SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE) {
        snprintf(t->why, sizeof t->why, "%s: peer sent no certificate (one is required)",
                 what);
        rc = -EACCES;
    } else {
        snprintf(t->why, sizeof t->why, "%s: %s", what, ossl_reason("protocol error"));
    }
    ERR_clear_error();
    return rc;
}

static int flush_pending(tls_t *t, cbuf_t *net)
{
    size_t off = 0;
    while (off < t->pending.len) {
        size_t w = 0;
        if (SSL_write_ex(t->ssl, t->pending.data + off, t->pending.len - off, &w) != 1)
            return fail(t, "TLS write");
        off += w;
    }
    t->pending.len = 0;
    return drain(t, net);
}

int tls_start(tls_t *t, cbuf_t *net)
{
    if (t->server)
        return 0;
    ERR_clear_error();
    int r = SSL_do_handshake(t->ssl);
    if (r != 1 && SSL_get_error(t->ssl, r) != SSL_ERROR_WANT_READ)
        return fail(t, "TLS handshake");
    return drain(t, net);
}

int tls_feed(tls_t *t, const void *data, size_t len, cbuf_t *plain, cbuf_t *net)
{
    ERR_clear_error();
    if (len && !t->got_bytes) {
        t->got_bytes = 1;
        /* A TLS connection starts with a handshake record (22); the
         * distribution's own first bytes are a 2-byte length. */
        t->not_tls = ((const unsigned char *)data)[0] != 22;
    }
    if (len && BIO_write(t->rbio, data, (int)len) != (int)len)
        return -ENOMEM;
    if (!t->established) {
        int r = SSL_do_handshake(t->ssl);
        if (r != 1) {
            int e = SSL_get_error(t->ssl, r);
            if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
                return drain(t, net);
            int rc = fail(t, "TLS handshake");
            (void)drain(t, net); /* the alert */
            return rc;
        }
        t->not_tls = 0;
        t->established = 1;
        int rc = flush_pending(t, net);
        if (rc < 0)
            return rc;
    }
    for (;;) {
        char buf[16384];
        size_t n = 0;
        if (SSL_read_ex(t->ssl, buf, sizeof buf, &n) == 1) {
            if (cbuf_put(plain, buf, n) < 0)
                return -ENOMEM;
            continue;
        }
        int e = SSL_get_error(t->ssl, 0);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
            break;
        if (e == SSL_ERROR_ZERO_RETURN) {
            snprintf(t->why, sizeof t->why, "TLS session closed by peer");
            (void)drain(t, net);
            return -ECONNRESET;
        }
        int rc = fail(t, "TLS read");
        (void)drain(t, net);
        return rc;
    }
    return drain(t, net);
}

int tls_write(tls_t *t, const void *data, size_t len, cbuf_t *net)
{
    if (!t->established)
        return cbuf_put(&t->pending, data, len);
    ERR_clear_error();
    size_t off = 0;
    while (off < len) {
        size_t w = 0;
        if (SSL_write_ex(t->ssl, (const char *)data + off, len - off, &w) != 1)
            return fail(t, "TLS write");
        off += w;
        /* Keep the memory BIO small: move each record out as it is made. */
        if (drain(t, net) < 0)
            return -ENOMEM;
    }
    return drain(t, net);
}
