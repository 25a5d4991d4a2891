/* libsuture-demo: the library the injector tests patch. Version 1 of each
 * function; patch_v2.c and patch_v3.c hold later versions. Built with
 * -fcf-protection like Debian's libcrypto, so functions begin with endbr64.
 * Each function has a v1 result that differs from its v2 and v3 results, so a
 * caller can tell at every call which version ran. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

unsigned long OpenSSL_version_num(void);

#ifdef DEMO_OTHER_BUILD
/* Only in the "other build" variant: different bytes, different build ID. */
const char demo_build_variant[] = "other build";
#endif

/* A global variable of the library that patched code reads. */
int demo_global = 40;

/* A static helper: only the library's own symbol table knows it. */
__attribute__((noinline)) static int demo_helper(int x) {
    __asm__ volatile("");
    return x + 7;
}

int demo_generation(void) {
    __asm__ volatile("");
    return 1;
}

int demo_compute(int x) {
    if (x > 1000000) {
        return -1;
    }
    return x * 2;
}

int demo_with_helper(int x) {
    return demo_helper(x) * 10;
}

int demo_global_value(void) {
    __asm__ volatile("");
    return demo_global;
}

/* Calls into libc and libcrypto. */
long demo_libc_crypto(void) {
    char text[32];
    snprintf(text, sizeof text, "%d", 12345);
    return strtol(text, NULL, 10) + (OpenSSL_version_num() != 0 ? 1 : 0);
}

/* Sleeps inside the function: the stack-safety test's blocker. */
int demo_sleep_inside(int milliseconds) {
    usleep((useconds_t)milliseconds * 1000);
    __asm__ volatile("");
    return 1;
}

/* Spins for `rounds` rounds of a loop deep inside its body, far from the
 * first bytes a patch's jump overwrites, and calls nothing: a thread that
 * calls it back to back is almost always inside it (its PC in the loop),
 * which blocks a strict patch of it and not an entry one. */
int demo_spin(int rounds) {
    for (long i = 0; i < (long)rounds * 100000L; ++i) {
        __asm__ volatile("");
    }
    return 1;
}

/* Two functions that must change together (the strict pair patch,
 * patch_pair.c): demo_pair_step's result carries an offset that
 * demo_pair_sum takes out again. Version 1 adds 1, the patch adds 2; either
 * version's pair gives n(n-1)/2, and a mix (an old sum running with a new
 * step, or the reverse) is off by n. noipa: the sum must really call the
 * step, through the PLT, at every iteration. */
__attribute__((noipa)) long demo_pair_step(long i) {
    return i + 1;
}

__attribute__((noipa)) long demo_pair_sum(long n) {
    long sum = 0;
    for (long i = 0; i < n; ++i) {
        sum += demo_pair_step(i) - 1;
    }
    return sum;
}

/* For patches with data (inject-data.sh, patch_data.c): version 1 keeps no
 * state at all. The patch counts calls of demo_count in a new static
 * variable (its data region) and keeps a count per object for demo_tag in
 * shadow variables: demo_tag(object) adds one and returns the new count,
 * demo_tag_count(object) reads it, demo_untag(object) frees it. Version 1
 * answers -1 to each. noipa keeps every call a call. */
__attribute__((noipa)) long demo_count(long unused) {
    __asm__ volatile("" : "+r"(unused));
    return unused < -1000000 ? unused : -1;
}

__attribute__((noipa)) long demo_tag(const void* object) {
    __asm__ volatile("" : "+r"(object));
    return object == (const void*)1 ? 1 : -1;
}

__attribute__((noipa)) long demo_tag_count(const void* object) {
    __asm__ volatile("" : "+r"(object));
    return object == (const void*)1 ? 1 : -1;
}

__attribute__((noipa)) long demo_untag(const void* object) {
    __asm__ volatile("" : "+r"(object));
    return object == (const void*)1 ? 1 : -1;
}
