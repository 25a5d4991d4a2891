/* A process that shares its memory with another process, for the injector's
 * shared-address-space refusal: worker threads call the demo functions in a
 * loop (as patch-target does), and on command one more task runs the same
 * functions in the same memory without being one of its threads. Every
 * result is checked against what some version (1, 2 or 3) gives.
 * Commands on stdin, one answer line each:
 *   vfork MS   a thread calls vfork(); the child calls demo_compute for MS ms
 *              without exec'ing, then _exit(0)s; answers "child PID"
 *   vforks N MS  a thread vforks N children one after the other, each
 *              calling demo_compute for MS ms; answers "started" (for the
 *              race of a vfork() between suture's check and its stop)
 *   clone MS   clone(CLONE_VM|SIGCHLD): a child process in this memory calls
 *              demo_compute for MS ms, then exits; answers "child PID"
 *   report     "generation=G calls=N bad=B child_calls=C child_bad=D
 *              reaped=R crashed=K" (R children reaped so far, K of them
 *              killed by a signal or exiting non-zero)
 *   quit       exits
 * Usage: shared-memory-target [WORKER-THREADS] */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int demo_generation(void);
int demo_compute(int x);

static atomic_ulong calls;
static atomic_ulong bad;
static atomic_ulong child_calls;
static atomic_ulong child_bad;
static atomic_int child_pid;
static unsigned long reaped;
static unsigned long crashed;

static int compute_ok(int x) {
    long value = demo_compute(x);
    return value == 2L * x || value == 3L * x || value == 4L * x;
}

static void* worker(void* unused) {
    (void)unused;
    for (unsigned long i = 0;; ++i) {
        int generation = demo_generation();
        int ok = generation >= 1 && generation <= 3 && compute_ok((int)(i % 1000));
        if (!ok) {
            atomic_fetch_add(&bad, 1);
        }
        atomic_fetch_add(&calls, 1);
    }
    return NULL;
}

static long now_ms(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return now.tv_sec * 1000L + now.tv_nsec / 1000000L;
}

/* The child's loop. It runs in this process's memory but is not one of its
 * threads: it touches only atomics and the demo library (no errno, no
 * stdio), and ends with a raw exit system call. */
static void child_calls_for(long milliseconds) {
    atomic_store(&child_pid, (int)syscall(SYS_getpid));
    long until = now_ms() + milliseconds;
    for (int i = 0; now_ms() < until; ++i) {
        if (!compute_ok(i % 1000)) {
            atomic_fetch_add(&child_bad, 1);
        }
        atomic_fetch_add(&child_calls, 1);
    }
}

/* The calling thread waits in vfork() until the child exits. */
static __attribute__((noinline)) void vfork_one(long milliseconds) {
    if (vfork() == 0) {
        child_calls_for(milliseconds);
        _exit(0);
    }
}

static void* vfork_thread(void* argument) {
    vfork_one((long)argument);
    return NULL;
}

struct VforkSeries {
    long count;
    long milliseconds;
};

static void* vfork_series_thread(void* argument) {
    struct VforkSeries series = *(struct VforkSeries*)argument;
    free(argument);
    for (long i = 0; i < series.count; ++i) {
        vfork_one(series.milliseconds);
    }
    return NULL;
}

static int clone_child(void* argument) {
    child_calls_for((long)argument);
    syscall(SYS_exit, 0);
    return 0;
}

static int start_clone_child(long milliseconds) {
    const size_t stack_size = 1 << 20;
    char* stack =
        mmap(NULL, stack_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (stack == MAP_FAILED) {
        return -1;
    }
    /* The stack stays mapped: the child may still run on it when this
     * function returns. */
    return clone(clone_child, stack + stack_size, CLONE_VM | SIGCHLD, (void*)milliseconds);
}

/* Waits (up to 5 s) until the child has written its PID. */
static int wait_for_child_pid(void) {
    for (int i = 0; i < 5000; ++i) {
        int pid = atomic_exchange(&child_pid, 0);
        if (pid != 0) {
            return pid;
        }
        usleep(1000);
    }
    return -1;
}

static void reap_children(void) {
    int status = 0;
    while (waitpid(-1, &status, WNOHANG | __WALL) > 0) {
        ++reaped;
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            ++crashed;
        }
    }
}

int main(int argc, char** argv) {
    int workers = argc > 1 ? atoi(argv[1]) : 2;
    setvbuf(stdout, NULL, _IOLBF, 0);
    for (int i = 0; i < workers; ++i) {
        pthread_t thread;
        pthread_create(&thread, NULL, worker, NULL);
    }
    printf("ready %d\n", (int)getpid());
    char line[128];
    while (fgets(line, sizeof line, stdin) != NULL) {
        long milliseconds = 0;
        reap_children();
        long count = 0;
        if (sscanf(line, "vforks %ld %ld", &count, &milliseconds) == 2) {
            struct VforkSeries* series = malloc(sizeof *series);
            series->count = count;
            series->milliseconds = milliseconds;
            pthread_t thread;
            pthread_create(&thread, NULL, vfork_series_thread, series);
            pthread_detach(thread);
            printf("started\n");
        } else if (sscanf(line, "vfork %ld", &milliseconds) == 1) {
            pthread_t thread;
            pthread_create(&thread, NULL, vfork_thread, (void*)milliseconds);
            pthread_detach(thread);
            printf("child %d\n", wait_for_child_pid());
        } else if (sscanf(line, "clone %ld", &milliseconds) == 1) {
            int pid = start_clone_child(milliseconds);
            printf("child %d\n", pid < 0 ? -1 : wait_for_child_pid());
        } else if (strncmp(line, "report", 6) == 0) {
            printf(
                "generation=%d calls=%lu bad=%lu child_calls=%lu child_bad=%lu reaped=%lu "
                "crashed=%lu\n",
                demo_generation(), atomic_load(&calls), atomic_load(&bad),
                atomic_load(&child_calls), atomic_load(&child_bad), reaped, crashed);
        } else if (strncmp(line, "quit", 4) == 0) {
            return 0;
        }
    }
    return 0;
}
