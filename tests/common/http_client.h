/* A small HTTP/1.1 client for tests: raw POSIX sockets, one request per connection
 * (`Connection: close`), responses with Content-Length or ended by the server closing.
 * Chunked responses are not decoded (the servers under test do not send them).
 *
 * Ownership: a struct http_resp owns its text; http_resp_free releases it. Nothing here fails
 * a test by itself: functions report, tests assert. */
#ifndef ARQ_TEST_HTTP_CLIENT_H
#define ARQ_TEST_HTTP_CLIENT_H

#include <stddef.h>

struct http_resp {
    int status; /* e.g. 200 */
    char *head; /* status line and headers, NUL-terminated */
    char *body; /* NUL-terminated (binary-safe up to body_len) */
    size_t body_len;
};

/* Send `method path` to host:port with `headers` ("Name: value" strings, NULL-terminated,
 * may be NULL) and `body` (NULL: none; otherwise sent with Content-Length), and read the
 * response. 0, or -1 with the reason in err (connection refused, timeout, bad response). */
int http_request(const char *host, int port, const char *method, const char *path,
                 const char *const *headers, const char *body, size_t body_len, int timeout_ms,
                 struct http_resp *out, char *err, size_t errsz);
/* Send `raw` bytes as they are (a hand-written request) and read the response. */
int http_raw(const char *host, int port, const char *raw, size_t raw_len, int timeout_ms,
             struct http_resp *out, char *err, size_t errsz);
/* The value of response header `name` (case-insensitive) copied into buf, or NULL. */
const char *http_header(const struct http_resp *r, const char *name, char *buf, size_t size);
void http_resp_free(struct http_resp *r);

#endif
