/* The command executor in process: the registry from the running command sets, unknown
 * commands, roles, argument checks, exactly one reply (now, later, or a timeout by the manual
 * clock), a command set leaving while its request waits, `reload` answered by the reload's
 * verdict, and the telemetry and metrics of each outcome. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "bus_fixture.h"

/* A fake command set: what its handlers saw, and the request its `hold` keeps. */
struct fake_set {
    const char *label; /* what its `answer` and `dup` reply with */
    struct arq_ctx *ctx;
    arq_request *held;
    int calls;
    json_t *args; /* the validated arguments of the last call */
};

static void h_answer(void *self, arq_request *req, arq_conn *conn, const json_t *args)
{
    struct fake_set *s = self;
    (void)conn;
    (void)args;
    s->calls++;
    json_t *data = json_pack("{s:s}", "by", s->label);
    commands_svc_reply_ok(req, s->label, data);
    json_decref(data);
}

static void h_fail(void *self, arq_request *req, arq_conn *conn, const json_t *args)
{
    struct fake_set *s = self;
    (void)conn;
    (void)args;
    s->calls++;
    commands_svc_reply_error(req, NULL, "it broke");
}

static void h_hold(void *self, arq_request *req, arq_conn *conn, const json_t *args)
{
    struct fake_set *s = self;
    (void)conn;
    (void)args;
    s->calls++;
    s->held = req;
}

static void h_args(void *self, arq_request *req, arq_conn *conn, const json_t *args)
{
    struct fake_set *s = self;
    (void)conn;
    s->calls++;
    json_decref(s->args);
    s->args = json_deep_copy(args);
    commands_svc_reply_ok(req, "checked", NULL);
}

static void h_reload(void *self, arq_request *req, arq_conn *conn, const json_t *args)
{
    struct fake_set *s = self;
    (void)conn;
    (void)args;
    s->calls++;
    bus_svc_reload(s->ctx, req);
}

static const struct arq_option args_spec[] = {
    ARQ_OPT("room", ARQ_OPT_STRING, NULL, ARQ_OPT_REQUIRED, "a room"),
    ARQ_OPT_RANGE("limit", ARQ_OPT_INT, "5", 1, 10, 0, "how many"),
    ARQ_OPT("force", ARQ_OPT_BOOL, "false", 0, "whatever it takes"),
    ARQ_OPT("wait", ARQ_OPT_DURATION, NULL, 0, "how long"),
    ARQ_OPT("bytes", ARQ_OPT_SIZE, NULL, 0, "how much"),
    ARQ_OPT_CHOICE("colour", ARQ_CHOICES("red", "green"), NULL, 0, "which"),
    ARQ_OPT("tags", ARQ_OPT_STRING_LIST, NULL, 0, "labels"),
    ARQ_OPT_END};

static const struct arq_command set_a_commands[] = {
    {"dup", "declared by both sets", NULL, "guest", h_answer},
    {"only_a", "declared by set-a", NULL, "guest", h_answer},
    {"answer", "replies at once", NULL, "guest", h_answer},
    {"fail", "fails at once", NULL, "guest", h_fail},
    {"hold", "replies when the test says", NULL, "guest", h_hold},
    {"args", "checks its arguments", args_spec, "guest", h_args},
    {"reload", "reloads", NULL, "guest", h_reload},
    {"for_guest", "guest", NULL, "guest", h_answer},
    {"for_user", "user", NULL, "user", h_answer},
    {"for_admin", "admin", NULL, "admin", h_answer},
    {"no_role", "no declared role", NULL, NULL, h_answer},
    {NULL, NULL, NULL, NULL, NULL}};

static const struct arq_command set_b_commands[] = {
    {"dup", "declared by both sets", NULL, "guest", h_answer},
    {"only_b", "declared by set-b", NULL, "guest", h_answer},
    {NULL, NULL, NULL, NULL, NULL}};

static const struct arq_commands_ops set_a_ops = {.struct_size = sizeof set_a_ops,
                                                  .commands = set_a_commands};
