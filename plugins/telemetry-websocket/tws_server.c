/* The libwebsockets context on the host's libuv loop (a "foreign" loop to lws), the listening
 * socket, and teardown. Same approach as transport-websocket (see its README): the socket is
 * ours, bound exactly where configured, and each accepted socket is adopted into a vhost
 * created without a listener; destroy is two calls to lws_context_destroy(), the second once
 * lws's own idle and timer handles have left the loop. */
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

#include "lws_uv.h"
#include "net_listen.h"
#include "tws.h"

#define ACCEPTS_PER_WAKEUP 16
#define BACKOFF_MS         100 /* pause after EMFILE and friends, instead of spinning */

/* --- the context --------------------------------------------------------------------------- */

int tws_server__lws_create(struct tws_server *srv, struct arq_error *err)
{
    uv_loop_t *loop = srv->host->uv_loop(srv->ctx);
    void *loops[1] = {loop};

    /* lws logs process-wide. transport-websocket routes its lines to the host's log; this
     * plugin installs no function (one in this .so would dangle once it is unloaded) and only
     * keeps lws's start-up notices off stderr when it comes first. */
    lws_set_log_level(LLL_ERR | LLL_WARN, NULL);
    srv->protocols[0] = (struct lws_protocols){
        .name = "arqonbus.telemetry",
        .callback = tws_client__callback,
        .per_session_data_size = sizeof(struct tws_client),
        .rx_buffer_size = 4096,
    };
    memset(&srv->protocols[1], 0, sizeof srv->protocols[1]);

    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    info.options = LWS_SERVER_OPTION_LIBUV | LWS_SERVER_OPTION_EXPLICIT_VHOSTS |
                   LWS_SERVER_OPTION_VALIDATE_UTF8;
    if (srv->cfg.addr.ss_family == AF_INET)
        info.options |= LWS_SERVER_OPTION_DISABLE_IPV6;
    info.foreign_loops = loops;
    info.port = CONTEXT_PORT_NO_LISTEN_SERVER;
    info.user = srv;
    info.server_string = "ArqonBus";

    srv->lws =
        arq_lws_uv_create(loop, &info, srv->lws_handles, TWS_LWS_HANDLES, &srv->nlws_handles);
    if (!srv->lws)
        return arq_error_set(err, ARQ_EIO, "cannot create the libwebsockets context");

    info.vhost_name = srv->name;
    info.protocols = srv->protocols;
    srv->vhost = lws_create_vhost(srv->lws, &info);
    if (!srv->vhost)
        return arq_error_set(err, ARQ_EIO, "cannot create the libwebsockets vhost");
    return 0;
}

/* --- the listener -------------------------------------------------------------------------- */

struct tws_listener {
    uv_poll_t poll;
    int fd;
    struct tws_server *srv;
    arq_timer *backoff;
};

static void listener_closed(uv_handle_t *h)
{
    struct tws_listener *l = h->data;
    close(l->fd);
    free(l);
}

static void on_backoff(void *arg);

static void on_readable(uv_poll_t *h, int status, int events)
{
    (void)events;
    struct tws_listener *l = h->data;
    struct tws_server *srv = l->srv;
    if (status < 0) {
        ARQ_LOG(srv->host, srv->ctx, ARQ_LOG_WARN, "listener error", "error", uv_strerror(status));
        return;
    }
    for (int i = 0; i < ACCEPTS_PER_WAKEUP; i++) {
        int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return;
            /* Out of descriptors or memory: the connection stays queued and the socket
             * readable, so stop watching it for a moment rather than spin. */
            ARQ_LOG(srv->host, srv->ctx, ARQ_LOG_WARN, "cannot accept", "error", strerror(errno),
                    "retry_ms", "100");
            if (!l->backoff) {
                uv_poll_stop(&l->poll);
                l->backoff = srv->host->timer_start(srv->ctx, BACKOFF_MS, 0, on_backoff, l);
            }
            return;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        lws_sock_file_fd_type sock = {.sockfd = fd};
        /* On failure lws has closed the socket already. */
        if (!lws_adopt_descriptor_vhost(srv->vhost, LWS_ADOPT_SOCKET | LWS_ADOPT_HTTP, sock, NULL,
                                        NULL))
            ARQ_LOG(srv->host, srv->ctx, ARQ_LOG_DEBUG, "connection dropped", "reason",
                    "libwebsockets could not adopt the socket");
    }
}

static void on_backoff(void *arg)
{
    struct tws_listener *l = arg;
    l->srv->host->timer_stop(l->backoff);
    l->backoff = NULL;
    uv_poll_start(&l->poll, UV_READABLE, on_readable);
}

int tws_server__listen(struct tws_server *srv, struct arq_error *err)
{
    const struct tws_config *c = &srv->cfg;
    struct tws_listener *l = calloc(1, sizeof *l);
    if (!l)
        return arq_error_set(err, ARQ_ENOMEM, "out of memory");
    l->srv = srv;
    struct sockaddr_storage ss;
    l->fd = arq_net_listen(&c->addr, c->addr_len, c->host, c->port, 0, &ss, err);
    if (l->fd < 0)
        goto fail;
    int rc = uv_poll_init_socket(srv->host->uv_loop(srv->ctx), &l->poll, l->fd);
    if (rc != 0) {
        arq_error_set(err, ARQ_EIO, "cannot watch the listening socket: %s", uv_strerror(rc));
        goto fail;
    }
    l->poll.data = l;
    uv_poll_start(&l->poll, UV_READABLE, on_readable);
    srv->listener = l;

    arq_net_describe(&ss, srv->bound_addr, sizeof srv->bound_addr, &srv->bound_port);
    return 0;

fail:
    if (l->fd >= 0)
        close(l->fd);
    free(l);
    return ARQ_EIO;
}

void tws_server__unlisten(struct tws_server *srv)
{
    struct tws_listener *l = srv->listener;
    if (!l)
        return;
    srv->listener = NULL;
    if (l->backoff)
        srv->host->timer_stop(l->backoff);
    uv_poll_stop(&l->poll);
    uv_close((uv_handle_t *)&l->poll, listener_closed);
}

/* --- teardown ------------------------------------------------------------------------------ */

static void free_instance(void *srv)
{
    tws_server__free(srv);
}

void tws_server__lws_destroy(struct tws_server *srv)
{
    if (!srv->lws) {
        tws_server__free(srv);
        return;
    }
    arq_lws_uv_destroy(srv->host->uv_loop(srv->ctx), srv->lws, srv->lws_handles, srv->nlws_handles,
                       free_instance, srv);
}
