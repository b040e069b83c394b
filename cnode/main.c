/* main.c: etsd's command line (DESIGN.md) parsed into a node_config_t,
 * the cookie found and checked as erl finds it, then the node and its
 * services on one libuv loop until SIGTERM/SIGINT. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <uv.h>

#include <systemd/sd-daemon.h>

#include "cnode/log.h"
#include "cnode/loop.h"
#include "cnode/metrics.h"
#include "cnode/cluster.h"
#include "cnode/compact.h"
#include "cnode/node.h"
#include "cnode/otprel.h"
#include "cnode/pg.h"
#include "cnode/pubsub.h"
#include "cnode/replicate.h"
#include "cnode/rpc.h"
#include "cnode/rpc_exec.h"
#include "cnode/tls.h"
#include "store/store.h"
#include "term/mem.h"

#define ETSD_VERSION "0.1.0"

static const char usage[] =
    "usage: etsd --name NAME@HOST | --sname NAME [options]\n"
    "  --cookie C | --cookie-file F     default: ~/.erlang.cookie\n"
    "  --join NODE[,NODE...]            nodes to connect to\n"
    "  --dns NAME --basename B          every A/AAAA record of NAME as node B@IP\n"
    "  --forget-after T                 drop a node found by nodes() or DNS once it\n"
    "                                   is gone from them and down this long:\n"
    "                                   seconds, or with a unit ms|s|m|h (default 10m)\n"
    "  --table users --keypos 1         the ETS table mirrored\n"
    "  --pubsub MyApp.PubSub            PubSub server name; --pool-size N\n"
    "  --topic-new new --topic-sync node_up --sync-delay-ms 3000\n"
    "  --data-dir DIR                   snapshot + WAL; --fsync always|MS|never\n"
    "  --compact-at BYTES               log size that starts a compaction\n"
    "                                   (default: 2x the snapshot, >= 64 MB)\n"
    "  --port N                         listen port (0: any)\n"
    "  --net-ticktime S --log-level L   error|warn|info|debug\n"
    "  --max-frame BYTES --max-queue BYTES  incoming frame and per-peer\n"
    "                                   outgoing queue limits\n"
    "  --otp-release N                  term semantics of OTP N (25, 27, ...);\n"
    "                                   default: the oldest release connected\n"
    "  --proto-dist inet_tcp|inet6_tcp|inet_tls|inet6_tls  as erl -proto_dist\n"
    "  --ssl-dist-optfile F             as erl -ssl_dist_optfile (for *_tls)\n"
    "  --tls-hostname-check otp25|otp27 match server certificates as that OTP does\n"
    "  --metrics-port [ADDR:]N          GET /metrics (Prometheus); ADDR 127.0.0.1\n"
    "  --file-dir DIR                   where ets:tab2file/file2tab over rpc may\n"
    "                                   read and write; default DATA_DIR/files\n";

/* --otp-release, 0 when absent: kept here, as only main uses it. */
static int otp_release_flag;

/* ---- Cookie, as kernel's auth.erl reads it ----------------------------- */

/* auth.erl check_cookie/2: printable bytes, then only newline, CR or space
 * to the end. */
static int check_cookie(const char *buf, size_t len, char *out, size_t outsz,
                        const char **err)
{
    size_t i = 0, k = 0;
    while (i < len && (unsigned char)buf[i] >= ' ' && (unsigned char)buf[i] <= '~') {
        if (k + 1 >= outsz) {
            *err = "cookie too long";
            return -EINVAL;
        }
        out[k++] = buf[i++];
    }
    for (; i < len; i++) {
        if (buf[i] != '\n' && buf[i] != '\r' && buf[i] != ' ') {
            *err = "Bad characters in cookie";
            return -EINVAL;
        }
    }
    if (k == 0) {
        *err = "Too short cookie string";
        return -EINVAL;
    }
    out[k] = 0;
    return 0;
}

/* Reads a cookie file: a regular file, accessible by its owner only (on
 * Unix erl refuses anything with group or other bits). -ENOENT if absent. */
