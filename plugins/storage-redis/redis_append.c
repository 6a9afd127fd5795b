/* Appends. Every append joins one queue, in call order, and leaves it when Redis has answered
 * it. While the link is ready an append is sent at once (pipelined behind the ones before it);
 * otherwise it waits in the queue:
 *
 *   - before the first connection attempt has an outcome, with its callback pending;
 *   - in degraded mode while Redis is down, acknowledged at once from the fallback ring (its
 *     own offsets and epochs) and kept for replay;
 *   - in strict mode while Redis is down it is refused with ARQ_EAGAIN.
 *
 * When the link is lost, the appends sent on it come back to "not sent": in degraded mode
 * those still unanswered are acknowledged from the ring. When a new link is ready the whole
 * queue is sent again in order, before anything newer. The append script's dedupe key makes
 * an append that had in fact run before the loss answer with its first offset, so every
 * message is stored once. Only when the last buffered append has reached Redis does the
 * instance leave fallback (and drop the ring, so that the next outage has new epochs). */
#include <hiredis/hiredis.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "history_ring.h"
#include "sredis.h"

static void appends__count(struct sredis *s, arq_series *m, uint64_t *counter)
{
    (*counter)++;
    if (m)
        s->host->metric_add(m, 1);
}

void appends__gauges(struct sredis *s)
{
    if (s->m_fallback)
        s->host->metric_set(s->m_fallback, s->fallback ? 1 : 0);
    if (s->m_buffered)
        s->host->metric_set(s->m_buffered, (double)s->buffered);
}

int appends__ring(struct sredis *s)
{
    if (s->ring)
        return ARQ_OK;
    struct hring_limits lim = {.max_history = (size_t)s->max_history,
                               .max_bytes = s->max_fallback_bytes,
                               .ttl_us = s->ttl_ms * 1000};
    s->ring = hring_new(&lim);
    return s->ring ? ARQ_OK : ARQ_ENOMEM;
}

static char *appends__copy(char **at, const char *src, size_t n)
{
    char *dst = *at;
    if (n) /* a message may have no JSON (NULL, 0): memcpy from NULL is undefined */
        memcpy(dst, src, n);
    dst[n] = '\0';
    *at += n + 1;
    return dst;
}

/* A queue entry holding copies of `msg`'s strings. A message without an id gets a random one,
 * so that its replay is still recognised. */
static struct sr_pending *appends__new(struct sredis *s, const struct arq_stored *msg)
{
    char anon[SR_EPOCH_LEN + 6];
    const char *id = msg->id;
    if (!id || !*id) {
        char r[SR_EPOCH_LEN + 1];
        sredis__new_epoch(s, r);
        snprintf(anon, sizeof anon, "anon-%s", r);
        id = anon;
    }
    size_t room = strlen(msg->room), channel = msg->channel ? strlen(msg->channel) : 0;
    size_t idlen = strlen(id);
    size_t size =
        sizeof(struct sr_pending) + room + 1 + channel + 1 + idlen + 1 + msg->json_len + 1;
    struct sr_pending *e = malloc(size);
    if (!e)
        return NULL;
    char *at = (char *)(e + 1);
    *e = (struct sr_pending){.json_len = msg->json_len,
                             .bytes = size,
                             .timestamp_us = msg->timestamp_us,
                             .stored_us = sredis__now_us()};
    e->room = appends__copy(&at, msg->room, room);
    e->channel = msg->channel ? appends__copy(&at, msg->channel, channel) : NULL;
    e->id = appends__copy(&at, id, idlen);
    e->json = appends__copy(&at, msg->json, msg->json_len);
    return e;
}

static void appends__push(struct sredis *s, struct sr_pending *e)
{
    e->next = NULL;
    if (s->tail)
        s->tail->next = e;
    else
        s->head = e;
    s->tail = e;
    s->queued++;
    s->queued_bytes += e->bytes;
}

/* Unlink `e`, whose predecessor in the queue is `prev` (NULL: e is the head). */
static void appends__unlink(struct sredis *s, struct sr_pending *prev, struct sr_pending *e)
{
    if (prev)
        prev->next = e->next;
    else
        s->head = e->next;
    if (s->tail == e)
        s->tail = prev;
    s->queued--;
    s->queued_bytes -= e->bytes;
    if (e->acked)
        s->buffered--;
}

