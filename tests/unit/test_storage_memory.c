/* storage-memory (the built plugins/storage-memory.so) against the mock host: its descriptor and
 * options, append answering at once with offset and epoch, history queries with and without
 * recovery, health and stats, and reconfigure applying new limits to the history it holds. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loader.h"
#include "mock_host.h"

#define PLUGIN ARQ_BUILD_PLUGIN_DIR "/storage-memory.so"

static void *handle;
static const struct arq_plugin *desc;
static const struct arq_storage_ops *ops;

static int load_plugin(void **state)
{
    (void)state;
    desc = mock_host_load_plugin(PLUGIN, &handle);
    ops = desc ? desc->ops : NULL;
    return desc ? 0 : -1;
}

static int unload_plugin(void **state)
{
    (void)state;
    return mock_host_unload_plugin(handle);
}

static int setup(void **state)
{
    return mock_instance_setup(state, "history");
}

static int teardown(void **state)
{
    return mock_instance_teardown(state, desc);
}

static json_t *config(const char *yaml)
{
    json_t *cfg = mock_host_validate(desc->options, yaml, NULL);
    assert_non_null(cfg);
    return cfg;
}

static void create(struct mock_instance *f, const char *yaml)
{
    mock_host_create_plugin(f->mh, desc, config(yaml), &f->self);
}

/* What the append callback got. */
struct appended {
    int calls, status;
    uint64_t offset;
    char epoch[64];
};

static void on_append(void *arg, int status, uint64_t offset, const char *epoch)
{
    struct appended *a = arg;
    a->calls++;
    a->status = status;
    a->offset = offset;
    snprintf(a->epoch, sizeof a->epoch, "%s", epoch ? epoch : "(null)");
}

static struct appended append(struct mock_instance *f, const char *room, const char *channel,
                              const char *id)
{
    char json[128];
    snprintf(json, sizeof json, "{\"id\":\"%s\",\"type\":\"message\"}", id);
    struct arq_stored msg = {.struct_size = sizeof msg,
                             .room = room,
                             .channel = channel,
                             .id = id,
                             .timestamp_us = 1700000000000000,
                             .json = json,
                             .json_len = strlen(json)};
    struct appended a = {0};
    assert_int_equal(ops->append(f->self, &msg, on_append, &a), ARQ_OK);
    /* Answered before append returned. */
    assert_int_equal(a.calls, 1);
    assert_int_equal(a.status, ARQ_OK);
    return a;
}

/* What the history callback got, copied out of the borrowed entries. */
struct answered {
    int calls, status, recovered;
    size_t n;
    char ids[256]; /* "id:offset " each */
    char epoch[64];
};

static void on_history(void *arg, int status, const struct arq_stored *const *entries, size_t n,
                       const char *epoch, int recovered)
{
    struct answered *a = arg;
    a->calls++;
    a->status = status;
    a->n = n;
    a->recovered = recovered;
    snprintf(a->epoch, sizeof a->epoch, "%s", epoch ? epoch : "(null)");
    a->ids[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        const struct arq_stored *e = entries[i];
        assert_true(e->stored_us > 1500000000000000); /* wall-clock microseconds */
        assert_int_equal(e->timestamp_us, 1700000000000000);
        assert_memory_equal(e->json, "{\"id\":\"", 7);
        snprintf(a->ids + strlen(a->ids), sizeof a->ids - strlen(a->ids), "%s:%llu ", e->id,
                 (unsigned long long)e->offset);
    }
}

static struct answered query(struct mock_instance *f, const struct arq_history_query *q)
{
    struct answered a = {0};
    assert_int_equal(ops->query(f->self, q, on_history, &a), ARQ_OK);
    assert_int_equal(a.calls, 1);
    assert_int_equal(a.status, ARQ_OK);
    return a;
}

static struct answered newest(struct mock_instance *f, const char *room, const char *channel,
                              unsigned limit)
{
    struct arq_history_query q = {
        .struct_size = sizeof q, .room = room, .channel = channel, .limit = limit};
    return query(f, &q);
}

static json_t *stats(struct mock_instance *f)
{
    json_t *s = ops->stats(f->self);
    assert_non_null(s);
    return s;
}

static void expect_stats(struct mock_instance *f, json_int_t messages, json_int_t bytes,
                         json_int_t rings)
{
    json_t *s = stats(f);
    assert_int_equal(json_object_size(s), 3);
    assert_int_equal(json_integer_value(json_object_get(s, "messages")), messages);
    assert_int_equal(json_integer_value(json_object_get(s, "bytes")), bytes);
    assert_int_equal(json_integer_value(json_object_get(s, "rings")), rings);
    json_decref(s);
}

/* --- tests --------------------------------------------------------------------------------- */

