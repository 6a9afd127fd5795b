/* The loader: every refusal of loader_check_descriptor with its exact message, a good
 * descriptor of each kind accepted, and loader_load on the real test plugins (modules are
 * files: one file is one module, a copy is another; a missing file suggests a name). Files
 * that would crash whoever maps them (truncated, corrupt, a constructor that dies) are
 * refused with their path while this process lives on, and a file rebuilt on disk is a new
 * module with the new code. */
#include <elf.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "diag.h"
#include "loader.h"
#include "mock_host.h"

/* --- descriptors built here ---------------------------------------------------------------- */

static int fake_create(const struct arq_host *host, arq_ctx *ctx, const json_t *cfg, void **self,
                       struct arq_error *err)
{
    (void)host, (void)ctx, (void)cfg, (void)self, (void)err;
    return 0;
}

static void fake_destroy(void *self)
{
    (void)self;
}

static void fake_flush(void *self, void *tconn)
{
    (void)self, (void)tconn;
}

static int fake_append(void *self, const struct arq_stored *msg, arq_append_cb cb, void *arg)
{
    (void)self, (void)msg, (void)cb, (void)arg;
    return 0;
}

static int fake_query(void *self, const struct arq_history_query *q, arq_history_cb cb, void *arg)
{
    (void)self, (void)q, (void)cb, (void)arg;
    return 0;
}

static void fake_handler(void *self, arq_request *req, arq_conn *conn, const json_t *args)
{
    (void)self, (void)req, (void)conn, (void)args;
}

static enum arq_auth_verdict fake_authenticate(void *self, const struct arq_conn_info *info,
                                               void *tconn, struct arq_auth_result *out)
{
    (void)self, (void)info, (void)tconn, (void)out;
    return ARQ_AUTH_DEFER;
}

static enum arq_auth_verdict fake_authorize(void *self, const struct arq_principal *principal,
                                            const struct arq_action *what,
                                            struct arq_auth_result *out)
{
    (void)self, (void)principal, (void)what, (void)out;
    return ARQ_AUTH_DEFER;
}

static void fake_emit_batch(void *self, const struct arq_event *const *events, size_t n)
{
    (void)self, (void)events, (void)n;
}

static int fake_publish(void *self, const struct arq_broker_msg *msg)
{
    (void)self, (void)msg;
    return 0;
}

static int fake_register(void *self, const char *client_id)
{
    (void)self, (void)client_id;
    return 0;
}

static int fake_subscribe(void *self, const char *room, const char *channel)
{
    (void)self, (void)room, (void)channel;
    return 0;
}

static int fake_presence(void *self, const char *client_id, const char *room, const char *channel,
                         int joined)
{
    (void)self, (void)client_id, (void)room, (void)channel, (void)joined;
    return 0;
}

static const struct arq_transport_ops transport_ops = {sizeof transport_ops, fake_flush, NULL};
static const struct arq_storage_ops storage_ops = {sizeof storage_ops, fake_append, fake_query,
                                                   NULL, NULL};
static const struct arq_option kick_params[] = {
    ARQ_OPT("client_id", ARQ_OPT_STRING, NULL, ARQ_OPT_REQUIRED, "who"), ARQ_OPT_END};
static const struct arq_command commands[] = {
    {"kick", "disconnect a client", kick_params, "admin", fake_handler},
    {"ping", "answer pong", NULL, "guest", fake_handler},
    {NULL, NULL, NULL, NULL, NULL}};
static const struct arq_commands_ops commands_ops = {sizeof commands_ops, commands};
static const struct arq_auth_ops auth_ops = {sizeof auth_ops, fake_authenticate, fake_authorize,
                                             NULL};
static const struct arq_telemetry_ops telemetry_ops = {sizeof telemetry_ops, fake_emit_batch};
static const struct arq_broker_ops broker_ops = {
    .struct_size = sizeof broker_ops,
    .publish = fake_publish,
    .subscribe = fake_subscribe,
    .unsubscribe = fake_subscribe,
    .register_client = fake_register,
    .unregister_client = fake_register,
    .presence = fake_presence,
};

static const struct arq_option good_options[] = {
    ARQ_OPT_RANGE("port", ARQ_OPT_INT, "9100", 0, 65535, 0, "port"),
    ARQ_OPT("path", ARQ_OPT_STRING, NULL, ARQ_OPT_RELOADABLE, "where"), ARQ_OPT_END};

/* A valid descriptor of `kind` with table `ops`. */
static struct arq_plugin desc_of(enum arq_kind kind, const void *ops)
{
    struct arq_plugin d = {
        ARQ_PLUGIN_HEAD,
        .name = "fake",
        .version = "1.0.0",
        .summary = "built by the test",
        .kind = kind,
        .options = good_options,
        .create = fake_create,
        .destroy = fake_destroy,
        .ops = ops,
    };
    return d;
}

static struct arq_plugin telemetry_desc(void)
{
    return desc_of(ARQ_KIND_TELEMETRY, &telemetry_ops);
}

static void check_accepted(const struct arq_plugin *d)
{
    char err[600] = "";
    if (loader_check_descriptor(d, err, sizeof err) != 0)
        fail_msg("refused: %s", err);
}

static void check_refused(const struct arq_plugin *d, const char *want)
{
    char err[600] = "";
    assert_int_equal(loader_check_descriptor(d, err, sizeof err), -1);
    assert_string_equal(err, want);
}

