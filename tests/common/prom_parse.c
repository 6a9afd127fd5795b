/* A strict parser of the Prometheus text format 0.0.4, for tests (see prom_parse.h). */
#include "prom_parse.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct parser {
    const char *p;
    int line;
    char *err;
    size_t errsz;
    struct prom_doc *doc;
    long current; /* the family whose lines are being read, or -1 */
    char *seen;   /* families whose group has ended (may not come back) */
};

static int perr(struct parser *ps, const char *fmt, ...)
{
    char what[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    snprintf(ps->err, ps->errsz, "line %d: %s", ps->line, what);
    return -1;
}

static int name_start(int c, int colon)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (colon && c == ':');
}

static int name_char(int c, int colon)
{
    return name_start(c, colon) || (c >= '0' && c <= '9');
}

/* A metric name (colon allowed) or label name at ps->p: malloc'd, or NULL. */
static char *read_name(struct parser *ps, int colon)
{
    const char *s = ps->p;
    if (!name_start((unsigned char)*s, colon))
        return NULL;
    while (name_char((unsigned char)*ps->p, colon))
        ps->p++;
    return strndup(s, (size_t)(ps->p - s));
}

/* An escaped string up to `end` (a quote, or the end of the line for HELP); `quote_ok` says
 * whether \" is a valid escape. */
static char *read_escaped(struct parser *ps, int quoted)
{
    size_t cap = 64, n = 0;
    char *out = malloc(cap);
    if (!out)
        return NULL;
    for (;;) {
        char c = *ps->p;
        if (!c || c == '\n') {
            if (quoted) {
                free(out);
                perr(ps, "unterminated label value");
                return NULL;
            }
            break;
        }
        if (quoted && c == '"') {
            ps->p++;
            break;
        }
        ps->p++;
        if (c == '\\') {
            char e = *ps->p++;
            if (e == 'n')
                c = '\n';
            else if (e == '\\')
                c = '\\';
            else if (e == '"' && quoted)
                c = '"';
            else {
                free(out);
                perr(ps, "invalid escape \\%c", e ? e : '0');
                return NULL;
            }
        }
        if (n + 2 > cap) {
            char *o = realloc(out, cap *= 2);
            if (!o) {
                free(out);
                return NULL;
            }
            out = o;
        }
        out[n++] = c;
    }
    out[n] = '\0';
    return out;
}

static int parse_number(const char *s, size_t len, double *v)
{
    char buf[64];
    if (!len || len >= sizeof buf)
        return -1;
    memcpy(buf, s, len);
    buf[len] = '\0';
    if (!strcmp(buf, "+Inf") || !strcmp(buf, "Inf")) {
        *v = INFINITY;
        return 0;
    }
    if (!strcmp(buf, "-Inf")) {
        *v = -INFINITY;
        return 0;
    }
    if (!strcmp(buf, "NaN")) {
        *v = NAN;
        return 0;
    }
    char *end;
    *v = strtod(buf, &end);
    /* strtod also takes "inf", "nan" and hex: the format does not. */
    if (*end || strpbrk(buf, "xXiInN"))
        return -1;
    return 0;
}

static long family_index(const struct prom_doc *doc, const char *name)
{
    for (size_t i = 0; i < doc->nfamilies; i++)
        if (!strcmp(doc->families[i].name, name))
            return (long)i;
    return -1;
}

/* Enter family `name` (creating it): its lines must be contiguous. */
static long enter_family(struct parser *ps, const char *name)
{
    struct prom_doc *doc = ps->doc;
    long i = family_index(doc, name);
    if (i >= 0 && i == ps->current)
        return i;
    if (i >= 0 && ps->seen[i]) {
        perr(ps, "lines of family %s are not kept together", name);
        return -1;
    }
    if (ps->current >= 0)
        ps->seen[ps->current] = 1;
    if (i < 0) {
        struct prom_family *f = realloc(doc->families, (doc->nfamilies + 1) * sizeof *f);
        char *seen = realloc(ps->seen, doc->nfamilies + 1);
        if (f)
            doc->families = f;
        if (seen)
            ps->seen = seen;
        if (!f || !seen) {
            perr(ps, "out of memory");
            return -1;
        }
        i = (long)doc->nfamilies++;
        doc->families[i] = (struct prom_family){strdup(name), NULL, NULL};
        ps->seen[i] = 0;
    }
    ps->current = i;
    return i;
}

