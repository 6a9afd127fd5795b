/* transport-http: a request's path and query (see http_path.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http_path.h"

int http_path__match(const char *pattern, const char *url, const char **seg, size_t *seglen)
{
    const char *hole = strstr(pattern, "{}");
    if (!hole)
        return !strcmp(pattern, url);
    size_t pre = (size_t)(hole - pattern);
    if (strncmp(pattern, url, pre) != 0)
        return 0;
    const char *s = url + pre, *e = strchr(s, '/');
    if (!e) /* the segment ends the path ("/dashboard/{}") */
        e = s + strlen(s);
    if (e == s || strcmp(e, hole + 2) != 0)
        return 0;
    if (seg) {
        *seg = s;
        *seglen = (size_t)(e - s);
    }
    return 1;
}

/* The length of the well-formed UTF-8 sequence at s (n bytes available), or 0: overlong
 * forms, surrogates, code points past U+10FFFF and NUL are not (jansson refuses them too). */
static size_t path__utf8_len(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    size_t len = c >= 0xC2 && c <= 0xDF   ? 2
                 : c >= 0xE0 && c <= 0xEF ? 3
                 : c >= 0xF0 && c <= 0xF4 ? 4
                                          : 0;
    if (c && c < 0x80)
        return 1;
    if (!len || len > n)
        return 0;
    unsigned long cp = c & (0x7Fu >> len);
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i] & 0x3Fu);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10FFFF ||
        (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return len;
}

size_t http_path__escape(char *out, size_t size, const char *s, size_t len)
{
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        size_t n = path__utf8_len((const unsigned char *)s + i, len - i);
        if (o + (n ? n : 4) >= size)
            break;
        if (n) {
            memcpy(out + o, s + i, n);
            o += n;
            i += n;
        } else {
            o += (size_t)snprintf(out + o, 5, "\\x%02X", (unsigned char)s[i++]);
        }
    }
    out[o] = '\0';
    return o;
}

int http_path__name_ok(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == ':' || c == '-'))
            return 0;
    }
    return len > 0;
}

int http_path__check_name(const char *what, const char *s, size_t len, char *error, size_t errsz)
{
    char shown[68]; /* at most 64 bytes of the name */
    if (http_path__name_ok(s, len))
        return 0;
    http_path__escape(shown, sizeof shown, s, len);
    snprintf(error, errsz, "Invalid %s name: %s (letters, digits, _ . : - only)", what,
             len ? shown : "(empty)");
    return -1;
}

int http_path__history_param(json_t *args, const char *key, const char *value, char *error,
                             size_t errsz)
{
    static const char *const known[] = {"room",  "channel", "epoch",        "since",
                                        "until", "limit",   "since_offset", NULL};
    size_t k = 0;
    char shown[68]; /* a name or value echoed: at most 64 bytes of it, made UTF-8 */
    while (known[k] && strcmp(key, known[k]) != 0)
        k++;
    http_path__escape(shown, sizeof shown, key, strlen(key));
    if (json_object_get(args, key)) {
        snprintf(error, errsz, "Parameter '%s' is given twice", shown);
        return -1;
    }
    if (!known[k]) {
        snprintf(error, errsz,
                 "Unknown parameter '%s' (room, channel, limit, since, until, since_offset, "
                 "epoch)",
                 shown);
        return -1;
    }
    json_t *v;
    if (k >= 5) { /* limit, since_offset */
        char *end;
        errno = 0;
        long long n = value && *value ? strtoll(value, &end, 10) : 0;
        if (!value || !*value || *end || errno) {
            snprintf(error, errsz, "Parameter '%s' must be an integer", key);
            return -1;
        }
        v = json_integer((json_int_t)n);
    } else {
        value = value ? value : "";
        /* room and channel are names: refused here, with the rule, rather than passed on to
         * the bus, whose refusal would echo bytes that a JSON body cannot carry. */
        if (k < 2 && http_path__check_name(key, value, strlen(value), error, errsz) != 0)
            return -1;
        if (!(v = json_string(value))) {
            snprintf(error, errsz, "Parameter '%s' is not valid UTF-8", key);
            return -1;
        }
    }
    if (json_object_set_new(args, key, v) != 0) {
        snprintf(error, errsz, "Out of memory");
        return -1;
    }
    return 0;
}
