/* telemetry-websocket: a telemetry sink that serves the bus's events to WebSocket clients,
 * coalesced into {"type":"telemetry_batch","events":[…]} frames. emit_batch only serialises
 * (once per event) and copies into each client's queue; the writes happen later, from
 * libwebsockets' writable callbacks, so no telemetry client can slow the bus. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net_listen.h"
#include "tws.h"

/* Options. The host has checked them; sizes arrive in bytes, durations in milliseconds. */
static const struct arq_option options[] = {
    ARQ_OPT("host", ARQ_OPT_STRING, "127.0.0.1", 0,
            "numeric IPv4 or IPv6 address to listen on (0.0.0.0 or :: for every interface)"),
    ARQ_OPT_RANGE("port", ARQ_OPT_INT, "8081", 0, 65535, 0,
                  "TCP port; 0 picks a free port (logged as msg=listening ... port=N)"),
    ARQ_OPT_RANGE("max_clients", ARQ_OPT_INT, "64", 1, 100000, ARQ_OPT_RELOADABLE,
                  "telemetry clients at once; further upgrades are refused with HTTP 503"),
    ARQ_OPT_RANGE("batch_size", ARQ_OPT_INT, "100", 1, 100000, ARQ_OPT_RELOADABLE,
                  "events per telemetry_batch frame; a full batch goes out at once"),
    ARQ_OPT_RANGE("flush_interval", ARQ_OPT_DURATION, "250ms", 1, 60000, ARQ_OPT_RELOADABLE,
                  "longest time an event waits for its batch to fill"),
    ARQ_OPT_RANGE("max_queued_bytes", ARQ_OPT_SIZE, "4MiB", 1024, 1024.0 * 1024 * 1024,
                  ARQ_OPT_RELOADABLE,
                  "bytes queued for one client before it is disconnected with 1013"),
    ARQ_OPT_END};

void tws_server__count(struct tws_server *srv, arq_series *s, double v)
{
    if (s && !srv->dead)
        srv->host->metric_add(s, v);
}

/* --- configuration ------------------------------------------------------------------------ */

static int config_parse(const struct arq_host *host, const json_t *cfg, struct tws_config *c,
                        struct arq_error *err)
{
    memset(c, 0, sizeof *c);
    const char *addr = host->opt_str(cfg, "host", "127.0.0.1");
    c->port = (int)host->opt_int(cfg, "port", 8081);
    c->max_clients = (size_t)host->opt_int(cfg, "max_clients", 64);
    c->batch_size = (size_t)host->opt_int(cfg, "batch_size", 100);
    c->flush_ms = (uint64_t)host->opt_int(cfg, "flush_interval", 250);
    c->max_queued_bytes = (size_t)host->opt_int(cfg, "max_queued_bytes", 4 << 20);
    if (arq_net_parse_address(addr, c->port, &c->addr, &c->addr_len, err) != 0)
        return ARQ_EINVAL;
    if (!(c->host = strdup(addr)))
        return arq_error_set(err, ARQ_ENOMEM, "out of memory");
    return 0;
}

/* --- the flush timer ----------------------------------------------------------------------- */

/* Armed by the first event of a batch, so an idle instance has no timer running. */
static void on_flush(void *arg)
{
    struct tws_server *srv = arg;
    srv->host->timer_stop(srv->flush_timer);
    srv->flush_timer = NULL;
    for (struct tws_client *c = srv->clients; c; c = c->next)
        tws_client__seal(c);
}

void tws_server__arm_flush(struct tws_server *srv)
{
    if (!srv->flush_timer)
        srv->flush_timer = srv->host->timer_start(srv->ctx, srv->cfg.flush_ms, 0, on_flush, srv);
    if (!srv->flush_timer) /* out of memory: better early than never */
        for (struct tws_client *c = srv->clients; c; c = c->next)
            tws_client__seal(c);
}

/* --- the work ------------------------------------------------------------------------------ */

static void tws_emit_batch(void *self, const struct arq_event *const *events, size_t n)
{
    struct tws_server *srv = self;
    for (size_t i = 0; i < n && srv->clients; i++) {
        char *json = NULL;
        size_t len = 0;
        for (struct tws_client *c = srv->clients; c; c = c->next) {
            if (!tws_client__wants(c, events[i]->event_type))
                continue;
            if (!json) {
                if (!(json = srv->host->event_json(events[i])))
                    break; /* the host has logged why */
                len = strlen(json);
            }
            tws_client__push(c, json, len);
        }
        srv->host->free(json);
    }
}

