/* A deliberately bad test patch for a real libcrypto: its replacement of
 * OPENSSL_version_major() traps on the first call (ud2: SIGILL), as a
 * replacement with a fatal bug would. The health watch's proof
 * (test/integration/health-watch.sh) packs it at test time against the
 * archive's libcrypto. */
unsigned int OPENSSL_version_major_crash(void) {
    __builtin_trap();
}
