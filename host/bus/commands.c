/* The command executor: the registry built from every loaded command set, role checks,
 * argument validation against each command's spec, and exactly one response per command. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus.h"
#include "envelope.h"
#include "instance.h"
#include "log.h"
#include "metrics.h"
#include "options.h"

struct arq_request {
    struct bus *bus;
    struct arq_conn *conn; /* referenced until the reply */
    char *id;              /* the command envelope's id: the response's request_id */
    char *command;
    arq_series *ok, *failed; /* this command's arqonbus_commands_total series */
    uint64_t started_ns;
    struct arq_ctx *owner; /* the command set whose handler owes the reply */
    int answered;          /* the client has its response (a timeout answered it) */
    int64_t deadline_ms;
    struct arq_request *prev, *next; /* bus->pending */
};

void bus_commands_rebuild(struct bus *b)
{
    hmap_free(&b->commands);
    free(b->entries);
    b->entries = NULL;
    b->nentries = 0;
    size_t n = 0;
    struct arq_ctx *ctx;
    for (size_t i = 0; (ctx = b->env.instance(b->env.arg, ARQ_KIND_COMMANDS, i)); i++) {
        const struct arq_commands_ops *ops = ctx->mod->desc->ops;
        for (const struct arq_command *c = ops->commands; c->name; c++)
            n++;
    }
    if (!n || !(b->entries = calloc(n, sizeof *b->entries)))
        return;
    /* Declaration order decides: the first command set to declare a name keeps it. */
    for (size_t i = 0; (ctx = b->env.instance(b->env.arg, ARQ_KIND_COMMANDS, i)); i++) {
        const struct arq_commands_ops *ops = ctx->mod->desc->ops;
        for (const struct arq_command *c = ops->commands; c->name; c++) {
            struct command_entry *prev = hmap_get(&b->commands, c->name);
            if (prev) {
                log_write(ARQ_LOG_WARN, "host", "command declared twice; the first one is kept",
                          "command", c->name, "kept", prev->owner->name, "ignored", ctx->name,
                          (const char *)NULL);
                continue;
            }
            struct command_entry *e = &b->entries[b->nentries];
            e->cmd = c;
            e->owner = ctx;
            e->ok = bus_command_series(b, c->name, 1);
            e->failed = bus_command_series(b, c->name, 0);
            if (hmap_put(&b->commands, c->name, e) == 0)
                b->nentries++;
        }
    }
}

json_t *commands_catalogue(const struct bus *b)
{
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < b->nentries; i++) {
        const struct arq_command *c = b->entries[i].cmd;
        json_t *params = json_array();
        for (const struct arq_option *p = c->params; params && p && p->name; p++)
            json_array_append_new(params, json_pack("{s:s, s:s, s:b, s:s?, s:s?}", "name", p->name,
                                                    "type", opt_type_name(p->type), "required",
                                                    (p->flags & ARQ_OPT_REQUIRED) != 0, "default",
                                                    p->default_value, "help", p->help));
        json_array_append_new(arr, json_pack("{s:s, s:s, s:o, s:s, s:s}", "name", c->name,
                                             "summary", c->summary ? c->summary : "", "params",
                                             params, "role", c->role ? c->role : "user", "plugin",
                                             b->entries[i].owner->name));
    }
    return arr;
}

/* --- requests and replies ------------------------------------------------------------------ */

static void request__link(struct arq_request **list, struct arq_request *r)
{
    r->prev = NULL;
    r->next = *list;
    if (*list)
        (*list)->prev = r;
    *list = r;
}

static void request__unlink(struct arq_request **list, struct arq_request *r)
{
    if (r->prev)
        r->prev->next = r->next;
    else if (*list == r)
        *list = r->next;
    if (r->next)
        r->next->prev = r->prev;
    r->prev = r->next = NULL;
}

static void request__free(struct arq_request *r)
{
    conn_unref(r->conn);
    if (r->owner)
        instance_unref(r->owner);
    free(r->id);
    free(r->command);
    free(r);
}

