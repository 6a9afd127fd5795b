/* YAML configuration files -> jansson trees with positions.
 *
 * libyaml's event API is used rather than its document API because the loader would resolve
 * aliases silently and hide anchors; events show both, with the mark of every node.
 *
 * Ownership: the doc holds one reference to every node it made (in its position table), so
 * roots stay alive until cfg_doc_free, a node's address is never reused for another node while
 * the doc lives, and the cfg_pos pointers handed out stay valid (they live in fixed chunks). */
#include "cfg.h"
#include "diag.h"
#include "utf8.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#define CFG_MAX_DEPTH  256
#define CFG_INFO_CHUNK 256
#define CFG_CORE_TAG   "tag:yaml.org,2002:"
#define CFG_ERR_MAX    512

struct cfg_info {
    json_t *node; /* the doc's reference */
    struct cfg_pos pos, key;
    unsigned char has_key, plain;
};

struct cfg_chunk {
    struct cfg_chunk *next;
    size_t n;
    struct cfg_info info[CFG_INFO_CHUNK];
};

struct cfg_doc {
    cfg_getenv_fn getenv_fn;
    void *getenv_arg;
    struct cfg_info **slots; /* open addressing by node address; size is a power of two */
    size_t nslots, used;
    struct cfg_chunk *chunks;
    char **files;
    size_t nfiles, capfiles;
};

enum cfg_kind { CFG_SCALAR, CFG_SEQUENCE, CFG_MAPPING };

struct cfg_parse {
    struct cfg_doc *doc;
    const char *file;
    const char *text;
    size_t len;
    struct diag_list *diags;
    yaml_parser_t yp;
    int errors;
};

/* --- the position table ---------------------------------------------------------------- */

static size_t cfg__hash(const void *p)
{
    uint64_t x = (uint64_t)(uintptr_t)p;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return (size_t)x;
}

static struct cfg_info *cfg__find(const struct cfg_doc *doc, const json_t *node)
{
    if (!doc || !node || doc->nslots == 0)
        return NULL;
    size_t mask = doc->nslots - 1;
    for (size_t i = cfg__hash(node) & mask; doc->slots[i]; i = (i + 1) & mask)
        if (doc->slots[i]->node == node)
            return doc->slots[i];
    return NULL;
}

static void cfg__slot_put(struct cfg_info **slots, size_t nslots, struct cfg_info *info)
{
    size_t mask = nslots - 1, i = cfg__hash(info->node) & mask;
    while (slots[i])
        i = (i + 1) & mask;
    slots[i] = info;
}

static int cfg__grow(struct cfg_doc *doc)
{
    size_t n = doc->nslots ? doc->nslots * 2 : 64;
    if (n > SIZE_MAX / sizeof(struct cfg_info *))
        return -1;
    struct cfg_info **slots = calloc(n, sizeof *slots);
    if (!slots)
        return -1;
    for (size_t i = 0; i < doc->nslots; i++)
        if (doc->slots[i])
            cfg__slot_put(slots, n, doc->slots[i]);
    free(doc->slots);
    doc->slots = slots;
    doc->nslots = n;
    return 0;
}

/* Remember `node` (taking a reference) as made at `pos`. */
static struct cfg_info *cfg__register(struct cfg_doc *doc, json_t *node, const struct cfg_pos *pos)
{
    if ((doc->used + 1) * 2 > doc->nslots && cfg__grow(doc) != 0)
        return NULL;
    if (!doc->chunks || doc->chunks->n == CFG_INFO_CHUNK) {
        struct cfg_chunk *c = malloc(sizeof *c);
        if (!c)
            return NULL;
        c->next = doc->chunks;
        c->n = 0;
        doc->chunks = c;
    }
    struct cfg_info *info = &doc->chunks->info[doc->chunks->n++];
    memset(info, 0, sizeof *info);
    info->node = json_incref(node);
    info->pos = *pos;
    cfg__slot_put(doc->slots, doc->nslots, info);
    doc->used++;
    return info;
}

