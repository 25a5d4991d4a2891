/*
 * A QUIC connection inside one process, for the QUIC reproducers under
 * patchsets/openssl/: an OpenSSL 3.5 QUIC client and server (a listener,
 * SSL_new_listener) on UDP sockets on 127.0.0.1, non-blocking, driven step
 * by step, with a relay socket between them. Every datagram passes the
 * relay, where a reproducer's filter may drop it, change it or count it.
 *
 * A filter that crafts frames needs the packet keys: the client's keylog
 * callback hands over the 1-RTT traffic secrets, and quic_insert_frames()
 * decrypts a 1-RTT (short header) packet, puts frames in its payload and
 * protects it again under the same packet number (RFC 9001 s. 5: AES-128-GCM
 * and AES header protection; both sides use TLS_AES_128_GCM_SHA256 only).
 * The peer receives crafted frames in a packet its peer really sent, so
 * packet numbers and acknowledgements stay consistent.
 *
 * Call make_quic_contexts() (or make_quic_contexts_with()) once, then
 * open_quic_connection() (the handshake done) or start_quic_connection()
 * (nothing sent yet) and close_quic_connection() for each connection;
 * clean_quic_exchange() is the workload the QUIC reproducers share. Static
 * functions only, like reproducer-harness.h: one compiler command builds a
 * reproducer.
 */
#ifndef SUTURE_QUIC_CONNECTION_H
#define SUTURE_QUIC_CONNECTION_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/quic.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "reproducer-harness.h"

enum {
    QUIC_MAX_DATAGRAM = 65536,
    QUIC_SECRET_LEN = 32, /* SHA-256: TLS_AES_128_GCM_SHA256 */
    QUIC_TAG_LEN = 16,
    /*
     * Destination connection ID lengths of short header packets: the
     * server's port is multi-connection and picks 8-byte IDs; a client's
     * port (one connection) uses zero-length IDs (ssl/quic/quic_port.c).
     */
    QUIC_DCID_LEN_TO_SERVER = 8,
    QUIC_DCID_LEN_TO_CLIENT = 0,
    QUIC_HANDSHAKE_ROUNDS = 400,
    QUIC_SETTLE_ROUNDS = 30,
};

struct quic_connection;

/*
 * Called on every datagram the relay carries, to_server saying which way:
 * returns 0 to drop it, 1 to forward bytes[0.. *length) (which it may have
 * changed, within capacity).
 */
typedef int (*quic_filter)(struct quic_connection* connection, int to_server,
                           unsigned char* bytes, size_t* length, size_t capacity);

/* The 1-RTT packet protection of one direction (RFC 9001 s. 5.1). */
struct quic_keys {
    int known;
    unsigned char key[16], iv[12], hp[16];
    /* To expand truncated packet numbers: the largest one decrypted so far
     * (0 at first, which is right early in a connection, where probes work). */
    uint64_t largest_pn;
};

struct quic_connection {
    int client_fd, relay_fd, server_fd;
    struct sockaddr_in client_address, relay_address, server_address;
    SSL* client;
    SSL* listener;
    SSL* server; /* the accepted connection, once there is one */
    quic_filter filter;
    void* filter_context;
    struct quic_keys to_server, to_client;
    size_t datagrams[2], bytes[2]; /* carried by the relay: [to_server] */
};

static SSL_CTX* quic_client_ctx;
static SSL_CTX* quic_server_ctx;
/* The connection whose client the keylog callback is for (one at a time). */
static struct quic_connection* quic_keylog_connection;

static const unsigned char quic_alpn[] = {6, 's', 'u', 't', 'u', 'r', 'e'};

/* --- packet protection (RFC 9001) --------------------------------------- */

