#include "host.h"

#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "generation.h"
#include "instance.h"
#include "loader.h"
#include "log.h"
#include "notify.h"
#include "walltime.h"

/* --- telemetry delivery ------------------------------------------------------------------- */

static void deliver_to_sinks(void *arg, const struct arq_event *const *events, size_t n)
{
    struct host *h = arg;
    struct generation *g = h->current;
    for (size_t i = 0; g && i < g->n; i++) {
        struct arq_ctx *ctx = g->inst[i];
        if (ctx->started && ctx->mod->desc->kind == ARQ_KIND_TELEMETRY) {
            const struct arq_telemetry_ops *ops = ctx->mod->desc->ops;
            ops->emit_batch(ctx->self, events, n);
        }
    }
}

/* Before the loop sleeps: what timers queued (a reload's events, an expiry check's) goes to
 * the sinks now, not when some later I/O wakes the loop. */
static void on_prepare(uv_prepare_t *handle)
{
    struct host *h = handle->data;
    if (telemetry_queued(h->telemetry))
        telemetry_drain(h->telemetry);
}

static void on_check(uv_check_t *handle)
{
    struct host *h = handle->data;
    if (telemetry_queued(h->telemetry))
        telemetry_drain(h->telemetry);
    uint64_t dropped = telemetry_dropped(h->telemetry);
    if (dropped != h->tel_dropped_reported) {
        metrics_add(h->m_tel_dropped, (double)(dropped - h->tel_dropped_reported));
        h->tel_dropped_reported = dropped;
    }
}

static void host_event(struct host *h, const char *type, json_t *data_take)
{
    struct arq_event ev = {.struct_size = sizeof ev, .event_type = type, .data = data_take};
    telemetry_push(h->telemetry, &ev, h->node, "host");
    json_decref(data_take);
}

/* --- signals and posts -------------------------------------------------------------------- */

static void on_drain_delay(uv_timer_t *handle)
{
    struct host *h = handle->data;
    LOG_INFO("stopping", "after", "drain_delay");
    host_stop(h);
}

static void on_signal(uv_signal_t *handle, int signum)
{
    struct host *h = handle->data;
    switch (signum) {
    case SIGHUP:
        host_request_reload(h);
        break;
    case SIGUSR1:
        if (log_reopen() != 0)
            LOG_ERROR("cannot reopen the log file");
        else
            LOG_INFO("log file reopened");
        break;
    default:
        if (h->drain_delay_ms && !h->draining) {
            /* Not ready any more, but still serving: load balancers move clients away. A
             * second signal stops at once. */
            char ms[24];
            snprintf(ms, sizeof ms, "%llu", (unsigned long long)h->drain_delay_ms);
            LOG_INFO("draining", "signal", signum == SIGTERM ? "SIGTERM" : "SIGINT",
                     "drain_delay_ms", ms);
            h->draining = 1;
            notify_stopping();
            uv_timer_start(&h->reload_timer, on_drain_delay, h->drain_delay_ms, 0);
            break;
        }
        LOG_INFO("stopping", "signal", signum == SIGTERM ? "SIGTERM" : "SIGINT");
        host_stop(h);
        break;
    }
}

static void on_post(uv_async_t *handle)
{
    host_run_posts(handle->data);
}

static void on_reap(uv_timer_t *handle)
{
    struct host *h = handle->data;
    struct arq_ctx *ctx = h->retiring;
    while (ctx) {
        struct arq_ctx *next = ctx->retiring_next;
        if (!ctx->held)
            instance_destroy(ctx); /* unlinks it */
        ctx = next;
    }
}

void host_schedule_reap(struct host *h)
{
    if (!h->stopping)
        uv_timer_start(&h->reap_timer, on_reap, 0, 0);
}

static void on_reload_timer(uv_timer_t *handle)
{
    struct host *h = handle->data;
    h->reload_pending = 0;
    if (!h->stopping)
        host_reload(h);
}

