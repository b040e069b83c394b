/* ei_client.c: a plain erl_interface C node, as users write them, for the
 * membership suite: it connects to a node with ei_connect, listens for
 * anything sent to it unasked, calls erlang:node/0 and erlang:nodes/0
 * with ei_rpc, and has etsd_echo send a message back.
 *
 *   ei_client ALIVE COOKIE NODE QUIET_MS
 *
 * Its own name is ALIVE@127.0.0.1. It waits QUIET_MS after connecting and
 * fails if any message arrives meanwhile (a BEAM node sends a hidden peer
 * nothing unasked). Prints one line per step; exits 0 when every step
 * worked, else 1. */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ei.h"

/* Prints term bytes (with or without the version byte) as text. */
static void print_term(const char *what, const char *buf, int len)
{
    int i = 0, v;
    char *s = NULL;
    if (ei_decode_version(buf, &i, &v) < 0)
        i = 0;
    if (i < len && ei_s_print_term(&s, buf, &i) >= 0)
        printf("%s: %s\n", what, s);
    else
        printf("%s: (undecodable, %d bytes)\n", what, len);
    free(s);
}

/* ei_rpc M:F() with no arguments; the reply's text goes to out. */
static int rpc0(ei_cnode *ec, int fd, char *m, char *f, char *out, size_t outsz)
{
    ei_x_buff args, res;
    int rc, i = 0, v;
    char *s = NULL;

    ei_x_new(&args);
    ei_x_encode_empty_list(&args);
    ei_x_new(&res);
    rc = ei_rpc(ec, fd, m, f, args.buff, args.index, &res);
    if (rc >= 0) {
        if (ei_decode_version(res.buff, &i, &v) < 0)
            i = 0;
        if (ei_s_print_term(&s, res.buff, &i) < 0)
            rc = -1;
        else
            snprintf(out, outsz, "%s", s);
        free(s);
    }
    ei_x_free(&args);
    ei_x_free(&res);
    return rc;
}

int main(int argc, char **argv)
{
    ei_cnode ec;
    char self[256], reply[1024];
    struct in_addr ip;
    int fd, ok = 1;
    unsigned quiet_ms;

    if (argc != 5) {
        fprintf(stderr, "usage: ei_client ALIVE COOKIE NODE QUIET_MS\n");
        return 2;
    }
    quiet_ms = (unsigned)strtoul(argv[4], NULL, 10);
    snprintf(self, sizeof self, "%s@127.0.0.1", argv[1]);
    inet_aton("127.0.0.1", &ip);
    if (ei_init() != 0 ||
        ei_connect_xinit(&ec, "127.0.0.1", argv[1], self, (Erl_IpAddr)&ip, argv[2], 0) < 0) {
        printf("init: failed\n");
        return 1;
    }
    fd = ei_connect_tmo(&ec, argv[3], 5000);
    if (fd < 0) {
        printf("connect: failed (%d)\n", fd);
        return 1;
    }
    printf("connect: ok\n");

    /* Nothing may arrive unasked: no pg discover, no rex call. */
    for (;;) {
        erlang_msg msg;
        ei_x_buff x;
        ei_x_new(&x);
        int rc = ei_xreceive_msg_tmo(fd, &msg, &x, quiet_ms);
        if (rc == ERL_TICK) {
            ei_x_free(&x);
            continue;
        }
        if (rc == ERL_MSG) {
            print_term("unasked", x.buff, x.index);
            ok = 0;
            ei_x_free(&x);
            continue;
        }
        ei_x_free(&x);
        break; /* timed out: quiet */
    }
    printf("quiet: %s\n", ok ? "ok" : "no");

    if (rpc0(&ec, fd, "erlang", "node", reply, sizeof reply) < 0) {
        printf("rpc node: failed\n");
        ok = 0;
    } else {
        printf("rpc node: %s\n", reply);
    }
    if (rpc0(&ec, fd, "erlang", "nodes", reply, sizeof reply) < 0) {
        printf("rpc nodes: failed\n");
        ok = 0;
    } else {
        printf("rpc nodes: %s\n", reply);
    }

    /* {self(), hello_from_ei} to etsd_echo comes back as hello_from_ei. */
    {
        ei_x_buff x;
        erlang_msg msg;
        int rc;
        ei_x_new_with_version(&x);
        ei_x_encode_tuple_header(&x, 2);
        ei_x_encode_pid(&x, ei_self(&ec));
        ei_x_encode_atom(&x, "hello_from_ei");
        rc = ei_reg_send(&ec, fd, "etsd_echo", x.buff, x.index);
        ei_x_free(&x);
        if (rc < 0) {
            printf("echo: send failed\n");
            ok = 0;
        } else {
            for (;;) {
                ei_x_new(&x);
                rc = ei_xreceive_msg_tmo(fd, &msg, &x, 5000);
                if (rc == ERL_TICK) {
                    ei_x_free(&x);
                    continue;
                }
                if (rc == ERL_MSG)
                    print_term("echo", x.buff, x.index);
                else {
                    printf("echo: nothing came back\n");
                    ok = 0;
                }
                ei_x_free(&x);
                break;
            }
        }
    }
    ei_close_connection(fd);
    printf("result: %s\n", ok ? "ok" : "failed");
    return ok ? 0 : 1;
}
