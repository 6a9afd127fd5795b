/* The endpoints. Each handler answers its request once: now, with http_reply_*, or later,
 * through http_request__result when it starts an asynchronous bus operation. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "http_path.h"

#define BUS_QUERY(srv, what, room, code, err)                                                      \
    (srv)->host->bus_query((srv)->ctx, NULL, (what), (room), NULL, (code), (err))

/* A body that must be a JSON object, with only `allowed` keys (NULL-terminated; NULL: any),
 * or NULL with the request answered (400). The caller decrefs. */
static json_t *body_object(struct http_req *req, const char *const *allowed)
{
    size_t len;
    const char *text = http_req_body(req, &len);
    json_error_t jerr;
    json_t *body = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    char msg[256];
    if (!body) {
        snprintf(msg, sizeof msg, "Invalid JSON: %s (line %d, column %d)", jerr.text, jerr.line,
                 jerr.column);
        http_reply_error(req, MHD_HTTP_BAD_REQUEST, ARQ_ERR_INVALID_JSON, msg);
        return NULL;
    }
    if (!json_is_object(body)) {
        json_decref(body);
        http_reply_error(req, MHD_HTTP_BAD_REQUEST, ARQ_ERR_VALIDATION,
                         "The body must be a JSON object");
        return NULL;
    }
    const char *key;
    json_t *v;
    json_object_foreach(body, key, v)
    {
        if (!allowed)
            break;
        size_t i = 0;
        while (allowed[i] && strcmp(allowed[i], key) != 0)
            i++;
        if (!allowed[i]) {
            snprintf(msg, sizeof msg, "Unknown field '%.64s'", key);
            json_decref(body);
            http_reply_error(req, MHD_HTTP_BAD_REQUEST, ARQ_ERR_VALIDATION, msg);
            return NULL;
        }
    }
    return body;
}

/* --- observability ------------------------------------------------------------------------- */

static void add_check(json_t *checks, json_t *failing, const char *name, json_t *check_take)
{
    const char *st = json_string_value(json_object_get(check_take, "status"));
    if (st && strcmp(st, "healthy") != 0 && strcmp(st, "not_configured") != 0)
        json_array_append_new(failing, json_string(name));
    json_object_set_new(checks, name, check_take);
}

/* A plugin's check from its part of `status`: {instance, backend, health, detail?}. */
static void add_plugin_check(json_t *checks, json_t *failing, const char *name, const json_t *part)
{
    const char *health = json_string_value(json_object_get(part, "health"));
    add_check(checks, failing, name,
              json_pack("{s:s, s:O?, s:O?, s:O?}", "status", health ? health : "down", "backend",
                        json_object_get(part, "backend"), "instance",
                        json_object_get(part, "instance"), "detail",
                        json_object_get(part, "detail")));
}

static void h_health(struct http_req *req, const char *url)
{
    (void)url;
    struct http_server *srv = http_req_server(req);
    struct arq_error err = {""};
    const char *code = NULL;
    json_t *status = BUS_QUERY(srv, "status", NULL, &code, &err);
    json_t *checks = json_object(), *failing = json_array();
    if (!status) {
        add_check(checks, failing, "bus",
                  json_pack("{s:s, s:s}", "status", "down", "detail",
                            err.text[0] ? err.text : "no status"));
    } else {
        add_check(checks, failing, "bus",
                  json_pack("{s:s, s:O?}", "status", "healthy", "clients",
                            json_object_get(status, "clients")));
        /* The storage in force: {instance, backend, health, detail?}, or null without one
         * (history is then unavailable, but nothing is failing). */
        const json_t *storage = json_object_get(status, "storage");
        if (json_is_object(storage))
            add_plugin_check(checks, failing, "storage", storage);
        else
            add_check(checks, failing, "storage", json_pack("{s:s}", "status", "not_configured"));
        /* The broker, the same way, on a node of a cluster. */
        const json_t *broker = json_object_get(json_object_get(status, "cluster"), "broker");
        if (json_is_object(broker))
            add_plugin_check(checks, failing, "broker", broker);
    }
    int healthy = json_array_size(failing) == 0;
    json_t *body = json_pack("{s:s, s:o, s:o, s:s, s:O?, s:O?}", "status",
                             healthy ? "healthy" : "degraded", "checks", checks, "failing", failing,
                             "version", srv->host->version, "node", json_object_get(status, "node"),
                             "uptime_seconds", json_object_get(status, "uptime_seconds"));
    http_reply_json(req, healthy ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE, body);
    json_decref(body);
    json_decref(status);
}

