#include "loader.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "options.h"

/* Size of each table as ABI 1.0 defines it: the end of its last 1.0 field. */
#define SIZE_1_0(type, last) (offsetof(type, last) + sizeof(((type *)0)->last))
#define PLUGIN_SIZE_1_0      SIZE_1_0(struct arq_plugin, ops)

const char *loader_kind_name(enum arq_kind kind)
{
    switch (kind) {
    case ARQ_KIND_TRANSPORT:
        return "transport";
    case ARQ_KIND_STORAGE:
        return "storage";
    case ARQ_KIND_COMMANDS:
        return "commands";
    case ARQ_KIND_AUTH:
        return "auth";
    case ARQ_KIND_TELEMETRY:
        return "telemetry";
    case ARQ_KIND_BROKER:
        return "broker";
    }
    return NULL;
}

#define FAIL(...) return (snprintf(err, errsz, __VA_ARGS__), -1)
#define NEED(cond, ...)                                                                            \
    do {                                                                                           \
        if (!(cond))                                                                               \
            FAIL(__VA_ARGS__);                                                                     \
    } while (0)

static int check_table_size(const void *ops, size_t need, const char *kind, char *err, size_t errsz)
{
    size_t have = *(const size_t *)ops;
    NEED(have >= need, "the %s table is %zu bytes; plugin ABI %d.0 needs at least %zu", kind, have,
         ARQ_ABI_MAJOR, need);
    return 0;
}

static int check_ops(const struct arq_plugin *d, char *err, size_t errsz)
{
    const char *kind = loader_kind_name(d->kind);
    NEED(d->ops, "the descriptor has no %s table (mandatory)", kind);
    switch (d->kind) {
    case ARQ_KIND_TRANSPORT:
        return check_table_size(d->ops, SIZE_1_0(struct arq_transport_ops, bound_port), kind, err,
                                errsz);
    case ARQ_KIND_STORAGE: {
        const struct arq_storage_ops *o = d->ops;
        if (check_table_size(o, SIZE_1_0(struct arq_storage_ops, stats), kind, err, errsz))
            return -1;
        NEED(o->append, "the storage table has no append function (mandatory)");
        NEED(o->query, "the storage table has no query function (mandatory)");
        return 0;
    }
    case ARQ_KIND_COMMANDS: {
        const struct arq_commands_ops *o = d->ops;
        if (check_table_size(o, SIZE_1_0(struct arq_commands_ops, commands), kind, err, errsz))
            return -1;
        NEED(o->commands, "the commands table has no command list (mandatory)");
        for (const struct arq_command *c = o->commands; c->name; c++) {
            char why[256];
            NEED(c->handler, "command \"%s\" has no handler (mandatory)", c->name);
            NEED(opt_spec_check(c->params, why, sizeof why) == 0,
                 "command \"%s\" declares invalid parameters: %s", c->name, why);
        }
        return 0;
    }
    case ARQ_KIND_AUTH: {
        const struct arq_auth_ops *o = d->ops;
        if (check_table_size(o, SIZE_1_0(struct arq_auth_ops, refresh), kind, err, errsz))
            return -1;
        NEED(o->authenticate || o->authorize,
             "the auth table has neither authenticate nor authorize (one is mandatory)");
        return 0;
    }
    case ARQ_KIND_TELEMETRY: {
        const struct arq_telemetry_ops *o = d->ops;
        if (check_table_size(o, SIZE_1_0(struct arq_telemetry_ops, emit_batch), kind, err, errsz))
            return -1;
        NEED(o->emit_batch, "the telemetry table has no emit_batch function (mandatory)");
        return 0;
    }
    case ARQ_KIND_BROKER: {
        const struct arq_broker_ops *o = d->ops;
        if (check_table_size(o, SIZE_1_0(struct arq_broker_ops, unsubscribe), kind, err, errsz))
            return -1;
        NEED(o->publish, "the broker table has no publish function (mandatory)");
        NEED(o->subscribe, "the broker table has no subscribe function (mandatory)");
        NEED(o->unsubscribe, "the broker table has no unsubscribe function (mandatory)");
        return 0;
    }
    }
    return 0;
}

