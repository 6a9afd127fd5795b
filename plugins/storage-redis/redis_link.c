/* The connection to Redis: hiredis' async API on the host's libuv loop, one link at a time.
 *
 * A link goes through connect and a pipelined handshake (AUTH, SELECT, SCRIPT LOAD of both
 * scripts) and is then ready: appends and queries are pipelined on it in call order, so Redis
 * runs them in that order. When anything goes wrong (refused, timed out, closed, a reply that
 * says the scripts are gone) the link is dropped and its loss is handled once: the instance
 * goes down, appends are answered from the fallback (or refused, in strict mode), and a new
 * attempt follows after a backoff of 100 ms doubling to 5 s. One tick timer drives timeouts
 * and retries.
 *
 * hiredis calls every command callback exactly once, with NULL when the connection ends
 * before the reply, and frees its context itself after a failed connect or a disconnect. A
 * link therefore counts references (the context's own, and one per awaited callback) and is
 * freed when the last one goes; the context's `data` is cleared when we let go of it so that
 * late hiredis callbacks do nothing. */
#include <arpa/inet.h>
#include <errno.h>
#include <hiredis/adapters/libuv.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "sredis.h"

struct sr_link {
    struct sr_link *next;  /* in the instance's list of links not yet freed */
    struct sredis *s;      /* NULL once the instance let go of it (destroy) */
    redisAsyncContext *ac; /* NULL once hiredis frees it, or is about to */
    unsigned refs;         /* the context's own, plus one per awaited callback */
    unsigned pending;      /* commands awaiting their reply */
    int handshake;         /* handshake replies still awaited */
    int dead;              /* lost: callbacks only release */
    int64_t busy_since_us; /* when the oldest awaited reply was sent, or the last progress */
};

/* One command's callback. */
struct sr_cmd {
    struct sr_link *l;
    link_reply_fn fn;
    void *privdata;
};

struct sr_resolve {
    uv_getaddrinfo_t req;
    struct sredis *s; /* NULL when abandoned: the callback only frees */
};

enum { HS_AUTH = 1, HS_SELECT, HS_LOAD_APPEND, HS_LOAD_QUERY };

static void link__attempt(struct sredis *s);

struct sredis *link__owner(const struct sr_link *l)
{
    return l->s;
}

static void link__unref(struct sr_link *l)
{
    if (--l->refs > 0)
        return;
    if (l->s) {
        for (struct sr_link **p = &l->s->links; *p; p = &(*p)->next) {
            if (*p == l) {
                *p = l->next;
                break;
            }
        }
    }
    free(l);
}

/* The instance is down: log the first failure of an outage, schedule the next attempt, and
 * let appends and queries fall back. */
static void link__down(struct sredis *s, const char *why)
{
    int first = !s->down;
    snprintf(s->last_error, sizeof s->last_error, "%s", why);
    s->down = 1;
    s->state = SR_WAITING;
    s->retry_at_us = sredis__mono_us() + s->backoff_ms * 1000;
    s->backoff_ms = s->backoff_ms * 2 > SR_BACKOFF_MAX_MS ? SR_BACKOFF_MAX_MS : s->backoff_ms * 2;
    ARQ_LOG(s->host, s->ctx, first ? ARQ_LOG_WARN : ARQ_LOG_DEBUG,
            first ? "redis unavailable" : "redis still unavailable", "redis", s->where, "error",
            why, "mode", s->mode == SR_MODE_STRICT ? "strict" : "degraded");
    appends__lost(s);
    queries__lost(s);
}

/* Handle the loss of `l` once. */
static void link__lost(struct sr_link *l, const char *why)
{
    if (l->dead)
        return;
    l->dead = 1;
    struct sredis *s = l->s;
    if (!s || s->link != l)
        return;
    s->link = NULL;
    if (s->stopping) {
        s->state = SR_IDLE;
        return;
    }
    link__down(s, why);
}

/* Let go of the hiredis context: hiredis frees it now (running the awaited callbacks with
 * NULL), or right after the callback we are in. */
static void link__release(struct sr_link *l)
{
    redisAsyncContext *ac = l->ac;
    if (!ac)
        return;
    l->ac = NULL;
    ac->data = NULL;
    l->refs++; /* the callbacks run inside redisAsyncFree */
    redisAsyncFree(ac);
    l->refs--;      /* that hold; the context's reference still keeps l alive here */
    link__unref(l); /* the context's reference */
}

void link__fail(struct sr_link *l, const char *why)
{
    link__lost(l, why);
    link__release(l);
}

void link__progress(struct sr_link *l)
{
    l->busy_since_us = sredis__mono_us();
}