void host_request_reload(struct host *h)
{
    /* Reloads are coalesced: signals that arrive before the pending one runs join it. */
    if (h->reload_pending || h->stopping || h->draining)
        return;
    h->reload_pending = 1;
    uv_timer_start(&h->reload_timer, on_reload_timer, 0, 0);
}

void host_reload_async(struct host *h, arq_result_cb cb, void *arg)
{
    struct host_reload_waiter *w = h->stopping ? NULL : malloc(sizeof *w);
    if (!w) {
        cb(arg, ARQ_ERR_EXECUTION, h->stopping ? "The server is stopping" : "Out of memory", NULL);
        return;
    }
    *w = (struct host_reload_waiter){cb, arg, NULL};
    struct host_reload_waiter **tail = &h->reload_waiters;
    while (*tail)
        tail = &(*tail)->next;
    *tail = w;
    host_request_reload(h);
}

/* Tell every waiter the outcome of the reload that just ended (or of none: stopping). */
static void host__reload_done(struct host *h, int ok, const char *error)
{
    json_t *data =
        ok ? json_pack("{s:I}", "generation", (json_int_t)(h->current ? h->current->id : 0)) : NULL;
    while (h->reload_waiters) {
        struct host_reload_waiter *w = h->reload_waiters;
        h->reload_waiters = w->next;
        if (ok)
            w->cb(w->arg, NULL, NULL, data);
        else
            w->cb(w->arg, ARQ_ERR_EXECUTION, error ? error : "Reload failed", NULL);
        free(w);
    }
    json_decref(data);
}

/* --- set-up ------------------------------------------------------------------------------- */

/* "<host name>-<pid>": unique per process, so that two nodes on one machine differ. */
static void set_default_node(struct host *h)
{
    char name[200] = "";

    if (gethostname(name, sizeof name - 1) != 0 || !name[0])
        snprintf(name, sizeof name, "arqonbus");
    snprintf(h->node, sizeof h->node, "%s-%ld", name, (long)getpid());
}

arq_series *host_series(struct host *h, enum arq_metric_type type, const char *name,
                        const char *help, const char *label, const char *value)
{
    const char *names[] = {label, NULL};
    const char *values[] = {value, NULL};
    arq_metric *m =
        host_api.metric_register(h->self_ctx, type, name, help, label ? names : NULL, NULL, 0);
    return m ? metrics_series(m, label ? values : NULL) : NULL;
}