/* --- life cycle ---------------------------------------------------------------------------- */

void tws_server__free(struct tws_server *srv)
{
    free(srv->cfg.host);
    free(srv->name);
    free(srv->node);
    free(srv);
}

static int tws_create(const struct arq_host *host, arq_ctx *ctx, const json_t *cfg, void **self,
                      struct arq_error *err)
{
    struct tws_server *srv = calloc(1, sizeof *srv);
    if (!srv)
        return arq_error_set(err, ARQ_ENOMEM, "out of memory");
    srv->host = host;
    srv->ctx = ctx;
    srv->bound_port = -1;
    srv->name = strdup(host->instance_name(ctx));
    srv->node = strdup(host->node_name(ctx));
    int rc = ARQ_ENOMEM;
    if (!srv->name || !srv->node) {
        arq_error_set(err, rc, "out of memory");
        goto fail;
    }
    if ((rc = config_parse(host, cfg, &srv->cfg, err)) != 0)
        goto fail;
    srv->m_clients =
        arq_instance_series(srv->host, srv->ctx, ARQ_METRIC_GAUGE, "arqonbus_telemetry_ws_clients",
                            "Connected telemetry WebSocket clients.");
    srv->m_sent = arq_instance_series(srv->host, srv->ctx, ARQ_METRIC_COUNTER,
                                      "arqonbus_telemetry_ws_events_sent_total",
                                      "Telemetry events written to telemetry WebSocket clients.");
    srv->m_dropped = arq_instance_series(
        srv->host, srv->ctx, ARQ_METRIC_COUNTER, "arqonbus_telemetry_ws_dropped_clients_total",
        "Telemetry WebSocket clients disconnected with 1013 for falling behind.");
    *self = srv;
    return 0;

fail:
    tws_server__free(srv);
    return rc;
}

static int tws_start(void *self, void *predecessor, struct arq_error *err)
{
    (void)predecessor; /* replaced only when host or port change: nothing to take over */
    struct tws_server *srv = self;
    int rc = tws_server__lws_create(srv, err);
    if (rc != 0 || (rc = tws_server__listen(srv, err)) != 0)
        return rc;
    char port[16];
    snprintf(port, sizeof port, "%d", srv->bound_port);
    ARQ_LOG(srv->host, srv->ctx, ARQ_LOG_INFO, "listening", "addr", srv->bound_addr, "port", port);
    return 0;
}

static int tws_reconfigure(void *self, const json_t *cfg, struct arq_error *err)
{
    struct tws_server *srv = self;
    struct tws_config next;
    if (config_parse(srv->host, cfg, &next, err) != 0)
        return ARQ_EINVAL;
    srv->cfg.max_clients = next.max_clients;
    srv->cfg.batch_size = next.batch_size;
    srv->cfg.flush_ms = next.flush_ms;
    srv->cfg.max_queued_bytes = next.max_queued_bytes;
    free(next.host);
    /* Batches open now go out under the new rules at the next flush. */
    for (struct tws_client *c = srv->clients; c; c = c->next)
        tws_client__seal(c);
    return 0;
}

static void tws_stop(void *self)
{
    struct tws_server *srv = self;
    srv->stopped = 1;
    tws_server__unlisten(srv);
}

static void tws_destroy(void *self)
{
    struct tws_server *srv = self;
    srv->stopped = 1;
    tws_server__unlisten(srv);
    for (struct tws_client *c = srv->clients; c; c = c->next) {
        tws_client__detach(c);
        tws_server__count(srv, srv->m_clients, -1);
    }
    srv->dead = 1; /* from here on, nothing reaches the host */
    tws_server__lws_destroy(srv);
}

/* The descriptor. */
static const struct arq_telemetry_ops ops = {
    .struct_size = sizeof(struct arq_telemetry_ops),
    .emit_batch = tws_emit_batch,
};

static const struct arq_plugin descriptor = {
    ARQ_PLUGIN_HEAD,
    .name = "telemetry-websocket",
    .version = "1.0.0",
    .summary = "serves telemetry events to WebSocket clients, in batches, with per-client filters",
    .kind = ARQ_KIND_TELEMETRY,
    .options = options,
    .create = tws_create,
    .start = tws_start,
    .reconfigure = tws_reconfigure,
    .stop = tws_stop,
    .destroy = tws_destroy,
    .ops = &ops,
};
ARQ_PLUGIN(descriptor)
