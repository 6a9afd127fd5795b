/* History queries: one EVALSHA of the query script on the ready link, pipelined behind the
 * appends sent before it (so a query sees every append made before it). While the first
 * connection attempt is under way queries wait for its outcome; while Redis is down they are
 * answered from the fallback ring (degraded) or with ARQ_EAGAIN (strict). The ring has its own
 * epochs, so a client recovering with a Redis epoch is told recovered = 0, never a wrong
 * answer. */
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "history_ring.h"
#include "sredis.h"

struct sr_query {
    struct sr_query *next, **pprev; /* parked, or in flight */
    arq_history_cb cb;              /* NULL once answered (destroy answers those still in flight) */
    void *arg;
    struct arq_history_query q; /* strings are copies, after this struct */
};

static char *queries__copy(char **at, const char *src)
{
    size_t n = strlen(src);
    char *dst = *at;
    memcpy(dst, src, n + 1);
    *at += n + 1;
    return dst;
}

static struct sr_query *queries__new(const struct arq_history_query *q, arq_history_cb cb,
                                     void *arg)
{
    size_t size = sizeof(struct sr_query) + strlen(q->room) + 1 +
                  (q->channel ? strlen(q->channel) + 1 : 0) + (q->epoch ? strlen(q->epoch) + 1 : 0);
    struct sr_query *qo = malloc(size);
    if (!qo)
        return NULL;
    char *at = (char *)(qo + 1);
    *qo = (struct sr_query){.cb = cb, .arg = arg, .q = *q};
    qo->q.struct_size = sizeof qo->q;
    qo->q.room = queries__copy(&at, q->room);
    qo->q.channel = q->channel ? queries__copy(&at, q->channel) : NULL;
    qo->q.epoch = q->epoch ? queries__copy(&at, q->epoch) : NULL;
    return qo;
}

/* Answer without Redis: from the ring in degraded mode, ARQ_EAGAIN in strict mode. */
static void queries__fallback(struct sredis *s, const struct arq_history_query *q,
                              arq_history_cb cb, void *arg)
{
    const struct arq_stored *const *entries = NULL;
    const char *epoch = NULL;
    size_t n = 0;
    int recovered = 0;
    if (s->stopping) {
        cb(arg, ARQ_ECLOSED, NULL, 0, NULL, 0);
        return;
    }
    if (s->mode == SR_MODE_STRICT) {
        cb(arg, ARQ_EAGAIN, NULL, 0, NULL, 0);
        return;
    }
    int rc = appends__ring(s);
    if (rc == ARQ_OK)
        rc = hring_query(s->ring, q, sredis__now_us(), &entries, &n, &epoch, &recovered);
    if (rc != ARQ_OK) {
        ARQ_LOG(s->host, s->ctx, ARQ_LOG_ERROR, "cannot answer a history query", "room", q->room,
                "error", "out of memory");
        cb(arg, rc, NULL, 0, NULL, 0);
        return;
    }
    cb(arg, ARQ_OK, entries, n, epoch, recovered);
}

/* The query script's reply as entries for the callback. Returns 0, or -1 when the reply does
 * not have the script's shape. */
