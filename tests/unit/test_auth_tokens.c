/* auth-tokens (the built plugins/auth-tokens.so) against the mock host: tokens given as sha256 or
 * plain text admit a request as their entry; each token source (Authorization: Bearer, the extra
 * header, Sec-WebSocket-Protocol bearer.<token>, the token and access_token query parameters,
 * percent-decoded); unknown tokens denied or deferred by on_unknown; no token deferred; the
 * configuration errors an operator can make; reconfigure and refresh after a reload; metrics.
 *
 * Every test token contains "Token", and teardown checks that no log line of any test holds it,
 * nor the tail of a token or the head of a digest. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "diag.h"
#include "mock_host.h"

#define PLUGIN ARQ_BUILD_PLUGIN_DIR "/auth-tokens.so"

/* Tokens and their SHA-256, from `printf %s "$TOKEN" | sha256sum`. */
#define CI_TOKEN    "ci-Token-7f3a9c2e51"
#define CI_SHA      "626b7a00413f9b4e6e4dfed89e2e4b46f705653b2364bc5703d6ef578f41800c"
#define ADMIN_TOKEN "plain-admin-Token-5b8d1e" /* given in plain text */
#define OPS_TOKEN   "ops-Token-e4c0a91f"
#define OPS_SHA     "dddc0679c6414e8bf61b5cdc6e72e5d1370ecb7d6e7db5aa572b8c92f6e18b95"
#define B64_TOKEN   "b64+Token/x9=" /* characters a query may carry unencoded */
#define B64_SHA     "5e3dcaef4ab0088287fd15c34196637bccdadacb885f75910e91594370aad71a"
#define WRONG_TOKEN "wrong-Token-000000"

/* What no log line and no error message may contain. */
static const char *const secrets[] = {"Token",
                                      "7f3a9c2e51",
                                      "5b8d1e",
                                      "e4c0a91f",
                                      "x9=",
                                      "000000",
                                      "626b7a00413f",
                                      "dddc0679c641",
                                      "5e3dcaef4ab0",
                                      "4e6e4dfed89e",
                                      "eeb3f48022c2", /* sha256 of ADMIN_TOKEN */
                                      NULL};

/* ci (sha256, tenant acme), admin (plain), ops (sha256, no tenant). */
#define TOKENS                                                                                     \
    "tokens:\n"                                                                                    \
    "  - name: ci\n"                                                                               \
    "    sha256: \"" CI_SHA "\"\n"                                                                 \
    "    role: user\n"                                                                             \
    "    tenant: acme\n"                                                                           \
    "  - name: admin\n"                                                                            \
    "    token: " ADMIN_TOKEN "\n"                                                                 \
    "    role: admin\n"                                                                            \
    "  - name: ops\n"                                                                              \
    "    sha256: " OPS_SHA "\n"                                                                    \
    "    role: operator\n"

static void *handle;
static const struct arq_plugin *desc;
static const struct arq_auth_ops *ops;

static int load_plugin(void **state)
{
    (void)state;
    desc = mock_host_load_plugin(PLUGIN, &handle);
    ops = desc ? desc->ops : NULL;
    return desc ? 0 : -1;
}

static int unload_plugin(void **state)
{
    (void)state;
    return mock_host_unload_plugin(handle);
}

static void assert_no_secret(const char *text)
{
    for (size_t i = 0; secrets[i]; i++)
        if (strstr(text, secrets[i]))
            fail_msg("\"%s\" shows a token or digest (\"%s\")", text, secrets[i]);
}

static int setup(void **state)
{
    return mock_instance_setup(state, "tok");
}

static int teardown(void **state)
{
    struct mock_instance *f = *state;
    if (f->self)
        desc->destroy(f->self);
    f->self = NULL;
    for (size_t i = 0; i < mock_host_log_count(f->mh); i++)
        assert_no_secret(mock_host_log_line(f->mh, i));
    return mock_instance_teardown(state, desc);
}

static json_t *config(const char *yaml)
{
    json_t *cfg = mock_host_validate(desc->options, yaml, NULL);
    assert_non_null(cfg);
    return cfg;
}

static void create(struct mock_instance *f, const char *yaml)
{
    mock_host_create_plugin(f->mh, desc, config(yaml), &f->self);
}

/* A request: headers from a NULL-terminated table of name/value pairs, and a raw query. */
struct request {
    const char *const *headers; /* name, value, name, value, ..., NULL */
    const char *query;
};

static const char *request_header(void *tconn, const char *name)
{
    const struct request *r = tconn;
    for (size_t i = 0; r->headers && r->headers[i]; i += 2)
        if (strcasecmp(r->headers[i], name) == 0)
            return r->headers[i + 1];
    return NULL;
}

