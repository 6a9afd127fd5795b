/* The telemetry queue. Each queued event is one allocation: the struct followed by copies of
 * its strings. Drain moves a batch out of the ring before calling the sinks, so a sink that
 * emits (or reconfigures the queue) only ever touches free slots; what it emits waits for the
 * next drain. */
#include "telemetry.h"
#include "jsonw.h"
#include "walltime.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

/* Drops are logged at most this often; the exact count is in telemetry_dropped(). */
#define TELEMETRY_DROP_LOG_INTERVAL_US (10 * 1000000LL)

struct telemetry {
    struct arq_event **ring;
    size_t slots;    /* length of `ring`; >= capacity, or >= count after a shrink */
    size_t head;     /* oldest queued event */
    size_t count;    /* queued events */
    size_t capacity; /* pushes beyond this many queued events are dropped */
    size_t batch;
    struct arq_event **out; /* the batch being delivered */
    size_t out_len;
    telemetry_deliver_fn deliver;
    void *arg;
    uint64_t dropped;
    uint64_t dropped_logged;
    int64_t drop_logged_at;
    int draining;
};

/* Copy the fields the caller's struct_size says it has (ABI: tables grow at their tail). */
#define TELEMETRY_HAS(ev, field)                                                                   \
    ((ev)->struct_size >= offsetof(struct arq_event, field) + sizeof((ev)->field))

static int telemetry__read(const struct arq_event *ev, struct arq_event *out)
{
    memset(out, 0, sizeof *out);
    out->struct_size = sizeof *out;
    if (!ev)
        return ARQ_EINVAL;
    if (TELEMETRY_HAS(ev, event_type))
        out->event_type = ev->event_type;
    if (TELEMETRY_HAS(ev, timestamp_us))
        out->timestamp_us = ev->timestamp_us;
    if (TELEMETRY_HAS(ev, node))
        out->node = ev->node;
    if (TELEMETRY_HAS(ev, source))
        out->source = ev->source;
    if (TELEMETRY_HAS(ev, client_id))
        out->client_id = ev->client_id;
    if (TELEMETRY_HAS(ev, room))
        out->room = ev->room;
    if (TELEMETRY_HAS(ev, channel))
        out->channel = ev->channel;
    if (TELEMETRY_HAS(ev, command))
        out->command = ev->command;
    if (TELEMETRY_HAS(ev, data))
        out->data = ev->data;
    return out->event_type ? ARQ_OK : ARQ_EINVAL;
}

static struct arq_event *telemetry__copy(const struct arq_event *in)
{
    const char *src[] = {in->event_type, in->node,    in->source, in->client_id,
                         in->room,       in->channel, in->command};
    enum { NSTR = sizeof src / sizeof src[0] };
    size_t len[NSTR];
    size_t total = sizeof(struct arq_event);
    for (size_t i = 0; i < NSTR; i++) {
        len[i] = src[i] ? strlen(src[i]) + 1 : 0;
        if (len[i] > SIZE_MAX - total)
            return NULL;
        total += len[i];
    }
    struct arq_event *copy = malloc(total);
    if (!copy)
        return NULL;
    *copy = *in;
    const char **dst[NSTR] = {&copy->event_type, &copy->node,    &copy->source, &copy->client_id,
                              &copy->room,       &copy->channel, &copy->command};
    char *p = (char *)(copy + 1);
    for (size_t i = 0; i < NSTR; i++) {
        if (!src[i])
            continue;
        memcpy(p, src[i], len[i]);
        *dst[i] = p;
        p += len[i];
    }
    if (copy->data)
        json_incref(copy->data);
    return copy;
}

static void telemetry__event_free(struct arq_event *ev)
{
    if (!ev)
        return;
    json_decref(ev->data);
    free(ev);
}

struct telemetry *telemetry_new(size_t capacity, size_t batch, telemetry_deliver_fn deliver,
                                void *arg)
{
    struct telemetry *t = calloc(1, sizeof *t);
    if (!t)
        goto fail;
    t->deliver = deliver;
    t->arg = arg;
    t->capacity = capacity;
    t->batch = batch > 0 ? batch : 1;
    if (capacity > 0) {
        t->ring = calloc(capacity, sizeof *t->ring);
        if (!t->ring)
            goto fail;
        t->slots = capacity;
    }
    t->out = calloc(t->batch, sizeof *t->out);
    if (!t->out)
        goto fail;
    t->out_len = t->batch;
    return t;

fail:
    if (t) {
        free(t->ring);
        free(t);
    }
    LOG_ERROR("out of memory", "where", "telemetry_new");
    return NULL;
}

