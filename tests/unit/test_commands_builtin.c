/* commands-builtin (the built plugins/commands-builtin.so) against the mock host: the command
 * table and its param specs, every command's data shape and message on success, the bus
 * service's error code passed through on failure, exactly one reply per request whatever the
 * bus says, and admin_commands switching the admin commands off (and back on by reconfigure). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "diag.h"
#include "loader.h"
#include "mock_host.h"

#define PLUGIN    ARQ_BUILD_PLUGIN_DIR "/commands-builtin.so"
#define CLIENT_ID "arq_client_0123456789abcdef0123456789abcdef"

static void *handle;
static const struct arq_plugin *desc;

static int load_plugin(void **state)
{
    (void)state;
    desc = mock_host_load_plugin(PLUGIN, &handle);
    return desc ? 0 : -1;
}

static int unload_plugin(void **state)
{
    (void)state;
    return mock_host_unload_plugin(handle);
}

/* --- helpers ------------------------------------------------------------------------------- */

struct fx {
    struct mock_host *mh;
    arq_conn *conn;
    void *self;
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    if (!f || !(f->mh = mock_host_new("builtin"))) {
        free(f);
        return -1;
    }
    f->conn = mock_host_conn(f->mh, CLIENT_ID);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    if (f->self)
        desc->destroy(f->self);
    mock_host_free(f->mh);
    free(f);
    return 0;
}

static void create(struct fx *f, const char *yaml)
{
    json_t *cfg = mock_host_validate(desc->options, yaml, NULL);
    assert_non_null(cfg);
    mock_host_create_plugin(f->mh, desc, cfg, &f->self);
}

/* Run command `name` with args written as YAML; returns its request. */
static arq_request *run(struct fx *f, const char *name, const char *yaml)
{
    const struct arq_command *c = mock_host_command(desc, name);
    json_t *args = mock_host_validate(c->params, yaml, NULL);
    assert_non_null(args);
    arq_request *req = mock_host_request(f->mh);
    c->handler(f->self, req, f->conn, args);
    json_decref(args);
    return req;
}

static json_t *parse(const char *text)
{
    json_error_t jerr;
    json_t *v = json_loads(text, 0, &jerr);
    if (!v)
        fail_msg("bad JSON in test: %s: %s", text, jerr.text);
    return v;
}

static void assert_json(const json_t *got, const char *want_text)
{
    json_t *want = parse(want_text);
    if (!json_equal(got, want)) {
        char *g = got ? json_dumps(got, JSON_SORT_KEYS) : NULL;
        char *w = json_dumps(want, JSON_SORT_KEYS);
        print_message("got:  %s\nwant: %s\n", g ? g : "(null)", w);
        free(g);
        free(w);
        json_decref(want);
        fail();
    }
    json_decref(want);
}

/* The bus calls made so far are exactly `want` (NULL-terminated). */
static void assert_calls(struct fx *f, const char *const *want)
{
    size_t n = 0;
    for (; want[n]; n++) {
        const char *got = mock_host_bus_call(f->mh, n);
        if (!got)
            fail_msg("missing bus call %zu: %s", n, want[n]);
        assert_string_equal(got, want[n]);
    }
    if (mock_host_bus_call_count(f->mh) != n)
        fail_msg("unexpected bus call: %s", mock_host_bus_call(f->mh, n));
}
#define CALLS(f, ...) assert_calls((f), (const char *const[]){__VA_ARGS__, NULL})
#define NO_CALLS(f)   assert_int_equal(mock_host_bus_call_count((f)->mh), 0)

#define Q_CLIENT "bus_query what=client client=" CLIENT_ID " room=- channel=-"

static void script_query(struct fx *f, const char *what, const char *json_text)
{
    json_t *v = parse(json_text);
    mock_host_query_result(f->mh, what, v);
    json_decref(v);
}

#define CLIENT_A_GENERAL                                                                           \
    "{\"client_id\":\"" CLIENT_ID "\",\"role\":\"user\",\"memberships\":[{\"room\":\"a\"},"        \
    "{\"room\":\"a\",\"channel\":\"general\"}],\"limits\":{}}"
#define CHANNEL_A_GENERAL                                                                          \
    "{\"channel\":\"general\",\"members\":[\"" CLIENT_ID "\"],\"description\":\"chat\","           \
    "\"created_at\":\"2024-05-01T00:00:00.000Z\",\"last_activity\":null,\"messages\":3}"

