/* auth-jwt (the built plugins/auth-jwt.so) against the mock host: tokens made here with libjwt
 * (and by hand where libjwt would not make them), keys generated here with libcrypto into a
 * temporary directory. Covers the algorithms, the refusals and their reasons, algorithm
 * confusion, the three token sources, option errors, reconfigure and the metrics. The exact
 * time boundaries run against the plugin's token checks (plugins/auth-jwt/ajwt.h) with a clock
 * chosen by the test; everything else goes through the plugin with the real clock and margins
 * of minutes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <jansson.h>
#include <jwt.h>
#include <limits.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ajwt.h"
#include "loader.h"
#include "mock_host.h"

#define PLUGIN ARQ_BUILD_PLUGIN_DIR "/auth-jwt.so"

/* 64 bytes: long enough for HS512. */
#define SECRET       "k8Jd2mQp7VxR4tLw9NzB3cYh6GfS1aEu5oKi0PjTnMbXqWvZyCrDlHsAgUeIxOF2"
#define OTHER_SECRET "Z2yXwVuTsRqPoNmLkJiHgFeDcBa9876543210zYxWvUtSrQpOnMlKjIhGfEdCbA1"

/* --- keys, made once for the whole run ------------------------------------------------------ */

static void *handle;
static const struct arq_plugin *desc;
static const struct arq_auth_ops *ops;

static char dir[512]; /* short, so that the file names below always fit */
static char *rsa_private, *other_rsa_private, *ec_private, *ec384_private;
static char *rsa_public; /* PEM text, used as an HMAC secret by the confusion tests */
static char rsa_pub[PATH_MAX], ec_pub[PATH_MAX], ec384_pub[PATH_MAX], small_rsa_pub[PATH_MAX];
static char private_file[PATH_MAX], garbage_file[PATH_MAX], missing_file[PATH_MAX];

static char *pem_of(EVP_PKEY *key, int private)
{
    BIO *bio = BIO_new(BIO_s_mem());
    assert_non_null(bio);
    if (private)
        assert_int_equal(PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL), 1);
    else
        assert_int_equal(PEM_write_bio_PUBKEY(bio, key), 1);
    char *data;
    long n = BIO_get_mem_data(bio, &data);
    char *pem = strndup(data, (size_t)n);
    BIO_free(bio);
    assert_non_null(pem);
    return pem;
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fputs(text, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
}

/* Generate `key`, keep its private PEM in *private (may be NULL), write its public PEM to
 * dir/name (when name is not NULL). */
static void keep_key(EVP_PKEY *key, char **private, const char *name, char *path)
{
    assert_non_null(key);
    if (private)
        *private = pem_of(key, 1);
    if (name) {
        char *pub = pem_of(key, 0);
        snprintf(path, PATH_MAX, "%s/%s", dir, name);
        write_file(path, pub);
        free(pub);
    }
    EVP_PKEY_free(key);
}

static int group_setup(void **state)
{
    (void)state;
    desc = mock_host_load_plugin(PLUGIN, &handle);
    if (!desc)
        return -1;
    ops = desc->ops;
    mock_host_tmpdir(dir, sizeof dir, "auth_jwt");
    if (!mkdtemp(dir))
        return -1;
    EVP_PKEY *rsa = EVP_RSA_gen(2048);
    rsa_public = pem_of(rsa, 0);
    keep_key(rsa, &rsa_private, "rsa.pub", rsa_pub);
    keep_key(EVP_RSA_gen(2048), &other_rsa_private, NULL, NULL);
    keep_key(EVP_EC_gen("P-256"), &ec_private, "ec256.pub", ec_pub);
    keep_key(EVP_EC_gen("P-384"), &ec384_private, "ec384.pub", ec384_pub);
    keep_key(EVP_RSA_gen(1024), NULL, "small-rsa.pub", small_rsa_pub);
    snprintf(private_file, sizeof private_file, "%s/rsa.key", dir);
    write_file(private_file, rsa_private);
    snprintf(garbage_file, sizeof garbage_file, "%s/garbage.pem", dir);
    write_file(garbage_file,
               "-----BEGIN PUBLIC KEY-----\nbm90IGEga2V5\n-----END PUBLIC KEY-----\n");
    snprintf(missing_file, sizeof missing_file, "%s/absent.pem", dir);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    mock_host_remove_tmpdir(dir);
    free(rsa_private);
    free(other_rsa_private);
    free(ec_private);
    free(ec384_private);
    free(rsa_public);
    return mock_host_unload_plugin(handle);
}

/* --- one instance per test ------------------------------------------------------------------ */

static int setup(void **state)
{
    return mock_instance_setup(state, "jwt");
}

static int teardown(void **state)
{
    return mock_instance_teardown(state, desc);
}

/* printf into one of a few rotating buffers: config text and claims for one call. */
static const char *fmt(const char *format, ...) ARQ_PRINTF(1, 2);
static const char *fmt(const char *format, ...)
{
    static char bufs[4][4096];
    static int next;
    char *b = bufs[next++ % 4];
    va_list ap;
    va_start(ap, format);
    int n = vsnprintf(b, sizeof bufs[0], format, ap);
    va_end(ap);
    assert_true(n >= 0 && (size_t)n < sizeof bufs[0]);
    return b;
}

static json_t *config(const char *yaml)
{
    json_t *cfg = mock_host_validate(desc->options, yaml, NULL);
    assert_non_null(cfg);
    return cfg;
}

static void create(struct mock_instance *f, const char *yaml)
{
    struct arq_error err = {""};
    mock_host_create_plugin(f->mh, desc, config(yaml), &f->self);
    assert_int_equal(desc->start(f->self, NULL, &err), ARQ_OK);
}

/* create must refuse `yaml`; returns its error text. */
static const char *create_fails(struct mock_instance *f, const char *yaml)
{
    static struct arq_error err;
    void *self = NULL;
    json_t *cfg = config(yaml);
    snprintf(err.text, sizeof err.text, "(none)");
    int rc = desc->create(mock_host_api(), mock_host_ctx(f->mh), cfg, &self, &err);
    json_decref(cfg);
    assert_true(rc < 0);
    assert_null(self);
    return err.text;
}

static void assert_contains(const char *text, const char *needle)
{
    if (!strstr(text, needle))
        fail_msg("\"%s\" does not contain \"%s\"", text, needle);
}

/* --- requests ------------------------------------------------------------------------------- */

/* A handshake request: a small header table read by the header callback. */
struct request {
    struct {
        const char *name, *value;
    } headers[4];
    const char *query;
};

static const char *request_header(void *tconn, const char *name)
{
    const struct request *r = tconn;
    for (size_t i = 0; i < sizeof r->headers / sizeof r->headers[0]; i++)
        if (r->headers[i].name && strcasecmp(r->headers[i].name, name) == 0)
            return r->headers[i].value;
    return NULL;
}

static enum arq_auth_verdict authenticate(struct mock_instance *f, const struct request *r,
                                          struct arq_auth_result *out)
{
    struct arq_conn_info info = {.struct_size = sizeof info,
                                 .transport = "websocket",
                                 .peer_addr = "192.0.2.7",
                                 .peer_port = 50000,
                                 .path = "/",
                                 .query = r->query,
                                 .header = request_header};
    memset(out, 0, sizeof *out);
    out->struct_size = sizeof *out;
    out->principal.struct_size = sizeof out->principal;
    return ops->authenticate(f->self, &info, (void *)r, out);
}

static const char *bearer(const char *token)
{
    return fmt("Bearer %s", token);
}

