/* The message format on the wire, RESP command text, and the string sets.
 *
 * A message is one pub/sub payload (README.md, "Wire format"):
 *
 *   0  "AQB" and the format version 1                      4 bytes
 *   4  kind: 0 room-wide, 1 channel, 2 direct               1 byte
 *   5  0                                                    1 byte
 *   6  lengths of origin, room, channel, to_client, id      5 x u16, big-endian, each
 *      (0: absent; else the bytes with their NUL)
 *   16 length of the frame                                  u32, big-endian
 *   20 origin, room, channel, to_client, id, frame
 *
 * The strings keep their NUL so that a received message is handed to the host in place. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bredis.h"

#define WIRE_HEAD    20
#define WIRE_STRINGS 5

enum { WIRE_ROOM = 0, WIRE_CHANNEL = 1, WIRE_DIRECT = 2 };

uint32_t wire__hash(const char *s)
{
    uint32_t h = 2166136261u;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        h = (h ^ *p) * 16777619u;
    return h;
}

static size_t wire__decimal(size_t n)
{
    size_t d = 1;
    while (n >= 10) {
        n /= 10;
        d++;
    }
    return d;
}

char *wire__command(int argc, const char **argv, const size_t *lens, size_t *len)
{
    size_t total = 1 + wire__decimal((size_t)argc) + 2;
    for (int i = 0; i < argc; i++) {
        size_t n = lens ? lens[i] : strlen(argv[i]);
        total += 1 + wire__decimal(n) + 2 + n + 2;
    }
    char *buf = malloc(total + 1);
    if (!buf)
        return NULL;
    size_t at = (size_t)sprintf(buf, "*%d\r\n", argc);
    for (int i = 0; i < argc; i++) {
        size_t n = lens ? lens[i] : strlen(argv[i]);
        at += (size_t)sprintf(buf + at, "$%zu\r\n", n);
        memcpy(buf + at, argv[i], n);
        at += n;
        memcpy(buf + at, "\r\n", 2);
        at += 2;
    }
    *len = at;
    return buf;
}

static size_t wire__slen(const char *s)
{
    return s ? strlen(s) + 1 : 0;
}

static unsigned char *wire__put16(unsigned char *p, size_t v)
{
    p[0] = (unsigned char)(v >> 8);
    p[1] = (unsigned char)v;
    return p + 2;
}

unsigned char *wire__encode(const struct arq_broker_msg *msg, size_t *len)
{
    const char *room = msg->to_client ? NULL : msg->room;
    const char *channel = msg->to_client ? NULL : msg->channel;
    /* `id` is read only from a struct that has it (struct_size). */
    const char *id =
        msg->struct_size >= offsetof(struct arq_broker_msg, id) + sizeof msg->id ? msg->id : NULL;
    const char *strs[WIRE_STRINGS] = {msg->origin, room, channel, msg->to_client, id};
    size_t lens[WIRE_STRINGS], total = WIRE_HEAD + msg->len;
    for (int i = 0; i < WIRE_STRINGS; i++) {
        lens[i] = wire__slen(strs[i]);
        if (lens[i] > 0xffff)
            return NULL;
        total += lens[i];
    }
    if (msg->len > 0xffffffffu)
        return NULL;
    unsigned char *buf = malloc(total), *p = buf;
    if (!buf)
        return NULL;
    memcpy(p, "AQB\1", 4);
    p[4] = msg->to_client ? WIRE_DIRECT : channel ? WIRE_CHANNEL : WIRE_ROOM;
    p[5] = 0;
    p += 6;
    for (int i = 0; i < WIRE_STRINGS; i++)
        p = wire__put16(p, lens[i]);
    p[0] = (unsigned char)(msg->len >> 24);
    p[1] = (unsigned char)(msg->len >> 16);
    p[2] = (unsigned char)(msg->len >> 8);
    p[3] = (unsigned char)msg->len;
    p += 4;
    for (int i = 0; i < WIRE_STRINGS; i++) {
        if (lens[i])
            memcpy(p, strs[i], lens[i]);
        p += lens[i];
    }
    if (msg->len)
        memcpy(p, msg->data, msg->len);
    *len = total;
    return buf;
}

