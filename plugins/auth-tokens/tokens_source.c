/* auth-tokens: the tokens a handshake request presents.
 *
 * Each source gives at most one token (its first), hashed as it is read: header values are
 * hashed in place, and a query value is percent-decoded through a small buffer into the
 * digest, so no copy of a token outlives the call. */
#include <openssl/crypto.h>
#include <string.h>
#include <strings.h>

#include "atok.h"

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

static int atok_src__ows(char c)
{
    return c == ' ' || c == '\t';
}

/* [*s, *s + *len) without the spaces and tabs around it. */
static void atok_src__trim(const char **s, size_t *len)
{
    while (*len && atok_src__ows(**s)) {
        (*s)++;
        (*len)--;
    }
    while (*len && atok_src__ows((*s)[*len - 1]))
        (*len)--;
}

/* Record the digest of `len` bytes at `s` as what `src` presents. */
static int atok_src__take(struct atok_presented *p, enum atok_source src, const char *s, size_t len,
                          EVP_MD_CTX *md)
{
    if (len == 0 || p->present[src])
        return ARQ_OK;
    if (atok_sha256(md, s, len, p->digest[src]) != ARQ_OK)
        return ARQ_EIO;
    p->present[src] = 1;
    p->count++;
    return ARQ_OK;
}

/* Authorization: Bearer <token> (the scheme in any case, then spaces or tabs). */
static int atok_src__authorization(const char *value, struct atok_presented *p, EVP_MD_CTX *md)
{
    static const char scheme[] = "Bearer";
    const char *s = value;
    size_t len = strlen(value);
    atok_src__trim(&s, &len);
    if (len <= sizeof scheme - 1 || strncasecmp(s, scheme, sizeof scheme - 1) != 0 ||
        !atok_src__ows(s[sizeof scheme - 1]))
        return ARQ_OK; /* another scheme (Basic, ...), or no token */
    s += sizeof scheme - 1;
    len -= sizeof scheme - 1;
    atok_src__trim(&s, &len);
    return atok_src__take(p, ATOK_SRC_AUTHORIZATION, s, len, md);
}

/* Sec-WebSocket-Protocol: a comma-separated list; the first entry bearer.<token>. */
static int atok_src__subprotocol(const char *value, struct atok_presented *p, EVP_MD_CTX *md)
{
    static const char prefix[] = "bearer.";
    const char *s = value;
    while (*s) {
        const char *comma = strchr(s, ',');
        size_t len = comma ? (size_t)(comma - s) : strlen(s);
        const char *item = s;
        atok_src__trim(&item, &len);
        if (len > sizeof prefix - 1 && strncmp(item, prefix, sizeof prefix - 1) == 0)
            return atok_src__take(p, ATOK_SRC_SUBPROTOCOL, item + sizeof prefix - 1,
                                  len - (sizeof prefix - 1), md);
        if (!comma)
            break;
        s = comma + 1;
    }
    return ARQ_OK;
}

static int atok_src__hex(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* The next byte of the percent-encoded [s, s + len) at *i, advancing *i. `%XX` is a byte; a
 * `%` not followed by two hex digits stands for itself. `+` stays `+`: a token never holds a
 * space, and base64 tokens do hold `+`, sent unencoded by some clients. */
static unsigned char atok_src__decode(const char *s, size_t len, size_t *i)
{
    if (s[*i] == '%' && *i + 2 < len) {
        int hi = atok_src__hex(s[*i + 1]), lo = atok_src__hex(s[*i + 2]);
        if (hi >= 0 && lo >= 0) {
            *i += 3;
            return (unsigned char)(hi << 4 | lo);
        }
    }
    return (unsigned char)s[(*i)++];
}

/* Does the percent-encoded key [s, s + len) decode to `want`? */
static int atok_src__key_is(const char *s, size_t len, const char *want)
{
    size_t i = 0, w = 0, wlen = strlen(want);
    while (i < len) {
        if (w == wlen || atok_src__decode(s, len, &i) != (unsigned char)want[w])
            return 0;
        w++;
    }
    return w == wlen;
}

/* The digest of the percent-encoded value [s, s + len), decoded through a small buffer. */
static int atok_src__take_encoded(struct atok_presented *p, enum atok_source src, const char *s,
                                  size_t len, EVP_MD_CTX *md)
{
    if (len == 0 || p->present[src])
        return ARQ_OK;
    unsigned char buf[128];
    size_t used = 0, i = 0;
    int ok = EVP_DigestInit_ex(md, EVP_sha256(), NULL);
    while (ok && i < len) {
        buf[used++] = atok_src__decode(s, len, &i);
        if (used == sizeof buf || i == len) {
            ok = EVP_DigestUpdate(md, buf, used);
            used = 0;
        }
    }
    unsigned int n = 0;
    ok = ok && EVP_DigestFinal_ex(md, p->digest[src], &n) && n == ATOK_DIGEST_LEN;
    OPENSSL_cleanse(buf, sizeof buf);
    if (!ok)
        return ARQ_EIO;
    p->present[src] = 1;
    p->count++;
    return ARQ_OK;
}

/* The raw query (without '?'): the first `token` and `access_token` parameters. */
static int atok_src__query(const char *query, struct atok_presented *p, EVP_MD_CTX *md)
{
    const char *s = query;
    while (*s) {
        const char *amp = strchr(s, '&');
        size_t len = amp ? (size_t)(amp - s) : strlen(s);
        const char *eq = memchr(s, '=', len);
        if (eq) {
            size_t klen = (size_t)(eq - s), vlen = len - klen - 1;
            int rc = ARQ_OK;
            if (atok_src__key_is(s, klen, "token"))
                rc = atok_src__take_encoded(p, ATOK_SRC_QUERY_TOKEN, eq + 1, vlen, md);
            else if (atok_src__key_is(s, klen, "access_token"))
                rc = atok_src__take_encoded(p, ATOK_SRC_QUERY_ACCESS, eq + 1, vlen, md);
            if (rc != ARQ_OK)
                return rc;
        }
        if (!amp)
            break;
        s = amp + 1;
    }
    return ARQ_OK;
}

int atok_presented_read(const struct arq_conn_info *info, void *tconn, const char *header,
                        EVP_MD_CTX *md, struct atok_presented *out)
{
    memset(out, 0, sizeof *out);
    int rc = ARQ_OK;
    if (info->header) {
        const char *v = info->header(tconn, "Authorization");
        if (v)
            rc = atok_src__authorization(v, out, md);
        if (rc == ARQ_OK && header && (v = info->header(tconn, header)) != NULL) {
            size_t len = strlen(v);
            atok_src__trim(&v, &len);
            rc = atok_src__take(out, ATOK_SRC_HEADER, v, len, md);
        }
        if (rc == ARQ_OK && (v = info->header(tconn, "Sec-WebSocket-Protocol")) != NULL)
            rc = atok_src__subprotocol(v, out, md);
    }
    if (rc == ARQ_OK && info->query)
        rc = atok_src__query(info->query, out, md);
    return rc;
}
