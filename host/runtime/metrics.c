/* The metrics registry. Families live in one list kept sorted by name, so rendering needs no
 * sort; series hang off their family in creation order. Registration and series lookup are
 * linear (they run once, the caller keeps the pointer); add/set/observe touch only the
 * series. */
#include "metrics.h"

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

struct arq_series {
    struct arq_metric *family;
    struct arq_series *next;
    char **values; /* family->nlabels label values */
    double value;  /* counter, gauge */
    double sum;    /* histogram */
    uint64_t count;
    /* Histogram: observations per bucket, not cumulative, so that observe touches one slot;
     * the +Inf bucket is `count`. */
    uint64_t buckets[];
};

struct arq_metric {
    struct arq_metric *next;
    enum arq_metric_type type;
    char *name;
    char *help; /* NULL: no HELP line */
    char **labels;
    size_t nlabels;
    double *bounds; /* histogram upper bounds, ascending, without +Inf */
    size_t nbounds;
    struct arq_series *first, *last;
    size_t refs;
};

struct metrics {
    struct arq_metric *families; /* sorted by name */
};

static const double metrics__default_bounds[] = {.0005, .001, .0025, .005, .01, .025, .05,
                                                 .1,    .25,  .5,    1,    2.5, 5,    10};

/* ---- validation ------------------------------------------------------------------------- */

static int metrics__valid_name(const char *s, int colon_ok)
{
    if (!s || !*s)
        return 0;
    for (const char *p = s; *p; p++) {
        char c = *p;
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
                 (colon_ok && c == ':') || (p != s && c >= '0' && c <= '9');
        if (!ok)
            return 0;
    }
    return 1;
}

