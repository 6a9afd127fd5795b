/* commands-builtin: the commands every ArqonBus server answers (the table in the protocol's
 * "Commands" section): ping, status, help, whoami, the room and channel listings, membership,
 * channel management and the admin commands.
 *
 * Each handler is a thin layer over the host's bus services: it reads its args (already
 * validated against its params by the host, which also checked the role), makes one or two
 * bus calls, and replies exactly once: reply_ok with a short human message and the data, or
 * reply_error with the error code the bus service returned.
 *
 * Read top to bottom: options, instance state, life cycle, helpers, handlers, the command
 * table, and the descriptor at the bottom. */
#include <arqonbus/plugin.h>
#include <jansson.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* --- options ------------------------------------------------------------------------------- */

/* What the host fills from the options below (opt_fill). */
struct builtin_cfg {
    int admin_commands;
};

static const struct arq_option options[] = {
    ARQ_OPT_FIELD("admin_commands", ARQ_OPT_BOOL, "true", ARQ_OPT_RELOADABLE,
                  "offer delete_channel, disconnect_client and reload at all",
                  ARQ_FIELD(struct builtin_cfg, admin_commands)),
    ARQ_OPT_END};

/* The commands that admin_commands switches off. */
static const char *const admin_only[] = {"delete_channel", "disconnect_client", "reload", NULL};

/* --- instance state ------------------------------------------------------------------------ */

struct builtin {
    const struct arq_host *host;
    arq_ctx *ctx;
    struct builtin_cfg cfg;
};

/* --- life cycle ---------------------------------------------------------------------------- */

static int builtin_create(const struct arq_host *host, arq_ctx *ctx, const json_t *cfg, void **self,
                          struct arq_error *err)
{
    /* Refuse here, where --check-config reports it, rather than fail on every command. */
    const char *missing = !ARQ_HOST_HAS(host, conn_client_id)       ? "conn_client_id"
                          : !ARQ_HOST_HAS(host, bus_join)           ? "bus_join"
                          : !ARQ_HOST_HAS(host, bus_leave)          ? "bus_leave"
                          : !ARQ_HOST_HAS(host, bus_create_channel) ? "bus_create_channel"
                          : !ARQ_HOST_HAS(host, bus_delete_channel) ? "bus_delete_channel"
                          : !ARQ_HOST_HAS(host, bus_disconnect)     ? "bus_disconnect"
                          : !ARQ_HOST_HAS(host, bus_query)          ? "bus_query"
                          : !ARQ_HOST_HAS(host, bus_query_async)    ? "bus_query_async"
                          : !ARQ_HOST_HAS(host, bus_reload)         ? "bus_reload"
                          : !ARQ_HOST_HAS(host, bus_history)        ? "bus_history"
                                                                    : NULL;
    if (missing)
        return arq_error_set(err, ARQ_ENOTSUP,
                             "this arqonbusd (%s) does not provide the bus service %s that the "
                             "built-in commands need",
                             host->version ? host->version : "?", missing);
    struct builtin *b = calloc(1, sizeof *b);
    if (!b)
        return arq_error_set(err, ARQ_ENOMEM, "out of memory");
    b->host = host;
    b->ctx = ctx;
    int rc = host->opt_fill(cfg, options, &b->cfg, err);
    if (rc != ARQ_OK) {
        free(b);
        return rc;
    }
    *self = b;
    return ARQ_OK;
}

static int builtin_reconfigure(void *self, const json_t *cfg, struct arq_error *err)
{
    struct builtin *b = self;
    return b->host->opt_fill(cfg, options, &b->cfg, err);
}

static void builtin_destroy(void *self)
{
    free(self);
}

/* --- helpers ------------------------------------------------------------------------------- */

/* Reply with `data_take` (released here). NULL data means building it failed. */
static void reply_data(struct builtin *b, arq_request *req, const char *message, json_t *data_take)
{
    if (!data_take) {
        ARQ_LOG(b->host, b->ctx, ARQ_LOG_ERROR, "cannot build a command reply", "reply", message);
        b->host->reply_error(req, ARQ_ERR_INTERNAL, "cannot build the reply: out of memory");
        return;
    }
    b->host->reply_ok(req, message, data_take);
    json_decref(data_take);
}

