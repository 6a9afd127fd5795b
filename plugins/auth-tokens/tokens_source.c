/* auth-tokens: the tokens a handshake request presents.
 *
 * Where they are is read by plugins/common/credentials. Each source gives at most one token
 * (its first occurrence), hashed as it is read: header values are hashed in place, and a query
 * value is percent-decoded through a small buffer into the digest, so no copy of a token
 * outlives the call. */
#include <openssl/crypto.h>
#include <string.h>

#include "atok.h"
#include "credentials.h"

const char *atok_source_name(enum atok_source src)
{
    switch (src) {
    case ATOK_SRC_AUTHORIZATION:
        return "authorization";
    case ATOK_SRC_HEADER:
        return "header";
    case ATOK_SRC_SUBPROTOCOL:
        return "subprotocol";
    case ATOK_SRC_QUERY_TOKEN:
    case ATOK_SRC_QUERY_ACCESS:
        return "query";
    case ATOK_SRC_COUNT:
        break;
    }
    return "?";
}

/* SHA-256 of the percent-encoded [s, s + len) once decoded, through a small buffer. */
static int atok_src__sha256_decoded(EVP_MD_CTX *md, const char *s, size_t len,
                                    unsigned char out[ATOK_DIGEST_LEN])
{
    unsigned char buf[128];
    size_t used = 0, i = 0;
    int ok = EVP_DigestInit_ex(md, EVP_sha256(), NULL);
    while (ok && i < len) {
        buf[used++] = arq_cred_pct_next(s, len, &i);
        if (used == sizeof buf || i == len) {
            ok = EVP_DigestUpdate(md, buf, used);
            used = 0;
        }
    }
    unsigned int n = 0;
    ok = ok && EVP_DigestFinal_ex(md, out, &n) && n == ATOK_DIGEST_LEN;
    OPENSSL_cleanse(buf, sizeof buf);
    return ok ? ARQ_OK : ARQ_EIO;
}

/* Record the digest of the `len` bytes at `s` (percent-encoded when `encoded`) as what `src`
 * presents; an empty value presents nothing. */
static int atok_src__take(struct atok_presented *p, enum atok_source src, const char *s, size_t len,
                          int encoded, EVP_MD_CTX *md)
{
    if (len == 0)
        return ARQ_OK;
    int rc = encoded ? atok_src__sha256_decoded(md, s, len, p->digest[src])
                     : atok_sha256(md, s, len, p->digest[src]);
    if (rc != ARQ_OK)
        return ARQ_EIO;
    p->present[src] = 1;
    p->count++;
    return ARQ_OK;
}

int atok_presented_read(const struct arq_conn_info *info, void *tconn, const char *header,
                        EVP_MD_CTX *md, struct atok_presented *out)
{
    const char *v, *tok;
    size_t len;
    int rc = ARQ_OK;
    memset(out, 0, sizeof *out);
    if (info->header) {
        if ((v = info->header(tconn, "Authorization")) && arq_cred_bearer(v, &tok, &len))
            rc = atok_src__take(out, ATOK_SRC_AUTHORIZATION, tok, len, 0, md);
        if (rc == ARQ_OK && header && (v = info->header(tconn, header))) {
            len = strlen(v);
            arq_cred_trim(&v, &len);
            rc = atok_src__take(out, ATOK_SRC_HEADER, v, len, 0, md);
        }
        if (rc == ARQ_OK && (v = info->header(tconn, "Sec-WebSocket-Protocol")) &&
            arq_cred_subprotocol_bearer(v, &tok, &len))
            rc = atok_src__take(out, ATOK_SRC_SUBPROTOCOL, tok, len, 0, md);
    }
    if (rc == ARQ_OK && info->query && arq_cred_query_param(info->query, "token", &tok, &len))
        rc = atok_src__take(out, ATOK_SRC_QUERY_TOKEN, tok, len, 1, md);
    if (rc == ARQ_OK && info->query &&
        arq_cred_query_param(info->query, "access_token", &tok, &len))
        rc = atok_src__take(out, ATOK_SRC_QUERY_ACCESS, tok, len, 1, md);
    return rc;
}
