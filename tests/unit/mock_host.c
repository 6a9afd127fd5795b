/* The mock host (see mock_host.h). Allocation failures inside the mock abort the test run:
 * a mock that silently loses a record would make tests lie. */
#define _XOPEN_SOURCE 700 /* nftw */

#include "mock_host.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dlfcn.h>
#include <ftw.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cfg.h"
#include "diag.h"
#include "options.h"
#include "telemetry.h"
#include "walltime.h"

#define MOCK_NODE "test-node"

struct arq_ctx {
    struct mock_host *mh;
};

struct arq_timer {
    struct mock_host *mh;
    uint64_t first_ms, repeat_ms;
    arq_timer_cb cb;
    void *arg;
    uint64_t seq; /* start order; fire rounds skip timers started during the round  */
    int armed;    /* a one-shot timer is disarmed once it fired                       */
    int stopped;  /* stopped while a round runs: freed when the round ends            */
    struct arq_timer *next;
};

struct post {
    arq_post_cb cb;
    void *arg;
    struct post *next;
};

struct arq_series {
    struct arq_metric *family;
    char *labels; /* k="v",k2="v2" */
    double value; /* counter, gauge; histogram: count */
    double sum;   /* histogram */
    struct arq_series *next;
};

struct arq_metric {
    struct mock_host *mh;
    enum arq_metric_type type;
    char *name;
    char *help;
    char **label_names; /* NULL-terminated */
    size_t nlabels;
    struct arq_series *series;
    struct arq_metric *next;
};

struct strings {
    char **items;
    size_t n, cap;
};

struct arq_conn {
    struct mock_host *mh;
    char *client_id;
    struct arq_conn *next;
};

struct arq_request {
    struct mock_host *mh;
    size_t replies;
    struct mock_reply last; /* strings and data owned here */
    struct arq_request *next;
};

/* What one bus service (or one `what` of bus_query) returns. */
struct script {
    char *key; /* service name, or "bus_query:<what>" */
    char *code;
    char *text;
    json_t *value; /* bus_query only */
    struct script *next;
};

struct mock_host {
    struct arq_ctx ctx;
    char *name;
    enum arq_log_level log_level;
    struct strings logs;
    struct strings events;
    struct arq_timer *timers; /* start order */
    uint64_t timer_seq;
    int firing;
    struct post *posts, *posts_tail;
    struct arq_metric *metrics;
    struct arq_conn *conns;
    struct arq_request *requests;
    struct script *scripts;
    struct strings bus_calls;
    arq_request *reload_request;
    arq_request *history_request;
    json_t *cfgs; /* what mock_host_create_plugin gave: kept, as the host keeps them */
    char *node;   /* NULL: MOCK_NODE */
    struct strings delivered;
    size_t resyncs;
    void (*on_resync)(void *arg);
    void *on_resync_arg;
};

static void *must(void *p)
{
    if (!p) {
        fprintf(stderr, "mock_host: out of memory\n");
        abort();
    }
    return p;
}

static char *must_strdup(const char *s)
{
    return must(strdup(s));
}

static void strings_push_take(struct strings *s, char *text)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 16;
        s->items = must(realloc(s->items, s->cap * sizeof *s->items));
    }
    s->items[s->n++] = text;
}

static void strings_free(struct strings *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->items[i]);
    free(s->items);
    memset(s, 0, sizeof *s);
}

/* --- identity and logging ------------------------------------------------------------------ */

static const char *mock_instance_name(const arq_ctx *ctx)
{
    return ctx->mh->name;
}

static const char *mock_node_name(const arq_ctx *ctx)
{
    return ctx->mh->node ? ctx->mh->node : MOCK_NODE;
}

static const char *const level_names[] = {"debug", "info", "warn", "error"};

static void mock_log(arq_ctx *ctx, enum arq_log_level level, const char *msg, ...)
{
    struct mock_host *mh = ctx->mh;
    if (level < mh->log_level)
        return;
    char *line = NULL;
    size_t len = 0;
    FILE *out = must(open_memstream(&line, &len));
    fprintf(out, "%s %s", (unsigned)level < 4 ? level_names[level] : "?", msg ? msg : "");
    va_list ap;
    va_start(ap, msg);
    const char *key;
    while ((key = va_arg(ap, const char *))) {
        const char *value = va_arg(ap, const char *);
        fprintf(out, " %s=%s", key, value ? value : "");
    }
    va_end(ap);
    fclose(out);
    strings_push_take(&mh->logs, must(line));
}

