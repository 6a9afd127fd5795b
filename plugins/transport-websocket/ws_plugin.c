/* transport-websocket: the WebSocket listener of the bus (RFC 6455, libwebsockets on the host's
 * libuv loop). It hands complete inbound messages to the host and writes the frames the host
 * queues; it knows nothing of rooms or JSON. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "net_listen.h"
#include "ws.h"

/* The options as the host fills them (opt_fill): their defaults are in the spec below only.
 * Sizes arrive in bytes, durations in milliseconds; strings are borrowed from the cfg. */
struct ws_options {
    const char *host;
    int port;
    size_t max_message_bytes;
    size_t rx_buffer_size;
    uint64_t ping_interval_ms;
    uint64_t ping_timeout_ms;
    size_t max_connections;
    int permessage_deflate;
    const char *tls_cert, *tls_key;
    size_t max_queued_bytes;
    int retire; /* WS_RETIRE_*: the choices below are in that order */
    uint64_t retire_timeout_ms;
    uint64_t handshake_timeout_ms;
};

#define WS_OPT(member) ARQ_FIELD(struct ws_options, member)

/* Options. The host has checked them. */
static const struct arq_option options[] = {
    ARQ_OPT_FIELD("host", ARQ_OPT_STRING, "127.0.0.1", 0,
                  "numeric IPv4 or IPv6 address to listen on (0.0.0.0 or :: for every interface)",
                  WS_OPT(host)),
    ARQ_OPT_RANGE_FIELD("port", ARQ_OPT_INT, "9100", 0, 65535, 0,
                        "TCP port; 0 picks a free port (logged, and reported as the bound port)",
                        WS_OPT(port)),
    ARQ_OPT_RANGE_FIELD("max_message_bytes", ARQ_OPT_SIZE, "1MiB", 1, 256.0 * 1024 * 1024,
                        ARQ_OPT_RELOADABLE,
                        "largest inbound message, all fragments counted; larger closes with 1009",
                        WS_OPT(max_message_bytes)),
    ARQ_OPT_RANGE_FIELD("rx_buffer_size", ARQ_OPT_SIZE, "1KiB", 256, 64.0 * 1024, 0,
                        "receive buffer libwebsockets keeps for every connection, and the most "
                        "one read takes from a socket (a connection that fills it is read again, "
                        "up to 64KiB a loop turn); each KiB more costs every connection about "
                        "1 KB",
                        WS_OPT(rx_buffer_size)),
    ARQ_OPT_RANGE_FIELD("ping_interval", ARQ_OPT_DURATION, "20s", 0, 3600000, 0,
                        "ping a connection that has been silent this long (whole seconds; 0: "
                        "never)",
                        WS_OPT(ping_interval_ms)),
    ARQ_OPT_RANGE_FIELD("ping_timeout", ARQ_OPT_DURATION, "10s", 1000, 3600000, 0,
                        "drop a connection from which nothing arrives within this time after a "
                        "ping",
                        WS_OPT(ping_timeout_ms)),
    ARQ_OPT_RANGE_FIELD("max_connections", ARQ_OPT_INT, "10000", 1, 10000000, ARQ_OPT_RELOADABLE,
                        "open WebSocket connections; further upgrades are refused with HTTP 503",
                        WS_OPT(max_connections)),
    ARQ_OPT_FIELD("permessage_deflate", ARQ_OPT_BOOL, "false", 0,
                  "offer permessage-deflate (RFC 7692) to clients that ask for it; with "
                  "libwebsockets 4.1 one crafted compressed message aborts the server, so "
                  "trusted clients only (docs/security.md)",
                  WS_OPT(permessage_deflate)),
    ARQ_OPT_FIELD("tls_cert", ARQ_OPT_STRING, NULL, 0,
                  "PEM certificate (chain) file: serve wss:// (needs tls_key)", WS_OPT(tls_cert)),
    ARQ_OPT_FIELD("tls_key", ARQ_OPT_STRING, NULL, 0, "PEM private key file of tls_cert",
                  WS_OPT(tls_key)),
    ARQ_OPT_RANGE_FIELD("max_queued_bytes", ARQ_OPT_SIZE, "16MiB", 1024,
                        1024.0 * 1024 * 1024 * 1024, ARQ_OPT_RELOADABLE,
                        "outbound bytes queued for one client before it is dropped with 1013",
                        WS_OPT(max_queued_bytes)),
    ARQ_OPT_CHOICE_FIELD("retire", ARQ_CHOICES("drain", "keep", "close"), "drain",
                         ARQ_OPT_RELOADABLE,
                         "when a reload replaces this listener, its clients are: drain (served "
                         "until retire_timeout, then closed with 1001), keep (served until they "
                         "leave), close (closed with 1001 at once)",
                         WS_OPT(retire)),
    ARQ_OPT_RANGE_FIELD("retire_timeout", ARQ_OPT_DURATION, "30s", 0, 86400000, ARQ_OPT_RELOADABLE,
                        "how long retire: drain serves the old listener's clients",
                        WS_OPT(retire_timeout_ms)),
    ARQ_OPT_RANGE_FIELD("handshake_timeout", ARQ_OPT_DURATION, "10s", 1000, 300000, 0,
                        "a request must be complete this long after its connection was "
                        "accepted, else it is answered 408 and closed (whole seconds)",
                        WS_OPT(handshake_timeout_ms)),
    ARQ_OPT_END};

