#include "bus_client.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

int bc_port(struct proc *p)
{
    return h_component_port(p, "ws");
}

struct bus_client *bc_connect(int port, const char *path)
{
    struct bus_client *c = calloc(1, sizeof *c);
    char err[256];
    assert_non_null(c);
    c->ws = ws_connect("127.0.0.1", port, path, h_ms(5000), err, sizeof err);
    if (!c->ws)
        fail_msg("connect: %s", err);
    json_t *welcome = bc_recv(c, 5000);
    assert_non_null(welcome);
    const json_t *payload = json_object_get(welcome, "payload");
    snprintf(c->id, sizeof c->id, "%s", bc_str(payload, "client_id"));
    snprintf(c->node, sizeof c->node, "%s", bc_str(json_object_get(payload, "server"), "node"));
    assert_string_equal(bc_str(welcome, "type"), "message");
    assert_string_equal(bc_str(payload, "welcome"), "Connected to ArqonBus");
    json_decref(welcome);
    return c;
}

void bc_free(struct bus_client *c)
{
    if (!c)
        return;
    ws_free(c->ws);
    free(c);
}

void bc_send(struct bus_client *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    json_error_t jerr;
    json_t *o = json_vpack_ex(&jerr, 0, fmt, ap);
    va_end(ap);
    if (!o)
        fail_msg("json_pack: %s", jerr.text);
    char *text = json_dumps(o, JSON_COMPACT);
    assert_int_equal(ws_send_text(c->ws, text, strlen(text)), 0);
    free(text);
    json_decref(o);
}

json_t *bc_recv(struct bus_client *c, int timeout_ms)
{
    for (;;) {
        char *data = NULL;
        size_t len = 0;
        int op = ws_recv(c->ws, &data, &len, h_ms(timeout_ms));
        if (op == WS_OP_TEXT) {
            json_error_t jerr;
            json_t *o = json_loadb(data, len, 0, &jerr);
            if (!o)
                fail_msg("server sent invalid JSON: %s", data);
            free(data);
            return o;
        }
        free(data);
        if (op != WS_OP_PONG)
            return NULL;
    }
}

json_t *bc_expect(struct bus_client *c, const char *type, int timeout_ms)
{
    for (;;) {
        json_t *o = bc_recv(c, timeout_ms);
        if (!o)
            fail_msg("%s: no \"%s\" frame within %d ms (%s)", c->id, type, timeout_ms,
                     ws_error(c->ws));
        if (!strcmp(bc_str(o, "type"), type))
            return o;
        json_decref(o);
    }
}

/* One command sent, its id returned in id (size >= 64). */
static void bc__send_command(struct bus_client *c, const char *name, json_t *args, char *id)
{
    static unsigned seq;
    snprintf(id, 64, "arq_1700000000000_%u_abcdef", ++seq);
    json_t *cmd = json_pack("{s:s, s:s, s:s}", "id", id, "type", "command", "command", name);
    if (args)
        json_object_set_new(cmd, "args", args);
    char *text = json_dumps(cmd, JSON_COMPACT);
    assert_int_equal(ws_send_text(c->ws, text, strlen(text)), 0);
    free(text);
    json_decref(cmd);
}

void bc_expect_nothing(struct bus_client *c)
{
    /* The bus serves a connection's frames in order from one loop: a frame queued for c
     * before the ping was handled comes before the ping's response. */
    char id[64];
    bc__send_command(c, "ping", NULL, id);
    json_t *o = bc_recv(c, 5000);
    if (!o)
        fail_msg("%s: no response to the ping marker", c->id);
    if (strcmp(bc_str(o, "type"), "response") != 0 || strcmp(bc_str(o, "request_id"), id) != 0) {
        char *text = json_dumps(o, JSON_COMPACT);
        fail_msg("%s: unexpected frame before the ping marker's response: %s", c->id, text);
    }
    json_decref(o);
}

static json_t *bc_vcommand(struct bus_client *c, const char *name, const char *args_fmt, va_list ap)
{
    json_t *args = NULL;
    if (args_fmt) {
        json_error_t jerr;
        args = json_vpack_ex(&jerr, 0, args_fmt, ap);
        if (!args)
            fail_msg("json_pack: %s", jerr.text);
    }
    char id[64];
    bc__send_command(c, name, args, id);
    for (;;) {
        json_t *o = bc_recv(c, 5000);
        if (!o)
            fail_msg("%s: no response to %s", c->id, name);
        if ((!strcmp(bc_str(o, "type"), "response") || !strcmp(bc_str(o, "type"), "error")) &&
            !strcmp(bc_str(o, "request_id"), id))
            return o;
        json_decref(o);
    }
}

json_t *bc_command(struct bus_client *c, const char *name, const char *args_fmt, ...)
{
    va_list ap;
    va_start(ap, args_fmt);
    json_t *r = bc_vcommand(c, name, args_fmt, ap);
    va_end(ap);
    return r;
}

const json_t *bc_command_ok(struct bus_client *c, json_t **resp, const char *name,
                            const char *args_fmt, ...)
{
    va_list ap;
    va_start(ap, args_fmt);
    *resp = bc_vcommand(c, name, args_fmt, ap);
    va_end(ap);
    if (strcmp(bc_str(*resp, "status"), "success") != 0) {
        char *text = json_dumps(*resp, JSON_COMPACT);
        fail_msg("%s failed: %s", name, text);
    }
    return json_object_get(json_object_get(*resp, "payload"), "data");
}

void bc_join(struct bus_client *c, const char *room, const char *channel)
{
    json_t *r;
    if (channel)
        bc_command_ok(c, &r, "join_channel", "{s:s, s:s}", "room", room, "channel", channel);
    else
        bc_command_ok(c, &r, "join_room", "{s:s}", "room", room);
    json_decref(r);
}

const char *bc_str(const json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : "";
}
