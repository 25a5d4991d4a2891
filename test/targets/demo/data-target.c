/* The target for patches with data (inject-data.sh): a process linked
 * against libsuture-demo that calls demo_count, demo_tag, demo_tag_count
 * and demo_untag on command. Commands on stdin, one answer line each:
 *   count             calls demo_count once: "count=C"
 *   tag THREADS ROUNDS  THREADS threads at once each call demo_tag on every
 *                     one of the 1000 objects, ROUNDS times:
 *                     "tagged=N failed=F" (F: calls answering < 1)
 *   counts            demo_tag_count of every object: "objects=K sum=S
 *                     min=A max=B" (K: objects with a nonzero count)
 *   untag             demo_untag of every object: "untagged=N failed=F"
 *   maps              "ok" (a point where the test reads /proc/PID/maps)
 *   quit              exits
 * Usage: data-target [--mdwe | --seccomp-mdwe]
 *   --mdwe          prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN) first;
 *                   "mdwe=on" or "mdwe=unsupported" is the first line
 *   --seccomp-mdwe  systemd's MemoryDenyWriteExecute= filter first;
 *                   "seccomp-mdwe=on" once a W+X mmap is refused, else
 *                   "seccomp-mdwe=failed"
 * It prints "ready" once it reads commands. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>

#include "deny-write-execute.h"

#ifndef PR_SET_MDWE
#define PR_SET_MDWE 65
#define PR_MDWE_REFUSE_EXEC_GAIN 1
#endif

long demo_count(long unused);
long demo_tag(const void* object);
long demo_tag_count(const void* object);
long demo_untag(const void* object);

enum { object_count = 1000 };
static long objects[object_count];

struct tagger {
    pthread_t thread;
    long rounds;
    pthread_barrier_t* start;
    long tagged;
    long failed;
};

static void* tag_all(void* argument) {
    struct tagger* self = argument;
    pthread_barrier_wait(self->start);
    for (long round = 0; round < self->rounds; ++round) {
        for (int i = 0; i < object_count; ++i) {
            if (demo_tag(&objects[i]) < 1) {
                ++self->failed;
            }
            ++self->tagged;
        }
    }
    return NULL;
}

static void tag(int threads, long rounds) {
    struct tagger taggers[64];
    pthread_barrier_t start;
    if (threads < 1 || threads > 64) {
        printf("error threads\n");
        return;
    }
    pthread_barrier_init(&start, NULL, (unsigned)threads);
    for (int t = 0; t < threads; ++t) {
        taggers[t] = (struct tagger){.rounds = rounds, .start = &start};
        pthread_create(&taggers[t].thread, NULL, tag_all, &taggers[t]);
    }
    long tagged = 0, failed = 0;
    for (int t = 0; t < threads; ++t) {
        pthread_join(taggers[t].thread, NULL);
        tagged += taggers[t].tagged;
        failed += taggers[t].failed;
    }
    pthread_barrier_destroy(&start);
    printf("tagged=%ld failed=%ld\n", tagged, failed);
}

static void counts(void) {
    long nonzero = 0, sum = 0, min = -1, max = -1;
    for (int i = 0; i < object_count; ++i) {
        long count = demo_tag_count(&objects[i]);
        nonzero += count > 0;
        sum += count;
        min = (min == -1 || count < min) ? count : min;
        max = count > max ? count : max;
    }
    printf("objects=%ld sum=%ld min=%ld max=%ld\n", nonzero, sum, min, max);
}

static void untag(void) {
    long untagged = 0, failed = 0;
    for (int i = 0; i < object_count; ++i) {
        long result = demo_untag(&objects[i]);
        untagged += result == 0;
        failed += result != 0;
    }
    printf("untagged=%ld failed=%ld\n", untagged, failed);
}

int main(int argc, char** argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc > 1 && strcmp(argv[1], "--mdwe") == 0) {
        int denied = prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0L, 0L, 0L);
        printf("mdwe=%s\n", denied == 0 ? "on" : "unsupported");
    }
    if (argc > 1 && strcmp(argv[1], "--seccomp-mdwe") == 0) {
        int filtered = deny_write_execute_with_seccomp() == 0 && write_execute_refused();
        printf("seccomp-mdwe=%s\n", filtered ? "on" : "failed");
    }
    printf("ready\n");
    char line[256];
    while (fgets(line, sizeof line, stdin) != NULL) {
        int threads = 0;
        long rounds = 0;
        if (strncmp(line, "count", 5) == 0 && (line[5] == '\n' || line[5] == 0)) {
            printf("count=%ld\n", demo_count(0));
        } else if (sscanf(line, "tag %d %ld", &threads, &rounds) == 2) {
            tag(threads, rounds);
        } else if (strncmp(line, "counts", 6) == 0) {
            counts();
        } else if (strncmp(line, "untag", 5) == 0) {
            untag();
        } else if (strncmp(line, "maps", 4) == 0) {
            printf("ok\n");
        } else if (strncmp(line, "quit", 4) == 0) {
            return 0;
        } else {
            printf("error unknown command\n");
        }
    }
    return 0;
}
