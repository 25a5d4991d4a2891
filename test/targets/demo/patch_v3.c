/* Level 2 of the same patch id: replaces level 1 (patch_v2.c) in one stop.
 * It no longer replaces demo_sleep_inside, which must get its original back. */
int demo_generation_v3(void) {
    __asm__ volatile("");
    return 3;
}

int demo_compute_v3(int x) {
    if (x > 1000000) {
        return -1;
    }
    return x * 4;
}
