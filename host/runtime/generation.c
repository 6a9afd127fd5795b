#include "generation.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "host.h"
#include "instance.h"
#include "log.h"
#include "options.h"

static const char *const action_names[] = {"carried", "reconfigured", "replaced", "added"};

static void who_of(char *buf, size_t size, const char *name, const char *module)
{
    snprintf(buf, size, "plugin \"%s\" (module %s)", name, module);
}

static void where_of(char *buf, size_t size, const struct cfg_pos *p)
{
    snprintf(buf, size, "%s:%d:%d", p->file ? p->file : "?", p->line, p->col);
}

struct arq_ctx *generation_find(const struct generation *g, const char *name)
{
    for (size_t i = 0; g && i < g->n; i++)
        if (!strcmp(g->inst[i]->name, name))
            return g->inst[i];
    return NULL;
}

static void plan_free(struct plan *plan)
{
    if (plan->next) {
        config_free(plan->next->conf);
        free(plan->next->inst);
        free(plan->next);
    }
    for (size_t i = 0; plan->entries && i < plan->n; i++)
        json_decref(plan->entries[i].cfg);
    free(plan->entries);
    free(plan->removed);
    /* counts and nremoved stay: they describe what a committed plan did */
    plan->next = NULL;
    plan->entries = NULL;
    plan->removed = NULL;
    plan->n = 0;
}

void generation_abort(struct plan *plan)
{
    for (size_t i = 0; i < plan->n; i++) {
        struct plan_entry *e = &plan->entries[i];
        if ((e->action == PLAN_REPLACE || e->action == PLAN_ADD) && e->ctx)
            instance_destroy(e->ctx);
    }
    plan_free(plan);
}

/* Start order: by kind rank, then declaration order (insertion sort keeps it stable). */
static void sort_by_rank(struct plan *plan)
{
    struct generation *g = plan->next;
    for (size_t i = 1; i < g->n; i++) {
        struct arq_ctx *c = g->inst[i];
        struct plan_entry e = plan->entries[i];
        size_t j = i;
        while (j > 0 && instance_start_rank(g->inst[j - 1]) > instance_start_rank(c)) {
            g->inst[j] = g->inst[j - 1];
            plan->entries[j] = plan->entries[j - 1];
            j--;
        }
        g->inst[j] = c;
        plan->entries[j] = e;
    }
}

int generation_prepare(struct host *h, struct config *conf, const struct generation *cur,
                       struct plan *plan, struct diag_list *diags)
{
    size_t before = diags->n;
    memset(plan, 0, sizeof *plan);
    plan->next = calloc(1, sizeof *plan->next);
    plan->entries = calloc(conf->nplugins + 1, sizeof *plan->entries);
    plan->removed = calloc((cur ? cur->n : 0) + 1, sizeof *plan->removed);
    if (!plan->next || !plan->entries || !plan->removed ||
        !(plan->next->inst = calloc(conf->nplugins + 1, sizeof *plan->next->inst))) {
        config_free(conf);
        if (plan->next)
            plan->next->conf = NULL;
        plan_free(plan);
        diag_add(diags, NULL, "out of memory");
        return -1;
    }
    plan->next->conf = conf;
    plan->next->id = h->next_generation;

    /* 1. Load every module and validate every instance's options. */
    for (size_t i = 0; i < conf->nplugins; i++) {
        const struct plugin_decl *d = &conf->plugins[i];
        if (!d->enabled)
            continue;
        char who[300];
        who_of(who, sizeof who, d->name, d->module);
        struct module *m = loader_load(&h->loader, d->module_path, who, &d->pos, diags);
        if (!m)
            continue;
        json_t *cfg =
            opt_validate(m->desc->options, d->config_node, conf->doc, &d->config_pos, who, diags);
        if (!cfg)
            continue;
        struct plan_entry *e = &plan->entries[plan->n];
        e->cfg = cfg;
        struct arq_ctx *old = generation_find(cur, d->name);
        e->old = old;
        if (!old) {
            e->action = PLAN_ADD;
        } else if (old->mod != m) {
            e->action = PLAN_REPLACE;
        } else {
            enum opt_change ch = opt_diff(m->desc->options, old->cfg, cfg);
            if (ch == OPT_SAME)
                e->action = PLAN_CARRY;
            else if (ch == OPT_RELOADABLE_ONLY && m->desc->reconfigure)
                e->action = PLAN_RECONFIGURE;
            else
                e->action = PLAN_REPLACE;
        }
        if (e->action == PLAN_CARRY || e->action == PLAN_RECONFIGURE) {
            e->ctx = old;
        } else {
            char where[300];
            where_of(where, sizeof where, &d->pos);
            e->ctx = instance_new(h, d->name, d->module, m, json_incref(cfg), where);
            if (!e->ctx) {
                json_decref(cfg);
                e->cfg = NULL;
                diag_add(diags, &d->pos, "%s: out of memory", who);
                continue;
            }
            e->ctx->born = plan->next->id;
        }
        plan->next->inst[plan->n++] = e->ctx;
    }
    plan->next->n = plan->n;
    if (diags->n != before)
        goto fail;

