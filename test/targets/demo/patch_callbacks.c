/* A patch with callbacks (include/suture/patch.h), for inject-callbacks.sh:
 * version 2 of demo_generation, and callbacks that change demo_global, the
 * library's variable the workload reads through demo_global_value (40 in
 * version 1; the callbacks make it 1040 after apply and 40 again after
 * revert, so the workload observes what post_apply did).
 * Variants, by -D:
 *   (none)            post_apply sets 1040, post_revert sets 40, pre_apply
 *                     and pre_revert check the state they find and return 0
 *   PRE_APPLY_FAILS=N pre_apply returns N without touching anything
 *   PRE_APPLY_SLEEP_MS=N  pre_apply sleeps N ms first, by a raw nanosleep
 *                     system call (the fault injection kills suture then),
 *                     and pre_revert accepts any state (a kill may have
 *                     come before post_apply) */
#include <suture/patch.h>
#include <time.h>

extern int demo_global;

int demo_generation_cb(void) {
    __asm__ volatile("");
    return 2;
}

#ifdef PRE_APPLY_SLEEP_MS
static void raw_sleep(long milliseconds) {
    struct timespec duration = {milliseconds / 1000, (milliseconds % 1000) * 1000000L};
    long result;
    __asm__ volatile("syscall"
                     : "=a"(result)
                     : "0"(35L /* nanosleep */), "D"(&duration), "S"(0L)
                     : "rcx", "r11", "memory");
    (void)result;
}
#endif

static int check_before_apply(void) {
#ifdef PRE_APPLY_FAILS
    return PRE_APPLY_FAILS;
#else
#ifdef PRE_APPLY_SLEEP_MS
    raw_sleep(PRE_APPLY_SLEEP_MS);
#endif
    return demo_global == 40 ? 0 : 7;
#endif
}

static int set_state(void) {
    demo_global = 1040;
    return 0;
}

static int check_before_revert(void) {
#ifdef PRE_APPLY_SLEEP_MS
    return 0;  /* a kill may have come before post_apply: any state will do */
#else
    return demo_global == 1040 ? 0 : 8;
#endif
}

static int reset_state(void) {
    demo_global = 40;
    return 0;
}

SUTURE_PRE_APPLY(check_before_apply);
SUTURE_POST_APPLY(set_state);
SUTURE_PRE_REVERT(check_before_revert);
SUTURE_POST_REVERT(reset_state);