/* The token in `Authorization: Bearer` must be accepted; returns the result. */
static struct arq_auth_result allowed(struct mock_instance *f, const char *token)
{
    struct request r = {.headers = {{"Authorization", bearer(token)}}};
    struct arq_auth_result out;
    enum arq_auth_verdict v = authenticate(f, &r, &out);
    if (v != ARQ_AUTH_ALLOW)
        fail_msg("refused (%d): %s", (int)v, out.reason);
    assert_non_null(out.principal.subject);
    assert_non_null(out.principal.role);
    assert_true(json_is_object(out.principal.claims));
    return out;
}

/* The request must be refused with 401 and exactly `reason`. */
static void request_refused(struct mock_instance *f, const struct request *r, const char *reason)
{
    struct arq_auth_result out;
    enum arq_auth_verdict v = authenticate(f, r, &out);
    if (v != ARQ_AUTH_DENY)
        fail_msg("verdict %d, expected a refusal \"%s\"", (int)v, reason);
    assert_int_equal(out.http_status, 401);
    assert_string_equal(out.reason, reason);
}

static void refused(struct mock_instance *f, const char *token, const char *reason)
{
    struct request r = {.headers = {{"Authorization", bearer(token)}}};
    request_refused(f, &r, reason);
}

/* --- tokens --------------------------------------------------------------------------------- */

static long long now_s(void)
{
    return (long long)time(NULL);
}

/* A token libjwt signs with `alg` and `key` (a secret, or a private key's PEM). */
static char *sign(jwt_alg_t alg, const char *key, const char *claims)
{
    jwt_t *jwt = NULL;
    assert_int_equal(jwt_new(&jwt), 0);
    assert_int_equal(jwt_add_grants_json(jwt, claims), 0);
    assert_int_equal(jwt_set_alg(jwt, alg, (const unsigned char *)key, (int)strlen(key)), 0);
    char *token = jwt_encode_str(jwt);
    jwt_free(jwt);
    assert_non_null(token);
    return token;
}

/* sub alice, valid for the next hour. */
static const char *fresh(void)
{
    return fmt("{\"sub\":\"alice\",\"iat\":%lld,\"exp\":%lld}", now_s(), now_s() + 3600);
}

static char *b64url(const char *data, size_t n)
{
    char *out = malloc(n / 3 * 4 + 8);
    assert_non_null(out);
    int len = EVP_EncodeBlock((unsigned char *)out, (const unsigned char *)data, (int)n);
    int o = 0;
    for (int i = 0; i < len && out[i] != '='; i++)
        out[o++] = out[i] == '+' ? '-' : out[i] == '/' ? '_' : out[i];
    out[o] = '\0';
    return out;
}

/* A token built by hand: header and payload as given (JSON text, or anything), and an HS256
 * signature with `secret`, or the literal `sig` when secret is NULL. */
static char *hand_token(const char *header, const char *payload, const char *secret,
                        const char *sig)
{
    char *h = b64url(header, strlen(header)), *p = b64url(payload, strlen(payload));
    char *signing = strdup(fmt("%s.%s", h, p)), *s;
    assert_non_null(signing);
    if (secret) {
        unsigned char mac[EVP_MAX_MD_SIZE];
        unsigned len = 0;
        assert_non_null(HMAC(EVP_sha256(), secret, (int)strlen(secret),
                             (const unsigned char *)signing, strlen(signing), mac, &len));
        s = b64url((const char *)mac, len);
    } else {
        s = strdup(sig);
    }
    char *token = strdup(fmt("%s.%s", signing, s));
    assert_non_null(token);
    free(h);
    free(p);
    free(signing);
    free(s);
    return token;
}

/* The metric of this instance for `reason`, or allowed when reason is NULL. */
static double counted(struct mock_instance *f, const char *reason)
{
    if (!reason)
        return mock_host_metric(f->mh, "arqonbus_auth_jwt_allowed_total", "instance=\"jwt\"");
    return mock_host_metric(f->mh, "arqonbus_auth_jwt_refused_total",
                            fmt("instance=\"jwt\",reason=\"%s\"", reason));
}

static const char *hs_config(void)
{
    return "secret: " SECRET "\n";
}

/* --- the descriptor and the options ---------------------------------------------------------- */

static void descriptor_is_an_auth_policy_that_only_authenticates(void **state)
{
    (void)state;
    char err[600] = "";
    assert_int_equal(loader_check_descriptor(desc, err, sizeof err), 0);
    assert_string_equal(err, "");
    assert_string_equal(desc->name, "auth-jwt");
    assert_int_equal(desc->kind, ARQ_KIND_AUTH);
    assert_true(desc->summary && strlen(desc->summary) > 20);
    assert_non_null(desc->reconfigure);
    assert_non_null(ops->authenticate);
    assert_null(ops->authorize);
    assert_null(ops->refresh);
}

static void every_option_is_reloadable_and_only_the_secret_is_secret(void **state)
{
    (void)state;
    static const char *const names[] = {"secret",        "public_key_file", "algorithms",
                                        "leeway",        "issuer",          "audience",
                                        "subject_claim", "role_claim",      "tenant_claim",
                                        "default_role",  "required",        "require_exp"};
    size_t n = sizeof names / sizeof names[0];
    for (size_t i = 0; i < n; i++) {
        assert_non_null(desc->options[i].name);
        assert_string_equal(desc->options[i].name, names[i]);
        assert_true(desc->options[i].flags & ARQ_OPT_RELOADABLE);
        assert_int_equal(!!(desc->options[i].flags & ARQ_OPT_SECRET), i == 0);
    }
    assert_null(desc->options[n].name);
}

static void defaults_are_30s_leeway_sub_role_tenant_user_required(void **state)
{
    (void)state;
    json_t *cfg = config(hs_config());
    assert_int_equal(json_integer_value(json_object_get(cfg, "leeway")), 30000);
    assert_string_equal(json_string_value(json_object_get(cfg, "subject_claim")), "sub");
    assert_string_equal(json_string_value(json_object_get(cfg, "role_claim")), "role");
    assert_string_equal(json_string_value(json_object_get(cfg, "tenant_claim")), "tenant");
    assert_string_equal(json_string_value(json_object_get(cfg, "default_role")), "user");
    assert_true(json_is_true(json_object_get(cfg, "required")));
    assert_true(json_is_true(json_object_get(cfg, "require_exp")));
    assert_null(json_object_get(cfg, "algorithms"));
    assert_null(json_object_get(cfg, "issuer"));
    assert_null(json_object_get(cfg, "audience"));
    json_decref(cfg);
}

/* --- accepted tokens ------------------------------------------------------------------------ */

static void hs256_hs384_hs512_tokens_are_accepted(void **state)
{
    struct mock_instance *f = *state;
    create(f, hs_config());
    /* The default with a secret is HS256 only. */
    char *t384 = sign(JWT_ALG_HS384, SECRET, fresh());
    refused(f, t384, "algorithm not allowed: HS384");
    desc->destroy(f->self);
    f->self = NULL;

    create(f, "secret: " SECRET "\nalgorithms: [HS256, HS384, HS512]\n");
    static const jwt_alg_t algs[] = {JWT_ALG_HS256, JWT_ALG_HS384, JWT_ALG_HS512};
    for (size_t i = 0; i < 3; i++) {
        char *t = sign(algs[i], SECRET, fresh());
        struct arq_auth_result out = allowed(f, t);
        assert_string_equal(out.principal.subject, "alice");
        free(t);
    }
    free(t384);
}