/* Reply with the error a bus service returned; its text, or a generic one when it gave none. */
static void reply_bus_error(struct builtin *b, arq_request *req, const char *code,
                            const struct arq_error *err)
{
    char text[600];
    if (err->text[0])
        snprintf(text, sizeof text, "%s", err->text);
    else
        snprintf(text, sizeof text, "the request failed (%s)", code);
    b->host->reply_error(req, code, text);
}

/* bus_query, replying with its error when it fails: the caller just returns on NULL. */
static json_t *query_or_reply(struct builtin *b, arq_request *req, arq_conn *conn, const char *what,
                              const char *room, const char *channel)
{
    const char *code = NULL;
    struct arq_error err = {""};
    json_t *v = b->host->bus_query(b->ctx, conn, what, room, channel, &code, &err);
    if (!v)
        reply_bus_error(b, req, code ? code : ARQ_ERR_INTERNAL, &err);
    /* cppcheck-suppress returnDanglingLifetime
     * (false positive: v is a new reference, it does not point into code or err) */
    return v;
}

/* A string arg. REQUIRED ones are always there once the host validated them; "" keeps a
 * host that did not from crashing us (the bus then refuses the empty name). */
static const char *arg(const struct builtin *b, const json_t *args, const char *name)
{
    return b->host->opt_str(args, name, "");
}

static int is_admin_only(const char *name)
{
    for (const char *const *n = admin_only; *n; n++)
        if (!strcmp(*n, name))
            return 1;
    return 0;
}

/* With admin_commands off, an admin command answers as if it were not loaded. */
static int refuse_if_not_offered(const struct builtin *b, arq_request *req, const char *name)
{
    if (b->cfg.admin_commands)
        return 0;
    char text[160];
    snprintf(text, sizeof text, "Unknown command: %s", name);
    b->host->reply_error(req, ARQ_ERR_UNKNOWN_COMMAND, text);
    return 1;
}

/* Now as RFC 3339 in UTC with milliseconds: "2024-05-01T12:34:56.789Z". */
static void format_now(char *buf, size_t size)
{
    struct timespec ts;
    struct tm tm;
    char seconds[32];
    timespec_get(&ts, TIME_UTC);
    gmtime_r(&ts.tv_sec, &tm);
    strftime(seconds, sizeof seconds, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf, size, "%s.%03dZ", seconds, (int)(ts.tv_nsec / 1000000));
}

/* After a membership change: {room, channel?, memberships} from the client's own view. If the
 * change went through but that view cannot be read, the query's error is the reply (joining
 * again is harmless; the client can check with whoami). */
static void reply_memberships(struct builtin *b, arq_request *req, arq_conn *conn,
                              const char *message, const char *room, const char *channel)
{
    json_t *client = query_or_reply(b, req, conn, "client", NULL, NULL);
    if (!client)
        return;
    json_t *memberships = json_object_get(client, "memberships");
    json_t *data =
        json_is_array(memberships)
            ? json_pack("{s:s, s:s*, s:O}", "room", room, "channel", channel, "memberships",
                        memberships)
            : json_pack("{s:s, s:s*, s:[]}", "room", room, "channel", channel, "memberships");
    reply_data(b, req, message, data);
    json_decref(client);
}

/* --- handlers: anyone ---------------------------------------------------------------------- */

static void cmd_ping(void *self, arq_request *req, arq_conn *conn, const json_t *args)
{
    struct builtin *b = self;
    char now[48];
    (void)args;
    format_now(now, sizeof now);
    reply_data(b, req, "pong",
               json_pack("{s:b, s:s, s:s}", "pong", 1, "server_time", now, "client_id",
                         b->host->conn_client_id(conn)));
}