static const char *cfg__intern(struct cfg_doc *doc, const char *name)
{
    for (size_t i = 0; i < doc->nfiles; i++)
        if (strcmp(doc->files[i], name) == 0)
            return doc->files[i];
    if (doc->nfiles == doc->capfiles) {
        size_t cap = doc->capfiles ? doc->capfiles * 2 : 8;
        char **files = realloc(doc->files, cap * sizeof *files);
        if (!files)
            return NULL;
        doc->files = files;
        doc->capfiles = cap;
    }
    char *copy = strdup(name);
    if (!copy)
        return NULL;
    doc->files[doc->nfiles++] = copy;
    return copy;
}

/* --- public: the doc ------------------------------------------------------------------- */

struct cfg_doc *cfg_doc_new(cfg_getenv_fn getenv_fn, void *getenv_arg)
{
    struct cfg_doc *doc = calloc(1, sizeof *doc);
    if (!doc)
        return NULL;
    doc->getenv_fn = getenv_fn;
    doc->getenv_arg = getenv_arg;
    return doc;
}

void cfg_doc_free(struct cfg_doc *doc)
{
    if (!doc)
        return;
    struct cfg_chunk *c = doc->chunks;
    while (c) {
        struct cfg_chunk *next = c->next;
        for (size_t i = 0; i < c->n; i++)
            json_decref(c->info[i].node);
        free(c);
        c = next;
    }
    for (size_t i = 0; i < doc->nfiles; i++)
        free(doc->files[i]);
    free(doc->files);
    free(doc->slots);
    free(doc);
}

const struct cfg_pos *cfg_pos_of(const struct cfg_doc *doc, const json_t *node)
{
    const struct cfg_info *info = cfg__find(doc, node);
    return info ? &info->pos : NULL;
}

const struct cfg_pos *cfg_key_pos_of(const struct cfg_doc *doc, const json_t *node)
{
    const struct cfg_info *info = cfg__find(doc, node);
    if (!info)
        return NULL;
    return info->has_key ? &info->key : &info->pos;
}

int cfg_is_plain(const struct cfg_doc *doc, const json_t *node)
{
    const struct cfg_info *info = cfg__find(doc, node);
    return info && info->plain;
}

/* --- parsing --------------------------------------------------------------------------- */

static int cfg__clamp(size_t v)
{
    return v >= (size_t)INT_MAX ? INT_MAX : (int)v + 1;
}

static struct cfg_pos cfg__pos(const struct cfg_parse *ctx, yaml_mark_t m)
{
    struct cfg_pos pos = {ctx->file, cfg__clamp(m.line), cfg__clamp(m.column)};
    return pos;
}

/* libyaml reports reader errors (bad UTF-8, control characters) as a byte offset only. */
static struct cfg_pos cfg__pos_of_offset(const struct cfg_parse *ctx, size_t offset)
{
    const unsigned char *s = (const unsigned char *)ctx->text;
    size_t line = 0, col = 0, i = 0;

    if (offset > ctx->len)
        offset = ctx->len;
    if (offset >= 3 && s[0] == 0xEF && s[1] == 0xBB && s[2] == 0xBF)
        i = 3;
    for (; i < offset; i++) {
        if (s[i] == '\n' || (s[i] == '\r' && (i + 1 >= ctx->len || s[i + 1] != '\n'))) {
            line++;
            col = 0;
        } else if ((s[i] & 0xC0) != 0x80 && s[i] != '\r') {
            col++;
        }
    }
    struct cfg_pos pos = {ctx->file, cfg__clamp(line), cfg__clamp(col)};
    return pos;
}