/* --- the descriptor and the command table -------------------------------------------------- */

static void descriptor_is_a_command_set_the_loader_accepts(void **state)
{
    (void)state;
    char err[600] = "";
    if (loader_check_descriptor(desc, err, sizeof err) != 0)
        fail_msg("refused: %s", err);
    assert_string_equal(desc->name, "commands-builtin");
    assert_int_equal(desc->kind, ARQ_KIND_COMMANDS);
    assert_non_null(desc->reconfigure);
    assert_string_equal(desc->options[0].name, "admin_commands");
    assert_int_equal(desc->options[0].type, ARQ_OPT_BOOL);
    assert_string_equal(desc->options[0].default_value, "true");
    assert_true(desc->options[0].flags & ARQ_OPT_RELOADABLE);
    assert_null(desc->options[1].name);
}

static void table_has_every_builtin_command_with_its_least_role(void **state)
{
    (void)state;
    static const char *const want[][2] = {
        {"ping", "guest"},           {"status", "guest"},
        {"help", "guest"},           {"whoami", "guest"},
        {"list_rooms", "guest"},     {"list_channels", "guest"},
        {"channel_info", "user"},    {"join_room", "user"},
        {"leave_room", "user"},      {"join_channel", "user"},
        {"leave_channel", "user"},   {"create_channel", "user"},
        {"delete_channel", "admin"}, {"disconnect_client", "admin"},
        {"reload", "admin"},         {"history", "user"},
        {"history.get", "user"},     {"op.history.get", "user"}};
    const struct arq_commands_ops *ops = desc->ops;
    size_t n = 0;
    for (const struct arq_command *c = ops->commands; c->name; c++, n++) {
        assert_true(n < sizeof want / sizeof want[0]);
        assert_string_equal(c->name, want[n][0]);
        assert_string_equal(c->role, want[n][1]);
        assert_non_null(c->summary);
        assert_true(strlen(c->summary) > 0 && !strchr(c->summary, '\n'));
        assert_non_null(c->handler);
    }
    assert_int_equal(n, sizeof want / sizeof want[0]);
}

/* The names of a command's params, "name!" when REQUIRED, "name=default" with a default. */
static void assert_params(const char *name, const char *want)
{
    char got[256] = "";
    size_t len = 0;
    const struct arq_command *c = mock_host_command(desc, name);
    for (const struct arq_option *o = c->params; o && o->name; o++) {
        assert_true(o->type == ARQ_OPT_STRING || o->type == ARQ_OPT_BOOL || o->type == ARQ_OPT_INT);
        len += (size_t)snprintf(got + len, sizeof got - len, "%s%s%s%s", len ? " " : "", o->name,
                                (o->flags & ARQ_OPT_REQUIRED) ? "!"
                                : o->default_value            ? "="
                                                              : "",
                                o->default_value ? o->default_value : "");
    }
    assert_string_equal(got, want);
}

static void params_declare_required_args_and_defaults(void **state)
{
    (void)state;
    assert_params("ping", "");
    assert_params("status", "");
    assert_params("help", "command");
    assert_params("whoami", "");
    assert_params("list_rooms", "");
    assert_params("list_channels", "room!");
    assert_params("channel_info", "room! channel!");
    assert_params("join_room", "room!");
    assert_params("leave_room", "room!");
    assert_params("join_channel", "room! channel! since_offset epoch limit=50");
    assert_params("leave_channel", "room! channel!");
    assert_params("create_channel", "room! channel! description");
    assert_params("delete_channel", "room! channel! force=false");
    assert_params("disconnect_client", "client_id! reason=disconnected by an administrator");
    assert_params("reload", "");
    assert_params("history", "room! channel limit=50 since until since_offset epoch");
    assert_params("history.get", "room! channel limit=50 since until since_offset epoch");
    assert_int_equal(mock_host_command(desc, "delete_channel")->params[2].type, ARQ_OPT_BOOL);
}

