/* Roles (see roles.h): the built-in role set, the `roles` option applied to it, and the
 * questions authorize asks of a role. */
#include "roles.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The built-in role set, written as a `roles` option would write it: applied with the same
 * code as the operator's YAML, so the two cannot disagree (README.md shows it as a table).
 * Guests run the membership and history commands too (their group is @user): without them
 * the rooms their `join` and `history` patterns allow could never be joined or read, and
 * those patterns decide where. */
static const char rbac__builtin_json[] =
    "{"
    "\"guest\": {\"connect\": true, \"direct\": false,"
    "  \"commands\": [\"@guest\", \"join_room\", \"join_channel\", \"leave_room\","
    "               \"leave_channel\", \"history\", \"history.get\", \"op.history.get\"],"
    "  \"join\": [\"public*\", \"public*/*\"], \"publish\": [],"
    "  \"history\": [\"public*\", \"public*/*\"],"
    "  \"limits\": {\"messages_per_second\": 10, \"messages_burst\": 20,"
    "              \"commands_per_second\": 10, \"commands_burst\": 20}},"
    "\"user\": {\"connect\": true, \"direct\": true, \"commands\": [\"@guest\", \"@user\"],"
    "  \"join\": [\"**\"], \"publish\": [\"**\"], \"history\": [\"**\"],"
    "  \"limits\": {\"messages_per_second\": 100, \"messages_burst\": 200,"
    "              \"commands_per_second\": 50, \"commands_burst\": 100}},"
    "\"admin\": {\"connect\": true, \"direct\": true, \"commands\": [\"*\"],"
    "  \"join\": [\"**\"], \"publish\": [\"**\"], \"history\": [\"**\"]}"
    "}";

static const char *const rbac__groups[] = {"guest", "user", "admin", NULL};
static const char *const rbac__group_words[] = {"@guest", "@user", "@admin", NULL};

static const char *const rbac__role_keys[] = {"inherits", "connect", "direct", "commands", "join",
                                              "publish",  "history", "limits", NULL};

static const char *const rbac__limit_keys[] = {"messages_per_second",
                                               "messages_per_minute",
                                               "messages_burst",
                                               "commands_per_second",
                                               "commands_per_minute",
                                               "commands_burst",
                                               "subject_messages_per_second",
                                               "subject_messages_per_minute",
                                               "subject_messages_burst",
                                               NULL};

static const char *const rbac__limit_prefix[RBAC_LIMIT_N] = {"messages", "commands",
                                                             "subject_messages"};

#define RBAC_MAX_ROLE_NAME 64
#define RBAC_MAX_NAME      128

/* One build of a role set. */
struct build {
    const json_t *yaml;    /* the operator's roles, or NULL                              */
    const json_t *builtin; /* rbac__builtin_json, parsed                                 */
    const char **names;    /* every role: the built-in ones, then the new ones           */
    int *state;            /* per role: 0 not built, 1 being built, 2 built              */
    size_t *stack;         /* the roles being built, outermost first (for cycles)        */
    size_t depth;
    struct rbac_roles *out; /* items[i] is role names[i]                                 */
    char *err;
    size_t errsz;
};

static int rbac__fail(struct build *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int rbac__fail(struct build *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b->err, b->errsz, fmt, ap);
    va_end(ap);
    return -1;
}

static int rbac__oom(struct build *b)
{
    snprintf(b->err, b->errsz, "out of memory");
    return -2;
}

/* --- small helpers ----------------------------------------------------------------------- */

static size_t rbac__distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    size_t row[RBAC_MAX_NAME + 1];
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

const char *rbac_suggest(const char *word, const char *const *candidates)
{
    size_t lw = strlen(word);
    if (lw > RBAC_MAX_NAME)
        return NULL;
    size_t limit = lw / 3 < 1 ? 1 : lw / 3 > 3 ? 3 : lw / 3;
    const char *best = NULL;
    size_t best_d = limit + 1;
    for (size_t i = 0; candidates[i]; i++) {
        if (strlen(candidates[i]) > RBAC_MAX_NAME)
            continue;
        size_t d = rbac__distance(word, candidates[i]);
        if (d < best_d) {
            best = candidates[i];
            best_d = d;
        }
    }
    return best;
}