static void cfg__syntax_error(struct cfg_parse *ctx)
{
    yaml_parser_t *yp = &ctx->yp;
    const char *problem = yp->problem ? yp->problem : "invalid YAML";

    ctx->errors++;
    if (yp->error == YAML_MEMORY_ERROR) {
        diag_add(ctx->diags, NULL, "out of memory while reading \"%s\"", ctx->file);
    } else if (yp->error == YAML_READER_ERROR) {
        struct cfg_pos pos = cfg__pos_of_offset(ctx, yp->problem_offset);
        if (yp->problem_value != -1)
            diag_add(ctx->diags, &pos, "%s (0x%02X)", problem, (unsigned)yp->problem_value);
        else
            diag_add(ctx->diags, &pos, "%s", problem);
    } else {
        struct cfg_pos pos = cfg__pos(ctx, yp->problem_mark);
        if (yp->context)
            diag_add(ctx->diags, &pos, "%s (%s at line %d, column %d)", problem, yp->context,
                     cfg__clamp(yp->context_mark.line), cfg__clamp(yp->context_mark.column));
        else
            diag_add(ctx->diags, &pos, "%s", problem);
    }
}

static void cfg__oom(struct cfg_parse *ctx)
{
    ctx->errors++;
    diag_add(ctx->diags, NULL, "out of memory while reading \"%s\"", ctx->file);
}

static int cfg__next(struct cfg_parse *ctx, yaml_event_t *ev)
{
    if (!yaml_parser_parse(&ctx->yp, ev)) {
        cfg__syntax_error(ctx);
        return -1;
    }
    return 0;
}

/* Anchors and tags on a node. Core tags are accepted (and mean nothing more: typing comes
 * from the option spec); any other tag is an error. */
static void cfg__check_props(struct cfg_parse *ctx, const struct cfg_pos *pos,
                             const yaml_char_t *anchor, const yaml_char_t *tag, enum cfg_kind kind)
{
    static const char *const kinds[] = {"a scalar", "a sequence", "a mapping"};
    static const char *const scalar_tags[] = {"str", "int", "float", "bool", "null", NULL};

    if (anchor) {
        ctx->errors++;
        diag_add(ctx->diags, pos, "aliases and anchors are not supported");
    }
    if (!tag)
        return;
    const char *t = (const char *)tag;
    const size_t plen = strlen(CFG_CORE_TAG);
    if (strncmp(t, CFG_CORE_TAG, plen) != 0) {
        ctx->errors++;
        diag_add(ctx->diags, pos, "unsupported tag \"%s\"", t);
        return;
    }
    const char *s = t + plen;
    int is_scalar_tag = 0;
    for (size_t i = 0; scalar_tags[i]; i++)
        if (strcmp(s, scalar_tags[i]) == 0)
            is_scalar_tag = 1;
    enum cfg_kind fits;
    if (is_scalar_tag) {
        fits = CFG_SCALAR;
    } else if (strcmp(s, "seq") == 0) {
        fits = CFG_SEQUENCE;
    } else if (strcmp(s, "map") == 0) {
        fits = CFG_MAPPING;
    } else {
        ctx->errors++;
        diag_add(ctx->diags, pos, "unsupported tag \"!!%s\"", s);
        return;
    }
    if (fits != kind) {
        ctx->errors++;
        diag_add(ctx->diags, pos, "tag \"!!%s\" cannot be used on %s", s, kinds[kind]);
    }
}

static int cfg__node(struct cfg_parse *ctx, yaml_event_t *ev, int depth, int expand, json_t **out,
                     struct cfg_info **info_out);

static int cfg__scalar(struct cfg_parse *ctx, yaml_event_t *ev, int expand, json_t **out,
                       struct cfg_info **info_out)
{
    struct cfg_pos pos = cfg__pos(ctx, ev->start_mark);
    const char *value = (const char *)ev->data.scalar.value;
    size_t len = ev->data.scalar.length;
    const char *tag = (const char *)ev->data.scalar.tag;
    /* "!!str 123" says "this is text" as clearly as quotes do. */
    int plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
                !(tag && strcmp(tag, CFG_CORE_TAG "str") == 0);
    char *expanded = NULL;
    json_t *node = NULL;
    struct cfg_info *info;