/* HKDF-Expand-Label(secret, label, "", length) of TLS 1.3 with SHA-256. */
static inline int quic_expand_label(const unsigned char* secret, const char* label,
                                    unsigned char* out, size_t length) {
    unsigned char info[64];
    size_t label_length = strlen(label), info_length = 0;
    EVP_KDF* kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
    EVP_KDF_CTX* ctx = kdf != NULL ? EVP_KDF_CTX_new(kdf) : NULL;
    int mode = EVP_KDF_HKDF_MODE_EXPAND_ONLY, ok;
    OSSL_PARAM params[5];

    info[info_length++] = (unsigned char)(length >> 8);
    info[info_length++] = (unsigned char)length;
    info[info_length++] = (unsigned char)(6 + label_length);
    memcpy(info + info_length, "tls13 ", 6);
    memcpy(info + info_length + 6, label, label_length);
    info_length += 6 + label_length;
    info[info_length++] = 0; /* empty context */
    params[0] = OSSL_PARAM_construct_int(OSSL_KDF_PARAM_MODE, &mode);
    params[1] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, "SHA256", 0);
    params[2] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void*)secret,
                                                  QUIC_SECRET_LEN);
    params[3] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, info, info_length);
    params[4] = OSSL_PARAM_construct_end();
    ok = ctx != NULL && EVP_KDF_derive(ctx, out, length, params) == 1;
    EVP_KDF_CTX_free(ctx);
    EVP_KDF_free(kdf);
    return ok;
}

static inline int quic_keys_from_secret(struct quic_keys* keys, const unsigned char* secret) {
    keys->known = quic_expand_label(secret, "quic key", keys->key, sizeof(keys->key)) &&
                  quic_expand_label(secret, "quic iv", keys->iv, sizeof(keys->iv)) &&
                  quic_expand_label(secret, "quic hp", keys->hp, sizeof(keys->hp));
    keys->largest_pn = 0;
    return keys->known;
}

/* The 5-byte header protection mask for a 16-byte sample (AES-ECB). */
static inline int quic_hp_mask(const struct quic_keys* keys, const unsigned char* sample,
                               unsigned char* mask) {
    unsigned char block[32];
    int length = 0, ok;
    EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();

    ok = ctx != NULL && EVP_EncryptInit_ex(ctx, EVP_aes_128_ecb(), NULL, keys->hp, NULL) == 1 &&
         EVP_CIPHER_CTX_set_padding(ctx, 0) == 1 &&
         EVP_EncryptUpdate(ctx, block, &length, sample, 16) == 1 && length == 16;
    EVP_CIPHER_CTX_free(ctx);
    if (ok)
        memcpy(mask, block, 5);
    return ok;
}

/* AES-128-GCM of one packet: encrypt (or decrypt and check the tag). */
static inline int quic_aead(const struct quic_keys* keys, int encrypt, uint64_t pn,
                            const unsigned char* aad, size_t aad_length,
                            unsigned char* payload, size_t length, unsigned char* tag) {
    unsigned char nonce[12];
    int out = 0, ok, i;
    EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();

    memcpy(nonce, keys->iv, 12);
    for (i = 0; i < 8; i++)
        nonce[11 - i] ^= (unsigned char)(pn >> (8 * i));
    ok = ctx != NULL &&
         EVP_CipherInit_ex(ctx, EVP_aes_128_gcm(), NULL, keys->key, nonce, encrypt) == 1 &&
         (encrypt || EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, QUIC_TAG_LEN, tag) == 1) &&
         EVP_CipherUpdate(ctx, NULL, &out, aad, (int)aad_length) == 1 &&
         EVP_CipherUpdate(ctx, payload, &out, payload, (int)length) == 1 &&
         EVP_CipherFinal_ex(ctx, payload + out, &out) == 1 &&
         (!encrypt || EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, QUIC_TAG_LEN, tag) == 1);
    EVP_CIPHER_CTX_free(ctx);
    return ok;
}

/* RFC 9000 A.3: the full packet number from its truncated encoding. */
static inline uint64_t quic_expand_pn(uint64_t largest, uint64_t truncated, int bits) {
    uint64_t expected = largest + 1, window = (uint64_t)1 << bits, half = window / 2;
    uint64_t candidate = (expected & ~(window - 1)) | truncated;

    if (candidate + half <= expected && candidate < ((uint64_t)1 << 62) - window)
        return candidate + window;
    if (candidate > expected + half && candidate >= window)
        return candidate - window;
    return candidate;
}

