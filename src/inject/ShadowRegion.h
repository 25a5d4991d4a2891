#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "base/Error.h"
#include "inject/RemoteAddress.h"
#include "inject/RemoteMemory.h"
#include "inject/RemoteSyscall.h"
#include "proc/ProcessMaps.h"

namespace suture {

// The per-process shadow region (layout: patch/ShadowLayout.h; rules:
// docs/patch-format.md, "Shadow region"). One per process, made by the
// first apply of a patch whose object refers to `shadow_table_symbol`,
// found by every later one (any level, any patch id), and never unmapped by
// suture: shadow data outlives the patches that made it, and a thread of a
// retired level may still hold a pointer into it.
struct ShadowRegion {
    std::uint64_t address = 0;
    std::uint64_t size = 0;
    std::uint32_t slot_count = 0;
    std::uint64_t arena_size = 0;
    std::uint64_t arena_used = 0;   // bytes of records handed out
    std::uint64_t live = 0;         // shadows attached now
    std::uint64_t allocations = 0;  // records handed out
    std::uint64_t created_at_unix_ns = 0;
    std::uint32_t creator_pid = 0;
};

// Bytes of the region for a table of `slot_count` slots (a power of two)
// and an arena of `arena_size` bytes, page aligned.
std::uint64_t shadow_region_size(std::uint32_t slot_count, std::uint64_t arena_size);

// The header page a new region starts with.
std::vector<std::byte> encode_shadow_header(std::uint32_t slot_count, std::uint64_t arena_size,
                                            std::uint64_t created_at_unix_ns,
                                            std::uint32_t creator_pid);

// Decodes a header (defensively: it lives in the target); nullopt if the
// bytes are not one. `address` is where it was read.
std::optional<ShadowRegion> decode_shadow_header(std::span<const std::byte> bytes,
                                                 std::uint64_t address);

// The shadow region among `mappings` (private anonymous read+write, not
// executable, starting with the magic), read without a stop.
std::optional<ShadowRegion> find_shadow_region(const RemoteMemory& memory,
                                               const std::vector<Mapping>& mappings);

// Inside a stop: the process's shadow region, mapped near [low, high) with
// a fresh header if it has none yet. Errors: conflict (no free address),
// io.
Result<RemoteAddress> find_or_map_shadow_region(RemoteSyscall& syscall, const RemoteMemory& memory,
                                                const std::vector<Mapping>& mappings,
                                                RemoteAddress low, RemoteAddress high,
                                                const std::string& subject);

}  // namespace suture