static enum arq_auth_verdict authenticate(struct mock_instance *f, const char *const *headers,
                                          const char *query, struct arq_auth_result *out)
{
    struct request r = {headers, query};
    struct arq_conn_info info = {.struct_size = sizeof info,
                                 .transport = "websocket",
                                 .peer_addr = "192.0.2.7",
                                 .peer_port = 50000,
                                 .path = "/",
                                 .query = query,
                                 .header = request_header};
    memset(out, 0, sizeof *out);
    out->struct_size = sizeof *out;
    return ops->authenticate(f->self, &info, &r, out);
}

/* The request is admitted as `name` with `role` and `tenant` (NULL: none). */
static void assert_allowed(struct mock_instance *f, const char *const *headers, const char *query,
                           const char *name, const char *role, const char *tenant)
{
    struct arq_auth_result out;
    assert_int_equal(authenticate(f, headers, query, &out), ARQ_AUTH_ALLOW);
    assert_string_equal(out.principal.subject, name);
    assert_string_equal(out.principal.role, role);
    if (tenant)
        assert_string_equal(out.principal.tenant, tenant);
    else
        assert_null(out.principal.tenant);
    assert_null(out.principal.claims);
    assert_int_equal(out.principal.struct_size, sizeof out.principal);
}

static void assert_verdict(struct mock_instance *f, const char *const *headers, const char *query,
                           enum arq_auth_verdict want)
{
    struct arq_auth_result out;
    assert_int_equal(authenticate(f, headers, query, &out), want);
    if (want == ARQ_AUTH_DENY) {
        assert_int_equal(out.http_status, 401);
        assert_string_equal(out.reason, "unknown token");
    }
}

static enum arq_auth_verdict refresh(struct mock_instance *f, const char *subject, const char *role,
                                     struct arq_auth_result *out)
{
    struct arq_principal who = {.struct_size = sizeof who, .subject = subject, .role = role};
    memset(out, 0, sizeof *out);
    out->struct_size = sizeof *out;
    return ops->refresh(f->self, &who, out);
}

/* --- the descriptor -------------------------------------------------------------------------- */

static void test_descriptor_is_an_auth_policy_with_authenticate_and_refresh(void **state)
{
    (void)state;
    assert_string_equal(desc->name, "auth-tokens");
    assert_int_equal(desc->kind, ARQ_KIND_AUTH);
    assert_non_null(ops->authenticate);
    assert_null(ops->authorize);
    assert_non_null(ops->refresh);
    assert_non_null(desc->reconfigure);

    const struct arq_option *o = desc->options;
    assert_string_equal(o[0].name, "tokens");
    assert_int_equal(o[0].type, ARQ_OPT_JSON);
    assert_int_equal(o[0].flags & (ARQ_OPT_REQUIRED | ARQ_OPT_RELOADABLE | ARQ_OPT_SECRET),
                     ARQ_OPT_REQUIRED | ARQ_OPT_RELOADABLE | ARQ_OPT_SECRET);
    assert_string_equal(o[1].name, "on_unknown");
    assert_int_equal(o[1].type, ARQ_OPT_ENUM);
    assert_true(o[1].flags & ARQ_OPT_RELOADABLE);
    assert_string_equal(o[1].default_value, "deny");
    assert_string_equal(o[2].name, "header");
    assert_int_equal(o[2].type, ARQ_OPT_STRING);
    assert_string_equal(o[2].default_value, "");
    assert_null(o[3].name);

    /* tokens is required. */
    struct diag_list d = {0};
    assert_null(mock_host_validate(desc->options, "on_unknown: defer\n", &d));
    assert_int_equal(d.n, 1);
    assert_non_null(strstr(d.items[0], "missing required option \"tokens\""));
    diag_clear(&d);
}

/* --- admitting ------------------------------------------------------------------------------- */

static void test_sha256_entry_allows_with_name_role_and_tenant(void **state)
{
    struct mock_instance *f = *state;
    create(f, TOKENS);
    const char *const ci[] = {"Authorization", "Bearer " CI_TOKEN, NULL};
    assert_allowed(f, ci, NULL, "ci", "user", "acme");
    const char *const ops_h[] = {"Authorization", "Bearer " OPS_TOKEN, NULL};
    assert_allowed(f, ops_h, NULL, "ops", "operator", NULL);
}

static void test_plain_entry_allows_and_warns_naming_the_entry_only(void **state)
{
    struct mock_instance *f = *state;
    create(f, TOKENS);
    const char *const h[] = {"Authorization", "Bearer " ADMIN_TOKEN, NULL};
    assert_allowed(f, h, NULL, "admin", "admin", NULL);

    /* One warning, for the one plain entry, by index and name. */
    assert_int_equal(mock_host_log_matching(f->mh, "plain token"), 1);
    assert_int_equal(mock_host_log_matching(f->mh, "warn plain token in the configuration"), 1);
    assert_int_equal(mock_host_log_matching(f->mh, "entry=tokens[1] name=admin"), 1);
    assert_int_equal(mock_host_log_matching(f->mh, "info tokens loaded count=3 on_unknown=deny"),
                     1);
}

