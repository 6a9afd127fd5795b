/* Generations, driven through a real host with the probe plugin: the diff that a reload plans
 * (carry, reconfigure, replace, add, remove), commit and its rollbacks, abort, and the host's
 * start/reload entry points including the coalescing of reload requests. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "generation.h"
#include "host.h"
#include "instance.h"
#include "mock_host.h"

struct fx {
    char dir[64];
    char log[128];
    uv_loop_t loop;
    struct host h;
    struct diag_list diags;
};

static void write_file(struct fx *f, const char *name, const char *text)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", f->dir, name);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    assert_true(fputs(text, fp) >= 0);
    assert_int_equal(fclose(fp), 0);
}

/* The instances: 10-plugins.yaml. */
static void write_plugins(struct fx *f, const char *yaml)
{
    write_file(f, "10-plugins.yaml", yaml);
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    mock_host_tmpdir(f->dir, sizeof f->dir, "arq_generation");
    if (!mkdtemp(f->dir)) {
        free(f);
        return -1;
    }
    snprintf(f->log, sizeof f->log, "%s/arqonbusd.log", f->dir);
    char host_yaml[512];
    snprintf(host_yaml, sizeof host_yaml,
             "host:\n"
             "  plugin_dir: \"%s\"\n"
             "  log_file: \"%s\"\n"
             "  log_level: info\n",
             ARQ_TEST_PLUGIN_DIR, f->log);
    write_file(f, "00-host.yaml", host_yaml);
    if (uv_loop_init(&f->loop) != 0 || host_init(&f->h, &f->loop, f->dir) != 0)
        return -1;
    *state = f;
    return 0;
}

/* As arqonbusd ends: stop, let the loop finish and close it. Nothing may have been left open
 * for host_finish_loop to close. */
static int finish(struct fx *f)
{
    host_stop(&f->h);
    return host_finish_loop(&f->h) == 0 ? 0 : -1;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    int closed = finish(f);
    host_cleanup(&f->h);
    diag_clear(&f->diags);
    mock_host_remove_tmpdir(f->dir);
    free(f);
    return closed;
}

static void start(struct fx *f)
{
    assert_int_equal(host_start(&f->h), 0);
    assert_non_null(f->h.current);
}

static void print_diags(const struct fx *f)
{
    for (size_t i = 0; i < f->diags.n; i++)
        print_message("diag: %s\n", f->diags.items[i]);
}

/* Read the configuration again and plan the next generation against the running one. */
static int prepare(struct fx *f, struct plan *plan)
{
    struct config *conf = config_load(f->dir, NULL, NULL, NULL, &f->diags);
    if (!conf) {
        print_diags(f);
        fail_msg("config_load failed");
    }
    return generation_prepare(&f->h, conf, f->h.current, plan, &f->diags);
}

static void prepare_ok(struct fx *f, struct plan *plan)
{
    if (prepare(f, plan) != 0) {
        print_diags(f);
        fail_msg("generation_prepare failed");
    }
    assert_int_equal(f->diags.n, 0);
}

/* As the host's reload does: commit, and count the generation on success. */
static int commit(struct fx *f, struct plan *plan)
{
    int rc = generation_commit(plan, &f->h.current, &f->diags);
    if (rc == 0)
        f->h.next_generation++;
    return rc;
}

static void commit_ok(struct fx *f, struct plan *plan)
{
    if (commit(f, plan) != 0) {
        print_diags(f);
        fail_msg("generation_commit failed");
    }
}

static struct arq_ctx *find(struct fx *f, const char *name)
{
    return generation_find(f->h.current, name);
}

static const struct plan_entry *entry(const struct plan *plan, const char *name)
{
    for (size_t i = 0; i < plan->n; i++)
        if (!strcmp(plan->entries[i].ctx->name, name))
            return &plan->entries[i];
    fail_msg("no plan entry for \"%s\"", name);
    return NULL;
}

static const char *cfg_str(const struct arq_ctx *ctx, const char *key)
{
    return json_string_value(json_object_get(ctx->cfg, key));
}

static void check_counts(const struct plan *plan, size_t carry, size_t reconfigure, size_t replace,
                         size_t add, size_t removed)
{
    assert_int_equal(plan->counts[PLAN_CARRY], carry);
    assert_int_equal(plan->counts[PLAN_RECONFIGURE], reconfigure);
    assert_int_equal(plan->counts[PLAN_REPLACE], replace);
    assert_int_equal(plan->counts[PLAN_ADD], add);
    assert_int_equal(plan->nremoved, removed);
    assert_int_equal(plan->n, carry + reconfigure + replace + add);
    assert_int_equal(plan->next->n, plan->n);
}

