/* The router in process: memberships, room-wide fan-out without duplicates, pruning of empty
 * rooms and channels, presence events, direct messages, limits and the listings. Everything
 * here is synchronous: once a call returns, every frame it caused is queued, so "nothing
 * arrived" is read right after the call that could have sent it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "bus_fixture.h"

/* --- helpers --------------------------------------------------------------------------------- */

static const char *id_of(const struct fake_client *c)
{
    return conn_svc_client_id(c->conn);
}

/* NULL, or the protocol's error code of the join. */
static const char *try_join(struct fake_client *c, const char *room, const char *channel)
{
    struct arq_error err = {""};
    return bus_svc_join(c->conn, room, channel, &err);
}

static const char *try_leave(struct fake_client *c, const char *room, const char *channel)
{
    struct arq_error err = {""};
    return bus_svc_leave(c->conn, room, channel, &err);
}

static struct arq_ctx *ctx_of(struct bus_fx *f)
{
    return &f->transport->ctx;
}

static const char *create(struct bus_fx *f, const char *room, const char *channel,
                          const char *description)
{
    struct arq_error err = {""};
    return bus_svc_create_channel(ctx_of(f), room, channel, description, &err);
}

static const char *delete (struct bus_fx *f, const char *room, const char *channel, int force)
{
    struct arq_error err = {""};
    return bus_svc_delete_channel(ctx_of(f), room, channel, force, &err);
}

/* A message with payload {"n":n} to room/channel (channel NULL: room-wide). */
static void publish(struct fake_client *c, const char *room, const char *channel, int n)
{
    if (channel)
        fx_sendf(c,
                 "{\"type\":\"message\",\"room\":\"%s\",\"channel\":\"%s\",\"payload\":{\"n\":%d}}",
                 room, channel, n);
    else
        fx_sendf(c, "{\"type\":\"message\",\"room\":\"%s\",\"payload\":{\"n\":%d}}", room, n);
}

/* The next frame is the ack of a message: its payload.delivered. */
static json_int_t acked(struct fake_client *c)
{
    json_t *ack = fx_next(c);
    assert_non_null(ack);
    assert_string_equal(fx_str(ack, "type"), "message_response");
    assert_string_equal(fx_str(ack, "status"), "success");
    return json_integer_value(fx_get(ack, "payload.delivered"));
}

/* The next frame is an error with `code`. */
static json_t *refused(struct fake_client *c, const char *code)
{
    json_t *e = fx_next(c);
    assert_non_null(e);
    assert_string_equal(fx_str(e, "type"), "error");
    assert_string_equal(fx_str(e, "error_code"), code);
    return e;
}

/* The next frame is the message {"n":n}; nothing else is waiting. */
static json_t *got_only(struct fake_client *c, int n)
{
    json_t *m = fx_next(c);
    assert_non_null(m);
    assert_string_equal(fx_str(m, "type"), "message");
    assert_int_equal(json_integer_value(fx_get(m, "payload.n")), n);
    assert_int_equal(fx_unread(c), 0);
    return m;
}

static json_t *query(struct bus_fx *f, struct fake_client *c, const char *what, const char *room,
                     const char *channel, const char **code)
{
    struct arq_error err = {""};
    return bus_svc_query(ctx_of(f), c ? c->conn : NULL, what, room, channel, code, &err);
}

/* The listing of `room` in list_rooms, or NULL. */
static json_t *room_entry(json_t *rooms, const char *room)
{
    size_t i;
    json_t *r;
    json_array_foreach(rooms, i, r) if (!strcmp(fx_str(r, "room"), room)) return r;
    return NULL;
}

static size_t nrooms(struct bus_fx *f)
{
    const char *code;
    json_t *rooms = query(f, NULL, "rooms", NULL, NULL, &code);
    assert_null(code);
    size_t n = json_array_size(rooms);
    json_decref(rooms);
    return n;
}

/* The number of channels of `room` (-1: the room does not exist). */
static int nchannels(struct bus_fx *f, const char *room)
{
    const char *code;
    json_t *chans = query(f, NULL, "channels", room, NULL, &code);
    int n = code ? -1 : (int)json_array_size(chans);
    if (code)
        assert_string_equal(code, "ROOM_NOT_FOUND");
    json_decref(chans);
    return n;
}

