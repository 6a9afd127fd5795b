/* The libwebsockets context on the host's libuv loop (a "foreign" loop to lws), the listening
 * socket, and teardown. Same approach as transport-websocket (see its README): the socket is
 * ours, bound exactly where configured, and each accepted socket is adopted into a vhost
 * created without a listener; destroy is two calls to lws_context_destroy(), the second once
 * lws's own idle and timer handles have left the loop. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lws_uv.h"
#include "net_accept.h"
#include "net_listen.h"
#include "tws.h"

#define ACCEPTS_PER_WAKEUP 16

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

/* A connection from the accept loop (plugins/common/net_accept.c). */
static void adopt(void *arg, int fd)
{
    struct tws_server *srv = arg;
    lws_sock_file_fd_type sock = {.sockfd = fd};
    /* On failure lws has closed the socket already. */
    if (!lws_adopt_descriptor_vhost(srv->vhost, LWS_ADOPT_SOCKET | LWS_ADOPT_HTTP, sock, NULL,
                                    NULL))
        ARQ_LOG(srv->host, srv->ctx, ARQ_LOG_DEBUG, "connection dropped", "reason",
                "libwebsockets could not adopt the socket");
}

int tws_server__listen(struct tws_server *srv, struct arq_error *err)
{
    const struct tws_config *c = &srv->cfg;
    struct sockaddr_storage ss;
    int fd = arq_net_listen(&c->addr, c->addr_len, c->host, c->port, 0, &ss, err);
    if (fd < 0)
        return ARQ_EIO;
    srv->listener =
        arq_net_accept_start(srv->host, srv->ctx, fd, 1, ACCEPTS_PER_WAKEUP, adopt, srv, err);
    if (!srv->listener) {
        close(fd);
        return ARQ_EIO;
    }
    arq_net_describe(&ss, srv->bound_addr, sizeof srv->bound_addr, &srv->bound_port);
    return 0;
}

void tws_server__unlisten(struct tws_server *srv)
{
    arq_net_accept_close(srv->listener, 0);
    srv->listener = NULL;
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