static const char *link__errstr(const struct sr_link *l)
{
    return l->ac && l->ac->errstr[0] ? l->ac->errstr : "connection lost";
}

static void link__on_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    struct sr_cmd *c = privdata;
    struct sr_link *l = c->l;
    (void)ac;
    l->pending--;
    if (reply)
        link__progress(l);
    else
        link__lost(l, link__errstr(l)); /* the connection is ending: handle that first */
    c->fn(l, l->dead ? NULL : reply, c->privdata);
    free(c);
    link__unref(l);
}

static int link__cmd(struct sr_link *l, link_reply_fn fn, void *privdata, int argc,
                     const char **argv, const size_t *lens)
{
    if (!l->ac || l->dead)
        return -1;
    struct sr_cmd *c = malloc(sizeof *c);
    if (!c)
        return -1;
    *c = (struct sr_cmd){l, fn, privdata};
    if (redisAsyncCommandArgv(l->ac, link__on_reply, c, argc, argv, lens) != REDIS_OK) {
        free(c);
        return -1;
    }
    if (l->pending++ == 0)
        l->busy_since_us = sredis__mono_us();
    l->refs++;
    return 0;
}

int link__send(struct sredis *s, link_reply_fn fn, void *privdata, int argc, const char **argv,
               const size_t *lens)
{
    if (s->state != SR_READY || !s->link)
        return -1;
    return link__cmd(s->link, fn, privdata, argc, argv, lens);
}

int link__transient(const char *err)
{
    static const char *const codes[] = {"NOSCRIPT",   "LOADING",  "BUSY",     "OOM",
                                        "MASTERDOWN", "READONLY", "TRYAGAIN", "CLUSTERDOWN",
                                        "NOREPLICAS", "MISCONF",  "NOAUTH",   NULL};
    for (size_t i = 0; err && codes[i]; i++) {
        size_t n = strlen(codes[i]);
        if (strncmp(err, codes[i], n) == 0 && (err[n] == ' ' || err[n] == '\0'))
            return 1;
    }
    return 0;
}

/* --- the handshake ----------------------------------------------------------------------- */

static void link__on_handshake(struct sr_link *l, void *reply, void *privdata)
{
    struct sredis *s = l->s;
    redisReply *r = reply;
    int step = (int)(intptr_t)privdata;
    if (!r || !s)
        return; /* the loss was handled */
    static const char *const names[] = {"", "AUTH", "SELECT", "SCRIPT LOAD", "SCRIPT LOAD"};
    if (r->type == REDIS_REPLY_ERROR) {
        char why[300];
        snprintf(why, sizeof why, "%s: %s", names[step], r->str);
        link__fail(l, why);
        return;
    }
    if (step == HS_LOAD_APPEND || step == HS_LOAD_QUERY) {
        if (r->type != REDIS_REPLY_STRING || r->len != 40) {
            link__fail(l, "SCRIPT LOAD: unexpected reply");
            return;
        }
        memcpy(step == HS_LOAD_APPEND ? s->sha_append : s->sha_query, r->str, 41);
    }
    if (--l->handshake > 0)
        return;
    int was_down = s->down;
    s->state = SR_READY;
    s->down = 0;
    s->backoff_ms = SR_BACKOFF_FIRST_MS;
    ARQ_LOG(s->host, s->ctx, ARQ_LOG_INFO, was_down ? "redis reachable again" : "redis connected",
            "redis", s->where);
    appends__ready(s);
    queries__ready(s);
}

static void link__on_connect(const redisAsyncContext *cac, int status)
{
    redisAsyncContext *ac = (redisAsyncContext *)cac;
    struct sr_link *l = ac->data;
    if (!l || status == REDIS_OK)
        return; /* a connected link becomes ready with the handshake's last reply */
    /* hiredis frees the context after this callback. */
    l->ac = NULL;
    ac->data = NULL;
    char why[300];
    snprintf(why, sizeof why, "cannot connect: %s", ac->errstr[0] ? ac->errstr : "refused");
    link__lost(l, why);
    link__unref(l);
}

static void link__on_disconnect(const redisAsyncContext *cac, int status)
{
    redisAsyncContext *ac = (redisAsyncContext *)cac;
    struct sr_link *l = ac->data;
    if (!l)
        return;
    l->ac = NULL;
    ac->data = NULL;
    link__lost(l, status == REDIS_OK ? "connection closed" : ac->errstr);
    link__unref(l);
}

