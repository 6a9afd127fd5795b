#include "options.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

const char *opt_type_name(enum arq_opt_type type)
{
    switch (type) {
    case ARQ_OPT_BOOL:
        return "bool";
    case ARQ_OPT_INT:
        return "int";
    case ARQ_OPT_DOUBLE:
        return "double";
    case ARQ_OPT_STRING:
        return "string";
    case ARQ_OPT_ENUM:
        return "enum";
    case ARQ_OPT_DURATION:
        return "duration";
    case ARQ_OPT_SIZE:
        return "size";
    case ARQ_OPT_STRING_LIST:
        return "string list";
    case ARQ_OPT_JSON:
        return "any";
    }
    return NULL;
}

const char *opt_field_kind_name(int kind)
{
    switch (kind) {
    case ARQ_FIELD_BOOL:
        return "_Bool";
    case ARQ_FIELD_INT:
        return "int";
    case ARQ_FIELD_UINT:
        return "unsigned";
    case ARQ_FIELD_LONG:
        return "long";
    case ARQ_FIELD_ULONG:
        return "unsigned long";
    case ARQ_FIELD_LLONG:
        return "long long";
    case ARQ_FIELD_ULLONG:
        return "unsigned long long";
    case ARQ_FIELD_DOUBLE:
        return "double";
    case ARQ_FIELD_STR:
        return "const char *";
    case ARQ_FIELD_JSON:
        return "const json_t *";
    }
    return NULL;
}

static int field_is_integer(int kind)
{
    return kind >= ARQ_FIELD_BOOL && kind <= ARQ_FIELD_ULLONG;
}

/* Whether a field of `kind` can hold the values of an option of `type` (see enum
 * arq_field_kind in plugin.h). */
static int field_fits(enum arq_opt_type type, int kind)
{
    switch (type) {
    case ARQ_OPT_BOOL:
        return field_is_integer(kind);
    case ARQ_OPT_INT:
    case ARQ_OPT_DURATION:
    case ARQ_OPT_SIZE:
        return (field_is_integer(kind) && kind != ARQ_FIELD_BOOL) || kind == ARQ_FIELD_DOUBLE;
    case ARQ_OPT_DOUBLE:
        return kind == ARQ_FIELD_DOUBLE;
    case ARQ_OPT_ENUM:
        return (field_is_integer(kind) && kind != ARQ_FIELD_BOOL) || kind == ARQ_FIELD_STR;
    case ARQ_OPT_STRING:
        return kind == ARQ_FIELD_STR;
    case ARQ_OPT_STRING_LIST:
    case ARQ_OPT_JSON:
        return kind == ARQ_FIELD_JSON;
    }
    return 0;
}

static int name_is_valid(const char *s)
{
    if (!*s || !(isalpha((unsigned char)*s) || *s == '_'))
        return 0;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '_' && *s != '-' && *s != '.')
            return 0;
    return 1;
}

void opt_format_bound(char *buf, size_t size, enum arq_opt_type type, double v)
{
    static const struct {
        double scale;
        const char *unit;
    } durations[] = {{86400000, "d"}, {3600000, "h"}, {60000, "m"}, {1000, "s"}, {1, "ms"}},
      sizes[] = {{1073741824, "GiB"}, {1048576, "MiB"}, {1024, "KiB"}, {1, "B"}};
    int duration = type == ARQ_OPT_DURATION, bytes = type == ARQ_OPT_SIZE;
    size_t n = duration ? sizeof durations / sizeof durations[0] : sizeof sizes / sizeof sizes[0];
    if ((duration || bytes) && v == 0) {
        snprintf(buf, size, "0%s", duration ? "s" : "B");
        return;
    }
    for (size_t i = 0; (duration || bytes) && i < n; i++) {
        double scale = duration ? durations[i].scale : sizes[i].scale;
        if (fmod(v, scale) == 0) {
            snprintf(buf, size, "%.15g%s", v / scale, duration ? durations[i].unit : sizes[i].unit);
            return;
        }
    }
    if (v == floor(v) && fabs(v) < 9007199254740992.0)
        snprintf(buf, size, "%lld", (long long)v); /* every integer a double holds exactly */
    else
        snprintf(buf, size, "%.15g", v);
}

