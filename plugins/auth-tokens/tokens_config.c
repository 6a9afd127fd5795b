/* auth-tokens: the `tokens` option, validated into a table of entries.
 *
 * Every message names the entry as `tokens[<index from 0>]`, followed by its name when it
 * has a usable one, and never quotes a token or a digest: the host prints these messages,
 * and the option is SECRET. */
#include <jansson.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "atok.h"
#include "credentials.h"

static const char *const atok_cfg__keys[] = {"name", "sha256", "token", "role", "tenant", NULL};

#define ATOK_CFG_WORD_MAX 32 /* longest unknown key that gets a suggestion */

/* Edit distance between two short words (at most ATOK_CFG_WORD_MAX bytes each), counting a
 * swap of two neighbouring letters as one edit, as the host does for its own suggestions. */
static size_t atok_cfg__distance(const char *a, size_t la, const char *b, size_t lb)
{
    size_t d[ATOK_CFG_WORD_MAX + 1][ATOK_CFG_WORD_MAX + 1];
    for (size_t i = 0; i <= la; i++)
        d[i][0] = i;
    for (size_t j = 0; j <= lb; j++)
        d[0][j] = j;
    for (size_t i = 1; i <= la; i++) {
        for (size_t j = 1; j <= lb; j++) {
            size_t best = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
            if (d[i - 1][j] + 1 < best)
                best = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < best)
                best = d[i][j - 1] + 1;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
                d[i - 2][j - 2] + 1 < best)
                best = d[i - 2][j - 2] + 1;
            d[i][j] = best;
        }
    }
    return d[la][lb];
}

/* The allowed key closest to `key` when it is close enough to be a typo (the host's rule:
 * at most a third of the word's length, between 1 and 3 edits), or NULL. */
static const char *atok_cfg__suggest(const char *key)
{
    size_t lk = strlen(key);
    if (lk > ATOK_CFG_WORD_MAX)
        return NULL;
    size_t limit = lk / 3 < 1 ? 1 : lk / 3 > 3 ? 3 : lk / 3;
    const char *best = NULL;
    size_t best_d = limit + 1;
    for (size_t i = 0; atok_cfg__keys[i]; i++) {
        const char *c = atok_cfg__keys[i];
        size_t d = atok_cfg__distance(key, lk, c, strlen(c));
        if (d < best_d) {
            best_d = d;
            best = c;
        }
    }
    return best;
}

static int atok_cfg__has_control(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return 1;
    return 0;
}

static const char *atok_cfg__type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "a mapping";
    case JSON_ARRAY:
        return "a list";
    case JSON_STRING:
        return "text";
    case JSON_INTEGER:
    case JSON_REAL:
        return "a number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    case JSON_NULL:
        return "null";
    }
    return "a value";
}

/* The text at `key` of entry `e` into *out (NULL when absent, or null when `null_ok`), with
 * its length. `label` names the entry in errors. */
static int atok_cfg__text(const json_t *e, const char *key, const char *label, int null_ok,
                          const char **out, size_t *len, struct arq_error *err)
{
    const json_t *v = json_object_get(e, key);
    *out = NULL;
    *len = 0;
    if (!v || (null_ok && json_is_null(v)))
        return ARQ_OK;
    if (!json_is_string(v))
        return arq_error_set(
            err, ARQ_EINVAL, "%s: %s must be text, not %s%s", label, key, atok_cfg__type_name(v),
            json_is_number(v) || json_is_boolean(v) ? " (quote it in the YAML)" : "");
    *out = json_string_value(v);
    *len = json_string_length(v);
    return ARQ_OK;
}

/* A name, role or tenant: given, non-empty, printable (it appears in logs). */
static int atok_cfg__label_text(const json_t *e, const char *key, const char *label, int required,
                                const char **out, struct arq_error *err)
{
    size_t len;
    int rc = atok_cfg__text(e, key, label, !required, out, &len, err);
    if (rc != ARQ_OK)
        return rc;
    if (!*out && required)
        return arq_error_set(err, ARQ_EINVAL, "%s: missing %s", label, key);
    if (*out && len == 0)
        return arq_error_set(err, ARQ_EINVAL, "%s: %s is empty%s", label, key,
                             required ? "" : " (leave it out for none)");
    if (*out && atok_cfg__has_control(*out, len))
        return arq_error_set(err, ARQ_EINVAL, "%s: %s contains a control character", label, key);
    return ARQ_OK;
}

