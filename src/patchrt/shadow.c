/* The in-target shadow runtime: suture_shadow_* (include/suture/patch.h)
 * over the per-process shadow region (src/patch/ShadowLayout.h).
 *
 * Freestanding C, compiled to a relocatable object that suture-build links
 * into a patch that calls it: no libc, no locks, no system calls. Every
 * change to the table is one compare-and-swap of one 64-bit slot, so a
 * thread that is preempted, signalled or stopped by suture at any
 * instruction leaves the table consistent, and no other thread waits for
 * it. The injector resolves `suture_shadow_table` (read through the GOT)
 * to the region at apply time. */
#include <stddef.h>
#include <stdint.h>

#include "patch/ShadowLayout.h"
#include "suture/patch.h"

extern char suture_shadow_table[];

#define FREED_BIT 1u

static struct suture_shadow_header *table(void) {
    struct suture_shadow_header *header = (struct suture_shadow_header *)suture_shadow_table;
    const char *magic = SUTURE_SHADOW_MAGIC;
    for (int i = 0; i < 8; ++i) {
        if (header->magic[i] != magic[i]) {
            return NULL;
        }
    }
    if (header->version != SUTURE_SHADOW_VERSION || header->slot_count == 0 ||
        (header->slot_count & (header->slot_count - 1)) != 0) {
        return NULL;
    }
    return header;
}

static uint64_t *slots_of(struct suture_shadow_header *header) {
    return (uint64_t *)((char *)header + header->slots_offset);
}

/* The record a slot value names, or NULL if it points outside the arena
 * (the region lives in a process that may have scribbled over it). */
static struct suture_shadow_record *record_at(struct suture_shadow_header *header,
                                              uint64_t value) {
    uint64_t offset = value & ~(uint64_t)FREED_BIT;
    if (offset < header->arena_offset ||
        offset + SUTURE_SHADOW_RECORD_SIZE > header->arena_offset + header->arena_size) {
        return NULL;
    }
    return (struct suture_shadow_record *)((char *)header + offset);
}

static void *data_of(struct suture_shadow_record *record) {
    return (char *)record + SUTURE_SHADOW_RECORD_SIZE;
}

static int is_key(const struct suture_shadow_record *record, const void *obj, uint64_t id) {
    return record != NULL && record->object == (uint64_t)(uintptr_t)obj && record->id == id;
}

/* splitmix64's finaliser over both halves of the key. */
static uint64_t hash(const void *obj, uint64_t id) {
    uint64_t h = (uint64_t)(uintptr_t)obj * 0x9e3779b97f4a7c15ull ^ id;
    h ^= h >> 30;
    h *= 0xbf58476d1ce4e5b9ull;
    h ^= h >> 27;
    h *= 0x94d049bb133111ebull;
    return h ^ (h >> 31);
}

/* Zeroes `size` bytes (a multiple of 8) word by word: a plain loop could be
 * turned into a call to memset, which a patch cannot import. */
static void zero_words(void *data, uint64_t size) {
    volatile uint64_t *word = (volatile uint64_t *)data;
    for (uint64_t i = 0; i < size / 8; ++i) {
        word[i] = 0;
    }
}

/* A new record for (obj, id) with `size` zero bytes, bump-allocated; its
 * offset, or 0 when the arena is full. Arena memory is fresh from mmap
 * (zero) and never handed out twice. */
static uint64_t new_record(struct suture_shadow_header *header, const void *obj, uint64_t id,
                           uint64_t size) {
    uint64_t rounded = (size + 15) & ~(uint64_t)15;
    uint64_t need = SUTURE_SHADOW_RECORD_SIZE + rounded;
    uint64_t used = __atomic_load_n(&header->arena_used, __ATOMIC_RELAXED);
    do {
        if (used > header->arena_size || need > header->arena_size - used) {
            return 0;
        }
    } while (!__atomic_compare_exchange_n(&header->arena_used, &used, used + need, 1,
                                          __ATOMIC_RELAXED, __ATOMIC_RELAXED));
    uint64_t offset = header->arena_offset + used;
    struct suture_shadow_record *record = (struct suture_shadow_record *)((char *)header + offset);
    record->object = (uint64_t)(uintptr_t)obj;
    record->id = id;
    record->size = rounded;
    __atomic_fetch_add(&header->allocations, 1, __ATOMIC_RELAXED);
    return offset;
}

void *suture_shadow_get(const void *obj, uint64_t id) {
    struct suture_shadow_header *header = table();
    if (header == NULL) {
        return NULL;
    }
    uint64_t *slots = slots_of(header);
    uint64_t mask = header->slot_count - 1;
    uint64_t i = hash(obj, id) & mask;
    for (uint64_t probes = 0; probes <= mask; ++probes, i = (i + 1) & mask) {
        uint64_t value = __atomic_load_n(&slots[i], __ATOMIC_ACQUIRE);
        if (value == 0) {
            return NULL;  /* the key would be here or earlier */
        }
        struct suture_shadow_record *record = record_at(header, value);
        if (is_key(record, obj, id)) {
            return (value & FREED_BIT) != 0 ? NULL : data_of(record);
        }
    }
    return NULL;
}