/* Parses a number followed by an optional unit; returns the unit (pointing into text) or
 * NULL when no number starts the text. */
static const char *parse_number_unit(const char *text, double *out)
{
    char *end;
    while (isspace((unsigned char)*text))
        text++;
    if (!isdigit((unsigned char)*text) && *text != '.')
        return NULL;
    errno = 0;
    *out = strtod(text, &end);
    if (end == text || errno == ERANGE || !isfinite(*out))
        return NULL;
    while (isspace((unsigned char)*end))
        end++;
    return end;
}

static int parse_duration(const char *text, double *ms)
{
    static const struct {
        const char *unit;
        double scale;
    } units[] = {{"", 1000},   {"ms", 1},      {"s", 1000},    {"sec", 1000},
                 {"m", 60000}, {"min", 60000}, {"h", 3600000}, {"d", 86400000}};
    double v;
    const char *unit = parse_number_unit(text, &v);
    if (!unit)
        return -1;
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        if (strcmp(unit, units[i].unit) == 0) {
            *ms = round(v * units[i].scale);
            return 0;
        }
    }
    return -1;
}

static int parse_size(const char *text, double *bytes)
{
    /* kB/MB/GB are decimal, KiB/MiB/GiB and the bare k/M/G (nginx style) are binary. */
    static const struct {
        const char *unit;
        double scale;
    } units[] = {
        {"", 1},      {"B", 1},          {"k", 1024},       {"K", 1024},         {"KiB", 1024},
        {"kB", 1000}, {"KB", 1000},      {"m", 1048576},    {"M", 1048576},      {"MiB", 1048576},
        {"MB", 1e6},  {"g", 1073741824}, {"G", 1073741824}, {"GiB", 1073741824}, {"GB", 1e9}};
    double v;
    const char *unit = parse_number_unit(text, &v);
    if (!unit)
        return -1;
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        if (strcmp(unit, units[i].unit) == 0) {
            double r = v * units[i].scale;
            if (r != floor(r))
                return -1;
            *bytes = r;
            return 0;
        }
    }
    return -1;
}

static int parse_bool(const char *text, int *out)
{
    static const char *const yes[] = {"true", "yes", "on"};
    static const char *const no[] = {"false", "no", "off"};
    for (size_t i = 0; i < 3; i++) {
        if (strcasecmp(text, yes[i]) == 0)
            return *out = 1, 0;
        if (strcasecmp(text, no[i]) == 0)
            return *out = 0, 0;
    }
    return -1;
}

static int parse_int(const char *text, long long *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    if (end == text || *end || errno == ERANGE)
        return -1;
    *out = v;
    return 0;
}

static int check_range(const struct arq_option *o, double v, const char *text, char *err,
                       size_t errsz)
{
    if (!(o->flags & ARQ_OPT_BOUNDED) || (v >= o->min && v <= o->max))
        return 0;
    char lo[48], hi[48];
    opt_format_bound(lo, sizeof lo, o->type, o->min);
    opt_format_bound(hi, sizeof hi, o->type, o->max);
    snprintf(err, errsz, "%s is out of range %s..%s", text, lo, hi);
    return -1;
}

static json_t *parse_string_list(const char *text)
{
    json_t *arr = json_array();
    const char *p = text;
    while (arr && *p) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        while (len && isspace((unsigned char)*p))
            p++, len--;
        while (len && isspace((unsigned char)p[len - 1]))
            len--;
        if (len && json_array_append_new(arr, json_stringn(p, len)) != 0) {
            json_decref(arr);
            return NULL;
        }
        if (!comma)
            break;
        p = comma + 1;
    }
    return arr;
}

