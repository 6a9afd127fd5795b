/* auth-jwt's internals, shared by its files and its unit test: the rules one configuration gives
 * (ajwt_rules.c), and finding a token in a request and checking it against them (ajwt_token.c).
 * Neither keeps state between calls, and the token checks take the time as an argument. */
#ifndef ARQ_AUTH_JWT_H
#define ARQ_AUTH_JWT_H

#include <arqonbus/plugin.h>
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

/* The algorithms a configuration may accept: libjwt 1.10's, without `none`. */
enum ajwt_alg {
    AJWT_HS256,
    AJWT_HS384,
    AJWT_HS512,
    AJWT_RS256,
    AJWT_RS384,
    AJWT_RS512,
    AJWT_ES256,
    AJWT_ES384,
    AJWT_ES512,
    AJWT_NALGS
};

/* The name of `alg` as JWS writes it ("HS256"). */
const char *ajwt_alg_name(enum ajwt_alg alg);

/* Why a request was refused. The order is that of ajwt_refusal_word's table. */
enum ajwt_refusal {
    AJWT_OK = 0,
    AJWT_MISSING,          /* no token anywhere                                          */
    AJWT_MALFORMED,        /* empty, or not three base64url segments of JSON objects     */
    AJWT_ALGORITHM,        /* the header's alg is not one of `algorithms`                */
    AJWT_SIGNATURE,        /* the signature does not verify with the configured key     */
    AJWT_EXPIRED,          /* exp + leeway has passed                                    */
    AJWT_NOT_YET_VALID,    /* nbf - leeway is still ahead                                */
    AJWT_ISSUED_IN_FUTURE, /* iat is more than leeway ahead                              */
    AJWT_ISSUER,           /* iss missing or not `issuer`                                */
    AJWT_AUDIENCE,         /* aud missing or without `audience`                          */
    AJWT_CLAIMS,           /* a claim missing (exp, subject) or of the wrong JSON type   */
    AJWT_INTERNAL,         /* out of memory while checking                               */
    AJWT_NREFUSALS
};

/* The fixed word for `r` used as the metric label: "missing", "malformed", "algorithm",
 * "signature", "expired", "not_yet_valid", "issued_in_future", "issuer", "audience",
 * "claims", "internal" ("ok" for AJWT_OK). */
const char *ajwt_refusal_word(enum ajwt_refusal r);

/* What one configuration says. Built whole by ajwt_rules_new and never changed after, so a
 * reconfigure swaps one for another. */
struct ajwt_rules {
    unsigned algs;         /* bit (1u << enum ajwt_alg) per accepted algorithm            */
    unsigned char *secret; /* HS* key, or NULL                                            */
    int secret_len;        /*                                                             */
    unsigned char *pubkey; /* the PEM text of public_key_file (RS* or ES* key), or NULL   */
    int pubkey_len;        /*                                                             */
    int64_t leeway_ms;     /* allowed clock skew for exp, nbf and iat                     */
    char *issuer;          /* required `iss`, or NULL: not checked                        */
    char *audience;        /* required in `aud`, or NULL: not checked                     */
    char *subject_claim;   /* claim names                                                 */
    char *role_claim;      /*                                                             */
    char *tenant_claim;    /*                                                             */
    char *default_role;    /* role of a token without role_claim                          */
    int required;          /* no token: DENY (1) or DEFER (0)                             */
    int require_exp;       /* a token without exp is refused                              */
};

/* Build the rules of validated `cfg` (borrowed), reading public_key_file. On failure fill
 * `err` (naming the option, and the file for key problems; never the secret) and return a
 * negative code. */
int ajwt_rules_new(const struct arq_host *host, const json_t *cfg, struct ajwt_rules **out,
                   struct arq_error *err);
/* Wipes the keys and frees. NULL is allowed. */
void ajwt_rules_free(struct ajwt_rules *r);

/* Where a token was found. */
enum ajwt_source {
    AJWT_SRC_NONE,
    AJWT_SRC_AUTHORIZATION, /* Authorization: Bearer <t>                                  */
    AJWT_SRC_QUERY,         /* ?token=<t> or ?access_token=<t>                            */
    AJWT_SRC_SUBPROTOCOL    /* Sec-WebSocket-Protocol: ..., bearer.<t>, ...               */
};

/* "authorization", "query", "subprotocol" ("none"). */
const char *ajwt_source_name(enum ajwt_source s);

/* Look for a token in the request, in this order: the Authorization header with the Bearer
 * scheme (any case), the first `token` or `access_token` query parameter (percent-decoded as
 * plugins/common/credentials.h says: `+` stays `+`, a `%` that starts no escape stands for
 * itself), the first `bearer.` entry of Sec-WebSocket-Protocol. The first source that holds a
 * token decides. AJWT_OK: *token is a copy the caller frees. Otherwise AJWT_MISSING, or
 * AJWT_MALFORMED (an empty token, a %00 in the query's), or AJWT_INTERNAL, with `reason`
 * filled for the client and *detail a constant text for the operator. */
enum ajwt_refusal ajwt_find_token(const struct arq_conn_info *info, void *tconn, char **token,
                                  enum ajwt_source *source, char *reason, size_t reason_size,
                                  const char **detail);

/* Who a valid token says the client is. */
struct ajwt_identity {
    json_t *claims;      /* the payload (a new reference the caller releases)              */
    const char *subject; /* these point into `claims`, except a default role, which is   */
    const char *role;    /* the rules' default_role                                       */
    const char *tenant;  /* NULL when the token has no tenant claim                       */
};

/* Check `token` against `r` at time `now_ms` (ms since the Unix epoch): its form, its header's
 * algorithm (before any signature check), its signature with the key of that algorithm's
 * family, then exp, nbf, iat, iss, aud and the subject, role and tenant claims. AJWT_OK fills
 * `id`. Otherwise `id` is untouched, `reason` holds the text for the client (never the token)
 * and *detail, when not NULL, a constant text for the operator. */
enum ajwt_refusal ajwt_verify(const struct ajwt_rules *r, const char *token, int64_t now_ms,
                              struct ajwt_identity *id, char *reason, size_t reason_size,
                              const char **detail);

/* Tokens longer than this are refused as malformed. */
#define AJWT_MAX_TOKEN 16384

#endif