void *suture_shadow_get_or_alloc(const void *obj, uint64_t id, size_t size) {
    struct suture_shadow_header *header = table();
    if (header == NULL || size == 0 || size > SUTURE_SHADOW_MAX_SIZE) {
        return NULL;
    }
    uint64_t *slots = slots_of(header);
    uint64_t mask = header->slot_count - 1;
    uint64_t i = hash(obj, id) & mask;
    uint64_t mine = 0; /* a record made for this call, not yet published */
    for (uint64_t probes = 0; probes <= mask; ++probes, i = (i + 1) & mask) {
        uint64_t value = __atomic_load_n(&slots[i], __ATOMIC_ACQUIRE);
        for (;;) {
            /* 1. An empty slot: the key is in no slot before it, so it is
             * ours to take, with a record of our own. */
            if (value == 0) {
                if (mine == 0 && (mine = new_record(header, obj, id, size)) == 0) {
                    return NULL;
                }
                if (__atomic_compare_exchange_n(&slots[i], &value, mine, 0, __ATOMIC_ACQ_REL,
                                                __ATOMIC_ACQUIRE)) {
                    __atomic_fetch_add(&header->live, 1, __ATOMIC_RELAXED);
                    return data_of(record_at(header, mine));
                }
                continue; /* someone won the slot: look at what it holds now */
            }
            struct suture_shadow_record *record = record_at(header, value);
            if (!is_key(record, obj, id)) {
                break; /* another key: probe on */
            }
            /* 2. The key, live: that is the shadow (a record we made for
             * it is lost to the arena; only a race on one key does that). */
            if ((value & FREED_BIT) == 0) {
                return data_of(record);
            }
            /* 3. The key, freed: revive its record (zeroed when freed), or
             * put a bigger one in its slot. */
            uint64_t want = value & ~(uint64_t)FREED_BIT;
            if (record->size < size) {
                if (mine == 0 && (mine = new_record(header, obj, id, size)) == 0) {
                    return NULL;
                }
                want = mine;
            }
            if (__atomic_compare_exchange_n(&slots[i], &value, want, 0, __ATOMIC_ACQ_REL,
                                            __ATOMIC_ACQUIRE)) {
                __atomic_fetch_add(&header->live, 1, __ATOMIC_RELAXED);
                return data_of(record_at(header, want));
            }
            /* lost a race on this slot: look again */
        }
    }
    return NULL; /* every slot holds another key */
}

/* Sets the freed bit of slot `i` (holding `value`, a live record), zeroing
 * the record's data first: whoever frees a shadow owns it, and a revival
 * finds it zero. Gives up if the slot changed meanwhile to anything but
 * another live value of the same key. */
static void free_slot(struct suture_shadow_header *header, uint64_t *slot, uint64_t value) {
    while ((value & FREED_BIT) == 0) {
        struct suture_shadow_record *record = record_at(header, value);
        if (record == NULL) {
            return;
        }
        zero_words(data_of(record), record->size);
        if (__atomic_compare_exchange_n(slot, &value, value | FREED_BIT, 0, __ATOMIC_ACQ_REL,
                                        __ATOMIC_ACQUIRE)) {
            __atomic_fetch_sub(&header->live, 1, __ATOMIC_RELAXED);
            return;
        }
    }
}

void suture_shadow_free_all(uint64_t id) {
    struct suture_shadow_header *header = table();
    if (header == NULL) {
        return;
    }
    uint64_t *slots = slots_of(header);
    for (uint64_t i = 0; i < header->slot_count; ++i) {
        uint64_t value = __atomic_load_n(&slots[i], __ATOMIC_ACQUIRE);
        struct suture_shadow_record *record = value == 0 ? NULL : record_at(header, value);
        if (record != NULL && record->id == id) {
            free_slot(header, &slots[i], value);
        }
    }
}

void suture_shadow_free(const void *obj, uint64_t id) {
    struct suture_shadow_header *header = table();
    if (header == NULL) {
        return;
    }
    uint64_t *slots = slots_of(header);
    uint64_t mask = header->slot_count - 1;
    uint64_t i = hash(obj, id) & mask;
    for (uint64_t probes = 0; probes <= mask; ++probes, i = (i + 1) & mask) {
        uint64_t value = __atomic_load_n(&slots[i], __ATOMIC_ACQUIRE);
        if (value == 0) {
            return;
        }
        struct suture_shadow_record *record = record_at(header, value);
        if (!is_key(record, obj, id)) {
            continue;
        }
        free_slot(header, &slots[i], value);
        return;
    }
}