/* " (did you mean \"x\"?)" or "". */
static void rbac__hint(char *out, size_t size, const char *word, const char *const *candidates)
{
    const char *best = rbac_suggest(word, candidates);
    if (best)
        snprintf(out, size, " (did you mean \"%s\"?)", best);
    else
        out[0] = '\0';
}

static void rbac__join(char *out, size_t size, const char *const *words)
{
    size_t used = 0;
    out[0] = '\0';
    for (size_t i = 0; words[i] && used < size; i++)
        used += (size_t)snprintf(out + used, size - used, "%s%s", i ? ", " : "", words[i]);
}

/* What a JSON value is, for error messages: "a list", or the value itself when short. */
static void rbac__describe(char *out, size_t size, const json_t *v)
{
    if (json_is_object(v)) {
        snprintf(out, size, "a map");
    } else if (json_is_array(v)) {
        snprintf(out, size, "a list");
    } else {
        char *text = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
        snprintf(out, size, "%s", text ? text : "a value");
        free(text);
    }
}

static int rbac__is_name(const char *s, size_t max, int colon_ok)
{
    size_t n = 0;
    for (; s[n]; n++) {
        char c = s[n];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == '-' || (colon_ok && c == ':')))
            return 0;
    }
    return n > 0 && n <= max;
}

/* Refuse keys of `obj` not in `allowed`; `where` is "roles.guest" or "roles.guest.limits". */
static int rbac__check_keys(struct build *b, const json_t *obj, const char *const *allowed,
                            const char *where)
{
    const char *key;
    const json_t *v;
    json_object_foreach((json_t *)obj, key, v)
    {
        size_t i = 0;
        while (allowed[i] && strcmp(allowed[i], key) != 0)
            i++;
        if (!allowed[i]) {
            char hint[160], list[512];
            rbac__hint(hint, sizeof hint, key, allowed);
            rbac__join(list, sizeof list, allowed);
            return rbac__fail(b, "%s: unknown key \"%s\"%s; allowed: %s", where, key, hint, list);
        }
    }
    return 0;
}

/* --- roles: copy, free ------------------------------------------------------------------- */

static void rbac__free_commands(struct rbac_role *r)
{
    for (size_t i = 0; i < r->ncommands; i++)
        free(r->commands[i].name);
    free(r->commands);
    r->commands = NULL;
    r->ncommands = 0;
}

static void rbac__free_role(struct rbac_role *r)
{
    free(r->name);
    rbac__free_commands(r);
    pattern_set_free(&r->join);
    pattern_set_free(&r->publish);
    pattern_set_free(&r->history);
    memset(r, 0, sizeof *r);
}

/* Add a copy of `rule` to `r`, denying rules first. 0 or -2. */
static int rbac__add_command(struct rbac_role *r, const struct rbac_command_rule *rule)
{
    struct rbac_command_rule copy = *rule;
    if (rule->name && !(copy.name = strdup(rule->name)))
        return -2;
    struct rbac_command_rule *items = realloc(r->commands, (r->ncommands + 1) * sizeof *items);
    if (!items) {
        free(copy.name);
        return -2;
    }
    r->commands = items;
    size_t at = r->ncommands;
    if (copy.deny) {
        at = 0;
        while (at < r->ncommands && r->commands[at].deny)
            at++;
        memmove(&items[at + 1], &items[at], (r->ncommands - at) * sizeof *items);
    }
    items[at] = copy;
    r->ncommands++;
    return 0;
}

static int rbac__copy_patterns(struct pattern_set *dst, const struct pattern_set *src)
{
    for (size_t i = 0; i < src->n; i++)
        if (pattern_set_add(dst, &src->items[i]) != 0)
            return -2;
    return 0;
}