static void host_validation_refuses_missing_required_args(void **state)
{
    (void)state;
    struct diag_list diags = {0};
    assert_null(
        mock_host_validate(mock_host_command(desc, "join_channel")->params, "room: a\n", &diags));
    assert_int_equal(diags.n, 1);
    assert_non_null(strstr(diags.items[0], "channel"));
    diag_clear(&diags);
    assert_null(mock_host_validate(mock_host_command(desc, "delete_channel")->params,
                                   "room: a\nchannel: b\nforce: maybe\n", &diags));
    assert_true(diags.n >= 1);
    diag_clear(&diags);
}

static void create_refuses_a_host_without_bus_services(void **state)
{
    struct fx *f = *state;
    json_t *cfg = mock_host_validate(desc->options, "", NULL);
    struct arq_host old = *mock_host_api();
    struct arq_error err = {""};
    void *self = NULL;

    old.bus_query = NULL;
    assert_int_equal(desc->create(&old, mock_host_ctx(f->mh), cfg, &self, &err), ARQ_ENOTSUP);
    assert_null(self);
    assert_string_equal(err.text, "this arqonbusd (0.0.0-mock) does not provide the bus service "
                                  "bus_query that the built-in commands need");

    /* A 1.0 host whose table ends before the bus services. */
    old = *mock_host_api();
    old.struct_size = offsetof(struct arq_host, conn_client_id);
    assert_int_equal(desc->create(&old, mock_host_ctx(f->mh), cfg, &self, &err), ARQ_ENOTSUP);
    assert_non_null(strstr(err.text, "conn_client_id"));
    assert_null(self);
    json_decref(cfg);
}

/* --- anyone -------------------------------------------------------------------------------- */

static void ping_returns_pong_server_time_and_client_id(void **state)
{
    struct fx *f = *state;
    create(f, "");
    time_t before = time(NULL);
    arq_request *req = run(f, "ping", "");
    time_t after = time(NULL);
    const json_t *data = mock_host_assert_ok(req, "pong");
    assert_int_equal(json_object_size(data), 3);
    assert_true(json_is_true(json_object_get(data, "pong")));
    assert_string_equal(json_string_value(json_object_get(data, "client_id")), CLIENT_ID);

    const char *t = json_string_value(json_object_get(data, "server_time"));
    assert_non_null(t);
    struct tm tm = {0};
    int ms = -1, end = 0;
    assert_int_equal(sscanf(t, "%4d-%2d-%2dT%2d:%2d:%2d.%3d%n", &tm.tm_year, &tm.tm_mon,
                            &tm.tm_mday, &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &ms, &end),
                     7);
    assert_int_equal(strlen(t), 24); /* 2024-05-01T12:34:56.789Z */
    assert_string_equal(t + end, "Z");
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    time_t when = timegm(&tm);
    assert_true(when >= before && when <= after);
    assert_true(ms >= 0 && ms <= 999);
    NO_CALLS(f);
}

static void status_returns_the_hosts_status(void **state)
{
    struct fx *f = *state;
    create(f, "");
    const char *status = "{\"uptime_seconds\":12,\"version\":\"0.1.0\",\"node\":\"n1\","
                         "\"clients\":2,\"rooms\":1,\"channels\":3,\"plugins\":[],\"reloads\":0}";
    script_query(f, "status", status);
    arq_request *req = run(f, "status", "");
    assert_json(mock_host_assert_ok(req, "Server status"), status);
    CALLS(f, "bus_query what=status client=" CLIENT_ID " room=- channel=-");
}

static void status_failure_is_the_queries_error(void **state)
{
    struct fx *f = *state;
    create(f, "");
    mock_host_query_fail(f->mh, "status", "INTERNAL_ERROR", "status unavailable");
    mock_host_assert_error(run(f, "status", ""), "INTERNAL_ERROR", "status unavailable");
}

#define CATALOGUE                                                                                  \
    "[{\"name\":\"ping\",\"summary\":\"p\",\"params\":[],\"role\":\"guest\"},"                     \
    "{\"name\":\"echo\",\"summary\":\"e\",\"params\":[{\"name\":\"text\"}],\"role\":\"guest\"},"   \
    "{\"name\":\"delete_channel\",\"summary\":\"d\",\"params\":[],\"role\":\"admin\"},"            \
    "{\"name\":\"disconnect_client\",\"summary\":\"x\",\"params\":[],\"role\":\"admin\"},"         \
    "{\"name\":\"reload\",\"summary\":\"r\",\"params\":[],\"role\":\"admin\"}]"