/* The secret of entry `e`, exactly one of sha256 and token, into `ent->digest`. */
static int atok_cfg__secret(const json_t *e, const char *label, EVP_MD_CTX *md,
                            struct atok_entry *ent, struct arq_error *err)
{
    const char *hex, *token;
    size_t hex_len, token_len;
    int rc = atok_cfg__text(e, "sha256", label, 0, &hex, &hex_len, err);
    if (rc == ARQ_OK)
        rc = atok_cfg__text(e, "token", label, 0, &token, &token_len, err);
    if (rc != ARQ_OK)
        return rc;
    if (hex && token)
        return arq_error_set(err, ARQ_EINVAL,
                             "%s: give either sha256 or token, not both (sha256 is advised)",
                             label);
    if (!hex && !token)
        return arq_error_set(err, ARQ_EINVAL,
                             "%s: missing sha256 (the SHA-256 of the token, in hex; or token, "
                             "the token itself)",
                             label);
    if (token) {
        if (token_len == 0)
            return arq_error_set(err, ARQ_EINVAL, "%s: token is empty", label);
        for (size_t i = 0; i < token_len; i++)
            if ((unsigned char)token[i] <= 0x20 || token[i] == 0x7f)
                return arq_error_set(err, ARQ_EINVAL,
                                     "%s: token contains a space or a control character (at "
                                     "byte %zu); a client could not send it",
                                     label, i + 1);
        ent->plain = 1;
        if (atok_sha256(md, token, token_len, ent->digest) != ARQ_OK)
            return arq_error_set(err, ARQ_EIO, "%s: cannot hash the token (libcrypto failed)",
                                 label);
        return ARQ_OK;
    }
    if (hex_len != 2 * ATOK_DIGEST_LEN)
        return arq_error_set(err, ARQ_EINVAL,
                             "%s: sha256 must be 64 hexadecimal digits (the first field of "
                             "sha256sum's output), not %zu characters",
                             label, hex_len);
    for (size_t i = 0; i < hex_len; i += 2) {
        int hi = arq_cred_hex_digit(hex[i]), lo = arq_cred_hex_digit(hex[i + 1]);
        if (hi < 0 || lo < 0)
            return arq_error_set(err, ARQ_EINVAL,
                                 "%s: sha256 must be 64 hexadecimal digits; character %zu is "
                                 "not one",
                                 label, hi < 0 ? i + 1 : i + 2);
        ent->digest[i / 2] = (unsigned char)(hi << 4 | lo);
    }
    return ARQ_OK;
}

/* Entry `i` of the list into t->entries[i] (t->n entries before it are built). */
static int atok_cfg__entry(const json_t *e, size_t i, EVP_MD_CTX *md, struct atok_table *t,
                           struct arq_error *err)
{
    char label[160];
    snprintf(label, sizeof label, "tokens[%zu]", i);
    if (!json_is_object(e))
        return arq_error_set(err, ARQ_EINVAL,
                             "%s: expected a mapping {name, sha256 or token, role, tenant?}, "
                             "not %s",
                             label, atok_cfg__type_name(e));

    /* The name first, for the label of every later message (when it is usable). */
    const json_t *name_v = json_object_get(e, "name");
    if (json_is_string(name_v) && json_string_length(name_v) > 0 &&
        !atok_cfg__has_control(json_string_value(name_v), json_string_length(name_v)))
        snprintf(label, sizeof label, "tokens[%zu] (\"%.100s\")", i, json_string_value(name_v));

    const char *key;
    const json_t *v;
    json_object_foreach((json_t *)e, key, v)
    {
        size_t k = 0;
        while (atok_cfg__keys[k] && strcmp(atok_cfg__keys[k], key) != 0)
            k++;
        if (atok_cfg__keys[k])
            continue;
        const char *hint = atok_cfg__suggest(key);
        return arq_error_set(err, ARQ_EINVAL,
                             "%s: unknown key \"%.64s\"; allowed: name, sha256, token, role, "
                             "tenant%s%s%s",
                             label, key, hint ? " (did you mean \"" : "", hint ? hint : "",
                             hint ? "\"?)" : "");
    }

    const char *name, *role, *tenant;
    int rc = atok_cfg__label_text(e, "name", label, 1, &name, err);
    if (rc != ARQ_OK)
        return rc;
    for (size_t j = 0; j < t->n; j++)
        if (strcmp(t->entries[j].name, name) == 0)
            return arq_error_set(err, ARQ_EINVAL,
                                 "%s: duplicate name: tokens[%zu] has it already; names must "
                                 "be unique",
                                 label, j);
    if ((rc = atok_cfg__label_text(e, "role", label, 1, &role, err)) != ARQ_OK ||
        (rc = atok_cfg__label_text(e, "tenant", label, 0, &tenant, err)) != ARQ_OK)
        return rc;

