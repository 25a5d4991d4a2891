/* A deliberately bad test patch for a real libcrypto: its replacement of
 * OPENSSL_version_major() ends the process with exit status 3 on the first
 * call (exit_group, no signal), as a replacement that takes an error path
 * ending the service would. No crash signal: only the service's systemd
 * unit entering `failed` tells. Packed at test time by
 * test/integration/health-unit.sh against the archive's libcrypto. */
unsigned int OPENSSL_version_major_exits(void) {
    long status = 3;
    __asm__ volatile("syscall" : : "a"(231L), "D"(status) : "rcx", "r11", "memory");
    __builtin_unreachable();
}