json_t *opt_parse(const struct arq_option *o, const char *text, char *err, size_t errsz)
{
    double d;
    long long i;
    int b;

    switch (o->type) {
    case ARQ_OPT_BOOL:
        if (parse_bool(text, &b) == 0)
            return json_boolean(b);
        snprintf(err, errsz, "expected true or false, got \"%s\"", text);
        return NULL;
    case ARQ_OPT_INT:
        if (parse_int(text, &i) != 0) {
            snprintf(err, errsz, "expected an integer, got \"%s\"", text);
            return NULL;
        }
        if (check_range(o, (double)i, text, err, errsz) != 0)
            return NULL;
        return json_integer(i);
    case ARQ_OPT_DOUBLE: {
        char *end;
        errno = 0;
        d = strtod(text, &end);
        if (end == text || *end || errno == ERANGE || !isfinite(d)) {
            snprintf(err, errsz, "expected a number, got \"%s\"", text);
            return NULL;
        }
        if (check_range(o, d, text, err, errsz) != 0)
            return NULL;
        return json_real(d);
    }
    case ARQ_OPT_STRING:
        return json_string(text);
    case ARQ_OPT_ENUM:
        for (const char *const *c = o->choices; c && *c; c++)
            if (strcmp(*c, text) == 0)
                return json_string(text);
        {
            char allowed[256];
            const char *hint = o->choices ? diag_suggest(text, o->choices) : NULL;
            diag_join(allowed, sizeof allowed, o->choices);
            snprintf(err, errsz, "\"%s\" is not one of: %s%s%s%s", text, allowed,
                     hint ? " (did you mean \"" : "", hint ? hint : "", hint ? "\"?)" : "");
        }
        return NULL;
    case ARQ_OPT_DURATION:
        /* Past int64 milliseconds the value would not fit the JSON integer (as for sizes). */
        if (parse_duration(text, &d) != 0 || d > 9.0e18) {
            snprintf(err, errsz, "expected a duration such as 250ms, 20s, 5m or 1h, got \"%s\"",
                     text);
            return NULL;
        }
        if (check_range(o, d, text, err, errsz) != 0)
            return NULL;
        return json_integer((json_int_t)d);
    case ARQ_OPT_SIZE:
        if (parse_size(text, &d) != 0 || d > 9.0e18) {
            snprintf(err, errsz, "expected a size such as 512, 64KiB, 1MiB or 10MB, got \"%s\"",
                     text);
            return NULL;
        }
        if (check_range(o, d, text, err, errsz) != 0)
            return NULL;
        return json_integer((json_int_t)d);
    case ARQ_OPT_STRING_LIST:
        return parse_string_list(text);
    case ARQ_OPT_JSON: {
        json_error_t jerr;
        json_t *v = json_loads(text, JSON_DECODE_ANY, &jerr);
        if (!v)
            snprintf(err, errsz, "invalid JSON default: %s", jerr.text);
        return v;
    }
    }
    snprintf(err, errsz, "unknown option type %d", (int)o->type);
    return NULL;
}