static void test_unknown_token_is_denied_401_when_on_unknown_is_deny(void **state)
{
    struct mock_instance *f = *state;
    create(f, TOKENS);
    const char *const h[] = {"Authorization", "Bearer " WRONG_TOKEN, NULL};
    assert_verdict(f, h, NULL, ARQ_AUTH_DENY);
    /* A prefix or an extension of a known token is just as unknown. */
    const char *const prefix[] = {"Authorization", "Bearer ci-Token-7f3a9c2e5", NULL};
    assert_verdict(f, prefix, NULL, ARQ_AUTH_DENY);
    const char *const longer[] = {"Authorization", "Bearer " CI_TOKEN "0", NULL};
    assert_verdict(f, longer, NULL, ARQ_AUTH_DENY);
    /* The digest is not the token. */
    const char *const digest[] = {"Authorization", "Bearer " CI_SHA, NULL};
    assert_verdict(f, digest, NULL, ARQ_AUTH_DENY);
    assert_int_equal(mock_host_log_matching(
                         f->mh, "info unknown token refused source=authorization peer=192.0.2.7"),
                     4);
}

static void test_unknown_token_is_deferred_when_on_unknown_is_defer(void **state)
{
    struct mock_instance *f = *state;
    create(f, TOKENS "on_unknown: defer\n");
    const char *const h[] = {"Authorization", "Bearer " WRONG_TOKEN, NULL};
    assert_verdict(f, h, NULL, ARQ_AUTH_DEFER);
    assert_verdict(f, NULL, "token=" WRONG_TOKEN, ARQ_AUTH_DEFER);
    /* Known tokens are still admitted. */
    const char *const ci[] = {"Authorization", "Bearer " CI_TOKEN, NULL};
    assert_allowed(f, ci, NULL, "ci", "user", "acme");
}

static void test_no_token_defers(void **state)
{
    struct mock_instance *f = *state;
    create(f, TOKENS);
    assert_verdict(f, NULL, NULL, ARQ_AUTH_DEFER);
    const char *const other[] = {"User-Agent", "test", "Cookie", "token=" CI_TOKEN, NULL};
    assert_verdict(f, other, "room=lobby&tokens=x&xtoken=y", ARQ_AUTH_DEFER);
    /* Another scheme is not ours (auth-jwt or the host may want it). */
    const char *const basic[] = {"Authorization", "Basic dXNlcjpwYXNz", NULL};
    assert_verdict(f, basic, NULL, ARQ_AUTH_DEFER);
    const char *const bearerish[] = {"Authorization", "Bearerx " CI_TOKEN, NULL};
    assert_verdict(f, bearerish, NULL, ARQ_AUTH_DEFER);
    /* Empty values present nothing. */
    const char *const empty[] = {"Authorization", "Bearer   ", "Sec-WebSocket-Protocol",
                                 "chat, bearer.", NULL};
    assert_verdict(f, empty, "token=&access_token", ARQ_AUTH_DEFER);
    /* The first occurrence is the source's value, even when empty: a later one is not read. */
    const char *const empty_first[] = {"Sec-WebSocket-Protocol", "bearer., bearer." CI_TOKEN, NULL};
    assert_verdict(f, empty_first, "token=&token=" CI_TOKEN "&access_token=&access_token=" CI_TOKEN,
                   ARQ_AUTH_DEFER);
    /* Without a header callback, only the query counts. */
    struct arq_conn_info info = {.struct_size = sizeof info, .transport = "websocket"};
    struct arq_auth_result out = {.struct_size = sizeof out};
    assert_int_equal(ops->authenticate(f->self, &info, NULL, &out), ARQ_AUTH_DEFER);
    info.query = "token=" CI_TOKEN;
    assert_int_equal(ops->authenticate(f->self, &info, NULL, &out), ARQ_AUTH_ALLOW);
    assert_string_equal(out.principal.subject, "ci");
}

/* --- token sources --------------------------------------------------------------------------- */

static void test_bearer_scheme_is_case_insensitive_and_spacing_is_trimmed(void **state)
{
    struct mock_instance *f = *state;
    create(f, TOKENS);
    const char *const lower[] = {"authorization", "bearer " CI_TOKEN, NULL};
    assert_allowed(f, lower, NULL, "ci", "user", "acme");
    const char *const upper[] = {"Authorization", "BEARER " CI_TOKEN, NULL};
    assert_allowed(f, upper, NULL, "ci", "user", "acme");
    const char *const spaced[] = {"Authorization", " \tBearer \t " CI_TOKEN " \t", NULL};
    assert_allowed(f, spaced, NULL, "ci", "user", "acme");
    /* The token itself is case-sensitive. */
    const char *const changed[] = {"Authorization", "Bearer CI-Token-7f3a9c2e51", NULL};
    assert_verdict(f, changed, NULL, ARQ_AUTH_DENY);
}