static arq_metric *metrics__refuse(const char *name, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static arq_metric *metrics__refuse(const char *name, const char *fmt, ...)
{
    char reason[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof reason, fmt, ap);
    va_end(ap);
    LOG_ERROR("metric registration refused", "metric", name ? name : "(null)", "reason", reason);
    return NULL;
}

static int metrics__has_suffix(const char *s, const char *suffix, size_t *stem)
{
    size_t n = strlen(s), k = strlen(suffix);
    if (n <= k || strcmp(s + n - k, suffix) != 0)
        return 0;
    *stem = n - k;
    return 1;
}

static struct arq_metric *metrics__find(const struct metrics *reg, const char *name, size_t len)
{
    for (struct arq_metric *m = reg->families; m; m = m->next)
        if (strncmp(m->name, name, len) == 0 && m->name[len] == '\0')
            return m;
    return NULL;
}

/* A histogram `h` exposes h_bucket, h_sum and h_count; a family with one of those names would
 * make the exposition ambiguous, whichever is registered first. */
static const char *metrics__name_clash(const struct metrics *reg, enum arq_metric_type type,
                                       const char *name)
{
    static const char *const suffixes[] = {"_bucket", "_sum", "_count"};
    for (size_t i = 0; i < sizeof suffixes / sizeof suffixes[0]; i++) {
        size_t stem;
        if (metrics__has_suffix(name, suffixes[i], &stem)) {
            struct arq_metric *h = metrics__find(reg, name, stem);
            if (h && h->type == ARQ_METRIC_HISTOGRAM)
                return h->name;
        }
        if (type == ARQ_METRIC_HISTOGRAM) {
            for (struct arq_metric *m = reg->families; m; m = m->next)
                if (metrics__has_suffix(m->name, suffixes[i], &stem) && stem == strlen(name) &&
                    strncmp(m->name, name, stem) == 0)
                    return m->name;
        }
    }
    return NULL;
}

static int metrics__same_shape(const struct arq_metric *m, enum arq_metric_type type,
                               const char *const *labels, size_t nlabels, const double *bounds,
                               size_t nbounds)
{
    if (m->type != type || m->nlabels != nlabels || m->nbounds != nbounds)
        return 0;
    for (size_t i = 0; i < nlabels; i++)
        if (strcmp(m->labels[i], labels[i]) != 0)
            return 0;
    for (size_t i = 0; i < nbounds; i++)
        if (m->bounds[i] != bounds[i])
            return 0;
    return 1;
}

/* ---- registry ----------------------------------------------------------------------------- */

struct metrics *metrics_new(void)
{
    struct metrics *reg = calloc(1, sizeof *reg);
    if (!reg)
        LOG_ERROR("out of memory", "where", "metrics_new");
    return reg;
}

static void metrics__series_free(struct arq_series *s, size_t nlabels)
{
    if (!s)
        return;
    if (s->values)
        for (size_t i = 0; i < nlabels; i++)
            free(s->values[i]);
    free(s->values);
    free(s);
}

static void metrics__family_free(struct arq_metric *m)
{
    if (!m)
        return;
    struct arq_series *s = m->first;
    while (s) {
        struct arq_series *next = s->next;
        metrics__series_free(s, m->nlabels);
        s = next;
    }
    if (m->labels)
        for (size_t i = 0; i < m->nlabels; i++)
            free(m->labels[i]);
    free(m->labels);
    free(m->bounds);
    free(m->help);
    free(m->name);
    free(m);
}

void metrics_free(struct metrics *reg)
{
    if (!reg)
        return;
    struct arq_metric *m = reg->families;
    while (m) {
        struct arq_metric *next = m->next;
        metrics__family_free(m);
        m = next;
    }
    free(reg);
}

arq_metric *metrics_register(struct metrics *reg, enum arq_metric_type type, const char *name,
                             const char *help, const char *const *label_names,
                             const double *buckets, size_t nbuckets)
{
    static const char *const no_labels[] = {NULL};
    struct arq_metric *m = NULL;

    if (!reg)
        return NULL;
    if (type != ARQ_METRIC_COUNTER && type != ARQ_METRIC_GAUGE && type != ARQ_METRIC_HISTOGRAM)
        return metrics__refuse(name, "unknown metric type %d", (int)type);
    if (!metrics__valid_name(name, 1))
        return metrics__refuse(name, "invalid metric name (want [a-zA-Z_:][a-zA-Z0-9_:]*)");

    if (!label_names)
        label_names = no_labels;
    size_t nlabels = 0;
    for (; label_names[nlabels]; nlabels++) {
        const char *l = label_names[nlabels];
        if (!metrics__valid_name(l, 0))
            return metrics__refuse(name, "invalid label name \"%s\" (want [a-zA-Z_][a-zA-Z0-9_]*)",
                                   l);
        if (l[0] == '_' && l[1] == '_')
            return metrics__refuse(name, "label name \"%s\": names starting with __ are reserved",
                                   l);
        if (type == ARQ_METRIC_HISTOGRAM && strcmp(l, "le") == 0)
            return metrics__refuse(name, "label name \"le\" is reserved for histogram buckets");
        for (size_t j = 0; j < nlabels; j++)
            if (strcmp(label_names[j], l) == 0)
                return metrics__refuse(name, "duplicate label name \"%s\"", l);
    }

    const double *bounds = NULL;
    size_t nbounds = 0;
    if (type == ARQ_METRIC_HISTOGRAM) {
        if (buckets) {
            bounds = buckets;
            nbounds = nbuckets;
        } else {
            bounds = metrics__default_bounds;
            nbounds = sizeof metrics__default_bounds / sizeof metrics__default_bounds[0];
        }
        for (size_t i = 0; i < nbounds; i++) {
            if (isnan(bounds[i]) || (i > 0 && !(bounds[i - 1] < bounds[i])))
                return metrics__refuse(name, "histogram buckets must be strictly ascending");
        }
        /* +Inf is always rendered; a trailing +Inf given by the caller would repeat it. */
        if (nbounds > 0 && isinf(bounds[nbounds - 1]) && bounds[nbounds - 1] > 0)
            nbounds--;
        if (nbounds > (SIZE_MAX - sizeof(struct arq_series)) / sizeof(uint64_t))
            return metrics__refuse(name, "too many histogram buckets");
    }

    m = metrics__find(reg, name, strlen(name));
    if (m) {
        if (!metrics__same_shape(m, type, label_names, nlabels, bounds, nbounds))
            return metrics__refuse(name, "already registered with another type, labels or buckets");
        m->refs++;
        return m;
    }
    const char *clash = metrics__name_clash(reg, type, name);
    if (clash)
        return metrics__refuse(name, "name clashes with the series of histogram family \"%s\"",
                               clash);

    m = calloc(1, sizeof *m);
    if (!m)
        goto fail;
    m->type = type;
    m->refs = 1;
    m->name = strdup(name);
    if (!m->name)
        goto fail;
    if (help) {
        m->help = strdup(help);
        if (!m->help)
            goto fail;
    }
    if (nlabels > 0) {
        m->labels = calloc(nlabels, sizeof *m->labels);
        if (!m->labels)
            goto fail;
        m->nlabels = nlabels;
        for (size_t i = 0; i < nlabels; i++) {
            m->labels[i] = strdup(label_names[i]);
            if (!m->labels[i])
                goto fail;
        }
    }
    if (nbounds > 0) {
        m->bounds = malloc(nbounds * sizeof *m->bounds);
        if (!m->bounds)
            goto fail;
        memcpy(m->bounds, bounds, nbounds * sizeof *m->bounds);
        m->nbounds = nbounds;
    }

    struct arq_metric **at = &reg->families;
    while (*at && strcmp((*at)->name, name) < 0)
        at = &(*at)->next;
    m->next = *at;
    *at = m;
    return m;

fail:
    metrics__family_free(m);
    LOG_ERROR("out of memory", "where", "metrics_register", "metric", name);
    return NULL;
}

void metrics_release(struct metrics *reg, arq_metric *m)
{
    if (!reg || !m)
        return;
    struct arq_metric **at = &reg->families;
    while (*at && *at != m)
        at = &(*at)->next;
    if (!*at) {
        LOG_ERROR("metric release of a family that is not registered", "metric", m->name);
        return;
    }
    if (--m->refs > 0)
        return;
    *at = m->next;
    metrics__family_free(m);
}

/* ---- series ------------------------------------------------------------------------------- */

arq_series *metrics_series(arq_metric *m, const char *const *label_values)
{
    struct arq_series *s = NULL;

    if (!m)
        return NULL;
    /* label_values is not NULL-terminated by contract, so only a short list is detectable. */
    int wrong = m->nlabels == 0 ? (label_values && label_values[0]) : !label_values;
    for (size_t i = 0; !wrong && i < m->nlabels; i++)
        wrong = !label_values[i];
    if (wrong) {
        char want[32];
        snprintf(want, sizeof want, "%zu", m->nlabels);
        LOG_ERROR("metric series refused: wrong number of label values", "metric", m->name,
                  "expected", want);
        return NULL;
    }

    for (s = m->first; s; s = s->next) {
        size_t i = 0;
        while (i < m->nlabels && strcmp(s->values[i], label_values[i]) == 0)
            i++;
        if (i == m->nlabels)
            return s;
    }

    s = calloc(1, sizeof *s + m->nbounds * sizeof s->buckets[0]);
    if (!s)
        goto fail;
    s->family = m;
    if (m->nlabels > 0) {
        s->values = calloc(m->nlabels, sizeof *s->values);
        if (!s->values)
            goto fail;
        for (size_t i = 0; i < m->nlabels; i++) {
            s->values[i] = strdup(label_values[i]);
            if (!s->values[i])
                goto fail;
        }
    }
    if (m->last)
        m->last->next = s;
    else
        m->first = s;
    m->last = s;
    return s;

fail:
    metrics__series_free(s, m->nlabels);
    LOG_ERROR("out of memory", "where", "metrics_series", "metric", m->name);
    return NULL;
}

/* The hot path: misuse (a negative counter increment, set on a counter, observe on a gauge)
 * is ignored rather than logged, which would flood the log at message rate. A NULL series
 * (its lookup failed and was logged) is a no-op. */
void metrics_add(arq_series *s, double v)
{
    if (!s)
        return;
    if (s->family->type == ARQ_METRIC_COUNTER) {
        if (v >= 0)
            s->value += v;
    } else if (s->family->type == ARQ_METRIC_GAUGE) {
        s->value += v;
    }
}

void metrics_set(arq_series *s, double v)
{
    if (s && s->family->type == ARQ_METRIC_GAUGE)
        s->value = v;
}

void metrics_observe(arq_series *s, double v)
{
    if (!s || s->family->type != ARQ_METRIC_HISTOGRAM)
        return;
    const struct arq_metric *m = s->family;
    size_t i = 0;
    while (i < m->nbounds && !(v <= m->bounds[i])) /* NaN lands in +Inf only */
        i++;
    if (i < m->nbounds)
        s->buckets[i]++;
    s->count++;
    s->sum += v;
}

double metrics_value(const arq_series *s)
{
    if (!s)
        return 0;
    if (s->family->type == ARQ_METRIC_HISTOGRAM)
        return (double)s->count;
    return s->value;
}

/* ---- rendering ---------------------------------------------------------------------------- */

struct metrics__buf {
    char *p;
    size_t len, cap;
    int oom;
};

static void metrics__put(struct metrics__buf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->cap - b->len <= n) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap - b->len <= n) {
            if (cap > SIZE_MAX / 2) {
                b->oom = 1;
                return;
            }
            cap *= 2;
        }
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void metrics__puts(struct metrics__buf *b, const char *s)
{
    metrics__put(b, s, strlen(s));
}

