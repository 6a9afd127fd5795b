#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "options.h"

static const char *const log_levels[] = {"debug", "info", "warn", "error", NULL};
static const char *const log_formats[] = {"logfmt", "json", NULL};

const struct arq_option config_host_options[] = {
    ARQ_OPT_CHOICE("log_level", log_levels, "info", ARQ_OPT_RELOADABLE,
                   "least severe level written: debug, info, warn, error"),
    ARQ_OPT_CHOICE("log_format", log_formats, "logfmt", ARQ_OPT_RELOADABLE,
                   "logfmt (key=value) or json, one line per event"),
    ARQ_OPT("log_file", ARQ_OPT_STRING, NULL, ARQ_OPT_RELOADABLE,
            "append logs to this file instead of stderr; SIGUSR1 reopens it"),
    ARQ_OPT("node", ARQ_OPT_STRING, NULL, ARQ_OPT_RELOADABLE,
            "this node's name; default: <host name>-<pid>"),
    ARQ_OPT("plugin_dir", ARQ_OPT_STRING, NULL, ARQ_OPT_RELOADABLE,
            "where modules named without a '/' are found; default: $ARQONBUS_PLUGIN_DIR, "
            "else the plugin directory installed with arqonbusd (in a build tree: plugins/ "
            "beside it)"),
    ARQ_OPT_RANGE("drain_delay", ARQ_OPT_DURATION, "0s", 0, 600000, ARQ_OPT_RELOADABLE,
                  "after SIGTERM, keep serving this long while readiness reports 503, so that "
                  "load balancers move clients away first"),
    ARQ_OPT_RANGE("drain_timeout", ARQ_OPT_DURATION, "10s", 0, 600000, ARQ_OPT_RELOADABLE,
                  "how long a graceful stop waits for plugins to finish"),
    ARQ_OPT_RANGE("telemetry_queue_size", ARQ_OPT_INT, "8192", 16, 1048576, ARQ_OPT_RELOADABLE,
                  "telemetry events queued for the sinks before new ones are dropped"),
    ARQ_OPT_RANGE("telemetry_batch_size", ARQ_OPT_INT, "256", 1, 65536, ARQ_OPT_RELOADABLE,
                  "most telemetry events handed to a sink at once"),
    ARQ_OPT_END};

static const struct arq_option instance_options[] = {
    ARQ_OPT("module", ARQ_OPT_STRING, NULL, ARQ_OPT_REQUIRED,
            "module name (found in plugin_dir) or path to a .so"),
    ARQ_OPT("enabled", ARQ_OPT_STRING, "true", 0,
            "true, false, or a comparison \"A == B\" / \"A != B\" (after ${VAR} expansion)"),
    ARQ_OPT("config", ARQ_OPT_JSON, NULL, 0, "the module's options"), ARQ_OPT_END};

static int instance_name_is_valid(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 64)
        return 0;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && !strchr("_.-", *s))
            return 0;
    return 1;
}

/* `enabled:` is a boolean, or "A == B" / "A != B" so that an environment variable can pick
 * one of several instances (${ARQONBUS_STORAGE_BACKEND:-memory} == redis). 1, 0, or -1. */
static int enabled_value(const char *text)
{
    static const char *const ops[] = {" == ", " != "};
    for (int i = 0; i < 2; i++) {
        const char *op = strstr(text, ops[i]);
        if (!op)
            continue;
        const char *l = text, *r = op + 4;
        size_t llen = (size_t)(op - text), rlen = strlen(r);
        while (llen && isspace((unsigned char)*l))
            l++, llen--;
        while (llen && isspace((unsigned char)l[llen - 1]))
            llen--;
        while (rlen && isspace((unsigned char)*r))
            r++, rlen--;
        while (rlen && isspace((unsigned char)r[rlen - 1]))
            rlen--;
        int equal = llen == rlen && !strncmp(l, r, llen);
        return i == 0 ? equal : !equal;
    }
    static const char *const yes[] = {"true", "yes", "on"}, *const no[] = {"false", "no", "off"};
    for (int i = 0; i < 3; i++) {
        if (!strcasecmp(text, yes[i]))
            return 1;
        if (!strcasecmp(text, no[i]))
            return 0;
    }
    return -1;
}

/* --- default directories ------------------------------------------------------------------ */