static const struct arq_commands_ops set_b_ops = {.struct_size = sizeof set_b_ops,
                                                  .commands = set_b_commands};

static void add_set(struct bus_fx *f, struct fake_set *s, const char *name,
                    const struct arq_commands_ops *ops)
{
    s->label = name;
    s->ctx = fx_instance(f, name, ARQ_KIND_COMMANDS, ops, s);
}

static const char *cmd_id(int n)
{
    static char id[40];
    snprintf(id, sizeof id, "arq_%026d", n);
    return id;
}

static void command(struct fake_client *c, int n, const char *name, const char *args)
{
    fx_sendf(c, "{\"type\":\"command\",\"id\":\"%s\",\"command\":\"%s\",\"args\":%s}", cmd_id(n),
             name, args ? args : "{}");
}

/* The next frame, which must be the response to command n with `status`. */
static json_t *response(struct fake_client *c, int n, const char *status)
{
    json_t *r = fx_next(c);
    assert_non_null(r);
    assert_string_equal(fx_str(r, "type"), "response");
    assert_string_equal(fx_str(r, "request_id"), cmd_id(n));
    assert_string_equal(fx_str(r, "status"), status);
    return r;
}

/* The error response to command n: its code and text. */
static void refused(struct fake_client *c, int n, const char *code, const char *text)
{
    json_t *r = response(c, n, "error");
    assert_string_equal(fx_str(r, "error_code"), code);
    assert_string_equal(fx_str(r, "error"), text);
    assert_int_equal(fx_unread(c), 0);
}

static double commands_total(struct bus_fx *f, const char *command, const char *status)
{
    char series[160];
    snprintf(series, sizeof series, "arqonbus_commands_total{command=\"%s\",status=\"%s\"}",
             command, status);
    return fx_metric(f, series);
}

/* --- the registry ------------------------------------------------------------------------- */

static void
the_first_declared_set_keeps_a_name_and_the_registry_follows_the_generation(void **state)
{
    struct bus_fx *f = *state;
    struct fake_set a = {0}, b = {0};
    add_set(f, &a, "set-a", &set_a_ops);
    struct fake_client *c = fx_client(f);

    command(c, 1, "only_b", NULL);
    json_t *e = fx_next(c);
    assert_string_equal(fx_str(e, "error_code"), "UNKNOWN_COMMAND");

    add_set(f, &b, "set-b", &set_b_ops); /* declared after set-a */
    command(c, 2, "only_b", NULL);
    assert_string_equal(fx_str(response(c, 2, "success"), "payload.message"), "set-b");
    command(c, 3, "dup", NULL);
    assert_string_equal(fx_str(response(c, 3, "success"), "payload.data.by"), "set-a");
    assert_int_equal(b.calls, 1);

    /* `help` lists the name once, under the set that keeps it. */
    json_t *cat = commands_catalogue(&f->bus);
    size_t i, dups = 0;
    json_t *entry;
    json_array_foreach(cat, i, entry)
    {
        if (!strcmp(fx_str(entry, "name"), "dup")) {
            dups++;
            assert_string_equal(fx_str(entry, "plugin"), "set-a");
        }
    }
    json_decref(cat);
    assert_int_equal(dups, 1);

    /* A reload drops set-a: its names go, the one it shadowed comes back. */
    fx_remove_instance(f, a.ctx);
    command(c, 4, "dup", NULL);
    assert_string_equal(fx_str(response(c, 4, "success"), "payload.data.by"), "set-b");
    command(c, 5, "only_a", NULL);
    e = fx_next(c);
    assert_string_equal(fx_str(e, "type"), "error");
    assert_string_equal(fx_str(e, "error_code"), "UNKNOWN_COMMAND");
    assert_int_equal(fx_unread(c), 0);
}