/* `in_label`: label values escape \ " and newline; HELP text escapes \ and newline. */
static void metrics__put_escaped(struct metrics__buf *b, const char *s, int in_label)
{
    const char *run = s;
    for (; *s; s++) {
        const char *esc = NULL;
        if (*s == '\\')
            esc = "\\\\";
        else if (*s == '\n')
            esc = "\\n";
        else if (*s == '"' && in_label)
            esc = "\\\"";
        if (esc) {
            metrics__put(b, run, (size_t)(s - run));
            metrics__puts(b, esc);
            run = s + 1;
        }
    }
    metrics__put(b, run, (size_t)(s - run));
}

/* Integers print without a fraction; other values use the shortest of %.1g..%.17g that reads
 * back as the same double, so bucket bounds look like le="0.005", not 0.0050000000000000001. */
static void metrics__format_num(char *out, size_t size, double v)
{
    if (isnan(v)) {
        snprintf(out, size, "NaN");
    } else if (isinf(v)) {
        snprintf(out, size, v > 0 ? "+Inf" : "-Inf");
    } else if (v == 0) {
        snprintf(out, size, "0");
    } else if (v == trunc(v) && fabs(v) <= 9007199254740992.0) {
        snprintf(out, size, "%.0f", v);
    } else {
        for (int prec = 1; prec <= 17; prec++) {
            snprintf(out, size, "%.*g", prec, v);
            if (strtod(out, NULL) == v)
                break;
        }
    }
}

