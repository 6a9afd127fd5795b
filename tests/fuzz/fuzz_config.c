/* The configuration reader (host/runtime/cfg_yaml.c, cfg_expand.c, config.c) and option
 * validation (host/runtime/options.c), as `arqonbusd --check-config` runs them.
 *
 * Input: the text of conf.d files. A line "#--8<--" cuts it into up to three files (10-a.yaml,
 * 20-b.yaml, 30-c.yaml), which are written to a scratch conf.d and read with config_load(),
 * whose environment holds a few fixed variables. Each plugin instance's `config:` is then
 * validated against an option spec like that of its module (transport-websocket,
 * transport-http, auth-jwt; any other module gets one with an option of every type), and the
 * result redacted and compared. Properties: no crash, leak or undefined behaviour; every
 * diagnostic is UTF-8 (it goes to logs, JSON ones included); a load that fails says why. */
#define _GNU_SOURCE /* memmem */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "bus.h"
#include "config.h"
#include "fuzz.h"
#include "options.h"
#include "utf8.h"

#define MAX_FILES 3
#define CUT       "\n#--8<--\n"

static const char *const file_names[MAX_FILES] = {"10-a.yaml", "20-b.yaml", "30-c.yaml"};
static char dir[64];

static const char *const retire_policies[] = {"drain", "close", "keep", NULL};
static const char *const levels[] = {"debug", "info", "warn", "error", NULL};

static const struct arq_option ws_spec[] = {
    ARQ_OPT("host", ARQ_OPT_STRING, "127.0.0.1", 0, "address"),
    ARQ_OPT_RANGE("port", ARQ_OPT_INT, "9100", 0, 65535, 0, "port"),
    ARQ_OPT_RANGE("max_message_bytes", ARQ_OPT_SIZE, "1MiB", 1, 256.0 * 1024 * 1024,
                  ARQ_OPT_RELOADABLE, "largest message"),
    ARQ_OPT_RANGE("rx_buffer_size", ARQ_OPT_SIZE, "1KiB", 256, 64.0 * 1024, 0, "rx buffer"),
    ARQ_OPT_RANGE("ping_interval", ARQ_OPT_DURATION, "20s", 0, 3600000, 0, "ping interval"),
    ARQ_OPT_RANGE("ping_timeout", ARQ_OPT_DURATION, "10s", 1000, 3600000, 0, "ping timeout"),
    ARQ_OPT_RANGE("max_connections", ARQ_OPT_INT, "10000", 1, 10000000, ARQ_OPT_RELOADABLE,
                  "connections"),
    ARQ_OPT("permessage_deflate", ARQ_OPT_BOOL, "false", 0, "deflate"),
    ARQ_OPT("tls_cert", ARQ_OPT_STRING, NULL, 0, "certificate"),
    ARQ_OPT_RANGE("max_queued_bytes", ARQ_OPT_SIZE, "16MiB", 1024, 1024.0 * 1024 * 1024 * 1024,
                  ARQ_OPT_RELOADABLE, "queue bound"),
    ARQ_OPT_CHOICE("retire", retire_policies, "drain", ARQ_OPT_RELOADABLE, "retire policy"),
    ARQ_OPT_RANGE("retire_timeout", ARQ_OPT_DURATION, "30s", 0, 86400000, ARQ_OPT_RELOADABLE,
                  "retire timeout"),
    ARQ_OPT_END};

