/* The listening socket and libmicrohttpd on the host's loop. The daemon runs in external mode
 * with epoll: its epoll descriptor is watched with a uv_poll, its next deadline
 * (MHD_get_timeout) with a uv timer, and both call MHD_run. So every request is handled on the
 * loop thread, where the bus services may be called.
 *
 * The socket is bound here, not by libmicrohttpd, so that a replacement instance can share it
 * (MHD_OPTION_LISTEN_SOCKET with a dup) and a reload that replaces the HTTP instance at the
 * same address neither fails with EADDRINUSE nor refuses connections in between. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "http.h"
#include "net_listen.h"

struct http_uv {
    uv_poll_t poll;
    uv_timer_t timer;
    int open; /* handles not yet closed */
};

static void on_timer(uv_timer_t *t);

/* Run the daemon, then wait for its next deadline (if any). */
static void run(struct http_server *srv)
{
    MHD_UNSIGNED_LONG_LONG ms;
    MHD_run(srv->mhd);
    if (MHD_get_timeout(srv->mhd, &ms) == MHD_YES)
        uv_timer_start(&srv->uv->timer, on_timer, (uint64_t)ms, 0);
    else
        uv_timer_stop(&srv->uv->timer);
}

static void on_timer(uv_timer_t *t)
{
    run(t->data);
}

static void on_poll(uv_poll_t *p, int status, int events)
{
    (void)events;
    struct http_server *srv = p->data;
    if (status < 0)
        ARQ_LOG(srv->host, srv->ctx, ARQ_LOG_WARN, "poll error", "error", uv_strerror(status));
    run(srv);
}

void http_daemon__kick(struct http_server *srv)
{
    if (srv->uv)
        uv_timer_start(&srv->uv->timer, on_timer, 0, 0);
}

/* libmicrohttpd's own complaints (a client sending garbage, a failed accept) go to our log. */
static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    struct http_server *srv = cls;
    char text[512];
    vsnprintf(text, sizeof text, fmt, ap);
    size_t n = strlen(text);
    while (n && (text[n - 1] == '\n' || text[n - 1] == '\r'))
        text[--n] = '\0';
    ARQ_LOG(srv->host, srv->ctx, ARQ_LOG_DEBUG, "libmicrohttpd", "detail", text);
}

/* --- the listening socket ------------------------------------------------------------------ */

static int open_socket(struct http_server *srv, struct arq_error *err)
{
    const struct http_config *c = &srv->cfg;
    struct sockaddr_storage ss;
    int fd = arq_net_listen(&c->addr, c->addr_len, c->host, c->port, 0, &ss, err);
    if (fd < 0)
        return fd;
    arq_net_describe(&ss, srv->bound_addr, sizeof srv->bound_addr, &srv->bound_port);
    return fd;
}

/* The predecessor's socket serves `srv` when it is bound to the same IP and to the port asked
 * for (a port of 0 accepts whichever the predecessor got). */
static int reusable(const struct http_server *srv, const struct http_server *pred)
{
    const struct sockaddr_storage *a = &srv->cfg.addr, *b = &pred->cfg.addr;
    if (pred->listen_fd < 0 || a->ss_family != b->ss_family ||
        (srv->cfg.port && srv->cfg.port != pred->bound_port))
        return 0;
    if (a->ss_family == AF_INET)
        return ((const struct sockaddr_in *)a)->sin_addr.s_addr ==
               ((const struct sockaddr_in *)b)->sin_addr.s_addr;
    return memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr,
                  &((const struct sockaddr_in6 *)b)->sin6_addr, sizeof(struct in6_addr)) == 0;
}

/* --- the daemon ---------------------------------------------------------------------------- */