static void test_query_token_and_access_token_are_read(void **state)
{
    struct mock_instance *f = *state;
    create(f, TOKENS);
    assert_allowed(f, NULL, "token=" CI_TOKEN, "ci", "user", "acme");
    assert_allowed(f, NULL, "access_token=" OPS_TOKEN, "ops", "operator", NULL);
    assert_allowed(f, NULL, "room=lobby&access_token=" ADMIN_TOKEN "&x=1", "admin", "admin", NULL);
    /* The first token parameter counts; a later one does not replace it. */
    assert_verdict(f, NULL, "token=" WRONG_TOKEN "&token=" CI_TOKEN, ARQ_AUTH_DENY);
    assert_int_equal(mock_host_log_matching(f->mh, "unknown token refused source=query"), 1);
}

static void test_query_token_is_percent_decoded(void **state)
{
    struct mock_instance *f = *state;
    create(f, TOKENS "  - name: b64\n"
                     "    sha256: " B64_SHA "\n"
                     "    role: user\n"
                     "    tenant: null\n"); /* the same as none */
    /* %XX in either case, in the value and in the key. */
    assert_allowed(f, NULL, "token=ci%2DToken%2d7f3a9c2e51", "ci", "user", "acme");
    assert_allowed(f, NULL, "%74oken=%63i-Token-7f3a9c2e51", "ci", "user", "acme");
    assert_allowed(f, NULL, "access%5Ftoken=%6F%70%73-Token-e4c0a91f", "ops", "operator", NULL);
    /* + is kept as it is, and so is a % that starts no escape. */
    assert_allowed(f, NULL, "token=b64%2BToken%2Fx9%3D", "b64", "user", NULL);
    assert_allowed(f, NULL, "token=b64+Token/x9=", "b64", "user", NULL);
    assert_verdict(f, NULL, "token=b64%20Token%2Fx9%3D", ARQ_AUTH_DENY);
    assert_verdict(f, NULL, "token=ci-Token-7f3a9c2e51%", ARQ_AUTH_DENY);
    assert_verdict(f, NULL, "token=ci-Token-7f3a9c2e51%2", ARQ_AUTH_DENY);
    assert_verdict(f, NULL, "token=%zzci-Token-7f3a9c2e51", ARQ_AUTH_DENY);
    /* A parameter without '=' has no value; the next one is read. */
    assert_allowed(f, NULL, "token&token=%63i-Token-7f3a9c2e51&", "ci", "user", "acme");
}

static void test_subprotocol_bearer_entry_is_read(void **state)
{
    struct mock_instance *f = *state;
    create(f, TOKENS);
    const char *const only[] = {"Sec-WebSocket-Protocol", "bearer." CI_TOKEN, NULL};
    assert_allowed(f, only, NULL, "ci", "user", "acme");
    const char *const among[] = {"Sec-WebSocket-Protocol",
                                 "arqonbus.v1 ,  bearer." OPS_TOKEN " , chat", NULL};
    assert_allowed(f, among, NULL, "ops", "operator", NULL);
    /* The prefix is bearer. exactly, and the first bearer. entry counts. */
    const char *const other[] = {"Sec-WebSocket-Protocol", "Bearer." CI_TOKEN ", x.bearer.y", NULL};
    assert_verdict(f, other, NULL, ARQ_AUTH_DEFER);
    const char *const two[] = {"Sec-WebSocket-Protocol", "bearer." WRONG_TOKEN ", bearer." CI_TOKEN,
                               NULL};
    assert_verdict(f, two, NULL, ARQ_AUTH_DENY);
}

static void test_extra_header_is_read_only_when_configured(void **state)
{
    struct mock_instance *f = *state;
    const char *const h[] = {"x-api-key", "  " OPS_TOKEN " ", NULL};

    create(f, TOKENS);
    assert_verdict(f, h, NULL, ARQ_AUTH_DEFER);
    desc->destroy(f->self);
    f->self = NULL;

    create(f, TOKENS "header: X-API-Key\n");
    assert_allowed(f, h, NULL, "ops", "operator", NULL);
    const char *const wrong[] = {"X-Api-Key", WRONG_TOKEN, NULL};
    assert_verdict(f, wrong, NULL, ARQ_AUTH_DENY);
    assert_int_equal(mock_host_log_matching(f->mh, "unknown token refused source=header"), 1);
}