static int read_cookie_file(const char *path, int check_mode, char *out, size_t outsz)
{
    struct stat st;
    if (stat(path, &st) < 0)
        return -errno;
    if (!S_ISREG(st.st_mode)) {
        fprintf(stderr, "etsd: Cookie file %s is not a regular file\n", path);
        return -EINVAL;
    }
    if (check_mode && (st.st_mode & 077) != 0) {
        fprintf(stderr, "etsd: Cookie file %s must be accessible by owner only\n", path);
        return -EPERM;
    }
    FILE *f = fopen(path, "rb");
    if (!f) {
        int e = -errno;
        fprintf(stderr, "etsd: cannot read cookie file %s: %s\n", path, strerror(errno));
        return e;
    }
    char buf[1024];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    const char *err = NULL;
    if (check_cookie(buf, n, out, outsz, &err) < 0) {
        fprintf(stderr, "etsd: cookie file %s: %s\n", path, err);
        return -EINVAL;
    }
    return 0;
}

/* auth.erl create_cookie/1: 20 random capital letters, mode 0400. */
static int create_cookie_file(const char *path, char *out, size_t outsz)
{
    unsigned char r[20];
    if (uv_random(NULL, NULL, r, sizeof r, 0, NULL) < 0)
        return -EIO;
    char c[21];
    for (int i = 0; i < 20; i++)
        c[i] = (char)('A' + r[i] % 26);
    c[20] = 0;
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0400);
    if (fd < 0) {
        fprintf(stderr, "etsd: cannot create cookie file %s: %s\n", path, strerror(errno));
        return -errno;
    }
    ssize_t w = write(fd, c, 20);
    close(fd);
    if (w != 20)
        return -EIO;
    snprintf(out, outsz, "%s", c);
    return 0;
}

/* $HOME/.erlang.cookie, then $XDG_CONFIG_HOME/erlang/.erlang.cookie; if
 * neither exists, a new $HOME/.erlang.cookie (auth.erl read_cookie/0). */
static int default_cookie(char *out, size_t outsz)
{
    const char *home = getenv("HOME");
    char hp[PATH_MAX], xp[PATH_MAX];
    const char *xdg = getenv("XDG_CONFIG_HOME");
    if (xdg && *xdg)
        snprintf(xp, sizeof xp, "%s/erlang/.erlang.cookie", xdg);
    else
        snprintf(xp, sizeof xp, "%s/.config/erlang/.erlang.cookie", home ? home : "");
    if (home && *home) {
        snprintf(hp, sizeof hp, "%s/.erlang.cookie", home);
        int rc = read_cookie_file(hp, 1, out, outsz);
        if (rc != -ENOENT)
            return rc;
        rc = read_cookie_file(xp, 1, out, outsz);
        if (rc != -ENOENT)
            return rc;
        return create_cookie_file(hp, out, outsz);
    }
    int rc = read_cookie_file(xp, 1, out, outsz);
    if (rc == -ENOENT)
        fprintf(stderr, "etsd: No home for cookie file\n");
    return rc;
}

/* ---- Command line -------------------------------------------------------- */

/* --compact-at: 0 for the store's default rule. */
static uint64_t opt_compact_at;

/* A decimal number in [min, max]; a failure names the flag, the value and
 * what was expected. */
static int parse_uint(const char *opt, const char *v, unsigned long long min,
                      unsigned long long max, unsigned long long *out)
{
    char *e;
    errno = 0;
    unsigned long long x = strtoull(v, &e, 10);
    if (errno || *e || e == v || v[0] == '-' || v[0] == '+' || x < min || x > max) {
        fprintf(stderr, "etsd: %s '%s': want a whole number from %llu to %llu\n", opt, v,
                min, max);
        return -EINVAL;
    }
    *out = x;
    return 0;
}

