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

#include "reproducer-harness.h"

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

    if (fd >= 0)
        receive_every_datagram(fd);
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


/* --- the workload OpenSSL's test_dtls makes: reordered, duplicated, lost ---- */

/*
 * OpenSSL's dtlstest drops, duplicates and swaps records and sends several
 * per datagram (its mempacket BIO); a patch to the DTLS record layer that
 * breaks that traffic passes a clean handshake. So the reproducers' workload
 * also finishes handshakes whose last flight (the server's NewSessionTicket,
 * ChangeCipherSpec and Finished) and first application data ("pong") reach
 * the client rearranged: the client buffers next-epoch records (processed
 * later), application data that arrives before Finished, and reads several
 * records from one datagram. The gate captures that flight (GATE_DROP) and
 * the test sends it again through the server's socket, rearranged.
 */
enum rearrangement {
    AS_SENT,             /* the records as the server wrote them */
    FINISHED_BEFORE_CCS, /* mempacket_swap_epoch: Finished, then ChangeCipherSpec */
    FINISHED_FIRST,      /* Finished before NewSessionTicket and ChangeCipherSpec */
    DATA_BEFORE_FINISHED,
    DATA_FIRST,          /* epoch-1 data before the epoch begins */
    DUPLICATED,          /* dtlstest's duplicate_rec: twice without the first record, then whole */
    FINISHED_LOST,       /* Finished dropped: the client's retransmission brings it again */
    REARRANGEMENTS,
};

static const char* const rearrangement_names[REARRANGEMENTS] = {
    "as sent", "Finished before ChangeCipherSpec", "Finished first",
    "data before Finished", "data first", "duplicated", "Finished lost",
};

enum { MAX_RECORDS = 32, DTLS_HEADER = 13 };

struct record {
    const unsigned char* bytes;
    size_t length;
};

/* Of the last flight: ChangeCipherSpec, epoch 1 (Finished, data) or the
 * NewSessionTicket; not a retransmission of the server's earlier flight
 * (its timer may fire meanwhile), which the client has already. */
static inline int of_last_flight(const unsigned char* p, size_t length) {
    return p[0] == 20 || (p[3] << 8 | p[4]) == 1 ||
           (p[0] == 22 && length > DTLS_HEADER && p[DTLS_HEADER] == 4);
}

/* The last flight's records in the captured datagrams from `first` on:
 * their count, or -1. */
static inline int captured_records(const struct gate* gate, int first, struct record* records) {
    int count = 0, i;

    for (i = first; i < gate->count; i++) {
        const unsigned char* p = gate->sent[i].bytes;
        size_t left = gate->sent[i].length;

        while (left >= DTLS_HEADER) {
            size_t length = DTLS_HEADER + ((size_t)p[11] << 8 | p[12]);

            if (length > left)
                return -1;
            if (of_last_flight(p, length)) {
                if (count == MAX_RECORDS)
                    return -1;
                records[count].bytes = p;
                records[count++].length = length;
            }
            p += length;
            left -= length;
        }
    }
    return count;
}

static inline int is_finished(const struct record* r) {
    return r->bytes[0] == 22 && (r->bytes[3] << 8 | r->bytes[4]) == 1; /* epoch-1 handshake */
}

static inline int is_ccs(const struct record* r) { return r->bytes[0] == 20; }

static inline int is_data(const struct record* r) { return r->bytes[0] == 23; }

/* Moves the first record `what` says yes to to index `to` (the others keep their order). */
static inline void move_record(struct record* records, int count, int (*what)(const struct record*),
                               int to) {
    int from;
    struct record moved;

    for (from = 0; from < count && !what(&records[from]); from++)
        ;
    if (from == count)
        return;
    moved = records[from];
    memmove(&records[from], &records[from + 1], (size_t)(count - from - 1) * sizeof(moved));
    memmove(&records[to + 1], &records[to], (size_t)(count - 1 - to) * sizeof(moved));
    records[to] = moved;
}

static inline int index_of(const struct record* records, int count, int (*what)(const struct record*)) {
    int i;

    for (i = 0; i < count && !what(&records[i]); i++)
        ;
    return i;
}

/* Sends records [first, end) as one datagram (packed) or one each. */
static inline int send_records(BIO* out, const struct record* records, int first, int end, int packed) {
    unsigned char datagram[MAX_DATAGRAM];
    size_t length = 0;
    int i;

    for (i = first; i < end; i++) {
        if (!packed) {
            if (BIO_write(out, records[i].bytes, (int)records[i].length) != (int)records[i].length)
                return 0;
            continue;
        }
        if (length + records[i].length > sizeof(datagram))
            return 0;
        memcpy(datagram + length, records[i].bytes, records[i].length);
        length += records[i].length;
    }
    return !packed || length == 0 || BIO_write(out, datagram, (int)length) == (int)length;
}

