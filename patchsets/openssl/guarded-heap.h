/*
 * A guarded heap for reproducers whose bug writes a few bytes past a heap
 * block (the same as CVE-2026-63072's reproducer has inline): each block that
 * libcrypto allocates is laid out as
 *   [struct block_header][the caller's size bytes][canary]
 * and free and realloc check the header and the canary. Freeing a damaged
 * block ends the process at once with EXIT_HEAP_CORRUPTED (write nothing
 * more: the heap is not to be trusted). Install it with
 * CRYPTO_set_mem_functions(guarded_malloc, guarded_realloc, guarded_free)
 * before libcrypto's first allocation. Only static inline functions, as in
 * reproducer-harness.h.
 */
#ifndef SUTURE_GUARDED_HEAP_H
#define SUTURE_GUARDED_HEAP_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef EXIT_HEAP_CORRUPTED
#define EXIT_HEAP_CORRUPTED 13
#endif

struct block_header {
    size_t size;
    size_t magic; /* also keeps the caller's bytes 16-byte aligned */
};

#define BLOCK_MAGIC ((size_t)0x6775617264656421u)

static const unsigned char canary[16] = {
    0xa5, 0x5a, 0xc3, 0x3c, 0x96, 0x69, 0xf0, 0x0f, 0xa5, 0x5a, 0xc3, 0x3c, 0x96, 0x69, 0xf0, 0x0f,
};

static inline void* guarded_malloc(size_t size, const char* file, int line) {
    struct block_header* header;
    unsigned char* block;

    (void)file;
    (void)line;
    if (size > SIZE_MAX - sizeof(*header) - sizeof(canary))
        return NULL;
    /* Size 0 still gets a distinct block, like malloc(0) usually does. */
    header = malloc(sizeof(*header) + size + sizeof(canary));
    if (header == NULL)
        return NULL;
    header->size = size;
    header->magic = BLOCK_MAGIC;
    block = (unsigned char*)(header + 1);
    memcpy(block + size, canary, sizeof(canary));
    return block;
}

/* The header of a block from guarded_malloc; exits if the block is damaged. */
static inline struct block_header* intact_header(void* block) {
    struct block_header* header = (struct block_header*)block - 1;

    if (header->magic != BLOCK_MAGIC ||
        memcmp((unsigned char*)block + header->size, canary, sizeof(canary)) != 0)
        _exit(EXIT_HEAP_CORRUPTED);
    return header;
}

static inline void guarded_free(void* block, const char* file, int line) {
    (void)file;
    (void)line;
    if (block != NULL)
        free(intact_header(block));
}

static inline void* guarded_realloc(void* block, size_t size, const char* file, int line) {
    size_t old_size;
    void* moved;

    if (block == NULL)
        return guarded_malloc(size, file, line);
    if (size == 0) { /* as CRYPTO_realloc does without custom functions */
        guarded_free(block, file, line);
        return NULL;
    }
    old_size = intact_header(block)->size;
    moved = guarded_malloc(size, file, line);
    if (moved == NULL)
        return NULL;
    memcpy(moved, block, old_size < size ? old_size : size);
    guarded_free(block, file, line);
    return moved;
}

#endif
