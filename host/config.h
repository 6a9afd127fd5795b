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

struct config {
    char *dir;
    struct cfg_doc *doc;
    json_t *host_values; /* validated host options                                          */
    json_t *bus_values;  /* validated `bus:` options                                        */
    struct host_settings host;
    struct plugin_decl *plugins; /* declaration order: file order, then order in the file   */
    size_t nplugins;
};

extern const struct arq_option config_host_options[];

/* Read and check `dir`. NULL with every problem in diags. `getenv_fn` NULL: the process
 * environment. */
struct config *config_load(const char *dir, cfg_getenv_fn getenv_fn, void *getenv_arg,
                           struct diag_list *diags);
void config_free(struct config *conf);
const struct plugin_decl *config_find(const struct config *conf, const char *name);

#endif
