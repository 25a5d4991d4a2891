/*
 * Out-of-bounds accesses made visible: while armed, every libcrypto
 * allocation of one chosen size is placed against an inaccessible page
 * (the way Electric Fence does): ending exactly where the page starts, or,
 * for underflows, starting exactly where it ends. One byte past the block
 * faults at once: the probe child ends by SIGSEGV, which
 * run_probe_in_child() reports as VULNERABLE. Other sizes and other times
 * use malloc. Install with guard_page_heap_install() before libcrypto's
 * first allocation; arm it in the probe child only (guarded blocks are never
 * unmapped). Static functions only, like reproducer-harness.h.
 */
#ifndef SUTURE_GUARD_PAGE_HEAP_H
#define SUTURE_GUARD_PAGE_HEAP_H

#include <malloc.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <openssl/crypto.h>

/* The size guarded while armed (0: none), and on which side. */
static size_t guard_page_size_armed;
static int guard_page_before; /* 1: the inaccessible page precedes the block */

/* The guarded blocks, so that free and realloc know them and their size. */
#define GUARD_PAGE_MAX_BLOCKS 256
static struct {
    void* block;
    size_t size;
} guard_page_blocks[GUARD_PAGE_MAX_BLOCKS];
static int guard_page_block_count;

static inline int guard_page_find(const void* block) {
    for (int i = 0; i < guard_page_block_count; i++) {
        if (guard_page_blocks[i].block == block)
            return i;
    }
    return -1;
}

static inline void* guard_page_alloc(size_t size) {
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t data_pages = (size + page - 1) / page;
    unsigned char *base, *block;

    if (guard_page_block_count == GUARD_PAGE_MAX_BLOCKS)
        return NULL;
    base = mmap(NULL, (data_pages + 1) * page, PROT_READ | PROT_WRITE,
                MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED)
        return NULL;
    if (guard_page_before) {
        mprotect(base, page, PROT_NONE);
        block = base + page;
    } else {
        mprotect(base + data_pages * page, page, PROT_NONE);
        block = base + data_pages * page - size;
    }
    guard_page_blocks[guard_page_block_count].block = block;
    guard_page_blocks[guard_page_block_count].size = size;
    guard_page_block_count++;
    return block;
}

static inline void* guard_page_malloc(size_t size, const char* file, int line) {
    (void)file;
    (void)line;
    if (guard_page_size_armed != 0 && size == guard_page_size_armed)
        return guard_page_alloc(size);
    return malloc(size);
}

static inline void guard_page_free(void* block, const char* file, int line) {
    (void)file;
    (void)line;
    if (block != NULL && guard_page_find(block) < 0)
        free(block);
}

static inline void* guard_page_realloc(void* block, size_t size, const char* file, int line) {
    int guarded = block != NULL ? guard_page_find(block) : -1;
    void* moved;

    if (guarded < 0 && !(guard_page_size_armed != 0 && size == guard_page_size_armed))
        return realloc(block, size);
    moved = guard_page_malloc(size, file, line);
    if (moved != NULL && block != NULL) {
        size_t old_size = guarded >= 0 ? guard_page_blocks[guarded].size : malloc_usable_size(block);
        memcpy(moved, block, old_size < size ? old_size : size);
        guard_page_free(block, file, line);
    }
    return moved;
}

/* 1 if installed; only possible before libcrypto's first allocation. */
static inline int guard_page_heap_install(void) {
    return CRYPTO_set_mem_functions(guard_page_malloc, guard_page_realloc, guard_page_free);
}

#endif