int config_resolve_from(const char *dir, const char *rel, char *out, size_t size)
{
    if (rel[0] == '/')
        return snprintf(out, size, "%s", rel) < (int)size ? 0 : -1;
    if (snprintf(out, size, "%s", dir) >= (int)size)
        return -1;
    size_t len = strlen(out);
    for (;;) {
        if (!strncmp(rel, "./", 2)) {
            rel += 2;
        } else if (!strncmp(rel, "../", 3) || !strcmp(rel, "..")) {
            rel += rel[2] ? 3 : 2;
            while (len > 1 && out[len - 1] != '/')
                len--;
            if (len > 1)
                len--; /* the slash, unless it is the root */
            out[len] = '\0';
        } else {
            break;
        }
    }
    if (!*rel)
        return 0;
    return snprintf(out + len, size - len, "%s%s", len && out[len - 1] == '/' ? "" : "/", rel) <
                   (int)(size - len)
               ? 0
               : -1;
}

static int config__is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* The directory of the running executable, or -1 (no /proc). */
static int config__exe_dir(char *out, size_t size)
{
    ssize_t n = readlink("/proc/self/exe", out, size - 1);
    if (n <= 0 || (size_t)n >= size - 1)
        return -1;
    out[n] = '\0';
    char *slash = strrchr(out, '/');
    if (!slash)
        return -1;
    slash[slash == out] = '\0'; /* "/arqonbusd" is in "/" */
    return 0;
}

const char *config_default_plugin_dir(void)
{
    static char dir[PATH_MAX];
    char exe[PATH_MAX], beside[PATH_MAX];
    if (dir[0])
        return dir;
    if (config__exe_dir(exe, sizeof exe) != 0 ||
        config_resolve_from(exe, ARQ_PLUGIN_DIR_FROM_BIN, dir, sizeof dir) != 0) {
        snprintf(dir, sizeof dir, "%s", ARQ_DEFAULT_PLUGIN_DIR);
        return dir;
    }
    if (!config__is_dir(dir) && config_resolve_from(exe, "plugins", beside, sizeof beside) == 0 &&
        config__is_dir(beside))
        memcpy(dir, beside, sizeof dir); /* the build tree */
    return dir;
}

const char *config_default_conf_dir(void)
{
    static char dir[PATH_MAX];
    char exe[PATH_MAX];
    if (dir[0])
        return dir;
    if (config__exe_dir(exe, sizeof exe) != 0 ||
        config_resolve_from(exe, ARQ_CONF_DIR_FROM_BIN, dir, sizeof dir) != 0)
        snprintf(dir, sizeof dir, "%s", ARQ_DEFAULT_CONF_DIR);
    return dir;
}

/* --- reading ---------------------------------------------------------------------------------- */

/* `rel` relative to the directory of `file` (when rel is not absolute). */
static char *path_beside(const char *file, const char *rel)
{
    if (rel[0] == '/' || !file)
        return strdup(rel);
    const char *slash = strrchr(file, '/');
    size_t dlen = slash ? (size_t)(slash - file) : 1;
    const char *dir = slash ? file : ".";
    size_t len = dlen + 1 + strlen(rel) + 1;
    char *out = malloc(len);
    if (out)
        snprintf(out, len, "%.*s/%s", (int)dlen, dir, rel);
    return out;
}

/* "x.so" names the file; "x.sound" is a module name that still needs the suffix. */
static int has_so_suffix(const char *name)
{
    size_t n = strlen(name);
    return n >= 3 && !strcmp(name + n - 3, ".so");
}

static char *join_path(const char *dir, const char *name, const char *suffix)
{
    size_t len = strlen(dir) + 1 + strlen(name) + strlen(suffix) + 1;
    char *out = malloc(len);
    if (out)
        snprintf(out, len, "%s/%s%s", dir, name, suffix);
    return out;
}

/* Adds `src`'s members to `dst`, refusing keys already present (first wins). */
static void merge_unique(json_t *dst, const json_t *src, const struct cfg_doc *doc,
                         const char *what, struct diag_list *diags)
{
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)src, key, v)
    {
        json_t *prev = json_object_get(dst, key);
        if (prev) {
            const struct cfg_pos *p = cfg_key_pos_of(doc, prev);
            diag_add(diags, cfg_key_pos_of(doc, v), "%s \"%s\" is already declared at %s:%d:%d",
                     what, key, p ? p->file : "?", p ? p->line : 0, p ? p->col : 0);
            continue;
        }
        if (json_object_set(dst, key, v) != 0)
            diag_add(diags, NULL, "out of memory");
    }
}

