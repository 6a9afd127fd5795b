#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "mock_host.h"
#include "telemetry.h"
#include "utf8.h"
#include "walltime.h"

#define TS_FIXED 1795788185123456LL /* 2026-11-27T14:03:05.123456Z */

static char log_path[256];

/* What a deliver callback saw, plus what it should do while delivering. */
struct recorder {
    struct telemetry *t;
    char *lines[64]; /* each delivered event as JSON */
    size_t nlines;
    size_t batch_sizes[64];
    size_t nbatches;
    size_t data_refcount_seen;
    int echo;         /* push an "echo" event for every event that is not one */
    int nested_drain; /* call telemetry_drain from inside delivery */
    int shrink;       /* call telemetry_set_limits(t, 1, 1) from inside the first delivery */
};

static void record(void *arg, const struct arq_event *const *events, size_t n)
{
    struct recorder *r = arg;
    assert_true(r->nbatches < 64);
    r->batch_sizes[r->nbatches++] = n;
    for (size_t i = 0; i < n; i++) {
        assert_true(r->nlines < 64);
        r->lines[r->nlines++] = telemetry_event_json(events[i]);
        if (events[i]->data)
            r->data_refcount_seen = events[i]->data->refcount;
    }
    if (r->nested_drain)
        telemetry_drain(r->t);
    if (r->shrink && r->nbatches == 1)
        telemetry_set_limits(r->t, 1, 1);
    for (size_t i = 0; r->echo && i < n; i++) {
        if (strcmp(events[i]->event_type, "echo") == 0)
            continue;
        struct arq_event ev = {.struct_size = sizeof ev,
                               .event_type = "echo",
                               .timestamp_us = TS_FIXED,
                               .command = events[i]->event_type};
        telemetry_push(r->t, &ev, "n1", "sink");
    }
}

static void recorder_reset(struct recorder *r)
{
    for (size_t i = 0; i < r->nlines; i++)
        free(r->lines[i]);
    r->nlines = 0;
    r->nbatches = 0;
}

static int setup(void **state)
{
    struct recorder *r = calloc(1, sizeof *r);
    if (!r)
        return -1;
    *state = r;
    return 0;
}

static int teardown(void **state)
{
    struct recorder *r = *state;
    recorder_reset(r);
    telemetry_free(r->t);
    free(r);
    return 0;
}

static struct telemetry *make(struct recorder *r, size_t capacity, size_t batch)
{
    r->t = telemetry_new(capacity, batch, record, r);
    assert_non_null(r->t);
    return r->t;
}

static int push_type(struct telemetry *t, const char *type)
{
    struct arq_event ev = {.struct_size = sizeof ev, .event_type = type, .timestamp_us = TS_FIXED};
    return telemetry_push(t, &ev, "n1", "host");
}

/* The delivered event types, space-separated. */
static void assert_delivered(const struct recorder *r, const char *expected)
{
    char got[1024] = "";
    for (size_t i = 0; i < r->nlines; i++) {
        json_t *j = json_loads(r->lines[i], 0, NULL);
        assert_non_null(j);
        if (i > 0)
            strcat(got, " ");
        strcat(got, json_string_value(json_object_get(j, "event_type")));
        json_decref(j);
    }
    assert_string_equal(got, expected);
}

static void drain_delivers_everything_in_order_in_batches(void **state)
{
    struct recorder *r = *state;
    struct telemetry *t = make(r, 10, 3);
    for (int i = 0; i < 7; i++) {
        char type[8];
        snprintf(type, sizeof type, "e%d", i);
        assert_int_equal(push_type(t, type), ARQ_OK);
    }
    assert_int_equal(telemetry_queued(t), 7);
    telemetry_drain(t);
    assert_int_equal(telemetry_queued(t), 0);
    assert_int_equal(r->nbatches, 3);
    assert_int_equal(r->batch_sizes[0], 3);
    assert_int_equal(r->batch_sizes[1], 3);
    assert_int_equal(r->batch_sizes[2], 1);
    assert_delivered(r, "e0 e1 e2 e3 e4 e5 e6");

    recorder_reset(r);
    telemetry_drain(t); /* nothing queued: no empty batch */
    assert_int_equal(r->nbatches, 0);
}