int host_init(struct host *h, uv_loop_t *loop, const char *conf_dir)
{
    memset(h, 0, sizeof *h);
    uv_mutex_init(&h->post_lock);
    h->log_level_override = -1;
    h->drain_timeout_ms = 10000;
    h->loop = loop;
    h->started_us = walltime_now_us();
    h->next_generation = 1;
    h->reloads.last_ok = 1;
    set_default_node(h);

    /* Handles first: from here on host_stop() and host_finish_loop() are always valid. */
    uv_signal_t *sigs[] = {&h->sig_hup, &h->sig_term, &h->sig_int, &h->sig_usr1};
    int signums[] = {SIGHUP, SIGTERM, SIGINT, SIGUSR1};
    for (size_t i = 0; i < 4; i++) {
        uv_signal_init(loop, sigs[i]);
        sigs[i]->data = h;
        uv_signal_start(sigs[i], on_signal, signums[i]);
    }
    /* A dead peer must never kill the process; sockets report EPIPE instead. */
    signal(SIGPIPE, SIG_IGN);
    uv_timer_init(loop, &h->reload_timer);
    h->reload_timer.data = h;
    uv_timer_init(loop, &h->drain_timer);
    uv_timer_init(loop, &h->reap_timer);
    h->reap_timer.data = h;
    uv_check_init(loop, &h->telemetry_check);
    h->telemetry_check.data = h;
    uv_check_start(&h->telemetry_check, on_check);
    uv_prepare_init(loop, &h->telemetry_prepare);
    h->telemetry_prepare.data = h;
    uv_prepare_start(&h->telemetry_prepare, on_prepare);
    uv_async_init(loop, &h->post_async, on_post);
    h->post_async.data = h;
    h->handles_open = 1;

    if (!(h->conf_dir = strdup(conf_dir)) || !(h->metrics = metrics_new()) ||
        !(h->telemetry = telemetry_new(8192, 256, deliver_to_sinks, h)) ||
        !(h->self_ctx = instance_new(h, "host", "host", NULL, NULL, NULL))) {
        LOG_ERROR("out of memory while starting");
        return -1;
    }
    h->m_reload_ok = host_series(h, ARQ_METRIC_COUNTER, "arqonbus_reloads_total",
                                 "Configuration reloads by result.", "result", "success");
    h->m_reload_failed = host_series(h, ARQ_METRIC_COUNTER, "arqonbus_reloads_total",
                                     "Configuration reloads by result.", "result", "failure");
    h->m_generation = host_series(h, ARQ_METRIC_GAUGE, "arqonbus_config_generation",
                                  "Number of the configuration generation in force.", NULL, NULL);
    h->m_instances = host_series(h, ARQ_METRIC_GAUGE, "arqonbus_plugin_instances",
                                 "Plugin instances running.", NULL, NULL);
    h->m_tel_dropped =
        host_series(h, ARQ_METRIC_COUNTER, "arqonbus_telemetry_dropped_total",
                    "Telemetry events dropped because the queue was full.", NULL, NULL);
    h->m_uptime = host_series(h, ARQ_METRIC_GAUGE, "arqonbus_uptime_seconds",
                              "Seconds since the process started.", NULL, NULL);
    h->m_rss = host_series(h, ARQ_METRIC_GAUGE, "arqonbus_resident_memory_bytes",
                           "Resident memory of the process.", NULL, NULL);
    h->m_fds = host_series(h, ARQ_METRIC_GAUGE, "arqonbus_open_fds",
                           "Open file descriptors of the process.", NULL, NULL);
    if (!h->m_reload_ok || !h->m_reload_failed || !h->m_generation || !h->m_instances ||
        !h->m_tel_dropped || !h->m_uptime || !h->m_rss || !h->m_fds) {
        LOG_ERROR("cannot register the host's metrics");
        return -1;
    }
    return 0;
}

void host_set_hooks(struct host *h, const struct host_hooks *hooks)
{
    h->hooks = *hooks;
    if (h->self_ctx)
        h->self_ctx->app = hooks->arg;
}

/* The hooks' section, for config_load. */
static const struct config_section *host__section(const struct host *h)
{
    return h->hooks.section.name ? &h->hooks.section : NULL;
}

static void host__generation_changed(struct host *h)
{
    if (h->hooks.generation_changed)
        h->hooks.generation_changed(h->hooks.arg);
}

struct arq_ctx *host_instance(const struct host *h, enum arq_kind kind, size_t i)
{
    /* Start order is by kind, then declaration order: within a kind, declaration order. */
    const struct generation *g = h->current;
    for (size_t k = 0; g && k < g->n; k++)
        if (g->inst[k]->mod->desc->kind == kind && i-- == 0)
            return g->inst[k];
    return NULL;
}

int host_accepting(const struct host *h)
{
    return h->current && !h->stopping && !h->draining;
}

json_t *host_status(const struct host *h)
{
    json_t *plugins = json_array();
    for (size_t i = 0; plugins && h->current && i < h->current->n; i++) {
        const struct arq_ctx *ctx = h->current->inst[i];
        const char *detail;
        const char *health = instance_health(ctx, &detail);
        json_array_append_new(
            plugins, json_pack("{s:s, s:s, s:s, s:s, s:s, s:s?}", "name", ctx->name, "module",
                               ctx->mod->desc->name, "kind", loader_kind_name(ctx->mod->desc->kind),
                               "version", ctx->mod->desc->version ? ctx->mod->desc->version : "",
                               "health", health, "detail", detail));
    }
    return json_pack(
        "{s:I, s:s, s:s, s:I, s:o, s:{s:I, s:I, s:b, s:s?}}", "uptime_seconds",
        (json_int_t)((walltime_now_us() - h->started_us) / 1000000), "version", ARQ_VERSION, "node",
        h->node, "generation", (json_int_t)(h->current ? h->current->id : 0), "plugins", plugins,
        "reloads", "succeeded", (json_int_t)h->reloads.ok, "failed", (json_int_t)h->reloads.failed,
        "last_ok", h->reloads.last_ok, "last_error", h->reloads.last_error);
}

