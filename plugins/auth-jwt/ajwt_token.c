/* auth-jwt: finding a token in a request and checking it.
 *
 * The header is read here, strictly, before libjwt sees the token: libjwt 1.10 takes the
 * algorithm from the token itself (in any case: "hs256" passes), keeps the last of duplicate
 * JSON keys, ignores `crit`, skips characters outside the base64 alphabet and accepts a payload
 * that is not an object. So a token reaches jwt_decode only when its three segments are clean
 * base64url, its header and payload are JSON objects without duplicate keys, and its `alg` is
 * exactly one of the configured algorithms; jwt_decode then gets the key of that algorithm's
 * family only (the secret for HS*, the public key for RS* and ES*), which is what stops a token
 * signed with HMAC over the public key's PEM. */
#include <errno.h>
#include <jwt.h>
#include <openssl/err.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ajwt.h"
#include "credentials.h"

const char *ajwt_refusal_word(enum ajwt_refusal r)
{
    static const char *const words[AJWT_NREFUSALS] = {
        [AJWT_OK] = "ok",
        [AJWT_MISSING] = "missing",
        [AJWT_MALFORMED] = "malformed",
        [AJWT_ALGORITHM] = "algorithm",
        [AJWT_SIGNATURE] = "signature",
        [AJWT_EXPIRED] = "expired",
        [AJWT_NOT_YET_VALID] = "not_yet_valid",
        [AJWT_ISSUED_IN_FUTURE] = "issued_in_future",
        [AJWT_ISSUER] = "issuer",
        [AJWT_AUDIENCE] = "audience",
        [AJWT_CLAIMS] = "claims",
        [AJWT_INTERNAL] = "internal",
    };
    return (unsigned)r < AJWT_NREFUSALS ? words[r] : "internal";
}

const char *ajwt_source_name(enum ajwt_source s)
{
    switch (s) {
    case AJWT_SRC_AUTHORIZATION:
        return "authorization";
    case AJWT_SRC_QUERY:
        return "query";
    case AJWT_SRC_SUBPROTOCOL:
        return "subprotocol";
    default:
        return "none";
    }
}

/* Fill `reason`, set *detail, return `r`: the one way a check refuses. */
static enum ajwt_refusal refuse(enum ajwt_refusal r, char *reason, size_t size, const char **detail,
                                const char *why, const char *fmt, ...) ARQ_PRINTF(6, 7);
static enum ajwt_refusal refuse(enum ajwt_refusal r, char *reason, size_t size, const char **detail,
                                const char *why, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, size, fmt, ap);
    va_end(ap);
    if (detail)
        *detail = why;
    return r;
}

/* --- where the token is ------------------------------------------------------------------- */

enum ajwt_refusal ajwt_find_token(const struct arq_conn_info *info, void *tconn, char **token,
                                  enum ajwt_source *source, char *reason, size_t reason_size,
                                  const char **detail)
{
    static const char *const query_names[] = {"token", "access_token", NULL};
    static const char *const empty[] = {
        [AJWT_SRC_AUTHORIZATION] = "Bearer without a token",
        [AJWT_SRC_QUERY] = "empty token in the query",
        [AJWT_SRC_SUBPROTOCOL] = "bearer. subprotocol without a token",
    };
    const char *tok = NULL, *v;
    size_t len = 0;
    *token = NULL;
    *source = AJWT_SRC_NONE;
    if (info->header && (v = info->header(tconn, "Authorization")) &&
        arq_cred_bearer(v, &tok, &len))
        *source = AJWT_SRC_AUTHORIZATION;
    else if (info->query && arq_cred_query_first_of(info->query, query_names, &tok, &len) >= 0)
        *source = AJWT_SRC_QUERY;
    /* Browsers cannot set Authorization on a WebSocket: they offer "bearer.<t>" as a
     * subprotocol. */
    else if (info->header && (v = info->header(tconn, "Sec-WebSocket-Protocol")) &&
             arq_cred_subprotocol_bearer(v, &tok, &len))
        *source = AJWT_SRC_SUBPROTOCOL;
    else
        return refuse(AJWT_MISSING, reason, reason_size, detail, "no token in the request",
                      "missing token");
    if (len == 0)
        return refuse(AJWT_MALFORMED, reason, reason_size, detail, empty[*source],
                      "malformed token");
    char *copy = malloc(len + 1);
    if (!copy)
        return refuse(AJWT_INTERNAL, reason, reason_size, detail, "out of memory",
                      "internal error");
    size_t n = len;
    if (*source == AJWT_SRC_QUERY)
        n = arq_cred_pct_decode(tok, len, copy);
    else
        memcpy(copy, tok, len);
    copy[n] = '\0';
    /* A %00 would cut the token short where ajwt_verify reads it. */
    if (memchr(copy, '\0', n)) {
        free(copy);
        return refuse(AJWT_MALFORMED, reason, reason_size, detail, "NUL byte in the query's token",
                      "malformed token");
    }
    *token = copy;
    return AJWT_OK;
}

