/* What the clients do once connected: publish (bounded by a window of messages in flight, or
 * at a fixed rate), count deliveries and their latency, run commands. */
#include <stdio.h>
#include <stdlib.h>

#include "loadgen.h"

#define STALL_NS  5000000000ull /* window mode: no progress this long writes the window off */
#define MAX_BURST 10000         /* rate mode: at most this many due publishes per loop turn */

void traffic_ready(struct lg_worker *w, struct lg_conn *c)
{
    c->state = ST_READY;
    w->opening--;
    w->ready++;
    w->done++;
    atomic_fetch_add(&w->run->ready, 1);
    atomic_fetch_add(&w->run->done, 1);
    if (c->role & ROLE_PUB)
        w->pubs[w->npubs++] = (uint32_t)(c - w->conns);
    if (!c->mlen) {
        free(c->msg);
        c->msg = NULL;
        c->mcap = 0;
    }
}

static int is_fanout(const struct lg_run *r)
{
    return r->o.scenario == SC_FANOUT || r->o.scenario == SC_LATENCY;
}

static uint64_t fan_outstanding(const struct lg_worker *w, const struct lg_conn *pub)
{
    const struct lg_run *r = w->run;
    uint64_t due = pub->sent * r->recipients;
    uint64_t got = atomic_load_explicit(&r->fan_delivered, memory_order_relaxed) + w->fan_local;
    return due > got ? due - got : 0;
}

static int window_open(const struct lg_worker *w, const struct lg_conn *c)
{
    const struct lg_run *r = w->run;
    if (is_fanout(r))
        return fan_outstanding(w, c) < (uint64_t)r->window_deliv;
    return c->outstanding + (int32_t)r->recipients <= r->window_deliv;
}

static void publish(struct lg_worker *w, struct lg_conn *c)
{
    proto_publish(w, c);
    if (!is_fanout(w->run))
        c->outstanding += (int32_t)w->run->recipients;
    w->last_progress = w->now;
}

void traffic_start(struct lg_worker *w)
{
    const struct lg_run *r = w->run;
    w->sched_t0 = w->now;
    w->scheduled = 0;
    w->last_progress = w->now;
    if (r->o.scenario == SC_COMMANDS) {
        w->npubs = 0;
        for (uint32_t i = 0; i < w->n; i++)
            if (w->conns[i].state == ST_READY)
                w->pubs[w->npubs++] = i;
        w->sched_rate = r->o.rate * w->npubs;
        if (r->o.rate <= 0)
            for (uint32_t i = 0; i < w->npubs; i++)
                proto_command(w, &w->conns[w->pubs[i]]);
        return;
    }
    w->sched_rate = r->o.rate * w->npubs;
    if (r->o.rate <= 0 && !is_fanout(r))
        for (uint32_t i = 0; i < w->npubs; i++) {
            w->conns[w->pubs[i]].queued = 1;
            w->pubq[w->npubq++] = w->pubs[i];
        }
}

void traffic_delivery(struct lg_worker *w, uint64_t t, uint32_t s, int marked)
{
    const struct lg_run *r = w->run;
    if (w->phase == PH_MEASURE) {
        w->st.deliveries_win++;
        hist_add(&w->lat, w->now > t ? w->now - t : 0);
    }
    if (marked)
        w->st.recv_marked++;
    w->last_progress = w->now;
    if (is_fanout(r)) {
        w->fan_local++;
        return;
    }
    if (r->o.scenario != SC_ROOMS || s < w->first_id || s >= w->first_id + w->n)
        return;
    struct lg_conn *p = &w->conns[s - w->first_id];
    p->outstanding--;
    if (!p->queued && r->o.rate <= 0 && p->state == ST_READY && window_open(w, p)) {
        p->queued = 1;
        w->pubq[w->npubq++] = s - w->first_id;
    }
}

