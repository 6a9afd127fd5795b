/* One Redis server (a shard): two connections on the host's libuv loop, each a uv_tcp socket
 * read with hiredis' redisReader and written with RESP text of our own.
 *
 * Not hiredis' async API: hiredis 0.14 does not know SSUBSCRIBE, and an `smessage` on a
 * context it does not believe subscribed hits an assert. Replies are matched with a FIFO of
 * callbacks, one per command sent; on the subscriber connection, arrays whose first element
 * is `message` or `smessage` are pushed messages, not replies.
 *
 * The shard is up once both handshakes are answered: AUTH and SELECT then SCRIPT LOAD of every
 * script on the command connection, AUTH then the subscription of the node's own channel on
 * the subscriber one. When anything goes wrong (refused, timed out, closed, an error in the
 * handshake, a reply nobody waited for), both connections go, awaited callbacks get NULL, and
 * a new attempt follows after a backoff of 100 ms doubling to 5 s. The connection structs
 * outlive their shard until libuv has closed their sockets. */
#include <arpa/inet.h>
#include <hiredis/hiredis.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "bredis.h"

struct br_wait {
    struct br_wait *next;
    br_reply_fn fn;
    void *arg;
    int publish;
};

struct br_conn {
    struct br_shard *sh; /* NULL once the shard let go: libuv callbacks only free */
    int sub;
    uv_tcp_t tcp;
    uv_connect_t creq;
    redisReader *reader;
    struct br_wait *head, *tail;
    size_t pending;
    int64_t busy_since_us; /* when the oldest awaited reply was sent, or the last progress */
    char buf[65536];
};

struct br_write {
    uv_write_t req;
    char *data;
};

struct br_resolve {
    uv_getaddrinfo_t req;
    struct br_shard *sh; /* NULL when abandoned: the callback only frees */
};

static void shard__lost(struct br_shard *sh, const char *why);

/* --- a connection ------------------------------------------------------------------------ */

static void conn__closed(uv_handle_t *h)
{
    struct br_conn *c = h->data;
    redisReaderFree(c->reader);
    free(c);
}

/* Let go of `c`: awaited callbacks get NULL (in-flight publishes are lost), the socket
 * closes, and `c` is freed by libuv's close callback. */
static void conn__drop(struct br_conn *c)
{
    struct br_shard *sh = c->sh;
    c->sh = NULL;
    uint64_t lost = 0;
    while (c->head) {
        struct br_wait *w = c->head;
        c->head = w->next;
        lost += (uint64_t)w->publish;
        w->fn(sh, NULL, w->arg);
        free(w);
    }
    c->tail = NULL;
    if (lost && sh)
        broker__lost(sh->b, lost);
    uv_close((uv_handle_t *)&c->tcp, conn__closed);
}

static void conn__written(uv_write_t *req, int status)
{
    struct br_write *w = (struct br_write *)req;
    struct br_conn *c = req->data;
    free(w->data);
    free(w);
    if (status < 0 && status != UV_ECANCELED && c->sh) {
        char why[200];
        snprintf(why, sizeof why, "write failed: %s", uv_strerror(status));
        shard__lost(c->sh, why);
    }
}

static int conn__write(struct br_conn *c, char *buf, size_t len)
{
    struct br_write *w = malloc(sizeof *w);
    if (!w) {
        free(buf);
        return -1;
    }
    w->data = buf;
    w->req.data = c;
    uv_buf_t b = uv_buf_init(buf, (unsigned)len);
    if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, conn__written) != 0) {
        free(buf);
        free(w);
        return -1;
    }
    return 0;
}

static int conn__push(struct br_conn *c, char *buf, size_t len, br_reply_fn fn, void *arg,
                      int publish)
{
    struct br_wait *w = calloc(1, sizeof *w);
    if (!w) {
        free(buf);
        return -1;
    }
    if (conn__write(c, buf, len) != 0) {
        free(w);
        return -1;
    }
    *w = (struct br_wait){NULL, fn, arg, publish};
    if (c->tail)
        c->tail->next = w;
    else
        c->head = w;
    c->tail = w;
    if (c->pending++ == 0)
        c->busy_since_us = broker__mono_us();
    return 0;
}

static int conn__is_push(const redisReply *r)
{
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 3 ||
        r->element[0]->type != REDIS_REPLY_STRING || r->element[2]->type != REDIS_REPLY_STRING)
        return 0;
    return strcmp(r->element[0]->str, "smessage") == 0 ||
           strcmp(r->element[0]->str, "message") == 0;
}

