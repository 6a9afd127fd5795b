#include "describe.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "options.h"

int describe_format_parse(const char *name, enum describe_format *out)
{
    static const char *const names[] = {"text", "json", "markdown", "man"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (!strcmp(name, names[i])) {
            *out = (enum describe_format)i;
            return 0;
        }
    }
    return -1;
}

/* --- the description ---------------------------------------------------------------------- */

/* NEW: one option of a spec, or NULL when out of memory. min/max are in the unit the value
 * reaches the plugin in: milliseconds for a duration, bytes for a size. */
static json_t *describe__option(const struct arq_option *o)
{
    json_t *choices = NULL;
    if (o->type == ARQ_OPT_ENUM && o->choices) {
        if (!(choices = json_array()))
            return NULL;
        for (const char *const *c = o->choices; *c; c++) {
            if (json_array_append_new(choices, json_string(*c)) != 0) {
                json_decref(choices);
                return NULL;
            }
        }
    }
    int bounded = (o->flags & ARQ_OPT_BOUNDED) != 0;
    /* The range as the option's own errors write it: "0s..10m". */
    char lo[64], hi[64], range[140];
    if (bounded) {
        opt_format_bound(lo, sizeof lo, o->type, o->min);
        opt_format_bound(hi, sizeof hi, o->type, o->max);
        snprintf(range, sizeof range, "%s..%s", lo, hi);
    }
    return json_pack("{s:s, s:s, s:s*, s:b, s:b, s:b, s:o*, s:o*, s:s*, s:o*, s:s*}", "name",
                     o->name, "type", opt_type_name(o->type), "default", o->default_value,
                     "required", (o->flags & ARQ_OPT_REQUIRED) != 0, "reloadable",
                     (o->flags & ARQ_OPT_RELOADABLE) != 0, "secret",
                     (o->flags & ARQ_OPT_SECRET) != 0, "min", bounded ? json_real(o->min) : NULL,
                     "max", bounded ? json_real(o->max) : NULL, "range", bounded ? range : NULL,
                     "choices", choices, "help", o->help);
}

/* NEW: a spec (NULL: none) as an array, or NULL when out of memory. */
static json_t *describe__spec(const struct arq_option *spec)
{
    json_t *arr = json_array();
    for (const struct arq_option *o = spec; arr && o && o->name; o++) {
        if (json_array_append_new(arr, describe__option(o)) != 0) {
            json_decref(arr);
            return NULL;
        }
    }
    return arr;
}

static json_t *describe__commands(const struct arq_plugin *d)
{
    const struct arq_commands_ops *ops = d->ops; /* the loader checked the table's size */
    json_t *arr = json_array();
    for (const struct arq_command *c = ops->commands; arr && c->name; c++) {
        json_t *one = json_pack("{s:s, s:s*, s:s*, s:o}", "name", c->name, "summary", c->summary,
                                "role", c->role, "params", describe__spec(c->params));
        if (json_array_append_new(arr, one) != 0) {
            json_decref(arr);
            return NULL;
        }
    }
    return arr;
}

/* NEW: module `m`, or NULL when out of memory. */
static json_t *describe__module(const struct module *m)
{
    const struct arq_plugin *d = m->desc;
    char abi[32];
    snprintf(abi, sizeof abi, "%u.%u", (unsigned)d->abi_major, (unsigned)d->abi_minor);
    json_t *mod =
        json_pack("{s:s, s:s, s:s*, s:s*, s:s, s:s, s:[], s:o}", "name", d->name, "kind",
                  loader_kind_name(d->kind), "version", d->version, "summary", d->summary, "abi",
                  abi, "file", m->path, "instances", "options", describe__spec(d->options));
    if (mod && d->kind == ARQ_KIND_COMMANDS &&
        json_object_set_new(mod, "commands", describe__commands(d)) != 0) {
        json_decref(mod);
        return NULL;
    }
    return mod;
}