static const struct arq_option http_spec[] = {
    ARQ_OPT("host", ARQ_OPT_STRING, "127.0.0.1", 0, "address"),
    ARQ_OPT_RANGE("port", ARQ_OPT_INT, "8080", 0, 65535, 0, "port"),
    ARQ_OPT("api_key", ARQ_OPT_STRING, "", ARQ_OPT_SECRET | ARQ_OPT_RELOADABLE, "api key"),
    ARQ_OPT_RANGE("max_body_bytes", ARQ_OPT_SIZE, "1MiB", 1, 256.0 * 1024 * 1024,
                  ARQ_OPT_RELOADABLE, "body limit"),
    ARQ_OPT("cors_origins", ARQ_OPT_STRING_LIST, NULL, ARQ_OPT_RELOADABLE, "origins"),
    ARQ_OPT_RANGE("idle_timeout", ARQ_OPT_DURATION, "30s", 0, 86400000, 0, "idle timeout"),
    ARQ_OPT_END};

static const struct arq_option jwt_spec[] = {
    ARQ_OPT("secret", ARQ_OPT_STRING, NULL, ARQ_OPT_SECRET | ARQ_OPT_RELOADABLE, "secret"),
    ARQ_OPT("algorithms", ARQ_OPT_STRING_LIST, NULL, ARQ_OPT_RELOADABLE, "algorithms"),
    ARQ_OPT_RANGE("leeway", ARQ_OPT_DURATION, "30s", 0, 3600000, ARQ_OPT_RELOADABLE, "leeway"),
    ARQ_OPT("issuer", ARQ_OPT_STRING, NULL, ARQ_OPT_RELOADABLE, "issuer"),
    ARQ_OPT("required", ARQ_OPT_BOOL, "true", ARQ_OPT_RELOADABLE, "required"),
    ARQ_OPT_END};

/* What the SDK allows a third-party module: every type, bounded or not, required, secret. */
static const struct arq_option any_spec[] = {
    ARQ_OPT("s", ARQ_OPT_STRING, NULL, 0, "string"),
    ARQ_OPT("secret", ARQ_OPT_STRING, NULL, ARQ_OPT_SECRET | ARQ_OPT_REQUIRED, "secret"),
    ARQ_OPT("i", ARQ_OPT_INT, "0", 0, "int"),
    ARQ_OPT_RANGE("ir", ARQ_OPT_INT, "5", -10, 10, ARQ_OPT_RELOADABLE, "bounded int"),
    ARQ_OPT("d", ARQ_OPT_DOUBLE, "0.5", 0, "double"),
    ARQ_OPT_RANGE("dr", ARQ_OPT_DOUBLE, "0", -1.5, 1e9, ARQ_OPT_RELOADABLE, "bounded double"),
    ARQ_OPT("b", ARQ_OPT_BOOL, "on", 0, "bool"),
    ARQ_OPT_CHOICE("level", levels, "info", ARQ_OPT_RELOADABLE, "enum"),
    ARQ_OPT("t", ARQ_OPT_DURATION, "1m", 0, "duration"),
    ARQ_OPT_RANGE("tr", ARQ_OPT_DURATION, "250ms", 0, 86400000, 0, "bounded duration"),
    ARQ_OPT("z", ARQ_OPT_SIZE, "64KiB", 0, "size"),
    ARQ_OPT_RANGE("zr", ARQ_OPT_SIZE, "1kB", 0, 1e12, 0, "bounded size"),
    ARQ_OPT("list", ARQ_OPT_STRING_LIST, "a, b", ARQ_OPT_RELOADABLE, "string list"),
    ARQ_OPT("json", ARQ_OPT_JSON, "{\"k\":[1,2.5,null]}", 0, "any"),
    ARQ_OPT_END};

static const char *fuzz_getenv(const char *name, void *arg)
{
    static const char *const vars[][2] = {
        {"ARQONBUS_SERVER_PORT", "9100"},
        {"ARQONBUS_LOG_LEVEL", "debug"},
        {"EMPTY", ""},
        {"PORT", "70000"},
        {"BAD_UTF8", "\xc3("},
        {"DOLLAR", "$${X}"},
    };
    (void)arg;
    for (size_t i = 0; i < sizeof vars / sizeof *vars; i++)
        if (!strcmp(name, vars[i][0]))
            return vars[i][1];
    return NULL;
}

