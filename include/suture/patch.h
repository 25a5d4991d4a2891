/* suture/patch.h: what a live patch's code may use beyond plain C.
 * suture-build adds this directory to the fix's compile and links the
 * in-target runtime (src/patchrt/) into the patch when the fix calls it.
 * Rules and examples: docs/builder.md, "Patch author guide" (shadow
 * variables) and "Callbacks".
 *
 * Freestanding: nothing here takes a lock or calls malloc, so patch code
 * may call it from any thread, with any lock of the program held, and a
 * thread stopped by suture in the middle of a call holds up nobody. */
#ifndef SUTURE_PATCH_H
#define SUTURE_PATCH_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Shadow variables ------------------------------------------------
 * Extra data attached to an existing object, keyed by (object address,
 * id). Lock-free, usable from any thread, no malloc. The table belongs to
 * the process, not to a patch: shadows survive level upgrades and reverts
 * (a revert leaves them; a later level finds them). An id names one kind
 * of shadow and its size; choose ids that cannot collide with another
 * fix's (SUTURE_SHADOW_ID below). docs/patch-format.md, "Shadow region",
 * has the rules: lifetime, who frees, concurrency, capacity. */

/* The shadow of (obj, id), or NULL if none is attached. */
void *suture_shadow_get(const void *obj, uint64_t id);
/* Returns the existing shadow or a new zeroed one of `size` bytes
   (NULL when out of shadow memory). Safe when two threads race. */
void *suture_shadow_get_or_alloc(const void *obj, uint64_t id, size_t size);
/* Detaches (obj, id)'s shadow (zeroing its bytes); nothing if none. The
   memory is kept for the next shadow of the same (obj, id). */
void suture_shadow_free(const void *obj, uint64_t id);
/* Detaches every shadow with this id, of any object: for a post_revert or
   pre_revert callback that drops the state of its patch (a revert alone
   leaves shadows in place). Walks the whole table. */
void suture_shadow_free_all(uint64_t id);

/* An id from a fix's name and a small number: ids of two fixes differ
   unless their names do not, e.g. SUTURE_SHADOW_ID(0x54874u, 1). */
#define SUTURE_SHADOW_ID(fix, n) ((((uint64_t)(fix)) << 16) | (uint64_t)(n))

#ifdef __cplusplus
}
#endif

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

#endif