/* The family a sample belongs to: its own name, or, for _bucket/_sum/_count of a histogram
 * (and _sum/_count of a summary) declared before, that family. */
static long sample_family(struct parser *ps, const char *name)
{
    static const char *const suffixes[] = {"_bucket", "_sum", "_count", NULL};
    size_t n = strlen(name);
    for (size_t i = 0; suffixes[i]; i++) {
        size_t k = strlen(suffixes[i]);
        if (n <= k || strcmp(name + n - k, suffixes[i]) != 0)
            continue;
        char base[256];
        snprintf(base, sizeof base, "%.*s", (int)(n - k), name);
        long f = family_index(ps->doc, base);
        const char *type = f >= 0 ? ps->doc->families[f].type : NULL;
        if (type && (!strcmp(type, "histogram") || (!strcmp(type, "summary") && i > 0)))
            return enter_family(ps, base);
    }
    return enter_family(ps, name);
}

static int parse_comment(struct parser *ps)
{
    ps->p++; /* '#' */
    while (*ps->p == ' ' || *ps->p == '\t')
        ps->p++;
    int help = !strncmp(ps->p, "HELP ", 5), type = !strncmp(ps->p, "TYPE ", 5);
    if (!help && !type) {
        ps->p += strcspn(ps->p, "\n"); /* an ordinary comment */
        return 0;
    }
    ps->p += 5;
    char *name = read_name(ps, 1);
    if (!name)
        return perr(ps, "%s without a valid metric name", help ? "HELP" : "TYPE");
    long f = enter_family(ps, name);
    free(name);
    if (f < 0)
        return -1;
    struct prom_family *fam = &ps->doc->families[f];
    if (*ps->p != ' ' && *ps->p != '\n' && *ps->p)
        return perr(ps, "invalid character after the name of %s", fam->name);
    if (*ps->p == ' ')
        ps->p++;
    if (help) {
        if (fam->help)
            return perr(ps, "second HELP for %s", fam->name);
        if (!(fam->help = read_escaped(ps, 0)))
            return -1;
        return 0;
    }
    if (fam->type)
        return perr(ps, "second TYPE for %s", fam->name);
    for (size_t i = 0; i < ps->doc->nsamples; i++)
        if (ps->doc->samples[i].family == (size_t)f)
            return perr(ps, "TYPE for %s after its samples", fam->name);
    size_t len = strcspn(ps->p, "\n");
    static const char *const types[] = {"counter", "gauge",   "histogram",
                                        "summary", "untyped", NULL};
    for (size_t i = 0; types[i]; i++)
        if (strlen(types[i]) == len && !strncmp(ps->p, types[i], len)) {
            fam->type = strdup(types[i]);
            ps->p += len;
            return 0;
        }
    return perr(ps, "unknown TYPE '%.*s'", (int)len, ps->p);
}

static int same_series(const struct prom_sample *a, const struct prom_sample *b)
{
    if (strcmp(a->name, b->name) != 0 || a->nlabels != b->nlabels)
        return 0;
    for (size_t i = 0; i < a->nlabels; i++) {
        size_t j = 0;
        while (j < b->nlabels && strcmp(a->label_names[i], b->label_names[j]) != 0)
            j++;
        if (j == b->nlabels || strcmp(a->label_values[i], b->label_values[j]) != 0)
            return 0;
    }
    return 1;
}

static void sample_free(struct prom_sample *s)
{
    free(s->name);
    for (size_t i = 0; i < s->nlabels; i++) {
        free(s->label_names[i]);
        free(s->label_values[i]);
    }
    free(s->label_names);
    free(s->label_values);
}

static int add_label(struct prom_sample *s, char *name, char *value)
{
    char **n = realloc(s->label_names, (s->nlabels + 1) * sizeof *n);
    if (n)
        s->label_names = n;
    char **v = realloc(s->label_values, (s->nlabels + 1) * sizeof *v);
    if (v)
        s->label_values = v;
    if (!n || !v)
        return -1;
    s->label_names[s->nlabels] = name;
    s->label_values[s->nlabels++] = value;
    return 0;
}