static size_t nmemberships(struct bus_fx *f, struct fake_client *c)
{
    const char *code;
    json_t *me = query(f, c, "client", NULL, NULL, &code);
    assert_null(code);
    size_t n = json_array_size(fx_get(me, "memberships"));
    assert_int_equal(n, c->conn->nmemberships);
    json_decref(me);
    return n;
}

/* --- fan-out ------------------------------------------------------------------------------ */

static void a_message_reaches_the_channels_members_once_and_not_the_sender(void **state)
{
    struct bus_fx *f = *state;
    struct fake_client *a = fx_connect(f, NULL), *b = fx_connect(f, NULL), *c = fx_connect(f, NULL);
    assert_non_null(a->conn);
    struct arq_error err;
    assert_null(bus_svc_join(a->conn, "lobby", "general", &err));
    assert_null(bus_svc_join(b->conn, "lobby", "general", &err));
    assert_null(bus_svc_join(c->conn, "lobby", "other", &err));
    fx_expect(a, "message"); /* welcome */
    fx_expect(b, "message");
    fx_expect(c, "message");
    fx_send(
        a,
        "{\"type\":\"message\",\"room\":\"lobby\",\"channel\":\"general\",\"payload\":{\"n\":1}}");
    json_t *got = fx_expect(b, "message");
    assert_int_equal(json_integer_value(fx_get(got, "payload.n")), 1);
    assert_string_equal(fx_str(got, "sender"), conn_svc_client_id(a->conn));
    assert_int_equal(fx_unread(b), 0);
    assert_int_equal(fx_unread(c), 0);
    assert_int_equal(fx_metric(f, "arqonbus_messages_delivered_total"), 1);
}

static void channels_are_scoped_in_their_room_and_a_room_member_is_not_in_them(void **state)
{
    struct bus_fx *f = *state;
    struct fake_client *a = fx_client(f), *b = fx_client(f), *attic = fx_client(f),
                       *room_level = fx_client(f);
    fx_join(a, "lobby", "general");
    fx_join(b, "lobby", "general");
    fx_join(attic, "attic", "general");
    fx_join(room_level, "lobby", NULL);

    publish(a, "lobby", "general", 1);
    assert_int_equal(acked(a), 1);
    assert_int_equal(fx_unread(a), 0);
    json_t *m = got_only(b, 1);
    assert_string_equal(fx_str(m, "room"), "lobby");
    assert_string_equal(fx_str(m, "channel"), "general");
    assert_string_equal(fx_str(m, "sender"), id_of(a));
    assert_int_equal(fx_unread(attic), 0);
    assert_int_equal(fx_unread(room_level), 0);

    /* A room-level member is in none of the room's channels: it may not publish to one. */
    publish(room_level, "lobby", "general", 2);
    refused(room_level, "AUTHORIZATION_ERROR");
    assert_int_equal(fx_unread(a), 0);
    assert_int_equal(fx_unread(b), 0);
}

static void a_room_wide_message_reaches_each_member_of_the_room_once(void **state)
{
    struct bus_fx *f = *state;
    struct fake_client *pub = fx_client(f), *everywhere = fx_client(f), *room_level = fx_client(f);
    struct fake_client *one_channel = fx_client(f), *outsider = fx_client(f);
    fx_join(pub, "lobby", NULL);
    fx_join(everywhere, "lobby", "general");
    fx_join(everywhere, "lobby", "random");
    fx_join(everywhere, "lobby", NULL);
    fx_join(room_level, "lobby", NULL);
    fx_join(one_channel, "lobby", "random");
    fx_join(outsider, "attic", NULL);

    publish(pub, "lobby", NULL, 7);
    assert_int_equal(acked(pub), 3);
    assert_int_equal(fx_unread(pub), 0);
    assert_string_equal(fx_str(got_only(everywhere, 7), "sender"), id_of(pub));
    got_only(room_level, 7);
    got_only(one_channel, 7);
    assert_int_equal(fx_unread(outsider), 0);

    /* A member of a channel may publish to its room; the room-level members get it too. */
    publish(one_channel, "lobby", NULL, 8);
    assert_int_equal(acked(one_channel), 3);
    got_only(pub, 8);
    got_only(everywhere, 8);
    got_only(room_level, 8);
    assert_int_equal(fx_metric(f, "arqonbus_messages_delivered_total"), 6);
}