    cfg__check_props(ctx, &pos, ev->data.scalar.anchor, ev->data.scalar.tag, CFG_SCALAR);
    if (memchr(value, '\0', len)) {
        ctx->errors++;
        diag_add(ctx->diags, &pos, "NUL characters are not allowed in values");
    } else if (expand) {
        char err[CFG_ERR_MAX];
        expanded = cfg_expand(value, ctx->doc->getenv_fn, ctx->doc->getenv_arg, err, sizeof err);
        if (!expanded) {
            ctx->errors++;
            diag_add(ctx->diags, &pos, "%s", err);
        } else if (!utf8_valid(expanded)) {
            ctx->errors++;
            diag_add(ctx->diags, &pos,
                     "the value is not valid UTF-8 after expanding "
                     "environment variables");
            free(expanded);
            expanded = NULL;
        }
    }
    node = expanded ? json_string(expanded) : json_stringn(value, len);
    free(expanded);
    yaml_event_delete(ev);
    if (!node)
        goto oom;
    info = cfg__register(ctx->doc, node, &pos);
    if (!info)
        goto oom;
    info->plain = (unsigned char)plain;
    *out = node;
    if (info_out)
        *info_out = info;
    return 0;
oom:
    json_decref(node);
    cfg__oom(ctx);
    return -1;
}

static int cfg__sequence(struct cfg_parse *ctx, yaml_event_t *ev, int depth, int expand,
                         json_t **out, struct cfg_info **info_out)
{
    struct cfg_pos pos = cfg__pos(ctx, ev->start_mark);
    json_t *arr = NULL;
    struct cfg_info *info;

    cfg__check_props(ctx, &pos, ev->data.sequence_start.anchor, ev->data.sequence_start.tag,
                     CFG_SEQUENCE);
    yaml_event_delete(ev);
    if (depth >= CFG_MAX_DEPTH) {
        ctx->errors++;
        diag_add(ctx->diags, &pos, "nested deeper than %d levels", CFG_MAX_DEPTH);
        return -1;
    }
    arr = json_array();
    if (!arr || !(info = cfg__register(ctx->doc, arr, &pos))) {
        cfg__oom(ctx);
        goto fail;
    }
    for (;;) {
        yaml_event_t item_ev;
        json_t *item;
        if (cfg__next(ctx, &item_ev) != 0)
            goto fail;
        if (item_ev.type == YAML_SEQUENCE_END_EVENT) {
            yaml_event_delete(&item_ev);
            break;
        }
        if (cfg__node(ctx, &item_ev, depth + 1, expand, &item, NULL) != 0)
            goto fail;
        if (item && json_array_append_new(arr, item) != 0) {
            cfg__oom(ctx);
            goto fail;
        }
    }
    *out = arr;
    if (info_out)
        *info_out = info;
    return 0;
fail:
    json_decref(arr);
    return -1;
}

/* Reads one mapping key. Sets *key (malloc'd) when it is usable, NULL after an error. */
static int cfg__key(struct cfg_parse *ctx, yaml_event_t *ev, int depth, char **key)
{
    *key = NULL;
    if (ev->type == YAML_SCALAR_EVENT) {
        struct cfg_pos pos = cfg__pos(ctx, ev->start_mark);
        const char *value = (const char *)ev->data.scalar.value;
        size_t len = ev->data.scalar.length;
        cfg__check_props(ctx, &pos, ev->data.scalar.anchor, ev->data.scalar.tag, CFG_SCALAR);
        if (memchr(value, '\0', len)) {
            ctx->errors++;
            diag_add(ctx->diags, &pos, "NUL characters are not allowed in keys");
        } else if (!(*key = strndup(value, len))) {
            yaml_event_delete(ev);
            cfg__oom(ctx);
            return -1;
        }
        yaml_event_delete(ev);
        return 0;
    }
    /* An alias (reported by cfg__node), or a mapping or sequence as a key: say so, and read
     * it only to get past it. */
    json_t *junk = NULL;
    if (ev->type != YAML_ALIAS_EVENT) {
        struct cfg_pos pos = cfg__pos(ctx, ev->start_mark);
        ctx->errors++;
        diag_add(ctx->diags, &pos, "mapping keys must be scalars");
    }
    if (cfg__node(ctx, ev, depth, 0, &junk, NULL) != 0)
        return -1;
    json_decref(junk);
    return 0;
}

