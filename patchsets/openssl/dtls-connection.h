/*
 * A DTLS 1.2 connection inside one process, for the DTLS reproducers under
 * patchsets/openssl/: client and server over two UDP sockets on 127.0.0.1,
 * driven step by step with non-blocking sockets. The server's write BIO is a
 * filter, the "gate", that records every datagram the server sends and can
 * answer "retry" (like a full socket buffer) or drop datagrams (like a lossy
 * network). The server has a P-256 certificate and EXTRA_CERTIFICATES more
 * in its chain (a Certificate message of ~3 KB, fragmented at LINK_MTU) and
 * a retransmission timer of SERVER_TIMER_US (DTLS_set_timer_cb).
 *
 * Call make_gate_method() and make_contexts() once, then open_connection()
 * for each connection. Static functions only, like reproducer-harness.h:
 * one compiler command builds a reproducer.
 */
#ifndef SUTURE_DTLS_CONNECTION_H
#define SUTURE_DTLS_CONNECTION_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum {
    EXTRA_CERTIFICATES = 6, /* makes the Certificate message ~3 KB: fragmented */
    LINK_MTU = 540,         /* the smallest OpenSSL accepts (548 - 28 + 20) */
    MAX_DATAGRAMS = 256,
    MAX_DATAGRAM = 1500,
    SERVER_TIMER_US = 20000,
    ROUNDS = 400,
};

/* --- the gate: a filter BIO on the server's writes ------------------------ */

enum gate_mode { GATE_OPEN, GATE_BLOCKED, GATE_DROP };

struct datagram {
    int phase;
    size_t length;
    unsigned char bytes[MAX_DATAGRAM];
};

struct gate {
    enum gate_mode mode;
    int budget; /* > 0: datagrams let through before the gate blocks */
    int phase;  /* recorded with each datagram */
    int count;
    struct datagram sent[MAX_DATAGRAMS];
};

static BIO_METHOD* gate_method;

static inline int gate_write(BIO* bio, const char* data, int length) {
    struct gate* gate = BIO_get_data(bio);
    int written;

    BIO_clear_retry_flags(bio);
    if (gate->mode == GATE_BLOCKED) {
        BIO_set_retry_write(bio);
        return -1;
    }
    if (gate->count < MAX_DATAGRAMS && length <= MAX_DATAGRAM) {
        struct datagram* d = &gate->sent[gate->count++];

        d->phase = gate->phase;
        d->length = (size_t)length;
        memcpy(d->bytes, data, (size_t)length);
    }
    if (gate->mode == GATE_DROP) {
        written = length; /* lost on the way */
    } else {
        written = BIO_write(BIO_next(bio), data, length);
        BIO_copy_next_retry(bio);
    }
    if (gate->budget > 0 && --gate->budget == 0)
        gate->mode = GATE_BLOCKED;
    return written;
}

static inline int gate_read(BIO* bio, char* data, int length) {
    int n = BIO_read(BIO_next(bio), data, length);

    BIO_clear_retry_flags(bio);
    BIO_copy_next_retry(bio);
    return n;
}

static inline long gate_ctrl(BIO* bio, int command, long number, void* pointer) {
    return BIO_next(bio) != NULL ? BIO_ctrl(BIO_next(bio), command, number, pointer) : 0;
}

static inline int gate_create(BIO* bio) {
    BIO_set_init(bio, 1);
    return 1;
}

static inline int make_gate_method(void) {
    gate_method = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_FILTER, "reproducer gate");
    return gate_method != NULL && BIO_meth_set_write(gate_method, gate_write) &&
           BIO_meth_set_read(gate_method, gate_read) && BIO_meth_set_ctrl(gate_method, gate_ctrl) &&
           BIO_meth_set_create(gate_method, gate_create);
}

/* --- credentials and contexts ------------------------------------------- */