int opt_spec_check(const struct arq_option *spec, char *err, size_t errsz)
{
    for (const struct arq_option *o = spec; o && o->name; o++) {
        char why[256];
        if (!name_is_valid(o->name)) {
            snprintf(err, errsz, "option name \"%s\" is not valid", o->name);
            return -1;
        }
        for (const struct arq_option *p = spec; p != o; p++) {
            if (strcmp(p->name, o->name) == 0) {
                snprintf(err, errsz, "option \"%s\" is declared twice", o->name);
                return -1;
            }
        }
        if (!opt_type_name(o->type)) {
            snprintf(err, errsz, "option \"%s\" has unknown type %d", o->name, (int)o->type);
            return -1;
        }
        if (o->type == ARQ_OPT_ENUM && (!o->choices || !o->choices[0])) {
            snprintf(err, errsz, "enum option \"%s\" has no choices", o->name);
            return -1;
        }
        if ((o->flags & ARQ_OPT_BOUNDED) && o->min > o->max) {
            snprintf(err, errsz, "option \"%s\" has min > max", o->name);
            return -1;
        }
        if (o->field.kind != ARQ_FIELD_NONE && !opt_field_kind_name(o->field.kind)) {
            snprintf(err, errsz, "option \"%s\" is bound to a field of unknown kind %d", o->name,
                     o->field.kind);
            return -1;
        }
        if (o->field.kind != ARQ_FIELD_NONE && !field_fits(o->type, o->field.kind)) {
            snprintf(err, errsz,
                     "option \"%s\" (%s) is bound to a field of type %s, which cannot "
                     "hold it",
                     o->name, opt_type_name(o->type), opt_field_kind_name(o->field.kind));
            return -1;
        }
        if ((o->flags & ARQ_OPT_REQUIRED) && o->default_value) {
            snprintf(err, errsz, "required option \"%s\" has a default", o->name);
            return -1;
        }
        if (o->default_value) {
            json_t *v = opt_parse(o, o->default_value, why, sizeof why);
            if (!v) {
                snprintf(err, errsz, "default of option \"%s\": %s", o->name, why);
                return -1;
            }
            json_decref(v);
        }
    }
    return 0;
}

static int is_null_scalar(const struct cfg_doc *doc, const json_t *node)
{
    if (!json_is_string(node) || !cfg_is_plain(doc, node))
        return 0;
    const char *s = json_string_value(node);
    return !*s || strcmp(s, "~") == 0 || strcmp(s, "null") == 0 || strcmp(s, "Null") == 0 ||
           strcmp(s, "NULL") == 0;
}

static const char *node_kind(const json_t *node)
{
    return json_is_object(node) ? "a mapping" : json_is_array(node) ? "a sequence" : "a scalar";
}

/* YAML 1.2 core schema for the plain scalars of an ARQ_OPT_JSON option. */
static json_t *core_scalar(const struct cfg_doc *doc, const json_t *node)
{
    const char *s = json_string_value(node);
    if (!cfg_is_plain(doc, node))
        return json_string(s);
    if (is_null_scalar(doc, node))
        return json_null();
    if (!strcmp(s, "true") || !strcmp(s, "True") || !strcmp(s, "TRUE"))
        return json_true();
    if (!strcmp(s, "false") || !strcmp(s, "False") || !strcmp(s, "FALSE"))
        return json_false();
    char *end;
    errno = 0;
    long long i = strtoll(s, &end, 0);
    if (*s && !*end && errno == 0 && (isdigit((unsigned char)*s) || *s == '-' || *s == '+'))
        return json_integer(i);
    double d = strtod(s, &end);
    if (*s && !*end && isfinite(d) && (isdigit((unsigned char)*s) || strchr("-+.", *s)))
        return json_real(d);
    return json_string(s);
}

static json_t *core_value(const struct cfg_doc *doc, const json_t *node)
{
    if (json_is_string(node))
        return core_scalar(doc, node);
    if (json_is_array(node)) {
        json_t *arr = json_array();
        size_t i;
        json_t *v;
        json_array_foreach(node, i, v)
        {
            if (!arr || json_array_append_new(arr, core_value(doc, v)) != 0) {
                json_decref(arr);
                return NULL;
            }
        }
        return arr;
    }
    json_t *obj = json_object();
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)node, k, v)
    {
        if (!obj || json_object_set_new(obj, k, core_value(doc, v)) != 0) {
            json_decref(obj);
            return NULL;
        }
    }
    return obj;
}

