#include "bus_fixture.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"
#include "metrics.h"
#include "telemetry.h"

/* --- the environment ------------------------------------------------------------------------ */

static int64_t fx__now_ms(void *arg)
{
    return ((struct bus_fx *)arg)->now_ms;
}

static struct arq_ctx *fx__instance(void *arg, enum arq_kind kind, size_t i)
{
    struct bus_fx *f = arg;
    for (size_t k = 0; k < f->ninst; k++)
        if (f->inst[k]->desc.kind == kind && i-- == 0)
            return &f->inst[k]->ctx;
    return NULL;
}

static int fx__accepting(void *arg)
{
    return ((struct bus_fx *)arg)->accepting;
}

static void fx__reload(void *arg, arq_result_cb cb, void *cb_arg)
{
    struct bus_fx *f = arg;
    f->reloads_asked++;
    f->reload_cb = cb;
    f->reload_arg = cb_arg;
}

static json_t *fx__status(void *arg)
{
    (void)arg;
    return json_pack("{s:I, s:s, s:s, s:I, s:[], s:{s:I, s:I, s:b, s:n}}", "uptime_seconds",
                     (json_int_t)1, "version", "test", "node", "test-node", "generation",
                     (json_int_t)1, "plugins", "reloads", "succeeded", (json_int_t)0, "failed",
                     (json_int_t)0, "last_ok", 1, "last_error");
}

static void fx__deliver(void *arg, const struct arq_event *const *events, size_t n)
{
    struct bus_fx *f = arg;
    for (size_t i = 0; i < n; i++) {
        char *text = telemetry_event_json(events[i]);
        json_t *ev = text ? json_loads(text, 0, NULL) : NULL;
        free(text);
        if (ev)
            json_array_append_new(f->events, ev);
    }
}

void fx_reload_done(struct bus_fx *f, int ok, const char *error)
{
    assert_non_null(f->reload_cb);
    arq_result_cb cb = f->reload_cb;
    f->reload_cb = NULL;
    json_t *data = json_pack("{s:I}", "generation", (json_int_t)2);
    if (ok)
        cb(f->reload_arg, NULL, NULL, data);
    else
        cb(f->reload_arg, "EXECUTION_ERROR", error, NULL);
    json_decref(data);
}

/* --- instances ------------------------------------------------------------------------------ */

struct arq_ctx *fx_instance(struct bus_fx *f, const char *name, enum arq_kind kind, const void *ops,
                            void *self)
{
    assert_true(f->ninst < BUS_FX_MAX_INSTANCES);
    struct fake_instance *fi = calloc(1, sizeof *fi);
    assert_non_null(fi);
    fi->desc = (struct arq_plugin){.struct_size = sizeof fi->desc,
                                   .abi_major = ARQ_ABI_MAJOR,
                                   .abi_minor = ARQ_ABI_MINOR,
                                   .name = name,
                                   .version = "test",
                                   .kind = kind,
                                   .ops = ops};
    fi->mod.desc = &fi->desc;
    fi->ctx.name = strdup(name);
    fi->ctx.mod = &fi->mod;
    fi->ctx.self = self;
    fi->ctx.app = &f->bus;
    fi->ctx.created = fi->ctx.started = 1;
    atomic_init(&fi->ctx.refs, 1);
    f->inst[f->ninst++] = fi;
    bus_generation_changed(&f->bus);
    return &fi->ctx;
}

void fx_remove_instance(struct bus_fx *f, struct arq_ctx *ctx)
{
    for (size_t k = 0; k < f->ninst; k++) {
        if (&f->inst[k]->ctx != ctx)
            continue;
        struct fake_instance *fi = f->inst[k];
        memmove(&f->inst[k], &f->inst[k + 1], (f->ninst - k - 1) * sizeof f->inst[0]);
        f->ninst--;
        fi->ctx.started = 0;
        fi->ctx.dead = 1;
        bus_generation_changed(&f->bus);
        bus_instance_destroyed(&f->bus, ctx);
        /* Requests and connections may still hold it: freed at teardown. */
        f->removed[f->nremoved++] = fi;
        return;
    }
    fail_msg("no such instance");
}

/* --- the fake transport ------------------------------------------------------------------ */

static void fx__want_write(void *tconn)
{
    ((struct fake_client *)tconn)->want_write = 1;
}

static void fx__close(void *tconn, int code, const char *reason)
{
    struct fake_client *c = tconn;
    c->closed = 1;
    c->close_code = code;
    snprintf(c->close_reason, sizeof c->close_reason, "%s", reason ? reason : "");
}