static int cfg__mapping(struct cfg_parse *ctx, yaml_event_t *ev, int depth, json_t **out,
                        struct cfg_info **info_out)
{
    struct cfg_pos pos = cfg__pos(ctx, ev->start_mark);
    json_t *obj = NULL;
    char *key = NULL;
    struct cfg_info *info;

    cfg__check_props(ctx, &pos, ev->data.mapping_start.anchor, ev->data.mapping_start.tag,
                     CFG_MAPPING);
    yaml_event_delete(ev);
    if (depth >= CFG_MAX_DEPTH) {
        ctx->errors++;
        diag_add(ctx->diags, &pos, "nested deeper than %d levels", CFG_MAX_DEPTH);
        return -1;
    }
    obj = json_object();
    if (!obj || !(info = cfg__register(ctx->doc, obj, &pos))) {
        cfg__oom(ctx);
        goto fail;
    }
    for (;;) {
        yaml_event_t kev, vev;
        json_t *value = NULL;
        struct cfg_info *vinfo = NULL;
        if (cfg__next(ctx, &kev) != 0)
            goto fail;
        if (kev.type == YAML_MAPPING_END_EVENT) {
            yaml_event_delete(&kev);
            break;
        }
        struct cfg_pos kpos = cfg__pos(ctx, kev.start_mark);
        if (cfg__key(ctx, &kev, depth + 1, &key) != 0)
            goto fail;
        /* Report a duplicate where it is, before anything inside its value. */
        const json_t *first = key ? json_object_get(obj, key) : NULL;
        if (first) {
            const struct cfg_pos *fp = cfg_key_pos_of(ctx->doc, first);
            ctx->errors++;
            if (fp)
                diag_add(ctx->diags, &kpos, "duplicate key \"%s\" (first at %s:%d:%d)", key,
                         fp->file, fp->line, fp->col);
            else
                diag_add(ctx->diags, &kpos, "duplicate key \"%s\"", key);
            free(key);
            key = NULL;
        }
        if (cfg__next(ctx, &vev) != 0)
            goto fail;
        if (cfg__node(ctx, &vev, depth + 1, 1, &value, &vinfo) != 0)
            goto fail;
        if (value && key) {
            vinfo->key = kpos;
            vinfo->has_key = 1;
            if (json_object_set_new(obj, key, value) != 0) {
                cfg__oom(ctx);
                goto fail;
            }
        } else {
            json_decref(value);
        }
        free(key);
        key = NULL;
    }
    *out = obj;
    if (info_out)
        *info_out = info;
    return 0;
fail:
    free(key);
    json_decref(obj);
    return -1;
}

/* Reads the node that starts with `ev` (always consumed). Returns -1 when reading must stop
 * (syntax error, out of memory, nesting); other problems are counted in ctx->errors and give
 * a node anyway, or *out = NULL for an alias. `expand` is 0 inside keys. */
