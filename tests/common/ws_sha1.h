/* SHA-1 and base64 for the WebSocket handshake's Sec-WebSocket-Accept (RFC 6455 4.2.2). */
#ifndef ARQ_TEST_WS_SHA1_H
#define ARQ_TEST_WS_SHA1_H

#include <stddef.h>
#include <stdint.h>

void ws_sha1(const void *data, size_t len, uint8_t out[20]);
/* `out` needs 4 * ((len + 2) / 3) + 1 bytes; returns the length written (without the NUL). */
size_t ws_base64(const uint8_t *in, size_t len, char *out);

#endif