static void descriptor_is_a_storage_backend_with_reloadable_limits(void **state)
{
    (void)state;
    char err[600] = "";
    assert_int_equal(loader_check_descriptor(desc, err, sizeof err), 0);
    assert_string_equal(err, "");
    assert_string_equal(desc->name, "storage-memory");
    assert_int_equal(desc->kind, ARQ_KIND_STORAGE);
    assert_non_null(desc->reconfigure);
    assert_non_null(ops->health);
    assert_non_null(ops->stats);
    static const char *const names[] = {"max_history", "max_bytes", "ttl"};
    static const enum arq_opt_type types[] = {ARQ_OPT_INT, ARQ_OPT_SIZE, ARQ_OPT_DURATION};
    for (size_t i = 0; i < 3; i++) {
        assert_string_equal(desc->options[i].name, names[i]);
        assert_int_equal(desc->options[i].type, types[i]);
        assert_true(desc->options[i].flags & ARQ_OPT_RELOADABLE);
    }
    assert_null(desc->options[3].name);
}

static void defaults_are_10000_messages_256MiB_and_no_ttl(void **state)
{
    (void)state;
    json_t *cfg = config("");
    assert_int_equal(json_integer_value(json_object_get(cfg, "max_history")), 10000);
    assert_int_equal(json_integer_value(json_object_get(cfg, "max_bytes")), 256 * 1024 * 1024);
    assert_int_equal(json_integer_value(json_object_get(cfg, "ttl")), 0);
    json_decref(cfg);
    cfg = config("max_history: 50\nmax_bytes: 1MiB\nttl: 1h\n");
    assert_int_equal(json_integer_value(json_object_get(cfg, "max_history")), 50);
    assert_int_equal(json_integer_value(json_object_get(cfg, "max_bytes")), 1024 * 1024);
    assert_int_equal(json_integer_value(json_object_get(cfg, "ttl")), 3600000);
    json_decref(cfg);
}

static void append_answers_at_once_with_offset_and_epoch(void **state)
{
    struct mock_instance *f = *state;
    create(f, "");
    struct appended a1 = append(f, "lobby", "general", "m1");
    struct appended a2 = append(f, "lobby", "general", "m2");
    struct appended b1 = append(f, "lobby", NULL, "r1");
    assert_int_equal(a1.offset, 1);
    assert_int_equal(a2.offset, 2);
    assert_int_equal(b1.offset, 1);
    assert_string_equal(a1.epoch, a2.epoch);
    assert_int_equal(strlen(a1.epoch), 16);
    assert_string_not_equal(a1.epoch, b1.epoch);
    /* The callback is optional. */
    struct arq_stored msg = {.struct_size = sizeof msg,
                             .room = "lobby",
                             .channel = "general",
                             .id = "m3",
                             .json = "{\"id\":\"m3\"}",
                             .json_len = 11};
    assert_int_equal(ops->append(f->self, &msg, NULL, NULL), ARQ_OK);
    assert_int_equal(append(f, "lobby", "general", "m4").offset, 4);
}

static void query_gives_the_newest_and_recovers_what_was_missed(void **state)
{
    struct mock_instance *f = *state;
    create(f, "");
    char id[8];
    struct appended a = {0};
    for (int i = 1; i <= 5; i++) {
        snprintf(id, sizeof id, "m%d", i);
        a = append(f, "lobby", "general", id);
    }
    struct answered h = newest(f, "lobby", "general", 2);
    assert_string_equal(h.ids, "m4:4 m5:5 ");
    assert_int_equal(h.recovered, 0);
    assert_string_equal(h.epoch, a.epoch);

    struct arq_history_query q = {.struct_size = sizeof q,
                                  .room = "lobby",
                                  .channel = "general",
                                  .limit = 50,
                                  .recover = 1,
                                  .since_offset = 2,
                                  .epoch = a.epoch};
    h = query(f, &q);
    assert_string_equal(h.ids, "m3:3 m4:4 m5:5 ");
    assert_int_equal(h.recovered, 1);
    q.epoch = "0000000000000000";
    q.limit = 1;
    h = query(f, &q);
    assert_string_equal(h.ids, "m5:5 ");
    assert_int_equal(h.recovered, 0);

    /* A channel with nothing yet: its epoch, recovered from offset 0. */
    q = (struct arq_history_query){
        .struct_size = sizeof q, .room = "lobby", .channel = "quiet", .limit = 10, .recover = 1};
    h = query(f, &q);
    assert_int_equal(h.n, 0);
    assert_int_equal(h.recovered, 1);
    assert_int_equal(strlen(h.epoch), 16);
    char quiet_epoch[64];
    snprintf(quiet_epoch, sizeof quiet_epoch, "%s", h.epoch);
    assert_string_equal(append(f, "lobby", "quiet", "q1").epoch, quiet_epoch);
}