static void test_every_presented_token_is_checked_and_the_first_known_one_wins(void **state)
{
    struct mock_instance *f = *state;
    create(f, TOKENS "header: X-API-Key\n");
    /* A token meant for another policy in Authorization does not hide ours elsewhere. */
    const char *const h[] = {"Authorization", "Bearer " WRONG_TOKEN, "Sec-WebSocket-Protocol",
                             "bearer." OPS_TOKEN, NULL};
    assert_allowed(f, h, "token=" CI_TOKEN, "ops", "operator", NULL);
    /* In order: Authorization, the extra header, the subprotocol, the query. */
    const char *const all[] = {
        "Authorization",          "Bearer " ADMIN_TOKEN, "X-API-Key", CI_TOKEN,
        "Sec-WebSocket-Protocol", "bearer." OPS_TOKEN,   NULL};
    assert_allowed(f, all, "token=" CI_TOKEN, "admin", "admin", NULL);
    assert_allowed(f, all + 2, "token=" ADMIN_TOKEN, "ci", "user", "acme");
    assert_allowed(f, all + 4, "token=" ADMIN_TOKEN, "ops", "operator", NULL);
    assert_allowed(f, NULL, "access_token=" ADMIN_TOKEN "&token=" CI_TOKEN, "ci", "user", "acme");
}

/* --- configuration errors -------------------------------------------------------------------- */

/* create refuses `yaml` with ARQ_EINVAL and exactly `want`. */
static void assert_refused(const char *yaml, const char *want)
{
    struct mock_host *mh = mock_host_new("tok");
    assert_non_null(mh);
    json_t *cfg = config(yaml);
    struct arq_error err = {""};
    void *self = NULL;
    int rc = desc->create(mock_host_api(), mock_host_ctx(mh), cfg, &self, &err);
    json_decref(cfg);
    if (rc == ARQ_OK)
        desc->destroy(self);
    assert_int_equal(rc, ARQ_EINVAL);
    assert_null(self);
    assert_string_equal(err.text, want);
    assert_no_secret(err.text);
    for (size_t i = 0; i < mock_host_log_count(mh); i++)
        assert_no_secret(mock_host_log_line(mh, i));
    mock_host_free(mh);
}

static void test_config_errors_name_the_entry(void **state)
{
    (void)state;
    assert_refused("tokens:\n  - sha256: " CI_SHA "\n    role: user\n", "tokens[0]: missing name");
    assert_refused(TOKENS "  - name: ci\n    token: x-Token-1\n    role: user\n",
                   "tokens[3] (\"ci\"): duplicate name: tokens[0] has it already; names must "
                   "be unique");
    assert_refused("tokens:\n  - name: ci\n    sha256: " CI_SHA "\n    token: " CI_TOKEN
                   "\n    role: user\n",
                   "tokens[0] (\"ci\"): give either sha256 or token, not both (sha256 is "
                   "advised)");
    assert_refused("tokens:\n  - name: ci\n    role: user\n",
                   "tokens[0] (\"ci\"): missing sha256 (the SHA-256 of the token, in hex; or "
                   "token, the token itself)");
    assert_refused(TOKENS "  - name: short\n    sha256: 626b7a00413f9b4e6e4d\n    role: user\n",
                   "tokens[3] (\"short\"): sha256 must be 64 hexadecimal digits (the first "
                   "field of sha256sum's output), not 20 characters");
    assert_refused("tokens:\n  - name: pasted\n    sha256: \"" CI_SHA "  -\"\n    role: user\n",
                   "tokens[0] (\"pasted\"): sha256 must be 64 hexadecimal digits (the first "
                   "field of sha256sum's output), not 67 characters");
    assert_refused("tokens:\n  - name: ci\n    sha256: "
                   "626b7a00413f9b4e6e4dfed89e2e4b46f705653b2364bc5703d6ef578f41800g\n"
                   "    role: user\n",
                   "tokens[0] (\"ci\"): sha256 must be 64 hexadecimal digits; character 64 is "
                   "not one");
    assert_refused("tokens:\n  - name: ci\n    sha256: " CI_SHA "\n    rol: user\n",
                   "tokens[0] (\"ci\"): unknown key \"rol\"; allowed: name, sha256, token, role, "
                   "tenant (did you mean \"role\"?)");
    assert_refused("tokens:\n  - nmae: ci\n    sha256: " CI_SHA "\n    role: user\n",
                   "tokens[0]: unknown key \"nmae\"; allowed: name, sha256, token, role, tenant "
                   "(did you mean \"name\"?)");
    assert_refused("tokens:\n  - name: ci\n    sha256: " CI_SHA "\n    role: user\n"
                   "    expires: 2030\n",
                   "tokens[0] (\"ci\"): unknown key \"expires\"; allowed: name, sha256, token, "
                   "role, tenant");
    assert_refused("tokens:\n  - name: ci\n    sha256: " CI_SHA "\n",
                   "tokens[0] (\"ci\"): missing role");
    assert_refused("tokens:\n  - name: ci\n    sha256: " CI_SHA "\n    role: \"\"\n",
                   "tokens[0] (\"ci\"): role is empty");
    assert_refused("tokens:\n  - name: ci\n    sha256: " CI_SHA "\n    role: user\n"
                   "    tenant: \"\"\n",
                   "tokens[0] (\"ci\"): tenant is empty (leave it out for none)");
}