int wire__decode(const unsigned char *data, size_t len, struct arq_broker_msg *msg)
{
    if (len < WIRE_HEAD || memcmp(data, "AQB\1", 4) != 0 || data[4] > WIRE_DIRECT || data[5])
        return -1;
    size_t lens[WIRE_STRINGS], total = WIRE_HEAD;
    const char *strs[WIRE_STRINGS];
    for (int i = 0; i < WIRE_STRINGS; i++) {
        lens[i] = (size_t)data[6 + 2 * i] << 8 | data[7 + 2 * i];
        total += lens[i];
    }
    size_t flen =
        (size_t)data[16] << 24 | (size_t)data[17] << 16 | (size_t)data[18] << 8 | (size_t)data[19];
    if (total + flen != len)
        return -1;
    const unsigned char *p = data + WIRE_HEAD;
    for (int i = 0; i < WIRE_STRINGS; i++) {
        strs[i] = NULL;
        if (lens[i]) {
            /* One NUL, the last byte, and nothing empty. */
            if (lens[i] < 2 || p[lens[i] - 1] != '\0' || memchr(p, '\0', lens[i] - 1))
                return -1;
            strs[i] = (const char *)p;
        }
        p += lens[i];
    }
    int kind = data[4];
    int ok =
        strs[0] && (kind == WIRE_DIRECT ? strs[3] && !strs[1] && !strs[2]
                                        : strs[1] && !strs[3] && (!strs[2]) == (kind == WIRE_ROOM));
    if (!ok)
        return -1;
    *msg = (struct arq_broker_msg){.struct_size = sizeof *msg,
                                   .room = strs[1],
                                   .channel = strs[2],
                                   .to_client = strs[3],
                                   .data = p,
                                   .len = flen,
                                   .origin = strs[0],
                                   .id = strs[4]};
    return 0;
}

/* --- string sets ------------------------------------------------------------------------- */

struct br_entry {
    struct br_entry *next;
    size_t shard;
    char key[];
};

static int set__grow(struct br_set *s)
{
    size_t n = s->nbuckets ? s->nbuckets * 2 : 64;
    struct br_entry **b = calloc(n, sizeof *b);
    if (!b)
        return -1;
    for (size_t i = 0; i < s->nbuckets; i++) {
        while (s->buckets[i]) {
            struct br_entry *e = s->buckets[i];
            s->buckets[i] = e->next;
            size_t h = wire__hash(e->key) & (n - 1);
            e->next = b[h];
            b[h] = e;
        }
    }
    free(s->buckets);
    s->buckets = b;
    s->nbuckets = n;
    return 0;
}

static struct br_entry **set__slot(const struct br_set *s, const char *key)
{
    if (!s->nbuckets)
        return NULL;
    struct br_entry **p = &s->buckets[wire__hash(key) & (s->nbuckets - 1)];
    while (*p && strcmp((*p)->key, key) != 0)
        p = &(*p)->next;
    return p;
}

int set__has(const struct br_set *s, const char *key)
{
    struct br_entry **p = set__slot(s, key);
    return p && *p;
}

int set__add(struct br_set *s, const char *key, size_t shard)
{
    if (set__has(s, key))
        return 0;
    if (s->n >= s->nbuckets && set__grow(s) != 0)
        return -1;
    size_t len = strlen(key);
    struct br_entry *e = malloc(sizeof *e + len + 1);
    if (!e)
        return -1;
    memcpy(e->key, key, len + 1);
    e->shard = shard;
    struct br_entry **head = &s->buckets[wire__hash(key) & (s->nbuckets - 1)];
    e->next = *head;
    *head = e;
    s->n++;
    return 1;
}

int set__remove(struct br_set *s, const char *key)
{
    struct br_entry **p = set__slot(s, key);
    if (!p || !*p)
        return 0;
    struct br_entry *e = *p;
    *p = e->next;
    free(e);
    s->n--;
    return 1;
}

void set__remove_shard(struct br_set *s, size_t shard)
{
    for (size_t i = 0; i < s->nbuckets; i++) {
        struct br_entry **p = &s->buckets[i];
        while (*p) {
            struct br_entry *e = *p;
            if (e->shard == shard) {
                *p = e->next;
                free(e);
                s->n--;
            } else {
                p = &e->next;
            }
        }
    }
}

void set__free(struct br_set *s)
{
    for (size_t i = 0; i < s->nbuckets; i++) {
        while (s->buckets[i]) {
            struct br_entry *e = s->buckets[i];
            s->buckets[i] = e->next;
            free(e);
        }
    }
    free(s->buckets);
    memset(s, 0, sizeof *s);
}
