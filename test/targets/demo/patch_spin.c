/* demo_spin_inside, version 2: the same loop, another result. The
 * entry-patch benchmark (test/bench/inject_bench.cpp) applies it while
 * threads spin inside version 1. */
int demo_spin_inside_v2(unsigned rounds) {
    unsigned seed = rounds ^ 0x5bd1e995u;
    seed = seed * 1103515245u + 12345u;
    __asm__ volatile("" : "+r"(seed));
    for (unsigned i = 0; i < rounds; ++i) {
        seed = seed * 1103515245u + 12345u;
        __asm__ volatile("" : "+r"(seed));
    }
    return 2;
}
