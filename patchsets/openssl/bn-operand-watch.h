/*
 * A deterministic observable for the timing side-channel reproducers
 * (CVE-2026-54872, CVE-2026-77696): the word lengths of the operands that
 * OpenSSL's variable-time BIGNUM additions and subtractions see.
 *
 * BN_uadd() and BN_usub() loop over their operands' words: their running
 * time follows each operand's `top` (its length in 64-bit words), so a
 * secret whose length reaches them leaks through timing. Measuring time is
 * not deterministic (and this machine's VM has no PMU for instruction
 * counts: perf_event_open(PERF_COUNT_HW_INSTRUCTIONS) gives ENOENT), but the
 * lengths themselves are: this header records them.
 *
 * How: the reproducer defines BN_uadd and BN_usub itself, so the dynamic
 * linker binds libcrypto's own calls to them (libcrypto calls its exported
 * functions through its PLT: BN_add() and BN_sub() reach BN_uadd/BN_usub
 * that way, in 3.0 and 3.5) to these wrappers, which report each call to
 * the reproducer's hook and then call libcrypto's function. A live patch
 * does not bypass them: a replaced function calls BN_add() directly, but
 * BN_add() itself (unchanged) still goes through the PLT to BN_uadd.
 *
 * The lengths are read from the BIGNUM itself: struct bignum_st
 * (crypto/bn/bn_local.h) starts { BN_ULONG *d; int top; int dmax; int neg;
 * int flags; } in every OpenSSL 3 release, and `top` is not in the public
 * API (BN_num_bits() gives the value's length, not the number of words the
 * loops run over, which is what a "fixed top" number changes).
 *
 * Include once per program (it defines BN_uadd and BN_usub); the program
 * sets bn_watch_hook while it watches.
 */
#ifndef SUTURE_BN_OPERAND_WATCH_H
#define SUTURE_BN_OPERAND_WATCH_H

#ifndef _GNU_SOURCE
#error "define _GNU_SOURCE before any include (bn-operand-watch.h needs RTLD_NEXT)"
#endif
#include <dlfcn.h>
#include <stdlib.h>
#include <openssl/bn.h>

enum bn_watched_operation { BN_WATCH_UADD, BN_WATCH_USUB };

/* Called before each BN_uadd/BN_usub while set: r = a + b or r = a - b. */
static void (*bn_watch_hook)(enum bn_watched_operation operation, const BIGNUM* r,
                             const BIGNUM* a, const BIGNUM* b);

/* The number of words a BIGNUM's `top` says it has (see above). */
static inline int bn_word_length(const BIGNUM* number) {
    const struct {
        BN_ULONG* d;
        int top;
    }* layout = (const void*)number;
    return layout->top;
}

typedef int (*bn_binary_function)(BIGNUM*, const BIGNUM*, const BIGNUM*);

/* libcrypto's definition of NAME, the one these wrappers stand in front of. */
static inline bn_binary_function bn_watch_next(const char* name) {
    bn_binary_function next;
    *(void**)&next = dlsym(RTLD_NEXT, name);
    if (next == NULL)
        abort(); /* no libcrypto loaded: nothing could have called us */
    return next;
}

int BN_uadd(BIGNUM* r, const BIGNUM* a, const BIGNUM* b) {
    static bn_binary_function next;
    if (next == NULL)
        next = bn_watch_next("BN_uadd");
    if (bn_watch_hook != NULL)
        bn_watch_hook(BN_WATCH_UADD, r, a, b);
    return next(r, a, b);
}

int BN_usub(BIGNUM* r, const BIGNUM* a, const BIGNUM* b) {
    static bn_binary_function next;
    if (next == NULL)
        next = bn_watch_next("BN_usub");
    if (bn_watch_hook != NULL)
        bn_watch_hook(BN_WATCH_USUB, r, a, b);
    return next(r, a, b);
}

#endif
