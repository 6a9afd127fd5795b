/* The bus as command sets see it: memberships, channels, disconnects and read-only views. */
#include <stdio.h>
#include <string.h>

#include "bus.h"
#include "envelope.h"
#include "instance.h"

const char *bus_check_names(const struct bus *b, const char *room, const char *channel,
                            struct arq_error *err)
{
    size_t max = b->settings.max_name_length;
    if (!room || !envelope_valid_name(room, max)) {
        arq_error_set(err, 0, "Invalid room name: %s", room ? room : "(none)");
        return ARQ_ERR_VALIDATION;
    }
    if (channel && !envelope_valid_name(channel, max)) {
        arq_error_set(err, 0, "Invalid channel name: %s", channel);
        return ARQ_ERR_VALIDATION;
    }
    return NULL;
}

static void bus__event(struct bus *b, const char *type, const struct arq_conn *c, const char *room,
                       const char *channel)
{
    struct arq_event ev = {.struct_size = sizeof ev,
                           .event_type = type,
                           .client_id = c ? c->id : NULL,
                           .room = room,
                           .channel = channel};
    bus_event(b, &ev);
}

const char *bus_svc_join(arq_conn *conn, const char *room, const char *channel,
                         struct arq_error *err)
{
    struct bus *b = conn->bus;
    const char *code = bus_check_names(b, room, channel, err);
    if (!code && conn->state != CONN_OPEN) {
        arq_error_set(err, 0, "The client is disconnecting");
        code = ARQ_ERR_EXECUTION;
    }
    if (!code)
        code = bus_join_authorized(b, conn, room, channel, err);
    return code;
}

const char *bus_join_authorized(struct bus *b, struct arq_conn *c, const char *room,
                                const char *channel, struct arq_error *err)
{
    struct arq_action what = {
        .struct_size = sizeof what, .action = "join", .room = room, .channel = channel};
    uint64_t retry_after_ms = 0;
    char text[400];
    const char *code = auth_check(b, c, &what, text, sizeof text, &retry_after_ms);
    if (code)
        arq_error_set(err, 0, "%s", text);
    else if (!(code = router_join(b, c, room, channel, err)))
        bus__event(b, "client_joined", c, room, channel);
    return code;
}

const char *bus_svc_leave(arq_conn *conn, const char *room, const char *channel,
                          struct arq_error *err)
{
    struct bus *b = conn->bus;
    const char *code = bus_check_names(b, room, channel, err);
    if (!code && !(code = router_leave(b, conn, room, channel, err)))
        bus__event(b, "client_left", conn, room, channel);
    return code;
}

const char *bus_svc_create_channel(arq_ctx *ctx, const char *room, const char *channel,
                                   const char *description, struct arq_error *err)
{
    const char *code = bus_check_names(bus_of(ctx), room, channel ? channel : "", err);
    if (!channel) {
        arq_error_set(err, 0, "A channel name is required");
        return ARQ_ERR_VALIDATION;
    }
    return code ? code : router_create_channel(bus_of(ctx), room, channel, description, err);
}

const char *bus_svc_delete_channel(arq_ctx *ctx, const char *room, const char *channel, int force,
                                   struct arq_error *err)
{
    const char *code = bus_check_names(bus_of(ctx), room, channel, err);
    return code ? code : router_delete_channel(bus_of(ctx), room, channel, force, err);
}

const char *bus_svc_disconnect(arq_ctx *ctx, const char *client_id, const char *reason,
                               struct arq_error *err)
{
    struct arq_conn *c = conn_find(bus_of(ctx), client_id);
    if (!c || c->state != CONN_OPEN) {
        arq_error_set(err, 0, "Client %s is not connected", client_id);
        return ARQ_ERR_NOT_FOUND;
    }
    conn_close(c, 1008, reason && *reason ? reason : "Disconnected by an administrator");
    return NULL;
}

static json_t *bus__status(struct bus *b)
{
    json_t *status = b->env.status(b->env.arg);
    if (status) {
        json_object_set_new(status, "clients", json_integer((json_int_t)b->nconns));
        json_object_set_new(status, "rooms", json_integer((json_int_t)b->rooms.len));
        json_object_set_new(status, "channels", json_integer((json_int_t)b->nchannels));
        json_object_set_new(status, "storage", storage_status(b));
        json_t *cluster = broker_status(b);
        if (cluster)
            json_object_set_new(status, "cluster", cluster);
    }
    return status;
}

