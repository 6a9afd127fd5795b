/* transport-http: what a request's path and query mean, as pure functions over the text
 * libmicrohttpd hands over (already percent-decoded; see README.md). Kept apart from the
 * handlers so that the fuzz tests (tests/fuzz) can run them without a server. */
#ifndef ARQ_TRANSPORT_HTTP_PATH_H
#define ARQ_TRANSPORT_HTTP_PATH_H

#include <jansson.h>
#include <stddef.h>

/* Does `url` fit `pattern`? A pattern is an exact path, or holds one "{}" that stands for one
 * non-empty path segment (no '/'); the rest must be equal. On a match with a "{}", *seg and
 * *seglen (when `seg` is not NULL) give that segment's range in `url`. 1 or 0. */
int http_path__match(const char *pattern, const char *url, const char **seg, size_t *seglen);

/* One query parameter of GET /history (`value` NULL: given without '='), added to `args`:
 * room, channel, epoch, since and until as strings, limit and since_offset as integers. 0, or
 * -1 with the reason for the client in `error`, always UTF-8 (an unknown or repeated name, a
 * value that is not an integer, a room or channel that is not a name, a string that is not
 * UTF-8). */
int http_path__history_param(json_t *args, const char *key, const char *value, char *error,
                             size_t errsz);

/* Is s[0..len) a room or channel name as far as its characters go: one or more of A-Z a-z
 * 0-9 _ . : - (docs/protocol.md)? Its length is the bus's to check (bus.max_name_length,
 * reloadable). 1 or 0. */
int http_path__name_ok(const char *s, size_t len);
/* The same check, for a name given as `what` ("room", "channel"): 0, or -1 with the reason for
 * the client in `error` ("Invalid room name: ...", the name made UTF-8). */
int http_path__check_name(const char *what, const char *s, size_t len, char *error, size_t errsz);

/* s[0..len) made fit for a JSON string, into out (size > 0, always NUL-terminated): every byte
 * that is not part of a well-formed UTF-8 sequence is written as the four characters \xHH.
 * What does not fit is cut at a character boundary. Returns the length written. */
size_t http_path__escape(char *out, size_t size, const char *s, size_t len);

#endif