static void joining_twice_changes_nothing_and_leaving_stops_delivery(void **state)
{
    struct bus_fx *f = *state;
    struct fake_client *a = fx_client(f), *b = fx_client(f);
    fx_join(a, "lobby", "general");
    fx_join(b, "lobby", "general");
    fx_join(b, "lobby", "general");
    assert_int_equal(nmemberships(f, b), 1);
    publish(a, "lobby", "general", 1);
    assert_int_equal(acked(a), 1);
    got_only(b, 1);

    assert_null(try_leave(b, "lobby", "general"));
    assert_int_equal(nmemberships(f, b), 0);
    publish(a, "lobby", "general", 2);
    assert_int_equal(acked(a), 0);
    assert_int_equal(fx_unread(b), 0);

    /* Leaving what one is not a member of. */
    assert_string_equal(try_leave(b, "lobby", "general"), "NOT_FOUND");
    assert_string_equal(try_leave(b, "lobby", NULL), "NOT_FOUND"); /* a is in a channel only */
    assert_string_equal(try_leave(a, "lobby", NULL), "NOT_FOUND");
    assert_string_equal(try_leave(b, "nowhere", NULL), "NOT_FOUND");
    assert_string_equal(try_leave(b, "lobby", "nowhere"), "NOT_FOUND");
    assert_int_equal(nmemberships(f, a), 1);
}

static void members_only_decides_who_may_publish_where(void **state)
{
    struct bus_fx *f = *state;
    struct fake_client *member = fx_client(f), *outsider = fx_client(f);
    fx_join(member, "lobby", "general");

    fx_send(outsider, "{\"id\":\"arq_1700000000000_1_0a0b0c\",\"type\":\"message\",\"room\":"
                      "\"lobby\",\"channel\":\"general\",\"payload\":1}");
    assert_string_equal(fx_str(refused(outsider, "AUTHORIZATION_ERROR"), "request_id"),
                        "arq_1700000000000_1_0a0b0c");
    publish(outsider, "lobby", NULL, 1);
    refused(outsider, "AUTHORIZATION_ERROR");
    publish(outsider, "lobby", "nowhere", 1);
    refused(outsider, "CHANNEL_NOT_FOUND");
    publish(outsider, "nowhere", NULL, 1);
    refused(outsider, "ROOM_NOT_FOUND");
    publish(outsider, "nowhere", "general", 1);
    refused(outsider, "ROOM_NOT_FOUND");
    assert_int_equal(fx_unread(member), 0);
    assert_int_equal(fx_metric(f, "arqonbus_messages_rejected_total"), 5);

    fx_configure(f, "members_only: false");
    publish(outsider, "lobby", "general", 2);
    assert_int_equal(acked(outsider), 1);
    got_only(member, 2);
    publish(outsider, "lobby", NULL, 3);
    assert_int_equal(acked(outsider), 1);
    got_only(member, 3);
    /* What does not exist still does not. */
    publish(outsider, "lobby", "nowhere", 1);
    refused(outsider, "CHANNEL_NOT_FOUND");
}

/* --- rooms and channels: creation, limits, pruning ---------------------------------------- */

static void without_auto_create_a_missing_channel_is_refused_and_nothing_is_made(void **state)
{
    struct bus_fx *f = *state;
    fx_configure(f, "auto_create: false");
    struct fake_client *a = fx_client(f);
    assert_string_equal(try_join(a, "lobby", "new"), "CHANNEL_NOT_FOUND");
    assert_int_equal(nrooms(f), 0);
    assert_int_equal(fx_metric(f, "arqonbus_rooms"), 0);
    assert_int_equal(nmemberships(f, a), 0);

    assert_null(create(f, "lobby", "new", NULL));
    fx_join(a, "lobby", "new");
    assert_int_equal(nmemberships(f, a), 1);
    /* A room is made by joining it, auto_create or not. */
    fx_join(a, "attic", NULL);
    assert_int_equal(nrooms(f), 2);
}

