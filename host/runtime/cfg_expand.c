/* Environment expansion in configuration values.
 *
 *   ${VAR}          the value of VAR; an error when VAR is not set (set but empty is fine)
 *   ${VAR:-default} the value of VAR, or `default` when VAR is unset or empty
 *   $$              a literal "$"
 *   $ + other       a literal "$" (so "cost: 5$" and "$HOME" stay as written)
 *
 * VAR is [A-Za-z_][A-Za-z0-9_]*. The default is taken literally up to the first "}": it is not
 * expanded again, so it cannot contain "}" and may not contain "${" (refused rather than
 * silently producing half a reference). Values from the environment are never re-expanded. */
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

char *cfg_expand(const char *in, cfg_getenv_fn getenv_fn, void *arg, char *err, size_t errsz)
{
    struct expand_buf out = {0};
    char *name = NULL;

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
        const char *start = dollar + 2;
        const char *close = strchr(start, '}');
        if (!close) {
            size_t n = strlen(dollar);
            expand__err(err, errsz, "unterminated \"%.*s%s\" (missing \"}\")",
                        expand__quote_len(dollar, n), dollar, n > EXPAND_QUOTE_MAX ? "..." : "");
            goto fail;
        }
        const char *sep = expand__find_default(start, close);
        const char *name_end = sep ? sep : close;
        size_t name_len = (size_t)(name_end - start);
        if (!expand__valid_name(start, name_len)) {
            expand__err(err, errsz,
                        "invalid environment variable name \"%.*s%s\" (use letters, digits and "
                        "\"_\", not starting with a digit)",
                        expand__quote_len(start, name_len), start,
                        name_len > EXPAND_QUOTE_MAX ? "..." : "");
            goto fail;
        }
        const char *def = sep ? sep + 2 : NULL;
        if (def) {
            for (const char *q = def; q + 1 < close; q++) {
                if (q[0] == '$' && q[1] == '{') {
                    expand__err(err, errsz,
                                "the default of \"${%.*s:-...}\" contains \"${\"; defaults are "
                                "not expanded",
                                (int)name_len, start);
                    goto fail;
                }
            }
        }
        name = strndup(start, name_len);
        if (!name)
            goto oom;
        const char *val = getenv_fn(name, arg);
        if (def && (!val || !*val)) {
            if (expand__add(&out, def, (size_t)(close - def)))
                goto oom;
        } else if (!val) {
            expand__err(err, errsz,
                        "environment variable \"%s\" is not set (use ${%s:-default} to give a "
                        "default)",
                        name, name);
            goto fail;
        } else if (expand__add(&out, val, strlen(val))) {
            goto oom;
        }
        free(name);
        name = NULL;
        p = close + 1;
    }
    return out.p;

oom:
    expand__err(err, errsz, "out of memory");
fail:
    free(name);
    free(out.p);
    return NULL;
}
