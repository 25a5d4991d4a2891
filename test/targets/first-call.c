/* Prints what OpenSSL_version() says at its first call, then exits: the
 * new-process tests' and benchmark's program that needs libcrypto directly
 * (linked against it) or, built with THROUGH_LIBRARY, transitively (linked
 * against libfirstcall.so only, which links libcrypto). A patch of
 * OpenSSL_version() in place before main() shows in its one line. */
#include <stdio.h>

#ifdef THROUGH_LIBRARY
const char* first_call_version(void);
#else
#include <openssl/crypto.h>
static const char* first_call_version(void) {
    return OpenSSL_version(OPENSSL_VERSION);
}
#endif

int main(void) {
    puts(first_call_version());
    return 0;
}
