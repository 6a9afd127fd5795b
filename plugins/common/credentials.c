/* Where a handshake request carries a credential (see credentials.h). */
#include <string.h>
#include <strings.h>

#include "credentials.h"

int arq_cred_hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static int cred__ows(char c)
{
    return c == ' ' || c == '\t';
}

void arq_cred_trim(const char **s, size_t *len)
{
    while (*len && cred__ows(**s)) {
        (*s)++;
        (*len)--;
    }
    while (*len && cred__ows((*s)[*len - 1]))
        (*len)--;
}

int arq_cred_bearer(const char *value, const char **tok, size_t *len)
{
    static const char scheme[] = "Bearer";
    const size_t n = sizeof scheme - 1;
    const char *s = value;
    size_t left = strlen(value);
    arq_cred_trim(&s, &left);
    if (left < n || strncasecmp(s, scheme, n) != 0 || (left > n && !cred__ows(s[n])))
        return 0;
    s += n;
    left -= n;
    arq_cred_trim(&s, &left);
    *tok = s;
    *len = left;
    return 1;
}

int arq_cred_subprotocol_bearer(const char *value, const char **tok, size_t *len)
{
    static const char prefix[] = "bearer.";
    const size_t n = sizeof prefix - 1;
    for (const char *p = value;;) {
        size_t item = strcspn(p, ",");
        const char *s = p;
        size_t left = item;
        arq_cred_trim(&s, &left);
        if (left >= n && memcmp(s, prefix, n) == 0) {
            *tok = s + n;
            *len = left - n;
            return 1;
        }
        if (!p[item])
            return 0;
        p += item + 1;
    }
}

int arq_cred_query_first_of(const char *query, const char *const *names, const char **val,
                            size_t *len)
{
    for (const char *p = query;;) {
        size_t pair = strcspn(p, "&");
        const char *eq = memchr(p, '=', pair);
        if (eq) {
            size_t key = (size_t)(eq - p);
            for (int i = 0; names[i]; i++) {
                if (arq_cred_pct_equals(p, key, names[i])) {
                    *val = eq + 1;
                    *len = pair - key - 1;
                    return i;
                }
            }
        }
        if (!p[pair])
            return -1;
        p += pair + 1;
    }
}

int arq_cred_query_param(const char *query, const char *name, const char **val, size_t *len)
{
    const char *const names[] = {name, NULL};
    return arq_cred_query_first_of(query, names, val, len) == 0;
}

unsigned char arq_cred_pct_next(const char *s, size_t len, size_t *pos)
{
    size_t i = *pos;
    if (s[i] == '%' && len - i > 2) {
        int hi = arq_cred_hex_digit(s[i + 1]), lo = arq_cred_hex_digit(s[i + 2]);
        if (hi >= 0 && lo >= 0) {
            *pos = i + 3;
            return (unsigned char)(hi << 4 | lo);
        }
    }
    *pos = i + 1;
    return (unsigned char)s[i];
}

size_t arq_cred_pct_decode(const char *s, size_t len, char *out)
{
    size_t i = 0, n = 0;
    while (i < len)
        out[n++] = (char)arq_cred_pct_next(s, len, &i);
    return n;
}

int arq_cred_pct_equals(const char *s, size_t len, const char *want)
{
    size_t i = 0, w = 0;
    while (i < len) {
        if (!want[w] || arq_cred_pct_next(s, len, &i) != (unsigned char)want[w])
            return 0;
        w++;
    }
    return !want[w];
}
