/* Version 2 of the demo pair (libdemo.c): the step's offset is 2, and the
 * sum takes 2 out. Applied with only one of the two functions switched, a
 * caller of demo_pair_sum sees a wrong result: the patch is strict. */
long demo_pair_step(long i);

__attribute__((noipa)) long demo_pair_step_pair(long i) {
    return i + 2;
}

__attribute__((noipa)) long demo_pair_sum_pair(long n) {
    long sum = 0;
    for (long i = 0; i < n; ++i) {
        sum += demo_pair_step(i) - 2;
    }
    return sum;
}
