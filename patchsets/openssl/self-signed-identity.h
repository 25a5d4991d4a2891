/*
 * A key and a self-signed certificate made in memory at a reproducer's
 * start, for the probes that sign, verify or decrypt (PKCS#7, CMS, X.509).
 * Only API that OpenSSL 1.1.1 has too (no EVP_EC_gen, no providers), so the
 * debian-11 reproducers use it as the others do. Static inline functions
 * only, like reproducer-harness.h.
 */
#ifndef SUTURE_SELF_SIGNED_IDENTITY_H
#define SUTURE_SELF_SIGNED_IDENTITY_H

#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

struct identity {
    EVP_PKEY* key;
    X509* cert;
};

/* A new P-256 key, or NULL. */
static inline EVP_PKEY* identity_new_p256_key(void) {
    EVP_PKEY_CTX* context = EVP_PKEY_CTX_new_id(EVP_PKEY_EC, NULL);
    EVP_PKEY* key = NULL;

    if (context == NULL || EVP_PKEY_keygen_init(context) <= 0 ||
        EVP_PKEY_CTX_set_ec_paramgen_curve_nid(context, NID_X9_62_prime256v1) <= 0 ||
        EVP_PKEY_keygen(context, &key) <= 0)
        key = NULL;
    EVP_PKEY_CTX_free(context);
    return key;
}

/* A v3 certificate for key with subject and issuer CN=name, or NULL. */
static inline X509* identity_new_cert(EVP_PKEY* key, const char* name_text) {
    X509* cert = X509_new();
    X509_NAME* name = X509_NAME_new();
    int ok = cert != NULL && name != NULL && X509_set_version(cert, 2 /* v3 */) &&
             ASN1_INTEGER_set(X509_get_serialNumber(cert), 1) &&
             X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                        (const unsigned char*)name_text, -1, -1, 0) &&
             X509_set_subject_name(cert, name) && X509_set_issuer_name(cert, name) &&
             X509_gmtime_adj(X509_getm_notBefore(cert), 0) != NULL &&
             X509_gmtime_adj(X509_getm_notAfter(cert), 24L * 3600) != NULL &&
             X509_set_pubkey(cert, key) && X509_sign(cert, key, EVP_sha256()) > 0;

    X509_NAME_free(name);
    if (!ok) {
        X509_free(cert);
        return NULL;
    }
    return cert;
}

/* Fills *identity with a P-256 key and its certificate: 1, or 0. */
static inline int identity_make(struct identity* identity, const char* name) {
    identity->key = identity_new_p256_key();
    identity->cert = identity->key != NULL ? identity_new_cert(identity->key, name) : NULL;
    return identity->cert != NULL;
}

static inline void identity_free(struct identity* identity) {
    X509_free(identity->cert);
    EVP_PKEY_free(identity->key);
}

#endif