static void rs256_token_is_accepted_with_the_public_key(void **state)
{
    struct mock_instance *f = *state;
    create(f, fmt("public_key_file: \"%s\"\n", rsa_pub));
    char *t = sign(JWT_ALG_RS256, rsa_private, fresh());
    struct arq_auth_result out = allowed(f, t);
    assert_string_equal(out.principal.subject, "alice");
    /* The default with an RSA key is RS256 only. */
    char *t512 = sign(JWT_ALG_RS512, rsa_private, fresh());
    refused(f, t512, "algorithm not allowed: RS512");
    free(t);
    free(t512);
}

static void es256_and_es384_tokens_are_accepted_with_their_curves_key(void **state)
{
    struct mock_instance *f = *state;
    create(f, fmt("public_key_file: \"%s\"\n", ec_pub));
    char *t = sign(JWT_ALG_ES256, ec_private, fresh());
    struct arq_auth_result out = allowed(f, t);
    assert_string_equal(out.principal.subject, "alice");
    free(t);
    desc->destroy(f->self);
    f->self = NULL;

    create(f, fmt("public_key_file: \"%s\"\n", ec384_pub));
    t = sign(JWT_ALG_ES384, ec384_private, fresh());
    allowed(f, t);
    free(t);
    /* With a P-384 key, ES256 is not accepted. */
    t = sign(JWT_ALG_ES256, ec_private, fresh());
    refused(f, t, "algorithm not allowed: ES256");
    free(t);
}

static void principal_has_subject_default_role_no_tenant_and_the_claims(void **state)
{
    struct mock_instance *f = *state;
    create(f, hs_config());
    const char *claims =
        fmt("{\"sub\":\"alice\",\"exp\":%lld,\"scope\":\"chat\",\"n\":3}", now_s() + 600);
    char *t = sign(JWT_ALG_HS256, SECRET, claims);
    struct arq_auth_result out = allowed(f, t);
    assert_int_equal(out.verdict, ARQ_AUTH_ALLOW);
    assert_string_equal(out.principal.subject, "alice");
    assert_string_equal(out.principal.role, "user");
    assert_null(out.principal.tenant);
    json_t *expected = json_loads(claims, 0, NULL);
    assert_true(json_equal(out.principal.claims, expected));
    json_decref(expected);
    free(t);
}

static void role_and_tenant_come_from_the_configured_claims(void **state)
{
    struct mock_instance *f = *state;
    create(f, "secret: " SECRET "\nsubject_claim: uid\nrole_claim: arq_role\n"
              "tenant_claim: org\ndefault_role: guest\n");
    char *t = sign(JWT_ALG_HS256, SECRET,
                   fmt("{\"uid\":\"u-42\",\"sub\":\"ignored\",\"arq_role\":\"admin\",\"role\":"
                       "\"user\",\"org\":\"acme\",\"exp\":%lld}",
                       now_s() + 600));
    struct arq_auth_result out = allowed(f, t);
    assert_string_equal(out.principal.subject, "u-42");
    assert_string_equal(out.principal.role, "admin");
    assert_string_equal(out.principal.tenant, "acme");
    free(t);
    /* Without the role claim: default_role. */
    t = sign(JWT_ALG_HS256, SECRET, fmt("{\"uid\":\"u-7\",\"exp\":%lld}", now_s() + 600));
    out = allowed(f, t);
    assert_string_equal(out.principal.role, "guest");
    assert_null(out.principal.tenant);
    free(t);
    /* The standard subject claim is not a fallback. */
    t = sign(JWT_ALG_HS256, SECRET, fmt("{\"sub\":\"alice\",\"exp\":%lld}", now_s() + 600));
    refused(f, t, "missing uid claim");
    free(t);
}

/* --- missing and malformed ------------------------------------------------------------------ */

static void missing_token_is_refused_when_required(void **state)
{
    struct mock_instance *f = *state;
    create(f, hs_config());
    struct request none = {.headers = {{"Sec-WebSocket-Protocol", "arqonbus.v1"}}, .query = "x=1"};
    request_refused(f, &none, "missing token");
    /* Another scheme is not a token of ours. */
    struct request basic = {.headers = {{"Authorization", "Basic YWxpY2U6cHc="}}};
    request_refused(f, &basic, "missing token");
    assert_int_equal(counted(f, "missing"), 2);
}

static void missing_token_defers_when_not_required(void **state)
{
    struct mock_instance *f = *state;
    create(f, "secret: " SECRET "\nrequired: false\n");
    struct request none = {.query = "room=lobby"};
    struct arq_auth_result out;
    assert_int_equal(authenticate(f, &none, &out), ARQ_AUTH_DEFER);
    assert_int_equal(counted(f, "missing"), 0);
    /* A token that is present is still checked. */
    refused(f, "not-a-token", "malformed token");
}

static void malformed_tokens_are_refused_as_malformed(void **state)
{
    struct mock_instance *f = *state;
    create(f, hs_config());
    char *good = sign(JWT_ALG_HS256, SECRET, fresh());
    const char *dot = strrchr(good, '.');
    char *two = strndup(good, (size_t)(dot - good));
    char *four = strdup(fmt("%s.e30", good));
    char *bad_b64 = strdup(good);
    bad_b64[3] = '!';
    char *padded = strdup(fmt("%s=", good)); /* '=' in the signature segment */
    char *header_text = hand_token("{\"alg\":\"HS256\"", "{\"sub\":\"a\"}", SECRET, NULL);
    char *payload_text = hand_token("{\"alg\":\"HS256\"}", "{\"sub\":", SECRET, NULL);
    char *payload_array = hand_token("{\"alg\":\"HS256\"}", "[1,2]", SECRET, NULL);
    char *no_alg = hand_token("{\"typ\":\"JWT\"}", "{\"sub\":\"a\"}", SECRET, NULL);
    char *alg_number = hand_token("{\"alg\":256}", "{\"sub\":\"a\"}", SECRET, NULL);
    /* Duplicate keys read differently by different parsers: never accepted. */
    char *dup_alg =
        hand_token("{\"alg\":\"HS256\",\"alg\":\"HS256\"}", "{\"sub\":\"a\"}", SECRET, NULL);
    char *dup_sub = hand_token("{\"alg\":\"HS256\"}",
                               fmt("{\"sub\":\"a\",\"sub\":\"admin\",\"exp\":%lld}", now_s() + 60),
                               SECRET, NULL);
    char *huge = malloc(AJWT_MAX_TOKEN + 2);
    memset(huge, 'a', AJWT_MAX_TOKEN + 1);
    huge[AJWT_MAX_TOKEN + 1] = '\0';
    huge[10] = huge[20] = '.';
    const char *tokens[] = {"garbage",   "a.b.c",     "..",        two,          four,
                            bad_b64,     padded,      header_text, payload_text, payload_array,
                            no_alg,      alg_number,  dup_alg,     dup_sub,      huge,
                            "e30.e30.x", ".e30.abcd", "e30..abcd"};
    for (size_t i = 0; i < sizeof tokens / sizeof tokens[0]; i++) {
        char *header = malloc(strlen(tokens[i]) + 8);
        assert_non_null(header);
        sprintf(header, "Bearer %s", tokens[i]);
        struct request r = {.headers = {{"Authorization", header}}};
        struct arq_auth_result out;
        assert_int_equal(authenticate(f, &r, &out), ARQ_AUTH_DENY);
        if (strcmp(out.reason, "malformed token") != 0)
            fail_msg("token %zu: \"%s\"", i, out.reason);
        free(header);
    }
    assert_int_equal(counted(f, "malformed"), sizeof tokens / sizeof tokens[0]);
    allowed(f, good);
    free(good);
    free(two);
    free(four);
    free(bad_b64);
    free(padded);
    free(header_text);
    free(payload_text);
    free(payload_array);
    free(no_alg);
    free(alg_number);
    free(dup_alg);
    free(dup_sub);
    free(huge);
}

