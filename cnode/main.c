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

#include "cnode/log.h"
#include "cnode/loop.h"
#include "cnode/cluster.h"
#include "cnode/node.h"
#include "cnode/pg.h"
#include "cnode/pubsub.h"
#include "cnode/replicate.h"
#include "cnode/rpc.h"
#include "cnode/rpc_exec.h"
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
    "  --port N                         listen port (0: any)\n"
    "  --net-ticktime S --log-level L   error|warn|info|debug\n"
    "  --max-frame BYTES --max-queue BYTES  incoming frame and per-peer\n"
    "                                   outgoing queue limits\n";

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

static int parse_uint(const char *opt, const char *v, unsigned long long max,
                      unsigned long long *out)
{
    char *e;
    errno = 0;
    unsigned long long x = strtoull(v, &e, 10);
    if (errno || *e || e == v || v[0] == '-' || x > max) {
        fprintf(stderr, "etsd: %s: bad number '%s'\n", opt, v);
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

/* Returns 0 to run, 1 for --help/--version done, 2 for a usage error. */
static int parse_args(int argc, char **argv, node_config_t *cfg)
{
    const char *name = NULL, *sname = NULL, *cookie = NULL, *cookie_file = NULL;
    node_config_defaults(cfg);
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
            "--port", "--net-ticktime", "--log-level", "--max-frame", "--max-queue", NULL};
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
            if (parse_uint(arg, val, 1u << 24, &u) < 0 || u == 0)
                return 2;
            cfg->keypos = (unsigned)u;
        } else if (strcmp(arg, "--pubsub") == 0) {
            cfg->pubsub = val;
        } else if (strcmp(arg, "--pool-size") == 0) {
            if (parse_uint(arg, val, 1024, &u) < 0 || u == 0)
                return 2;
            cfg->pool_size = (unsigned)u;
        } else if (strcmp(arg, "--topic-new") == 0) {
            cfg->topic_new = val;
        } else if (strcmp(arg, "--topic-sync") == 0) {
            cfg->topic_sync = val;
        } else if (strcmp(arg, "--sync-delay-ms") == 0) {
            if (parse_uint(arg, val, 86400000, &u) < 0)
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
                if (parse_uint(arg, val, 3600000, &u) < 0 || u == 0)
                    return 2;
                cfg->fsync = NODE_FSYNC_PERIODIC;
                cfg->fsync_ms = (unsigned)u;
            }
        } else if (strcmp(arg, "--port") == 0) {
            if (parse_uint(arg, val, 65535, &u) < 0)
                return 2;
            cfg->port = (int)u;
        } else if (strcmp(arg, "--net-ticktime") == 0) {
            if (parse_uint(arg, val, 3600, &u) < 0 || u == 0)
                return 2;
            cfg->net_ticktime = (unsigned)u;
        } else if (strcmp(arg, "--log-level") == 0) {
            if (log_parse_level(val, &cfg->log_level) < 0) {
                fprintf(stderr, "etsd: --log-level: want error, warn, info or debug\n");
                return 2;
            }
        } else if (strcmp(arg, "--max-frame") == 0) {
            if (parse_uint(arg, val, UINT32_MAX, &u) < 0 || u < 1024)
                return 2;
            cfg->max_frame = u;
        } else if (strcmp(arg, "--max-queue") == 0) {
            if (parse_uint(arg, val, 1ULL << 40, &u) < 0 || u < 1024)
                return 2;
            cfg->max_queue = u;
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
    return 0;
}

/* ---- Services ------------------------------------------------------------ */

/* What main owns besides the node: the store and the services on it. Each
 * service registers its mailboxes and a node_on_shutdown() hook that closes
 * its handles; main frees them after the loop has ended. */
typedef struct services {
    store_t *store;
    rpc_exec_t *exec;
    rpc_t *rpc;
    pg_t *pg;
    pubsub_t *pubsub;
    replicate_t *rep;
    cluster_t *cluster;
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
    if (sv->flush_on) {
        uv_timer_stop(&sv->flush);
        uv_close((uv_handle_t *)&sv->flush, NULL);
        sv->flush_on = 0;
        (void)store_flush(sv->store);
    }
}