static void max_rooms_refuses_a_new_room_but_not_a_new_channel_of_an_old_one(void **state)
{
    struct bus_fx *f = *state;
    fx_configure(f, "max_rooms: 2");
    struct fake_client *a = fx_client(f);
    fx_join(a, "one", NULL);
    fx_join(a, "two", "general");
    assert_string_equal(try_join(a, "three", NULL), "EXECUTION_ERROR");
    assert_string_equal(try_join(a, "three", "general"), "EXECUTION_ERROR");
    assert_string_equal(create(f, "three", "general", NULL), "EXECUTION_ERROR");
    assert_int_equal(nrooms(f), 2);
    assert_int_equal(nchannels(f, "three"), -1);
    fx_join(a, "one", "general");
    assert_null(create(f, "two", "news", NULL));
    assert_int_equal(nmemberships(f, a), 3);
    /* A room that goes makes room for another. */
    assert_null(try_leave(a, "one", NULL));
    assert_null(try_leave(a, "one", "general"));
    assert_int_equal(nrooms(f), 1);
    fx_join(a, "three", NULL);
}

static void max_channels_counts_the_channels_of_every_room(void **state)
{
    struct bus_fx *f = *state;
    fx_configure(f, "max_channels: 2");
    struct fake_client *a = fx_client(f);
    fx_join(a, "lobby", "general");
    assert_null(create(f, "attic", "news", NULL));
    assert_string_equal(try_join(a, "lobby", "random"), "EXECUTION_ERROR");
    assert_string_equal(try_join(a, "cellar", "random"), "EXECUTION_ERROR");
    assert_string_equal(create(f, "lobby", "random", NULL), "EXECUTION_ERROR");
    assert_int_equal(nchannels(f, "cellar"), -1); /* its room was not made either */
    assert_int_equal(nchannels(f, "lobby"), 1);
    assert_int_equal(fx_metric(f, "arqonbus_channels"), 2);
    assert_int_equal(nmemberships(f, a), 1);
    /* Rooms themselves are not channels. */
    fx_join(a, "cellar", NULL);
    fx_join(a, "attic", "news");
}

static void max_memberships_bounds_what_one_connection_joins(void **state)
{
    struct bus_fx *f = *state;
    fx_configure(f, "max_memberships: 2");
    struct fake_client *a = fx_client(f), *b = fx_client(f);
    fx_join(a, "lobby", NULL);
    fx_join(a, "lobby", "general");
    assert_string_equal(try_join(a, "attic", NULL), "EXECUTION_ERROR");
    assert_string_equal(try_join(a, "lobby", "random"), "EXECUTION_ERROR");
    assert_int_equal(nrooms(f), 1);
    assert_int_equal(nchannels(f, "lobby"), 1);
    fx_join(a, "lobby", "general"); /* already a member: no new membership */
    assert_int_equal(nmemberships(f, a), 2);
    const char *code;
    json_t *me = query(f, a, "client", NULL, NULL, &code);
    assert_int_equal(json_integer_value(fx_get(me, "limits.max_memberships")), 2);
    json_decref(me);
    /* The bound is per connection. */
    fx_join(b, "attic", NULL);
    fx_join(b, "lobby", "random");
    assert_null(try_leave(a, "lobby", NULL));
    fx_join(a, "attic", NULL);
}

static void names_longer_than_max_name_length_are_refused(void **state)
{
    struct bus_fx *f = *state;
    fx_configure(f, "max_name_length: 8");
    struct fake_client *a = fx_client(f);
    fx_join(a, "abcdefgh", "12345678");
    assert_string_equal(try_join(a, "abcdefghi", NULL), "VALIDATION_ERROR");
    assert_string_equal(try_join(a, "abcdefgh", "123456789"), "VALIDATION_ERROR");
    assert_string_equal(try_join(a, "a/b", NULL), "VALIDATION_ERROR");
    assert_string_equal(try_join(a, "", NULL), "VALIDATION_ERROR");
    assert_string_equal(create(f, "abcdefgh", "123456789", NULL), "VALIDATION_ERROR");
    assert_int_equal(nrooms(f), 1);
    assert_int_equal(nchannels(f, "abcdefgh"), 1);
    assert_int_equal(nmemberships(f, a), 1);
}