static void max_history_bounds_each_channel(void **state)
{
    struct mock_instance *f = *state;
    create(f, "max_history: 2\n");
    append(f, "lobby", "general", "m1");
    append(f, "lobby", "general", "m2");
    append(f, "lobby", "general", "m3");
    append(f, "lobby", "other", "o1");
    assert_string_equal(newest(f, "lobby", "general", 10).ids, "m2:2 m3:3 ");
    assert_string_equal(newest(f, "lobby", "other", 10).ids, "o1:1 ");
}

static void health_is_healthy_and_stats_count_messages_bytes_rings(void **state)
{
    struct mock_instance *f = *state;
    create(f, "");
    const char *detail = "unset";
    assert_int_equal(ops->health(f->self, &detail), 0);
    assert_null(detail);
    assert_int_equal(ops->health(f->self, NULL), 0);
    expect_stats(f, 0, 0, 0);
    append(f, "lobby", "general", "m1"); /* id 2 + json 28 bytes */
    append(f, "lobby", NULL, "m2");
    expect_stats(f, 2, 2 * (2 + 28), 2);
}

static void reconfigure_keeps_the_history_and_applies_new_limits(void **state)
{
    struct mock_instance *f = *state;
    create(f, "max_history: 10\n");
    char id[8];
    struct appended a = {0};
    for (int i = 1; i <= 6; i++) {
        snprintf(id, sizeof id, "m%d", i);
        a = append(f, "lobby", "general", id);
    }
    struct arq_error err = {""};
    json_t *cfg = config("max_history: 10\nmax_bytes: 1MiB\nttl: 1h\n");
    assert_int_equal(desc->reconfigure(f->self, cfg, &err), ARQ_OK);
    json_decref(cfg);
    struct answered h = newest(f, "lobby", "general", 10);
    assert_string_equal(h.ids, "m1:1 m2:2 m3:3 m4:4 m5:5 m6:6 ");
    assert_string_equal(h.epoch, a.epoch);

    /* A lower bound trims at once; offsets and epoch carry on. */
    cfg = config("max_history: 3\n");
    assert_int_equal(desc->reconfigure(f->self, cfg, &err), ARQ_OK);
    json_decref(cfg);
    assert_string_equal(newest(f, "lobby", "general", 10).ids, "m4:4 m5:5 m6:6 ");
    struct appended b = append(f, "lobby", "general", "m7");
    assert_int_equal(b.offset, 7);
    assert_string_equal(b.epoch, a.epoch);
    expect_stats(f, 3, 3 * (2 + 28), 1);
}

static void refused_append_does_not_call_back_and_is_logged(void **state)
{
    struct mock_instance *f = *state;
    create(f, "");
    struct arq_stored msg = {.struct_size = sizeof msg, .id = "m1", .json = "{}", .json_len = 2};
    struct appended a = {0};
    assert_int_equal(ops->append(f->self, &msg, on_append, &a), ARQ_EINVAL);
    assert_int_equal(a.calls, 0);
    assert_int_equal(mock_host_log_matching(f->mh, "cannot store a message"), 1);
    struct arq_history_query q = {.struct_size = sizeof q, .limit = 10};
    struct answered h = {0};
    assert_int_equal(ops->query(f->self, &q, on_history, &h), ARQ_EINVAL);
    assert_int_equal(h.calls, 0);
    assert_int_equal(mock_host_log_matching(f->mh, "cannot answer a history query"), 1);
}

static void instances_do_not_share_history(void **state)
{
    struct mock_instance *f = *state;
    create(f, "");
    struct mock_host *mh2 = mock_host_new("history-2");
    assert_non_null(mh2);
    void *other = NULL;
    mock_host_create_plugin(mh2, desc, config(""), &other);
    append(f, "lobby", "general", "m1");
    struct answered h = {0};
    struct arq_history_query q = {
        .struct_size = sizeof q, .room = "lobby", .channel = "general", .limit = 10};
    assert_int_equal(ops->query(other, &q, on_history, &h), ARQ_OK);
    assert_int_equal(h.n, 0);
    desc->destroy(other);
    mock_host_free(mh2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(descriptor_is_a_storage_backend_with_reloadable_limits),
        cmocka_unit_test(defaults_are_10000_messages_256MiB_and_no_ttl),
        cmocka_unit_test_setup_teardown(append_answers_at_once_with_offset_and_epoch, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(query_gives_the_newest_and_recovers_what_was_missed, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(max_history_bounds_each_channel, setup, teardown),
        cmocka_unit_test_setup_teardown(health_is_healthy_and_stats_count_messages_bytes_rings,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(reconfigure_keeps_the_history_and_applies_new_limits, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(refused_append_does_not_call_back_and_is_logged, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(instances_do_not_share_history, setup, teardown),
    };
    return cmocka_run_group_tests(tests, load_plugin, unload_plugin);
}