/* The top-level keys: host, the section of the layer above the runtime (when there is one),
 * plugins. */
static void config__top_level_keys(const struct config_section *section, const char *keys[4])
{
    size_t n = 0;
    keys[n++] = "host";
    if (section)
        keys[n++] = section->name;
    keys[n++] = "plugins";
    keys[n] = NULL;
}

static void read_file(struct config *conf, json_t *root, const struct config_section *section,
                      json_t *host_merged, json_t *section_merged, json_t *plugins_merged,
                      struct diag_list *diags)
{
    const char *top_level_keys[4];
    config__top_level_keys(section, top_level_keys);
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v)
    {
        const struct cfg_pos *kp = cfg_key_pos_of(conf->doc, v);
        json_t *target = !strcmp(key, "host")                     ? host_merged
                         : section && !strcmp(key, section->name) ? section_merged
                         : !strcmp(key, "plugins")                ? plugins_merged
                                                                  : NULL;
        if (!target) {
            char allowed[64];
            const char *hint = diag_suggest(key, top_level_keys);
            diag_join(allowed, sizeof allowed, top_level_keys);
            diag_add(diags, kp, "unknown top-level key \"%s\"; allowed: %s%s%s%s", key, allowed,
                     hint ? " (did you mean \"" : "", hint ? hint : "", hint ? "\"?)" : "");
            continue;
        }
        if (json_is_string(v) && json_string_value(v)[0] == '\0')
            continue; /* `plugins:` with nothing under it */
        if (!json_is_object(v)) {
            diag_add(diags, cfg_pos_of(conf->doc, v), "\"%s\" must be a mapping", key);
            continue;
        }
        char what[80];
        if (target == section_merged)
            snprintf(what, sizeof what, "%s option", section->name);
        else
            snprintf(what, sizeof what, "%s",
                     target == host_merged ? "host option" : "plugin instance");
        merge_unique(target, v, conf->doc, what, diags);
    }
}

/* A merged section validated against its spec; missing REQUIRED options are reported at the
 * section's first key (or the directory when the section is absent). */
static json_t *validate_section(const struct config *conf, const json_t *merged,
                                const struct arq_option *spec, const char *who,
                                struct diag_list *diags)
{
    const json_t *first = NULL;
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)merged, k, v)
    {
        first = v;
        break;
    }
    struct cfg_pos where = {conf->dir, 0, 0};
    const struct cfg_pos *wp = first ? cfg_key_pos_of(conf->doc, first) : &where;
    return opt_validate(spec, merged, conf->doc, wp, who, diags);
}

/* What can be known about the log file without creating it: its directory exists. (Whether
 * the daemon may write there depends on the user it runs as, which --check-config may not
 * be.) */
static void config__check_log_file(const struct config *conf, const json_t *node, const char *path,
                                   struct diag_list *diags)
{
    const struct cfg_pos *pos = cfg_pos_of(conf->doc, node);
    char dir[PATH_MAX];
    const char *slash = strrchr(path, '/');
    snprintf(dir, sizeof dir, "%.*s", slash ? (int)(slash - path) : 1, slash ? path : ".");
    if (slash == path)
        snprintf(dir, sizeof dir, "/");
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        diag_add(diags, pos, "host section: option \"log_file\": \"%s\" is a directory", path);
    } else if (stat(dir, &st) != 0) {
        if (errno == ENOENT || errno == ENOTDIR)
            diag_add(diags, pos,
                     "host section: option \"log_file\": the directory \"%s\" does not exist", dir);
    } else if (!S_ISDIR(st.st_mode)) {
        diag_add(diags, pos, "host section: option \"log_file\": \"%s\" is not a directory", dir);
    }
}