json_t *bus_svc_query(arq_ctx *ctx, arq_conn *conn, const char *what, const char *room,
                      const char *channel, const char **code, struct arq_error *err)
{
    struct bus *b = bus_of(ctx);
    *code = NULL;
    if (!strcmp(what, "rooms"))
        return router_rooms_json(b);
    if (!strcmp(what, "status"))
        return bus__status(b);
    if (!strcmp(what, "commands"))
        return commands_catalogue(b);
    if (!strcmp(what, "client")) {
        if (!conn) {
            *code = "NOT_FOUND";
            arq_error_set(err, 0, "No client");
            return NULL;
        }
        char since[32];
        envelope_format_timestamp(conn->connected_ms, since);
        return json_pack("{s:s, s:s, s:s?, s:s?, s:s, s:o, s:{s:I, s:I}}", "client_id", conn->id,
                         "role", conn->identity.role, "subject", conn->identity.subject, "tenant",
                         conn->identity.tenant, "connected_at", since, "memberships",
                         router_memberships_json(conn), "limits", "max_queued_bytes",
                         (json_int_t)conn->max_queued_bytes, "max_memberships",
                         (json_int_t)b->settings.max_memberships);
    }
    if ((*code = bus_check_names(b, room, !strcmp(what, "channel") ? channel : NULL, err)))
        return NULL;
    struct room *r = router_room(b, room);
    if (!r) {
        arq_error_set(err, 0, "Room %s does not exist", room);
        *code = "ROOM_NOT_FOUND";
        return NULL;
    }
    if (!strcmp(what, "channels")) {
        json_t *arr = json_array();
        size_t i = 0;
        void *v;
        while (arr && hmap_next(&r->channels, &i, NULL, &v))
            json_array_append_new(arr, router_channel_json(v, 0));
        return arr;
    }
    if (!strcmp(what, "channel")) {
        struct channel *ch = router_channel(r, channel);
        if (!ch) {
            arq_error_set(err, 0, "Channel %s/%s does not exist", room, channel);
            *code = "CHANNEL_NOT_FOUND";
            return NULL;
        }
        return router_channel_json(ch, 1);
    }
    arq_error_set(err, 0, "Unknown query: %s", what);
    *code = "EXECUTION_ERROR";
    return NULL;
}

void bus_svc_query_async(arq_ctx *ctx, arq_conn *conn, const char *what, const char *room,
                         const char *channel, arq_result_cb cb, void *arg)
{
    struct bus *b = bus_of(ctx);
    const char *code = NULL;
    struct arq_error err = {0};
    int named = !strcmp(what, "channels") || !strcmp(what, "channel");
    if (named &&
        (code = bus_check_names(b, room, !strcmp(what, "channel") ? channel : NULL, &err))) {
        cb(arg, code, err.text, NULL);
        return;
    }
    if (broker_query(b, what, room, channel, cb, arg) == 0)
        return;
    json_t *v = bus_svc_query(ctx, conn, what, room, channel, &code, &err);
    cb(arg, v ? NULL : code ? code : ARQ_ERR_INTERNAL, v ? NULL : err.text, v);
    json_decref(v);
}

void bus_services(struct arq_host *api)
{
    api->conn_open = conn_svc_open;
    api->conn_recv = conn_svc_recv;
    api->conn_pending = conn_svc_pending;
    api->conn_consumed = conn_svc_consumed;
    api->conn_closed = conn_svc_closed;
    api->reply_ok = commands_svc_reply_ok;
    api->reply_error = commands_svc_reply_error;
    api->conn_client_id = conn_svc_client_id;
    api->conn_set_limit = conn_svc_set_limit;
    api->bus_join = bus_svc_join;
    api->bus_leave = bus_svc_leave;
    api->bus_create_channel = bus_svc_create_channel;
    api->bus_delete_channel = bus_svc_delete_channel;
    api->bus_disconnect = bus_svc_disconnect;
    api->bus_query = bus_svc_query;
    api->bus_query_async = bus_svc_query_async;
    api->broker_deliver = broker_svc_deliver;
    api->broker_resync = broker_svc_resync;
    api->bus_reload = bus_svc_reload;
    api->bus_history = storage_svc_history;
    api->bus_ready = bus_svc_ready;
    api->bus_publish = bus_svc_publish;
    api->bus_history_query = bus_svc_history_query;
    api->auth_handshake = auth_svc_handshake;
    api->auth_ticket_free = auth_svc_ticket_free;
    api->auth_authorize = auth_svc_authorize;
}
