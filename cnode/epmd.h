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
 * registration lives as long as it does. When EPMD closes it (restart),
 * registers again every second until it succeeds. On success *out lives
 * until epmd_unregister(). */
int epmd_register(uv_loop_t *loop, const char *alive, uint16_t port, epmd_reg_cb cb,
                  void *data, epmd_reg_t **out);

/* Closes the registration (EPMD forgets the name) and frees r once its
 * handles are closed. No callback runs after this. NULL is a no-op. */
void epmd_unregister(epmd_reg_t *r);

/* status 0 and the port and address (port not set) of the node's host, or
 * a negative errno: -ENOENT when EPMD does not know the name. */
typedef void (*epmd_port_cb)(int status, uint16_t port, const struct sockaddr *addr,
                             void *data);

/* PORT_PLEASE2 for alive at host's EPMD. cb runs exactly once, on a later
 * loop turn, unless this returns an error. */
int epmd_port_please(uv_loop_t *loop, const char *host, const char *alive,
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

#endif
