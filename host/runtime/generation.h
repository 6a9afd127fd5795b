/* Configuration generations. A reload builds the next generation aside (modules loaded,
 * options validated, changed instances created), then commits it on the loop thread:
 * RELOADABLE-only changes go to `reconfigure`, new instances start (taking over from the
 * instance they replace), and the instances that were replaced or removed are stopped and
 * destroyed. Any failure before the swap leaves the running generation exactly as it was. */
#ifndef ARQ_HOST_GENERATION_H
#define ARQ_HOST_GENERATION_H

#include <stddef.h>

#include "config.h"
#include "diag.h"

struct host;
struct arq_ctx;

struct generation {
    unsigned id;
    struct config *conf;
    struct arq_ctx **inst; /* in start order */
    size_t n;
};

enum plan_action { PLAN_CARRY = 0, PLAN_RECONFIGURE, PLAN_REPLACE, PLAN_ADD };

struct plan_entry {
    enum plan_action action;
    struct arq_ctx *ctx; /* the instance in the next generation                             */
    struct arq_ctx *old; /* the running instance with the same name, or NULL                */
    json_t *cfg;         /* validated config for the next generation                        */
    json_t *old_cfg;     /* during commit: the config a reconfigured instance had           */
};

struct plan {
    struct generation *next;
    struct plan_entry *entries; /* parallel to next->inst                                   */
    size_t n;                   /* entries                                                   */
    struct arq_ctx **removed;   /* running instances absent from the next generation         */
    size_t nremoved;
    size_t counts[4]; /* per action                                                */
};

/* Build the next generation from `conf` (taking ownership of it) against `cur` (NULL: none).
 * 0 and a plan, or -1 with every problem in diags (nothing running was touched). */
int generation_prepare(struct host *h, struct config *conf, const struct generation *cur,
                       struct plan *plan, struct diag_list *diags);
/* Apply a prepared plan: reconfigure, start, swap into *cur, retire. The plan is freed
 * either way (its counts stay readable). On failure everything is rolled back and -1
 * returned with the reason in diags. */
int generation_commit(struct plan *plan, struct generation **cur, struct diag_list *diags);
/* Throw away a prepared plan (destroys the instances it created). */
void generation_abort(struct plan *plan);

/* Stop (reverse start order) and destroy every instance; free the generation. */
void generation_retire_all(struct generation *g);
struct arq_ctx *generation_find(const struct generation *g, const char *name);
/* "carried", "reconfigured", "replaced", "added". */
const char *generation_action_name(enum plan_action a);

#endif
