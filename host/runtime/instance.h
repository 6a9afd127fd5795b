/* A plugin instance: the host's record of one `plugins:` entry brought to life. This is the
 * `arq_ctx` plugins hold; it owns every timer, metric reference and pending post the
 * instance registered, and releases them when the instance is destroyed. */
#ifndef ARQ_HOST_INSTANCE_H
#define ARQ_HOST_INSTANCE_H

#include <arqonbus/plugin.h>
#include <jansson.h>
#include <stdatomic.h>

#include "loader.h"

struct host;
struct arq_timer;

struct arq_ctx {
    struct host *host;
    void *app; /* the layer above the runtime (the bus), as its hooks registered it   */
    char *name;
    struct module *mod; /* NULL for the host's own context                               */
    json_t *cfg;        /* validated configuration in force                              */
    void *self;         /* the plugin's instance                                         */
    char *where;        /* "file:line:col" of the declaration                            */
    char *who;          /* `plugin "name" (module as-written)`, for messages             */
    int created, started, dead;
    int held;                      /* retired, kept alive by retire_hold until released     */
    struct arq_ctx *retiring_next; /* the host's list of held instances                    */
    atomic_int refs; /* the generation's reference plus one per pending post           */
    unsigned born;   /* generation that created it                                    */
    struct arq_timer *timers;
    arq_metric **metrics;
    size_t nmetrics, metrics_cap;
};

/* A new context taking ownership of `cfg` (one reference). `module` is the module as the
 * configuration names it. NULL on allocation failure. */
struct arq_ctx *instance_new(struct host *h, const char *name, const char *module,
                             struct module *mod, json_t *cfg, const char *where);
void instance_ref(struct arq_ctx *ctx);
void instance_unref(struct arq_ctx *ctx);

int instance_create(struct arq_ctx *ctx, struct arq_error *err);
int instance_start(struct arq_ctx *ctx, struct arq_ctx *predecessor, struct arq_error *err);
/* Apply `cfg` (only RELOADABLE options changed); on success the context holds cfg. */
int instance_reconfigure(struct arq_ctx *ctx, json_t *cfg, struct arq_error *err);
void instance_stop(struct arq_ctx *ctx);
/* After instance_stop of a retired instance: destroy it, or, when its `stop` called
 * retire_hold, keep it on the host's retiring list until retire_release. */
void instance_retire(struct arq_ctx *ctx);
/* Destroy the plugin's instance and release what the context owns; drops the generation's
 * reference. */
void instance_destroy(struct arq_ctx *ctx);

/* Order in which kinds start (stop is the reverse): sinks first, transports last. */
int instance_start_rank(const struct arq_ctx *ctx);
const char *instance_kind(const struct arq_ctx *ctx);
const char *instance_module(const struct arq_ctx *ctx);
/* "healthy", "degraded" or "down" (storage and broker tables report it; others are healthy
 * while started), or "stopped"; *detail says why when the plugin says. */
const char *instance_health(const struct arq_ctx *ctx, const char **detail);

/* Record a metric reference to release at destroy. 0 or -1. */
int instance_own_metric(struct arq_ctx *ctx, arq_metric *m);
/* Stop and free every timer of the instance (also used by the timer service). */
void instance_stop_timers(struct arq_ctx *ctx);

#endif
