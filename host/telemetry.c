/* The telemetry queue. Each queued event is one allocation: the struct followed by copies of
 * its strings. Drain moves a batch out of the ring before calling the sinks, so a sink that
 * emits (or reconfigures the queue) only ever touches free slots; what it emits waits for the
 * next drain. */
#include "telemetry.h"
#include "utf8.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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
    int64_t now = telemetry_now_us();
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
        in.timestamp_us = telemetry_now_us();
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

/* jansson refuses invalid UTF-8; an event must still render, with U+FFFD in its place. */
static json_t *telemetry__string(const char *s)
{
    json_t *j = json_string(s);
    if (j)
        return j;
    size_t len = strlen(s);
    if (len > (SIZE_MAX - 1) / 3)
        return NULL;
    char *fixed = malloc(len * 3 + 1);
    if (!fixed)
        return NULL;
    size_t o = 0;
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

static int telemetry__set(json_t *obj, const char *key, const char *value)
{
    if (!value)
        return 0;
    json_t *j = telemetry__string(value);
    return j ? json_object_set_new(obj, key, j) : -1;
}

/* RFC 3339 UTC with microseconds; negative times (before 1970) round toward the past. */
static void telemetry__timestamp(int64_t us, char *out, size_t size)
{
    int64_t sec = us / 1000000, frac = us % 1000000;
    if (frac < 0) {
        frac += 1000000;
        sec -= 1;
    }
    time_t tt = (time_t)sec;
    struct tm tm;
    if (!gmtime_r(&tt, &tm))
        memset(&tm, 0, sizeof tm);
    snprintf(out, size, "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)frac);
}

char *telemetry_event_json(const struct arq_event *ev)
{
    struct arq_event in;
    char ts[64];
    char *text = NULL;
    json_t *obj = NULL;

    if (telemetry__read(ev, &in) != ARQ_OK) {
        LOG_ERROR("telemetry event refused: no event_type", "where", "telemetry_event_json");
        return NULL;
    }
    telemetry__timestamp(in.timestamp_us ? in.timestamp_us : telemetry_now_us(), ts, sizeof ts);
    obj = json_object();
    if (!obj)
        goto fail;
    /* jansson keeps insertion order, which is the documented key order. */
    if (telemetry__set(obj, "event_type", in.event_type) || telemetry__set(obj, "timestamp", ts) ||
        telemetry__set(obj, "node", in.node) || telemetry__set(obj, "source", in.source) ||
        telemetry__set(obj, "client_id", in.client_id) || telemetry__set(obj, "room", in.room) ||
        telemetry__set(obj, "channel", in.channel) || telemetry__set(obj, "command", in.command))
        goto fail;
    if (in.data && json_object_set(obj, "data", in.data))
        goto fail;
    text = json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (!text)
        goto fail;
    json_decref(obj);
    return text;

fail:
    json_decref(obj);
    /* Allocation failure, or `data` jansson cannot dump (such as an invalid string). */
    LOG_ERROR("cannot render telemetry event as JSON", "event_type", in.event_type);
    return NULL;
}

int64_t telemetry_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}
