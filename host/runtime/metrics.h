/* The metrics registry: counters, gauges and histograms with labels, rendered in the
 * Prometheus text exposition format 0.0.4. Loop thread only. Families are refcounted by the
 * instances that registered them, so a replaced instance continues the same series, and a
 * family disappears when its last owner is gone. */
#ifndef ARQ_HOST_METRICS_H
#define ARQ_HOST_METRICS_H

#include <arqonbus/plugin.h>
#include <stddef.h>

struct metrics;

struct metrics *metrics_new(void);
/* Frees every family, whatever its references. */
void metrics_free(struct metrics *reg);

/* Find or create a family and take a reference. NULL if the name or a label name is not a
 * valid Prometheus name, if it exists with another type/labels/buckets, if buckets are not
 * strictly ascending, or on allocation failure. `help` of an existing family is kept. A
 * histogram with buckets == NULL gets the default latency buckets (seconds):
 * .0005 .001 .0025 .005 .01 .025 .05 .1 .25 .5 1 2.5 5 10. */
arq_metric *metrics_register(struct metrics *reg, enum arq_metric_type type, const char *name,
                             const char *help, const char *const *label_names,
                             const double *buckets, size_t nbuckets);
/* Drop a reference taken by metrics_register; the family is removed at zero. */
void metrics_release(struct metrics *reg, arq_metric *m);

arq_series *metrics_series(arq_metric *m, const char *const *label_values);
void metrics_add(arq_series *s, double v);
void metrics_set(arq_series *s, double v);
void metrics_observe(arq_series *s, double v);
/* Current value of a counter or gauge series (histograms: the count). For tests/status. */
double metrics_value(const arq_series *s);

/* Families sorted by name; series in creation order; label values escaped (\\, \", \n);
 * HELP escaped (\\, \n); histograms as _bucket{le=...} (cumulative, with +Inf), _sum,
 * _count. Numbers: integers without a fraction, others in the shortest form that reads back
 * as the same double; +Inf/-Inf/NaN spelled as Prometheus does. Returns malloc'd text or
 * NULL. */
char *metrics_render(const struct metrics *reg);

#endif