/* Everything of `src` but its name into the empty role `dst`. 0 or -2. */
static int rbac__copy_role(struct rbac_role *dst, const struct rbac_role *src)
{
    dst->connect = src->connect;
    dst->direct = src->direct;
    memcpy(dst->limits, src->limits, sizeof dst->limits);
    for (size_t i = 0; i < src->ncommands; i++)
        if (rbac__add_command(dst, &src->commands[i]) != 0)
            return -2;
    if (rbac__copy_patterns(&dst->join, &src->join) != 0 ||
        rbac__copy_patterns(&dst->publish, &src->publish) != 0 ||
        rbac__copy_patterns(&dst->history, &src->history) != 0)
        return -2;
    return 0;
}

/* --- fields ------------------------------------------------------------------------------- */

static int rbac__bool(struct build *b, const json_t *fields, const char *role, const char *key,
                      int *out)
{
    const json_t *v = json_object_get(fields, key);
    if (!v)
        return 0;
    if (!json_is_boolean(v)) {
        char got[96];
        rbac__describe(got, sizeof got, v);
        return rbac__fail(b, "roles.%s.%s: expected true or false, got %s", role, key, got);
    }
    *out = json_is_true(v);
    return 0;
}

/* The list `key` of `fields`, or NULL when absent; -1 (in *rc) when it is not a list. */
static const json_t *rbac__list(struct build *b, const json_t *fields, const char *role,
                                const char *key, const char *of, int *rc)
{
    const json_t *v = json_object_get(fields, key);
    *rc = 0;
    if (v && !json_is_array(v)) {
        char got[96];
        rbac__describe(got, sizeof got, v);
        *rc = rbac__fail(b, "roles.%s.%s: expected a list of %s, got %s", role, key, of, got);
        return NULL;
    }
    return v;
}

static int rbac__commands(struct build *b, const json_t *fields, const char *role,
                          struct rbac_role *r, int add)
{
    int rc;
    const json_t *list = rbac__list(b, fields, role, "commands", "commands", &rc);
    if (!list)
        return rc;
    if (!add)
        rbac__free_commands(r);
    size_t i;
    const json_t *v;
    json_array_foreach(list, i, v)
    {
        const char *text = json_string_value(v);
        if (!text) {
            char got[96];
            rbac__describe(got, sizeof got, v);
            return rbac__fail(b,
                              "roles.%s.commands[%zu]: expected a command name, \"@group\", "
                              "\"*\", or one of those after '!', got %s",
                              role, i, got);
        }
        struct rbac_command_rule rule = {0};
        const char *s = text;
        if (*s == '!') {
            rule.deny = 1;
            s++;
        }
        if (!*s)
            return rbac__fail(b,
                              "roles.%s.commands[%zu]: \"%s\" needs a command name, \"@group\" "
                              "or \"*\" after '!'",
                              role, i, text);
        if (strcmp(s, "*") == 0) {
            rule.all = 1;
        } else if (*s == '@') {
            for (size_t g = 0; rbac__groups[g]; g++)
                if (strcmp(s + 1, rbac__groups[g]) == 0)
                    rule.group = rbac__groups[g];
            if (!rule.group) {
                char hint[160], list_text[128];
                rbac__hint(hint, sizeof hint, s, rbac__group_words);
                rbac__join(list_text, sizeof list_text, rbac__group_words);
                return rbac__fail(b,
                                  "roles.%s.commands[%zu]: unknown command group \"%s\"%s; "
                                  "groups: %s",
                                  role, i, s, hint, list_text);
            }
        } else if (rbac__is_name(s, RBAC_MAX_NAME, 1)) {
            rule.name = (char *)s; /* copied by rbac__add_command */
        } else {
            return rbac__fail(b,
                              "roles.%s.commands[%zu]: \"%s\" is not a command name (letters, "
                              "digits, '_', '.', ':', '-'), \"@group\" or \"*\"",
                              role, i, text);
        }
        if (rbac__add_command(r, &rule) != 0)
            return rbac__oom(b);
    }
    return 0;
}