static void request__respond(struct arq_request *r, const char *code, const char *text,
                             const char *message, const json_t *data)
{
    struct bus *b = r->bus;
    if (r->answered)
        return;
    r->answered = 1;
    metrics_add(code ? r->failed : r->ok, 1);
    metrics_observe(b->m_command_seconds, (double)(uv_hrtime() - r->started_ns) / 1e9);
    if (r->conn->state == CONN_OPEN) {
        char id[32], ts[32];
        int64_t now = bus_now_ms(b);
        envelope_new_id(id, now);
        envelope_format_timestamp(now, ts);
        json_t *resp =
            json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:{s:s, s:O?}}", "id", id, "timestamp",
                      ts, "version", "1.0", "type", "response", "request_id", r->id, "command",
                      r->command, "status", code ? "error" : "success", "payload", "message",
                      message ? message : (text ? text : ""), "data", data);
        if (resp && code) {
            json_object_set_new(resp, "error_code", json_string(code));
            json_object_set_new(resp, "error", json_string(text ? text : code));
            /* RATE_LIMITED says when to come back where every error says it: the payload. */
            json_t *retry = json_object_get(data, "retry_after_ms");
            if (retry)
                json_object_set(json_object_get(resp, "payload"), "retry_after_ms", retry);
        }
        if (resp)
            conn_send_json(r->conn, resp);
        json_decref(resp);
    }
    struct arq_event ev = {.struct_size = sizeof ev,
                           .event_type = code ? "command_failed" : "command_executed",
                           .client_id = r->conn->id,
                           .command = r->command};
    bus_event(b, &ev);
}

/* A reply ends the request: it leaves the pending list and is freed. A second reply to the
 * same request cannot be told from a reply to freed memory, so handlers must reply once. */
static void request__finish(struct arq_request *r, const char *code, const char *text,
                            const char *message, const json_t *data)
{
    request__unlink(&r->bus->pending, r);
    request__respond(r, code, text, message, data);
    request__free(r);
}

void commands_svc_reply_ok(arq_request *req, const char *message, const json_t *data)
{
    request__finish(req, NULL, NULL, message, data);
}

void commands_svc_reply_error(arq_request *req, const char *code, const char *text)
{
    request__finish(req, code ? code : ARQ_ERR_EXECUTION, text, NULL, NULL);
}

void commands_expire(struct bus *b)
{
    int64_t now = bus_now_ms(b);
    struct arq_request *r = b->pending;
    while (r) {
        struct arq_request *next = r->next;
        if (r->answered && r->owner && r->owner->dead) {
            /* Its command set is gone: no reply will ever come. */
            request__unlink(&b->pending, r);
            request__free(r);
        } else if (r->deadline_ms <= now) {
            log_write(ARQ_LOG_WARN, "host", "command timed out", "command", r->command, "client_id",
                      r->conn->id, (const char *)NULL);
            /* Keep the request (the handler may still reply) but answer the client now: the
             * late reply then finds a request whose client was already answered. */
            request__respond(r, ARQ_ERR_EXECUTION, "Command timed out", NULL, NULL);
            r->deadline_ms = INT64_MAX;
        }
        r = next;
    }
}

static void commands__sweep(uv_timer_t *t)
{
    struct bus *b = t->data;
    commands_expire(b);
    if (!b->pending)
        uv_timer_stop(t);
}

void commands_sweep_start(struct bus *b)
{
    if (!uv_is_active((uv_handle_t *)&b->sweep))
        uv_timer_start(&b->sweep, commands__sweep, 1000, 1000);
}

/* --- arguments ----------------------------------------------------------------------------- */

/* Arguments are JSON, not YAML: numbers and booleans must have their JSON types; durations
 * and sizes may be numbers (ms, bytes) or strings ("20s", "1MiB"). */
static json_t *commands__args(const struct arq_option *spec, const json_t *args, json_t *errors)
{
    json_t *out = json_object();
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)args, key, v)
    {
        const struct arq_option *o = spec;
        while (o && o->name && strcmp(o->name, key) != 0)
            o++;
        if (!o || !o->name)
            json_array_append_new(errors, json_sprintf("Unknown argument '%s'", key));
    }
    for (const struct arq_option *o = spec; o && o->name; o++) {
        json_t *given = json_object_get(args, o->name);
        json_t *value = NULL;
        char err[300] = "";
        if (!given || json_is_null(given)) {
            if (o->flags & ARQ_OPT_REQUIRED) {
                json_array_append_new(errors,
                                      json_sprintf("Missing required argument '%s'", o->name));
                continue;
            }
            if (!o->default_value)
                continue;
            value = opt_parse(o, o->default_value, err, sizeof err);
        } else if (o->type == ARQ_OPT_JSON) {
            value = json_incref(given);
        } else if (o->type == ARQ_OPT_STRING_LIST) {
            int ok = json_is_array(given);
            size_t i;
            json_t *item;
            json_array_foreach(given, i, item) ok = ok && json_is_string(item);
            if (ok)
                value = json_incref(given);
            else
                snprintf(err, sizeof err, "expected a list of strings");
        } else if ((o->type == ARQ_OPT_BOOL && !json_is_boolean(given)) ||
                   (o->type == ARQ_OPT_INT && !json_is_integer(given)) ||
                   (o->type == ARQ_OPT_DOUBLE && !json_is_number(given)) ||
                   ((o->type == ARQ_OPT_STRING || o->type == ARQ_OPT_ENUM) &&
                    !json_is_string(given)) ||
                   ((o->type == ARQ_OPT_DURATION || o->type == ARQ_OPT_SIZE) &&
                    !json_is_integer(given) && !json_is_string(given))) {
            snprintf(err, sizeof err, "expected %s %s",
                     o->type == ARQ_OPT_INT || o->type == ARQ_OPT_ENUM ? "an" : "a",
                     o->type == ARQ_OPT_BOOL ? "boolean" : opt_type_name(o->type));
        } else {
            /* Reuse the option parser (ranges, enums, units) on the value's text. */
            char text[64];
            const char *s = text;
            if (json_is_string(given))
                s = json_string_value(given);
            else if (json_is_integer(given))
                snprintf(text, sizeof text, "%" JSON_INTEGER_FORMAT "%s", json_integer_value(given),
                         o->type == ARQ_OPT_DURATION ? "ms" : "");
            else if (json_is_real(given))
                snprintf(text, sizeof text, "%.17g", json_real_value(given));
            else
                snprintf(text, sizeof text, "%s", json_is_true(given) ? "true" : "false");
            value = opt_parse(o, s, err, sizeof err);
        }
        if (!value) {
            json_array_append_new(errors, json_sprintf("Argument '%s': %s", o->name, err));
            continue;
        }
        json_object_set_new(out, o->name, value);
    }
    return out;
}

