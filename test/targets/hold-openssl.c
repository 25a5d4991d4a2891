/* A test target: loads the OpenSSL libraries named on the command line (by
 * soname, found through LD_LIBRARY_PATH, or by path), prints what
 * OpenSSL_version() says, then "ready" and waits until it is killed or its
 * stdin reaches end of file. Each line "version" on stdin prints
 * OpenSSL_version(OPENSSL_VERSION) again (the injector tests patch it); each line "major" prints
 * OPENSSL_version_major() (3.0 and later; the health watch's bad patch replaces it). The scanner tests and the
 * benchmark start many of these and compare what suture reports with what readelf says of the
 * files. With --thread first, a second thread does the loading (the library
 * load tests catch the thread that opens).
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef const char* (*openssl_version_fn)(int);
typedef unsigned int (*openssl_major_fn)(void);

static openssl_version_fn last_version = NULL;
static openssl_major_fn major = NULL;

struct libraries {
    int count;
    char** names;
    int failed;
};

static void* load_all(void* argument) {
    struct libraries* libraries = argument;
    for (int i = 0; i < libraries->count; ++i) {
        void* handle = dlopen(libraries->names[i], RTLD_NOW | RTLD_GLOBAL);
        if (handle == NULL) {
            fprintf(stderr, "hold-openssl: %s\n", dlerror());
            libraries->failed = 1;
            return NULL;
        }
        openssl_version_fn version = (openssl_version_fn)dlsym(handle, "OpenSSL_version");
        printf("loaded %s%s%s\n", libraries->names[i], version ? ": " : "", version ? version(0) : "");
        last_version = version != NULL ? version : last_version;
        openssl_major_fn found_major = (openssl_major_fn)dlsym(handle, "OPENSSL_version_major");
        major = found_major != NULL ? found_major : major;
    }
    return NULL;
}

int main(int argc, char** argv) {
    int first = 1;
    int in_thread = argc > 1 && strcmp(argv[1], "--thread") == 0;
    first += in_thread;
    if (argc <= first) {
        fprintf(stderr, "usage: hold-openssl [--thread] LIBRARY...\n");
        return 2;
    }
    struct libraries libraries = {argc - first, argv + first, 0};
    if (in_thread) {
        pthread_t loader;
        if (pthread_create(&loader, NULL, load_all, &libraries) != 0) {
            fprintf(stderr, "hold-openssl: cannot start a thread\n");
            return 1;
        }
        pthread_join(loader, NULL);
    } else {
        load_all(&libraries);
    }
    if (libraries.failed) {
        return 1;
    }
    printf("ready %d\n", (int)getpid());
    fflush(stdout);
    char line[64];
    while (fgets(line, sizeof line, stdin) != NULL) {
        if (strncmp(line, "version", 7) == 0 && last_version != NULL) {
            printf("%s\n", last_version(0));
            fflush(stdout);
        } else if (strncmp(line, "major", 5) == 0 && major != NULL) {
            printf("major %u\n", major());
            fflush(stdout);
        }
    }
    /* stdin closed (or was /dev/null): keep holding until killed. */
    if (getenv("HOLD_UNTIL_STDIN_EOF") != NULL) {
        return 0;
    }
    for (;;) {
        pause();
    }
}
