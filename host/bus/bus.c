/* The bus: what a client's message does, and the frames the server sends on its own. */
#include "bus.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "envelope.h"
#include "instance.h"
#include "log.h"
#include "metrics.h"
#include "options.h"
#include "telemetry.h"

const struct arq_option bus_options[] = {
    ARQ_OPT("auto_create", ARQ_OPT_BOOL, "true", ARQ_OPT_RELOADABLE,
            "joining a channel that does not exist creates it"),
    ARQ_OPT("members_only", ARQ_OPT_BOOL, "true", ARQ_OPT_RELOADABLE,
            "publishing to a channel or room requires being a member of it"),
    ARQ_OPT("presence", ARQ_OPT_STRING_LIST, NULL, ARQ_OPT_RELOADABLE,
            "rooms whose members get joined/left events (\"*\": every room)"),
    ARQ_OPT("anonymous_role", ARQ_OPT_STRING, "user", ARQ_OPT_RELOADABLE,
            "every client's role while no auth policy authenticates (auth off)"),
    ARQ_OPT("default_role", ARQ_OPT_STRING, "guest", ARQ_OPT_RELOADABLE,
            "role of a client no auth policy identified; \"\" refuses such clients (401)"),
    ARQ_OPT("expire_sessions", ARQ_OPT_BOOL, "true", ARQ_OPT_RELOADABLE,
            "close a client with 1008 when its credential's exp claim (a JWT's) passes"),
    ARQ_OPT_RANGE("max_connections", ARQ_OPT_INT, "0", 0, 10000000, ARQ_OPT_RELOADABLE,
                  "client connections over every transport; more are refused with 503 (0: no "
                  "limit)"),
    ARQ_OPT_RANGE("max_connections_per_ip", ARQ_OPT_INT, "0", 0, 10000000, ARQ_OPT_RELOADABLE,
                  "connections from one address; more are refused with 429 (0: no limit; "
                  "behind a proxy every client has the proxy's address)"),
    ARQ_OPT_RANGE("connection_rate_per_ip", ARQ_OPT_DOUBLE, "0", 0, 1000000, ARQ_OPT_RELOADABLE,
                  "new connections per second from one address; faster ones get 429 (0: off)"),
    ARQ_OPT_RANGE("connection_burst_per_ip", ARQ_OPT_INT, "20", 1, 1000000, ARQ_OPT_RELOADABLE,
                  "connections from one address allowed at once above connection_rate_per_ip"),
    ARQ_OPT_RANGE("max_rooms", ARQ_OPT_INT, "100000", 1, 100000000, ARQ_OPT_RELOADABLE,
                  "rooms that may exist; joining a new room past it is refused"),
    ARQ_OPT_RANGE("max_channels", ARQ_OPT_INT, "1000000", 1, 100000000, ARQ_OPT_RELOADABLE,
                  "channels that may exist over all rooms; creating one past it is refused"),
    ARQ_OPT_RANGE("max_name_length", ARQ_OPT_INT, "128", 1, 1024, ARQ_OPT_RELOADABLE,
                  "bytes in a room or channel name (letters, digits, _ . : - only)"),
    ARQ_OPT_RANGE("max_payload_depth", ARQ_OPT_INT, "32", 1, 1024, ARQ_OPT_RELOADABLE,
                  "nesting levels allowed in payload, args and metadata"),
    ARQ_OPT_RANGE("max_queued_bytes", ARQ_OPT_SIZE, "16MiB", 4096, 1073741824, ARQ_OPT_RELOADABLE,
                  "outbound queue bound per connection when its transport sets none"),
    ARQ_OPT_RANGE("command_timeout", ARQ_OPT_DURATION, "30s", 100, 3600000, ARQ_OPT_RELOADABLE,
                  "a command not answered by then gets EXECUTION_ERROR"),
    ARQ_OPT_RANGE("max_clock_skew", ARQ_OPT_DURATION, "24h", 0, 31536000000.0, ARQ_OPT_RELOADABLE,
                  "how far in the future a client's timestamp may be"),
    ARQ_OPT_RANGE("max_memberships", ARQ_OPT_INT, "1000", 1, 1000000, ARQ_OPT_RELOADABLE,
                  "rooms and channels one connection may be a member of"),
    ARQ_OPT("telemetry_messages", ARQ_OPT_BOOL, "false", ARQ_OPT_RELOADABLE,
            "emit message_routed / message_rejected telemetry events (one per message)"),
    ARQ_OPT_END};