/* etsd:info/0 entries of the cluster services. */
static int services_info_cb(void *arg, term_buf_t *out, uint32_t *count)
{
    services_t *sv = arg;
    int rc = cluster_info_cb(sv->cluster, out, count);
    return rc < 0 ? rc : replicate_info_cb(sv->rep, out, count);
}

static int store_start(const node_config_t *cfg, services_t *sv)
{
    char err[256] = "";
    store_fsync_t policy;
    int rc;

    if (!cfg->data_dir)
        return store_new(&sv->store);
    policy = cfg->fsync == NODE_FSYNC_NEVER      ? STORE_FSYNC_NEVER
             : cfg->fsync == NODE_FSYNC_PERIODIC ? STORE_FSYNC_PERIODIC
                                                 : STORE_FSYNC_ALWAYS;
    rc = store_open(cfg->data_dir, policy, &sv->store, err, sizeof err);
    if (rc < 0)
        log_error("store: %s: %s%s%s", cfg->data_dir, uv_strerror(rc),
                  err[0] ? ": " : "", err);
    else if (err[0])   /* recovered, but cut a torn tail: say what was cut */
        log_warn("store: %s: %s", cfg->data_dir, err);
    return rc;
}

/* Starts the store and the services in dependency order: rpc, then the pg
 * scope, the PubSub adapter on it, replication on both, and discovery last
 * so no connection it makes finds a service missing. */
static int services_start(node_t *n, const node_config_t *cfg, services_t *sv)
{
    store_table_t *t;
    int rc;

    /* ets:info(T, node) and node() in match specs answer etsd's name. */
    store_set_node(node_name(n));
    if ((rc = store_start(cfg, sv)) < 0)
        return rc;
    t = store_table_find(sv->store, cfg->table);
    if (t)
        log_info("store: %s has %zu objects", cfg->table, store_table_size(t));
    if ((rc = rpc_exec_new(sv->store, node_name(n), ETSD_VERSION, &sv->exec)) < 0 ||
        (rc = rpc_new(n, sv->exec, &sv->rpc)) < 0)
        return rc;
    if ((rc = pg_new(n, PG_SCOPE_PHOENIX, &sv->pg)) < 0 ||
        (rc = pubsub_new(n, sv->pg, cfg->pubsub, cfg->pool_size, &sv->pubsub)) < 0 ||
        (rc = replicate_new(n, sv->pg, sv->pubsub, sv->store, &sv->rep)) < 0)
        return rc;
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
    cluster_free(sv->cluster);
    replicate_free(sv->rep);
    pubsub_free(sv->pubsub);
    pg_free(sv->pg);
    rpc_free(sv->rpc);
    rpc_exec_free(sv->exec);
    store_free(sv->store);
}

int main(int argc, char **argv)
{
    node_config_t cfg;
    int rc = parse_args(argc, argv, &cfg);
    if (rc == 1)
        return 0;
    if (rc != 0)
        return 2;
    log_set_level(cfg.log_level);

    uv_loop_t loop;
    if ((rc = uv_loop_init(&loop)) < 0) {
        log_error("uv_loop_init: %s", uv_strerror(rc));
        return 1;
    }
    node_t *n = NULL;
    loop_sig_t *sig = NULL;
    services_t sv = {0};
    rc = node_new(&loop, &cfg, &n);
    if (rc < 0) {
        log_error("cannot start node %s: %s", cfg.name, uv_strerror(rc));
        goto fail_loop;
    }
    rc = loop_signals_start(&loop, n, &sig);
    if (rc < 0) {
        log_error("signals: %s", uv_strerror(rc));
        goto fail_node;
    }
    rc = services_start(n, &cfg, &sv);
    if (rc < 0) {
        log_error("cannot start services: %s", uv_strerror(rc));
        goto fail_node;
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    loop_signals_free(sig);
    services_free(&sv);
    node_free(n);
    uv_loop_close(&loop);
    log_info("etsd stopped");
    return 0;

fail_node:
    node_stop(n);
    loop_signals_free(sig);
    uv_run(&loop, UV_RUN_DEFAULT);
    services_free(&sv);
    node_free(n);
fail_loop:
    uv_loop_close(&loop);
    return 1;
}