/* The last buffered append is in Redis: the outage is over. */
static void appends__check_recovered(struct sredis *s)
{
    if (!s->fallback || s->buffered > 0 || s->state != SR_READY)
        return;
    s->fallback = 0;
    hring_free(s->ring);
    s->ring = NULL;
    s->overflow_logged = 0;
    char buffered[24], replayed[24];
    snprintf(buffered, sizeof buffered, "%llu", (unsigned long long)s->outage_buffered);
    snprintf(replayed, sizeof replayed, "%llu", (unsigned long long)s->outage_replayed);
    ARQ_LOG(s->host, s->ctx, ARQ_LOG_INFO, "storage recovered: buffered messages replayed to redis",
            "redis", s->where, "buffered", buffered, "replayed", replayed);
    json_t *data =
        json_pack("{s:s, s:s, s:I, s:I}", "backend", "redis", "redis", s->where, "buffered",
                  (json_int_t)s->outage_buffered, "replayed", (json_int_t)s->outage_replayed);
    struct arq_event ev = {
        .struct_size = sizeof ev, .event_type = "storage_recovered", .data = data};
    s->host->emit(s->ctx, &ev);
    json_decref(data);
    appends__gauges(s);
}

static void appends__on_reply(struct sr_link *l, void *reply, void *privdata);

/* The message id as it appears in its dedupe key: itself, or a hash when it is long (the host
 * checks ids; this keeps any caller's key bounded). */
static const char *appends__key_id(const char *id, char out[24])
{
    if (strlen(id) <= SR_ID_KEY_MAX)
        return id;
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
    for (const unsigned char *p = (const unsigned char *)id; *p; p++)
        h = (h ^ *p) * 0x100000001b3ull;
    snprintf(out, 24, "~%016llx", (unsigned long long)h);
    return out;
}

static int appends__send(struct sredis *s, struct sr_pending *e)
{
    char stream[SR_KEY_MAX], seq[SR_KEY_MAX], epoch[SR_KEY_MAX], idkey[SR_KEY_MAX], hashed[24];
    char cand[SR_EPOCH_LEN + 1], ttl[24], maxh[24], now[24], stored[24], ts[24], dedupe[24];
    if (keys__build(stream, sizeof stream, s->prefix, e->room, e->channel, "", NULL) < 0 ||
        keys__build(seq, sizeof seq, s->prefix, e->room, e->channel, "#seq", NULL) < 0 ||
        keys__build(epoch, sizeof epoch, s->prefix, e->room, e->channel, "#epoch", NULL) < 0 ||
        keys__build(idkey, sizeof idkey, s->prefix, e->room, e->channel,
                    "#id:", appends__key_id(e->id, hashed)) < 0)
        return ARQ_EINVAL; /* not reached: appends__append checked the names */
    sredis__new_epoch(s, cand);
    snprintf(ttl, sizeof ttl, "%lld", (long long)s->ttl_ms);
    snprintf(maxh, sizeof maxh, "%llu", (unsigned long long)s->max_history);
    snprintf(now, sizeof now, "%lld", (long long)sredis__now_us());
    snprintf(stored, sizeof stored, "%lld", (long long)e->stored_us);
    snprintf(ts, sizeof ts, "%lld", (long long)e->timestamp_us);
    snprintf(dedupe, sizeof dedupe, "%lld", (long long)s->dedupe_ms);
    const char *argv[] = {"EVALSHA", s->sha_append, "4", stream,  seq,    epoch, idkey, cand,
                          ttl,       maxh,          now, e->json, stored, ts,    e->id, dedupe};
    size_t lens[sizeof argv / sizeof argv[0]];
    for (size_t i = 0; i < sizeof argv / sizeof argv[0]; i++)
        lens[i] = argv[i] == e->json ? e->json_len : strlen(argv[i]);
    if (link__send(s, appends__on_reply, NULL, (int)(sizeof argv / sizeof argv[0]), argv, lens))
        return ARQ_EIO;
    e->sent = 1;
    return ARQ_OK;
}

/* Acknowledge `e` from the fallback ring. 0, or an error after which `e` is still the
 * caller's. */
