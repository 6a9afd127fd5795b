/* Environment expansion in configuration values.
 *
 *   ${VAR}          the value of VAR; an error when VAR is not set (set but empty is fine)
 *   ${VAR:-default} the value of VAR, or `default` when VAR is unset or empty
 *   $$              a literal "$"
 *   $ + other       a literal "$" (so "cost: 5$" and "$HOME" stay as written)
 *
 * VAR is [A-Za-z_][A-Za-z0-9_]*. A default is either text or exactly one reference, itself
 * with or without a default: ${A:-${B:-x}} is A, else B, else x. Text is taken literally up to
 * the first "}" (not expanded again, so "$$" stays "$$" and "}" cannot appear), and text mixed
 * with "${" is refused rather than silently producing half a reference. Every reference of a
 * chain is checked for syntax, but a variable is looked up only when the one before it is
 * unset or empty, as in the shell. Values from the environment are never re-expanded. */
#include "cfg.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* How much of a broken reference an error message quotes. */
#define EXPAND_QUOTE_MAX 40

struct expand_buf {
    char *p;
    size_t n, cap;
};

static int expand__add(struct expand_buf *b, const char *s, size_t n)
{
    if (n >= b->cap - b->n || !b->p) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap - b->n <= n) {
            if (cap > (size_t)-1 / 2)
                return -1;
            cap *= 2;
        }
        char *p = realloc(b->p, cap);
        if (!p)
            return -1;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
    return 0;
}

