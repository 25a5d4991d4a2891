/* The library between first-call-transitive and libcrypto (first-call.c). */
#include <openssl/crypto.h>

const char* first_call_version(void) {
    return OpenSSL_version(OPENSSL_VERSION);
}