/* How many lines of the log hold every one of the NULL-terminated needles. */
static size_t log_count(struct fx *f, ...)
{
    FILE *fp = fopen(f->log, "r");
    if (!fp)
        return 0;
    char line[4096];
    size_t n = 0;
    while (fgets(line, sizeof line, fp)) {
        va_list ap;
        va_start(ap, f);
        const char *needle;
        int all = 1;
        while ((needle = va_arg(ap, const char *)))
            all = all && strstr(line, needle);
        va_end(ap);
        n += all;
    }
    fclose(fp);
    return n;
}
#define LOG_COUNT(f, ...) log_count((f), __VA_ARGS__, (const char *)NULL)

static const char two_probes[] = "plugins:\n"
                                 "  a:\n"
                                 "    module: probe\n"
                                 "    config:\n"
                                 "      label: one\n"
                                 "  b:\n"
                                 "    module: probe\n"
                                 "    config:\n"
                                 "      tag: a\n";

/* --- the plan ------------------------------------------------------------------------------ */

static void identical_config_is_carried_with_the_same_context_and_plugin_instance(void **state)
{
    struct fx *f = *state;
    write_plugins(f, two_probes);
    start(f);
    struct arq_ctx *a = find(f, "a"), *b = find(f, "b");
    void *a_self = a->self, *b_self = b->self;
    struct plan plan;
    prepare_ok(f, &plan);
    check_counts(&plan, 2, 0, 0, 0, 0);
    assert_int_equal(entry(&plan, "a")->action, PLAN_CARRY);
    assert_ptr_equal(entry(&plan, "a")->ctx, a);
    assert_ptr_equal(entry(&plan, "a")->old, a);
    assert_ptr_equal(entry(&plan, "b")->ctx, b);
    assert_int_equal(plan.next->id, 2);
    commit_ok(f, &plan);
    assert_int_equal(f->h.current->id, 2);
    assert_int_equal(f->h.current->n, 2);
    assert_ptr_equal(find(f, "a"), a);
    assert_ptr_equal(find(f, "b"), b);
    assert_ptr_equal(a->self, a_self);
    assert_ptr_equal(b->self, b_self);
    assert_true(a->started && b->started);
    /* The log file (in force from the first start on) shows nothing was re-created. */
    assert_int_equal(LOG_COUNT(f, "msg=\"probe created\""), 2);
    assert_int_equal(LOG_COUNT(f, "msg=\"probe stopped\""), 0);
}

static void reloadable_only_change_is_reconfigured_in_place(void **state)
{
    struct fx *f = *state;
    write_plugins(f, two_probes);
    start(f);
    struct arq_ctx *a = find(f, "a");
    void *a_self = a->self;
    write_plugins(f, "plugins:\n"
                     "  a:\n"
                     "    module: probe\n"
                     "    config:\n"
                     "      label: two\n"
                     "      interval: 20ms\n"
                     "  b:\n"
                     "    module: probe\n"
                     "    config:\n"
                     "      tag: a\n");
    struct plan plan;
    prepare_ok(f, &plan);
    check_counts(&plan, 1, 1, 0, 0, 0);
    assert_int_equal(entry(&plan, "a")->action, PLAN_RECONFIGURE);
    assert_ptr_equal(entry(&plan, "a")->ctx, a);
    assert_int_equal(entry(&plan, "b")->action, PLAN_CARRY);
    /* Nothing is applied before the commit. */
    assert_string_equal(cfg_str(a, "label"), "one");
    assert_int_equal(LOG_COUNT(f, "msg=\"probe reconfigured\""), 0);
    commit_ok(f, &plan);
    assert_ptr_equal(find(f, "a"), a);
    assert_ptr_equal(a->self, a_self);
    assert_string_equal(cfg_str(a, "label"), "two");
    assert_int_equal(json_integer_value(json_object_get(a->cfg, "interval")), 20);
    assert_int_equal(LOG_COUNT(f, "msg=\"probe reconfigured\"", "label=two"), 1);
    assert_int_equal(LOG_COUNT(f, "msg=\"instance reconfigured\"", "instance=a"), 1);
}