static void check_refusedf(const struct arq_plugin *d, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void check_refusedf(const struct arq_plugin *d, const char *fmt, ...)
{
    char want[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(want, sizeof want, fmt, ap);
    va_end(ap);
    check_refused(d, want);
}

/* --- loader_check_descriptor: accepted ----------------------------------------------------- */

static void good_descriptor_of_every_kind_is_accepted(void **state)
{
    (void)state;
    struct arq_plugin d = desc_of(ARQ_KIND_TRANSPORT, &transport_ops);
    check_accepted(&d);
    d = desc_of(ARQ_KIND_STORAGE, &storage_ops);
    check_accepted(&d);
    d = desc_of(ARQ_KIND_COMMANDS, &commands_ops);
    check_accepted(&d);
    d = desc_of(ARQ_KIND_AUTH, &auth_ops);
    check_accepted(&d);
    d = desc_of(ARQ_KIND_TELEMETRY, &telemetry_ops);
    check_accepted(&d);
    d = desc_of(ARQ_KIND_BROKER, &broker_ops);
    check_accepted(&d);
}

static void optional_entries_may_be_absent(void **state)
{
    (void)state;
    /* No options, no start/reconfigure/stop. */
    struct arq_plugin d = telemetry_desc();
    d.options = NULL;
    check_accepted(&d);
    /* A transport's flush is needed only once it opens bus connections (docs/plugins.md). */
    static const struct arq_transport_ops no_flush = {sizeof no_flush, NULL, NULL};
    d = desc_of(ARQ_KIND_TRANSPORT, &no_flush);
    check_accepted(&d);
    static const struct arq_auth_ops only_authenticate = {sizeof only_authenticate,
                                                          fake_authenticate, NULL, NULL};
    static const struct arq_auth_ops only_authorize = {sizeof only_authorize, NULL, fake_authorize,
                                                       NULL};
    d = desc_of(ARQ_KIND_AUTH, &only_authenticate);
    check_accepted(&d);
    d = desc_of(ARQ_KIND_AUTH, &only_authorize);
    check_accepted(&d);
    static const struct arq_command none[] = {{NULL, NULL, NULL, NULL, NULL}};
    static const struct arq_commands_ops empty = {sizeof empty, none};
    d = desc_of(ARQ_KIND_COMMANDS, &empty);
    check_accepted(&d);
}

static void larger_struct_size_of_the_same_minor_is_accepted(void **state)
{
    (void)state;
    struct arq_plugin d = telemetry_desc();
    d.struct_size = sizeof d + 64;
    check_accepted(&d);
}

/* --- loader_check_descriptor: the descriptor head ------------------------------------------ */

static void struct_size_too_small_for_the_abi_fields_is_refused(void **state)
{
    (void)state;
    struct arq_plugin d = telemetry_desc();
    d.struct_size = offsetof(struct arq_plugin, name) - 1;
    check_refusedf(&d, "the descriptor is %zu bytes, too small to hold its ABI version",
                   offsetof(struct arq_plugin, name) - 1);
    d.struct_size = 0;
    check_refused(&d, "the descriptor is 0 bytes, too small to hold its ABI version");
}

static void other_abi_major_is_refused(void **state)
{
    (void)state;
    struct arq_plugin d = telemetry_desc();
    d.abi_major = ARQ_ABI_MAJOR + 1;
    check_refused(&d, "built for plugin ABI 2.1; this arqonbusd supports ABI 1.1 (the major "
                      "version must match: rebuild the plugin against this SDK)");
    d.abi_major = 0;
    d.abi_minor = 9;
    check_refused(&d, "built for plugin ABI 0.9; this arqonbusd supports ABI 1.1 (the major "
                      "version must match: rebuild the plugin against this SDK)");
}

static void newer_abi_minor_is_refused(void **state)
{
    (void)state;
    struct arq_plugin d = telemetry_desc();
    d.abi_minor = ARQ_ABI_MINOR + 3;
    check_refused(&d, "built for plugin ABI 1.4, newer than this arqonbusd's 1.1 (upgrade "
                      "arqonbusd or rebuild the plugin against SDK 1.1)");
}

static void struct_size_short_of_abi_1_0_is_refused(void **state)
{
    (void)state;
    struct arq_plugin d = telemetry_desc();
    d.struct_size = offsetof(struct arq_plugin, create);
    check_refusedf(&d,
                   "the descriptor is %zu bytes; plugin ABI 1.1 needs at least %zu (set "
                   "struct_size to sizeof(struct arq_plugin))",
                   offsetof(struct arq_plugin, create), sizeof(struct arq_plugin));
    /* One byte short of `ops` is short too. */
    d.struct_size = sizeof(struct arq_plugin) - 1;
    check_refusedf(&d,
                   "the descriptor is %zu bytes; plugin ABI 1.1 needs at least %zu (set "
                   "struct_size to sizeof(struct arq_plugin))",
                   sizeof(struct arq_plugin) - 1, sizeof(struct arq_plugin));
}

static void descriptor_without_name_is_refused(void **state)
{
    (void)state;
    struct arq_plugin d = telemetry_desc();
    d.name = NULL;
    check_refused(&d, "the descriptor has no name");
    d.name = "";
    check_refused(&d, "the descriptor has no name");
}

static void unknown_kind_is_refused(void **state)
{
    (void)state;
    struct arq_plugin d = telemetry_desc();
    d.kind = (enum arq_kind)0;
    check_refused(&d, "the descriptor has unknown kind 0");
    d.kind = (enum arq_kind)(ARQ_KIND_BROKER + 1);
    check_refused(&d, "the descriptor has unknown kind 7");
}

static void descriptor_without_create_is_refused(void **state)
{
    (void)state;
    struct arq_plugin d = telemetry_desc();
    d.create = NULL;
    check_refused(&d, "the descriptor has no create function (mandatory)");
}

static void descriptor_without_destroy_is_refused(void **state)
{
    (void)state;
    struct arq_plugin d = telemetry_desc();
    d.destroy = NULL;
    check_refused(&d, "the descriptor has no destroy function (mandatory)");
}

static void invalid_option_spec_is_refused(void **state)
{
    (void)state;
    static const struct arq_option twice[] = {ARQ_OPT("port", ARQ_OPT_INT, NULL, 0, "a"),
                                              ARQ_OPT("port", ARQ_OPT_INT, NULL, 0, "b"),
                                              ARQ_OPT_END};
    static const struct arq_option bad_default[] = {
        ARQ_OPT_RANGE("port", ARQ_OPT_INT, "70000", 0, 65535, 0, "a"), ARQ_OPT_END};
    static const struct arq_option no_choices[] = {ARQ_OPT_CHOICE("mode", NULL, NULL, 0, "a"),
                                                   ARQ_OPT_END};
    static const struct arq_option required_default[] = {
        ARQ_OPT("url", ARQ_OPT_STRING, "x", ARQ_OPT_REQUIRED, "a"), ARQ_OPT_END};
    static const struct arq_option bad_name[] = {ARQ_OPT("9lives", ARQ_OPT_INT, NULL, 0, "a"),
                                                 ARQ_OPT_END};
    struct arq_plugin d = telemetry_desc();
    d.options = twice;
    check_refused(&d, "invalid option spec: option \"port\" is declared twice");
    d.options = bad_default;
    check_refused(&d, "invalid option spec: default of option \"port\": 70000 is out of range "
                      "0..65535");
    d.options = no_choices;
    check_refused(&d, "invalid option spec: enum option \"mode\" has no choices");
    d.options = required_default;
    check_refused(&d, "invalid option spec: required option \"url\" has a default");
    d.options = bad_name;
    check_refused(&d, "invalid option spec: option name \"9lives\" is not valid");
}

static void first_problem_of_the_head_is_the_one_reported(void **state)
{
    (void)state;
    struct arq_plugin d = telemetry_desc();
    d.name = NULL;
    d.create = NULL;
    d.ops = NULL;
    check_refused(&d, "the descriptor has no name");
}

/* --- loader_check_descriptor: the kind's table --------------------------------------------- */

static void descriptor_without_ops_is_refused(void **state)
{
    (void)state;
    struct arq_plugin d = desc_of(ARQ_KIND_STORAGE, NULL);
    check_refused(&d, "the descriptor has no storage table (mandatory)");
    d = desc_of(ARQ_KIND_TRANSPORT, NULL);
    check_refused(&d, "the descriptor has no transport table (mandatory)");
}

static void short_ops_table_is_refused_for_every_kind(void **state)
{
    (void)state;
    static const struct {
        enum arq_kind kind;
        const char *name;
        size_t need;
        int minor; /* the ABI minor that gave the table its size */
    } kinds[] = {
        {ARQ_KIND_TRANSPORT, "transport", sizeof(struct arq_transport_ops), 0},
        {ARQ_KIND_STORAGE, "storage", sizeof(struct arq_storage_ops), 0},
        {ARQ_KIND_COMMANDS, "commands", sizeof(struct arq_commands_ops), 0},
        {ARQ_KIND_AUTH, "auth", sizeof(struct arq_auth_ops), 0},
        {ARQ_KIND_TELEMETRY, "telemetry", sizeof(struct arq_telemetry_ops), 0},
        {ARQ_KIND_BROKER, "broker", sizeof(struct arq_broker_ops), 1},
    };
    /* Big enough for any table, every entry set, with a struct_size one pointer short. */
    union {
        struct arq_transport_ops transport;
        struct arq_storage_ops storage;
        struct arq_commands_ops commands;
        struct arq_auth_ops auth;
        struct arq_telemetry_ops telemetry;
        struct arq_broker_ops broker;
    } table;
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        switch (kinds[i].kind) {
        case ARQ_KIND_TRANSPORT:
            table.transport = transport_ops;
            break;
        case ARQ_KIND_STORAGE:
            table.storage = storage_ops;
            break;
        case ARQ_KIND_COMMANDS:
            table.commands = commands_ops;
            break;
        case ARQ_KIND_AUTH:
            table.auth = auth_ops;
            break;
        case ARQ_KIND_TELEMETRY:
            table.telemetry = telemetry_ops;
            break;
        case ARQ_KIND_BROKER:
            table.broker = broker_ops;
            break;
        }
        size_t short_size = kinds[i].need - sizeof(void *);
        memcpy(&table, &short_size, sizeof short_size);
        struct arq_plugin d = desc_of(kinds[i].kind, &table);
        check_refusedf(&d, "the %s table is %zu bytes; plugin ABI 1.%d needs at least %zu",
                       kinds[i].name, short_size, kinds[i].minor, kinds[i].need);
    }
}

static void storage_needs_append_and_query(void **state)
{
    (void)state;
    struct arq_storage_ops ops = storage_ops;
    ops.append = NULL;
    struct arq_plugin d = desc_of(ARQ_KIND_STORAGE, &ops);
    check_refused(&d, "the storage table has no append function (mandatory)");
    ops = storage_ops;
    ops.query = NULL;
    check_refused(&d, "the storage table has no query function (mandatory)");
}

static void commands_need_a_list_of_commands_with_handlers_and_valid_params(void **state)
{
    (void)state;
    struct arq_commands_ops ops = {sizeof ops, NULL};
    struct arq_plugin d = desc_of(ARQ_KIND_COMMANDS, &ops);
    check_refused(&d, "the commands table has no command list (mandatory)");

    static const struct arq_command no_handler[] = {
        {"ping", "answer pong", NULL, "guest", fake_handler},
        {"kick", "disconnect a client", kick_params, "admin", NULL},
        {NULL, NULL, NULL, NULL, NULL}};
    ops.commands = no_handler;
    check_refused(&d, "command \"kick\" has no handler (mandatory)");

    static const struct arq_option bad_params[] = {
        ARQ_OPT("limit", ARQ_OPT_INT, "many", 0, "how many"), ARQ_OPT_END};
    static const struct arq_command bad_spec[] = {
        {"history", "read history", bad_params, "user", fake_handler},
        {NULL, NULL, NULL, NULL, NULL}};
    ops.commands = bad_spec;
    check_refused(&d, "command \"history\" declares invalid parameters: default of option "
                      "\"limit\": expected an integer, got \"many\"");
}

static void auth_needs_authenticate_or_authorize(void **state)
{
    (void)state;
    struct arq_auth_ops ops = {sizeof ops, NULL, NULL, NULL};
    struct arq_plugin d = desc_of(ARQ_KIND_AUTH, &ops);
    check_refused(&d, "the auth table has neither authenticate nor authorize (one is mandatory)");
}

static void telemetry_needs_emit_batch(void **state)
{
    (void)state;
    struct arq_telemetry_ops ops = {sizeof ops, NULL};
    struct arq_plugin d = desc_of(ARQ_KIND_TELEMETRY, &ops);
    check_refused(&d, "the telemetry table has no emit_batch function (mandatory)");
}

static void broker_needs_publish_subscriptions_and_the_client_registry(void **state)
{
    (void)state;
    struct arq_broker_ops ops = broker_ops;
    struct arq_plugin d = desc_of(ARQ_KIND_BROKER, &ops);
    ops.publish = NULL;
    check_refused(&d, "the broker table has no publish function (mandatory)");
    ops = broker_ops;
    ops.subscribe = NULL;
    check_refused(&d, "the broker table has no subscribe function (mandatory)");
    ops = broker_ops;
    ops.unsubscribe = NULL;
    check_refused(&d, "the broker table has no unsubscribe function (mandatory)");
    ops = broker_ops;
    ops.register_client = NULL;
    check_refused(&d, "the broker table has no register_client function (mandatory)");
    ops = broker_ops;
    ops.unregister_client = NULL;
    check_refused(&d, "the broker table has no unregister_client function (mandatory)");
    ops = broker_ops;
    ops.presence = NULL;
    check_refused(&d, "the broker table has no presence function (mandatory)");
    /* query and health are optional. */
    ops = broker_ops;
    check_accepted(&d);
}

static void broker_built_against_abi_1_0_is_refused(void **state)
{
    (void)state;
    /* Its table had other functions (never called by any host): reading it as 1.1 would call
     * them with the wrong arguments. */
    struct arq_plugin d = desc_of(ARQ_KIND_BROKER, &broker_ops);
    d.abi_minor = 0;
    check_refused(&d, "the broker table of plugin ABI 1.0 is not supported (it changed in 1.1): "
                      "rebuild the plugin against SDK 1.1");
}

static void kind_names_are_the_configuration_words(void **state)
{
    (void)state;
    assert_string_equal(loader_kind_name(ARQ_KIND_TRANSPORT), "transport");
    assert_string_equal(loader_kind_name(ARQ_KIND_STORAGE), "storage");
    assert_string_equal(loader_kind_name(ARQ_KIND_COMMANDS), "commands");
    assert_string_equal(loader_kind_name(ARQ_KIND_AUTH), "auth");
    assert_string_equal(loader_kind_name(ARQ_KIND_TELEMETRY), "telemetry");
    assert_string_equal(loader_kind_name(ARQ_KIND_BROKER), "broker");
    assert_null(loader_kind_name((enum arq_kind)0));
}

/* --- loader_load on real modules ----------------------------------------------------------- */

struct fx {
    struct loader loader;
    struct diag_list diags;
    char dir[64];
};

static const struct cfg_pos where = {"t.yaml", 3, 5};

static int setup_load(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    mock_host_tmpdir(f->dir, sizeof f->dir, "arq_loader");
    if (!mkdtemp(f->dir)) {
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown_load(void **state)
{
    struct fx *f = *state;
    loader_free(&f->loader);
    diag_clear(&f->diags);
    mock_host_remove_tmpdir(f->dir);
    free(f);
    return 0;
}

static size_t module_count(const struct loader *l)
{
    size_t n = 0;
    for (const struct module *m = l->modules; m; m = m->next)
        n++;
    return n;
}

static struct module *load(struct fx *f, const char *path, const char *module)
{
    char who[128];
    snprintf(who, sizeof who, "plugin \"p\" (module %s)", module);
    return loader_load(&f->loader, path, who, &where, &f->diags);
}

static void check_one_diag(struct fx *f, const char *want)
{
    for (size_t i = 0; i < f->diags.n; i++)
        print_message("diag: %s\n", f->diags.items[i]);
    assert_int_equal(f->diags.n, 1);
    assert_string_equal(f->diags.items[0], want);
}

static void copy_file(const char *from, const char *to)
{
    FILE *in = fopen(from, "rb");
    FILE *out = fopen(to, "wb");
    assert_non_null(in);
    assert_non_null(out);
    char buf[8192];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0)
        assert_int_equal(fwrite(buf, 1, n, out), n);
    assert_int_equal(fclose(in), 0);
    assert_int_equal(fclose(out), 0);
}

#define PROBE ARQ_TEST_PLUGIN_DIR "/probe.so"

static void module_is_loaded_with_its_checked_descriptor(void **state)
{
    struct fx *f = *state;
    struct module *m = load(f, PROBE, "probe");
    assert_non_null(m);
    assert_int_equal(f->diags.n, 0);
    assert_string_equal(m->path, PROBE);
    assert_non_null(m->handle);
    assert_string_equal(m->desc->name, "probe");
    assert_int_equal(m->desc->kind, ARQ_KIND_TELEMETRY);
    assert_ptr_equal(f->loader.modules, m);
}

static void same_file_loaded_twice_is_the_same_module(void **state)
{
    struct fx *f = *state;
    struct module *a = load(f, PROBE, "probe");
    struct module *b = load(f, PROBE, "probe");
    assert_non_null(a);
    assert_ptr_equal(a, b);
    assert_int_equal(module_count(&f->loader), 1);
    assert_int_equal(f->diags.n, 0);
}

static void other_path_to_the_same_file_is_the_same_module(void **state)
{
    struct fx *f = *state;
    char link[128], dotted[256];
    snprintf(link, sizeof link, "%s/linked.so", f->dir);
    assert_int_equal(symlink(PROBE, link), 0);
    snprintf(dotted, sizeof dotted, "%s/./probe.so", ARQ_TEST_PLUGIN_DIR);
    struct module *a = load(f, PROBE, "probe");
    assert_non_null(a);
    assert_ptr_equal(load(f, link, "linked.so"), a);
    assert_ptr_equal(load(f, dotted, "probe"), a);
    assert_int_equal(module_count(&f->loader), 1);
    /* The module keeps the path it was first loaded from. */
    assert_string_equal(a->path, PROBE);
}

static void copy_under_another_path_is_another_module(void **state)
{
    struct fx *f = *state;
    char copy[128];
    snprintf(copy, sizeof copy, "%s/probe-copy.so", f->dir);
    copy_file(PROBE, copy);
    struct module *a = load(f, PROBE, "probe");
    struct module *b = load(f, copy, "probe-copy.so");
    assert_non_null(a);
    assert_non_null(b);
    assert_ptr_not_equal(a, b);
    assert_true(a->ino != b->ino || a->dev != b->dev);
    assert_ptr_not_equal(a->desc, b->desc);
    assert_string_equal(b->desc->name, "probe");
    assert_string_equal(b->path, copy);
    assert_int_equal(module_count(&f->loader), 2);
    /* Each is found again by its own file. */
    assert_ptr_equal(load(f, copy, "probe-copy.so"), b);
    assert_ptr_equal(load(f, PROBE, "probe"), a);
    assert_int_equal(f->diags.n, 0);
}

/* Loading <test plugin dir>/<name>.so fails: no such file, then `hint` (may be ""). */
static void check_missing_module(struct fx *f, const char *name, const char *hint)
{
    char path[256], want[1024];
    snprintf(path, sizeof path, "%s/%s.so", ARQ_TEST_PLUGIN_DIR, name);
    assert_null(load(f, path, name));
    snprintf(want, sizeof want,
             "t.yaml:3:5: plugin \"p\" (module %s): cannot load \"%s\": No such file or "
             "directory%s",
             name, path, hint);
    check_one_diag(f, want);
    diag_clear(&f->diags);
    assert_null(f->loader.modules);
}

static void missing_file_suggests_the_closest_module(void **state)
{
    check_missing_module(*state, "prob", " (did you mean \"probe\"?)");
    check_missing_module(*state, "bad_null_emt", " (did you mean \"bad_null_emit\"?)");
}

static void missing_file_without_a_close_name_has_no_hint(void **state)
{
    check_missing_module(*state, "storage-postgres", "");
}

static void missing_module_is_compared_by_its_whole_name(void **state)
{
    /* "probe.sonic" is no typo of "probe": only the trailing ".so" is the file suffix. */
    check_missing_module(*state, "probe.sonic", "");
}

static void missing_directory_has_no_hint(void **state)
{
    struct fx *f = *state;
    char path[128], want[512];
    snprintf(path, sizeof path, "%s/nowhere/probe.so", f->dir);
    assert_null(load(f, path, "probe"));
    snprintf(want, sizeof want,
             "t.yaml:3:5: plugin \"p\" (module probe): cannot load \"%s\": No such file or "
             "directory",
             path);
    check_one_diag(f, want);
}

static void file_that_is_not_a_shared_object_is_refused(void **state)
{
    struct fx *f = *state;
    char path[128], prefix[512];
    snprintf(path, sizeof path, "%s/text.so", f->dir);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs("not an ELF file\n", fp);
    assert_int_equal(fclose(fp), 0);
    assert_null(load(f, path, "text.so"));
    assert_int_equal(f->diags.n, 1);
    /* The rest is dlerror()'s text. */
    snprintf(prefix, sizeof prefix,
             "t.yaml:3:5: plugin \"p\" (module text.so): cannot load \"%s\": ", path);
    assert_memory_equal(f->diags.items[0], prefix, strlen(prefix));
    assert_true(strlen(f->diags.items[0]) > strlen(prefix));
    assert_null(f->loader.modules);
}

#define BAD(name) ARQ_TEST_PLUGIN_DIR "/bad_" name ".so"

/* Loading bad_<defect>.so fails with `plugin "p" (module bad_<defect>): "<path>": <why>`. */
static void check_bad_module(struct fx *f, const char *defect, const char *why)
{
    char path[256], module[64], want[1024];
    snprintf(module, sizeof module, "bad_%s", defect);
    snprintf(path, sizeof path, "%s/%s.so", ARQ_TEST_PLUGIN_DIR, module);
    assert_null(load(f, path, module));
    snprintf(want, sizeof want, "t.yaml:3:5: plugin \"p\" (module %s): \"%s\": %s", module, path,
             why);
    check_one_diag(f, want);
    diag_clear(&f->diags);
    assert_null(f->loader.modules);
}

static void module_without_the_entry_symbol_is_refused(void **state)
{
    check_bad_module(*state, "no_entry",
                     "not an ArqonBus plugin: it does not export arq_plugin_v1()");
}

static void module_with_a_bad_descriptor_is_refused_with_the_reason(void **state)
{
    struct fx *f = *state;
    check_bad_module(f, "abi_major",
                     "built for plugin ABI 2.1; this arqonbusd supports ABI 1.1 (the major "
                     "version must match: rebuild the plugin against this SDK)");
    check_bad_module(f, "abi_minor",
                     "built for plugin ABI 1.2, newer than this arqonbusd's 1.1 (upgrade "
                     "arqonbusd or rebuild the plugin against SDK 1.1)");
    char why[256];
    snprintf(why, sizeof why,
             "the descriptor is %zu bytes; plugin ABI 1.1 needs at least %zu (set struct_size "
             "to sizeof(struct arq_plugin))",
             offsetof(struct arq_plugin, create), sizeof(struct arq_plugin));
    check_bad_module(f, "short_size", why);
    check_bad_module(f, "null_create", "the descriptor has no create function (mandatory)");
    check_bad_module(f, "null_emit", "the telemetry table has no emit_batch function (mandatory)");
}

#define SDK10 ARQ_TEST_PLUGIN_DIR "/sdk10.so"

/* A plugin built against the 1.0 header: its specs have the 1.0 stride (no `field`), so the
 * host reads them through a copy in its own layout, and the plugin works as it did. */
static void plugin_built_against_sdk_1_0_loads_validates_creates_and_starts(void **state)
{
    struct fx *f = *state;
    struct module *m = load(f, SDK10, "sdk10");
    for (size_t i = 0; i < f->diags.n; i++)
        print_message("diag: %s\n", f->diags.items[i]);
    assert_non_null(m);
    const struct arq_plugin *d = m->desc;
    assert_int_equal(d->abi_minor, 0);
    assert_string_equal(d->name, "sdk10");
    /* Every option as declared, none bound. */
    static const char *const names[] = {"label", "port", "mode", "interval", NULL};
    for (size_t i = 0; names[i]; i++) {
        assert_non_null(d->options[i].name);
        assert_string_equal(d->options[i].name, names[i]);
        assert_int_equal(d->options[i].field.kind, ARQ_FIELD_NONE);
    }
    assert_null(d->options[4].name);
    assert_string_equal(d->options[2].choices[1], "loud");

    /* Its options validate: types, defaults, enum and range. */
    json_t *cfg = mock_host_validate(d->options, "port: 1234\nmode: loud\n", NULL);
    assert_string_equal(json_string_value(json_object_get(cfg, "label")), "old");
    assert_int_equal(json_integer_value(json_object_get(cfg, "interval")), 2000);
    struct diag_list diags = {0};
    assert_null(mock_host_validate(d->options, "port: 70000\nmode: silent\n", &diags));
    assert_int_equal(diags.n, 2);
    diag_clear(&diags);

    /* Its command's params too. */
    const struct arq_command *say = mock_host_command(d, "say");
    json_t *args = mock_host_validate(say->params, "text: hi\n", NULL);
    assert_int_equal(json_integer_value(json_object_get(args, "times")), 1);
    assert_true(json_is_false(json_object_get(args, "loud")));
    json_decref(args);

    /* Created and started with the host's (1.1) table. */
    struct mock_host *mh = mock_host_new("old");
    assert_non_null(mh);
    void *self = NULL;
    mock_host_create_plugin(mh, d, cfg, &self);
    struct arq_error err = {""};
    assert_int_equal(d->start(self, NULL, &err), ARQ_OK);
    assert_int_equal(mock_host_log_matching(mh, "info sdk10 started config=label=old port=1234 "
                                                "mode=loud interval=2000"),
                     1);
    d->destroy(self);
    mock_host_free(mh);
}

static void refused_module_is_refused_again(void **state)
{
    struct fx *f = *state;
    assert_null(load(f, BAD("null_create"), "bad_null_create"));
    assert_null(load(f, BAD("null_create"), "bad_null_create"));
    assert_int_equal(f->diags.n, 2);
    assert_string_equal(f->diags.items[0], f->diags.items[1]);
    assert_null(f->loader.modules);
}

static void module_whose_create_fails_still_loads(void **state)
{
    struct fx *f = *state;
    struct module *m = load(f, BAD("create_fails"), "bad_create_fails");
    assert_non_null(m);
    assert_string_equal(m->desc->name, "bad");
    assert_int_equal(f->diags.n, 0);
}

static void loader_free_forgets_every_module(void **state)
{
    struct fx *f = *state;
    assert_non_null(load(f, PROBE, "probe"));
    assert_non_null(load(f, BAD("create_fails"), "bad_create_fails"));
    assert_int_equal(module_count(&f->loader), 2);
    loader_free(&f->loader);
    assert_null(f->loader.modules);
    /* Loading again after a free works (the library itself stayed mapped). */
    struct module *m = load(f, PROBE, "probe");
    assert_non_null(m);
    assert_string_equal(m->desc->name, "probe");
}

/* --- files that must not be mapped, and files replaced on disk ---------------------------- */

/* `to` gets the first `keep` bytes of `from` (all when larger), then pseudo-random bytes up
 * to `total` (0: nothing more). */
static size_t file_size(const char *path)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return (size_t)st.st_size;
}

/* Where the ELF header and program headers of `path` end. */
static size_t headers_size(const char *path)
{
    Elf64_Ehdr eh;
    FILE *in = fopen(path, "rb");
    assert_non_null(in);
    assert_int_equal(fread(&eh, sizeof eh, 1, in), 1);
    assert_int_equal(fclose(in), 0);
    return (size_t)eh.e_phoff + (size_t)eh.e_phnum * eh.e_phentsize;
}

static void write_mangled(const char *from, const char *to, size_t keep, size_t total)
{
    FILE *in = fopen(from, "rb");
    assert_non_null(in);
    unsigned char *buf = calloc(1, keep + total + 1);
    assert_non_null(buf);
    size_t n = fread(buf, 1, keep, in);
    assert_int_equal(fclose(in), 0);
    uint32_t x = 2463534242u;
    for (; n < total; n++) {
        x ^= x << 13, x ^= x >> 17, x ^= x << 5;
        buf[n] = (unsigned char)x;
    }
    FILE *out = fopen(to, "wb");
    assert_non_null(out);
    assert_int_equal(fwrite(buf, 1, n, out), n);
    assert_int_equal(fclose(out), 0);
    free(buf);
}

/* Loading `path` fails with `cannot load "<path>": <why...>` (why_prefix is its start), and
 * nothing is recorded. The test process surviving is half of the point. */
static void check_unmappable(struct fx *f, const char *path, const char *why_prefix)
{
    char want[1024];
    assert_null(load(f, path, "m"));
    snprintf(want, sizeof want, "t.yaml:3:5: plugin \"p\" (module m): cannot load \"%s\": %s", path,
             why_prefix);
    for (size_t i = 0; i < f->diags.n; i++)
        print_message("diag: %s\n", f->diags.items[i]);
    assert_int_equal(f->diags.n, 1);
    assert_memory_equal(f->diags.items[0], want, strlen(want));
    diag_clear(&f->diags);
    assert_null(f->loader.modules);
}

static void truncated_module_is_refused_without_being_mapped(void **state)
{
    struct fx *f = *state;
    char path[128];
    snprintf(path, sizeof path, "%s/truncated.so", f->dir);
    /* The ELF header and program headers are there; the segments they describe are not
     * (mapping them is a SIGBUS inside dlopen). */
    write_mangled(PROBE, path, 4096 + 600, 0);
    check_unmappable(f, path, "truncated or corrupt: its segment at bytes ");
}

static void corrupt_module_is_refused_without_being_mapped(void **state)
{
    struct fx *f = *state;
    char path[128];
    /* Valid headers, garbage where the dynamic section should be: the dynamic loader crashes
     * on it, in a child process. */
    snprintf(path, sizeof path, "%s/corrupt.so", f->dir);
    write_mangled(PROBE, path, headers_size(PROBE), file_size(PROBE));
    check_unmappable(f, path, ""); /* the child's SIGSEGV, as glibc 2.36 has it */
    /* Garbage behind the ELF magic. */
    snprintf(path, sizeof path, "%s/garbage.so", f->dir);
    write_mangled(PROBE, path, 4, file_size(PROBE));
    check_unmappable(f, path, "corrupt: invalid ELF class ");
    /* A valid ELF header whose program headers lie past the end of the file. */
    snprintf(path, sizeof path, "%s/short.so", f->dir);
    write_mangled(PROBE, path, 64 + 56, 0);
    check_unmappable(f, path, "truncated or corrupt: its program headers end at byte ");
    snprintf(path, sizeof path, "%s/empty.so", f->dir);
    write_mangled(PROBE, path, 0, 0);
    check_unmappable(f, path, "not a shared object (no ELF header)");
}

static void module_that_crashes_when_mapped_is_refused(void **state)
{
    struct fx *f = *state;
    char want[512];
    assert_null(load(f, BAD("ctor_crash"), "m"));
    assert_int_equal(f->diags.n, 1);
    /* SIGBUS, or the sanitizer's exit status when it will not let go of the signal. */
    snprintf(want, sizeof want,
             "t.yaml:3:5: plugin \"p\" (module m): cannot load \"%s\": loading it ",
             BAD("ctor_crash"));
    assert_memory_equal(f->diags.items[0], want, strlen(want));
    assert_non_null(strstr(f->diags.items[0], "test process"));
    assert_null(f->loader.modules);
}

static const char *version_of(const struct module *m)
{
    return m ? m->desc->version : "(not loaded)";
}

/* Replace `path` the way install(1) or mv does: a new file renamed over the old one. */
static void install_over(const char *from, const char *path)
{
    char tmp[300];
    snprintf(tmp, sizeof tmp, "%s.new", path);
    copy_file(from, tmp);
    assert_int_equal(rename(tmp, path), 0);
}

static size_t private_dirs_left(const char *dir)
{
    char cmd[300];
    snprintf(cmd, sizeof cmd, "ls -d %s/arqonbusd-module.* 2>/dev/null | wc -l", dir);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    unsigned long n = 99;
    assert_int_equal(fscanf(p, "%lu", &n), 1);
    pclose(p);
    return n;
}

static void rebuilt_module_at_the_same_path_is_loaded_anew(void **state)
{
    struct fx *f = *state;
    char path[128];
    snprintf(path, sizeof path, "%s/victim.so", f->dir);
    assert_int_equal(setenv("TMPDIR", f->dir, 1), 0);
    install_over(PROBE, path);
    struct module *v1 = load(f, path, "victim");
    assert_string_equal(version_of(v1), "1.0.0");
    assert_int_equal(v1->private_copy, 0);

    install_over(ARQ_TEST_PLUGIN_DIR "/probe_v2.so", path);
    struct module *v2 = load(f, path, "victim");
    assert_int_equal(f->diags.n, 0);
    assert_non_null(v2);
    assert_ptr_not_equal(v2, v1);
    assert_string_equal(version_of(v2), "2.0.0");
    assert_int_equal(v2->private_copy, 1);
    assert_string_equal(v2->path, path);
    /* The old version stays mapped for the instances that still run it. */
    assert_string_equal(version_of(v1), "1.0.0");
    assert_ptr_equal(load(f, path, "victim"), v2);
    assert_int_equal(module_count(&f->loader), 2);
    /* The copy was only needed for dlopen. */
    assert_int_equal(private_dirs_left(f->dir), 0);

    /* Back to the first build (its file, untouched): that is the first module again. */
    unsetenv("TMPDIR");
    char back[160];
    snprintf(back, sizeof back, "%s/v1.so", f->dir);
    install_over(PROBE, back);
    assert_ptr_not_equal(load(f, back, "v1"), v1); /* another file: another module */
}

static void refused_module_replaced_by_a_good_build_loads(void **state)
{
    struct fx *f = *state;
    char path[128], want[512];
    snprintf(path, sizeof path, "%s/fixme.so", f->dir);
    install_over(BAD("null_create"), path);
    assert_null(load(f, path, "fixme"));
    snprintf(want, sizeof want,
             "t.yaml:3:5: plugin \"p\" (module fixme): \"%s\": the descriptor has no create "
             "function (mandatory)",
             path);
    check_one_diag(f, want);
    diag_clear(&f->diags);
    /* Asked again, the same file gives the same answer. */
    assert_null(load(f, path, "fixme"));
    check_one_diag(f, want);
    diag_clear(&f->diags);

    install_over(PROBE, path);
    struct module *m = load(f, path, "fixme");
    assert_int_equal(f->diags.n, 0);
    assert_non_null(m);
    assert_string_equal(m->desc->name, "probe");
}

#define TL(name) cmocka_unit_test_setup_teardown(name, setup_load, teardown_load)

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(good_descriptor_of_every_kind_is_accepted),
        cmocka_unit_test(optional_entries_may_be_absent),
        cmocka_unit_test(larger_struct_size_of_the_same_minor_is_accepted),
        cmocka_unit_test(struct_size_too_small_for_the_abi_fields_is_refused),
        cmocka_unit_test(other_abi_major_is_refused),
        cmocka_unit_test(newer_abi_minor_is_refused),
        cmocka_unit_test(struct_size_short_of_abi_1_0_is_refused),
        cmocka_unit_test(descriptor_without_name_is_refused),
        cmocka_unit_test(unknown_kind_is_refused),
        cmocka_unit_test(descriptor_without_create_is_refused),
        cmocka_unit_test(descriptor_without_destroy_is_refused),
        cmocka_unit_test(invalid_option_spec_is_refused),
        cmocka_unit_test(first_problem_of_the_head_is_the_one_reported),
        cmocka_unit_test(descriptor_without_ops_is_refused),
        cmocka_unit_test(short_ops_table_is_refused_for_every_kind),
        cmocka_unit_test(storage_needs_append_and_query),
        cmocka_unit_test(commands_need_a_list_of_commands_with_handlers_and_valid_params),
        cmocka_unit_test(auth_needs_authenticate_or_authorize),
        cmocka_unit_test(telemetry_needs_emit_batch),
        cmocka_unit_test(broker_needs_publish_subscriptions_and_the_client_registry),
        cmocka_unit_test(broker_built_against_abi_1_0_is_refused),
        cmocka_unit_test(kind_names_are_the_configuration_words),
        TL(module_is_loaded_with_its_checked_descriptor),
        TL(plugin_built_against_sdk_1_0_loads_validates_creates_and_starts),
        TL(same_file_loaded_twice_is_the_same_module),
        TL(other_path_to_the_same_file_is_the_same_module),
        TL(copy_under_another_path_is_another_module),
        TL(missing_file_suggests_the_closest_module),
        TL(missing_file_without_a_close_name_has_no_hint),
        TL(missing_module_is_compared_by_its_whole_name),
        TL(missing_directory_has_no_hint),
        TL(file_that_is_not_a_shared_object_is_refused),
        TL(module_without_the_entry_symbol_is_refused),
        TL(module_with_a_bad_descriptor_is_refused_with_the_reason),
        TL(refused_module_is_refused_again),
        TL(module_whose_create_fails_still_loads),
        TL(loader_free_forgets_every_module),
        TL(truncated_module_is_refused_without_being_mapped),
        TL(corrupt_module_is_refused_without_being_mapped),
        TL(module_that_crashes_when_mapped_is_refused),
        TL(rebuilt_module_at_the_same_path_is_loaded_anew),
        TL(refused_module_replaced_by_a_good_build_loads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
