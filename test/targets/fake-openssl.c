/* A stand-in shared library for unit tests of ELF reading and scanning: it
 * is linked with a fixed build ID and the soname libcrypto.so.99, and holds an
 * OpenSSL-style version string, so tests can assert exact values. The
 * integration tests use Debian's real libraries instead. */
const char* fake_openssl_version(void) {
    return "OpenSSL 9.9.9z 1 Jan 2099";
}
