/* plugins/common/credentials: the token of `Authorization: Bearer`, the `bearer.` entry of
 * Sec-WebSocket-Protocol, query parameters by their percent-decoded names, and percent-decoding
 * (`%XX` a byte, a `%` that starts no escape stands for itself, `+` stays `+`). Each table row
 * is one input and what must come out of it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "credentials.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

/* The range [s, s + len) must be exactly `want` (`want_len` bytes); `what` names the row. */
static void assert_range(const char *what, const char *s, size_t len, const char *want,
                         size_t want_len)
{
    if (len != want_len || memcmp(s, want, len) != 0)
        fail_msg("%s: got \"%.*s\" (%zu bytes), expected \"%.*s\" (%zu bytes)", what, (int)len, s,
                 len, (int)want_len, want, want_len);
}

/* A found/not-found row: `want` NULL means nothing is found. */
struct find_case {
    const char *in;
    const char *want;
};

/* Run `find` (arq_cred_bearer's signature) on every row of `cases`. */
static void assert_finds(int (*find)(const char *, const char **, size_t *),
                         const struct find_case *cases, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const char *tok = NULL;
        size_t len = 0;
        int found = find(cases[i].in, &tok, &len);
        if (found != (cases[i].want != NULL))
            fail_msg("\"%s\": found %d", cases[i].in, found);
        if (found)
            assert_range(cases[i].in, tok, len, cases[i].want, strlen(cases[i].want));
    }
}

/* arq_cred_query_param for the name "token". */
static int query_token(const char *query, const char **val, size_t *len)
{
    return arq_cred_query_param(query, "token", val, len);
}

static void hex_digits_are_0_to_9_and_a_to_f_in_either_case(void **state)
{
    (void)state;
    const char *const sets[] = {"0123456789", "abcdef", "ABCDEF"};
    const int base[] = {0, 10, 10};
    int digits = 0;
    for (size_t s = 0; s < N(sets); s++)
        for (int i = 0; sets[s][i]; i++, digits++)
            assert_int_equal(arq_cred_hex_digit(sets[s][i]), base[s] + i);
    int others = 0;
    for (int c = 1; c < 256; c++)
        if (!strchr("0123456789abcdefABCDEF", c)) {
            if (arq_cred_hex_digit((char)c) != -1)
                fail_msg("0x%02x is not a hex digit", c);
            others++;
        }
    assert_int_equal(arq_cred_hex_digit('\0'), -1);
    assert_int_equal(digits, 22);
    assert_int_equal(others, 255 - 22);
}

static void trim_drops_spaces_and_tabs_at_either_end_only(void **state)
{
    (void)state;
    const struct find_case cases[] = {
        {"abc", "abc"},     {"  abc", "abc"}, {"abc \t", "abc"},  {"\t a b \t", "a b"},
        {" \t \t ", ""},    {"", ""},         {"\na\n", "\na\n"}, /* only spaces and tabs */
        {" a\tb ", "a\tb"},
    };
    for (size_t i = 0; i < N(cases); i++) {
        const char *s = cases[i].in;
        size_t len = strlen(s);
        arq_cred_trim(&s, &len);
        assert_range(cases[i].in, s, len, cases[i].want, strlen(cases[i].want));
        assert_true(s >= cases[i].in && s + len <= cases[i].in + strlen(cases[i].in));
    }
}

static void bearer_token_is_found_in_any_case_with_spaces_and_tabs_trimmed(void **state)
{
    (void)state;
    const struct find_case cases[] = {
        {"Bearer abc", "abc"},
        {"bearer abc", "abc"},
        {"BEARER abc", "abc"},
        {"bEaReR abc", "abc"},
        {"Bearer    abc   ", "abc"},
        {"  Bearer abc", "abc"},
        {"\tBearer\tabc\t", "abc"},
        {" \tBearer \t abc \t", "abc"},
        {"Bearer a b", "a b"},             /* what is between stays */
        {"Bearer abc%20d+e", "abc%20d+e"}, /* not decoded */
        {"Bearer x.y.z", "x.y.z"},
        /* The scheme alone: a Bearer without a token (each plugin decides what that means). */
        {"Bearer", ""},
        {"Bearer   ", ""},
        {"\tbearer\t", ""},
        /* Another scheme, or none. */
        {"Basic dXNlcjpwYXNz", NULL},
        {"Bearerx abc", NULL},
        {"Bearerabc", NULL},
        {"Bearer.abc", NULL},
        {"Bear abc", NULL},
        {"Token abc", NULL},
        {"abc", NULL},
        {"", NULL},
        {"  \t ", NULL},
    };
    assert_finds(arq_cred_bearer, cases, N(cases));
}

