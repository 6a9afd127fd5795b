/* arqonbusd: the ArqonBus host process, and the one place where its two layers meet. The plugin
 * runtime (host/runtime) calls the bus only through the hooks wired here; the bus
 * (host/bus) sees the runtime only through the environment wired here. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "bus.h"
#include "describe.h"
#include "host.h"
#include "instance.h"
#include "log.h"
#include "walltime.h"

enum { EXIT_CONFIG = 1, EXIT_USAGE = 2 };

#ifdef __SANITIZE_ADDRESS__
/* The ASan build (ARQ_SANITIZE). The sanitizer runtime of GCC up to 13 takes a dynamic TLS
 * block of a dlopen()ed library for a glibc 2.19 one when its address happens to fall at one
 * offset in its page, records a garbage range, and the leak check at exit then crashes
 * ("Tracer caught signal 11"). Plugins are dlopen()ed, so turn that interception off: leak
 * checking of everything else stays. */
const char *__asan_default_options(void);
const char *__asan_default_options(void)
{
    return "intercept_tls_get_addr=0";
}
#endif

/* --- the bus's environment, from the runtime -------------------------------------------------- */

static int64_t env_now_ms(void *arg)
{
    (void)arg;
    return walltime_now_ms();
}

static struct arq_ctx *env_instance(void *arg, enum arq_kind kind, size_t i)
{
    return host_instance(arg, kind, i);
}

static int env_accepting(void *arg)
{
    return host_accepting(arg);
}

static void env_reload(void *arg, arq_result_cb cb, void *cb_arg)
{
    host_reload_async(arg, cb, cb_arg);
}

static json_t *env_status(void *arg)
{
    return host_status(arg);
}

/* --- the runtime's hooks, into the bus ---------------------------------------------------- */

static void hook_configure(void *arg, json_t *values)
{
    bus_configure(arg, values);
}

static void hook_generation_changed(void *arg)
{
    bus_generation_changed(arg);
}

static void hook_instance_destroyed(void *arg, struct arq_ctx *ctx)
{
    bus_instance_destroyed(arg, ctx);
}

static void hook_stopping(void *arg)
{
    bus_stopping(arg);
}

/* The bus's section of conf.d, as the runtime checks it and --describe-options prints it. */
static const struct config_section bus_section = {"bus", bus_options};

/* The bus on top of the runtime `h`. 0 or -1 (logged). */
static int wire(struct host *h, struct bus *b)
{
    const struct bus_env env = {.loop = h->loop,
                                .metrics = h->metrics,
                                .telemetry = h->telemetry,
                                .node = h->node,
                                .arg = h,
                                .now_ms = env_now_ms,
                                .instance = env_instance,
                                .accepting = env_accepting,
                                .reload = env_reload,
                                .status = env_status};
    if (bus_init(b, &env) != 0) {
        LOG_ERROR("cannot register the bus's metrics");
        return -1;
    }
    bus_services(&host_api);
    const struct host_hooks hooks = {.arg = b,
                                     .section = bus_section,
                                     .configure = hook_configure,
                                     .generation_changed = hook_generation_changed,
                                     .instance_destroyed = hook_instance_destroyed,
                                     .stopping = hook_stopping};
    host_set_hooks(h, &hooks);
    return 0;
}

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: arqonbusd [OPTIONS]\n"
            "\n"
            "The ArqonBus message bus host: loads the plugins declared in DIR/*.yaml and runs\n"
            "them on one event loop. SIGHUP reloads the configuration, SIGTERM/SIGINT stop\n"
            "gracefully (exit 0), SIGUSR1 reopens the log file.\n"
            "\n"
            "  -c, --config DIR     configuration directory (default: %s)\n"
            "      --check-config   validate everything without opening sockets; print every\n"
            "                       error as file:line:col and exit non-zero on any\n"
            "      --log-level L    debug, info, warn or error (overrides host.log_level)\n"
            "      --describe-options\n"
            "                       print every option the configuration may set (host, bus\n"
            "                       and each plugin module: type, default, range, reload,\n"
            "                       help), then exit; with -c, only the modules it enables\n"
            "      --format F       for --describe-options: text (default), json, markdown\n"
            "                       or man\n"
            "  -f, --foreground     run in the foreground (the only mode; for init scripts)\n"
            "  -V, --version        print the version and plugin ABI, then exit\n"
            "  -h, --help           print this help, then exit\n"
            "\n"
            "Exit status: 0 on success or after a graceful stop, 1 when the configuration or a\n"
            "plugin is invalid or cannot start, 2 on a command-line error.\n",
            config_default_conf_dir());
}

