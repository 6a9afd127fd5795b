/* Loading plugin modules: dlopen(RTLD_NOW | RTLD_LOCAL), find arq_plugin_v1, check the
 * descriptor's ABI, size, mandatory entries and option spec. A module is identified by its
 * file (device and inode), so replacing a .so on disk and reloading loads the new file as a
 * new module; modules are never dlclose'd (code of a retired instance may still be on a
 * stack or in a pending callback, and many libraries do not survive unloading). */
#ifndef ARQ_HOST_LOADER_H
#define ARQ_HOST_LOADER_H

#include <arqonbus/plugin.h>
#include <sys/types.h>

#include "diag.h"

struct module {
    char *path; /* as first loaded                                                       */
    dev_t dev;
    ino_t ino;
    void *handle;
    const struct arq_plugin *desc;
    struct module *next;
};

struct loader {
    struct module *modules;
};

/* Load (or find already loaded) the module at `path`. `who` prefixes messages
 * (`plugin "x" (module y)`), `pos` locates them. NULL after adding the reason to diags. */
struct module *loader_load(struct loader *l, const char *path, const char *who,
                           const struct cfg_pos *pos, struct diag_list *diags);
/* Forget every module (dlclose is not called; see above). */
void loader_free(struct loader *l);

/* Check a descriptor (exposed for tests): 0, or -1 with a message. */
int loader_check_descriptor(const struct arq_plugin *d, char *err, size_t errsz);

const char *loader_kind_name(enum arq_kind kind);

#endif
