#include "loader.h"

#include <dirent.h>
#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <link.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "options.h"

/* Size of each table as the ABI minor that defined it: the end of its last field then. */
#define SIZE_UPTO(type, last) (offsetof(type, last) + sizeof(((type *)0)->last))
#define SIZE_1_0              SIZE_UPTO
#define SIZE_1_1              SIZE_UPTO
#define PLUGIN_SIZE_1_0       SIZE_1_0(struct arq_plugin, ops)

/* struct arq_option as ABI 1.0 lays it out (no `field`): the stride of a 1.0 plugin's specs. */
struct option_1_0 {
    const char *name;
    enum arq_opt_type type;
    unsigned flags;
    const char *default_value;
    double min, max;
    const char *const *choices;
    const char *help;
};

/* What the loader made of a descriptor built for ABI 1.0: a copy whose specs (options, and
 * command params) are in this header's layout, so that the rest of the host reads one
 * layout. The plugin's own descriptor and tables are never written. */
struct loader_upgrade {
    struct arq_plugin desc;
    struct arq_commands_ops commands_ops;
    struct arq_command *commands;
    struct arq_option **specs; /* every converted spec, freed with the upgrade              */
    size_t nspecs;
};

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

static int check_table_size(const void *ops, size_t need, int minor, const char *kind, char *err,
                            size_t errsz)
{
    size_t have = *(const size_t *)ops;
    NEED(have >= need, "the %s table is %zu bytes; plugin ABI %d.%d needs at least %zu", kind, have,
         ARQ_ABI_MAJOR, minor, need);
    return 0;
}

static int check_ops(const struct arq_plugin *d, char *err, size_t errsz)
{
    const char *kind = loader_kind_name(d->kind);
    NEED(d->ops, "the descriptor has no %s table (mandatory)", kind);
    switch (d->kind) {
    case ARQ_KIND_TRANSPORT:
        return check_table_size(d->ops, SIZE_1_0(struct arq_transport_ops, bound_port), 0, kind,
                                err, errsz);
    case ARQ_KIND_STORAGE: {
        const struct arq_storage_ops *o = d->ops;
        if (check_table_size(o, SIZE_1_0(struct arq_storage_ops, stats), 0, kind, err, errsz))
            return -1;
        NEED(o->append, "the storage table has no append function (mandatory)");
        NEED(o->query, "the storage table has no query function (mandatory)");
        return 0;
    }
    case ARQ_KIND_COMMANDS: {
        const struct arq_commands_ops *o = d->ops;
        if (check_table_size(o, SIZE_1_0(struct arq_commands_ops, commands), 0, kind, err, errsz))
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
        if (check_table_size(o, SIZE_1_0(struct arq_auth_ops, refresh), 0, kind, err, errsz))
            return -1;
        NEED(o->authenticate || o->authorize,
             "the auth table has neither authenticate nor authorize (one is mandatory)");
        return 0;
    }
    case ARQ_KIND_TELEMETRY: {
        const struct arq_telemetry_ops *o = d->ops;
        if (check_table_size(o, SIZE_1_0(struct arq_telemetry_ops, emit_batch), 0, kind, err,
                             errsz))
            return -1;
        NEED(o->emit_batch, "the telemetry table has no emit_batch function (mandatory)");
        return 0;
    }
    case ARQ_KIND_BROKER: {
        const struct arq_broker_ops *o = d->ops;
        /* The 1.0 table was a guess no host ever called; 1.1 changed its functions. */
        NEED(d->abi_minor >= 1,
             "the broker table of plugin ABI 1.0 is not supported (it changed in 1.1): rebuild "
             "the plugin against SDK %d.%d",
             ARQ_ABI_MAJOR, ARQ_ABI_MINOR);
        if (check_table_size(o, SIZE_1_1(struct arq_broker_ops, health), 1, kind, err, errsz))
            return -1;
        NEED(o->publish, "the broker table has no publish function (mandatory)");
        NEED(o->subscribe, "the broker table has no subscribe function (mandatory)");
        NEED(o->unsubscribe, "the broker table has no unsubscribe function (mandatory)");
        NEED(o->register_client, "the broker table has no register_client function (mandatory)");
        NEED(o->unregister_client,
             "the broker table has no unregister_client function (mandatory)");
        NEED(o->presence, "the broker table has no presence function (mandatory)");
        return 0;
    }
    }
    return 0;
}