static void conn__deliver(struct broker *b, const redisReply *payload)
{
    struct arq_broker_msg msg;
    if (wire__decode((const unsigned char *)payload->str, payload->len, &msg) != 0) {
        b->host->metric_add(b->m_malformed, 1);
        ARQ_LOG(b->host, b->ctx, ARQ_LOG_DEBUG, "malformed message from redis dropped", NULL);
        return;
    }
    if (strcmp(msg.origin, b->node) == 0) {
        b->n_own++; /* our own publish, echoed by a channel we are subscribed to */
        return;
    }
    b->host->metric_add(b->m_received, 1);
    b->host->broker_deliver(b->ctx, &msg);
}

/* One reply: a pushed message, or the answer to the oldest command. 0, or -1 when `c` was let
 * go meanwhile (the caller stops reading). */
static int conn__reply(struct br_conn *c, redisReply *r)
{
    struct br_shard *sh = c->sh;
    c->busy_since_us = broker__mono_us();
    if (c->sub && conn__is_push(r)) {
        conn__deliver(sh->b, r->element[2]);
    } else if (!c->head) {
        shard__lost(sh, "protocol error: a reply nobody waited for");
    } else {
        struct br_wait *w = c->head;
        c->head = w->next;
        if (!c->head)
            c->tail = NULL;
        c->pending--;
        w->fn(sh, r, w->arg);
        free(w);
    }
    return c->sh ? 0 : -1;
}

static void conn__alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct br_conn *c = h->data;
    (void)suggested;
    *buf = uv_buf_init(c->buf, sizeof c->buf);
}

static void conn__read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    struct br_conn *c = stream->data;
    if (!c->sh || nread == 0)
        return;
    if (nread < 0) {
        char why[200];
        snprintf(why, sizeof why, "%s",
                 nread == UV_EOF ? "connection closed by redis" : uv_strerror((int)nread));
        shard__lost(c->sh, why);
        return;
    }
    if (redisReaderFeed(c->reader, buf->base, (size_t)nread) != REDIS_OK) {
        shard__lost(c->sh, "protocol error");
        return;
    }
    for (;;) {
        void *reply = NULL;
        if (redisReaderGetReply(c->reader, &reply) != REDIS_OK) {
            shard__lost(c->sh, "protocol error");
            return;
        }
        if (!reply)
            return;
        int gone = conn__reply(c, reply);
        freeReplyObject(reply);
        if (gone)
            return;
    }
}

/* --- the handshake ----------------------------------------------------------------------- */

static void shard__on_handshake(struct br_shard *sh, const void *reply, void *arg)
{
    const redisReply *r = reply;
    intptr_t step = (intptr_t)arg; /* script index, or -1 (AUTH, SELECT, SUBSCRIBE) */
    if (!r || !sh)
        return; /* the loss is handled */
    if (r->type == REDIS_REPLY_ERROR) {
        char why[300];
        snprintf(why, sizeof why, "handshake: %s", r->str);
        shard__lost(sh, why);
        return;
    }
    if (step >= 0) {
        if (r->type != REDIS_REPLY_STRING || r->len != 40) {
            shard__lost(sh, "SCRIPT LOAD: unexpected reply");
            return;
        }
        memcpy(sh->sha[step], r->str, 41);
    }
    if (--sh->handshake == 0) {
        sh->state = BR_UP;
        sh->outage = 0;
        sh->backoff_ms = BR_BACKOFF_FIRST_MS;
        broker__shard_up(sh->b, sh);
    }
}

static int shard__early(struct br_shard *sh, int sub, int argc, const char **argv, intptr_t step)
{
    size_t len;
    char *buf = wire__command(argc, argv, NULL, &len);
    if (!buf)
        return -1;
    sh->handshake++;
    return shard__send(sh, sub, buf, len, shard__on_handshake, (void *)step, 0, 1);
}

static void shard__handshake(struct br_conn *c)
{
    struct br_shard *sh = c->sh;
    struct broker *b = sh->b;
    const char *pw = sh->url.password[0] ? sh->url.password : b->cfg.password;
    const char *auth[] = {"AUTH", sh->url.user[0] ? sh->url.user : pw, pw};
    int failed = 0;
    if (pw && *pw)
        failed |= shard__early(sh, c->sub, sh->url.user[0] ? 3 : 2, auth, -1);
    if (!c->sub) {
        char db[16];
        snprintf(db, sizeof db, "%d", sh->url.db);
        const char *select[] = {"SELECT", db};
        if (sh->url.db)
            failed |= shard__early(sh, 0, 2, select, -1);
        for (intptr_t i = 0; i < BR_LUA_COUNT; i++) {
            const char *load[] = {"SCRIPT", "LOAD", lua__src[i]};
            failed |= shard__early(sh, 0, 3, load, i);
        }
    } else {
        char chan[BR_NAME_MAX];
        const char *subscribe[] = {b->cfg.sharded ? "SSUBSCRIBE" : "SUBSCRIBE", chan};
        if (broker__name(b, chan, sizeof chan, "node", b->node, NULL) < 0)
            failed = 1;
        else
            failed |= shard__early(sh, 1, 2, subscribe, -1);
    }
    if (failed)
        shard__lost(sh, "cannot send the handshake: out of memory");
}

