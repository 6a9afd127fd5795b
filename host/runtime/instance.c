#include "instance.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "host.h"
#include "log.h"

struct arq_ctx *instance_new(struct host *h, const char *name, const char *module,
                             struct module *mod, json_t *cfg, const char *where)
{
    struct arq_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx)
        return NULL;
    ctx->host = h;
    ctx->app = h ? h->hooks.arg : NULL;
    ctx->mod = mod;
    ctx->name = strdup(name);
    ctx->where = strdup(where ? where : "");
    size_t len = strlen(name) + strlen(module) + 32;
    ctx->who = malloc(len);
    if (!ctx->name || !ctx->where || !ctx->who) {
        free(ctx->name);
        free(ctx->where);
        free(ctx->who);
        free(ctx);
        return NULL;
    }
    snprintf(ctx->who, len, "plugin \"%s\" (module %s)", name, module);
    ctx->cfg = cfg;
    atomic_init(&ctx->refs, 1);
    return ctx;
}

void instance_ref(struct arq_ctx *ctx)
{
    atomic_fetch_add_explicit(&ctx->refs, 1, memory_order_relaxed);
}

void instance_unref(struct arq_ctx *ctx)
{
    if (atomic_fetch_sub_explicit(&ctx->refs, 1, memory_order_acq_rel) != 1)
        return;
    json_decref(ctx->cfg);
    free(ctx->metrics);
    free(ctx->name);
    free(ctx->where);
    free(ctx->who);
    free(ctx);
}

int instance_create(struct arq_ctx *ctx, struct arq_error *err)
{
    const struct arq_plugin *d = ctx->mod->desc;
    err->text[0] = '\0';
    int rc = d->create(&host_api, ctx, ctx->cfg, &ctx->self, err);
    if (rc != 0) {
        if (!err->text[0])
            arq_error_set(err, rc, "create failed with code %d and no message", rc);
        /* Whatever the failed create registered goes with it. */
        instance_stop_timers(ctx);
        for (size_t i = 0; i < ctx->nmetrics; i++)
            metrics_release(ctx->host->metrics, ctx->metrics[i]);
        ctx->nmetrics = 0;
        return rc;
    }
    ctx->created = 1;
    return 0;
}

int instance_start(struct arq_ctx *ctx, struct arq_ctx *predecessor, struct arq_error *err)
{
    const struct arq_plugin *d = ctx->mod->desc;
    err->text[0] = '\0';
    if (d->start) {
        int rc = d->start(ctx->self, predecessor ? predecessor->self : NULL, err);
        if (rc != 0) {
            if (!err->text[0])
                arq_error_set(err, rc, "start failed with code %d and no message", rc);
            return rc;
        }
    }
    ctx->started = 1;
    log_write(ARQ_LOG_INFO, "host", "instance started", "instance", ctx->name, "module", d->name,
              "kind", instance_kind(ctx), (const char *)NULL);
    return 0;
}

int instance_reconfigure(struct arq_ctx *ctx, json_t *cfg, struct arq_error *err)
{
    err->text[0] = '\0';
    int rc = ctx->mod->desc->reconfigure(ctx->self, cfg, err);
    if (rc != 0) {
        if (!err->text[0])
            arq_error_set(err, rc, "reconfigure failed with code %d and no message", rc);
        return rc;
    }
    json_decref(ctx->cfg);
    ctx->cfg = json_incref(cfg);
    return 0;
}

void instance_stop(struct arq_ctx *ctx)
{
    if (!ctx->started)
        return;
    if (ctx->mod->desc->stop)
        ctx->mod->desc->stop(ctx->self);
    ctx->started = 0;
    log_write(ARQ_LOG_INFO, "host", "instance stopped", "instance", ctx->name, "module",
              ctx->mod->desc->name, (const char *)NULL);
}

void instance_retire(struct arq_ctx *ctx)
{
    struct host *h = ctx->host;
    if (!ctx->held) {
        instance_destroy(ctx);
        return;
    }
    log_write(ARQ_LOG_INFO, "host", "instance retiring", "instance", ctx->name, "module",
              instance_module(ctx), (const char *)NULL);
    ctx->retiring_next = h->retiring;
    h->retiring = ctx;
}

void instance_destroy(struct arq_ctx *ctx)
{
    struct host *h = ctx->host;
    for (struct arq_ctx **link = &h->retiring; *link; link = &(*link)->retiring_next) {
        if (*link == ctx) {
            *link = ctx->retiring_next;
            log_write(ARQ_LOG_INFO, "host", "instance retired", "instance", ctx->name, "module",
                      instance_module(ctx), (const char *)NULL);
            break;
        }
    }
    ctx->held = 0;
    instance_stop(ctx);
    if (ctx->created)
        ctx->mod->desc->destroy(ctx->self);
    if (ctx->created && ctx->host->hooks.instance_destroyed)
        ctx->host->hooks.instance_destroyed(ctx->host->hooks.arg, ctx);
    ctx->created = 0;
    ctx->self = NULL;
    ctx->dead = 1;
    instance_stop_timers(ctx);
    for (size_t i = 0; i < ctx->nmetrics; i++)
        metrics_release(ctx->host->metrics, ctx->metrics[i]);
    ctx->nmetrics = 0;
    instance_unref(ctx);
}

int instance_start_rank(const struct arq_ctx *ctx)
{
    switch (ctx->mod->desc->kind) {
    case ARQ_KIND_TELEMETRY:
        return 0;
    case ARQ_KIND_STORAGE:
        return 1;
    case ARQ_KIND_BROKER:
        return 2;
    case ARQ_KIND_AUTH:
        return 3;
    case ARQ_KIND_COMMANDS:
        return 4;
    case ARQ_KIND_TRANSPORT:
        return 5;
    }
    return 6;
}

const char *instance_kind(const struct arq_ctx *ctx)
{
    return ctx->mod ? loader_kind_name(ctx->mod->desc->kind) : "host";
}

const char *instance_module(const struct arq_ctx *ctx)
{
    return ctx->mod ? ctx->mod->desc->name : "host";
}

int instance_own_metric(struct arq_ctx *ctx, arq_metric *m)
{
    if (ctx->nmetrics == ctx->metrics_cap) {
        size_t cap = ctx->metrics_cap ? ctx->metrics_cap * 2 : 8;
        arq_metric **grown = realloc(ctx->metrics, cap * sizeof *grown);
        if (!grown)
            return -1;
        ctx->metrics = grown;
        ctx->metrics_cap = cap;
    }
    ctx->metrics[ctx->nmetrics++] = m;
    return 0;
}

const char *instance_health(const struct arq_ctx *ctx, const char **detail)
{
    static const char *const names[] = {"healthy", "degraded", "down"};
    *detail = NULL;
    if (!ctx->started)
        return "stopped";
    int health = 0; /* only storage and broker tables report their health */
    if (ctx->mod->desc->kind == ARQ_KIND_STORAGE) {
        const struct arq_storage_ops *ops = ctx->mod->desc->ops;
        health = ops->health ? ops->health(ctx->self, detail) : 0;
    } else if (ctx->mod->desc->kind == ARQ_KIND_BROKER) {
        const struct arq_broker_ops *ops = ctx->mod->desc->ops;
        health = ops->health ? ops->health(ctx->self, detail) : 0;
    }
    return names[health >= 0 && health <= 2 ? health : 2];
}
