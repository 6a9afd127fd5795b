/* transport-http: the HTTP API of the bus (health, readiness, status, metrics, history,
 * listings, server-side publish, admin), libmicrohttpd driven from the host's libuv loop. It
 * opens no bus connection; it calls the host's server-side services. */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "net_listen.h"

/* Options. The host has checked them; sizes arrive in bytes, durations in milliseconds. */
static const struct arq_option options[] = {
    ARQ_OPT("host", ARQ_OPT_STRING, "127.0.0.1", 0,
            "numeric IPv4 or IPv6 address to listen on (0.0.0.0 or :: for every interface)"),
    ARQ_OPT_RANGE("port", ARQ_OPT_INT, "8080", 0, 65535, 0,
                  "TCP port; 0 picks a free port (logged, and reported as the bound port)"),
    ARQ_OPT("api_key", ARQ_OPT_STRING, "", ARQ_OPT_SECRET | ARQ_OPT_RELOADABLE,
            "key for /publish and /admin/* (X-API-Key or Authorization: Bearer); empty: those "
            "endpoints are disabled (403)"),
    ARQ_OPT_RANGE("max_body_bytes", ARQ_OPT_SIZE, "1MiB", 1, 256.0 * 1024 * 1024,
                  ARQ_OPT_RELOADABLE, "largest request body; larger is answered with 413"),
    ARQ_OPT("cors_origins", ARQ_OPT_STRING_LIST, NULL, ARQ_OPT_RELOADABLE,
            "origins (scheme://host[:port], or *) that browsers may call the API from"),
    ARQ_OPT_RANGE("max_connections", ARQ_OPT_INT, "1000", 1, 1000000, 0,
                  "open HTTP connections; further ones wait in the listen backlog"),
    ARQ_OPT_RANGE("idle_timeout", ARQ_OPT_DURATION, "30s", 0, 86400000, 0,
                  "close a connection idle this long (whole seconds; 0: never)"),
    ARQ_OPT_END};

/* --- configuration ------------------------------------------------------------------------ */

static void config_free(struct http_config *c)
{
    free(c->host);
    free(c->api_key);
    for (size_t i = 0; i < c->ncors; i++)
        free(c->cors_origins[i]);
    free(c->cors_origins);
    memset(c, 0, sizeof *c);
}

/* An origin as browsers send it: scheme://host[:port], nothing after. */
static int origin_valid(const char *o)
{
    const char *p = strstr(o, "://");
    if (!p || p == o || !p[3])
        return 0;
    for (const char *s = o; s < p; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || *s == '+' || *s == '-' ||
              *s == '.' || (*s >= '0' && *s <= '9')))
            return 0;
    return strpbrk(p + 3, "/?#* \t") == NULL;
}

static int config_parse(const struct arq_host *host, const json_t *cfg, struct http_config *c,
                        struct arq_error *err)
{
    memset(c, 0, sizeof *c);
    const char *addr = host->opt_str(cfg, "host", "127.0.0.1");
    const char *key = host->opt_str(cfg, "api_key", "");
    const json_t *cors = host->opt_json(cfg, "cors_origins");
    c->port = (int)host->opt_int(cfg, "port", 8080);
    c->max_body_bytes = (size_t)host->opt_int(cfg, "max_body_bytes", 1 << 20);
    c->max_connections = (unsigned)host->opt_int(cfg, "max_connections", 1000);
    /* libmicrohttpd counts idle time in whole seconds: round up, never to 0 unless asked. */
    c->idle_timeout_s = (unsigned)((host->opt_int(cfg, "idle_timeout", 30000) + 999) / 1000);
    if (arq_net_parse_address(addr, c->port, &c->addr, &c->addr_len, err) != 0)
        return ARQ_EINVAL;

