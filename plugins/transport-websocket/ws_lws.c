/* The libwebsockets context of an instance, on the host's libuv loop (a "foreign" loop to lws):
 * creation, the route of lws's log lines to the host, and teardown.
 *
 * Teardown is the delicate part: lws_context_destroy() must be called twice with a foreign
 * loop, the second time once lws's own handles have left the loop (see plugins/common/lws_uv.h).
 * The host runs its loop after destroy, so this completes within a few loop turns. */
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "lws_uv.h"
#include "ws.h"

/* lws logs process-wide, not per context: its lines go to the first live instance. This list
 * is the plugin's one piece of shared state, touched only on the loop thread. */
static struct ws_server *log_sinks;

static void lws_log_emit(int level, const char *line)
{
    struct ws_server *srv = log_sinks;
    /* lws 4.1 logs every adoption with a request head read beforehand (ws_head.c) as an
     * error: it is how each plain connection comes in. */
    if (!srv || strstr(line, "adopt_socket_readbuf: calling service"))
        return;
    char text[512];
    size_t n = strlen(line);
    if (n >= sizeof text)
        n = sizeof text - 1;
    memcpy(text, line, n);
    while (n > 0 && (text[n - 1] == '\n' || text[n - 1] == ' '))
        n--;
    text[n] = '\0';
    /* lws reports client mistakes (bad TLS, bad frames) as errors: warnings here. */
    enum arq_log_level lvl = (level & (LLL_ERR | LLL_WARN)) ? ARQ_LOG_WARN : ARQ_LOG_DEBUG;
    ARQ_LOG(srv->host, srv->ctx, lvl, "libwebsockets", "detail", text);
}

static void log_sink_remove(struct ws_server *srv)
{
    for (struct ws_server **p = &log_sinks; *p; p = &(*p)->log_next) {
        if (*p == srv) {
            *p = srv->log_next;
            break;
        }
    }
    srv->log_next = NULL;
}

/* --- creation ------------------------------------------------------------------------------ */

static const struct lws_extension deflate_ext[] = {
    {"permessage-deflate", lws_extension_callback_pm_deflate,
     "permessage-deflate; client_no_context_takeover; client_max_window_bits"},
    {NULL, NULL, NULL}};

int ws_lws__create(struct ws_server *srv, struct arq_error *err)
{
    const struct ws_config *c = &srv->cfg;
    uv_loop_t *loop = srv->host->uv_loop(srv->ctx);
    void *loops[1] = {loop};
    struct lws_context_creation_info info;

    srv->log_next = log_sinks;
    log_sinks = srv;
    int lws_level = LLL_ERR | LLL_WARN;
    if (srv->host->log_enabled(srv->ctx, ARQ_LOG_DEBUG))
        lws_level |= LLL_NOTICE;
    lws_set_log_level(lws_level, lws_log_emit);

    /* The protocol is named after the subprotocol a client may offer. lws gives a connection
     * that offers none the first protocol too, so no subprotocol is required, and
     * `arqonbus.v1` is echoed back when offered. */
    srv->protocols[0] = (struct lws_protocols){
        .name = "arqonbus.v1",
        .callback = ws_http__callback,
        .per_session_data_size = sizeof(struct ws_conn),
        /* lws keeps a receive buffer this large for every connection, idle or not, and reads
         * a socket at most this much per poll turn. The default, 1 KiB, keeps an idle
         * connection near 3.5 KB of user space (4 KiB: 6.6 KB) and holds several typical
         * messages; a connection that fills it is read again within the turn (ws_read.c).
         * Larger messages arrive in pieces and are joined in ws_conn.c. */
        .rx_buffer_size = c->rx_buffer_size,
        /* lws otherwise cuts every send() to rx_buffer_size (4 KiB) and copies the rest
         * aside for later poll turns, undoing the batched writes of ws_send.c. */
        .tx_packet_size = WS_TX_PACKET_MAX,
    };
    memset(&srv->protocols[1], 0, sizeof srv->protocols[1]);
    /* lws's own pings stay off: with secs_since_valid_hangup 0 lws 4.1 arms no validity timer
     * per connection (a sorted-list insert each time), and NULL would mean lws's default
     * policy. ws_ping.c pings instead. */
    srv->retry = (lws_retry_bo_t){0};

    memset(&info, 0, sizeof info);
    info.options = LWS_SERVER_OPTION_LIBUV | LWS_SERVER_OPTION_EXPLICIT_VHOSTS |
                   LWS_SERVER_OPTION_VALIDATE_UTF8;
    if (c->addr.ss_family == AF_INET)
        info.options |= LWS_SERVER_OPTION_DISABLE_IPV6;
    if (c->tls_cert)
        info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
    info.foreign_loops = loops;
    info.port = CONTEXT_PORT_NO_LISTEN_SERVER; /* the socket is ours: see ws_listener.c */
    info.user = srv;
    info.server_string = "ArqonBus";
    /* What lws keeps of one request head (ws_head.c refuses a plain one that would not fit,
     * with 431; a TLS one lws drops). Allocated per request being read, freed at the upgrade. */
    info.max_http_header_data = WS_LWS_HEADER_DATA;
    /* Reads go through this per-thread buffer (one per instance), which caps them at its size:
     * a connection's reads stay at rx_buffer_size. A request head handed over by ws_head.c is
     * served from it as well, and must fit whole: lws 4.1 on libuv serves the rest of a
     * buffer handed over with the socket only on the socket's next event, which does not
     * come (the client waits for its answer). */
    info.pt_serv_buf_size = c->rx_buffer_size > WS_PT_BUF ? (unsigned)c->rx_buffer_size : WS_PT_BUF;

    srv->lws = arq_lws_uv_create(loop, &info, srv->lws_handles, WS_LWS_HANDLES, &srv->nlws_handles);
    if (!srv->lws)
        return arq_error_set(err, ARQ_EIO, "cannot create the libwebsockets context");
    if (ws_send__init(srv, loop) != 0)
        return arq_error_set(err, ARQ_ENOMEM, "cannot set up the write handle");
    if (ws_ping__init(srv, loop) != 0)
        return arq_error_set(err, ARQ_ENOMEM, "cannot set up the keepalive timer");

    info.vhost_name = srv->name;
    info.protocols = srv->protocols;
    info.extensions = c->permessage_deflate ? deflate_ext : NULL;
    info.retry_and_idle_policy = &srv->retry;
    info.ssl_cert_filepath = c->tls_cert;
    info.ssl_private_key_filepath = c->tls_key;
    info.alpn = "http/1.1"; /* never WebSocket over HTTP/2: the send path frames for h1 */
    /* lws's own bound on a request head (TLS: ws_head.c's reads a plain one within it). */
    info.timeout_secs_ah_idle = c->handshake_timeout_s;
    srv->vhost = lws_create_vhost(srv->lws, &info);
    if (!srv->vhost)
        return arq_error_set(err, ARQ_EIO, "cannot create the libwebsockets vhost%s",
                             c->tls_cert ? " (are tls_cert and tls_key a matching PEM "
                                           "certificate and private key?)"
                                         : "");
    return 0;
}

/* --- teardown ------------------------------------------------------------------------------ */

static void free_instance(void *srv)
{
    ws_server__free(srv);
}

void ws_lws__destroy(struct ws_server *srv)
{
    log_sink_remove(srv);
    ws_send__fini(srv);
    ws_ping__fini(srv);
    if (!srv->lws) {
        ws_server__free(srv);
        return;
    }
    arq_lws_uv_destroy(srv->host->uv_loop(srv->ctx), srv->lws, srv->lws_handles, srv->nlws_handles,
                       free_instance, srv);
}