static void non_reloadable_change_replaces_the_instance(void **state)
{
    struct fx *f = *state;
    write_plugins(f, two_probes);
    start(f);
    struct arq_ctx *b = find(f, "b");
    /* `tag` is not RELOADABLE; a RELOADABLE change alongside does not make it one. */
    write_plugins(f, "plugins:\n"
                     "  a:\n"
                     "    module: probe\n"
                     "    config:\n"
                     "      label: one\n"
                     "  b:\n"
                     "    module: probe\n"
                     "    config:\n"
                     "      tag: b\n"
                     "      label: new\n");
    struct plan plan;
    prepare_ok(f, &plan);
    check_counts(&plan, 1, 0, 1, 0, 0);
    const struct plan_entry *e = entry(&plan, "b");
    assert_int_equal(e->action, PLAN_REPLACE);
    assert_ptr_equal(e->old, b);
    assert_ptr_not_equal(e->ctx, b);
    struct arq_ctx *nb = e->ctx;
    /* Created aside, not started; the running one still runs. */
    assert_true(nb->created);
    assert_false(nb->started);
    assert_true(b->started);
    assert_ptr_equal(find(f, "b"), b);
    assert_int_equal(nb->born, 2);
    commit_ok(f, &plan);
    assert_ptr_equal(find(f, "b"), nb);
    assert_true(nb->started);
    assert_string_equal(cfg_str(nb, "tag"), "b");
    assert_int_equal(LOG_COUNT(f, "msg=\"probe takes over\"", "component=b"), 1);
    assert_int_equal(LOG_COUNT(f, "msg=\"probe destroyed\""), 1);
}

static void same_file_named_another_way_is_carried(void **state)
{
    struct fx *f = *state;
    write_plugins(f, "plugins:\n  a:\n    module: probe\n");
    start(f);
    write_plugins(f, "plugins:\n  a:\n    module: " ARQ_TEST_PLUGIN_DIR "/probe.so\n");
    struct plan plan;
    prepare_ok(f, &plan);
    check_counts(&plan, 1, 0, 0, 0, 0);
    commit_ok(f, &plan);
}

static void another_module_file_replaces_without_a_predecessor(void **state)
{
    struct fx *f = *state;
    char copy[128], cmd[512], yaml[256];
    snprintf(copy, sizeof copy, "%s/./probe-copy.so", f->dir);
    snprintf(cmd, sizeof cmd, "cp '%s/probe.so' '%s'", ARQ_TEST_PLUGIN_DIR, copy);
    assert_int_equal(system(cmd), 0);
    write_plugins(f, "plugins:\n  a:\n    module: probe\n");
    start(f);
    struct arq_ctx *a = find(f, "a");
    snprintf(yaml, sizeof yaml, "plugins:\n  a:\n    module: ./probe-copy.so\n");
    write_plugins(f, yaml);
    struct plan plan;
    prepare_ok(f, &plan);
    check_counts(&plan, 0, 0, 1, 0, 0);
    assert_ptr_equal(entry(&plan, "a")->old, a);
    assert_ptr_not_equal(entry(&plan, "a")->ctx->mod, a->mod);
    commit_ok(f, &plan);
    assert_string_equal(find(f, "a")->mod->path, copy);
    /* A predecessor is handed over only within one module. */
    assert_int_equal(LOG_COUNT(f, "msg=\"probe takes over\""), 0);
}

/* `from` renamed over DIR/victim.so, as install(1) or mv would put a rebuilt plugin in place. */
static void install_victim(struct fx *f, const char *from)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "cp '%s' '%s/victim.so.new' && mv '%s/victim.so.new' '%s/victim.so'",
             from, f->dir, f->dir, f->dir);
    assert_int_equal(system(cmd), 0);
}

static const char two_victims[] = "plugins:\n"
                                  "  a:\n"
                                  "    module: ./victim.so\n"
                                  "  b:\n"
                                  "    module: ./victim.so\n"
                                  "    config:\n"
                                  "      tag: b\n";