static int rbac__patterns(struct build *b, const json_t *fields, const char *role, const char *key,
                          struct pattern_set *set, int add)
{
    int rc;
    const json_t *list = rbac__list(b, fields, role, key, "room or room/channel patterns", &rc);
    if (!list)
        return rc;
    if (!add)
        pattern_set_free(set);
    size_t i;
    const json_t *v;
    json_array_foreach(list, i, v)
    {
        const char *text = json_string_value(v);
        if (!text) {
            char got[96];
            rbac__describe(got, sizeof got, v);
            return rbac__fail(b,
                              "roles.%s.%s[%zu]: expected a room or room/channel pattern, got %s",
                              role, key, i, got);
        }
        struct pattern p;
        char why[200];
        rc = pattern_compile(text, &p, why, sizeof why);
        if (rc == -1)
            return rbac__fail(b, "roles.%s.%s[%zu]: bad pattern \"%s\": %s", role, key, i, text,
                              why);
        if (rc != 0)
            return rbac__oom(b);
        rc = pattern_set_add(set, &p);
        pattern_free(&p);
        if (rc != 0)
            return rbac__oom(b);
    }
    return 0;
}

/* A whole number in [min, max] from `v`; the message names `where` (roles.r.limits.key). */
static int rbac__whole(struct build *b, const json_t *v, const char *where, int64_t min,
                       int64_t max, const char *floor_text, int64_t *out)
{
    char got[96];
    rbac__describe(got, sizeof got, v);
    double d;
    if (json_is_integer(v))
        d = (double)json_integer_value(v);
    else if (json_is_real(v))
        d = json_real_value(v);
    else
        return rbac__fail(b, "%s: expected a whole number, got %s", where, got);
    if (d != floor(d))
        return rbac__fail(b, "%s: expected a whole number, got %s", where, got);
    if (d < 0 && min >= 0)
        return rbac__fail(b, "%s: must not be negative%s, got %s", where, floor_text, got);
    if (d < (double)min)
        return rbac__fail(b, "%s: must be at least %lld, got %s", where, (long long)min, got);
    if (d > (double)max)
        return rbac__fail(b, "%s: must be at most %lld, got %s", where, (long long)max, got);
    *out = json_is_integer(v) ? (int64_t)json_integer_value(v) : (int64_t)d;
    return 0;
}

static int rbac__limits(struct build *b, const json_t *fields, const char *role,
                        struct rbac_role *r)
{
    const json_t *limits = json_object_get(fields, "limits");
    if (!limits || json_is_null(limits))
        return 0;
    char where[192];
    snprintf(where, sizeof where, "roles.%s.limits", role);
    if (!json_is_object(limits)) {
        char got[96];
        rbac__describe(got, sizeof got, limits);
        return rbac__fail(b, "%s: expected a map of limits, got %s", where, got);
    }
    if (rbac__check_keys(b, limits, rbac__limit_keys, where) != 0)
        return -1;
    for (int k = 0; k < RBAC_LIMIT_N; k++) {
        const char *pre = rbac__limit_prefix[k];
        char ks[64], km[64], kb[64], field[256];
        snprintf(ks, sizeof ks, "%s_per_second", pre);
        snprintf(km, sizeof km, "%s_per_minute", pre);
        snprintf(kb, sizeof kb, "%s_burst", pre);
        const json_t *ps = json_object_get(limits, ks);
        const json_t *pm = json_object_get(limits, km);
        const json_t *pb = json_object_get(limits, kb);
        struct rbac_limit *lim = &r->limits[k];
        int64_t count = 0;
        if (ps && pm)
            return rbac__fail(b, "%s: give %s or %s, not both", where, ks, km);
        if (ps) {
            snprintf(field, sizeof field, "%s.%s", where, ks);
            if (rbac__whole(b, ps, field, 0, BUCKET_MAX_PER_MINUTE / 60, " (0 means no limit)",
                            &count) != 0)
                return -1;
            lim->rate.per_minute = count * 60;
            lim->per_second = 1;
        } else if (pm) {
            snprintf(field, sizeof field, "%s.%s", where, km);
            if (rbac__whole(b, pm, field, 0, BUCKET_MAX_PER_MINUTE, " (0 means no limit)",
                            &count) != 0)
                return -1;
            lim->rate.per_minute = count;
            lim->per_second = 0;
        }
        if (pb) {
            snprintf(field, sizeof field, "%s.%s", where, kb);
            if (rbac__whole(b, pb, field, 1, BUCKET_MAX_BURST, "", &lim->rate.burst) != 0)
                return -1;
            if (lim->rate.per_minute == 0)
                return rbac__fail(b,
                                  "%s: without a rate (%s or %s) there is no limit for a "
                                  "burst to shape",
                                  field, ks, km);
        } else if ((ps || pm) && lim->rate.burst == 0) {
            /* A new limit without a burst: one second's (or minute's) worth at once. */
            lim->rate.burst = count > 0 ? count : 1;
        }
    }
    return 0;
}

