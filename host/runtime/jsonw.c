#include "jsonw.h"
#include "utf8.h"

#include <stdint.h>
#include <string.h>

#define JSONW_CONTROLS(x)                                                                          \
    [0x00] = x, [0x01] = x, [0x02] = x, [0x03] = x, [0x04] = x, [0x05] = x, [0x06] = x,            \
    [0x07] = x, [0x0b] = x, [0x0e] = x, [0x0f] = x, [0x10] = x, [0x11] = x, [0x12] = x,            \
    [0x13] = x, [0x14] = x, [0x15] = x, [0x16] = x, [0x17] = x, [0x18] = x, [0x19] = x,            \
    [0x1a] = x, [0x1b] = x, [0x1c] = x, [0x1d] = x, [0x1e] = x, [0x1f] = x
#define JSONW_SHORT                                                                                \
    ['\b'] = 'b', ['\f'] = 'f', ['\n'] = 'n', ['\r'] = 'r', ['\t'] = 't', ['"'] = '"', ['\\'] = '\\'

const char jsonw_json[128] = {JSONW_CONTROLS('u'), JSONW_SHORT};
const char jsonw_json_upper[128] = {JSONW_CONTROLS('U'), JSONW_SHORT};

/* utf8_seq_len() reads up to 4 bytes and stops at a NUL; `s` need not be NUL-terminated here,
 * so a sequence near its end is checked in a NUL-padded copy. */
static size_t jsonw__seq_len(const unsigned char *p, const unsigned char *end)
{
    if (end - p >= 4)
        return utf8_seq_len(p);
    unsigned char tail[4] = {0};
    memcpy(tail, p, (size_t)(end - p));
    return utf8_seq_len(tail);
}

size_t jsonw_escape(const char *s, size_t n, const char esc[128], enum jsonw_utf8 utf8, char *out,
                    size_t size, size_t *used)
{
    static const char hex_lower[] = "0123456789abcdef", hex_upper[] = "0123456789ABCDEF";
    const unsigned char *start = (const unsigned char *)s, *p = start, *end = start + n;
    size_t len = 0;
    if (!out)
        size = SIZE_MAX;
    while (p < end) {
        /* A run of bytes written as they are. */
        const unsigned char *run = p;
        if (utf8 == JSONW_UTF8_KEEP)
            while (p < end && (*p >= 0x80 || !esc[*p]))
                p++;
        else
            while (p < end && *p < 0x80 && !esc[*p])
                p++;
        size_t k = (size_t)(p - run);
        if (k > size - len) {
            k = size - len;
            /* Not inside a character: back over at most 3 continuation bytes. */
            for (int i = 0; i < 3 && k > 0 && (run[k] & 0xc0) == 0x80; i++)
                k--;
            memcpy(out + len, run, k);
            len += k;
            p = run + k;
            break;
        }
        if (out)
            memcpy(out + len, run, k);
        len += k;
        if (p == end)
            break;

        /* Then one escape, or one character from 0x80 on. */
        char unit[6];
        const char *src;
        size_t ulen, adv = 1;
        unsigned char c = *p;
        if (c >= 0x80) {
            size_t seq = jsonw__seq_len(p, end);
            if (seq) {
                src = (const char *)p;
                ulen = adv = seq;
            } else if (utf8 == JSONW_UTF8_REFUSE) {
                return JSONW_INVALID;
            } else {
                src = "\xef\xbf\xbd";
                ulen = 3;
            }
        } else if (esc[c] == 'u' || esc[c] == 'U') {
            const char *hex = esc[c] == 'u' ? hex_lower : hex_upper;
            memcpy(unit, "\\u00", 4);
            unit[4] = hex[c >> 4];
            unit[5] = hex[c & 0xf];
            src = unit;
            ulen = 6;
        } else {
            unit[0] = '\\';
            unit[1] = esc[c];
            src = unit;
            ulen = 2;
        }
        if (ulen > size - len)
            break;
        if (out)
            memcpy(out + len, src, ulen);
        len += ulen;
        p += adv;
    }
    if (used)
        *used = (size_t)(p - start);
    return len;
}