static int parse_labels(struct parser *ps, struct prom_sample *s)
{
    ps->p++; /* '{' */
    while (*ps->p != '}') {
        char *name = read_name(ps, 0);
        if (!name)
            return perr(ps, "invalid label name in %s", s->name);
        for (size_t i = 0; i < s->nlabels; i++)
            if (!strcmp(s->label_names[i], name)) {
                perr(ps, "label %s twice in %s", name, s->name);
                free(name);
                return -1;
            }
        if (ps->p[0] != '=' || ps->p[1] != '"') {
            free(name);
            return perr(ps, "expected =\" after a label name in %s", s->name);
        }
        ps->p += 2;
        char *value = read_escaped(ps, 1);
        if (!value || add_label(s, name, value) != 0) {
            free(name);
            free(value);
            return -1;
        }
        if (*ps->p == ',')
            ps->p++;
        else if (*ps->p != '}')
            return perr(ps, "expected , or } in the labels of %s", s->name);
    }
    ps->p++;
    return 0;
}

static int parse_sample(struct parser *ps)
{
    struct prom_sample s = {0};
    if (!(s.name = read_name(ps, 1)))
        return perr(ps, "invalid metric name");
    if (*ps->p == '{' && parse_labels(ps, &s) != 0)
        goto fail;
    if (*ps->p != ' ') {
        perr(ps, "expected a space before the value of %s", s.name);
        goto fail;
    }
    while (*ps->p == ' ')
        ps->p++;
    size_t len = strcspn(ps->p, " \n");
    if (parse_number(ps->p, len, &s.value) != 0) {
        perr(ps, "invalid value '%.*s' of %s", (int)len, ps->p, s.name);
        goto fail;
    }
    ps->p += len;
    if (*ps->p == ' ') { /* a timestamp: an integer in milliseconds */
        ps->p++;
        len = strcspn(ps->p, "\n");
        char *end;
        strtoll(ps->p, &end, 10);
        if (end != ps->p + len || !len) {
            perr(ps, "invalid timestamp of %s", s.name);
            goto fail;
        }
        ps->p += len;
    }
    long f = sample_family(ps, s.name);
    if (f < 0)
        goto fail;
    s.family = (size_t)f;
    struct prom_doc *doc = ps->doc;
    for (size_t i = 0; i < doc->nsamples; i++)
        if (same_series(&doc->samples[i], &s)) {
            perr(ps, "duplicate series of %s", s.name);
            goto fail;
        }
    struct prom_sample *all = realloc(doc->samples, (doc->nsamples + 1) * sizeof *all);
    if (!all) {
        perr(ps, "out of memory");
        goto fail;
    }
    doc->samples = all;
    doc->samples[doc->nsamples++] = s;
    return 0;
fail:
    sample_free(&s);
    return -1;
}

void prom_free(struct prom_doc *doc)
{
    for (size_t i = 0; i < doc->nfamilies; i++) {
        free(doc->families[i].name);
        free(doc->families[i].help);
        free(doc->families[i].type);
    }
    for (size_t i = 0; i < doc->nsamples; i++)
        sample_free(&doc->samples[i]);
    free(doc->families);
    free(doc->samples);
    memset(doc, 0, sizeof *doc);
}

int prom_parse(const char *text, struct prom_doc *doc, char *err, size_t errsz)
{
    memset(doc, 0, sizeof *doc);
    struct parser ps = {text, 1, err, errsz, doc, -1, NULL};
    int rc = 0;
    while (*ps.p && rc == 0) {
        if (*ps.p == '#')
            rc = parse_comment(&ps);
        else if (*ps.p != '\n')
            rc = parse_sample(&ps);
        if (rc == 0 && *ps.p && *ps.p != '\n')
            rc = perr(&ps, "unexpected '%c'", *ps.p);
        if (rc == 0 && *ps.p) {
            ps.p++;
            ps.line++;
        }
    }
    if (rc == 0 && text[0] && text[strlen(text) - 1] != '\n')
        rc = perr(&ps, "the last line does not end with a newline");
    free(ps.seen);
    if (rc != 0)
        prom_free(doc);
    return rc;
}

static const char *label(const struct prom_sample *s, const char *name)
{
    for (size_t i = 0; i < s->nlabels; i++)
        if (!strcmp(s->label_names[i], name))
            return s->label_values[i];
    return NULL;
}

/* The same labels except `le`. */
static int same_but_le(const struct prom_sample *a, const struct prom_sample *b)
{
    size_t na = a->nlabels - (label(a, "le") != NULL), nb = b->nlabels - (label(b, "le") != NULL);
    if (na != nb)
        return 0;
    for (size_t i = 0; i < a->nlabels; i++) {
        if (!strcmp(a->label_names[i], "le"))
            continue;
        const char *v = label(b, a->label_names[i]);
        if (!v || strcmp(v, a->label_values[i]) != 0)
            return 0;
    }
    return 1;
}