static void apply_host(struct config *conf, const json_t *host_merged, struct diag_list *diags)
{
    conf->host_values =
        validate_section(conf, host_merged, config_host_options, "host section", diags);
    if (!conf->host_values)
        return;

    struct host_settings *h = &conf->host;
    const json_t *hv = conf->host_values;
    log_level_parse(opt_get_str(hv, "log_level", "info"), &h->log_level);
    h->log_format = !strcmp(opt_get_str(hv, "log_format", "logfmt"), "json") ? LOG_FORMAT_JSON
                                                                             : LOG_FORMAT_LOGFMT;
    h->log_file = opt_get_str(hv, "log_file", NULL);
    if (h->log_file)
        config__check_log_file(conf, json_object_get(host_merged, "log_file"), h->log_file, diags);
    h->node = opt_get_str(hv, "node", NULL);
    h->drain_timeout_ms = (uint64_t)opt_get_int(hv, "drain_timeout", 10000);
    h->drain_delay_ms = (uint64_t)opt_get_int(hv, "drain_delay", 0);
    h->telemetry_queue_size = (size_t)opt_get_int(hv, "telemetry_queue_size", 8192);
    h->telemetry_batch_size = (size_t)opt_get_int(hv, "telemetry_batch_size", 256);

    const char *dir = opt_get_str(hv, "plugin_dir", NULL);
    if (dir) {
        const json_t *node = json_object_get(host_merged, "plugin_dir");
        const struct cfg_pos *p = cfg_pos_of(conf->doc, node);
        h->plugin_dir = path_beside(p ? p->file : NULL, dir);
    } else {
        const char *env = getenv("ARQONBUS_PLUGIN_DIR");
        h->plugin_dir = strdup(env && *env ? env : config_default_plugin_dir());
    }
    if (!h->plugin_dir)
        diag_add(diags, NULL, "out of memory");
}

static void read_plugins(struct config *conf, const json_t *plugins_merged, struct diag_list *diags)
{
    size_t n = json_object_size(plugins_merged);
    conf->plugins = calloc(n ? n : 1, sizeof *conf->plugins);
    if (!conf->plugins) {
        diag_add(diags, NULL, "out of memory");
        return;
    }
    const char *name;
    json_t *node;
    json_object_foreach((json_t *)plugins_merged, name, node)
    {
        const struct cfg_pos *kp = cfg_key_pos_of(conf->doc, node);
        char who[160];
        snprintf(who, sizeof who, "plugin \"%s\"", name);
        if (!instance_name_is_valid(name)) {
            diag_add(diags, kp,
                     "%s: instance names are 1 to 64 characters of letters, digits, '_', '.' "
                     "and '-'",
                     who);
            continue;
        }
        json_t *vals = opt_validate(instance_options, node, conf->doc, kp, who, diags);
        if (!vals)
            continue;
        int enabled = enabled_value(opt_get_str(vals, "enabled", "true"));
        if (enabled < 0) {
            const json_t *en = json_object_get(node, "enabled");
            diag_add(diags, cfg_pos_of(conf->doc, en),
                     "%s: \"enabled\": expected true, false, or a comparison such as "
                     "\"${ARQONBUS_STORAGE_BACKEND:-memory} == memory\", got \"%s\"",
                     who, opt_get_str(vals, "enabled", ""));
            json_decref(vals);
            continue;
        }
        struct plugin_decl *d = &conf->plugins[conf->nplugins++];
        d->name = strdup(name);
        d->pos = *kp;
        d->module = json_string_value(json_object_get(node, "module"));
        d->enabled = enabled;
        d->config_node = json_object_get(node, "config");
        const struct cfg_pos *cp =
            d->config_node ? cfg_key_pos_of(conf->doc, d->config_node) : NULL;
        d->config_pos = cp ? *cp : *kp;
        json_decref(vals);

        if (strchr(d->module, '/'))
            d->module_path = path_beside(d->pos.file, d->module);
        else
            d->module_path = join_path(conf->host.plugin_dir ? conf->host.plugin_dir : ".",
                                       d->module, has_so_suffix(d->module) ? "" : ".so");
        if (!d->name || !d->module_path)
            diag_add(diags, kp, "%s: out of memory", who);
    }
}

/* Remember `path` and the settings it declares; a file without any content gets a warning. */
static void config__record_file(struct config *conf, const char *path, const json_t *root,
                                struct diag_list *diags)
{
    struct config_file *cf = &conf->files[conf->nfiles];
    char held[320];
    size_t len = 0;
    const char *section, *key;
    json_t *v, *member;
    held[0] = '\0';
    json_object_foreach((json_t *)root, section, v)
    {
        if (!json_is_object(v))
            continue;
        json_object_foreach(v, key, member)
        {
            if (len < sizeof held)
                len += (size_t)snprintf(held + len, sizeof held - len, "%s%s.%s", len ? ", " : "",
                                        section, key);
        }
    }
    if (len >= sizeof held)
        memcpy(held + sizeof held - 4, "...", 4);
    if (!(cf->path = strdup(path)) || (len && !(cf->held = strdup(held)))) {
        free(cf->path);
        cf->path = NULL;
        diag_add(diags, NULL, "out of memory");
        return;
    }
    conf->nfiles++;
    if (!json_object_size(root)) {
        struct cfg_pos pos = {path, 0, 0};
        diag_add(&conf->warnings, &pos,
                 "warning: the file is empty: it sets nothing, and what it does not set has its "
                 "default");
    }
}