/* Add module `path` (once: a module already described gets instance `instance` added). */
static int describe__add(struct loader *l, json_t *modules, const char *path, const char *who,
                         const struct cfg_pos *pos, const char *instance, struct diag_list *diags)
{
    const struct module *m = loader_load(l, path, who, pos, diags);
    if (!m)
        return -1;
    size_t i;
    json_t *mod = NULL;
    json_array_foreach(modules, i, mod)
    {
        if (!strcmp(json_string_value(json_object_get(mod, "file")), m->path))
            break;
        mod = NULL;
    }
    if (!mod && (json_array_append_new(modules, describe__module(m)) != 0 ||
                 !(mod = json_array_get(modules, json_array_size(modules) - 1))))
        goto nomem;
    if (instance &&
        json_array_append_new(json_object_get(mod, "instances"), json_string(instance)) != 0)
        goto nomem;
    return 0;
nomem:
    diag_add(diags, pos, "%s: out of memory", who);
    return -1;
}

static int describe__by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Every `*.so` of `dir`, in byte order of their names. */
static void describe__plugin_dir(struct loader *l, json_t *modules, const char *dir,
                                 struct diag_list *diags)
{
    char **names = NULL;
    size_t n = 0, cap = 0;
    DIR *d = opendir(dir);
    if (!d) {
        diag_add(diags, NULL, "cannot read the plugin directory \"%s\": %s", dir, strerror(errno));
        return;
    }
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (e->d_name[0] == '.' || len < 4 || strcmp(e->d_name + len - 3, ".so"))
            continue;
        if (n == cap) {
            char **grown = realloc(names, (cap = cap ? cap * 2 : 16) * sizeof *names);
            if (!grown)
                goto nomem;
            names = grown;
        }
        if (!(names[n] = strdup(e->d_name)))
            goto nomem;
        n++;
    }
    closedir(d);
    d = NULL;
    if (n)
        qsort(names, n, sizeof *names, describe__by_name);
    for (size_t i = 0; i < n; i++) {
        char path[4096], who[300];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        snprintf(who, sizeof who, "module \"%.*s\"", (int)(strlen(names[i]) - 3), names[i]);
        describe__add(l, modules, path, who, NULL, NULL, diags);
    }
    goto done;
nomem:
    diag_add(diags, NULL, "out of memory");
done:
    if (d)
        closedir(d);
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

/* The modules of the instances `conf` enables, in declaration order. */
static void describe__configured(struct loader *l, json_t *modules, const struct config *conf,
                                 struct diag_list *diags)
{
    for (size_t i = 0; i < conf->nplugins; i++) {
        const struct plugin_decl *p = &conf->plugins[i];
        if (!p->enabled)
            continue; /* not loaded at start either: its module need not be installed */
        char who[300];
        snprintf(who, sizeof who, "plugin \"%s\" (module %s)", p->name, p->module);
        describe__add(l, modules, p->module_path, who, &p->pos, p->name, diags);
    }
}

json_t *describe_build(struct loader *l, const char *conf_dir, const char *plugin_dir,
                       const struct config_section *section, struct diag_list *diags)
{
    size_t before = diags->n;
    struct config *conf = NULL;
    json_t *sections = json_array(), *modules = json_array();
    if (!sections || !modules ||
        json_array_append_new(sections, json_pack("{s:s, s:o}", "name", "host", "options",
                                                  describe__spec(config_host_options))) != 0 ||
        (section && section->name &&
         json_array_append_new(sections, json_pack("{s:s, s:o}", "name", section->name, "options",
                                                   describe__spec(section->options))) != 0)) {
        diag_add(diags, NULL, "out of memory");
        goto fail;
    }
    if (conf_dir) {
        if (!(conf = config_load(conf_dir, NULL, NULL, section, diags)))
            goto fail;
        describe__configured(l, modules, conf, diags);
    } else {
        const char *env = getenv("ARQONBUS_PLUGIN_DIR");
        if (!plugin_dir)
            plugin_dir = env && *env ? env : config_default_plugin_dir();
        describe__plugin_dir(l, modules, plugin_dir, diags);
    }
    if (diags->n != before)
        goto fail;
    char abi[32];
    snprintf(abi, sizeof abi, "%d.%d", ARQ_ABI_MAJOR, ARQ_ABI_MINOR);
    json_t *d = json_pack("{s:s, s:s, s:o, s:o}", "version", ARQ_VERSION, "abi", abi, "sections",
                          sections, "modules", modules);
    sections = modules = NULL;
    if (!d)
        diag_add(diags, NULL, "out of memory");
    config_free(conf);
    return d;
fail:
    json_decref(sections);
    json_decref(modules);
    config_free(conf);
    return NULL;
}