/* hiredis 0.14's libuv adapter drops poll errors (libuv reports POLLERR as a status, with no
 * events, and stops the watcher): a refused connect or a reset connection would go unnoticed
 * until a timeout. These replace its four event hooks (its attach and cleanup stay): on an
 * error, hiredis is told to read or write what it waits for, and finds the error itself. This
 * is what later hiredis versions do. */
static void link__poll(uv_poll_t *handle, int status, int events)
{
    redisLibuvEvents *p = handle->data;
    int ev = status ? p->events : events;
    if (p->context && (ev & UV_READABLE))
        redisAsyncHandleRead(p->context);
    if (p->context && (ev & UV_WRITABLE))
        redisAsyncHandleWrite(p->context);
}

static void link__poll_set(redisLibuvEvents *p, int add, int events)
{
    p->events = add ? p->events | events : p->events & ~events;
    if (p->events)
        uv_poll_start(&p->handle, p->events, link__poll);
    else
        uv_poll_stop(&p->handle);
}

static void link__add_read(void *privdata)
{
    link__poll_set(privdata, 1, UV_READABLE);
}

static void link__del_read(void *privdata)
{
    link__poll_set(privdata, 0, UV_READABLE);
}

static void link__add_write(void *privdata)
{
    link__poll_set(privdata, 1, UV_WRITABLE);
}

static void link__del_write(void *privdata)
{
    link__poll_set(privdata, 0, UV_WRITABLE);
}

/* Connect to a numeric address and pipeline the handshake behind the connect. */
static void link__connect(struct sredis *s, const char *addr)
{
    char why[300];
    redisAsyncContext *ac = redisAsyncConnect(addr, s->url.port);
    if (!ac || ac->err) {
        snprintf(why, sizeof why, "cannot connect: %s", ac ? ac->errstr : "out of memory");
        if (ac)
            redisAsyncFree(ac);
        link__down(s, why);
        return;
    }
    struct sr_link *l = calloc(1, sizeof *l);
    if (!l || redisLibuvAttach(ac, s->host->uv_loop(s->ctx)) != REDIS_OK) {
        free(l);
        redisAsyncFree(ac);
        link__down(s, "cannot connect: out of memory");
        return;
    }
    l->s = s;
    l->ac = ac;
    l->refs = 1;
    l->next = s->links;
    s->links = l;
    ac->data = l;
    ac->ev.addRead = link__add_read;
    ac->ev.delRead = link__del_read;
    ac->ev.addWrite = link__add_write;
    ac->ev.delWrite = link__del_write;
    redisAsyncSetConnectCallback(ac, link__on_connect);
    redisAsyncSetDisconnectCallback(ac, link__on_disconnect);
    redisEnableKeepAlive(&ac->c);
    s->link = l;
    s->state = SR_CONNECTING;

    char db[16];
    snprintf(db, sizeof db, "%d", s->url.db);
    const char *auth[] = {"AUTH", s->password};
    const char *select[] = {"SELECT", db};
    const char *load_append[] = {"SCRIPT", "LOAD", lua__append_src};
    const char *load_query[] = {"SCRIPT", "LOAD", lua__query_src};
    int failed = 0;
    if (s->password) {
        failed |= link__cmd(l, link__on_handshake, (void *)(intptr_t)HS_AUTH, 2, auth, NULL);
        l->handshake++;
    }
    if (s->url.db) {
        failed |= link__cmd(l, link__on_handshake, (void *)(intptr_t)HS_SELECT, 2, select, NULL);
        l->handshake++;
    }
    failed |=
        link__cmd(l, link__on_handshake, (void *)(intptr_t)HS_LOAD_APPEND, 3, load_append, NULL);
    failed |=
        link__cmd(l, link__on_handshake, (void *)(intptr_t)HS_LOAD_QUERY, 3, load_query, NULL);
    l->handshake += 2;
    if (failed)
        link__fail(l, "cannot send the handshake: out of memory");
}

/* --- host names ---------------------------------------------------------------------------- */

static void link__resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct sr_resolve *r = (struct sr_resolve *)req;
    struct sredis *s = r->s;
    char addr[INET6_ADDRSTRLEN] = "";
    /* The first IPv4 address, else the first one: Redis often listens on 127.0.0.1 only,
     * while "localhost" may resolve to ::1 first. */
    const struct addrinfo *pick = res;
    for (const struct addrinfo *a = res; a; a = a->ai_next) {
        if (a->ai_family == AF_INET) {
            pick = a;
            break;
        }
    }
    if (status == 0 && pick)
        getnameinfo(pick->ai_addr, pick->ai_addrlen, addr, sizeof addr, NULL, 0, NI_NUMERICHOST);
    uv_freeaddrinfo(res);
    free(r);
    if (!s)
        return;
    s->resolve = NULL;
    if (status != 0 || !addr[0]) {
        char why[300];
        snprintf(why, sizeof why, "cannot resolve %s: %s", s->url.host,
                 status ? uv_strerror(status) : "no address");
        link__down(s, why);
        return;
    }
    link__connect(s, addr);
}