static void an_empty_room_or_channel_goes_unless_it_was_created(void **state)
{
    struct bus_fx *f = *state;
    struct fake_client *a = fx_client(f), *b = fx_client(f), *pub = fx_client(f);
    /* A channel made by a join goes with its last member, and its room with it. */
    fx_join(a, "lobby", "temp");
    fx_join(b, "lobby", "temp");
    assert_int_equal(fx_metric(f, "arqonbus_rooms"), 1);
    assert_int_equal(fx_metric(f, "arqonbus_channels"), 1);
    assert_null(try_leave(a, "lobby", "temp"));
    assert_int_equal(nchannels(f, "lobby"), 1);
    fx_disconnect(b, 1000); /* a disconnect is a leave */
    assert_int_equal(nrooms(f), 0);
    assert_int_equal(fx_metric(f, "arqonbus_rooms"), 0);
    assert_int_equal(fx_metric(f, "arqonbus_channels"), 0);
    publish(pub, "lobby", NULL, 1);
    refused(pub, "ROOM_NOT_FOUND");

    /* A room-level member keeps the room when its channels go. */
    fx_join(a, "lobby", NULL);
    fx_join(a, "lobby", "temp");
    assert_null(try_leave(a, "lobby", "temp"));
    assert_int_equal(nchannels(f, "lobby"), 0);
    assert_int_equal(nrooms(f), 1);
    assert_null(try_leave(a, "lobby", NULL));
    assert_int_equal(nrooms(f), 0);

    /* A channel made by create_channel stays empty, and keeps its room. */
    assert_null(create(f, "attic", "kept", "the attic"));
    assert_string_equal(create(f, "attic", "kept", NULL), "CHANNEL_EXISTS");
    fx_join(a, "attic", "kept");
    assert_null(try_leave(a, "attic", "kept"));
    const char *code;
    json_t *ch = query(f, NULL, "channel", "attic", "kept", &code);
    assert_null(code);
    assert_int_equal(json_integer_value(fx_get(ch, "members")), 0);
    assert_string_equal(fx_str(ch, "description"), "the attic");
    json_decref(ch);
    assert_int_equal(nrooms(f), 1);
    assert_int_equal(fx_metric(f, "arqonbus_channels"), 1);
}

static void a_description_over_1024_bytes_creates_nothing(void **state)
{
    struct bus_fx *f = *state;
    char text[1026];
    memset(text, 'd', sizeof text - 1);
    text[sizeof text - 1] = '\0';
    assert_string_equal(create(f, "lobby", "long", text), "VALIDATION_ERROR");
    assert_int_equal(nrooms(f), 0);
    text[1024] = '\0';
    assert_null(create(f, "lobby", "long", text));
    assert_string_equal(create(f, "lobby", NULL, NULL), "VALIDATION_ERROR");
}

static void delete_channel_needs_force_while_the_channel_has_members(void **state)
{
    struct bus_fx *f = *state;
    fx_configure(f, "max_memberships: 1");
    struct fake_client *a = fx_client(f), *b = fx_client(f);
    fx_join(a, "lobby", "general");
    fx_join(b, "lobby", "general");
    assert_string_equal(delete (f, "nowhere", "general", 1), "ROOM_NOT_FOUND");
    assert_string_equal(delete (f, "lobby", "nowhere", 1), "CHANNEL_NOT_FOUND");

    assert_string_equal(delete (f, "lobby", "general", 0), "EXECUTION_ERROR");
    publish(a, "lobby", "general", 1);
    assert_int_equal(acked(a), 1);
    got_only(b, 1);

    assert_null(delete (f, "lobby", "general", 1));
    assert_int_equal(nrooms(f), 0);
    assert_int_equal(fx_metric(f, "arqonbus_channels"), 0);
    assert_int_equal(nmemberships(f, a), 0);
    assert_int_equal(nmemberships(f, b), 0);
    publish(a, "lobby", "general", 2);
    refused(a, "ROOM_NOT_FOUND");
    /* Its members' memberships went with it: they count no more against the bound. */
    fx_join(a, "attic", NULL);
    fx_join(b, "lobby", "general");
    assert_int_equal(nchannels(f, "lobby"), 1);

    /* An empty channel created by hand goes without force; its room (no other channel, no
     * member) with it. */
    assert_null(create(f, "cellar", "kept", NULL));
    assert_null(delete (f, "cellar", "kept", 0));
    assert_int_equal(nchannels(f, "cellar"), -1);
}

