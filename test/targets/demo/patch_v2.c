/* Version 2 of libsuture-demo's functions, as a live patch. References to
 * the library (demo_global, the static demo_helper) become offsets from its
 * load base; snprintf, strtol and OpenSSL_version_num become imports. */
#include <stdio.h>
#include <stdlib.h>

unsigned long OpenSSL_version_num(void);
extern int demo_global;
int demo_helper(int x);

int demo_generation_v2(void) {
    __asm__ volatile("");
    return 2;
}

int demo_compute_v2(int x) {
    if (x > 1000000) {
        return -1;
    }
    return x * 3;
}

int demo_with_helper_v2(int x) {
    return demo_helper(x) * 100;
}

int demo_global_value_v2(void) {
    return demo_global + 1000;
}

long demo_libc_crypto_v2(void) {
    char text[32];
    snprintf(text, sizeof text, "%d", 54321);
    return strtol(text, NULL, 10) + ((OpenSSL_version_num() >> 28) == 3 ? 1 : 0);
}

int demo_sleep_inside_v2(int milliseconds) {
    (void)milliseconds;
    return 2;
}