static int mock_log_enabled(const arq_ctx *ctx, enum arq_log_level level)
{
    return level >= ctx->mh->log_level;
}

/* --- loop, timers, posts ------------------------------------------------------------------- */

static void *mock_uv_loop(arq_ctx *ctx)
{
    (void)ctx;
    return NULL; /* no loop: plugins that need one are tested against the real host */
}

static arq_timer *mock_timer_start(arq_ctx *ctx, uint64_t first_ms, uint64_t repeat_ms,
                                   arq_timer_cb cb, void *arg)
{
    struct mock_host *mh = ctx->mh;
    struct arq_timer *t = must(calloc(1, sizeof *t));
    t->mh = mh;
    t->first_ms = first_ms;
    t->repeat_ms = repeat_ms;
    t->cb = cb;
    t->arg = arg;
    t->seq = mh->timer_seq++;
    t->armed = 1;
    struct arq_timer **tail = &mh->timers;
    while (*tail)
        tail = &(*tail)->next;
    *tail = t;
    return t;
}

static void timer_unlink_free(struct mock_host *mh, struct arq_timer *t)
{
    for (struct arq_timer **p = &mh->timers; *p; p = &(*p)->next) {
        if (*p == t) {
            *p = t->next;
            break;
        }
    }
    free(t);
}

static void mock_timer_stop(arq_timer *t)
{
    if (!t)
        return;
    if (t->mh->firing) {
        t->stopped = 1;
        t->armed = 0;
        return;
    }
    timer_unlink_free(t->mh, t);
}

size_t mock_host_fire_timers(struct mock_host *mh)
{
    size_t fired = 0;
    uint64_t round_end = mh->timer_seq;
    mh->firing++;
    for (struct arq_timer *t = mh->timers; t; t = t->next) {
        if (t->seq >= round_end || !t->armed || t->stopped)
            continue;
        if (!t->repeat_ms)
            t->armed = 0;
        t->cb(t->arg);
        fired++;
    }
    mh->firing--;
    if (!mh->firing) {
        struct arq_timer **p = &mh->timers;
        while (*p) {
            struct arq_timer *t = *p;
            if (t->stopped) {
                *p = t->next;
                free(t);
            } else {
                p = &t->next;
            }
        }
    }
    return fired;
}

size_t mock_host_timers_active(const struct mock_host *mh)
{
    size_t n = 0;
    for (const struct arq_timer *t = mh->timers; t; t = t->next)
        n += !t->stopped;
    return n;
}

long long mock_host_timer_period(const struct mock_host *mh, size_t i, int repeat)
{
    for (const struct arq_timer *t = mh->timers; t; t = t->next) {
        if (t->stopped || !t->armed)
            continue;
        if (i-- == 0)
            return (long long)(repeat ? t->repeat_ms : t->first_ms);
    }
    return -1;
}

static int mock_post(arq_ctx *ctx, arq_post_cb cb, void *arg)
{
    struct mock_host *mh = ctx->mh;
    struct post *p = must(calloc(1, sizeof *p));
    p->cb = cb;
    p->arg = arg;
    if (mh->posts_tail)
        mh->posts_tail->next = p;
    else
        mh->posts = p;
    mh->posts_tail = p;
    return ARQ_OK;
}

static struct post *posts_pop(struct mock_host *mh)
{
    struct post *p = mh->posts;
    if (p) {
        mh->posts = p->next;
        if (!mh->posts)
            mh->posts_tail = NULL;
    }
    return p;
}

size_t mock_host_run_posts(struct mock_host *mh)
{
    size_t n = 0;
    struct post *p;
    while ((p = posts_pop(mh))) {
        p->cb(p->arg, 0);
        free(p);
        n++;
    }
    return n;
}

/* --- metrics ------------------------------------------------------------------------------- */

static size_t count_names(const char *const *names)
{
    size_t n = 0;
    while (names && names[n])
        n++;
    return n;
}