static void rebuilt_module_replaces_its_instances_with_the_new_code(void **state)
{
    struct fx *f = *state;
    install_victim(f, ARQ_TEST_PLUGIN_DIR "/probe.so");
    write_plugins(f, two_victims);
    start(f);
    struct arq_ctx *a = find(f, "a");
    assert_string_equal(a->mod->desc->version, "1.0.0");

    /* Same options, same path, a new build: the instances cannot be carried over (they run
     * the old code), so both are replaced by instances of the new module. */
    install_victim(f, ARQ_TEST_PLUGIN_DIR "/probe_v2.so");
    struct plan plan;
    prepare_ok(f, &plan);
    check_counts(&plan, 0, 0, 2, 0, 0);
    assert_ptr_equal(entry(&plan, "a")->old, a);
    assert_ptr_equal(entry(&plan, "a")->ctx->mod, entry(&plan, "b")->ctx->mod);
    commit_ok(f, &plan);
    assert_string_equal(find(f, "a")->mod->desc->version, "2.0.0");
    assert_string_equal(find(f, "b")->mod->desc->version, "2.0.0");
    /* A new build does not read the old build's state. */
    assert_int_equal(LOG_COUNT(f, "msg=\"probe takes over\""), 0);

    /* Reloading again with nothing changed carries the new instances over. */
    struct arq_ctx *a2 = find(f, "a");
    prepare_ok(f, &plan);
    check_counts(&plan, 2, 0, 0, 0, 0);
    commit_ok(f, &plan);
    assert_ptr_equal(find(f, "a"), a2);
}

static void broken_replacement_fails_the_reload_and_keeps_the_running_generation(void **state)
{
    struct fx *f = *state;
    char path[128], cmd[512];
    install_victim(f, ARQ_TEST_PLUGIN_DIR "/probe.so");
    write_plugins(f, two_victims);
    start(f);
    struct generation *g = f->h.current;
    struct arq_ctx *a = find(f, "a");

    /* Half a file, as a copy interrupted by a full disk leaves it. */
    snprintf(path, sizeof path, "%s/victim.so", f->dir);
    snprintf(cmd, sizeof cmd, "head -c 5000 '%s/probe.so' > '%s.new' && mv '%s.new' '%s'",
             ARQ_TEST_PLUGIN_DIR, path, path, path);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(host_reload(&f->h), -1);
    assert_ptr_equal(f->h.current, g);
    assert_ptr_equal(find(f, "a"), a);
    assert_int_equal(f->h.reloads.failed, 1);
    assert_non_null(f->h.reloads.last_error);
    char named[200];
    snprintf(named, sizeof named, "cannot load \"%s/./victim.so\": truncated or corrupt", f->dir);
    print_message("last error: %s\n", f->h.reloads.last_error);
    assert_non_null(strstr(f->h.reloads.last_error, named));

    /* A new build that cannot start says that it did not take over. */
    install_victim(f, ARQ_TEST_PLUGIN_DIR "/probe_v2.so");
    write_plugins(f, "plugins:\n"
                     "  a:\n"
                     "    module: ./victim.so\n"
                     "    config:\n"
                     "      fail_start: true\n");
    assert_int_equal(host_reload(&f->h), -1);
    assert_ptr_equal(find(f, "a"), a);
    assert_non_null(strstr(f->h.reloads.last_error, "a new build of the running module"));
}

static void added_and_removed_instances_are_planned_by_name(void **state)
{
    struct fx *f = *state;
    write_plugins(f, two_probes);
    start(f);
    struct arq_ctx *a = find(f, "a"), *b = find(f, "b");
    write_plugins(f, "plugins:\n"
                     "  a:\n"
                     "    module: probe\n"
                     "    config:\n"
                     "      label: one\n"
                     "  c:\n"
                     "    module: probe\n");
    struct plan plan;
    prepare_ok(f, &plan);
    check_counts(&plan, 1, 0, 0, 1, 1);
    assert_ptr_equal(entry(&plan, "a")->ctx, a);
    const struct plan_entry *c = entry(&plan, "c");
    assert_int_equal(c->action, PLAN_ADD);
    assert_null(c->old);
    assert_ptr_equal(plan.removed[0], b);
    struct arq_ctx *nc = c->ctx;
    commit_ok(f, &plan);
    assert_int_equal(f->h.current->n, 2);
    assert_ptr_equal(find(f, "a"), a);
    assert_ptr_equal(find(f, "c"), nc);
    assert_true(nc->started);
    assert_null(find(f, "b"));
    assert_int_equal(LOG_COUNT(f, "msg=\"probe stopped\"", "component=b"), 1);
    assert_int_equal(LOG_COUNT(f, "msg=\"probe destroyed\"", "component=b"), 1);
}