struct config *config_load(const char *dir, cfg_getenv_fn getenv_fn, void *getenv_arg,
                           const struct config_section *section, struct diag_list *diags)
{
    size_t before = diags->n;
    struct config *conf = calloc(1, sizeof *conf);
    json_t *host_merged = json_object();
    json_t *section_merged = json_object();
    json_t *plugins_merged = json_object();
    char **files = NULL;
    if (!conf || !host_merged || !section_merged || !plugins_merged || !(conf->dir = strdup(dir)) ||
        !(conf->doc = cfg_doc_new(getenv_fn, getenv_arg))) {
        diag_add(diags, NULL, "out of memory");
        goto fail;
    }
    files = cfg_list_dir(dir, diags);
    if (!files)
        goto fail;
    if (!files[0])
        diag_add(diags, NULL, "no configuration files (*.yaml, *.yml) in \"%s\"", dir);
    size_t nfiles = 0;
    while (files[nfiles])
        nfiles++;
    if (!(conf->files = calloc(nfiles + 1, sizeof *conf->files))) {
        diag_add(diags, NULL, "out of memory");
        goto fail;
    }
    for (char **f = files; *f; f++) {
        json_t *root = cfg_doc_parse_file(conf->doc, *f, diags);
        if (root) {
            read_file(conf, root, section, host_merged, section_merged, plugins_merged, diags);
            config__record_file(conf, *f, root, diags);
        }
    }
    if (diags->n != before)
        goto fail;
    apply_host(conf, host_merged, diags);
    if (section) {
        char who[80];
        snprintf(who, sizeof who, "%s section", section->name);
        conf->section_values = validate_section(conf, section_merged, section->options, who, diags);
    }
    if (diags->n != before)
        goto fail;
    read_plugins(conf, plugins_merged, diags);
    if (diags->n != before)
        goto fail;
    cfg_free_list(files);
    json_decref(host_merged);
    json_decref(section_merged);
    json_decref(plugins_merged);
    return conf;
fail:
    cfg_free_list(files);
    json_decref(host_merged);
    json_decref(section_merged);
    json_decref(plugins_merged);
    config_free(conf);
    return NULL;
}

void config_free(struct config *conf)
{
    if (!conf)
        return;
    for (size_t i = 0; i < conf->nfiles; i++) {
        free(conf->files[i].path);
        free(conf->files[i].held);
    }
    free(conf->files);
    diag_clear(&conf->warnings);
    for (size_t i = 0; i < conf->nplugins; i++) {
        free(conf->plugins[i].name);
        free(conf->plugins[i].module_path);
    }
    free(conf->plugins);
    free(conf->host.plugin_dir);
    json_decref(conf->host_values);
    json_decref(conf->section_values);
    cfg_doc_free(conf->doc);
    free(conf->dir);
    free(conf);
}

int config_check_emptied(const struct config *next, const struct config *cur,
                         struct diag_list *diags)
{
    size_t before = diags->n;
    for (size_t i = 0; i < next->nfiles; i++) {
        if (next->files[i].held)
            continue;
        for (size_t j = 0; j < cur->nfiles; j++) {
            if (!cur->files[j].held || strcmp(cur->files[j].path, next->files[i].path))
                continue;
            struct cfg_pos pos = {next->files[i].path, 0, 0};
            diag_add(diags, &pos,
                     "the file sets nothing now, but the running configuration has settings from "
                     "it (%s): reloading would drop them. Delete the file to drop them on "
                     "purpose",
                     cur->files[j].held);
        }
    }
    return diags->n == before ? 0 : -1;
}

const struct plugin_decl *config_find(const struct config *conf, const char *name)
{
    for (size_t i = 0; i < conf->nplugins; i++)
        if (!strcmp(conf->plugins[i].name, name))
            return &conf->plugins[i];
    return NULL;
}
