/* The auth chain, the host's default identities and its connection limits (see auth.h). */
#include "auth.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus.h"
#include "instance.h"
#include "log.h"
#include "metrics.h"
#include "telemetry.h"

/* The per-IP table is swept of idle entries when it has grown past this many since the
 * last sweep (and at least this big). */
#define AUTH_IP_SWEEP_MIN 1024

struct auth_ip {
    char addr[64];
    size_t conns;   /* connections open from this address                            */
    double tokens;  /* connection-rate bucket                                         */
    uint64_t at_ns; /* when `tokens` was last brought up to date                    */
};

static const struct arq_auth_ops *auth__ops(const struct arq_ctx *ctx)
{
    return ctx->mod->desc->ops;
}

int auth_role_rank(const char *role)
{
    if (!role)
        return 0;
    if (!strcmp(role, "admin"))
        return 2;
    if (!strcmp(role, "user"))
        return 1;
    return 0;
}

void auth_identity_clear(struct auth_identity *id)
{
    free(id->subject);
    free(id->role);
    free(id->tenant);
    free(id->policy);
    json_decref(id->claims);
    memset(id, 0, sizeof *id);
}

/* Copy what a policy (or the host) says into an owned identity. -1 on allocation failure. */
static int auth__identity_set(struct auth_identity *id, const struct arq_principal *p,
                              const char *policy)
{
    struct auth_identity n = {0};
    if ((p->subject && !(n.subject = strdup(p->subject))) || !(n.role = strdup(p->role)) ||
        (p->tenant && !(n.tenant = strdup(p->tenant))) || (policy && !(n.policy = strdup(policy))))
        goto fail;
    if (p->claims && !(n.claims = json_deep_copy(p->claims)))
        goto fail;
    n.rank = auth_role_rank(n.role);
    json_t *exp = json_object_get(p->claims, "exp");
    if (json_is_number(exp) && json_number_value(exp) > 0)
        n.expires_ms = (int64_t)(json_number_value(exp) * 1000);
    auth_identity_clear(id);
    *id = n;
    return 0;
fail:
    auth_identity_clear(&n);
    return -1;
}

static struct arq_principal auth__principal(const struct auth_identity *id, const char *client_id)
{
    return (struct arq_principal){.struct_size = sizeof(struct arq_principal),
                                  .subject = id->subject,
                                  .role = id->role,
                                  .tenant = id->tenant,
                                  .claims = id->claims,
                                  .client_id = client_id};
}

static void auth__result_init(struct arq_auth_result *out)
{
    memset(out, 0, sizeof *out);
    out->struct_size = sizeof *out;
    out->principal.struct_size = sizeof out->principal;
}