static void test_config_errors_of_shape_and_type(void **state)
{
    (void)state;
    assert_refused("tokens: {name: ci}\n",
                   "tokens: expected a list of {name, sha256 or token, role, tenant?}, not a "
                   "mapping");
    assert_refused(TOKENS "  - ops\n",
                   "tokens[3]: expected a mapping {name, sha256 or token, role, tenant?}, not "
                   "text");
    /* YAML reads unquoted digits as a number: the message says to quote it. */
    assert_refused("tokens:\n  - name: ci\n    token: 123456789012\n    role: user\n",
                   "tokens[0] (\"ci\"): token must be text, not a number (quote it in the YAML)");
    assert_refused("tokens:\n  - name: ci\n    sha256: "
                   "1234567890123456789012345678901234567890123456789012345678901234\n"
                   "    role: user\n",
                   "tokens[0] (\"ci\"): sha256 must be text, not a number (quote it in the "
                   "YAML)");
    assert_refused("tokens:\n  - name: 7\n    token: x-Token-7\n    role: user\n",
                   "tokens[0]: name must be text, not a number (quote it in the YAML)");
    assert_refused("tokens:\n  - name: ci\n    token: x-Token-7\n    role: [user]\n",
                   "tokens[0] (\"ci\"): role must be text, not a list");
    assert_refused("tokens:\n  - name: ci\n    token: \"two Token-words\"\n    role: user\n",
                   "tokens[0] (\"ci\"): token contains a space or a control character (at byte "
                   "4); a client could not send it");
    assert_refused("tokens:\n  - name: ci\n    token: \"\"\n    role: user\n",
                   "tokens[0] (\"ci\"): token is empty");
    /* The same token twice, once hashed and once plain. */
    assert_refused(TOKENS "  - name: ci2\n    token: " CI_TOKEN "\n    role: admin\n",
                   "tokens[3] (\"ci2\"): same token as tokens[0] (\"ci\"); every entry needs a "
                   "token of its own");
    assert_refused(TOKENS "header: \"X API Key\"\n",
                   "header: \"X API Key\" is not a header name (letters, digits and "
                   "!#$%&'*+-.^_`|~ only)");
    assert_refused(TOKENS "header: authorization\n",
                   "header: authorization is read already (see the README); name another "
                   "header, or leave header empty");
}

static void test_empty_list_warns_and_every_token_is_unknown(void **state)
{
    struct mock_instance *f = *state;
    create(f, "tokens: []\n");
    assert_int_equal(mock_host_log_matching(f->mh, "warn no tokens"), 1);
    const char *const h[] = {"Authorization", "Bearer " CI_TOKEN, NULL};
    assert_verdict(f, h, NULL, ARQ_AUTH_DENY);
    assert_verdict(f, NULL, NULL, ARQ_AUTH_DEFER);
}

/* --- reload: reconfigure and refresh --------------------------------------------------------- */

static int reconfigure(struct mock_instance *f, const char *yaml, struct arq_error *err)
{
    json_t *cfg = config(yaml);
    int rc = desc->reconfigure(f->self, cfg, err);
    json_decref(cfg);
    return rc;
}

static void test_reconfigure_changes_the_role_seen_by_refresh(void **state)
{
    struct mock_instance *f = *state;
    create(f, TOKENS);
    struct arq_auth_result out;
    assert_int_equal(refresh(f, "ci", "user", &out), ARQ_AUTH_ALLOW);
    assert_string_equal(out.principal.role, "user");
    assert_string_equal(out.principal.tenant, "acme");

    struct arq_error err = {""};
    assert_int_equal(reconfigure(f,
                                 "tokens:\n  - name: ci\n    sha256: " CI_SHA "\n"
                                 "    role: admin\n    tenant: globex\n"
                                 "  - name: ops\n    sha256: " OPS_SHA "\n    role: user\n",
                                 &err),
                     ARQ_OK);
    assert_int_equal(refresh(f, "ci", "user", &out), ARQ_AUTH_ALLOW);
    assert_string_equal(out.principal.subject, "ci");
    assert_string_equal(out.principal.role, "admin");
    assert_string_equal(out.principal.tenant, "globex");
    assert_null(out.principal.claims);
    assert_int_equal(refresh(f, "ops", "operator", &out), ARQ_AUTH_ALLOW);
    assert_string_equal(out.principal.role, "user");
    assert_null(out.principal.tenant);

    /* New handshakes see the new table too. */
    const char *const h[] = {"Authorization", "Bearer " CI_TOKEN, NULL};
    assert_allowed(f, h, NULL, "ci", "admin", "globex");
    const char *const admin[] = {"Authorization", "Bearer " ADMIN_TOKEN, NULL};
    assert_verdict(f, admin, NULL, ARQ_AUTH_DENY);
    /* The new table has no plain token: no new warning. */
    assert_int_equal(mock_host_log_matching(f->mh, "plain token"), 1);
    assert_int_equal(mock_host_log_matching(f->mh, "tokens loaded count=2"), 1);
}