/* Apply the fields of `fields` (an object) to `r`; `add`: lists add to what `r` has. */
static int rbac__apply(struct build *b, const json_t *fields, const char *role, struct rbac_role *r,
                       int add)
{
    if (rbac__bool(b, fields, role, "connect", &r->connect) != 0 ||
        rbac__bool(b, fields, role, "direct", &r->direct) != 0)
        return -1;
    int rc;
    if ((rc = rbac__commands(b, fields, role, r, add)) != 0 ||
        (rc = rbac__patterns(b, fields, role, "join", &r->join, add)) != 0 ||
        (rc = rbac__patterns(b, fields, role, "publish", &r->publish, add)) != 0 ||
        (rc = rbac__patterns(b, fields, role, "history", &r->history, add)) != 0 ||
        (rc = rbac__limits(b, fields, role, r)) != 0)
        return rc;
    return 0;
}

/* --- building the set ---------------------------------------------------------------------- */

static size_t rbac__index(const struct build *b, const char *name)
{
    for (size_t i = 0; i < b->out->n; i++)
        if (strcmp(b->names[i], name) == 0)
            return i;
    return (size_t)-1;
}

static int rbac__build_role(struct build *b, size_t i);

/* The cycle b->stack[from..] -> names[i], as "a -> b -> a". */
static int rbac__cycle(struct build *b, size_t i)
{
    size_t from = 0;
    while (from < b->depth && b->stack[from] != i)
        from++;
    char chain[400];
    size_t used = 0;
    for (size_t k = from; k < b->depth && used < sizeof chain; k++)
        used +=
            (size_t)snprintf(chain + used, sizeof chain - used, "%s -> ", b->names[b->stack[k]]);
    if (used < sizeof chain)
        snprintf(chain + used, sizeof chain - used, "%s", b->names[i]);
    return rbac__fail(b, "roles.%s.inherits: inheritance cycle %s", b->names[i], chain);
}

static int rbac__build_role(struct build *b, size_t i)
{
    if (b->state[i] == 2)
        return 0;
    if (b->state[i] == 1)
        return rbac__cycle(b, i);
    b->state[i] = 1;
    b->stack[b->depth++] = i;

    const char *name = b->names[i];
    struct rbac_role *r = &b->out->items[i];
    const json_t *fields = b->yaml ? json_object_get(b->yaml, name) : NULL;
    const json_t *builtin = json_object_get(b->builtin, name);
    if (fields && json_is_null(fields))
        fields = NULL;
    if (fields && !json_is_object(fields)) {
        char got[96];
        rbac__describe(got, sizeof got, fields);
        return rbac__fail(b,
                          "roles.%s: expected a map of fields (inherits, connect, commands, "
                          "...), got %s",
                          name, got);
    }
    char where[96];
    snprintf(where, sizeof where, "roles.%s", name);
    if (fields && rbac__check_keys(b, fields, rbac__role_keys, where) != 0)
        return -1;
    if (!(r->name = strdup(name)))
        return rbac__oom(b);

    const json_t *inherits = fields ? json_object_get(fields, "inherits") : NULL;
    int rc, add = 0;
    if (inherits) {
        const char *parent = json_string_value(inherits);
        if (!parent) {
            char got[96];
            rbac__describe(got, sizeof got, inherits);
            return rbac__fail(b, "roles.%s.inherits: expected a role name, got %s", name, got);
        }
        size_t p = rbac__index(b, parent);
        if (p == (size_t)-1) {
            char hint[160];
            rbac__hint(hint, sizeof hint, parent, b->names);
            return rbac__fail(b, "roles.%s.inherits: unknown role \"%s\"%s", name, parent, hint);
        }
        if ((rc = rbac__build_role(b, p)) != 0)
            return rc;
        if (rbac__copy_role(r, &b->out->items[p]) != 0)
            return rbac__oom(b);
        add = 1;
    } else if (builtin && (rc = rbac__apply(b, builtin, name, r, 0)) != 0) {
        return rc;
    }
    if (fields && (rc = rbac__apply(b, fields, name, r, add)) != 0)
        return rc;

    b->depth--;
    b->state[i] = 2;
    return 0;
}