static int same_labels(const struct arq_metric *m, const char *const *names)
{
    if (count_names(names) != m->nlabels)
        return 0;
    for (size_t i = 0; i < m->nlabels; i++)
        if (strcmp(m->label_names[i], names[i]) != 0)
            return 0;
    return 1;
}

static arq_metric *mock_metric_register(arq_ctx *ctx, enum arq_metric_type type, const char *name,
                                        const char *help, const char *const *label_names,
                                        const double *buckets, size_t nbuckets)
{
    struct mock_host *mh = ctx->mh;
    (void)buckets, (void)nbuckets;
    if (!name || !*name || type < ARQ_METRIC_COUNTER || type > ARQ_METRIC_HISTOGRAM)
        return NULL;
    for (struct arq_metric *m = mh->metrics; m; m = m->next)
        if (!strcmp(m->name, name))
            return m->type == type && same_labels(m, label_names) ? m : NULL;
    struct arq_metric *m = must(calloc(1, sizeof *m));
    m->mh = mh;
    m->type = type;
    m->name = must_strdup(name);
    m->help = must_strdup(help ? help : "");
    m->nlabels = count_names(label_names);
    m->label_names = must(calloc(m->nlabels + 1, sizeof *m->label_names));
    for (size_t i = 0; i < m->nlabels; i++)
        m->label_names[i] = must_strdup(label_names[i]);
    m->next = mh->metrics;
    mh->metrics = m;
    return m;
}

static arq_series *mock_metric_series(arq_metric *m, const char *const *label_values)
{
    if (!m || count_names(label_values) != m->nlabels)
        return NULL;
    char *key = NULL;
    size_t len = 0;
    FILE *out = must(open_memstream(&key, &len));
    for (size_t i = 0; i < m->nlabels; i++)
        fprintf(out, "%s%s=\"%s\"", i ? "," : "", m->label_names[i], label_values[i]);
    fclose(out);
    must(key);
    struct arq_series **tail = &m->series;
    for (; *tail; tail = &(*tail)->next) {
        if (!strcmp((*tail)->labels, key)) {
            free(key);
            return *tail;
        }
    }
    struct arq_series *s = must(calloc(1, sizeof *s));
    s->family = m;
    s->labels = key;
    *tail = s;
    return s;
}

static void mock_metric_add(arq_series *s, double v)
{
    if (!s || s->family->type == ARQ_METRIC_HISTOGRAM)
        return;
    if (s->family->type == ARQ_METRIC_COUNTER && !(v >= 0))
        return; /* counters only go up */
    s->value += v;
}

static void mock_metric_set(arq_series *s, double v)
{
    if (s && s->family->type == ARQ_METRIC_GAUGE)
        s->value = v;
}

static void mock_metric_observe(arq_series *s, double v)
{
    if (s && s->family->type == ARQ_METRIC_HISTOGRAM) {
        s->value += 1;
        s->sum += v;
    }
}

static char *mock_metrics_render(arq_ctx *ctx)
{
    char *text = NULL;
    size_t len = 0;
    FILE *out = must(open_memstream(&text, &len));
    for (const struct arq_metric *m = ctx->mh->metrics; m; m = m->next)
        for (const struct arq_series *s = m->series; s; s = s->next)
            fprintf(out, "%s{%s} %.17g\n", m->name, s->labels, s->value);
    fclose(out);
    return text;
}

static const struct arq_series *find_series(const struct mock_host *mh, const char *name,
                                            const char *labels)
{
    for (const struct arq_metric *m = mh->metrics; m; m = m->next) {
        if (strcmp(m->name, name) != 0)
            continue;
        for (const struct arq_series *s = m->series; s; s = s->next)
            if (!strcmp(s->labels, labels ? labels : ""))
                return s;
    }
    return NULL;
}

double mock_host_metric(const struct mock_host *mh, const char *name, const char *labels)
{
    const struct arq_series *s = find_series(mh, name, labels);
    return s ? s->value : -1;
}

enum arq_metric_type mock_host_metric_type(const struct mock_host *mh, const char *name)
{
    for (const struct arq_metric *m = mh->metrics; m; m = m->next)
        if (!strcmp(m->name, name))
            return m->type;
    return (enum arq_metric_type)0;
}

/* --- telemetry, memory, connections -------------------------------------------------------- */