/* --forget-after: seconds, or a number with a unit (ms, s, m, h). */
static int parse_duration_ms(const char *opt, const char *v, uint64_t *out)
{
    static const struct { const char *unit; uint64_t ms; } units[] = {
        {"", 1000}, {"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}};
    char *e;
    errno = 0;
    unsigned long long x = strtoull(v, &e, 10);
    if (!errno && e != v && v[0] != '-' && x > 0) {
        for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
            if (strcmp(e, units[i].unit) == 0 && x <= UINT64_MAX / units[i].ms / 1000) {
                *out = x * units[i].ms;
                return 0;
            }
        }
    }
    fprintf(stderr, "etsd: %s: bad duration '%s' (want e.g. 600, 90s, 10m, 1h)\n", opt, v);
    return -EINVAL;
}

static int short_hostname(char *out, size_t sz, int full)
{
    char h[256];
    if (gethostname(h, sizeof h) < 0)
        return -errno;
    h[sizeof h - 1] = 0;
    if (!full) {
        char *dot = strchr(h, '.');
        if (dot)
            *dot = 0;
    }
    snprintf(out, sz, "%s", h);
    return 0;
}

/* Splits a comma list into cfg->join; the strings live in argv. */
static int add_join(node_config_t *cfg, char *list)
{
    for (char *tok = strtok(list, ","); tok; tok = strtok(NULL, ",")) {
        if (!*tok)
            continue;
        if (cfg->njoin >= NODE_MAX_JOIN) {
            fprintf(stderr, "etsd: --join: more than %d nodes\n", NODE_MAX_JOIN);
            return -EINVAL;
        }
        if (!strchr(tok, '@')) {
            fprintf(stderr, "etsd: --join: '%s' is not a node name (alive@host)\n", tok);
            return -EINVAL;
        }
        cfg->join[cfg->njoin++] = tok;
    }
    return 0;
}

/* --proto-dist, --ssl-dist-optfile and --tls-hostname-check: the carrier,
 * and the TLS contexts (cfg->tls, freed by main) built from the optfile.
 * 0 or 2. */
static int parse_proto(const char *proto, const char *optfile, const char *host_rule,
                       node_config_t *cfg)
{
    if (host_rule && strcmp(host_rule, "otp25") != 0 && strcmp(host_rule, "otp27") != 0) {
        fprintf(stderr, "etsd: --tls-hostname-check: want otp25 or otp27\n");
        return 2;
    }
    static const char *const protos[] = {"inet_tcp", "inet6_tcp", "inet_tls", "inet6_tls"};
    int k = 0;
    while (k < 4 && strcmp(proto, protos[k]) != 0)
        k++;
    if (k == 4) {
        fprintf(stderr, "etsd: --proto-dist: '%s' is not inet_tcp, inet6_tcp, inet_tls or "
                        "inet6_tls\n", proto);
        return 2;
    }
    cfg->family = k % 2 ? AF_INET6 : AF_INET;
    if (k < 2) {
        if (optfile || host_rule) {
            fprintf(stderr, "etsd: --%s needs --proto-dist inet_tls or inet6_tls\n",
                    optfile ? "ssl-dist-optfile" : "tls-hostname-check");
            return 2;
        }
        return 0;
    }
    if (!optfile) {
        fprintf(stderr, "etsd: --proto-dist %s needs --ssl-dist-optfile\n", proto);
        return 2;
    }
    char err[512];
    if (tls_ctx_load(optfile, &cfg->tls, err, sizeof err) < 0) {
        fprintf(stderr, "etsd: --ssl-dist-optfile %s: %s\n", optfile, err);
        return 2;
    }
    if (host_rule && strcmp(host_rule, "otp27") == 0)
        tls_ctx_set_host_rule(cfg->tls, TLS_HOST_OTP27);
    return 0;
}

/* What main keeps besides the node's configuration. */
typedef struct main_opts {
    int metrics;                          /* --metrics-port given */
    struct sockaddr_storage metrics_addr;
    const char *file_dir;                 /* --file-dir, or NULL */
} main_opts_t;

/* Returns 0 to run, 1 for --help/--version done, 2 for a usage error. */
static int parse_args(int argc, char **argv, node_config_t *cfg, main_opts_t *opts)
{
    const char *name = NULL, *sname = NULL, *cookie = NULL, *cookie_file = NULL;
    const char *proto = "inet_tcp", *optfile = NULL, *host_rule = NULL;
    node_config_defaults(cfg);
    memset(opts, 0, sizeof *opts);
    for (int i = 1; i < argc; i++) {
        char *arg = argv[i];
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            printf("etsd %s\n%s", ETSD_VERSION, usage);
            return 1;
        }
        if (strcmp(arg, "--version") == 0) {
            printf("etsd %s\n", ETSD_VERSION);
            return 1;
        }
        if (strncmp(arg, "--", 2) != 0) {
            fprintf(stderr, "etsd: unexpected argument '%s'\n%s", arg, usage);
            return 2;
        }
        /* --opt VALUE or --opt=VALUE */
        char *val = NULL;
        char optbuf[64];
        char *eq = strchr(arg, '=');
        if (eq && (size_t)(eq - arg) < sizeof optbuf) {
            memcpy(optbuf, arg, (size_t)(eq - arg));
            optbuf[eq - arg] = 0;
            val = eq + 1;
            arg = optbuf;
        }
        static const char *const known[] = {
            "--name", "--sname", "--cookie", "--cookie-file", "--join", "--dns", "--forget-after",
            "--basename", "--table", "--keypos", "--pubsub", "--pool-size",
            "--topic-new", "--topic-sync", "--sync-delay-ms", "--data-dir", "--fsync",
            "--port", "--net-ticktime", "--log-level", "--max-frame", "--max-queue",
            "--otp-release", "--proto-dist", "--ssl-dist-optfile", "--tls-hostname-check",
            "--metrics-port", "--file-dir", "--compact-at", NULL};
        int k = 0;
        while (known[k] && strcmp(known[k], arg) != 0)
            k++;
        if (!known[k]) {
            fprintf(stderr, "etsd: unknown option '%s'\n%s", arg, usage);
            return 2;
        }
        if (!val) {
            if (i + 1 >= argc) {
                fprintf(stderr, "etsd: option %s needs a value\n", arg);
                return 2;
            }
            val = argv[++i];
        }
        unsigned long long u;
        if (strcmp(arg, "--name") == 0) {
            name = val;
        } else if (strcmp(arg, "--sname") == 0) {
            sname = val;
        } else if (strcmp(arg, "--cookie") == 0) {
            cookie = val;
        } else if (strcmp(arg, "--cookie-file") == 0) {
            cookie_file = val;
        } else if (strcmp(arg, "--join") == 0) {
            if (add_join(cfg, val) < 0)
                return 2;
        } else if (strcmp(arg, "--dns") == 0) {
            cfg->dns = val;
        } else if (strcmp(arg, "--forget-after") == 0) {
            if (parse_duration_ms(arg, val, &cfg->forget_after_ms) < 0)
                return 2;
        } else if (strcmp(arg, "--basename") == 0) {
            cfg->basename = val;
        } else if (strcmp(arg, "--table") == 0) {
            cfg->table = val;
        } else if (strcmp(arg, "--keypos") == 0) {
            if (parse_uint(arg, val, 1, 1u << 24, &u) < 0)
                return 2;
            cfg->keypos = (unsigned)u;
        } else if (strcmp(arg, "--pubsub") == 0) {
            cfg->pubsub = val;
        } else if (strcmp(arg, "--pool-size") == 0) {
            if (parse_uint(arg, val, 1, 1024, &u) < 0)
                return 2;
            cfg->pool_size = (unsigned)u;
        } else if (strcmp(arg, "--topic-new") == 0) {
            cfg->topic_new = val;
        } else if (strcmp(arg, "--topic-sync") == 0) {
            cfg->topic_sync = val;
        } else if (strcmp(arg, "--sync-delay-ms") == 0) {
            if (parse_uint(arg, val, 0, 86400000, &u) < 0)
                return 2;
            cfg->sync_delay_ms = (unsigned)u;
        } else if (strcmp(arg, "--data-dir") == 0) {
            cfg->data_dir = val;
        } else if (strcmp(arg, "--fsync") == 0) {
            if (strcmp(val, "always") == 0) {
                cfg->fsync = NODE_FSYNC_ALWAYS;
            } else if (strcmp(val, "never") == 0) {
                cfg->fsync = NODE_FSYNC_NEVER;
            } else {
                char *e;
                errno = 0;
                u = strtoull(val, &e, 10);
                if (errno || *e || e == val || !isdigit((unsigned char)val[0]) || u == 0 ||
                    u > 3600000) {
                    fprintf(stderr, "etsd: --fsync '%s': want always, never, or a period "
                            "in milliseconds from 1 to 3600000\n", val);
                    return 2;
                }
                cfg->fsync = NODE_FSYNC_PERIODIC;
                cfg->fsync_ms = (unsigned)u;
            }
        } else if (strcmp(arg, "--port") == 0) {
            if (parse_uint(arg, val, 0, 65535, &u) < 0)
                return 2;
            cfg->port = (int)u;
        } else if (strcmp(arg, "--net-ticktime") == 0) {
            if (parse_uint(arg, val, 1, 3600, &u) < 0)
                return 2;
            cfg->net_ticktime = (unsigned)u;
        } else if (strcmp(arg, "--log-level") == 0) {
            if (log_parse_level(val, &cfg->log_level) < 0) {
                fprintf(stderr, "etsd: --log-level '%s': want error, warn, info or debug\n",
                        val);
                return 2;
            }
        } else if (strcmp(arg, "--max-frame") == 0) {
            if (parse_uint(arg, val, 1024, UINT32_MAX, &u) < 0)
                return 2;
            cfg->max_frame = u;
        } else if (strcmp(arg, "--proto-dist") == 0) {
            proto = val;
        } else if (strcmp(arg, "--ssl-dist-optfile") == 0) {
            optfile = val;
        } else if (strcmp(arg, "--tls-hostname-check") == 0) {
            host_rule = val;
        } else if (strcmp(arg, "--compact-at") == 0) {
            if (parse_uint(arg, val, 4096, 1ULL << 50, &u) < 0)
                return 2;
            opt_compact_at = u;
        } else if (strcmp(arg, "--max-queue") == 0) {
            if (parse_uint(arg, val, 1024, 1ULL << 40, &u) < 0)
                return 2;
            cfg->max_queue = u;
        } else if (strcmp(arg, "--otp-release") == 0) {
            if (parse_uint(arg, val, TERM_OTP_MIN, TERM_OTP_MAX, &u) < 0) {
                fprintf(stderr, "etsd: --otp-release: want a release from %d on\n",
                        TERM_OTP_MIN);
                return 2;
            }
            otp_release_flag = (int)u;
        } else if (strcmp(arg, "--metrics-port") == 0) {
            if (metrics_parse_listen(val, &opts->metrics_addr) < 0) {
                fprintf(stderr, "etsd: --metrics-port '%s': want a port from 0 to 65535, "
                        "optionally after an IP address and a colon (127.0.0.1:9100, "
                        "[::1]:9100)\n", val);
                return 2;
            }
            opts->metrics = 1;
        } else if (strcmp(arg, "--file-dir") == 0) {
            opts->file_dir = val;
        }
    }
    if ((name != NULL) == (sname != NULL)) {
        fprintf(stderr, "etsd: give exactly one of --name and --sname\n%s", usage);
        return 2;
    }
    char host[256];
    if (name) {
        cfg->longnames = 1;
        if (strchr(name, '@')) {
            snprintf(cfg->name, sizeof cfg->name, "%s", name);
        } else if (short_hostname(host, sizeof host, 1) == 0) {
            snprintf(cfg->name, sizeof cfg->name, "%s@%s", name, host);
        }
    } else {
        cfg->longnames = 0;
        if (strchr(sname, '@')) {
            snprintf(cfg->name, sizeof cfg->name, "%s", sname);
        } else if (short_hostname(host, sizeof host, 0) == 0) {
            snprintf(cfg->name, sizeof cfg->name, "%s@%s", sname, host);
        }
    }
    const char *at = strchr(cfg->name, '@');
    if (!at || at == cfg->name || !at[1] || strchr(at + 1, '@')) {
        fprintf(stderr, "etsd: bad node name '%s'\n", cfg->name);
        return 2;
    }
    if (cookie && cookie_file) {
        fprintf(stderr, "etsd: give at most one of --cookie and --cookie-file\n");
        return 2;
    }
    if (cookie) {
        if (strlen(cookie) == 0 || strlen(cookie) >= sizeof cfg->cookie) {
            fprintf(stderr, "etsd: --cookie: empty or too long\n");
            return 2;
        }
        strcpy(cfg->cookie, cookie);
    } else if (cookie_file) {
        int rc = read_cookie_file(cookie_file, 1, cfg->cookie, sizeof cfg->cookie);
        if (rc == -ENOENT)
            fprintf(stderr, "etsd: cookie file %s does not exist\n", cookie_file);
        if (rc < 0)
            return 2;
    } else if (default_cookie(cfg->cookie, sizeof cfg->cookie) < 0) {
        return 2;
    }
    if ((cfg->dns != NULL) != (cfg->basename != NULL)) {
        fprintf(stderr, "etsd: --dns and --basename go together\n");
        return 2;
    }
    return parse_proto(proto, optfile, host_rule, cfg);
}