static int cfg__node(struct cfg_parse *ctx, yaml_event_t *ev, int depth, int expand, json_t **out,
                     struct cfg_info **info_out)
{
    *out = NULL;
    if (info_out)
        *info_out = NULL;
    switch (ev->type) {
    case YAML_SCALAR_EVENT:
        return cfg__scalar(ctx, ev, expand, out, info_out);
    case YAML_SEQUENCE_START_EVENT:
        return cfg__sequence(ctx, ev, depth, expand, out, info_out);
    case YAML_MAPPING_START_EVENT:
        return cfg__mapping(ctx, ev, depth, out, info_out);
    case YAML_ALIAS_EVENT: {
        struct cfg_pos pos = cfg__pos(ctx, ev->start_mark);
        ctx->errors++;
        diag_add(ctx->diags, &pos, "aliases and anchors are not supported");
        yaml_event_delete(ev);
        return 0;
    }
    default: {
        struct cfg_pos pos = cfg__pos(ctx, ev->start_mark);
        ctx->errors++;
        diag_add(ctx->diags, &pos, "unexpected YAML event %d", (int)ev->type);
        yaml_event_delete(ev);
        return -1;
    }
    }
}

/* The document's root, or NULL with ctx->errors > 0. */
static json_t *cfg__document(struct cfg_parse *ctx)
{
    yaml_event_t ev;
    json_t *root = NULL;
    struct cfg_info *info = NULL;

    if (cfg__next(ctx, &ev) != 0)
        return NULL;
    yaml_event_delete(&ev); /* STREAM-START */
    if (cfg__next(ctx, &ev) != 0)
        return NULL;
    if (ev.type == YAML_STREAM_END_EVENT) {
        /* Nothing but comments and blank lines. */
        struct cfg_pos pos = {ctx->file, 1, 1};
        yaml_event_delete(&ev);
        if (!(root = json_object()) || !cfg__register(ctx->doc, root, &pos))
            goto oom;
        return root;
    }
    struct cfg_pos doc_pos = cfg__pos(ctx, ev.start_mark);
    yaml_event_delete(&ev); /* DOCUMENT-START */
    if (cfg__next(ctx, &ev) != 0 || cfg__node(ctx, &ev, 0, 1, &root, &info) != 0)
        goto fail;
    if (cfg__next(ctx, &ev) != 0)
        goto fail;
    yaml_event_delete(&ev); /* DOCUMENT-END */
    if (cfg__next(ctx, &ev) != 0)
        goto fail;
    if (ev.type == YAML_DOCUMENT_START_EVENT) {
        struct cfg_pos pos = cfg__pos(ctx, ev.start_mark);
        ctx->errors++;
        diag_add(ctx->diags, &pos,
                 "only one YAML document per file is supported (found a second one)");
    }
    yaml_event_delete(&ev);
    if (!root)
        goto fail; /* an alias, already reported */
    if (json_is_string(root) && info->plain && !*json_string_value(root)) {
        /* "---" and nothing else. */
        json_t *empty = json_object();
        if (!empty || !cfg__register(ctx->doc, empty, &doc_pos)) {
            json_decref(empty);
            goto oom;
        }
        json_decref(root);
        root = empty;
    } else if (!json_is_object(root)) {
        ctx->errors++;
        diag_add(ctx->diags, &info->pos, "the top level must be a mapping");
    }
    return root;
oom:
    cfg__oom(ctx);
fail:
    json_decref(root);
    return NULL;
}

json_t *cfg_doc_parse(struct cfg_doc *doc, const char *name, const char *text, size_t len,
                      struct diag_list *diags)
{
    struct cfg_parse ctx = {.doc = doc, .diags = diags, .text = text ? text : "", .len = len};
    json_t *root;

    if (!doc)
        return NULL;
    if (!text)
        ctx.len = 0;
    ctx.file = cfg__intern(doc, name ? name : "<input>");
    if (!ctx.file) {
        diag_add(diags, NULL, "out of memory");
        return NULL;
    }
    if (!yaml_parser_initialize(&ctx.yp)) {
        diag_add(diags, NULL, "out of memory");
        return NULL;
    }
    yaml_parser_set_input_string(&ctx.yp, (const unsigned char *)ctx.text, ctx.len);
    root = cfg__document(&ctx);
    yaml_parser_delete(&ctx.yp);
    /* The doc keeps its own reference; the caller borrows. */
    json_decref(root);
    return ctx.errors ? NULL : root;
}

