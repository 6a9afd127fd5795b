/* arqonbus-cli: why the server refused the upgrade. libwebsockets 4.1 reports only the status
 * of a refused client upgrade and drops the body, where the server says why (the JSON
 * {"error", "details"} of its 401, 403, 429 or 503 answer). So the same upgrade request is sent
 * once more on a plain socket and the body of the answer read. Plain ws:// only. */
#ifndef ARQ_CLI_REFUSAL_H
#define ARQ_CLI_REFUSAL_H

#include <stddef.h>

#include "cli_args.h"

/* Ask again with `auth` ("Bearer T" or "") and write the reason into out: "<error>: <details>"
 * from the JSON body, or the body itself. 0, or -1 (nothing written) when the server did not
 * refuse again with a body within the timeout, or over TLS. */
int cli_refusal_reason(const struct cli_opts *o, const char *auth, char *out, size_t outsz);

#endif