static void mock_emit(arq_ctx *ctx, const struct arq_event *ev)
{
    struct mock_host *mh = ctx->mh;
    struct arq_event copy;
    memset(&copy, 0, sizeof copy);
    /* Read no further than the caller's struct_size says it has. */
    memcpy(&copy, ev, ev->struct_size < sizeof copy ? ev->struct_size : sizeof copy);
    copy.struct_size = sizeof copy;
    if (!copy.event_type)
        return;
    if (!copy.timestamp_us)
        copy.timestamp_us = walltime_now_us();
    copy.node = MOCK_NODE;
    copy.source = mh->name;
    strings_push_take(&mh->events, must(telemetry_event_json(&copy)));
}

static void mock_free(void *p)
{
    free(p);
}

static arq_conn *mock_conn_open(arq_ctx *ctx, const struct arq_conn_info *info,
                                const struct arq_conn_ops *ops, void *tconn)
{
    (void)ctx, (void)info, (void)ops, (void)tconn;
    return NULL; /* refused, as by a host without a message router */
}

static void mock_conn_recv(arq_conn *conn, const void *data, size_t len, int binary)
{
    (void)conn, (void)data, (void)len, (void)binary;
}

static size_t mock_conn_pending(arq_conn *conn, struct arq_frame_ref *out, size_t max)
{
    (void)conn, (void)out, (void)max;
    return 0;
}

static void mock_conn_consumed(arq_conn *conn, size_t n)
{
    (void)conn, (void)n;
}

static void mock_conn_closed(arq_conn *conn, int code, const char *reason)
{
    (void)conn, (void)code, (void)reason;
}

/* --- commands and the bus ------------------------------------------------------------------ */

static char *dup_or_null(const char *s)
{
    return s ? must_strdup(s) : NULL;
}

static void reply_clear(struct mock_reply *r)
{
    free((char *)r->message);
    free((char *)r->error_code);
    free((char *)r->text);
    json_decref((json_t *)r->data);
    memset(r, 0, sizeof *r);
}

static void mock_reply_ok(arq_request *req, const char *message, const json_t *data)
{
    reply_clear(&req->last);
    req->replies++;
    req->last.ok = 1;
    req->last.message = dup_or_null(message);
    req->last.data = data ? must(json_deep_copy(data)) : NULL;
}

static void mock_reply_error(arq_request *req, const char *code, const char *text)
{
    reply_clear(&req->last);
    req->replies++;
    req->last.error_code = dup_or_null(code);
    req->last.text = dup_or_null(text);
}

static const char *mock_conn_client_id(const arq_conn *conn)
{
    return conn->client_id;
}

static void mock_conn_set_limit(arq_conn *conn, size_t max_queued_bytes)
{
    (void)conn, (void)max_queued_bytes;
}