static void disabled_instance_counts_as_removed(void **state)
{
    struct fx *f = *state;
    write_plugins(f, two_probes);
    start(f);
    struct arq_ctx *b = find(f, "b");
    write_plugins(f, "plugins:\n"
                     "  a:\n"
                     "    module: probe\n"
                     "    config:\n"
                     "      label: one\n"
                     "  b:\n"
                     "    module: probe\n"
                     "    enabled: false\n"
                     "    config:\n"
                     "      tag: a\n");
    struct plan plan;
    prepare_ok(f, &plan);
    check_counts(&plan, 1, 0, 0, 0, 1);
    assert_ptr_equal(plan.removed[0], b);
    commit_ok(f, &plan);
    assert_int_equal(f->h.current->n, 1);
    assert_null(find(f, "b"));
}

static void disabled_instance_is_neither_loaded_nor_created(void **state)
{
    struct fx *f = *state;
    /* Not even its module is looked at. */
    write_plugins(f, "plugins:\n"
                     "  a:\n"
                     "    module: probe\n"
                     "  off:\n"
                     "    module: no-such-module\n"
                     "    enabled: false\n");
    start(f);
    assert_int_equal(f->h.current->n, 1);
    assert_null(find(f, "off"));
}

static void start_order_puts_sinks_first_then_declaration_order(void **state)
{
    struct fx *f = *state;
    write_plugins(f, "plugins:\n"
                     "  z:\n"
                     "    module: probe\n"
                     "  y:\n"
                     "    module: probe\n"
                     "  x:\n"
                     "    module: probe\n");
    start(f);
    assert_int_equal(f->h.current->n, 3);
    assert_string_equal(f->h.current->inst[0]->name, "z");
    assert_string_equal(f->h.current->inst[1]->name, "y");
    assert_string_equal(f->h.current->inst[2]->name, "x");
}

/* --- abort and failures -------------------------------------------------------------------- */

static const char mixed_change[] = "plugins:\n"
                                   "  a:\n"
                                   "    module: probe\n"
                                   "    config:\n"
                                   "      label: two\n"
                                   "  b:\n"
                                   "    module: probe\n"
                                   "    config:\n"
                                   "      tag: b\n"
                                   "  c:\n"
                                   "    module: probe\n"
                                   "    config:\n"
                                   "      %s: true\n";

static void write_mixed_change(struct fx *f, const char *c_option)
{
    char yaml[512];
    snprintf(yaml, sizeof yaml, mixed_change, c_option);
    write_plugins(f, yaml);
}

/* The running generation is exactly what two_probes started. */
static void check_untouched(struct fx *f, struct generation *g, struct arq_ctx *a, void *a_self,
                            struct arq_ctx *b, void *b_self)
{
    assert_ptr_equal(f->h.current, g);
    assert_int_equal(g->id, 1);
    assert_int_equal(g->n, 2);
    assert_ptr_equal(find(f, "a"), a);
    assert_ptr_equal(find(f, "b"), b);
    assert_ptr_equal(a->self, a_self);
    assert_ptr_equal(b->self, b_self);
    assert_true(a->started && b->started);
    assert_string_equal(cfg_str(a, "label"), "one");
    assert_string_equal(cfg_str(b, "tag"), "a");
    assert_null(find(f, "c"));
}

static void abort_leaves_the_current_generation_untouched(void **state)
{
    struct fx *f = *state;
    write_plugins(f, two_probes);
    start(f);
    struct generation *g = f->h.current;
    struct arq_ctx *a = find(f, "a"), *b = find(f, "b");
    void *a_self = a->self, *b_self = b->self;
    write_mixed_change(f, "verbose");
    struct plan plan;
    prepare_ok(f, &plan);
    check_counts(&plan, 0, 1, 1, 1, 0);
    generation_abort(&plan);
    assert_null(plan.next);
    assert_int_equal(plan.n, 0);
    check_untouched(f, g, a, a_self, b, b_self);
    /* The two instances created aside were destroyed, never started (the first two were
     * created and started by the first start). */
    assert_int_equal(LOG_COUNT(f, "msg=\"probe created\""), 4);
    assert_int_equal(LOG_COUNT(f, "msg=\"probe started\""), 2);
    assert_int_equal(LOG_COUNT(f, "msg=\"probe destroyed\""), 2);
    assert_int_equal(LOG_COUNT(f, "msg=\"probe reconfigured\""), 0);
}