static void ring_wraps_around_without_reordering(void **state)
{
    struct recorder *r = *state;
    struct telemetry *t = make(r, 3, 2);
    push_type(t, "a");
    push_type(t, "b");
    telemetry_drain(t);
    push_type(t, "c");
    push_type(t, "d");
    push_type(t, "e");
    assert_int_equal(push_type(t, "f"), ARQ_ELIMIT);
    telemetry_drain(t);
    assert_delivered(r, "a b c d e");
}

static void push_when_full_is_dropped_counted_and_logged_once(void **state)
{
    struct recorder *r = *state;
    struct telemetry *t = make(r, 2, 8);
    assert_int_equal(push_type(t, "a"), ARQ_OK);
    assert_int_equal(push_type(t, "b"), ARQ_OK);
    assert_int_equal(push_type(t, "c"), ARQ_ELIMIT);
    assert_int_equal(push_type(t, "d"), ARQ_ELIMIT);
    assert_int_equal(telemetry_queued(t), 2);
    assert_int_equal(telemetry_dropped(t), 2);
    telemetry_drain(t);
    assert_int_equal(push_type(t, "e"), ARQ_OK);
    telemetry_drain(t);
    assert_delivered(r, "a b e");
    assert_int_equal(telemetry_dropped(t), 2);

    char buf[4096];
    FILE *f = fopen(log_path, "r");
    assert_non_null(f);
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *line = strstr(buf, "msg=\"telemetry events dropped\" reason=\"queue full\" "
                                   "dropped=1 dropped_total=1 capacity=2\n");
    assert_non_null(line);
    assert_null(strstr(strchr(line, '\n'), "telemetry events dropped")); /* rate-limited */
}

static void zero_capacity_drops_everything(void **state)
{
    struct recorder *r = *state;
    struct telemetry *t = make(r, 0, 0);
    assert_int_equal(push_type(t, "a"), ARQ_ELIMIT);
    telemetry_drain(t);
    assert_int_equal(r->nbatches, 0);
    assert_int_equal(telemetry_dropped(t), 1);
}

static void push_during_delivery_waits_for_the_next_drain(void **state)
{
    struct recorder *r = *state;
    struct telemetry *t = make(r, 4, 2);
    r->echo = 1;
    for (const char *const *ty = (const char *const[]){"a", "b", "c", "d", NULL}; *ty; ty++)
        push_type(t, *ty);
    telemetry_drain(t);
    /* The ring was full; delivery freed slots before the sink pushed into them. */
    assert_delivered(r, "a b c d");
    assert_int_equal(telemetry_queued(t), 4);
    assert_int_equal(telemetry_dropped(t), 0);
    recorder_reset(r);
    telemetry_drain(t);
    assert_delivered(r, "echo echo echo echo");
    json_t *j = json_loads(r->lines[3], 0, NULL);
    assert_string_equal(json_string_value(json_object_get(j, "command")), "d");
    assert_string_equal(json_string_value(json_object_get(j, "source")), "sink");
    json_decref(j);
    assert_int_equal(telemetry_queued(t), 0);
}

static void drain_from_inside_delivery_does_nothing(void **state)
{
    struct recorder *r = *state;
    struct telemetry *t = make(r, 8, 1);
    r->nested_drain = 1;
    r->echo = 1;
    push_type(t, "a");
    push_type(t, "b");
    telemetry_drain(t);
    assert_delivered(r, "a b");
    assert_int_equal(telemetry_queued(t), 2);
}

static void set_limits_from_inside_delivery_is_safe(void **state)
{
    struct recorder *r = *state;
    struct telemetry *t = make(r, 8, 2);
    r->shrink = 1;
    for (const char *const *ty = (const char *const[]){"a", "b", "c", "d", "e", NULL}; *ty; ty++)
        push_type(t, *ty);
    telemetry_drain(t);
    /* The first batch was under way; the rest follows the new batch size. */
    assert_delivered(r, "a b c d e");
    assert_int_equal(r->nbatches, 4);
    assert_int_equal(r->batch_sizes[0], 2);
    assert_int_equal(r->batch_sizes[1], 1);
    assert_int_equal(push_type(t, "f"), ARQ_OK);
    assert_int_equal(push_type(t, "g"), ARQ_ELIMIT);
}