/* --- presence ----------------------------------------------------------------------------- */

/* The next frame is a presence event `event` about `who` in room/channel. */
static void presence(struct fake_client *c, const char *event, const char *who, const char *room,
                     const char *channel)
{
    json_t *m = fx_next(c);
    assert_non_null(m);
    assert_string_equal(fx_str(m, "type"), "message");
    assert_string_equal(fx_str(m, "sender"), "arqonbus");
    assert_string_equal(fx_str(m, "room"), room);
    assert_string_equal(fx_str(m, "channel"), channel ? channel : "");
    assert_string_equal(fx_str(m, "payload.event"), event);
    assert_string_equal(fx_str(m, "payload.client_id"), who);
}

static void presence_events_go_to_the_other_members_of_the_rooms_listed(void **state)
{
    struct bus_fx *f = *state;
    fx_configure(f, "presence: [lobby]");
    struct fake_client *a = fx_client(f), *b = fx_client(f), *c = fx_client(f), *d = fx_client(f);
    fx_join(a, "lobby", "general");
    assert_int_equal(fx_unread(a), 0); /* not about oneself */
    fx_join(b, "lobby", "general");
    presence(a, "joined", id_of(b), "lobby", "general");
    assert_int_equal(fx_unread(a), 0);
    assert_int_equal(fx_unread(b), 0);
    /* Another channel of the room: its own members only. */
    fx_join(c, "lobby", "random");
    assert_int_equal(fx_unread(a), 0);
    assert_int_equal(fx_unread(b), 0);
    assert_null(try_leave(b, "lobby", "general"));
    presence(a, "left", id_of(b), "lobby", "general");
    assert_int_equal(fx_unread(a), 0);
    fx_join(b, "lobby", "general");
    presence(a, "joined", id_of(b), "lobby", "general");
    char b_id[48];
    snprintf(b_id, sizeof b_id, "%s", id_of(b));
    fx_disconnect(b, 1000);
    presence(a, "left", b_id, "lobby", "general");
    assert_int_equal(fx_unread(a), 0);

    /* Not in a room that is not listed. */
    fx_join(d, "attic", "general");
    fx_join(c, "attic", "general");
    assert_int_equal(fx_unread(d), 0);

    /* "*": every room. */
    fx_configure(f, "presence: [\"*\"]");
    assert_null(try_leave(c, "attic", "general"));
    presence(d, "left", id_of(c), "attic", "general");
    assert_int_equal(fx_unread(d), 0);
    assert_int_equal(fx_unread(c), 0);
}

static void a_room_level_presence_event_reaches_each_member_of_the_room_once(void **state)
{
    struct bus_fx *f = *state;
    fx_configure(f, "presence: [lobby, attic]");
    struct fake_client *everywhere = fx_client(f), *other = fx_client(f), *joiner = fx_client(f);
    fx_join(everywhere, "lobby", "general");
    fx_join(everywhere, "lobby", "random");
    fx_join(everywhere, "lobby", NULL);
    fx_join(other, "attic", NULL);
    fx_join(joiner, "lobby", NULL);
    presence(everywhere, "joined", id_of(joiner), "lobby", NULL);
    assert_int_equal(fx_unread(everywhere), 0);
    assert_int_equal(fx_unread(other), 0);
    assert_int_equal(fx_unread(joiner), 0);
    /* Joining again announces nothing. */
    fx_join(joiner, "lobby", NULL);
    assert_int_equal(fx_unread(everywhere), 0);
    assert_null(try_leave(joiner, "lobby", NULL));
    presence(everywhere, "left", id_of(joiner), "lobby", NULL);
    assert_int_equal(fx_unread(everywhere), 0);
}