void host_update_process_metrics(struct host *h)
{
    metrics_set(h->m_uptime, (double)(walltime_now_us() - h->started_us) / 1e6);
    long pages = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        long size;
        if (fscanf(f, "%ld %ld", &size, &pages) != 2)
            pages = 0;
        fclose(f);
    }
    metrics_set(h->m_rss, (double)pages * (double)sysconf(_SC_PAGESIZE));
    size_t fds = 0;
    DIR *d = opendir("/proc/self/fd");
    if (d) {
        struct dirent *de;
        while ((de = readdir(d)))
            fds += de->d_name[0] != '.';
        closedir(d);
        fds--; /* the directory stream itself */
    }
    metrics_set(h->m_fds, (double)fds);
}

/* --- generations -------------------------------------------------------------------------- */

static void apply_host_settings(struct host *h, const struct host_settings *s)
{
    log_configure(h->log_level_override >= 0 ? (enum arq_log_level)h->log_level_override
                                             : s->log_level,
                  s->log_format);
    if (s->log_file) {
        int rc = log_open_file(s->log_file);
        if (rc != 0)
            LOG_ERROR("cannot open the log file; logging to stderr", "path", s->log_file, "error",
                      strerror(-rc));
    } else {
        log_open_file(NULL);
    }
    /* `node: ""` is what `${ARQONBUS_NODE_ID:-}` gives when the variable is unset. */
    if (s->node && s->node[0])
        snprintf(h->node, sizeof h->node, "%s", s->node);
    else
        set_default_node(h);
    telemetry_set_limits(h->telemetry, s->telemetry_queue_size, s->telemetry_batch_size);
    h->drain_timeout_ms = s->drain_timeout_ms;
    h->drain_delay_ms = s->drain_delay_ms;
}

/* Settings of a configuration: the host's, then those of the hooks' section. */
static void apply_settings(struct host *h, const struct config *conf)
{
    apply_host_settings(h, &conf->host);
    if (h->hooks.configure && conf->section_values)
        h->hooks.configure(h->hooks.arg, json_incref(conf->section_values));
}

static void log_diags(const struct diag_list *dl)
{
    for (size_t i = 0; i < dl->n; i++)
        LOG_ERROR("configuration error", "error", dl->items[i]);
}

/* Build and commit the next generation from conf_dir. */
static int swap_generation(struct host *h, struct diag_list *diags, struct plan *plan)
{
    struct config *conf =
        config_load(h->conf_dir, h->getenv_fn, h->getenv_arg, host__section(h), diags);
    if (!conf)
        return -1;
    for (size_t i = 0; i < conf->warnings.n; i++)
        LOG_WARN("configuration warning", "warning", conf->warnings.items[i]);
    if (h->current && config_check_emptied(conf, h->current->conf, diags) != 0) {
        config_free(conf);
        return -1;
    }
    /* Host settings first, so that what the new instances log goes where it should; a
     * failed reload puts the running generation's settings back. */
    apply_settings(h, conf);
    if (generation_prepare(h, conf, h->current, plan, diags) != 0 ||
        generation_commit(plan, &h->current, diags) != 0) {
        if (h->current)
            apply_settings(h, h->current->conf);
        return -1;
    }
    h->next_generation++;
    host__generation_changed(h);
    return 0;
}

static void record_reload(struct host *h, int ok, const struct diag_list *diags)
{
    h->reloads.last_us = walltime_now_us();
    h->reloads.last_ok = ok;
    free(h->reloads.last_error);
    h->reloads.last_error = NULL;
    if (ok) {
        h->reloads.ok++;
        metrics_add(h->m_reload_ok, 1);
    } else {
        h->reloads.failed++;
        metrics_add(h->m_reload_failed, 1);
        if (diags->n)
            h->reloads.last_error = strdup(diags->items[0]);
    }
    metrics_set(h->m_generation, h->current ? h->current->id : 0);
    metrics_set(h->m_instances, h->current ? (double)h->current->n : 0);
}