void bus_settings_read(struct bus_settings *s, const json_t *v)
{
    s->auto_create = opt_get_bool(v, "auto_create", 1);
    s->members_only = opt_get_bool(v, "members_only", 1);
    s->presence = opt_get_json(v, "presence");
    s->anonymous_role = opt_get_str(v, "anonymous_role", "user");
    s->default_role = opt_get_str(v, "default_role", "guest");
    s->max_connections = (size_t)opt_get_int(v, "max_connections", 0);
    s->max_connections_per_ip = (size_t)opt_get_int(v, "max_connections_per_ip", 0);
    s->connection_rate_per_ip = opt_get_double(v, "connection_rate_per_ip", 0);
    s->connection_burst_per_ip = (size_t)opt_get_int(v, "connection_burst_per_ip", 20);
    s->max_rooms = (size_t)opt_get_int(v, "max_rooms", 100000);
    s->max_channels = (size_t)opt_get_int(v, "max_channels", 1000000);
    s->max_name_length = (size_t)opt_get_int(v, "max_name_length", 128);
    s->max_payload_depth = (int)opt_get_int(v, "max_payload_depth", 32);
    s->expire_sessions = opt_get_bool(v, "expire_sessions", 1);
    s->max_queued_bytes = (size_t)opt_get_int(v, "max_queued_bytes", 16 << 20);
    s->command_timeout_ms = (uint64_t)opt_get_int(v, "command_timeout", 30000);
    s->max_clock_skew_ms = opt_get_int(v, "max_clock_skew", 86400000);
    s->max_memberships = (size_t)opt_get_int(v, "max_memberships", 1000);
    s->telemetry_messages = opt_get_bool(v, "telemetry_messages", 0);
}

/* --- time ---------------------------------------------------------------------------------- */

int64_t bus_now_ms(const struct bus *b)
{
    return b->env.now_ms(b->env.arg);
}

struct bus *bus_of(const arq_ctx *ctx)
{
    return ctx->app;
}

arq_metric *bus_family(struct bus *b, enum arq_metric_type type, const char *name, const char *help,
                       const char *const *labels, const double *buckets, size_t nbuckets)
{
    arq_metric **grown = realloc(b->families, (b->nfamilies + 1) * sizeof *grown);
    if (!grown)
        return NULL;
    b->families = grown;
    arq_metric *m = metrics_register(b->env.metrics, type, name, help, labels, buckets, nbuckets);
    if (m)
        b->families[b->nfamilies++] = m;
    return m;
}

arq_series *bus_series(struct bus *b, enum arq_metric_type type, const char *name, const char *help,
                       const char *label, const char *value)
{
    const char *names[] = {label, NULL};
    const char *values[] = {value, NULL};
    arq_metric *m = bus_family(b, type, name, help, label ? names : NULL, NULL, 0);
    return m ? metrics_series(m, label ? values : NULL) : NULL;
}

void bus_event(struct bus *b, const struct arq_event *ev)
{
    telemetry_push(b->env.telemetry, ev, b->env.node, "host");
}

/* --- set-up -------------------------------------------------------------------------------- */