static void subprotocol_bearer_entry_is_the_first_that_starts_with_bearer_dot(void **state)
{
    (void)state;
    const struct find_case cases[] = {
        {"bearer.abc", "abc"},
        {"arqonbus.v1, bearer.abc", "abc"},
        {"arqonbus.v1,bearer.abc,chat", "abc"},
        {"arqonbus.v1 ,  bearer.abc , chat", "abc"},
        {"\tbearer.abc\t,chat", "abc"},
        {"bearer.one, bearer.two", "one"},
        {"chat, bearer.a.b.c", "a.b.c"},
        {",,bearer.abc", "abc"},
        {"bearer.abc,", "abc"},
        {"bearer.a b", "a b"},
        /* An entry "bearer." alone is the first bearer. entry, with an empty token. */
        {"arqonbus.v1, bearer.", ""},
        {"bearer. , bearer.abc", ""},
        /* The prefix is exact. */
        {"Bearer.abc", NULL},
        {"BEARER.abc", NULL},
        {"x.bearer.y, xbearer.z", NULL},
        {"bearer .abc", NULL},
        {"bearer", NULL},
        {"arqonbus.v1", NULL},
        {"", NULL},
        {",", NULL},
        {" , \t, ", NULL},
    };
    assert_finds(arq_cred_subprotocol_bearer, cases, N(cases));
}

static void query_param_is_the_first_whose_decoded_name_matches_with_its_raw_value(void **state)
{
    (void)state;
    const struct find_case cases[] = {
        {"token=abc", "abc"},
        {"room=lobby&token=abc&x=1", "abc"},
        {"token=one&token=two", "one"}, /* the first counts */
        {"token=&token=two", ""},       /* even when empty */
        {"token&token=abc", "abc"},     /* no '=': no value, passed over */
        {"token=abc&", "abc"},          /* a trailing & */
        {"token=abc&&", "abc"},
        {"&&token=abc", "abc"},
        {"x=1&token=", ""},
        {"token=a=b", "a=b"},           /* the first '=' ends the name */
        {"token=a%26b+c%", "a%26b+c%"}, /* the value is left encoded */
        {"%74oken=abc", "abc"},         /* the name is decoded */
        {"%74%6F%6b%65%6E=abc", "abc"},
        {"tok%65n=abc&token=def", "abc"},
        /* Names that are not exactly "token". */
        {"mytoken=a&token_x=b&tokens=c&Token=d&TOKEN=e", NULL},
        {"token%3D=abc", NULL},
        {"token%=abc", NULL},
        {"token%00=abc", NULL},
        {"token+=abc", NULL},
        {"=abc", NULL},
        {"token", NULL},
        {"", NULL},
        {"&", NULL},
        {"&&", NULL},
    };
    assert_finds(query_token, cases, N(cases));
}

static void query_first_of_names_takes_whichever_comes_first(void **state)
{
    (void)state;
    static const char *const names[] = {"token", "access_token", NULL};
    const struct {
        const char *in;
        int which;
        const char *want;
    } cases[] = {
        {"token=a", 0, "a"},
        {"access_token=b", 1, "b"},
        {"access_token=b&token=a", 1, "b"},
        {"token=a&access_token=b", 0, "a"},
        {"x=1&access%5Ftoken=b&token=a", 1, "b"},
        {"access_token=&token=a", 1, ""},
        {"access_token&token=a", 0, "a"},
        {"access_token_x=b&x_token=a", -1, NULL},
        {"", -1, NULL},
    };
    for (size_t i = 0; i < N(cases); i++) {
        const char *val = NULL;
        size_t len = 0;
        int which = arq_cred_query_first_of(cases[i].in, names, &val, &len);
        if (which != cases[i].which)
            fail_msg("\"%s\": name %d, expected %d", cases[i].in, which, cases[i].which);
        if (which >= 0)
            assert_range(cases[i].in, val, len, cases[i].want, strlen(cases[i].want));
    }
    /* No names: nothing matches. */
    static const char *const none[] = {NULL};
    const char *val = NULL;
    size_t len = 0;
    assert_int_equal(arq_cred_query_first_of("token=a", none, &val, &len), -1);
}

/* A decoding row: `in` (its first `in_len` bytes when that is not 0) decodes to `want` (of
 * `want_len` bytes when that is not 0: the rows with a NUL byte). */
struct decode_case {
    const char *in, *want;
    size_t want_len, in_len;
};

