/* Loading plugin modules: dlopen(RTLD_NOW | RTLD_LOCAL), find arq_plugin_v1, check the
 * descriptor's ABI, size, mandatory entries and option spec.
 *
 * A module is one version of a file: its device, inode, size and modification time. Loading a
 * path whose file is already loaded with the same identity gives that module again; a file
 * replaced or rewritten on disk is a new module, so a rebuilt plugin takes effect on reload.
 * glibc would hand back the object it already mapped for the same path name (or the same
 * inode), so a new version of a file already mapped is loaded from a private copy (in
 * $TMPDIR, else /tmp; removed right after dlopen).
 *
 * Mapping a file runs code and touches every page of it: a truncated or corrupt file would
 * kill the process (SIGBUS in the dynamic loader) instead of failing. So before a file is
 * mapped here, its ELF header and program headers are checked against its size, and a child
 * process (fork, dlopen, the entry point, _exit) loads it first: a module that crashes or
 * hangs (10 s) the child is refused with its path, and nothing is mapped in the daemon.
 *
 * A descriptor built for ABI 1.0 is read through a copy in this header's layout (its option
 * specs have the 1.0 stride, see struct arq_option): `desc` is then that copy, owned by the
 * module, and the plugin's own descriptor is never written.
 *
 * Modules are never dlclose'd (code of a retired instance may still be on a stack or in a
 * pending callback, and many libraries do not survive unloading). */
#ifndef ARQ_HOST_LOADER_H
#define ARQ_HOST_LOADER_H

#include <arqonbus/plugin.h>
#include <sys/types.h>
#include <time.h>

#include "diag.h"

struct loader_upgrade;

struct module {
    char *path; /* as first loaded                                                       */
    dev_t dev;  /* the identity of the file version that was loaded                      */
    ino_t ino;
    off_t size;
    struct timespec mtime;
    int private_copy; /* mapped from a private copy (the path was already mapped)        */
    void *handle;
    const struct arq_plugin *desc;  /* NULL in loader.refused                               */
    struct loader_upgrade *upgrade; /* a 1.0 descriptor's copy (desc points into it), or NULL */
    struct module *next;
};

struct loader {
    struct module *modules; /* accepted modules, newest first                               */
    struct module *refused; /* mapped but refused (bad descriptor): kept to refuse them again
                             * without mapping them twice                                   */
};

/* Load (or find already loaded) the module at `path`. `who` prefixes messages
 * (`plugin "x" (module y)`), `pos` locates them. NULL after adding the reason to diags. */
struct module *loader_load(struct loader *l, const char *path, const char *who,
                           const struct cfg_pos *pos, struct diag_list *diags);
/* Forget every module (dlclose is not called; see above). */
void loader_free(struct loader *l);

/* Check a descriptor in this header's layout (exposed for tests): 0, or -1 with a message. */
int loader_check_descriptor(const struct arq_plugin *d, char *err, size_t errsz);

const char *loader_kind_name(enum arq_kind kind);

#endif
