#include "hmap.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static size_t hmap__hash(const char *s)
{
    /* FNV-1a, 64-bit */
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return (size_t)h;
}

static struct hmap_slot *hmap__find(const struct hmap *m, const char *key, size_t hash)
{
    if (!m->cap)
        return NULL;
    for (size_t i = hash & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        struct hmap_slot *s = &m->slots[i];
        if (!s->key)
            return NULL;
        if (s->hash == hash && strcmp(s->key, key) == 0)
            return s;
    }
}

void *hmap_get(const struct hmap *m, const char *key)
{
    struct hmap_slot *s = hmap__find(m, key, hmap__hash(key));
    return s ? s->value : NULL;
}

static int hmap__grow(struct hmap *m)
{
    size_t cap = m->cap ? m->cap * 2 : 16;
    struct hmap_slot *slots = calloc(cap, sizeof *slots);
    if (!slots)
        return -1;
    for (size_t i = 0; i < m->cap; i++) {
        struct hmap_slot *s = &m->slots[i];
        if (!s->key)
            continue;
        size_t j = s->hash & (cap - 1);
        while (slots[j].key)
            j = (j + 1) & (cap - 1);
        slots[j] = *s;
    }
    free(m->slots);
    m->slots = slots;
    m->cap = cap;
    return 0;
}

int hmap_put(struct hmap *m, const char *key, void *value)
{
    size_t hash = hmap__hash(key);
    struct hmap_slot *s = hmap__find(m, key, hash);
    if (s) {
        s->key = key;
        s->value = value;
        return 0;
    }
    if ((m->len + 1) * 4 > m->cap * 3 && hmap__grow(m) != 0)
        return -1;
    size_t i = hash & (m->cap - 1);
    while (m->slots[i].key)
        i = (i + 1) & (m->cap - 1);
    m->slots[i] = (struct hmap_slot){key, value, hash};
    m->len++;
    return 0;
}

void *hmap_del(struct hmap *m, const char *key)
{
    struct hmap_slot *s = hmap__find(m, key, hmap__hash(key));
    if (!s)
        return NULL;
    void *value = s->value;
    size_t mask = m->cap - 1, hole = (size_t)(s - m->slots);
    /* Backward-shift deletion keeps every probe sequence unbroken without tombstones. */
    for (size_t i = (hole + 1) & mask; m->slots[i].key; i = (i + 1) & mask) {
        size_t home = m->slots[i].hash & mask;
        if (((i - home) & mask) >= ((i - hole) & mask)) {
            m->slots[hole] = m->slots[i];
            hole = i;
        }
    }
    m->slots[hole] = (struct hmap_slot){0};
    m->len--;
    return value;
}

void hmap_free(struct hmap *m)
{
    free(m->slots);
    m->slots = NULL;
    m->cap = m->len = 0;
}

int hmap_next(const struct hmap *m, size_t *iter, const char **key, void **value)
{
    for (; *iter < m->cap; (*iter)++) {
        struct hmap_slot *s = &m->slots[*iter];
        if (s->key) {
            if (key)
                *key = s->key;
            if (value)
                *value = s->value;
            (*iter)++;
            return 1;
        }
    }
    return 0;
}
