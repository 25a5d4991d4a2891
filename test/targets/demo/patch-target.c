/* The injector tests' target: a long-running multithreaded process linked
 * against libsuture-demo. Worker threads call the demo functions in a tight
 * loop and check every result is one some version (1, 2 or 3) gives for that
 * call, never anything else. Between calls they do a little work of their own
 * (as a server does between calls into libcrypto): the injector refuses to
 * patch while any thread is inside a function being replaced, and threads
 * that never leave those functions would block it forever. Commands on stdin, one answer line each:
 *   report       "generation=G compute=C helper=H global=V libc=L calls=N bad=B signals=S"
 *                (S counts SIGRTMIN+1 received: real-time signals queue, so a
 *                test can check that none was lost while suture held the process)
 *   sleep MS     starts a thread that sleeps MS ms inside demo_sleep_inside
 *   nounwind MS  starts a thread that sleeps MS ms in a function without
 *                unwind information, holding a pointer to where
 *                demo_compute leads now (into the patch region once patched)
 *   spin N S     starts N threads that call demo_spin back to back for S
 *                seconds (always inside it), counting results: "spinning"
 *   stall        starts a thread that stops inside glibc's malloc_stats()
 *                holding the main arena's lock: stderr becomes a full pipe,
 *                so its fprintf (made under the lock) blocks: "stalled"
 *                (what a patch callback must never run into)
 *   unstall      drains that pipe for good, so malloc_stats returns
 *   quit         exits
 * The report ends "spin=R spun=K spun_v2=K2 spin_bad=B": demo_spin's result
 * now, calls the spinners made, how many gave version 2's result, and how
 * many gave neither version's.
 * Usage: patch-target [WORKER-THREADS] [--idle | --spin] [--mdwe | --seccomp-mdwe]
 *   --idle          workers block in pause() instead of calling (a server's
 *                   threads waiting in epoll_wait look like this to ptrace)
 *   --spin          workers are spinners (as `spin` starts) for a year: the
 *                   benchmark's busy scenario, which reads no answers
 *   --mdwe          prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN): the kernel's
 *                   memory-deny-write-execute for this process
 *   --seccomp-mdwe  a seccomp filter like systemd's MemoryDenyWriteExecute=:
 *                   mmap with PROT_WRITE|PROT_EXEC and mprotect/pkey_mprotect
 *                   with PROT_EXEC fail with EPERM */
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "deny-write-execute.h"

int demo_generation(void);
int demo_compute(int x);
int demo_with_helper(int x);
int demo_global_value(void);
long demo_libc_crypto(void);
int demo_sleep_inside(int milliseconds);
int demo_spin(int rounds);

static atomic_ulong calls;
static atomic_ulong bad;
static atomic_ulong signals_received;
static atomic_ulong spun;
static atomic_ulong spun_v2;
static atomic_ulong spin_bad;

static void count_signal(int signal) {
    (void)signal;
    atomic_fetch_add(&signals_received, 1);
}

static int one_of(long value, long a, long b, long c) {
    return value == a || value == b || value == c;
}

/* Work outside the library between calls. */
static unsigned own_work(unsigned seed) {
    for (int i = 0; i < 400; ++i) {
        seed = seed * 1103515245u + 12345u;
        __asm__ volatile("" : "+r"(seed));
    }
    return seed;
}

static void* worker(void* unused) {
    (void)unused;
    unsigned seed = 1;
    for (unsigned long i = 0;; ++i) {
        int x = (int)(i % 1000);
        int ok = one_of(demo_generation(), 1, 2, 3) &&
                 one_of(demo_compute(x), 2L * x, 3L * x, 4L * x) &&
                 one_of(demo_with_helper(x), (x + 7) * 10L, (x + 7) * 100L, -1) &&
                 one_of(demo_global_value(), 40, 1040, -1);
        if (i % 64 == 0) {
            ok = ok && one_of(demo_libc_crypto(), 12346, 54322, -1);
        }
        seed = own_work(seed);
        if (!ok) {
            atomic_fetch_add(&bad, 1);
        }
        atomic_fetch_add(&calls, 1);
    }
    return NULL;
}

static void* idler(void* unused) {
    (void)unused;
    for (;;) {
        pause();
    }
    return NULL;
}

static void* sleeper(void* argument) {
    demo_sleep_inside((int)(long)argument);
    return NULL;
}

static void* spinner(void* argument) {
    time_t until = time(NULL) + (long)argument;
    while (time(NULL) < until) {
        int result = demo_spin(50);
        if (result != 1 && result != 2) {
            atomic_fetch_add(&spin_bad, 1);
        }
        if (result == 2) {
            atomic_fetch_add(&spun_v2, 1);
        }
        atomic_fetch_add(&spun, 1);
    }
    return NULL;
}

void sleep_without_unwind_info(int milliseconds, unsigned long kept_address);
unsigned long demo_compute_destination(void);