/* What is checked before anything else of the descriptor is read: its size and ABI. */
static int loader__check_head(const struct arq_plugin *d, char *err, size_t errsz)
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
    return 0;
}

int loader_check_descriptor(const struct arq_plugin *d, char *err, size_t errsz)
{
    if (loader__check_head(d, err, errsz) != 0)
        return -1;
    NEED(d->name && d->name[0], "the descriptor has no name");
    NEED(loader_kind_name(d->kind), "the descriptor has unknown kind %d", (int)d->kind);
    NEED(d->create, "the descriptor has no create function (mandatory)");
    NEED(d->destroy, "the descriptor has no destroy function (mandatory)");
    char why[256];
    NEED(opt_spec_check(d->options, why, sizeof why) == 0, "invalid option spec: %s", why);
    return check_ops(d, err, errsz);
}

/* --- a 1.0 descriptor in this header's layout ------------------------------------------------ */

static void loader_upgrade_free(struct loader_upgrade *up)
{
    if (!up)
        return;
    for (size_t i = 0; i < up->nspecs; i++)
        free(up->specs[i]);
    free(up->specs);
    free(up->commands);
    free(up);
}

/* A copy of 1.0 spec `old` (NULL stays NULL) in this layout, recorded in `up`. 0 or -1. */
static int loader__spec_1_0(struct loader_upgrade *up, const void *old,
                            const struct arq_option **out)
{
    *out = NULL;
    if (!old)
        return 0;
    const struct option_1_0 *o = old;
    size_t n = 0;
    while (o[n].name)
        n++;
    struct arq_option *spec = calloc(n + 1, sizeof *spec);
    struct arq_option **specs = realloc(up->specs, (up->nspecs + 1) * sizeof *specs);
    if (specs)
        up->specs = specs;
    if (!spec || !specs) {
        free(spec);
        return -1;
    }
    for (size_t i = 0; i < n; i++)
        spec[i] =
            (struct arq_option){o[i].name, o[i].type,    o[i].flags, o[i].default_value, o[i].min,
                                o[i].max,  o[i].choices, o[i].help,  {0, ARQ_FIELD_NONE}};
    up->specs[up->nspecs++] = spec;
    *out = spec;
    return 0;
}

/* A copy of descriptor `d` (ABI 1.0, head checked) whose specs are in this header's layout;
 * NULL on allocation failure. */