static void set_limits_keeps_queued_events_beyond_the_new_capacity(void **state)
{
    struct recorder *r = *state;
    struct telemetry *t = make(r, 4, 4);
    push_type(t, "x");
    push_type(t, "y");
    telemetry_drain(t); /* move the head so that the next events wrap around the ring */
    recorder_reset(r);
    for (const char *const *ty = (const char *const[]){"a", "b", "c", "d", NULL}; *ty; ty++)
        assert_int_equal(push_type(t, *ty), ARQ_OK);
    telemetry_set_limits(t, 2, 3);
    assert_int_equal(telemetry_queued(t), 4);
    assert_int_equal(push_type(t, "e"), ARQ_ELIMIT);

    telemetry_set_limits(t, 6, 3); /* grows the wrapped ring */
    assert_int_equal(push_type(t, "e"), ARQ_OK);
    assert_int_equal(push_type(t, "f"), ARQ_OK);
    assert_int_equal(push_type(t, "g"), ARQ_ELIMIT);
    telemetry_drain(t);
    assert_delivered(r, "a b c d e f");
    assert_int_equal(r->nbatches, 2);
    assert_int_equal(r->batch_sizes[0], 3);

    recorder_reset(r);
    telemetry_set_limits(t, 1, 0); /* shrinks; batch 0 means 1 */
    assert_int_equal(push_type(t, "h"), ARQ_OK);
    assert_int_equal(push_type(t, "i"), ARQ_ELIMIT);
    telemetry_set_limits(t, 0, 1); /* queued events survive even a zero capacity */
    assert_int_equal(push_type(t, "j"), ARQ_ELIMIT);
    telemetry_drain(t);
    assert_delivered(r, "h");
    assert_int_equal(telemetry_dropped(t), 4);
}

static void push_copies_strings_deeply(void **state)
{
    struct recorder *r = *state;
    struct telemetry *t = make(r, 4, 4);
    char type[] = "client_joined", client[] = "arq_client_1", room[] = "lobby",
         channel[] = "general", command[] = "join";
    char *node = strdup("node-a"), *source = strdup("ws");
    assert_non_null(node);
    assert_non_null(source);
    struct arq_event *ev = calloc(1, sizeof *ev);
    assert_non_null(ev);
    *ev = (struct arq_event){.struct_size = sizeof *ev,
                             .event_type = type,
                             .timestamp_us = TS_FIXED,
                             .client_id = client,
                             .room = room,
                             .channel = channel,
                             .command = command};
    assert_int_equal(telemetry_push(t, ev, node, source), ARQ_OK);
    memset(type, 'X', sizeof type - 1);
    memset(client, 'X', sizeof client - 1);
    memset(room, 'X', sizeof room - 1);
    memset(channel, 'X', sizeof channel - 1);
    memset(command, 'X', sizeof command - 1);
    free(node);
    free(source);
    free(ev);
    telemetry_drain(t);
    assert_int_equal(r->nlines, 1);
    assert_string_equal(
        r->lines[0], "{\"event_type\":\"client_joined\",\"timestamp\":\"2026-11-27T14:03:05."
                     "123456Z\",\"node\":\"node-a\",\"source\":\"ws\",\"client_id\":\"arq_"
                     "client_1\",\"room\":\"lobby\",\"channel\":\"general\",\"command\":\"join\"}");
}

static void push_holds_a_data_reference_until_delivered(void **state)
{
    struct recorder *r = *state;
    struct telemetry *t = make(r, 4, 4);
    json_t *data = json_pack("{s:i}", "n", 1);
    assert_non_null(data);
    struct arq_event ev = {.struct_size = sizeof ev, .event_type = "e", .data = data};
    assert_int_equal(telemetry_push(t, &ev, "n1", "host"), ARQ_OK);
    assert_int_equal(data->refcount, 2);
    telemetry_drain(t);
    assert_int_equal(r->data_refcount_seen, 2);
    assert_int_equal(data->refcount, 1);

    /* Freeing the queue releases what it still holds. */
    telemetry_push(t, &ev, "n1", "host");
    telemetry_push(t, &ev, "n1", "host");
    assert_int_equal(data->refcount, 3);
    telemetry_free(t);
    r->t = NULL;
    assert_int_equal(data->refcount, 1);
    json_decref(data);
}