    size_t n = json_is_array(cors) ? json_array_size(cors) : 0;
    c->host = strdup(addr);
    c->api_key = key && *key ? strdup(key) : NULL;
    c->api_key_len = c->api_key ? strlen(c->api_key) : 0;
    c->cors_origins = n ? calloc(n, sizeof *c->cors_origins) : NULL;
    if (!c->host || (key && *key && !c->api_key) || (n && !c->cors_origins))
        goto nomem;
    for (size_t i = 0; i < n; i++) {
        const char *o = json_string_value(json_array_get(cors, i));
        if (!o || !*o)
            continue;
        if (!strcmp(o, "*")) {
            c->cors_any = 1;
            continue;
        }
        if (!origin_valid(o)) {
            config_free(c);
            return arq_error_set(err, ARQ_EINVAL,
                                 "cors_origins: \"%s\" is not an origin: write "
                                 "scheme://host[:port] (e.g. https://app.example.com) or *",
                                 o);
        }
        if (!(c->cors_origins[c->ncors++] = strdup(o)))
            goto nomem;
    }
    return 0;
nomem:
    config_free(c);
    return arq_error_set(err, ARQ_ENOMEM, "out of memory");
}

/* --- life cycle ---------------------------------------------------------------------------- */

static void server_free(struct http_server *srv)
{
    config_free(&srv->cfg);
    free(srv->name);
    free(srv);
}

static int http_create(const struct arq_host *host, arq_ctx *ctx, const json_t *cfg, void **self,
                       struct arq_error *err)
{
    /* The server-side services this plugin calls, new in the host's table: refuse a host
     * without them at create time rather than crash at the first request. */
    const char *missing = !ARQ_HOST_HAS(host, bus_query)           ? "bus_query"
                          : !ARQ_HOST_HAS(host, bus_query_async)   ? "bus_query_async"
                          : !ARQ_HOST_HAS(host, bus_disconnect)    ? "bus_disconnect"
                          : !ARQ_HOST_HAS(host, bus_ready)         ? "bus_ready"
                          : !ARQ_HOST_HAS(host, bus_publish)       ? "bus_publish"
                          : !ARQ_HOST_HAS(host, bus_history_query) ? "bus_history_query"
                          : !ARQ_HOST_HAS(host, bus_reload_async)  ? "bus_reload_async"
                                                                   : NULL;
    if (missing)
        return arq_error_set(err, ARQ_ENOTSUP,
                             "this arqonbusd does not offer %s, which the HTTP API needs "
                             "(upgrade arqonbusd)",
                             missing);
    struct http_server *srv = calloc(1, sizeof *srv);
    if (!srv)
        return arq_error_set(err, ARQ_ENOMEM, "out of memory");
    srv->host = host;
    srv->ctx = ctx;
    srv->listen_fd = -1;
    srv->bound_port = -1;
    srv->name = strdup(host->instance_name(ctx));
    if (!srv->name) {
        free(srv);
        return arq_error_set(err, ARQ_ENOMEM, "out of memory");
    }
    int rc = config_parse(host, cfg, &srv->cfg, err);
    if (rc != 0) {
        server_free(srv);
        return rc;
    }
    static const char *const req_labels[] = {"instance", "method", "status", NULL};
    srv->m_requests = host->metric_register(
        ctx, ARQ_METRIC_COUNTER, "arqonbus_http_requests_total",
        "HTTP requests answered, by method and status class (2xx, 4xx, ...).", req_labels, NULL, 0);
    srv->s_duration = arq_instance_series(srv->host, srv->ctx, ARQ_METRIC_HISTOGRAM,
                                          "arqonbus_http_request_duration_seconds",
                                          "Time from a request's headers to its completion.");
    srv->s_conns = arq_instance_series(srv->host, srv->ctx, ARQ_METRIC_GAUGE,
                                       "arqonbus_http_connections", "Open HTTP connections.");
    *self = srv;
    return 0;
}

static int http_start(void *self, void *predecessor, struct arq_error *err)
{
    struct http_server *srv = self;
    struct http_server *pred = predecessor;
    if (http_daemon__start(srv, pred, err) != 0)
        return ARQ_EIO;
    char port[16];
    snprintf(port, sizeof port, "%d", srv->bound_port);
    ARQ_LOG(srv->host, srv->ctx, ARQ_LOG_INFO, "listening", "addr", srv->bound_addr, "port", port,
            "listener", srv->inherited ? "inherited" : "new", "keyed_endpoints",
            srv->cfg.api_key ? "enabled" : "disabled (no api_key)");
    return 0;
}

