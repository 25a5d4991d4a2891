/* suture/patch.h: what a live patch's code may use beyond plain C.
 * suture-build adds this directory to the fix's compile and links the
 * in-target runtime (src/patchrt/) into the patch when the fix calls it.
 * Rules and examples: docs/builder.md, "Patch author guide".
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

/* ---- Callbacks -------------------------------------------------------
 * (section owned by the callbacks part of issue 14: pre_apply, post_apply,
 * pre_revert, post_revert; docs/builder.md, "Callbacks") */

#endif