static void bus_record(struct mock_host *mh, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void bus_record(struct mock_host *mh, const char *fmt, ...)
{
    char *line = NULL;
    size_t len = 0;
    FILE *out = must(open_memstream(&line, &len));
    va_list ap;
    va_start(ap, fmt);
    vfprintf(out, fmt, ap);
    va_end(ap);
    fclose(out);
    strings_push_take(&mh->bus_calls, must(line));
}

#define OR_DASH(s) ((s) ? (s) : "-")

static struct script *script_find(struct mock_host *mh, const char *key)
{
    for (struct script *s = mh->scripts; s; s = s->next)
        if (!strcmp(s->key, key))
            return s;
    return NULL;
}

/* The script for `key`, reset to "succeed, no value". */
static struct script *script_reset(struct mock_host *mh, const char *key)
{
    struct script *s = script_find(mh, key);
    if (!s) {
        s = must(calloc(1, sizeof *s));
        s->key = must_strdup(key);
        s->next = mh->scripts;
        mh->scripts = s;
    }
    free(s->code);
    free(s->text);
    json_decref(s->value);
    s->code = s->text = NULL;
    s->value = NULL;
    return s;
}

/* The scripted outcome of `service`: NULL (success) or its code, with err filled. */
static const char *script_outcome(struct mock_host *mh, const char *service, struct arq_error *err)
{
    const struct script *s = script_find(mh, service);
    if (!s || !s->code)
        return NULL;
    arq_error_set(err, 0, "%s", s->text ? s->text : "");
    return s->code;
}

static const char *mock_bus_join(arq_conn *conn, const char *room, const char *channel,
                                 struct arq_error *err)
{
    bus_record(conn->mh, "bus_join client=%s room=%s channel=%s", conn->client_id, OR_DASH(room),
               OR_DASH(channel));
    return script_outcome(conn->mh, "bus_join", err);
}

static const char *mock_bus_leave(arq_conn *conn, const char *room, const char *channel,
                                  struct arq_error *err)
{
    bus_record(conn->mh, "bus_leave client=%s room=%s channel=%s", conn->client_id, OR_DASH(room),
               OR_DASH(channel));
    return script_outcome(conn->mh, "bus_leave", err);
}

static const char *mock_bus_create_channel(arq_ctx *ctx, const char *room, const char *channel,
                                           const char *description, struct arq_error *err)
{
    bus_record(ctx->mh, "bus_create_channel room=%s channel=%s description=%s", OR_DASH(room),
               OR_DASH(channel), OR_DASH(description));
    return script_outcome(ctx->mh, "bus_create_channel", err);
}

static const char *mock_bus_delete_channel(arq_ctx *ctx, const char *room, const char *channel,
                                           int force, struct arq_error *err)
{
    bus_record(ctx->mh, "bus_delete_channel room=%s channel=%s force=%d", OR_DASH(room),
               OR_DASH(channel), force);
    return script_outcome(ctx->mh, "bus_delete_channel", err);
}

static const char *mock_bus_disconnect(arq_ctx *ctx, const char *client_id, const char *reason,
                                       struct arq_error *err)
{
    bus_record(ctx->mh, "bus_disconnect client_id=%s reason=%s", OR_DASH(client_id),
               OR_DASH(reason));
    return script_outcome(ctx->mh, "bus_disconnect", err);
}

static json_t *mock_bus_query(arq_ctx *ctx, arq_conn *conn, const char *what, const char *room,
                              const char *channel, const char **code, struct arq_error *err)
{
    struct mock_host *mh = ctx->mh;
    bus_record(mh, "bus_query what=%s client=%s room=%s channel=%s", OR_DASH(what),
               conn ? conn->client_id : "-", OR_DASH(room), OR_DASH(channel));
    char key[128];
    snprintf(key, sizeof key, "bus_query:%s", what ? what : "");
    const struct script *s = script_find(mh, key);
    if (s && s->value)
        return must(json_deep_copy(s->value));
    if (s && s->code) {
        *code = s->code;
        arq_error_set(err, 0, "%s", s->text ? s->text : "");
    } else {
        *code = "INTERNAL_ERROR";
        arq_error_set(err, 0, "mock: nothing scripted for bus_query(\"%s\")", OR_DASH(what));
    }
    return NULL;
}

/* Answered at once, as bus_query is scripted. */
static void mock_bus_query_async(arq_ctx *ctx, arq_conn *conn, const char *what, const char *room,
                                 const char *channel, arq_result_cb cb, void *arg)
{
    const char *code = NULL;
    struct arq_error err = {""};
    json_t *v = mock_bus_query(ctx, conn, what, room, channel, &code, &err);
    cb(arg, v ? NULL : code, v ? NULL : err.text, v);
    json_decref(v);
}

static void mock_bus_history(arq_ctx *ctx, arq_request *req, arq_conn *conn, const json_t *args,
                             int join)
{
    (void)conn;
    char *text = json_dumps(args, JSON_COMPACT | JSON_SORT_KEYS);
    bus_record(ctx->mh, "bus_history join=%d %s", join, text ? text : "?");
    free(text);
    ctx->mh->history_request = req;
}

static void mock_bus_reload(arq_ctx *ctx, arq_request *req)
{
    bus_record(ctx->mh, "bus_reload");
    ctx->mh->reload_request = req;
}

static void mock_broker_deliver(arq_ctx *ctx, const struct arq_broker_msg *msg)
{
    char *line = NULL;
    size_t len = 0;
    FILE *out = must(open_memstream(&line, &len));
    fprintf(out, "origin=%s room=%s channel=%s to=%s id=%s data=", OR_DASH(msg->origin),
            OR_DASH(msg->room), OR_DASH(msg->channel), OR_DASH(msg->to_client), OR_DASH(msg->id));
    fwrite(msg->data, 1, msg->len, out);
    fclose(out);
    strings_push_take(&ctx->mh->delivered, must(line));
}

static void mock_broker_resync(arq_ctx *ctx)
{
    struct mock_host *mh = ctx->mh;
    mh->resyncs++;
    if (mh->on_resync)
        mh->on_resync(mh->on_resync_arg);
}

static const struct arq_host mock_api = {
    .struct_size = sizeof(struct arq_host),
    .abi_major = ARQ_ABI_MAJOR,
    .abi_minor = ARQ_ABI_MINOR,
    .version = "0.0.0-mock",
    .instance_name = mock_instance_name,
    .node_name = mock_node_name,
    .log = mock_log,
    .log_enabled = mock_log_enabled,
    .uv_loop = mock_uv_loop,
    .timer_start = mock_timer_start,
    .timer_stop = mock_timer_stop,
    .post = mock_post,
    .opt_int = opt_get_int,
    .opt_double = opt_get_double,
    .opt_bool = opt_get_bool,
    .opt_str = opt_get_str,
    .opt_json = opt_get_json,
    .opt_fill = opt_fill,
    .metric_register = mock_metric_register,
    .metric_series = mock_metric_series,
    .metric_add = mock_metric_add,
    .metric_set = mock_metric_set,
    .metric_observe = mock_metric_observe,
    .metrics_render = mock_metrics_render,
    .emit = mock_emit,
    .event_json = telemetry_event_json,
    .free = mock_free,
    .conn_open = mock_conn_open,
    .conn_recv = mock_conn_recv,
    .conn_pending = mock_conn_pending,
    .conn_consumed = mock_conn_consumed,
    .conn_closed = mock_conn_closed,
    .reply_ok = mock_reply_ok,
    .reply_error = mock_reply_error,
    .conn_client_id = mock_conn_client_id,
    .conn_set_limit = mock_conn_set_limit,
    .bus_join = mock_bus_join,
    .bus_leave = mock_bus_leave,
    .bus_create_channel = mock_bus_create_channel,
    .bus_delete_channel = mock_bus_delete_channel,
    .bus_disconnect = mock_bus_disconnect,
    .bus_query = mock_bus_query,
    .bus_query_async = mock_bus_query_async,
    .bus_reload = mock_bus_reload,
    .bus_history = mock_bus_history,
    .broker_deliver = mock_broker_deliver,
    .broker_resync = mock_broker_resync,
};

/* --- the mock itself ----------------------------------------------------------------------- */

struct mock_host *mock_host_new(const char *instance_name)
{
    struct mock_host *mh = calloc(1, sizeof *mh);
    if (!mh)
        return NULL;
    mh->ctx.mh = mh;
    mh->log_level = ARQ_LOG_DEBUG;
    if (!(mh->name = strdup(instance_name))) {
        free(mh);
        return NULL;
    }
    return mh;
}

void mock_host_free(struct mock_host *mh)
{
    if (!mh)
        return;
    struct post *p;
    while ((p = posts_pop(mh))) {
        p->cb(p->arg, 1);
        free(p);
    }
    while (mh->timers) {
        struct arq_timer *t = mh->timers;
        mh->timers = t->next;
        free(t);
    }
    while (mh->metrics) {
        struct arq_metric *m = mh->metrics;
        mh->metrics = m->next;
        while (m->series) {
            struct arq_series *s = m->series;
            m->series = s->next;
            free(s->labels);
            free(s);
        }
        for (size_t i = 0; i < m->nlabels; i++)
            free(m->label_names[i]);
        free(m->label_names);
        free(m->name);
        free(m->help);
        free(m);
    }
    while (mh->conns) {
        struct arq_conn *c = mh->conns;
        mh->conns = c->next;
        free(c->client_id);
        free(c);
    }
    while (mh->requests) {
        struct arq_request *r = mh->requests;
        mh->requests = r->next;
        reply_clear(&r->last);
        free(r);
    }
    while (mh->scripts) {
        struct script *s = mh->scripts;
        mh->scripts = s->next;
        free(s->key);
        free(s->code);
        free(s->text);
        json_decref(s->value);
        free(s);
    }
    strings_free(&mh->bus_calls);
    strings_free(&mh->delivered);
    free(mh->node);
    strings_free(&mh->logs);
    strings_free(&mh->events);
    json_decref(mh->cfgs);
    free(mh->name);
    free(mh);
}

const struct arq_host *mock_host_api(void)
{
    return &mock_api;
}

arq_ctx *mock_host_ctx(struct mock_host *mh)
{
    return &mh->ctx;
}

size_t mock_host_log_count(const struct mock_host *mh)
{
    return mh->logs.n;
}

const char *mock_host_log_line(const struct mock_host *mh, size_t i)
{
    return i < mh->logs.n ? mh->logs.items[i] : NULL;
}

size_t mock_host_log_matching(const struct mock_host *mh, const char *needle)
{
    size_t n = 0;
    for (size_t i = 0; i < mh->logs.n; i++)
        n += strstr(mh->logs.items[i], needle) != NULL;
    return n;
}

void mock_host_set_log_level(struct mock_host *mh, enum arq_log_level level)
{
    mh->log_level = level;
}

size_t mock_host_event_count(const struct mock_host *mh)
{
    return mh->events.n;
}

const char *mock_host_event(const struct mock_host *mh, size_t i)
{
    return i < mh->events.n ? mh->events.items[i] : NULL;
}

arq_conn *mock_host_conn(struct mock_host *mh, const char *client_id)
{
    struct arq_conn *c = must(calloc(1, sizeof *c));
    c->mh = mh;
    c->client_id = must_strdup(client_id);
    c->next = mh->conns;
    mh->conns = c;
    return c;
}

arq_request *mock_host_request(struct mock_host *mh)
{
    struct arq_request *r = must(calloc(1, sizeof *r));
    r->mh = mh;
    r->next = mh->requests;
    mh->requests = r;
    return r;
}

size_t mock_host_reply_count(const arq_request *req)
{
    return req->replies;
}

const struct mock_reply *mock_host_last_reply(const arq_request *req)
{
    return req->replies ? &req->last : NULL;
}

void mock_host_bus_fail(struct mock_host *mh, const char *service, const char *code,
                        const char *text)
{
    struct script *s = script_reset(mh, service);
    s->code = dup_or_null(code);
    s->text = dup_or_null(text);
}

void mock_host_query_result(struct mock_host *mh, const char *what, const json_t *value)
{
    char key[128];
    snprintf(key, sizeof key, "bus_query:%s", what);
    script_reset(mh, key)->value = must(json_deep_copy(value));
}

void mock_host_query_fail(struct mock_host *mh, const char *what, const char *code,
                          const char *text)
{
    char key[128];
    snprintf(key, sizeof key, "bus_query:%s", what);
    mock_host_bus_fail(mh, key, code, text);
}

size_t mock_host_bus_call_count(const struct mock_host *mh)
{
    return mh->bus_calls.n;
}

const char *mock_host_bus_call(const struct mock_host *mh, size_t i)
{
    return i < mh->bus_calls.n ? mh->bus_calls.items[i] : NULL;
}

arq_request *mock_host_history_request(const struct mock_host *mh)
{
    return mh->history_request;
}

arq_request *mock_host_reload_request(const struct mock_host *mh)
{
    return mh->reload_request;
}

void mock_host_set_node(struct mock_host *mh, const char *node)
{
    free(mh->node);
    mh->node = must_strdup(node);
}

size_t mock_host_delivered_count(const struct mock_host *mh)
{
    return mh->delivered.n;
}

const char *mock_host_delivered(const struct mock_host *mh, size_t i)
{
    return i < mh->delivered.n ? mh->delivered.items[i] : NULL;
}

size_t mock_host_resync_count(const struct mock_host *mh)
{
    return mh->resyncs;
}

void mock_host_on_resync(struct mock_host *mh, void (*fn)(void *arg), void *arg)
{
    mh->on_resync = fn;
    mh->on_resync_arg = arg;
}

/* --- helpers for tests ---------------------------------------------------------------------- */

const struct arq_plugin *mock_host_load_plugin(const char *path, void **handle)
{
    *handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!*handle) {
        fprintf(stderr, "cannot load %s: %s\n", path, dlerror());
        return NULL;
    }
    void *sym = dlsym(*handle, ARQ_PLUGIN_ENTRY);
    const struct arq_plugin *desc = NULL;
    if (sym) {
        arq_plugin_entry_fn entry;
        memcpy(&entry, &sym, sizeof entry);
        desc = entry();
    }
    if (!desc) {
        fprintf(stderr, "%s: no %s or it returned NULL\n", path, ARQ_PLUGIN_ENTRY);
        dlclose(*handle);
        *handle = NULL;
    }
    return desc;
}

