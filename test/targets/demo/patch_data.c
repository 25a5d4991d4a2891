/* A patch with data for libsuture-demo (inject-data.sh): new static
 * variables in the data region (.bss, .data, and a .data.rel.ro table of
 * pointers into both the data and the code), and shadow variables through
 * suture/patch.h, linked with the shadow runtime. LEVEL (1 or 2) is set by
 * the build: level 2's demo_count counts from 0 again, in its own fresh
 * data region, while the shadows made by level 1 stay. */
#include <suture/patch.h>

#ifndef LEVEL
#define LEVEL 1
#endif

#define TAG_ID SUTURE_SHADOW_ID(0xdecafu, 1)

struct tag {
    long count;
};

static long calls;                  /* .bss */
static long step = LEVEL;           /* .data */

static long add_step(long value) {
    return value + step;
}

/* .data.rel.ro: relocated when the region is filled, from data to data and
 * from data to code. Indexed by the argument (always 0) so that the
 * compiler cannot fold the tables away. */
static long* const counters[] = {&calls, &calls};
static long (*const steps[])(long) = {add_step, add_step};

/* Level 1: 1, 2, 3 …; level 2: 1002, 1004 … from a fresh start. */
long demo_count_data(long zero) {
    if (zero < 0) {
        step = -zero;  /* never: keeps `step` a variable (.data), not a constant */
    }
    long* counter = counters[zero != 0];
    *counter = steps[zero != 0](*counter);
    return *counter + (LEVEL - 1) * 1000;
}

long demo_tag_data(const void* object) {
    struct tag* tag = suture_shadow_get_or_alloc(object, TAG_ID, sizeof *tag);
    if (tag == 0) {
        return -2;
    }
    return __atomic_add_fetch(&tag->count, 1, __ATOMIC_RELAXED);
}

long demo_tag_count_data(const void* object) {
    struct tag* tag = suture_shadow_get(object, TAG_ID);
    return tag == 0 ? 0 : __atomic_load_n(&tag->count, __ATOMIC_RELAXED);
}

long demo_untag_data(const void* object) {
    suture_shadow_free(object, TAG_ID);
    return suture_shadow_get(object, TAG_ID) == 0 ? 0 : -3;
}