/* The captured flight, rearranged, to the client. 1 on success. */
static inline int send_rearranged(struct connection* c, int first, enum rearrangement how, int packed) {
    struct record records[MAX_RECORDS];
    BIO* out = BIO_next(SSL_get_wbio(c->server));
    int count = captured_records(c->gate, first, records), end;

    if (count < 3 || index_of(records, count, is_finished) == count ||
        index_of(records, count, is_data) == count)
        return 0;
    switch (how) {
    case FINISHED_BEFORE_CCS:
        move_record(records, count, is_finished, index_of(records, count, is_ccs));
        break;
    case FINISHED_FIRST:
        move_record(records, count, is_finished, 0);
        break;
    case DATA_BEFORE_FINISHED:
        move_record(records, count, is_data, index_of(records, count, is_finished));
        break;
    case DATA_FIRST:
        move_record(records, count, is_data, 0);
        break;
    case DUPLICATED:
        return send_records(out, records, 1, count, packed) &&
               send_records(out, records, 1, count, packed) &&
               send_records(out, records, 0, count, packed);
    case FINISHED_LOST:
        end = index_of(records, count, is_finished);
        memmove(&records[end], &records[end + 1], (size_t)(count - end - 1) * sizeof(records[0]));
        count--;
        break;
    default:
        break;
    }
    return send_records(out, records, 0, count, packed);
}

/*
 * One handshake whose last flight and first data arrive rearranged `how`,
 * packed in one datagram or one record per datagram; then data both ways.
 * NULL, or what failed.
 */
static inline const char* rearranged_connection(enum rearrangement how, int packed) {
    struct connection c;
    const char* failure = NULL;
    char buffer[16];
    int round, client = 0, server = 0, first = -1, n = -1;

    if (!open_connection(&c))
        return "cannot set up a DTLS connection";
    DTLS_set_timer_cb(c.client, server_timer); /* a lost Finished comes back in ms */
    /* 1. Up to the server's last flight: captured once the client sent Finished. */
    for (round = 0; round < ROUNDS && (client == 0 || server == 0) && first < 0; round++) {
        if (client == 0)
            client = step(c.client);
        if (client == 0 && SSL_get_state(c.client) == TLS_ST_CW_FINISHED) {
            first = c.gate->count;
            c.gate->mode = GATE_DROP;
        }
        if (server == 0)
            server = step(c.server);
        if (client < 0 || server < 0)
            break;
        sleep_us(1000);
    }
    /* 2. The server finishes and writes "pong", captured; then the rearranged flight. */
    for (; round < ROUNDS && server == 0 && first >= 0; round++) {
        server = step(c.server);
        sleep_us(1000);
    }
    if (first < 0 || server != 1 || client != 0)
        failure = "the handshake did not reach the server's last flight";
    else if (SSL_write(c.server, "pong", 4) != 4)
        failure = "the server could not write data after its handshake";
    else {
        c.gate->mode = GATE_OPEN;
        if (!send_rearranged(&c, first, how, packed))
            failure = "the server's last flight was not NewSessionTicket, CCS, Finished";
    }
    /* 3. The client finishes (the server answers a retransmission) and reads "pong". */
    for (; failure == NULL && round < ROUNDS && client == 0; round++) {
        client = step(c.client);
        (void)SSL_read(c.server, buffer, sizeof(buffer));
        sleep_us(1000);
    }
    if (failure == NULL && client != 1)
        failure = "the client's handshake did not complete";
    for (; failure == NULL && round < 2 * ROUNDS && n < 0; round++) {
        n = SSL_read(c.client, buffer, sizeof(buffer));
        if (n < 0)
            sleep_us(1000);
    }
    if (failure == NULL && (n != 4 || memcmp(buffer, "pong", 4) != 0))
        failure = "the server's first data did not arrive";
    if (failure == NULL && !exchange_data(&c))
        failure = "application data did not go through after the handshake";
    close_connection(&c);
    return failure;
}

/*
 * Whether the library gets the data of a rearranged last flight through.
 * OpenSSL 1.1.1 (the debian-11 reproducers) buffers only handshake and
 * alert records of the next epoch (dtls1_get_bitmap,
 * ssl/record/rec_layer_d1.c) and drops the others, by design, where 3.0
 * buffers every record of the next epoch. So on 1.1.1 the "pong" is lost
 * when it comes before the epoch begins for good: DATA_FIRST, and
 * DUPLICATED one record per datagram (the client's state machine drops the
 * ChangeCipherSpec that comes before the NewSessionTicket, but the record
 * layer has marked its sequence number seen, so its copy in order is a
 * replay; the handshake completes by a retransmission, after the data).
 */
static inline int rearrangement_kept(enum rearrangement how, int packed) {
#if OPENSSL_VERSION_NUMBER < 0x30000000L
    return how != DATA_FIRST && (how != DUPLICATED || packed);
#else
    (void)how;
    (void)packed;
    return 1;
#endif
}

/*
 * The reproducers' DTLS workload: a clean connection, then one connection
 * per rearrangement the library keeps, packed and not. NULL, or what failed
 * (a static message naming the rearrangement).
 */
static inline const char* dtls_workload(void) {
    static char message[160];
    const char* failure = clean_dtls_connection();
    int how, packed;

    for (how = 0; failure == NULL && how < REARRANGEMENTS; how++) {
        for (packed = 0; packed < 2; packed++) {
            if (!rearrangement_kept((enum rearrangement)how, packed))
                continue;
            failure = rearranged_connection((enum rearrangement)how, packed);
            if (failure != NULL) {
                snprintf(message, sizeof message, "%s (last flight %s, %s)", failure,
                         rearrangement_names[how], packed ? "in one datagram" : "one record per datagram");
                return message;
            }
        }
    }
    return failure;
}

#endif
