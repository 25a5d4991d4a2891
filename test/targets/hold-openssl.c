/* A test target: loads the OpenSSL libraries named on the command line (by
 * soname, found through LD_LIBRARY_PATH, or by path), prints what
 * OpenSSL_version() says, then "ready" and waits until it is killed or its
 * stdin reaches end of file. Each line "version" on stdin prints
 * OpenSSL_version(OPENSSL_VERSION) again (the injector tests patch it); each line "major" prints
 * OPENSSL_version_major() (3.0 and later; the health watch's bad patch replaces it). The scanner tests and the
 * benchmark start many of these and compare what suture reports with what readelf says of the
 * files.
 */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef const char* (*openssl_version_fn)(int);
typedef unsigned int (*openssl_major_fn)(void);

int main(int argc, char** argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: hold-openssl LIBRARY...\n");
        return 2;
    }
    openssl_version_fn last_version = NULL;
    openssl_major_fn major = NULL;
    for (int i = 1; i < argc; ++i) {
        void* handle = dlopen(argv[i], RTLD_NOW | RTLD_GLOBAL);
        if (handle == NULL) {
            fprintf(stderr, "hold-openssl: %s\n", dlerror());
            return 1;
        }
        openssl_version_fn version = (openssl_version_fn)dlsym(handle, "OpenSSL_version");
        printf("loaded %s%s%s\n", argv[i], version ? ": " : "", version ? version(0) : "");
        last_version = version != NULL ? version : last_version;
        openssl_major_fn found_major = (openssl_major_fn)dlsym(handle, "OPENSSL_version_major");
        major = found_major != NULL ? found_major : major;
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