static void an_unknown_command_gets_an_error_frame_and_counts_as_unknown(void **state)
{
    struct bus_fx *f = *state;
    struct fake_set a = {0};
    add_set(f, &a, "set-a", &set_a_ops);
    struct fake_client *c = fx_client(f);
    command(c, 1, "nope", NULL);
    json_t *e = fx_next(c);
    assert_string_equal(fx_str(e, "type"), "error");
    assert_string_equal(fx_str(e, "error_code"), "UNKNOWN_COMMAND");
    assert_string_equal(fx_str(e, "error"), "Unknown command: nope");
    assert_string_equal(fx_str(e, "request_id"), cmd_id(1));
    assert_int_equal(fx_unread(c), 0); /* no response besides */
    assert_int_equal(commands_total(f, "unknown", "error"), 1);
    assert_int_equal(commands_total(f, "nope", "error"), -1); /* no series per unknown name */
    assert_int_equal(a.calls, 0);
}

/* --- roles -------------------------------------------------------------------------------- */

static void a_command_needs_at_least_its_declared_role(void **state)
{
    struct bus_fx *f = *state;
    struct fake_set a = {0};
    add_set(f, &a, "set-a", &set_a_ops);

    /* No auth policy: every client has bus.anonymous_role, "user" by default. */
    struct fake_client *u = fx_client(f);
    command(u, 1, "for_guest", NULL);
    response(u, 1, "success");
    command(u, 2, "for_user", NULL);
    response(u, 2, "success");
    command(u, 3, "no_role", NULL);
    response(u, 3, "success");
    command(u, 4, "for_admin", NULL);
    refused(u, 4, "AUTHORIZATION_ERROR",
            "Command 'for_admin' requires role admin; this client is user");
    assert_int_equal(a.calls, 3);

    fx_configure(f, "anonymous_role: guest");
    struct fake_client *g = fx_client(f);
    command(g, 5, "for_guest", NULL);
    response(g, 5, "success");
    command(g, 6, "for_user", NULL);
    refused(g, 6, "AUTHORIZATION_ERROR",
            "Command 'for_user' requires role user; this client is guest");
    /* A command that declares no role needs "user". */
    command(g, 7, "no_role", NULL);
    refused(g, 7, "AUTHORIZATION_ERROR",
            "Command 'no_role' requires role user; this client is guest");

    /* A role the host does not know ranks as guest. */
    fx_configure(f, "anonymous_role: operator");
    struct fake_client *o = fx_client(f);
    command(o, 8, "for_guest", NULL);
    response(o, 8, "success");
    command(o, 9, "for_user", NULL);
    refused(o, 9, "AUTHORIZATION_ERROR",
            "Command 'for_user' requires role user; this client is operator");

    fx_configure(f, "anonymous_role: admin");
    struct fake_client *ad = fx_client(f);
    command(ad, 10, "for_admin", NULL);
    response(ad, 10, "success");

    assert_int_equal(a.calls, 6); /* the refused ones never reached the handler */
    assert_int_equal(commands_total(f, "for_admin", "error"), 1);
    assert_int_equal(commands_total(f, "for_admin", "success"), 1);
    assert_int_equal(commands_total(f, "for_user", "error"), 2);
    assert_int_equal(fx_metric(f, "arqonbus_auth_failures_total{stage=\"action\"}"), 4);
}

/* --- arguments ---------------------------------------------------------------------------- */

/* Command n must be refused with VALIDATION_ERROR listing exactly `errors` (a JSON array). */
static void invalid(struct fake_client *c, int n, const char *args, const char *errors)
{
    command(c, n, "args", args);
    json_t *r = response(c, n, "error");
    assert_string_equal(fx_str(r, "error_code"), "VALIDATION_ERROR");
    json_t *want = json_loads(errors, 0, NULL);
    assert_non_null(want);
    json_t *got = fx_get(r, "payload.data.errors");
    if (!json_equal(got, want)) {
        char *text = json_dumps(got, JSON_COMPACT);
        fail_msg("args %s: errors %s, expected %s", args, text, errors);
    }
    assert_string_equal(fx_str(r, "error"), json_string_value(json_array_get(want, 0)));
    json_decref(want);
}

