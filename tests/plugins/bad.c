/* The bad-plugin corpus: one source, built once per defect (BAD_* below), each a .so the host
 * must refuse with a precise message. */
#include <arqonbus/plugin.h>
#include <signal.h>
#include <stddef.h>

#ifdef BAD_CTOR_CRASH
/* Mapping this module kills the process that maps it, as a truncated or corrupt file does
 * inside the dynamic loader (SIGBUS): the host must find out without dying. */
__attribute__((constructor)) static void bad_crash_when_mapped(void)
{
    raise(SIGBUS);
}
#endif

#ifndef BAD_NULL_CREATE
static int bad_create(const struct arq_host *host, arq_ctx *ctx, const json_t *cfg, void **self,
                      struct arq_error *err)
{
    (void)host, (void)ctx, (void)cfg;
#ifdef BAD_CREATE_FAILS
    (void)self;
    return arq_error_set(err, ARQ_EIO, "cannot reach the frobnicator at 127.0.0.1:1");
#else
    (void)err;
    static int instance;
    *self = &instance;
    return 0;
#endif
}
#endif

static void bad_destroy(void *self)
{
    (void)self;
}

__attribute__((unused)) static void bad_emit(void *self, const struct arq_event *const *events,
                                             size_t n)
{
    (void)self, (void)events, (void)n;
}

static const struct arq_telemetry_ops ops = {
    .struct_size = sizeof ops,
#ifndef BAD_NULL_EMIT
    .emit_batch = bad_emit,
#endif
};

static const struct arq_plugin descriptor = {
#if defined(BAD_SHORT_SIZE)
    .struct_size = offsetof(struct arq_plugin, create),
#else
    .struct_size = sizeof(struct arq_plugin),
#endif
#if defined(BAD_ABI_MAJOR)
    .abi_major = ARQ_ABI_MAJOR + 1,
#else
    .abi_major = ARQ_ABI_MAJOR,
#endif
#if defined(BAD_ABI_MINOR)
    .abi_minor = ARQ_ABI_MINOR + 1,
#else
    .abi_minor = ARQ_ABI_MINOR,
#endif
    .name = "bad",
    .version = "0",
    .summary = "deliberately broken",
    .kind = ARQ_KIND_TELEMETRY,
#ifdef BAD_NULL_CREATE
    .create = NULL,
#else
    .create = bad_create,
#endif
    .destroy = bad_destroy,
    .ops = &ops,
};

#ifdef BAD_NO_ENTRY
ARQ_EXPORT const struct arq_plugin *arq_plugin_v0(void);
ARQ_EXPORT const struct arq_plugin *arq_plugin_v0(void)
{
    return &descriptor;
}
#else
ARQ_PLUGIN(descriptor)
#endif
