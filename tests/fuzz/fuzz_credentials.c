/* Credentials extraction (plugins/common/credentials.c), shared by auth-jwt and auth-tokens.
 *
 * Input: one header or query text (cut at its first NUL, as a C string would be), given to
 * every function. Properties, from credentials.h: a token found is a range inside the value,
 * trimmed, after its scheme or prefix; a query parameter found is the first whose decoded name
 * is one of the names, and its value holds no '&'; percent-decoding agrees with a plain
 * reference decoder, and pct_equals with decoding then comparing. */
#include <string.h>
#include <strings.h>

#include "credentials.h"
#include "fuzz.h"

static int ows(char c)
{
    return c == ' ' || c == '\t';
}

static int hex(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = (char)(c | 0x20);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* The rule of credentials.h, written the plain way. */
static size_t reference_decode(const char *s, size_t len, char *out)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '%' && i + 2 < len && hex(s[i + 1]) >= 0 && hex(s[i + 2]) >= 0) {
            out[n++] = (char)(hex(s[i + 1]) << 4 | hex(s[i + 2]));
            i += 2;
        } else {
            out[n++] = s[i];
        }
    }
    return n;
}

static void check_bearer(const char *v, size_t vlen)
{
    const char *tok = NULL;
    size_t len = 0;
    if (!arq_cred_bearer(v, &tok, &len))
        return;
    FUZZ_CHECK(tok >= v + 6 && tok + len <= v + vlen, "token outside the value");
    FUZZ_CHECK(len == 0 || (!ows(tok[0]) && !ows(tok[len - 1])), "token not trimmed");
    const char *s = v;
    while (ows(*s))
        s++;
    FUZZ_CHECK(!strncasecmp(s, "bearer", 6) && (s[6] == '\0' || ows(s[6])), "not the scheme");
    for (const char *p = s + 6; p < tok; p++)
        FUZZ_CHECK(ows(*p), "something skipped before the token");
    for (const char *p = tok + len; *p; p++)
        FUZZ_CHECK(ows(*p), "something left after the token");
}

static void check_subprotocol(const char *v, size_t vlen)
{
    const char *tok = NULL;
    size_t len = 0;
    if (!arq_cred_subprotocol_bearer(v, &tok, &len))
        return;
    FUZZ_CHECK(tok >= v + 7 && tok + len <= v + vlen, "token outside the value");
    FUZZ_CHECK(!memcmp(tok - 7, "bearer.", 7), "no bearer. prefix");
    FUZZ_CHECK(!memchr(tok, ',', len), "token runs into the next entry");
    FUZZ_CHECK(len == 0 || !ows(tok[len - 1]), "token not trimmed");
    /* the first such entry: no earlier one starts with bearer. */
    for (const char *p = v; p < tok - 7;) {
        size_t item = strcspn(p, ",");
        const char *s = p;
        size_t left = item;
        arq_cred_trim(&s, &left);
        FUZZ_CHECK(s + left <= tok - 7 || s == tok - 7, "entries overlap");
        if (s == tok - 7)
            break;
        FUZZ_CHECK(left < 7 || memcmp(s, "bearer.", 7) != 0, "an earlier entry was skipped");
        p += item + 1;
    }
}

static void check_query(const char *q, size_t qlen, char *buf)
{
    static const char *const names[] = {"token", "access_token", "", "t%", NULL};
    const char *val = NULL;
    size_t len = 0;
    int got = arq_cred_query_first_of(q, names, &val, &len);

    /* the reference: every pair in order, its name decoded whole */
    int want = -1;
    const char *want_val = NULL;
    for (const char *p = q; want < 0;) {
        size_t pair = strcspn(p, "&");
        const char *eq = memchr(p, '=', pair);
        if (eq) {
            size_t n = reference_decode(p, (size_t)(eq - p), buf);
            for (int i = 0; names[i] && want < 0; i++)
                if (n == strlen(names[i]) && !memcmp(buf, names[i], n)) {
                    want = i;
                    want_val = eq + 1;
                }
            FUZZ_CHECK(arq_cred_pct_equals(p, (size_t)(eq - p), "token") ==
                           (n == 5 && !memcmp(buf, "token", 5)),
                       "pct_equals and decoding disagree");
        }
        if (!p[pair])
            break;
        p += pair + 1;
    }
    FUZZ_CHECK(got == want, "query: parameter %d found, %d expected", got, want);
    if (got >= 0) {
        FUZZ_CHECK(val == want_val && val + len <= q + qlen, "value at the wrong place");
        FUZZ_CHECK(!memchr(val, '&', len), "value runs into the next parameter");
        FUZZ_CHECK(val[len] == '\0' || val[len] == '&', "value cut short");
    }
    /* arq_cred_query_param: first_of with the one name */
    const char *const token_only[] = {"token", NULL};
    const char *v1 = NULL, *v2 = NULL;
    size_t l1 = 0, l2 = 0;
    int one = arq_cred_query_param(q, "token", &v1, &l1);
    FUZZ_CHECK(one == (arq_cred_query_first_of(q, token_only, &v2, &l2) == 0) &&
                   (!one || (v1 == v2 && l1 == l2)),
               "query_param differs from query_first_of");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *v = malloc(size + 1), *a = malloc(size + 1), *b = malloc(size + 1);
    FUZZ_CHECK(v && a && b, "out of memory");
    memcpy(v, data, size);
    v[size] = '\0';
    size_t vlen = strlen(v);

    check_bearer(v, vlen);
    check_subprotocol(v, vlen);
    check_query(v, vlen, a);

    /* decoding: as the reference, never longer, byte by byte as pct_next reads it */
    size_t n = arq_cred_pct_decode((const char *)data, size, a);
    FUZZ_CHECK(n <= size, "decoded longer than the text");
    FUZZ_CHECK(n == reference_decode((const char *)data, size, b) && !memcmp(a, b, n),
               "pct_decode differs from the reference");
    size_t pos = 0, k = 0;
    while (pos < size)
        FUZZ_CHECK(arq_cred_pct_next((const char *)data, size, &pos) == (unsigned char)a[k++],
                   "pct_next differs at %zu", k - 1);
    FUZZ_CHECK(pos == size && k == n, "pct_next read past the text");
    /* pct_equals: the text equals its own decoding when that holds no NUL */
    if (!memchr(a, '\0', n)) {
        a[n] = '\0';
        FUZZ_CHECK(arq_cred_pct_equals((const char *)data, size, a), "not equal to its decoding");
    }

    const char *s = v;
    size_t len = vlen;
    arq_cred_trim(&s, &len);
    FUZZ_CHECK(s >= v && s + len <= v + vlen && (len == 0 || (!ows(*s) && !ows(s[len - 1]))),
               "trim");
    free(v);
    free(a);
    free(b);
    return 0;
}
