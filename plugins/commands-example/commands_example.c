/* commands-example: a small command set, written the way a third party would write one, to copy
 * when you add commands to ArqonBus. It adds two commands:
 *
 *   echo  {text}  -> data {text}                  the text back, refused above `max_text`
 *   time  {}      -> data {time, unix_ms}         the server's clock, RFC 3339 and Unix ms
 *
 * Read it top to bottom: options, instance state, life cycle, the commands, the command table,
 * and the descriptor at the bottom. It uses nothing but the SDK header (1.1) and jansson, which
 * command sets use for arguments and replies.
 *
 * Build against the installed SDK (its .pc brings jansson and libuv):
 *   cc -std=c11 -fPIC -shared commands_example.c $(pkg-config --cflags --libs arqonbus-sdk) \
 *      -o commands-example.so
 * install it into $(pkg-config --variable=plugindir arqonbus-sdk), and declare an instance (see
 * conf.d/20-commands.yaml). Clients then send {"type":"command","command":"echo",
 * "args":{"text":"hi"}} and `help` lists both commands. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L /* gmtime_r */
#endif
#include <arqonbus/plugin.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* 1. Options, each bound to a field of the config struct: the host validates the config and
 * fills the struct (opt_fill), so a default is written once, here. */
struct example_cfg {
    size_t max_text; /* bytes */
};

static const struct arq_option options[] = {
    ARQ_OPT_RANGE_FIELD("max_text", ARQ_OPT_SIZE, "1KiB", 1, 1048576, ARQ_OPT_RELOADABLE,
                        "longest text echo sends back", ARQ_FIELD(struct example_cfg, max_text)),
    ARQ_OPT_END};

/* 2. Instance state: everything lives here, nothing in globals. */
struct example {
    const struct arq_host *host;
    arq_ctx *ctx;
    struct example_cfg cfg;
};

/* 3. Life cycle. A command set has no work of its own to start or stop. */
static int example_create(const struct arq_host *host, arq_ctx *ctx, const json_t *cfg, void **self,
                          struct arq_error *err)
{
    struct example *e = calloc(1, sizeof *e);
    if (!e)
        return arq_error_set(err, ARQ_ENOMEM, "out of memory");
    e->host = host;
    e->ctx = ctx;
    int rc = host->opt_fill(cfg, options, &e->cfg, err);
    if (rc != ARQ_OK) {
        free(e);
        return rc;
    }
    *self = e;
    return ARQ_OK;
}

/* Only max_text can change, and it is RELOADABLE: apply it in place, all or nothing. */
static int example_reconfigure(void *self, const json_t *cfg, struct arq_error *err)
{
    struct example *e = self;
    struct example_cfg next = e->cfg;
    int rc = e->host->opt_fill(cfg, options, &next, err);
    if (rc == ARQ_OK)
        e->cfg = next;
    return rc;
}

static void example_destroy(void *self)
{
    free(self);
}

/* 4. The commands. The host has checked `args` against the command's params (types, REQUIRED,
 * defaults filled in) and the client's role before calling a handler, so a handler just reads
 * them, here into a struct its params are bound to. Every handler replies exactly once, now or
 * later, with reply_ok or reply_error. The host copies what it needs: `data` stays ours to
 * release. */
struct echo_args {
    const char *text; /* borrowed from args: valid during the handler */
};

static const struct arq_option echo_params[] = {
    ARQ_OPT_FIELD("text", ARQ_OPT_STRING, NULL, ARQ_OPT_REQUIRED, "the text to send back",
                  ARQ_FIELD(struct echo_args, text)),
    ARQ_OPT_END};

static void reply_take(struct example *e, arq_request *req, const char *message, json_t *data)
{
    if (!data) {
        ARQ_LOG(e->host, e->ctx, ARQ_LOG_ERROR, "cannot build a reply", "reply", message);
        e->host->reply_error(req, ARQ_ERR_INTERNAL, "out of memory");
        return;
    }
    e->host->reply_ok(req, message, data);
    json_decref(data);
}

static void cmd_echo(void *self, arq_request *req, arq_conn *conn, const json_t *args)
{
    struct example *e = self;
    struct echo_args a = {""};
    struct arq_error err;
    (void)conn;
    if (e->host->opt_fill(args, echo_params, &a, &err) != ARQ_OK) {
        e->host->reply_error(req, ARQ_ERR_INTERNAL, err.text);
        return;
    }
    size_t len = strlen(a.text);
    if (len > e->cfg.max_text) {
        /* A client mistake: a protocol error code and a text that says what to change. */
        char why[128];
        snprintf(why, sizeof why, "text is %zu bytes; the limit is %zu", len, e->cfg.max_text);
        e->host->reply_error(req, ARQ_ERR_VALIDATION, why);
        return;
    }
    reply_take(e, req, "echo", json_pack("{s:s}", "text", a.text));
}

static void cmd_time(void *self, arq_request *req, arq_conn *conn, const json_t *args)
{
    struct example *e = self;
    struct timespec ts;
    struct tm tm;
    char seconds[32], rfc3339[48];
    (void)conn, (void)args;
    timespec_get(&ts, TIME_UTC);
    gmtime_r(&ts.tv_sec, &tm);
    strftime(seconds, sizeof seconds, "%Y-%m-%dT%H:%M:%S", &tm);
    int ms = (int)(ts.tv_nsec / 1000000);
    snprintf(rfc3339, sizeof rfc3339, "%s.%03dZ", seconds, ms);
    json_int_t unix_ms = (json_int_t)ts.tv_sec * 1000 + ms;
    reply_take(e, req, "server time", json_pack("{s:s, s:I}", "time", rfc3339, "unix_ms", unix_ms));
}

/* 5. The command table: name, one line for `help`, params (written like options), least role
 * ("guest", "user", "admin"; an auth policy may change it), handler. A NULL name ends it. */
static const struct arq_command commands[] = {
    {"echo", "send `text` back", echo_params, "guest", cmd_echo},
    {"time", "the server's time, RFC 3339 (UTC, milliseconds) and Unix milliseconds", NULL, "guest",
     cmd_time},
    {NULL, NULL, NULL, NULL, NULL}};

static const struct arq_commands_ops ops = {
    .struct_size = sizeof ops,
    .commands = commands,
};

/* 6. The descriptor, and the one exported symbol. */
static const struct arq_plugin descriptor = {
    ARQ_PLUGIN_HEAD,
    .name = "commands-example",
    .version = "1.0.0",
    .summary = "example command set: echo and time",
    .kind = ARQ_KIND_COMMANDS,
    .options = options,
    .create = example_create,
    .reconfigure = example_reconfigure,
    .destroy = example_destroy,
    .ops = &ops,
};

ARQ_PLUGIN(descriptor)
