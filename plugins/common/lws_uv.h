/* libwebsockets on the host's libuv loop (a "foreign" loop to lws), shared by
 * transport-websocket and telemetry-websocket: creating a context while noting the handles it
 * adds to the loop, and the two-step teardown.
 *
 * With a foreign loop, lws_context_destroy() only begins: it closes every connection's uv
 * handle, and once those close callbacks have run it closes its own idle and timer handles.
 * Nothing then finishes the job: the owner of the loop must call lws_context_destroy() a second
 * time, after those handles are closed, to free the vhost and the context. So destroy hands
 * the context to a small reaper (a uv timer of our own) that watches for lws's handles to leave
 * the loop, then calls lws_context_destroy() again and lets the caller free its instance, whose
 * memory lws's callbacks may reach until then.
 *
 * Static library linked into each plugin that needs it; no global state. */
#ifndef ARQ_PLUGINS_LWS_UV_H
#define ARQ_PLUGINS_LWS_UV_H

#include <libwebsockets.h>
#include <stddef.h>
#include <uv.h>

/* lws_create_context(info) on `loop`, recording in handles[0..max) (count in *n, which the
 * caller starts at 0) the handles it added other than per-socket polls: its idle and timer,
 * which live in the context and are the last it closes. NULL if lws failed. */
struct lws_context *arq_lws_uv_create(uv_loop_t *loop, const struct lws_context_creation_info *info,
                                      uv_handle_t **handles, size_t max, size_t *n);

/* The first lws_context_destroy(lws) now; the second, then free_instance(arg), once the `n`
 * handles recorded by arq_lws_uv_create (which must stay readable until then) have left the
 * loop. If no reaper can be made, neither happens: leaving the context and the instance
 * allocated is safe. */
void arq_lws_uv_destroy(uv_loop_t *loop, struct lws_context *lws, uv_handle_t *const *handles,
                        size_t n, void (*free_instance)(void *), void *arg);

#endif