/* One histogram series: `first` is one of its _bucket samples. */
static int check_histogram(const struct prom_doc *doc, const struct prom_family *f,
                           const struct prom_sample *first, char *err, size_t errsz)
{
    char bucket[256], sum[256], count[256];
    snprintf(bucket, sizeof bucket, "%s_bucket", f->name);
    snprintf(sum, sizeof sum, "%s_sum", f->name);
    snprintf(count, sizeof count, "%s_count", f->name);
    double prev_le = -INFINITY, prev_count = 0, inf_count = -1;
    int have_sum = 0, have_count = 0;
    double count_value = 0;
    for (size_t i = 0; i < doc->nsamples; i++) {
        const struct prom_sample *s = &doc->samples[i];
        if (!same_but_le(s, first))
            continue;
        if (!strcmp(s->name, bucket)) {
            const char *le = label(s, "le");
            double v;
            if (!le || parse_number(le, strlen(le), &v) != 0 || !(v > prev_le)) {
                snprintf(err, errsz, "%s: buckets not in ascending le order (le=%s)", f->name,
                         le ? le : "missing");
                return -1;
            }
            if (s->value < prev_count) {
                snprintf(err, errsz, "%s: bucket le=%s is not cumulative", f->name, le);
                return -1;
            }
            prev_le = v;
            prev_count = s->value;
            if (isinf(v))
                inf_count = s->value;
        } else if (!strcmp(s->name, sum)) {
            have_sum = 1;
        } else if (!strcmp(s->name, count)) {
            have_count = 1;
            count_value = s->value;
        }
    }
    if (inf_count < 0 || !have_sum || !have_count) {
        snprintf(err, errsz, "%s: a series lacks its +Inf bucket, _sum or _count", f->name);
        return -1;
    }
    if (inf_count != count_value) {
        snprintf(err, errsz, "%s: +Inf bucket %g differs from _count %g", f->name, inf_count,
                 count_value);
        return -1;
    }
    return 0;
}

int prom_check(const struct prom_doc *doc, char *err, size_t errsz)
{
    for (size_t i = 0; i < doc->nfamilies; i++) {
        const struct prom_family *f = &doc->families[i];
        if (!f->help || !f->type) {
            snprintf(err, errsz, "%s has no %s line", f->name, f->help ? "TYPE" : "HELP");
            return -1;
        }
        size_t n = strlen(f->name);
        if (!strcmp(f->type, "counter") && (n < 6 || strcmp(f->name + n - 6, "_total") != 0)) {
            snprintf(err, errsz, "counter %s does not end in _total", f->name);
            return -1;
        }
    }
    for (size_t i = 0; i < doc->nsamples; i++) {
        const struct prom_sample *s = &doc->samples[i];
        const struct prom_family *f = &doc->families[s->family];
        size_t n = strlen(s->name);
        if (strcmp(f->type, "histogram") == 0 && n > 7 && !strcmp(s->name + n - 7, "_bucket") &&
            check_histogram(doc, f, s, err, errsz) != 0)
            return -1;
        if (!strcmp(f->type, "counter") && s->value < 0) {
            snprintf(err, errsz, "counter %s is negative", s->name);
            return -1;
        }
    }
    return 0;
}

const struct prom_family *prom_family(const struct prom_doc *doc, const char *name)
{
    long i = family_index(doc, name);
    return i >= 0 ? &doc->families[i] : NULL;
}

size_t prom_value(const struct prom_doc *doc, double *value, const char *name, ...)
{
    size_t matched = 0;
    *value = 0;
    for (size_t i = 0; i < doc->nsamples; i++) {
        const struct prom_sample *s = &doc->samples[i];
        if (strcmp(s->name, name) != 0)
            continue;
        va_list ap;
        va_start(ap, name);
        int ok = 1;
        for (const char *k; ok && (k = va_arg(ap, const char *));) {
            const char *v = va_arg(ap, const char *);
            const char *have = label(s, k);
            ok = have && !strcmp(have, v);
        }
        va_end(ap);
        if (ok) {
            *value += s->value;
            matched++;
        }
    }
    return matched;
}
