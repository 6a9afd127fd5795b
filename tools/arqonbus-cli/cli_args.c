/* arqonbus-cli: command-line parsing. See cli_args.h. */
#include "cli_args.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <arqonbus/plugin.h>

#include "credentials.h"

#ifndef ARQ_CLI_VERSION
#define ARQ_CLI_VERSION "unknown"
#endif
#define CLI_PROTOCOL_VERSION "1.0" /* the envelope `version` the client speaks */

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
    OPT_INSECURE,
    OPT_VERSION,
    OPT_WAIT,
    OPT_NO_RECONNECT,
    OPT_INTERACTIVE,
    OPT_PRETTY,
    OPT_RAW,
    OPT_FILE,
    OPT_LINES,
    OPT_LIMIT,
    OPT_SINCE_OFFSET,
    OPT_EPOCH,
    OPT_SINCE,
    OPT_UNTIL
};

struct cli_option {
    const char *name; /* --name */
    char letter;      /* -x, or 0 */
    int takes_value;
    enum cli_opt_id id;
};

static const struct cli_option cli__options[] = {
    {"host", 'H', 1, OPT_HOST},
    {"port", 'p', 1, OPT_PORT},
    {"path", 0, 1, OPT_PATH},
    {"token", 0, 1, OPT_TOKEN},
    {"timeout", 0, 1, OPT_TIMEOUT},
    {"count", 'n', 1, OPT_COUNT},
    {"verbose", 'v', 0, OPT_VERBOSE},
    {"help", 'h', 0, OPT_HELP},
    {"tls", 0, 0, OPT_TLS},
    {"insecure", 0, 0, OPT_INSECURE},
    {"version", 'V', 0, OPT_VERSION},
    {"wait", 'W', 1, OPT_WAIT},
    {"no-reconnect", 0, 0, OPT_NO_RECONNECT},
    {"interactive", 'i', 0, OPT_INTERACTIVE},
    {"pretty", 0, 0, OPT_PRETTY},
    {"raw", 0, 0, OPT_RAW},
    {"file", 'f', 1, OPT_FILE},
    {"lines", 'l', 0, OPT_LINES},
    {"limit", 0, 1, OPT_LIMIT},
    {"since-offset", 0, 1, OPT_SINCE_OFFSET},
    {"epoch", 0, 1, OPT_EPOCH},
    {"since", 0, 1, OPT_SINCE},
    {"until", 0, 1, OPT_UNTIL},
};

