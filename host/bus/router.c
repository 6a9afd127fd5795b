/* Rooms, channels inside rooms, memberships, and fan-out. Membership changes are O(1): every
 * membership knows its index in its member array, and leaving swaps the last member in. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus.h"
#include "envelope.h"
#include "log.h"
#include "metrics.h"

/* The longest channel description, in bytes (docs/protocol.md): it is kept as long as the
 * channel and sent in every listing of the room. */
#define ROUTER_MAX_DESCRIPTION 1024

struct room *router_room(struct bus *b, const char *name)
{
    return hmap_get(&b->rooms, name);
}

struct channel *router_channel(struct room *r, const char *name)
{
    return r && name ? hmap_get(&r->channels, name) : NULL;
}

static struct room *router__room_new(struct bus *b, const char *name)
{
    struct room *r = calloc(1, sizeof *r);
    if (!r || !(r->name = strdup(name)) || hmap_put(&b->rooms, r->name, r) != 0) {
        if (r)
            free(r->name);
        free(r);
        return NULL;
    }
    r->created_ms = bus_now_ms(b);
    metrics_set(b->m_rooms, (double)b->rooms.len);
    return r;
}

static struct channel *router__channel_new(struct bus *b, struct room *r, const char *name,
                                           const char *description)
{
    struct channel *ch = calloc(1, sizeof *ch);
    if (!ch || !(ch->name = strdup(name)) ||
        (description && !(ch->description = strdup(description))) ||
        hmap_put(&r->channels, ch->name, ch) != 0) {
        if (ch) {
            free(ch->name);
            free(ch->description);
        }
        free(ch);
        return NULL;
    }
    ch->room = r;
    ch->created_ms = ch->last_activity_ms = bus_now_ms(b);
    b->nchannels++;
    metrics_set(b->m_channels, (double)b->nchannels);
    return ch;
}

static void router__channel_free(struct bus *b, struct channel *ch)
{
    hmap_del(&ch->room->channels, ch->name);
    b->nchannels--;
    metrics_set(b->m_channels, (double)b->nchannels);
    free(ch->members);
    free(ch->description);
    free(ch->name);
    free(ch);
}

static void router__room_free(struct bus *b, struct room *r)
{
    hmap_del(&b->rooms, r->name);
    metrics_set(b->m_rooms, (double)b->rooms.len);
    hmap_free(&r->channels);
    free(r->members);
    free(r->name);
    free(r);
}

/* Empty channels made by a join, and empty rooms without channels, go away. */
static void router__prune(struct bus *b, struct room *r, struct channel *ch)
{
    if (ch && ch->nmembers == 0 && !ch->explicit_)
        router__channel_free(b, ch);
    if (r->nmembers == 0 && r->channels.len == 0)
        router__room_free(b, r);
}

static int router__add(struct membership ***arr, size_t *n, size_t *cap, struct membership *m)
{
    if (*n == *cap) {
        size_t ncap = *cap ? *cap * 2 : 4;
        struct membership **grown = realloc(*arr, ncap * sizeof *grown);
        if (!grown)
            return -1;
        *arr = grown;
        *cap = ncap;
    }
    m->index = *n;
    (*arr)[(*n)++] = m;
    return 0;
}

static void router__remove(struct membership **arr, size_t *n, struct membership *m)
{
    struct membership *last = arr[--*n];
    arr[m->index] = last;
    last->index = m->index;
}

static struct membership *router__find(const struct arq_conn *c, const struct room *r,
                                       const struct channel *ch)
{
    for (struct membership *m = c->memberships; m; m = m->next)
        if (m->room == r && m->channel == ch)
            return m;
    return NULL;
}

int router_is_member(const struct arq_conn *c, const struct room *r, const struct channel *ch)
{
    if (ch)
        return router__find(c, r, ch) != NULL;
    for (struct membership *m = c->memberships; m; m = m->next)
        if (m->room == r)
            return 1;
    return 0;
}

static int router__presence(const struct bus *b, const struct room *r)
{
    size_t i;
    json_t *v;
    json_array_foreach(b->settings.presence, i, v)
    {
        const char *name = json_string_value(v);
        if (name && (!strcmp(name, "*") || !strcmp(name, r->name)))
            return 1;
    }
    return 0;
}

/* `joined`/`left` to the other members of a channel (or room), when presence is on there. */
static void router__announce(struct bus *b, struct room *r, struct channel *ch,
                             struct arq_conn *who, const char *event)
{
    if (!router__presence(b, r))
        return;
    char ts[32], id[32];
    int64_t now = bus_now_ms(b);
    envelope_format_timestamp(now, ts);
    envelope_new_id(id, now);
    json_t *ev = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:{s:s, s:s}}", "id", id, "timestamp",
                           ts, "version", "1.0", "type", "message", "sender", "arqonbus", "room",
                           r->name, "payload", "event", event, "client_id", who->id);
    if (ev && ch)
        json_object_set_new(ev, "channel", json_string(ch->name));
    struct frame *f = ev ? frame_from_json(ev) : NULL;
    json_decref(ev);
    if (f) {
        router_fanout(b, r, ch, f, who);
        broker_publish(b, r->name, ch ? ch->name : NULL, NULL, f);
    }
    frame_unref(f);
}