static json_t *value_from_node(const struct arq_option *o, const json_t *node,
                               const struct cfg_doc *doc, char *err, size_t errsz)
{
    if (o->type == ARQ_OPT_JSON) {
        json_t *v = core_value(doc, node);
        if (!v)
            snprintf(err, errsz, "out of memory");
        return v;
    }
    if (o->type == ARQ_OPT_STRING_LIST && json_is_array(node)) {
        json_t *arr = json_array();
        size_t i;
        json_t *v;
        json_array_foreach(node, i, v)
        {
            if (!json_is_string(v)) {
                snprintf(err, errsz, "item %zu: expected a scalar, got %s", i + 1, node_kind(v));
                json_decref(arr);
                return NULL;
            }
            if (!arr || json_array_append_new(arr, json_string(json_string_value(v))) != 0) {
                snprintf(err, errsz, "out of memory");
                json_decref(arr);
                return NULL;
            }
        }
        return arr;
    }
    if (!json_is_string(node)) {
        snprintf(err, errsz, "expected %s, got %s",
                 o->type == ARQ_OPT_STRING_LIST ? "a scalar or a sequence" : "a scalar",
                 node_kind(node));
        return NULL;
    }
    return opt_parse(o, json_string_value(node), err, errsz);
}

json_t *opt_validate(const struct arq_option *spec, const json_t *given, const struct cfg_doc *doc,
                     const struct cfg_pos *where, const char *who, struct diag_list *diags)
{
    size_t before = diags->n;
    json_t *out = json_object();
    if (!out) {
        diag_add(diags, where, "%s: out of memory", who);
        return NULL;
    }
    if (given && !json_is_object(given) && !is_null_scalar(doc, given)) {
        diag_add(diags, cfg_pos_of(doc, given), "%s: expected a mapping of options, got %s", who,
                 node_kind(given));
        json_decref(out);
        return NULL;
    }
    if (!json_is_object(given))
        given = NULL;

    if (given) {
        size_t n = 0;
        for (const struct arq_option *o = spec; o && o->name; o++)
            n++;
        const char **names = calloc(n + 1, sizeof *names);
        if (!names) {
            diag_add(diags, where, "%s: out of memory", who);
            json_decref(out);
            return NULL;
        }
        for (size_t i = 0; i < n; i++)
            names[i] = spec[i].name;
        const char *key;
        json_t *v;
        json_object_foreach((json_t *)given, key, v)
        {
            const struct arq_option *o = spec;
            while (o && o->name && strcmp(o->name, key) != 0)
                o++;
            if (o && o->name)
                continue;
            char allowed[512];
            const char *hint = diag_suggest(key, names);
            diag_join(allowed, sizeof allowed, names);
            diag_add(diags, cfg_key_pos_of(doc, v), "%s: unknown option \"%s\"; allowed: %s%s%s%s",
                     who, key, n ? allowed : "(none)", hint ? " (did you mean \"" : "",
                     hint ? hint : "", hint ? "\"?)" : "");
        }
        free(names);
    }

    for (const struct arq_option *o = spec; o && o->name; o++) {
        const json_t *node = given ? json_object_get(given, o->name) : NULL;
        char err[512];
        json_t *value = NULL;
        if (node && is_null_scalar(doc, node) && o->type != ARQ_OPT_JSON)
            node = NULL;
        if (node) {
            value = value_from_node(o, node, doc, err, sizeof err);
            if (!value && (o->flags & ARQ_OPT_SECRET))
                snprintf(err, sizeof err, "invalid %s value (not shown: the option is secret)",
                         opt_type_name(o->type));
            if (!value) {
                diag_add(diags, cfg_pos_of(doc, node), "%s: option \"%s\": %s", who, o->name, err);
                continue;
            }
        } else if (o->flags & ARQ_OPT_REQUIRED) {
            diag_add(diags, where, "%s: missing required option \"%s\"", who, o->name);
            continue;
        } else if (o->default_value) {
            value = opt_parse(o, o->default_value, err, sizeof err);
            if (!value) {
                diag_add(diags, where, "%s: default of option \"%s\": %s", who, o->name, err);
                continue;
            }
        } else {
            continue;
        }
        if (json_object_set_new(out, o->name, value) != 0)
            diag_add(diags, where, "%s: out of memory", who);
    }

    if (diags->n != before) {
        json_decref(out);
        return NULL;
    }
    return out;
}