static int queries__deliver(const struct sr_query *qo, const redisReply *r)
{
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 2 || (r->elements - 2) % 5 != 0 ||
        r->element[0]->type != REDIS_REPLY_STRING || r->element[1]->type != REDIS_REPLY_INTEGER)
        return -1;
    size_t n = (r->elements - 2) / 5;
    struct arq_stored *st = n ? calloc(n, sizeof *st) : NULL;
    const struct arq_stored **ptrs = n ? calloc(n, sizeof *ptrs) : NULL;
    if (n && (!st || !ptrs)) {
        free(st);
        free(ptrs);
        qo->cb(qo->arg, ARQ_ENOMEM, NULL, 0, NULL, 0);
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        redisReply *const *f = r->element + 2 + i * 5;
        if (f[0]->type != REDIS_REPLY_INTEGER || f[1]->type != REDIS_REPLY_STRING ||
            f[2]->type != REDIS_REPLY_STRING || f[3]->type != REDIS_REPLY_STRING ||
            f[4]->type != REDIS_REPLY_STRING) {
            free(st);
            free(ptrs);
            return -1;
        }
        st[i] = (struct arq_stored){.struct_size = sizeof st[i],
                                    .room = qo->q.room,
                                    .channel = qo->q.channel,
                                    .id = f[3]->str,
                                    .timestamp_us = strtoll(f[2]->str, NULL, 10),
                                    .json = f[4]->str,
                                    .json_len = f[4]->len,
                                    .offset = (uint64_t)f[0]->integer,
                                    .stored_us = strtoll(f[1]->str, NULL, 10)};
        ptrs[i] = &st[i];
    }
    qo->cb(qo->arg, ARQ_OK, ptrs, n, r->element[0]->str, r->element[1]->integer != 0);
    free(st);
    free(ptrs);
    return 0;
}

static void queries__link(struct sr_query **list, struct sr_query *qo)
{
    qo->next = *list;
    qo->pprev = list;
    if (*list)
        (*list)->pprev = &qo->next;
    *list = qo;
}

static void queries__unlink(struct sr_query *qo)
{
    if (!qo->pprev)
        return;
    *qo->pprev = qo->next;
    if (qo->next)
        qo->next->pprev = qo->pprev;
    qo->next = NULL;
    qo->pprev = NULL;
}