static void auth__refuse(struct arq_auth_result *out, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void auth__refuse(struct arq_auth_result *out, int status, const char *fmt, ...)
{
    out->verdict = status == 429 ? ARQ_AUTH_RATE_LIMITED : ARQ_AUTH_DENY;
    out->http_status = status;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(out->reason, sizeof out->reason, fmt, ap);
    va_end(ap);
}

/* --- set-up -------------------------------------------------------------------------------- */

int auth_init(struct bus *b)
{
    struct auth *a = &b->auth;
    memset(a, 0, sizeof *a);
    static const char denied_help[] = "Requests and actions refused by authentication or "
                                      "authorization, by stage.";
    static const char limited_help[] = "Requests refused by a rate or connection limit, by kind.";
    a->m_denied_handshake = bus_series(b, ARQ_METRIC_COUNTER, "arqonbus_auth_failures_total",
                                       denied_help, "stage", "handshake");
    a->m_denied_action = bus_series(b, ARQ_METRIC_COUNTER, "arqonbus_auth_failures_total",
                                    denied_help, "stage", "action");
    a->m_limited_messages = bus_series(b, ARQ_METRIC_COUNTER, "arqonbus_rate_limit_hits_total",
                                       limited_help, "kind", "messages");
    a->m_limited_commands = bus_series(b, ARQ_METRIC_COUNTER, "arqonbus_rate_limit_hits_total",
                                       limited_help, "kind", "commands");
    a->m_limited_connections = bus_series(b, ARQ_METRIC_COUNTER, "arqonbus_rate_limit_hits_total",
                                          limited_help, "kind", "connections");
    a->m_abuse = bus_series(b, ARQ_METRIC_COUNTER, "arqonbus_abuse_disconnects_total",
                            "Clients disconnected with 1008 for repeatedly exceeding a rate limit.",
                            NULL, NULL);
    if (!a->m_denied_handshake || !a->m_denied_action || !a->m_limited_messages ||
        !a->m_limited_commands || !a->m_limited_connections || !a->m_abuse)
        return -1;
    uv_timer_init(b->env.loop, &a->expiry);
    a->expiry.data = b;
    return 0;
}

void auth_free(struct bus *b)
{
    struct auth *a = &b->auth;
    free(a->authn);
    free(a->authz);
    a->authn = a->authz = NULL;
    a->nauthn = a->nauthz = 0;
    const char *key;
    void *value;
    for (size_t i = 0; hmap_next(&a->per_ip, &i, &key, &value);)
        free(value);
    hmap_free(&a->per_ip);
}

/* --- events -------------------------------------------------------------------------------- */

static void auth__event(struct bus *b, const char *type, const char *client_id, json_t *data_take)
{
    struct arq_event ev = {
        .struct_size = sizeof ev, .event_type = type, .client_id = client_id, .data = data_take};
    bus_event(b, &ev);
    json_decref(data_take);
}

/* --- expiry --------------------------------------------------------------------------------- */

void auth_shutdown(struct bus *b)
{
    uv_handle_t *t = (uv_handle_t *)&b->auth.expiry;
    if (t->loop && !uv_is_closing(t))
        uv_close(t, NULL);
}

int auth_expire(struct bus *b)
{
    int64_t now = bus_now_ms(b);
    int left = 0;
    for (struct arq_conn *c = b->all, *next; c; c = next) {
        next = c->next;
        if (c->state != CONN_OPEN || !c->identity.expires_ms)
            continue;
        if (!b->settings.expire_sessions || c->identity.expires_ms > now) {
            left = 1;
            continue;
        }
        log_write(ARQ_LOG_INFO, "host", "client's credential expired", "client_id", c->id, "policy",
                  c->identity.policy ? c->identity.policy : "host", (const char *)NULL);
        auth__event(b, "auth_failed", c->id,
                    json_pack("{s:s, s:s}", "stage", "session", "reason", "token expired"));
        conn_close(c, 1008, "Unauthorized: token expired");
    }
    return left;
}

/* Once a second while any client's credential can expire. */
static void auth__expire(uv_timer_t *t)
{
    if (!auth_expire(t->data))
        uv_timer_stop(t);
}

static void auth__expiry_watch(struct bus *b, const struct auth_identity *id)
{
    uv_timer_t *t = &b->auth.expiry;
    if (id->expires_ms && t->loop && !uv_is_closing((uv_handle_t *)t) &&
        !uv_is_active((uv_handle_t *)t))
        uv_timer_start(t, auth__expire, 1000, 1000);
}

/* A target as policies' reasons and our own texts name it: "room", "room/channel", ... */
static void auth__target(const struct arq_action *what, char *out, size_t size)
{
    if (what->command)
        snprintf(out, size, "%s", what->command);
    else if (what->room && what->channel)
        snprintf(out, size, "%s/%s", what->room, what->channel);
    else if (what->room)
        snprintf(out, size, "%s", what->room);
    else if (what->client_id)
        snprintf(out, size, "%s", what->client_id);
    else if (what->path)
        snprintf(out, size, "%s", what->path);
    else
        out[0] = '\0';
}

/* --- the chains ---------------------------------------------------------------------------- */

/* Ask each authorize in turn; DEFER from all of them is the host's default. */
static enum arq_auth_verdict auth__authorize(struct bus *b, const struct arq_principal *who,
                                             int rank, const struct arq_action *what,
                                             struct arq_auth_result *out)
{
    struct auth *a = &b->auth;
    for (size_t i = 0; i < a->nauthz; i++) {
        struct arq_ctx *ctx = a->authz[i];
        auth__result_init(out);
        enum arq_auth_verdict v = auth__ops(ctx)->authorize(ctx->self, who, what, out);
        if (v == ARQ_AUTH_ALLOW || v == ARQ_AUTH_DENY || v == ARQ_AUTH_RATE_LIMITED) {
            out->verdict = v;
            if (v == ARQ_AUTH_RATE_LIMITED && out->retry_after_ms == 0)
                out->retry_after_ms = 1;
            out->reason[sizeof out->reason - 1] = '\0';
            return v;
        }
    }
    auth__result_init(out);
    if (what->action && !strcmp(what->action, "command")) {
        int need = what->group ? auth_role_rank(what->group) : 1;
        if (rank < need) {
            out->verdict = ARQ_AUTH_DENY;
            snprintf(out->reason, sizeof out->reason,
                     "Command '%s' requires role %s; this client is %s", what->command,
                     what->group ? what->group : "user", who->role);
            return ARQ_AUTH_DENY;
        }
    }
    out->verdict = ARQ_AUTH_ALLOW;
    return ARQ_AUTH_ALLOW;
}

static void auth__chain_add(struct arq_ctx ***list, size_t *n, struct arq_ctx *ctx)
{
    struct arq_ctx **grown = realloc(*list, (*n + 1) * sizeof *grown);
    if (!grown) {
        /* A policy left out would be a hole in security: say so loudly. */
        LOG_ERROR("out of memory: auth policy left out of the chain", "plugin", ctx->name);
        return;
    }
    grown[(*n)++] = ctx;
    *list = grown;
}

static void auth__refresh_all(struct bus *b);

void auth_rebuild(struct bus *b)
{
    struct auth *a = &b->auth;
    free(a->authn);
    free(a->authz);
    a->authn = a->authz = NULL;
    a->nauthn = a->nauthz = 0;
    struct arq_ctx *ctx;
    for (size_t i = 0; (ctx = b->env.instance(b->env.arg, ARQ_KIND_AUTH, i)); i++) {
        if (!ctx->started)
            continue;
        const struct arq_auth_ops *ops = auth__ops(ctx);
        if (ops->authenticate)
            auth__chain_add(&a->authn, &a->nauthn, ctx);
        if (ops->authorize)
            auth__chain_add(&a->authz, &a->nauthz, ctx);
    }
    auth__refresh_all(b);
}

/* The role of a client no policy identified; NULL when such clients are refused. */
static const char *auth__default_role(const struct bus *b)
{
    const char *role = b->auth.nauthn ? b->settings.default_role : b->settings.anonymous_role;
    return role && *role ? role : NULL;
}

static void auth__refresh_all(struct bus *b)
{
    for (struct arq_conn *c = b->all, *next; c; c = next) {
        next = c->next;
        if (c->state != CONN_OPEN)
            continue;
        struct auth_identity *id = &c->identity;
        struct arq_auth_result r;
        auth__result_init(&r);
        if (!id->policy) {
            const char *role = auth__default_role(b);
            if (!role) {
                conn_close(c, 1008, "Unauthorized: authentication required");
                continue;
            }
            if (strcmp(role, id->role)) {
                struct arq_principal p = {.struct_size = sizeof p, .role = role};
                auth__identity_set(id, &p, NULL);
            }
            continue;
        }
        struct arq_ctx *policy = NULL;
        for (size_t i = 0; i < b->auth.nauthn && !policy; i++)
            if (!strcmp(b->auth.authn[i]->name, id->policy))
                policy = b->auth.authn[i];
        if (!policy || !auth__ops(policy)->refresh)
            continue; /* the identity it gave stands */
        struct arq_principal who = auth__principal(id, c->id);
        enum arq_auth_verdict v = auth__ops(policy)->refresh(policy->self, &who, &r);
        if (v == ARQ_AUTH_ALLOW && r.principal.role) {
            char *name = strdup(id->policy);
            if (name && auth__identity_set(id, &r.principal, name) == 0) {
                auth__expiry_watch(b, id);
                log_write(ARQ_LOG_INFO, "host", "client identity refreshed", "client_id", c->id,
                          "role", id->role, "policy", name, (const char *)NULL);
            }
            free(name);
        } else if (v == ARQ_AUTH_DENY) {
            r.reason[sizeof r.reason - 1] = '\0';
            char reason[124];
            snprintf(reason, sizeof reason, "Unauthorized: %.*s", 100,
                     r.reason[0] ? r.reason : "credential revoked");
            log_write(ARQ_LOG_INFO, "host", "client revoked by a reload", "client_id", c->id,
                      "policy", id->policy, "reason", reason, (const char *)NULL);
            conn_close(c, 1008, reason);
        }
    }
}

/* --- connection limits --------------------------------------------------------------------- */

static void auth__ip_sweep(struct auth *a, double rate, double burst, uint64_t now)
{
    const char *key;
    void *value;
    size_t i = 0;
    while (hmap_next(&a->per_ip, &i, &key, &value)) {
        struct auth_ip *e = value;
        double tokens = e->tokens + rate * (double)(now - e->at_ns) / 1e9;
        if (e->conns == 0 && (rate <= 0 || tokens >= burst)) {
            hmap_del(&a->per_ip, e->addr);
            free(e);
            i = 0; /* deletion shifts entries: start over (rare, amortised) */
        }
    }
}

static struct auth_ip *auth__ip(struct bus *b, const char *addr, int create)
{
    struct auth *a = &b->auth;
    struct auth_ip *e = hmap_get(&a->per_ip, addr);
    if (e || !create)
        return e;
    if (a->per_ip.len >= AUTH_IP_SWEEP_MIN && a->per_ip.len >= 2 * a->ip_swept_at) {
        auth__ip_sweep(a, b->settings.connection_rate_per_ip,
                       (double)b->settings.connection_burst_per_ip, uv_hrtime());
        a->ip_swept_at = a->per_ip.len;
    }
    if (!(e = calloc(1, sizeof *e)))
        return NULL;
    snprintf(e->addr, sizeof e->addr, "%s", addr);
    e->tokens = (double)b->settings.connection_burst_per_ip;
    e->at_ns = uv_hrtime();
    if (hmap_put(&a->per_ip, e->addr, e) != 0) {
        free(e);
        return NULL;
    }
    return e;
}

/* 0 when a new connection from `addr` is within the limits, else the HTTP status with the
 * reason in `out`. Takes a token of the address's connection-rate bucket. */
static int auth__limits(struct bus *b, const char *addr, struct arq_auth_result *out)
{
    const struct bus_settings *s = &b->settings;
    if (s->max_connections && b->nconns >= s->max_connections) {
        auth__refuse(out, 503, "the server holds its maximum of %zu connections",
                     s->max_connections);
        return 503;
    }
    if (!s->max_connections_per_ip && s->connection_rate_per_ip <= 0)
        return 0;
    struct auth_ip *e = auth__ip(b, addr ? addr : "?", 1);
    if (!e) {
        auth__refuse(out, 503, "out of memory");
        return 503;
    }
    if (s->max_connections_per_ip && e->conns >= s->max_connections_per_ip) {
        auth__refuse(out, 429, "too many connections from %s (at most %zu)", e->addr,
                     s->max_connections_per_ip);
        out->retry_after_ms = 1000;
        return 429;
    }
    if (s->connection_rate_per_ip > 0) {
        uint64_t now = uv_hrtime();
        double burst = (double)s->connection_burst_per_ip;
        e->tokens += s->connection_rate_per_ip * (double)(now - e->at_ns) / 1e9;
        if (e->tokens > burst)
            e->tokens = burst;
        e->at_ns = now;
        if (e->tokens < 1) {
            auth__refuse(out, 429, "connection rate from %s over %g/s", e->addr,
                         s->connection_rate_per_ip);
            out->retry_after_ms = (uint64_t)ceil((1 - e->tokens) / s->connection_rate_per_ip * 1e3);
            return 429;
        }
        e->tokens -= 1;
    }
    return 0;
}

/* --- the handshake ------------------------------------------------------------------------- */

/* `limit`: refused by the host's connection limits, not by a policy. A policy's 503 (an answer
 * the host cannot wait for) is a handshake failure, not a limit hit. */
static void auth__handshake_refused(struct bus *b, const struct arq_conn_info *info,
                                    const char *policy, int limit, struct arq_auth_result *out)
{
    struct auth *a = &b->auth;
    const char *peer = info && info->peer_addr ? info->peer_addr : "?";
    if (limit || out->verdict == ARQ_AUTH_RATE_LIMITED) {
        metrics_add(a->m_limited_connections, 1);
        auth__event(b, "rate_limited", NULL,
                    json_pack("{s:s, s:s, s:i, s:s}", "kind", "connections", "peer", peer, "status",
                              out->http_status, "reason", out->reason));
    } else {
        metrics_add(a->m_denied_handshake, 1);
        auth__event(b, "auth_failed", NULL,
                    json_pack("{s:s, s:s, s:i, s:s, s:s?}", "stage", "handshake", "peer", peer,
                              "status", out->http_status, "reason", out->reason, "policy", policy));
    }
    char status[8];
    snprintf(status, sizeof status, "%d", out->http_status);
    log_write(ARQ_LOG_INFO, "host", "handshake refused", "peer", peer, "status", status, "reason",
              out->reason, "policy", policy ? policy : "host", (const char *)NULL);
}

/* Limits, authenticate, then authorize "connect". ALLOW with `id` filled, or the refusal in
 * `out`. */
static enum arq_auth_verdict auth__handshake(struct bus *b, const struct arq_conn_info *info,
                                             void *tconn, struct auth_identity *id,
                                             struct arq_auth_result *out)
{
    auth__result_init(out);
    const char *policy = NULL;
    int request_only = info &&
                       info->struct_size >= offsetof(struct arq_conn_info, request_only) +
                                                sizeof info->request_only &&
                       info->request_only;
    int limit = !request_only && auth__limits(b, info ? info->peer_addr : NULL, out);
    if (limit)
        goto refused;

    enum arq_auth_verdict v = ARQ_AUTH_DEFER;
    for (size_t i = 0; i < b->auth.nauthn && v == ARQ_AUTH_DEFER; i++) {
        struct arq_ctx *ctx = b->auth.authn[i];
        auth__result_init(out);
        v = auth__ops(ctx)->authenticate(ctx->self, info, tconn, out);
        policy = ctx->name;
        out->reason[sizeof out->reason - 1] = '\0';
        if (v == ARQ_AUTH_ALLOW) {
            if (!out->principal.role || !*out->principal.role) {
                auth__refuse(out, 401, "the auth policy gave no role");
                goto refused;
            }
            if (auth__identity_set(id, &out->principal, ctx->name) != 0) {
                auth__refuse(out, 503, "out of memory");
                goto refused;
            }
        } else if (v == ARQ_AUTH_DENY) {
            int status = out->http_status == 403 ? 403 : 401;
            if (!out->reason[0])
                snprintf(out->reason, sizeof out->reason, "refused by %s", ctx->name);
            out->http_status = status;
            goto refused;
        } else if (v != ARQ_AUTH_DEFER) {
            /* PENDING (asynchronous answers) and anything unknown: refuse, never let in. */
            auth__refuse(out, 503, "the auth policy %s answered what this host cannot wait for",
                         ctx->name);
            goto refused;
        }
    }
    if (v == ARQ_AUTH_DEFER) {
        policy = NULL;
        const char *role = auth__default_role(b);
        if (!role) {
            auth__refuse(out, 401, "authentication required");
            goto refused;
        }
        struct arq_principal p = {.struct_size = sizeof p, .role = role};
        if (auth__identity_set(id, &p, NULL) != 0) {
            auth__refuse(out, 503, "out of memory");
            goto refused;
        }
    }

    struct arq_principal who = auth__principal(id, NULL);
    struct arq_action connect = {.struct_size = sizeof connect,
                                 .action = "connect",
                                 .path = info && info->path ? info->path : "/"};
    struct arq_auth_result r;
    enum arq_auth_verdict ok = auth__authorize(b, &who, id->rank, &connect, &r);
    if (ok != ARQ_AUTH_ALLOW) {
        auth_identity_clear(id);
        *out = r;
        if (ok == ARQ_AUTH_RATE_LIMITED)
            out->http_status = 429;
        else
            out->http_status = 403;
        if (!out->reason[0])
            snprintf(out->reason, sizeof out->reason, "this identity may not connect");
        goto refused;
    }
    auth__result_init(out);
    out->verdict = ARQ_AUTH_ALLOW;
    out->principal = auth__principal(id, NULL);
    return ARQ_AUTH_ALLOW;

refused:
    if (out->verdict != ARQ_AUTH_RATE_LIMITED)
        out->verdict = ARQ_AUTH_DENY;
    if (out->http_status == 0)
        out->http_status = 401;
    auth__handshake_refused(b, info, policy, limit, out);
    return out->verdict;
}

enum arq_auth_verdict auth_svc_handshake(arq_ctx *ctx, const struct arq_conn_info *info,
                                         void *tconn, arq_ticket **ticket,
                                         struct arq_auth_result *out)
{
    struct bus *b = bus_of(ctx);
    *ticket = NULL;
    struct arq_ticket *t = calloc(1, sizeof *t);
    if (!t) {
        auth__result_init(out);
        auth__refuse(out, 503, "out of memory");
        return ARQ_AUTH_DENY;
    }
    enum arq_auth_verdict v = auth__handshake(b, info, tconn, &t->id, out);
    if (v != ARQ_AUTH_ALLOW) {
        free(t);
        return v;
    }
    out->principal = auth__principal(&t->id, NULL);
    *ticket = t;
    return v;
}

void auth_svc_ticket_free(arq_ticket *ticket)
{
    if (!ticket)
        return;
    auth_identity_clear(&ticket->id);
    free(ticket);
}

enum arq_auth_verdict auth_svc_authorize(arq_ctx *ctx, const arq_ticket *ticket,
                                         const struct arq_action *what, struct arq_auth_result *out)
{
    struct bus *b = bus_of(ctx);
    if (!ticket || !what || !what->action) {
        auth__result_init(out);
        auth__refuse(out, 403, "nothing to authorize");
        return ARQ_AUTH_DENY;
    }
    struct arq_principal who = auth__principal(&ticket->id, NULL);
    enum arq_auth_verdict v = auth__authorize(b, &who, ticket->id.rank, what, out);
    if (v == ARQ_AUTH_DENY) {
        char target[300];
        auth__target(what, target, sizeof target);
        metrics_add(b->auth.m_denied_action, 1);
        auth__event(b, "auth_failed", NULL,
                    json_pack("{s:s, s:s, s:s, s:s, s:s?}", "stage", "action", "action",
                              what->action, "target", target, "reason", out->reason, "subject",
                              ticket->id.subject));
    }
    return v;
}

/* --- connections --------------------------------------------------------------------------- */

int auth_conn_admit(struct bus *b, struct arq_conn *c, const struct arq_conn_info *info,
                    void *tconn, struct arq_auth_result *out)
{
    int has_ticket =
        info && info->struct_size >= offsetof(struct arq_conn_info, ticket) + sizeof info->ticket;
    struct arq_ticket *t = has_ticket ? info->ticket : NULL;
    if (t) {
        c->identity = t->id;
        free(t);
    } else if (auth__handshake(b, info, tconn, &c->identity, out) != ARQ_AUTH_ALLOW) {
        return -1;
    }
    auth__expiry_watch(b, &c->identity);
    const char *addr = info && info->peer_addr ? info->peer_addr : "?";
    snprintf(c->addr, sizeof c->addr, "%s", addr);
    /* Counted whether or not a per-IP limit is set now: a reload may set one, and the
     * clients already connected must count against it. */
    struct auth_ip *e = auth__ip(b, c->addr, 1);
    if (e) {
        e->conns++;
        c->ip_counted = 1;
    } else {
        LOG_WARN("out of memory: connection not counted against its address", "peer", c->addr);
    }
    return 0;
}

void auth_conn_closed(struct bus *b, struct arq_conn *c)
{
    if (!c->ip_counted)
        return;
    c->ip_counted = 0;
    struct auth_ip *e = auth__ip(b, c->addr, 0);
    if (e && e->conns > 0)
        e->conns--;
    if (e && e->conns == 0 && b->settings.connection_rate_per_ip <= 0) {
        /* Nothing left to remember: no connection, no rate bucket. */
        hmap_del(&b->auth.per_ip, e->addr);
        free(e);
    }
}

/* --- actions ------------------------------------------------------------------------------- */

const char *auth_check(struct bus *b, struct arq_conn *c, const struct arq_action *what, char *text,
                       size_t textsz, uint64_t *retry_after_ms)
{
    struct auth *a = &b->auth;
    if (!a->nauthz && strcmp(what->action, "command") != 0)
        return NULL; /* no policy decides, and the host's default allows */
    struct arq_auth_result r;
    struct arq_principal who = auth__principal(&c->identity, c->id);
    enum arq_auth_verdict v = auth__authorize(b, &who, c->identity.rank, what, &r);
    if (v == ARQ_AUTH_ALLOW)
        return NULL;
    char target[300];
    auth__target(what, target, sizeof target);
    if (v == ARQ_AUTH_RATE_LIMITED) {
        int commands = !strcmp(what->action, "command");
        metrics_add(commands ? a->m_limited_commands : a->m_limited_messages, 1);
        *retry_after_ms = r.retry_after_ms;
        snprintf(text, textsz, "Rate limited: %s; retry after %llu ms",
                 r.reason[0] ? r.reason : "over the limit", (unsigned long long)r.retry_after_ms);
        auth__event(b, "rate_limited", c->id,
                    json_pack("{s:s, s:s, s:s, s:I, s:b}", "kind",
                              commands ? "commands" : "messages", "action", what->action, "target",
                              target, "retry_after_ms", (json_int_t)r.retry_after_ms, "abusive",
                              r.abusive != 0));
        if (r.abusive) {
            metrics_add(a->m_abuse, 1);
            log_write(ARQ_LOG_WARN, "host", "client disconnected for rate limit abuse", "client_id",
                      c->id, "peer", c->peer, (const char *)NULL);
            conn_close_after_reply(c, 1008, "rate limit abuse");
        }
        return ARQ_ERR_RATE_LIMITED;
    }
    metrics_add(a->m_denied_action, 1);
    if (r.reason[0])
        snprintf(text, textsz, "%s", r.reason);
    else
        snprintf(text, textsz, "Role %s may not %s %s", c->identity.role, what->action, target);
    auth__event(b, "auth_failed", c->id,
                json_pack("{s:s, s:s, s:s, s:s, s:s}", "stage", "action", "action", what->action,
                          "target", target, "reason", text, "role", c->identity.role));
    return ARQ_ERR_AUTHORIZATION;
}
