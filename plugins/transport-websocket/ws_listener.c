/* The listening socket. It is ours, not libwebsockets': lws 4.1 cannot close a listener while
 * keeping its connections (lws_context_deprecate even raises SIGINT once the last one leaves),
 * cannot hand a bound socket to a new context on reload, and binds every interface unless
 * told otherwise. So we bind exactly the configured address, accept here, and adopt each
 * accepted socket into the lws vhost. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "net_accept.h"
#include "net_listen.h"
#include "ws.h"

#define ACCEPTS_PER_WAKEUP 64

/* A connection from the accept loop (plugins/common/net_accept.c). */
static void adopt(void *arg, int fd)
{
    struct ws_server *srv = arg;
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

/* Accept on `fd` for `srv` (the socket is closed with the acceptor unless handed on). On
 * failure the fd is left to the caller. */
static int watch(struct ws_server *srv, int fd, struct arq_error *err)
{
    srv->listener =
        arq_net_accept_start(srv->host, srv->ctx, fd, 1, ACCEPTS_PER_WAKEUP, adopt, srv, err);
    return srv->listener ? 0 : ARQ_EIO;
}

/* Stop accepting; the fd is closed with the acceptor when `keep_fd` is 0. */
static void unwatch(struct ws_server *srv, int keep_fd)
{
    arq_net_accept_close(srv->listener, keep_fd);
    srv->listener = NULL;
}

int ws_listener__open(struct ws_server *srv, struct arq_error *err)
{
    const struct ws_config *c = &srv->cfg;
    struct sockaddr_storage ss;
    int fd =
        arq_net_listen(&c->addr, c->addr_len, c->host, c->port, ARQ_NET_LISTEN_STEPWISE, &ss, err);
    if (fd < 0)
        return ARQ_EIO;
    if (watch(srv, fd, err) != 0) {
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
    struct arq_net_acceptor *old = pred->listener;
    /* libuv allows one watcher per fd: the predecessor's goes quiet first, and resumes if
     * ours cannot be set up. */
    arq_net_accept_pause(old);
    if (watch(srv, arq_net_accept_fd(old), err) != 0) {
        arq_net_accept_resume(old);
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
    int fd = srv->listener ? arq_net_accept_fd(srv->listener) : -1;
    if (fd < 0 || pred->listener) {
        ws_listener__close(srv);
        return;
    }
    arq_net_accept_pause(srv->listener);
    if (watch(pred, fd, &err) != 0) {
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
