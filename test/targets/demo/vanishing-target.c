/* A target that goes away while suture works on it, for the injector's
 * truthful errors: two worker threads call the demo functions in a loop (as
 * patch-target does), and when told to it exits, exec's another program or
 * becomes a zombie, a given number of milliseconds later.
 * Usage: vanishing-target MODE
 *   MODE exit        exit(0)
 *        exec-true   execl("/bin/true")
 *        exec-sleep  execl("/bin/sleep", "sleep", "3")
 *        exec-self   exec this program again in MODE idle (the same file:
 *                    only its new stack tells the exec apart)
 *        zombie      the target is a child of this program, which never
 *                    reaps it: after exit(0) it stays a zombie
 *        idle        never goes away (what exec-self becomes)
 * It prints "ready PID" (PID: the target, the child in MODE zombie), then
 * reads one line "go MS" from stdin and does what MODE says MS ms later. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int demo_generation(void);
int demo_compute(int x);

static void* worker(void* unused) {
    (void)unused;
    for (int i = 0;; ++i) {
        demo_generation();
        demo_compute(i % 1000);
    }
    return NULL;
}

static void sleep_ms(int milliseconds) {
    struct timespec pause = {milliseconds / 1000, (milliseconds % 1000) * 1000000L};
    nanosleep(&pause, NULL);
}

int main(int argc, char** argv) {
    const char* mode = argc > 1 ? argv[1] : "idle";
    if (strcmp(mode, "zombie") == 0 && fork() != 0) {
        for (;;) {
            pause();  // never reaps the child: it stays a zombie once it exits
        }
    }
    for (int i = 0; i < 2; ++i) {
        pthread_t thread;
        pthread_create(&thread, NULL, worker, NULL);
    }
    printf("ready %d\n", (int)getpid());
    fflush(stdout);
    if (strcmp(mode, "idle") == 0) {
        for (;;) {
            pause();
        }
    }
    int delay = 0;
    if (scanf("go %d", &delay) != 1) {
        return 2;
    }
    sleep_ms(delay);
    if (strcmp(mode, "exec-true") == 0) {
        execl("/bin/true", "true", (char*)NULL);
    } else if (strcmp(mode, "exec-sleep") == 0) {
        execl("/bin/sleep", "sleep", "3", (char*)NULL);
    } else if (strcmp(mode, "exec-self") == 0) {
        execl("/proc/self/exe", argv[0], "idle", (char*)NULL);
    }
    exit(0);
}