enum opt_change opt_diff(const struct arq_option *spec, const json_t *a, const json_t *b)
{
    enum opt_change result = OPT_SAME;
    for (const struct arq_option *o = spec; o && o->name; o++) {
        if (json_equal(json_object_get(a, o->name), json_object_get(b, o->name)))
            continue;
        /* json_equal(NULL, NULL) is false: both absent means unchanged. */
        if (!json_object_get(a, o->name) && !json_object_get(b, o->name))
            continue;
        if (!(o->flags & ARQ_OPT_RELOADABLE))
            return OPT_CHANGED;
        result = OPT_RELOADABLE_ONLY;
    }
    return result;
}

json_t *opt_redact(const struct arq_option *spec, const json_t *cfg)
{
    json_t *copy = json_deep_copy(cfg);
    for (const struct arq_option *o = spec; copy && o && o->name; o++) {
        if ((o->flags & ARQ_OPT_SECRET) && json_object_get(copy, o->name) &&
            json_object_set_new(copy, o->name, json_string(OPT_REDACTED)) != 0) {
            json_decref(copy);
            return NULL;
        }
    }
    return copy;
}

/* One value on its way to a field. */
union field_value {
    long long i;
    double d;
    const char *s;
    const json_t *j;
};

/* The value `v` of option `o` as its field holds it, or -1 with the reason. */
static int field_convert(const struct arq_option *o, const json_t *v, union field_value *out,
                         char *why, size_t size)
{
    int kind = o->field.kind;
    long long lo = LLONG_MIN, hi = LLONG_MAX;
    switch (o->type) {
    case ARQ_OPT_BOOL:
        if (!json_is_boolean(v))
            break;
        out->i = json_is_true(v);
        return 0;
    case ARQ_OPT_INT:
    case ARQ_OPT_DURATION:
    case ARQ_OPT_SIZE:
        if (!json_is_integer(v))
            break;
        if (kind == ARQ_FIELD_DOUBLE) {
            out->d = (double)json_integer_value(v);
            return 0;
        }
        out->i = json_integer_value(v);
        switch (kind) {
        case ARQ_FIELD_INT:
            lo = INT_MIN, hi = INT_MAX;
            break;
        case ARQ_FIELD_UINT:
            lo = 0, hi = UINT_MAX;
            break;
        case ARQ_FIELD_LONG:
            lo = LONG_MIN, hi = LONG_MAX;
            break;
        case ARQ_FIELD_ULONG:
            lo = 0;
            hi = (unsigned long long)ULONG_MAX < LLONG_MAX ? (long long)ULONG_MAX : LLONG_MAX;
            break;
        case ARQ_FIELD_ULLONG:
            lo = 0;
            break;
        }
        if (out->i < lo || out->i > hi) {
            snprintf(why, size, "option \"%s\": %lld does not fit its field (%s)", o->name, out->i,
                     opt_field_kind_name(kind));
            return -1;
        }
        return 0;
    case ARQ_OPT_DOUBLE:
        if (!json_is_number(v))
            break;
        out->d = json_number_value(v);
        return 0;
    case ARQ_OPT_ENUM:
        if (!json_is_string(v))
            break;
        if (kind == ARQ_FIELD_STR) {
            out->s = json_string_value(v);
            return 0;
        }
        for (long long i = 0; o->choices && o->choices[i]; i++) {
            if (strcmp(o->choices[i], json_string_value(v)) == 0) {
                out->i = i;
                return 0;
            }
        }
        snprintf(why, size, "option \"%s\": \"%s\" is not one of its choices", o->name,
                 json_string_value(v));
        return -1;
    case ARQ_OPT_STRING:
        if (!json_is_string(v))
            break;
        out->s = json_string_value(v);
        return 0;
    case ARQ_OPT_STRING_LIST:
    case ARQ_OPT_JSON:
        out->j = v;
        return 0;
    }
    snprintf(why, size,
             "option \"%s\": the configuration does not hold a valid %s (was it "
             "validated against this spec?)",
             o->name, opt_type_name(o->type));
    return -1;
}