int http_daemon__start(struct http_server *srv, struct http_server *pred, struct arq_error *err)
{
    int fd;
    srv->inherited = pred && reusable(srv, pred);
    if (srv->inherited) {
        /* Both daemons accept from the socket until the predecessor is stopped (in this same
         * loop turn), or until we are, should the reload be rolled back. */
        fd = fcntl(pred->listen_fd, F_DUPFD_CLOEXEC, 0);
        if (fd < 0)
            return arq_error_set(err, ARQ_EIO, "cannot share the listening socket: %s",
                                 strerror(errno));
        srv->bound_port = pred->bound_port;
        memcpy(srv->bound_addr, pred->bound_addr, sizeof srv->bound_addr);
    } else if ((fd = open_socket(srv, err)) < 0) {
        return ARQ_EIO;
    }

    struct stat sock;
    if (fstat(fd, &sock) != 0) {
        int e = errno;
        close(fd);
        return arq_error_set(err, ARQ_EIO, "cannot stat the listening socket: %s", strerror(e));
    }
    unsigned flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    if (srv->cfg.addr.ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    /* The logger goes first, or libmicrohttpd prints what it says about the others. */
    srv->mhd = MHD_start_daemon(
        flags, 0, NULL, NULL, http_request__handle, srv, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log,
        srv, MHD_OPTION_LISTEN_SOCKET, fd, MHD_OPTION_CONNECTION_LIMIT, srv->cfg.max_connections,
        MHD_OPTION_CONNECTION_TIMEOUT, srv->cfg.idle_timeout_s, MHD_OPTION_NOTIFY_COMPLETED,
        http_request__completed, srv, MHD_OPTION_END);
    if (!srv->mhd) {
        /* Whether a failed start closed the socket it was given is not documented: close it
         * only if the descriptor is still that socket. */
        struct stat after;
        if (fstat(fd, &after) == 0 && after.st_dev == sock.st_dev && after.st_ino == sock.st_ino)
            close(fd);
        return arq_error_set(err, ARQ_EIO, "libmicrohttpd refused to start (see the log)");
    }
    srv->listen_fd = fd;

    const union MHD_DaemonInfo *info = MHD_get_daemon_info(srv->mhd, MHD_DAEMON_INFO_EPOLL_FD);
    uv_loop_t *loop = srv->host->uv_loop(srv->ctx);
    struct http_uv *u = calloc(1, sizeof *u);
    int rc = !u ? UV_ENOMEM : !info ? UV_EINVAL : uv_poll_init(loop, &u->poll, info->epoll_fd);
    if (rc != 0) {
        free(u);
        http_daemon__destroy(srv);
        return arq_error_set(err, ARQ_EIO, "cannot watch libmicrohttpd's epoll descriptor: %s",
                             uv_strerror(rc));
    }
    uv_timer_init(loop, &u->timer);
    u->open = 2;
    u->poll.data = u->timer.data = srv;
    srv->uv = u;
    uv_poll_start(&u->poll, UV_READABLE, on_poll);
    return 0;
}

void http_daemon__quiesce(struct http_server *srv)
{
    if (srv->listen_fd < 0)
        return;
    /* After MHD_quiesce_daemon the socket is ours to close; a successor keeps its own dup. */
    if (srv->mhd)
        MHD_quiesce_daemon(srv->mhd);
    close(srv->listen_fd);
    srv->listen_fd = -1;
}

static void uv_closed(uv_handle_t *h)
{
    struct http_uv *u = h->data;
    if (--u->open == 0)
        free(u);
}

void http_daemon__destroy(struct http_server *srv)
{
    struct http_uv *u = srv->uv;
    srv->uv = NULL;
    if (u) {
        /* Before the daemon closes its epoll descriptor under the poll handle. */
        uv_poll_stop(&u->poll);
        uv_timer_stop(&u->timer);
        u->poll.data = u->timer.data = u;
        uv_close((uv_handle_t *)&u->poll, uv_closed);
        uv_close((uv_handle_t *)&u->timer, uv_closed);
    }
    if (!srv->mhd)
        return;
    /* Stopping a daemon with suspended connections is an API violation in libmicrohttpd:
     * answer them (503) and let one last run resume them. */
    srv->closing = 1;
    http_request__abort_suspended(srv);
    MHD_run(srv->mhd);
    http_daemon__quiesce(srv);
    struct MHD_Daemon *d = srv->mhd;
    srv->mhd = NULL;
    MHD_stop_daemon(d); /* completes every request left (http_request__completed) */
}