int host_start(struct host *h)
{
    struct diag_list diags = {0};
    struct plan plan;
    if (swap_generation(h, &diags, &plan) != 0) {
        char n[24];
        snprintf(n, sizeof n, "%zu", diags.n);
        log_diags(&diags);
        LOG_ERROR("cannot start: the configuration has errors", "config", h->conf_dir, "errors", n);
        diag_clear(&diags);
        return -1;
    }
    metrics_set(h->m_generation, h->current->id);
    metrics_set(h->m_instances, (double)h->current->n);
    char gen[16], n[16];
    snprintf(gen, sizeof gen, "%u", h->current->id);
    snprintf(n, sizeof n, "%zu", h->current->n);
    LOG_INFO("started", "version", ARQ_VERSION, "node", h->node, "config", h->conf_dir,
             "generation", gen, "instances", n);
    notify_ready(h->current->id);
    host_event(
        h, "system_started",
        json_pack("{s:s, s:I}", "version", ARQ_VERSION, "generation", (json_int_t)h->current->id));
    return 0;
}

int host_reload(struct host *h)
{
    struct diag_list diags = {0};
    struct plan plan;
    unsigned running = h->current ? h->current->id : 0;
    uint64_t t0 = uv_hrtime();
    LOG_INFO("reloading", "config", h->conf_dir);
    notify_reloading();
    if (swap_generation(h, &diags, &plan) != 0) {
        char gen[16], n[24];
        snprintf(gen, sizeof gen, "%u", running);
        snprintf(n, sizeof n, "%zu", diags.n);
        log_diags(&diags);
        LOG_ERROR("reload failed; the running configuration stays in force", "generation", gen,
                  "errors", n);
        record_reload(h, 0, &diags);
        json_t *errors = json_array();
        for (size_t i = 0; errors && i < diags.n; i++)
            json_array_append_new(errors, json_string(diags.items[i]));
        host_event(h, "reload_failed",
                   json_pack("{s:I, s:o*}", "generation", (json_int_t)running, "errors", errors));
        notify_reloaded(0, running, diags.n ? diags.items[0] : NULL);
        host__reload_done(h, 0, diags.n ? diags.items[0] : NULL);
        diag_clear(&diags);
        return -1;
    }
    record_reload(h, 1, &diags);
    char f[6][24];
    snprintf(f[0], sizeof f[0], "%u", h->current->id);
    for (int a = 0; a < 4; a++)
        snprintf(f[1 + a], sizeof f[1 + a], "%zu", plan.counts[a]);
    snprintf(f[5], sizeof f[5], "%zu", plan.nremoved);
    char ms[24];
    snprintf(ms, sizeof ms, "%.3f", (double)(uv_hrtime() - t0) / 1e6);
    LOG_INFO("reload ok", "generation", f[0], "carried", f[1], "reconfigured", f[2], "replaced",
             f[3], "added", f[4], "removed", f[5], "duration_ms", ms);
    host_event(h, "reload_ok",
               json_pack("{s:I, s:I, s:I, s:I, s:I, s:I}", "generation", (json_int_t)h->current->id,
                         "carried", (json_int_t)plan.counts[0], "reconfigured",
                         (json_int_t)plan.counts[1], "replaced", (json_int_t)plan.counts[2],
                         "added", (json_int_t)plan.counts[3], "removed",
                         (json_int_t)plan.nremoved));
    notify_reloaded(1, h->current->id, NULL);
    host__reload_done(h, 1, NULL);
    return 0;
}

int host_check_config(struct host *h, struct diag_list *diags, struct diag_list *warnings)
{
    struct config *conf =
        config_load(h->conf_dir, h->getenv_fn, h->getenv_arg, host__section(h), diags);
    if (!conf)
        return -1;
    diag_move(warnings, &conf->warnings);
    struct plan plan;
    if (generation_prepare(h, conf, NULL, &plan, diags) != 0)
        return -1;
    generation_abort(&plan);
    return 0;
}

