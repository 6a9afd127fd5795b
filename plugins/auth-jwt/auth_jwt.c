/* auth-jwt: an auth policy that admits clients presenting a JSON Web Token signed with a shared
 * secret (HS256/384/512) or by the holder of an RSA or EC key (RS256/384/512, ES256/384/512),
 * read from `Authorization: Bearer`, the `token`/`access_token` query parameter, or a
 * `bearer.<token>` WebSocket subprotocol. It only authenticates (at the handshake); what a
 * client may do afterwards is for the policies after it.
 *
 * Every option is RELOADABLE: a reload builds new rules aside (reading the key file again) and
 * swaps them in whole, or keeps the old ones when the new ones are refused. The token checks
 * themselves are in ajwt_token.c, the options' meaning in ajwt_rules.c. See README.md. */
#include <arqonbus/plugin.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ajwt.h"

/* 1. Options. */
static const struct arq_option options[] = {
    ARQ_OPT("secret", ARQ_OPT_STRING, NULL, ARQ_OPT_SECRET | ARQ_OPT_RELOADABLE,
            "shared secret of HS256/384/512 tokens (at least 32/48/64 bytes)"),
    ARQ_OPT("public_key_file", ARQ_OPT_STRING, NULL, ARQ_OPT_RELOADABLE,
            "PEM file with the RSA (RS*) or EC (ES*) public key that verifies tokens; read at "
            "start and at every reload that changes an option"),
    ARQ_OPT("algorithms", ARQ_OPT_STRING_LIST, NULL, ARQ_OPT_RELOADABLE,
            "algorithms accepted in a token's header; default: HS256 with `secret`, and the one "
            "that fits the public key (RS256 for RSA, ES256/384/512 for EC P-256/384/521)"),
    ARQ_OPT_RANGE("leeway", ARQ_OPT_DURATION, "30s", 0, 3600000, ARQ_OPT_RELOADABLE,
                  "clock skew allowed when checking exp, nbf and iat"),
    ARQ_OPT("issuer", ARQ_OPT_STRING, NULL, ARQ_OPT_RELOADABLE,
            "when set, a token's `iss` must be exactly this"),
    ARQ_OPT("audience", ARQ_OPT_STRING, NULL, ARQ_OPT_RELOADABLE,
            "when set, a token's `aud` must be this, or an array that contains it"),
    ARQ_OPT("subject_claim", ARQ_OPT_STRING, "sub", ARQ_OPT_RELOADABLE,
            "claim naming the client (required, a string)"),
    ARQ_OPT("role_claim", ARQ_OPT_STRING, "role", ARQ_OPT_RELOADABLE,
            "claim giving the client's role (a string)"),
    ARQ_OPT("tenant_claim", ARQ_OPT_STRING, "tenant", ARQ_OPT_RELOADABLE,
            "claim giving the client's tenant (a string; none when absent)"),
    ARQ_OPT("default_role", ARQ_OPT_STRING, "user", ARQ_OPT_RELOADABLE,
            "role of a valid token without the role claim"),
    ARQ_OPT("required", ARQ_OPT_BOOL, "true", ARQ_OPT_RELOADABLE,
            "a request without a token is refused (401); false: the next policy decides"),
    ARQ_OPT("require_exp", ARQ_OPT_BOOL, "true", ARQ_OPT_RELOADABLE,
            "a token without `exp` is refused"),
    ARQ_OPT_END};

/* 2. Instance state. */
struct ajwt {
    const struct arq_host *host;
    arq_ctx *ctx;
    struct ajwt_rules *rules;
    /* What the last ALLOW pointed the principal to, kept until the next call. */
    json_t *last_claims;
    char *last_role;
    arq_series *allowed;
    arq_series *refused[AJWT_NREFUSALS];
};

static int64_t ajwt__now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void ajwt__forget(struct ajwt *a)
{
    json_decref(a->last_claims);
    a->last_claims = NULL;
    free(a->last_role);
    a->last_role = NULL;
}

/* 3. Life cycle. Nothing here but reading the key file: metrics are registered by start. */
static int ajwt_create(const struct arq_host *host, arq_ctx *ctx, const json_t *cfg, void **self,
                       struct arq_error *err)
{
    struct ajwt *a = calloc(1, sizeof *a);
    if (!a)
        return arq_error_set(err, ARQ_ENOMEM, "out of memory");
    a->host = host;
    a->ctx = ctx;
    int rc = ajwt_rules_new(host, cfg, &a->rules, err);
    if (rc != ARQ_OK) {
        free(a);
        return rc;
    }
    *self = a;
    return ARQ_OK;
}