static void link__abandon_resolve(struct sredis *s)
{
    if (!s->resolve)
        return;
    s->resolve->s = NULL; /* its callback frees it, cancelled or not */
    uv_cancel((uv_req_t *)&s->resolve->req);
    s->resolve = NULL;
}

static int link__numeric(const char *host)
{
    unsigned char buf[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

static void link__attempt(struct sredis *s)
{
    s->attempt_us = sredis__mono_us();
    if (s->reconnects++ > 0)
        ARQ_LOG(s->host, s->ctx, ARQ_LOG_DEBUG, "connecting to redis", "redis", s->where);
    if (link__numeric(s->url.host)) {
        link__connect(s, s->url.host);
        return;
    }
    struct sr_resolve *r = calloc(1, sizeof *r);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    if (!r) {
        link__down(s, "cannot resolve: out of memory");
        return;
    }
    r->s = s;
    int rc = uv_getaddrinfo(s->host->uv_loop(s->ctx), &r->req, link__resolved, s->url.host, NULL,
                            &hints);
    if (rc != 0) {
        free(r);
        char why[300];
        snprintf(why, sizeof why, "cannot resolve %s: %s", s->url.host, uv_strerror(rc));
        link__down(s, why);
        return;
    }
    s->resolve = r;
    s->state = SR_RESOLVING;
}

/* --- the tick: timeouts and retries -------------------------------------------------------- */

static void link__tick(void *arg)
{
    struct sredis *s = arg;
    int64_t now = sredis__mono_us();
    int64_t reply_timeout_ms =
        s->connect_timeout_ms > SR_REPLY_TIMEOUT_MS ? s->connect_timeout_ms : SR_REPLY_TIMEOUT_MS;
    char why[128];
    switch (s->state) {
    case SR_WAITING:
        if (now >= s->retry_at_us)
            link__attempt(s);
        break;
    case SR_RESOLVING:
    case SR_CONNECTING:
        if (now - s->attempt_us < s->connect_timeout_ms * 1000)
            break;
        snprintf(why, sizeof why, "no connection within %lld ms", (long long)s->connect_timeout_ms);
        if (s->link) {
            link__fail(s->link, why);
        } else {
            link__abandon_resolve(s);
            link__down(s, why);
        }
        break;
    case SR_READY:
        if (s->link && s->link->pending && now - s->link->busy_since_us > reply_timeout_ms * 1000) {
            snprintf(why, sizeof why, "no reply within %lld ms", (long long)reply_timeout_ms);
            link__fail(s->link, why);
        }
        break;
    case SR_IDLE:
        break;
    }
}

int link__start(struct sredis *s)
{
    s->backoff_ms = SR_BACKOFF_FIRST_MS;
    s->tick = s->host->timer_start(s->ctx, SR_TICK_MS, SR_TICK_MS, link__tick, s);
    if (!s->tick)
        return ARQ_ENOMEM;
    link__attempt(s);
    return ARQ_OK;
}

void link__stop(struct sredis *s)
{
    s->stopping = 1;
    s->host->timer_stop(s->tick);
    s->tick = NULL;
    link__abandon_resolve(s);
    struct sr_link *l = s->link;
    if (!l)
        return;
    if (s->state == SR_READY && l->ac) {
        /* Replies still awaited arrive and are handled; then the context goes. */
        redisAsyncDisconnect(l->ac);
    } else {
        link__fail(l, "stopping");
    }
}

void link__close(struct sredis *s)
{
    if (!s->stopping)
        link__stop(s);
    s->stopping = 1;
    struct sr_link *l = s->link;
    if (l) {
        /* l is alive here (the analyzer finds it freed on paths that break two invariants):
         * s->link is cleared (link__lost) before l's last reference goes, and the hold taken
         * here outlives link__fail. NOLINTNEXTLINE(clang-analyzer-unix.Malloc) */
        l->refs++;
        link__fail(l, "stopping");
        link__unref(l); /* NOLINT(clang-analyzer-unix.Malloc): held above */
    }
    /* Links whose context hiredis frees later (we are inside one of its callbacks) must not
     * reach back into the instance. */
    for (struct sr_link *p = s->links; p; p = p->next)
        p->s = NULL;
    s->links = NULL;
    s->state = SR_IDLE;
}