static void cmd_status(void *self, arq_request *req, arq_conn *conn, const json_t *args)
{
    struct builtin *b = self;
    (void)args;
    json_t *status = query_or_reply(b, req, conn, "status", NULL, NULL);
    if (status)
        reply_data(b, req, "Server status", status);
}

static void cmd_help(void *self, arq_request *req, arq_conn *conn, const json_t *args)
{
    struct builtin *b = self;
    const char *wanted = b->host->opt_str(args, "command", NULL);
    json_t *all = query_or_reply(b, req, conn, "commands", NULL, NULL);
    if (!all)
        return;
    /* The catalogue comes from the host; drop what this instance does not offer. */
    size_t i = 0;
    while (i < json_array_size(all)) {
        const char *name = json_string_value(json_object_get(json_array_get(all, i), "name"));
        if (!b->cfg.admin_commands && name && is_admin_only(name))
            json_array_remove(all, i);
        else
            i++;
    }
    if (!wanted) {
        reply_data(b, req, "Commands", json_pack("{s:o}", "commands", all));
        return;
    }
    json_t *entry;
    json_array_foreach(all, i, entry)
    {
        const char *name = json_string_value(json_object_get(entry, "name"));
        if (name && !strcmp(name, wanted)) {
            char message[160];
            snprintf(message, sizeof message, "Command %s", name);
            b->host->reply_ok(req, message, entry);
            json_decref(all);
            return;
        }
    }
    json_decref(all);
    char text[160];
    snprintf(text, sizeof text, "Unknown command: %s", wanted);
    b->host->reply_error(req, ARQ_ERR_UNKNOWN_COMMAND, text);
}

static void cmd_whoami(void *self, arq_request *req, arq_conn *conn, const json_t *args)
{
    struct builtin *b = self;
    char message[160];
    (void)args;
    json_t *client = query_or_reply(b, req, conn, "client", NULL, NULL);
    if (!client)
        return;
    snprintf(message, sizeof message, "You are %s", b->host->conn_client_id(conn));
    reply_data(b, req, message, client);
}

/* A listing of rooms or channels: with a broker, the host asks the whole cluster, so the
 * answer may come later. The reply is `data`, or {room?, <key>: data} when `key` is set. The
 * host's table outlives the request; this instance might not, so it is not kept. */
struct listing {
    const struct arq_host *host;
    arq_request *req;
    const char *key; /* a static string, or NULL */
    char message[300];
    char room[];
};

static void listing__answered(void *arg, const char *error_code, const char *text,
                              const json_t *data)
{
    struct listing *l = arg;
    json_t *out = error_code ? NULL
                  : l->key
                      ? json_pack("{s:s*, s:O}", "room", l->room[0] ? l->room : NULL, l->key, data)
                      : json_incref((json_t *)data);
    if (error_code)
        l->host->reply_error(l->req, error_code, text && *text ? text : "the request failed");
    else if (!out)
        l->host->reply_error(l->req, ARQ_ERR_INTERNAL, "cannot build the reply: out of memory");
    else
        l->host->reply_ok(l->req, l->message, out);
    json_decref(out);
    free(l);
}

static void list(struct builtin *b, arq_request *req, arq_conn *conn, const char *what,
                 const char *room, const char *channel, const char *key, const char *message)
{
    size_t rlen = room && key ? strlen(room) : 0;
    struct listing *l = malloc(sizeof *l + rlen + 1);
    if (!l) {
        b->host->reply_error(req, ARQ_ERR_INTERNAL, "out of memory");
        return;
    }
    l->host = b->host;
    l->req = req;
    l->key = key;
    snprintf(l->message, sizeof l->message, "%s", message);
    memcpy(l->room, rlen ? room : "", rlen + 1);
    b->host->bus_query_async(b->ctx, conn, what, room, channel, listing__answered, l);
}

static void cmd_list_rooms(void *self, arq_request *req, arq_conn *conn, const json_t *args)
{
    (void)args;
    list(self, req, conn, "rooms", NULL, NULL, "rooms", "Rooms");
}

