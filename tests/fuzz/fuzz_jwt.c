/* auth-jwt's front (plugins/auth-jwt/ajwt_token.c): finding a token in a request and the
 * checks made before and around libjwt's signature check.
 *
 * Input, by its first byte:
 * - 'S': "<header JSON>\n<payload JSON>": the target encodes both and signs them with the
 *   configured secret (HMAC with the SHA-2 of the header's alg, HS256 when it names none), so
 *   that the claim checks are reached. Property: a token whose header the front accepts is
 *   never refused for its signature.
 * - anything else: the rest is "<Authorization>\n<query>\n<Sec-WebSocket-Protocol>" (an empty
 *   part is an absent one) given to ajwt_find_token, and the token found to ajwt_verify.
 * Properties: every refusal has a reason that does not quote the token; a token accepted has
 *   a subject and a role. */
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <string.h>
#include <strings.h>

#include "ajwt.h"
#include "fuzz.h"

/* 2026-11-27T14:03:05Z */
#define NOW_MS ((int64_t)1795788185000)

static const char secret[] = "fuzz-secret-0123456789abcdef0123";
static const char ec_public_key[] =
    "-----BEGIN PUBLIC KEY-----\n"
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEcn3+rU9dVgo9Ach70u6+mg0A7QlC\n"
    "7xyXMFKj81zcvIevAZ+vQUqj2dOJGv05JauzYMmrQ6NO5Tn8C+lrZtkcAQ==\n"
    "-----END PUBLIC KEY-----\n";

static struct ajwt_rules rules = {
    .algs = 1u << AJWT_HS256 | 1u << AJWT_HS384 | 1u << AJWT_HS512 | 1u << AJWT_ES256,
    .secret = (unsigned char *)secret,
    .secret_len = sizeof secret - 1,
    .pubkey = (unsigned char *)ec_public_key,
    .pubkey_len = sizeof ec_public_key - 1,
    .leeway_ms = 30000,
    .issuer = "https://issuer.example",
    .audience = "arqonbus",
    .subject_claim = "sub",
    .role_claim = "role",
    .tenant_claim = "tenant",
    .default_role = "user",
    .required = 1,
    .require_exp = 1,
};

struct request {
    const char *authorization, *protocol;
};

static const char *header_of(void *tconn, const char *name)
{
    const struct request *r = tconn;
    if (!strcasecmp(name, "Authorization"))
        return r->authorization;
    if (!strcasecmp(name, "Sec-WebSocket-Protocol"))
        return r->protocol;
    return NULL;
}

static void verify(const char *token, int signed_here)
{
    struct ajwt_identity id = {0};
    char reason[256] = "";
    const char *detail = NULL;
    enum ajwt_refusal r = ajwt_verify(&rules, token, NOW_MS, &id, reason, sizeof reason, &detail);
    if (getenv("FUZZ_VERBOSE"))
        fprintf(stderr, "%s: %s (%s)\n", ajwt_refusal_word(r), reason, detail ? detail : "");
    if (r == AJWT_OK) {
        FUZZ_CHECK(id.claims && id.subject && id.role, "an accepted token without an identity");
        json_decref(id.claims);
        return;
    }
    FUZZ_CHECK(r < AJWT_NREFUSALS && reason[0] && detail, "refusal %d without a reason", (int)r);
    FUZZ_CHECK(strlen(token) < 12 || !strstr(reason, token), "the reason quotes the token");
    FUZZ_CHECK(!signed_here || r != AJWT_SIGNATURE, "a well-signed token refused: %s (%s)", reason,
               detail);
}

static size_t b64url(const unsigned char *in, size_t n, char *out)
{
    static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0) |
                     (i + 2 < n ? in[i + 2] : 0);
        out[o++] = abc[v >> 18 & 63];
        out[o++] = abc[v >> 12 & 63];
        if (i + 1 < n)
            out[o++] = abc[v >> 6 & 63];
        if (i + 2 < n)
            out[o++] = abc[v & 63];
    }
    out[o] = '\0';
    return o;
}

/* "<header>\n<payload>" signed with the secret. */
static void signed_token(const char *text, size_t size)
{
    const char *nl = memchr(text, '\n', size);
    if (!nl)
        return;
    size_t hlen = (size_t)(nl - text), plen = size - hlen - 1;
    char *token = malloc(size / 3 * 4 + 200);
    FUZZ_CHECK(token, "out of memory");
    size_t n = b64url((const unsigned char *)text, hlen, token);
    token[n++] = '.';
    n += b64url((const unsigned char *)nl + 1, plen, token + n);

    const EVP_MD *md = EVP_sha256();
    json_t *header = json_loadb(text, hlen, 0, NULL);
    const char *alg = json_string_value(json_object_get(header, "alg"));
    if (alg && !strcmp(alg, "HS384"))
        md = EVP_sha384();
    else if (alg && !strcmp(alg, "HS512"))
        md = EVP_sha512();
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned maclen = 0;
    FUZZ_CHECK(
        HMAC(md, secret, (int)sizeof secret - 1, (const unsigned char *)token, n, mac, &maclen),
        "HMAC failed");
    token[n++] = '.';
    b64url(mac, maclen, token + n);
    /* only a token ajwt_verify reads whole can be expected to verify */
    verify(token, !memchr(text, '\0', size) && alg && !strncmp(alg, "HS", 2));
    json_decref(header);
    free(token);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size && data[0] == 'S') {
        signed_token((const char *)data + 1, size - 1);
        return 0;
    }
    /* the request's three parts, NUL-terminated */
    char *copy = malloc(size + 1);
    FUZZ_CHECK(copy, "out of memory");
    memcpy(copy, data, size);
    copy[size] = '\0';
    char *parts[3] = {copy, NULL, NULL};
    for (int i = 1; i < 3 && parts[i - 1]; i++) {
        char *nl = strchr(parts[i - 1], '\n');
        if (nl) {
            *nl = '\0';
            parts[i] = nl + 1;
        }
    }
    struct request req = {parts[0] && *parts[0] ? parts[0] : NULL,
                          parts[2] && *parts[2] ? parts[2] : NULL};
    struct arq_conn_info info = {.struct_size = sizeof info,
                                 .transport = "websocket",
                                 .peer_addr = "127.0.0.1",
                                 .peer_port = 40000,
                                 .path = "/",
                                 .query = parts[1] && *parts[1] ? parts[1] : NULL,
                                 .header = header_of};
    char *token = NULL, reason[256] = "";
    const char *detail = NULL;
    enum ajwt_source source;
    enum ajwt_refusal r =
        ajwt_find_token(&info, &req, &token, &source, reason, sizeof reason, &detail);
    if (r == AJWT_OK) {
        FUZZ_CHECK(token && *token && source != AJWT_SRC_NONE, "a token found empty");
        verify(token, 0);
    } else {
        FUZZ_CHECK(!token && reason[0] && detail, "refusal %d without a reason", (int)r);
    }
    free(token);
    free(copy);
    return 0;
}
