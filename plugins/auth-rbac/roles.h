/* Roles: what each role may do, and its rate limits, built from the built-in role set and the
 * `roles` option. Pure (no host calls): a role set is built aside, checked whole, and then
 * swapped in by the plugin.
 *
 * A role is built from a base, then the fields its YAML gives:
 *   - with `inherits: <role>`: the base is that role as finally built; the lists it gives
 *     (commands, join, publish, history) are ADDED to the inherited ones, its other fields
 *     (connect, direct, each limit's rate and burst) replace the inherited ones;
 *   - else a built-in role (guest, user, admin): the base is its default, and every field it
 *     gives replaces the default's (a list replaces the whole list);
 *   - else a new role: the base is empty (nothing allowed, no limits).
 * Denying entries ("!...") win over allowing ones wherever they come from. */
#ifndef ARQ_AUTH_RBAC_ROLES_H
#define ARQ_AUTH_RBAC_ROLES_H

#include <jansson.h>
#include <stddef.h>

#include "bucket.h"
#include "pattern.h"

/* The limits a role may have. */
enum rbac_limit_kind {
    RBAC_LIMIT_MESSAGES,         /* publish and direct, per connection                   */
    RBAC_LIMIT_COMMANDS,         /* command, per connection                              */
    RBAC_LIMIT_SUBJECT_MESSAGES, /* publish and direct, per subject across connections   */
    RBAC_LIMIT_N
};

struct rbac_limit {
    struct bucket_rate rate; /* per_minute 0: no limit                                    */
    int per_second;          /* written per second (so reasons say "/s", else "/min")     */
};

/* One entry of a role's `commands`. */
struct rbac_command_rule {
    char *name;        /* a command, or NULL                                                 */
    const char *group; /* "@group": "guest", "user" or "admin" (static), or NULL             */
    int all;           /* "*"                                                                */
    int deny;          /* written with a leading '!'                                         */
};

struct rbac_role {
    char *name;
    int connect;
    int direct;
    struct rbac_command_rule *commands; /* denying entries first */
    size_t ncommands;
    struct pattern_set join, publish, history;
    struct rbac_limit limits[RBAC_LIMIT_N];
};

struct rbac_roles {
    struct rbac_role *items; /* the built-in roles first, then the new ones in YAML order */
    size_t n;
};

/* Build the role set: the built-in roles with `yaml` (the `roles` option: an object of role
 * name to role, or NULL for none) applied. 0; -1 with the problem in `err` (naming the role
 * and the field: "roles.guest.join[1]: bad pattern ..."); -2 when out of memory. `out` is
 * empty on failure. */
int rbac_roles_build(const json_t *yaml, struct rbac_roles *out, char *err, size_t errsz);
void rbac_roles_free(struct rbac_roles *roles);

/* The role named `name`, or NULL. */
const struct rbac_role *rbac_roles_find(const struct rbac_roles *roles, const char *name);

/* 1 when `role` may run `command` of group `group` (NULL when the host does not know it). */
int rbac_role_may_command(const struct rbac_role *role, const char *command, const char *group);

/* Suggest the candidate nearest `word` (a few edits at most), or NULL. */
const char *rbac_suggest(const char *word, const char *const *candidates);

#endif
