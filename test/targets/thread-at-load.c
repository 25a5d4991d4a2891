/* A library whose constructor starts a thread: preloaded (LD_PRELOAD), it
   gives a program a second thread before its entry point. sutured parks
   it anyway: the exec event comes before the loader runs constructors. */
#include <pthread.h>
#include <unistd.h>

static void* idle(void* unused) {
    (void)unused;
    for (;;) {
        pause();
    }
    return 0;
}

__attribute__((constructor)) static void start_thread(void) {
    pthread_t thread;
    pthread_create(&thread, 0, idle, 0);
    pthread_detach(thread);
}
