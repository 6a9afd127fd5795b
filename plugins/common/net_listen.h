/* Listening sockets shared by the listener plugins (transport-http, transport-websocket,
 * telemetry-websocket): a numeric host and a port made into a socket address, and a socket
 * bound exactly to it and listening. The error texts are the plugins' own (tests assert them).
 *
 * Static library linked into each plugin that needs it; no global state. */
#ifndef ARQ_PLUGINS_NET_LISTEN_H
#define ARQ_PLUGINS_NET_LISTEN_H

#include <arqonbus/plugin.h>
#include <stddef.h>
#include <sys/socket.h>

/* `host` (numeric IPv4 or IPv6, or "[v6]" as in URLs) and `port` into *addr / *addr_len.
 * 0, or ARQ_EINVAL with `err` set. */
int arq_net_parse_address(const char *host, int port, struct sockaddr_storage *addr,
                          socklen_t *addr_len, struct arq_error *err);

/* Report listen() and getsockname() failures apart from bind()'s (transport-websocket's
 * messages); without it all three read "cannot listen on ...". */
#define ARQ_NET_LISTEN_STEPWISE 1

/* A non-blocking, close-on-exec stream socket bound exactly to `addr` (SO_REUSEADDR; an IPv6
 * address is IPv6 only) and listening. `host` and `port` are the configured ones, for the
 * error text. Returns the descriptor with the bound address in *bound, or ARQ_EIO with `err`
 * set (nothing left open). */
int arq_net_listen(const struct sockaddr_storage *addr, socklen_t addr_len, const char *host,
                   int port, unsigned flags, struct sockaddr_storage *bound, struct arq_error *err);

/* The numeric address of `ss` into `text` ("?" if it cannot be written) and its port. */
void arq_net_describe(const struct sockaddr_storage *ss, char *text, size_t size, int *port);

#endif