/* --- writing it --------------------------------------------------------------------------- */

static const char *describe__str(const json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

static int describe__flag(const json_t *o, const char *key)
{
    return json_is_true(json_object_get(o, key));
}

/* Markdown: text in a table cell (`|` would end it, `<` open an HTML tag). */
static void md__text(FILE *out, const char *s)
{
    for (; s && *s; s++) {
        if (*s == '|' || *s == '*')
            fprintf(out, "\\%c", *s);
        else if (*s == '<')
            fputs("&lt;", out);
        else if (*s == '>')
            fputs("&gt;", out);
        else
            fputc(*s, out);
    }
}

/* Markdown: a literal value in a table cell. */
static void md__code(FILE *out, const char *s)
{
    if (!*s) {
        fputs("`\"\"`", out);
        return;
    }
    fputc('`', out);
    for (; *s; s++) {
        if (*s == '|')
            fputc('\\', out);
        fputc(*s, out);
    }
    fputc('`', out);
}

/* Markdown: the type column: an enum's values, else the type with its range. */
static void md__type(FILE *out, const json_t *o)
{
    const json_t *choices = json_object_get(o, "choices");
    if (choices) {
        size_t i;
        const json_t *c;
        json_array_foreach(choices, i, c)
        {
            fputs(i ? ", " : "", out);
            md__code(out, json_string_value(c));
        }
    } else {
        const char *range = describe__str(o, "range") ? describe__str(o, "range") : "";
        fprintf(out, "%s%s%s", describe__str(o, "type"), range[0] ? " " : "", range);
    }
    if (describe__flag(o, "secret"))
        fputs(", secret", out);
}

static void md__default(FILE *out, const json_t *o)
{
    const char *def = describe__str(o, "default");
    if (describe__flag(o, "required"))
        fputs("required", out);
    else if (def)
        md__code(out, def);
    else
        fputs("none", out);
}

static void md__options(FILE *out, const json_t *spec)
{
    if (!json_array_size(spec)) {
        fputs("No options.\n\n", out);
        return;
    }
    fputs("| option | type | default | reload | meaning |\n|---|---|---|---|---|\n", out);
    size_t i;
    const json_t *o;
    json_array_foreach(spec, i, o)
    {
        fputs("| ", out);
        md__code(out, describe__str(o, "name"));
        fputs(" | ", out);
        md__type(out, o);
        fputs(" | ", out);
        md__default(out, o);
        fprintf(out, " | %s | ", describe__flag(o, "reloadable") ? "yes" : "no");
        md__text(out, describe__str(o, "help"));
        fputs(" |\n", out);
    }
    fputc('\n', out);
}

static void md__commands(FILE *out, const json_t *commands)
{
    fputs("| command | role | arguments | meaning |\n|---|---|---|---|\n", out);
    size_t i, j;
    const json_t *c, *p;
    json_array_foreach(commands, i, c)
    {
        fputs("| ", out);
        md__code(out, describe__str(c, "name"));
        fputs(" | ", out);
        md__text(out, describe__str(c, "role"));
        fputs(" | ", out);
        const json_t *params = json_object_get(c, "params");
        if (!json_array_size(params))
            fputs("none", out);
        json_array_foreach(params, j, p)
        {
            fputs(j ? "<br>" : "", out);
            md__code(out, describe__str(p, "name"));
            fputs(" (", out);
            md__type(out, p);
            fputs(describe__flag(p, "required") ? ", required" : "", out);
            if (describe__str(p, "default")) {
                fputs(", default ", out);
                md__code(out, describe__str(p, "default"));
            }
            fputs("): ", out);
            md__text(out, describe__str(p, "help"));
        }
        fputs(" | ", out);
        md__text(out, describe__str(c, "summary"));
        fputs(" |\n", out);
    }
    fputc('\n', out);
}

static void describe__markdown(FILE *out, const json_t *d)
{
    size_t i;
    const json_t *s, *m;
    json_array_foreach(json_object_get(d, "sections"), i, s)
    {
        fprintf(out, "### `%s:`\n\n", describe__str(s, "name"));
        md__options(out, json_object_get(s, "options"));
    }
    json_array_foreach(json_object_get(d, "modules"), i, m)
    {
        const char *kind = describe__str(m, "kind");
        fprintf(out, "### Module `%s`\n\n%s %s plugin: ", describe__str(m, "name"),
                kind[0] == 'a' ? "An" : "A", kind);
        md__text(out, describe__str(m, "summary"));
        fputs(".\n\n", out);
        md__options(out, json_object_get(m, "options"));
        if (json_object_get(m, "commands")) {
            fputs("Its commands:\n\n", out);
            md__commands(out, json_object_get(m, "commands"));
        }
    }
}

/* roff: text (`literal`: a name or value, whose hyphens are minus signs so that it can be
 * copied). A line never starts with a control character. */
static void man__text(FILE *out, const char *s, int literal)
{
    if (s && (*s == '.' || *s == '\''))
        fputs("\\&", out);
    for (; s && *s; s++) {
        if (*s == '\\')
            fputs("\\e", out);
        else if (*s == '-' && literal)
            fputs("\\-", out);
        else
            fputc(*s, out);
    }
}

static void man__bold(FILE *out, const char *s)
{
    fputs("\\fB", out);
    man__text(out, *s ? s : "\"\"", 1);
    fputs("\\fR", out);
}

/* roff: one option as a tagged paragraph: name, then type, range, default and flags, then
 * its help on a line of its own. */
static void man__option(FILE *out, const json_t *o)
{
    fputs(".TP\n", out);
    man__bold(out, describe__str(o, "name"));
    fputc('\n', out);
    const json_t *choices = json_object_get(o, "choices");
    const char *range = describe__str(o, "range") ? describe__str(o, "range") : "";
    man__text(out, describe__str(o, "type"), 0);
    if (choices) {
        size_t i;
        const json_t *c;
        json_array_foreach(choices, i, c)
        {
            fputs(i ? ", " : ": ", out);
            man__bold(out, json_string_value(c));
        }
    } else if (range[0]) {
        fputc(' ', out);
        man__text(out, range, 1);
    }
    fputs(describe__flag(o, "secret") ? ", secret" : "", out);
    if (describe__flag(o, "required")) {
        fputs(", required", out);
    } else if (describe__str(o, "default")) {
        fputs("; default ", out);
        man__bold(out, describe__str(o, "default"));
    }
    fputs(describe__flag(o, "reloadable") ? "; reloadable" : "", out);
    fputs(".\n.br\n", out);
    man__text(out, describe__str(o, "help"), 0);
    fputc('\n', out);
}

static void man__options(FILE *out, const json_t *spec)
{
    size_t i;
    const json_t *o;
    if (!json_array_size(spec))
        fputs(".PP\nNo options.\n", out);
    json_array_foreach(spec, i, o) man__option(out, o);
}

static void describe__man(FILE *out, const json_t *d)
{
    size_t i, j;
    const json_t *s, *m, *c;
    json_array_foreach(json_object_get(d, "sections"), i, s)
    {
        fputs(".SS \"", out);
        man__text(out, describe__str(s, "name"), 1);
        fputs(":\"\n", out);
        man__options(out, json_object_get(s, "options"));
    }
    json_array_foreach(json_object_get(d, "modules"), i, m)
    {
        fputs(".SS \"Module ", out);
        man__text(out, describe__str(m, "name"), 1);
        const char *kind = describe__str(m, "kind");
        fprintf(out, "\"\n.PP\n%s %s plugin: ", kind[0] == 'a' ? "An" : "A", kind);
        man__text(out, describe__str(m, "summary"), 0);
        fputs(".\n", out);
        man__options(out, json_object_get(m, "options"));
        if (!json_object_get(m, "commands"))
            continue;
        fputs(".PP\nIts commands (the least role each needs by default, its arguments):\n", out);
        json_array_foreach(json_object_get(m, "commands"), j, c)
        {
            fputs(".TP\n", out);
            man__bold(out, describe__str(c, "name"));
            fputs(" (", out);
            man__text(out, describe__str(c, "role"), 0);
            fputs(")\n", out);
            man__text(out, describe__str(c, "summary"), 0);
            fputc('\n', out);
            const json_t *params = json_object_get(c, "params");
            if (!json_array_size(params))
                continue;
            fputs(".RS\n", out);
            man__options(out, params);
            fputs(".RE\n", out);
        }
    }
}

/* Plain text: one line per option with its type, range, default and flags, its help below. */
static void text__options(FILE *out, const json_t *spec, const char *indent)
{
    size_t i, j;
    const json_t *o, *c;
    json_array_foreach(spec, i, o)
    {
        const char *range = describe__str(o, "range") ? describe__str(o, "range") : "";
        fprintf(out, "%s%s: %s", indent, describe__str(o, "name"), describe__str(o, "type"));
        json_array_foreach(json_object_get(o, "choices"), j, c)
            fprintf(out, "%s%s", j ? ", " : " (", json_string_value(c));
        fputs(json_object_get(o, "choices") ? ")" : "", out);
        fprintf(out, "%s%s", range[0] ? " " : "", range);
        if (describe__flag(o, "required"))
            fputs(", required", out);
        else if (describe__str(o, "default"))
            fprintf(out, ", default \"%s\"", describe__str(o, "default"));
        fputs(describe__flag(o, "secret") ? ", secret" : "", out);
        fputs(describe__flag(o, "reloadable") ? ", reloadable" : "", out);
        fprintf(out, "\n%s    %s\n", indent,
                describe__str(o, "help") ? describe__str(o, "help") : "");
    }
}

static void describe__text(FILE *out, const json_t *d)
{
    size_t i, j;
    const json_t *s, *m, *c, *inst;
    fprintf(out, "arqonbusd %s (plugin ABI %s)\n", describe__str(d, "version"),
            describe__str(d, "abi"));
    json_array_foreach(json_object_get(d, "sections"), i, s)
    {
        fprintf(out, "\n%s:\n", describe__str(s, "name"));
        text__options(out, json_object_get(s, "options"), "  ");
    }
    json_array_foreach(json_object_get(d, "modules"), i, m)
    {
        fprintf(out, "\nmodule %s %s (%s, ABI %s): %s\n  file: %s\n", describe__str(m, "name"),
                describe__str(m, "version") ? describe__str(m, "version") : "",
                describe__str(m, "kind"), describe__str(m, "abi"),
                describe__str(m, "summary") ? describe__str(m, "summary") : "",
                describe__str(m, "file"));
        json_array_foreach(json_object_get(m, "instances"), j, inst)
            fprintf(out, "%s%s", j ? ", " : "  instances: ", json_string_value(inst));
        fputs(json_array_size(json_object_get(m, "instances")) ? "\n" : "", out);
        text__options(out, json_object_get(m, "options"), "  ");
        json_array_foreach(json_object_get(m, "commands"), j, c)
        {
            fprintf(out, "  command %s (role %s): %s\n", describe__str(c, "name"),
                    describe__str(c, "role") ? describe__str(c, "role") : "not set",
                    describe__str(c, "summary") ? describe__str(c, "summary") : "");
            text__options(out, json_object_get(c, "params"), "    ");
        }
    }
}

int describe_print(FILE *out, const json_t *d, enum describe_format fmt)
{
    switch (fmt) {
    case DESCRIBE_JSON:
        if (json_dumpf(d, out, JSON_INDENT(2)) != 0)
            return -1;
        fputc('\n', out);
        break;
    case DESCRIBE_MARKDOWN:
        describe__markdown(out, d);
        break;
    case DESCRIBE_MAN:
        describe__man(out, d);
        break;
    case DESCRIBE_TEXT:
        describe__text(out, d);
        break;
    }
    return fflush(out) == 0 && !ferror(out) ? 0 : -1;
}
