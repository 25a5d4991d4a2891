/* A test target: loads the OpenSSL libraries named on the command line (by
 * soname, found through LD_LIBRARY_PATH, or by path), prints what
 * OpenSSL_version() says, then "ready" and waits until it is killed or its
 * stdin reaches end of file. Each line "version" on stdin prints
 * OpenSSL_version(OPENSSL_VERSION) again (the injector tests patch it). The scanner tests and the
 * benchmark start many of these and compare what suture reports with what readelf says of the
 * files.
 */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef const char* (*openssl_version_fn)(int);

int main(int argc, char** argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: hold-openssl LIBRARY...\n");
        return 2;
    }
    openssl_version_fn last_version = NULL;
    for (int i = 1; i < argc; ++i) {
        void* handle = dlopen(argv[i], RTLD_NOW | RTLD_GLOBAL);
        if (handle == NULL) {
            fprintf(stderr, "hold-openssl: %s\n", dlerror());
            return 1;
        }
        openssl_version_fn version = (openssl_version_fn)dlsym(handle, "OpenSSL_version");
        printf("loaded %s%s%s\n", argv[i], version ? ": " : "", version ? version(0) : "");
        last_version = version != NULL ? version : last_version;
    }
    printf("ready %d\n", (int)getpid());
    fflush(stdout);
    char line[64];
    while (fgets(line, sizeof line, stdin) != NULL) {
        if (strncmp(line, "version", 7) == 0 && last_version != NULL) {
            printf("%s\n", last_version(0));
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