int bus_init(struct bus *b, const struct bus_env *env)
{
    memset(b, 0, sizeof *b);
    b->env = *env;
    b->settings_values = json_object();
    bus_settings_read(&b->settings, b->settings_values);
    uv_timer_init(env->loop, &b->sweep);
    b->sweep.data = b;
    uv_timer_init(env->loop, &b->cluster_timer);
    b->cluster_timer.data = b;
    static const double latency[] = {0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005,
                                     0.001,   0.0025,   0.005,   0.01,   0.025,   0.1};
    const char *cmd_labels[] = {"command", "status", NULL};
    const char *transport_label[] = {"transport", NULL};
    b->f_conns =
        bus_family(b, ARQ_METRIC_GAUGE, "arqonbus_connections",
                   "Client connections open, by transport instance.", transport_label, NULL, 0);
    b->f_opened =
        bus_family(b, ARQ_METRIC_COUNTER, "arqonbus_connections_opened_total",
                   "Client connections opened, by transport instance.", transport_label, NULL, 0);
    b->f_closed =
        bus_family(b, ARQ_METRIC_COUNTER, "arqonbus_connections_closed_total",
                   "Client connections closed, by transport instance.", transport_label, NULL, 0);
    b->m_msgs_in = bus_series(b, ARQ_METRIC_COUNTER, "arqonbus_messages_received_total",
                              "Messages received from clients.", NULL, NULL);
    b->m_deliveries = bus_series(b, ARQ_METRIC_COUNTER, "arqonbus_messages_delivered_total",
                                 "Messages queued to recipients.", NULL, NULL);
    b->m_dropped_slow = bus_series(b, ARQ_METRIC_COUNTER, "arqonbus_messages_dropped_total",
                                   "Frames queued to a client but never written, by reason.",
                                   "reason", "slow_consumer");
    b->m_dropped_closed = bus_series(b, ARQ_METRIC_COUNTER, "arqonbus_messages_dropped_total",
                                     "Frames queued to a client but never written, by reason.",
                                     "reason", "disconnected");
    b->m_rejected = bus_series(b, ARQ_METRIC_COUNTER, "arqonbus_messages_rejected_total",
                               "Client frames answered with an error.", NULL, NULL);
    b->m_slow =
        bus_series(b, ARQ_METRIC_COUNTER, "arqonbus_slow_consumer_disconnects_total",
                   "Clients disconnected because their outbound queue was full.", NULL, NULL);
    b->m_bytes_in = bus_series(b, ARQ_METRIC_COUNTER, "arqonbus_received_bytes_total",
                               "Bytes of client messages received.", NULL, NULL);
    b->m_bytes_out = bus_series(b, ARQ_METRIC_COUNTER, "arqonbus_sent_bytes_total",
                                "Bytes of frames written to clients.", NULL, NULL);
    b->m_rooms = bus_series(b, ARQ_METRIC_GAUGE, "arqonbus_rooms", "Rooms that exist.", NULL, NULL);
    b->m_channels =
        bus_series(b, ARQ_METRIC_GAUGE, "arqonbus_channels", "Channels that exist.", NULL, NULL);
    arq_metric *routing = bus_family(b, ARQ_METRIC_HISTOGRAM, "arqonbus_routing_duration_seconds",
                                     "Time from a message's arrival to its fan-out being queued.",
                                     NULL, latency, sizeof latency / sizeof latency[0]);
    arq_metric *command =
        bus_family(b, ARQ_METRIC_HISTOGRAM, "arqonbus_command_duration_seconds",
                   "Time from a command's arrival to its response.", NULL, NULL, 0);
    b->m_routing_seconds = routing ? metrics_series(routing, NULL) : NULL;
    b->m_command_seconds = command ? metrics_series(command, NULL) : NULL;
    b->m_commands = bus_family(b, ARQ_METRIC_COUNTER, "arqonbus_commands_total",
                               "Commands executed, by command and result.", cmd_labels, NULL, 0);
    b->m_cmd_unknown = bus_command_series(b, "unknown", 0);
    if (!b->settings_values || !b->f_conns || !b->f_opened || !b->f_closed || !b->m_dropped_slow ||
        !b->m_dropped_closed || !b->m_msgs_in || !b->m_deliveries || !b->m_rejected || !b->m_slow ||
        !b->m_bytes_in || !b->m_bytes_out || !b->m_rooms || !b->m_channels ||
        !b->m_routing_seconds || !b->m_command_seconds || !b->m_cmd_unknown || auth_init(b) != 0)
        return -1;
    return 0;
}

arq_series *bus_command_series(struct bus *b, const char *name, int ok)
{
    const char *values[] = {name, ok ? "success" : "error", NULL};
    return b->m_commands ? metrics_series(b->m_commands, values) : NULL;
}

void bus_configure(struct bus *b, json_t *values)
{
    json_decref(b->settings_values);
    b->settings_values = values;
    bus_settings_read(&b->settings, values);
}

void bus_generation_changed(struct bus *b)
{
    bus_commands_rebuild(b);
    auth_rebuild(b);
    broker_generation_changed(b);
}

void bus_instance_destroyed(struct bus *b, struct arq_ctx *ctx)
{
    if (ctx->mod->desc->kind == ARQ_KIND_TRANSPORT)
        conn_drop_transport(b, ctx); /* whatever the transport did not report closed */
    broker_instance_destroyed(b, ctx);
}