/* Would a new room (and/or channel) pass bus.max_rooms / bus.max_channels? */
static const char *router__full(const struct bus *b, int new_room, int new_channel,
                                struct arq_error *err)
{
    if (new_room && b->rooms.len >= b->settings.max_rooms) {
        arq_error_set(err, 0, "The bus holds its maximum of %zu rooms", b->settings.max_rooms);
        return ARQ_ERR_EXECUTION;
    }
    if (new_channel && b->nchannels >= b->settings.max_channels) {
        arq_error_set(err, 0, "The bus holds its maximum of %zu channels",
                      b->settings.max_channels);
        return ARQ_ERR_EXECUTION;
    }
    return NULL;
}

const char *router_join(struct bus *b, struct arq_conn *c, const char *room, const char *channel,
                        struct arq_error *err)
{
    struct room *r = router_room(b, room);
    struct channel *ch = router_channel(r, channel);
    if (channel && !ch && !b->settings.auto_create) {
        arq_error_set(err, 0, "Channel %s/%s does not exist", room, channel);
        return ARQ_ERR_CHANNEL_NOT_FOUND;
    }
    if (r && (channel ? ch && router__find(c, r, ch) : router__find(c, r, NULL) != NULL))
        return NULL; /* already a member */
    if (c->nmemberships >= b->settings.max_memberships) {
        arq_error_set(err, 0, "Too many memberships (at most %zu per connection)",
                      b->settings.max_memberships);
        return ARQ_ERR_EXECUTION;
    }
    const char *full = router__full(b, !r, channel && !ch, err);
    if (full)
        return full;
    int new_room = !r, new_channel = 0;
    if (!r && !(r = router__room_new(b, room)))
        goto oom;
    if (channel && !ch) {
        if (!(ch = router__channel_new(b, r, channel, NULL)))
            goto oom;
        new_channel = 1;
    }
    struct membership *m = calloc(1, sizeof *m);
    if (!m)
        goto oom;
    m->conn = c;
    m->room = r;
    m->channel = ch;
    if (ch ? router__add(&ch->members, &ch->nmembers, &ch->cap, m)
           : router__add(&r->members, &r->nmembers, &r->cap, m)) {
        free(m);
        goto oom;
    }
    if (ch)
        r->channel_members++;
    m->next = c->memberships;
    c->memberships = m;
    c->nmemberships++;
    broker_joined(b, c, r, ch);
    router__announce(b, r, ch, c, "joined");
    return NULL;
oom:
    if (r && (new_room || new_channel))
        router__prune(b, r, new_channel ? ch : NULL);
    arq_error_set(err, 0, "Out of memory");
    return ARQ_ERR_INTERNAL;
}

static void router__drop(struct bus *b, struct arq_conn *c, struct membership *m)
{
    struct room *r = m->room;
    struct channel *ch = m->channel;
    struct membership **link = &c->memberships;
    while (*link != m)
        link = &(*link)->next;
    *link = m->next;
    c->nmemberships--;
    if (ch) {
        router__remove(ch->members, &ch->nmembers, m);
        r->channel_members--;
    } else {
        router__remove(r->members, &r->nmembers, m);
    }
    free(m);
    broker_left(b, c, r, ch);
    router__announce(b, r, ch, c, "left");
    router__prune(b, r, ch);
}

const char *router_leave(struct bus *b, struct arq_conn *c, const char *room, const char *channel,
                         struct arq_error *err)
{
    struct room *r = router_room(b, room);
    struct channel *ch = router_channel(r, channel);
    struct membership *m = r && (!channel || ch) ? router__find(c, r, ch) : NULL;
    if (!m) {
        if (channel)
            arq_error_set(err, 0, "Not a member of channel %s/%s", room, channel);
        else
            arq_error_set(err, 0, "Not a member of room %s", room);
        return ARQ_ERR_NOT_FOUND;
    }
    router__drop(b, c, m);
    return NULL;
}

void router_leave_all(struct bus *b, struct arq_conn *c)
{
    while (c->memberships)
        router__drop(b, c, c->memberships);
}

const char *router_create_channel(struct bus *b, const char *room, const char *channel,
                                  const char *description, struct arq_error *err)
{
    size_t dlen = description ? strlen(description) : 0;
    if (dlen > ROUTER_MAX_DESCRIPTION) {
        arq_error_set(err, 0, "The description is %zu bytes long; at most %d are allowed", dlen,
                      ROUTER_MAX_DESCRIPTION);
        return ARQ_ERR_VALIDATION;
    }
    struct room *r = router_room(b, room);
    if (router_channel(r, channel)) {
        arq_error_set(err, 0, "Channel %s/%s already exists", room, channel);
        return ARQ_ERR_CHANNEL_EXISTS;
    }
    const char *full = router__full(b, !r, 1, err);
    if (full)
        return full;
    int new_room = !r;
    if (!r && !(r = router__room_new(b, room)))
        goto oom;
    struct channel *ch = router__channel_new(b, r, channel, description);
    if (!ch) {
        if (new_room)
            router__prune(b, r, NULL);
        goto oom;
    }
    ch->explicit_ = 1;
    return NULL;
oom:
    arq_error_set(err, 0, "Out of memory");
    return ARQ_ERR_INTERNAL;
}