static const struct arq_conn_ops fx_conn_ops = {
    .struct_size = sizeof fx_conn_ops, .want_write = fx__want_write, .close = fx__close};

static const struct arq_transport_ops fx_transport_ops = {.struct_size = sizeof fx_transport_ops};

struct fake_client *fx_connect(struct bus_fx *f, const struct arq_conn_info *info)
{
    assert_true(f->nclients < sizeof f->clients / sizeof f->clients[0]);
    struct fake_client *c = calloc(1, sizeof *c);
    assert_non_null(c);
    c->fx = f;
    c->frames = json_array();
    f->clients[f->nclients++] = c;
    struct arq_conn_info local = {.struct_size = sizeof local,
                                  .transport = "websocket",
                                  .peer_addr = "127.0.0.1",
                                  .peer_port = 40000 + (int)f->nclients,
                                  .path = "/"};
    c->conn = conn_svc_open(&f->transport->ctx, info ? info : &local, &fx_conn_ops, c);
    return c;
}

struct fake_client *fx_client(struct bus_fx *f)
{
    struct fake_client *c = fx_connect(f, NULL);
    assert_non_null(c->conn);
    json_t *w = fx_next(c);
    assert_non_null(fx_get(w, "payload.welcome"));
    assert_string_equal(fx_str(w, "payload.client_id"), conn_svc_client_id(c->conn));
    return c;
}

void fx_join(struct fake_client *c, const char *room, const char *channel)
{
    struct arq_error err = {""};
    const char *code = bus_svc_join(c->conn, room, channel, &err);
    if (code)
        fail_msg("join %s/%s: %s (%s)", room, channel ? channel : "-", code, err.text);
}

void fx_send(struct fake_client *c, const char *text)
{
    assert_non_null(c->conn);
    conn_svc_recv(c->conn, text, strlen(text), 0);
}

void fx_sendf(struct fake_client *c, const char *fmt, ...)
{
    char text[8192];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    assert_true(n > 0 && (size_t)n < sizeof text);
    fx_send(c, text);
}

void fx_flush(struct fake_client *c)
{
    if (!c->conn || c->hold_writes)
        return;
    c->want_write = 0;
    for (;;) {
        struct arq_frame_ref refs[16];
        size_t n = conn_svc_pending(c->conn, refs, 16);
        if (!n)
            break;
        for (size_t i = 0; i < n; i++) {
            assert_true(refs[i].headroom >= ARQ_FRAME_HEADROOM);
            json_error_t err;
            json_t *frame = json_loadb((const char *)refs[i].data, refs[i].len, 0, &err);
            if (!frame)
                fail_msg("the bus wrote a frame that is not JSON: %.*s", (int)refs[i].len,
                         (const char *)refs[i].data);
            json_array_append_new(c->frames, frame);
        }
        conn_svc_consumed(c->conn, n);
    }
}

json_t *fx_next(struct fake_client *c)
{
    fx_flush(c);
    if (c->read >= json_array_size(c->frames))
        return NULL;
    return json_array_get(c->frames, c->read++);
}

json_t *fx_expect(struct fake_client *c, const char *type)
{
    json_t *frame;
    while ((frame = fx_next(c)))
        if (!strcmp(fx_str(frame, "type"), type))
            return frame;
    fail_msg("no \"%s\" frame came", type);
    return NULL;
}

size_t fx_unread(struct fake_client *c)
{
    fx_flush(c);
    return json_array_size(c->frames) - c->read;
}

void fx_disconnect(struct fake_client *c, int code)
{
    if (!c->conn)
        return;
    arq_conn *conn = c->conn;
    c->conn = NULL;
    conn_svc_closed(conn, code, "gone");
}

void fx_result_cb(void *arg, const char *code, const char *text, const json_t *data)
{
    struct fx_result *r = arg;
    r->calls++;
    snprintf(r->code, sizeof r->code, "%s", code ? code : "");
    snprintf(r->text, sizeof r->text, "%s", text ? text : "");
    json_decref(r->data);
    r->data = data ? json_deep_copy(data) : NULL;
}

/* --- reading ------------------------------------------------------------------------------ */

json_t *fx_get(const json_t *obj, const char *path)
{
    char key[128];
    const json_t *v = obj;
    while (v && *path) {
        size_t n = strcspn(path, ".");
        snprintf(key, sizeof key, "%.*s", (int)n, path);
        v = json_object_get(v, key);
        path += n + (path[n] == '.');
    }
    return (json_t *)v;
}

