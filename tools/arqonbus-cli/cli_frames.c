/* arqonbus-cli: request frames, reply classification and line output. See cli_frames.h. */
#include "cli_frames.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

void cli_make_id(char *out, size_t outsz, unsigned long long ms, unsigned long proc,
                 unsigned long rnd)
{
    snprintf(out, outsz, "arq_%llu_%lu_%06lx", ms, proc, rnd & 0xFFFFFFUL);
}

/* json_object_set_new() that tolerates a NULL value (out of memory): the caller checks the
 * result once at the end. */
static int cli__set(json_t *obj, const char *key, json_t *value)
{
    return value ? json_object_set_new(obj, key, value) : -1;
}

/* Append `,"key":RAW}` to a dumped object (which ends in '}'): the user's JSON goes out as
 * written rather than re-encoded, whose reals would print as 0.10000000000000001. */
static char *cli__splice(char *dumped, const char *key, const char *raw)
{
    char *compact = cli_compact(raw, strlen(raw));
    size_t dlen = strlen(dumped), n = dlen + strlen(key) + strlen(compact ? compact : "") + 8;
    char *out = compact ? malloc(n) : NULL;
    if (out)
        snprintf(out, n, "%.*s,\"%s\":%s}", (int)(dlen - 1), dumped, key, compact);
    free(compact);
    free(dumped);
    return out;
}

char *cli_build_request(const struct cli_opts *o, const char *id)
{
    json_t *f = json_object(), *args = NULL;
    const char *raw_key = NULL;
    int bad = !f;
    char *text = NULL;
    if (bad)
        goto fail;
    switch (o->command) {
    case CLI_SUB:
        args = json_object();
        bad |= !args;
        bad |= cli__set(f, "type", json_string("command"));
        bad |= cli__set(f, "id", json_string(id));
        bad |= cli__set(f, "command", json_string(o->channel ? "join_channel" : "join_room"));
        bad |= cli__set(args, "room", json_string(o->room));
        if (o->channel)
            bad |= cli__set(args, "channel", json_string(o->channel));
        bad |= cli__set(f, "args", args);
        break;
    case CLI_PUB:
        bad |= cli__set(f, "type", json_string("message"));
        bad |= cli__set(f, "id", json_string(id));
        bad |= cli__set(f, "room", json_string(o->room));
        if (o->channel)
            bad |= cli__set(f, "channel", json_string(o->channel));
        if (o->json_text)
            raw_key = "payload";
        else
            bad |= cli__set(f, "payload", o->json ? json_incref(o->json) : json_null());
        break;
    case CLI_CMD:
        bad |= cli__set(f, "type", json_string("command"));
        bad |= cli__set(f, "id", json_string(id));
        bad |= cli__set(f, "command", json_string(o->name));
        if (o->json_text)
            raw_key = "args";
        else
            bad |= cli__set(f, "args", o->json ? json_incref(o->json) : json_object());
        break;
    case CLI_NONE:
    case CLI_HISTORY: /* history is sent as a command (cmd) with its args */
        bad = 1;
        break;
    }
    if (!bad)
        text = json_dumps(f, JSON_COMPACT);
    if (text && raw_key)
        text = cli__splice(text, raw_key, o->json_text);
fail:
    json_decref(f);
    return text;
}

static const char *cli__str(json_t *obj, const char *key)
{
    return json_string_value(json_object_get(obj, key));
}

enum cli_frame_kind cli_classify(const char *text, size_t len, const char *id)
{
    json_t *f = json_loadb(text, len, 0, NULL);
    enum cli_frame_kind kind = CLI_FRAME_OTHER;
    if (!json_is_object(f))
        goto done;
    const char *type = cli__str(f, "type"), *status = cli__str(f, "status");
    json_t *rid = json_object_get(f, "request_id");
    const char *rids = json_string_value(rid);
    int ours = rids && id && strcmp(rids, id) == 0;
    if (!type)
        goto done;
    if (strcmp(type, "message") == 0) {
        const char *sender = cli__str(f, "sender");
        json_t *payload = json_object_get(f, "payload");
        if (sender && strcmp(sender, "arqonbus") == 0 && json_object_get(payload, "welcome"))
            kind = CLI_FRAME_WELCOME;
    } else if (strcmp(type, "error") == 0) {
        if (ours || !rid || json_is_null(rid))
            kind = CLI_REPLY_ERROR;
    } else if (ours && (strcmp(type, "response") == 0 || strcmp(type, "message_response") == 0)) {
        if (status && strcmp(status, "success") == 0)
            kind = CLI_REPLY_OK;
        else if (status && strcmp(status, "pending") == 0)
            kind = CLI_REPLY_PENDING;
        else
            kind = CLI_REPLY_ERROR;
    }
done:
    json_decref(f);
    return kind;
}

/* Inside a JSON string, `ch` read: is the string still open after it? (*escaped carries a
 * backslash over to the next character.) */
static int cli__string_goes_on(char ch, int *escaped)
{
    if (*escaped) {
        *escaped = 0;
        return 1;
    }
    if (ch == '\\') {
        *escaped = 1;
        return 1;
    }
    return ch != '"';
}

