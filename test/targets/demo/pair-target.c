/* The strict-patch tests' target: worker threads that spend nearly all
 * their time inside demo_pair_sum (each call loops over demo_pair_step for
 * about a millisecond) and check every result: n(n-1)/2 whichever version
 * of the pair runs, anything else means a mixed pair ran (libdemo.c).
 * Without return gates such a process can never be patched strictly: at
 * every stop some thread is inside the pair. Commands on stdin, one answer
 * line each:
 *   report  "calls=N min_calls=M bad=B version=V" (M: the fewest calls of
 *           any worker; V: 1 or 2, which pair demo_pair_step(0) shows)
 *   calm MS workers sleep MS ms between calls from now on (0: busy again):
 *           a moment with every thread outside the patch region, so that
 *           a stop can unmap a retired region (tests that check that
 *           nothing of suture is left)
 *   quit    exits
 * Usage: pair-target [WORKER-THREADS] [ITERATIONS-PER-CALL] */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>


long demo_pair_step(long i);
long demo_pair_sum(long n);

enum { max_workers = 64 };
static atomic_ulong calls[max_workers];
static atomic_ulong bad;
static long iterations = 300000;
static atomic_int calm_ms;

static void* worker(void* argument) {
    long index = (long)argument;
    long expected = iterations * (iterations - 1) / 2;
    for (;;) {
        if (demo_pair_sum(iterations) != expected) {
            atomic_fetch_add(&bad, 1);
        }
        atomic_fetch_add(&calls[index], 1);
        int pause_ms = atomic_load(&calm_ms);
        if (pause_ms > 0) {
            usleep((useconds_t)pause_ms * 1000);
        }
    }
    return NULL;
}

int main(int argc, char** argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 8;
    if (argc > 2) {
        iterations = atol(argv[2]);
    }
    if (threads < 1 || threads > max_workers) {
        fprintf(stderr, "pair-target: 1 to %d threads\n", max_workers);
        return 2;
    }
    for (long i = 0; i < threads; ++i) {
        pthread_t thread;
        pthread_create(&thread, NULL, worker, (void*)i);
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("ready %d\n", (int)getpid());
    char line[128];
    while (fgets(line, sizeof line, stdin) != NULL) {
        if (strncmp(line, "report", 6) == 0) {
            unsigned long total = 0, fewest = (unsigned long)-1;
            for (int i = 0; i < threads; ++i) {
                unsigned long n = atomic_load(&calls[i]);
                total += n;
                fewest = n < fewest ? n : fewest;
            }
            printf("calls=%lu min_calls=%lu bad=%lu version=%ld\n", total, fewest,
                   atomic_load(&bad), demo_pair_step(0));
        } else if (strncmp(line, "calm ", 5) == 0) {
            atomic_store(&calm_ms, atoi(line + 5));
            printf("calm %d\n", atomic_load(&calm_ms));
        } else if (strncmp(line, "quit", 4) == 0) {
            return 0;
        }
    }
    return 0;
}