static int appends__ring_ack(struct sredis *s, struct sr_pending *e)
{
    uint64_t offset = 0;
    const char *epoch = NULL;
    struct arq_stored st = {.struct_size = sizeof st,
                            .room = e->room,
                            .channel = e->channel,
                            .id = e->id,
                            .timestamp_us = e->timestamp_us,
                            .json = e->json,
                            .json_len = e->json_len};
    int rc = appends__ring(s);
    if (rc == ARQ_OK)
        rc = hring_append(s->ring, &st, 0, NULL, e->stored_us, &offset, &epoch);
    if (rc != ARQ_OK)
        return rc;
    e->acked = 1;
    s->buffered++;
    s->outage_buffered++;
    appends__count(s, s->m_buffered_total, &s->n_buffered);
    if (e->cb)
        e->cb(e->arg, ARQ_OK, offset, epoch);
    return ARQ_OK;
}

static void appends__on_reply(struct sr_link *l, void *reply, void *privdata)
{
    struct sredis *s = link__owner(l);
    redisReply *r = reply;
    (void)privdata;
    if (!r || !s)
        return; /* lost: the append waits in the queue for the next link */
    struct sr_pending *e = s->head;
    if (!e || !e->sent) {
        link__fail(l, "a reply that no append awaits");
        return;
    }
    if (r->type == REDIS_REPLY_ERROR && link__transient(r->str)) {
        link__fail(l, r->str); /* it did not run: it is sent again on the next link */
        return;
    }
    appends__unlink(s, NULL, e);
    uint64_t offset = 0;
    const char *epoch = NULL;
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 3 &&
        r->element[0]->type == REDIS_REPLY_INTEGER && r->element[0]->integer > 0 &&
        r->element[1]->type == REDIS_REPLY_STRING) {
        offset = (uint64_t)r->element[0]->integer;
        epoch = r->element[1]->str;
    }
    if (!epoch) {
        const char *what = r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply";
        ARQ_LOG(s->host, s->ctx, ARQ_LOG_ERROR,
                e->acked ? "a buffered message could not be written to redis"
                         : "cannot store a message",
                "room", e->room, "channel", e->channel ? e->channel : "-", "id", e->id, "error",
                what);
        appends__count(s, s->m_failed, &s->n_failed);
        if (!e->acked && e->cb)
            e->cb(e->arg, ARQ_EIO, 0, NULL);
    } else if (e->acked) {
        s->outage_replayed++;
        appends__count(s, s->m_replayed, &s->n_replayed);
    } else {
        appends__count(s, s->m_stored, &s->n_stored);
        if (e->cb)
            e->cb(e->arg, ARQ_OK, offset, epoch);
    }
    free(e);
    appends__gauges(s);
    appends__check_recovered(s);
}

int appends__append(struct sredis *s, const struct arq_stored *msg, arq_append_cb cb, void *arg)
{
    if (!msg || !msg->room || (!msg->json && msg->json_len))
        return ARQ_EINVAL;
    if (s->stopping)
        return ARQ_ECLOSED;
    char key[SR_KEY_MAX];
    if (keys__build(key, sizeof key - SR_ID_KEY_MAX - 8, s->prefix, msg->room, msg->channel, "",
                    NULL) < 0) {
        ARQ_LOG(s->host, s->ctx, ARQ_LOG_ERROR, "cannot store a message", "room", msg->room,
                "error", "room and channel names too long for a key");
        return ARQ_EINVAL;
    }
    if (s->mode == SR_MODE_STRICT && s->down) {
        appends__count(s, s->m_unavailable, &s->n_unavailable);
        if (cb)
            cb(arg, ARQ_EAGAIN, 0, NULL);
        return ARQ_OK;
    }
    struct sr_pending *e = appends__new(s, msg);
    if (!e) {
        ARQ_LOG(s->host, s->ctx, ARQ_LOG_ERROR, "cannot store a message", "room", msg->room,
                "error", "out of memory");
        return ARQ_ENOMEM;
    }
    e->cb = cb;
    e->arg = arg;
    if (s->queued_bytes + e->bytes > s->max_fallback_bytes) {
        if (!s->overflow_logged) {
            char limit[24];
            snprintf(limit, sizeof limit, "%zu", s->max_fallback_bytes);
            ARQ_LOG(s->host, s->ctx, ARQ_LOG_ERROR,
                    "messages waiting for redis exceed max_fallback_bytes: refusing to store more",
                    "redis", s->where, "max_fallback_bytes", limit);
            s->overflow_logged = 1;
        }
        free(e);
        appends__count(s, s->m_overflow, &s->n_overflow);
        if (cb)
            cb(arg, ARQ_ELIMIT, 0, NULL);
        return ARQ_OK;
    }
    struct sr_pending *prev = s->tail;
    appends__push(s, e);
    if (s->state == SR_READY) {
        if (appends__send(s, e) != ARQ_OK && s->link)
            link__fail(s->link, "cannot send: out of memory"); /* answered as a loss */
    } else if (s->down) {
        int rc = appends__ring_ack(s, e);
        if (rc != ARQ_OK) {
            appends__unlink(s, prev, e);
            free(e);
            return rc;
        }
    }
    appends__gauges(s);
    return ARQ_OK;
}