static void conn__connected(uv_connect_t *req, int status)
{
    struct br_conn *c = req->data;
    if (!c->sh)
        return;
    if (status < 0) {
        char why[200];
        snprintf(why, sizeof why, "cannot connect: %s", uv_strerror(status));
        shard__lost(c->sh, why);
        return;
    }
    uv_tcp_keepalive(&c->tcp, 1, 30);
    uv_tcp_nodelay(&c->tcp, 1);
    if (uv_read_start((uv_stream_t *)&c->tcp, conn__alloc, conn__read) != 0) {
        shard__lost(c->sh, "cannot read from the socket");
        return;
    }
    shard__handshake(c);
}

static struct br_conn *conn__open(struct br_shard *sh, int sub, const struct sockaddr *addr)
{
    struct br_conn *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    if (!(c->reader = redisReaderCreate())) {
        free(c);
        return NULL;
    }
    c->sh = sh;
    c->sub = sub;
    uv_tcp_init(sh->b->host->uv_loop(sh->b->ctx), &c->tcp);
    c->tcp.data = c;
    c->creq.data = c;
    int rc = uv_tcp_connect(&c->creq, &c->tcp, addr, conn__connected);
    if (rc != 0) {
        c->sh = NULL;
        uv_close((uv_handle_t *)&c->tcp, conn__closed);
        return NULL;
    }
    return c;
}

/* --- the shard --------------------------------------------------------------------------- */

int shard__send(struct br_shard *sh, int sub, char *buf, size_t len, br_reply_fn fn, void *arg,
                int publish, int early)
{
    struct br_conn *c = sub ? sh->sub : sh->cmd;
    if (!c || !(sh->state == BR_UP || (early && sh->state == BR_CONNECTING))) {
        free(buf);
        return -1;
    }
    return conn__push(c, buf, len, fn, arg, publish);
}

int shard__send_last(struct br_shard *sh, const char *buf, size_t len)
{
    struct br_conn *c = sh->cmd;
    if (!c || sh->state != BR_UP)
        return -1;
    uv_buf_t b = uv_buf_init((char *)buf, (unsigned)len);
    return uv_try_write((uv_stream_t *)&c->tcp, &b, 1) == (int)len ? 0 : -1;
}

int shard__eval(struct br_shard *sh, enum br_script which, int argc, const char **argv,
                const size_t *lens, br_reply_fn fn, void *arg, int publish)
{
    const char *av[16];
    size_t lv[16];
    if (argc + 2 > 16)
        return -1;
    av[0] = "EVALSHA";
    lv[0] = 7;
    av[1] = sh->sha[which];
    lv[1] = 40;
    for (int i = 0; i < argc; i++) {
        av[i + 2] = argv[i];
        lv[i + 2] = lens ? lens[i] : strlen(argv[i]);
    }
    size_t len;
    char *buf = wire__command(argc + 2, av, lv, &len);
    if (!buf)
        return -1;
    return shard__send(sh, 0, buf, len, fn, arg, publish, 0);
}

/* Both connections go; callbacks awaited on them get NULL. */
static void shard__drop(struct br_shard *sh)
{
    struct br_conn *cmd = sh->cmd, *sub = sh->sub;
    sh->cmd = sh->sub = NULL;
    if (cmd)
        conn__drop(cmd);
    if (sub)
        conn__drop(sub);
}

static void shard__abandon_resolve(struct br_shard *sh)
{
    if (!sh->resolve)
        return;
    sh->resolve->sh = NULL; /* its callback frees it, cancelled or not */
    uv_cancel((uv_req_t *)&sh->resolve->req);
    sh->resolve = NULL;
}

/* Down: log the first failure of an outage, schedule the next attempt. */
static void shard__lost(struct br_shard *sh, const char *why)
{
    struct broker *b = sh->b;
    int was_up = sh->state == BR_UP;
    snprintf(sh->last_error, sizeof sh->last_error, "%s", why);
    sh->state = b->stopping ? BR_IDLE : BR_WAITING;
    sh->handshake = 0;
    shard__abandon_resolve(sh);
    if (!b->stopping) {
        sh->retry_at_us = broker__mono_us() + sh->backoff_ms * 1000;
        sh->backoff_ms =
            sh->backoff_ms * 2 > BR_BACKOFF_MAX_MS ? BR_BACKOFF_MAX_MS : sh->backoff_ms * 2;
        ARQ_LOG(b->host, b->ctx, sh->outage ? ARQ_LOG_DEBUG : ARQ_LOG_WARN,
                was_up       ? "redis connection lost"
                : sh->outage ? "redis still unavailable"
                             : "redis unavailable",
                "redis", sh->where, "error", why);
        sh->outage = 1;
    }
    if (was_up)
        broker__shard_down(b, sh);
    shard__drop(sh);
}