/*
 * If the datagram starts with a 1-RTT packet (short header: the only packet
 * of its datagram once the handshake is done) and the keys of its direction
 * are known, puts frames[0.. frames_length) in its payload and protects it
 * again. Returns 1 if it did, 0 if not (the datagram is unchanged).
 */
static inline int quic_insert_frames(struct quic_connection* connection, int to_server,
                                     unsigned char* bytes, size_t* length, size_t capacity,
                                     const unsigned char* frames, size_t frames_length) {
    struct quic_keys* keys = to_server ? &connection->to_server : &connection->to_client;
    size_t pn_offset = 1 + (to_server ? QUIC_DCID_LEN_TO_SERVER : QUIC_DCID_LEN_TO_CLIENT);
    unsigned char mask[5], tag[QUIC_TAG_LEN];
    size_t pn_length, header_length, payload_length, i;
    uint64_t truncated = 0, pn;

    /* 1. A short header packet, protected with keys we have, with room
     *    (the header protection sample: 16 bytes from 4 past the PN start). */
    if (!keys->known || (bytes[0] & 0x80) != 0 || *length < pn_offset + 4 + 16 ||
        *length + frames_length > capacity)
        return 0;
    /* 2. Remove header protection (the sample is 4 bytes past the PN start). */
    if (!quic_hp_mask(keys, bytes + pn_offset + 4, mask))
        return 0;
    bytes[0] ^= mask[0] & 0x1f;
    pn_length = (bytes[0] & 3) + 1;
    for (i = 0; i < pn_length; i++) {
        bytes[pn_offset + i] ^= mask[1 + i];
        truncated = (truncated << 8) | bytes[pn_offset + i];
    }
    pn = quic_expand_pn(keys->largest_pn, truncated, (int)(8 * pn_length));
    header_length = pn_offset + pn_length;
    payload_length = *length - header_length - QUIC_TAG_LEN;
    /* 3. Decrypt; a packet that fails (another key phase) is left alone. */
    memcpy(tag, bytes + *length - QUIC_TAG_LEN, QUIC_TAG_LEN);
    if (!quic_aead(keys, 0, pn, bytes, header_length, bytes + header_length, payload_length, tag)) {
        for (i = 0; i < pn_length; i++)
            bytes[pn_offset + i] ^= mask[1 + i];
        bytes[0] ^= mask[0] & 0x1f;
        return 0;
    }
    if (pn > keys->largest_pn)
        keys->largest_pn = pn;
    /*
     * 4. Put the frames first (the packet's last frame may be a STREAM frame
     *    without a Length field, which runs to the end of the packet) and
     *    protect the packet again, same PN.
     */
    memmove(bytes + header_length + frames_length, bytes + header_length, payload_length);
    memcpy(bytes + header_length, frames, frames_length);
    payload_length += frames_length;
    if (!quic_aead(keys, 1, pn, bytes, header_length, bytes + header_length, payload_length, tag))
        return 0;
    memcpy(bytes + header_length + payload_length, tag, QUIC_TAG_LEN);
    *length = header_length + payload_length + QUIC_TAG_LEN;
    if (!quic_hp_mask(keys, bytes + pn_offset + 4, mask))
        return 0;
    for (i = 0; i < pn_length; i++)
        bytes[pn_offset + i] ^= mask[1 + i];
    bytes[0] ^= mask[0] & 0x1f;
    return 1;
}

