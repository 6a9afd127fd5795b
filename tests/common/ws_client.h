/* A small RFC 6455 client for tests: raw POSIX sockets, no dependency beyond libc and zlib
 * (permessage-deflate, RFC 7692, when a test asks for it).
 *
 * One struct ws_client per connection, a few hundred bytes plus a read buffer that grows with
 * the largest frame seen, so one test process can hold thousands. The socket is always
 * non-blocking; the calls below block with poll() up to their timeout, and ws_fd() plus
 * ws_poll_message() let a test wait on many clients with one poll().
 *
 * Ownership, stated once: every `char **data` out-parameter receives a malloc'd,
 * NUL-terminated copy the caller frees; every `const char *` returned points into the client
 * (or thread-local storage) and stays valid until the next call on it. A client is used by one
 * thread at a time.
 *
 * Errors: functions that return int give 0 (or a positive opcode) on success and -1 on
 * failure, with errno set (ETIMEDOUT for a timeout, EPROTO for a peer that broke RFC 6455,
 * ECONNRESET when the connection is gone) and ws_error() saying what happened. */
#ifndef ARQ_TEST_WS_CLIENT_H
#define ARQ_TEST_WS_CLIENT_H

#include <stddef.h>

/* Opcodes (RFC 6455 section 5.2). */
#define WS_OP_CONT   0x0
#define WS_OP_TEXT   0x1
#define WS_OP_BINARY 0x2
#define WS_OP_CLOSE  0x8
#define WS_OP_PING   0x9
#define WS_OP_PONG   0xA

/* Close codes a test is likely to check. 1005 is reported when a close frame has no code,
 * 1006 when the connection ended without a close frame; neither is ever sent. */
#define WS_CLOSE_NORMAL       1000
#define WS_CLOSE_GOING_AWAY   1001
#define WS_CLOSE_PROTOCOL     1002
#define WS_CLOSE_UNSUPPORTED  1003
#define WS_CLOSE_NO_STATUS    1005
#define WS_CLOSE_ABNORMAL     1006
#define WS_CLOSE_INVALID_DATA 1007
#define WS_CLOSE_POLICY       1008
#define WS_CLOSE_TOO_BIG      1009

/* Incoming messages larger than this are a protocol error (the client closes with 1009). */
#define WS_MAX_MESSAGE (64u * 1024u * 1024u)

struct ws_client;

/* Extra handshake inputs for ws_connect_opts(); every field may be NULL. */
struct ws_opts {
    const char *subprotocol;    /* offered in Sec-WebSocket-Protocol, e.g. "arqonbus.v1" */
    const char *const *headers; /* extra request header lines "Name: value", NULL-terminated,
                                   e.g. {"Authorization: Bearer t", NULL} */
    int deflate; /* offer permessage-deflate (RFC 7692); ws_deflate_on() says if it was taken */
};

/* Connect to ws://host:port<path_and_query> (path "/" when NULL or empty) and complete the
 * upgrade within timeout_ms. Checks the 101 status, Upgrade, Connection and
 * Sec-WebSocket-Accept. Returns the client, or NULL with a one-line reason in err (may be
 * NULL). Either way ws_last_http_status()/ws_last_http_body() then describe the response:
 * the status and body of a refused upgrade (e.g. 401 and its JSON), or 101 and "". */
struct ws_client *ws_connect(const char *host, int port, const char *path_and_query, int timeout_ms,
                             char *err, size_t errsz);
struct ws_client *ws_connect_opts(const char *host, int port, const char *path_and_query,
                                  const struct ws_opts *opts, int timeout_ms, char *err,
                                  size_t errsz);

/* The HTTP status of this thread's last ws_connect*() (0 when no response line was read) and
 * the response body of a refused upgrade ("" otherwise; at most 8 KiB are kept). */
int ws_last_http_status(void);
const char *ws_last_http_body(void);

/* Copy the value of a 101 response header (name case-insensitive, first occurrence) into out;
 * returns the value's length, or -1 when the header is absent. out may be NULL to test for
 * presence. Example: ws_response_header(c, "Sec-WebSocket-Protocol", buf, sizeof buf). */
int ws_response_header(const struct ws_client *c, const char *name, char *out, size_t outsz);

/* Send one masked text frame. 0 or -1. */
int ws_send_text(struct ws_client *c, const char *text, size_t len);
/* Send one masked frame with any opcode (including reserved ones) and FIN bit: for
 * fragmentation (opcode WS_OP_CONT), binary, ping, pong and close tests. 0 or -1. */
int ws_send_frame(struct ws_client *c, int opcode, int fin, const void *data, size_t len);
/* Put bytes on the wire as they are (malformed-frame tests). 0 or -1. */
int ws_send_raw(struct ws_client *c, const void *bytes, size_t len);

