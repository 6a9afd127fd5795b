/* struct arq_host: the services plugins reach the host through. */
#include <stdlib.h>
#include <string.h>

#include "host.h"
#include "instance.h"
#include "log.h"
#include "options.h"

/* --- identity and logging ----------------------------------------------------------------- */

static const char *svc_instance_name(const arq_ctx *ctx)
{
    return ctx->name;
}

static const char *svc_node_name(const arq_ctx *ctx)
{
    return ctx->host->node;
}

static void svc_log(arq_ctx *ctx, enum arq_log_level level, const char *msg, ...)
{
    va_list ap;
    va_start(ap, msg);
    log_writev(level, ctx->name, msg, ap);
    va_end(ap);
}

static int svc_log_enabled(const arq_ctx *ctx, enum arq_log_level level)
{
    (void)ctx;
    return log_enabled(level);
}

/* --- loop, timers, post ------------------------------------------------------------------- */

struct arq_timer {
    uv_timer_t handle;
    struct arq_ctx *ctx;
    arq_timer_cb cb;
    void *arg;
    struct arq_timer *prev, *next; /* the instance's timers */
};

static void *svc_uv_loop(arq_ctx *ctx)
{
    return ctx->host->loop;
}

static void timer_closed(uv_handle_t *handle)
{
    free(handle->data);
}

static void timer_fire(uv_timer_t *handle)
{
    struct arq_timer *t = handle->data;
    t->cb(t->arg);
}

static arq_timer *svc_timer_start(arq_ctx *ctx, uint64_t first_ms, uint64_t repeat_ms,
                                  arq_timer_cb cb, void *arg)
{
    struct arq_timer *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    if (uv_timer_init(ctx->host->loop, &t->handle) != 0) {
        free(t);
        return NULL;
    }
    t->handle.data = t;
    t->ctx = ctx;
    t->cb = cb;
    t->arg = arg;
    t->next = ctx->timers;
    if (ctx->timers)
        ctx->timers->prev = t;
    ctx->timers = t;
    uv_timer_start(&t->handle, timer_fire, first_ms, repeat_ms);
    return t;
}

static void svc_timer_stop(arq_timer *t)
{
    if (!t)
        return;
    struct arq_ctx *ctx = t->ctx;
    if (t->prev)
        t->prev->next = t->next;
    else
        ctx->timers = t->next;
    if (t->next)
        t->next->prev = t->prev;
    uv_timer_stop(&t->handle);
    uv_close((uv_handle_t *)&t->handle, timer_closed);
}

void instance_stop_timers(struct arq_ctx *ctx)
{
    while (ctx->timers)
        svc_timer_stop(ctx->timers);
}

struct post_item {
    struct arq_ctx *ctx;
    arq_post_cb cb;
    void *arg;
    struct post_item *next;
};

static int svc_post(arq_ctx *ctx, arq_post_cb cb, void *arg)
{
    struct host *h = ctx->host;
    struct post_item *item = malloc(sizeof *item);
    if (!item)
        return ARQ_ENOMEM;
    item->ctx = ctx;
    item->cb = cb;
    item->arg = arg;
    item->next = NULL;
    uv_mutex_lock(&h->post_lock);
    if (h->post_closed) {
        uv_mutex_unlock(&h->post_lock);
        free(item);
        return ARQ_ECLOSED;
    }
    instance_ref(ctx);
    if (h->post_tail)
        h->post_tail->next = item;
    else
        h->post_head = item;
    h->post_tail = item;
    uv_mutex_unlock(&h->post_lock);
    uv_async_send(&h->post_async);
    return ARQ_OK;
}

void host_run_posts(struct host *h)
{
    uv_mutex_lock(&h->post_lock);
    struct post_item *item = h->post_head;
    h->post_head = h->post_tail = NULL;
    uv_mutex_unlock(&h->post_lock);
    while (item) {
        struct post_item *next = item->next;
        item->cb(item->arg, item->ctx->dead);
        instance_unref(item->ctx);
        free(item);
        item = next;
    }
}

/* --- metrics ------------------------------------------------------------------------------ */

static arq_metric *svc_metric_register(arq_ctx *ctx, enum arq_metric_type type, const char *name,
                                       const char *help, const char *const *label_names,
                                       const double *buckets, size_t nbuckets)
{
    arq_metric *m =
        metrics_register(ctx->host->metrics, type, name, help, label_names, buckets, nbuckets);
    if (!m) {
        log_write(ARQ_LOG_WARN, ctx->name, "metric refused", "metric", name, "reason",
                  "invalid name, or registered before with another type or labels",
                  (const char *)NULL);
        return NULL;
    }
    if (instance_own_metric(ctx, m) != 0) {
        metrics_release(ctx->host->metrics, m);
        return NULL;
    }
    return m;
}

static char *svc_metrics_render(arq_ctx *ctx)
{
    host_update_process_metrics(ctx->host);
    return metrics_render(ctx->host->metrics);
}

/* --- telemetry, memory -------------------------------------------------------------------- */

static void svc_emit(arq_ctx *ctx, const struct arq_event *ev)
{
    telemetry_push(ctx->host->telemetry, ev, ctx->host->node, ctx->name);
}

static void svc_free(void *p)
{
    free(p);
}

/* --- reloads ----------------------------------------------------------------------------- */

static void svc_reload_async(arq_ctx *ctx, arq_result_cb cb, void *arg)
{
    host_reload_async(ctx->host, cb, arg);
}

/* --- retiring ----------------------------------------------------------------------------- */

static void svc_retire_hold(arq_ctx *ctx)
{
    ctx->held = 1;
}

static void svc_retire_release(arq_ctx *ctx)
{
    if (!ctx->held)
        return;
    ctx->held = 0;
    host_schedule_reap(ctx->host);
}

struct arq_host host_api = {
    .struct_size = sizeof(struct arq_host),
    .abi_major = ARQ_ABI_MAJOR,
    .abi_minor = ARQ_ABI_MINOR,
    .version = ARQ_VERSION,
    .instance_name = svc_instance_name,
    .node_name = svc_node_name,
    .log = svc_log,
    .log_enabled = svc_log_enabled,
    .uv_loop = svc_uv_loop,
    .timer_start = svc_timer_start,
    .timer_stop = svc_timer_stop,
    .post = svc_post,
    .opt_int = opt_get_int,
    .opt_double = opt_get_double,
    .opt_bool = opt_get_bool,
    .opt_str = opt_get_str,
    .opt_json = opt_get_json,
    .metric_register = svc_metric_register,
    .metric_series = metrics_series,
    .metric_add = metrics_add,
    .metric_set = metrics_set,
    .metric_observe = metrics_observe,
    .metrics_render = svc_metrics_render,
    .emit = svc_emit,
    .event_json = telemetry_event_json,
    .free = svc_free,
    .retire_hold = svc_retire_hold,
    .retire_release = svc_retire_release,
    .bus_reload_async = svc_reload_async,
    .opt_fill = opt_fill,
};