static void field_store(void *out, const struct arq_field *f, const union field_value *v)
{
    char *at = (char *)out + f->offset;
#define FIELD_PUT(type, value)                                                                     \
    do {                                                                                           \
        type x_ = (type)(value);                                                                   \
        memcpy(at, &x_, sizeof x_);                                                                \
    } while (0)
    switch (f->kind) {
    case ARQ_FIELD_BOOL:
        FIELD_PUT(_Bool, v->i != 0);
        break;
    case ARQ_FIELD_INT:
        FIELD_PUT(int, v->i);
        break;
    case ARQ_FIELD_UINT:
        FIELD_PUT(unsigned, v->i);
        break;
    case ARQ_FIELD_LONG:
        FIELD_PUT(long, v->i);
        break;
    case ARQ_FIELD_ULONG:
        FIELD_PUT(unsigned long, v->i);
        break;
    case ARQ_FIELD_LLONG:
        FIELD_PUT(long long, v->i);
        break;
    case ARQ_FIELD_ULLONG:
        FIELD_PUT(unsigned long long, v->i);
        break;
    case ARQ_FIELD_DOUBLE:
        FIELD_PUT(double, v->d);
        break;
    case ARQ_FIELD_STR:
        FIELD_PUT(const char *, v->s);
        break;
    case ARQ_FIELD_JSON:
        FIELD_PUT(const json_t *, v->j);
        break;
    }
#undef FIELD_PUT
}

int opt_fill(const json_t *cfg, const struct arq_option *spec, void *out, struct arq_error *err)
{
    char why[400];
    union field_value v;
    /* Every value is converted before any is written: all or nothing. */
    for (int pass = 0; pass < 2; pass++) {
        for (const struct arq_option *o = spec; o && o->name; o++) {
            const json_t *value = json_object_get(cfg, o->name);
            if (o->field.kind == ARQ_FIELD_NONE || !value)
                continue;
            if (!field_fits(o->type, o->field.kind)) {
                snprintf(why, sizeof why, "option \"%s\" (%s) is bound to a field of type %s",
                         o->name, opt_type_name(o->type),
                         opt_field_kind_name(o->field.kind) ? opt_field_kind_name(o->field.kind)
                                                            : "(unknown)");
                return arq_error_set(err, ARQ_EINVAL, "%s", why);
            }
            if (field_convert(o, value, &v, why, sizeof why) != 0)
                return arq_error_set(err, ARQ_EINVAL, "%s", why);
            if (pass == 1)
                field_store(out, &o->field, &v);
        }
    }
    return ARQ_OK;
}

int64_t opt_get_int(const json_t *cfg, const char *name, int64_t fallback)
{
    const json_t *v = json_object_get(cfg, name);
    if (json_is_integer(v))
        return json_integer_value(v);
    if (json_is_real(v))
        return (int64_t)json_real_value(v);
    return fallback;
}

double opt_get_double(const json_t *cfg, const char *name, double fallback)
{
    const json_t *v = json_object_get(cfg, name);
    return json_is_number(v) ? json_number_value(v) : fallback;
}

int opt_get_bool(const json_t *cfg, const char *name, int fallback)
{
    const json_t *v = json_object_get(cfg, name);
    return json_is_boolean(v) ? json_is_true(v) : fallback;
}

const char *opt_get_str(const json_t *cfg, const char *name, const char *fallback)
{
    const json_t *v = json_object_get(cfg, name);
    return json_is_string(v) ? json_string_value(v) : fallback;
}

const json_t *opt_get_json(const json_t *cfg, const char *name)
{
    return json_object_get(cfg, name);
}