void bus_stopping(struct bus *b)
{
    b->stopping = 1;
    struct arq_conn *c = b->all;
    while (c) {
        struct arq_conn *next = c->next;
        conn_close(c, 1001, "Server shutting down");
        c = next;
    }
    if (!uv_is_closing((uv_handle_t *)&b->sweep))
        uv_close((uv_handle_t *)&b->sweep, NULL);
    if (!uv_is_closing((uv_handle_t *)&b->cluster_timer))
        uv_close((uv_handle_t *)&b->cluster_timer, NULL);
    auth_shutdown(b);
    commands_drop_all(b);
}

void bus_free(struct bus *b)
{
    auth_free(b);
    hmap_free(&b->conns);
    size_t i = 0;
    void *v;
    while (hmap_next(&b->rooms, &i, NULL, &v)) {
        struct room *r = v;
        size_t j = 0;
        void *cv;
        while (hmap_next(&r->channels, &j, NULL, &cv)) {
            struct channel *ch = cv;
            free(ch->members);
            free(ch->description);
            free(ch->name);
            free(ch);
        }
        hmap_free(&r->channels);
        free(r->members);
        free(r->name);
        free(r);
    }
    hmap_free(&b->rooms);
    hmap_free(&b->commands);
    free(b->entries);
    json_decref(b->cluster_nodes);
    json_decref(b->settings_values);
    for (size_t k = 0; k < b->nfamilies; k++)
        metrics_release(b->env.metrics, b->families[k]);
    free(b->families);
}

/* --- frames the server writes -------------------------------------------------------------- */

/* id, timestamp and version, as every server frame carries. */
static json_t *bus__frame(const struct bus *b, const char *type)
{
    char id[32], ts[32];
    int64_t now = bus_now_ms(b);
    envelope_new_id(id, now);
    envelope_format_timestamp(now, ts);
    return json_pack("{s:s, s:s, s:s, s:s}", "id", id, "timestamp", ts, "version", "1.0", "type",
                     type);
}

void bus_send_error(struct bus *b, struct arq_conn *c, const char *code, const char *text,
                    const char *request_id, json_t *payload_take)
{
    metrics_add(b->m_rejected, 1);
    if (b->settings.telemetry_messages) {
        struct arq_event ev = {
            .struct_size = sizeof ev,
            .event_type = "message_rejected",
            .client_id = c->id,
            .data = json_pack("{s:s, s:s?}", "error_code", code, "request_id", request_id)};
        bus_event(b, &ev);
        json_decref(ev.data);
    }
    json_t *frame = envelope_error_frame(code, text, request_id, payload_take, bus_now_ms(b));
    if (frame)
        conn_send_json(c, frame);
    json_decref(frame);
}

void bus_conn_opened(struct bus *b, struct arq_conn *c)
{
    const char *transport[] = {c->transport->name, NULL};
    c->m_open = metrics_series(b->f_conns, transport);
    c->m_closed = metrics_series(b->f_closed, transport);
    metrics_add(c->m_open, 1);
    metrics_add(metrics_series(b->f_opened, transport), 1);
    json_t *w = bus__frame(b, "message");
    if (w) {
        json_object_set_new(w, "sender", json_string("arqonbus"));
        json_object_set_new(w, "payload",
                            json_pack("{s:s, s:s, s:{s:s, s:s}}", "welcome",
                                      "Connected to ArqonBus", "client_id", c->id, "server",
                                      "version", ARQ_VERSION, "node", b->env.node));
        conn_send_json(c, w);
    }
    json_decref(w);
    struct arq_event ev = {
        .struct_size = sizeof ev, .event_type = "client_connected", .client_id = c->id};
    bus_event(b, &ev);
    broker_client(b, c, 1);
}

void bus_conn_closed(struct bus *b, struct arq_conn *c)
{
    router_leave_all(b, c);
    broker_client(b, c, 0);
    metrics_add(c->m_open, -1);
    metrics_add(c->m_closed, 1);
    struct arq_event ev = {
        .struct_size = sizeof ev, .event_type = "client_disconnected", .client_id = c->id};
    bus_event(b, &ev);
}

/* --- messages ------------------------------------------------------------------------------ */

/* A routing failure: an error frame to the publishing client, or the server-side caller's
 * callback. */