static void help_returns_the_catalogue_of_every_command(void **state)
{
    struct fx *f = *state;
    create(f, "");
    script_query(f, "commands", CATALOGUE);
    assert_json(mock_host_assert_ok(run(f, "help", ""), "Commands"),
                "{\"commands\":" CATALOGUE "}");
    CALLS(f, "bus_query what=commands client=" CLIENT_ID " room=- channel=-");
}

static void help_with_a_command_returns_its_entry(void **state)
{
    struct fx *f = *state;
    create(f, "");
    script_query(f, "commands", CATALOGUE);
    assert_json(mock_host_assert_ok(run(f, "help", "command: echo\n"), "Command echo"),
                "{\"name\":\"echo\",\"summary\":\"e\",\"params\":[{\"name\":\"text\"}],"
                "\"role\":\"guest\"}");
}

static void help_for_an_unknown_command_is_unknown_command(void **state)
{
    struct fx *f = *state;
    create(f, "");
    script_query(f, "commands", CATALOGUE);
    mock_host_assert_error(run(f, "help", "command: fly\n"), "UNKNOWN_COMMAND",
                           "Unknown command: fly");
}

static void whoami_returns_the_client(void **state)
{
    struct fx *f = *state;
    create(f, "");
    script_query(f, "client", CLIENT_A_GENERAL);
    assert_json(mock_host_assert_ok(run(f, "whoami", ""), "You are " CLIENT_ID), CLIENT_A_GENERAL);
    CALLS(f, Q_CLIENT);
}

static void list_rooms_returns_rooms(void **state)
{
    struct fx *f = *state;
    create(f, "");
    script_query(f, "rooms", "[{\"room\":\"a\",\"members\":2,\"channels\":1}]");
    assert_json(mock_host_assert_ok(run(f, "list_rooms", ""), "Rooms"),
                "{\"rooms\":[{\"room\":\"a\",\"members\":2,\"channels\":1}]}");
    CALLS(f, "bus_query what=rooms client=" CLIENT_ID " room=- channel=-");
}

static void list_rooms_of_an_empty_bus_is_an_empty_list(void **state)
{
    struct fx *f = *state;
    create(f, "");
    script_query(f, "rooms", "[]");
    assert_json(mock_host_assert_ok(run(f, "list_rooms", ""), "Rooms"), "{\"rooms\":[]}");
}

static void list_channels_returns_room_and_channels(void **state)
{
    struct fx *f = *state;
    create(f, "");
    script_query(f, "channels", "[" CHANNEL_A_GENERAL "]");
    assert_json(mock_host_assert_ok(run(f, "list_channels", "room: a\n"), "Channels of room a"),
                "{\"room\":\"a\",\"channels\":[" CHANNEL_A_GENERAL "]}");
    CALLS(f, "bus_query what=channels client=" CLIENT_ID " room=a channel=-");
}

static void list_channels_of_a_missing_room_is_room_not_found(void **state)
{
    struct fx *f = *state;
    create(f, "");
    mock_host_query_fail(f->mh, "channels", "ROOM_NOT_FOUND", "Room not found: zz");
    mock_host_assert_error(run(f, "list_channels", "room: zz\n"), "ROOM_NOT_FOUND",
                           "Room not found: zz");
}

/* --- users --------------------------------------------------------------------------------- */

static void channel_info_returns_the_channel(void **state)
{
    struct fx *f = *state;
    create(f, "");
    script_query(f, "channel", CHANNEL_A_GENERAL);
    assert_json(mock_host_assert_ok(run(f, "channel_info", "room: a\nchannel: general\n"),
                                    "Channel a/general"),
                CHANNEL_A_GENERAL);
    CALLS(f, "bus_query what=channel client=" CLIENT_ID " room=a channel=general");
}

static void channel_info_of_a_missing_channel_is_channel_not_found(void **state)
{
    struct fx *f = *state;
    create(f, "");
    mock_host_query_fail(f->mh, "channel", "CHANNEL_NOT_FOUND", "Channel not found: a/x");
    mock_host_assert_error(run(f, "channel_info", "room: a\nchannel: x\n"), "CHANNEL_NOT_FOUND",
                           "Channel not found: a/x");
}

#define MEMBERSHIPS "[{\"room\":\"a\"},{\"room\":\"a\",\"channel\":\"general\"}]"

