/* Cluster-wide queries: the query script on the shard that holds the answer (a room's, a
 * client's), on any one shard for "nodes" (every node beats on every shard), or on every shard
 * for "rooms", whose answers are concatenated. Lists are sorted by name. Any shard needed being
 * down fails the query with EXECUTION_ERROR: a partial listing would pass for the whole cluster's.
 */
#include <hiredis/hiredis.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bredis.h"

struct br_query {
    struct br_query *next, *prev; /* in the instance's list until answered */
    struct broker *b;
    char what[16];
    char *id; /* "client": the client id asked about */
    arq_result_cb cb;
    void *arg;
    size_t awaited;
    int failed;
    char error[300];
    json_t *acc; /* the answer being built */
};

static void query__unlink(struct broker *b, struct br_query *q)
{
    if (q->prev)
        q->prev->next = q->next;
    else
        b->queries = q->next;
    if (q->next)
        q->next->prev = q->prev;
}

/* Answers are sorted, so that they read the same whatever the shards and Redis' set order. */
static const char *query__sort_key(const json_t *item)
{
    if (json_is_string(item))
        return json_string_value(item);
    const char *k = json_string_value(json_object_get(item, "room"));
    if (!k)
        k = json_string_value(json_object_get(item, "channel"));
    if (!k)
        k = json_string_value(json_object_get(item, "node"));
    return k ? k : "";
}

static int query__order(const void *a, const void *b)
{
    return strcmp(query__sort_key(*(json_t *const *)a), query__sort_key(*(json_t *const *)b));
}

static void query__sort(json_t *array)
{
    size_t n = json_array_size(array);
    json_t **items = n > 1 ? malloc(n * sizeof *items) : NULL;
    if (!items)
        return; /* unsorted rather than nothing */
    for (size_t i = 0; i < n; i++)
        items[i] = json_incref(json_array_get(array, i));
    qsort(items, n, sizeof *items, query__order);
    json_array_clear(array);
    for (size_t i = 0; i < n; i++)
        json_array_append_new(array, items[i]);
    free(items);
}

static void query__finish(struct br_query *q)
{
    struct broker *b = q->b;
    query__unlink(b, q);
    if (q->failed) {
        q->cb(q->arg, ARQ_ERR_EXECUTION, q->error, NULL);
    } else if (strcmp(q->what, "client") == 0 && json_is_null(q->acc)) {
        char text[300];
        snprintf(text, sizeof text, "Client %s is not connected", q->id);
        q->cb(q->arg, ARQ_ERR_NOT_FOUND, text, NULL);
    } else {
        query__sort(q->acc);
        q->cb(q->arg, NULL, NULL, q->acc);
    }
    json_decref(q->acc);
    free(q->id);
    free(q);
}

/* The first failure is the answer (its text cut to fit). */
static void query__fail(struct br_query *q, const char *fmt, ...) ARQ_PRINTF(2, 3);
static void query__fail(struct br_query *q, const char *fmt, ...)
{
    if (q->failed)
        return;
    q->failed = 1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(q->error, sizeof q->error, fmt, ap);
    va_end(ap);
}

static int query__int(const redisReply *r, long long *out)
{
    if (r->type != REDIS_REPLY_INTEGER)
        return -1;
    *out = r->integer;
    return 0;
}

/* Fold one shard's reply into the answer. 0, or -1 when it is not what the script returns. */
static int query__merge(struct br_query *q, const redisReply *r)
{
    if (strcmp(q->what, "client") == 0) {
        if (r->type == REDIS_REPLY_NIL)
            return 0;
        if (r->type != REDIS_REPLY_STRING)
            return -1;
        json_decref(q->acc);
        q->acc = json_pack("{s:s#}", "node", r->str, (int)r->len);
        return q->acc ? 0 : -1;
    }
    if (r->type != REDIS_REPLY_ARRAY)
        return -1;
    int members = strcmp(q->what, "members") == 0;
    int rooms = strcmp(q->what, "rooms") == 0;
    size_t stride = members ? 1 : rooms ? 3 : 2;
    if (r->elements % stride)
        return -1;
    for (size_t i = 0; i < r->elements; i += stride) {
        const redisReply *name = r->element[i];
        long long n = 0, c = 0;
        if (name->type != REDIS_REPLY_STRING || (stride > 1 && query__int(r->element[i + 1], &n)) ||
            (stride > 2 && query__int(r->element[i + 2], &c)))
            return -1;
        json_t *item;
        if (members)
            item = json_stringn(name->str, name->len);
        else if (rooms)
            item = json_pack("{s:s#, s:I, s:I}", "room", name->str, (int)name->len, "members",
                             (json_int_t)n, "channels", (json_int_t)c);
        else
            item = json_pack("{s:s#, s:I}", strcmp(q->what, "nodes") == 0 ? "node" : "channel",
                             name->str, (int)name->len,
                             strcmp(q->what, "nodes") == 0 ? "clients" : "members", (json_int_t)n);
        if (json_array_append_new(q->acc, item) != 0)
            return -1;
    }
    return 0;
}

