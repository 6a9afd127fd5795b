/* auth-jwt: from validated options to rules. Every algorithm accepted must have its key, and
 * every key given must be used by an accepted algorithm, so that a configuration cannot say
 * one thing and check another. */
#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ajwt.h"

/* A PEM public key is a few KiB at most; anything larger is the wrong file. */
#define KEY_FILE_MAX (64 * 1024)

enum family { FAM_HMAC, FAM_RSA, FAM_EC };

static const struct {
    const char *name;
    enum family family;
    int min_secret;    /* HMAC: RFC 7518 3.2, a key at least as long as the hash */
    const char *curve; /* EC: the one curve the algorithm is defined on (OpenSSL's name) */
    const char *curve_label;
} algs[AJWT_NALGS] = {
    [AJWT_HS256] = {"HS256", FAM_HMAC, 32, NULL, NULL},
    [AJWT_HS384] = {"HS384", FAM_HMAC, 48, NULL, NULL},
    [AJWT_HS512] = {"HS512", FAM_HMAC, 64, NULL, NULL},
    [AJWT_RS256] = {"RS256", FAM_RSA, 0, NULL, NULL},
    [AJWT_RS384] = {"RS384", FAM_RSA, 0, NULL, NULL},
    [AJWT_RS512] = {"RS512", FAM_RSA, 0, NULL, NULL},
    [AJWT_ES256] = {"ES256", FAM_EC, 0, "prime256v1", "P-256"},
    [AJWT_ES384] = {"ES384", FAM_EC, 0, "secp384r1", "P-384"},
    [AJWT_ES512] = {"ES512", FAM_EC, 0, "secp521r1", "P-521"},
};

const char *ajwt_alg_name(enum ajwt_alg alg)
{
    return (unsigned)alg < AJWT_NALGS ? algs[alg].name : "?";
}

/* What public_key_file holds. */
struct key_info {
    enum family family; /* FAM_RSA or FAM_EC */
    int bits;
    int ec_alg; /* FAM_EC: the ES algorithm of its curve, or -1 for another curve */
    char curve[64];
};

static int rules__parse_key(const char *path, const unsigned char *pem, int len,
                            struct key_info *ki, struct arq_error *err)
{
    int rc = ARQ_OK;
    BIO *bio = BIO_new_mem_buf(pem, len);
    if (!bio)
        return arq_error_set(err, ARQ_ENOMEM, "out of memory");
    EVP_PKEY *key = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
    BIO_free(bio);
    ERR_clear_error();
    if (!key)
        return arq_error_set(err, ARQ_EINVAL,
                             "public_key_file: %s holds no PEM public key (expected "
                             "-----BEGIN PUBLIC KEY-----)",
                             path);
    ki->bits = EVP_PKEY_get_bits(key);
    ki->ec_alg = -1;
    switch (EVP_PKEY_get_base_id(key)) {
    case EVP_PKEY_RSA:
        ki->family = FAM_RSA;
        if (ki->bits < 2048) /* RFC 7518 3.3 */
            rc = arq_error_set(err, ARQ_EINVAL,
                               "public_key_file: %s: an RSA key of %d bits; RS algorithms need "
                               "at least 2048",
                               path, ki->bits);
        break;
    case EVP_PKEY_EC:
        ki->family = FAM_EC;
        if (!EVP_PKEY_get_group_name(key, ki->curve, sizeof ki->curve, NULL))
            snprintf(ki->curve, sizeof ki->curve, "unnamed curve");
        for (int a = AJWT_ES256; a <= AJWT_ES512; a++)
            if (strcmp(ki->curve, algs[a].curve) == 0)
                ki->ec_alg = a;
        if (ki->ec_alg < 0)
            rc = arq_error_set(err, ARQ_EINVAL,
                               "public_key_file: %s: an EC key on %s; ES256, ES384 and ES512 "
                               "need P-256, P-384 and P-521",
                               path, ki->curve);
        break;
    default:
        rc = arq_error_set(err, ARQ_EINVAL,
                           "public_key_file: %s: unsupported key type (an RSA or EC public key "
                           "is needed)",
                           path);
    }
    ERR_clear_error();
    EVP_PKEY_free(key);
    return rc;
}

