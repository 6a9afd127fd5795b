/* Where a handshake request carries a credential, shared by the auth plugins (auth-jwt,
 * auth-tokens): the token of `Authorization: Bearer <t>`, the `bearer.<t>` entry of
 * Sec-WebSocket-Protocol, a query parameter's raw value, and percent-decoding.
 *
 * Pure functions over the caller's text: nothing is allocated or copied, and a token found is
 * returned as a range inside the value given, so each plugin decides whether a copy is made.
 * Percent-decoding has one meaning for all: `%XX` (either case) is the byte 0xXX, a `%` not
 * followed by two hex digits stands for itself, and `+` stays `+` (a token never holds a space,
 * and base64 tokens hold `+`, which some clients send unencoded).
 *
 * Static library linked into each plugin that needs it; no global state. */
#ifndef ARQ_PLUGINS_CREDENTIALS_H
#define ARQ_PLUGINS_CREDENTIALS_H

#include <stddef.h>

/* The value of the hex digit `c` (0-9, a-f, A-F): 0 to 15, or -1 for any other character. */
int arq_cred_hex_digit(char c);

/* [*s, *s + *len) without the spaces and tabs at either end. */
void arq_cred_trim(const char **s, size_t *len);

/* The token of an Authorization header's `value` in the Bearer scheme: the scheme in any case,
 * followed by a space, a tab or the end of the value; the spaces and tabs around the scheme and
 * the token are not part of either. 1 with the token's range in *tok / *len (*len may be
 * 0: "Bearer" with nothing after it), or 0 for another scheme ("Basic ...", "Bearerx ...").
 * The token itself is not decoded or checked. */
int arq_cred_bearer(const char *value, const char **tok, size_t *len);

/* The first entry of a Sec-WebSocket-Protocol `value` (comma-separated, each entry trimmed of
 * spaces and tabs) that starts with `bearer.` (exactly, lower case). 1 with the range after
 * the prefix in *tok / *len (*len may be 0: an entry "bearer." alone), or 0 when no entry
 * starts so. */
int arq_cred_subprotocol_bearer(const char *value, const char **tok, size_t *len);

/* In a raw query (without '?'; parameters separated by '&'), the first parameter whose name,
 * percent-decoded, is one of the NULL-terminated `names`. A parameter without '=' has no value
 * and is passed over. Returns the index in `names` of the name it has, with its value (still
 * percent-encoded, possibly empty) in *val / *len; or -1 when no parameter has one of them. */
int arq_cred_query_first_of(const char *query, const char *const *names, const char **val,
                            size_t *len);

/* arq_cred_query_first_of with the one name `name`: 1 with the value's range, or 0. */
int arq_cred_query_param(const char *query, const char *name, const char **val, size_t *len);

/* The next decoded byte of the percent-encoded [s, s + len) at *pos (which must be < len),
 * advancing *pos past what it read (3 characters for an escape, else 1). For reading a value
 * byte by byte without copying it whole. */
unsigned char arq_cred_pct_next(const char *s, size_t len, size_t *pos);

/* Percent-decode [s, s + len) into `out`, which has room for `len` bytes (a decoded value is
 * never longer). Returns the decoded length; `out` is not NUL-terminated, and may hold NUL
 * bytes (from %00). */
size_t arq_cred_pct_decode(const char *s, size_t len, char *out);

/* Does the percent-encoded [s, s + len) decode to exactly the NUL-terminated `want`? */
int arq_cred_pct_equals(const char *s, size_t len, const char *want);

#endif