/* --describe-options: no loop, no host, no instance; the daemon's own loader and checks. */
static int describe_options(const char *conf_dir, const char *format)
{
    enum describe_format fmt = DESCRIBE_TEXT;
    if (format && describe_format_parse(format, &fmt) != 0) {
        fprintf(stderr, "arqonbusd: --format: \"%s\" is not one of: text, json, markdown, man\n",
                format);
        return EXIT_USAGE;
    }
    struct loader loader = {0};
    struct diag_list diags = {0};
    int rc = 0;
    json_t *d = describe_build(&loader, conf_dir, NULL, &bus_section, &diags);
    if (!d) {
        for (size_t i = 0; i < diags.n; i++)
            fprintf(stderr, "%s\n", diags.items[i]);
        rc = EXIT_CONFIG;
    } else if (describe_print(stdout, d, fmt) != 0) {
        fprintf(stderr, "arqonbusd: cannot write the description: %s\n", strerror(errno));
        rc = EXIT_CONFIG;
    }
    json_decref(d);
    diag_clear(&diags);
    loader_free(&loader);
    return rc;
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {{"config", required_argument, NULL, 'c'},
                                             {"check-config", no_argument, NULL, 'k'},
                                             {"describe-options", no_argument, NULL, 'D'},
                                             {"format", required_argument, NULL, 'F'},
                                             {"log-level", required_argument, NULL, 'l'},
                                             {"foreground", no_argument, NULL, 'f'},
                                             {"version", no_argument, NULL, 'V'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
    const char *conf_dir = config_default_conf_dir();
    int check_only = 0;
    int describe = 0, conf_given = 0;
    const char *format = NULL;
    int level_override = -1;
    int opt;

    while ((opt = getopt_long(argc, argv, "c:fVh", longopts, NULL)) != -1) {
        switch (opt) {
        case 'c':
            conf_dir = optarg;
            conf_given = 1;
            break;
        case 'D':
            describe = 1;
            break;
        case 'F':
            format = optarg;
            break;
        case 'k':
            check_only = 1;
            break;
        case 'l': {
            enum arq_log_level level;
            if (log_level_parse(optarg, &level) != 0) {
                fprintf(stderr,
                        "arqonbusd: --log-level: \"%s\" is not one of: debug, info, "
                        "warn, error\n",
                        optarg);
                return EXIT_USAGE;
            }
            level_override = (int)level;
            break;
        }
        case 'f':
            break;
        case 'V':
            printf("arqonbusd %s (plugin ABI %d.%d)\n", ARQ_VERSION, ARQ_ABI_MAJOR, ARQ_ABI_MINOR);
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return EXIT_USAGE;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "arqonbusd: unexpected argument \"%s\"\n", argv[optind]);
        usage(stderr);
        return EXIT_USAGE;
    }
    if (format && !describe) {
        fprintf(stderr, "arqonbusd: --format applies only to --describe-options\n");
        return EXIT_USAGE;
    }
    if (describe)
        return describe_options(conf_given ? conf_dir : NULL, format);
    if (level_override >= 0)
        log_configure((enum arq_log_level)level_override, LOG_FORMAT_LOGFMT);

    uv_loop_t loop;
    if (uv_loop_init(&loop) != 0) {
        fprintf(stderr, "arqonbusd: cannot create the event loop\n");
        return EXIT_CONFIG;
    }
    struct host h;
    struct bus bus = {0}; /* bus_free is safe on it whatever happens below */
    int rc = 0;
    if (host_init(&h, &loop, conf_dir) != 0 || wire(&h, &bus) != 0) {
        rc = EXIT_CONFIG;
    } else if (check_only) {
        struct diag_list diags = {0}, warnings = {0};
        h.log_level_override = level_override;
        int bad = host_check_config(&h, &diags, &warnings) != 0;
        for (size_t i = 0; i < warnings.n; i++)
            fprintf(stderr, "%s\n", warnings.items[i]);
        if (bad) {
            for (size_t i = 0; i < diags.n; i++)
                fprintf(stderr, "%s\n", diags.items[i]);
            fprintf(stderr, "arqonbusd: %zu error%s in %s\n", diags.n, diags.n == 1 ? "" : "s",
                    conf_dir);
            rc = EXIT_CONFIG;
        } else {
            if (warnings.n)
                printf("arqonbusd: configuration OK, with %zu warning%s: %s\n", warnings.n,
                       warnings.n == 1 ? "" : "s", conf_dir);
            else
                printf("arqonbusd: configuration OK: %s\n", conf_dir);
        }
        diag_clear(&diags);
        diag_clear(&warnings);
    } else {
        h.log_level_override = level_override;
        if (host_start(&h) != 0)
            rc = EXIT_CONFIG;
        else
            uv_run(&loop, UV_RUN_DEFAULT);
        if (rc == 0)
            LOG_INFO("stopped");
    }
    host_stop(&h);
    host_finish_loop(&h);
    bus_free(&bus);
    host_cleanup(&h);
    return rc;
}
