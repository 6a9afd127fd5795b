/* arqonbus-cli: command-line parsing. See cli_args.h. */
#include "cli_args.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "credentials.h"

#define CLI_MAX_POSITIONAL 8 /* pub needs 4; a few more get a per-command message */
#define CLI_MAX_TIMEOUT    86400.0

enum cli_opt_id {
    OPT_HOST,
    OPT_PORT,
    OPT_PATH,
    OPT_TOKEN,
    OPT_TIMEOUT,
    OPT_COUNT,
    OPT_VERBOSE,
    OPT_HELP,
    OPT_TLS,
    OPT_INSECURE
};

struct cli_option {
    const char *name; /* --name */
    char letter;      /* -x, or 0 */
    int takes_value;
    enum cli_opt_id id;
};

static const struct cli_option cli__options[] = {
    {"host", 'H', 1, OPT_HOST},       {"port", 'p', 1, OPT_PORT},     {"path", 0, 1, OPT_PATH},
    {"token", 0, 1, OPT_TOKEN},       {"timeout", 0, 1, OPT_TIMEOUT}, {"count", 'n', 1, OPT_COUNT},
    {"verbose", 'v', 0, OPT_VERBOSE}, {"help", 'h', 0, OPT_HELP},     {"tls", 0, 0, OPT_TLS},
    {"insecure", 0, 0, OPT_INSECURE},
};

void cli_usage(FILE *out)
{
    fputs("usage: arqonbus-cli [OPTIONS] COMMAND ...\n"
          "\n"
          "Commands:\n"
          "  sub ROOM [CHANNEL]        join the room (or the channel in it), then print every\n"
          "                            frame as one JSON line until interrupted or --count\n"
          "  pub ROOM [CHANNEL] JSON   join the room (or channel), publish JSON as the\n"
          "                            payload of a message, print the acknowledgement\n"
          "                            (with acks off, --path '/?ack=0': print nothing once\n"
          "                            the server has taken the message)\n"
          "  cmd NAME [JSON-ARGS]      run a command (e.g. status, list_rooms, history) with an\n"
          "                            args object, print the response\n"
          "\n"
          "Options:\n"
          "  -H, --host HOST       server host (default 127.0.0.1, or $ARQONBUS_SERVER_HOST)\n"
          "  -p, --port PORT       server port (default 9100, or $ARQONBUS_SERVER_PORT)\n"
          "      --path PATH       request path and query (default /), e.g. /?ack=0\n"
          "      --token T         send \"Authorization: Bearer T\" (default $ARQONBUS_TOKEN)\n"
          "      --timeout SECS    bound on connecting and on waiting for a reply (default 10)\n"
          "  -n, --count N         sub: exit after N frames\n"
          "      --tls             connect with wss://\n"
          "      --insecure        with --tls: accept self-signed certificates\n"
          "  -v, --verbose         also print the welcome frame and the join response, and\n"
          "                        connection diagnostics on stderr\n"
          "  -h, --help            print this help\n"
          "\n"
          "Frames go to stdout, one compact JSON object per line; diagnostics go to stderr.\n"
          "Exit status: 0 success, 1 the server answered with an error or the connection\n"
          "failed or timed out, 2 bad command line.\n"
          "\n"
          "Examples:\n"
          "  arqonbus-cli sub science lab -n 10\n"
          "  arqonbus-cli pub science lab '{\"reading\": 21.5}'\n"
          "  arqonbus-cli cmd history '{\"room\": \"science\", \"channel\": \"lab\", \"limit\": "
          "5}'\n",
          out);
}

int cli_path_acks_off(const char *path)
{
    static const char *const off[] = {"ack=0", "ack=false", "ack=no", "ack=off", NULL};
    const char *q = path ? strchr(path, '?') : NULL;
    while (q) {
        q++; /* past the '?' or '&' */
        size_t len = strcspn(q, "&#");
        char part[32];
        if (len <= sizeof part) {
            size_t n = arq_cred_pct_decode(q, len, part);
            for (size_t i = 0; off[i]; i++)
                if (n == strlen(off[i]) && !memcmp(part, off[i], n))
                    return 1;
        }
        q = q[len] == '&' ? q + len : NULL;
    }
    return 0;
}

static int cli__error(char *err, size_t errsz, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int cli__error(char *err, size_t errsz, const char *fmt, ...)
{
    if (err && errsz) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errsz, fmt, ap);
        va_end(ap);
    }
    return CLI_PARSE_ERROR;
}

static int cli__parse_port(const char *s, int *port)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (!*s || *end || errno || v < 1 || v > 65535 || !isdigit((unsigned char)*s))
        return -1;
    *port = (int)v;
    return 0;
}

