/* arqonbus-cli: the position of a sub in its channel's history. See cli_recover.h. */
#include "cli_recover.h"

#include <stdio.h>
#include <string.h>

void cli_recover_note(struct cli_recover *r, const char *id)
{
    if (!id || !*id || strlen(id) >= CLI_RECOVER_ID_SIZE)
        return;
    memcpy(r->ids[r->next], id, strlen(id) + 1);
    r->next = (r->next + 1) % CLI_RECOVER_IDS;
    if (r->n < CLI_RECOVER_IDS)
        r->n++;
}

int cli_recover_seen(const struct cli_recover *r, const char *id)
{
    if (!id || !*id)
        return 0;
    for (size_t i = 0; i < r->n; i++)
        if (strcmp(r->ids[i], id) == 0)
            return 1;
    return 0;
}

/* The history's epoch and the offset of its last entry (0 without entries). */
static int cli__position_of(const json_t *history, const char **epoch, uint64_t *offset)
{
    const json_t *entries = json_object_get(history, "entries");
    if (!json_is_object(history) || !json_is_array(entries))
        return -1;
    *epoch = json_string_value(json_object_get(history, "epoch"));
    size_t n = json_array_size(entries);
    json_int_t last =
        n ? json_integer_value(json_object_get(json_array_get(entries, n - 1), "offset")) : 0;
    *offset = last > 0 ? (uint64_t)last : 0;
    return 0;
}

static void cli__set_position(struct cli_recover *r, const char *epoch, uint64_t offset)
{
    r->known = 1;
    snprintf(r->epoch, sizeof r->epoch, "%s",
             epoch && strlen(epoch) < sizeof r->epoch ? epoch : "");
    r->offset = offset;
}

int cli_recover_position(struct cli_recover *r, const json_t *history)
{
    const char *epoch;
    uint64_t offset;
    if (cli__position_of(history, &epoch, &offset) < 0)
        return -1;
    cli__set_position(r, epoch, offset);
    return 0;
}

json_t *cli_recover_join_args(const struct cli_recover *r, const char *room, const char *channel)
{
    json_t *a = json_pack("{s:s, s:s, s:I, s:i}", "room", room, "channel", channel, "since_offset",
                          (json_int_t)r->offset, "limit", CLI_RECOVER_LIMIT);
    if (a && r->epoch[0] && json_object_set_new(a, "epoch", json_string(r->epoch)) < 0) {
        json_decref(a);
        return NULL;
    }
    return a;
}

struct cli_recovered cli_recover_take(struct cli_recover *r, const json_t *history,
                                      void (*print)(void *arg, size_t index), void *arg)
{
    struct cli_recovered got = {0};
    const char *epoch;
    uint64_t offset;
    if (cli__position_of(history, &epoch, &offset) < 0)
        return got;
    got.available = 1;
    got.recovered = json_is_true(json_object_get(history, "recovered"));
    const json_t *entries = json_object_get(history, "entries");
    got.full = json_array_size(entries) >= CLI_RECOVER_LIMIT;
    size_t i;
    const json_t *e;
    json_array_foreach(entries, i, e)
    {
        const json_t *env = json_object_get(e, "envelope");
        const char *id = json_string_value(json_object_get(env, "id"));
        if (!json_is_object(env) || cli_recover_seen(r, id))
            continue;
        print(arg, i);
        cli_recover_note(r, id);
        got.fresh++;
    }
    /* An empty answer keeps the position: nothing was stored after it. */
    if (json_array_size(entries) || !got.recovered)
        cli__set_position(r, epoch, json_array_size(entries) ? offset : 0);
    else if (epoch)
        cli__set_position(r, epoch, r->offset);
    return got;
}