static void test_refresh_of_a_removed_name_denies_token_revoked(void **state)
{
    struct mock_instance *f = *state;
    create(f, TOKENS);
    struct arq_error err = {""};
    assert_int_equal(reconfigure(f,
                                 "tokens:\n  - name: ops\n    sha256: " OPS_SHA "\n"
                                 "    role: operator\n",
                                 &err),
                     ARQ_OK);
    struct arq_auth_result out;
    assert_int_equal(refresh(f, "ci", "user", &out), ARQ_AUTH_DENY);
    assert_string_equal(out.reason, "token revoked");
    assert_int_equal(refresh(f, "admin", "admin", &out), ARQ_AUTH_DENY);
    assert_string_equal(out.reason, "token revoked");
    assert_int_equal(mock_host_log_matching(f->mh, "info token revoked name=ci"), 1);
    assert_int_equal(refresh(f, "ops", "operator", &out), ARQ_AUTH_ALLOW);
    /* Names are compared exactly. */
    assert_int_equal(refresh(f, "OPS", "operator", &out), ARQ_AUTH_DENY);
    /* Not one of ours: left alone. */
    assert_int_equal(refresh(f, NULL, "guest", &out), ARQ_AUTH_DEFER);
}

static void test_reconfigure_applies_on_unknown(void **state)
{
    struct mock_instance *f = *state;
    create(f, TOKENS);
    const char *const h[] = {"Authorization", "Bearer " WRONG_TOKEN, NULL};
    assert_verdict(f, h, NULL, ARQ_AUTH_DENY);
    struct arq_error err = {""};
    assert_int_equal(reconfigure(f, TOKENS "on_unknown: defer\n", &err), ARQ_OK);
    assert_verdict(f, h, NULL, ARQ_AUTH_DEFER);
    assert_int_equal(reconfigure(f, TOKENS "on_unknown: deny\n", &err), ARQ_OK);
    assert_verdict(f, h, NULL, ARQ_AUTH_DENY);
    /* The plain entry is warned about at every (re)configuration. */
    assert_int_equal(mock_host_log_matching(f->mh, "plain token"), 3);
}

static void test_reconfigure_refuses_a_bad_table_and_keeps_the_old_one(void **state)
{
    struct mock_instance *f = *state;
    create(f, TOKENS);
    struct arq_error err = {""};
    assert_int_equal(reconfigure(f,
                                 "tokens:\n  - name: ops\n    sha256: " OPS_SHA "\n"
                                 "    role: user\n  - name: ci\n    role: user\n"
                                 "on_unknown: defer\n",
                                 &err),
                     ARQ_EINVAL);
    assert_string_equal(err.text, "tokens[1] (\"ci\"): missing sha256 (the SHA-256 of the token, "
                                  "in hex; or token, the token itself)");
    /* Nothing applied: the old table and on_unknown. */
    const char *const h[] = {"Authorization", "Bearer " CI_TOKEN, NULL};
    assert_allowed(f, h, NULL, "ci", "user", "acme");
    const char *const wrong[] = {"Authorization", "Bearer " WRONG_TOKEN, NULL};
    assert_verdict(f, wrong, NULL, ARQ_AUTH_DENY);
    struct arq_auth_result out;
    assert_int_equal(refresh(f, "ops", "user", &out), ARQ_AUTH_ALLOW);
    assert_string_equal(out.principal.role, "operator");
}

/* --- metrics and logs ------------------------------------------------------------------------ */

