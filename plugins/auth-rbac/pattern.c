/* Target patterns (see pattern.h). */
#include "pattern.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The longest room or channel name the host accepts. */
#define PATTERN_MAX_SEGMENT 128

int glob_match(const char *glob, const char *name)
{
    /* Greedy with one backtrack point: on a mismatch, let the last `*` swallow one more
     * character. Linear in practice, O(len(glob) * len(name)) at worst. */
    const char *star = NULL, *resume = NULL;
    while (*name) {
        if (*glob == '*') {
            star = ++glob;
            resume = name;
        } else if (*glob == *name) {
            glob++;
            name++;
        } else if (star) {
            glob = star;
            name = ++resume;
        } else {
            return 0;
        }
    }
    while (*glob == '*')
        glob++;
    return *glob == '\0';
}

static int pattern__name_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == ':' || c == '-';
}

/* Check one segment of `len` characters; `which` is "room" or "channel". */
static int pattern__check_segment(const char *s, size_t len, const char *which, char *why,
                                  size_t whysz)
{
    if (len == 0) {
        snprintf(why, whysz, "the %s part is empty", which);
        return -1;
    }
    size_t literal = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '*') {
            if (i + 1 < len && s[i + 1] == '*') {
                snprintf(why, whysz,
                         "\"**\" stands alone (it matches every room and channel); within a "
                         "name use \"*\"");
                return -1;
            }
            continue;
        }
        if (!pattern__name_char(c)) {
            if (c >= 0x20 && c < 0x7f)
                snprintf(why, whysz, "'%c' cannot appear in a %s name", c, which);
            else
                snprintf(why, whysz, "byte 0x%02x cannot appear in a %s name", c, which);
            return -1;
        }
        literal++;
    }
    if (literal > PATTERN_MAX_SEGMENT) {
        snprintf(why, whysz, "the %s part is longer than %d characters, the longest name", which,
                 PATTERN_MAX_SEGMENT);
        return -1;
    }
    return 0;
}

int pattern_compile(const char *text, struct pattern *p, char *why, size_t whysz)
{
    memset(p, 0, sizeof *p);
    const char *s = text;
    if (*s == '!') {
        p->deny = 1;
        s++;
    }
    if (!*s) {
        snprintf(why, whysz, p->deny ? "\"!\" needs a pattern after it" : "the pattern is empty");
        return -1;
    }
    if (strcmp(s, "**") == 0) {
        p->all = 1;
    } else {
        const char *slash = strchr(s, '/');
        if (slash && strchr(slash + 1, '/')) {
            snprintf(why, whysz, "a pattern is room or room/channel: at most one '/'");
            return -1;
        }
        size_t room_len = slash ? (size_t)(slash - s) : strlen(s);
        if (pattern__check_segment(s, room_len, "room", why, whysz) != 0 ||
            (slash &&
             pattern__check_segment(slash + 1, strlen(slash + 1), "channel", why, whysz) != 0))
            return -1;
    }
    if (!(p->text = strdup(s)))
        return -2;
    char *slash = strchr(p->text, '/');
    if (slash) {
        *slash = '\0';
        p->seg2 = slash + 1;
    }
    return 0;
}

void pattern_free(struct pattern *p)
{
    free(p->text);
    memset(p, 0, sizeof *p);
}

int pattern_copy(struct pattern *dst, const struct pattern *src)
{
    *dst = *src;
    size_t room_len = strlen(src->text);
    size_t len = room_len + (src->seg2 ? 1 + strlen(src->seg2) : 0);
    if (!(dst->text = malloc(len + 1)))
        return -2;
    memcpy(dst->text, src->text, len + 1); /* the '\0' between segments included */
    dst->seg2 = src->seg2 ? dst->text + room_len + 1 : NULL;
    return 0;
}

int pattern_match(const struct pattern *p, const char *room, const char *channel)
{
    if (p->all)
        return 1;
    if (!room || (p->seg2 != NULL) != (channel != NULL))
        return 0;
    return glob_match(p->text, room) && (!channel || glob_match(p->seg2, channel));
}

int pattern_set_allows(const struct pattern_set *set, const char *room, const char *channel)
{
    for (size_t i = 0; i < set->n; i++) {
        const struct pattern *p = &set->items[i];
        if (pattern_match(p, room, channel))
            return !p->deny; /* denying patterns come first: a match among them decides */
    }
    return 0;
}

int pattern_set_add(struct pattern_set *set, const struct pattern *p)
{
    struct pattern copy;
    if (pattern_copy(&copy, p) != 0)
        return -2;
    struct pattern *items = realloc(set->items, (set->n + 1) * sizeof *items);
    if (!items) {
        pattern_free(&copy);
        return -2;
    }
    set->items = items;
    size_t at = set->n;
    if (copy.deny) {
        /* After the other denying patterns, before every allowing one. */
        at = 0;
        while (at < set->n && set->items[at].deny)
            at++;
        memmove(&set->items[at + 1], &set->items[at], (set->n - at) * sizeof *items);
    }
    set->items[at] = copy;
    set->n++;
    return 0;
}

void pattern_set_free(struct pattern_set *set)
{
    for (size_t i = 0; i < set->n; i++)
        pattern_free(&set->items[i]);
    free(set->items);
    set->items = NULL;
    set->n = 0;
}