static void shard__connect(struct br_shard *sh, const struct sockaddr *addr)
{
    sh->state = BR_CONNECTING;
    sh->cmd = conn__open(sh, 0, addr);
    sh->sub = sh->cmd ? conn__open(sh, 1, addr) : NULL;
    if (!sh->sub)
        shard__lost(sh, "cannot connect: out of memory or no socket");
}

static void shard__resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct br_resolve *r = (struct br_resolve *)req;
    struct br_shard *sh = r->sh;
    /* The first IPv4 address, else the first one: Redis often listens on 127.0.0.1 only,
     * while "localhost" may resolve to ::1 first. */
    const struct addrinfo *pick = res;
    for (const struct addrinfo *a = res; a; a = a->ai_next) {
        if (a->ai_family == AF_INET) {
            pick = a;
            break;
        }
    }
    struct sockaddr_storage addr;
    int found = status == 0 && pick && pick->ai_addrlen <= sizeof addr;
    if (found) {
        memcpy(&addr, pick->ai_addr, pick->ai_addrlen);
        ((struct sockaddr_in *)&addr)->sin_port = htons((uint16_t)(sh ? sh->url.port : 0));
    }
    uv_freeaddrinfo(res);
    free(r);
    if (!sh)
        return;
    sh->resolve = NULL;
    if (!found) {
        char why[300];
        snprintf(why, sizeof why, "cannot resolve %s: %s", sh->url.host,
                 status ? uv_strerror(status) : "no address");
        shard__lost(sh, why);
        return;
    }
    shard__connect(sh, (const struct sockaddr *)&addr);
}

static void shard__attempt(struct br_shard *sh)
{
    struct broker *b = sh->b;
    struct sockaddr_in6 a6;
    struct sockaddr_in a4;
    sh->attempt_us = broker__mono_us();
    if (uv_ip4_addr(sh->url.host, sh->url.port, &a4) == 0) {
        shard__connect(sh, (const struct sockaddr *)&a4);
        return;
    }
    if (uv_ip6_addr(sh->url.host, sh->url.port, &a6) == 0) {
        shard__connect(sh, (const struct sockaddr *)&a6);
        return;
    }
    struct br_resolve *r = calloc(1, sizeof *r);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    if (!r) {
        shard__lost(sh, "cannot resolve: out of memory");
        return;
    }
    r->sh = sh;
    int rc = uv_getaddrinfo(b->host->uv_loop(b->ctx), &r->req, shard__resolved, sh->url.host, NULL,
                            &hints);
    if (rc != 0) {
        free(r);
        char why[300];
        snprintf(why, sizeof why, "cannot resolve %s: %s", sh->url.host, uv_strerror(rc));
        shard__lost(sh, why);
        return;
    }
    sh->resolve = r;
    sh->state = BR_RESOLVING;
}

void shard__start(struct br_shard *sh)
{
    sh->backoff_ms = BR_BACKOFF_FIRST_MS;
    shard__attempt(sh);
}

void shard__tick(struct br_shard *sh, int64_t now)
{
    struct broker *b = sh->b;
    int64_t reply_timeout_ms = b->cfg.connect_timeout_ms > BR_REPLY_TIMEOUT_MS
                                   ? b->cfg.connect_timeout_ms
                                   : BR_REPLY_TIMEOUT_MS;
    char why[128];
    switch (sh->state) {
    case BR_WAITING:
        if (now >= sh->retry_at_us)
            shard__attempt(sh);
        break;
    case BR_RESOLVING:
    case BR_CONNECTING:
        if (now - sh->attempt_us >= b->cfg.connect_timeout_ms * 1000) {
            snprintf(why, sizeof why, "no connection within %lld ms",
                     (long long)b->cfg.connect_timeout_ms);
            shard__lost(sh, why);
        }
        break;
    case BR_UP:
        for (int i = 0; i < 2; i++) {
            struct br_conn *c = i ? sh->sub : sh->cmd;
            if (c && c->pending && now - c->busy_since_us > reply_timeout_ms * 1000) {
                snprintf(why, sizeof why, "no reply within %lld ms", (long long)reply_timeout_ms);
                shard__lost(sh, why);
                break;
            }
        }
        break;
    case BR_IDLE:
        break;
    }
}

void shard__close(struct br_shard *sh)
{
    int was_up = sh->state == BR_UP;
    sh->state = BR_IDLE;
    shard__abandon_resolve(sh);
    if (was_up)
        broker__shard_down(sh->b, sh);
    shard__drop(sh);
}