static void failing_create_fails_prepare_and_keeps_the_generation(void **state)
{
    struct fx *f = *state;
    write_plugins(f, two_probes);
    start(f);
    struct generation *g = f->h.current;
    struct arq_ctx *a = find(f, "a"), *b = find(f, "b");
    void *a_self = a->self, *b_self = b->self;
    write_mixed_change(f, "fail_create");
    struct plan plan;
    assert_int_equal(prepare(f, &plan), -1);
    char want[512];
    snprintf(want, sizeof want,
             "%s/10-plugins.yaml:10:3: plugin \"c\" (module probe): cannot create instance: the "
             "probe was told to fail (fail_create: true)",
             f->dir);
    assert_int_equal(f->diags.n, 1);
    assert_string_equal(f->diags.items[0], want);
    assert_null(plan.next);
    check_untouched(f, g, a, a_self, b, b_self);
    /* b's replacement was created and destroyed again. */
    assert_int_equal(LOG_COUNT(f, "msg=\"probe destroyed\""), 1);
}

static void invalid_instance_config_fails_prepare_with_every_problem(void **state)
{
    struct fx *f = *state;
    write_plugins(f, two_probes);
    start(f);
    write_plugins(f, "plugins:\n"
                     "  a:\n"
                     "    module: probe\n"
                     "    config:\n"
                     "      lable: x\n"
                     "  b:\n"
                     "    module: prob\n");
    /* The allowed keys are the probe's options, in its order. */
    const char *names[32];
    size_t n = 0;
    for (const struct arq_option *o = find(f, "a")->mod->desc->options; o->name; o++) {
        assert_true(n < 31);
        names[n++] = o->name;
    }
    names[n] = NULL;
    assert_string_equal(names[0], "label");
    char allowed[512];
    diag_join(allowed, sizeof allowed, names);
    struct plan plan;
    assert_int_equal(prepare(f, &plan), -1);
    assert_int_equal(f->diags.n, 2);
    char want[1024];
    snprintf(want, sizeof want,
             "%s/10-plugins.yaml:5:7: plugin \"a\" (module probe): unknown option \"lable\"; "
             "allowed: %s (did you mean \"label\"?)",
             f->dir, allowed);
    assert_string_equal(f->diags.items[0], want);
    snprintf(want, sizeof want,
             "%s/10-plugins.yaml:6:3: plugin \"b\" (module prob): cannot load \"%s/prob.so\": "
             "No such file or directory (did you mean \"probe\"?)",
             f->dir, ARQ_TEST_PLUGIN_DIR);
    assert_string_equal(f->diags.items[1], want);
    assert_int_equal(f->h.current->n, 2);
}

static void failing_start_of_an_added_instance_rolls_everything_back(void **state)
{
    struct fx *f = *state;
    write_plugins(f, two_probes);
    start(f);
    struct generation *g = f->h.current;
    struct arq_ctx *a = find(f, "a"), *b = find(f, "b");
    void *a_self = a->self, *b_self = b->self;
    write_mixed_change(f, "fail_start");
    struct plan plan;
    prepare_ok(f, &plan);
    check_counts(&plan, 0, 1, 1, 1, 0);
    assert_int_equal(commit(f, &plan), -1);
    char want[512];
    snprintf(want, sizeof want,
             "plugin \"c\" (module probe) (%s/10-plugins.yaml:10:3): cannot start: the probe "
             "was told to fail (fail_start: true)",
             f->dir);
    assert_int_equal(f->diags.n, 1);
    assert_string_equal(f->diags.items[0], want);
    assert_null(plan.next);
    check_untouched(f, g, a, a_self, b, b_self);
    /* a was reconfigured, then restored; b's replacement started, then stopped. */
    assert_int_equal(LOG_COUNT(f, "msg=\"probe reconfigured\"", "label=two"), 1);
    assert_int_equal(LOG_COUNT(f, "msg=\"probe reconfigured\"", "label=one"), 1);
    assert_int_equal(LOG_COUNT(f, "msg=\"probe takes over\"", "component=b"), 1);
    assert_int_equal(LOG_COUNT(f, "msg=\"probe stopped\"", "component=b"), 1);
    assert_int_equal(LOG_COUNT(f, "msg=\"probe destroyed\""), 2);
    /* The generation still works: the same change without the failure goes through. */
    diag_clear(&f->diags);
    write_mixed_change(f, "verbose");
    prepare_ok(f, &plan);
    commit_ok(f, &plan);
    assert_ptr_equal(find(f, "a"), a);
    assert_string_equal(cfg_str(a, "label"), "two");
    assert_true(find(f, "c")->started);
}