static const struct decode_case decode_cases[] = {
    {"abc", "abc", 0, 0},
    {"", "", 0, 0},
    {"%41%62", "Ab", 0, 0},
    {"%4a%4A", "JJ", 0, 0}, /* hex in either case */
    {"%2B%2f%3d", "+/=", 0, 0},
    {"a+b", "a+b", 0, 0}, /* + is not a space */
    {"%20", " ", 0, 0},
    {"%ff%FF", "\xff\xff", 0, 0},
    {"%00", "\0", 1, 0}, /* a NUL byte, kept */
    {"a%00b", "a\0b", 3, 0},
    {"abc%41", "abcA", 0, 0}, /* an escape that ends the string */
    {"%", "%", 0, 0},         /* a % that starts no escape stands for itself */
    {"abc%", "abc%", 0, 0},
    {"abc%4", "abc%4", 0, 0},
    {"%4", "%4", 0, 0},
    {"%zz", "%zz", 0, 0},
    {"%4z", "%4z", 0, 0},
    {"%z4", "%z4", 0, 0},
    {"%%41", "%A", 0, 0},
    {"%%%", "%%%", 0, 0},
    {"%2%41", "%2A", 0, 0},
    {"%%2541", "%%41", 0, 0}, /* decoded once only */
    /* Only the given length is read: an escape cut by it is not one. */
    {"a%41", "a%4", 0, 3},
    {"a%41", "a%", 0, 2},
};

static size_t in_len(const struct decode_case *c)
{
    return c->in_len ? c->in_len : strlen(c->in);
}

static size_t want_len(const struct decode_case *c)
{
    return c->want_len ? c->want_len : strlen(c->want);
}

static void percent_decoding_has_one_meaning(void **state)
{
    (void)state;
    for (size_t i = 0; i < N(decode_cases); i++) {
        const struct decode_case *c = &decode_cases[i];
        size_t len = in_len(c);
        char out[32];
        memset(out, '#', sizeof out);
        size_t n = arq_cred_pct_decode(c->in, len, out);
        assert_range(c->in, out, n, c->want, want_len(c));
        assert_true(n <= len);
        assert_int_equal(out[n], '#'); /* nothing written past the decoded bytes */
    }
}

static void percent_decoding_byte_at_a_time_matches_the_whole(void **state)
{
    (void)state;
    for (size_t i = 0; i < N(decode_cases); i++) {
        const struct decode_case *c = &decode_cases[i];
        size_t len = in_len(c);
        char out[32];
        size_t n = 0, pos = 0;
        while (pos < len) {
            size_t before = pos;
            out[n++] = (char)arq_cred_pct_next(c->in, len, &pos);
            /* An escape is read whole (3 characters), anything else alone. */
            size_t step = pos - before;
            assert_true(step == 1 || (step == 3 && c->in[before] == '%'));
        }
        assert_int_equal(pos, len);
        assert_range(c->in, out, n, c->want, want_len(c));
    }
}

static void percent_encoded_text_equals_a_name_only_when_it_decodes_to_it(void **state)
{
    (void)state;
    const struct {
        const char *in, *name;
        int equal;
    } cases[] = {
        {"token", "token", 1},
        {"%74oken", "token", 1},
        {"%74%6F%6B%65%6E", "token", 1},
        {"", "", 1},
        {"%", "%", 1},
        {"%25", "%", 1},
        {"a+b", "a+b", 1},
        {"toke", "token", 0},
        {"tokens", "token", 0},
        {"", "token", 0},
        {"token", "", 0},
        {"Token", "token", 0},
        {"a+b", "a b", 0},
        {"a%20b", "a b", 1},
        {"token%00", "token", 0},
        {"%74oke", "token", 0},
        {"%7", "%7", 1},
        {"%7", "t", 0},
    };
    for (size_t i = 0; i < N(cases); i++)
        if (arq_cred_pct_equals(cases[i].in, strlen(cases[i].in), cases[i].name) != cases[i].equal)
            fail_msg("\"%s\" ~ \"%s\": expected %d", cases[i].in, cases[i].name, cases[i].equal);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(hex_digits_are_0_to_9_and_a_to_f_in_either_case),
        cmocka_unit_test(trim_drops_spaces_and_tabs_at_either_end_only),
        cmocka_unit_test(bearer_token_is_found_in_any_case_with_spaces_and_tabs_trimmed),
        cmocka_unit_test(subprotocol_bearer_entry_is_the_first_that_starts_with_bearer_dot),
        cmocka_unit_test(query_param_is_the_first_whose_decoded_name_matches_with_its_raw_value),
        cmocka_unit_test(query_first_of_names_takes_whichever_comes_first),
        cmocka_unit_test(percent_decoding_has_one_meaning),
        cmocka_unit_test(percent_decoding_byte_at_a_time_matches_the_whole),
        cmocka_unit_test(percent_encoded_text_equals_a_name_only_when_it_decodes_to_it),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