static void metrics__put_num(struct metrics__buf *b, double v)
{
    char num[64];
    metrics__format_num(num, sizeof num, v);
    metrics__puts(b, num);
}

static void metrics__put_u64(struct metrics__buf *b, uint64_t v)
{
    char num[32];
    snprintf(num, sizeof num, "%llu", (unsigned long long)v);
    metrics__puts(b, num);
}

/* `{l1="v1",...,le="x"}`, or nothing without labels. `s` NULL: the family has no series. */
static void metrics__put_labels(struct metrics__buf *b, const struct arq_metric *m,
                                const struct arq_series *s, const char *le)
{
    if ((!s || m->nlabels == 0) && !le)
        return;
    metrics__puts(b, "{");
    for (size_t i = 0; s && i < m->nlabels; i++) {
        if (i > 0)
            metrics__puts(b, ",");
        metrics__puts(b, m->labels[i]);
        metrics__puts(b, "=\"");
        metrics__put_escaped(b, s->values[i], 1);
        metrics__puts(b, "\"");
    }
    if (le) {
        if (s && m->nlabels > 0)
            metrics__puts(b, ",");
        metrics__puts(b, "le=\"");
        metrics__puts(b, le);
        metrics__puts(b, "\"");
    }
    metrics__puts(b, "}");
}