/* Read the PEM text of `path` into r->pubkey and say what key it holds. */
static int rules__read_key(struct ajwt_rules *r, const char *path, struct key_info *ki,
                           struct arq_error *err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return arq_error_set(err, ARQ_EIO, "public_key_file: cannot open %s: %s", path,
                             strerror(errno));
    unsigned char *buf = malloc(KEY_FILE_MAX + 1);
    if (!buf) {
        fclose(f);
        return arq_error_set(err, ARQ_ENOMEM, "out of memory");
    }
    size_t n = fread(buf, 1, KEY_FILE_MAX + 1, f);
    int failed = ferror(f);
    int saved = errno;
    fclose(f);
    int rc;
    if (failed) {
        rc = arq_error_set(err, ARQ_EIO, "public_key_file: cannot read %s: %s", path,
                           strerror(saved));
        goto fail;
    }
    if (n > KEY_FILE_MAX) {
        rc = arq_error_set(err, ARQ_EINVAL,
                           "public_key_file: %s is larger than %d KiB: not a public key", path,
                           KEY_FILE_MAX / 1024);
        goto fail;
    }
    buf[n] = '\0';
    /* A private key has no business on the bus; say so rather than "no public key". */
    if (strstr((const char *)buf, "PRIVATE KEY-----")) {
        rc = arq_error_set(err, ARQ_EINVAL,
                           "public_key_file: %s holds a private key; give the public key only "
                           "(openssl pkey -in key.pem -pubout)",
                           path);
        goto fail;
    }
    if ((rc = rules__parse_key(path, buf, (int)n, ki, err)) != ARQ_OK)
        goto fail;
    r->pubkey = buf;
    r->pubkey_len = (int)n;
    return ARQ_OK;
fail:
    OPENSSL_cleanse(buf, n <= KEY_FILE_MAX ? n : KEY_FILE_MAX + 1);
    free(buf);
    return rc;
}

static int rules__alg_by_name(const char *name)
{
    for (int a = 0; a < AJWT_NALGS; a++)
        if (strcmp(name, algs[a].name) == 0)
            return a;
    return -1;
}

static int rules__read_algorithms(struct ajwt_rules *r, const json_t *list, struct arq_error *err)
{
    size_t i;
    json_t *v;
    if (json_array_size(list) == 0)
        return arq_error_set(err, ARQ_EINVAL,
                             "algorithms: empty; leave it out for the default, or list some of "
                             "HS256 HS384 HS512 RS256 RS384 RS512 ES256 ES384 ES512");
    json_array_foreach(list, i, v)
    {
        const char *name = json_string_value(v);
        int a = name ? rules__alg_by_name(name) : -1;
        if (name && strcmp(name, "none") == 0)
            return arq_error_set(err, ARQ_EINVAL,
                                 "algorithms: \"none\" (unsigned tokens) is never accepted");
        if (a < 0)
            return arq_error_set(err, ARQ_EINVAL,
                                 "algorithms: unknown algorithm \"%s\" (known: HS256 HS384 HS512 "
                                 "RS256 RS384 RS512 ES256 ES384 ES512)",
                                 name ? name : "?");
        r->algs |= 1u << a;
    }
    return ARQ_OK;
}

/* Every accepted algorithm has its key, and every key given is used. */
static int rules__check_keys(const struct ajwt_rules *r, const char *path,
                             const struct key_info *ki, struct arq_error *err)
{
    int uses_secret = 0, uses_key = 0;
    for (int a = 0; a < AJWT_NALGS; a++) {
        if (!(r->algs & (1u << a)))
            continue;
        const char *name = algs[a].name;
        switch (algs[a].family) {
        case FAM_HMAC:
            uses_secret = 1;
            if (!r->secret)
                return arq_error_set(err, ARQ_EINVAL, "algorithms: %s needs `secret`", name);
            if (r->secret_len < algs[a].min_secret)
                return arq_error_set(err, ARQ_EINVAL,
                                     "secret: %s needs a secret of at least %d bytes (RFC 7518 "
                                     "3.2); this one is shorter",
                                     name, algs[a].min_secret);
            break;
        case FAM_RSA:
            uses_key = 1;
            if (!r->pubkey)
                return arq_error_set(err, ARQ_EINVAL,
                                     "algorithms: %s needs `public_key_file` (an RSA public key)",
                                     name);
            if (ki->family != FAM_RSA)
                return arq_error_set(err, ARQ_EINVAL,
                                     "algorithms: %s needs an RSA public key; %s holds an EC key",
                                     name, path);
            break;
        case FAM_EC:
            uses_key = 1;
            if (!r->pubkey)
                return arq_error_set(err, ARQ_EINVAL,
                                     "algorithms: %s needs `public_key_file` (an EC %s public "
                                     "key)",
                                     name, algs[a].curve_label);
            if (ki->family != FAM_EC || ki->ec_alg != a)
                return arq_error_set(
                    err, ARQ_EINVAL, "algorithms: %s needs an EC %s public key; %s holds %s %s key",
                    name, algs[a].curve_label, path, ki->family == FAM_RSA ? "an" : "a",
                    ki->family == FAM_RSA ? "RSA" : algs[ki->ec_alg].curve_label);
            break;
        }
    }
    if (r->secret && !uses_secret)
        return arq_error_set(err, ARQ_EINVAL,
                             "secret is set but `algorithms` lists no HS algorithm to use it");
    if (r->pubkey && !uses_key)
        return arq_error_set(err, ARQ_EINVAL,
                             "public_key_file is set but `algorithms` lists no %s algorithm to "
                             "use it",
                             ki->family == FAM_RSA ? "RS" : "ES");
    return ARQ_OK;
}