static void push_fills_timestamp_node_and_source(void **state)
{
    struct recorder *r = *state;
    struct telemetry *t = make(r, 4, 4);
    struct arq_event ev = {
        .struct_size = sizeof ev, .event_type = "e", .node = "ignored", .source = "ignored"};
    int64_t before = walltime_now_us();
    telemetry_push(t, &ev, "n1", "auth-jwt");
    int64_t after = walltime_now_us();
    ev.timestamp_us = TS_FIXED;
    telemetry_push(t, &ev, NULL, NULL); /* without arguments the event's own are kept */
    telemetry_drain(t);

    json_t *j = json_loads(r->lines[0], 0, NULL);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "node")), "n1");
    assert_string_equal(json_string_value(json_object_get(j, "source")), "auth-jwt");
    struct tm tm = {0};
    int usec = 0;
    const char *ts = json_string_value(json_object_get(j, "timestamp"));
    assert_int_equal(sscanf(ts, "%4d-%2d-%2dT%2d:%2d:%2d.%6dZ", &tm.tm_year, &tm.tm_mon,
                            &tm.tm_mday, &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &usec),
                     7);
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    int64_t us = (int64_t)timegm(&tm) * 1000000 + usec;
    assert_true(us >= before && us <= after);
    json_decref(j);
    assert_string_equal(r->lines[1], "{\"event_type\":\"e\",\"timestamp\":\"2026-11-27T14:03:05."
                                     "123456Z\",\"node\":\"ignored\",\"source\":\"ignored\"}");
}

static void push_without_event_type_is_refused(void **state)
{
    struct recorder *r = *state;
    struct telemetry *t = make(r, 4, 4);
    struct arq_event ev = {.struct_size = sizeof ev};
    assert_int_equal(telemetry_push(t, &ev, "n1", "host"), ARQ_EINVAL);
    assert_int_equal(telemetry_push(t, NULL, "n1", "host"), ARQ_EINVAL);
    assert_int_equal(telemetry_push(NULL, &ev, "n1", "host"), ARQ_EINVAL);
    assert_int_equal(telemetry_queued(t), 0);
    assert_int_equal(telemetry_dropped(t), 0);
}

static void fields_beyond_struct_size_are_not_read(void **state)
{
    struct recorder *r = *state;
    struct telemetry *t = make(r, 4, 4);
    json_t *data = json_object();
    struct arq_event ev = {.struct_size = offsetof(struct arq_event, channel),
                           .event_type = "old",
                           .timestamp_us = TS_FIXED,
                           .client_id = "c",
                           .room = "r",
                           .channel = "not read",
                           .command = "not read",
                           .data = data};
    telemetry_push(t, &ev, "n1", "host");
    assert_int_equal(data->refcount, 1);
    telemetry_drain(t);
    assert_string_equal(r->lines[0],
                        "{\"event_type\":\"old\",\"timestamp\":\"2026-11-27T14:03:05.123456Z\","
                        "\"node\":\"n1\",\"source\":\"host\",\"client_id\":\"c\",\"room\":\"r\"}");
    ev.struct_size = offsetof(struct arq_event, event_type) + 4; /* cuts through a pointer */
    assert_null(telemetry_event_json(&ev));
    json_decref(data);
}

static void event_json_renders_every_field_in_documented_order(void **state)
{
    (void)state;
    json_t *data = json_pack("{s:i,s:s,s:[b,n]}", "bytes", 42, "reason", "too \"big\"", "x", 1);
    assert_non_null(data);
    struct arq_event ev = {.struct_size = sizeof ev,
                           .event_type = "message_rejected",
                           .timestamp_us = TS_FIXED,
                           .node = "node-a",
                           .source = "host",
                           .client_id = "arq_client_0123",
                           .room = "lobby",
                           .channel = "gen\"eral\n",
                           .command = "publish",
                           .data = data};
    char *text = telemetry_event_json(&ev);
    assert_non_null(text);
    assert_string_equal(text, "{\"event_type\":\"message_rejected\","
                              "\"timestamp\":\"2026-11-27T14:03:05.123456Z\",\"node\":\"node-a\","
                              "\"source\":\"host\",\"client_id\":\"arq_client_0123\","
                              "\"room\":\"lobby\",\"channel\":\"gen\\\"eral\\n\","
                              "\"command\":\"publish\",\"data\":{\"bytes\":42,"
                              "\"reason\":\"too \\\"big\\\"\",\"x\":[true,null]}}");
    free(text);
    assert_int_equal(data->refcount, 1);
    json_decref(data);
}

