/* transport-http's path and query rules (plugins/transport-http/http_path.c) on what
 * libmicrohttpd 0.9.75 hands over for a request target.
 *
 * Input: a request target ("/rooms/a%20b/channels", "/history?room=r&limit=5"). It is taken
 * apart as libmicrohttpd does: the query is cut at the first '?' and split at '&' and '=';
 * names and values get '+' as a space and are percent-decoded; the path is percent-decoded
 * (MHD_http_unescape, the library's own). Then every route pattern is matched, and the query
 * parameters go to http_path__history_param until one is refused; the input's bytes also go to
 * http_path__name_ok and http_path__escape. Properties: a match is
 * exactly the pattern with one non-empty segment without '/' in place of "{}"; every
 * parameter accepted is in the arguments (with the type it must have); an error text can be
 * sent in a JSON body (it is UTF-8), and so can an escaped text. */
#include <microhttpd.h>
#include <string.h>

#include "fuzz.h"
#include "http_path.h"

/* The patterns of http_routes.c's table, and a few more shapes. */
static const char *const patterns[] = {
    "/health",
    "/ready",
    "/status",
    "/version",
    "/metrics",
    "/history",
    "/rooms",
    "/rooms/{}/channels",
    "/publish",
    "/admin/reload",
    "/admin/disconnect",
    "/admin/session",
    "/admin/channel",
    "/dashboard",
    "/dashboard/{}",
    "/{}",
    "/a/{}",
    "{}",
};

static void check_match(const char *pattern, const char *url)
{
    const char *seg = NULL;
    size_t seglen = 0;
    int m = http_path__match(pattern, url, &seg, &seglen);
    FUZZ_CHECK(m == http_path__match(pattern, url, NULL, NULL), "match depends on seg");
    const char *hole = strstr(pattern, "{}");
    if (!hole) {
        FUZZ_CHECK(m == !strcmp(pattern, url), "exact pattern %s", pattern);
        return;
    }
    if (!m)
        return;
    size_t pre = (size_t)(hole - pattern), ulen = strlen(url);
    FUZZ_CHECK(seg == url + pre && seglen > 0 && seg + seglen <= url + ulen, "segment range");
    FUZZ_CHECK(!memchr(seg, '/', seglen), "segment holds a '/'");
    FUZZ_CHECK(!strncmp(url, pattern, pre) && !strcmp(seg + seglen, hole + 2), "%s does not fit %s",
               url, pattern);
}

static void plus_to_space(char *s)
{
    for (; *s; s++)
        if (*s == '+')
            *s = ' ';
}

/* One parameter, as libmicrohttpd hands it to the handler's iterator. 0 to go on. */
static int param(json_t *args, char *key, char *value, char *error, size_t errsz)
{
    plus_to_space(key);
    MHD_http_unescape(key);
    if (value) {
        plus_to_space(value);
        MHD_http_unescape(value);
    }
    int rc = http_path__history_param(args, key, value, error, errsz);
    if (rc != 0) {
        FUZZ_CHECK(error[0], "a parameter refused without a reason");
        json_t *text = json_string(error);
        FUZZ_CHECK(text, "error text not UTF-8: %s", error);
        json_decref(text);
        return -1;
    }
    const json_t *v = json_object_get(args, key);
    FUZZ_CHECK(v, "parameter '%s' accepted but not kept", key);
    if (!strcmp(key, "limit") || !strcmp(key, "since_offset"))
        FUZZ_CHECK(json_is_integer(v), "%s not an integer", key);
    else
        FUZZ_CHECK(json_is_string(v), "%s not a string", key);
    return 0;
}

/* libmicrohttpd's MHD_parse_arguments_: '&' separates, the first '=' splits, a part without
 * one is a name with no value, and parsing stops at an empty remainder. */
static void parse_query(char *args)
{
    json_t *obj = json_object();
    char error[160] = "";
    FUZZ_CHECK(obj, "out of memory");
    while (args && *args) {
        char *amper = strchr(args, '&'), *equals = strchr(args, '=');
        if (amper)
            *amper++ = '\0';
        if (equals && (!amper || equals < amper))
            *equals++ = '\0';
        else
            equals = NULL;
        if (param(obj, args, equals, error, sizeof error) != 0)
            break;
        args = amper;
    }
    json_decref(obj);
}

/* http_path__name_ok and http_path__check_name against the rule they state, and http_path__escape's
 * output: in bounds, NUL-terminated, UTF-8 (it goes into JSON bodies). */
static void check_text(const char *s, size_t len)
{
    int ok = len > 0;
    for (size_t i = 0; i < len; i++)
        ok &=
            !!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.:-", s[i]) &&
            s[i] != '\0';
    FUZZ_CHECK(http_path__name_ok(s, len) == ok, "name_ok on %zu bytes", len);
    char error[160] = "";
    int rc = http_path__check_name("room", s, len, error, sizeof error);
    FUZZ_CHECK(rc == (ok ? 0 : -1), "check_name and name_ok disagree");
    json_t *e = json_string(error);
    FUZZ_CHECK(e && (ok || error[0]), "check_name's reason empty or not UTF-8: %s", error);
    json_decref(e);

    const size_t sizes[] = {1, 5, 68, 4 * len + 1};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        char *out = malloc(sizes[i]);
        FUZZ_CHECK(out, "out of memory");
        size_t n = http_path__escape(out, sizes[i], s, len);
        FUZZ_CHECK(n < sizes[i] && out[n] == '\0' && strlen(out) == n, "escape bounds");
        json_t *j = json_stringn(out, n);
        FUZZ_CHECK(j, "escaped text not UTF-8");
        json_decref(j);
        FUZZ_CHECK(i < 3 || n >= len, "escape cut a text given room for all of it");
        free(out);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_text((const char *)data, size);
    char *url = malloc(size + 1);
    FUZZ_CHECK(url, "out of memory");
    memcpy(url, data, size);
    url[size] = '\0';
    char *query = strchr(url, '?');
    if (query)
        *query++ = '\0';
    if (query)
        parse_query(query);
    MHD_http_unescape(url);
    for (size_t i = 0; i < sizeof patterns / sizeof *patterns; i++)
        check_match(patterns[i], url);
    free(url);
    return 0;
}
