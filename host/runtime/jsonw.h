/* The one string escaper for text the host writes for others to parse: JSON strings in protocol
 * frames, telemetry events and JSON log lines (and, with the log's own escape set, logfmt
 * values). Callers add the quotes. Any thread; no state.
 *
 * An escape set says, for each ASCII byte: 0 writes it as it is, 'u' writes \u00xx (lower-case
 * hex), 'U' writes \u00XX (upper-case hex), and any other character c writes a backslash then
 * c. Bytes from 0x80 on are UTF-8 and follow one of the JSONW_UTF8_* policies. */
#ifndef ARQ_HOST_JSONW_H
#define ARQ_HOST_JSONW_H

#include <stddef.h>

/* JSON (RFC 8259): \" \\ \b \f \n \r \t, other control characters \u00xx; '/' and DEL as they
 * are. The protocol's frames and JSON log lines. */
extern const char jsonw_json[128];
/* The same with \u00XX, jansson's spelling: telemetry events, which match json_dumps(). */
extern const char jsonw_json_upper[128];

/* What becomes of bytes from 0x80 on: */
enum jsonw_utf8 {
    JSONW_UTF8_KEEP,    /* copied as they are: the caller knows the text is UTF-8 */
    JSONW_UTF8_REPLACE, /* a byte that does not begin a well-formed sequence becomes U+FFFD */
    JSONW_UTF8_REFUSE   /* such a byte fails the call (JSONW_INVALID) */
};

#define JSONW_INVALID ((size_t)-1)
/* Bytes written at most per byte of input (\u00XX for one byte; U+FFFD is 3). */
#define JSONW_MAX_GROWTH 6

/* Escape the `n` bytes at `s` (NUL bytes included: they are control characters) into `out`,
 * without quotes or a terminating NUL. Only whole characters and whole escapes are written:
 * writing stops before the first one that does not fit in the `size` bytes of `out` (a
 * multi-byte character copied under JSONW_UTF8_KEEP is kept whole too). Returns the bytes
 * written, and *used (may be NULL) gets the bytes of `s` consumed: `n` when everything fit.
 * With `out` NULL it measures: returns the length of the whole text (`size` is ignored).
 * Under JSONW_UTF8_REFUSE, returns JSONW_INVALID when it reaches a byte that does not begin a
 * well-formed UTF-8 sequence. */
size_t jsonw_escape(const char *s, size_t n, const char esc[128], enum jsonw_utf8 utf8, char *out,
                    size_t size, size_t *used);

#endif
