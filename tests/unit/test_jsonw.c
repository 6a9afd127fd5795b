#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsonw.h"

/* `n` bytes of `s` escaped into a buffer of `size` (the input copied to a buffer of exactly
 * `n` bytes, so that ASan sees any read past it). Returns the text, NUL-terminated. */
static const char *esc_in(const char *s, size_t n, const char *table, enum jsonw_utf8 utf8,
                          size_t size, size_t *used)
{
    static char out[4096];
    assert_true(size < sizeof out);
    char *in = malloc(n ? n : 1);
    assert_non_null(in);
    memcpy(in, s, n);
    size_t len = jsonw_escape(in, n, table, utf8, out, size, used);
    free(in);
    if (len == JSONW_INVALID)
        return NULL;
    assert_true(len <= size);
    out[len] = '\0';
    return out;
}

static const char *esc(const char *s, size_t n, const char *table, enum jsonw_utf8 utf8)
{
    size_t used;
    const char *out = esc_in(s, n, table, utf8, 4000, &used);
    if (out) {
        assert_int_equal(used, n);
        assert_int_equal(jsonw_escape(s, n, table, utf8, NULL, 0, NULL), strlen(out));
    }
    return out;
}

#define ESC(lit, table, utf8) esc(lit, sizeof lit - 1, table, utf8)

static void json_short_escapes_and_quotes(void **state)
{
    (void)state;
    assert_string_equal(ESC("a\"b\\c", jsonw_json, JSONW_UTF8_KEEP), "a\\\"b\\\\c");
    assert_string_equal(ESC("\b\f\n\r\t", jsonw_json, JSONW_UTF8_KEEP), "\\b\\f\\n\\r\\t");
    assert_string_equal(ESC("/\x7f~ ", jsonw_json, JSONW_UTF8_KEEP), "/\x7f~ ");
    assert_string_equal(ESC("", jsonw_json, JSONW_UTF8_KEEP), "");
}

static void other_control_characters_in_either_hex_case(void **state)
{
    (void)state;
    assert_string_equal(ESC("\x01\x0b\x1f", jsonw_json, JSONW_UTF8_KEEP), "\\u0001\\u000b\\u001f");
    assert_string_equal(ESC("\x01\x0b\x1f", jsonw_json_upper, JSONW_UTF8_KEEP),
                        "\\u0001\\u000B\\u001F");
    /* NUL bytes are part of the text */
    assert_string_equal(ESC("a\0b", jsonw_json, JSONW_UTF8_KEEP), "a\\u0000b");
    for (int c = 0; c < 0x20; c++) {
        char in = (char)c;
        const char *out = esc(&in, 1, jsonw_json, JSONW_UTF8_KEEP);
        assert_true(out[0] == '\\');
        assert_true(strlen(out) == 2 || strlen(out) == 6);
    }
}

static void another_escape_set(void **state)
{
    (void)state;
    static const char set[128] = {['='] = 'u', ['\n'] = 'n', ['q'] = 'Q'};
    assert_string_equal(ESC("a=b\nq\t", set, JSONW_UTF8_KEEP), "a\\u003db\\n\\Q\t");
}

static void utf8_kept_as_is_when_the_caller_vouches_for_it(void **state)
{
    (void)state;
    assert_string_equal(ESC("\xc3\xa9\xf0\x9f\x98\x80", jsonw_json, JSONW_UTF8_KEEP),
                        "\xc3\xa9\xf0\x9f\x98\x80");
    assert_string_equal(ESC("\xff\xc0\xaf", jsonw_json, JSONW_UTF8_KEEP), "\xff\xc0\xaf");
}

static void invalid_utf8_replaced_byte_by_byte(void **state)
{
    (void)state;
#define FFFD "\xef\xbf\xbd"
    /* valid: 2, 3 and 4 bytes, the highest code point */
    assert_string_equal(
        ESC("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xf4\x8f\xbf\xbf", jsonw_json, JSONW_UTF8_REPLACE),
        "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xf4\x8f\xbf\xbf");
    assert_string_equal(ESC("a\xff"
                            "b",
                            jsonw_json, JSONW_UTF8_REPLACE),
                        "a" FFFD "b");
    assert_string_equal(ESC("\xc0\xaf", jsonw_json, JSONW_UTF8_REPLACE), FFFD FFFD); /* overlong */
    assert_string_equal(ESC("\xed\xa0\x80", jsonw_json, JSONW_UTF8_REPLACE),
                        FFFD FFFD FFFD); /* surrogate */
    assert_string_equal(ESC("\xf4\x90\x80\x80", jsonw_json, JSONW_UTF8_REPLACE),
                        FFFD FFFD FFFD FFFD); /* past U+10FFFF */
    assert_string_equal(ESC("\x80\n", jsonw_json, JSONW_UTF8_REPLACE), FFFD "\\n");
}

static void a_sequence_cut_by_the_end_of_the_input_is_invalid(void **state)
{
    (void)state;
    /* The bytes after `n` would complete it: they must not be read. */
    assert_string_equal(esc("\xf0\x9f\x98\x80", 3, jsonw_json, JSONW_UTF8_REPLACE), FFFD FFFD FFFD);
    assert_string_equal(esc("a\xc3\xa9", 2, jsonw_json, JSONW_UTF8_REPLACE), "a" FFFD);
    assert_null(esc("a\xc3\xa9", 2, jsonw_json, JSONW_UTF8_REFUSE));
    assert_string_equal(esc("\xe2\x82\xac", 3, jsonw_json, JSONW_UTF8_REFUSE), "\xe2\x82\xac");
}

