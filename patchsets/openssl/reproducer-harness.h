/*
 * The part every CVE reproducer under patchsets/openssl/ shares: the
 * commands it answers and the forked child its probe may run in. A
 * reproducer.c keeps only its own probe (the crafted input against the
 * vulnerable code) and workload (a valid use of the same API) and hands them
 * to serve_commands().
 *
 * A reproducer is a long-running target that the integration tests
 * live-patch. It prints "ready", then answers each command on stdin with one
 * line on stdout:
 *   probe     VULNERABLE, FIXED, or ERROR <reason> if the probe could not run
 *   workload  OK, or FAILED <reason>
 *   pid       this process's pid
 *   quit      exit 0, as does end of input
 * and "ERROR unknown command: <line>" to anything else. Nothing goes to
 * stderr once it is ready: the driving test may read it merged with stdout.
 *
 * Only static inline functions, so that one compiler command builds a
 * reproducer and a reproducer need not use all of them: meson puts this
 * directory on the include path (patchsets/openssl/meson.build), and
 * test/integration/patchset-cve.sh compiles in a release's root filesystem
 * with a copy of patchsets/openssl/ and the same -I.
 */
#ifndef SUTURE_REPRODUCER_HARNESS_H
#define SUTURE_REPRODUCER_HARNESS_H

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

/*
 * Gives a UDP socket a receive buffer big enough for every datagram one step
 * of a loopback connection can bring. The default holds about 90 full-size
 * datagrams, and a congestion window's burst is more: the kernel then drops
 * some (Udp RcvbufErrors in /proc/net/snmp), and a probe that counts on its
 * crafted datagram or frame arriving answers wrongly. SO_RCVBUFFORCE works
 * as root; otherwise SO_RCVBUF gets what rmem_max allows.
 */
static inline void receive_every_datagram(int fd) {
    int size = 16 << 20;

    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof(size)) < 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
}

/* What a reproducer hands to serve_commands(). */
struct reproducer {
    /* The answer to `probe`: "VULNERABLE", "FIXED" or "ERROR <reason>". */
    const char* (*probe)(void* context);
    /* Runs the workload once: NULL if it worked, else why it failed. */
    const char* (*workload)(void* context);
    /* Passed to both; owned by the reproducer. */
    void* context;
};

/* One exit status of a probe child and the answer it stands for. */
struct child_verdict {
    int exit_status;
    const char* answer;
};

/*
 * Runs in_child(context) in a forked child and returns the answer to
 * `probe`. The child runs this process's libcrypto code as it is in memory
 * now, patched or not; its exit status is in_child's return value. A signal
 * ending the child (the crash the CVE is about) means "VULNERABLE"; an exit
 * status gets its answer from verdicts, a list that ends with {0, NULL};
 * anything else is an ERROR line. The answer is a static string or one of
 * verdicts', valid until the next call.
 */
static inline const char* run_probe_in_child(int (*in_child)(void* context), void* context,
                                             const struct child_verdict* verdicts) {
    static char error[128];
    int status;
    pid_t pid = fork();

    if (pid < 0) {
        snprintf(error, sizeof(error), "ERROR fork: %s", strerror(errno));
        return error;
    }
    if (pid == 0) {
        /* Crashing is an expected outcome when vulnerable: no core file. */
        prctl(PR_SET_DUMPABLE, 0);
        _exit(in_child(context));
    }
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) {
            snprintf(error, sizeof(error), "ERROR waitpid: %s", strerror(errno));
            return error;
        }
    }
    if (WIFSIGNALED(status))
        return "VULNERABLE";
    for (; verdicts->answer != NULL; verdicts++) {
        if (verdicts->exit_status == WEXITSTATUS(status))
            return verdicts->answer;
    }
    snprintf(error, sizeof(error), "ERROR probe child exited with status %d", WEXITSTATUS(status));
    return error;
}

/* Answers one command other than `quit` with one line on stdout. */
static inline void answer_command(const struct reproducer* reproducer, const char* command) {
    const char* failure;

    if (strcmp(command, "probe") == 0) {
        puts(reproducer->probe(reproducer->context));
    } else if (strcmp(command, "workload") == 0) {
        failure = reproducer->workload(reproducer->context);
        if (failure == NULL)
            puts("OK");
        else
            printf("FAILED %s\n", failure);
    } else if (strcmp(command, "pid") == 0) {
        printf("%ld\n", (long)getpid());
    } else {
        printf("ERROR unknown command: %s\n", command);
    }
}

/*
 * Prints "ready", then answers the commands on stdin until `quit` or end of
 * input. Each answer is flushed at once (the test waits for it), which also
 * leaves nothing buffered for a forked probe child to inherit.
 */
static inline void serve_commands(const struct reproducer* reproducer) {
    char* line = NULL;
    size_t capacity = 0;

    puts("ready");
    fflush(stdout);
    while (getline(&line, &capacity, stdin) >= 0) {
        line[strcspn(line, "\r\n")] = '\0';
        if (strcmp(line, "quit") == 0)
            break;
        answer_command(reproducer, line);
        fflush(stdout);
    }
    free(line);
}

#endif