char *cli_compact(const char *text, size_t len)
{
    char *out = malloc(2 * len + 1), *o = out;
    int in_string = 0, escaped = 0;
    if (!out)
        return NULL;
    for (size_t i = 0; i < len; i++) {
        char ch = text[i];
        if (in_string) {
            if (ch == '\n' || ch == '\r') {
                *o++ = '\\';
                *o++ = ch == '\n' ? 'n' : 'r';
                escaped = 0;
                continue;
            }
            *o++ = ch;
            in_string = cli__string_goes_on(ch, &escaped);
            continue;
        }
        if (ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r')
            continue;
        if (ch == '"')
            in_string = 1;
        *o++ = ch;
    }
    *o = '\0';
    return out;
}

/* The end of the JSON value starting at s (compact text: no blanks outside strings), or NULL
 * when it does not end before `end`. */
static const char *cli__skip_value(const char *s, const char *end)
{
    int depth = 0, in_string = 0, escaped = 0;
    for (const char *p = s; p < end; p++) {
        char ch = *p;
        if (in_string) {
            in_string = cli__string_goes_on(ch, &escaped);
            if (!in_string && depth == 0)
                return p + 1;
            continue;
        }
        if (ch == '"')
            in_string = 1;
        else if (ch == '{' || ch == '[')
            depth++;
        else if (ch == '}' || ch == ']') {
            if (--depth == 0)
                return p + 1;
            if (depth < 0)
                return p; /* the end of a scalar inside its container */
        } else if (depth == 0 && ch == ',')
            return p;
    }
    return depth == 0 && !in_string ? end : NULL;
}

/* The span of the top-level member `key` of a compact object, or -1. */
static int cli__member(const char *c, size_t len, const char *key, const char **v, size_t *vlen)
{
    const char *p = c, *end = c + len;
    size_t klen = strlen(key);
    if (p == end || *p != '{')
        return -1;
    p++;
    while (p < end && *p == '"') {
        const char *kend = cli__skip_value(p, end);
        if (!kend || kend >= end || *kend != ':')
            return -1;
        const char *val = kend + 1, *vend = cli__skip_value(val, end);
        if (!vend)
            return -1;
        if ((size_t)(kend - p) == klen + 2 && memcmp(p + 1, key, klen) == 0) {
            *v = val;
            *vlen = (size_t)(vend - val);
            return 0;
        }
        p = vend < end && *vend == ',' ? vend + 1 : end;
    }
    return -1;
}

int cli_json_path(const char *c, size_t len, const char *const *keys, const char **v, size_t *vlen)
{
    *v = c;
    *vlen = len;
    for (size_t i = 0; keys[i]; i++)
        if (cli__member(*v, *vlen, keys[i], v, vlen) < 0)
            return -1;
    return 0;
}

int cli_json_next(const char **at, const char *end, const char **v, size_t *vlen)
{
    const char *p = *at;
    if (p >= end || (*p != '[' && *p != ','))
        return 0;
    p++;
    if (p >= end || *p == ']')
        return 0;
    const char *vend = cli__skip_value(p, end);
    if (!vend || vend == p)
        return 0;
    *v = p;
    *vlen = (size_t)(vend - p);
    *at = vend;
    return 1;
}

static char *cli__pretty(const char *c)
{
    size_t depth = 0, cap = strlen(c) * 2 + 64, n = 0;
    char *out = malloc(cap);
    int in_string = 0, escaped = 0;
    for (const char *p = c; out && *p; p++) {
        /* the most one character can add: a newline and the indentation */
        if (n + 2 * depth + 8 > cap) {
            char *bigger = realloc(out, cap * 2 + 2 * depth + 8);
            if (!bigger) {
                free(out);
                return NULL;
            }
            out = bigger;
            cap = cap * 2 + 2 * depth + 8;
        }
        char ch = *p;
        if (in_string) {
            out[n++] = ch;
            in_string = cli__string_goes_on(ch, &escaped);
            continue;
        }
        if (ch == '"') {
            in_string = 1;
            out[n++] = ch;
        } else if ((ch == '{' || ch == '[') && (p[1] == '}' || p[1] == ']')) {
            out[n++] = ch;
            out[n++] = *++p;
        } else if (ch == '{' || ch == '[' || ch == ',') {
            out[n++] = ch;
            depth += ch != ',';
            out[n++] = '\n';
            memset(out + n, ' ', 2 * depth);
            n += 2 * depth;
        } else if (ch == '}' || ch == ']') {
            depth -= depth > 0;
            out[n++] = '\n';
            memset(out + n, ' ', 2 * depth);
            n += 2 * depth;
            out[n++] = ch;
        } else if (ch == ':') {
            out[n++] = ':';
            out[n++] = ' ';
        } else {
            out[n++] = ch;
        }
    }
    if (out)
        out[n] = '\0';
    return out;
}

char *cli_format(const char *text, size_t len, enum cli_format fmt)
{
    char *c = cli_compact(text, len);
    if (!c || fmt == CLI_FORMAT_LINE)
        return c;
    json_t *whole = json_loads(c, 0, NULL);
    int is_object = json_is_object(whole);
    json_decref(whole);
    if (!is_object)
        return c; /* not something to indent or take a payload from */
    char *out = NULL;
    const char *v;
    size_t vlen;
    if (fmt == CLI_FORMAT_PRETTY) {
        out = cli__pretty(c);
    } else if (cli__member(c, strlen(c), "payload", &v, &vlen) < 0) {
        return c;
    } else if (*v == '"') {
        json_t *s = json_loadb(v, vlen, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
        const char *str = json_string_value(s);
        out = str ? strdup(str) : NULL;
        json_decref(s);
    } else {
        out = strndup(v, vlen);
    }
    free(c);
    return out;
}

int cli_frame_type_id(const char *text, size_t len, char *type, size_t typesz, char *id,
                      size_t idsz)
{
    json_t *f = json_loadb(text, len, 0, NULL);
    if (!json_is_object(f)) {
        json_decref(f);
        return -1;
    }
    snprintf(type, typesz, "%s", cli__str(f, "type") ? cli__str(f, "type") : "");
    snprintf(id, idsz, "%s", cli__str(f, "id") ? cli__str(f, "id") : "");
    json_decref(f);
    return 0;
}
