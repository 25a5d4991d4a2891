/* Holds another process as its tracer, the way a debugger or strace does:
 * PTRACE_SEIZE of every thread of PID (the threads run on, but no other
 * tracer can attach). Prints "ready: tracing PID" and keeps them until stdin ends
 * or it is killed (the kernel detaches them then).
 * Usage: trace-holder PID */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ptrace.h>
#include <unistd.h>

int main(int argc, char** argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: trace-holder PID\n");
        return 2;
    }
    char path[64];
    snprintf(path, sizeof path, "/proc/%s/task", argv[1]);
    DIR* tasks = opendir(path);
    if (tasks == NULL) {
        perror(path);
        return 1;
    }
    int seized = 0;
    for (struct dirent* entry; (entry = readdir(tasks)) != NULL;) {
        int tid = atoi(entry->d_name);
        if (tid > 0 && ptrace(PTRACE_SEIZE, tid, NULL, NULL) == 0) {
            ++seized;
        }
    }
    closedir(tasks);
    if (seized == 0) {
        perror("PTRACE_SEIZE");
        return 1;
    }
    printf("ready: tracing %s\n", argv[1]);
    fflush(stdout);
    char line[16];
    while (fgets(line, sizeof line, stdin) != NULL) {
    }
    return 0;
}