static const struct cli_option *cli__find_long(const char *name, size_t len)
{
    for (size_t i = 0; i < sizeof cli__options / sizeof cli__options[0]; i++)
        if (strlen(cli__options[i].name) == len && strncmp(cli__options[i].name, name, len) == 0)
            return &cli__options[i];
    return NULL;
}

static const struct cli_option *cli__find_short(char letter)
{
    for (size_t i = 0; i < sizeof cli__options / sizeof cli__options[0]; i++)
        if (cli__options[i].letter == letter)
            return &cli__options[i];
    return NULL;
}

/* Apply one option; `shown` is how the user spelled it, for messages. */
static int cli__apply(struct cli_opts *o, const struct cli_option *opt, const char *shown,
                      const char *v, int *port_set, int *help, char *err, size_t errsz)
{
    char *end;
    switch (opt->id) {
    case OPT_HOST:
        if (!*v)
            return cli__error(err, errsz, "%s: the host must not be empty", shown);
        o->host = v;
        break;
    case OPT_PORT:
        if (cli__parse_port(v, &o->port) < 0)
            return cli__error(err, errsz, "%s: invalid port '%s' (expected 1-65535)", shown, v);
        *port_set = 1;
        break;
    case OPT_PATH:
        if (v[0] != '/')
            return cli__error(err, errsz, "%s: the path must start with '/', got '%s'", shown, v);
        o->path = v;
        o->acks_off = cli_path_acks_off(v);
        break;
    case OPT_TOKEN:
        if (!*v)
            return cli__error(err, errsz, "%s: the token must not be empty", shown);
        o->token = v;
        break;
    case OPT_TIMEOUT:
        errno = 0;
        o->timeout_s = strtod(v, &end);
        if (!*v || *end || errno || !isfinite(o->timeout_s) || o->timeout_s <= 0 ||
            o->timeout_s > CLI_MAX_TIMEOUT)
            return cli__error(err, errsz,
                              "%s: invalid timeout '%s' (seconds, more than 0, at most %.0f)",
                              shown, v, CLI_MAX_TIMEOUT);
        break;
    case OPT_COUNT:
        errno = 0;
        o->count = strtol(v, &end, 10);
        if (!*v || *end || errno || o->count < 1 || !isdigit((unsigned char)*v))
            return cli__error(err, errsz, "%s: invalid count '%s' (a whole number, 1 or more)",
                              shown, v);
        break;
    case OPT_VERBOSE:
        o->verbose = 1;
        break;
    case OPT_HELP:
        *help = 1;
        break;
    case OPT_TLS:
        o->tls = 1;
        break;
    case OPT_INSECURE:
        o->insecure = 1;
        break;
    }
    return CLI_PARSE_OK;
}

/* An option unless it is "-", or looks like a negative number (a JSON payload such as -5). */
static int cli__is_option(const char *a)
{
    return a[0] == '-' && a[1] && !isdigit((unsigned char)a[1]) && a[1] != '.';
}

static int cli__parse_json(struct cli_opts *o, const char *text, const char *what, int object,
                           char *err, size_t errsz)
{
    json_error_t je;
    json_t *j = json_loads(text, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &je);
    if (!j)
        return cli__error(err, errsz, "%s is not valid JSON: %s (line %d, column %d)", what,
                          je.text, je.line, je.column);
    if (object && !json_is_object(j)) {
        json_decref(j);
        return cli__error(err, errsz, "%s must be a JSON object, like '{\"room\":\"a\"}'", what);
    }
    o->json = j;
    o->json_text = text;
    return CLI_PARSE_OK;
}

static int cli__nonempty(const char *v, const char *what, char *err, size_t errsz)
{
    if (!*v)
        return cli__error(err, errsz, "%s must not be empty", what);
    return CLI_PARSE_OK;
}