static void other_typ_and_crit_headers_are_refused(void **state)
{
    struct mock_instance *f = *state;
    create(f, hs_config());
    const char *claims = fmt("{\"sub\":\"a\",\"exp\":%lld}", now_s() + 600);
    char *plain = hand_token("{\"alg\":\"HS256\"}", claims, SECRET, NULL);
    char *typ_jwt = hand_token("{\"alg\":\"HS256\",\"typ\":\"jwt\"}", claims, SECRET, NULL);
    char *typ_at = hand_token("{\"alg\":\"HS256\",\"typ\":\"at+jwt\"}", claims, SECRET, NULL);
    char *crit =
        hand_token("{\"alg\":\"HS256\",\"crit\":[\"b64\"],\"b64\":false}", claims, SECRET, NULL);
    allowed(f, plain);
    allowed(f, typ_jwt);
    refused(f, typ_at, "unsupported token type");
    refused(f, crit, "unsupported critical header");
    free(plain);
    free(typ_jwt);
    free(typ_at);
    free(crit);
}

/* --- time ----------------------------------------------------------------------------------- */

static void expired_token_is_refused(void **state)
{
    struct mock_instance *f = *state;
    create(f, hs_config());
    char *t =
        sign(JWT_ALG_HS256, SECRET,
             fmt("{\"sub\":\"a\",\"iat\":%lld,\"exp\":%lld}", now_s() - 7200, now_s() - 3600));
    refused(f, t, "token expired");
    assert_int_equal(counted(f, "expired"), 1);
    free(t);
}

static void token_not_yet_valid_is_refused(void **state)
{
    struct mock_instance *f = *state;
    create(f, hs_config());
    char *t =
        sign(JWT_ALG_HS256, SECRET,
             fmt("{\"sub\":\"a\",\"nbf\":%lld,\"exp\":%lld}", now_s() + 3600, now_s() + 7200));
    refused(f, t, "token not yet valid");
    assert_int_equal(counted(f, "not_yet_valid"), 1);
    free(t);
}

static void token_issued_in_the_future_is_refused(void **state)
{
    struct mock_instance *f = *state;
    create(f, hs_config());
    char *t =
        sign(JWT_ALG_HS256, SECRET,
             fmt("{\"sub\":\"a\",\"iat\":%lld,\"exp\":%lld}", now_s() + 3600, now_s() + 7200));
    refused(f, t, "token issued in the future");
    assert_int_equal(counted(f, "issued_in_future"), 1);
    free(t);
}

static void leeway_accepts_a_token_expired_by_less_than_leeway(void **state)
{
    struct mock_instance *f = *state;
    create(f, "secret: " SECRET "\nleeway: 1h\n");
    char *ten_minutes = sign(JWT_ALG_HS256, SECRET,
                             fmt("{\"sub\":\"a\",\"exp\":%lld,\"nbf\":%lld,\"iat\":%lld}",
                                 now_s() - 600, now_s() + 600, now_s() + 600));
    char *two_hours =
        sign(JWT_ALG_HS256, SECRET, fmt("{\"sub\":\"a\",\"exp\":%lld}", now_s() - 7200));
    allowed(f, ten_minutes);
    refused(f, two_hours, "token expired");
    /* leeway 0: the ten minutes count. */
    struct arq_error err = {""};
    json_t *cfg = config("secret: " SECRET "\nleeway: 0\n");
    assert_int_equal(desc->reconfigure(f->self, cfg, &err), ARQ_OK);
    json_decref(cfg);
    refused(f, ten_minutes, "token expired");
    free(ten_minutes);
    free(two_hours);
}

/* The token checks with a clock of the test's choosing: the exact boundaries. */
static enum ajwt_refusal check_at(const struct ajwt_rules *r, const char *token, int64_t now_ms,
                                  char *reason)
{
    struct ajwt_identity id = {0};
    enum ajwt_refusal why = ajwt_verify(r, token, now_ms, &id, reason, 256, NULL);
    if (why == AJWT_OK) {
        assert_string_equal(id.subject, "a");
        json_decref(id.claims);
    } else {
        assert_null(id.claims);
    }
    return why;
}

static void time_checks_are_exact_at_the_leeway_boundaries(void **state)
{
    (void)state;
    const int64_t t0 = 1700000000; /* exp, nbf and iat of the tokens, in seconds */
    char reason[256];
    struct arq_error err = {""};
    struct ajwt_rules *r = NULL;
    json_t *cfg = config("secret: " SECRET "\nleeway: 30s\n");
    assert_int_equal(ajwt_rules_new(mock_host_api(), cfg, &r, &err), ARQ_OK);
    json_decref(cfg);

    char *exp = sign(JWT_ALG_HS256, SECRET, fmt("{\"sub\":\"a\",\"exp\":%lld}", (long long)t0));
    assert_int_equal(check_at(r, exp, (t0 + 30) * 1000 - 1, reason), AJWT_OK);
    assert_int_equal(check_at(r, exp, (t0 + 30) * 1000, reason), AJWT_EXPIRED);
    assert_string_equal(reason, "token expired");

    char *nbf =
        sign(JWT_ALG_HS256, SECRET,
             fmt("{\"sub\":\"a\",\"nbf\":%lld,\"exp\":%lld}", (long long)t0, (long long)t0 + 3600));
    assert_int_equal(check_at(r, nbf, (t0 - 30) * 1000, reason), AJWT_OK);
    assert_int_equal(check_at(r, nbf, (t0 - 30) * 1000 - 1, reason), AJWT_NOT_YET_VALID);
    assert_string_equal(reason, "token not yet valid");

    char *iat =
        sign(JWT_ALG_HS256, SECRET,
             fmt("{\"sub\":\"a\",\"iat\":%lld,\"exp\":%lld}", (long long)t0, (long long)t0 + 3600));
    assert_int_equal(check_at(r, iat, (t0 - 30) * 1000, reason), AJWT_OK);
    assert_int_equal(check_at(r, iat, (t0 - 30) * 1000 - 1, reason), AJWT_ISSUED_IN_FUTURE);
    assert_string_equal(reason, "token issued in the future");

    /* NumericDate may have a fraction. */
    char *frac = sign(JWT_ALG_HS256, SECRET, fmt("{\"sub\":\"a\",\"exp\":%lld.5}", (long long)t0));
    assert_int_equal(check_at(r, frac, (t0 + 30) * 1000 + 499, reason), AJWT_OK);
    assert_int_equal(check_at(r, frac, (t0 + 30) * 1000 + 500, reason), AJWT_EXPIRED);
    ajwt_rules_free(r);

    /* leeway 0: valid until the very millisecond of exp. */
    cfg = config("secret: " SECRET "\nleeway: 0\n");
    assert_int_equal(ajwt_rules_new(mock_host_api(), cfg, &r, &err), ARQ_OK);
    json_decref(cfg);
    assert_int_equal(check_at(r, exp, t0 * 1000 - 1, reason), AJWT_OK);
    assert_int_equal(check_at(r, exp, t0 * 1000, reason), AJWT_EXPIRED);
    assert_int_equal(check_at(r, nbf, t0 * 1000, reason), AJWT_OK);
    assert_int_equal(check_at(r, nbf, t0 * 1000 - 1, reason), AJWT_NOT_YET_VALID);
    ajwt_rules_free(r);
    free(exp);
    free(nbf);
    free(iat);
    free(frac);
}