int loader_check_descriptor(const struct arq_plugin *d, char *err, size_t errsz)
{
    NEED(d->struct_size >= offsetof(struct arq_plugin, name),
         "the descriptor is %zu bytes, too small to hold its ABI version", d->struct_size);
    NEED(d->abi_major == ARQ_ABI_MAJOR,
         "built for plugin ABI %u.%u; this arqonbusd supports ABI %d.%d (the major version "
         "must match: rebuild the plugin against this SDK)",
         d->abi_major, d->abi_minor, ARQ_ABI_MAJOR, ARQ_ABI_MINOR);
    NEED(d->abi_minor <= ARQ_ABI_MINOR,
         "built for plugin ABI %u.%u, newer than this arqonbusd's %d.%d (upgrade arqonbusd or "
         "rebuild the plugin against SDK %d.%d)",
         d->abi_major, d->abi_minor, ARQ_ABI_MAJOR, ARQ_ABI_MINOR, ARQ_ABI_MAJOR, ARQ_ABI_MINOR);
    NEED(d->struct_size >= PLUGIN_SIZE_1_0,
         "the descriptor is %zu bytes; plugin ABI %u.%u needs at least %zu (set struct_size "
         "to sizeof(struct arq_plugin))",
         d->struct_size, d->abi_major, d->abi_minor, (size_t)PLUGIN_SIZE_1_0);
    NEED(d->name && d->name[0], "the descriptor has no name");
    NEED(loader_kind_name(d->kind), "the descriptor has unknown kind %d", (int)d->kind);
    NEED(d->create, "the descriptor has no create function (mandatory)");
    NEED(d->destroy, "the descriptor has no destroy function (mandatory)");
    char why[256];
    NEED(opt_spec_check(d->options, why, sizeof why) == 0, "invalid option spec: %s", why);
    return check_ops(d, err, errsz);
}

/* For a module that is not there: the closest module name in the same directory. */
static void suggest_module(const char *path, char *hint, size_t size)
{
    hint[0] = '\0';
    const char *slash = strrchr(path, '/');
    if (!slash)
        return;
    char dir[4096];
    snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    char want[256];
    snprintf(want, sizeof want, "%s", slash + 1);
    size_t wlen = strlen(want);
    if (wlen >= 3 && !strcmp(want + wlen - 3, ".so"))
        want[wlen - 3] = '\0';

    DIR *dh = opendir(dir);
    if (!dh)
        return;
    char *names[128];
    size_t n = 0;
    struct dirent *de;
    while (n < 127 && (de = readdir(dh))) {
        size_t len = strlen(de->d_name);
        if (len > 3 && !strcmp(de->d_name + len - 3, ".so") &&
            (names[n] = strndup(de->d_name, len - 3)))
            n++;
    }
    closedir(dh);
    names[n] = NULL;
    const char *best = diag_suggest(want, (const char *const *)names);
    if (best)
        snprintf(hint, size, " (did you mean \"%s\"?)", best);
    for (size_t i = 0; i < n; i++)
        free(names[i]);
}

struct module *loader_load(struct loader *l, const char *path, const char *who,
                           const struct cfg_pos *pos, struct diag_list *diags)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        char hint[300];
        int e = errno;
        suggest_module(path, hint, sizeof hint);
        diag_add(diags, pos, "%s: cannot load \"%s\": %s%s", who, path, strerror(e), hint);
        return NULL;
    }
    for (struct module *m = l->modules; m; m = m->next)
        if (m->dev == st.st_dev && m->ino == st.st_ino)
            return m;

    void *handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!handle) {
        diag_add(diags, pos, "%s: cannot load \"%s\": %s", who, path, dlerror());
        return NULL;
    }
    /* Modules are never unloaded (see loader.h), so a refused one stays mapped too: it is
     * harmless, and the same file is then refused again without running its constructors. */
    dlerror();
    void *sym = dlsym(handle, ARQ_PLUGIN_ENTRY);
    if (!sym) {
        diag_add(diags, pos, "%s: \"%s\": not an ArqonBus plugin: it does not export %s()", who,
                 path, ARQ_PLUGIN_ENTRY);
        return NULL;
    }
    arq_plugin_entry_fn entry;
    memcpy(&entry, &sym, sizeof entry); /* ISO C has no object-to-function pointer cast */
    const struct arq_plugin *d = entry();
    if (!d) {
        diag_add(diags, pos, "%s: \"%s\": %s() returned no descriptor", who, path,
                 ARQ_PLUGIN_ENTRY);
        return NULL;
    }
    char err[600];
    if (loader_check_descriptor(d, err, sizeof err) != 0) {
        diag_add(diags, pos, "%s: \"%s\": %s", who, path, err);
        return NULL;
    }

    struct module *m = calloc(1, sizeof *m);
    if (!m || !(m->path = strdup(path))) {
        free(m);
        diag_add(diags, pos, "%s: out of memory", who);
        return NULL;
    }
    m->dev = st.st_dev;
    m->ino = st.st_ino;
    m->handle = handle;
    m->desc = d;
    m->next = l->modules;
    l->modules = m;
    return m;
}

void loader_free(struct loader *l)
{
    struct module *m = l->modules;
    while (m) {
        struct module *next = m->next;
        free(m->path);
        free(m);
        m = next;
    }
    l->modules = NULL;
}