/* --- direct messages ---------------------------------------------------------------------- */

static void a_direct_message_reaches_its_client_only(void **state)
{
    struct bus_fx *f = *state;
    struct fake_client *a = fx_client(f), *b = fx_client(f), *c = fx_client(f);
    fx_join(c, "lobby", NULL);
    /* No membership needed; room/channel travel as context. */
    fx_sendf(a,
             "{\"type\":\"message\",\"to_client\":\"%s\",\"room\":\"lobby\",\"payload\":{\"n\":1}}",
             id_of(b));
    assert_int_equal(acked(a), 1);
    json_t *m = got_only(b, 1);
    assert_string_equal(fx_str(m, "sender"), id_of(a));
    assert_string_equal(fx_str(m, "to_client"), id_of(b));
    assert_int_equal(fx_unread(c), 0);
    assert_int_equal(fx_unread(a), 0);

    fx_send(a, "{\"id\":\"arq_1700000000000_2_abcdef\",\"type\":\"message\",\"to_client\":"
               "\"arq_client_00000000000000000000000000000000\",\"payload\":\"x\"}");
    json_t *e = refused(a, "NOT_FOUND");
    assert_string_equal(fx_str(e, "request_id"), "arq_1700000000000_2_abcdef");
    assert_int_equal(fx_unread(a), 0);

    /* A client being disconnected is no longer there. */
    struct arq_error err = {""};
    assert_null(bus_svc_disconnect(ctx_of(f), id_of(b), "bye", &err));
    assert_int_equal(b->closed, 1);
    assert_int_equal(b->close_code, 1008);
    assert_string_equal(b->close_reason, "bye");
    fx_sendf(a, "{\"type\":\"message\",\"to_client\":\"%s\",\"payload\":2}", id_of(b));
    refused(a, "NOT_FOUND");
    assert_string_equal(bus_svc_disconnect(ctx_of(f), id_of(b), NULL, &err), "NOT_FOUND");
    fx_disconnect(b, 1008);
    assert_string_equal(bus_svc_disconnect(ctx_of(f), "arq_client_x", NULL, &err), "NOT_FOUND");
}

/* --- listings ----------------------------------------------------------------------------- */