static void* sleeper_without_unwind_info(void* argument) {
    sleep_without_unwind_info((int)(long)argument, demo_compute_destination() + 1);
    return NULL;
}

/* `stall`: a full pipe on stderr, and malloc_stats() writing to it. The
 * drainer is started first and waits for `unstall` on a pipe of its own:
 * once the arena's lock is held, creating a thread (which allocates) would
 * block the main thread too. */
static int stall_pipe[2] = {-1, -1};
static int unstall_pipe[2] = {-1, -1};

static void* staller(void* unused) {
    (void)unused;
    malloc_stats();
    return NULL;
}

static void* drainer(void* unused) {
    (void)unused;
    char buffer[4096];
    if (read(unstall_pipe[0], buffer, 1) != 1) {
        return NULL;
    }
    while (read(stall_pipe[0], buffer, sizeof buffer) > 0) {
    }
    return NULL;
}

static int stall_in_malloc(void) {
    if (pipe(stall_pipe) != 0 || pipe(unstall_pipe) != 0) {
        return -1;
    }
    int flags = fcntl(stall_pipe[1], F_GETFL);
    fcntl(stall_pipe[1], F_SETFL, flags | O_NONBLOCK);
    char filler[4096];
    memset(filler, 'x', sizeof filler);
    while (write(stall_pipe[1], filler, sizeof filler) > 0) {
    }
    fcntl(stall_pipe[1], F_SETFL, flags);
    dup2(stall_pipe[1], 2);
    pthread_t thread;
    if (pthread_create(&thread, NULL, drainer, NULL) != 0) {
        return -1;
    }
    return pthread_create(&thread, NULL, staller, NULL);
}

int main(int argc, char** argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 2;
    void* (*work)(void*) = worker;
    void* work_argument = NULL;
    for (int i = 2; i < argc; ++i) {
        if (strcmp(argv[i], "--idle") == 0) {
            work = idler;
            continue;
        }
        if (strcmp(argv[i], "--spin") == 0) {
            work = spinner;
            work_argument = (void*)(365L * 24 * 3600);
            continue;
        }
        int status = -1;
        if (strcmp(argv[i], "--mdwe") == 0) {
            status = prctl(65 /* PR_SET_MDWE */, 1 /* PR_MDWE_REFUSE_EXEC_GAIN */, 0, 0, 0);
        } else if (strcmp(argv[i], "--seccomp-mdwe") == 0) {
            status = deny_write_execute_with_seccomp();
        }
        if (status != 0 || !write_execute_refused()) {
            fprintf(stderr, "patch-target: %s: not in force (%s)\n", argv[i], strerror(errno));
            return 3;
        }
    }
    for (int i = 0; i < threads; ++i) {
        pthread_t thread;
        pthread_create(&thread, NULL, work, work_argument);
    }
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = count_signal;
    action.sa_flags = SA_RESTART;
    sigaction(SIGRTMIN + 1, &action, NULL);
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("ready %d\n", (int)getpid());
    char line[128];
    while (fgets(line, sizeof line, stdin) != NULL) {
        if (strncmp(line, "report", 6) == 0) {
            printf(
                "generation=%d compute=%d helper=%d global=%d libc=%ld calls=%lu bad=%lu "
                "signals=%lu spin=%d spun=%lu spun_v2=%lu spin_bad=%lu\n",
                demo_generation(), demo_compute(5), demo_with_helper(5), demo_global_value(),
                demo_libc_crypto(), atomic_load(&calls), atomic_load(&bad),
                atomic_load(&signals_received), demo_spin(0), atomic_load(&spun),
                atomic_load(&spun_v2), atomic_load(&spin_bad));
        } else if (strncmp(line, "sleep ", 6) == 0) {
            pthread_t thread;
            pthread_create(&thread, NULL, sleeper, (void*)(long)atoi(line + 6));
            printf("sleeping\n");
        } else if (strncmp(line, "nounwind ", 9) == 0) {
            pthread_t thread;
            pthread_create(&thread, NULL, sleeper_without_unwind_info, (void*)(long)atoi(line + 9));
            printf("sleeping\n");
        } else if (strncmp(line, "spin ", 5) == 0) {
            int threads = 0;
            long seconds = 0;
            if (sscanf(line + 5, "%d %ld", &threads, &seconds) == 2) {
                for (int i = 0; i < threads; ++i) {
                    pthread_t thread;
                    pthread_create(&thread, NULL, spinner, (void*)seconds);
                }
            }
            printf("spinning\n");
        } else if (strncmp(line, "stall", 5) == 0) {
            printf(stall_in_malloc() == 0 ? "stalled\n" : "stall failed\n");
        } else if (strncmp(line, "unstall", 7) == 0) {
            printf(write(unstall_pipe[1], "x", 1) == 1 ? "unstalled\n" : "unstall failed\n");
        } else if (strncmp(line, "quit", 4) == 0) {
            return 0;
        }
    }
    return 0;
}