/* Command n must pass, and the handler get `typed` (a JSON object). */
static void valid(struct fake_client *c, struct fake_set *s, int n, const char *args,
                  const char *typed)
{
    command(c, n, "args", args);
    response(c, n, "success");
    json_t *want = json_loads(typed, 0, NULL);
    assert_non_null(want);
    if (!json_equal(s->args, want)) {
        char *text = json_dumps(s->args, JSON_COMPACT);
        fail_msg("args %s: handler got %s, expected %s", args, text, typed);
    }
    json_decref(want);
}

static void arguments_are_checked_against_the_declared_spec_before_the_handler_runs(void **state)
{
    struct bus_fx *f = *state;
    struct fake_set a = {0};
    add_set(f, &a, "set-a", &set_a_ops);
    struct fake_client *c = fx_client(f);

    invalid(c, 1, "{}", "[\"Missing required argument 'room'\"]");
    invalid(c, 2, "{\"room\":null}", "[\"Missing required argument 'room'\"]");
    /* Every problem, unknown arguments first, then in the spec's order. */
    invalid(c, 3, "{\"force\":\"yes\",\"x\":1,\"limit\":\"3\",\"room\":7}",
            "[\"Unknown argument 'x'\", \"Argument 'room': expected a string\","
            " \"Argument 'limit': expected an int\", \"Argument 'force': expected a boolean\"]");
    invalid(c, 4, "{\"room\":\"r\",\"limit\":11}",
            "[\"Argument 'limit': 11 is out of range 1..10\"]");
    invalid(c, 5, "{\"room\":\"r\",\"limit\":2.0}", "[\"Argument 'limit': expected an int\"]");
    invalid(c, 6, "{\"room\":\"r\",\"wait\":1.5}", "[\"Argument 'wait': expected a duration\"]");
    invalid(c, 7, "{\"room\":\"r\",\"wait\":\"soon\"}",
            "[\"Argument 'wait': expected a duration such as 250ms, 20s, 5m or 1h, got "
            "\\\"soon\\\"\"]");
    invalid(c, 8, "{\"room\":\"r\",\"bytes\":true}", "[\"Argument 'bytes': expected a size\"]");
    invalid(c, 9, "{\"room\":\"r\",\"colour\":\"blue\"}",
            "[\"Argument 'colour': \\\"blue\\\" is not one of: red, green\"]");
    invalid(c, 10, "{\"room\":\"r\",\"tags\":[\"a\",1]}",
            "[\"Argument 'tags': expected a list of strings\"]");
    assert_int_equal(a.calls, 0);
    assert_int_equal(commands_total(f, "args", "error"), 10);

    /* Defaults fill what is not given; durations and sizes take numbers or units. */
    valid(c, &a, 11, "{\"room\":\"r\"}", "{\"room\":\"r\",\"limit\":5,\"force\":false}");
    valid(c, &a, 12, "{\"room\":\"r\",\"wait\":\"20s\",\"bytes\":\"1MiB\",\"limit\":null}",
          "{\"room\":\"r\",\"limit\":5,\"force\":false,\"wait\":20000,\"bytes\":1048576}");
    valid(c, &a, 13,
          "{\"room\":\"r\",\"wait\":1500,\"bytes\":4096,\"limit\":10,\"force\":true,"
          "\"colour\":\"green\",\"tags\":[\"x\"]}",
          "{\"room\":\"r\",\"limit\":10,\"force\":true,\"wait\":1500,\"bytes\":4096,"
          "\"colour\":\"green\",\"tags\":[\"x\"]}");
    assert_int_equal(a.calls, 3);
    json_decref(a.args);
}

/* --- exactly one reply -------------------------------------------------------------------- */