json_t *cfg_doc_parse_file(struct cfg_doc *doc, const char *path, struct diag_list *diags)
{
    char *buf = NULL;
    size_t len = 0, cap = 0;
    json_t *root = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0)
        goto fail_errno;
    for (;;) {
        if (cap - len < 4096) {
            size_t ncap = cap ? cap * 2 : 16384;
            char *nbuf = ncap > cap ? realloc(buf, ncap) : NULL;
            if (!nbuf) {
                diag_add(diags, NULL, "cannot read \"%s\": out of memory", path);
                goto fail;
            }
            buf = nbuf;
            cap = ncap;
        }
        ssize_t n = read(fd, buf + len, cap - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            goto fail_errno;
        if (n == 0)
            break;
        len += (size_t)n;
    }
    root = cfg_doc_parse(doc, path, buf, len, diags);
    free(buf);
    close(fd);
    return root;
fail_errno:
    diag_add(diags, NULL, "cannot read \"%s\": %s", path, strerror(errno));
fail:
    free(buf);
    if (fd >= 0)
        close(fd);
    return NULL;
}

/* --- listing a directory --------------------------------------------------------------- */

static int cfg__is_yaml_name(const char *name)
{
    size_t n = strlen(name);
    if (name[0] == '.')
        return 0;
    return (n > 5 && strcmp(name + n - 5, ".yaml") == 0) ||
           (n > 4 && strcmp(name + n - 4, ".yml") == 0);
}

static int cfg__cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

void cfg_free_list(char **list)
{
    if (!list)
        return;
    for (char **p = list; *p; p++)
        free(*p);
    free(list);
}

char **cfg_list_dir(const char *dir, struct diag_list *diags)
{
    char **list = NULL;
    size_t n = 0, cap = 0;
    DIR *d = opendir(dir);
    size_t dlen = strlen(dir);

    /* "conf.d/" gives "conf.d/a.yaml", not "conf.d//a.yaml". */
    while (dlen > 1 && dir[dlen - 1] == '/')
        dlen--;
    if (!d)
        goto fail_errno;
    for (;;) {
        errno = 0;
        struct dirent *de = readdir(d);
        if (!de) {
            if (errno)
                goto fail_errno;
            break;
        }
        if (!cfg__is_yaml_name(de->d_name))
            continue;
        size_t nlen = strlen(de->d_name);
        int slash = !(dlen == 1 && dir[0] == '/');
        char *path = malloc(dlen + (size_t)slash + nlen + 1);
        if (!path)
            goto oom;
        memcpy(path, dir, dlen);
        if (slash)
            path[dlen] = '/';
        memcpy(path + dlen + (size_t)slash, de->d_name, nlen + 1);
        struct stat st;
        /* stat() follows symlinks; dangling ones and non-files are skipped. */
        if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) {
            free(path);
            continue;
        }
        if (n + 1 >= cap) {
            size_t ncap = cap ? cap * 2 : 16;
            char **nlist = realloc(list, ncap * sizeof *nlist);
            if (!nlist) {
                free(path);
                goto oom;
            }
            list = nlist;
            cap = ncap;
        }
        list[n++] = path;
        list[n] = NULL;
    }
    closedir(d);
    if (!list) {
        list = calloc(1, sizeof *list);
        if (!list) {
            diag_add(diags, NULL, "out of memory");
            return NULL;
        }
    }
    qsort(list, n, sizeof *list, cfg__cmp);
    return list;
fail_errno:
    diag_add(diags, NULL, "cannot read configuration directory \"%s\": %s", dir, strerror(errno));
    goto fail;
oom:
    diag_add(diags, NULL, "out of memory");
fail:
    if (d)
        closedir(d);
    if (list)
        list[n] = NULL;
    cfg_free_list(list);
    return NULL;
}