/* ---- Checks before the node registers with EPMD ------------------------- */

/* Opens (or creates) the store, so that a data directory etsd cannot use
 * is reported before the node is announced. */
static int store_start(const node_config_t *cfg, store_t **out)
{
    char err[PATH_MAX + 256] = "";   /* it names the file, whole */
    store_fsync_t policy;
    int rc;

    if (!cfg->data_dir)
        return store_new(out);
    policy = cfg->fsync == NODE_FSYNC_NEVER      ? STORE_FSYNC_NEVER
             : cfg->fsync == NODE_FSYNC_PERIODIC ? STORE_FSYNC_PERIODIC
                                                 : STORE_FSYNC_ALWAYS;
    rc = store_open(cfg->data_dir, policy, out, err, sizeof err);
    if (rc < 0)
        fprintf(stderr, "etsd: --data-dir '%s': %s (want a folder etsd can create, "
                "write and lock, with an intact snapshot and log)\n", cfg->data_dir,
                rc == -EBUSY ? "another etsd uses it" : err[0] ? err : uv_strerror(rc));
    else if (err[0])   /* recovered, but cut a torn tail: say what was cut */
        log_warn("store: %s: %s", cfg->data_dir, err);
    return rc;
}

/* The folder that ets:tab2file/file2tab over rpc are confined to:
 * --file-dir, else DATA_DIR/files, created if missing; its real path goes
 * to out ("" when there is neither flag: then both are refused). */