static void bus__refuse(struct bus *b, struct arq_conn *c, arq_result_cb cb, void *arg,
                        const char *code, const char *text, const char *id, json_t *payload_take)
{
    if (c) {
        bus_send_error(b, c, code, text, id, payload_take);
        return;
    }
    /* Without a client there is always a callback: bus_publish, the only caller that routes
     * with c NULL, requires one.
     * NOLINTNEXTLINE(clang-analyzer-core.CallAndMessage) */
    cb(arg, code, text, payload_take);
    json_decref(payload_take);
}

/* A `message_routed` telemetry event, when bus.telemetry_messages asks for them. */
static void bus__routed_event(struct bus *b, const struct arq_conn *c, const char *id,
                              const char *room, const char *channel, size_t delivered)
{
    if (!b->settings.telemetry_messages)
        return;
    /* Built by hand: json_pack would parse its format for every message (2.5x the cost). */
    json_t *data = json_object();
    if (data &&
        (json_object_set_new_nocheck(data, "id", json_string(id)) ||
         json_object_set_new_nocheck(data, "delivered", json_integer((json_int_t)delivered)))) {
        json_decref(data);
        data = NULL;
    }
    struct arq_event ev = {.struct_size = sizeof ev,
                           .event_type = "message_routed",
                           .client_id = c ? c->id : NULL,
                           .room = room,
                           .channel = channel,
                           .data = data};
    bus_event(b, &ev);
    json_decref(data);
}

/* A direct message to a client this node does not hold: the broker says which node does
 * (or that none does), then it goes there. */
struct remote_direct {
    struct bus *bus;
    struct arq_conn *conn; /* referenced, or NULL (server-side publish) */
    arq_result_cb cb;
    void *arg;
    struct frame *frame; /* referenced */
    char *to;
    char id[];
};

static void bus__remote_found(void *arg, const char *error_code, const char *text,
                              const json_t *data)
{
    struct remote_direct *d = arg;
    struct bus *b = d->bus;
    char why[400];
    (void)data;
    if (!error_code) {
        broker_publish(b, NULL, NULL, d->to, d->frame);
        bus__routed_event(b, d->conn, d->id, NULL, NULL, 1);
        if (!d->conn || d->conn->ack)
            storage_tell(d->conn, d->cb, d->arg, d->id, 1, 0, NULL);
    } else if (!d->conn || d->conn->state == CONN_OPEN) {
        if (!strcmp(error_code, ARQ_ERR_NOT_FOUND)) /* as on one node */
            snprintf(why, sizeof why, "Client %s is not connected", d->to);
        else
            snprintf(why, sizeof why, "%s", text ? text : "The cluster cannot be reached");
        bus__refuse(b, d->conn, d->cb, d->arg, error_code, why, d->id, NULL);
    }
    if (d->conn)
        conn_unref(d->conn);
    frame_unref(d->frame);
    free(d->to);
    free(d);
}

static void bus__route_remote(struct bus *b, struct arq_conn *c, const struct envelope *env,
                              struct frame *f, arq_result_cb cb, void *arg)
{
    char text[400];
    size_t idlen = strlen(env->id);
    struct remote_direct *d = malloc(sizeof *d + idlen + 1);
    if (!d || !(d->to = strdup(env->to_client))) {
        free(d);
        bus__refuse(b, c, cb, arg, ARQ_ERR_INTERNAL, "Out of memory", env->id, NULL);
        return;
    }
    d->bus = b;
    d->conn = c;
    d->cb = cb;
    d->arg = arg;
    d->frame = f;
    memcpy(d->id, env->id, idlen + 1);
    if (c)
        conn_ref(c);
    f->refs++;
    if (broker_find_client(b, env->to_client, bus__remote_found, d) != 0) {
        snprintf(text, sizeof text, "The cluster cannot tell where client %s is", env->to_client);
        bus__remote_found(d, ARQ_ERR_NOT_FOUND, text, NULL);
    }
}

/* Route a message from client `c`, or from the server itself (c NULL: sender "arqonbus", no
 * membership needed, the outcome through cb). `prebuilt` is the outbound frame the fast path
 * made (sender set; env->frame is its text), or NULL to serialise env->root. */