void traffic_command_done(struct lg_worker *w, struct lg_conn *c, int ok)
{
    uint8_t aw = c->awaiting;
    c->awaiting = 0;
    if (!ok)
        w->st.command_errors++;
    if (w->phase == PH_MEASURE) {
        w->st.commands_win++;
        hist_add(&w->cmd[(aw & AW_LEAVE) ? 1 : 0], w->now - c->cmd_t0);
    }
    if (aw & AW_MARKED)
        w->st.recv_marked++;
    if (w->run->o.rate <= 0 && (w->phase == PH_WARMUP || w->phase == PH_MEASURE))
        proto_command(w, c);
}

/* Rate mode: what is due by now, round robin over the publishers (or command clients). */
static int64_t pump_rate(struct lg_worker *w)
{
    const struct lg_run *r = w->run;
    if (!w->npubs || w->sched_rate <= 0)
        return -1;
    uint64_t elapsed = w->now - w->sched_t0;
    uint64_t due = (uint64_t)((double)elapsed * w->sched_rate / 1e9);
    if (due > w->scheduled) {
        /* the oldest publish not yet made was due at (scheduled + 1) / rate */
        uint64_t behind_ns = elapsed - (uint64_t)((double)(w->scheduled + 1) * 1e9 / w->sched_rate);
        if (behind_ns > w->st.max_lag_ns && w->phase == PH_MEASURE)
            w->st.max_lag_ns = behind_ns;
    }
    int burst = 0;
    while (w->scheduled < due && burst++ < MAX_BURST) {
        struct lg_conn *c = &w->conns[w->pubs[w->rr++ % w->npubs]];
        w->scheduled++;
        if (c->state != ST_READY)
            continue;
        if (r->o.scenario == SC_COMMANDS) {
            if (c->awaiting)
                w->st.window_skips++;
            else
                proto_command(w, c);
        } else if (!window_open(w, c)) {
            w->st.window_skips++;
        } else {
            publish(w, c);
        }
    }
    uint64_t next = w->sched_t0 + (uint64_t)((double)(w->scheduled + 1) * 1e9 / w->sched_rate);
    return next > w->now ? (int64_t)(next - w->now) : 0;
}

/* Window mode: nothing came back for a second while the window was full. Count it, forget the
 * window, and go on (the lost deliveries show in the report). */
static void write_off(struct lg_worker *w)
{
    struct lg_run *r = w->run;
    w->st.stalls++;
    w->last_progress = w->now;
    fprintf(stderr, "arqonbus-bench: no progress for %.0f s: window written off\n", STALL_NS / 1e9);
    for (uint32_t i = 0; i < w->npubs; i++) {
        struct lg_conn *c = &w->conns[w->pubs[i]];
        if (is_fanout(r)) {
            atomic_fetch_add(&r->fan_delivered, fan_outstanding(w, c));
        } else {
            c->outstanding = 0;
            if (!c->queued && c->state == ST_READY) {
                c->queued = 1;
                w->pubq[w->npubq++] = w->pubs[i];
            }
        }
    }
}

int64_t traffic_pump(struct lg_worker *w)
{
    const struct lg_run *r = w->run;
    if (w->phase != PH_WARMUP && w->phase != PH_MEASURE)
        return -1;
    if (r->o.rate > 0)
        return pump_rate(w);
    if (r->o.scenario == SC_COMMANDS || !w->npubs)
        return -1;
    if (is_fanout(r)) {
        struct lg_conn *c = &w->conns[w->pubs[0]];
        int sent = 0;
        while (c->state == ST_READY && window_open(w, c) && sent++ < MAX_BURST)
            publish(w, c);
        if (!sent && c->state == ST_READY && w->now - w->last_progress > STALL_NS)
            write_off(w);
        /* other workers' deliveries open the window: look again soon */
        return r->nw > 1 ? 200000 : -1;
    }
    uint32_t n = w->npubq;
    w->npubq = 0;
    for (uint32_t i = 0; i < n; i++) {
        struct lg_conn *c = &w->conns[w->pubq[i]];
        c->queued = 0;
        while (c->state == ST_READY && window_open(w, c))
            publish(w, c);
    }
    if (!n && w->now - w->last_progress > STALL_NS)
        write_off(w);
    return -1;
}