static int file_dir_prepare(const node_config_t *cfg, const main_opts_t *o, char *out,
                            size_t outsz)
{
    char def[PATH_MAX];
    const char *dir = o->file_dir, *flag = "--file-dir";
    struct stat st;

    out[0] = 0;
    if (!dir) {
        if (!cfg->data_dir)
            return 0;
        snprintf(def, sizeof def, "%s/files", cfg->data_dir);
        dir = def;
        flag = "--data-dir";
    }
    if (mkdir(dir, 0750) < 0 && errno != EEXIST) {
        int e = errno;
        fprintf(stderr, "etsd: %s: cannot create the file folder '%s': %s (want a folder "
                "etsd can create and write)\n", flag, dir, strerror(e));
        return -e;
    }
    char real[PATH_MAX];
    if (!realpath(dir, real) || stat(real, &st) < 0 || !S_ISDIR(st.st_mode) ||
        access(real, W_OK | X_OK) < 0 || strlen(real) >= outsz) {
        int e = errno ? errno : ENOTDIR;
        fprintf(stderr, "etsd: %s: the file folder '%s' is not usable: %s (want a folder "
                "etsd can write)\n", flag, dir, strerror(e));
        return -e;
    }
    snprintf(out, outsz, "%s", real);
    return 0;
}