void cli_usage(FILE *out)
{
    fputs("usage: arqonbus-cli [OPTIONS] COMMAND ...\n"
          "       arqonbus-cli [OPTIONS] [-i]     (interactive)\n"
          "\n"
          "Commands:\n"
          "  sub ROOM [CHANNEL]        join the room (or the channel in it), then print every\n"
          "                            frame until interrupted, -n COUNT or -W SECONDS. A lost\n"
          "                            connection (a restart, a drain: close 1001/1012, or a\n"
          "                            drop) is retried with back-off (0.1 s doubling to 5 s,\n"
          "                            jittered); a channel is then joined again and, when the\n"
          "                            server keeps history, what was missed is recovered by\n"
          "                            offset and epoch, nothing printed twice or out of order.\n"
          "                            Without history (or for a room), stderr says once that\n"
          "                            messages may have been missed.\n"
          "  pub ROOM [CHANNEL] JSON   join the room (or channel), publish JSON as the payload\n"
          "                            of a message, print the acknowledgement (with acks off,\n"
          "                            --path '/?ack=0': print nothing once the server has\n"
          "                            taken the message). JSON '-' reads the payload from\n"
          "                            standard input; with -f FILE or -l, JSON is left out\n"
          "  history ROOM [CHANNEL]    print the stored messages, oldest first, one history\n"
          "                            entry ({envelope, stored_at, offset}) per frame; with\n"
          "                            -v the response's epoch and recovered flag on stderr\n"
          "  cmd NAME [JSON-ARGS]      run a command (e.g. status, list_rooms, history) with an\n"
          "                            args object, print the response\n"
          "\n"
          "Interactive mode (no COMMAND and a terminal, or -i): a prompt with line editing and\n"
          "a history kept in ~/.arqonbus_cli_history; type the commands above (sub, pub,\n"
          "history, cmd, each on its own connection with the options given at start; ^C ends a\n"
          "sub), `help`, or `quit` (or ^D).\n"
          "\n",
          out);
    fputs("Options:\n"
          "  -H, --host HOST       server host (default 127.0.0.1, or $ARQONBUS_SERVER_HOST)\n"
          "  -p, --port PORT       server port (default 9100, or $ARQONBUS_SERVER_PORT)\n"
          "      --path PATH       request path and query (default /), e.g. /?ack=0\n"
          "      --token T         send \"Authorization: Bearer T\" (default $ARQONBUS_TOKEN)\n"
          "      --timeout SECS    bound on connecting and on waiting for a reply (default 10)\n"
          "      --tls             connect with wss://\n"
          "      --insecure        with --tls: accept self-signed certificates\n"
          "  -n, --count N         sub: exit after N frames\n"
          "  -W, --wait SECS       sub: exit after SECS, also while reconnecting (exit 27 when\n"
          "                        -n N was given and fewer than N frames came)\n"
          "      --no-reconnect    sub: exit 1 when the connection is lost\n"
          "  -f, --file FILE       pub: the payload is the JSON in FILE\n"
          "  -l, --lines           pub: one message per line of standard input (or of -f FILE),\n"
          "                        blank lines skipped; the input is read to its end first\n"
          "      --limit N         history: at most N messages (1-1000; the server's default 50)\n"
          "      --since-offset N  history: the messages after offset N (with --epoch)\n"
          "      --epoch E         history: the epoch --since-offset belongs to\n"
          "      --since TIME      history: stored at or after TIME (RFC 3339)\n"
          "      --until TIME      history: stored at or before TIME (RFC 3339)\n"
          "      --pretty          print each frame as indented JSON\n"
          "      --raw             print only the payload of each frame (a string payload as\n"
          "                        its text, anything else as compact JSON)\n"
          "  -i, --interactive     the interactive mode, also without a terminal\n"
          "  -v, --verbose         also print the welcome frame and the join response, and\n"
          "                        connection diagnostics on stderr\n"
          "  -V, --version         print the version, the protocol and the plugin ABI\n"
          "  -h, --help            print this help\n"
          "\n",
          out);
    fputs("Frames go to stdout, one compact JSON object per line unless --pretty or --raw;\n"
          "diagnostics go to stderr. A refused connection prints the server's reason (the\n"
          "JSON body of its 401, 403, 429 or 503 answer).\n"
          "\n"
          "Exit status:\n"
          "  0   success (sub: interrupted, -n COUNT reached, or -W ended it without -n)\n"
          "  1   the server answered with an error or refused the connection, the connection\n"
          "      failed or timed out, or the input was not JSON\n"
          "  2   bad command line\n"
          "  27  sub: -W SECONDS passed before -n COUNT frames\n"
          "\n"
          "Examples:\n"
          "  arqonbus-cli sub science lab -n 10 -W 30\n"
          "  arqonbus-cli pub science lab '{\"reading\": 21.5}'\n"
          "  echo '{\"reading\": 21.5}' | arqonbus-cli pub science lab -\n"
          "  arqonbus-cli pub science lab -l -f readings.jsonl\n"
          "  arqonbus-cli history science lab --limit 5 --raw\n"
          "  arqonbus-cli cmd status --pretty\n",
          out);
}

