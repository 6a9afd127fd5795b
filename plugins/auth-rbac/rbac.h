/* auth-rbac: what the plugin's files share, and what its unit tests reach besides the
 * descriptor. Hidden: the module exports only arq_plugin_v1 (entry.c). */
#ifndef ARQ_AUTH_RBAC_RBAC_H
#define ARQ_AUTH_RBAC_RBAC_H

#include <arqonbus/plugin.h>
#include <stddef.h>
#include <stdint.h>

/* The descriptor (entry.c returns it from the exported symbol). */
extern const struct arq_plugin rbac_descriptor;

/* How often `start` arranges for idle buckets to be freed. */
#define RBAC_SWEEP_MS 10000

/* Replace the instance's clock (CLOCK_MONOTONIC, in microseconds) with `now_us(arg)`: tests
 * drive time by hand. */
void rbac_set_clock(void *self, int64_t (*now_us)(void *arg), void *arg);

/* Clients and subjects whose buckets the instance holds. */
size_t rbac_tracked_clients(void *self);
size_t rbac_tracked_subjects(void *self);

#endif