static void cmd_list_channels(void *self, arq_request *req, arq_conn *conn, const json_t *args)
{
    struct builtin *b = self;
    const char *room = arg(b, args, "room");
    char message[300];
    snprintf(message, sizeof message, "Channels of room %s", room);
    list(b, req, conn, "channels", room, NULL, "channels", message);
}

/* --- handlers: users ----------------------------------------------------------------------- */

static void cmd_channel_info(void *self, arq_request *req, arq_conn *conn, const json_t *args)
{
    struct builtin *b = self;
    const char *room = arg(b, args, "room"), *channel = arg(b, args, "channel");
    char message[300];
    snprintf(message, sizeof message, "Channel %s/%s", room, channel);
    list(b, req, conn, "channel", room, channel, NULL, message);
}

/* join_room, leave_room, join_channel, leave_channel: one bus call, then the memberships. */
static void change_membership(struct builtin *b, arq_request *req, arq_conn *conn, int join,
                              const char *room, const char *channel)
{
    struct arq_error err = {""};
    const char *code = join ? b->host->bus_join(conn, room, channel, &err)
                            : b->host->bus_leave(conn, room, channel, &err);
    if (code) {
        reply_bus_error(b, req, code, &err);
        return;
    }
    char message[300];
    if (channel)
        snprintf(message, sizeof message, "%s channel %s/%s", join ? "Joined" : "Left", room,
                 channel);
    else
        snprintf(message, sizeof message, "%s room %s", join ? "Joined" : "Left", room);
    reply_memberships(b, req, conn, message, room, channel);
}

static void cmd_join_room(void *self, arq_request *req, arq_conn *conn, const json_t *args)
{
    struct builtin *b = self;
    change_membership(b, req, conn, 1, arg(b, args, "room"), NULL);
}

static void cmd_leave_room(void *self, arq_request *req, arq_conn *conn, const json_t *args)
{
    struct builtin *b = self;
    change_membership(b, req, conn, 0, arg(b, args, "room"), NULL);
}

static void cmd_join_channel(void *self, arq_request *req, arq_conn *conn, const json_t *args)
{
    struct builtin *b = self;
    /* With a position to recover from, the host joins and answers the history at once, so
     * that nothing falls between the two. */
    if (b->host->opt_json(args, "since_offset") || b->host->opt_json(args, "epoch")) {
        b->host->bus_history(b->ctx, req, conn, args, 1);
        return;
    }
    change_membership(b, req, conn, 1, arg(b, args, "room"), arg(b, args, "channel"));
}

static void cmd_history(void *self, arq_request *req, arq_conn *conn, const json_t *args)
{
    struct builtin *b = self;
    b->host->bus_history(b->ctx, req, conn, args, 0); /* the host replies */
}

static void cmd_leave_channel(void *self, arq_request *req, arq_conn *conn, const json_t *args)
{
    struct builtin *b = self;
    change_membership(b, req, conn, 0, arg(b, args, "room"), arg(b, args, "channel"));
}

static void cmd_create_channel(void *self, arq_request *req, arq_conn *conn, const json_t *args)
{
    struct builtin *b = self;
    const char *room = arg(b, args, "room"), *channel = arg(b, args, "channel");
    struct arq_error err = {""};
    const char *code = b->host->bus_create_channel(
        b->ctx, room, channel, b->host->opt_str(args, "description", NULL), &err);
    if (code) {
        reply_bus_error(b, req, code, &err);
        return;
    }
    json_t *created = query_or_reply(b, req, conn, "channel", room, channel);
    if (!created)
        return;
    char message[300];
    snprintf(message, sizeof message, "Created channel %s/%s", room, channel);
    reply_data(b, req, message, created);
}

/* --- handlers: administrators -------------------------------------------------------------- */