static void join_room_returns_the_memberships_after_the_change(void **state)
{
    struct fx *f = *state;
    create(f, "");
    script_query(f, "client", CLIENT_A_GENERAL);
    assert_json(mock_host_assert_ok(run(f, "join_room", "room: a\n"), "Joined room a"),
                "{\"room\":\"a\",\"memberships\":" MEMBERSHIPS "}");
    CALLS(f, "bus_join client=" CLIENT_ID " room=a channel=-", Q_CLIENT);
}

static void join_room_refused_by_the_bus_is_its_error_and_nothing_else(void **state)
{
    struct fx *f = *state;
    create(f, "");
    script_query(f, "client", CLIENT_A_GENERAL);
    mock_host_bus_fail(f->mh, "bus_join", "VALIDATION_ERROR", "Invalid room name: a b");
    mock_host_assert_error(run(f, "join_room", "room: a b\n"), "VALIDATION_ERROR",
                           "Invalid room name: a b");
    CALLS(f, "bus_join client=" CLIENT_ID " room=a b channel=-");
}

static void leave_room_returns_the_memberships_after_the_change(void **state)
{
    struct fx *f = *state;
    create(f, "");
    script_query(f, "client", "{\"client_id\":\"" CLIENT_ID "\",\"memberships\":[]}");
    assert_json(mock_host_assert_ok(run(f, "leave_room", "room: a\n"), "Left room a"),
                "{\"room\":\"a\",\"memberships\":[]}");
    CALLS(f, "bus_leave client=" CLIENT_ID " room=a channel=-", Q_CLIENT);
}

static void leave_room_not_joined_is_not_found(void **state)
{
    struct fx *f = *state;
    create(f, "");
    mock_host_bus_fail(f->mh, "bus_leave", "NOT_FOUND", "Not a member of room a");
    mock_host_assert_error(run(f, "leave_room", "room: a\n"), "NOT_FOUND",
                           "Not a member of room a");
}

static void join_channel_returns_room_channel_and_memberships(void **state)
{
    struct fx *f = *state;
    create(f, "");
    script_query(f, "client", CLIENT_A_GENERAL);
    assert_json(mock_host_assert_ok(run(f, "join_channel", "room: a\nchannel: general\n"),
                                    "Joined channel a/general"),
                "{\"room\":\"a\",\"channel\":\"general\",\"memberships\":" MEMBERSHIPS "}");
    CALLS(f, "bus_join client=" CLIENT_ID " room=a channel=general", Q_CLIENT);
}

static void join_channel_without_auto_create_is_channel_not_found(void **state)
{
    struct fx *f = *state;
    create(f, "");
    mock_host_bus_fail(f->mh, "bus_join", "CHANNEL_NOT_FOUND", "Channel not found: a/new");
    mock_host_assert_error(run(f, "join_channel", "room: a\nchannel: new\n"), "CHANNEL_NOT_FOUND",
                           "Channel not found: a/new");
}

static void leave_channel_returns_room_channel_and_memberships(void **state)
{
    struct fx *f = *state;
    create(f, "");
    script_query(f, "client",
                 "{\"client_id\":\"" CLIENT_ID "\",\"memberships\":[{\"room\":\"a\"}]}");
    assert_json(mock_host_assert_ok(run(f, "leave_channel", "room: a\nchannel: general\n"),
                                    "Left channel a/general"),
                "{\"room\":\"a\",\"channel\":\"general\",\"memberships\":[{\"room\":\"a\"}]}");
    CALLS(f, "bus_leave client=" CLIENT_ID " room=a channel=general", Q_CLIENT);
}

static void membership_unreadable_after_a_change_is_the_queries_error(void **state)
{
    struct fx *f = *state;
    create(f, "");
    mock_host_query_fail(f->mh, "client", "INTERNAL_ERROR", "client gone");
    mock_host_assert_error(run(f, "join_channel", "room: a\nchannel: general\n"), "INTERNAL_ERROR",
                           "client gone");
}