static void failing_reconfigure_restores_the_reconfigured_ones(void **state)
{
    struct fx *f = *state;
    write_plugins(f, two_probes);
    start(f);
    struct generation *g = f->h.current;
    struct arq_ctx *a = find(f, "a"), *b = find(f, "b");
    void *a_self = a->self, *b_self = b->self;
    write_plugins(f, "plugins:\n"
                     "  a:\n"
                     "    module: probe\n"
                     "    config:\n"
                     "      label: two\n"
                     "  b:\n"
                     "    module: probe\n"
                     "    config:\n"
                     "      tag: a\n"
                     "      label: refused\n"
                     "      fail_reconfigure: true\n"
                     "  c:\n"
                     "    module: probe\n");
    struct plan plan;
    prepare_ok(f, &plan);
    check_counts(&plan, 0, 2, 0, 1, 0);
    assert_int_equal(commit(f, &plan), -1);
    char want[512];
    snprintf(want, sizeof want,
             "plugin \"b\" (module probe) (%s/10-plugins.yaml:6:3): cannot apply the new "
             "options: the probe was told to refuse (fail_reconfigure)",
             f->dir);
    assert_int_equal(f->diags.n, 1);
    assert_string_equal(f->diags.items[0], want);
    assert_null(plan.next);
    check_untouched(f, g, a, a_self, b, b_self);
    assert_false(json_is_true(json_object_get(b->cfg, "fail_reconfigure")));
    assert_int_equal(LOG_COUNT(f, "msg=\"probe reconfigured\"", "component=a", "label=one"), 1);
    /* The added instance was created and destroyed without starting. */
    assert_int_equal(LOG_COUNT(f, "msg=\"probe started\""), 2);
    assert_int_equal(LOG_COUNT(f, "msg=\"probe destroyed\"", "component=c"), 1);
}

/* --- the host's entry points --------------------------------------------------------------- */

static void host_start_runs_the_first_generation(void **state)
{
    struct fx *f = *state;
    write_plugins(f, two_probes);
    start(f);
    assert_int_equal(f->h.current->id, 1);
    assert_int_equal(f->h.current->n, 2);
    assert_int_equal(f->h.next_generation, 2);
    assert_true(find(f, "a")->started && find(f, "b")->started);
    assert_int_equal(find(f, "a")->born, 1);
    assert_int_equal(f->h.reloads.ok, 0);
    assert_int_equal(f->h.reloads.failed, 0);
    assert_int_equal(LOG_COUNT(f, "msg=started", "generation=1", "instances=2"), 1);
}

static void host_start_with_errors_starts_nothing(void **state)
{
    struct fx *f = *state;
    write_plugins(f, "plugins:\n  a:\n    modul: probe\n");
    assert_int_equal(host_start(&f->h), -1);
    assert_null(f->h.current);
    assert_int_equal(f->h.next_generation, 1);
    assert_int_equal(LOG_COUNT(f, "msg=\"probe created\""), 0);
}