static void query__on_reply(struct br_shard *sh, const void *reply, void *arg)
{
    struct br_query *q = arg;
    const redisReply *r = reply;
    if (!r)
        query__fail(q, "broker: redis at %s unreachable", sh ? sh->where : "?");
    else if (r->type == REDIS_REPLY_ERROR)
        query__fail(q, "broker: redis at %s: %s", sh->where, r->str);
    else if (!q->failed && query__merge(q, r) != 0)
        query__fail(q, "broker: unexpected reply from redis at %s", sh->where);
    if (--q->awaited == 0)
        query__finish(q);
}

static int query__send(struct br_query *q, struct br_shard *sh, const char *room,
                       const char *channel)
{
    const char *argv[] = {"0", q->b->cfg.prefix, q->what, room ? room : "", channel ? channel : ""};
    if (sh->state != BR_UP) {
        query__fail(q, "broker: redis at %s unreachable (%s)", sh->where, sh->last_error);
        return -1;
    }
    if (shard__eval(sh, BR_LUA_QUERY, 5, argv, NULL, query__on_reply, q, 0) != 0) {
        query__fail(q, "broker: cannot send to redis at %s", sh->where);
        return -1;
    }
    q->awaited++;
    return 0;
}

int queries__query(struct broker *b, const char *what, const char *room, const char *channel,
                   arq_result_cb cb, void *arg)
{
    static const char *const known[] = {"rooms", "channels", "members", "nodes", "client", NULL};
    size_t k = 0;
    while (known[k] && strcmp(known[k], what) != 0)
        k++;
    if (!known[k] || (k >= 1 && k != 3 && !room)) {
        cb(arg, ARQ_ERR_VALIDATION, "broker: unknown query or missing room", NULL);
        return ARQ_EINVAL;
    }
    struct br_query *q = calloc(1, sizeof *q);
    if (!q || (k == 4 && !(q->id = strdup(room)))) {
        free(q);
        cb(arg, ARQ_ERR_INTERNAL, "broker: out of memory", NULL);
        return ARQ_ENOMEM;
    }
    q->b = b;
    snprintf(q->what, sizeof q->what, "%s", what);
    q->cb = cb;
    q->arg = arg;
    q->acc = k == 4 ? json_null() : json_array();
    q->next = b->queries;
    if (b->queries)
        b->queries->prev = q;
    b->queries = q;
    q->awaited = 1; /* held while sending: replies may not finish it early */
    if (k == 0) {
        for (size_t i = 0; i < b->nshards && !q->failed; i++)
            query__send(q, &b->shards[i], NULL, NULL);
    } else if (k == 3) {
        size_t i = 0;
        while (i < b->nshards && b->shards[i].state != BR_UP)
            i++;
        query__send(q, &b->shards[i < b->nshards ? i : 0], NULL, NULL);
    } else {
        query__send(q, &b->shards[broker__shard_of(b, room)], room, k == 2 ? channel : NULL);
    }
    if (--q->awaited == 0)
        query__finish(q);
    return ARQ_OK;
}

void queries__close(struct broker *b)
{
    /* Queries still listed await a reply that shard__close has already failed: none here. */
    while (b->queries) {
        struct br_query *q = b->queries;
        /* q is the head: query__finish unlinks it before freeing it, so the next round reads
         * a new head. NOLINTNEXTLINE(clang-analyzer-unix.Malloc) */
        query__fail(q, "broker: stopping");
        q->awaited = 0;
        query__finish(q);
    }
}