static struct loader_upgrade *loader_upgrade_1_0(const struct arq_plugin *d)
{
    struct loader_upgrade *up = calloc(1, sizeof *up);
    if (!up)
        return NULL;
    memcpy(&up->desc, d, d->struct_size < sizeof up->desc ? d->struct_size : sizeof up->desc);
    if (loader__spec_1_0(up, d->options, &up->desc.options) != 0)
        goto fail;
    const struct arq_commands_ops *ops = d->ops;
    /* A table too short to hold its list is refused by check_ops, read no further here. */
    if (d->kind != ARQ_KIND_COMMANDS || !ops ||
        ops->struct_size < SIZE_1_0(struct arq_commands_ops, commands) || !ops->commands)
        return up;
    size_t n = 0;
    while (ops->commands[n].name)
        n++;
    if (!(up->commands = calloc(n + 1, sizeof *up->commands)))
        goto fail;
    for (size_t i = 0; i < n; i++) {
        up->commands[i] = ops->commands[i];
        if (loader__spec_1_0(up, ops->commands[i].params, &up->commands[i].params) != 0)
            goto fail;
    }
    up->commands_ops = *ops;
    up->commands_ops.struct_size = sizeof up->commands_ops;
    up->commands_ops.commands = up->commands;
    up->desc.ops = &up->commands_ops;
    return up;
fail:
    loader_upgrade_free(up);
    return NULL;
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

/* The descriptor of a mapped module, or NULL after adding why it is refused. A 1.0
 * descriptor comes back upgraded: *up (else NULL) then owns the copy returned. */
static const struct arq_plugin *loader__descriptor(void *handle, const char *path, const char *who,
                                                   const struct cfg_pos *pos,
                                                   struct diag_list *diags,
                                                   struct loader_upgrade **up)
{
    *up = NULL;
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
    if (loader__check_head(d, err, sizeof err) == 0 && d->abi_minor == 0) {
        if (!(*up = loader_upgrade_1_0(d))) {
            diag_add(diags, pos, "%s: out of memory", who);
            return NULL;
        }
        d = &(*up)->desc;
    }
    if (loader_check_descriptor(d, err, sizeof err) != 0) {
        diag_add(diags, pos, "%s: \"%s\": %s", who, path, err);
        loader_upgrade_free(*up);
        *up = NULL;
        return NULL;
    }
    return d;
}

/* --- before mapping: the file's ELF headers, then a trial load in a child ------------------ */

static int loader__pread_all(int fd, void *buf, size_t len, off_t off)
{
    char *p = buf;
    while (len) {
        ssize_t n = pread(fd, p, len, off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        p += n, len -= (size_t)n, off += n;
    }
    return 0;
}

/* What glibc maps must lie inside the file: a part past its end faults (SIGBUS) when the
 * loader touches it. 0, or -1 with the reason. */
static int loader__check_elf(int fd, off_t size, char *err, size_t errsz)
{
    ElfW(Ehdr) eh;
    uint64_t fsize = (uint64_t)size;
    unsigned char ident[EI_NIDENT] = {0};
    if (loader__pread_all(fd, ident, fsize < EI_NIDENT ? (size_t)fsize : EI_NIDENT, 0) != 0 ||
        fsize < SELFMAG || memcmp(ident, ELFMAG, SELFMAG) != 0)
        FAIL("not a shared object (no ELF header)");
    NEED(ident[EI_CLASS] == ELFCLASS32 || ident[EI_CLASS] == ELFCLASS64,
         "corrupt: invalid ELF class %u", ident[EI_CLASS]);
    NEED(ident[EI_CLASS] == (sizeof(void *) == 8 ? ELFCLASS64 : ELFCLASS32),
         "not a shared object for this machine: it is %d-bit, this arqonbusd is %d-bit",
         ident[EI_CLASS] == ELFCLASS64 ? 64 : 32, (int)sizeof(void *) * 8);
    NEED(fsize >= sizeof eh && loader__pread_all(fd, &eh, sizeof eh, 0) == 0,
         "truncated: %" PRIu64 " bytes, shorter than an ELF header", fsize);
    NEED(eh.e_type == ET_DYN, "not a shared object (ELF type %u)", (unsigned)eh.e_type);
    NEED(eh.e_phentsize == sizeof(ElfW(Phdr)) && eh.e_phnum > 0 && eh.e_phnum < 4096,
         "corrupt: invalid program header table (%u entries of %u bytes)", (unsigned)eh.e_phnum,
         (unsigned)eh.e_phentsize);
    uint64_t phend = (uint64_t)eh.e_phoff + (uint64_t)eh.e_phnum * sizeof(ElfW(Phdr));
    NEED(eh.e_phoff < fsize && phend <= fsize,
         "truncated or corrupt: its program headers end at byte %" PRIu64
         ", past the end of the file (%" PRIu64 " bytes)",
         phend, fsize);
    for (unsigned i = 0; i < eh.e_phnum; i++) {
        ElfW(Phdr) ph;
        NEED(loader__pread_all(fd, &ph, sizeof ph, (off_t)(eh.e_phoff + i * sizeof ph)) == 0,
             "cannot read program header %u", i);
        uint64_t off = ph.p_offset, len = ph.p_filesz;
        NEED(off <= fsize && len <= fsize - off,
             "truncated or corrupt: its segment at bytes %" PRIu64 "..%" PRIu64
             " lies past the end of the file (%" PRIu64 " bytes)",
             off, off + len, fsize);
        NEED(ph.p_type != PT_LOAD || ph.p_filesz <= ph.p_memsz,
             "corrupt: loadable segment %u is larger in the file than in memory", i);
    }
    if (eh.e_shnum && eh.e_shentsize) {
        uint64_t shend = (uint64_t)eh.e_shoff + (uint64_t)eh.e_shnum * eh.e_shentsize;
        NEED(eh.e_shoff < fsize && shend <= fsize,
             "truncated: its section headers end at byte %" PRIu64
             ", past the end of the file (%" PRIu64 " bytes)",
             shend, fsize);
    }
    return 0;
}

enum { PROBE_OK = 0, PROBE_NO_LOAD = 71, PROBE_NO_ENTRY, PROBE_NO_DESCRIPTOR };
#define PROBE_TIMEOUT_MS 10000

static const char *loader__signal_name(int sig)
{
    switch (sig) {
    case SIGBUS:
        return "SIGBUS";
    case SIGSEGV:
        return "SIGSEGV";
    case SIGILL:
        return "SIGILL";
    case SIGFPE:
        return "SIGFPE";
    case SIGABRT:
        return "SIGABRT";
    case SIGKILL:
        return "SIGKILL";
    }
    return "a signal";
}

/* In the child: nothing but the load itself, then _exit (the parent may have other threads,
 * so the child must not touch what they could have held). Crashes die by their signal,
 * even under a sanitizer that would catch them, and say nothing. */
static void loader__probe_child(const char *path)
{
    static const int fatal[] = {SIGBUS, SIGSEGV, SIGILL, SIGFPE, SIGABRT};
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    for (size_t i = 0; i < sizeof fatal / sizeof fatal[0]; i++)
        sigaction(fatal[i], &dfl, NULL);
    int null = open("/dev/null", O_WRONLY);
    if (null >= 0) {
        dup2(null, STDOUT_FILENO);
        dup2(null, STDERR_FILENO);
    }
    void *handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!handle)
        _exit(PROBE_NO_LOAD);
    void *sym = dlsym(handle, ARQ_PLUGIN_ENTRY);
    if (!sym)
        _exit(PROBE_NO_ENTRY);
    arq_plugin_entry_fn entry;
    memcpy(&entry, &sym, sizeof entry);
    _exit(entry() ? PROBE_OK : PROBE_NO_DESCRIPTOR);
}

static int64_t loader__now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Load `path` in a child first. 0 when the child loaded it or failed cleanly (the daemon's
 * own dlopen then reports why); -1 with the reason when it crashed, hung or exited. */
static int loader__probe(const char *path, char *err, size_t errsz)
{
    /* With SIGCHLD ignored the child would be reaped unseen: wait for it by default. */
    struct sigaction old, dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigaction(SIGCHLD, NULL, &old);
    int restore = old.sa_handler == SIG_IGN || (old.sa_flags & SA_NOCLDWAIT);
    if (restore)
        sigaction(SIGCHLD, &dfl, NULL);
    fflush(NULL); /* so that a constructor calling exit() writes nothing twice */

    int rc = -1, st = 0;
    /* The child holds the write end until it exits: the read end then reports the hang-up,
     * without polling waitpid. */
    int pfd[2] = {-1, -1};
    if (pipe(pfd) != 0 || fcntl(pfd[0], F_SETFD, FD_CLOEXEC) != 0 ||
        fcntl(pfd[1], F_SETFD, FD_CLOEXEC) != 0) {
        snprintf(err, errsz, "cannot try it in a child process first: pipe: %s", strerror(errno));
        goto done;
    }
    pid_t pid = fork();
    if (pid == 0)
        loader__probe_child(path);
    if (pid < 0) {
        snprintf(err, errsz, "cannot try it in a child process first: fork: %s", strerror(errno));
        goto done;
    }
    close(pfd[1]);
    pfd[1] = -1;
    int64_t deadline = loader__now_ms() + PROBE_TIMEOUT_MS;
    for (;;) {
        /* Short waits: a grandchild could keep the pipe open after the child is gone. */
        struct pollfd pl = {.fd = pfd[0], .events = POLLIN};
        int64_t left = deadline - loader__now_ms();
        poll(&pl, 1, left <= 0 ? 0 : left < 50 ? (int)left : 50);
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid)
            break;
        if (r < 0 && errno != EINTR) {
            snprintf(err, errsz, "cannot try it in a child process first: waitpid: %s",
                     strerror(errno));
            goto done;
        }
        if (pl.revents & (POLLIN | POLLHUP)) {
            /* The child is exiting: reap it. */
            while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
                ;
            break;
        }
        if (left <= 0) {
            kill(pid, SIGKILL);
            while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
                ;
            snprintf(err, errsz,
                     "loading it did not finish within %d s in a test process (a constructor "
                     "that blocks?)",
                     PROBE_TIMEOUT_MS / 1000);
            goto done;
        }
    }
    if (WIFSIGNALED(st))
        snprintf(err, errsz,
                 "loading it crashed a test process with %s (signal %d): the file is corrupt or "
                 "truncated",
                 loader__signal_name(WTERMSIG(st)), WTERMSIG(st));
    else if (WIFEXITED(st) && WEXITSTATUS(st) != PROBE_OK && WEXITSTATUS(st) != PROBE_NO_LOAD &&
             WEXITSTATUS(st) != PROBE_NO_ENTRY && WEXITSTATUS(st) != PROBE_NO_DESCRIPTOR)
        snprintf(err, errsz,
                 "loading it made a test process exit with status %d (a constructor that "
                 "exits?)",
                 WEXITSTATUS(st));
    else
        rc = 0;
done:
    if (pfd[0] >= 0)
        close(pfd[0]);
    if (pfd[1] >= 0)
        close(pfd[1]);
    if (restore)
        sigaction(SIGCHLD, &old, NULL);
    return rc;
}