void ws_server__count(arq_series *s, double v, const struct ws_server *srv)
{
    if (s && !srv->dead)
        srv->host->metric_add(s, v);
}

/* --- configuration ------------------------------------------------------------------------ */

static void config_free(struct ws_config *c)
{
    free(c->host);
    free(c->tls_cert);
    free(c->tls_key);
    /* Cleared field by field (the static analyzer follows that, not a memset of a member):
     * ws_server__free frees again what a failed config_parse freed. */
    *c = (struct ws_config){0};
}

static int check_readable(const char *option, const char *path, struct arq_error *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return arq_error_set(err, ARQ_EINVAL, "%s \"%s\" cannot be read: %s", option, path,
                             strerror(errno));
    close(fd);
    return 0;
}

static char *dup_or_null(const char *s)
{
    return s && *s ? strdup(s) : NULL;
}

static int config_parse(const struct arq_host *host, const json_t *cfg, struct ws_config *c,
                        struct arq_error *err)
{
    memset(c, 0, sizeof *c);
    struct ws_options o = {0};
    int rc = host->opt_fill(cfg, options, &o, err);
    if (rc != 0)
        return rc;
    const char *addr = o.host, *cert = o.tls_cert, *key = o.tls_key;
    c->port = o.port;
    c->max_message_bytes = o.max_message_bytes;
    c->max_connections = o.max_connections;
    c->max_queued_bytes = o.max_queued_bytes;
    c->rx_buffer_size = o.rx_buffer_size;
    /* Keepalive counts in whole seconds (ws_alive.c): round up, never to 0 unless asked. */
    c->ping_interval_s = (unsigned)((o.ping_interval_ms + 999) / 1000);
    c->ping_timeout_s = (unsigned)((o.ping_timeout_ms + 999) / 1000);
    c->permessage_deflate = o.permessage_deflate;
    c->retire = o.retire;
    c->retire_timeout_ms = o.retire_timeout_ms;
    c->handshake_timeout_s = (unsigned)((o.handshake_timeout_ms + 999) / 1000);

    if (arq_net_parse_address(addr, c->port, &c->addr, &c->addr_len, err) != 0)
        return ARQ_EINVAL;
    if (cert && !*cert)
        cert = NULL;
    if (key && !*key)
        key = NULL;
    if (!cert != !key)
        return arq_error_set(err, ARQ_EINVAL, "tls_cert and tls_key go together: %s is missing",
                             cert ? "tls_key" : "tls_cert");
    if (cert &&
        (check_readable("tls_cert", cert, err) != 0 || check_readable("tls_key", key, err) != 0))
        return ARQ_EINVAL;

    c->host = strdup(addr);
    c->tls_cert = dup_or_null(cert);
    c->tls_key = dup_or_null(key);
    if (!c->host || (cert && (!c->tls_cert || !c->tls_key))) {
        config_free(c);
        return arq_error_set(err, ARQ_ENOMEM, "out of memory");
    }
    return 0;
}

/* --- life cycle ---------------------------------------------------------------------------- */

void ws_server__free(struct ws_server *srv)
{
    config_free(&srv->cfg);
    free(srv->name);
    free(srv->readers);
    free(srv);
}