static void invalid_utf8_refused(void **state)
{
    (void)state;
    assert_null(ESC("ok\xff", jsonw_json, JSONW_UTF8_REFUSE));
    assert_int_equal(jsonw_escape("\xc0\xaf", 2, jsonw_json, JSONW_UTF8_REFUSE, NULL, 0, NULL),
                     JSONW_INVALID);
    assert_string_equal(ESC("\xf0\x9f\x98\x80\t", jsonw_json_upper, JSONW_UTF8_REFUSE),
                        "\xf0\x9f\x98\x80\\t");
}

/* A full buffer ends before the escape or character that does not fit, never inside it. */
static void only_whole_escapes_and_characters_are_written(void **state)
{
    (void)state;
    size_t used;
    assert_string_equal(esc_in("ab\ncd", 5, jsonw_json, JSONW_UTF8_KEEP, 3, &used), "ab");
    assert_int_equal(used, 2);
    assert_string_equal(esc_in("ab\ncd", 5, jsonw_json, JSONW_UTF8_KEEP, 4, &used), "ab\\n");
    assert_int_equal(used, 3);
    assert_string_equal(esc_in("a\x01", 2, jsonw_json, JSONW_UTF8_KEEP, 6, &used), "a");
    assert_int_equal(used, 1);
    for (int utf8 = JSONW_UTF8_KEEP; utf8 <= JSONW_UTF8_REFUSE; utf8++) {
        assert_string_equal(esc_in("a\xe2\x82\xac"
                                   "b",
                                   5, jsonw_json, utf8, 3, &used),
                            "a");
        assert_int_equal(used, 1);
        assert_string_equal(esc_in("a\xe2\x82\xac"
                                   "b",
                                   5, jsonw_json, utf8, 4, &used),
                            "a\xe2\x82\xac");
        assert_int_equal(used, 4);
    }
    assert_string_equal(esc_in("a\xff", 2, jsonw_json, JSONW_UTF8_REPLACE, 3, &used), "a");
    assert_int_equal(used, 1);
    assert_string_equal(esc_in("abc", 3, jsonw_json, JSONW_UTF8_KEEP, 0, &used), "");
    assert_int_equal(used, 0);
    /* used may be NULL */
    char out[2];
    assert_int_equal(jsonw_escape("abc", 3, jsonw_json, JSONW_UTF8_KEEP, out, 2, NULL), 2);
}

static void growth_is_at_most_six_bytes_a_byte(void **state)
{
    (void)state;
    char in[256];
    for (int i = 0; i < 256; i++)
        in[i] = (char)i;
    for (int utf8 = JSONW_UTF8_KEEP; utf8 <= JSONW_UTF8_REPLACE; utf8++)
        for (int i = 0; i < 256; i++)
            assert_true(jsonw_escape(in + i, 1, jsonw_json_upper, utf8, NULL, 0, NULL) <=
                        JSONW_MAX_GROWTH);
}

/* jsonw_json_upper with UTF-8 refused writes what jansson's json_dumps() writes. */
static void upper_set_matches_jansson(void **state)
{
    (void)state;
    uint64_t x = 88172645463325252ull;
    for (int round = 0; round < 2000; round++) {
        char s[64];
        size_t n = 0;
        while (n < sizeof s - 4) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            unsigned r = (unsigned)(x % 10);
            if (r < 4) {
                s[n++] = (char)(x >> 8 & 0x7f); /* any ASCII, controls and NUL included */
            } else if (r < 6) {
                memcpy(s + n, "\xc3\xa9", 2), n += 2;
            } else if (r < 7) {
                memcpy(s + n, "\xf0\x9f\x98\x80", 4), n += 4;
            } else if (r < 8) {
                s[n++] = (char)(x >> 16 & 0xff); /* maybe invalid */
            } else {
                break;
            }
        }
        json_t *j = json_stringn(s, n);
        char *want = j ? json_dumps(j, JSON_ENCODE_ANY | JSON_COMPACT) : NULL;
        json_decref(j);
        size_t used;
        const char *got = esc_in(s, n, jsonw_json_upper, JSONW_UTF8_REFUSE, 4000, &used);
        if (!want) {
            assert_null(got);
            continue;
        }
        assert_non_null(got);
        size_t wlen = strlen(want);
        if (strlen(got) != wlen - 2 || memcmp(got, want + 1, wlen - 2) != 0)
            fail_msg("jsonw: %s\njansson: %s", got, want);
        free(want);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(json_short_escapes_and_quotes),
        cmocka_unit_test(other_control_characters_in_either_hex_case),
        cmocka_unit_test(another_escape_set),
        cmocka_unit_test(utf8_kept_as_is_when_the_caller_vouches_for_it),
        cmocka_unit_test(invalid_utf8_replaced_byte_by_byte),
        cmocka_unit_test(a_sequence_cut_by_the_end_of_the_input_is_invalid),
        cmocka_unit_test(invalid_utf8_refused),
        cmocka_unit_test(only_whole_escapes_and_characters_are_written),
        cmocka_unit_test(growth_is_at_most_six_bytes_a_byte),
        cmocka_unit_test(upper_set_matches_jansson),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