static void expand__err(char *err, size_t errsz, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void expand__err(char *err, size_t errsz, const char *fmt, ...)
{
    va_list ap;

    if (!err || errsz == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errsz, fmt, ap);
    va_end(ap);
}

/* How many of the `n` bytes at `s` an error message quotes: at most EXPAND_QUOTE_MAX, cut
 * before a UTF-8 continuation byte so that the message stays UTF-8. */
static int expand__quote_len(const char *s, size_t n)
{
    size_t cut = n > EXPAND_QUOTE_MAX ? EXPAND_QUOTE_MAX : n;
    while (cut > 0 && cut < n && ((unsigned char)s[cut] & 0xC0) == 0x80)
        cut--;
    return (int)cut;
}

static const char *expand__getenv(const char *name, void *arg)
{
    (void)arg;
    return getenv(name);
}

static int expand__is_alpha(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_';
}

static int expand__valid_name(const char *s, size_t n)
{
    if (n == 0 || !expand__is_alpha(s[0]))
        return 0;
    for (size_t i = 1; i < n; i++)
        if (!expand__is_alpha(s[i]) && !(s[i] >= '0' && s[i] <= '9'))
            return 0;
    return 1;
}

/* The first ":-" in [s, end), or NULL. */
static const char *expand__find_default(const char *s, const char *end)
{
    for (const char *p = s; p + 1 < end; p++)
        if (p[0] == ':' && p[1] == '-')
            return p;
    return NULL;
}

/* The reference `depth` levels inside the chain that starts at `dollar` ("${A:-${B:-...}}"):
 * for error messages about a reference once the ones inside it were read. */
static const char *expand__nested(const char *dollar, int depth)
{
    const char *close = strchr(dollar + 2, '}');
    while (depth-- > 0)
        dollar = expand__find_default(dollar + 2, close) + 2;
    return dollar;
}

static void expand__err_unterminated(char *err, size_t errsz, const char *dollar)
{
    size_t n = strlen(dollar);
    expand__err(err, errsz, "unterminated \"%.*s%s\" (missing \"}\")", expand__quote_len(dollar, n),
                dollar, n > EXPAND_QUOTE_MAX ? "..." : "");
}

static void expand__err_mixed(char *err, size_t errsz, const char *dollar)
{
    const char *name = dollar + 2;
    size_t n = (size_t)(expand__find_default(name, strchr(name, '}')) - name);
    expand__err(err, errsz,
                "the default of \"${%.*s:-...}\" mixes text and \"${\"; a default is either text "
                "or one ${...} reference",
                (int)n, name);
}

/* Expand the reference at `dollar` ("${...") into `out`, following a chain of defaults that
 * are references. Returns what follows the reference, or NULL with err filled. */
static const char *expand__ref(struct expand_buf *out, const char *dollar, cfg_getenv_fn getenv_fn,
                               void *arg, char *err, size_t errsz)
{
    int resolved = 0, depth = 0;
    const char *p = dollar, *next;
    /* The first "}" ends the innermost reference of the chain: the names and every "${" of
     * the chain come before it, so it is looked for once (linear time on long chains). */
    const char *close = strchr(dollar + 2, '}');

    if (!close) {
        expand__err_unterminated(err, errsz, dollar);
        return NULL;
    }
    /* Inward: each reference's name, then its default (text ends the chain). */
    for (;;) {
        const char *start = p + 2;
        const char *sep = expand__find_default(start, close);
        size_t name_len = (size_t)((sep ? sep : close) - start);
        if (!expand__valid_name(start, name_len)) {
            expand__err(err, errsz,
                        "invalid environment variable name \"%.*s%s\" (use letters, digits and "
                        "\"_\", not starting with a digit)",
                        expand__quote_len(start, name_len), start,
                        name_len > EXPAND_QUOTE_MAX ? "..." : "");
            return NULL;
        }
        if (!resolved) {
            char *name = strndup(start, name_len);
            if (!name)
                goto oom;
            const char *val = getenv_fn(name, arg);
            if (!val && !sep) {
                expand__err(err, errsz,
                            "environment variable \"%s\" is not set (use ${%s:-default} to give "
                            "a default)",
                            name, name);
                free(name);
                return NULL;
            }
            free(name);
            if (val && (*val || !sep)) {
                if (expand__add(out, val, strlen(val)))
                    goto oom;
                resolved = 1;
            }
        }
        if (!sep) {
            next = close + 1;
            break;
        }
        const char *def = sep + 2;
        if (def[0] == '$' && def[1] == '{') {
            p = def;
            depth++;
            continue;
        }
        for (const char *q = def; q + 1 < close; q++) {
            if (q[0] == '$' && q[1] == '{') {
                expand__err_mixed(err, errsz, p);
                return NULL;
            }
        }
        if (!resolved && expand__add(out, def, (size_t)(close - def)))
            goto oom;
        next = close + 1;
        break;
    }
    /* Outward: every reference whose default was a reference ends right after it. */
    while (depth-- > 0) {
        if (*next != '}') {
            const char *outer = expand__nested(dollar, depth);
            if (strchr(next, '}'))
                expand__err_mixed(err, errsz, outer);
            else
                expand__err_unterminated(err, errsz, outer);
            return NULL;
        }
        next++;
    }
    return next;

oom:
    expand__err(err, errsz, "out of memory");
    return NULL;
}

char *cfg_expand(const char *in, cfg_getenv_fn getenv_fn, void *arg, char *err, size_t errsz)
{
    struct expand_buf out = {0};

    if (err && errsz)
        err[0] = '\0';
    if (!in) {
        expand__err(err, errsz, "no text to expand");
        return NULL;
    }
    if (!getenv_fn)
        getenv_fn = expand__getenv;
    if (expand__add(&out, "", 0))
        goto oom;

    const char *p = in;
    for (;;) {
        const char *dollar = strchr(p, '$');
        if (!dollar) {
            if (expand__add(&out, p, strlen(p)))
                goto oom;
            break;
        }
        if (expand__add(&out, p, (size_t)(dollar - p)))
            goto oom;
        if (dollar[1] != '{') {
            /* "$$" is one "$"; any other "$" is itself. */
            if (expand__add(&out, "$", 1))
                goto oom;
            p = dollar + (dollar[1] == '$' ? 2 : 1);
            continue;
        }
        p = expand__ref(&out, dollar, getenv_fn, arg, err, errsz);
        if (!p)
            goto fail;
    }
    return out.p;

oom:
    expand__err(err, errsz, "out of memory");
fail:
    free(out.p);
    return NULL;
}
