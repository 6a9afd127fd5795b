/* Diagnostics list, did-you-mean and allowed-key lists. */
#include "diag.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Longest word diag_suggest() compares; longer words get no suggestion. */
#define DIAG_MAX_WORD 128

/* When memory runs out the list still has to say so: this entry is never freed, and a list
 * that could not even allocate its array points at diag__oom_items (n = 1, cap = 0). */
static char diag__oom_msg[] = "out of memory";
static char *diag__oom_items[1] = {diag__oom_msg};

static void diag__free_item(char *s)
{
    if (s != diag__oom_msg)
        free(s);
}

static int diag__reserve(struct diag_list *dl, size_t extra)
{
    if (extra <= dl->cap - dl->n && dl->items != diag__oom_items)
        return 0;
    const size_t limit = SIZE_MAX / 2 / sizeof(char *);
    if (extra > limit || dl->n > limit - extra)
        return -1;
    size_t cap = dl->cap ? dl->cap : 8;
    while (cap < dl->n + extra)
        cap *= 2;
    char **items;
    if (dl->items == diag__oom_items) {
        items = malloc(cap * sizeof *items);
        if (!items)
            return -1;
        memcpy(items, dl->items, dl->n * sizeof *items);
    } else {
        items = realloc(dl->items, cap * sizeof *items);
        if (!items)
            return -1;
    }
    dl->items = items;
    dl->cap = cap;
    return 0;
}

/* Something could not be recorded: make sure the list ends with "out of memory". */
static void diag__oom(struct diag_list *dl)
{
    if (dl->n > 0 && dl->items[dl->n - 1] == diag__oom_msg)
        return;
    if (diag__reserve(dl, 1) == 0) {
        dl->items[dl->n++] = diag__oom_msg;
        return;
    }
    if (dl->n > 0) {
        /* No room for one more pointer: the last message gives way to the warning. */
        diag__free_item(dl->items[dl->n - 1]);
        dl->items[dl->n - 1] = diag__oom_msg;
        return;
    }
    free(dl->items);
    dl->items = diag__oom_items;
    dl->n = 1;
    dl->cap = 0;
}

void diag_add(struct diag_list *dl, const struct cfg_pos *pos, const char *fmt, ...)
{
    char *s = NULL;
    int plen = 0, mlen;
    va_list ap;

    if (!dl)
        return;
    if (!fmt)
        fmt = "";
    const char *file = pos && pos->file ? pos->file : "<input>";
    /* A position without a line (or column) names just the file (or file:line). */
    if (pos && pos->line <= 0)
        plen = snprintf(NULL, 0, "%s: ", file);
    else if (pos && pos->col <= 0)
        plen = snprintf(NULL, 0, "%s:%d: ", file, pos->line);
    else if (pos)
        plen = snprintf(NULL, 0, "%s:%d:%d: ", file, pos->line, pos->col);
    va_start(ap, fmt);
    mlen = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (plen < 0 || mlen < 0)
        goto fail;
    s = malloc((size_t)plen + (size_t)mlen + 1);
    if (!s)
        goto fail;
    if (pos && pos->line <= 0)
        snprintf(s, (size_t)plen + 1, "%s: ", file);
    else if (pos && pos->col <= 0)
        snprintf(s, (size_t)plen + 1, "%s:%d: ", file, pos->line);
    else if (pos)
        snprintf(s, (size_t)plen + 1, "%s:%d:%d: ", file, pos->line, pos->col);
    va_start(ap, fmt);
    vsnprintf(s + plen, (size_t)mlen + 1, fmt, ap);
    va_end(ap);
    if (diag__reserve(dl, 1) != 0)
        goto fail;
    dl->items[dl->n++] = s;
    return;
fail:
    free(s);
    diag__oom(dl);
}

void diag_clear(struct diag_list *dl)
{
    if (!dl)
        return;
    for (size_t i = 0; i < dl->n; i++)
        diag__free_item(dl->items[i]);
    if (dl->items != diag__oom_items)
        free(dl->items);
    dl->items = NULL;
    dl->n = dl->cap = 0;
}

void diag_move(struct diag_list *to, struct diag_list *from)
{
    if (!to || !from || to == from || from->n == 0)
        return;
    if (diag__reserve(to, from->n) != 0) {
        diag_clear(from);
        diag__oom(to);
        return;
    }
    memcpy(to->items + to->n, from->items, from->n * sizeof *from->items);
    to->n += from->n;
    if (from->items != diag__oom_items)
        free(from->items);
    from->items = NULL;
    from->n = from->cap = 0;
}

static size_t diag__min3(size_t a, size_t b, size_t c)
{
    size_t m = a < b ? a : b;
    return m < c ? m : c;
}

/* Damerau-Levenshtein distance (optimal string alignment: an adjacent transposition such as
 * "prot" -> "port" costs 1). Both lengths are at most DIAG_MAX_WORD. */
static size_t diag__distance(const char *a, size_t la, const char *b, size_t lb)
{
    size_t rows[3][DIAG_MAX_WORD + 1];
    size_t *pp = rows[0], *prev = rows[1], *cur = rows[2];

    for (size_t j = 0; j <= lb; j++)
        prev[j] = j;
    for (size_t i = 1; i <= la; i++) {
        cur[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
            cur[j] = diag__min3(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost);
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
                pp[j - 2] + 1 < cur[j])
                cur[j] = pp[j - 2] + 1;
        }
        size_t *t = pp;
        pp = prev;
        prev = cur;
        cur = t;
    }
    return prev[lb];
}

const char *diag_suggest(const char *word, const char *const *candidates)
{
    if (!word || !candidates)
        return NULL;
    size_t lw = strlen(word);
    if (lw > DIAG_MAX_WORD)
        return NULL;
    size_t limit = lw / 3;
    if (limit < 1)
        limit = 1;
    if (limit > 3)
        limit = 3;
    const char *best = NULL;
    size_t best_d = limit + 1;
    for (size_t i = 0; candidates[i]; i++) {
        size_t lc = strlen(candidates[i]);
        if (lc > DIAG_MAX_WORD || (lc > lw ? lc - lw : lw - lc) > limit)
            continue;
        size_t d = diag__distance(word, lw, candidates[i], lc);
        if (d < best_d) {
            best_d = d;
            best = candidates[i];
        }
    }
    return best;
}

void diag_join(char *buf, size_t size, const char *const *candidates)
{
    static const char more[] = ", ...";
    size_t len = 0;

    if (!buf || size == 0)
        return;
    buf[0] = '\0';
    if (!candidates)
        return;
    for (size_t i = 0; candidates[i]; i++) {
        size_t sep = i ? 2 : 0;
        size_t item = strlen(candidates[i]);
        /* Keep room for ", ..." while more candidates follow. */
        size_t tail = candidates[i + 1] ? sizeof more - 1 : 0;
        if (sep + item + tail < size - len) {
            memcpy(buf + len, ", ", sep);
            memcpy(buf + len + sep, candidates[i], item);
            len += sep + item;
            buf[len] = '\0';
            continue;
        }
        /* Does not fit: end with "..." (after ", " when something came before). */
        const char *ell = i ? more : more + 2;
        size_t n = strlen(ell);
        if (n > size - 1 - len)
            n = size - 1 - len;
        memcpy(buf + len, ell, n);
        buf[len + n] = '\0';
        return;
    }
}