/* --- a private copy for a new version of a file already mapped ----------------------------- */

/* Copy what `fd` holds to a fresh path in a private directory. 0 with the path in `copy`, or
 * -1 with the reason. The name is unique for the life of the process (a counter), which is
 * what glibc compares. */
static int loader__copy(int fd, const char *path, char *copy, size_t size, char *err, size_t errsz)
{
    static unsigned serial;
    const char *tmp = getenv("TMPDIR");
    const char *base = strrchr(path, '/');
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s/arqonbusd-module.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(dir)) {
        snprintf(err, errsz, "cannot make a private directory for a copy of the new version: %s",
                 strerror(errno));
        return -1;
    }
    int out = -1;
    int len = snprintf(copy, size, "%s/%u-%s", dir, ++serial, base ? base + 1 : path);
    if (len < 0 || (size_t)len >= size) {
        errno = ENAMETOOLONG;
        goto fail;
    }
    out = open(copy, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0700);
    if (out < 0)
        goto fail;
    char buf[65536];
    off_t off = 0;
    for (;;) {
        ssize_t n = pread(fd, buf, sizeof buf, off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            goto fail;
        if (n == 0)
            break;
        for (ssize_t w = 0; w < n;) {
            ssize_t k = write(out, buf + w, (size_t)(n - w));
            if (k < 0 && errno == EINTR)
                continue;
            if (k < 0)
                goto fail;
            w += k;
        }
        off += n;
    }
    if (close(out) != 0) {
        out = -1;
        goto fail;
    }
    return 0;
fail:
    snprintf(err, errsz, "cannot copy the new version to \"%s\": %s", copy, strerror(errno));
    if (out >= 0)
        close(out);
    unlink(copy);
    rmdir(dir);
    return -1;
}

