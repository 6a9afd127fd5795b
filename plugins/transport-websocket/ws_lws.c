/* The libwebsockets context of an instance, on the host's libuv loop (a "foreign" loop to lws):
 * creation, the route of lws's log lines to the host, and teardown.
 *
 * Teardown is the delicate part. With a foreign loop, lws_context_destroy() only begins: it
 * closes every connection's uv handle, and once those close callbacks have run it closes its
 * own idle and timer handles. Nothing then finishes the job: the owner of the loop must call
 * lws_context_destroy() a second time, after those handles are closed, to free the vhost and
 * the context. So destroy hands the context to a small reaper (a uv timer of our own) that
 * watches for lws's handles to leave the loop, then calls lws_context_destroy() again and frees
 * the instance, whose memory lws's callbacks may reach until then. The host runs its loop after
 * destroy, so this completes within a few loop turns. */
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "ws.h"

/* lws logs process-wide, not per context: its lines go to the first live instance. This list
 * is the plugin's one piece of shared state, touched only on the loop thread. */
static struct ws_server *log_sinks;

static void lws_log_emit(int level, const char *line)
{
    struct ws_server *srv = log_sinks;
    if (!srv)
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

/* --- handles lws puts on the loop ---------------------------------------------------------- */

struct handle_list {
    uv_handle_t **h;
    size_t n, cap;
    int failed;
};

static void collect(uv_handle_t *h, void *arg)
{
    struct handle_list *l = arg;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        uv_handle_t **p = realloc(l->h, cap * sizeof *p);
        if (!p) {
            l->failed = 1;
            return;
        }
        l->h = p;
        l->cap = cap;
    }
    l->h[l->n++] = h;
}

static int by_address(const void *a, const void *b)
{
    uintptr_t x = (uintptr_t) * (uv_handle_t *const *)a, y = (uintptr_t) * (uv_handle_t *const *)b;
    return x < y ? -1 : x > y;
}

/* The handles lws_create_context() added to the loop, other than per-socket polls: its idle
 * and timer, which live in the context and are the last it closes. */
static void record_static_handles(struct ws_server *srv, uv_loop_t *loop,
                                  struct handle_list *before)
{
    struct handle_list after = {0};
    uv_walk(loop, collect, &after);
    qsort(before->h, before->n, sizeof *before->h, by_address);
    for (size_t i = 0; i < after.n && srv->nlws_handles < WS_LWS_HANDLES; i++) {
        uv_handle_t *h = after.h[i];
        if (uv_handle_get_type(h) == UV_POLL ||
            bsearch(&h, before->h, before->n, sizeof *before->h, by_address))
            continue;
        srv->lws_handles[srv->nlws_handles++] = h;
    }
    free(after.h);
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
        .callback = ws_conn__callback,
        .per_session_data_size = sizeof(struct ws_conn),
        /* lws keeps a receive buffer this large for every connection, and reads at most
         * this much per poll turn: 4 KiB keeps 10,000 idle connections at ~40 MB and still
         * brings in dozens of typical messages per read. Larger messages arrive in pieces
         * and are joined in ws_conn.c. */
        .rx_buffer_size = 4096,
        /* lws otherwise cuts every send() to rx_buffer_size (4 KiB) and copies the rest
         * aside for later poll turns, undoing the batched writes of ws_send.c. */
        .tx_packet_size = WS_TX_PACKET_MAX,
    };
    memset(&srv->protocols[1], 0, sizeof srv->protocols[1]);
    /* A connection is pinged after ping_interval without a pong (or other proof of life), and
     * dropped ping_timeout later. Zeros turn that off (NULL would mean lws's own default). */
    srv->retry = (lws_retry_bo_t){0};
    if (c->ping_interval_s) {
        srv->retry.secs_since_valid_ping = (uint16_t)c->ping_interval_s;
        srv->retry.secs_since_valid_hangup = (uint16_t)(c->ping_interval_s + c->ping_timeout_s);
    }

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
    info.max_http_header_data = 8192;

    struct handle_list before = {0};
    uv_walk(loop, collect, &before);
    srv->lws = lws_create_context(&info);
    if (srv->lws && !before.failed)
        record_static_handles(srv, loop, &before);
    free(before.h);
    if (!srv->lws)
        return arq_error_set(err, ARQ_EIO, "cannot create the libwebsockets context");

    info.vhost_name = srv->name;
    info.protocols = srv->protocols;
    info.extensions = c->permessage_deflate ? deflate_ext : NULL;
    info.retry_and_idle_policy = &srv->retry;
    info.ssl_cert_filepath = c->tls_cert;
    info.ssl_private_key_filepath = c->tls_key;
    info.alpn = "http/1.1"; /* never WebSocket over HTTP/2: the send path frames for h1 */
    srv->vhost = lws_create_vhost(srv->lws, &info);
    if (!srv->vhost)
        return arq_error_set(err, ARQ_EIO, "cannot create the libwebsockets vhost%s",
                             c->tls_cert ? " (are tls_cert and tls_key a matching PEM "
                                           "certificate and private key?)"
                                         : "");
    return 0;
}

/* --- teardown ------------------------------------------------------------------------------ */

struct reaper {
    uv_timer_t timer;
    struct ws_server *srv;
    size_t alive;
    unsigned ticks;
};

static void reaper_count(uv_handle_t *h, void *arg)
{
    struct reaper *r = arg;
    for (size_t i = 0; i < r->srv->nlws_handles; i++)
        if (r->srv->lws_handles[i] == h)
            r->alive++;
}

static void reaper_closed(uv_handle_t *h)
{
    free(h->data);
}

static void reaper_tick(uv_timer_t *t)
{
    struct reaper *r = t->data;
    r->alive = 0;
    uv_walk(t->loop, reaper_count, r);
    /* Two loop turns at least: the close callbacks of the connections, then lws's own. */
    if (r->alive || ++r->ticks < 3)
        return;
    lws_context_destroy(r->srv->lws); /* the second call: frees the vhost and the context */
    ws_server__free(r->srv);
    uv_timer_stop(t);
    uv_close((uv_handle_t *)t, reaper_closed);
}

void ws_lws__destroy(struct ws_server *srv)
{
    log_sink_remove(srv);
    if (!srv->lws) {
        ws_server__free(srv);
        return;
    }
    uv_loop_t *loop = srv->host->uv_loop(srv->ctx);
    lws_context_destroy(srv->lws);
    struct reaper *r = calloc(1, sizeof *r);
    if (!r || uv_timer_init(loop, &r->timer) != 0) {
        /* Cannot wait for lws: leaving the context and the instance allocated is safe. */
        free(r);
        return;
    }
    r->srv = srv;
    r->timer.data = r;
    uv_timer_start(&r->timer, reaper_tick, 0, 1);
}