static void event_json_omits_absent_fields(void **state)
{
    (void)state;
    struct arq_event ev = {.struct_size = sizeof ev, .event_type = "reload_ok", .timestamp_us = 1};
    char *text = telemetry_event_json(&ev);
    assert_string_equal(
        text, "{\"event_type\":\"reload_ok\",\"timestamp\":\"1970-01-01T00:00:00.000001Z\"}");
    free(text);
    ev.timestamp_us = -1;
    ev.room = "";
    text = telemetry_event_json(&ev);
    assert_string_equal(text, "{\"event_type\":\"reload_ok\",\"timestamp\":\"1969-12-31T23:59:59."
                              "999999Z\",\"room\":\"\"}");
    free(text);
    assert_null(telemetry_event_json(NULL));
    ev.event_type = NULL;
    assert_null(telemetry_event_json(&ev));
}

static void event_json_replaces_invalid_utf8(void **state)
{
    (void)state;
    struct arq_event ev = {.struct_size = sizeof ev,
                           .event_type = "e",
                           .timestamp_us = TS_FIXED,
                           .room = "caf\xc3\xa9\xff!",
                           .channel = "\xc0\xaf"};
    char *text = telemetry_event_json(&ev);
    assert_string_equal(text, "{\"event_type\":\"e\",\"timestamp\":\"2026-11-27T14:03:05.123456Z\","
                              "\"room\":\"caf\xc3\xa9\xef\xbf\xbd!\",\"channel\":\"\xef\xbf\xbd"
                              "\xef\xbf\xbd\"}");
    free(text);
}

/* ---- the direct writer against jansson --------------------------------------------------- */

/* The rendering telemetry_event_json replaced, kept here as the reference: a jansson object
 * in the documented key order, strings with invalid UTF-8 replaced by U+FFFD, `data` set as
 * is, json_dumps(JSON_COMPACT | JSON_PRESERVE_ORDER). */
static json_t *ref_string(const char *s)
{
    json_t *j = json_string(s);
    if (j)
        return j;
    size_t len = strlen(s), o = 0;
    char *fixed = malloc(len * 3 + 1);
    assert_non_null(fixed);
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        size_t n = utf8_seq_len(p);
        if (n == 0) {
            memcpy(fixed + o, "\xef\xbf\xbd", 3);
            o += 3;
            p++;
        } else {
            memcpy(fixed + o, p, n);
            o += n;
            p += n;
        }
    }
    fixed[o] = '\0';
    j = json_string(fixed);
    free(fixed);
    return j;
}

static void ref_set(json_t *obj, const char *key, const char *value)
{
    if (value)
        assert_int_equal(json_object_set_new(obj, key, ref_string(value)), 0);
}