/* --- the token's form --------------------------------------------------------------------- */

static int b64url_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '-')
        return 62;
    if (c == '_')
        return 63;
    return -1;
}

/* Unpadded base64url (RFC 7515 2): only the alphabet, no '=', no length of 4k+1. */
static int b64url_valid(const char *s, size_t n)
{
    if (n % 4 == 1)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (b64url_value((unsigned char)s[i]) < 0)
            return 0;
    return 1;
}

/* Decode a valid segment (b64url_valid) into a new NUL-terminated buffer; NULL on ENOMEM. */
static char *b64url_decode(const char *s, size_t n, size_t *out_len)
{
    char *out = malloc(n / 4 * 3 + 3), *o = out;
    if (!out)
        return NULL;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        acc = (acc << 6) | (uint32_t)b64url_value((unsigned char)s[i]);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            *o++ = (char)((acc >> bits) & 0xff);
        }
    }
    *o = '\0';
    *out_len = (size_t)(o - out);
    return out;
}

/* A segment as a JSON object (strict: no duplicate keys, no NUL in strings); NULL when it is
 * not one, with *oom set when memory ran out. */
static json_t *segment_object(const char *s, size_t n, int *oom)
{
    size_t len = 0;
    char *text = b64url_decode(s, n, &len);
    if (!text) {
        *oom = 1;
        return NULL;
    }
    json_t *v = json_loadb(text, len, JSON_REJECT_DUPLICATES, NULL);
    free(text);
    if (v && !json_is_object(v)) {
        json_decref(v);
        v = NULL;
    }
    return v;
}

static int alg_by_name(const char *name)
{
    for (int a = 0; a < AJWT_NALGS; a++)
        if (strcmp(name, ajwt_alg_name((enum ajwt_alg)a)) == 0)
            return a;
    return -1;
}

/* The header's alg for a reason text: attacker-chosen, so short and of plain characters. */
static void printable_alg(const char *alg, char *out, size_t size)
{
    size_t i = 0;
    for (; alg[i] && i + 1 < size; i++) {
        char c = alg[i];
        int plain = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                    c == '-' || c == '_' || c == '.' || c == '+';
        out[i] = plain ? c : '?';
    }
    out[i] = '\0';
    if (alg[i] && size > 4)
        memcpy(out + size - 4, "...", 4);
}

/* --- claims ------------------------------------------------------------------------------- */

/* A NumericDate claim: absent (0), a number (1, in *ms), or of the wrong type (-1). */
static int numeric_date(const json_t *claims, const char *name, double *ms)
{
    const json_t *v = json_object_get(claims, name);
    if (!v)
        return 0;
    if (!json_is_number(v))
        return -1;
    *ms = json_number_value(v) * 1000.0;
    return 1;
}

static enum ajwt_refusal check_times(const struct ajwt_rules *r, const json_t *claims,
                                     int64_t now_ms, char *reason, size_t size, const char **detail)
{
    double now = (double)now_ms, leeway = (double)r->leeway_ms, at = 0;
    int has = numeric_date(claims, "exp", &at);
    if (has < 0)
        return refuse(AJWT_CLAIMS, reason, size, detail, "exp is not a number",
                      "claim exp must be a number");
    if (has == 0 && r->require_exp)
        return refuse(AJWT_CLAIMS, reason, size, detail, "no exp", "missing exp claim");
    /* RFC 7519 4.1.4: valid only before exp. */
    if (has > 0 && now >= at + leeway)
        return refuse(AJWT_EXPIRED, reason, size, detail, "exp passed", "token expired");
    if ((has = numeric_date(claims, "nbf", &at)) < 0)
        return refuse(AJWT_CLAIMS, reason, size, detail, "nbf is not a number",
                      "claim nbf must be a number");
    if (has > 0 && now + leeway < at)
        return refuse(AJWT_NOT_YET_VALID, reason, size, detail, "nbf ahead", "token not yet valid");
    if ((has = numeric_date(claims, "iat", &at)) < 0)
        return refuse(AJWT_CLAIMS, reason, size, detail, "iat is not a number",
                      "claim iat must be a number");
    if (has > 0 && at > now + leeway)
        return refuse(AJWT_ISSUED_IN_FUTURE, reason, size, detail, "iat ahead",
                      "token issued in the future");
    return AJWT_OK;
}