static void bus__route(struct bus *b, struct arq_conn *c, struct envelope *env,
                       struct frame *prebuilt, arq_result_cb cb, void *arg)
{
    struct room *r = NULL;
    struct channel *ch = NULL;
    struct arq_conn *target = NULL;
    char text[400];

    if (c && (env->to_client || env->room)) {
        struct arq_action what = {.struct_size = sizeof what,
                                  .action = env->to_client ? "direct" : "publish",
                                  .room = env->to_client ? NULL : env->room,
                                  .channel = env->to_client ? NULL : env->channel,
                                  .client_id = env->to_client};
        uint64_t retry_after_ms = 0;
        const char *refused = auth_check(b, c, &what, text, sizeof text, &retry_after_ms);
        if (refused) {
            bus__refuse(b, c, cb, arg, refused, text, env->id,
                        retry_after_ms
                            ? json_pack("{s:I}", "retry_after_ms", (json_int_t)retry_after_ms)
                            : NULL);
            return;
        }
    }
    /* With a broker, a room, channel or client this node does not know may be on another
     * (asked only when one is missing: the common path looks the broker up once, to publish). */
    if (env->to_client) {
        target = conn_find(b, env->to_client);
        if (target && target->state != CONN_OPEN)
            target = NULL;
        if (!target && !broker_current(b)) {
            snprintf(text, sizeof text, "Client %s is not connected", env->to_client);
            bus__refuse(b, c, cb, arg, ARQ_ERR_NOT_FOUND, text, env->id, NULL);
            return;
        }
    } else if (env->room) {
        r = router_room(b, env->room);
        ch = env->channel ? router_channel(r, env->channel) : NULL;
        if (!r && !broker_current(b)) {
            snprintf(text, sizeof text, "Room %s does not exist", env->room);
            bus__refuse(b, c, cb, arg, ARQ_ERR_ROOM_NOT_FOUND, text, env->id, NULL);
            return;
        }
        if (env->channel && !ch && !broker_current(b)) {
            snprintf(text, sizeof text, "Channel %s/%s does not exist", env->room, env->channel);
            bus__refuse(b, c, cb, arg, ARQ_ERR_CHANNEL_NOT_FOUND, text, env->id, NULL);
            return;
        }
        if (c && b->settings.members_only &&
            !(r && (ch || !env->channel) && router_is_member(c, r, ch))) {
            if (env->channel)
                snprintf(text, sizeof text, "Not a member of channel %s/%s", env->room,
                         env->channel);
            else
                snprintf(text, sizeof text, "Not a member of room %s", env->room);
            bus__refuse(b, c, cb, arg, ARQ_ERR_AUTHORIZATION, text, env->id, NULL);
            return;
        }
    } else {
        bus__refuse(
            b, c, cb, arg, ARQ_ERR_VALIDATION, "A message needs room, room+channel or to_client",
            env->id,
            json_pack("{s:[s]}", "errors", "A message needs room, room+channel or to_client"));
        return;
    }

    struct frame *f = prebuilt;
    if (f) {
        f->refs++;
    } else if (envelope_set_sender(env, c ? c->id : "arqonbus") != 0 ||
               !(f = frame_from_json(env->root))) {
        bus__refuse(b, c, cb, arg, ARQ_ERR_INTERNAL, "Out of memory", env->id, NULL);
        return;
    }
    snprintf(f->msg_id, sizeof f->msg_id, "%s", env->id);
    if (env->to_client && !target) {
        bus__route_remote(b, c, env, f, cb, arg);
        frame_unref(f);
        return;
    }
    size_t delivered;
    if (target) {
        delivered = target == c ? 0 : conn_send(target, f) == 0;
    } else {
        delivered = r && (ch || !env->channel) ? router_fanout(b, r, ch, f, c) : 0;
        broker_publish(b, env->room, env->channel, NULL, f);
    }
    metrics_add(b->m_deliveries, (double)delivered);
    bus__routed_event(b, c, env->id, env->room, env->channel, delivered);
    storage_store(b, env, f, delivered, c, cb, arg);
    frame_unref(f);
}

int bus_svc_ready(arq_ctx *ctx)
{
    struct bus *b = bus_of(ctx);
    return b->env.accepting(b->env.arg);
}

