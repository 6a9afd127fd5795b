/* Target patterns: which rooms and channels a role may join, publish to or read the history
 * of. Pure functions, no allocation when matching.
 *
 * A target is a room ("chat") or a channel of a room ("chat/general"). A pattern is written
 * the same way, one segment or two (the spaces around '/' below only keep this a C comment):
 *   chat          the room chat itself (its room-wide messages), none of its channels
 *   chat / *      every channel of room chat
 *   *             every room itself
 *   * / *         every channel of every room
 *   public*       every room whose name starts with "public"
 *   **            everything: every room and every channel
 *   !secret / *   a leading '!' denies: a target that any deny pattern matches is refused,
 *                 whatever the other patterns allow
 * `*` matches any run of characters, the empty one too, within one segment (never a '/').
 * `**` stands alone. Other characters are those of room and channel names (letters, digits,
 * '_', '.', ':', '-'), at most 128 to a segment. */
#ifndef ARQ_AUTH_RBAC_PATTERN_H
#define ARQ_AUTH_RBAC_PATTERN_H

#include <stddef.h>

struct pattern {
    char *text;       /* the pattern without '!', its '/' replaced by '\0'        */
    const char *seg2; /* the channel segment inside `text`, or NULL: a room itself */
    int deny;         /* written with a leading '!'                               */
    int all;          /* "**"                                                     */
};

/* A role's patterns for one action, denying patterns first. */
struct pattern_set {
    struct pattern *items;
    size_t n;
};

/* 1 when `name` matches the one-segment glob `glob` (`*` = any run, the empty one too). */
int glob_match(const char *glob, const char *name);

/* Parse `text` into `p`. 0; -1 with the reason in `why` ("at most one '/' ..."): the caller
 * names the role and field; -2 when out of memory. */
int pattern_compile(const char *text, struct pattern *p, char *why, size_t whysz);
void pattern_free(struct pattern *p);
/* A deep copy of `src` into `dst`. 0, or -2 when out of memory. */
int pattern_copy(struct pattern *dst, const struct pattern *src);

/* 1 when `p` matches room `room` (channel NULL) or channel `room`/`channel`. Ignores `deny`. */
int pattern_match(const struct pattern *p, const char *room, const char *channel);

/* 1 when some allowing pattern of `set` matches the target and no denying one does. */
int pattern_set_allows(const struct pattern_set *set, const char *room, const char *channel);

/* Add a copy of `p` to `set`, keeping denying patterns first. 0, or -2 when out of memory (the
 * set is unchanged). */
int pattern_set_add(struct pattern_set *set, const struct pattern *p);
void pattern_set_free(struct pattern_set *set);

#endif