static void loader__remove_copy(char *copy)
{
    unlink(copy);
    char *slash = strrchr(copy, '/');
    if (slash) {
        *slash = '\0';
        rmdir(copy);
    }
}

/* --- loading -------------------------------------------------------------------------------- */

static int loader__same_version(const struct module *m, const struct stat *st)
{
    return m->dev == st->st_dev && m->ino == st->st_ino && m->size == st->st_size &&
           m->mtime.tv_sec == st->st_mtim.tv_sec && m->mtime.tv_nsec == st->st_mtim.tv_nsec;
}

static struct module *loader__find(struct module *list, const struct stat *st)
{
    for (struct module *m = list; m; m = m->next)
        if (loader__same_version(m, st))
            return m;
    return NULL;
}

/* Would dlopen(path) give back something mapped already (same name, or same file)? */
static int loader__mapped(const struct module *list, const char *path, const struct stat *st)
{
    for (const struct module *m = list; m; m = m->next)
        if (!m->private_copy &&
            (!strcmp(m->path, path) || (m->dev == st->st_dev && m->ino == st->st_ino)))
            return 1;
    return 0;
}

static struct module *loader__record(struct module **list, const char *path, const struct stat *st,
                                     int private_copy, void *handle, const struct arq_plugin *d)
{
    struct module *m = calloc(1, sizeof *m);
    if (!m || !(m->path = strdup(path))) {
        free(m);
        return NULL;
    }
    m->dev = st->st_dev;
    m->ino = st->st_ino;
    m->size = st->st_size;
    m->mtime = st->st_mtim;
    m->private_copy = private_copy;
    m->handle = handle;
    m->desc = d;
    m->next = *list;
    *list = m;
    return m;
}