static void exp_is_required_unless_require_exp_is_false(void **state)
{
    struct mock_instance *f = *state;
    create(f, hs_config());
    char *t = sign(JWT_ALG_HS256, SECRET, "{\"sub\":\"a\"}");
    refused(f, t, "missing exp claim");
    assert_int_equal(counted(f, "claims"), 1);
    struct arq_error err = {""};
    json_t *cfg = config("secret: " SECRET "\nrequire_exp: false\n");
    assert_int_equal(desc->reconfigure(f->self, cfg, &err), ARQ_OK);
    json_decref(cfg);
    allowed(f, t);
    free(t);
}

/* --- signatures and algorithms -------------------------------------------------------------- */

static void wrong_signatures_are_refused(void **state)
{
    struct mock_instance *f = *state;
    create(f, hs_config());
    char *other = sign(JWT_ALG_HS256, OTHER_SECRET, fresh());
    refused(f, other, "invalid signature");
    /* A payload swapped under a valid signature. */
    char *good = sign(JWT_ALG_HS256, SECRET, fresh());
    char *admin = sign(JWT_ALG_HS256, OTHER_SECRET,
                       fmt("{\"sub\":\"root\",\"role\":\"admin\",\"exp\":%lld}", now_s() + 600));
    const char *g1 = strchr(good, '.'), *g2 = strrchr(good, '.');
    const char *a1 = strchr(admin, '.'), *a2 = strrchr(admin, '.');
    char *spliced = strdup(fmt("%.*s%.*s%s", (int)(g1 - good), good, (int)(a2 - a1), a1, g2));
    refused(f, spliced, "invalid signature");
    char *unsigned_ = strdup(fmt("%.*s.", (int)(g2 - good), good));
    refused(f, unsigned_, "invalid signature");
    assert_int_equal(counted(f, "signature"), 3);
    free(other);
    free(good);
    free(admin);
    free(spliced);
    free(unsigned_);
    desc->destroy(f->self);
    f->self = NULL;

    create(f, fmt("public_key_file: \"%s\"\n", rsa_pub));
    other = sign(JWT_ALG_RS256, other_rsa_private, fresh());
    refused(f, other, "invalid signature");
    free(other);
    desc->destroy(f->self);
    f->self = NULL;

    create(f, fmt("public_key_file: \"%s\"\n", ec_pub));
    char *es = sign(JWT_ALG_ES256, ec_private, fresh());
    es[strlen(es) - 2] = es[strlen(es) - 2] == 'A' ? 'B' : 'A';
    refused(f, es, "invalid signature");
    free(es);
}

static void alg_none_is_refused(void **state)
{
    struct mock_instance *f = *state;
    create(f, "secret: " SECRET "\nrequire_exp: false\n");
    const char *claims = "{\"sub\":\"a\"}";
    char *empty_sig = hand_token("{\"alg\":\"none\"}", claims, NULL, "");
    char *with_sig = hand_token("{\"alg\":\"none\"}", claims, NULL, "c2lnbmF0dXJl");
    char *none_case = hand_token("{\"alg\":\"None\"}", claims, NULL, "");
    /* libjwt reads alg in any case; the plugin reads it exactly. */
    char *lower = hand_token("{\"alg\":\"hs256\"}", claims, SECRET, NULL);
    refused(f, empty_sig, "algorithm not allowed: none");
    refused(f, with_sig, "algorithm not allowed: none");
    refused(f, none_case, "algorithm not allowed: None");
    refused(f, lower, "algorithm not allowed: hs256");
    assert_int_equal(counted(f, "algorithm"), 4);
    free(empty_sig);
    free(with_sig);
    free(none_case);
    free(lower);
}

static void refused_alg_is_shown_short_and_plain(void **state)
{
    struct mock_instance *f = *state;
    create(f, hs_config());
    char *t = hand_token("{\"alg\":\"<script>alert(1)</script>AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\"}",
                         "{\"sub\":\"a\"}", SECRET, NULL);
    struct request r = {.headers = {{"Authorization", bearer(t)}}};
    struct arq_auth_result out;
    assert_int_equal(authenticate(f, &r, &out), ARQ_AUTH_DENY);
    assert_contains(out.reason, "algorithm not allowed: ?script?alert?1???script?");
    assert_null(strchr(out.reason, '<'));
    assert_true(strlen(out.reason) < 70);
    free(t);
}

static void hs256_signed_with_the_public_key_is_refused_when_only_rs256_is_accepted(void **state)
{
    struct mock_instance *f = *state;
    create(f, fmt("public_key_file: \"%s\"\nalgorithms: [RS256]\n", rsa_pub));
    char *forged = sign(JWT_ALG_HS256, rsa_public, fresh());
    refused(f, forged, "algorithm not allowed: HS256");
    free(forged);
}

static void hs256_signed_with_the_public_key_is_refused_when_both_are_accepted(void **state)
{
    struct mock_instance *f = *state;
    create(f, fmt("secret: " SECRET "\npublic_key_file: \"%s\"\nalgorithms: [HS256, RS256]\n",
                  rsa_pub));
    char *forged = sign(JWT_ALG_HS256, rsa_public, fresh());
    refused(f, forged, "invalid signature");
    /* Each family verifies with its own key. */
    char *hs = sign(JWT_ALG_HS256, SECRET, fresh());
    char *rs = sign(JWT_ALG_RS256, rsa_private, fresh());
    allowed(f, hs);
    allowed(f, rs);
    free(forged);
    free(hs);
    free(rs);
}

static void default_with_secret_and_key_accepts_both_families(void **state)
{
    struct mock_instance *f = *state;
    create(f, fmt("secret: " SECRET "\npublic_key_file: \"%s\"\n", ec_pub));
    char *hs = sign(JWT_ALG_HS256, SECRET, fresh());
    char *es = sign(JWT_ALG_ES256, ec_private, fresh());
    char *rs = sign(JWT_ALG_RS256, rsa_private, fresh());
    allowed(f, hs);
    allowed(f, es);
    refused(f, rs, "algorithm not allowed: RS256");
    free(hs);
    free(es);
    free(rs);
}

/* --- issuer, audience, claim types ---------------------------------------------------------- */

static void issuer_must_match_exactly(void **state)
{
    struct mock_instance *f = *state;
    create(f, "secret: " SECRET "\nissuer: https://id.example.com\n");
    long long exp = now_s() + 600;
    char *good = sign(JWT_ALG_HS256, SECRET,
                      fmt("{\"sub\":\"a\",\"iss\":\"https://id.example.com\",\"exp\":%lld}", exp));
    char *wrong =
        sign(JWT_ALG_HS256, SECRET,
             fmt("{\"sub\":\"a\",\"iss\":\"https://id.example.com/\",\"exp\":%lld}", exp));
    char *none = sign(JWT_ALG_HS256, SECRET, fmt("{\"sub\":\"a\",\"exp\":%lld}", exp));
    allowed(f, good);
    refused(f, wrong, "wrong issuer");
    refused(f, none, "missing iss claim");
    assert_int_equal(counted(f, "issuer"), 2);
    free(good);
    free(wrong);
    free(none);
}