/* Writes a QUIC variable-length integer (RFC 9000 s. 16); returns its size. */
static inline size_t quic_put_varint(unsigned char* out, uint64_t value) {
    if (value < 0x40) {
        out[0] = (unsigned char)value;
        return 1;
    }
    if (value < 0x4000) {
        out[0] = (unsigned char)(0x40 | (value >> 8));
        out[1] = (unsigned char)value;
        return 2;
    }
    if (value < 0x40000000) {
        out[0] = (unsigned char)(0x80 | (value >> 24));
        out[1] = (unsigned char)(value >> 16);
        out[2] = (unsigned char)(value >> 8);
        out[3] = (unsigned char)value;
        return 4;
    }
    for (int i = 0; i < 8; i++)
        out[i] = (unsigned char)(value >> (8 * (7 - i)));
    out[0] |= 0xc0;
    return 8;
}

/* --- the contexts -------------------------------------------------------- */

static inline unsigned char quic_hex_value(char c) {
    return (unsigned char)(c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10);
}

/* The client's keylog lines: the 1-RTT secrets of both directions. */
static inline void quic_keylog(const SSL* ssl, const char* line) {
    struct quic_connection* connection = quic_keylog_connection;
    unsigned char secret[QUIC_SECRET_LEN];
    const char* hex = strrchr(line, ' ');
    struct quic_keys* keys = NULL;
    size_t i;

    (void)ssl;
    if (connection == NULL || hex == NULL || strlen(hex + 1) != 2 * QUIC_SECRET_LEN)
        return;
    if (strncmp(line, "CLIENT_TRAFFIC_SECRET_0 ", 24) == 0)
        keys = &connection->to_server;
    else if (strncmp(line, "SERVER_TRAFFIC_SECRET_0 ", 24) == 0)
        keys = &connection->to_client;
    if (keys == NULL)
        return;
    for (i = 0; i < QUIC_SECRET_LEN; i++)
        secret[i] = (unsigned char)(quic_hex_value(hex[1 + 2 * i]) << 4 | quic_hex_value(hex[2 + 2 * i]));
    quic_keys_from_secret(keys, secret);
}

