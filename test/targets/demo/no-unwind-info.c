/* Code without unwind information, as hand-written assembly or objects built
 * with -fno-asynchronous-unwind-tables are (meson builds this file so): no
 * unwinder can step past a frame of it. Each function keeps, while it sleeps,
 * a pointer into code being replaced on its stack, as a stale return address
 * would be: the stack scan sees it, and only a complete unwind could overrule
 * the scan. The stack-check tests use it to prove that an unwind that cannot
 * be completed blocks apply and revert. */
#include <string.h>
#include <unistd.h>

int demo_compute(int x);

void sleep_without_unwind_info(int milliseconds, unsigned long kept_address) {
    volatile unsigned long kept = kept_address;
    usleep((useconds_t)milliseconds * 1000);
    (void)kept;
}

/* Where a jump written at demo_compute's entry (after an endbr64) leads, or
 * demo_compute itself when it holds none: inside the patch region once a
 * patch replaced it. */
unsigned long demo_compute_destination(void) {
    const unsigned char* entry = (const unsigned char*)&demo_compute;
    const unsigned char* site = entry[0] == 0xf3 && entry[1] == 0x0f ? entry + 4 : entry;
    if (site[0] != 0xe9) {
        return (unsigned long)entry;
    }
    int displacement;
    memcpy(&displacement, site + 1, sizeof displacement);
    return (unsigned long)(site + 5 + displacement);
}
