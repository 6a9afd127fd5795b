/* The listening socket. It is ours, not libwebsockets': lws 4.1 cannot close a listener while
 * keeping its connections (lws_context_deprecate even raises SIGINT once the last one leaves),
 * cannot hand a bound socket to a new context on reload, and binds every interface unless
 * told otherwise. So we bind exactly the configured address, accept here, and adopt each
 * accepted socket into the lws vhost. */
#define _GNU_SOURCE /* accept4 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "net_listen.h"
#include "ws.h"

#define ACCEPTS_PER_WAKEUP 64
#define BACKOFF_MS         100 /* pause after EMFILE and friends, instead of spinning */

struct ws_listener {
    uv_poll_t poll;
    int fd;
    int owns_fd; /* closed with the handle unless it went to a successor */
    struct ws_server *srv;
    arq_timer *backoff;
};

static void listener_closed(uv_handle_t *h)
{
    struct ws_listener *l = h->data;
    if (l->owns_fd && l->fd >= 0)
        close(l->fd);
    free(l);
}

static void adopt(struct ws_server *srv, int fd)
{
    int one = 1;
    /* Frames are coalesced before they are written: Nagle would only add latency. */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    /* A plain request head is read and checked first; lws reads a TLS one itself. */
    if (!srv->cfg.tls_cert) {
        ws_head__start(srv, fd);
        return;
    }
    lws_sock_file_fd_type sock = {.sockfd = fd};
    lws_adoption_type type = LWS_ADOPT_SOCKET | LWS_ADOPT_HTTP | LWS_ADOPT_ALLOW_SSL;
    /* On failure lws has closed the socket already. */
    if (!lws_adopt_descriptor_vhost(srv->vhost, type, sock, NULL, NULL))
        ARQ_LOG(srv->host, srv->ctx, ARQ_LOG_DEBUG, "connection dropped", "reason",
                "libwebsockets could not adopt the socket");
}

static void on_backoff(void *arg);

static void on_readable(uv_poll_t *h, int status, int events)
{
    (void)events;
    struct ws_listener *l = h->data;
    struct ws_server *srv = l->srv;
    if (status < 0) {
        ARQ_LOG(srv->host, srv->ctx, ARQ_LOG_WARN, "listener error", "error", uv_strerror(status));
        return;
    }
    for (int i = 0; i < ACCEPTS_PER_WAKEUP; i++) {
        int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            adopt(srv, fd);
            continue;
        }
        if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return;
        /* Out of descriptors or memory: the pending connection stays queued and the socket
         * stays readable, so stop watching it for a moment rather than spin. */
        ARQ_LOG(srv->host, srv->ctx, ARQ_LOG_WARN, "cannot accept", "error", strerror(errno),
                "retry_ms", "100");
        if (!l->backoff) {
            uv_poll_stop(&l->poll);
            l->backoff = srv->host->timer_start(srv->ctx, BACKOFF_MS, 0, on_backoff, l);
        }
        return;
    }
}

static void on_backoff(void *arg)
{
    struct ws_listener *l = arg;
    struct ws_server *srv = l->srv;
    srv->host->timer_stop(l->backoff);
    l->backoff = NULL;
    uv_poll_start(&l->poll, UV_READABLE, on_readable);
}

/* Watch `fd` for `srv`. On failure the fd is left to the caller. */
static int watch(struct ws_server *srv, int fd, int owns_fd, struct arq_error *err)
{
    struct ws_listener *l = calloc(1, sizeof *l);
    if (!l)
        return arq_error_set(err, ARQ_ENOMEM, "out of memory");
    int rc = uv_poll_init_socket(srv->host->uv_loop(srv->ctx), &l->poll, fd);
    if (rc != 0) {
        free(l);
        return arq_error_set(err, ARQ_EIO, "cannot watch the listening socket: %s",
                             uv_strerror(rc));
    }
    l->poll.data = l;
    l->fd = fd;
    l->owns_fd = owns_fd;
    l->srv = srv;
    uv_poll_start(&l->poll, UV_READABLE, on_readable);
    srv->listener = l;
    return 0;
}