static void create_channel_returns_the_new_channel(void **state)
{
    struct fx *f = *state;
    create(f, "");
    script_query(f, "channel", CHANNEL_A_GENERAL);
    assert_json(mock_host_assert_ok(
                    run(f, "create_channel", "room: a\nchannel: general\ndescription: chat\n"),
                    "Created channel a/general"),
                CHANNEL_A_GENERAL);
    CALLS(f, "bus_create_channel room=a channel=general description=chat",
          "bus_query what=channel client=" CLIENT_ID " room=a channel=general");
}

static void create_channel_without_description_passes_none(void **state)
{
    struct fx *f = *state;
    create(f, "");
    script_query(f, "channel", CHANNEL_A_GENERAL);
    mock_host_assert_ok(run(f, "create_channel", "room: a\nchannel: general\n"),
                        "Created channel a/general");
    CALLS(f, "bus_create_channel room=a channel=general description=-",
          "bus_query what=channel client=" CLIENT_ID " room=a channel=general");
}

static void create_channel_that_exists_is_channel_exists(void **state)
{
    struct fx *f = *state;
    create(f, "");
    mock_host_bus_fail(f->mh, "bus_create_channel", "CHANNEL_EXISTS",
                       "Channel already exists: a/general");
    mock_host_assert_error(run(f, "create_channel", "room: a\nchannel: general\n"),
                           "CHANNEL_EXISTS", "Channel already exists: a/general");
    CALLS(f, "bus_create_channel room=a channel=general description=-");
}

/* --- administrators ------------------------------------------------------------------------ */

static void delete_channel_is_not_forced_by_default(void **state)
{
    struct fx *f = *state;
    create(f, "");
    assert_json(mock_host_assert_ok(run(f, "delete_channel", "room: a\nchannel: general\n"),
                                    "Deleted channel a/general"),
                "{\"room\":\"a\",\"channel\":\"general\"}");
    CALLS(f, "bus_delete_channel room=a channel=general force=0");
}

static void delete_channel_with_force_forces(void **state)
{
    struct fx *f = *state;
    create(f, "");
    mock_host_assert_ok(run(f, "delete_channel", "room: a\nchannel: general\nforce: true\n"),
                        "Deleted channel a/general");
    CALLS(f, "bus_delete_channel room=a channel=general force=1");
}

static void delete_channel_with_members_is_execution_error(void **state)
{
    struct fx *f = *state;
    create(f, "");
    mock_host_bus_fail(f->mh, "bus_delete_channel", "EXECUTION_ERROR",
                       "Channel a/general has 2 members (use force)");
    mock_host_assert_error(run(f, "delete_channel", "room: a\nchannel: general\n"),
                           "EXECUTION_ERROR", "Channel a/general has 2 members (use force)");
}

static void disconnect_client_gives_the_default_reason(void **state)
{
    struct fx *f = *state;
    create(f, "");
    const json_t *data = mock_host_assert_ok(
        run(f, "disconnect_client", "client_id: arq_client_ff\n"), "Disconnected arq_client_ff");
    assert_null(data);
    CALLS(f, "bus_disconnect client_id=arq_client_ff reason=disconnected by an administrator");
}

static void disconnect_client_passes_the_reason_given(void **state)
{
    struct fx *f = *state;
    create(f, "");
    mock_host_assert_ok(run(f, "disconnect_client", "client_id: arq_client_ff\nreason: spam\n"),
                        "Disconnected arq_client_ff");
    CALLS(f, "bus_disconnect client_id=arq_client_ff reason=spam");
}

static void disconnect_of_an_unknown_client_is_not_found(void **state)
{
    struct fx *f = *state;
    create(f, "");
    mock_host_bus_fail(f->mh, "bus_disconnect", "NOT_FOUND", "No such client: arq_client_ff");
    mock_host_assert_error(run(f, "disconnect_client", "client_id: arq_client_ff\n"), "NOT_FOUND",
                           "No such client: arq_client_ff");
}

static void reload_hands_the_request_to_the_host_which_replies(void **state)
{
    struct fx *f = *state;
    create(f, "");
    arq_request *req = run(f, "reload", "");
    assert_int_equal(mock_host_reply_count(req), 0);
    assert_ptr_equal(mock_host_reload_request(f->mh), req);
    CALLS(f, "bus_reload");
}

/* --- admin_commands ------------------------------------------------------------------------ */

