/*
 * Editing DER as an attacker does: one element (TLV) replaced by other
 * bytes, or taken out, with the lengths of every element around it
 * rewritten. For the probes whose crafted input differs from what the API
 * can make in the length of a field (a shorter OCTET STRING, an OPTIONAL
 * field left out). Single-byte tags (all that CMS, PKCS#7 and X.509 use up
 * to [30]), definite lengths. Static functions only, like
 * reproducer-harness.h.
 */
#ifndef SUTURE_DER_EDIT_H
#define SUTURE_DER_EDIT_H

#include <stdlib.h>
#include <string.h>

/* Reads the header at der[at]: its size in *header and content length in *length; 0 if malformed. */
static inline int der_header(const unsigned char* der, long size, long at, long* header, long* length) {
    long count, i;

    if (at + 2 > size)
        return 0;
    if (der[at + 1] < 0x80) {
        *header = 2;
        *length = der[at + 1];
    } else {
        count = der[at + 1] & 0x7f;
        if (count == 0 || count > 3 || at + 2 + count > size)
            return 0;
        *length = 0;
        for (i = 0; i < count; i++)
            *length = *length << 8 | der[at + 2 + i];
        *header = 2 + count;
    }
    return at + *header + *length <= size;
}

/* Writes a header with tag and length at out (if not NULL): its size. */
static inline long der_put_header(unsigned char* out, unsigned char tag, long length) {
    unsigned char bytes[5];
    long count = 0;

    bytes[count++] = tag;
    if (length < 0x80) {
        bytes[count++] = (unsigned char)length;
    } else if (length < 0x100) {
        bytes[count++] = 0x81;
        bytes[count++] = (unsigned char)length;
    } else if (length < 0x10000) {
        bytes[count++] = 0x82;
        bytes[count++] = (unsigned char)(length >> 8);
        bytes[count++] = (unsigned char)length;
    } else {
        bytes[count++] = 0x83;
        bytes[count++] = (unsigned char)(length >> 16);
        bytes[count++] = (unsigned char)(length >> 8);
        bytes[count++] = (unsigned char)length;
    }
    if (out != NULL)
        memcpy(out, bytes, count);
    return count;
}

/*
 * Re-encodes the elements of der[from, to) into out (if not NULL) with the
 * element that starts at target replaced by replacement (replacement_size
 * bytes, 0: taken out): the size written, or -1 if der is malformed.
 */
static inline long der_rewrite(const unsigned char* der, long from, long to, long target,
                        const unsigned char* replacement, long replacement_size, unsigned char* out) {
    long written = 0;

    for (long at = from; at < to;) {
        long header, length, end, inner;

        if (!der_header(der, to, at, &header, &length))
            return -1;
        end = at + header + length;
        if (at == target) {
            if (out != NULL)
                memcpy(out + written, replacement, replacement_size);
            written += replacement_size;
        } else if ((der[at] & 0x20) && target > at && target < end) {
            inner = der_rewrite(der, at + header, end, target, replacement, replacement_size, NULL);
            if (inner < 0)
                return -1;
            written += der_put_header(out != NULL ? out + written : NULL, der[at], inner);
            if (out != NULL)
                der_rewrite(der, at + header, end, target, replacement, replacement_size, out + written);
            written += inner;
        } else {
            if (out != NULL)
                memcpy(out + written, der + at, end - at);
            written += end - at;
        }
        at = end;
    }
    return written;
}

/* A new DER (malloc'ed, in *edited) with the element at target replaced: its size, or -1. */
static inline long der_replace(const unsigned char* der, long size, long target,
                               const unsigned char* replacement, long replacement_size,
                               unsigned char** edited) {
    long new_size = der_rewrite(der, 0, size, target, replacement, replacement_size, NULL);

    if (new_size < 0 || (*edited = malloc(new_size > 0 ? new_size : 1)) == NULL)
        return -1;
    der_rewrite(der, 0, size, target, replacement, replacement_size, *edited);
    return new_size;
}

#endif
