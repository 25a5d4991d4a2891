/* A test patch for the system's real libcrypto: OpenSSL_version() returns a
 * marker text instead of the version, so a test can see the patch live in a
 * real process and see it go again on revert. */
const char* OpenSSL_version_suture_test(int type) {
    (void)type;
    return "OpenSSL patched by suture (test)";
}