static void host_reload_swaps_generations_and_counts_results(void **state)
{
    struct fx *f = *state;
    write_plugins(f, two_probes);
    start(f);
    struct arq_ctx *a = find(f, "a");
    write_plugins(f, "plugins:\n"
                     "  a:\n"
                     "    module: probe\n"
                     "    config:\n"
                     "      label: two\n");
    assert_int_equal(host_reload(&f->h), 0);
    assert_int_equal(f->h.current->id, 2);
    assert_int_equal(f->h.current->n, 1);
    assert_ptr_equal(find(f, "a"), a);
    assert_int_equal(f->h.reloads.ok, 1);
    assert_int_equal(f->h.reloads.last_ok, 1);
    assert_null(f->h.reloads.last_error);
    assert_int_equal(LOG_COUNT(f, "msg=\"reload ok\"", "generation=2", "carried=0",
                               "reconfigured=1", "replaced=0", "added=0", "removed=1"),
                     1);

    /* A broken configuration keeps generation 2 running. */
    write_plugins(f, "plugins:\n  a:\n    module: probe\n    config:\n      port: 70000\n");
    assert_int_equal(host_reload(&f->h), -1);
    assert_int_equal(f->h.current->id, 2);
    assert_ptr_equal(find(f, "a"), a);
    assert_int_equal(f->h.reloads.ok, 1);
    assert_int_equal(f->h.reloads.failed, 1);
    assert_int_equal(f->h.reloads.last_ok, 0);
    char want[512];
    snprintf(want, sizeof want,
             "%s/10-plugins.yaml:5:13: plugin \"a\" (module probe): option \"port\": 70000 is "
             "out of range 0..65535",
             f->dir);
    assert_string_equal(f->h.reloads.last_error, want);
    assert_int_equal(f->h.next_generation, 3);

    /* And the next good one is generation 3. */
    write_plugins(f, two_probes);
    assert_int_equal(host_reload(&f->h), 0);
    assert_int_equal(f->h.current->id, 3);
    assert_null(f->h.reloads.last_error);
}

static void reload_requests_before_the_loop_runs_are_coalesced(void **state)
{
    struct fx *f = *state;
    write_plugins(f, two_probes);
    start(f);
    struct arq_ctx *a = find(f, "a");
    write_plugins(f, "plugins:\n"
                     "  a:\n"
                     "    module: probe\n"
                     "    config:\n"
                     "      label: two\n"
                     "  b:\n"
                     "    module: probe\n"
                     "    config:\n"
                     "      tag: a\n");
    host_request_reload(&f->h);
    host_request_reload(&f->h);
    host_request_reload(&f->h);
    assert_int_equal(f->h.reloads.ok, 0);
    for (int i = 0; i < 5; i++)
        uv_run(&f->loop, UV_RUN_NOWAIT);
    assert_int_equal(f->h.reloads.ok, 1);
    assert_int_equal(f->h.reloads.failed, 0);
    assert_int_equal(f->h.current->id, 2);
    assert_ptr_equal(find(f, "a"), a);
    assert_string_equal(cfg_str(a, "label"), "two");
    assert_int_equal(LOG_COUNT(f, "msg=reloading"), 1);

    /* Once it ran, a new request is a new reload. */
    host_request_reload(&f->h);
    for (int i = 0; i < 5; i++)
        uv_run(&f->loop, UV_RUN_NOWAIT);
    assert_int_equal(f->h.reloads.ok, 2);
    assert_int_equal(f->h.current->id, 3);
}

static void reload_request_after_stop_is_ignored(void **state)
{
    struct fx *f = *state;
    write_plugins(f, two_probes);
    start(f);
    host_stop(&f->h);
    assert_null(f->h.current);
    host_request_reload(&f->h);
    while (uv_run(&f->loop, UV_RUN_DEFAULT) != 0)
        ;
    assert_int_equal(f->h.reloads.ok, 0);
    assert_int_equal(f->h.reloads.failed, 0);
    assert_int_equal(LOG_COUNT(f, "msg=\"probe destroyed\""), 2);
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(identical_config_is_carried_with_the_same_context_and_plugin_instance),
        T(reloadable_only_change_is_reconfigured_in_place),
        T(non_reloadable_change_replaces_the_instance),
        T(same_file_named_another_way_is_carried),
        T(another_module_file_replaces_without_a_predecessor),
        T(rebuilt_module_replaces_its_instances_with_the_new_code),
        T(broken_replacement_fails_the_reload_and_keeps_the_running_generation),
        T(added_and_removed_instances_are_planned_by_name),
        T(disabled_instance_counts_as_removed),
        T(disabled_instance_is_neither_loaded_nor_created),
        T(start_order_puts_sinks_first_then_declaration_order),
        T(abort_leaves_the_current_generation_untouched),
        T(failing_create_fails_prepare_and_keeps_the_generation),
        T(invalid_instance_config_fails_prepare_with_every_problem),
        T(failing_start_of_an_added_instance_rolls_everything_back),
        T(failing_reconfigure_restores_the_reconfigured_ones),
        T(host_start_runs_the_first_generation),
        T(host_start_with_errors_starts_nothing),
        T(host_reload_swaps_generations_and_counts_results),
        T(reload_requests_before_the_loop_runs_are_coalesced),
        T(reload_request_after_stop_is_ignored),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
