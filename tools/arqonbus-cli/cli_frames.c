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
            if (escaped)
                escaped = 0;
            else if (ch == '\\')
                escaped = 1;
            else if (ch == '"')
                in_string = 0;
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
