/* Version 2 of demo_spin (libdemo.c): the same loop, another result. One
 * function that calls nothing: self-contained, so meson packs it twice, as
 * an entry patch and as a strict one, for the consistency models' test. */
int demo_spin_v2(int rounds) {
    for (long i = 0; i < (long)rounds * 100000L; ++i) {
        __asm__ volatile("");
    }
    return 2;
}
