/* epmd.h: the EPMD client on libuv: keep this node registered, and look up
 * the port of another node. Message codecs are in cnode_int.h. */
#ifndef ETSD_EPMD_H
#define ETSD_EPMD_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct epmd_reg epmd_reg_t;

/* status 0 with the creation EPMD gave, or a negative errno (-EADDRINUSE
 * when the name is taken). Runs again after each re-registration. */
typedef void (*epmd_reg_cb)(epmd_reg_t *r, int status, uint32_t creation, void *data);

/* Registers alive (the part before @) with listen port at the local EPMD
 * (ERL_EPMD_PORT or 4369) as a hidden node, and keeps the socket open: the
 * registration lives as long as it does. family is AF_INET (EPMD at
 * 127.0.0.1) or AF_INET6 (at ::1, as erl_epmd does for inet6_tcp). When
 * EPMD closes it (restart), registers again every second until it
 * succeeds. On success *out lives until epmd_unregister(). */
int epmd_register(uv_loop_t *loop, const char *alive, uint16_t port, int family,
                  epmd_reg_cb cb, void *data, epmd_reg_t **out);

/* Closes the registration (EPMD forgets the name) and frees r once its
 * handles are closed. No callback runs after this. NULL is a no-op. */
void epmd_unregister(epmd_reg_t *r);

/* status 0 and the port and address (port not set) of the node's host, or
 * a negative errno: -ENOENT when EPMD does not know the name. */
typedef void (*epmd_port_cb)(int status, uint16_t port, const struct sockaddr *addr,
                             void *data);

/* PORT_PLEASE2 for alive at host's EPMD. host (a name or an IP literal)
 * is resolved in family, AF_INET or AF_INET6 (A or AAAA records), and
 * EPMD is asked over that family, as erl_epmd does for inet_tcp and
 * inet6_tcp. cb runs exactly once, on a later loop turn, unless this
 * returns an error (-EAFNOSUPPORT for another family). */
int epmd_port_please(uv_loop_t *loop, const char *host, const char *alive, int family,
                     epmd_port_cb cb, void *data);

/* status 0 and the nodes EPMD lists (names without host, and ports), or
 * a negative errno. The arrays are valid during the call only. */
typedef void (*epmd_names_cb)(int status, const char *const *names, const int *ports,
                              size_t count, void *data);

/* NAMES_REQ to the EPMD at epmd (NULL: the local one, ERL_EPMD_PORT or
 * 4369). cb runs exactly once, on a later loop turn, unless this returns
 * an error. */
struct sockaddr_in;
int epmd_names(uv_loop_t *loop, const struct sockaddr_in *epmd, epmd_names_cb cb,
               void *data);

/* net_kernel's rule for the host part of a node name (inet_tcp_dist
 * splitnode/3): with long names a host without a dot must be an IP
 * address of family (so x@localhost is illegal, x@::1 needs AF_INET6);
 * with short names a host with a dot is illegal. 0 or -EINVAL. */
int epmd_check_host(const char *host, int longnames, int family);

#endif