void telemetry_free(struct telemetry *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->count; i++)
        telemetry__event_free(t->ring[(t->head + i) % t->slots]);
    free(t->ring);
    free(t->out);
    free(t);
}

static void telemetry__dropped(struct telemetry *t, const char *why)
{
    t->dropped++;
    int64_t now = walltime_now_us();
    if (t->dropped_logged != 0 && now - t->drop_logged_at < TELEMETRY_DROP_LOG_INTERVAL_US)
        return;
    char since[32], total[32], cap[32];
    snprintf(since, sizeof since, "%llu", (unsigned long long)(t->dropped - t->dropped_logged));
    snprintf(total, sizeof total, "%llu", (unsigned long long)t->dropped);
    snprintf(cap, sizeof cap, "%zu", t->capacity);
    LOG_WARN("telemetry events dropped", "reason", why, "dropped", since, "dropped_total", total,
             "capacity", cap);
    t->dropped_logged = t->dropped;
    t->drop_logged_at = now;
}

int telemetry_push(struct telemetry *t, const struct arq_event *ev, const char *node,
                   const char *source)
{
    struct arq_event in;
    if (!t)
        return ARQ_EINVAL;
    if (telemetry__read(ev, &in) != ARQ_OK) {
        LOG_ERROR("telemetry event refused: no event_type", "where", "telemetry_push");
        return ARQ_EINVAL;
    }
    if (t->count >= t->capacity) {
        telemetry__dropped(t, "queue full");
        return ARQ_ELIMIT;
    }
    if (in.timestamp_us == 0)
        in.timestamp_us = walltime_now_us();
    if (node)
        in.node = node;
    if (source)
        in.source = source;
    struct arq_event *copy = telemetry__copy(&in);
    if (!copy) {
        telemetry__dropped(t, "out of memory");
        return ARQ_ENOMEM;
    }
    t->ring[(t->head + t->count) % t->slots] = copy;
    t->count++;
    return ARQ_OK;
}

void telemetry_drain(struct telemetry *t)
{
    if (!t || t->draining)
        return; /* a sink that drains from inside delivery gets its events next time */
    t->draining = 1;
    size_t left = t->count; /* not what sinks push meanwhile: they wait for the next drain */
    while (left > 0) {
        size_t n = t->batch < left ? t->batch : left;
        if (t->out_len < n) {
            /* The batch size grew (set_limits); a failed grow just means smaller batches. */
            struct arq_event **out = realloc(t->out, n * sizeof *out);
            if (out) {
                t->out = out;
                t->out_len = n;
            } else {
                n = t->out_len;
            }
        }
        for (size_t i = 0; i < n; i++) {
            t->out[i] = t->ring[t->head];
            t->ring[t->head] = NULL;
            t->head = (t->head + 1) % t->slots;
            t->count--;
        }
        left -= n;
        if (t->deliver)
            t->deliver(t->arg, (const struct arq_event *const *)t->out, n);
        for (size_t i = 0; i < n; i++) {
            telemetry__event_free(t->out[i]);
            t->out[i] = NULL;
        }
    }
    t->draining = 0;
}

size_t telemetry_queued(const struct telemetry *t)
{
    return t ? t->count : 0;
}

uint64_t telemetry_dropped(const struct telemetry *t)
{
    return t ? t->dropped : 0;
}

void telemetry_set_limits(struct telemetry *t, size_t capacity, size_t batch)
{
    if (!t)
        return;
    /* The delivery buffer is resized by the next drain, never under a running delivery. */
    t->batch = batch > 0 ? batch : 1;
    size_t slots = capacity > t->count ? capacity : t->count;
    if (slots == t->slots) {
        t->capacity = capacity;
        return;
    }
    struct arq_event **ring = NULL;
    if (slots > 0) {
        ring = calloc(slots, sizeof *ring);
        if (!ring) {
            char want[32];
            snprintf(want, sizeof want, "%zu", capacity);
            LOG_ERROR("out of memory: telemetry queue keeps its size", "where",
                      "telemetry_set_limits", "capacity", want);
            t->capacity = capacity < t->slots ? capacity : t->slots;
            return;
        }
    }
    for (size_t i = 0; i < t->count; i++)
        ring[i] = t->ring[(t->head + i) % t->slots];
    free(t->ring);
    t->ring = ring;
    t->slots = slots;
    t->head = 0;
    t->capacity = capacity;
}

/* ---- JSON --------------------------------------------------------------------------------- */

