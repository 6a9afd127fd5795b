/* sdk10: a plugin built against the frozen ABI 1.0 header (tests/plugins/sdk-1.0), as a plugin
 * built before SDK 1.1 is. Its option spec and command params have the 1.0 stride (struct
 * arq_option without `field`): the host must read them so, and load, validate, create and
 * start it as any other. A command set, so that both kinds of spec are there. */
#include <arqonbus/plugin.h>
#include <stdio.h>
#include <stdlib.h>

#if ARQ_ABI_MAJOR != 1 || ARQ_ABI_MINOR != 0
#error "sdk10 must be built against the frozen 1.0 header (tests/plugins/sdk-1.0)"
#endif

static const char *const modes[] = {"quiet", "loud", NULL};

static const struct arq_option options[] = {
    ARQ_OPT("label", ARQ_OPT_STRING, "old", 0, "a string"),
    ARQ_OPT_RANGE("port", ARQ_OPT_INT, "9100", 0, 65535, 0, "an integer"),
    ARQ_OPT_CHOICE("mode", modes, "quiet", ARQ_OPT_RELOADABLE, "an enum"),
    ARQ_OPT_RANGE("interval", ARQ_OPT_DURATION, "2s", 1, 60000, 0, "a duration"), ARQ_OPT_END};

struct sdk10 {
    const struct arq_host *host;
    arq_ctx *ctx;
    char summary[160];
};

static int sdk10_create(const struct arq_host *host, arq_ctx *ctx, const json_t *cfg, void **self,
                        struct arq_error *err)
{
    struct sdk10 *s = calloc(1, sizeof *s);
    if (!s)
        return arq_error_set(err, ARQ_ENOMEM, "out of memory");
    s->host = host;
    s->ctx = ctx;
    snprintf(s->summary, sizeof s->summary, "label=%s port=%lld mode=%s interval=%lld",
             host->opt_str(cfg, "label", "?"), (long long)host->opt_int(cfg, "port", -1),
             host->opt_str(cfg, "mode", "?"), (long long)host->opt_int(cfg, "interval", -1));
    *self = s;
    return ARQ_OK;
}

static int sdk10_start(void *self, void *predecessor, struct arq_error *err)
{
    struct sdk10 *s = self;
    (void)predecessor, (void)err;
    ARQ_LOG(s->host, s->ctx, ARQ_LOG_INFO, "sdk10 started", "config", s->summary);
    return ARQ_OK;
}

static void sdk10_destroy(void *self)
{
    free(self);
}

static void cmd_say(void *self, arq_request *req, arq_conn *conn, const json_t *args)
{
    struct sdk10 *s = self;
    (void)conn, (void)args;
    s->host->reply_ok(req, "said", NULL);
}

static const struct arq_option say_params[] = {
    ARQ_OPT("text", ARQ_OPT_STRING, NULL, ARQ_OPT_REQUIRED, "what to say"),
    ARQ_OPT_RANGE("times", ARQ_OPT_INT, "1", 1, 10, 0, "how often"),
    ARQ_OPT("loud", ARQ_OPT_BOOL, "false", 0, "shout"), ARQ_OPT_END};

static const struct arq_command commands[] = {{"say", "say `text`", say_params, "guest", cmd_say},
                                              {NULL, NULL, NULL, NULL, NULL}};

static const struct arq_commands_ops ops = {
    .struct_size = sizeof ops,
    .commands = commands,
};

static const struct arq_plugin descriptor = {
    ARQ_PLUGIN_HEAD,           .name = "sdk10",
    .version = "1.0.0",        .summary = "a plugin built against SDK 1.0",
    .kind = ARQ_KIND_COMMANDS, .options = options,
    .create = sdk10_create,    .start = sdk10_start,
    .destroy = sdk10_destroy,  .ops = &ops,
};

ARQ_PLUGIN(descriptor)