static void without_admin_commands_they_answer_unknown_command(void **state)
{
    struct fx *f = *state;
    create(f, "admin_commands: false\n");
    mock_host_assert_error(run(f, "delete_channel", "room: a\nchannel: general\n"),
                           "UNKNOWN_COMMAND", "Unknown command: delete_channel");
    mock_host_assert_error(run(f, "disconnect_client", "client_id: arq_client_ff\n"),
                           "UNKNOWN_COMMAND", "Unknown command: disconnect_client");
    mock_host_assert_error(run(f, "reload", ""), "UNKNOWN_COMMAND", "Unknown command: reload");
    NO_CALLS(f);
    assert_null(mock_host_reload_request(f->mh));
}

static void without_admin_commands_help_does_not_list_them(void **state)
{
    struct fx *f = *state;
    create(f, "admin_commands: false\n");
    script_query(f, "commands", CATALOGUE);
    assert_json(mock_host_assert_ok(run(f, "help", ""), "Commands"),
                "{\"commands\":[{\"name\":\"ping\",\"summary\":\"p\",\"params\":[],"
                "\"role\":\"guest\"},{\"name\":\"echo\",\"summary\":\"e\",\"params\":"
                "[{\"name\":\"text\"}],\"role\":\"guest\"}]}");
    mock_host_assert_error(run(f, "help", "command: reload\n"), "UNKNOWN_COMMAND",
                           "Unknown command: reload");
}

static void reconfigure_switches_admin_commands_in_place(void **state)
{
    struct fx *f = *state;
    create(f, "admin_commands: false\n");
    struct arq_error err = {""};
    json_t *cfg = mock_host_validate(desc->options, "admin_commands: true\n", NULL);
    assert_int_equal(desc->reconfigure(f->self, cfg, &err), 0);
    json_decref(cfg);
    mock_host_assert_ok(run(f, "delete_channel", "room: a\nchannel: general\n"),
                        "Deleted channel a/general");

    cfg = mock_host_validate(desc->options, "admin_commands: false\n", NULL);
    assert_int_equal(desc->reconfigure(f->self, cfg, &err), 0);
    json_decref(cfg);
    mock_host_assert_error(run(f, "reload", ""), "UNKNOWN_COMMAND", "Unknown command: reload");
}

/* --- every command ------------------------------------------------------------------------- */

static void bus_error_without_text_gets_a_generic_text(void **state)
{
    struct fx *f = *state;
    create(f, "");
    mock_host_bus_fail(f->mh, "bus_join", "ROOM_NOT_FOUND", NULL);
    mock_host_assert_error(run(f, "join_room", "room: a\n"), "ROOM_NOT_FOUND",
                           "the request failed (ROOM_NOT_FOUND)");
}

/* Args holding every REQUIRED param of `c`, as YAML. */
static void required_args(const struct arq_command *c, char *yaml, size_t size)
{
    size_t len = 0;
    yaml[0] = '\0';
    for (const struct arq_option *o = c->params; o && o->name; o++)
        if (o->flags & ARQ_OPT_REQUIRED)
            len += (size_t)snprintf(yaml + len, size - len, "%s: x\n", o->name);
}

static const char *const services[] = {"bus_join",           "bus_leave",      "bus_create_channel",
                                       "bus_delete_channel", "bus_disconnect", NULL};
static const char *const queries[] = {"status",   "commands", "client", "rooms",
                                      "channels", "channel",  NULL};

static void history_and_recovering_join_are_answered_by_the_host(void **state)
{
    struct fx *f = *state;
    create(f, "");
    arq_request *req = run(f, "history", "room: lobby\nchannel: general\nlimit: 5\n");
    assert_int_equal(mock_host_reply_count(req), 0);
    assert_ptr_equal(mock_host_history_request(f->mh), req);
    size_t n = mock_host_bus_call_count(f->mh);
    assert_string_equal(
        mock_host_bus_call(f->mh, n - 1),
        "bus_history join=0 {\"channel\":\"general\",\"limit\":5,\"room\":\"lobby\"}");
    /* join_channel with a position recovers through the host; without, it is a plain join */
    req = run(f, "join_channel", "room: lobby\nchannel: general\nsince_offset: 7\nepoch: e1\n");
    assert_ptr_equal(mock_host_history_request(f->mh), req);
    n = mock_host_bus_call_count(f->mh);
    assert_string_equal(mock_host_bus_call(f->mh, n - 1),
                        "bus_history join=1 {\"channel\":\"general\",\"epoch\":\"e1\","
                        "\"limit\":50,\"room\":\"lobby\",\"since_offset\":7}");
}

