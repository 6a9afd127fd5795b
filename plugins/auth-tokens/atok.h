/* auth-tokens: what the plugin's files share.
 *
 *   auth_tokens.c    options, life cycle, authenticate and refresh, metrics, the descriptor
 *   tokens_config.c  the `tokens` option, validated into a table of entries
 *   tokens_source.c  the tokens a handshake request presents, each hashed as it is read
 *
 * Only SHA-256 digests of tokens are kept: a plain `token` from the configuration is hashed
 * when the table is built, and a presented token is hashed while it is read, so no copy of a
 * token outlives the call that saw it. Everything runs on the host's loop thread. */
#ifndef ARQ_AUTH_TOKENS_H
#define ARQ_AUTH_TOKENS_H

#include <arqonbus/plugin.h>
#include <openssl/evp.h>
#include <stddef.h>

#define ATOK_DIGEST_LEN 32 /* SHA-256 */

/* One accepted token. */
struct atok_entry {
    char *name;   /* unique; becomes the principal's subject */
    char *role;   /* never empty */
    char *tenant; /* NULL: none */
    unsigned char digest[ATOK_DIGEST_LEN];
    int plain; /* given as `token` (plain text) rather than `sha256` */
};

struct atok_table {
    struct atok_entry *entries;
    size_t n;
};

/* tokens_config.c */

/* Validate the `tokens` option (a JSON array) into `out`, hashing plain tokens with `md`.
 * ARQ_OK, or ARQ_EINVAL / ARQ_ENOMEM with `err` naming the entry (`tokens[i] ("name")`)
 * and the problem; `out` is then empty. No message ever contains a token or a digest. */
int atok_table_build(const json_t *list, EVP_MD_CTX *md, struct atok_table *out,
                     struct arq_error *err);
/* Release a table's entries and leave it empty. */
void atok_table_clear(struct atok_table *t);
/* The entry named `name`, or NULL. */
const struct atok_entry *atok_table_find(const struct atok_table *t, const char *name);
/* The index of the entry whose digest is `digest`, or -1. Every entry is compared (with
 * CRYPTO_memcmp) whether or not an earlier one matched, so the time taken depends only on
 * the number of entries. */
long atok_table_match(const struct atok_table *t, const unsigned char *digest);
/* SHA-256 of `len` bytes at `data` into `out`. ARQ_OK, or ARQ_EIO when libcrypto fails. */
int atok_sha256(EVP_MD_CTX *md, const void *data, size_t len, unsigned char out[ATOK_DIGEST_LEN]);

/* tokens_source.c */

/* Where a request can carry a token, in the order they are tried. */
enum atok_source {
    ATOK_SRC_AUTHORIZATION = 0, /* Authorization: Bearer <token>                     */
    ATOK_SRC_HEADER,            /* the `header` option's header, its whole value       */
    ATOK_SRC_SUBPROTOCOL,       /* Sec-WebSocket-Protocol: ..., bearer.<token>, ...    */
    ATOK_SRC_QUERY_TOKEN,       /* ?token=<percent-encoded token>                      */
    ATOK_SRC_QUERY_ACCESS,      /* ?access_token=<percent-encoded token>               */
    ATOK_SRC_COUNT
};

/* The digests of the tokens one request presents: at most one per source (the first
 * occurrence); an empty value presents nothing. */
struct atok_presented {
    unsigned char digest[ATOK_SRC_COUNT][ATOK_DIGEST_LEN];
    int present[ATOK_SRC_COUNT];
    int count;
};

/* Read the tokens `info` presents (headers through info->header with `tconn`; `header` is
 * the extra header's name, or NULL) into `out`. ARQ_OK, or ARQ_EIO when libcrypto fails. */
int atok_presented_read(const struct arq_conn_info *info, void *tconn, const char *header,
                        EVP_MD_CTX *md, struct atok_presented *out);
/* "authorization", "header", "subprotocol", "query" (for logs). */
const char *atok_source_name(enum atok_source src);

#endif