static inline X509* self_signed(EVP_PKEY* key, int serial) {
    X509* certificate = X509_new();
    X509_NAME* name = X509_NAME_new();
    char common_name[64];
    int ok;

    snprintf(common_name, sizeof common_name, "suture DTLS reproducer %d", serial);
    ok = certificate != NULL && name != NULL &&
         ASN1_INTEGER_set(X509_get_serialNumber(certificate), serial) &&
         X509_gmtime_adj(X509_getm_notBefore(certificate), 0) != NULL &&
         X509_gmtime_adj(X509_getm_notAfter(certificate), 86400) != NULL &&
         X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (unsigned char*)common_name, -1,
                                    -1, 0) &&
         X509_set_subject_name(certificate, name) && X509_set_issuer_name(certificate, name) &&
         X509_set_pubkey(certificate, key) && X509_sign(certificate, key, EVP_sha256()) > 0;
    X509_NAME_free(name);
    if (!ok) {
        X509_free(certificate);
        return NULL;
    }
    return certificate;
}

static SSL_CTX* server_context;
static SSL_CTX* client_context;

/* The server sends its certificate and EXTRA_CERTIFICATES more. */
static inline int make_contexts(void) {
    EVP_PKEY* key = EVP_EC_gen("P-256");
    X509* certificate = key != NULL ? self_signed(key, 1) : NULL;
    int i, ok;

    server_context = SSL_CTX_new(DTLS_server_method());
    client_context = SSL_CTX_new(DTLS_client_method());
    ok = certificate != NULL && server_context != NULL && client_context != NULL &&
         SSL_CTX_use_certificate(server_context, certificate) &&
         SSL_CTX_use_PrivateKey(server_context, key) &&
         SSL_CTX_set_max_proto_version(server_context, DTLS1_2_VERSION) &&
         SSL_CTX_set_max_proto_version(client_context, DTLS1_2_VERSION);
    for (i = 0; ok && i < EXTRA_CERTIFICATES; i++) {
        X509* extra = self_signed(key, 100 + i);

        ok = extra != NULL && SSL_CTX_add_extra_chain_cert(server_context, extra);
        if (!ok)
            X509_free(extra);
    }
    SSL_CTX_set_verify(client_context, SSL_VERIFY_NONE, NULL);
    X509_free(certificate);
    EVP_PKEY_free(key);
    return ok;
}

/* --- one connection over UDP on 127.0.0.1 --------------------------------- */

struct connection {
    SSL* client;
    SSL* server;
    struct gate* gate;
    int client_fd; /* to send raw datagrams to the server */
};

static inline unsigned int server_timer(SSL* ssl, unsigned int previous_us) {
    (void)ssl;
    return previous_us == 0 ? SERVER_TIMER_US : 2 * previous_us;
}

static inline int bound_socket(struct sockaddr_in* address) {
    socklen_t length = sizeof(*address);
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);

    memset(address, 0, sizeof(*address));
    address->sin_family = AF_INET;
    address->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || bind(fd, (struct sockaddr*)address, sizeof(*address)) < 0 ||
        getsockname(fd, (struct sockaddr*)address, &length) < 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

/* A datagram BIO on fd, connected to peer. */
static inline BIO* datagram_bio(int fd, const struct sockaddr_in* peer, int close_flag) {
    BIO_ADDR* address = BIO_ADDR_new();
    BIO* bio = BIO_new_dgram(fd, close_flag);

    if (address == NULL || bio == NULL ||
        connect(fd, (const struct sockaddr*)peer, sizeof(*peer)) < 0 ||
        !BIO_ADDR_rawmake(address, AF_INET, &peer->sin_addr, sizeof(peer->sin_addr),
                          peer->sin_port) ||
        !BIO_ctrl_set_connected(bio, address)) {
        BIO_free(bio);
        bio = NULL;
    }
    BIO_ADDR_free(address);
    return bio;
}

static inline void close_connection(struct connection* c) {
    SSL_free(c->client);
    SSL_free(c->server);
    free(c->gate);
    memset(c, 0, sizeof(*c));
}

