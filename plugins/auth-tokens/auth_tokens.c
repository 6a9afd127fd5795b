/* auth-tokens: static API tokens with roles, declared in the configuration, for internal
 * deployments and the HTTP admin API.
 *
 * At the handshake a request presenting a token that matches an entry is admitted as the
 * entry: subject = its name, with its role and tenant. A token that matches no entry is denied
 * (401 "unknown token") or deferred to the next policy (on_unknown: defer); a request with no
 * token at all is deferred. After a reload, `refresh` keeps the clients whose entry (by name)
 * is still there, with its current role and tenant, and denies the others ("token revoked").
 *
 * Tokens are compared as SHA-256 digests with CRYPTO_memcmp, against every entry whatever
 * matched before. No token is ever logged or returned. README.md has the options and an
 * example. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "atok.h"

/* 1. Options. */
static const char *const atok__on_unknown_choices[] = {"deny", "defer", NULL};

static const struct arq_option options[] = {
    ARQ_OPT("tokens", ARQ_OPT_JSON, NULL, ARQ_OPT_REQUIRED | ARQ_OPT_SECRET | ARQ_OPT_RELOADABLE,
            "accepted tokens: a list of {name, sha256 (or token), role, tenant?}"),
    ARQ_OPT_CHOICE("on_unknown", atok__on_unknown_choices, "deny", ARQ_OPT_RELOADABLE,
                   "a token matching no entry: deny (401) or defer to the next policy"),
    ARQ_OPT("header", ARQ_OPT_STRING, "", 0,
            "an extra request header carrying the token (e.g. X-API-Key); empty: none"),
    ARQ_OPT_END};

/* 2. Instance state. */
struct atok {
    const struct arq_host *host;
    arq_ctx *ctx;
    EVP_MD_CTX *md; /* reused for every digest */
    struct atok_table table;
    int defer_unknown; /* on_unknown: defer */
    char *header;      /* NULL: none */
    arq_series *allowed, *refused;
};

/* Options read from a validated cfg, before they are applied. */
struct atok_settings {
    struct atok_table table;
    int defer_unknown;
};

static int atok__settings(struct atok *a, const json_t *cfg, struct atok_settings *out,
                          struct arq_error *err)
{
    const char *on_unknown = a->host->opt_str(cfg, "on_unknown", "deny");
    out->defer_unknown = strcmp(on_unknown, "defer") == 0;
    return atok_table_build(a->host->opt_json(cfg, "tokens"), a->md, &out->table, err);
}

/* Say which entries hold a plain token (by name: never the token), and how many there are. */
static void atok__log_table(struct atok *a)
{
    char idx[32], count[32];
    for (size_t i = 0; i < a->table.n; i++) {
        if (!a->table.entries[i].plain)
            continue;
        snprintf(idx, sizeof idx, "tokens[%zu]", i);
        ARQ_LOG(a->host, a->ctx, ARQ_LOG_WARN,
                "plain token in the configuration: give its sha256 instead "
                "(printf %s \"$TOKEN\" | sha256sum)",
                "entry", idx, "name", a->table.entries[i].name);
    }
    if (a->table.n == 0)
        ARQ_LOG(a->host, a->ctx, ARQ_LOG_WARN, "no tokens: every token presented is unknown",
                "on_unknown", a->defer_unknown ? "defer" : "deny");
    snprintf(count, sizeof count, "%zu", a->table.n);
    ARQ_LOG(a->host, a->ctx, ARQ_LOG_INFO, "tokens loaded", "count", count, "on_unknown",
            a->defer_unknown ? "defer" : "deny");
}