static void test_metrics_count_allowed_and_refused_handshakes(void **state)
{
    struct mock_instance *f = *state;
    create(f, TOKENS);
    const char *allowed = "arqonbus_auth_tokens_allowed_total";
    const char *refused = "arqonbus_auth_tokens_refused_total";
    assert_int_equal(mock_host_metric_type(f->mh, allowed), ARQ_METRIC_COUNTER);
    assert_int_equal(mock_host_metric_type(f->mh, refused), ARQ_METRIC_COUNTER);
    assert_true(mock_host_metric(f->mh, allowed, "instance=\"tok\"") == 0);
    assert_true(mock_host_metric(f->mh, refused, "instance=\"tok\"") == 0);

    const char *const ok[] = {"Authorization", "Bearer " CI_TOKEN, NULL};
    const char *const bad[] = {"Authorization", "Bearer " WRONG_TOKEN, NULL};
    assert_verdict(f, ok, NULL, ARQ_AUTH_ALLOW);
    assert_verdict(f, NULL, "token=" ADMIN_TOKEN, ARQ_AUTH_ALLOW);
    assert_verdict(f, bad, NULL, ARQ_AUTH_DENY);
    assert_verdict(f, NULL, NULL, ARQ_AUTH_DEFER); /* no token: neither */
    assert_true(mock_host_metric(f->mh, allowed, "instance=\"tok\"") == 2);
    assert_true(mock_host_metric(f->mh, refused, "instance=\"tok\"") == 1);

    /* A deferred unknown token is not refused by this policy. */
    struct arq_error err = {""};
    assert_int_equal(reconfigure(f, TOKENS "on_unknown: defer\n", &err), ARQ_OK);
    assert_verdict(f, bad, NULL, ARQ_AUTH_DEFER);
    assert_true(mock_host_metric(f->mh, refused, "instance=\"tok\"") == 1);
}

static void test_no_log_line_holds_a_token(void **state)
{
    struct mock_instance *f = *state;
    mock_host_set_log_level(f->mh, ARQ_LOG_DEBUG);
    create(f, TOKENS "header: X-API-Key\n");
    const char *const h[] = {
        "Authorization",          "Bearer " WRONG_TOKEN, "X-API-Key", ADMIN_TOKEN,
        "Sec-WebSocket-Protocol", "bearer." CI_TOKEN,    NULL};
    assert_verdict(f, h, "token=" OPS_TOKEN, ARQ_AUTH_ALLOW);
    assert_verdict(f, h + 4, NULL, ARQ_AUTH_ALLOW);
    const char *const bad[] = {"Authorization", "Bearer " WRONG_TOKEN, NULL};
    assert_verdict(f, bad, "access_token=" WRONG_TOKEN, ARQ_AUTH_DENY);
    struct arq_error err = {""};
    assert_int_equal(reconfigure(f, TOKENS "on_unknown: defer\n", &err), ARQ_OK);
    assert_verdict(f, bad, NULL, ARQ_AUTH_DEFER);
    struct arq_auth_result out;
    assert_int_equal(refresh(f, "admin", "admin", &out), ARQ_AUTH_ALLOW);

    /* Something was logged at every step (accepted, refused, deferred, plain-token warnings),
     * and none of it shows a token: checked line by line here and again by teardown. */
    assert_int_equal(mock_host_log_matching(f->mh, "debug token accepted name=admin"), 1);
    assert_int_equal(mock_host_log_matching(f->mh, "debug token accepted name=ci"), 1);
    assert_int_equal(mock_host_log_matching(f->mh, "unknown token refused"), 1);
    assert_int_equal(mock_host_log_matching(f->mh, "unknown token deferred"), 1);
    assert_int_equal(mock_host_log_matching(f->mh, "plain token"), 2);
    assert_true(mock_host_log_count(f->mh) >= 8);
    for (size_t i = 0; i < mock_host_log_count(f->mh); i++)
        assert_no_secret(mock_host_log_line(f->mh, i));
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_descriptor_is_an_auth_policy_with_authenticate_and_refresh),
        T(test_sha256_entry_allows_with_name_role_and_tenant),
        T(test_plain_entry_allows_and_warns_naming_the_entry_only),
        T(test_unknown_token_is_denied_401_when_on_unknown_is_deny),
        T(test_unknown_token_is_deferred_when_on_unknown_is_defer),
        T(test_no_token_defers),
        T(test_bearer_scheme_is_case_insensitive_and_spacing_is_trimmed),
        T(test_query_token_and_access_token_are_read),
        T(test_query_token_is_percent_decoded),
        T(test_subprotocol_bearer_entry_is_read),
        T(test_extra_header_is_read_only_when_configured),
        T(test_every_presented_token_is_checked_and_the_first_known_one_wins),
        T(test_config_errors_name_the_entry),
        T(test_config_errors_of_shape_and_type),
        T(test_empty_list_warns_and_every_token_is_unknown),
        T(test_reconfigure_changes_the_role_seen_by_refresh),
        T(test_refresh_of_a_removed_name_denies_token_revoked),
        T(test_reconfigure_applies_on_unknown),
        T(test_reconfigure_refuses_a_bad_table_and_keeps_the_old_one),
        T(test_metrics_count_allowed_and_refused_handshakes),
        T(test_no_log_line_holds_a_token),
    };
#undef T
    return cmocka_run_group_tests(tests, load_plugin, unload_plugin);
}