/* ---- Services ------------------------------------------------------------ */

/* What main owns besides the node: the store and the services on it. Each
 * service registers its mailboxes and a node_on_shutdown() hook that closes
 * its handles; main frees them after the loop has ended. */
typedef struct services {
    node_t *node;
    const char *table;     /* the mirrored table's name (for the metrics) */
    store_t *store;
    otprel_t *otprel;
    rpc_exec_t *exec;
    rpc_t *rpc;
    pg_t *pg;
    pubsub_t *pubsub;
    replicate_t *rep;
    cluster_t *cluster;
    metrics_server_t *metrics;
    compact_t *compact;    /* NULL for a memory-only store */
    uv_timer_t flush;      /* --fsync MS: store_flush() on a timer */
    int flush_on;
} services_t;

static void flush_cb(uv_timer_t *t)
{
    services_t *sv = t->data;
    int rc = store_flush(sv->store);
    if (rc < 0)
        log_error("store: flush: %s", uv_strerror(rc));
}

static void services_shutdown_cb(node_t *n, void *data)
{
    services_t *sv = data;
    (void)n;
    (void)sd_notify(0, "STOPPING=1");
    compact_stop(sv->compact);
    if (sv->flush_on) {
        uv_timer_stop(&sv->flush);
        uv_close((uv_handle_t *)&sv->flush, NULL);
        sv->flush_on = 0;
        (void)store_flush(sv->store);
    }
    metrics_server_close(sv->metrics);
    sv->metrics = NULL;
    metrics_loop_close();
}

/* The figures metrics.c shows but does not count itself. */
static void services_gauges_cb(void *arg, metrics_gauges_t *g)
{
    services_t *sv = arg;
    term_buf_t args, out;
    term_reader_t r;
    int64_t words;

    g->peers_up = sv->node ? node_connected(sv->node, NULL, 0) : 0;
    g->log_bytes = store_log_bytes(sv->store);
    store_table_t *t = store_table_find(sv->store, sv->table);
    if (!t)
        return;
    g->table = sv->table;
    g->table_objects = store_table_size(t);
    /* ets:info(T, memory), in words, as rpc callers see it. */
    term_buf_init(&args);
    term_buf_init(&out);
    term_put_list(&args, 2);
    term_put_atom(&args, sv->table);
    term_put_atom(&args, "memory");
    term_put_nil(&args);
    if (!args.err && store_ets_call(sv->store, "info", args.data, args.len, &out) == 0 &&
        !out.err) {
        term_reader_init(&r, out.data, out.len);
        if (term_get_long(&r, &words) == 0 && words > 0)
            g->table_memory_bytes = (uint64_t)words * sizeof(void *);
    }
    term_buf_release(&args);
    term_buf_release(&out);
}