static void cmd_delete_channel(void *self, arq_request *req, arq_conn *conn, const json_t *args)
{
    struct builtin *b = self;
    const char *room = arg(b, args, "room"), *channel = arg(b, args, "channel");
    (void)conn;
    if (refuse_if_not_offered(b, req, "delete_channel"))
        return;
    struct arq_error err = {""};
    const char *code = b->host->bus_delete_channel(b->ctx, room, channel,
                                                   b->host->opt_bool(args, "force", 0), &err);
    if (code) {
        reply_bus_error(b, req, code, &err);
        return;
    }
    char message[300];
    snprintf(message, sizeof message, "Deleted channel %s/%s", room, channel);
    reply_data(b, req, message, json_pack("{s:s, s:s}", "room", room, "channel", channel));
}

static void cmd_disconnect_client(void *self, arq_request *req, arq_conn *conn, const json_t *args)
{
    struct builtin *b = self;
    const char *client_id = arg(b, args, "client_id");
    (void)conn;
    if (refuse_if_not_offered(b, req, "disconnect_client"))
        return;
    struct arq_error err = {""};
    const char *code = b->host->bus_disconnect(
        b->ctx, client_id, b->host->opt_str(args, "reason", "disconnected by an administrator"),
        &err);
    if (code) {
        reply_bus_error(b, req, code, &err);
        return;
    }
    char message[300];
    snprintf(message, sizeof message, "Disconnected %s", client_id);
    b->host->reply_ok(req, message, NULL);
}

static void cmd_reload(void *self, arq_request *req, arq_conn *conn, const json_t *args)
{
    struct builtin *b = self;
    (void)conn, (void)args;
    if (refuse_if_not_offered(b, req, "reload"))
        return;
    b->host->bus_reload(b->ctx, req); /* the host replies once the reload has run */
}

/* --- the command table --------------------------------------------------------------------- */

static const struct arq_option help_params[] = {
    ARQ_OPT("command", ARQ_OPT_STRING, NULL, 0, "describe only this command"), ARQ_OPT_END};

static const struct arq_option room_params[] = {
    ARQ_OPT("room", ARQ_OPT_STRING, NULL, ARQ_OPT_REQUIRED, "the room"), ARQ_OPT_END};

static const struct arq_option channel_params[] = {
    ARQ_OPT("room", ARQ_OPT_STRING, NULL, ARQ_OPT_REQUIRED, "the room holding the channel"),
    ARQ_OPT("channel", ARQ_OPT_STRING, NULL, ARQ_OPT_REQUIRED, "the channel"), ARQ_OPT_END};

static const struct arq_option join_channel_params[] = {
    ARQ_OPT("room", ARQ_OPT_STRING, NULL, ARQ_OPT_REQUIRED, "the room holding the channel"),
    ARQ_OPT("channel", ARQ_OPT_STRING, NULL, ARQ_OPT_REQUIRED, "the channel"),
    ARQ_OPT_RANGE("since_offset", ARQ_OPT_INT, NULL, 0, 9007199254740991.0, 0,
                  "recover: the last offset this client received (0: none)"),
    ARQ_OPT("epoch", ARQ_OPT_STRING, NULL, 0, "recover: the epoch that offset belongs to"),
    ARQ_OPT_RANGE("limit", ARQ_OPT_INT, "50", 1, 1000, 0, "recover: at most this many messages"),
    ARQ_OPT_END};

static const struct arq_option history_params[] = {
    ARQ_OPT("room", ARQ_OPT_STRING, NULL, ARQ_OPT_REQUIRED, "the room"),
    ARQ_OPT("channel", ARQ_OPT_STRING, NULL, 0, "the channel (none: the room's own messages)"),
    ARQ_OPT_RANGE("limit", ARQ_OPT_INT, "50", 1, 1000, 0, "at most this many messages"),
    ARQ_OPT("since", ARQ_OPT_STRING, NULL, 0, "only messages stored at or after (RFC 3339)"),
    ARQ_OPT("until", ARQ_OPT_STRING, NULL, 0, "only messages stored at or before (RFC 3339)"),
    ARQ_OPT_RANGE("since_offset", ARQ_OPT_INT, NULL, 0, 9007199254740991.0, 0,
                  "recover: the last offset received (0: none)"),
    ARQ_OPT("epoch", ARQ_OPT_STRING, NULL, 0, "recover: the epoch that offset belongs to"),
    ARQ_OPT_END};

