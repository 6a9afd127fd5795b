/* The configuration as the host understands it: the *.yaml files of conf.d read in lexical order,
 * the `host:` section validated against its own option spec, and the `plugins:` section turned into
 * instance declarations. Files are merged key by key: setting one host option or declaring one
 * plugin instance in two places is an error that names both places. */
#ifndef ARQ_HOST_CONFIG_H
#define ARQ_HOST_CONFIG_H

#include <arqonbus/plugin.h>
#include <jansson.h>
#include <stdint.h>

#include "cfg.h"
#include "diag.h"
#include "log.h"

struct plugin_decl {
    char *name;         /* instance name                                             */
    const char *module; /* as written                                                */
    char *module_path;  /* resolved file path                                        */
    int enabled;
    const json_t *config_node; /* the `config:` mapping node, or NULL                       */
    struct cfg_pos pos;        /* where the instance key is                                 */
    struct cfg_pos config_pos; /* where `config:` is (or pos when absent)                   */
};

struct host_settings {
    enum arq_log_level log_level;
    enum log_format log_format;
    const char *log_file; /* NULL: stderr                                                   */
    const char *node;
    char *plugin_dir;
    uint64_t drain_timeout_ms;
    uint64_t drain_delay_ms;
    size_t telemetry_queue_size;
    size_t telemetry_batch_size;
};

/* A file that was read, and the settings it declares ("host.log_level, plugins.ws", truncated
 * with "..."; NULL when it declares none: an empty file, only comments, or `plugins:` alone). */
struct config_file {
    char *path;
    char *held;
};

struct config {
    char *dir;
    struct config_file *files; /* lexical order                                             */
    size_t nfiles;
    struct diag_list warnings; /* problems that do not make the configuration invalid       */
    struct cfg_doc *doc;
    json_t *host_values;    /* validated host options                                          */
    json_t *section_values; /* the validated options of the section below, or NULL          */
    struct host_settings host;
    struct plugin_decl *plugins; /* declaration order: file order, then order in the file   */
    size_t nplugins;
};

extern const struct arq_option config_host_options[];

/* The directories used when neither the command line, the configuration nor the environment
 * name one: where this executable's build or installation put the plugins and conf.d. An
 * installed arqonbusd resolves them from the directory it runs from (/proc/self/exe) with
 * the relative paths from its bindir fixed at build time, so the tree can be installed under
 * any prefix; a daemon in its build tree (a `plugins` directory beside it and no installed
 * plugin directory) uses the plugins built beside it. Absolute paths chosen at build time
 * (sysconfdir /etc) are used as they are. Computed once. */
const char *config_default_plugin_dir(void);
const char *config_default_conf_dir(void);
/* `rel` resolved from directory `dir` into out: an absolute rel as it is, and each leading
 * "../" removes one component of dir. Exposed for tests. 0, or -1 when out is too small. */
int config_resolve_from(const char *dir, const char *rel, char *out, size_t size);

/* A top-level section of conf.d owned by the layer above the runtime (the bus's `bus:`),
 * validated against its spec like the host's own. */
struct config_section {
    const char *name;
    const struct arq_option *options;
};

/* Read and check `dir`. NULL with every problem in diags. `getenv_fn` NULL: the process
 * environment. `section` NULL: no section besides host and plugins. */
struct config *config_load(const char *dir, cfg_getenv_fn getenv_fn, void *getenv_arg,
                           const struct config_section *section, struct diag_list *diags);
void config_free(struct config *conf);
/* Against the running configuration `cur`: a file that declared settings there and declares
 * none now (emptied, most likely by a failed write or an editor) is an error naming the file
 * and what it held, so that a reload does not silently reset them. Deleting the file drops
 * them. 0, or -1 with the problems in diags. */
int config_check_emptied(const struct config *next, const struct config *cur,
                         struct diag_list *diags);
const struct plugin_decl *config_find(const struct config *conf, const char *name);

#endif