const char *fx_str(const json_t *obj, const char *path)
{
    const char *s = json_string_value(fx_get(obj, path));
    return s ? s : "";
}

size_t fx_events(struct bus_fx *f, const char *type)
{
    telemetry_drain(f->telemetry);
    size_t n = 0;
    size_t i;
    json_t *ev;
    json_array_foreach(f->events, i, ev) n += !strcmp(fx_str(ev, "event_type"), type);
    return n;
}

json_t *fx_event(struct bus_fx *f, const char *type, size_t i)
{
    telemetry_drain(f->telemetry);
    size_t k;
    json_t *ev;
    json_array_foreach(f->events, k, ev)
    {
        if (!strcmp(fx_str(ev, "event_type"), type) && i-- == 0)
            return ev;
    }
    return NULL;
}

double fx_metric(struct bus_fx *f, const char *series)
{
    char *text = metrics_render(f->metrics);
    assert_non_null(text);
    double value = -1;
    size_t len = strlen(series);
    for (const char *line = text; *line;) {
        if (!strncmp(line, series, len) && line[len] == ' ') {
            value = strtod(line + len + 1, NULL);
            break;
        }
        const char *nl = strchr(line, '\n');
        line = nl ? nl + 1 : line + strlen(line);
    }
    free(text);
    return value;
}

/* --- set-up ------------------------------------------------------------------------------- */

void fx_configure(struct bus_fx *f, const char *yaml)
{
    char dir[] = "/tmp/arq_bus_fx_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[64];
    snprintf(path, sizeof path, "%s/bus.yaml", dir);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fprintf(fp, "bus:\n");
    for (const char *line = yaml; *line;) {
        size_t n = strcspn(line, "\n");
        fprintf(fp, "  %.*s\n", (int)n, line);
        line += n + (line[n] == '\n');
    }
    if (!*yaml)
        fprintf(fp, "  {}\n");
    fclose(fp);
    static const struct config_section section = {"bus", bus_options};
    struct diag_list diags = {0};
    struct config *conf = config_load(dir, NULL, NULL, &section, &diags);
    for (size_t i = 0; i < diags.n; i++)
        print_message("fx_configure: %s\n", diags.items[i]);
    assert_non_null(conf);
    bus_configure(&f->bus, json_incref(conf->section_values));
    config_free(conf);
    diag_clear(&diags);
    unlink(path);
    rmdir(dir);
}

int bus_fx_setup(void **state)
{
    struct bus_fx *f = calloc(1, sizeof *f);
    assert_non_null(f);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    f->metrics = metrics_new();
    f->events = json_array();
    f->telemetry = telemetry_new(65536, 256, fx__deliver, f);
    f->now_ms = 1767225600000; /* 2026-01-01T00:00:00Z */
    f->accepting = 1;
    const struct bus_env env = {.loop = &f->loop,
                                .metrics = f->metrics,
                                .telemetry = f->telemetry,
                                .node = "test-node",
                                .arg = f,
                                .now_ms = fx__now_ms,
                                .instance = fx__instance,
                                .accepting = fx__accepting,
                                .reload = fx__reload,
                                .status = fx__status};
    assert_int_equal(bus_init(&f->bus, &env), 0);
    fx_configure(f, "");
    struct arq_ctx *ws = fx_instance(f, "ws", ARQ_KIND_TRANSPORT, &fx_transport_ops, NULL);
    f->transport = (struct fake_instance *)ws;
    *state = f;
    return 0;
}

int bus_fx_teardown(void **state)
{
    struct bus_fx *f = *state;
    bus_stopping(&f->bus);
    for (size_t i = 0; i < f->nclients; i++)
        fx_disconnect(f->clients[i], 1001);
    telemetry_drain(f->telemetry);
    uv_run(&f->loop, UV_RUN_DEFAULT); /* the bus's timers close */
    bus_free(&f->bus);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    for (size_t i = 0; i < f->nclients; i++) {
        json_decref(f->clients[i]->frames);
        free(f->clients[i]);
    }
    for (size_t i = 0; i < f->ninst + f->nremoved; i++) {
        struct fake_instance *fi = i < f->ninst ? f->inst[i] : f->removed[i - f->ninst];
        free(fi->ctx.name);
        free(fi);
    }
    telemetry_free(f->telemetry);
    metrics_free(f->metrics);
    json_decref(f->events);
    free(f);
    return 0;
}