static const struct arq_option create_params[] = {
    ARQ_OPT("room", ARQ_OPT_STRING, NULL, ARQ_OPT_REQUIRED, "the room to create it in"),
    ARQ_OPT("channel", ARQ_OPT_STRING, NULL, ARQ_OPT_REQUIRED, "the new channel's name"),
    ARQ_OPT("description", ARQ_OPT_STRING, NULL, 0,
            "one line shown by list_channels (at most 1024 bytes)"),
    ARQ_OPT_END};

static const struct arq_option delete_params[] = {
    ARQ_OPT("room", ARQ_OPT_STRING, NULL, ARQ_OPT_REQUIRED, "the room holding the channel"),
    ARQ_OPT("channel", ARQ_OPT_STRING, NULL, ARQ_OPT_REQUIRED, "the channel to delete"),
    ARQ_OPT("force", ARQ_OPT_BOOL, "false", 0, "delete it even while it has members"), ARQ_OPT_END};

static const struct arq_option disconnect_params[] = {
    ARQ_OPT("client_id", ARQ_OPT_STRING, NULL, ARQ_OPT_REQUIRED, "the client to disconnect"),
    ARQ_OPT("reason", ARQ_OPT_STRING, "disconnected by an administrator", 0,
            "close reason sent to the client"),
    ARQ_OPT_END};

static const struct arq_command commands[] = {
    {"ping", "check the connection; returns the server time and your client id", NULL, "guest",
     cmd_ping},
    {"status", "server status: uptime, version, node, clients, rooms, channels, plugins", NULL,
     "guest", cmd_status},
    {"help", "list every command, or describe one", help_params, "guest", cmd_help},
    {"whoami", "your client id, role, memberships and limits", NULL, "guest", cmd_whoami},
    {"list_rooms", "rooms with their member and channel counts", NULL, "guest", cmd_list_rooms},
    {"list_channels", "channels of a room with member counts and descriptions", room_params,
     "guest", cmd_list_channels},
    {"channel_info", "one channel: members, description, message counters", channel_params, "user",
     cmd_channel_info},
    {"join_room", "become a member of a room", room_params, "user", cmd_join_room},
    {"leave_room", "stop being a member of a room", room_params, "user", cmd_leave_room},
    {"join_channel",
     "become a member of a channel (created if missing, unless auto_create is off); with "
     "since_offset/epoch, also recover what was missed",
     join_channel_params, "user", cmd_join_channel},
    {"leave_channel", "stop being a member of a channel", channel_params, "user",
     cmd_leave_channel},
    {"create_channel", "create a channel in a room", create_params, "user", cmd_create_channel},
    {"delete_channel", "delete a channel; refused while it has members unless force", delete_params,
     "admin", cmd_delete_channel},
    {"disconnect_client", "close a client's connection", disconnect_params, "admin",
     cmd_disconnect_client},
    {"reload", "reload the configuration and answer with the result", NULL, "admin", cmd_reload},
    {"history", "stored messages of a room or channel, oldest first; recovery by offset+epoch",
     history_params, "user", cmd_history},
    {"history.get", "alias of history", history_params, "user", cmd_history},
    {"op.history.get", "alias of history", history_params, "user", cmd_history},
    {NULL, NULL, NULL, NULL, NULL}};

static const struct arq_commands_ops ops = {
    .struct_size = sizeof ops,
    .commands = commands,
};

/* --- the descriptor ------------------------------------------------------------------------ */

static const struct arq_plugin descriptor = {
    ARQ_PLUGIN_HEAD,
    .name = "commands-builtin",
    .version = "1.0.0",
    .summary = "the built-in commands: ping, status, help, rooms, channels, membership, admin",
    .kind = ARQ_KIND_COMMANDS,
    .options = options,
    .create = builtin_create,
    .reconfigure = builtin_reconfigure,
    .destroy = builtin_destroy,
    .ops = &ops,
};

ARQ_PLUGIN(descriptor)