static int ws_create(const struct arq_host *host, arq_ctx *ctx, const json_t *cfg, void **self,
                     struct arq_error *err)
{
    struct ws_server *srv = calloc(1, sizeof *srv);
    if (!srv)
        return arq_error_set(err, ARQ_ENOMEM, "out of memory");
    srv->host = host;
    srv->ctx = ctx;
    srv->bound_port = -1;
    srv->name = strdup(host->instance_name(ctx));
    if (!srv->name) {
        free(srv);
        return arq_error_set(err, ARQ_ENOMEM, "out of memory");
    }
    int rc = config_parse(host, cfg, &srv->cfg, err);
    if (rc != 0) {
        ws_server__free(srv);
        return rc;
    }
    srv->m_conns = arq_instance_series(srv->host, srv->ctx, ARQ_METRIC_GAUGE,
                                       "arqonbus_ws_connections", "Open WebSocket connections.");
    srv->m_conns_total =
        arq_instance_series(srv->host, srv->ctx, ARQ_METRIC_COUNTER,
                            "arqonbus_ws_connections_total", "WebSocket connections established.");
    srv->m_rx = arq_instance_series(
        srv->host, srv->ctx, ARQ_METRIC_COUNTER, "arqonbus_ws_bytes_received_total",
        "Payload bytes of inbound WebSocket messages (after inflation).");
    srv->m_tx =
        arq_instance_series(srv->host, srv->ctx, ARQ_METRIC_COUNTER, "arqonbus_ws_bytes_sent_total",
                            "Bytes of WebSocket frames handed to the socket (headers included; "
                            "payload bytes before deflation).");
    srv->m_writes = arq_instance_series(
        srv->host, srv->ctx, ARQ_METRIC_COUNTER, "arqonbus_ws_writes_total",
        "Writes to WebSocket sockets: each carries every frame queued for its connection (up to "
        "256 KiB), so frames sent per write shows how much fan-out coalesces.");
    srv->m_oversize = arq_instance_series(
        srv->host, srv->ctx, ARQ_METRIC_COUNTER, "arqonbus_ws_oversize_closes_total",
        "Connections closed with 1009: a message over max_message_bytes.");
    static const char *const refused_labels[] = {"instance", "status", NULL};
    srv->m_refused = host->metric_register(
        ctx, ARQ_METRIC_COUNTER, "arqonbus_ws_refused_total",
        "Requests on the WebSocket port answered with an HTTP error instead of an upgrade, by "
        "status: 401/403/429 auth, 503 max_connections, 431 head too large, 408 head not "
        "complete within handshake_timeout, 400 malformed, 405 not GET, 426 not an upgrade.",
        refused_labels, NULL, 0);
    srv->m_ping_timeouts = arq_instance_series(
        srv->host, srv->ctx, ARQ_METRIC_COUNTER, "arqonbus_ws_ping_timeouts_total",
        "Connections dropped because nothing arrived within ping_timeout of a ping.");
    *self = srv;
    return 0;
}

static int ws_start(void *self, void *predecessor, struct arq_error *err)
{
    struct ws_server *srv = self;
    int rc = ws_lws__create(srv, err);
    if (rc != 0)
        return rc;
    int inherited = 0;
    if (predecessor) {
        rc = ws_listener__take_over(srv, predecessor, err);
        if (rc < 0)
            return rc;
        inherited = rc;
    }
    if (!inherited && ws_listener__open(srv, err) != 0)
        return ARQ_EIO;
    char port[16];
    snprintf(port, sizeof port, "%d", srv->bound_port);
    ARQ_LOG(srv->host, srv->ctx, ARQ_LOG_INFO, "listening", "addr", srv->bound_addr, "port", port,
            "tls", srv->cfg.tls_cert ? "on" : "off", "listener", inherited ? "inherited" : "new");
    if (srv->cfg.permessage_deflate)
        ARQ_LOG(srv->host, srv->ctx, ARQ_LOG_WARN,
                "permessage_deflate is on: with libwebsockets 4.1 one crafted compressed message "
                "from a client aborts the server; keep it off where clients are not trusted "
                "(docs/security.md)");
    if (predecessor) {
        /* The configuration in force after the reload decides how the old listener retires. */
        struct ws_server *old = predecessor;
        old->cfg.retire = srv->cfg.retire;
        old->cfg.retire_timeout_ms = srv->cfg.retire_timeout_ms;
    }
    return 0;
}

