/* A strict parser of the Prometheus text exposition format 0.0.4, for tests: what a scraper
 * would accept, plus the conventions we promise (every family has HELP and TYPE, counters end
 * in _total, histograms are cumulative and end with +Inf = _count).
 *
 * Ownership: a struct prom_doc owns everything in it; prom_free releases it. */
#ifndef ARQ_TEST_PROM_PARSE_H
#define ARQ_TEST_PROM_PARSE_H

#include <stddef.h>

struct prom_family {
    char *name;
    char *help; /* unescaped; NULL without a HELP line */
    char *type; /* "counter", "gauge", "histogram", "summary", "untyped"; NULL without TYPE */
};

struct prom_sample {
    char *name;    /* as written: foo_total, foo_bucket, ... */
    size_t family; /* index into prom_doc.families */
    size_t nlabels;
    char **label_names;
    char **label_values; /* unescaped */
    double value;
};

struct prom_doc {
    struct prom_family *families;
    size_t nfamilies;
    struct prom_sample *samples;
    size_t nsamples;
};

/* Parse `text`: 0, or -1 with "line N: what" in err (the doc is then empty). Syntax checked:
 * names, label escapes (\\ \" \n only), numbers (+Inf, -Inf, NaN), optional timestamps, one
 * HELP and one TYPE per family before its samples, the lines of a family kept together, no
 * duplicate series. */
int prom_parse(const char *text, struct prom_doc *doc, char *err, size_t errsz);
/* Our conventions on a parsed document: 0, or -1 with the reason in err. Every family has
 * HELP and TYPE; counter families end in _total; histogram series have ascending `le`
 * buckets with non-decreasing counts, a +Inf bucket equal to _count, and a _sum. */
int prom_check(const struct prom_doc *doc, char *err, size_t errsz);
void prom_free(struct prom_doc *doc);

const struct prom_family *prom_family(const struct prom_doc *doc, const char *name);
/* The value of the sample `name` whose labels include every given pair ("name", "value", ...,
 * NULL); with several matches, their sum. Returns the number of samples that matched. */
size_t prom_value(const struct prom_doc *doc, double *value, const char *name, ...);

#endif