static void every_command_replies_exactly_once_whatever_the_bus_says(void **state)
{
    struct fx *f = *state;
    create(f, "");
    const struct arq_commands_ops *ops = desc->ops;
    for (int failing = 0; failing < 2; failing++) {
        for (size_t i = 0; services[i]; i++)
            mock_host_bus_fail(f->mh, services[i], failing ? "EXECUTION_ERROR" : NULL, "no");
        for (size_t i = 0; queries[i]; i++) {
            if (failing)
                mock_host_query_fail(f->mh, queries[i], "EXECUTION_ERROR", "no");
            else
                script_query(f, queries[i], "[{\"name\":\"x\"}]");
        }
        for (const struct arq_command *c = ops->commands; c->name; c++) {
            char yaml[256];
            required_args(c, yaml, sizeof yaml);
            arq_request *req = run(f, c->name, yaml);
            /* reload and history: the host replies */
            size_t want = strcmp(c->name, "reload") && strncmp(c->name, "history", 7) &&
                                  strcmp(c->name, "op.history.get")
                              ? 1
                              : 0;
            if (mock_host_reply_count(req) != want)
                fail_msg("%s (bus %s) replied %zu times", c->name, failing ? "failing" : "working",
                         mock_host_reply_count(req));
            const struct mock_reply *r = mock_host_last_reply(req);
            if (failing && r && r->ok && strcmp(c->name, "ping") != 0)
                fail_msg("%s succeeded although the bus failed", c->name);
            if (!failing && r && !r->ok)
                fail_msg("%s failed: %s %s", c->name, r->error_code, r->text);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(descriptor_is_a_command_set_the_loader_accepts),
        cmocka_unit_test(table_has_every_builtin_command_with_its_least_role),
        cmocka_unit_test(params_declare_required_args_and_defaults),
        cmocka_unit_test(host_validation_refuses_missing_required_args),
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
        T(create_refuses_a_host_without_bus_services),
        T(ping_returns_pong_server_time_and_client_id),
        T(status_returns_the_hosts_status),
        T(status_failure_is_the_queries_error),
        T(help_returns_the_catalogue_of_every_command),
        T(help_with_a_command_returns_its_entry),
        T(help_for_an_unknown_command_is_unknown_command),
        T(whoami_returns_the_client),
        T(list_rooms_returns_rooms),
        T(list_rooms_of_an_empty_bus_is_an_empty_list),
        T(list_channels_returns_room_and_channels),
        T(list_channels_of_a_missing_room_is_room_not_found),
        T(channel_info_returns_the_channel),
        T(channel_info_of_a_missing_channel_is_channel_not_found),
        T(join_room_returns_the_memberships_after_the_change),
        T(join_room_refused_by_the_bus_is_its_error_and_nothing_else),
        T(leave_room_returns_the_memberships_after_the_change),
        T(leave_room_not_joined_is_not_found),
        T(join_channel_returns_room_channel_and_memberships),
        T(join_channel_without_auto_create_is_channel_not_found),
        T(leave_channel_returns_room_channel_and_memberships),
        T(membership_unreadable_after_a_change_is_the_queries_error),
        T(create_channel_returns_the_new_channel),
        T(create_channel_without_description_passes_none),
        T(create_channel_that_exists_is_channel_exists),
        T(delete_channel_is_not_forced_by_default),
        T(delete_channel_with_force_forces),
        T(delete_channel_with_members_is_execution_error),
        T(disconnect_client_gives_the_default_reason),
        T(disconnect_client_passes_the_reason_given),
        T(disconnect_of_an_unknown_client_is_not_found),
        T(reload_hands_the_request_to_the_host_which_replies),
        T(without_admin_commands_they_answer_unknown_command),
        T(without_admin_commands_help_does_not_list_them),
        T(reconfigure_switches_admin_commands_in_place),
        T(bus_error_without_text_gets_a_generic_text),
        T(history_and_recovering_join_are_answered_by_the_host),
        T(every_command_replies_exactly_once_whatever_the_bus_says),
#undef T
    };
    return cmocka_run_group_tests(tests, load_plugin, unload_plugin);
}