/* etsd:info/0 entries of the cluster services, and metrics => #{...}. */
static int services_info_cb(void *arg, term_buf_t *out, uint32_t *count)
{
    services_t *sv = arg;
    int rc = cluster_info_cb(sv->cluster, out, count);
    if (rc == 0)
        rc = replicate_info_cb(sv->rep, out, count);
    if (rc < 0)
        return rc;
    term_put_atom(out, "metrics");
    rc = metrics_info(out);
    (*count)++;
    return rc;
}

/* etsd:snapshot(): a compaction, answered when it is durable. */
static int snapshot_start_cb(void *arg, rpc_snapshot_done_cb done, void *ctx)
{
    services_t *sv = arg;
    return sv->compact ? compact_request(sv->compact, done, ctx) : -EINVAL;
}

static void snapshot_cancel_cb(void *arg, void *ctx)
{
    services_t *sv = arg;
    compact_cancel(sv->compact, ctx);
}

static void snapshot_cast_done_cb(void *ctx, int rc)
{
    (void)ctx;
    (void)rc; /* the compaction logs its own outcome */
}

/* etsd:snapshot() by rpc:cast (nobody waits): start one and answer ok. */
static int snapshot_cast_cb(void *arg, term_buf_t *out)
{
    services_t *sv = arg;
    int rc = sv->compact ? compact_request(sv->compact, snapshot_cast_done_cb, NULL)
                         : -EINVAL;
    if (rc == 0) {
        term_put_atom(out, "ok");
    } else {
        term_put_tuple(out, 2);
        term_put_atom(out, "error");
        term_put_atom(out, rc == -EINVAL ? "no_data_dir" : "eio");
    }
    return 0;
}

/* Starts the services on the open store in dependency order: rpc, then
 * the pg scope, the PubSub adapter on it, replication on both, and
 * discovery last so no connection it makes finds a service missing. */
static int services_start(node_t *n, const node_config_t *cfg, const char *file_dir,
                          services_t *sv)
{
    store_table_t *t;
    int rc;

    sv->node = n;
    sv->table = cfg->table;
    t = store_table_find(sv->store, cfg->table);
    if (t)
        log_info("store: %s has %zu objects", cfg->table, store_table_size(t));
    if ((rc = otprel_new(n, sv->store, otp_release_flag, &sv->otprel)) < 0)
        return rc;
    if ((rc = rpc_exec_new(sv->store, node_name(n), ETSD_VERSION, &sv->exec)) < 0 ||
        (rc = rpc_exec_set_file_dir(sv->exec, file_dir[0] ? file_dir : NULL)) < 0 ||
        (rc = rpc_new(n, sv->exec, &sv->rpc)) < 0)
        return rc;
    if ((rc = pg_new(n, PG_SCOPE_PHOENIX, &sv->pg)) < 0 ||
        (rc = pubsub_new(n, sv->pg, cfg->pubsub, cfg->pool_size, &sv->pubsub)) < 0 ||
        (rc = replicate_new(n, sv->pg, sv->pubsub, sv->store, &sv->rep)) < 0)
        return rc;
    if (cfg->data_dir) {
        if ((rc = compact_new(node_loop(n), sv->store, opt_compact_at, &sv->compact)) < 0)
            return rc;
        rpc_snapshot_hook_t hook = { snapshot_start_cb, snapshot_cancel_cb, sv };
        rpc_set_snapshot_hook(sv->rpc, &hook);
        rpc_exec_set_snapshot_cb(sv->exec, snapshot_cast_cb, sv);
    }
    rpc_exec_set_insert_cb(sv->exec, replicate_insert_cb, sv->rep);
    rpc_exec_set_sync_cb(sv->exec, replicate_sync_cb, sv->rep);
    if ((rc = cluster_new(n, 0, &sv->cluster)) < 0)
        return rc;
    rpc_exec_set_nodes_cb(sv->exec, cluster_nodes_cb, sv->cluster);
    rpc_exec_set_info_cb(sv->exec, services_info_cb, sv);
    if (cfg->data_dir && cfg->fsync == NODE_FSYNC_PERIODIC) {
        uv_timer_init(node_loop(n), &sv->flush);
        sv->flush.data = sv;
        uv_timer_start(&sv->flush, flush_cb, cfg->fsync_ms, cfg->fsync_ms);
        sv->flush_on = 1;
    }
    return node_on_shutdown(n, services_shutdown_cb, sv);
}