static int ws_reconfigure(void *self, const json_t *cfg, struct arq_error *err)
{
    struct ws_server *srv = self;
    struct ws_config next;
    if (config_parse(srv->host, cfg, &next, err) != 0)
        return ARQ_EINVAL;
    srv->cfg.max_message_bytes = next.max_message_bytes;
    srv->cfg.max_connections = next.max_connections;
    int limit_changed = srv->cfg.max_queued_bytes != next.max_queued_bytes;
    srv->cfg.max_queued_bytes = next.max_queued_bytes;
    srv->cfg.retire = next.retire;
    srv->cfg.retire_timeout_ms = next.retire_timeout_ms;
    config_free(&next);

    const struct arq_host *h = srv->host;
    if (limit_changed && ARQ_HOST_HAS(h, conn_set_limit)) {
        for (struct ws_conn *c = srv->conns; c; c = c->next)
            if (c->conn)
                h->conn_set_limit(c->conn, srv->cfg.max_queued_bytes);
    }
    char a[32], b[32], q[32];
    snprintf(a, sizeof a, "%zu", srv->cfg.max_message_bytes);
    snprintf(b, sizeof b, "%zu", srv->cfg.max_connections);
    snprintf(q, sizeof q, "%zu", srv->cfg.max_queued_bytes);
    ARQ_LOG(h, srv->ctx, ARQ_LOG_INFO, "websocket limits applied", "max_message_bytes", a,
            "max_connections", b, "max_queued_bytes", q);
    return 0;
}

static void retire_expired(void *arg)
{
    struct ws_server *srv = arg;
    srv->retire_timer = NULL; /* one-shot: the host frees it with the instance */
    ws_conn__close_all(srv, 1001, "listener retired: reconnect");
}

void ws_server__conn_gone(struct ws_server *srv)
{
    if (srv->retiring && !srv->dead && srv->nconns == 0) {
        srv->retiring = 0;
        srv->host->retire_release(srv->ctx);
    }
}

static void ws_stop(void *self)
{
    struct ws_server *srv = self;
    const struct arq_host *h = srv->host;
    srv->stopped = 1;
    if (srv->predecessor && !srv->predecessor->stopped)
        ws_listener__give_back(srv);
    else
        ws_listener__close(srv);

    /* Replaced by a reload: keep serving the clients we have, as `retire` says, while the
     * successor takes the new ones. */
    int can_hold = ARQ_HOST_HAS(h, retire_hold) && ARQ_HOST_HAS(h, retire_release);
    if (srv->cfg.retire == WS_RETIRE_CLOSE || !srv->nconns || !can_hold)
        return;
    srv->retiring = 1;
    h->retire_hold(srv->ctx);
    char n[24];
    snprintf(n, sizeof n, "%zu", srv->nconns);
    ARQ_LOG(h, srv->ctx, ARQ_LOG_INFO, "listener retired; serving its clients", "clients", n,
            "retire", srv->cfg.retire == WS_RETIRE_KEEP ? "keep" : "drain");
    if (srv->cfg.retire == WS_RETIRE_DRAIN)
        srv->retire_timer =
            h->timer_start(srv->ctx, srv->cfg.retire_timeout_ms, 0, retire_expired, srv);
}

static void ws_destroy(void *self)
{
    struct ws_server *srv = self;
    ws_listener__close(srv);
    if (srv->predecessor)
        srv->predecessor->successor = NULL;
    if (srv->successor)
        srv->successor->predecessor = NULL;
    srv->predecessor = srv->successor = NULL;
    ws_head__close_all(srv);
    ws_conn__detach_all(srv);
    srv->dead = 1; /* from here on, nothing reaches the host */
    ws_lws__destroy(srv);
}

static int ws_bound_port(void *self)
{
    const struct ws_server *srv = self;
    return srv->listener ? srv->bound_port : -1;
}

static void ws_flush(void *self, void *tconn)
{
    (void)self;
    struct ws_conn *c = tconn;
    if (c->wsi)
        lws_callback_on_writable(c->wsi);
}

/* The descriptor. */
static const struct arq_transport_ops ops = {
    .struct_size = sizeof(struct arq_transport_ops),
    .flush = ws_flush,
    .bound_port = ws_bound_port,
};

static const struct arq_plugin descriptor = {
    ARQ_PLUGIN_HEAD,
    .name = "transport-websocket",
    .version = "1.0.0",
    .summary = "WebSocket (RFC 6455) client listener, libwebsockets on the host loop",
    .kind = ARQ_KIND_TRANSPORT,
    .options = options,
    .create = ws_create,
    .start = ws_start,
    .reconfigure = ws_reconfigure,
    .stop = ws_stop,
    .destroy = ws_destroy,
    .ops = &ops,
};
ARQ_PLUGIN(descriptor)