static void h_ready(struct http_req *req, const char *url)
{
    (void)url;
    struct http_server *srv = http_req_server(req);
    int ready = srv->host->bus_ready(srv->ctx) != 0;
    json_t *body = ready ? json_pack("{s:b}", "ready", 1)
                         : json_pack("{s:b, s:s}", "ready", 0, "reason", "starting or stopping");
    http_reply_json(req, ready ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE, body);
    json_decref(body);
}

static void h_status(struct http_req *req, const char *url)
{
    (void)url;
    struct http_server *srv = http_req_server(req);
    struct arq_error err = {""};
    const char *code = NULL;
    json_t *status = BUS_QUERY(srv, "status", NULL, &code, &err);
    if (!status) {
        code = code ? code : ARQ_ERR_INTERNAL;
        http_reply_error(req, http_status_of(code), code, err.text[0] ? err.text : "No status");
        return;
    }
    http_reply_json(req, MHD_HTTP_OK, status);
    json_decref(status);
}

static void h_version(struct http_req *req, const char *url)
{
    (void)url;
    const struct arq_host *h = http_req_server(req)->host;
    char abi[24];
    snprintf(abi, sizeof abi, "%u.%u", (unsigned)h->abi_major, (unsigned)h->abi_minor);
    json_t *body =
        json_pack("{s:s, s:s, s:s}", "service", "arqonbus", "version", h->version, "abi", abi);
    http_reply_json(req, MHD_HTTP_OK, body);
    json_decref(body);
}

static void h_metrics(struct http_req *req, const char *url)
{
    (void)url;
    struct http_server *srv = http_req_server(req);
    char *text = srv->host->metrics_render(srv->ctx);
    if (!text) {
        http_reply_error(req, MHD_HTTP_INTERNAL_SERVER_ERROR, ARQ_ERR_INTERNAL, "Out of memory");
        return;
    }
    http_reply_text(req, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", text,
                    strlen(text), srv->host->free);
}

/* --- history and listings ------------------------------------------------------------------ */

struct query_args {
    json_t *args;
    char error[160];
};

static enum MHD_Result query_arg(void *cls, enum MHD_ValueKind kind, const char *key,
                                 const char *value)
{
    (void)kind;
    struct query_args *q = cls;
    return http_path__history_param(q->args, key, value, q->error, sizeof q->error) == 0 ? MHD_YES
                                                                                         : MHD_NO;
}

static void h_history(struct http_req *req, const char *url)
{
    (void)url;
    struct http_server *srv = http_req_server(req);
    struct query_args q = {json_object(), ""};
    if (!q.args) {
        http_reply_error(req, MHD_HTTP_INTERNAL_SERVER_ERROR, ARQ_ERR_INTERNAL, "Out of memory");
        return;
    }
    MHD_get_connection_values(http_req_connection(req), MHD_GET_ARGUMENT_KIND, query_arg, &q);
    if (!q.error[0] && !json_object_get(q.args, "room"))
        snprintf(q.error, sizeof q.error, "Parameter 'room' is required");
    if (q.error[0]) {
        http_reply_error(req, MHD_HTTP_BAD_REQUEST, ARQ_ERR_VALIDATION, q.error);
    } else {
        void *w = http_req_await(req);
        if (w)
            srv->host->bus_history_query(srv->ctx, q.args, http_request__result, w);
    }
    json_decref(q.args);
}

/* A listing of rooms or channels, answered by the bus (later, with a broker: the whole
 * cluster's) and sent as {room?, <key>: data}. */
struct listing {
    void *wait; /* http_req_await's */
    const char *key;
    char room[];
};