int rbac_roles_build(const json_t *yaml, struct rbac_roles *out, char *err, size_t errsz)
{
    struct build b = {.err = err, .errsz = errsz, .out = out};
    json_error_t jerr;
    int rc = -2;
    memset(out, 0, sizeof *out);
    if (yaml && json_is_null(yaml))
        yaml = NULL;
    if (yaml && !json_is_object(yaml)) {
        char got[96];
        rbac__describe(got, sizeof got, yaml);
        snprintf(err, errsz, "roles: expected a map of role names to roles, got %s", got);
        return -1;
    }
    json_t *builtin = json_loads(rbac__builtin_json, 0, &jerr);
    if (!builtin)
        goto fail; /* only memory can make the constant fail to parse */
    b.builtin = builtin;
    b.yaml = yaml;

    size_t max = json_object_size(builtin) + (yaml ? json_object_size(yaml) : 0);
    b.names = calloc(max + 1, sizeof *b.names); /* NULL-terminated: rbac_suggest reads it */
    b.state = calloc(max, sizeof *b.state);
    b.stack = calloc(max, sizeof *b.stack);
    out->items = calloc(max, sizeof *out->items);
    if (!b.names || !b.state || !b.stack || !out->items)
        goto fail;
    static const char *const order[] = {"guest", "user", "admin"};
    for (size_t i = 0; i < sizeof order / sizeof *order; i++)
        b.names[out->n++] = order[i];
    const char *key;
    const json_t *v;
    if (yaml) {
        json_object_foreach((json_t *)yaml, key, v)
        {
            if (!rbac__is_name(key, RBAC_MAX_ROLE_NAME, 0)) {
                rc = -1;
                snprintf(err, errsz,
                         "roles: \"%s\" is not a role name (1 to %d letters, digits, '_', '.', "
                         "'-')",
                         key, RBAC_MAX_ROLE_NAME);
                goto fail;
            }
            if (!json_object_get(builtin, key))
                b.names[out->n++] = key;
        }
    }
    for (size_t i = 0; i < out->n; i++)
        if ((rc = rbac__build_role(&b, i)) != 0)
            goto fail;
    rc = 0;
fail:
    if (rc == -2)
        snprintf(err, errsz, "out of memory");
    if (rc != 0)
        rbac_roles_free(out);
    free(b.names);
    free(b.state);
    free(b.stack);
    json_decref(builtin);
    return rc;
}

void rbac_roles_free(struct rbac_roles *roles)
{
    if (roles->items)
        for (size_t i = 0; i < roles->n; i++)
            rbac__free_role(&roles->items[i]);
    free(roles->items);
    roles->items = NULL;
    roles->n = 0;
}

/* --- the questions authorize asks ------------------------------------------------------------ */

const struct rbac_role *rbac_roles_find(const struct rbac_roles *roles, const char *name)
{
    if (!name)
        return NULL;
    for (size_t i = 0; i < roles->n; i++)
        if (strcmp(roles->items[i].name, name) == 0)
            return &roles->items[i];
    return NULL;
}

int rbac_role_may_command(const struct rbac_role *role, const char *command, const char *group)
{
    for (size_t i = 0; i < role->ncommands; i++) {
        const struct rbac_command_rule *c = &role->commands[i];
        int match = c->all || (c->name && command && strcmp(c->name, command) == 0) ||
                    (c->group && group && strcmp(c->group, group) == 0);
        if (match)
            return !c->deny; /* denying rules come first */
    }
    return 0;
}
