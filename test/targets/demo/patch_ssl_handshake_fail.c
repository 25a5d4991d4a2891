/* A deliberately bad test patch for a real libssl: its replacement of
 * SSL_do_handshake() fails every handshake (returns -1, as a replacement
 * with a logic error would), without crashing anything: the server stays
 * up and every TLS client is refused. The health check's proof
 * (test/integration/health-check.sh) packs it at test time against the
 * archive's libssl and lets suture.conf's health_check find it out. */
int SSL_do_handshake_fails(void *ssl) {
    (void)ssl;
    return -1;
}
