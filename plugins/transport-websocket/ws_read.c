/* Reading on. libwebsockets 4.1 reads a connection at most once per poll turn, and at most
 * rx_buffer_size bytes (plus LWS_PRE): the size of the receive buffer it keeps for every
 * connection, idle or not. A publisher that sends faster than that is read a few messages per
 * turn, and each of its subscribers then gets one send() per few messages: the send, not the
 * bus, is most of a delivery's cost (docs/benchmarks.md). A larger buffer for everyone would
 * cost every idle connection memory to serve the few that publish fast.
 *
 * So a connection whose reads this turn came to half its buffer or more (the read was about
 * full: the socket likely holds more) is read again from the check phase, after the poll and
 * before the turn's writes, through lws_service_fd(), as lws's own poll callback would: while
 * each read keeps coming back about full, up to WS_READ_TURN_MAX bytes a turn. What it reads
 * is routed like any other input, so the turn's single write per subscriber carries all of it.
 * A quiet connection is never read twice (its reads are short), and a connection that sends
 * less than half a buffer per turn costs nothing more.
 *
 * permessage-deflate connections are left to lws: it inflates a compressed message over
 * several services of its own, and ws_conn.c already wakes those. */
#include <stdlib.h>

#include "ws.h"

/* Bytes read from one connection in one loop turn, at most (about: a read past the bound
 * completes). With the default 1 KiB buffer, 64 reads: some 300 typical messages, enough for
 * each subscriber's write to carry a publisher's whole window, while a flood from one
 * connection stays a bounded share of a turn. */
#define WS_READ_TURN_MAX (64 * 1024)

/* Bytes a read must bring for the socket to be thought to hold more: half the buffer. */
static size_t about_full(const struct ws_server *srv)
{
    return srv->cfg.rx_buffer_size / 2;
}

void ws_read__received(struct ws_conn *c, size_t len)
{
    struct ws_server *srv = c->srv;
    if (c->rx_stamp != srv->turn) { /* the first read of this connection this turn */
        c->rx_stamp = srv->turn;
        c->rx_turn = 0;
    }
    c->rx_turn += len < WS_READ_TURN_MAX ? (uint32_t)len : WS_READ_TURN_MAX;
    if (c->read_listed || c->deflate || srv->reading == c || srv->dead ||
        c->rx_turn < about_full(srv))
        return;
    if (srv->nreaders == srv->readers_cap) {
        size_t cap = srv->readers_cap ? srv->readers_cap * 2 : 16;
        struct ws_conn **r = realloc(srv->readers, cap * sizeof *r);
        if (!r)
            return; /* read once a turn, as lws does */
        srv->readers = r;
        srv->readers_cap = cap;
    }
    c->read_listed = 1;
    srv->readers[srv->nreaders++] = c;
    ws_send__arm(srv);
}

void ws_read__forget(struct ws_conn *c)
{
    struct ws_server *srv = c->srv;
    if (!srv)
        return;
    if (srv->reading == c)
        srv->reading = NULL;
    if (!c->read_listed)
        return;
    c->read_listed = 0;
    for (size_t i = 0; i < srv->nreaders; i++) {
        if (srv->readers[i] == c) {
            srv->readers[i] = srv->readers[--srv->nreaders];
            break;
        }
    }
}

/* Read `c` again while its reads come back about full. */
static void read_on(struct ws_server *srv, struct ws_conn *c)
{
    struct lws_pollfd pfd = {.fd = lws_get_socket_fd(c->wsi)};
    if (pfd.fd < 0)
        return;
    srv->reading = c;
    while (c->rx_turn < WS_READ_TURN_MAX && c->conn && !c->close_pending && !c->close_sent) {
        uint32_t before = c->rx_turn;
        pfd.events = pfd.revents = LWS_POLLIN;
        lws_service_fd(srv->lws, &pfd);
        if (srv->reading != c) /* closed by what it read, or by the peer */
            return;
        if (c->rx_turn - before < about_full(srv))
            break;
    }
    srv->reading = NULL;
}

void ws_read__turn(struct ws_server *srv)
{
    /* From the end: a connection that goes meanwhile leaves the array (ws_read__forget). */
    while (srv->nreaders > 0 && !srv->dead) {
        struct ws_conn *c = srv->readers[--srv->nreaders];
        c->read_listed = 0;
        if (c->wsi)
            read_on(srv, c);
    }
}