struct module *loader_load(struct loader *l, const char *path, const char *who,
                           const struct cfg_pos *pos, struct diag_list *diags)
{
    struct module *m = NULL;
    char copy[PATH_MAX] = "", err[600];
    struct stat st;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) != 0) {
        char hint[300];
        int e = errno;
        suggest_module(path, hint, sizeof hint);
        diag_add(diags, pos, "%s: cannot load \"%s\": %s%s", who, path, strerror(e), hint);
        goto done;
    }
    if (!S_ISREG(st.st_mode)) {
        diag_add(diags, pos, "%s: cannot load \"%s\": not a regular file", who, path);
        goto done;
    }
    if ((m = loader__find(l->modules, &st)))
        goto done;
    struct module *refused = loader__find(l->refused, &st);
    if (refused) {
        /* Mapped already and refused: the same checks give the same message. */
        struct loader_upgrade *up;
        if (loader__descriptor(refused->handle, path, who, pos, diags, &up))
            loader_upgrade_free(up);
        goto done;
    }
    if (loader__check_elf(fd, st.st_size, err, sizeof err) != 0) {
        diag_add(diags, pos, "%s: cannot load \"%s\": %s", who, path, err);
        goto done;
    }
    /* A new version of a file that is mapped already: glibc would return the old one. */
    int private_copy =
        loader__mapped(l->modules, path, &st) || loader__mapped(l->refused, path, &st);
    if (private_copy && loader__copy(fd, path, copy, sizeof copy, err, sizeof err) != 0) {
        diag_add(diags, pos, "%s: cannot load \"%s\": %s", who, path, err);
        goto done;
    }
    const char *load_path = private_copy ? copy : path;
    if (loader__probe(load_path, err, sizeof err) != 0) {
        diag_add(diags, pos, "%s: cannot load \"%s\": %s", who, path, err);
        goto done;
    }
    void *handle = dlopen(load_path, RTLD_NOW | RTLD_LOCAL);
    if (!handle) {
        diag_add(diags, pos, "%s: cannot load \"%s\": %s", who, path, dlerror());
        goto done;
    }
    /* Modules are never unloaded (see loader.h), so a refused one stays mapped too: it is
     * harmless, and the same file is then refused again without running its constructors. */
    struct loader_upgrade *up;
    const struct arq_plugin *d = loader__descriptor(handle, path, who, pos, diags, &up);
    m = loader__record(d ? &l->modules : &l->refused, path, &st, private_copy, handle, d);
    if (!m) {
        diag_add(diags, pos, "%s: out of memory", who);
        loader_upgrade_free(up);
    } else if (!d) {
        m = NULL;
    } else {
        m->upgrade = up;
    }
done:
    if (copy[0])
        loader__remove_copy(copy);
    if (fd >= 0)
        close(fd);
    return m;
}

static void loader__free_list(struct module **list)
{
    struct module *m = *list;
    while (m) {
        struct module *next = m->next;
        loader_upgrade_free(m->upgrade);
        free(m->path);
        free(m);
        m = next;
    }
    *list = NULL;
}

void loader_free(struct loader *l)
{
    loader__free_list(&l->modules);
    loader__free_list(&l->refused);
}
