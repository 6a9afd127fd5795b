/* auth-rbac: roles mapped to permissions on actions, and per-role rate limits (token buckets).
 *
 * An authorize-only policy: it answers for every action of a principal whose role it knows
 * (ALLOW, DENY or RATE_LIMITED, never DEFER) and leaves authentication to other policies.
 * Permissions are checked first, so a refused action takes no token. Then publish and direct
 * take a token from the connection's message bucket (and from its subject's, when the role has
 * a per-subject limit), command from its command bucket. Server-side requests (no client id)
 * are never rate limited.
 *
 * Every option is RELOADABLE: a reload builds the new role set aside and swaps it in; the
 * buckets of connected clients are kept, and their next refill uses the new rates and bursts.
 *
 * Files: roles.c (the role set and its YAML), pattern.c (room/channel patterns), bucket.c
 * (token bucket arithmetic), limiter.c (buckets per client and subject, abuse counting); this
 * file is the plugin. See README.md. */
#include <arqonbus/plugin.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "limiter.h"
#include "rbac.h"
#include "roles.h"

/* 1. Options. */
static const char *const unknown_role_choices[] = {"deny", "guest", NULL};

static const struct arq_option options[] = {
    ARQ_OPT("roles", ARQ_OPT_JSON, "{}", ARQ_OPT_RELOADABLE,
            "role name -> {inherits, connect, commands, join, publish, history, direct, "
            "limits}: changes to the built-in roles guest, user and admin, and new roles"),
    ARQ_OPT_RANGE("abuse_threshold", ARQ_OPT_INT, "20", 0, 10000, ARQ_OPT_RELOADABLE,
                  "rate-limited refusals of one client within abuse_window that mark it "
                  "abusive (the host then disconnects it); 0: never"),
    ARQ_OPT_RANGE("abuse_window", ARQ_OPT_DURATION, "10s", 1, 86400000, ARQ_OPT_RELOADABLE,
                  "the window of abuse_threshold"),
    ARQ_OPT_CHOICE("unknown_role", unknown_role_choices, "deny", ARQ_OPT_RELOADABLE,
                   "a principal whose role is not defined: deny everything, or treat it as "
                   "guest"),
    ARQ_OPT_END};

/* 2. Instance state. */
enum rbac_action {
    ACT_CONNECT,
    ACT_PUBLISH,
    ACT_DIRECT,
    ACT_JOIN,
    ACT_HISTORY,
    ACT_COMMAND,
    ACT_OTHER,
    ACT_N
};

static const char *const action_names[ACT_N] = {"connect", "publish", "direct", "join",
                                                "history", "command", "other"};

/* What a reload replaces as a whole. */
struct rbac_config {
    struct rbac_roles roles;
    const struct rbac_role *guest; /* inside `roles`: what an unknown role gets, or NULL */
    size_t abuse_threshold;
    int64_t abuse_window_us;
};

/* Marks a `struct rbac` and says which layout of it (and of the limiter's entries) this build
 * has: start takes over a predecessor's buckets only when they match. Change it with either. */
#define RBAC_LAYOUT 0x72626301u

struct rbac {
    unsigned layout; /* RBAC_LAYOUT                                              */
    size_t size;     /* sizeof(struct rbac) + sizeof(struct limiter_entry)       */
    const struct arq_host *host;
    arq_ctx *ctx;
    struct rbac_config cfg;
    struct limiter lim;
    arq_timer *sweep;
    int64_t (*now_us)(void *arg);
    void *now_arg;
    arq_series *denied[ACT_N];
    arq_series *limited[2]; /* messages, commands */
};