void bus_svc_publish(arq_ctx *ctx, const json_t *message, arq_result_cb cb, void *arg)
{
    static const char *const allowed[] = {"room",    "channel",  "to_client",
                                          "payload", "metadata", NULL};
    struct bus *b = bus_of(ctx);
    const char *key;
    json_t *v;
    if (!json_is_object(message)) {
        cb(arg, ARQ_ERR_VALIDATION, "A publish is a JSON object", NULL);
        return;
    }
    json_object_foreach((json_t *)message, key, v)
    {
        int ok = 0;
        for (const char *const *a = allowed; *a; a++)
            ok |= !strcmp(*a, key);
        if (!ok) {
            char text[200];
            snprintf(text, sizeof text, "Unknown field '%.64s'", key);
            cb(arg, ARQ_ERR_VALIDATION, text, NULL);
            return;
        }
    }
    /* Through the envelope parser, so that a server-side message obeys every client rule. */
    json_t *env_obj = json_deep_copy(message);
    char *text = NULL;
    if (!env_obj || json_object_set_new(env_obj, "type", json_string("message")) != 0 ||
        !(text = envelope_dump(env_obj, NULL))) {
        json_decref(env_obj);
        cb(arg, ARQ_ERR_INTERNAL, "Out of memory", NULL);
        return;
    }
    json_decref(env_obj);
    struct envelope env;
    struct env_error err;
    struct env_limits limits = {.max_clock_skew_ms = b->settings.max_clock_skew_ms,
                                .max_depth = b->settings.max_payload_depth,
                                .max_name_length = b->settings.max_name_length};
    int rc = envelope_parse(text, strlen(text), bus_now_ms(b), &limits, &env, &err);
    free(text);
    if (rc != 0) {
        cb(arg, err.code, err.text, err.payload);
        envelope_error_clear(&err);
        return;
    }
    bus__route(b, NULL, &env, NULL, cb, arg);
    envelope_release(&env);
}

void bus_receive(struct bus *b, struct arq_conn *c, const char *data, size_t len, int binary)
{
    uint64_t t0 = uv_hrtime();
    metrics_add(b->m_msgs_in, 1);
    metrics_add(b->m_bytes_in, (double)len);
    if (binary) {
        bus_send_error(b, c, ARQ_ERR_UNSUPPORTED_FRAME,
                       "Binary frames are not supported: no binary codec is configured", NULL,
                       NULL);
        return;
    }
    struct envelope env;
    struct env_error err;
    struct env_fast scan;
    struct frame *f = NULL; /* the fast path's outbound frame; env's strings live in it too */
    struct env_limits limits = {.max_clock_skew_ms = b->settings.max_clock_skew_ms,
                                .max_depth = b->settings.max_payload_depth,
                                .max_name_length = b->settings.max_name_length};
    int64_t now = bus_now_ms(b);
    /* The common message without a jansson tree; whatever it declines (or if the frame cannot
     * be allocated) the parser handles, with its errors. */
    if (envelope_fast_scan(data, len, now, &limits, c->id, &scan) == 0 &&
        (f = frame_alloc_text(scan.out_len, scan.strings_len))) {
        char *text = (char *)f->data;
        envelope_fast_write(&scan, text, text + scan.out_len + 1, &env);
    } else if (envelope_parse(data, len, now, &limits, &env, &err) != 0) {
        bus_send_error(b, c, err.code, err.text, err.id, err.payload);
        err.payload = NULL; /* taken */
        envelope_error_clear(&err);
        return;
    }
    switch (env.type) {
    case ENV_MESSAGE:
        bus__route(b, c, &env, f, NULL, NULL);
        metrics_observe(b->m_routing_seconds, (double)(uv_hrtime() - t0) / 1e9);
        break;
    case ENV_COMMAND:
        commands_execute(b, c, env.id, env.command, env.args);
        break;
    case ENV_TELEMETRY: {
        /* A client's own telemetry goes to the sinks, tagged with who sent it. */
        struct arq_event ev = {.struct_size = sizeof ev,
                               .event_type = "client_telemetry",
                               .client_id = c->id,
                               .room = env.room,
                               .channel = env.channel,
                               .data = (json_t *)env.payload};
        bus_event(b, &ev);
        break;
    }
    case ENV_RESPONSE:
    case ENV_ERROR:
    case ENV_OPERATOR_JOIN:
        /* Accepted for compatibility with 1.0 clients; nothing on the server answers them. */
        break;
    }
    envelope_release(&env);
    frame_unref(f);
}
