/* Keepalive. A connection silent for ping_interval gets a ping; one that then sends nothing
 * for ping_timeout is dropped, as libwebsockets' own hangup does (no close frame: the peer is
 * presumed gone), and the host hears 1006 "ping timeout".
 *
 * Why not lws's retry policy: lws 4.1 keeps each connection's validity timer in one sorted
 * list per thread, re-inserted from the head on every new connection and every pong, which
 * made set-up quadratic (61% of the CPU in lws_dll2_add_sorted at 19,800 connections). Its
 * policy is all zero here (ws_lws.c), so lws schedules nothing per connection; the lists of
 * ws_alive.c and one uv timer armed for their earliest deadline do the job instead.
 *
 * Our pings carry 8 bytes: lws 4.1 does not report a pong with an empty payload
 * (LWS_CALLBACK_RECEIVE_PONG), and a peer echoes the payload (RFC 6455 5.5.3). Pings from the
 * peer are answered by lws without telling us, so they do not count as a sign of life. */
#include <stdint.h>
#include <stdlib.h>

#include "ws.h"

#define CONN_OF(node) ((struct ws_conn *)((char *)(node)-offsetof(struct ws_conn, alive)))

static uint32_t now_s(const struct ws_server *srv)
{
    return (uint32_t)(uv_now(srv->loop) / 1000);
}

static void on_tick(uv_timer_t *t);

/* Arm the timer for the earliest deadline, unless it already fires by then. `force`: the timer
 * is not running (it just fired). */
static void arm(struct ws_server *srv, int force)
{
    uint32_t next = ws_alive__next(&srv->alive);
    if (!srv->ping_timer || next == UINT32_MAX || (!force && srv->ping_armed <= next))
        return;
    uint64_t due = (uint64_t)next * 1000, now = uv_now(srv->loop);
    srv->ping_armed = next;
    uv_timer_start(srv->ping_timer, on_tick, due > now ? due - now : 0, 0);
}

static void send_ping(struct ws_alive_node *n, void *arg)
{
    (void)arg;
    struct ws_conn *c = CONN_OF(n);
    c->ping_due = 1;
    ws_send__want_write(c);
}

static void hang_up(struct ws_alive_node *n, void *arg)
{
    struct ws_server *srv = arg;
    struct ws_conn *c = CONN_OF(n);
    if (c->ping_due && c->deflate) {
        /* The ping never left: a compressing connection sends it only between messages,
         * and its queue never emptied. The client reads, so it gets another interval. */
        c->ping_due = 0;
        ws_alive__add(&srv->alive, n, now_s(srv));
        return;
    }
    c->ping_timed_out = 1;
    ws_server__count(srv->m_ping_timeouts, 1, srv);
    /* Closes now: LWS_CALLBACK_CLOSED tells the host (ws_conn.c, on_closed). */
    lws_set_timeout(c->wsi, PENDING_TIMEOUT_KILLED_BY_PARENT, LWS_TO_KILL_SYNC);
}

static void on_tick(uv_timer_t *t)
{
    struct ws_server *srv = t->data;
    if (!srv || srv->dead)
        return;
    srv->ping_armed = UINT32_MAX;
    ws_alive__expire(&srv->alive, now_s(srv), send_ping, hang_up, srv);
    arm(srv, 1);
}

void ws_ping__track(struct ws_conn *c)
{
    struct ws_server *srv = c->srv;
    ws_alive__add(&srv->alive, &c->alive, now_s(srv));
    arm(srv, 0);
}

void ws_ping__seen(struct ws_conn *c)
{
    if (c->alive.list != WS_ALIVE_NONE)
        ws_alive__seen(&c->srv->alive, &c->alive, now_s(c->srv));
}

void ws_ping__untrack(struct ws_conn *c)
{
    if (c->srv)
        ws_alive__remove(&c->srv->alive, &c->alive);
    c->ping_due = 0;
}

static void free_handle(uv_handle_t *h)
{
    free(h);
}

int ws_ping__init(struct ws_server *srv, uv_loop_t *loop)
{
    srv->loop = loop;
    srv->ping_armed = UINT32_MAX;
    ws_alive__init(&srv->alive, srv->cfg.ping_interval_s, srv->cfg.ping_timeout_s);
    if (!srv->cfg.ping_interval_s)
        return 0;
    srv->ping_timer = malloc(sizeof *srv->ping_timer);
    if (!srv->ping_timer || uv_timer_init(loop, srv->ping_timer) != 0) {
        free(srv->ping_timer);
        srv->ping_timer = NULL;
        return -1;
    }
    srv->ping_timer->data = srv;
    return 0;
}

void ws_ping__fini(struct ws_server *srv)
{
    if (!srv->ping_timer)
        return;
    srv->ping_timer->data = NULL;
    uv_timer_stop(srv->ping_timer);
    uv_close((uv_handle_t *)srv->ping_timer, free_handle);
    srv->ping_timer = NULL;
    srv->ping_armed = UINT32_MAX;
}
