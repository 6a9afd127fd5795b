/* A string-keyed hash map of pointers (open addressing, linear probing, tombstone-free
 * deletion by backward shift). Keys are borrowed: the caller keeps each key alive while its
 * entry exists (usually the key is a field of the value). */
#ifndef ARQ_HOST_HMAP_H
#define ARQ_HOST_HMAP_H

#include <stddef.h>

struct hmap {
    struct hmap_slot {
        const char *key;
        void *value;
        size_t hash;
    } * slots;
    size_t cap, len; /* cap is 0 or a power of two */
};

void *hmap_get(const struct hmap *m, const char *key);
/* Insert or replace. 0, or -1 on allocation failure (the map is unchanged). */
int hmap_put(struct hmap *m, const char *key, void *value);
/* Remove; returns the value that was there, or NULL. */
void *hmap_del(struct hmap *m, const char *key);
void hmap_free(struct hmap *m);

/* Iterate: for (size_t i = 0; hmap_next(m, &i, &key, &value);) — no changes meanwhile. */
int hmap_next(const struct hmap *m, size_t *iter, const char **key, void **value);

#endif