static enum ajwt_refusal check_issuer_audience(const struct ajwt_rules *r, const json_t *claims,
                                               char *reason, size_t size, const char **detail)
{
    if (r->issuer) {
        const json_t *iss = json_object_get(claims, "iss");
        if (!iss)
            return refuse(AJWT_ISSUER, reason, size, detail, "no iss", "missing iss claim");
        if (!json_is_string(iss))
            return refuse(AJWT_CLAIMS, reason, size, detail, "iss is not a string",
                          "claim iss must be a string");
        if (strcmp(json_string_value(iss), r->issuer) != 0)
            return refuse(AJWT_ISSUER, reason, size, detail, "iss differs", "wrong issuer");
    }
    if (r->audience) {
        const json_t *aud = json_object_get(claims, "aud"), *v;
        int typed = json_is_string(aud), found = 0;
        size_t i;
        if (!aud)
            return refuse(AJWT_AUDIENCE, reason, size, detail, "no aud", "missing aud claim");
        if (typed) {
            found = strcmp(json_string_value(aud), r->audience) == 0;
        } else if (json_is_array(aud)) {
            typed = 1;
            json_array_foreach(aud, i, v)
            {
                if (!json_is_string(v)) {
                    typed = 0;
                    break;
                }
                found |= strcmp(json_string_value(v), r->audience) == 0;
            }
        }
        if (!typed)
            return refuse(AJWT_CLAIMS, reason, size, detail, "aud has the wrong type",
                          "claim aud must be a string or an array of strings");
        if (!found)
            return refuse(AJWT_AUDIENCE, reason, size, detail, "aud lacks the audience",
                          "wrong audience");
    }
    return AJWT_OK;
}

/* A claim that must be a non-empty string when present: *out is it, or NULL when absent. */
static enum ajwt_refusal string_claim(const json_t *claims, const char *name, const char **out,
                                      char *reason, size_t size, const char **detail)
{
    const json_t *v = json_object_get(claims, name);
    *out = NULL;
    if (!v)
        return AJWT_OK;
    if (!json_is_string(v))
        return refuse(AJWT_CLAIMS, reason, size, detail, "a claim has the wrong type",
                      "claim %s must be a string", name);
    if (json_string_length(v) == 0)
        return refuse(AJWT_CLAIMS, reason, size, detail, "a claim is empty",
                      "claim %s must not be empty", name);
    *out = json_string_value(v);
    return AJWT_OK;
}

static enum ajwt_refusal check_identity(const struct ajwt_rules *r, const json_t *claims,
                                        struct ajwt_identity *id, char *reason, size_t size,
                                        const char **detail)
{
    enum ajwt_refusal why;
    if ((why = string_claim(claims, r->subject_claim, &id->subject, reason, size, detail)))
        return why;
    if (!id->subject)
        return refuse(AJWT_CLAIMS, reason, size, detail, "no subject", "missing %s claim",
                      r->subject_claim);
    if ((why = string_claim(claims, r->role_claim, &id->role, reason, size, detail)))
        return why;
    if (!id->role)
        id->role = r->default_role;
    return string_claim(claims, r->tenant_claim, &id->tenant, reason, size, detail);
}

/* --- the whole check ---------------------------------------------------------------------- */