static void a_reply_now_or_later_reaches_the_client_once(void **state)
{
    struct bus_fx *f = *state;
    struct fake_set a = {0};
    add_set(f, &a, "set-a", &set_a_ops);
    struct fake_client *c = fx_client(f);

    command(c, 1, "answer", NULL);
    json_t *r = response(c, 1, "success");
    assert_string_equal(fx_str(r, "command"), "answer");
    assert_string_equal(fx_str(r, "payload.message"), "set-a");
    assert_int_equal(fx_unread(c), 0);
    assert_null(f->bus.pending);

    command(c, 2, "hold", NULL);
    assert_non_null(a.held);
    assert_int_equal(fx_unread(c), 0); /* nothing until the handler replies */
    json_t *data = json_pack("{s:i}", "n", 42);
    commands_svc_reply_ok(a.held, "later", data);
    json_decref(data);
    r = response(c, 2, "success");
    assert_string_equal(fx_str(r, "payload.message"), "later");
    assert_int_equal(json_integer_value(fx_get(r, "payload.data.n")), 42);
    assert_null(f->bus.pending);
    /* Its deadline passing later sends nothing. */
    f->now_ms += 3600 * 1000;
    commands_expire(&f->bus);
    assert_int_equal(fx_unread(c), 0);
    assert_int_equal(commands_total(f, "hold", "success"), 1);
    assert_int_equal(commands_total(f, "hold", "error"), 0);
}

static void
a_command_not_answered_in_time_gets_one_timeout_and_the_late_reply_is_swallowed(void **state)
{
    struct bus_fx *f = *state;
    fx_configure(f, "command_timeout: 2s");
    struct fake_set a = {0};
    add_set(f, &a, "set-a", &set_a_ops);
    struct fake_client *c = fx_client(f);

    command(c, 1, "hold", NULL);
    f->now_ms += 1999;
    commands_expire(&f->bus);
    assert_int_equal(fx_unread(c), 0);
    f->now_ms += 1;
    commands_expire(&f->bus);
    refused(c, 1, "EXECUTION_ERROR", "Command timed out");
    f->now_ms += 5000;
    commands_expire(&f->bus); /* answered once only */
    assert_int_equal(fx_unread(c), 0);
    assert_non_null(f->bus.pending); /* the handler still owes its reply */

    commands_svc_reply_ok(a.held, "too late", NULL);
    assert_int_equal(fx_unread(c), 0);
    assert_null(f->bus.pending);
    assert_int_equal(commands_total(f, "hold", "error"), 1);
    assert_int_equal(commands_total(f, "hold", "success"), 0);
    assert_int_equal(fx_events(f, "command_failed"), 1);
    assert_int_equal(fx_events(f, "command_executed"), 0);

    /* A client that left before the reply: counted, nothing sent, nothing freed early. */
    command(c, 2, "hold", NULL);
    fx_disconnect(c, 1000);
    commands_svc_reply_ok(a.held, "gone", NULL);
    assert_int_equal(commands_total(f, "hold", "success"), 1);
    assert_null(f->bus.pending);
}

static void a_command_set_removed_while_its_request_waits(void **state)
{
    struct bus_fx *f = *state;
    fx_configure(f, "command_timeout: 1s");
    struct fake_set a = {0};
    add_set(f, &a, "set-a", &set_a_ops);
    struct fake_client *c = fx_client(f);

    command(c, 1, "hold", NULL);
    fx_remove_instance(f, a.ctx); /* its handler will never reply */
    command(c, 2, "hold", NULL);
    assert_string_equal(fx_str(fx_next(c), "error_code"), "UNKNOWN_COMMAND");
    commands_expire(&f->bus);
    assert_int_equal(fx_unread(c), 0);
    assert_non_null(f->bus.pending);

    /* The client still gets its one reply, at the deadline ... */
    f->now_ms += 1000;
    commands_expire(&f->bus);
    refused(c, 1, "EXECUTION_ERROR", "Command timed out");
    /* ... and the request is let go at the next sweep: no reply can come any more. */
    commands_expire(&f->bus);
    assert_null(f->bus.pending);
    assert_int_equal(fx_unread(c), 0);
    assert_int_equal(a.calls, 1);
}

