/* tls.h: TLS distribution (erl's -proto_dist inet_tls): the options of an
 * -ssl_dist_optfile, the OpenSSL contexts built from them, and one TLS
 * session over memory BIOs that conn.c pumps with the bytes of its
 * non-blocking socket. Nothing here touches a socket or blocks. */
#ifndef ETSD_TLS_H
#define ETSD_TLS_H

#include <stddef.h>

#include "cnode/cnode_int.h"

#define TLS_PATH_MAX 1024

/* One side of the optfile: [{server, Opts}] or [{client, Opts}]. */
typedef struct tls_side_opts {
    char certfile[TLS_PATH_MAX];   /* "" when absent */
    char keyfile[TLS_PATH_MAX];    /* "" when absent: certfile, as in ssl */
    char cacertfile[TLS_PATH_MAX];
    char password[256];            /* for an encrypted keyfile */
    int verify;                    /* -1 absent, 0 verify_none, 1 verify_peer */
    int fail_if_no_peer_cert;      /* -1 absent, 0 false, 1 true */
    int min_version, max_version;  /* TLS1_2_VERSION / TLS1_3_VERSION; 0 absent */
    int depth;                     /* -1 absent */
    int sni;                       /* -1 absent, 0 disable, 1 sni_host given */
    char sni_host[256];
} tls_side_opts_t;

typedef struct tls_opts {
    tls_side_opts_t server, client;
} tls_opts_t;

/* Parses the text of an optfile (what erl's -ssl_dist_optfile reads: one
 * term, ended by a dot, [{server, Opts}, {client, Opts}], either may be
 * absent). Options understood: certfile, keyfile, cacertfile, password,
 * verify (verify_peer | verify_none), fail_if_no_peer_cert (server only),
 * versions (['tlsv1.2', 'tlsv1.3']), depth, server_name_indication (client
 * only: a host name or disable). Any other option, or a value of the wrong
 * type, is -EINVAL with err naming it ("server: option ciphers is not
 * supported"). -EPROTO with err for text that is not one term. */
int tls_opts_parse(const char *text, size_t len, tls_opts_t *out, char *err, size_t errsz);

/* The server and client contexts of one optfile. */
typedef struct tls_ctx tls_ctx_t;

/* Reads and parses file (tls_opts_parse), then loads the certificates and
 * keys it names. The client side verifies the peer unless it says
 * verify_none (the default of OTP 26 and later), which needs a cacertfile.
 * On success *out is new; free it with tls_ctx_free(). On failure err says
 * what is wrong (the option, the file and OpenSSL's reason). */
int tls_ctx_load(const char *file, tls_ctx_t **out, char *err, size_t errsz);
/* The same from parsed options. */
int tls_ctx_new(const tls_opts_t *opts, tls_ctx_t **out, char *err, size_t errsz);
void tls_ctx_free(tls_ctx_t *ctx);

/* How a client matches the server's certificate to the host of the node
 * name. OTP changed it between releases (ssl_certificate:verify_hostname/4
 * and public_key:pkix_verify_hostname/3), and a cluster accepts what its
 * own release accepts:
 * TLS_HOST_OTP25: the host is always a DNS name: it must equal a DNS entry
 *   of subjectAltName (an IP entry never matches: x@127.0.0.1 needs
 *   DNS:127.0.0.1); without subjectAltName, the common name.
 * TLS_HOST_OTP27 (OTP 27 and 29): an IP literal host must equal an IP
 *   entry (IP:127.0.0.1), any other host a DNS entry; a certificate
 *   without subjectAltName never matches.
 * Both compare exactly, without case, with no wildcards (ssl's default
 * customize_hostname_check). */
typedef enum tls_host_rule { TLS_HOST_OTP25 = 0, TLS_HOST_OTP27 = 1 } tls_host_rule_t;

/* Sets the rule for sessions made after this call (default OTP25). */
void tls_ctx_set_host_rule(tls_ctx_t *ctx, tls_host_rule_t rule);

/* One TLS session. */
typedef struct tls tls_t;

/* A session as server (accepting) or client. A client that verifies the
 * server checks its certificate against host as OTP's inet_tls_dist does
 * (tls_host_rule_t): host is the part of the node name after @, or the
 * optfile's server_name_indication; a mismatch fails the handshake with
 * hostname_check_failed. On success *out is new: tls_free() it. */
int tls_new(tls_ctx_t *ctx, int server, const char *host, tls_t **out);
void tls_free(tls_t *t);

/* Client: appends the ClientHello to net. Server: nothing. */
int tls_start(tls_t *t, cbuf_t *net);

/* Feeds bytes read from the network. Appends decrypted bytes to plain and
 * bytes to send (handshake replies, alerts) to net. Returns 0, -EPROTO for
 * a failed handshake or a broken record (tls_why() says which), -EACCES for
 * a certificate refused (wrong CA, expired, hostname, missing), -ECONNRESET
 * when the peer ended the session (close_notify), -ENOMEM. After an error
 * net may hold an alert worth sending before closing. */
int tls_feed(tls_t *t, const void *data, size_t len, cbuf_t *plain, cbuf_t *net);

/* Encrypts len bytes into net. Before the handshake has ended they wait
 * inside t and go out (into the net of the tls_feed() that ends it) in
 * order. 0, -ENOMEM, -EPROTO. */
int tls_write(tls_t *t, const void *data, size_t len, cbuf_t *net);

/* 1 once the TLS handshake is done. */
int tls_established(const tls_t *t);
/* Why the last error happened (static or owned by t; valid until tls_free). */
const char *tls_why(const tls_t *t);
/* "TLSv1.3" etc. once established. */
const char *tls_version(const tls_t *t);

#endif