/* A header name is an HTTP token (RFC 9110 tchar); the standard sources are read already. */
static int atok__check_header(const char *name, struct arq_error *err)
{
    static const char tchar[] = "!#$%&'*+-.^_`|~";
    for (const char *c = name; *c; c++)
        if (!(*c >= 'a' && *c <= 'z') && !(*c >= 'A' && *c <= 'Z') && !(*c >= '0' && *c <= '9') &&
            !strchr(tchar, *c))
            return arq_error_set(err, ARQ_EINVAL,
                                 "header: \"%.64s\" is not a header name (letters, digits and "
                                 "!#$%%&'*+-.^_`|~ only)",
                                 name);
    if (strcasecmp(name, "Authorization") == 0 || strcasecmp(name, "Sec-WebSocket-Protocol") == 0)
        return arq_error_set(err, ARQ_EINVAL,
                             "header: %s is read already (see the README); name another "
                             "header, or leave header empty",
                             name);
    return ARQ_OK;
}

/* 3. Life cycle. */
static void atok_destroy(void *self)
{
    struct atok *a = self;
    atok_table_clear(&a->table);
    EVP_MD_CTX_free(a->md);
    free(a->header);
    free(a);
}

static int atok_create(const struct arq_host *host, arq_ctx *ctx, const json_t *cfg, void **self,
                       struct arq_error *err)
{
    struct atok *a = calloc(1, sizeof *a);
    if (!a)
        return arq_error_set(err, ARQ_ENOMEM, "out of memory");
    a->host = host;
    a->ctx = ctx;
    int rc;
    if (!(a->md = EVP_MD_CTX_new())) {
        rc = arq_error_set(err, ARQ_ENOMEM, "out of memory (libcrypto)");
        goto fail;
    }
    const char *header = host->opt_str(cfg, "header", "");
    if (*header) {
        if ((rc = atok__check_header(header, err)) != ARQ_OK)
            goto fail;
        if (!(a->header = strdup(header))) {
            rc = arq_error_set(err, ARQ_ENOMEM, "out of memory");
            goto fail;
        }
    }
    struct atok_settings s;
    if ((rc = atok__settings(a, cfg, &s, err)) != ARQ_OK)
        goto fail;
    a->table = s.table;
    a->defer_unknown = s.defer_unknown;
    a->allowed =
        arq_instance_series(host, ctx, ARQ_METRIC_COUNTER, "arqonbus_auth_tokens_allowed_total",
                            "Handshakes admitted by auth-tokens (a known token).");
    a->refused =
        arq_instance_series(host, ctx, ARQ_METRIC_COUNTER, "arqonbus_auth_tokens_refused_total",
                            "Handshakes denied by auth-tokens (an unknown token, "
                            "on_unknown: deny).");
    atok__log_table(a);
    *self = a;
    return ARQ_OK;

fail:
    atok_destroy(a);
    return rc;
}

/* tokens and on_unknown are RELOADABLE: the new table replaces the old one whole, or not at
 * all. (header is not: changing it replaces the instance.) */
static int atok_reconfigure(void *self, const json_t *cfg, struct arq_error *err)
{
    struct atok *a = self;
    struct atok_settings s;
    int rc = atok__settings(a, cfg, &s, err);
    if (rc != ARQ_OK)
        return rc;
    atok_table_clear(&a->table);
    a->table = s.table;
    a->defer_unknown = s.defer_unknown;
    atok__log_table(a);
    return ARQ_OK;
}

/* 4. The auth work. */
static void atok__principal(const struct atok_entry *e, struct arq_auth_result *out)
{
    out->principal = (struct arq_principal){.struct_size = sizeof out->principal,
                                            .subject = e->name,
                                            .role = e->role,
                                            .tenant = e->tenant,
                                            .claims = NULL};
}

static enum arq_auth_verdict atok__deny(struct arq_auth_result *out, int status, const char *reason)
{
    out->verdict = ARQ_AUTH_DENY;
    out->http_status = status;
    snprintf(out->reason, sizeof out->reason, "%s", reason);
    return ARQ_AUTH_DENY;
}