static void listing__answered(void *arg, const char *error_code, const char *text,
                              const json_t *data)
{
    struct listing *l = arg;
    json_t *body =
        error_code ? NULL
                   : json_pack("{s:s*, s:O}", "room", l->room[0] ? l->room : NULL, l->key, data);
    if (!error_code && !body)
        http_request__result(l->wait, ARQ_ERR_INTERNAL, "Out of memory", NULL);
    else
        http_request__result(l->wait, error_code, text, body);
    json_decref(body);
    free(l);
}

static void listing(struct http_req *req, const char *what, const char *room, size_t room_len,
                    const char *key)
{
    struct http_server *srv = http_req_server(req);
    struct listing *l = malloc(sizeof *l + room_len + 1);
    if (!l) {
        http_reply_error(req, MHD_HTTP_INTERNAL_SERVER_ERROR, ARQ_ERR_INTERNAL, "Out of memory");
        return;
    }
    l->key = key;
    memcpy(l->room, room_len ? room : "", room_len);
    l->room[room_len] = '\0';
    if (!(l->wait = http_req_await(req))) {
        free(l);
        return;
    }
    srv->host->bus_query_async(srv->ctx, NULL, what, room_len ? l->room : NULL, NULL,
                               listing__answered, l);
}

static void h_rooms(struct http_req *req, const char *url)
{
    (void)url;
    listing(req, "rooms", NULL, 0, "rooms");
}

static void h_channels(struct http_req *req, const char *url)
{
    size_t len = 0;
    const char *seg = http_routes__segment(url, &len);
    /* The characters are checked here (the name came percent-decoded, it may be any bytes);
     * the length is the bus's to check, against bus.max_name_length. */
    char text[160];
    if (http_path__check_name("room", seg ? seg : "", seg ? len : 0, text, sizeof text) != 0) {
        http_reply_error(req, MHD_HTTP_BAD_REQUEST, ARQ_ERR_VALIDATION, text);
        return;
    }
    /* seg is set: http_path__check_name refuses the empty name given for a missing one. */
    listing(req, "channels", seg ? seg : "", seg ? len : 0, "channels");
}

/* --- publish and admin --------------------------------------------------------------------- */

static void h_publish(struct http_req *req, const char *url)
{
    (void)url;
    struct http_server *srv = http_req_server(req);
    /* The host checks the fields ({room, channel?, to_client?, payload, metadata?}) and the
     * envelope rules, as for a client's message. */
    json_t *msg = body_object(req, NULL);
    if (!msg)
        return;
    void *w = http_req_await(req);
    if (w)
        srv->host->bus_publish(srv->ctx, msg, http_request__result, w);
    json_decref(msg);
}

static void h_reload(struct http_req *req, const char *url)
{
    (void)url;
    struct http_server *srv = http_req_server(req);
    if (!srv->host->bus_ready(srv->ctx)) {
        http_reply_error(req, MHD_HTTP_SERVICE_UNAVAILABLE, ARQ_ERR_EXECUTION,
                         "The server is starting or stopping");
        return;
    }
    ARQ_LOG(srv->host, srv->ctx, ARQ_LOG_INFO, "reload requested", "by", "POST /admin/reload");
    void *w = http_req_await(req);
    if (w)
        srv->host->bus_reload_async(srv->ctx, http_request__result, w);
}

static void h_disconnect(struct http_req *req, const char *url)
{
    (void)url;
    static const char *const allowed[] = {"client_id", "reason", NULL};
    struct http_server *srv = http_req_server(req);
    json_t *body = body_object(req, allowed);
    if (!body)
        return;
    const json_t *id = json_object_get(body, "client_id");
    const json_t *reason = json_object_get(body, "reason");
    if (!json_is_string(id) || (reason && !json_is_string(reason))) {
        http_reply_error(req, MHD_HTTP_BAD_REQUEST, ARQ_ERR_VALIDATION,
                         !json_is_string(id) ? "Field 'client_id' (a string) is required"
                                             : "Field 'reason' must be a string");
        json_decref(body);
        return;
    }
    struct arq_error err = {""};
    const char *why = reason ? json_string_value(reason) : "Disconnected by an administrator";
    const char *code = srv->host->bus_disconnect(srv->ctx, json_string_value(id), why, &err);
    if (code) {
        http_reply_error(req, http_status_of(code), code, err.text);
    } else {
        ARQ_LOG(srv->host, srv->ctx, ARQ_LOG_INFO, "client disconnected", "client_id",
                json_string_value(id), "by", "POST /admin/disconnect");
        json_t *ok = json_pack("{s:O}", "disconnected", id);
        http_reply_json(req, MHD_HTTP_OK, ok);
        json_decref(ok);
    }
    json_decref(body);
}

