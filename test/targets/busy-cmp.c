/* busy-cmp: threads that never stop validating CMP messages, so that at any
 * moment nearly every thread is inside ossl_cmp_calc_protection (the
 * function the CVE-2026-63076 patch replaces). Each thread:
 *   - validates a PKIMessage protected by password-based MAC (PBM) with a
 *     large iteration count: OSSL_CMP_validate_msg recomputes the MAC in
 *     ossl_cmp_calc_protection, whose PBM loop (OSSL_CRMF_pbm_new, called
 *     from it) is where the time goes. Each result must be 1;
 *   - every 8th call, validates it with a wrong secret (must be 0: the MAC
 *     really is computed and compared), and lets a CMP client protect a genm
 *     with the right secret (the library's own protect path, again through
 *     ossl_cmp_calc_protection) and validates that (must be 1).
 * Any other result counts as bad. The program is built against the host's
 * OpenSSL 3.0 headers and run on whatever libcrypto.so.3 LD_LIBRARY_PATH
 * picks (the tests: the archive's 3.0.20-1~deb12u2).
 *
 * The message is encoded here by hand (RFC 4210 section 5.1; the fields as
 * patchsets/openssl/debian-12/3.0.20-1~deb12u2/CVE-2026-63076/reproducer.c
 * crafts them, with a real PBMParameter) and its MAC computed with
 * OSSL_CRMF_pbm_new over the DER of ProtectedPart ::= SEQUENCE { header,
 * body }: the public API has no way to protect with a chosen iteration
 * count.
 *
 * Commands on stdin, one answer line each:
 *   report  "calls=N bad=B"
 *   quit    exits
 * Usage: busy-cmp [THREADS (8)] [PBM-ITERATIONS (10000)]
 * Prints "ready PID" once every thread has validated one message. */
#include <openssl/cmp.h>
#include <openssl/crmf.h>
#include <openssl/err.h>
#include <openssl/obj_mac.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const unsigned char secret[] = "suture busy-cmp secret";
static const unsigned char wrong_secret[] = "suture busy-cmp wrong secret";
static const unsigned char reference[] = "suture busy-cmp";

static atomic_ulong calls;
static atomic_ulong bad;
static atomic_int started;
static size_t iterations = 10000;

/* A growing DER buffer; `failed` once anything did not fit. */
struct der {
    unsigned char bytes[1024];
    size_t size;
    int failed;
};

static void der_append(struct der* out, const unsigned char* bytes, size_t size) {
    if (out->failed || size > sizeof out->bytes - out->size) {
        out->failed = 1;
        return;
    }
    memcpy(out->bytes + out->size, bytes, size);
    out->size += size;
}

/* Appends TAG, the DER length of CONTENT (below 64 KiB) and CONTENT. */
static void der_tlv(struct der* out, unsigned char tag, const struct der* content) {
    unsigned char head[4] = {tag};
    size_t head_size = 2;
    if (content->size < 0x80) {
        head[1] = (unsigned char)content->size;
    } else if (content->size < 0x100) {
        head[1] = 0x81;
        head[2] = (unsigned char)content->size;
        head_size = 3;
    } else {
        head[1] = 0x82;
        head[2] = (unsigned char)(content->size >> 8);
        head[3] = (unsigned char)content->size;
        head_size = 4;
    }
    out->failed |= content->failed;
    der_append(out, head, head_size);
    der_append(out, content->bytes, content->size);
}

/* A pkiconf PKIMessage: pvno 2, empty sender and recipient names, a PBM
 * protectionAlg with `iterations`, body pkiconf, protection the MAC under
 * `secret`. NULL on failure. */
static OSSL_CMP_MSG* new_pbm_protected_pkiconf(void) {
    static const unsigned char pvno_and_names[] = {
        0x02, 0x01, 0x02,       /* pvno INTEGER 2 */
        0xa4, 0x02, 0x30, 0x00, /* sender: directoryName, empty Name */
        0xa4, 0x02, 0x30, 0x00, /* recipient: directoryName, empty Name */
    };
    static const unsigned char pbm_oid[] = {
        /* 1.2.840.113533.7.66.13 */
        0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf6, 0x7d, 0x07, 0x42, 0x0d};
    static const unsigned char pkiconf_body[] = {0xb3, 0x02, 0x05, 0x00};
    OSSL_CRMF_PBMPARAMETER* parameter =
        OSSL_CRMF_pbmp_new(NULL, 16, NID_sha256, iterations, NID_hmacWithSHA256);
    unsigned char* parameter_der = NULL;
    int parameter_size =
        parameter != NULL ? i2d_OSSL_CRMF_PBMPARAMETER(parameter, &parameter_der) : -1;
    struct der algorithm = {0}, algorithm_sequence = {0}, header_content = {0}, header = {0},
               protected_content = {0}, protected_part = {0}, bit_string = {0}, protection = {0},
               message_content = {0}, message = {0};
    unsigned char* mac = NULL;
    size_t mac_size = 0;
    OSSL_CMP_MSG* result = NULL;

    if (parameter_size > 0) {
        /* 1. header ::= SEQUENCE { pvno, sender, recipient, [1] protectionAlg } */
        der_append(&algorithm, pbm_oid, sizeof pbm_oid);
        der_append(&algorithm, parameter_der, (size_t)parameter_size);
        der_tlv(&algorithm_sequence, 0x30, &algorithm);
        der_append(&header_content, pvno_and_names, sizeof pvno_and_names);
        der_tlv(&header_content, 0xa1, &algorithm_sequence);
        der_tlv(&header, 0x30, &header_content);
        /* 2. the MAC over ProtectedPart ::= SEQUENCE { header, body } */
        der_append(&protected_content, header.bytes, header.size);
        der_append(&protected_content, pkiconf_body, sizeof pkiconf_body);
        der_tlv(&protected_part, 0x30, &protected_content);
    }
    if (parameter_size > 0 && !protected_part.failed &&
        OSSL_CRMF_pbm_new(NULL, NULL, parameter, protected_part.bytes, protected_part.size, secret,
                          sizeof secret - 1, &mac, &mac_size)) {
        /* 3. PKIMessage ::= SEQUENCE { header, body, [0] BIT STRING mac } */
        der_append(&bit_string, (const unsigned char*)"", 1); /* no unused bits */
        der_append(&bit_string, mac, mac_size);
        der_tlv(&protection, 0x03, &bit_string);
        der_append(&message_content, protected_content.bytes, protected_content.size);
        der_tlv(&message_content, 0xa0, &protection);
        der_tlv(&message, 0x30, &message_content);
        const unsigned char* p = message.bytes;
        if (!message.failed) {
            result = d2i_OSSL_CMP_MSG(NULL, &p, (long)message.size);
        }
    }
    OPENSSL_free(mac);
    OPENSSL_free(parameter_der);
    OSSL_CRMF_PBMPARAMETER_free(parameter);
    return result;
}

