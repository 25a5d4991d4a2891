/*
 * A TLS client and server connected through memory BIOs in one process,
 * for the libssl probes: the handshake is driven step by step, no sockets,
 * no threads. The server's key and certificate are generated (P-256,
 * self-signed); the client does not verify them. OpenSSL 1.1.1 API too.
 * Static functions only, like reproducer-harness.h.
 */
#ifndef SUTURE_TLS_MEMORY_PAIR_H
#define SUTURE_TLS_MEMORY_PAIR_H

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "self-signed-identity.h"

struct tls_pair {
    SSL* client;
    SSL* server;
};

/* Contexts for both sides, sharing one server identity: 1, or 0. */
static inline int tls_pair_contexts(const struct identity* server_identity, SSL_CTX** client_ctx,
                                    SSL_CTX** server_ctx) {
    *client_ctx = SSL_CTX_new(TLS_client_method());
    *server_ctx = SSL_CTX_new(TLS_server_method());
    return *client_ctx != NULL && *server_ctx != NULL &&
           SSL_CTX_use_certificate(*server_ctx, server_identity->cert) == 1 &&
           SSL_CTX_use_PrivateKey(*server_ctx, server_identity->key) == 1;
}

/* Both ends of a connection between the contexts, not yet handshaken: 1, or 0. */
static inline int tls_pair_new(struct tls_pair* pair, SSL_CTX* client_ctx, SSL_CTX* server_ctx) {
    BIO *client_end = NULL, *server_end = NULL;

    pair->client = SSL_new(client_ctx);
    pair->server = SSL_new(server_ctx);
    if (pair->client == NULL || pair->server == NULL || !BIO_new_bio_pair(&client_end, 0, &server_end, 0))
        return 0;
    SSL_set_bio(pair->client, client_end, client_end);
    SSL_set_bio(pair->server, server_end, server_end);
    SSL_set_connect_state(pair->client);
    SSL_set_accept_state(pair->server);
    return 1;
}

/* Steps both sides until both finished the handshake: 1, or 0 on failure. */
static inline int tls_pair_handshake(struct tls_pair* pair) {
    int client_done = 0, server_done = 0;

    for (int round = 0; round < 50 && !(client_done && server_done); round++) {
        if (!client_done) {
            int result = SSL_do_handshake(pair->client);
            if (result == 1)
                client_done = 1;
            else if (SSL_get_error(pair->client, result) != SSL_ERROR_WANT_READ)
                return 0;
        }
        if (!server_done) {
            int result = SSL_do_handshake(pair->server);
            if (result == 1)
                server_done = 1;
            else if (SSL_get_error(pair->server, result) != SSL_ERROR_WANT_READ)
                return 0;
        }
    }
    return client_done && server_done;
}

/*
 * Sends each side's close_notify: a connection freed without it counts as
 * broken, and libssl then takes its session out of the caches.
 */
static inline void tls_pair_shutdown(struct tls_pair* pair) {
    SSL_shutdown(pair->client);
    SSL_shutdown(pair->server);
}

static inline void tls_pair_free(struct tls_pair* pair) {
    SSL_free(pair->client);
    SSL_free(pair->server);
    pair->client = pair->server = NULL;
}

#endif