static inline int open_connection(struct connection* c) {
    struct sockaddr_in client_address, server_address;
    int client_fd = bound_socket(&client_address);
    int server_fd = bound_socket(&server_address);
    BIO *client_bio, *server_read, *server_write, *gate_bio;

    memset(c, 0, sizeof(*c));
    if (client_fd < 0 || server_fd < 0)
        return 0;
    client_bio = datagram_bio(client_fd, &server_address, BIO_CLOSE);
    server_read = datagram_bio(server_fd, &client_address, BIO_CLOSE);
    server_write = datagram_bio(server_fd, &client_address, BIO_NOCLOSE);
    gate_bio = BIO_new(gate_method);
    c->gate = calloc(1, sizeof(*c->gate));
    c->client = SSL_new(client_context);
    c->server = SSL_new(server_context);
    if (client_bio == NULL || server_read == NULL || server_write == NULL || gate_bio == NULL ||
        c->gate == NULL || c->client == NULL || c->server == NULL) {
        BIO_free(client_bio);
        BIO_free(server_read);
        BIO_free(server_write);
        BIO_free(gate_bio);
        close_connection(c);
        return 0;
    }
    c->client_fd = client_fd;
    BIO_set_data(gate_bio, c->gate);
    BIO_push(gate_bio, server_write);
    SSL_set_bio(c->client, client_bio, client_bio);
    SSL_set_bio(c->server, server_read, gate_bio);
    SSL_set_options(c->server, SSL_OP_NO_QUERY_MTU);
    SSL_set_options(c->client, SSL_OP_NO_QUERY_MTU);
    DTLS_set_timer_cb(c->server, server_timer);
    SSL_set_connect_state(c->client);
    SSL_set_accept_state(c->server);
    return SSL_set_mtu(c->server, LINK_MTU) && SSL_set_mtu(c->client, LINK_MTU);
}

/* One handshake step: 1 done, 0 wants more, -1 failed. */
static inline int step(SSL* ssl) {
    int ret = SSL_do_handshake(ssl);

    if (ret == 1)
        return 1;
    switch (SSL_get_error(ssl, ret)) {
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE:
        return 0;
    default:
        return -1;
    }
}

static inline void sleep_us(long microseconds) {
    struct timespec t = {microseconds / 1000000, (microseconds % 1000000) * 1000};

    nanosleep(&t, NULL);
}

/* Steps both ends until both finished the handshake: 1, or 0 on failure. */
static inline int finish_handshake(struct connection* c) {
    int round, client = 0, server = 0;

    for (round = 0; round < ROUNDS; round++) {
        if (client == 0)
            client = step(c->client);
        if (server == 0)
            server = step(c->server);
        if (client < 0 || server < 0)
            return 0;
        if (client == 1 && server == 1)
            return 1;
        sleep_us(1000);
    }
    return 0;
}

/* "ping" from the client, "pong" back: 1 if both arrived. */
static inline int exchange_data(struct connection* c) {
    char buffer[16];
    int round, n = -1;

    if (SSL_write(c->client, "ping", 4) != 4)
        return 0;
    for (round = 0; round < ROUNDS && n < 0; round++) {
        n = SSL_read(c->server, buffer, sizeof(buffer));
        if (n < 0)
            sleep_us(1000);
    }
    if (n != 4 || memcmp(buffer, "ping", 4) != 0 || SSL_write(c->server, "pong", 4) != 4)
        return 0;
    for (round = 0, n = -1; round < ROUNDS && n < 0; round++) {
        n = SSL_read(c->client, buffer, sizeof(buffer));
        if (n < 0)
            sleep_us(1000);
    }
    return n == 4 && memcmp(buffer, "pong", 4) == 0;
}

/* The reproducers' workload: a clean handshake and application data over a
 * new connection; NULL, or what failed. */
static inline const char* clean_dtls_connection(void) {
    struct connection c;
    const char* failure = NULL;

    if (!open_connection(&c))
        return "cannot set up a DTLS connection";
    if (!finish_handshake(&c))
        failure = "a clean DTLS handshake failed";
    else if (!exchange_data(&c))
        failure = "application data did not go through";
    close_connection(&c);
    return failure;
}

#endif