/* COMMAND and its arguments, once options are out of the way. */
static int cli__command(struct cli_opts *o, const char *const *pos, int npos, char *err,
                        size_t errsz)
{
    int nargs = npos - 1;
    if (npos == 0)
        return cli__error(err, errsz, "missing COMMAND (sub, pub or cmd; see --help)");
    if (strcmp(pos[0], "sub") == 0) {
        if (nargs < 1 || nargs > 2)
            return cli__error(err, errsz, "sub takes ROOM [CHANNEL], got %d argument%s", nargs,
                              nargs == 1 ? "" : "s");
        o->command = CLI_SUB;
        o->room = pos[1];
        o->channel = nargs == 2 ? pos[2] : NULL;
    } else if (strcmp(pos[0], "pub") == 0) {
        if (nargs < 2 || nargs > 3)
            return cli__error(err, errsz, "pub takes ROOM [CHANNEL] JSON, got %d argument%s", nargs,
                              nargs == 1 ? "" : "s");
        o->command = CLI_PUB;
        o->room = pos[1];
        o->channel = nargs == 3 ? pos[2] : NULL;
    } else if (strcmp(pos[0], "cmd") == 0) {
        if (nargs < 1 || nargs > 2)
            return cli__error(err, errsz, "cmd takes NAME [JSON-ARGS], got %d argument%s", nargs,
                              nargs == 1 ? "" : "s");
        o->command = CLI_CMD;
        o->name = pos[1];
        if (cli__nonempty(o->name, "NAME", err, errsz) < 0)
            return CLI_PARSE_ERROR;
    } else {
        return cli__error(err, errsz, "unknown command '%s' (sub, pub or cmd; see --help)", pos[0]);
    }
    if (o->room && cli__nonempty(o->room, "ROOM", err, errsz) < 0)
        return CLI_PARSE_ERROR;
    if (o->channel && cli__nonempty(o->channel, "CHANNEL", err, errsz) < 0)
        return CLI_PARSE_ERROR;
    if (o->count && o->command != CLI_SUB)
        return cli__error(err, errsz, "--count applies to sub only");
    if (o->command == CLI_PUB)
        return cli__parse_json(o, pos[nargs], "the payload", 0, err, errsz);
    if (o->command == CLI_CMD) {
        if (nargs == 2)
            return cli__parse_json(o, pos[2], "JSON-ARGS", 1, err, errsz);
        o->json = json_object();
        if (!o->json)
            return cli__error(err, errsz, "out of memory");
    }
    return CLI_PARSE_OK;
}

int cli_parse(int argc, char *const argv[], const struct cli_env *env, struct cli_opts *o,
              char *err, size_t errsz)
{
    const char *pos[CLI_MAX_POSITIONAL];
    int npos = 0, port_set = 0, help = 0, opts_done = 0;

    memset(o, 0, sizeof *o);
    o->host = env && env->host && *env->host ? env->host : CLI_DEFAULT_HOST;
    o->port = CLI_DEFAULT_PORT;
    o->path = CLI_DEFAULT_PATH;
    o->token = env && env->token && *env->token ? env->token : NULL;
    o->timeout_s = CLI_DEFAULT_TIMEOUT;
    if (err && errsz)
        err[0] = '\0';

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (opts_done || !cli__is_option(a)) {
            if (npos == CLI_MAX_POSITIONAL)
                return cli__error(err, errsz, "too many arguments, starting at '%s'", a);
            pos[npos++] = a;
            continue;
        }
        if (strcmp(a, "--") == 0) {
            opts_done = 1;
            continue;
        }
        const struct cli_option *opt;
        const char *value = NULL;
        char shown[64];
        if (a[1] == '-') {
            const char *eq = strchr(a + 2, '=');
            size_t len = eq ? (size_t)(eq - (a + 2)) : strlen(a + 2);
            opt = cli__find_long(a + 2, len);
            snprintf(shown, sizeof shown, "--%.*s", (int)len, a + 2);
            if (!opt)
                return cli__error(err, errsz, "unknown option '%s' (see --help)", shown);
            if (eq && !opt->takes_value)
                return cli__error(err, errsz, "%s takes no value", shown);
            value = eq ? eq + 1 : NULL;
        } else {
            opt = cli__find_short(a[1]);
            snprintf(shown, sizeof shown, "-%c", a[1]);
            if (!opt || (a[2] && !opt->takes_value))
                return cli__error(err, errsz, "unknown option '%s' (see --help)", a);
            value = a[2] ? a + 2 : NULL;
        }
        if (opt->takes_value && !value) {
            if (i + 1 >= argc)
                return cli__error(err, errsz, "%s needs a value", shown);
            value = argv[++i];
        }
        if (cli__apply(o, opt, shown, value ? value : "", &port_set, &help, err, errsz) < 0)
            return CLI_PARSE_ERROR;
    }
    if (help)
        return CLI_PARSE_HELP;
    if (!port_set && env && env->port && *env->port && cli__parse_port(env->port, &o->port) < 0)
        return cli__error(err, errsz, "ARQONBUS_SERVER_PORT: invalid port '%s' (expected 1-65535)",
                          env->port);
    if (o->insecure && !o->tls)
        return cli__error(err, errsz, "--insecure needs --tls");
    if (cli__command(o, pos, npos, err, errsz) < 0) {
        cli_opts_free(o);
        return CLI_PARSE_ERROR;
    }
    return CLI_PARSE_OK;
}

void cli_opts_free(struct cli_opts *o)
{
    json_decref(o->json);
    o->json = NULL;
    o->json_text = NULL;
}