/* Stop watching; the fd is closed with the handle when `keep_fd` is 0. */
static int unwatch(struct ws_server *srv, int keep_fd)
{
    struct ws_listener *l = srv->listener;
    if (!l)
        return -1;
    int fd = l->fd;
    if (l->backoff)
        srv->host->timer_stop(l->backoff);
    l->backoff = NULL;
    if (keep_fd)
        l->owns_fd = 0;
    uv_poll_stop(&l->poll);
    uv_close((uv_handle_t *)&l->poll, listener_closed);
    srv->listener = NULL;
    return fd;
}

int ws_listener__open(struct ws_server *srv, struct arq_error *err)
{
    const struct ws_config *c = &srv->cfg;
    struct sockaddr_storage ss;
    int fd =
        arq_net_listen(&c->addr, c->addr_len, c->host, c->port, ARQ_NET_LISTEN_STEPWISE, &ss, err);
    if (fd < 0)
        return ARQ_EIO;
    if (watch(srv, fd, 1, err) != 0) {
        close(fd);
        return ARQ_EIO;
    }
    arq_net_describe(&ss, srv->bound_addr, sizeof srv->bound_addr, &srv->bound_port);
    return 0;
}

/* The predecessor's socket serves `srv` when it is bound to the same IP and to the port asked
 * for (a port of 0 accepts whichever the predecessor got). */
static int reusable(const struct ws_server *srv, const struct ws_server *pred)
{
    const struct sockaddr_storage *a = &srv->cfg.addr, *b = &pred->cfg.addr;
    if (a->ss_family != b->ss_family || (srv->cfg.port && srv->cfg.port != pred->bound_port))
        return 0;
    if (a->ss_family == AF_INET)
        return ((const struct sockaddr_in *)a)->sin_addr.s_addr ==
               ((const struct sockaddr_in *)b)->sin_addr.s_addr;
    return memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr,
                  &((const struct sockaddr_in6 *)b)->sin6_addr, sizeof(struct in6_addr)) == 0;
}

int ws_listener__take_over(struct ws_server *srv, struct ws_server *pred, struct arq_error *err)
{
    if (!pred->listener || !reusable(srv, pred))
        return 0;
    struct ws_listener *old = pred->listener;
    /* libuv allows one watcher per fd: the predecessor's goes quiet first, and resumes if
     * ours cannot be set up. */
    uv_poll_stop(&old->poll);
    if (watch(srv, old->fd, 1, err) != 0) {
        if (!old->backoff)
            uv_poll_start(&old->poll, UV_READABLE, on_readable);
        return ARQ_EIO;
    }
    unwatch(pred, 1);
    srv->bound_port = pred->bound_port;
    memcpy(srv->bound_addr, pred->bound_addr, sizeof srv->bound_addr);
    srv->predecessor = pred;
    pred->successor = srv;
    return 1;
}

void ws_listener__give_back(struct ws_server *srv)
{
    struct ws_server *pred = srv->predecessor;
    struct arq_error err;
    int fd = srv->listener ? srv->listener->fd : -1;
    if (fd < 0 || pred->listener) {
        ws_listener__close(srv);
        return;
    }
    uv_poll_stop(&srv->listener->poll);
    if (watch(pred, fd, 1, &err) != 0) {
        ARQ_LOG(pred->host, pred->ctx, ARQ_LOG_ERROR, "listener lost", "error", err.text);
        ws_listener__close(srv);
        return;
    }
    unwatch(srv, 1);
    pred->successor = NULL;
    srv->predecessor = NULL;
    char port[16];
    snprintf(port, sizeof port, "%d", pred->bound_port);
    ARQ_LOG(pred->host, pred->ctx, ARQ_LOG_INFO, "listening", "addr", pred->bound_addr, "port",
            port, "listener", "returned");
}

void ws_listener__close(struct ws_server *srv)
{
    unwatch(srv, 0);
}