/* The wrong secret's rejection is expected: nothing goes to stderr. */
static int quiet(const char* function, const char* file, int line, OSSL_CMP_severity level,
                 const char* message) {
    (void)function, (void)file, (void)line, (void)level, (void)message;
    return 1;
}

/* A CMP context that verifies and protects with SECRET, or NULL. */
static OSSL_CMP_CTX* new_ctx_with(const unsigned char* with_secret, size_t size) {
    OSSL_CMP_CTX* ctx = OSSL_CMP_CTX_new(NULL, NULL);
    if (ctx != NULL && (!OSSL_CMP_CTX_set_log_cb(ctx, quiet) ||
                        !OSSL_CMP_CTX_set1_secretValue(ctx, with_secret, size))) {
        OSSL_CMP_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

/* Transfer callback: keeps the protected request and answers nothing. */
static OSSL_CMP_MSG* keep_request(OSSL_CMP_CTX* client, const OSSL_CMP_MSG* request) {
    OSSL_CMP_MSG** kept = OSSL_CMP_CTX_get_transfer_cb_arg(client);
    *kept = OSSL_CMP_MSG_dup(request);
    return NULL;
}

/* 1 if a genm that a CMP client protected with `secret` validates. */
static int client_protected_genm_validates(OSSL_CMP_CTX* verifier) {
    OSSL_CMP_CTX* client = new_ctx_with(secret, sizeof secret - 1);
    OSSL_CMP_MSG* genm = NULL;
    int valid = 0;
    if (client != NULL &&
        OSSL_CMP_CTX_set1_referenceValue(client, reference, sizeof reference - 1) &&
        OSSL_CMP_CTX_set_transfer_cb(client, keep_request) &&
        OSSL_CMP_CTX_set_transfer_cb_arg(client, &genm)) {
        /* Fails by design once the request is kept; genm tells the outcome. */
        sk_OSSL_CMP_ITAV_pop_free(OSSL_CMP_exec_GENM_ses(client), OSSL_CMP_ITAV_free);
    }
    valid = genm != NULL && OSSL_CMP_validate_msg(verifier, genm) == 1;
    OSSL_CMP_MSG_free(genm);
    OSSL_CMP_CTX_free(client);
    return valid;
}

static void* validator(void* unused) {
    (void)unused;
    OSSL_CMP_MSG* message = new_pbm_protected_pkiconf();
    OSSL_CMP_CTX* verifier = new_ctx_with(secret, sizeof secret - 1);
    OSSL_CMP_CTX* wrong_verifier = new_ctx_with(wrong_secret, sizeof wrong_secret - 1);
    if (message == NULL || verifier == NULL || wrong_verifier == NULL) {
        fprintf(stderr, "busy-cmp: cannot set up the CMP message or contexts\n");
        exit(1);
    }
    for (unsigned long i = 0;; ++i) {
        int ok = OSSL_CMP_validate_msg(verifier, message) == 1;
        if (i % 8 == 0) {
            ok = ok && OSSL_CMP_validate_msg(wrong_verifier, message) == 0 &&
                 client_protected_genm_validates(verifier);
        }
        ERR_clear_error();
        if (!ok) {
            atomic_fetch_add(&bad, 1);
        }
        atomic_fetch_add(&calls, 1);
        if (i == 0) {
            atomic_fetch_add(&started, 1);
        }
    }
    return NULL;
}

int main(int argc, char** argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 8;
    if (argc > 2) {
        iterations = (size_t)atol(argv[2]);
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    for (int i = 0; i < threads; ++i) {
        pthread_t thread;
        if (pthread_create(&thread, NULL, validator, NULL) != 0) {
            perror("pthread_create");
            return 1;
        }
    }
    while (atomic_load(&started) < threads) {
        usleep(1000);
    }
    printf("ready %d\n", (int)getpid());
    char line[64];
    while (fgets(line, sizeof line, stdin) != NULL) {
        if (strncmp(line, "report", 6) == 0) {
            printf("calls=%lu bad=%lu\n", atomic_load(&calls), atomic_load(&bad));
        } else if (strncmp(line, "quit", 4) == 0) {
            break;
        } else {
            printf("unknown command\n");
        }
    }
    return 0;
}