static int ajwt_start(void *self, void *predecessor, struct arq_error *err)
{
    struct ajwt *a = self;
    static const char *const by_reason[] = {"instance", "reason", NULL};
    (void)predecessor;
    (void)err;
    a->allowed =
        arq_instance_series(a->host, a->ctx, ARQ_METRIC_COUNTER, "arqonbus_auth_jwt_allowed_total",
                            "Handshakes whose token auth-jwt accepted.");
    arq_metric *refused = a->host->metric_register(
        a->ctx, ARQ_METRIC_COUNTER, "arqonbus_auth_jwt_refused_total",
        "Handshakes auth-jwt refused, by reason: missing, malformed, algorithm, signature, "
        "expired, not_yet_valid, issued_in_future, issuer, audience, claims, internal",
        by_reason, NULL, 0);
    /* Every series up front, so that a scrape shows zeros rather than nothing. */
    for (int r = AJWT_MISSING; refused && r < AJWT_NREFUSALS; r++) {
        const char *labels[] = {a->host->instance_name(a->ctx),
                                ajwt_refusal_word((enum ajwt_refusal)r), NULL};
        a->refused[r] = a->host->metric_series(refused, labels);
    }
    return ARQ_OK;
}

/* All or nothing: the new rules are built whole (key file included) before the swap. */
static int ajwt_reconfigure(void *self, const json_t *cfg, struct arq_error *err)
{
    struct ajwt *a = self;
    struct ajwt_rules *rules = NULL;
    int rc = ajwt_rules_new(a->host, cfg, &rules, err);
    if (rc != ARQ_OK)
        return rc;
    ajwt_rules_free(a->rules);
    a->rules = rules;
    return ARQ_OK;
}

static void ajwt_destroy(void *self)
{
    struct ajwt *a = self;
    ajwt__forget(a);
    ajwt_rules_free(a->rules);
    free(a);
}

/* 4. The auth work. */
static enum arq_auth_verdict ajwt__refuse(struct ajwt *a, enum ajwt_refusal why,
                                          enum ajwt_source source, const char *detail,
                                          const struct arq_conn_info *info,
                                          struct arq_auth_result *out)
{
    if (a->refused[why])
        a->host->metric_add(a->refused[why], 1);
    /* Debug only: the host logs refused handshakes itself. Never the token. */
    if (a->host->log_enabled(a->ctx, ARQ_LOG_DEBUG))
        ARQ_LOG(a->host, a->ctx, ARQ_LOG_DEBUG, "token refused", "reason", out->reason, "detail",
                detail ? detail : "-", "source", ajwt_source_name(source), "peer",
                info->peer_addr ? info->peer_addr : "-");
    out->verdict = ARQ_AUTH_DENY;
    out->http_status = 401;
    return ARQ_AUTH_DENY;
}

static enum arq_auth_verdict ajwt_authenticate(void *self, const struct arq_conn_info *info,
                                               void *tconn, struct arq_auth_result *out)
{
    struct ajwt *a = self;
    const struct ajwt_rules *r = a->rules;
    char *token = NULL;
    enum ajwt_source source;
    const char *detail = NULL;
    struct ajwt_identity id = {0};
    ajwt__forget(a);

    enum ajwt_refusal why =
        ajwt_find_token(info, tconn, &token, &source, out->reason, sizeof out->reason, &detail);
    if (why == AJWT_MISSING && !r->required) {
        out->reason[0] = '\0';
        out->verdict = ARQ_AUTH_DEFER;
        return ARQ_AUTH_DEFER;
    }
    if (why == AJWT_OK) {
        why = ajwt_verify(r, token, ajwt__now_ms(), &id, out->reason, sizeof out->reason, &detail);
        OPENSSL_cleanse(token, strlen(token));
    }
    free(token);
    if (why != AJWT_OK)
        return ajwt__refuse(a, why, source, detail, info, out);

    /* The default role lives in the rules, which a reconfigure may free: keep a copy. */
    if (id.role == r->default_role && !(a->last_role = strdup(id.role))) {
        json_decref(id.claims);
        snprintf(out->reason, sizeof out->reason, "internal error");
        return ajwt__refuse(a, AJWT_INTERNAL, source, "out of memory", info, out);
    }
    a->last_claims = id.claims;
    out->principal.subject = id.subject;
    out->principal.role = a->last_role ? a->last_role : id.role;
    out->principal.tenant = id.tenant;
    out->principal.claims = id.claims;
    out->verdict = ARQ_AUTH_ALLOW;
    if (a->allowed)
        a->host->metric_add(a->allowed, 1);
    return ARQ_AUTH_ALLOW;
}

static const struct arq_auth_ops ops = {
    .struct_size = sizeof ops,
    .authenticate = ajwt_authenticate,
    .authorize = NULL,
    .refresh = NULL,
};

/* 5. The descriptor, and the one exported symbol. */
static const struct arq_plugin descriptor = {
    ARQ_PLUGIN_HEAD,
    .name = "auth-jwt",
    .version = "1.0.0",
    .summary = "authenticates clients by a JWT (HS*, RS*, ES*) from Authorization: Bearer, "
               "?token= or a bearer.<token> WebSocket subprotocol",
    .kind = ARQ_KIND_AUTH,
    .options = options,
    .create = ajwt_create,
    .start = ajwt_start,
    .reconfigure = ajwt_reconfigure,
    .destroy = ajwt_destroy,
    .ops = &ops,
};

ARQ_PLUGIN(descriptor)