static int64_t rbac__monotonic_us(void *arg)
{
    struct timespec ts;
    (void)arg;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int rbac__config(const struct arq_host *host, const json_t *cfg, struct rbac_config *out,
                        struct arq_error *err)
{
    char text[sizeof err->text];
    memset(out, 0, sizeof *out);
    int rc = rbac_roles_build(host->opt_json(cfg, "roles"), &out->roles, text, sizeof text);
    if (rc != 0)
        return arq_error_set(err, rc == -2 ? ARQ_ENOMEM : ARQ_EINVAL, "%s", text);
    out->abuse_threshold = (size_t)host->opt_int(cfg, "abuse_threshold", 20);
    out->abuse_window_us = host->opt_int(cfg, "abuse_window", 10000) * 1000;
    if (strcmp(host->opt_str(cfg, "unknown_role", "deny"), "guest") == 0)
        out->guest = rbac_roles_find(&out->roles, "guest");
    return ARQ_OK;
}

static void rbac__log_roles(struct rbac *r, const char *msg)
{
    char names[512];
    size_t used = 0;
    names[0] = '\0';
    for (size_t i = 0; i < r->cfg.roles.n && used < sizeof names; i++)
        used += (size_t)snprintf(names + used, sizeof names - used, "%s%s", i ? "," : "",
                                 r->cfg.roles.items[i].name);
    ARQ_LOG(r->host, r->ctx, ARQ_LOG_INFO, msg, "roles", names);
}

/* 3. Life cycle. */
static int rbac_create(const struct arq_host *host, arq_ctx *ctx, const json_t *cfg, void **self,
                       struct arq_error *err)
{
    struct rbac *r = calloc(1, sizeof *r);
    if (!r)
        return arq_error_set(err, ARQ_ENOMEM, "out of memory");
    r->layout = RBAC_LAYOUT;
    r->size = sizeof *r + sizeof(struct limiter_entry);
    r->host = host;
    r->ctx = ctx;
    r->now_us = rbac__monotonic_us;
    int rc = rbac__config(host, cfg, &r->cfg, err);
    if (rc != ARQ_OK) {
        free(r);
        return rc;
    }
    *self = r;
    return ARQ_OK;
}

static void rbac__on_sweep(void *arg)
{
    struct rbac *r = arg;
    limiter_sweep(&r->lim, r->now_us(r->now_arg), r->cfg.abuse_window_us);
}

/* Metrics and the sweep timer. A predecessor (the instance this one replaces) hands over its
 * buckets, so that a replaced instance does not refill every client at once. */
static int rbac_start(void *self, void *predecessor, struct arq_error *err)
{
    struct rbac *r = self;
    static const char *const by_action[] = {"instance", "action", NULL};
    static const char *const by_kind[] = {"instance", "kind", NULL};
    const char *name = r->host->instance_name(r->ctx);
    arq_metric *denied = r->host->metric_register(
        r->ctx, ARQ_METRIC_COUNTER, "arqonbus_auth_rbac_denied_total",
        "Actions auth-rbac refused for want of permission, by action", by_action, NULL, 0);
    arq_metric *limited = r->host->metric_register(
        r->ctx, ARQ_METRIC_COUNTER, "arqonbus_rate_limited_total",
        "Actions refused by a rate limit, by kind (messages, commands)", by_kind, NULL, 0);
    if (!denied)
        ARQ_LOG(r->host, r->ctx, ARQ_LOG_WARN, "metric refused by the host; not counting", "metric",
                "arqonbus_auth_rbac_denied_total");
    if (!limited)
        ARQ_LOG(r->host, r->ctx, ARQ_LOG_WARN, "metric refused by the host; not counting", "metric",
                "arqonbus_rate_limited_total");
    for (int a = 0; denied && a < ACT_N; a++) {
        const char *labels[] = {name, action_names[a], NULL};
        r->denied[a] = r->host->metric_series(denied, labels);
    }
    static const char *const kinds[] = {"messages", "commands"};
    for (int k = 0; limited && k < 2; k++) {
        const char *labels[] = {name, kinds[k], NULL};
        r->limited[k] = r->host->metric_series(limited, labels);
    }
    struct rbac *old = predecessor;
    if (old && old->layout == RBAC_LAYOUT && old->size == r->size) {
        limiter_free(&r->lim);
        r->lim = old->lim;
        memset(&old->lim, 0, sizeof old->lim);
    }
    r->sweep = r->host->timer_start(r->ctx, RBAC_SWEEP_MS, RBAC_SWEEP_MS, rbac__on_sweep, r);
    if (!r->sweep)
        return arq_error_set(err, ARQ_ENOMEM, "out of memory (the sweep timer)");
    rbac__log_roles(r, "roles ready");
    return ARQ_OK;
}

/* All or nothing: the new role set is built aside, and only a complete one replaces the old.
 * The buckets stay; their next refill uses the new rates and bursts. */
static int rbac_reconfigure(void *self, const json_t *cfg, struct arq_error *err)
{
    struct rbac *r = self;
    struct rbac_config next;
    int rc = rbac__config(r->host, cfg, &next, err);
    if (rc != ARQ_OK)
        return rc;
    rbac_roles_free(&r->cfg.roles);
    r->cfg = next;
    rbac__log_roles(r, "roles reloaded");
    return ARQ_OK;
}

static void rbac_stop(void *self)
{
    struct rbac *r = self;
    r->host->timer_stop(r->sweep);
    r->sweep = NULL;
}

static void rbac_destroy(void *self)
{
    struct rbac *r = self;
    limiter_free(&r->lim);
    rbac_roles_free(&r->cfg.roles);
    free(r);
}

/* 4. The auth work. */
static enum rbac_action rbac__action(const char *action)
{
    for (int a = 0; action && a < ACT_OTHER; a++)
        if (strcmp(action, action_names[a]) == 0)
            return (enum rbac_action)a;
    return ACT_OTHER;
}

static enum arq_auth_verdict rbac__verdict(struct arq_auth_result *out, enum arq_auth_verdict v)
{
    out->verdict = v;
    return v;
}

static enum arq_auth_verdict rbac__deny(struct rbac *r, enum rbac_action a,
                                        struct arq_auth_result *out, const char *fmt, ...)
    ARQ_PRINTF(4, 5);
static enum arq_auth_verdict rbac__deny(struct rbac *r, enum rbac_action a,
                                        struct arq_auth_result *out, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(out->reason, sizeof out->reason, fmt, ap);
    va_end(ap);
    if (r->denied[a])
        r->host->metric_add(r->denied[a], 1);
    return rbac__verdict(out, ARQ_AUTH_DENY);
}

/* The action's target as "room" or "room/channel", for reasons. */
static const char *rbac__target(const struct arq_action *what, char *buf, size_t size)
{
    snprintf(buf, size, "%s%s%s", what->room ? what->room : "(no room)", what->channel ? "/" : "",
             what->channel ? what->channel : "");
    return buf;
}

static enum arq_auth_verdict rbac__refuse(struct rbac *r, const struct rbac_role *role,
                                          const struct arq_action *what, enum rbac_action a,
                                          struct arq_auth_result *out)
{
    char target[300];
    const char *name = role->name;
    switch (a) {
    case ACT_CONNECT:
        return rbac__deny(r, a, out, "role %s may not connect", name);
    case ACT_PUBLISH:
        return rbac__deny(r, a, out, "role %s may not publish to %s", name,
                          rbac__target(what, target, sizeof target));
    case ACT_DIRECT:
        return rbac__deny(r, a, out, "role %s may not send direct messages", name);
    case ACT_JOIN:
        return rbac__deny(r, a, out, "role %s may not join %s", name,
                          rbac__target(what, target, sizeof target));
    case ACT_HISTORY:
        return rbac__deny(r, a, out, "role %s may not read the history of %s", name,
                          rbac__target(what, target, sizeof target));
    case ACT_COMMAND:
        return rbac__deny(r, a, out, "role %s may not run command %s", name,
                          what->command ? what->command : "(none)");
    default:
        return rbac__deny(r, a, out, "auth-rbac knows no action \"%s\"",
                          what->action ? what->action : "(none)");
    }
}

/* "message rate limit: 100/s, burst 200" */
static void rbac__limit_reason(char *out, size_t size, const char *what,
                               const struct rbac_limit *lim)
{
    int per_s = lim->per_second && lim->rate.per_minute % 60 == 0;
    snprintf(out, size, "%s: %lld/%s, burst %lld", what,
             (long long)(per_s ? lim->rate.per_minute / 60 : lim->rate.per_minute),
             per_s ? "s" : "min", (long long)lim->rate.burst);
}

/* Publish, direct (messages) or command (commands) by a connection that may do it: take its
 * tokens, or refuse with the time until it could. */
static enum arq_auth_verdict rbac__limit(struct rbac *r, const struct rbac_role *role,
                                         const struct arq_principal *who, int messages,
                                         struct arq_auth_result *out)
{
    const struct rbac_limit *own =
        &role->limits[messages ? RBAC_LIMIT_MESSAGES : RBAC_LIMIT_COMMANDS];
    const struct rbac_limit *shared = &role->limits[RBAC_LIMIT_SUBJECT_MESSAGES];
    int own_on = !bucket_unlimited(&own->rate);
    int shared_on = messages && who->subject && !bucket_unlimited(&shared->rate);
    if (!own_on && !shared_on)
        return rbac__verdict(out, ARQ_AUTH_ALLOW);

    int64_t now = r->now_us(r->now_arg);
    struct limiter_entry *client = limiter_client(&r->lim, who->client_id, now);
    struct limiter_entry *subject =
        shared_on ? limiter_subject(&r->lim, who->tenant, who->subject, now) : NULL;
    if (!client || (shared_on && !subject)) {
        /* A limit is a protection, not a permission: without memory to track it, let the
         * action through rather than refuse a client for the server's trouble. */
        ARQ_LOG(r->host, r->ctx, ARQ_LOG_WARN, "out of memory: an action was not rate limited",
                "client_id", who->client_id);
        return rbac__verdict(out, ARQ_AUTH_ALLOW);
    }
    struct bucket *own_b = messages ? &client->messages : &client->commands;
    int64_t own_wait = own_on ? bucket_wait_us(own_b, &own->rate, now) : 0;
    int64_t shared_wait = shared_on ? bucket_wait_us(&subject->messages, &shared->rate, now) : 0;
    if (own_wait == 0 && shared_wait == 0) {
        if (own_on)
            bucket_take(own_b);
        if (shared_on)
            bucket_take(&subject->messages);
        return rbac__verdict(out, ARQ_AUTH_ALLOW);
    }

    int by_shared = shared_wait > own_wait;
    int64_t wait = by_shared ? shared_wait : own_wait;
    uint64_t ms = (uint64_t)(wait / 1000 + (wait % 1000 != 0));
    out->retry_after_ms = ms < 1 ? 1 : ms;
    if (by_shared)
        rbac__limit_reason(out->reason, sizeof out->reason, "message rate limit per subject",
                           shared);
    else
        rbac__limit_reason(out->reason, sizeof out->reason,
                           messages ? "message rate limit" : "command rate limit", own);
    out->abusive = limiter_refused(client, now, r->cfg.abuse_threshold, r->cfg.abuse_window_us);
    if (r->limited[messages ? 0 : 1])
        r->host->metric_add(r->limited[messages ? 0 : 1], 1);
    return rbac__verdict(out, ARQ_AUTH_RATE_LIMITED);
}

static enum arq_auth_verdict rbac_authorize(void *self, const struct arq_principal *who,
                                            const struct arq_action *what,
                                            struct arq_auth_result *out)
{
    struct rbac *r = self;
    enum rbac_action a = rbac__action(what->action);
    const struct rbac_role *role = rbac_roles_find(&r->cfg.roles, who->role);
    if (!role && !(role = r->cfg.guest))
        return rbac__deny(r, a, out, "role %s is not defined", who->role ? who->role : "(none)");

    int allowed = 0;
    switch (a) {
    case ACT_CONNECT:
        allowed = role->connect;
        break;
    case ACT_PUBLISH:
        allowed = pattern_set_allows(&role->publish, what->room, what->channel);
        break;
    case ACT_DIRECT:
        allowed = role->direct;
        break;
    case ACT_JOIN:
        allowed = pattern_set_allows(&role->join, what->room, what->channel);
        break;
    case ACT_HISTORY:
        allowed = pattern_set_allows(&role->history, what->room, what->channel);
        break;
    case ACT_COMMAND:
        allowed = rbac_role_may_command(role, what->command, what->group);
        break;
    default:
        break;
    }
    if (!allowed)
        return rbac__refuse(r, role, what, a, out);
    if (!who->client_id || (a != ACT_PUBLISH && a != ACT_DIRECT && a != ACT_COMMAND))
        return rbac__verdict(out, ARQ_AUTH_ALLOW);
    return rbac__limit(r, role, who, a != ACT_COMMAND, out);
}

static const struct arq_auth_ops ops = {
    .struct_size = sizeof ops,
    .authenticate = NULL,
    .authorize = rbac_authorize,
    .refresh = NULL,
};

/* For the unit tests (rbac.h). */
void rbac_set_clock(void *self, int64_t (*now_us)(void *arg), void *arg)
{
    struct rbac *r = self;
    r->now_us = now_us;
    r->now_arg = arg;
}

size_t rbac_tracked_clients(void *self)
{
    return limiter_clients(&((struct rbac *)self)->lim);
}

size_t rbac_tracked_subjects(void *self)
{
    return limiter_subjects(&((struct rbac *)self)->lim);
}

/* 5. The descriptor; entry.c exports it. */
const struct arq_plugin rbac_descriptor = {
    ARQ_PLUGIN_HEAD,
    .name = "auth-rbac",
    .version = "1.0.0",
    .summary = "roles mapped to permissions on actions, with per-role rate limits",
    .kind = ARQ_KIND_AUTH,
    .options = options,
    .create = rbac_create,
    .start = rbac_start,
    .reconfigure = rbac_reconfigure,
    .stop = rbac_stop,
    .destroy = rbac_destroy,
    .ops = &ops,
};
