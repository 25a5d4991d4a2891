/* suture/patch.h: what a fix written for a suture patch may include.
 * The shadow-variable API (the data region work) goes above; this file has
 * only the callbacks section, guarded on its own so it can sit at the end of
 * the full header unchanged. */
#include <stddef.h>
#include <stdint.h>

#ifndef SUTURE_PATCH_CALLBACKS_H
#define SUTURE_PATCH_CALLBACKS_H
/* ---- Callbacks (docs/builder.md, "Callbacks") ------------------------------
 * SUTURE_PRE_APPLY(fn) and its siblings declare `int fn(void)` a callback of
 * the patch: suture runs it inside the target, on one thread, while every
 * other thread stays stopped:
 *   pre_apply    after the patch's code is in memory, before any jump:
 *                non-zero refuses the apply, which then changes nothing
 *   post_apply   after the jumps (a failure is reported, not undone)
 *   pre_revert   before the original code comes back: non-zero refuses
 *                the revert
 *   post_revert  after it, before the patch's memory is released
 * Rules: return within 200 ms (past 2 s the call is left to finish alone
 * and reported as a timeout); take no lock another thread may hold (every
 * other thread is stopped: a lock it holds is never released); malloc and
 * free are allowed (suture runs no callback while a thread is inside the
 * allocator or the dynamic loader) but dlopen, dlsym and lazily bound calls
 * into libraries not yet bound are not; signals are blocked during the call.
 *
 * Each macro defines a small global function under the name the builder
 * looks for (__suture_callback_<kind>), which calls `fn`. */
#define SUTURE_CALLBACK_(kind, fn)                                               \
    int __suture_callback_##kind(void) __attribute__((used, noinline));          \
    int __suture_callback_##kind(void) {                                          \
        return fn();                                                              \
    }                                                                             \
    _Static_assert(1, "SUTURE_" #kind " needs a semicolon")

#define SUTURE_PRE_APPLY(fn) SUTURE_CALLBACK_(pre_apply, fn)
#define SUTURE_POST_APPLY(fn) SUTURE_CALLBACK_(post_apply, fn)
#define SUTURE_PRE_REVERT(fn) SUTURE_CALLBACK_(pre_revert, fn)
#define SUTURE_POST_REVERT(fn) SUTURE_CALLBACK_(post_revert, fn)

#endif /* SUTURE_PATCH_CALLBACKS_H */
