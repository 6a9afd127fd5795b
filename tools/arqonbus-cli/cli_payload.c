/* arqonbus-cli: payloads from an input. See cli_payload.h. */
#include "cli_payload.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#define CLI_MAX_INPUT (64u * 1024u * 1024u) /* as the largest frame the client accepts */

static int cli__add(struct cli_payloads *p, const char *text, size_t len)
{
    char **more = realloc(p->texts, (p->n + 1) * sizeof *more);
    if (!more)
        return -1;
    p->texts = more;
    if (!(p->texts[p->n] = strndup(text, len)))
        return -1;
    p->n++;
    return 0;
}

/* Is text[0..len) one JSON value? 0, or -1 with the parser's complaint in err. */
static int cli__check(const char *text, size_t len, const char *name, size_t line, char *err,
                      size_t errsz)
{
    json_error_t je;
    json_t *j = json_loadb(text, len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &je);
    if (j) {
        json_decref(j);
        return 0;
    }
    if (line)
        snprintf(err, errsz, "%s, line %zu: not valid JSON: %s (column %d)", name, line, je.text,
                 je.column);
    else
        snprintf(err, errsz, "%s: not valid JSON: %s (line %d, column %d)", name, je.text, je.line,
                 je.column);
    return -1;
}

static int cli__blank(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n')
            return 0;
    return 1;
}

int cli_payloads_read(FILE *in, const char *name, int lines, struct cli_payloads *p, char *err,
                      size_t errsz)
{
    size_t cap = 4096, len = 0, got;
    char *buf = malloc(cap);
    memset(p, 0, sizeof *p);
    if (!buf)
        goto oom;
    while ((got = fread(buf + len, 1, cap - len, in)) > 0) {
        len += got;
        if (len > CLI_MAX_INPUT) {
            snprintf(err, errsz, "%s: more than %u bytes", name, CLI_MAX_INPUT);
            goto fail;
        }
        if (len == cap) {
            char *bigger = realloc(buf, cap * 2);
            if (!bigger)
                goto oom;
            buf = bigger;
            cap *= 2;
        }
    }
    if (ferror(in)) {
        snprintf(err, errsz, "%s: %s", name, strerror(errno));
        goto fail;
    }
    if (!lines) {
        if (cli__blank(buf, len)) {
            snprintf(err, errsz, "%s: no payload (the input is empty)", name);
            goto fail;
        }
        if (cli__check(buf, len, name, 0, err, errsz) < 0)
            goto fail;
        if (cli__add(p, buf, len) < 0)
            goto oom;
    } else {
        size_t line = 0;
        for (size_t at = 0; at < len;) {
            const char *nl = memchr(buf + at, '\n', len - at);
            size_t end = nl ? (size_t)(nl - buf) : len;
            line++;
            if (!cli__blank(buf + at, end - at)) {
                if (cli__check(buf + at, end - at, name, line, err, errsz) < 0)
                    goto fail;
                if (cli__add(p, buf + at, end - at) < 0)
                    goto oom;
            }
            at = end + 1;
        }
        if (p->n == 0) {
            snprintf(err, errsz, "%s: no payload (no line that is not blank)", name);
            goto fail;
        }
    }
    free(buf);
    return 0;
oom:
    snprintf(err, errsz, "%s: out of memory", name);
fail:
    free(buf);
    cli_payloads_free(p);
    return -1;
}

void cli_payloads_free(struct cli_payloads *p)
{
    for (size_t i = 0; i < p->n; i++)
        free(p->texts[i]);
    free(p->texts);
    p->texts = NULL;
    p->n = 0;
}