/* Who the credential is: the dashboard's login asks this before it shows anything. */
static void h_session(struct http_req *req, const char *url)
{
    (void)url;
    const char *subject;
    const char *role = http_req_role(req, &subject);
    int by_key = role && !strcmp(role, "api_key");
    json_t *body = json_pack("{s:s, s:s, s:s*}", "role",
                             by_key ? "admin"
                             : role ? role
                                    : "",
                             "credential", by_key ? "api_key" : "token", "subject", subject);
    http_reply_json(req, MHD_HTTP_OK, body);
    json_decref(body);
}

/* One channel as channel_info gives it (with a broker: its members on every node). */
static void h_channel(struct http_req *req, const char *url)
{
    (void)url;
    struct http_server *srv = http_req_server(req);
    struct MHD_Connection *mc = http_req_connection(req);
    const char *room = MHD_lookup_connection_value(mc, MHD_GET_ARGUMENT_KIND, "room");
    const char *channel = MHD_lookup_connection_value(mc, MHD_GET_ARGUMENT_KIND, "channel");
    char text[160];
    if (http_path__check_name("room", room ? room : "", room ? strlen(room) : 0, text,
                              sizeof text) != 0 ||
        http_path__check_name("channel", channel ? channel : "", channel ? strlen(channel) : 0,
                              text, sizeof text) != 0) {
        http_reply_error(req, MHD_HTTP_BAD_REQUEST, ARQ_ERR_VALIDATION, text);
        return;
    }
    /* The strings are the connection's, which lives until the answer has gone out. */
    void *w = http_req_await(req);
    if (w)
        srv->host->bus_query_async(srv->ctx, NULL, "channel", room, channel, http_request__result,
                                   w);
}

/* --- the table ----------------------------------------------------------------------------- */

static const struct http_route routes[] = {
    {"/health", HTTP_ALLOW_GET, NULL, h_health},
    {"/ready", HTTP_ALLOW_GET, NULL, h_ready},
    {"/status", HTTP_ALLOW_GET, NULL, h_status},
    {"/version", HTTP_ALLOW_GET, NULL, h_version},
    {"/metrics", HTTP_ALLOW_GET, NULL, h_metrics},
    {"/history", HTTP_ALLOW_GET, NULL, h_history},
    {"/rooms", HTTP_ALLOW_GET, NULL, h_rooms},
    {"/rooms/{}/channels", HTTP_ALLOW_GET, NULL, h_channels},
    {"/publish", HTTP_ALLOW_POST, "publish", h_publish},
    {"/admin/reload", HTTP_ALLOW_POST, "reload", h_reload},
    {"/admin/disconnect", HTTP_ALLOW_POST, "disconnect_client", h_disconnect},
    /* The dashboard's: a credential that may reload may look. */
    {"/admin/session", HTTP_ALLOW_GET, "reload", h_session},
    {"/admin/channel", HTTP_ALLOW_GET, "reload", h_channel},
    {"/dashboard", HTTP_ALLOW_GET, NULL, http_dashboard__serve},
    {"/dashboard/{}", HTTP_ALLOW_GET, NULL, http_dashboard__serve},
};

const struct http_route *http_routes__find(const char *url)
{
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++)
        if (http_path__match(routes[i].path, url, NULL, NULL))
            return &routes[i];
    return NULL;
}

const char *http_routes__segment(const char *url, size_t *len)
{
    const char *seg;
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++)
        if (strstr(routes[i].path, "{}") && http_path__match(routes[i].path, url, &seg, len))
            return seg;
    return NULL;
}