static void metrics__put_series(struct metrics__buf *b, const struct arq_metric *m,
                                const struct arq_series *s)
{
    if (m->type != ARQ_METRIC_HISTOGRAM) {
        metrics__puts(b, m->name);
        metrics__put_labels(b, m, s, NULL);
        metrics__puts(b, " ");
        metrics__put_num(b, s ? s->value : 0);
        metrics__puts(b, "\n");
        return;
    }
    uint64_t cumulative = 0;
    for (size_t i = 0; i <= m->nbounds; i++) {
        char le[64];
        if (i < m->nbounds) {
            metrics__format_num(le, sizeof le, m->bounds[i]);
            cumulative += s ? s->buckets[i] : 0;
        } else {
            snprintf(le, sizeof le, "+Inf");
            cumulative = s ? s->count : 0;
        }
        metrics__puts(b, m->name);
        metrics__puts(b, "_bucket");
        metrics__put_labels(b, m, s, le);
        metrics__puts(b, " ");
        metrics__put_u64(b, cumulative);
        metrics__puts(b, "\n");
    }
    metrics__puts(b, m->name);
    metrics__puts(b, "_sum");
    metrics__put_labels(b, m, s, NULL);
    metrics__puts(b, " ");
    metrics__put_num(b, s ? s->sum : 0);
    metrics__puts(b, "\n");
    metrics__puts(b, m->name);
    metrics__puts(b, "_count");
    metrics__put_labels(b, m, s, NULL);
    metrics__puts(b, " ");
    metrics__put_u64(b, s ? s->count : 0);
    metrics__puts(b, "\n");
}

char *metrics_render(const struct metrics *reg)
{
    static const char *const type_names[] = {[ARQ_METRIC_COUNTER] = "counter",
                                             [ARQ_METRIC_GAUGE] = "gauge",
                                             [ARQ_METRIC_HISTOGRAM] = "histogram"};
    struct metrics__buf b = {0};

    if (!reg)
        return NULL;
    metrics__put(&b, "", 0); /* an empty registry renders "", not NULL */
    for (const struct arq_metric *m = reg->families; m; m = m->next) {
        if (m->help) {
            metrics__puts(&b, "# HELP ");
            metrics__puts(&b, m->name);
            metrics__puts(&b, " ");
            metrics__put_escaped(&b, m->help, 0);
            metrics__puts(&b, "\n");
        }
        metrics__puts(&b, "# TYPE ");
        metrics__puts(&b, m->name);
        metrics__puts(&b, " ");
        metrics__puts(&b, type_names[m->type]);
        metrics__puts(&b, "\n");
        /* A family without labels shows its zero value before first use, so dashboards and
         * alerts see it at once; labelled families cannot guess their label values. */
        if (!m->first && m->nlabels == 0)
            metrics__put_series(&b, m, NULL);
        for (const struct arq_series *s = m->first; s; s = s->next)
            metrics__put_series(&b, m, s);
    }
    if (b.oom) {
        free(b.p);
        LOG_ERROR("out of memory", "where", "metrics_render");
        return NULL;
    }
    return b.p;
}