static char *reference_json(const struct arq_event *ev)
{
    int64_t us = ev->timestamp_us, sec = us / 1000000, frac = us % 1000000;
    if (frac < 0) {
        frac += 1000000;
        sec -= 1;
    }
    time_t tt = (time_t)sec;
    struct tm tm;
    if (!gmtime_r(&tt, &tm))
        memset(&tm, 0, sizeof tm);
    char ts[64];
    snprintf(ts, sizeof ts, "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)frac);
    json_t *obj = json_object();
    assert_non_null(obj);
    ref_set(obj, "event_type", ev->event_type);
    ref_set(obj, "timestamp", ts);
    ref_set(obj, "node", ev->node);
    ref_set(obj, "source", ev->source);
    ref_set(obj, "client_id", ev->client_id);
    ref_set(obj, "room", ev->room);
    ref_set(obj, "channel", ev->channel);
    ref_set(obj, "command", ev->command);
    if (ev->data)
        assert_int_equal(json_object_set(obj, "data", ev->data), 0);
    char *text = json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(obj);
    return text;
}

/* Both renderings, byte for byte (both NULL when jansson cannot dump `data`). */
static void assert_same_as_jansson(const struct arq_event *ev)
{
    char *want = reference_json(ev);
    char *got = telemetry_event_json(ev);
    if (!want) {
        assert_null(got);
        return;
    }
    assert_non_null(got);
    if (strcmp(got, want) != 0)
        fail_msg("direct writer:\n%s\njansson:\n%s", got, want);
    free(got);
    free(want);
}

/* Every field set to `s`. */
static void assert_same_in_every_field(const char *s, json_t *data)
{
    struct arq_event ev = {.struct_size = sizeof ev,
                           .event_type = s,
                           .timestamp_us = TS_FIXED,
                           .node = s,
                           .source = s,
                           .client_id = s,
                           .room = s,
                           .channel = s,
                           .command = s,
                           .data = data};
    assert_same_as_jansson(&ev);
}

static void event_json_escapes_like_jansson(void **state)
{
    (void)state;
    char every_control[64];
    for (int c = 1; c < 0x20; c++)
        every_control[c - 1] = (char)c;
    every_control[0x1f] = '\0';
    static const char *const cases[] = {
        "",
        "plain",
        "quote \" backslash \\ slash / del \x7f",
        "\b\f\n\r\t",
        "\x01\x1f\x0b\x1b end",
        "\"\"\\\\",
        "trailing\\",
        "{\"looks\":\"like json\"}",
        "</script>",
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        assert_same_in_every_field(cases[i], NULL);
    assert_same_in_every_field(every_control, NULL);

    struct arq_event ev = {
        .struct_size = sizeof ev, .event_type = "e", .timestamp_us = TS_FIXED, .room = "\x1f/"};
    char *text = telemetry_event_json(&ev);
    assert_non_null(strstr(text, "\"room\":\"\\u001F/\"")); /* upper-case hex, '/' as is */
    free(text);
}

static void event_json_utf8_like_jansson(void **state)
{
    (void)state;
    static const char *const cases[] = {
        "caf\xc3\xa9",                       /* 2 bytes */
        "\xe2\x82\xac \xe4\xb8\xad",         /* 3 bytes */
        "\xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf", /* 4 bytes, U+10FFFF */
        "\xef\xbb\xbf BOM, U+2028 \xe2\x80\xa8",
        "\xff",
        "\x80 lone continuation",
        "\xc0\xaf overlong slash",
        "\xe0\x80\xaf overlong 3",
        "\xf0\x80\x80\xaf overlong 4",
        "\xed\xa0\x80 surrogate",
        "\xf4\x90\x80\x80 past U+10FFFF",
        "\xf5\x80\x80\x80",
        "cut at the end \xe2\x82",
        "cut \xe2\x82 in the middle",
        "\xc3",
        "valid \xc3\xa9 then \xfe invalid \"quoted\"\n",
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        assert_same_in_every_field(cases[i], NULL);
}

static void event_json_absent_fields_like_jansson(void **state)
{
    (void)state;
    const char *values[] = {"n", "s", "c", "r", "ch", "cmd"};
    for (unsigned mask = 0; mask < 64; mask++) {
        struct arq_event ev = {.struct_size = sizeof ev,
                               .event_type = "e",
                               .timestamp_us = TS_FIXED,
                               .node = mask & 1 ? values[0] : NULL,
                               .source = mask & 2 ? values[1] : NULL,
                               .client_id = mask & 4 ? values[2] : NULL,
                               .room = mask & 8 ? values[3] : NULL,
                               .channel = mask & 16 ? values[4] : NULL,
                               .command = mask & 32 ? values[5] : NULL};
        assert_same_as_jansson(&ev);
        json_t *data = json_pack("{s:i}", "mask", (int)mask);
        ev.data = data;
        assert_same_as_jansson(&ev);
        json_decref(data);
    }
}

static void event_json_timestamps_like_jansson(void **state)
{
    (void)state;
    /* Also the per-second cache: the same second again after another one. */
    static const int64_t stamps[] = {TS_FIXED,
                                     TS_FIXED + 1,
                                     TS_FIXED + 876543,
                                     TS_FIXED + 876544,
                                     TS_FIXED,
                                     1,
                                     999999,
                                     1000000,
                                     -1,
                                     -999999,
                                     -1000000,
                                     -1000001,
                                     -62135596800000000LL, /* 0001-01-01 */
                                     253402300799999999LL, /* 9999-12-31T23:59:59.999999 */
                                     253402300800000000LL, /* year 10000 */
                                     INT64_MAX,
                                     INT64_MIN + 1,
                                     TS_FIXED};
    for (size_t i = 0; i < sizeof stamps / sizeof stamps[0]; i++) {
        struct arq_event ev = {
            .struct_size = sizeof ev, .event_type = "e", .timestamp_us = stamps[i]};
        assert_same_as_jansson(&ev);
    }
}

static void event_json_data_like_jansson(void **state)
{
    (void)state;
    json_t *obj = json_object();
    json_object_setn_new(obj, "nul\0key", 7, json_stringn("a\0b", 3));
    json_t *values[] = {
        json_pack("{s:s, s:I}", "id", "arq_01JDXYZ0123456789ABCDEFG", "delivered", (json_int_t)50),
        json_object(),
        json_array(),
        json_pack("[{}, [], [[]], {s:{}}]", "k"),
        json_pack("{s:[i, f, b, b, n, s], s:{s:{s:[s]}}}", "list", -7, 1.5, 1, 0, "x", "deep", "er",
                  "est", "\xf0\x9f\x98\x80 \"esc\"\n"),
        json_pack("[I, I, I, I]", (json_int_t)0, (json_int_t)-1, (json_int_t)INT64_MAX,
                  (json_int_t)INT64_MIN),
        json_pack("[f, f, f, f, f, f, f]", 0.0, -0.0, 0.1, 1e300, -2.5e-300, 123456789.0, 1.0 / 3),
        json_pack("{s:s, s:s, s:s}", "\x01key\"\\/", "v", "caf\xc3\xa9", "\xe2\x82\xac", "", ""),
        json_string("a bare string \x1f"),
        json_integer(42),
        json_real(2.5),
        json_true(),
        json_null(),
        obj,
    };
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
        assert_non_null(values[i]);
        assert_same_in_every_field("f", values[i]);
        json_decref(values[i]);
    }
}

static void event_json_deep_data_like_jansson(void **state)
{
    (void)state;
    /* Deeper than the direct writer goes: jansson writes it. */
    json_t *data = json_string("bottom");
    for (int i = 0; i < 300; i++)
        data = i % 2 ? json_pack("{s:o, s:i}", "k", data, "i", i) : json_pack("[o, s]", data, "x");
    assert_non_null(data);
    assert_same_in_every_field("f", data);
    json_decref(data);
}

static void event_json_refuses_data_jansson_refuses(void **state)
{
    (void)state;
    /* A cycle. */
    json_t *outer = json_object(), *inner = json_array();
    assert_int_equal(json_object_set(outer, "inner", inner), 0);
    assert_int_equal(json_array_append(inner, outer), 0);
    struct arq_event ev = {
        .struct_size = sizeof ev, .event_type = "e", .timestamp_us = TS_FIXED, .data = outer};
    assert_null(telemetry_event_json(&ev));
    json_array_clear(inner); /* break the cycle so that both are freed */
    json_decref(inner);
    json_decref(outer);

    /* Strings that skipped jansson's UTF-8 check: jansson's dump fails, and so does ours. */
    json_t *bad_value = json_pack("{s:o}", "k", json_string_nocheck("bad \xff"));
    json_t *nested = json_pack("[i, [{s:O}]]", 1, "x", bad_value);
    json_t *all[] = {bad_value, nested};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        assert_non_null(all[i]);
        ev.data = all[i];
        assert_null(reference_json(&ev));
        assert_null(telemetry_event_json(&ev));
        json_decref(all[i]);
    }
}

/* The one place the writers differ on purpose: jansson ignores a failure to write an object's
 * key, and writes the truncated key into otherwise well-formed output ({":true}); the direct
 * writer refuses the event, as it does an invalid value. */
static void event_json_refuses_an_invalid_key_jansson_would_truncate(void **state)
{
    (void)state;
    json_t *bad_key = json_object();
    assert_int_equal(json_object_set_new_nocheck(bad_key, "bad \xc0\xaf", json_true()), 0);
    struct arq_event ev = {
        .struct_size = sizeof ev, .event_type = "e", .timestamp_us = TS_FIXED, .data = bad_key};
    char *jansson = reference_json(&ev);
    assert_non_null(strstr(jansson, "\"data\":{\":true}}"));
    free(jansson);
    assert_null(telemetry_event_json(&ev));
    json_decref(bad_key);
}

static void event_json_large_values_like_jansson(void **state)
{
    (void)state;
    /* Far beyond the first buffer: a long field, an escape-heavy one, a large data. */
    size_t n = 1 << 20;
    char *big = malloc(n + 1), *escapes = malloc(n + 1);
    assert_non_null(big);
    assert_non_null(escapes);
    for (size_t i = 0; i < n; i++) {
        big[i] = (char)('a' + i % 26);
        escapes[i] = i % 3 == 0 ? '\x01' : i % 3 == 1 ? '"' : '\n';
    }
    big[n] = escapes[n] = '\0';
    json_t *data = json_array();
    for (int i = 0; i < 10000; i++)
        json_array_append_new(data, json_pack("{s:i, s:s}", "i", i, "s", "\xe2\x82\xac\t"));
    json_array_append_new(data, json_string(big));
    struct arq_event ev = {.struct_size = sizeof ev,
                           .event_type = "e",
                           .timestamp_us = TS_FIXED,
                           .room = big,
                           .channel = escapes,
                           .data = data};
    assert_same_as_jansson(&ev);
    ev.room = ev.channel = NULL; /* the data alone grows the buffer */
    assert_same_as_jansson(&ev);
    json_decref(data);
    free(big);
    free(escapes);
}

/* Random bytes, biased towards the ones that need care. Seeded: the same cases every run. */
static void event_json_random_strings_like_jansson(void **state)
{
    (void)state;
    static const unsigned char interesting[] = {
        0x00, 0x01, 0x08, 0x09, 0x0a, 0x0c, 0x0d, 0x1f, 0x20, '"',  '\\', '/',  0x7f,
        0x80, 0xbf, 0xc0, 0xc1, 0xc2, 0xc3, 0xdf, 0xe0, 0xe2, 0xed, 0xef, 0xf0, 0xf4,
        0xf5, 0xff, 0x82, 0x9f, 0xa0, 0xa9, 'a',  'z',  '{',  ':',  ','};
    uint32_t seed = 12345;
    char fields[7][40];
    for (int round = 0; round < 3000; round++) {
        for (int f = 0; f < 7; f++) {
            seed = seed * 1103515245u + 12345u;
            size_t len = 1 + (seed >> 16) % 38, k = 0;
            while (k < len) {
                seed = seed * 1103515245u + 12345u;
                unsigned char c = interesting[(seed >> 16) % sizeof interesting];
                if (c)
                    fields[f][k++] = (char)c;
            }
            fields[f][k] = '\0';
        }
        json_t *data = round % 2 ? json_pack("{s:s}", "k", "v") : NULL;
        struct arq_event ev = {.struct_size = sizeof ev,
                               .event_type = fields[0],
                               .timestamp_us = TS_FIXED + round,
                               .node = fields[1],
                               .source = fields[2],
                               .client_id = fields[3],
                               .room = fields[4],
                               .channel = fields[5],
                               .command = fields[6],
                               .data = data};
        assert_same_as_jansson(&ev);
        json_decref(data);
    }
}

static void now_us_is_wall_clock_microseconds(void **state)
{
    (void)state;
    /* The same clock, read around it (time() reads a coarser clock that may lag by a tick). */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t before = (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
    int64_t now = walltime_now_us();
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t after = (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
    assert_true(now >= before && now <= after);
}

int main(void)
{
    mock_host_tmpdir(log_path, sizeof log_path, "test_telemetry_log");
    int fd = mkstemp(log_path);
    if (fd < 0 || log_open_file(log_path) != 0)
        return 1;
    close(fd);
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(drain_delivers_everything_in_order_in_batches),
        T(ring_wraps_around_without_reordering),
        T(push_when_full_is_dropped_counted_and_logged_once),
        T(zero_capacity_drops_everything),
        T(push_during_delivery_waits_for_the_next_drain),
        T(drain_from_inside_delivery_does_nothing),
        T(set_limits_from_inside_delivery_is_safe),
        T(set_limits_keeps_queued_events_beyond_the_new_capacity),
        T(push_copies_strings_deeply),
        T(push_holds_a_data_reference_until_delivered),
        T(push_fills_timestamp_node_and_source),
        T(push_without_event_type_is_refused),
        T(fields_beyond_struct_size_are_not_read),
        T(event_json_renders_every_field_in_documented_order),
        T(event_json_omits_absent_fields),
        T(event_json_replaces_invalid_utf8),
        T(event_json_escapes_like_jansson),
        T(event_json_utf8_like_jansson),
        T(event_json_absent_fields_like_jansson),
        T(event_json_timestamps_like_jansson),
        T(event_json_data_like_jansson),
        T(event_json_deep_data_like_jansson),
        T(event_json_refuses_data_jansson_refuses),
        T(event_json_refuses_an_invalid_key_jansson_would_truncate),
        T(event_json_large_values_like_jansson),
        T(event_json_random_strings_like_jansson),
        T(now_us_is_wall_clock_microseconds),
    };
#undef T
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    log_close();
    unlink(log_path);
    return failed;
}