static void audience_must_match_as_a_string_or_in_an_array(void **state)
{
    struct mock_instance *f = *state;
    create(f, "secret: " SECRET "\naudience: arqonbus\n");
    long long exp = now_s() + 600;
    static const struct {
        const char *aud, *reason; /* reason NULL: accepted */
    } cases[] = {
        {"\"arqonbus\"", NULL},
        {"[\"billing\",\"arqonbus\"]", NULL},
        {"\"billing\"", "wrong audience"},
        {"[\"billing\",\"arqonbus-dev\"]", "wrong audience"},
        {"[]", "wrong audience"},
        {"42", "claim aud must be a string or an array of strings"},
        {"[\"arqonbus\",7]", "claim aud must be a string or an array of strings"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *t = sign(JWT_ALG_HS256, SECRET,
                       fmt("{\"sub\":\"a\",\"aud\":%s,\"exp\":%lld}", cases[i].aud, exp));
        if (cases[i].reason)
            refused(f, t, cases[i].reason);
        else
            allowed(f, t);
        free(t);
    }
    char *t = sign(JWT_ALG_HS256, SECRET, fmt("{\"sub\":\"a\",\"exp\":%lld}", exp));
    refused(f, t, "missing aud claim");
    free(t);
    assert_int_equal(counted(f, "audience"), 4);
}

static void claims_of_the_wrong_type_are_refused(void **state)
{
    struct mock_instance *f = *state;
    create(f, "secret: " SECRET "\nissuer: me\n");
    long long exp = now_s() + 600;
    static const struct {
        const char *claims, *reason;
    } cases[] = {
        {"{\"sub\":\"a\",\"iss\":\"me\",\"exp\":\"%lld\"}", "claim exp must be a number"},
        {"{\"sub\":\"a\",\"iss\":\"me\",\"exp\":%lld,\"nbf\":\"0\"}", "claim nbf must be a number"},
        {"{\"sub\":\"a\",\"iss\":\"me\",\"exp\":%lld,\"iat\":true}", "claim iat must be a number"},
        {"{\"sub\":\"a\",\"iss\":7,\"exp\":%lld}", "claim iss must be a string"},
        {"{\"sub\":42,\"iss\":\"me\",\"exp\":%lld}", "claim sub must be a string"},
        {"{\"sub\":\"\",\"iss\":\"me\",\"exp\":%lld}", "claim sub must not be empty"},
        {"{\"iss\":\"me\",\"exp\":%lld}", "missing sub claim"},
        {"{\"sub\":\"a\",\"iss\":\"me\",\"exp\":%lld,\"role\":1}", "claim role must be a string"},
        {"{\"sub\":\"a\",\"iss\":\"me\",\"exp\":%lld,\"role\":null}",
         "claim role must be a string"},
        {"{\"sub\":\"a\",\"iss\":\"me\",\"exp\":%lld,\"tenant\":[\"x\"]}",
         "claim tenant must be a string"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *t = sign(JWT_ALG_HS256, SECRET, fmt(cases[i].claims, exp));
        refused(f, t, cases[i].reason);
        free(t);
    }
    assert_int_equal(counted(f, "claims"), sizeof cases / sizeof cases[0]);
}

/* --- where the token comes from ------------------------------------------------------------- */

static void token_is_read_from_a_bearer_header_of_any_case(void **state)
{
    struct mock_instance *f = *state;
    create(f, hs_config());
    char *t = sign(JWT_ALG_HS256, SECRET, fresh());
    const char *forms[] = {"Bearer %s", "bearer %s", "BEARER   %s  ", "\tbEaReR\t%s"};
    for (size_t i = 0; i < sizeof forms / sizeof forms[0]; i++) {
        struct request r = {.headers = {{"authorization", fmt(forms[i], t)}}};
        struct arq_auth_result out;
        assert_int_equal(authenticate(f, &r, &out), ARQ_AUTH_ALLOW);
        assert_string_equal(out.principal.subject, "alice");
    }
    struct request empty = {.headers = {{"Authorization", "Bearer   "}}};
    request_refused(f, &empty, "malformed token");
    struct request glued = {.headers = {{"Authorization", fmt("Bearer%s", t)}}};
    request_refused(f, &glued, "missing token");
    free(t);
}

static void token_is_read_from_the_token_query_parameter(void **state)
{
    struct mock_instance *f = *state;
    create(f, hs_config());
    char *t = sign(JWT_ALG_HS256, SECRET, fresh());
    struct request r = {.query = fmt("room=lobby&token=%s&x=1", t)};
    struct arq_auth_result out;
    assert_int_equal(authenticate(f, &r, &out), ARQ_AUTH_ALLOW);
    assert_string_equal(out.principal.subject, "alice");
    /* Only the exact names count. */
    struct request near = {.query = fmt("mytoken=%s&token_x=%s", t, t)};
    request_refused(f, &near, "missing token");
    free(t);
}

static void token_is_read_from_access_token_percent_decoded(void **state)
{
    struct mock_instance *f = *state;
    create(f, hs_config());
    char *t = sign(JWT_ALG_HS256, SECRET, fresh());
    /* Every character percent-encoded, some in lower-case hex, and the name too. */
    char enc[4 * 1024] = "";
    for (size_t i = 0; t[i]; i++)
        snprintf(enc + strlen(enc), sizeof enc - strlen(enc), i % 2 ? "%%%02X" : "%%%02x",
                 (unsigned char)t[i]);
    struct request r = {.query = fmt("a=%%zz&access%%5Ftoken=%s", enc)};
    struct arq_auth_result out;
    assert_int_equal(authenticate(f, &r, &out), ARQ_AUTH_ALLOW);
    assert_string_equal(out.principal.subject, "alice");
    /* A % that starts no escape stands for itself, and + stays +: neither is in a JWT's
     * alphabet, so such a token fails the form check. %00 would cut the token: malformed too. */
    struct request bad = {.query = "access_token=abc%zzdef"};
    request_refused(f, &bad, "malformed token");
    struct request cut = {.query = fmt("token=%s%%2", t)};
    request_refused(f, &cut, "malformed token");
    struct request plus = {.query = fmt("token=%s+", t)};
    request_refused(f, &plus, "malformed token");
    struct request nul = {.query = fmt("token=%s%%00", t)};
    request_refused(f, &nul, "malformed token");
    /* The first token parameter decides, even when it is empty. */
    struct request empty = {.query = fmt("token=&access_token=%s", t)};
    request_refused(f, &empty, "malformed token");
    free(t);
}

/* The token ajwt_find_token takes from `query`: AJWT_OK with exactly `want`, or the refusal. */
static enum ajwt_refusal found_in_query(const char *query, const char *want)
{
    struct arq_conn_info info = {.struct_size = sizeof info, .query = query};
    char *token = NULL, reason[128] = "";
    enum ajwt_source source = AJWT_SRC_NONE;
    const char *detail = NULL;
    enum ajwt_refusal why =
        ajwt_find_token(&info, NULL, &token, &source, reason, sizeof reason, &detail);
    if (why == AJWT_OK) {
        assert_int_equal(source, AJWT_SRC_QUERY);
        assert_non_null(token);
        assert_string_equal(token, want);
    } else {
        assert_null(token);
        assert_string_equal(reason, "malformed token");
        assert_non_null(detail);
    }
    free(token);
    return why;
}

static void query_token_keeps_plus_and_a_stray_percent_as_they_are(void **state)
{
    (void)state;
    assert_int_equal(found_in_query("token=a+b%2Bc", "a+b+c"), AJWT_OK);
    assert_int_equal(found_in_query("token=abc%zz%41", "abc%zzA"), AJWT_OK);
    assert_int_equal(found_in_query("x=1&access%5Ftoken=abc%&token=d", "abc%"), AJWT_OK);
    assert_int_equal(found_in_query("token=abc%4", "abc%4"), AJWT_OK);
    assert_int_equal(found_in_query("token=abc%00def", NULL), AJWT_MALFORMED);
    assert_int_equal(found_in_query("access_token=&token=abc", NULL), AJWT_MALFORMED);
}

static void token_is_read_from_a_bearer_subprotocol_among_others(void **state)
{
    struct mock_instance *f = *state;
    create(f, hs_config());
    char *t = sign(JWT_ALG_HS256, SECRET, fresh());
    struct request r = {
        .headers = {{"Sec-WebSocket-Protocol", fmt("arqonbus.v1,  bearer.%s , chat", t)}}};
    struct arq_auth_result out;
    assert_int_equal(authenticate(f, &r, &out), ARQ_AUTH_ALLOW);
    assert_string_equal(out.principal.subject, "alice");
    /* The prefix is exact and must carry something. */
    struct request other = {
        .headers = {{"Sec-WebSocket-Protocol", fmt("Bearer.%s, xbearer.%s", t, t)}}};
    request_refused(f, &other, "missing token");
    struct request empty = {.headers = {{"Sec-WebSocket-Protocol", "arqonbus.v1, bearer."}}};
    request_refused(f, &empty, "malformed token");
    free(t);
}

static void sources_are_tried_header_then_query_then_subprotocol(void **state)
{
    struct mock_instance *f = *state;
    create(f, hs_config());
    char *alice = sign(JWT_ALG_HS256, SECRET, fresh());
    char *bob = sign(JWT_ALG_HS256, SECRET, fmt("{\"sub\":\"bob\",\"exp\":%lld}", now_s() + 600));
    char *carol =
        sign(JWT_ALG_HS256, SECRET, fmt("{\"sub\":\"carol\",\"exp\":%lld}", now_s() + 600));
    struct arq_auth_result out;
    struct request all = {.headers = {{"Sec-WebSocket-Protocol", fmt("bearer.%s", carol)},
                                      {"Authorization", bearer(alice)}},
                          .query = fmt("token=%s", bob)};
    assert_int_equal(authenticate(f, &all, &out), ARQ_AUTH_ALLOW);
    assert_string_equal(out.principal.subject, "alice");
    /* Basic is not ours: the query is next. */
    all.headers[1].value = "Basic YWxpY2U6cHc=";
    assert_int_equal(authenticate(f, &all, &out), ARQ_AUTH_ALLOW);
    assert_string_equal(out.principal.subject, "bob");
    all.query = "room=lobby";
    assert_int_equal(authenticate(f, &all, &out), ARQ_AUTH_ALLOW);
    assert_string_equal(out.principal.subject, "carol");
    /* The first source found decides: a bad header token is not rescued by a good query. */
    struct request bad_first = {.headers = {{"Authorization", "Bearer x.y.z"}},
                                .query = fmt("token=%s", bob)};
    request_refused(f, &bad_first, "malformed token");
    free(alice);
    free(bob);
    free(carol);
}

/* --- option errors --------------------------------------------------------------------------- */

static void options_without_a_key_are_refused(void **state)
{
    struct mock_instance *f = *state;
    assert_contains(create_fails(f, ""), "no key to verify tokens with");
    assert_contains(create_fails(f, "algorithms: [HS256]\n"), "no key to verify tokens with");
    assert_contains(create_fails(f, "secret: \"\"\n"), "secret: empty");
}

static void unreadable_or_wrong_key_files_are_refused_naming_the_file(void **state)
{
    struct mock_instance *f = *state;
    const char *e = create_fails(f, fmt("public_key_file: \"%s\"\n", missing_file));
    assert_contains(e, fmt("cannot open %s", missing_file));
    assert_contains(e, "No such file or directory");
    e = create_fails(f, fmt("public_key_file: \"%s\"\n", dir));
    assert_contains(e, dir);
    e = create_fails(f, fmt("public_key_file: \"%s\"\n", garbage_file));
    assert_contains(e, fmt("%s holds no PEM public key", garbage_file));
    e = create_fails(f, fmt("public_key_file: \"%s\"\n", private_file));
    assert_contains(e, fmt("%s holds a private key", private_file));
    e = create_fails(f, fmt("public_key_file: \"%s\"\n", small_rsa_pub));
    assert_contains(e, small_rsa_pub);
    assert_contains(e, "1024 bits");
    if (geteuid() != 0) { /* root reads anything */
        char locked[PATH_MAX];
        snprintf(locked, sizeof locked, "%s/locked.pub", dir);
        write_file(locked, "x");
        assert_int_equal(chmod(locked, 0), 0);
        e = create_fails(f, fmt("public_key_file: \"%s\"\n", locked));
        assert_contains(e, fmt("cannot open %s: Permission denied", locked));
    }
}

static void algorithms_without_their_key_are_refused(void **state)
{
    struct mock_instance *f = *state;
    assert_contains(create_fails(f, "secret: " SECRET "\nalgorithms: [HS256, RS256]\n"),
                    "algorithms: RS256 needs `public_key_file`");
    assert_contains(
        create_fails(f, fmt("public_key_file: \"%s\"\nalgorithms: [RS256, HS256]\n", rsa_pub)),
        "algorithms: HS256 needs `secret`");
    assert_contains(
        create_fails(f, fmt("public_key_file: \"%s\"\nalgorithms: [ES256]\n", rsa_pub)),
        fmt("algorithms: ES256 needs an EC P-256 public key; %s holds an RSA key", rsa_pub));
    assert_contains(create_fails(f, fmt("public_key_file: \"%s\"\nalgorithms: [ES384]\n", ec_pub)),
                    "algorithms: ES384 needs an EC P-384 public key");
    assert_contains(create_fails(f, fmt("public_key_file: \"%s\"\nalgorithms: [RS256]\n", ec_pub)),
                    "algorithms: RS256 needs an RSA public key");
    assert_contains(create_fails(f, "secret: " SECRET "\nalgorithms: [none]\n"),
                    "\"none\" (unsigned tokens) is never accepted");
    assert_contains(create_fails(f, "secret: " SECRET "\nalgorithms: [HS256, PS256]\n"),
                    "unknown algorithm \"PS256\"");
    assert_contains(create_fails(f, "secret: " SECRET "\nalgorithms: []\n"), "algorithms: empty");
    assert_contains(create_fails(f, "secret: only-20-bytes-long!\n"),
                    "HS256 needs a secret of at least 32 bytes");
    assert_contains(create_fails(f, "algorithms: [HS256, HS512]\n"
                                    "secret: 0123456789abcdef0123456789abcdef0123456789abcdef\n"),
                    "HS512 needs a secret of at least 64 bytes");
    assert_contains(
        create_fails(
            f, fmt("secret: " SECRET "\npublic_key_file: \"%s\"\nalgorithms: [RS256]\n", rsa_pub)),
        "secret is set but `algorithms` lists no HS algorithm");
    assert_contains(
        create_fails(
            f, fmt("secret: " SECRET "\npublic_key_file: \"%s\"\nalgorithms: [HS256]\n", rsa_pub)),
        "public_key_file is set but `algorithms` lists no RS algorithm");
}

static void errors_never_show_the_secret(void **state)
{
    struct mock_instance *f = *state;
    const char *e = create_fails(f, "secret: tooshort-but-secret\n");
    assert_null(strstr(e, "tooshort-but-secret"));
    e = create_fails(f, "secret: " SECRET "\nalgorithms: [RS256]\n");
    assert_null(strstr(e, SECRET));
}

/* --- reconfigure ----------------------------------------------------------------------------- */

static void reconfigure_switches_the_secret(void **state)
{
    struct mock_instance *f = *state;
    create(f, hs_config());
    char *old = sign(JWT_ALG_HS256, SECRET, fresh());
    char *new = sign(JWT_ALG_HS256, OTHER_SECRET, fresh());
    allowed(f, old);
    refused(f, new, "invalid signature");
    struct arq_error err = {""};
    json_t *cfg = config("secret: " OTHER_SECRET "\n");
    assert_int_equal(desc->reconfigure(f->self, cfg, &err), ARQ_OK);
    json_decref(cfg);
    refused(f, old, "invalid signature");
    allowed(f, new);
    free(old);
    free(new);
}

static void failed_reconfigure_keeps_the_old_rules(void **state)
{
    struct mock_instance *f = *state;
    create(f, fmt("public_key_file: \"%s\"\n", rsa_pub));
    char *rs = sign(JWT_ALG_RS256, rsa_private, fresh());
    struct arq_error err = {""};
    json_t *cfg = config(fmt("public_key_file: \"%s\"\n", missing_file));
    assert_true(desc->reconfigure(f->self, cfg, &err) < 0);
    json_decref(cfg);
    assert_contains(err.text, missing_file);
    allowed(f, rs);
    /* And a good one switches from RSA to EC in place. */
    cfg = config(fmt("public_key_file: \"%s\"\n", ec_pub));
    assert_int_equal(desc->reconfigure(f->self, cfg, &err), ARQ_OK);
    json_decref(cfg);
    char *es = sign(JWT_ALG_ES256, ec_private, fresh());
    allowed(f, es);
    refused(f, rs, "algorithm not allowed: RS256");
    free(rs);
    free(es);
}

static void default_role_stays_valid_across_a_reconfigure(void **state)
{
    struct mock_instance *f = *state;
    create(f, "secret: " SECRET "\ndefault_role: reader\n");
    char *t = sign(JWT_ALG_HS256, SECRET, fresh());
    struct arq_auth_result out = allowed(f, t);
    struct arq_error err = {""};
    json_t *cfg = config("secret: " SECRET "\ndefault_role: writer\n");
    assert_int_equal(desc->reconfigure(f->self, cfg, &err), ARQ_OK);
    json_decref(cfg);
    /* The principal of the last call still reads (ASan would see a freed role). */
    assert_string_equal(out.principal.role, "reader");
    out = allowed(f, t);
    assert_string_equal(out.principal.role, "writer");
    free(t);
}

/* --- metrics and logs ------------------------------------------------------------------------ */

static void metrics_count_allowed_and_refused_by_reason(void **state)
{
    struct mock_instance *f = *state;
    create(f, hs_config());
    assert_int_equal(mock_host_metric_type(f->mh, "arqonbus_auth_jwt_allowed_total"),
                     ARQ_METRIC_COUNTER);
    assert_int_equal(mock_host_metric_type(f->mh, "arqonbus_auth_jwt_refused_total"),
                     ARQ_METRIC_COUNTER);
    /* Every reason is there from the start. */
    static const char *const words[] = {
        "missing",          "malformed", "algorithm", "signature", "expired", "not_yet_valid",
        "issued_in_future", "issuer",    "audience",  "claims",    "internal"};
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
        assert_int_equal(counted(f, words[i]), 0);
    assert_int_equal(counted(f, NULL), 0);

    char *good = sign(JWT_ALG_HS256, SECRET, fresh());
    char *bad = sign(JWT_ALG_HS256, OTHER_SECRET, fresh());
    allowed(f, good);
    allowed(f, good);
    refused(f, bad, "invalid signature");
    refused(f, "x", "malformed token");
    struct request none = {0};
    request_refused(f, &none, "missing token");
    assert_int_equal(counted(f, NULL), 2);
    assert_int_equal(counted(f, "signature"), 1);
    assert_int_equal(counted(f, "malformed"), 1);
    assert_int_equal(counted(f, "missing"), 1);
    assert_int_equal(counted(f, "expired"), 0);
    free(good);
    free(bad);
}

static void refusals_are_logged_at_debug_without_the_token(void **state)
{
    struct mock_instance *f = *state;
    create(f, hs_config());
    char *bad = sign(JWT_ALG_HS256, OTHER_SECRET, fresh());
    refused(f, bad, "invalid signature");
    char *sig = strrchr(bad, '.') + 1;
    assert_int_equal(mock_host_log_matching(f->mh, "token refused"), 1);
    for (size_t i = 0; i < mock_host_log_count(f->mh); i++) {
        const char *line = mock_host_log_line(f->mh, i);
        assert_null(strstr(line, sig));
        assert_null(strstr(line, SECRET));
        assert_null(strstr(line, OTHER_SECRET));
        if (strstr(line, "token refused")) {
            assert_memory_equal(line, "debug ", 6);
            assert_contains(line, "reason=invalid signature");
            assert_contains(line, "source=authorization");
        }
    }
    /* Above debug, nothing. */
    mock_host_set_log_level(f->mh, ARQ_LOG_INFO);
    size_t before = mock_host_log_count(f->mh);
    refused(f, bad, "invalid signature");
    assert_int_equal(mock_host_log_count(f->mh), before);
    free(bad);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(descriptor_is_an_auth_policy_that_only_authenticates),
        cmocka_unit_test(every_option_is_reloadable_and_only_the_secret_is_secret),
        cmocka_unit_test(defaults_are_30s_leeway_sub_role_tenant_user_required),
        T(hs256_hs384_hs512_tokens_are_accepted),
        T(rs256_token_is_accepted_with_the_public_key),
        T(es256_and_es384_tokens_are_accepted_with_their_curves_key),
        T(principal_has_subject_default_role_no_tenant_and_the_claims),
        T(role_and_tenant_come_from_the_configured_claims),
        T(missing_token_is_refused_when_required),
        T(missing_token_defers_when_not_required),
        T(malformed_tokens_are_refused_as_malformed),
        T(other_typ_and_crit_headers_are_refused),
        T(expired_token_is_refused),
        T(token_not_yet_valid_is_refused),
        T(token_issued_in_the_future_is_refused),
        T(leeway_accepts_a_token_expired_by_less_than_leeway),
        cmocka_unit_test(time_checks_are_exact_at_the_leeway_boundaries),
        T(exp_is_required_unless_require_exp_is_false),
        T(wrong_signatures_are_refused),
        T(alg_none_is_refused),
        T(refused_alg_is_shown_short_and_plain),
        T(hs256_signed_with_the_public_key_is_refused_when_only_rs256_is_accepted),
        T(hs256_signed_with_the_public_key_is_refused_when_both_are_accepted),
        T(default_with_secret_and_key_accepts_both_families),
        T(issuer_must_match_exactly),
        T(audience_must_match_as_a_string_or_in_an_array),
        T(claims_of_the_wrong_type_are_refused),
        T(token_is_read_from_a_bearer_header_of_any_case),
        T(token_is_read_from_the_token_query_parameter),
        T(token_is_read_from_access_token_percent_decoded),
        cmocka_unit_test(query_token_keeps_plus_and_a_stray_percent_as_they_are),
        T(token_is_read_from_a_bearer_subprotocol_among_others),
        T(sources_are_tried_header_then_query_then_subprotocol),
        T(options_without_a_key_are_refused),
        T(unreadable_or_wrong_key_files_are_refused_naming_the_file),
        T(algorithms_without_their_key_are_refused),
        T(errors_never_show_the_secret),
        T(reconfigure_switches_the_secret),
        T(failed_reconfigure_keeps_the_old_rules),
        T(default_role_stays_valid_across_a_reconfigure),
        T(metrics_count_allowed_and_refused_by_reason),
        T(refusals_are_logged_at_debug_without_the_token),
    };
#undef T
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
