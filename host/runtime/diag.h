/* Diagnostics: a list of user-facing problems, each already prefixed with file:line:col. */
#ifndef ARQ_HOST_DIAG_H
#define ARQ_HOST_DIAG_H

#include <stddef.h>

#include "cfg.h"

struct diag_list {
    char **items;
    size_t n, cap;
};

/* Append "file:line:col: <message>" (or just "<message>" when pos is NULL). Never fails
 * silently: on allocation failure a fixed "out of memory" entry is recorded. */
void diag_add(struct diag_list *dl, const struct cfg_pos *pos, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void diag_clear(struct diag_list *dl);
/* Move every entry of `from` to the end of `to`. */
void diag_move(struct diag_list *to, struct diag_list *from);

/* The candidate closest to `word` by edit distance when it is close enough to be a likely
 * typo, else NULL. `candidates` is NULL-terminated. */
const char *diag_suggest(const char *word, const char *const *candidates);
/* Writes ", "-joined `candidates` into buf (truncated with "..." if needed). */
void diag_join(char *buf, size_t size, const char *const *candidates);

#endif
