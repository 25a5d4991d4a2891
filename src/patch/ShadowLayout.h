/* The shadow region: one per process, shared by every patch that uses
 * shadow variables (include/suture/patch.h), so shadow data outlives the
 * patch levels that made it. The injector maps it (read+write, never exec)
 * and writes its header; the in-target runtime (src/patchrt/shadow.c) is
 * the only code that changes it afterwards. Plain C, included by both.
 * Layout and rules: docs/patch-format.md, "Shadow region". Little-endian.
 *
 *   +0             header (below), one page
 *   +slots_offset  slot_count u64 slots: 0 empty; else the offset of a
 *                  record from the region's start, bit 0 set once freed
 *   +arena_offset  records, bump-allocated: a 32-byte record header
 *                  (object, id, size, reserved) and `size` bytes of data
 *                  rounded up to 16
 *
 * A slot once used is never empty again: it keeps its (object, id) for the
 * process's life, freed or live. That is what makes a lock-free
 * open-addressing table without duplicates possible with one-word
 * compare-and-swap: two threads inserting the same key probe the same
 * slots in the same order, and the first empty slot can be won by one only.
 */
#ifndef SUTURE_SHADOW_LAYOUT_H
#define SUTURE_SHADOW_LAYOUT_H

#include <stdint.h>

#define SUTURE_SHADOW_MAGIC "SUTURESH"
#define SUTURE_SHADOW_VERSION 1u
#define SUTURE_SHADOW_HEADER_SIZE 4096u
#define SUTURE_SHADOW_RECORD_SIZE 32u
/* The default table: 65,536 keys over the process's life, 16 MiB of shadow
 * data; MAP_NORESERVE, so untouched pages cost nothing. */
#define SUTURE_SHADOW_DEFAULT_SLOTS 65536u
#define SUTURE_SHADOW_DEFAULT_ARENA (16u << 20)
/* The largest single shadow. */
#define SUTURE_SHADOW_MAX_SIZE (1u << 20)

struct suture_shadow_header {
    char magic[8];           /*  0: "SUTURESH" */
    uint32_t version;        /*  8: 1 */
    uint32_t slot_count;     /* 12: a power of two */
    uint64_t region_size;    /* 16 */
    uint64_t slots_offset;   /* 24 */
    uint64_t arena_offset;   /* 32: 16-byte aligned */
    uint64_t arena_size;     /* 40 */
    uint64_t arena_used;     /* 48: atomic, bytes of the arena handed out */
    uint64_t created_at_ns;  /* 56: Unix ns, by the injector */
    uint32_t creator_pid;    /* 64: the suture that mapped it */
    uint32_t reserved;       /* 68 */
    uint64_t live;           /* 72: atomic, shadows attached now */
    uint64_t allocations;    /* 80: atomic, records handed out */
};

struct suture_shadow_record {
    uint64_t object;
    uint64_t id;
    uint64_t size; /* bytes of data that follow, a multiple of 16 */
    uint64_t reserved;
};

#endif