static void the_listings_describe_rooms_channels_and_members(void **state)
{
    struct bus_fx *f = *state;
    struct fake_client *a = fx_client(f), *b = fx_client(f), *d = fx_client(f);
    assert_null(create(f, "lobby", "news", "Daily news")); /* 2026-01-01T00:00:00.000Z */
    f->now_ms += 1000;
    fx_join(b, "lobby", "general");
    fx_join(a, "lobby", "general");
    fx_join(d, "lobby", NULL);
    f->now_ms += 4000;
    publish(a, "lobby", "general", 1);
    publish(a, "lobby", NULL, 2);
    publish(d, "lobby", NULL, 3);

    const char *code;
    json_t *rooms = query(f, NULL, "rooms", NULL, NULL, &code);
    assert_null(code);
    assert_int_equal(json_array_size(rooms), 1);
    json_t *lobby = room_entry(rooms, "lobby");
    assert_non_null(lobby);
    assert_int_equal(json_integer_value(fx_get(lobby, "members")), 3);
    assert_int_equal(json_integer_value(fx_get(lobby, "channels")), 2);
    /* the room's traffic: its own 2 and its channels' 1 */
    assert_int_equal(json_integer_value(fx_get(lobby, "messages")), 3);
    json_decref(rooms);

    json_t *chans = query(f, NULL, "channels", "lobby", NULL, &code);
    assert_null(code);
    assert_int_equal(json_array_size(chans), 2);
    size_t i;
    json_t *ch;
    json_array_foreach(chans, i, ch)
    {
        assert_string_equal(fx_str(ch, "room"), "lobby");
        assert_null(fx_get(ch, "member_ids")); /* only in the channel's own listing */
        if (!strcmp(fx_str(ch, "channel"), "news")) {
            assert_string_equal(fx_str(ch, "description"), "Daily news");
            assert_int_equal(json_integer_value(fx_get(ch, "members")), 0);
            assert_string_equal(fx_str(ch, "created_at"), "2026-01-01T00:00:00.000Z");
            assert_string_equal(fx_str(ch, "last_activity"), "2026-01-01T00:00:00.000Z");
            assert_int_equal(json_integer_value(fx_get(ch, "messages")), 0);
        } else {
            assert_string_equal(fx_str(ch, "channel"), "general");
            assert_null(fx_get(ch, "description"));
            assert_int_equal(json_integer_value(fx_get(ch, "members")), 2);
            assert_string_equal(fx_str(ch, "created_at"), "2026-01-01T00:00:01.000Z");
            assert_string_equal(fx_str(ch, "last_activity"), "2026-01-01T00:00:05.000Z");
            assert_int_equal(json_integer_value(fx_get(ch, "messages")), 1);
        }
    }
    json_decref(chans);

    json_t *general = query(f, NULL, "channel", "lobby", "general", &code);
    assert_null(code);
    assert_int_equal(json_integer_value(fx_get(general, "messages")), 1);
    json_t *ids = fx_get(general, "member_ids");
    assert_int_equal(json_array_size(ids), 2);
    const char *id0 = json_string_value(json_array_get(ids, 0));
    const char *id1 = json_string_value(json_array_get(ids, 1));
    assert_true((!strcmp(id0, id_of(a)) && !strcmp(id1, id_of(b))) ||
                (!strcmp(id0, id_of(b)) && !strcmp(id1, id_of(a))));
    json_decref(general);

    json_t *me = query(f, a, "client", NULL, NULL, &code);
    assert_null(code);
    assert_string_equal(fx_str(me, "client_id"), id_of(a));
    json_t *mine = fx_get(me, "memberships");
    assert_int_equal(json_array_size(mine), 1);
    assert_string_equal(fx_str(json_array_get(mine, 0), "room"), "lobby");
    assert_string_equal(fx_str(json_array_get(mine, 0), "channel"), "general");
    json_decref(me);
    me = query(f, d, "client", NULL, NULL, &code);
    assert_null(fx_get(json_array_get(fx_get(me, "memberships"), 0), "channel"));
    json_decref(me);

    assert_null(query(f, NULL, "channels", "attic", NULL, &code));
    assert_string_equal(code, "ROOM_NOT_FOUND");
    assert_null(query(f, NULL, "channel", "lobby", "nope", &code));
    assert_string_equal(code, "CHANNEL_NOT_FOUND");
    assert_null(query(f, NULL, "channel", "attic", "nope", &code));
    assert_string_equal(code, "ROOM_NOT_FOUND");
    assert_null(query(f, NULL, "client", NULL, NULL, &code));
    assert_string_equal(code, "NOT_FOUND");
}

#define T(name) cmocka_unit_test_setup_teardown(name, bus_fx_setup, bus_fx_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(a_message_reaches_the_channels_members_once_and_not_the_sender),
        T(channels_are_scoped_in_their_room_and_a_room_member_is_not_in_them),
        T(a_room_wide_message_reaches_each_member_of_the_room_once),
        T(joining_twice_changes_nothing_and_leaving_stops_delivery),
        T(members_only_decides_who_may_publish_where),
        T(without_auto_create_a_missing_channel_is_refused_and_nothing_is_made),
        T(max_rooms_refuses_a_new_room_but_not_a_new_channel_of_an_old_one),
        T(max_channels_counts_the_channels_of_every_room),
        T(max_memberships_bounds_what_one_connection_joins),
        T(names_longer_than_max_name_length_are_refused),
        T(an_empty_room_or_channel_goes_unless_it_was_created),
        T(a_description_over_1024_bytes_creates_nothing),
        T(delete_channel_needs_force_while_the_channel_has_members),
        T(presence_events_go_to_the_other_members_of_the_rooms_listed),
        T(a_room_level_presence_event_reaches_each_member_of_the_room_once),
        T(a_direct_message_reaches_its_client_only),
        T(the_listings_describe_rooms_channels_and_members),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