static char *rules__dup(const char *s, int *oom)
{
    if (!s)
        return NULL;
    char *d = strdup(s);
    if (!d)
        *oom = 1;
    return d;
}

static int rules__names(struct ajwt_rules *r, const struct arq_host *host, const json_t *cfg,
                        struct arq_error *err)
{
    static const char *const names[] = {"subject_claim", "role_claim", "tenant_claim",
                                        "default_role"};
    static const char *const defaults[] = {"sub", "role", "tenant", "user"};
    char **slots[] = {&r->subject_claim, &r->role_claim, &r->tenant_claim, &r->default_role};
    int oom = 0;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        const char *v = host->opt_str(cfg, names[i], defaults[i]);
        if (!*v)
            return arq_error_set(err, ARQ_EINVAL, "%s: empty", names[i]);
        *slots[i] = rules__dup(v, &oom);
    }
    const char *issuer = host->opt_str(cfg, "issuer", NULL);
    const char *audience = host->opt_str(cfg, "audience", NULL);
    if (issuer && !*issuer)
        return arq_error_set(err, ARQ_EINVAL, "issuer: empty; leave it out not to check `iss`");
    if (audience && !*audience)
        return arq_error_set(err, ARQ_EINVAL, "audience: empty; leave it out not to check `aud`");
    r->issuer = rules__dup(issuer, &oom);
    r->audience = rules__dup(audience, &oom);
    return oom ? arq_error_set(err, ARQ_ENOMEM, "out of memory") : ARQ_OK;
}

int ajwt_rules_new(const struct arq_host *host, const json_t *cfg, struct ajwt_rules **out,
                   struct arq_error *err)
{
    struct key_info ki = {0};
    int rc;
    struct ajwt_rules *r = calloc(1, sizeof *r);
    if (!r)
        return arq_error_set(err, ARQ_ENOMEM, "out of memory");
    const char *secret = host->opt_str(cfg, "secret", NULL);
    const char *path = host->opt_str(cfg, "public_key_file", NULL);
    if (secret) {
        if (!*secret) {
            rc = arq_error_set(err, ARQ_EINVAL, "secret: empty");
            goto fail;
        }
        size_t n = strlen(secret);
        if (n > 4096) {
            rc = arq_error_set(err, ARQ_EINVAL, "secret: longer than 4096 bytes");
            goto fail;
        }
        if (!(r->secret = malloc(n))) {
            rc = arq_error_set(err, ARQ_ENOMEM, "out of memory");
            goto fail;
        }
        memcpy(r->secret, secret, n);
        r->secret_len = (int)n;
    }
    if (path && !*path) {
        rc = arq_error_set(err, ARQ_EINVAL, "public_key_file: empty");
        goto fail;
    }
    if (path && (rc = rules__read_key(r, path, &ki, err)) != ARQ_OK)
        goto fail;
    if (!r->secret && !r->pubkey) {
        rc = arq_error_set(err, ARQ_EINVAL,
                           "no key to verify tokens with: set `secret` (HS256/384/512) or "
                           "`public_key_file` (RS256/384/512, ES256/384/512)");
        goto fail;
    }
    const json_t *list = host->opt_json(cfg, "algorithms");
    if (list) {
        if ((rc = rules__read_algorithms(r, list, err)) != ARQ_OK)
            goto fail;
    } else {
        /* The default: HS256 with a secret, and the algorithm that fits the public key. */
        if (r->secret)
            r->algs |= 1u << AJWT_HS256;
        if (r->pubkey) {
            /* ec_alg >= 0 here: rules__read_key fails an EC key of another curve (the
             * analyzer does not follow the variadic arq_error_set, so it misses that the
             * failure returns non-zero).
             * NOLINTNEXTLINE(clang-analyzer-core.UndefinedBinaryOperatorResult) */
            r->algs |= 1u << (ki.family == FAM_RSA ? AJWT_RS256 : ki.ec_alg);
        }
    }
    if ((rc = rules__check_keys(r, path, &ki, err)) != ARQ_OK)
        goto fail;
    if ((rc = rules__names(r, host, cfg, err)) != ARQ_OK)
        goto fail;
    r->leeway_ms = host->opt_int(cfg, "leeway", 30000);
    r->required = host->opt_bool(cfg, "required", 1);
    r->require_exp = host->opt_bool(cfg, "require_exp", 1);
    *out = r;
    return ARQ_OK;
fail:
    ajwt_rules_free(r);
    return rc;
}

void ajwt_rules_free(struct ajwt_rules *r)
{
    if (!r)
        return;
    if (r->secret)
        OPENSSL_cleanse(r->secret, (size_t)r->secret_len);
    if (r->pubkey)
        OPENSSL_cleanse(r->pubkey, (size_t)r->pubkey_len);
    free(r->secret);
    free(r->pubkey);
    free(r->issuer);
    free(r->audience);
    free(r->subject_claim);
    free(r->role_claim);
    free(r->tenant_claim);
    free(r->default_role);
    free(r);
}