/* permessage-deflate (RFC 7692). Messages from the server with RSV1 set are inflated by
 * ws_recv() once permessage-deflate was negotiated (ws_deflate_on()); each message is
 * compressed by the client on its own (no context kept between messages, which any server
 * must accept), within the client_max_window_bits the server answered. */
/* 1 when the server accepted permessage-deflate in the 101. */
int ws_deflate_on(const struct ws_client *c);
/* Compressed messages received so far. */
unsigned ws_deflated_received(const struct ws_client *c);
/* Send one message (WS_OP_TEXT or WS_OP_BINARY) compressed, as frames of at most `frag`
 * compressed bytes each (0: one frame); only the first frame has RSV1. Works whether or not
 * the extension was negotiated (a test of a server that did not agree may send it anyway).
 * 0 or -1. */
int ws_send_deflated(struct ws_client *c, int opcode, const void *data, size_t len, size_t frag);
/* The compressed form of one message: raw deflate with window_bits (9..15), flushed with
 * Z_SYNC_FLUSH, the final 00 00 ff ff removed (RFC 7692 section 7.2.1). malloc'd, *outlen
 * bytes; NULL when out of memory. */
unsigned char *ws_deflate_message(const void *data, size_t len, int window_bits, size_t *outlen);

/* Wait up to timeout_ms for the next complete message: fragments joined, pings answered with
 * pongs (unless ws_set_auto_pong(c, 0)). Returns the opcode: WS_OP_TEXT, WS_OP_BINARY,
 * WS_OP_CLOSE, WS_OP_PONG (a pong is returned, so a test can check the server's reply to its
 * ping) or WS_OP_PING (only with auto-pong off); -1 on timeout (errno ETIMEDOUT) or error.
 * data and len may be NULL to discard the message. For a close frame *data is the reason,
 * ws_close_code()/ws_close_reason() describe it, and the client has already answered with a
 * close frame of its own; later calls return -1. */
int ws_recv(struct ws_client *c, char **data, size_t *len, int timeout_ms);
/* Non-blocking ws_recv(): read what the socket has now and return the next complete message
 * if one is buffered (opcode as above), 0 when none is yet, -1 on error or end of stream.
 * Waiting on many clients: call it until it returns 0, then poll() on ws_fd() for POLLIN. */
int ws_poll_message(struct ws_client *c, char **data, size_t *len);

/* Send a close frame (code 0 sends one without a payload; reason may be NULL), wait up to 2 s
 * for the server's close frame or end of stream, then close the socket. 0 when the server
 * answered with a close frame, -1 otherwise. ws_free() is still needed. */
int ws_close(struct ws_client *c, int code, const char *reason);
/* Close the socket if open and free everything; NULL is fine. */
void ws_free(struct ws_client *c);

/* The socket (-1 after ws_close()). */
int ws_fd(const struct ws_client *c);
/* The close code the server sent: 0 before any close, WS_CLOSE_NO_STATUS for a close frame
 * without a code, WS_CLOSE_ABNORMAL when the stream ended without a close frame. */
int ws_close_code(const struct ws_client *c);
/* The reason text of the server's close frame ("" when none). */
const char *ws_close_reason(const struct ws_client *c);
/* What the last failure was, for assertion messages ("" when none). */
const char *ws_error(const struct ws_client *c);
/* Pings received from the server so far (answered or not). */
unsigned ws_pings_received(const struct ws_client *c);
/* Answer pings automatically (default 1). With 0, ws_recv() returns them as WS_OP_PING: a
 * test of the server's ping timeout can then stay silent. */
void ws_set_auto_pong(struct ws_client *c, int on);
/* The bound in ms for blocking sends (default 10000). */
void ws_set_send_timeout(struct ws_client *c, int timeout_ms);

/* Helpers the client uses, exposed for tests and for in-test servers. */

/* Sec-WebSocket-Accept for a Sec-WebSocket-Key: base64(SHA-1(key + RFC 6455 GUID)). out needs
 * 29 bytes; returns 0, or -1 when outsz is too small. */
int ws_accept_for_key(const char *key, char *out, size_t outsz);
/* Encode one frame: first byte b0 (FIN 0x80 | RSV 0x70 | opcode, written as given), then the
 * length in the shortest form, then the payload, masked with mask[4] when mask is not NULL
 * (client frames) or as is (server frames). Returns a malloc'd buffer of *outlen bytes, or
 * NULL when out of memory. */
unsigned char *ws_build_frame(int b0, const unsigned char *mask, const void *data, size_t len,
                              size_t *outlen);
/* Raise this process's soft RLIMIT_NOFILE to at least `want` (bounded by the hard limit);
 * returns the soft limit now in force. Tests holding 1,000+ sockets call it first. */
long ws_raise_fd_limit(long want);

#endif