static int http_reconfigure(void *self, const json_t *cfg, struct arq_error *err)
{
    struct http_server *srv = self;
    struct http_config next;
    if (config_parse(srv->host, cfg, &next, err) != 0)
        return ARQ_EINVAL;
    /* Only the RELOADABLE fields move over; the rest stays as the daemon was started. */
    struct http_config *c = &srv->cfg;
    free(c->api_key);
    for (size_t i = 0; i < c->ncors; i++)
        free(c->cors_origins[i]);
    free(c->cors_origins);
    c->api_key = next.api_key;
    c->api_key_len = next.api_key_len;
    c->max_body_bytes = next.max_body_bytes;
    c->cors_origins = next.cors_origins;
    c->ncors = next.ncors;
    c->cors_any = next.cors_any;
    next.api_key = NULL;
    next.cors_origins = NULL;
    next.ncors = 0;
    config_free(&next);
    char body[32];
    snprintf(body, sizeof body, "%zu", c->max_body_bytes);
    ARQ_LOG(srv->host, srv->ctx, ARQ_LOG_INFO, "http options applied", "max_body_bytes", body,
            "keyed_endpoints", c->api_key ? "enabled" : "disabled (no api_key)", "cors",
            c->cors_any ? "*"
            : c->ncors  ? "listed origins"
                        : "off");
    return 0;
}

#define HOLD_TIMEOUT_MS 10000 /* how long a retired instance waits for its last requests */

static void hold_expired(void *arg)
{
    struct http_server *srv = arg;
    srv->hold_timer = NULL; /* one-shot: the host frees it with the instance */
    if (srv->holding) {
        srv->holding = 0;
        srv->host->retire_release(srv->ctx);
    }
}

void http_server__request_gone(struct http_server *srv)
{
    if (srv->holding && srv->nreqs == 0) {
        srv->holding = 0;
        srv->host->retire_release(srv->ctx);
    }
}

static void http_stop(void *self)
{
    struct http_server *srv = self;
    const struct arq_host *h = srv->host;
    srv->stopped = 1;
    http_daemon__quiesce(srv);
    /* Replaced by a reload (POST /admin/reload among others): answer what is in flight
     * before the host destroys us. */
    if (!srv->nreqs || !ARQ_HOST_HAS(h, retire_release) || !ARQ_HOST_HAS(h, retire_hold))
        return;
    srv->holding = 1;
    h->retire_hold(srv->ctx);
    srv->hold_timer = h->timer_start(srv->ctx, HOLD_TIMEOUT_MS, 0, hold_expired, srv);
}

static void http_destroy(void *self)
{
    struct http_server *srv = self;
    srv->holding = 0; /* the host is destroying us: nothing left to release */
    http_daemon__destroy(srv);
    server_free(srv);
}

static int http_bound_port(void *self)
{
    const struct http_server *srv = self;
    return srv->listen_fd >= 0 ? srv->bound_port : -1;
}

/* The descriptor. */
static const struct arq_transport_ops ops = {
    .struct_size = sizeof(struct arq_transport_ops),
    .flush = NULL, /* opens no bus connections */
    .bound_port = http_bound_port,
};

static const struct arq_plugin descriptor = {
    ARQ_PLUGIN_HEAD,
    .name = "transport-http",
    .version = "1.0.0",
    .summary = "HTTP API: health, readiness, status, metrics, history, publish, admin",
    .kind = ARQ_KIND_TRANSPORT,
    .options = options,
    .create = http_create,
    .start = http_start,
    .reconfigure = http_reconfigure,
    .stop = http_stop,
    .destroy = http_destroy,
    .ops = &ops,
};
ARQ_PLUGIN(descriptor)
