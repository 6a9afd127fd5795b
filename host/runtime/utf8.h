/* UTF-8 validation shared by everything that writes text for others to parse. */
#ifndef ARQ_HOST_UTF8_H
#define ARQ_HOST_UTF8_H

#include <stddef.h>

/* Length of the well-formed UTF-8 sequence starting at the non-NUL byte `s` (1 for ASCII),
 * or 0 when it is not one (overlong forms, surrogates and code points past U+10FFFF are not
 * well formed). Never reads past a terminating NUL. */
size_t utf8_seq_len(const unsigned char *s);

/* 1 when the NUL-terminated `s` is well-formed UTF-8 throughout, else 0. */
int utf8_valid(const char *s);

#endif
