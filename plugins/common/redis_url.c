#include "redis_url.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = tolower(c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Copy n bytes of `src` into out (size), decoding %XX. 0, or -1 when it does not fit or a
 * %-escape is broken. */
static int redis_url__decode(const char *src, size_t n, char *out, size_t size)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        int c = (unsigned char)src[i];
        if (c == '%') {
            int hi = i + 2 < n ? hexval(src[i + 1]) : -1;
            int lo = i + 2 < n ? hexval(src[i + 2]) : -1;
            if (hi < 0 || lo < 0)
                return -1;
            c = hi * 16 + lo;
            i += 2;
        }
        if (c == 0 || o + 1 >= size)
            return -1;
        out[o++] = (char)c;
    }
    out[o] = '\0';
    return 0;
}

int redis_url_parse(const char *url, struct redis_url *u, int allow_credentials, const char *what,
                    struct arq_error *err)
{
    static const char usage[] = "expected redis://host[:port][/db]";
    memset(u, 0, sizeof *u);
    if (strncmp(url, "rediss://", 9) == 0)
        return arq_error_set(err, ARQ_EINVAL, "%s: TLS (rediss://) is not supported", what);
    if (strncmp(url, "redis://", 8) != 0)
        return arq_error_set(err, ARQ_EINVAL, "%s: %s, got \"%s\"", what, usage, url);
    const char *p = url + 8;
    size_t authority = strcspn(p, "/?#");
    const char *at = memchr(p, '@', authority);
    if (at && !allow_credentials)
        /* Never echo it: the url is not a SECRET option, the password would show. */
        return arq_error_set(err, ARQ_EINVAL,
                             "%s: credentials in the url are refused (the url shows in logs "
                             "and status); put the password in the `password` option",
                             what);
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        size_t ulen = colon ? (size_t)(colon - p) : 0;
        const char *pw = colon ? colon + 1 : p;
        if (redis_url__decode(p, ulen, u->user, sizeof u->user) != 0 ||
            redis_url__decode(pw, (size_t)(at - pw), u->password, sizeof u->password) != 0)
            /* The position only: the text may be the password. */
            return arq_error_set(err, ARQ_EINVAL,
                                 "%s: bad user or password before '@' (too long, NUL or a broken "
                                 "%%-escape)",
                                 what);
        authority -= (size_t)(at + 1 - p);
        p = at + 1;
    }
    const char *host = p, *host_end, *after;
    if (*p == '[') {
        host = p + 1;
        host_end = authority > 1 ? memchr(host, ']', authority - 1) : NULL;
        if (!host_end)
            return arq_error_set(err, ARQ_EINVAL, "%s: unterminated [ in the host", what);
        after = host_end + 1;
    } else {
        host_end = memchr(p, ':', authority);
        if (!host_end)
            host_end = p + authority;
        after = host_end;
    }
    size_t hlen = (size_t)(host_end - host);
    if (hlen == 0 || hlen >= sizeof u->host)
        return arq_error_set(err, ARQ_EINVAL, "%s: no host in \"%.*s\" (%s)", what,
                             (int)(at ? 0 : strlen(url)), url, usage);
    memcpy(u->host, host, hlen);
    u->host[hlen] = '\0';
    u->port = 6379;
    const char *end = p + authority;
    if (after < end) {
        char *stop;
        if (*after != ':' || !isdigit((unsigned char)after[1]))
            return arq_error_set(err, ARQ_EINVAL, "%s: bad port for host %s (%s)", what, u->host,
                                 usage);
        long port = strtol(after + 1, &stop, 10);
        if (stop != end || port < 1 || port > 65535)
            return arq_error_set(err, ARQ_EINVAL, "%s: bad port for host %s (%s)", what, u->host,
                                 usage);
        u->port = (int)port;
    }
    if (*end == '/' && end[1]) {
        /* Digits only (strtol would take a sign or spaces). */
        const char *digits = end + 1;
        size_t n = strlen(digits);
        long db = n <= 7 && strspn(digits, "0123456789") == n ? strtol(digits, NULL, 10) : -1;
        if (db < 0 || db > 1000000)
            return arq_error_set(err, ARQ_EINVAL, "%s: bad database number for host %s", what,
                                 u->host);
        u->db = (int)db;
    } else if (*end == '?' || *end == '#') {
        return arq_error_set(err, ARQ_EINVAL, "%s: query parameters are not supported (host %s)",
                             what, u->host);
    }
    return ARQ_OK;
}

void redis_url_where(const struct redis_url *u, char *out, size_t size)
{
    int v6 = strchr(u->host, ':') != NULL;
    snprintf(out, size, "%s%s%s:%d/%d", v6 ? "[" : "", u->host, v6 ? "]" : "", u->port, u->db);
}