static void remove_dir(void)
{
    char path[128];
    for (int i = 0; i < MAX_FILES; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, file_names[i]);
        unlink(path);
    }
    rmdir(dir);
}

static int setup(void)
{
    /* a file system in memory when there is one: the files are rewritten for every input */
    const char *tmp = getenv("TMPDIR");
    if (!tmp || !*tmp)
        tmp = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(dir, sizeof dir, "%.40s/arq-fuzz-XXXXXX", tmp);
    FUZZ_CHECK(mkdtemp(dir), "cannot make a scratch directory under %s", dir);
    atexit(remove_dir);
    /* config_load falls back to it for plugin_dir: keep the result the same everywhere */
    setenv("ARQONBUS_PLUGIN_DIR", "/nonexistent/plugins", 1);
    return 0;
}

static void write_file(int i, const uint8_t *data, size_t n)
{
    char path[128];
    snprintf(path, sizeof path, "%s/%s", dir, file_names[i]);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    FUZZ_CHECK(fd >= 0, "cannot write %s", path);
    FUZZ_CHECK(n == 0 || write(fd, data, n) == (ssize_t)n, "cannot write %s", path);
    close(fd);
}

static const struct arq_option *spec_of(const char *module)
{
    if (!strcmp(module, "transport-websocket"))
        return ws_spec;
    if (!strcmp(module, "transport-http"))
        return http_spec;
    if (!strcmp(module, "auth-jwt"))
        return jwt_spec;
    return any_spec;
}

static void check_plugins(const struct config *conf, struct diag_list *diags)
{
    for (size_t i = 0; i < conf->nplugins; i++) {
        const struct plugin_decl *d = &conf->plugins[i];
        const struct arq_option *spec = spec_of(d->module);
        json_t *cfg = opt_validate(spec, d->config_node, conf->doc, &d->config_pos, d->name, diags);
        json_t *defaults = opt_validate(spec, NULL, conf->doc, &d->config_pos, d->name, diags);
        if (cfg) {
            json_t *shown = opt_redact(spec, cfg);
            FUZZ_CHECK(shown, "opt_redact failed");
            char *text = json_dumps(shown, JSON_COMPACT);
            FUZZ_CHECK(text, "a validated configuration cannot be written as JSON");
            free(text);
            json_decref(shown);
            FUZZ_CHECK(opt_diff(spec, cfg, cfg) == OPT_SAME, "a configuration differs from itself");
            (void)opt_diff(spec, defaults, cfg);
        }
        json_decref(cfg);
        json_decref(defaults);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready;
    if (!ready)
        ready = !setup();

    /* the input cut into files; the files not used this time are removed */
    size_t at = 0;
    int nfiles = 0;
    while (nfiles < MAX_FILES) {
        const uint8_t *cut =
            nfiles + 1 < MAX_FILES ? memmem(data + at, size - at, CUT, sizeof CUT - 1) : NULL;
        size_t end = cut ? (size_t)(cut - data) + 1 : size;
        write_file(nfiles++, data + at, end - at);
        if (!cut)
            break;
        at = end + sizeof CUT - 2;
    }
    for (int i = nfiles; i < MAX_FILES; i++) {
        char path[128];
        snprintf(path, sizeof path, "%s/%s", dir, file_names[i]);
        unlink(path);
    }

    struct diag_list diags = {0};
    static const struct config_section bus = {"bus", bus_options};
    struct config *conf = config_load(dir, fuzz_getenv, NULL, &bus, &diags);
    FUZZ_CHECK(conf || diags.n, "config_load failed without saying why");
    if (conf)
        check_plugins(conf, &diags);
    for (size_t i = 0; i < diags.n; i++)
        FUZZ_CHECK(utf8_valid(diags.items[i]), "diagnostic not UTF-8: %s", diags.items[i]);
    diag_clear(&diags);
    config_free(conf);
    return 0;
}