static void appends__log_lost(struct sredis *s, size_t lost, const char *why)
{
    char n[24];
    snprintf(n, sizeof n, "%zu", lost);
    ARQ_LOG(s->host, s->ctx, ARQ_LOG_WARN, "buffered messages never reached redis", "redis",
            s->where, "messages", n, "reason", why);
}

void appends__ready(struct sredis *s)
{
    for (struct sr_pending *e = s->head; e; e = e->next) {
        if (e->sent)
            continue;
        if (appends__send(s, e) != ARQ_OK) {
            if (s->link)
                link__fail(s->link, "cannot send: out of memory");
            return;
        }
    }
    appends__check_recovered(s);
}

void appends__lost(struct sredis *s)
{
    for (struct sr_pending *e = s->head; e; e = e->next)
        e->sent = 0;
    if (s->mode == SR_MODE_STRICT) {
        size_t lost = 0;
        struct sr_pending *e = s->head;
        s->head = s->tail = NULL;
        s->queued = s->queued_bytes = s->buffered = 0;
        while (e) {
            struct sr_pending *next = e->next;
            if (!e->acked) {
                appends__count(s, s->m_unavailable, &s->n_unavailable);
                if (e->cb)
                    e->cb(e->arg, ARQ_EAGAIN, 0, NULL);
            } else {
                lost++; /* taken over from a degraded predecessor */
            }
            free(e);
            e = next;
        }
        if (lost)
            appends__log_lost(s, lost, "strict mode and redis is down");
        appends__gauges(s);
        return;
    }
    if (!s->fallback) {
        s->fallback = 1;
        s->outage_buffered = s->outage_replayed = 0;
        json_t *data = json_pack("{s:s, s:s, s:s}", "backend", "redis", "redis", s->where, "reason",
                                 s->last_error);
        struct arq_event ev = {
            .struct_size = sizeof ev, .event_type = "storage_fallback", .data = data};
        s->host->emit(s->ctx, &ev);
        json_decref(data);
        ARQ_LOG(s->host, s->ctx, ARQ_LOG_WARN,
                "storage degraded: history kept in memory until redis is back", "redis", s->where);
    }
    struct sr_pending *prev = NULL, *e = s->head;
    while (e) {
        struct sr_pending *next = e->next;
        if (e->acked) {
            prev = e;
        } else if (appends__ring_ack(s, e) == ARQ_OK) {
            prev = e;
            next = e->next; /* appends made by the callback joined the tail */
        } else {
            appends__unlink(s, prev, e);
            appends__count(s, s->m_failed, &s->n_failed);
            if (e->cb)
                e->cb(e->arg, ARQ_ENOMEM, 0, NULL);
            free(e);
            next = prev ? prev->next : s->head;
        }
        e = next;
    }
    appends__gauges(s);
}

void appends__take(struct sredis *s, struct sredis *pred)
{
    struct sr_pending *prev = NULL, *e = pred->head;
    while (e) {
        struct sr_pending *next = e->next;
        if (e->sent) {
            prev = e;
        } else {
            appends__unlink(pred, prev, e);
            appends__push(s, e);
            if (e->acked) {
                s->buffered++;
                s->outage_buffered++;
                s->fallback = 1;
            }
        }
        e = next;
    }
    appends__gauges(pred);
    appends__gauges(s);
}

void appends__close(struct sredis *s)
{
    size_t lost = 0;
    struct sr_pending *e = s->head;
    s->head = s->tail = NULL;
    s->queued = s->queued_bytes = s->buffered = 0;
    while (e) {
        struct sr_pending *next = e->next;
        if (e->acked)
            lost++;
        else if (e->cb)
            e->cb(e->arg, ARQ_ECLOSED, 0, NULL);
        free(e);
        e = next;
    }
    if (lost)
        appends__log_lost(s, lost, "the instance stopped first");
    hring_free(s->ring);
    s->ring = NULL;
}