static enum arq_auth_verdict atok_authenticate(void *self, const struct arq_conn_info *info,
                                               void *tconn, struct arq_auth_result *out)
{
    struct atok *a = self;
    const char *peer = info->peer_addr ? info->peer_addr : "-";
    struct atok_presented p;
    if (atok_presented_read(info, tconn, a->header, a->md, &p) != ARQ_OK) {
        ARQ_LOG(a->host, a->ctx, ARQ_LOG_ERROR, "cannot check a token: libcrypto failed", "peer",
                peer);
        if (a->refused)
            a->host->metric_add(a->refused, 1);
        return atok__deny(out, 401, "token check failed");
    }
    if (p.count == 0) {
        out->verdict = ARQ_AUTH_DEFER;
        return ARQ_AUTH_DEFER;
    }

    /* Every presented token is checked; the first source (in enum order) that matches wins. */
    long found = -1;
    enum atok_source via = ATOK_SRC_COUNT;
    for (int src = 0; src < ATOK_SRC_COUNT; src++) {
        if (!p.present[src])
            continue;
        long i = atok_table_match(&a->table, p.digest[src]);
        if (found < 0 && i >= 0) {
            found = i;
            via = (enum atok_source)src;
        } else if (found < 0 && via == ATOK_SRC_COUNT) {
            via = (enum atok_source)src; /* the first source, for the log of an unknown token */
        }
    }
    OPENSSL_cleanse(&p, sizeof p);

    if (found >= 0) {
        const struct atok_entry *e = &a->table.entries[found];
        atok__principal(e, out);
        out->verdict = ARQ_AUTH_ALLOW;
        if (a->allowed)
            a->host->metric_add(a->allowed, 1);
        ARQ_LOG(a->host, a->ctx, ARQ_LOG_DEBUG, "token accepted", "name", e->name, "role", e->role,
                "source", atok_source_name(via), "peer", peer);
        return ARQ_AUTH_ALLOW;
    }
    if (a->defer_unknown) {
        ARQ_LOG(a->host, a->ctx, ARQ_LOG_DEBUG, "unknown token deferred", "source",
                atok_source_name(via), "peer", peer);
        out->verdict = ARQ_AUTH_DEFER;
        return ARQ_AUTH_DEFER;
    }
    if (a->refused)
        a->host->metric_add(a->refused, 1);
    ARQ_LOG(a->host, a->ctx, ARQ_LOG_INFO, "unknown token refused", "source", atok_source_name(via),
            "peer", peer);
    return atok__deny(out, 401, "unknown token");
}

static enum arq_auth_verdict atok_refresh(void *self, const struct arq_principal *who,
                                          struct arq_auth_result *out)
{
    struct atok *a = self;
    if (!who || !who->subject) {
        out->verdict = ARQ_AUTH_DEFER; /* not a client of ours */
        return ARQ_AUTH_DEFER;
    }
    const struct atok_entry *e = atok_table_find(&a->table, who->subject);
    if (!e) {
        ARQ_LOG(a->host, a->ctx, ARQ_LOG_INFO, "token revoked", "name", who->subject);
        out->verdict = ARQ_AUTH_DENY;
        snprintf(out->reason, sizeof out->reason, "token revoked");
        return ARQ_AUTH_DENY;
    }
    atok__principal(e, out);
    out->verdict = ARQ_AUTH_ALLOW;
    return ARQ_AUTH_ALLOW;
}

static const struct arq_auth_ops ops = {
    .struct_size = sizeof ops,
    .authenticate = atok_authenticate,
    .authorize = NULL,
    .refresh = atok_refresh,
};

/* 5. The descriptor, and the one exported symbol. */
static const struct arq_plugin descriptor = {
    ARQ_PLUGIN_HEAD,         .name = "auth-tokens",
    .version = "1.0.0",      .summary = "static API tokens with roles, from the configuration",
    .kind = ARQ_KIND_AUTH,   .options = options,
    .create = atok_create,   .reconfigure = atok_reconfigure,
    .destroy = atok_destroy, .ops = &ops,
};
ARQ_PLUGIN(descriptor)
