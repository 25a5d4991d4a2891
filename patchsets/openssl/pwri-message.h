/*
 * CMS messages for a password recipient (PasswordRecipientInfo, RFC 3211)
 * with a wrapped content key of the probe's choosing: the reproducers of the
 * bugs in the key unwrap (crypto/cms/cms_pwri.c). OpenSSL 1.1.1 API too.
 *
 * CMS_encrypt() makes a valid message (content AES-256-CBC, key encryption
 * id-alg-PWRI-KEK with AES-128-CBC, PBKDF2-HMAC-SHA1). Its DER is then
 * edited as an attacker who knows the password would: the key encryption key
 * is derived from the message's own PBKDF2 salt and iteration count, and the
 * 48-byte encryptedKey is replaced by the RFC 3211 wrap (two CBC passes) of
 * the probe's block. Static functions only, like reproducer-harness.h.
 */
#ifndef SUTURE_PWRI_MESSAGE_H
#define SUTURE_PWRI_MESSAGE_H

#include <string.h>

#include <openssl/cms.h>
#include <openssl/err.h>
#include <openssl/evp.h>

/* The wrap of a 32-byte AES-256 key: 4 + 32 rounded up to AES blocks. */
#define PWRI_WRAPPED_LENGTH 48

static const char pwri_password[] = "suture reproducer password";
static const char pwri_content[] = "suture reproducer: content for a password recipient";

/* DER of a valid message in *der; its length or -1. */
static inline int pwri_message(unsigned char** der) {
    BIO* in = BIO_new_mem_buf(pwri_content, sizeof(pwri_content) - 1);
    CMS_ContentInfo* cms = CMS_encrypt(NULL, in, EVP_aes_256_cbc(), CMS_BINARY | CMS_PARTIAL);
    int length = -1;

    if (cms != NULL &&
        CMS_add0_recipient_password(cms, -1, NID_undef, NID_undef,
                                    (unsigned char*)OPENSSL_strdup(pwri_password), -1,
                                    EVP_aes_128_cbc()) != NULL &&
        CMS_final(cms, in, NULL, CMS_BINARY))
        length = i2d_CMS_ContentInfo(cms, der);
    CMS_ContentInfo_free(cms);
    BIO_free(in);
    return length;
}

/* The offset of needle in der after from, or -1. */
static inline long pwri_find(const unsigned char* der, long length, long from,
                      const unsigned char* needle, long needle_length) {
    for (long at = from; at + needle_length <= length; at++) {
        if (memcmp(der + at, needle, needle_length) == 0)
            return at;
    }
    return -1;
}

/*
 * Replaces the encryptedKey of the message in der (length bytes) by the
 * wrap of block (PWRI_WRAPPED_LENGTH bytes): 1, or 0 if der is not laid out
 * as CMS_encrypt() lays it out.
 */
static inline int pwri_rewrap(unsigned char* der, long length, const unsigned char* block) {
    /* id-PBKDF2, then SEQUENCE { OCTET STRING salt(8), INTEGER iterations } */
    static const unsigned char pbkdf2_oid[] = {0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x05, 0x0c};
    /* aes-128-cbc, then OCTET STRING iv(16) */
    static const unsigned char aes128_cbc_oid[] = {0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x02};
    static const unsigned char wrapped_header[] = {0x04, PWRI_WRAPPED_LENGTH};
    unsigned char kek[16], out[PWRI_WRAPPED_LENGTH];
    long pbkdf2 = pwri_find(der, length, 0, pbkdf2_oid, sizeof(pbkdf2_oid));
    long aes = pwri_find(der, length, 0, aes128_cbc_oid, sizeof(aes128_cbc_oid));
    long salt, iterations, iv, wrapped;
    int iteration_count = 0, written, ok;
    EVP_CIPHER_CTX* cipher;

    if (pbkdf2 < 0 || aes < 0)
        return 0;
    salt = pbkdf2 + sizeof(pbkdf2_oid) + 2; /* past the SEQUENCE header */
    iterations = salt + 10;                 /* past 04 08 salt */
    iv = aes + sizeof(aes128_cbc_oid);
    if (der[salt] != 0x04 || der[salt + 1] != 8 || der[iterations] != 0x02 ||
        der[iterations + 1] > 4 || der[iv] != 0x04 || der[iv + 1] != 16)
        return 0;
    for (int i = 0; i < der[iterations + 1]; i++)
        iteration_count = iteration_count << 8 | der[iterations + 2 + i];
    wrapped = pwri_find(der, length, iv + 18, wrapped_header, sizeof(wrapped_header));
    if (wrapped < 0 ||
        !PKCS5_PBKDF2_HMAC_SHA1(pwri_password, sizeof(pwri_password) - 1, der + salt + 2, 8,
                                iteration_count, sizeof(kek), kek))
        return 0;
    /* RFC 3211: CBC over the block, then again, chaining on. */
    cipher = EVP_CIPHER_CTX_new();
    ok = cipher != NULL && EVP_EncryptInit_ex(cipher, EVP_aes_128_cbc(), NULL, kek, der + iv + 2) &&
         EVP_CIPHER_CTX_set_padding(cipher, 0) &&
         EVP_EncryptUpdate(cipher, out, &written, block, PWRI_WRAPPED_LENGTH) &&
         EVP_EncryptUpdate(cipher, out, &written, out, PWRI_WRAPPED_LENGTH);
    EVP_CIPHER_CTX_free(cipher);
    if (ok)
        memcpy(der + wrapped + 2, out, PWRI_WRAPPED_LENGTH);
    return ok;
}

/* A message whose wrapped key is block's wrap, in *der: its length or -1. */
static inline int pwri_message_with_wrapped_block(const unsigned char* block, size_t block_length,
                                           unsigned char** der) {
    int length;

    if (block_length != PWRI_WRAPPED_LENGTH)
        return -1;
    length = pwri_message(der);
    if (length < 0 || !pwri_rewrap(*der, length, block))
        return -1;
    return length;
}

/* Decrypts der with the password into out (NULL: a null BIO): 1 if it did. */
static inline int pwri_decrypt(const unsigned char* der, long length, BIO* out) {
    CMS_ContentInfo* cms = d2i_CMS_ContentInfo(NULL, &der, length);
    BIO* sink = out != NULL ? out : BIO_new(BIO_s_null());
    int decrypted = cms != NULL && sink != NULL &&
                    CMS_decrypt_set1_password(cms, (unsigned char*)pwri_password,
                                              sizeof(pwri_password) - 1) &&
                    CMS_decrypt(cms, NULL, NULL, NULL, sink, CMS_BINARY);

    if (out == NULL)
        BIO_free(sink);
    CMS_ContentInfo_free(cms);
    ERR_clear_error();
    return decrypted;
}

/* The workload: a valid message decrypts to its content. NULL, or why not. */
static inline const char* pwri_workload(void) {
    unsigned char* der = NULL;
    int length = pwri_message(&der);
    BIO* out = BIO_new(BIO_s_mem());
    const char* failure = NULL;
    char* text;
    long text_length;

    if (length < 0 || out == NULL)
        failure = "cannot encrypt for the password";
    else if (!pwri_decrypt(der, length, out))
        failure = "the message does not decrypt with its password";
    else if ((text_length = BIO_get_mem_data(out, &text)) != (long)sizeof(pwri_content) - 1 ||
             memcmp(text, pwri_content, text_length) != 0)
        failure = "the message decrypts to other content";
    BIO_free(out);
    OPENSSL_free(der);
    return failure;
}

#endif