const char *router_delete_channel(struct bus *b, const char *room, const char *channel, int force,
                                  struct arq_error *err)
{
    struct room *r = router_room(b, room);
    if (!r) {
        arq_error_set(err, 0, "Room %s does not exist", room);
        return ARQ_ERR_ROOM_NOT_FOUND;
    }
    struct channel *ch = router_channel(r, channel);
    if (!ch) {
        arq_error_set(err, 0, "Channel %s/%s does not exist", room, channel);
        return ARQ_ERR_CHANNEL_NOT_FOUND;
    }
    if (ch->nmembers && !force) {
        arq_error_set(err, 0, "Channel %s/%s has %zu member%s; use force to delete it", room,
                      channel, ch->nmembers, ch->nmembers == 1 ? "" : "s");
        return ARQ_ERR_EXECUTION;
    }
    ch->explicit_ = 0;
    while (ch->nmembers) {
        struct membership *m = ch->members[ch->nmembers - 1];
        struct arq_conn *c = m->conn;
        struct membership **link = &c->memberships;
        while (*link != m)
            link = &(*link)->next;
        *link = m->next;
        c->nmemberships--;
        ch->nmembers--;
        r->channel_members--;
        free(m);
        broker_left(b, c, r, ch);
    }
    router__prune(b, r, ch);
    return NULL;
}

static size_t router__deliver(struct bus *b, struct membership **members, size_t n, struct frame *f,
                              const struct arq_conn *except)
{
    size_t delivered = 0;
    for (size_t i = 0; i < n; i++) {
        struct arq_conn *c = members[i]->conn;
        if (c == except || c->delivery_mark == b->fanout_seq)
            continue;
        c->delivery_mark = b->fanout_seq;
        if (conn_send(c, f) == 0)
            delivered++;
    }
    return delivered;
}

size_t router_fanout(struct bus *b, struct room *r, struct channel *ch, struct frame *f,
                     const struct arq_conn *except)
{
    /* The mark makes a room-wide message reach a client once however many of the room's
     * channels it is in. A slow client closed by conn_send leaves the arrays untouched: its
     * memberships go when the transport reports the close. */
    b->fanout_seq++;
    r->messages++; /* the room's traffic: its own messages and its channels' */
    if (ch) {
        ch->messages++;
        ch->last_activity_ms = bus_now_ms(b);
        return router__deliver(b, ch->members, ch->nmembers, f, except);
    }
    size_t n = router__deliver(b, r->members, r->nmembers, f, except);
    size_t i = 0;
    void *v;
    while (hmap_next(&r->channels, &i, NULL, &v)) {
        struct channel *c = v;
        n += router__deliver(b, c->members, c->nmembers, f, except);
    }
    return n;
}

json_t *router_channel_json(const struct channel *ch, int with_members)
{
    char created[32], active[32];
    envelope_format_timestamp(ch->created_ms, created);
    envelope_format_timestamp(ch->last_activity_ms, active);
    json_t *o = json_pack("{s:s, s:s, s:I, s:s*, s:s, s:s, s:I}", "room", ch->room->name, "channel",
                          ch->name, "members", (json_int_t)ch->nmembers, "description",
                          ch->description, "created_at", created, "last_activity", active,
                          "messages", (json_int_t)ch->messages);
    if (o && with_members) {
        json_t *ids = json_array();
        for (size_t i = 0; ids && i < ch->nmembers; i++)
            json_array_append_new(ids, json_string(ch->members[i]->conn->id));
        json_object_set_new(o, "member_ids", ids);
    }
    return o;
}

json_t *router_rooms_json(const struct bus *b)
{
    json_t *arr = json_array();
    size_t i = 0;
    void *v;
    while (arr && hmap_next(&b->rooms, &i, NULL, &v)) {
        const struct room *r = v;
        json_array_append_new(arr, json_pack("{s:s, s:I, s:I, s:I}", "room", r->name, "members",
                                             (json_int_t)(r->nmembers + r->channel_members),
                                             "channels", (json_int_t)r->channels.len, "messages",
                                             (json_int_t)r->messages));
    }
    return arr;
}

json_t *router_memberships_json(const struct arq_conn *c)
{
    json_t *arr = json_array();
    for (const struct membership *m = c->memberships; arr && m; m = m->next) {
        json_t *o = json_pack("{s:s}", "room", m->room->name);
        if (o && m->channel)
            json_object_set_new(o, "channel", json_string(m->channel->name));
        json_array_append_new(arr, o);
    }
    return arr;
}