    /* 2. Create the new instances, aside: nothing running sees them yet. */
    for (size_t i = 0; i < plan->n; i++) {
        struct plan_entry *e = &plan->entries[i];
        if (e->action != PLAN_ADD && e->action != PLAN_REPLACE)
            continue;
        struct arq_error err;
        if (instance_create(e->ctx, &err) != 0) {
            const struct plugin_decl *d = config_find(conf, e->ctx->name);
            char who[300];
            who_of(who, sizeof who, d->name, d->module);
            diag_add(diags, &d->pos, "%s: cannot create instance: %s", who, err.text);
        }
    }
    if (diags->n != before)
        goto fail;

    for (size_t i = 0; cur && i < cur->n; i++)
        if (!generation_find(plan->next, cur->inst[i]->name))
            plan->removed[plan->nremoved++] = cur->inst[i];
    for (size_t i = 0; i < plan->n; i++)
        plan->counts[plan->entries[i].action]++;
    sort_by_rank(plan);
    return 0;
fail:
    generation_abort(plan);
    return -1;
}

static void rollback_reconfigure(struct plan *plan, size_t upto)
{
    for (size_t i = 0; i < upto; i++) {
        struct plan_entry *e = &plan->entries[i];
        if (e->action != PLAN_RECONFIGURE || !e->old_cfg)
            continue;
        struct arq_error err;
        if (instance_reconfigure(e->ctx, e->old_cfg, &err) != 0)
            log_write(ARQ_LOG_ERROR, "host", "cannot restore configuration after a failed reload",
                      "instance", e->ctx->name, "error", err.text, (const char *)NULL);
    }
}

static void drop_old_cfgs(struct plan *plan)
{
    for (size_t i = 0; i < plan->n; i++) {
        json_decref(plan->entries[i].old_cfg);
        plan->entries[i].old_cfg = NULL;
    }
}

int generation_commit(struct plan *plan, struct generation **cur, struct diag_list *diags)
{
    struct generation *next = plan->next;
    size_t i;
    struct arq_error err;

    /* 1. RELOADABLE changes, in place (remembering the old config to roll back). */
    for (i = 0; i < plan->n; i++) {
        struct plan_entry *e = &plan->entries[i];
        if (e->action != PLAN_RECONFIGURE)
            continue;
        e->old_cfg = json_incref(e->ctx->cfg);
        if (instance_reconfigure(e->ctx, e->cfg, &err) != 0) {
            diag_add(diags, NULL, "%s (%s): cannot apply the new options: %s", e->ctx->who,
                     e->ctx->where, err.text);
            rollback_reconfigure(plan, i);
            goto fail;
        }
        log_write(ARQ_LOG_INFO, "host", "instance reconfigured", "instance", e->ctx->name, "module",
                  instance_module(e->ctx), (const char *)NULL);
    }

    /* 2. Start the new instances, each taking over from the one it replaces. */
    for (i = 0; i < plan->n; i++) {
        struct plan_entry *e = &plan->entries[i];
        if (e->action != PLAN_ADD && e->action != PLAN_REPLACE)
            continue;
        /* Only an instance of the very same module can read its predecessor's state: a new
         * build of a module (its file changed on disk) may lay it out differently. */
        struct arq_ctx *pred = e->old && e->old->mod == e->ctx->mod ? e->old : NULL;
        if (instance_start(e->ctx, pred, &err) != 0) {
            int rebuilt =
                e->old && !pred && !strcmp(e->old->mod->desc->name, e->ctx->mod->desc->name);
            diag_add(diags, NULL, "%s (%s): cannot start: %s%s", e->ctx->who, e->ctx->where,
                     err.text,
                     rebuilt ? " (a new build of the running module starts afresh: what the "
                               "running instance holds, such as a listening socket, is not "
                               "handed over; restart arqonbusd to upgrade it)"
                             : "");
            while (i-- > 0) {
                struct plan_entry *s = &plan->entries[i];
                if (s->action == PLAN_ADD || s->action == PLAN_REPLACE)
                    instance_stop(s->ctx);
            }
            rollback_reconfigure(plan, plan->n);
            goto fail;
        }
    }
    drop_old_cfgs(plan);

    /* 3. Swap, then retire what the new generation no longer holds (reverse start order). */
    struct generation *old = *cur;
    *cur = next;
    plan->next = NULL;
    for (size_t k = plan->nremoved; k-- > 0;)
        instance_stop(plan->removed[k]);
    for (size_t k = 0; k < plan->n; k++) {
        struct plan_entry *e = &plan->entries[k];
        if (e->action == PLAN_REPLACE)
            instance_stop(e->old);
    }
    for (size_t k = 0; k < plan->nremoved; k++)
        instance_retire(plan->removed[k]);
    for (size_t k = 0; k < plan->n; k++) {
        struct plan_entry *e = &plan->entries[k];
        if (e->action == PLAN_REPLACE)
            instance_retire(e->old);
    }
    if (old) {
        config_free(old->conf);
        free(old->inst);
        free(old);
    }
    plan_free(plan);
    return 0;

fail:
    drop_old_cfgs(plan);
    generation_abort(plan);
    return -1;
}

void generation_retire_all(struct generation *g)
{
    if (!g)
        return;
    for (size_t i = g->n; i-- > 0;)
        instance_stop(g->inst[i]);
    /* An instance leaves the generation before it is destroyed: what its destruction sets
     * off (a transport closing its clients) must not find it, or one destroyed before it,
     * among the running instances. */
    while (g->n > 0)
        instance_destroy(g->inst[--g->n]);
    config_free(g->conf);
    free(g->inst);
    free(g);
}

const char *generation_action_name(enum plan_action a)
{
    return action_names[a];
}
