/* Accepting connections on a listening socket, shared by the plugins that own their listening
 * socket and adopt what they accept (transport-websocket, telemetry-websocket).
 *
 * A uv_poll watches the socket; each time it is readable, up to `per_wakeup` connections are
 * accepted (so one busy listener cannot hold the loop), each one non-blocking, close-on-exec and
 * with TCP_NODELAY (frames are coalesced before they are written: Nagle would only add
 * latency), and handed to the caller. A connection aborted before it was accepted is skipped.
 * When accept fails otherwise, above all for want of descriptors or memory (EMFILE, ENFILE,
 * ENOBUFS, ENOMEM), the connection stays queued and the socket stays readable: instead of
 * spinning, the acceptor stops watching, logs a warning and tries again after
 * ARQ_NET_ACCEPT_BACKOFF_MS on a host timer of the instance.
 *
 * Static library linked into each plugin that needs it; loop thread only; no global state. */
#ifndef ARQ_PLUGINS_NET_ACCEPT_H
#define ARQ_PLUGINS_NET_ACCEPT_H

#include <arqonbus/plugin.h>

#define ARQ_NET_ACCEPT_BACKOFF_MS 100

struct arq_net_acceptor;

/* A new connection: `fd` belongs to the callee from now on (adopt it or close it). */
typedef void (*arq_net_accept_cb)(void *arg, int fd);

/* Watch the listening socket `fd` for instance `ctx` (its loop, timers and log) and call
 * `cb(arg, fd)` for each connection. The acceptor closes `fd` with itself when `owns_fd`.
 * Returns NULL with `err` set when the socket cannot be watched; `fd` is then left to the
 * caller. */
struct arq_net_acceptor *arq_net_accept_start(const struct arq_host *host, arq_ctx *ctx, int fd,
                                              int owns_fd, unsigned per_wakeup,
                                              arq_net_accept_cb cb, void *arg,
                                              struct arq_error *err);

/* The listening socket. */
int arq_net_accept_fd(const struct arq_net_acceptor *a);

/* Stop watching until arq_net_accept_resume(): libuv lets one handle watch a descriptor, so an
 * acceptor pauses while another for the same socket is started (a successor on reload). */
void arq_net_accept_pause(struct arq_net_acceptor *a);
/* Watch again (once a back-off under way has ended). */
void arq_net_accept_resume(struct arq_net_acceptor *a);

/* Stop for good and free the acceptor (its memory once libuv has closed the handle). The
 * socket is closed then too when the acceptor owns it and `keep_fd` is 0. NULL is allowed. */
void arq_net_accept_close(struct arq_net_acceptor *a, int keep_fd);

#endif