    struct atok_entry *ent = &t->entries[t->n];
    memset(ent, 0, sizeof *ent);
    if ((rc = atok_cfg__secret(e, label, md, ent, err)) != ARQ_OK)
        goto fail;
    for (size_t j = 0; j < t->n; j++)
        if (CRYPTO_memcmp(t->entries[j].digest, ent->digest, ATOK_DIGEST_LEN) == 0) {
            rc = arq_error_set(err, ARQ_EINVAL,
                               "%s: same token as tokens[%zu] (\"%.100s\"); every entry needs "
                               "a token of its own",
                               label, j, t->entries[j].name);
            goto fail;
        }
    /* name and role are set: atok_cfg__label_text fails a required one that is missing (the
     * analyzer does not follow the variadic arq_error_set, so it misses that failure). */
    ent->name = strdup(name); /* NOLINT(clang-analyzer-core.NonNullParamChecker) */
    ent->role = strdup(role); /* NOLINT(clang-analyzer-core.NonNullParamChecker) */
    ent->tenant = tenant ? strdup(tenant) : NULL;
    if (!ent->name || !ent->role || (tenant && !ent->tenant)) {
        rc = arq_error_set(err, ARQ_ENOMEM, "%s: out of memory", label);
        goto fail;
    }
    t->n++;
    return ARQ_OK;

fail:
    free(ent->name);
    free(ent->role);
    free(ent->tenant);
    OPENSSL_cleanse(ent, sizeof *ent);
    return rc;
}

int atok_table_build(const json_t *list, EVP_MD_CTX *md, struct atok_table *out,
                     struct arq_error *err)
{
    out->entries = NULL;
    out->n = 0;
    if (!json_is_array(list))
        return arq_error_set(err, ARQ_EINVAL,
                             "tokens: expected a list of {name, sha256 or token, role, "
                             "tenant?}, not %s",
                             list ? atok_cfg__type_name(list) : "nothing");
    size_t n = json_array_size(list);
    if (n == 0)
        return ARQ_OK;
    out->entries = calloc(n, sizeof *out->entries);
    if (!out->entries)
        return arq_error_set(err, ARQ_ENOMEM, "tokens: out of memory");
    for (size_t i = 0; i < n; i++) {
        int rc = atok_cfg__entry(json_array_get(list, i), i, md, out, err);
        if (rc != ARQ_OK) {
            atok_table_clear(out);
            return rc;
        }
    }
    return ARQ_OK;
}

void atok_table_clear(struct atok_table *t)
{
    for (size_t i = 0; i < t->n; i++) {
        free(t->entries[i].name);
        free(t->entries[i].role);
        free(t->entries[i].tenant);
    }
    if (t->entries)
        OPENSSL_cleanse(t->entries, t->n * sizeof *t->entries);
    free(t->entries);
    t->entries = NULL;
    t->n = 0;
}

const struct atok_entry *atok_table_find(const struct atok_table *t, const char *name)
{
    for (size_t i = 0; name && i < t->n; i++)
        if (strcmp(t->entries[i].name, name) == 0)
            return &t->entries[i];
    return NULL;
}

long atok_table_match(const struct atok_table *t, const unsigned char *digest)
{
    /* found stays ~0 until the first match; later matches (none: digests are unique) and
     * misses leave it alone, without a branch on the comparison. */
    size_t found = ~(size_t)0;
    for (size_t i = 0; i < t->n; i++) {
        size_t eq = (size_t)(CRYPTO_memcmp(t->entries[i].digest, digest, ATOK_DIGEST_LEN) == 0);
        size_t unset = (size_t)(found == ~(size_t)0);
        size_t take = (size_t)0 - (eq & unset);
        found = (found & ~take) | (i & take);
    }
    return found == ~(size_t)0 ? -1 : (long)found;
}

int atok_sha256(EVP_MD_CTX *md, const void *data, size_t len, unsigned char out[ATOK_DIGEST_LEN])
{
    unsigned int n = 0;
    if (!EVP_DigestInit_ex(md, EVP_sha256(), NULL) || !EVP_DigestUpdate(md, data, len) ||
        !EVP_DigestFinal_ex(md, out, &n) || n != ATOK_DIGEST_LEN)
        return ARQ_EIO;
    return ARQ_OK;
}