void host_close_stray(uv_handle_t *handle, void *arg)
{
    int *count = arg;
    if (uv_is_closing(handle))
        return;
    if (count)
        (*count)++;
    if (uv_has_ref(handle))
        LOG_WARN("closing a handle left open at shutdown", "type",
                 uv_handle_type_name(uv_handle_get_type(handle)));
    uv_close(handle, NULL);
}

static void on_drain_timeout(uv_timer_t *timer)
{
    LOG_WARN("work still pending when drain_timeout expired; closing it");
    uv_walk(timer->loop, host_close_stray, NULL);
}

static void close_handle(uv_handle_t *handle)
{
    if (!uv_is_closing(handle))
        uv_close(handle, NULL);
}

void host_stop(struct host *h)
{
    if (h->stopping)
        return;
    h->stopping = 1;
    if (!h->draining)
        notify_stopping();
    host_event(h, "system_stopping", NULL);
    if (h->hooks.stopping)
        h->hooks.stopping(h->hooks.arg);
    host__reload_done(h, 0, "Server shutting down");
    /* Let the sinks see everything up to now while they still run. */
    telemetry_drain(h->telemetry);
    generation_retire_all(h->current);
    h->current = NULL;
    while (h->retiring)
        instance_destroy(h->retiring); /* held ones go too: the process is stopping */
    host__generation_changed(h);
    telemetry_drain(h->telemetry);

    uv_mutex_lock(&h->post_lock);
    h->post_closed = 1;
    uv_mutex_unlock(&h->post_lock);
    host_run_posts(h); /* every instance is gone: these run cancelled */

    if (h->handles_open) {
        h->handles_open = 0;
        uv_signal_stop(&h->sig_hup);
        close_handle((uv_handle_t *)&h->sig_hup);
        close_handle((uv_handle_t *)&h->sig_term);
        close_handle((uv_handle_t *)&h->sig_int);
        close_handle((uv_handle_t *)&h->sig_usr1);
        close_handle((uv_handle_t *)&h->reload_timer);
        close_handle((uv_handle_t *)&h->reap_timer);
        close_handle((uv_handle_t *)&h->telemetry_check);
        close_handle((uv_handle_t *)&h->telemetry_prepare);
        close_handle((uv_handle_t *)&h->post_async);
        /* Plugins close their own handles; if one does not within drain_timeout, the
         * deadline closes it, so that a forgotten handle cannot keep the process alive. It
         * holds no reference itself: a clean stop does not wait for it. */
        uv_timer_start(&h->drain_timer, on_drain_timeout, h->drain_timeout_ms, 0);
        uv_unref((uv_handle_t *)&h->drain_timer);
    }
}

int host_finish_loop(struct host *h)
{
    int stray = 0;
    uv_run(h->loop, UV_RUN_DEFAULT);
    if (!uv_is_closing((uv_handle_t *)&h->drain_timer))
        uv_close((uv_handle_t *)&h->drain_timer, NULL);
    uv_run(h->loop, UV_RUN_DEFAULT);
    if (uv_loop_close(h->loop) == UV_EBUSY) {
        uv_walk(h->loop, host_close_stray, &stray);
        uv_run(h->loop, UV_RUN_DEFAULT);
        uv_loop_close(h->loop);
    }
    return stray;
}

void host_cleanup(struct host *h)
{
    generation_retire_all(h->current);
    h->current = NULL;
    host__reload_done(h, 0, "Server shutting down");
    if (h->self_ctx)
        instance_destroy(h->self_ctx);
    h->self_ctx = NULL;
    telemetry_free(h->telemetry);
    metrics_free(h->metrics);
    loader_free(&h->loader);
    uv_mutex_destroy(&h->post_lock);
    free(h->reloads.last_error);
    free(h->conf_dir);
    log_close();
    memset(h, 0, sizeof *h);
}
