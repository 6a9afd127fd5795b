/* Configuration documents: YAML files read into jansson trees that remember where every node
 * came from.
 *
 * Every mapping becomes a JSON object, every sequence a JSON array, and every scalar a JSON
 * *string* (typing happens later, against the option spec that gives the scalar its meaning,
 * so YAML 1.1 surprises such as `no` -> false cannot happen behind the user's back). Each node
 * is a distinct jansson value, so its address identifies it: cfg_pos_of() gives where the
 * value starts and cfg_key_pos_of() where the key that holds it starts. `${VAR}` and
 * `${VAR:-default}` are expanded in scalar values while loading; `$$` stands for `$`. */
#ifndef ARQ_HOST_CFG_H
#define ARQ_HOST_CFG_H

#include <jansson.h>
#include <stddef.h>

struct diag_list;

struct cfg_pos {
    const char *file; /* owned by the cfg_doc */
    int line, col;    /* 1-based */
};

struct cfg_doc;

/* Environment lookup used for expansion; NULL means getenv(). For tests. */
typedef const char *(*cfg_getenv_fn)(const char *name, void *arg);

struct cfg_doc *cfg_doc_new(cfg_getenv_fn getenv_fn, void *getenv_arg);
void cfg_doc_free(struct cfg_doc *doc);

/* Read one YAML text as file `name`. Returns the document's root (borrowed, owned by doc;
 * an empty document gives an empty object) or NULL after adding every problem to `diags`.
 * Multi-document streams, anchors/aliases, tags other than the core ones and duplicate keys
 * in a mapping are errors. */
json_t *cfg_doc_parse(struct cfg_doc *doc, const char *name, const char *text, size_t len,
                      struct diag_list *diags);
/* Read a file (see cfg_doc_parse). */
json_t *cfg_doc_parse_file(struct cfg_doc *doc, const char *path, struct diag_list *diags);
/* The `*.yaml` and `*.yml` regular files of `dir`, in byte-wise lexical order, as a
 * NULL-terminated array of full paths (free with cfg_free_list). NULL with a diagnostic
 * when the directory cannot be read. Hidden files (starting with '.') are skipped. */
char **cfg_list_dir(const char *dir, struct diag_list *diags);
void cfg_free_list(char **list);

/* Where a node came from; NULL for nodes not made by this doc. */
const struct cfg_pos *cfg_pos_of(const struct cfg_doc *doc, const json_t *node);
/* Where the mapping key holding `node` is; falls back to cfg_pos_of for non-members. */
const struct cfg_pos *cfg_key_pos_of(const struct cfg_doc *doc, const json_t *node);
/* Non-zero when scalar `node` was written plain (unquoted, not a block scalar). */
int cfg_is_plain(const struct cfg_doc *doc, const json_t *node);

/* Expand ${VAR}, ${VAR:-default} and $$ in `in`. Returns a new string, or NULL and writes a
 * message (without position) into err. Exposed for tests. */
char *cfg_expand(const char *in, cfg_getenv_fn getenv_fn, void *arg, char *err, size_t errsz);

#endif