void cli_version(FILE *out)
{
    fprintf(out, "arqonbus-cli %s (protocol %s, plugin ABI %d.%d)\n", ARQ_CLI_VERSION,
            CLI_PROTOCOL_VERSION, ARQ_ABI_MAJOR, ARQ_ABI_MINOR);
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
        *help |= 1;
        break;
    case OPT_VERSION:
        *help |= 2;
        break;
    case OPT_WAIT:
        errno = 0;
        o->wait_s = strtod(v, &end);
        if (!*v || *end || errno || !isfinite(o->wait_s) || o->wait_s <= 0 ||
            o->wait_s > CLI_MAX_WAIT)
            return cli__error(err, errsz,
                              "%s: invalid wait '%s' (seconds, more than 0, at most %.0f)", shown,
                              v, CLI_MAX_WAIT);
        break;
    case OPT_NO_RECONNECT:
        o->reconnect = 0;
        break;
    case OPT_INTERACTIVE:
        o->interactive = 1;
        break;
    case OPT_PRETTY:
    case OPT_RAW:
        if (o->format != CLI_FORMAT_LINE &&
            o->format != (opt->id == OPT_PRETTY ? CLI_FORMAT_PRETTY : CLI_FORMAT_RAW))
            return cli__error(err, errsz, "--pretty and --raw exclude each other");
        o->format = opt->id == OPT_PRETTY ? CLI_FORMAT_PRETTY : CLI_FORMAT_RAW;
        break;
    case OPT_FILE:
        if (!*v)
            return cli__error(err, errsz, "%s: the file name must not be empty", shown);
        o->file = v;
        break;
    case OPT_LINES:
        o->lines = 1;
        break;
    case OPT_LIMIT:
    case OPT_SINCE_OFFSET: {
        errno = 0;
        long n = strtol(v, &end, 10);
        int is_limit = opt->id == OPT_LIMIT;
        if (!*v || *end || errno || !isdigit((unsigned char)*v) || (is_limit && n < 1) ||
            n > (is_limit ? 1000 : 9007199254740991L))
            return cli__error(err, errsz, "%s: invalid value '%s' (%s)", shown, v,
                              is_limit ? "a whole number, 1-1000" : "a whole number, 0 or more");
        if (is_limit)
            o->limit = n;
        else
            o->since_offset = n;
        break;
    }
    case OPT_EPOCH:
    case OPT_SINCE:
    case OPT_UNTIL:
        if (!*v)
            return cli__error(err, errsz, "%s must not be empty", shown);
        *(opt->id == OPT_EPOCH ? &o->epoch : opt->id == OPT_SINCE ? &o->since : &o->until) = v;
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

/* The history command's args object from ROOM [CHANNEL] and the history options. */
static int cli__history_args(struct cli_opts *o, char *err, size_t errsz)
{
    json_t *a = json_pack("{s:s, s:s*}", "room", o->room, "channel", o->channel);
    int bad = !a;
    if (a && o->limit)
        bad |= json_object_set_new(a, "limit", json_integer(o->limit));
    if (a && o->since_offset >= 0)
        bad |= json_object_set_new(a, "since_offset", json_integer(o->since_offset));
    if (a && o->epoch)
        bad |= json_object_set_new(a, "epoch", json_string(o->epoch));
    if (a && o->since)
        bad |= json_object_set_new(a, "since", json_string(o->since));
    if (a && o->until)
        bad |= json_object_set_new(a, "until", json_string(o->until));
    if (bad) {
        json_decref(a);
        return cli__error(err, errsz, "out of memory");
    }
    o->json = a;
    return CLI_PARSE_OK;
}

/* Options that belong to one command only. */
static int cli__check_scope(const struct cli_opts *o, char *err, size_t errsz)
{
    if (o->count && o->command != CLI_SUB)
        return cli__error(err, errsz, "--count applies to sub only");
    if ((o->wait_s > 0 || !o->reconnect) && o->command != CLI_SUB)
        return cli__error(err, errsz, "--wait and --no-reconnect apply to sub only");
    if ((o->file || o->lines) && o->command != CLI_PUB)
        return cli__error(err, errsz, "--file and --lines apply to pub only");
    if ((o->limit || o->since_offset >= 0 || o->epoch || o->since || o->until) &&
        o->command != CLI_HISTORY)
        return cli__error(err, errsz,
                          "--limit, --since-offset, --epoch, --since and --until apply to "
                          "history only (cmd history takes them as JSON-ARGS)");
    return CLI_PARSE_OK;
}

/* COMMAND and its arguments, once options are out of the way. */
static int cli__command(struct cli_opts *o, const char *const *pos, int npos, char *err,
                        size_t errsz)
{
    int nargs = npos - 1;
    if (npos == 0) {
        o->command = CLI_NONE; /* the interactive mode, when there is a terminal */
        if (o->count || o->wait_s > 0 || !o->reconnect || o->file || o->lines || o->limit ||
            o->since_offset >= 0 || o->epoch || o->since || o->until)
            return cli__error(err, errsz, "missing COMMAND (sub, pub, history or cmd; see --help)");
        return CLI_PARSE_OK;
    }
    if (o->interactive)
        return cli__error(err, errsz, "-i takes no COMMAND (type it at the prompt)");
    if (strcmp(pos[0], "sub") == 0 || strcmp(pos[0], "history") == 0) {
        int sub = pos[0][0] == 's';
        if (nargs < 1 || nargs > 2)
            return cli__error(err, errsz, "%s takes ROOM [CHANNEL], got %d argument%s", pos[0],
                              nargs, nargs == 1 ? "" : "s");
        o->command = sub ? CLI_SUB : CLI_HISTORY;
        o->room = pos[1];
        o->channel = nargs == 2 ? pos[2] : NULL;
    } else if (strcmp(pos[0], "pub") == 0 && (o->file || o->lines)) {
        if (nargs < 1 || nargs > 2)
            return cli__error(err, errsz,
                              "pub with -f or -l takes ROOM [CHANNEL] (the payload comes from "
                              "the input), got %d argument%s",
                              nargs, nargs == 1 ? "" : "s");
        o->command = CLI_PUB;
        o->room = pos[1];
        o->channel = nargs == 2 ? pos[2] : NULL;
        o->payload_from = o->file ? CLI_PAYLOAD_FILE : CLI_PAYLOAD_STDIN;
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
        return cli__error(err, errsz, "unknown command '%s' (sub, pub, history or cmd; see --help)",
                          pos[0]);
    }
    if (o->room && cli__nonempty(o->room, "ROOM", err, errsz) < 0)
        return CLI_PARSE_ERROR;
    if (o->channel && cli__nonempty(o->channel, "CHANNEL", err, errsz) < 0)
        return CLI_PARSE_ERROR;
    if (cli__check_scope(o, err, errsz) < 0)
        return CLI_PARSE_ERROR;
    if (o->command == CLI_HISTORY)
        return cli__history_args(o, err, errsz);
    if (o->command == CLI_PUB && o->payload_from == CLI_PAYLOAD_ARG &&
        strcmp(pos[nargs], "-") == 0) {
        o->payload_from = CLI_PAYLOAD_STDIN;
        return CLI_PARSE_OK;
    }
    if (o->command == CLI_PUB && o->payload_from != CLI_PAYLOAD_ARG)
        return CLI_PARSE_OK;
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
    o->reconnect = 1;
    o->since_offset = -1;
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
        return help & 1 ? CLI_PARSE_HELP : CLI_PARSE_VERSION;
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

int cli_split_words(const char *line, char *buf, char **words, int max)
{
    int n = 0;
    const char *s = line;
    char *w = buf;
    for (;;) {
        while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r')
            s++;
        if (!*s)
            return n;
        if (n == max)
            return -1;
        words[n++] = w;
        while (*s && *s != ' ' && *s != '\t' && *s != '\n' && *s != '\r') {
            if (*s == '\'') {
                const char *close = strchr(s + 1, '\'');
                if (!close)
                    return -1;
                memcpy(w, s + 1, (size_t)(close - s - 1));
                w += close - s - 1;
                s = close + 1;
            } else if (*s == '"') {
                for (s++; *s && *s != '"'; s++) {
                    if (*s == '\\' && (s[1] == '"' || s[1] == '\\'))
                        s++;
                    *w++ = *s;
                }
                if (!*s)
                    return -1;
                s++;
            } else {
                if (*s == '\\' && s[1])
                    s++;
                *w++ = *s++;
            }
        }
        *w++ = '\0';
    }
}
