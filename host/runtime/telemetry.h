/* The telemetry queue: a bounded ring of copied events, drained to the sinks in batches from
 * a uv_check handle (after I/O, never inside the routing path). When it is full, new events
 * are dropped and counted. Loop thread only. */
#ifndef ARQ_HOST_TELEMETRY_H
#define ARQ_HOST_TELEMETRY_H

#include <arqonbus/plugin.h>
#include <stddef.h>
#include <stdint.h>

struct telemetry;

/* Deliver one batch to every sink; provided by the caller (the host walks its sinks). */
typedef void (*telemetry_deliver_fn)(void *arg, const struct arq_event *const *events, size_t n);

/* `capacity` events at most are queued; batches hold at most `batch` events. */
struct telemetry *telemetry_new(size_t capacity, size_t batch, telemetry_deliver_fn deliver,
                                void *arg);
void telemetry_free(struct telemetry *t);
/* Copy `ev` into the queue (strings duplicated, data increfed; timestamp filled when 0,
 * node and source set from the arguments when not NULL). Returns 0; ARQ_ELIMIT (queue full)
 * or ARQ_ENOMEM when dropped, both counted; ARQ_EINVAL without an event type (not counted). */
int telemetry_push(struct telemetry *t, const struct arq_event *ev, const char *node,
                   const char *source);
/* Deliver everything queued, in batches, in order. */
void telemetry_drain(struct telemetry *t);
size_t telemetry_queued(const struct telemetry *t);
uint64_t telemetry_dropped(const struct telemetry *t);
/* Change the capacity (events already queued beyond it are kept until drained). */
void telemetry_set_limits(struct telemetry *t, size_t capacity, size_t batch);

/* The event as JSON text, as documented for arq_host.event_json. malloc'd, or NULL. */
char *telemetry_event_json(const struct arq_event *ev);

#endif