int mock_host_unload_plugin(void *handle)
{
    return handle ? dlclose(handle) : 0;
}

int mock_instance_setup(void **state, const char *instance_name)
{
    struct mock_instance *f = calloc(1, sizeof *f);
    if (!f || !(f->mh = mock_host_new(instance_name))) {
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

int mock_instance_teardown(void **state, const struct arq_plugin *desc)
{
    struct mock_instance *f = *state;
    if (f->self)
        desc->destroy(f->self);
    mock_host_free(f->mh);
    free(f);
    return 0;
}

json_t *mock_host_validate(const struct arq_option *spec, const char *yaml, struct diag_list *diags)
{
    struct diag_list local = {0};
    struct diag_list *d = diags ? diags : &local;
    struct cfg_doc *doc = cfg_doc_new(NULL, NULL);
    assert_non_null(doc);
    json_t *root = cfg_doc_parse(doc, "t.yaml", yaml, strlen(yaml), d);
    assert_non_null(root);
    struct cfg_pos where = {"t.yaml", 1, 1};
    json_t *v = opt_validate(spec, root, doc, &where, "test", d);
    if (!diags) {
        for (size_t i = 0; i < local.n; i++)
            print_message("diag: %s\n", local.items[i]);
        assert_int_equal(local.n, 0);
    }
    diag_clear(&local);
    cfg_doc_free(doc);
    return v;
}

void mock_host_create_plugin(struct mock_host *mh, const struct arq_plugin *desc, json_t *cfg_take,
                             void **self)
{
    struct arq_error err = {""};
    int rc = desc->create(mock_host_api(), mock_host_ctx(mh), cfg_take, self, &err);
    if (!mh->cfgs)
        mh->cfgs = must(json_array());
    if (cfg_take && json_array_append_new(mh->cfgs, cfg_take) != 0)
        abort();
    if (rc != 0)
        fail_msg("create failed (%d): %s", rc, err.text);
    assert_non_null(*self);
}

const struct arq_command *mock_host_command(const struct arq_plugin *desc, const char *name)
{
    const struct arq_commands_ops *ops = desc->ops;
    for (const struct arq_command *c = ops->commands; c->name; c++)
        if (!strcmp(c->name, name))
            return c;
    fail_msg("no command %s", name);
    return NULL;
}

const json_t *mock_host_assert_ok(const arq_request *req, const char *message)
{
    assert_int_equal(mock_host_reply_count(req), 1);
    const struct mock_reply *r = mock_host_last_reply(req);
    if (!r->ok)
        fail_msg("expected success, got %s: %s", r->error_code, r->text);
    assert_string_equal(r->message, message);
    return r->data;
}

void mock_host_assert_error(const arq_request *req, const char *code, const char *text)
{
    assert_int_equal(mock_host_reply_count(req), 1);
    const struct mock_reply *r = mock_host_last_reply(req);
    if (r->ok)
        fail_msg("expected %s, got success: %s", code, r->message);
    assert_string_equal(r->error_code, code);
    assert_string_equal(r->text, text);
}

void mock_host_tmpdir(char *out, size_t size, const char *prefix)
{
    const char *dir = getenv("TMPDIR");
    if (!dir || !*dir)
        dir = "/tmp";
    size_t len = strlen(dir);
    while (len > 0 && dir[len - 1] == '/')
        len--;
    int n = snprintf(out, size, "%.*s/%s_XXXXXX", (int)len, dir, prefix);
    if (n < 0 || (size_t)n >= size) {
        fprintf(stderr, "temporary path under %s for %s is longer than %zu bytes\n", dir, prefix,
                size - 1);
        if (size)
            out[0] = '\0';
    }
}

static int remove_one(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)st, (void)type, (void)ftw;
    if (remove(path) != 0)
        fprintf(stderr, "could not remove %s\n", path);
    return 0;
}

void mock_host_remove_tmpdir(const char *dir)
{
    if (nftw(dir, remove_one, 16, FTW_DEPTH | FTW_PHYS) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
}