static void queries__on_reply(struct sr_link *l, void *reply, void *privdata)
{
    struct sredis *s = link__owner(l);
    struct sr_query *qo = privdata;
    redisReply *r = reply;
    queries__unlink(qo);
    if (!qo->cb) {
        /* answered by destroy */
    } else if (!s) {
        qo->cb(qo->arg, ARQ_ECLOSED, NULL, 0, NULL, 0);
    } else if (!r) {
        queries__fallback(s, &qo->q, qo->cb, qo->arg); /* the loss was handled first */
    } else if (r->type == REDIS_REPLY_ERROR && link__transient(r->str)) {
        link__fail(l, r->str);
        queries__fallback(s, &qo->q, qo->cb, qo->arg);
    } else if (r->type == REDIS_REPLY_ERROR || queries__deliver(qo, r) != 0) {
        ARQ_LOG(s->host, s->ctx, ARQ_LOG_ERROR, "cannot answer a history query", "room", qo->q.room,
                "channel", qo->q.channel ? qo->q.channel : "-", "error",
                r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
        qo->cb(qo->arg, ARQ_EIO, NULL, 0, NULL, 0);
    }
    free(qo);
}

/* Send `qo` on the ready link; it is answered (and freed) in every case. */
static void queries__send(struct sredis *s, struct sr_query *qo)
{
    const struct arq_history_query *q = &qo->q;
    char stream[SR_KEY_MAX], seq[SR_KEY_MAX], epoch[SR_KEY_MAX];
    char cand[SR_EPOCH_LEN + 1], ttl[24], maxh[24], now[24], since_off[24], limit[24];
    char since[24], until[24], want[128];
    if (keys__build(stream, sizeof stream, s->prefix, q->room, q->channel, "", NULL) < 0 ||
        keys__build(seq, sizeof seq, s->prefix, q->room, q->channel, "#seq", NULL) < 0 ||
        keys__build(epoch, sizeof epoch, s->prefix, q->room, q->channel, "#epoch", NULL) < 0) {
        qo->cb(qo->arg, ARQ_EINVAL, NULL, 0, NULL, 0);
        free(qo);
        return;
    }
    sredis__new_epoch(s, cand);
    snprintf(ttl, sizeof ttl, "%lld", (long long)s->ttl_ms);
    snprintf(maxh, sizeof maxh, "%llu", (unsigned long long)s->max_history);
    snprintf(now, sizeof now, "%lld", (long long)sredis__now_us());
    snprintf(since_off, sizeof since_off, "%llu", (unsigned long long)q->since_offset);
    snprintf(limit, sizeof limit, "%u", q->limit ? q->limit : 1);
    snprintf(since, sizeof since, "%lld", (long long)(q->since_us > 0 ? q->since_us : 0));
    snprintf(until, sizeof until, "%lld", (long long)(q->until_us > 0 ? q->until_us : 0));
    snprintf(want, sizeof want, "%s%s", q->epoch ? "=" : "", q->epoch ? q->epoch : "");
    const char *argv[] = {
        "EVALSHA", s->sha_query,           "3",       stream, seq,   epoch, cand, ttl, maxh,
        now,       q->recover ? "1" : "0", since_off, want,   limit, since, until};
    if (link__send(s, queries__on_reply, qo, (int)(sizeof argv / sizeof argv[0]), argv, NULL)) {
        if (s->link)
            link__fail(s->link, "cannot send: out of memory");
        queries__fallback(s, &qo->q, qo->cb, qo->arg);
        free(qo);
        return;
    }
    queries__link(&s->inflight, qo);
}

int queries__query(struct sredis *s, const struct arq_history_query *q, arq_history_cb cb,
                   void *arg)
{
    if (!q || !q->room || !cb)
        return ARQ_EINVAL;
    if (s->stopping)
        return ARQ_ECLOSED;
    int connecting = !s->down && (s->state == SR_RESOLVING || s->state == SR_CONNECTING);
    if (s->state != SR_READY && !connecting) {
        queries__fallback(s, q, cb, arg);
        return ARQ_OK;
    }
    struct sr_query *qo = queries__new(q, cb, arg);
    if (!qo) {
        ARQ_LOG(s->host, s->ctx, ARQ_LOG_ERROR, "cannot answer a history query", "room", q->room,
                "error", "out of memory");
        return ARQ_ENOMEM;
    }
    if (connecting) {
        /* The first attempt decides: Redis, or the fallback. */
        struct sr_query **p = &s->parked;
        while (*p)
            p = &(*p)->next;
        *p = qo;
        return ARQ_OK;
    }
    queries__send(s, qo);
    return ARQ_OK;
}

static struct sr_query *queries__unpark(struct sredis *s)
{
    struct sr_query *list = s->parked;
    s->parked = NULL;
    return list;
}

void queries__ready(struct sredis *s)
{
    for (struct sr_query *qo = queries__unpark(s), *next; qo; qo = next) {
        next = qo->next;
        if (s->state == SR_READY)
            queries__send(s, qo);
        else {
            queries__fallback(s, &qo->q, qo->cb, qo->arg);
            free(qo);
        }
    }
}

void queries__lost(struct sredis *s)
{
    for (struct sr_query *qo = queries__unpark(s), *next; qo; qo = next) {
        next = qo->next;
        queries__fallback(s, &qo->q, qo->cb, qo->arg);
        free(qo);
    }
}

void queries__close(struct sredis *s)
{
    for (struct sr_query *qo = queries__unpark(s), *next; qo; qo = next) {
        next = qo->next;
        qo->cb(qo->arg, ARQ_ECLOSED, NULL, 0, NULL, 0);
        free(qo);
    }
    /* Still in flight: only when destroy runs inside a hiredis callback, which frees the
     * context (and these) after destroy returned. Their callers are answered now. */
    while (s->inflight) {
        struct sr_query *qo = s->inflight;
        queries__unlink(qo);
        arq_history_cb cb = qo->cb;
        qo->cb = NULL;
        /* A query in s->inflight has pprev set (queries__link), so the unlink above moved
         * s->inflight on and no query is answered twice.
         * NOLINTNEXTLINE(clang-analyzer-core.CallAndMessage) */
        cb(qo->arg, ARQ_ECLOSED, NULL, 0, NULL, 0);
    }
}