/* After the loop has ended: services first, the store they use last. */
static void services_free(services_t *sv)
{
    metrics_set_gauges_cb(NULL, NULL);
    cluster_free(sv->cluster);
    replicate_free(sv->rep);
    pubsub_free(sv->pubsub);
    pg_free(sv->pg);
    rpc_free(sv->rpc);
    rpc_exec_free(sv->exec);
    otprel_free(sv->otprel);
    compact_free(sv->compact);
    store_free(sv->store);
}

int main(int argc, char **argv)
{
    node_config_t cfg;
    main_opts_t opts;
    char file_dir[PATH_MAX];
    int rc = parse_args(argc, argv, &cfg, &opts);
    if (rc == 1)
        return 0;
    if (rc != 0) {
        tls_ctx_free(cfg.tls);
        return 2;
    }
    log_set_level(cfg.log_level);

    uv_loop_t loop;
    if ((rc = uv_loop_init(&loop)) < 0) {
        log_error("uv_loop_init: %s", uv_strerror(rc));
        return 1;
    }
    /* metrics.c's loop-turn watch subtracts the time spent in poll. */
    (void)uv_loop_configure(&loop, UV_METRICS_IDLE_TIME);
    node_t *n = NULL;
    loop_sig_t *sig = NULL;
    services_t sv = {0};

    /* Everything that can fail on the command line's values fails here,
     * before the node registers with EPMD and peers see it up. */
    store_set_node(cfg.name);
    store_set_sync_observer(metrics_fsync_observe);
    if (store_start(&cfg, &sv.store) < 0 ||
        file_dir_prepare(&cfg, &opts, file_dir, sizeof file_dir) < 0) {
        rc = 2;
        goto fail_early;
    }
    metrics_set_gauges_cb(services_gauges_cb, &sv);
    if (opts.metrics &&
        (rc = metrics_server_start(&loop, (struct sockaddr *)&opts.metrics_addr,
                                   &sv.metrics)) < 0) {
        fprintf(stderr, "etsd: --metrics-port: cannot listen: %s (want a free port on "
                "an address of this machine)\n", uv_strerror(rc));
        rc = 2;
        goto fail_early;
    }
    if ((rc = metrics_loop_start(&loop)) < 0) {
        log_error("metrics: %s", uv_strerror(rc));
        rc = 1;
        goto fail_early;
    }

    rc = node_new(&loop, &cfg, &n);
    if (rc < 0) {
        log_error("cannot start node %s: %s", cfg.name, uv_strerror(rc));
        rc = 1;
        goto fail_early;
    }
    rc = loop_signals_start(&loop, n, &sig);
    if (rc < 0) {
        log_error("signals: %s", uv_strerror(rc));
        goto fail_node;
    }
    rc = services_start(n, &cfg, file_dir, &sv);
    if (rc < 0) {
        log_error("cannot start services: %s", uv_strerror(rc));
        goto fail_node;
    }
    /* systemd's Type=notify: registered with EPMD, services listening. */
    (void)sd_notifyf(0, "READY=1\nSTATUS=running as %s", cfg.name);
    uv_run(&loop, UV_RUN_DEFAULT);
    loop_signals_free(sig);
    services_free(&sv);
    node_free(n);
    uv_loop_close(&loop);
    tls_ctx_free(cfg.tls);
    log_info("etsd stopped");
    return 0;

fail_node:
    node_stop(n);
    metrics_server_close(sv.metrics);
    metrics_loop_close();
    loop_signals_free(sig);
    uv_run(&loop, UV_RUN_DEFAULT);
    services_free(&sv);
    node_free(n);
    uv_loop_close(&loop);
    tls_ctx_free(cfg.tls);
    return 1;

fail_early:
    metrics_server_close(sv.metrics);
    metrics_loop_close();
    uv_run(&loop, UV_RUN_DEFAULT);
    services_free(&sv);
    uv_loop_close(&loop);
    tls_ctx_free(cfg.tls);
    return rc;
}
