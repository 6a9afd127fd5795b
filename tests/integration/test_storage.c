/* History and recovery through the memory storage, over WebSocket against a real arqonbusd:
 * acks with offsets and epochs, the history command, recovery by offset+epoch, join_channel
 * that recovers with no gap and no duplicate, history across a reload. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "bus_client.h"

static int start(struct fixture *f, int with_storage)
{
    h_write(f->dir, "00.yaml",
            "host:\n  plugin_dir: %s\nplugins:\n  ws:\n    module: transport-websocket\n"
            "    config:\n      host: 127.0.0.1\n      port: 0\n"
            "  builtin:\n    module: commands-builtin\n"
            "  history:\n    module: storage-memory\n    enabled: %s\n"
            "    config:\n      max_history: 100\n",
            ARQ_BUILD_PLUGIN_DIR, with_storage ? "true" : "false");
    h_spawn(&f->p, f->dir, f->logs, NULL, NULL);
    return bc_port(&f->p);
}

/* Publish {n} to lobby/general; returns the ack's offset and copies its epoch. */
static json_int_t publish(struct bus_client *c, int n, char *epoch, size_t size)
{
    bc_send(c, "{s:s, s:s, s:s, s:{s:i}}", "type", "message", "room", "lobby", "channel", "general",
            "payload", "n", n);
    json_t *ack = bc_expect(c, "message_response", 5000);
    const json_t *p = json_object_get(ack, "payload");
    json_int_t offset = json_integer_value(json_object_get(p, "offset"));
    if (epoch)
        snprintf(epoch, size, "%s", bc_str(p, "epoch"));
    json_decref(ack);
    return offset;
}

static int payload_n(const json_t *envelope)
{
    return (int)json_integer_value(json_object_get(json_object_get(envelope, "payload"), "n"));
}

static void test_acks_carry_offsets_and_history_returns_them_oldest_first(void **state)
{
    struct fixture *f = *state;
    int port = start(f, 1);
    struct bus_client *a = bc_connect(port, NULL);
    bc_join(a, "lobby", "general");
    char epoch[64] = "", e2[64];
    for (int i = 1; i <= 5; i++) {
        assert_int_equal(publish(a, i, e2, sizeof e2), i);
        if (!epoch[0])
            snprintf(epoch, sizeof epoch, "%s", e2);
        assert_string_equal(e2, epoch); /* one epoch for the channel */
    }
    json_t *r;
    const json_t *d = bc_command_ok(a, &r, "history", "{s:s, s:s, s:i}", "room", "lobby", "channel",
                                    "general", "limit", 3);
    assert_int_equal(json_integer_value(json_object_get(d, "count")), 3);
    assert_string_equal(bc_str(d, "epoch"), epoch);
    assert_false(json_is_true(json_object_get(d, "recovered")));
    const json_t *entries = json_object_get(d, "entries");
    for (int i = 0; i < 3; i++) {
        const json_t *e = json_array_get(entries, (size_t)i);
        assert_int_equal(json_integer_value(json_object_get(e, "offset")), 3 + i);
        assert_int_equal(payload_n(json_object_get(e, "envelope")), 3 + i);
        assert_string_equal(bc_str(json_object_get(e, "envelope"), "sender"), a->id);
        assert_true(strlen(bc_str(e, "stored_at")) > 0);
    }
    json_decref(r);
    /* The aliases answer the same. */
    d = bc_command_ok(a, &r, "op.history.get", "{s:s, s:s}", "room", "lobby", "channel", "general");
    assert_int_equal(json_integer_value(json_object_get(d, "count")), 5);
    json_decref(r);
    /* A room with nothing stored, and a limit out of range. */
    r = bc_command(a, "history", "{s:s, s:s, s:i}", "room", "lobby", "channel", "general", "limit",
                   1001);
    assert_string_equal(bc_str(r, "error_code"), "VALIDATION_ERROR");
    json_decref(r);
    bc_free(a);
    assert_int_equal(h_stop(f), 0);
}

static void test_recovery_returns_exactly_the_missed_messages(void **state)
{
    struct fixture *f = *state;
    int port = start(f, 1);
    struct bus_client *a = bc_connect(port, NULL), *b = bc_connect(port, NULL);
    bc_join(a, "lobby", "general");
    bc_join(b, "lobby", "general");
    char epoch[64];
    json_int_t last_seen = 0;
    for (int i = 1; i <= 3; i++)
        last_seen = publish(a, i, epoch, sizeof epoch);
    bc_free(b); /* b saw 1..3, then went away */
    for (int i = 4; i <= 7; i++)
        publish(a, i, NULL, 0);

    b = bc_connect(port, NULL);
    json_t *r;
    const json_t *d =
        bc_command_ok(b, &r, "history", "{s:s, s:s, s:I, s:s}", "room", "lobby", "channel",
                      "general", "since_offset", last_seen, "epoch", epoch);
    assert_true(json_is_true(json_object_get(d, "recovered")));
    const json_t *entries = json_object_get(d, "entries");
    assert_int_equal(json_array_size(entries), 4);
    for (size_t i = 0; i < 4; i++)
        assert_int_equal(payload_n(json_object_get(json_array_get(entries, i), "envelope")),
                         4 + (int)i);
    json_decref(r);

    /* An epoch that is not the channel's: not recovered, the newest messages instead. */
    d = bc_command_ok(b, &r, "history", "{s:s, s:s, s:I, s:s, s:i}", "room", "lobby", "channel",
                      "general", "since_offset", last_seen, "epoch", "0000000000000000", "limit",
                      2);
    assert_false(json_is_true(json_object_get(d, "recovered")));
    entries = json_object_get(d, "entries");
    assert_int_equal(json_array_size(entries), 2);
    assert_int_equal(payload_n(json_object_get(json_array_get(entries, 1), "envelope")), 7);
    json_decref(r);

    /* A client that never received anything recovers from offset 0. */
    d = bc_command_ok(b, &r, "history", "{s:s, s:s, s:i}", "room", "lobby", "channel", "general",
                      "since_offset", 0);
    assert_true(json_is_true(json_object_get(d, "recovered")));
    assert_int_equal(json_integer_value(json_object_get(d, "count")), 7);
    json_decref(r);
    bc_free(a);
    bc_free(b);
    assert_int_equal(h_stop(f), 0);
}