/* --- execution ----------------------------------------------------------------------------- */

void commands_execute(struct bus *b, struct arq_conn *c, const char *id, const char *name,
                      const json_t *args)
{
    char text[300];
    struct command_entry *e = hmap_get(&b->commands, name);
    if (!e) {
        snprintf(text, sizeof text, "Unknown command: %s", name);
        bus_send_error(b, c, ARQ_ERR_UNKNOWN_COMMAND, text, id, NULL);
        metrics_add(b->m_cmd_unknown, 1);
        return;
    }
    struct arq_request *r = calloc(1, sizeof *r);
    if (!r || !(r->id = strdup(id)) || !(r->command = strdup(name))) {
        if (r)
            free(r->id);
        free(r);
        bus_send_error(b, c, ARQ_ERR_INTERNAL, "Out of memory", id, NULL);
        return;
    }
    r->bus = b;
    r->conn = c;
    r->ok = e->ok;
    r->failed = e->failed;
    r->started_ns = uv_hrtime();
    conn_ref(c);
    struct arq_action what = {.struct_size = sizeof what,
                              .action = "command",
                              .command = name,
                              .group = e->cmd->role ? e->cmd->role : "user"};
    uint64_t retry_after_ms = 0;
    const char *refused = auth_check(b, c, &what, text, sizeof text, &retry_after_ms);
    if (refused) {
        json_t *data = retry_after_ms
                           ? json_pack("{s:I}", "retry_after_ms", (json_int_t)retry_after_ms)
                           : NULL;
        request__respond(r, refused, text, NULL, data);
        json_decref(data);
        request__free(r);
        return;
    }
    json_t *errors = json_array();
    json_t *empty = json_object();
    json_t *typed = commands__args(e->cmd->params, args ? args : empty, errors);
    json_decref(empty);
    if (!errors || !typed || json_array_size(errors)) {
        const char *first = json_string_value(json_array_get(errors, 0));
        json_t *data = json_pack("{s:O}", "errors", errors);
        request__respond(r, ARQ_ERR_VALIDATION, first ? first : "Out of memory", NULL, data);
        json_decref(data);
        request__free(r);
        json_decref(errors);
        json_decref(typed);
        return;
    }
    json_decref(errors);
    r->owner = e->owner;
    instance_ref(e->owner);
    r->deadline_ms = bus_now_ms(b) + (int64_t)b->settings.command_timeout_ms;
    request__link(&b->pending, r);
    commands_sweep_start(b);
    e->cmd->handler(e->owner->self, r, c, typed);
    json_decref(typed);
}

/* --- reloads asked for by commands and server-side APIs ---------------------------------- */

static void commands__reloaded(void *arg, const char *code, const char *text, const json_t *data)
{
    struct arq_request *r = arg;
    request__respond(r, code, text, code ? NULL : "Configuration reloaded", data);
    request__free(r);
}

void bus_svc_reload(arq_ctx *ctx, arq_request *req)
{
    /* The request waits for the reload's verdict instead of the command timeout. */
    struct bus *b = bus_of(ctx);
    request__unlink(&b->pending, req);
    b->env.reload(b->env.arg, commands__reloaded, req);
}

void commands_drop_all(struct bus *b)
{
    while (b->pending) {
        struct arq_request *r = b->pending;
        /* The head's prev is NULL (request__link), so this advances b->pending: r is not seen
         * again. NOLINTNEXTLINE(clang-analyzer-unix.Malloc) */
        request__unlink(&b->pending, r);
        request__free(r);
    }
}