enum ajwt_refusal ajwt_verify(const struct ajwt_rules *r, const char *token, int64_t now_ms,
                              struct ajwt_identity *id, char *reason, size_t reason_size,
                              const char **detail)
{
#define REFUSE(r_, why_, ...) (refuse((r_), reason, reason_size, detail, (why_), __VA_ARGS__))
    enum ajwt_refusal why = AJWT_OK;
    json_t *header = NULL, *claims = NULL;
    jwt_t *jwt = NULL;
    int oom = 0;
    size_t n = strlen(token);
    if (n > AJWT_MAX_TOKEN)
        return REFUSE(AJWT_MALFORMED, "token too long", "malformed token");
    const char *dot1 = memchr(token, '.', n);
    const char *dot2 = dot1 ? memchr(dot1 + 1, '.', n - (size_t)(dot1 + 1 - token)) : NULL;
    if (!dot2 || memchr(dot2 + 1, '.', n - (size_t)(dot2 + 1 - token)))
        return REFUSE(AJWT_MALFORMED, "not three segments", "malformed token");
    size_t head_len = (size_t)(dot1 - token), body_len = (size_t)(dot2 - dot1 - 1);
    size_t sig_len = n - (size_t)(dot2 + 1 - token);
    if (head_len == 0 || body_len == 0 || !b64url_valid(token, head_len) ||
        !b64url_valid(dot1 + 1, body_len) || !b64url_valid(dot2 + 1, sig_len))
        return REFUSE(AJWT_MALFORMED, "a segment is not base64url", "malformed token");

    /* 1. The header, and its algorithm before anything is verified. */
    if (!(header = segment_object(token, head_len, &oom))) {
        why = oom ? REFUSE(AJWT_INTERNAL, "out of memory", "internal error")
                  : REFUSE(AJWT_MALFORMED, "the header is not a JSON object", "malformed token");
        goto done;
    }
    const char *alg_name = json_string_value(json_object_get(header, "alg"));
    if (!alg_name) {
        why = REFUSE(AJWT_MALFORMED, "the header has no alg string", "malformed token");
        goto done;
    }
    int alg = alg_by_name(alg_name);
    if (alg < 0 || !(r->algs & (1u << alg))) {
        char shown[40];
        printable_alg(alg_name, shown, sizeof shown);
        why = REFUSE(AJWT_ALGORITHM, "alg not accepted", "algorithm not allowed: %s", shown);
        goto done;
    }
    /* libjwt refuses any other typ, which would read as a bad signature. */
    const json_t *typ = json_object_get(header, "typ");
    if (typ && !(json_is_string(typ) && strcasecmp(json_string_value(typ), "JWT") == 0)) {
        why = REFUSE(AJWT_MALFORMED, "typ is not JWT", "unsupported token type");
        goto done;
    }
    /* RFC 7515 4.1.11: extensions marked critical that are not understood are refused. */
    if (json_object_get(header, "crit")) {
        why = REFUSE(AJWT_MALFORMED, "crit header", "unsupported critical header");
        goto done;
    }

    /* 2. The payload must be an object before it is worth a signature check. */
    if (!(claims = segment_object(dot1 + 1, body_len, &oom))) {
        why = oom ? REFUSE(AJWT_INTERNAL, "out of memory", "internal error")
                  : REFUSE(AJWT_MALFORMED, "the payload is not a JSON object", "malformed token");
        goto done;
    }
    if (sig_len == 0) {
        why = REFUSE(AJWT_SIGNATURE, "no signature", "invalid signature");
        goto done;
    }

    /* 3. The signature, with the key of the algorithm's family and that one only. */
    int hmac = alg <= AJWT_HS512;
    const unsigned char *key = hmac ? r->secret : r->pubkey;
    int key_len = hmac ? r->secret_len : r->pubkey_len;
    int rc = jwt_decode(&jwt, token, key, key_len);
    ERR_clear_error(); /* what a failed check left on this thread's OpenSSL error queue */
    if (rc == ENOMEM) {
        why = REFUSE(AJWT_INTERNAL, "out of memory", "internal error");
        goto done;
    }
    if (rc != 0 || !jwt || jwt_get_alg(jwt) != jwt_str_alg(alg_name)) {
        why = REFUSE(AJWT_SIGNATURE, "signature check failed", "invalid signature");
        goto done;
    }

    /* 4. The claims. */
    struct ajwt_identity got = {0};
    if ((why = check_times(r, claims, now_ms, reason, reason_size, detail)) ||
        (why = check_issuer_audience(r, claims, reason, reason_size, detail)) ||
        (why = check_identity(r, claims, &got, reason, reason_size, detail)))
        goto done;
    got.claims = claims;
    claims = NULL;
    *id = got;
done:
    jwt_free(jwt);
    json_decref(header);
    json_decref(claims);
    return why;
#undef REFUSE
}