static void test_join_channel_recovers_with_no_gap_and_no_duplicate(void **state)
{
    struct fixture *f = *state;
    int port = start(f, 1);
    struct bus_client *pub = bc_connect(port, "/?ack=0"), *b = bc_connect(port, NULL);
    bc_join(pub, "lobby", "general");
    for (int i = 1; i <= 10; i++)
        bc_send(pub, "{s:s, s:s, s:s, s:{s:i}}", "type", "message", "room", "lobby", "channel",
                "general", "payload", "n", i);
    /* b had received up to offset 4 of this epoch... */
    json_t *r;
    const json_t *d = bc_command_ok(b, &r, "history", "{s:s, s:s, s:i}", "room", "lobby", "channel",
                                    "general", "limit", 1);
    char epoch[64];
    snprintf(epoch, sizeof epoch, "%s", bc_str(d, "epoch"));
    json_decref(r);
    /* ...and rejoins from there while messages keep coming. */
    json_t *cmd =
        json_pack("{s:s, s:s, s:s, s:{s:s, s:s, s:i, s:s}}", "id", "arq_1700000000000_9_abcdef",
                  "type", "command", "command", "join_channel", "args", "room", "lobby", "channel",
                  "general", "since_offset", 4, "epoch", epoch);
    char *text = json_dumps(cmd, JSON_COMPACT);
    json_decref(cmd);
    for (int i = 11; i <= 20; i++) {
        if (i == 13)
            assert_int_equal(ws_send_text(b->ws, text, strlen(text)), 0);
        bc_send(pub, "{s:s, s:s, s:s, s:{s:i}}", "type", "message", "room", "lobby", "channel",
                "general", "payload", "n", i);
    }
    free(text);
    /* Whatever the interleaving: the reply's history, then live messages, cover 5..20 once
     * each, in order. */
    int next = 5;
    json_t *resp = bc_expect(b, "response", 5000);
    const json_t *history =
        json_object_get(json_object_get(json_object_get(resp, "payload"), "data"), "history");
    assert_true(json_is_true(json_object_get(history, "recovered")));
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(history, "entries"), i, e)
        assert_int_equal(payload_n(json_object_get(e, "envelope")), next++);
    json_decref(resp);
    /* ...and nothing twice: a later marker is the very next message. */
    bc_send(pub, "{s:s, s:s, s:s, s:{s:i}}", "type", "message", "room", "lobby", "channel",
            "general", "payload", "n", 21);
    while (next <= 21) {
        json_t *m = bc_expect(b, "message", 5000);
        assert_int_equal(payload_n(m), next++);
        json_decref(m);
    }
    bc_free(pub);
    bc_free(b);
    assert_int_equal(h_stop(f), 0);
}

static void test_history_survives_a_reload(void **state)
{
    struct fixture *f = *state;
    int port = start(f, 1);
    struct bus_client *a = bc_connect(port, NULL);
    bc_join(a, "lobby", "general");
    char epoch[64], after[64];
    for (int i = 1; i <= 3; i++)
        publish(a, i, epoch, sizeof epoch);
    assert_int_equal(h_reload(f), 1);
    assert_int_equal(publish(a, 4, after, sizeof after), 4);
    assert_string_equal(after, epoch);
    json_t *r;
    const json_t *d =
        bc_command_ok(a, &r, "history", "{s:s, s:s}", "room", "lobby", "channel", "general");
    assert_int_equal(json_integer_value(json_object_get(d, "count")), 4);
    json_decref(r);
    bc_free(a);
    assert_int_equal(h_stop(f), 0);
}

static void test_without_storage_history_is_unavailable_and_acks_have_no_offset(void **state)
{
    struct fixture *f = *state;
    int port = start(f, 0);
    struct bus_client *a = bc_connect(port, NULL);
    bc_join(a, "lobby", "general");
    char epoch[64];
    assert_int_equal(publish(a, 1, epoch, sizeof epoch), 0);
    assert_string_equal(epoch, "");
    json_t *r = bc_command(a, "history", "{s:s, s:s}", "room", "lobby", "channel", "general");
    assert_string_equal(bc_str(r, "error_code"), "STORAGE_UNAVAILABLE");
    json_decref(r);
    bc_free(a);
    assert_int_equal(h_stop(f), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            test_acks_carry_offsets_and_history_returns_them_oldest_first, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_recovery_returns_exactly_the_missed_messages, h_setup,
                                        h_teardown),
        cmocka_unit_test_setup_teardown(test_join_channel_recovers_with_no_gap_and_no_duplicate,
                                        h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_history_survives_a_reload, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(
            test_without_storage_history_is_unavailable_and_acks_have_no_offset, h_setup,
            h_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