static inline int quic_select_alpn(SSL* ssl, const unsigned char** out, unsigned char* out_length,
                                   const unsigned char* in, unsigned int in_length, void* arg) {
    (void)ssl;
    (void)arg;
    if (SSL_select_next_proto((unsigned char**)out, out_length, quic_alpn, sizeof(quic_alpn), in,
                              in_length) != OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    return SSL_TLSEXT_ERR_OK;
}

/*
 * A self-signed P-256 certificate for the server, with an extension of bulk
 * random bytes if bulk > 0 (a server flight of that size more: random, so
 * certificate compression cannot shrink it).
 */
static inline int quic_server_certificate(SSL_CTX* ctx, size_t bulk) {
    EVP_PKEY* key = EVP_EC_gen("P-256");
    X509* certificate = X509_new();
    int ok = key != NULL && certificate != NULL;

    if (ok && bulk > 0) {
        ASN1_OCTET_STRING* bytes = ASN1_OCTET_STRING_new();
        unsigned char* random = OPENSSL_malloc(bulk);
        ASN1_OBJECT* oid = OBJ_txt2obj("1.3.6.1.4.1.55555.1", 1);
        X509_EXTENSION* extension = NULL;

        ok = bytes != NULL && random != NULL && oid != NULL && RAND_bytes(random, (int)bulk) == 1 &&
             ASN1_OCTET_STRING_set(bytes, random, (int)bulk) &&
             (extension = X509_EXTENSION_create_by_OBJ(NULL, oid, 0, bytes)) != NULL &&
             X509_add_ext(certificate, extension, -1);
        X509_EXTENSION_free(extension);
        ASN1_OBJECT_free(oid);
        OPENSSL_free(random);
        ASN1_OCTET_STRING_free(bytes);
    }
    ok = ok && ASN1_INTEGER_set(X509_get_serialNumber(certificate), 1) &&
         X509_gmtime_adj(X509_getm_notBefore(certificate), 0) &&
         X509_gmtime_adj(X509_getm_notAfter(certificate), 3600) &&
         X509_NAME_add_entry_by_txt(X509_get_subject_name(certificate), "CN", MBSTRING_ASC,
                                    (const unsigned char*)"suture-quic", -1, -1, 0) &&
         X509_set_issuer_name(certificate, X509_get_subject_name(certificate)) &&
         X509_set_pubkey(certificate, key) && X509_sign(certificate, key, EVP_sha256()) &&
         SSL_CTX_use_certificate(ctx, certificate) == 1 && SSL_CTX_use_PrivateKey(ctx, key) == 1;
    X509_free(certificate);
    EVP_PKEY_free(key);
    return ok;
}

/*
 * Both contexts, once: one cipher suite (the filter's AEAD), X25519, no
 * certificate compression; certificate_bulk: see quic_server_certificate().
 */
static inline int make_quic_contexts_with(size_t certificate_bulk) {
    quic_client_ctx = SSL_CTX_new(OSSL_QUIC_client_method());
    quic_server_ctx = SSL_CTX_new(OSSL_QUIC_server_method());
    if (quic_client_ctx == NULL || quic_server_ctx == NULL)
        return 0;
    SSL_CTX_set_verify(quic_client_ctx, SSL_VERIFY_NONE, NULL);
    SSL_CTX_set_keylog_callback(quic_client_ctx, quic_keylog);
    SSL_CTX_set_alpn_select_cb(quic_server_ctx, quic_select_alpn, NULL);
    return SSL_CTX_set_ciphersuites(quic_client_ctx, "TLS_AES_128_GCM_SHA256") == 1 &&
           SSL_CTX_set_ciphersuites(quic_server_ctx, "TLS_AES_128_GCM_SHA256") == 1 &&
           SSL_CTX_set1_groups_list(quic_client_ctx, "X25519") == 1 &&
           SSL_CTX_set1_groups_list(quic_server_ctx, "X25519") == 1 &&
           (SSL_CTX_set_options(quic_server_ctx, SSL_OP_NO_TX_CERTIFICATE_COMPRESSION), 1) &&
           quic_server_certificate(quic_server_ctx, certificate_bulk);
}

static inline int make_quic_contexts(void) { return make_quic_contexts_with(0); }

/* --- the connection ------------------------------------------------------ */

/* A UDP socket on 127.0.0.1 that loses no datagram of a burst. */
static inline int quic_udp_socket(struct sockaddr_in* address) {
    socklen_t length = sizeof(*address);
    int fd = socket(AF_INET, SOCK_DGRAM, 0);

    if (fd >= 0)
        receive_every_datagram(fd);

    memset(address, 0, sizeof(*address));
    address->sin_family = AF_INET;
    address->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || bind(fd, (struct sockaddr*)address, sizeof(*address)) < 0 ||
        getsockname(fd, (struct sockaddr*)address, &length) < 0 ||
        !BIO_socket_nbio(fd, 1)) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

/* Sends a datagram from the relay (a filter may add datagrams this way). */
static inline void quic_relay_send(struct quic_connection* connection, int to_server,
                                   const unsigned char* bytes, size_t length) {
    connection->datagrams[to_server]++;
    connection->bytes[to_server] += length;
    sendto(connection->relay_fd, bytes, length, 0,
           (struct sockaddr*)(to_server ? &connection->server_address : &connection->client_address),
           sizeof(struct sockaddr_in));
}

/* Carries every datagram waiting at the relay, through the filter. */
static inline void quic_relay(struct quic_connection* connection) {
    static unsigned char bytes[QUIC_MAX_DATAGRAM];
    struct sockaddr_in from;
    socklen_t from_length = sizeof(from);
    ssize_t received;
    size_t length;
    int to_server;

    for (;;) {
        received = recvfrom(connection->relay_fd, bytes, 1500, 0, (struct sockaddr*)&from,
                            &from_length);
        if (received < 0)
            return;
        to_server = from.sin_port == connection->client_address.sin_port;
        length = (size_t)received;
        if (connection->filter != NULL &&
            !connection->filter(connection, to_server, bytes, &length, sizeof(bytes)))
            continue;
        quic_relay_send(connection, to_server, bytes, length);
    }
}

/*
 * One step: both sides handle their events, the relay carries what they
 * sent, and a short poll lets datagrams and timers arrive.
 */
static inline void quic_step(struct quic_connection* connection) {
    struct pollfd fds[3] = {{connection->client_fd, POLLIN, 0},
                            {connection->relay_fd, POLLIN, 0},
                            {connection->server_fd, POLLIN, 0}};

    SSL_handle_events(connection->client);
    SSL_handle_events(connection->listener);
    if (connection->server != NULL)
        SSL_handle_events(connection->server);
    quic_relay(connection);
    poll(fds, 3, 1);
}

static inline void close_quic_connection(struct quic_connection* connection) {
    if (quic_keylog_connection == connection)
        quic_keylog_connection = NULL;
    SSL_free(connection->server);
    SSL_free(connection->client);
    SSL_free(connection->listener);
    if (connection->client_fd >= 0)
        close(connection->client_fd);
    if (connection->relay_fd >= 0)
        close(connection->relay_fd);
    if (connection->server_fd >= 0)
        close(connection->server_fd);
    memset(connection, 0, sizeof(*connection));
    connection->client_fd = connection->relay_fd = connection->server_fd = -1;
}

/* The client, its network BIO on client_fd with the relay as its peer. */
static inline SSL* quic_new_client(struct quic_connection* connection) {
    SSL* client = SSL_new(quic_client_ctx);
    BIO* bio = BIO_new_dgram(connection->client_fd, BIO_NOCLOSE);
    BIO_ADDR* peer = BIO_ADDR_new();
    int ok = client != NULL && bio != NULL && peer != NULL &&
             BIO_ADDR_rawmake(peer, AF_INET, &connection->relay_address.sin_addr, 4,
                              connection->relay_address.sin_port) &&
             SSL_set_alpn_protos(client, quic_alpn, sizeof(quic_alpn)) == 0 &&
             SSL_set_blocking_mode(client, 0) && SSL_set1_initial_peer_addr(client, peer);

    if (ok) {
        SSL_set_bio(client, bio, bio);
        bio = NULL;
    }
    BIO_free(bio);
    BIO_ADDR_free(peer);
    if (!ok) {
        SSL_free(client);
        return NULL;
    }
    return client;
}

/* The server's listener on server_fd (flags: SSL_new_listener's). */
static inline SSL* quic_new_listener(struct quic_connection* connection, uint64_t flags) {
    SSL* listener = SSL_new_listener(quic_server_ctx, flags);
    BIO* bio = BIO_new_dgram(connection->server_fd, BIO_NOCLOSE);

    if (listener == NULL || bio == NULL || !SSL_set_blocking_mode(listener, 0)) {
        BIO_free(bio);
        SSL_free(listener);
        return NULL;
    }
    SSL_set_bio(listener, bio, bio);
    if (SSL_listen(listener) != 1) {
        SSL_free(listener);
        return NULL;
    }
    return listener;
}

/*
 * Sets up the sockets, the client and the listener (listener_flags:
 * SSL_new_listener's) with the given filter (NULL: none); nothing is sent
 * yet. Returns NULL if it worked, else why not (the connection is then
 * closed).
 */
static inline const char* start_quic_connection(struct quic_connection* connection,
                                                quic_filter filter, void* filter_context,
                                                uint64_t listener_flags) {
    memset(connection, 0, sizeof(*connection));
    connection->filter = filter;
    connection->filter_context = filter_context;
    connection->client_fd = quic_udp_socket(&connection->client_address);
    connection->relay_fd = quic_udp_socket(&connection->relay_address);
    connection->server_fd = quic_udp_socket(&connection->server_address);
    quic_keylog_connection = connection;
    if (connection->client_fd < 0 || connection->relay_fd < 0 || connection->server_fd < 0 ||
        (connection->client = quic_new_client(connection)) == NULL ||
        (connection->listener = quic_new_listener(connection, listener_flags)) == NULL) {
        close_quic_connection(connection);
        return "cannot set up the QUIC client and listener";
    }
    return NULL;
}

/*
 * Opens a connection through the relay with the given filter (NULL: none)
 * and runs the handshake to its end on both sides. Returns NULL if it
 * worked, else why not (the connection is then closed).
 */
static inline const char* open_quic_connection(struct quic_connection* connection,
                                               quic_filter filter, void* filter_context) {
    const char* why = start_quic_connection(connection, filter, filter_context, 0);
    int round, client_done = 0;

    if (why != NULL)
        return why;
    /* 1. The handshake, until the client is connected and the server accepted. */
    for (round = 0; round < QUIC_HANDSHAKE_ROUNDS; round++) {
        if (!client_done) {
            int ret = SSL_connect(connection->client);

            if (ret == 1)
                client_done = 1;
            else if (SSL_get_error(connection->client, ret) != SSL_ERROR_WANT_READ &&
                     SSL_get_error(connection->client, ret) != SSL_ERROR_WANT_WRITE)
                break;
        }
        if (connection->server == NULL)
            connection->server = SSL_accept_connection(connection->listener,
                                                        SSL_ACCEPT_CONNECTION_NO_BLOCK);
        if (client_done && connection->server != NULL && connection->to_server.known &&
            connection->to_client.known)
            break;
        quic_step(connection);
    }
    if (round == QUIC_HANDSHAKE_ROUNDS || !client_done || connection->server == NULL) {
        close_quic_connection(connection);
        return "the QUIC handshake did not complete";
    }
    /*
     * 2. Let the handshake settle: the server's HANDSHAKE_DONE and the last
     *    acknowledgements. (A crafted frame in a 1-RTT packet that reaches
     *    the server together with the client's Finished may be lost.)
     */
    SSL_set_blocking_mode(connection->server, 0);
    SSL_set_default_stream_mode(connection->server, SSL_DEFAULT_STREAM_MODE_NONE);
    for (round = 0; round < QUIC_SETTLE_ROUNDS; round++)
        quic_step(connection);
    return NULL;
}

/*
 * 1 if ssl's connection is closing or closed, with the error code and
 * whether it was its own decision (local).
 */
static inline int quic_closed(SSL* ssl, uint64_t* error_code, int* local) {
    SSL_CONN_CLOSE_INFO info;

    if (SSL_get_conn_close_info(ssl, &info, sizeof(info)) != 1)
        return 0;
    *error_code = info.error_code;
    *local = (info.flags & SSL_CONN_CLOSE_FLAG_LOCAL) != 0;
    return 1;
}

/*
 * Crafted frames ride on the next 1-RTT packet one side sends: this makes
 * the other side send one (it writes a byte on a new stream of its own; the
 * peer acknowledges it within its ACK delay).
 */
static inline SSL* quic_provoke(struct quic_connection* connection, int from_client) {
    SSL* stream = SSL_new_stream(from_client ? connection->client : connection->server, 0);
    size_t written;

    if (stream != NULL && SSL_write_ex(stream, "!", 1, &written) != 1) {
        SSL_free(stream);
        return NULL;
    }
    return stream;
}

/*
 * A probe that injects crafted frames and expects their receiver to close
 * the connection with a protocol error: once the handshake is done, the
 * frames ride on the next 1-RTT packet toward the receiver, and the
 * connection is stepped until the
 * receiver closes it or has had the frames for a while. FIXED if the
 * receiver closed it itself with expected_error; VULNERABLE if it took the
 * frames (still open, or closed for another reason).
 */
struct quic_frame_probe {
    int toward_server;                    /* who receives the frames */
    size_t (*write_frames)(unsigned char* out);  /* at most 1024 bytes */
    uint64_t expected_error;              /* the fixed receiver's close code */
    int armed, injected;
};

enum {
    QUIC_PROBE_ROUNDS = 300, /* steps to wait for a 1-RTT packet to carry the frames */
    QUIC_PROBE_AFTER = 20,   /* steps for the receiver to take them in (2 do) */
};

static inline int quic_inject_probe_frames(struct quic_connection* connection, int to_server,
                                           unsigned char* bytes, size_t* length, size_t capacity) {
    struct quic_frame_probe* probe = connection->filter_context;
    unsigned char frames[1024];

    if (to_server != probe->toward_server || !probe->armed || probe->injected)
        return 1;
    probe->injected = quic_insert_frames(connection, to_server, bytes, length, capacity, frames,
                                         probe->write_frames(frames));
    return 1;
}

static inline const char* quic_run_frame_probe(struct quic_frame_probe* probe) {
    static char error[160];
    struct quic_connection connection;
    const char* why = open_quic_connection(&connection, quic_inject_probe_frames, probe);
    const char* answer = "VULNERABLE";
    uint64_t error_code = 0;
    int round, after = 0, local = 0;
    SSL* receiver;
    SSL* stream;

    if (why != NULL) {
        snprintf(error, sizeof(error), "ERROR %s", why);
        return error;
    }
    receiver = probe->toward_server ? connection.server : connection.client;
    probe->armed = 1;
    /* The client writes a byte on a new stream: its packet goes to the
     * server and the server's acknowledgement comes back, a 1-RTT packet
     * each way for the frames to ride on. */
    stream = quic_provoke(&connection, 1);
    for (round = 0; round < QUIC_PROBE_ROUNDS && after < QUIC_PROBE_AFTER; round++) {
        quic_step(&connection);
        if (quic_closed(receiver, &error_code, &local))
            break;
        after += probe->injected;
    }
    if (!probe->injected)
        answer = probe->toward_server ? "ERROR the client sent no 1-RTT packet to carry the frames"
                                      : "ERROR the server sent no 1-RTT packet to carry the frames";
    else if (after < QUIC_PROBE_AFTER && local && error_code == probe->expected_error)
        answer = "FIXED";
    SSL_free(stream);
    close_quic_connection(&connection);
    return answer;
}

/*
 * The workload every QUIC reproducer shares: a clean connection, a
 * bidirectional stream from the client, a request and its echo. Returns
 * NULL if it worked, else why not.
 */
static inline const char* clean_quic_exchange(void) {
    static const char request[] = "suture quic workload";
    static char failure[128];
    struct quic_connection connection;
    char echoed[sizeof(request)];
    size_t done = 0, moved;
    SSL* client_stream = NULL;
    SSL* server_stream = NULL;
    const char* why = open_quic_connection(&connection, NULL, NULL);
    int round;

    if (why != NULL)
        return why;
    why = "the request and its echo did not arrive";
    client_stream = SSL_new_stream(connection.client, 0);
    if (client_stream == NULL || SSL_write_ex(client_stream, request, sizeof(request), &moved) != 1) {
        why = "cannot write on a new client stream";
        goto done;
    }
    SSL_stream_conclude(client_stream, 0);
    for (round = 0; round < QUIC_HANDSHAKE_ROUNDS; round++) {
        quic_step(&connection);
        if (server_stream == NULL)
            server_stream = SSL_accept_stream(connection.server, SSL_ACCEPT_STREAM_NO_BLOCK);
        if (server_stream != NULL && done < sizeof(request) &&
            SSL_read_ex(server_stream, echoed + done, sizeof(request) - done, &moved) == 1) {
            done += moved;
            if (done == sizeof(request) &&
                SSL_write_ex(server_stream, echoed, done, &moved) == 1)
                SSL_stream_conclude(server_stream, 0);
        }
        if (done == sizeof(request) &&
            SSL_read_ex(client_stream, echoed, sizeof(echoed), &moved) == 1) {
            why = moved == sizeof(request) && memcmp(echoed, request, moved) == 0
                      ? NULL
                      : "the echo differs from the request";
            break;
        }
    }
done:
    if (why != NULL && why != failure) {
        snprintf(failure, sizeof(failure), "%s", why);
        why = failure;
    }
    SSL_free(server_stream);
    SSL_free(client_stream);
    close_quic_connection(&connection);
    return why;
}

#endif