/* The event is written straight into one buffer, byte for byte what json_dumps(JSON_COMPACT)
 * gives for the same fields in a jansson object: building that object and dumping it cost
 * ~37,000 instructions per event (jansson's dump allocates a hashtable for loop detection and
 * formats a key with snprintf for every container). tests/unit/test_telemetry.c compares the
 * two renderings. */

#define TJSON_MAX_DEPTH 64 /* deeper `data` goes through jansson, which also detects cycles */

struct tjson {
    char *p;
    size_t len, cap;
};

static int tjson__reserve(struct tjson *b, size_t n)
{
    if (n <= b->cap - b->len)
        return 0;
    if (n > SIZE_MAX / 2 - b->len)
        return -1;
    size_t cap = b->cap * 2 > b->len + n ? b->cap * 2 : b->len + n;
    char *p = realloc(b->p, cap);
    if (!p)
        return -1;
    b->p = p;
    b->cap = cap;
    return 0;
}

/* Callers reserve first. */
static void tjson__put(struct tjson *b, const char *s, size_t n)
{
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

/* A JSON string, escaped as jansson escapes it: \" \\ \b \f \n \r \t, other control
 * characters as \u00XX (upper-case hex), everything else (including '/' and DEL) as is.
 * Invalid UTF-8 is replaced by U+FFFD when `replace`, and fails otherwise (as jansson's dump
 * fails on a string it did not validate). */
static int tjson__string(struct tjson *b, const char *str, size_t len, int replace)
{
    if (len > (SIZE_MAX / 2 - 2) / JSONW_MAX_GROWTH ||
        tjson__reserve(b, len * JSONW_MAX_GROWTH + 2))
        return -1;
    size_t n =
        jsonw_escape(str, len, jsonw_json_upper, replace ? JSONW_UTF8_REPLACE : JSONW_UTF8_REFUSE,
                     b->p + b->len + 1, len * JSONW_MAX_GROWTH, NULL);
    if (n == JSONW_INVALID)
        return -1;
    b->p[b->len] = '"';
    b->p[b->len + 1 + n] = '"';
    b->len += n + 2;
    return 0;
}

/* ,"key":"value" for a field that is set. */
static int tjson__field(struct tjson *b, const char *key, const char *value)
{
    if (!value)
        return 0;
    size_t klen = strlen(key);
    if (tjson__reserve(b, klen + 4))
        return -1;
    tjson__put(b, ",\"", 2);
    tjson__put(b, key, klen);
    tjson__put(b, "\":", 2);
    return tjson__string(b, value, strlen(value), 1);
}

static int tjson__integer(struct tjson *b, json_int_t v)
{
    char digits[24];
    size_t n = 0;
    unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
    do {
        digits[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (tjson__reserve(b, n + 1))
        return -1;
    if (v < 0)
        b->p[b->len++] = '-';
    while (n)
        b->p[b->len++] = digits[--n];
    return 0;
}

enum { TJSON_FAIL = -1, TJSON_TOO_DEEP = -2 };

/* What jansson's dump writes for `v` with JSON_COMPACT; reals are jansson's own. */
static int tjson__value(struct tjson *b, const json_t *v, int depth)
{
    int rc;
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        if (depth >= TJSON_MAX_DEPTH)
            return TJSON_TOO_DEEP;
        if (tjson__reserve(b, 1))
            return TJSON_FAIL;
        b->p[b->len++] = '{';
        int first = 1;
        for (void *it = json_object_iter((json_t *)v); it;
             it = json_object_iter_next((json_t *)v, it)) {
            if (!first) {
                if (tjson__reserve(b, 1))
                    return TJSON_FAIL;
                b->p[b->len++] = ',';
            }
            first = 0;
            if (tjson__string(b, json_object_iter_key(it), json_object_iter_key_len(it), 0) ||
                tjson__reserve(b, 1))
                return TJSON_FAIL;
            b->p[b->len++] = ':';
            if ((rc = tjson__value(b, json_object_iter_value(it), depth + 1)) != 0)
                return rc;
        }
        if (tjson__reserve(b, 1))
            return TJSON_FAIL;
        b->p[b->len++] = '}';
        return 0;
    }
    case JSON_ARRAY: {
        if (depth >= TJSON_MAX_DEPTH)
            return TJSON_TOO_DEEP;
        size_t n = json_array_size(v);
        if (tjson__reserve(b, 1))
            return TJSON_FAIL;
        b->p[b->len++] = '[';
        for (size_t i = 0; i < n; i++) {
            if (i > 0) {
                if (tjson__reserve(b, 1))
                    return TJSON_FAIL;
                b->p[b->len++] = ',';
            }
            if ((rc = tjson__value(b, json_array_get(v, i), depth + 1)) != 0)
                return rc;
        }
        if (tjson__reserve(b, 1))
            return TJSON_FAIL;
        b->p[b->len++] = ']';
        return 0;
    }
    case JSON_STRING:
        return tjson__string(b, json_string_value(v), json_string_length(v), 0);
    case JSON_INTEGER:
        return tjson__integer(b, json_integer_value(v));
    case JSON_REAL: {
        enum { REAL_MAX = 100 }; /* jansson's own bound */
        if (tjson__reserve(b, REAL_MAX))
            return TJSON_FAIL;
        size_t n = json_dumpb(v, b->p + b->len, REAL_MAX, JSON_COMPACT | JSON_ENCODE_ANY);
        if (n == 0 || n > REAL_MAX)
            return TJSON_FAIL;
        b->len += n;
        return 0;
    }
    case JSON_TRUE:
        return tjson__reserve(b, 4) ? TJSON_FAIL : (tjson__put(b, "true", 4), 0);
    case JSON_FALSE:
        return tjson__reserve(b, 5) ? TJSON_FAIL : (tjson__put(b, "false", 5), 0);
    case JSON_NULL:
        return tjson__reserve(b, 4) ? TJSON_FAIL : (tjson__put(b, "null", 4), 0);
    }
    return TJSON_FAIL;
}

/* `data` nested deeper than TJSON_MAX_DEPTH: jansson writes it (or refuses a cycle). */
static int tjson__value_by_jansson(struct tjson *b, const json_t *v)
{
    const size_t flags = JSON_COMPACT | JSON_ENCODE_ANY;
    size_t n = json_dumpb(v, NULL, 0, flags);
    if (n == 0 || tjson__reserve(b, n) || json_dumpb(v, b->p + b->len, n, flags) != n)
        return -1;
    b->len += n;
    return 0;
}

/* RFC 3339 UTC with microseconds, in quotes. */
static int tjson__timestamp(struct tjson *b, int64_t us)
{
    if (tjson__reserve(b, WALLTIME_TEXT_MAX + 2))
        return -1;
    b->p[b->len++] = '"';
    b->len += walltime_format(us, 6, b->p + b->len);
    b->p[b->len++] = '"';
    return 0;
}

char *telemetry_event_json(const struct arq_event *ev)
{
    struct arq_event in;
    struct tjson b = {0};
    if (telemetry__read(ev, &in) != ARQ_OK) {
        LOG_ERROR("telemetry event refused: no event_type", "where", "telemetry_event_json");
        return NULL;
    }
    /* Room for the usual event at once: escaped strings grow 6x at worst, data gets 256. */
    const char *fields[] = {in.event_type, in.node,    in.source, in.client_id,
                            in.room,       in.channel, in.command};
    size_t want = 160 + 256;
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        size_t n = fields[i] ? strlen(fields[i]) : 0;
        if (n > (SIZE_MAX / 4 - want) / 6)
            goto fail;
        want += n * 6;
    }
    if (!(b.p = malloc(want)))
        goto fail;
    b.cap = want;
    tjson__put(&b, "{\"event_type\":", 14);
    if (tjson__string(&b, in.event_type, strlen(in.event_type), 1) || tjson__reserve(&b, 13))
        goto fail;
    tjson__put(&b, ",\"timestamp\":", 13);
    if (tjson__timestamp(&b, in.timestamp_us ? in.timestamp_us : walltime_now_us()) ||
        tjson__field(&b, "node", in.node) || tjson__field(&b, "source", in.source) ||
        tjson__field(&b, "client_id", in.client_id) || tjson__field(&b, "room", in.room) ||
        tjson__field(&b, "channel", in.channel) || tjson__field(&b, "command", in.command))
        goto fail;
    if (in.data) {
        if (tjson__reserve(&b, 8))
            goto fail;
        tjson__put(&b, ",\"data\":", 8);
        size_t start = b.len;
        int rc = tjson__value(&b, in.data, 0);
        if (rc == TJSON_TOO_DEEP) {
            b.len = start;
            rc = tjson__value_by_jansson(&b, in.data);
        }
        if (rc != 0)
            goto fail;
    }
    if (tjson__reserve(&b, 2))
        goto fail;
    tjson__put(&b, "}", 2); /* with the terminating NUL */
    return b.p;

fail:
    free(b.p);
    /* Allocation failure, or `data` jansson cannot dump (such as an invalid string). */
    LOG_ERROR("cannot render telemetry event as JSON", "event_type", in.event_type);
    return NULL;
}