static void the_reload_command_is_answered_by_the_reloads_verdict(void **state)
{
    struct bus_fx *f = *state;
    fx_configure(f, "command_timeout: 1s");
    struct fake_set a = {0};
    add_set(f, &a, "set-a", &set_a_ops);
    struct fake_client *c = fx_client(f);

    command(c, 1, "reload", NULL);
    assert_int_equal(f->reloads_asked, 1);
    assert_int_equal(fx_unread(c), 0);
    /* A reload may take longer than a command: the timeout does not answer it. */
    f->now_ms += 60 * 1000;
    commands_expire(&f->bus);
    assert_int_equal(fx_unread(c), 0);
    fx_reload_done(f, 1, NULL);
    json_t *r = response(c, 1, "success");
    assert_string_equal(fx_str(r, "payload.message"), "Configuration reloaded");
    assert_int_equal(json_integer_value(fx_get(r, "payload.data.generation")), 2);
    assert_int_equal(fx_unread(c), 0);

    command(c, 2, "reload", NULL);
    assert_int_equal(f->reloads_asked, 2);
    fx_reload_done(f, 0, "conf.d/bus.yaml:3:5: unknown option");
    refused(c, 2, "EXECUTION_ERROR", "conf.d/bus.yaml:3:5: unknown option");
    assert_int_equal(commands_total(f, "reload", "success"), 1);
    assert_int_equal(commands_total(f, "reload", "error"), 1);
    assert_null(f->bus.pending);
}

/* --- telemetry and metrics ---------------------------------------------------------------- */

static void each_outcome_is_one_event_and_one_count(void **state)
{
    struct bus_fx *f = *state;
    fx_configure(f, "anonymous_role: guest");
    struct fake_set a = {0};
    add_set(f, &a, "set-a", &set_a_ops);
    struct fake_client *c = fx_client(f);

    command(c, 1, "answer", NULL);
    response(c, 1, "success");
    command(c, 2, "fail", NULL);
    refused(c, 2, "EXECUTION_ERROR", "it broke"); /* no code from the handler: EXECUTION_ERROR */
    command(c, 3, "for_user", NULL);
    response(c, 3, "error");
    command(c, 4, "args", "{}");
    response(c, 4, "error");

    assert_int_equal(fx_events(f, "command_executed"), 1);
    assert_int_equal(fx_events(f, "command_failed"), 3);
    json_t *ev = fx_event(f, "command_executed", 0);
    assert_string_equal(fx_str(ev, "command"), "answer");
    assert_string_equal(fx_str(ev, "client_id"), conn_svc_client_id(c->conn));
    assert_string_equal(fx_str(ev, "source"), "host");
    assert_string_equal(fx_str(fx_event(f, "command_failed", 0), "command"), "fail");
    assert_string_equal(fx_str(fx_event(f, "command_failed", 1), "command"), "for_user");
    assert_string_equal(fx_str(fx_event(f, "command_failed", 2), "command"), "args");

    assert_int_equal(commands_total(f, "answer", "success"), 1);
    assert_int_equal(commands_total(f, "fail", "error"), 1);
    assert_int_equal(commands_total(f, "for_user", "error"), 1);
    assert_int_equal(commands_total(f, "args", "error"), 1);
    assert_int_equal(fx_metric(f, "arqonbus_command_duration_seconds_count"), 4);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, bus_fx_setup, bus_fx_teardown)
    const struct CMUnitTest tests[] = {
        T(the_first_declared_set_keeps_a_name_and_the_registry_follows_the_generation),
        T(an_unknown_command_gets_an_error_frame_and_counts_as_unknown),
        T(a_command_needs_at_least_its_declared_role),
        T(arguments_are_checked_against_the_declared_spec_before_the_handler_runs),
        T(a_reply_now_or_later_reaches_the_client_once),
        T(a_command_not_answered_in_time_gets_one_timeout_and_the_late_reply_is_swallowed),
        T(a_command_set_removed_while_its_request_waits),
        T(the_reload_command_is_answered_by_the_reloads_verdict),
        T(each_outcome_is_one_event_and_one_count),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
