#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "base/Error.h"
#include "inject/RemoteAddress.h"
#include "patch/EntryJump.h"

namespace suture {

// A function is redirected by a `jmp rel32` (opcode e9 and a 32-bit
// displacement counted from the end of the jump) written over its first
// bytes, or over the bytes right after its endbr64. The marker keeps the
// bytes it overwrote to undo it. (The entry rule: patch/EntryJump.h.)
inline constexpr std::size_t jump_size = entry_jump_size;

// One redirected function, as recorded in the region.
struct MarkedFunction {
    std::uint64_t target_offset = 0;  // function start, from the library's load base
    std::uint64_t target_size = 0;
    std::uint64_t replacement_address = 0;        // absolute, inside the region
    std::uint32_t jump_offset = 0;                // 4 after an endbr64, else 0
    std::array<std::byte, jump_size> original{};  // the bytes the jump overwrote
};

// Where a patch's callbacks (Callbacks.h) are: offsets into the region
// (never 0: the marker is there); 0 = none.
// Recorded so a revert, which has no patch file, finds pre_revert and
// post_revert.
struct MarkedCallbacks {
    std::uint64_t pre_apply = 0;
    std::uint64_t post_apply = 0;
    std::uint64_t pre_revert = 0;
    std::uint64_t post_revert = 0;

    bool any() const {
        return pre_apply != 0 || post_apply != 0 || pre_revert != 0 || post_revert != 0;
    }
};

// The marker at the start of every patch region: enough for any later run,
// with or without the state database, to tell what is applied where and to
// undo it. Layout: docs/patch-format.md, "Region marker".
struct RegionMarker {
    std::string patch_id;
    std::uint32_t level = 0;
    std::string target_build_id;  // lowercase hex
    std::uint64_t target_base = 0;
    std::uint64_t region_address = 0;  // not stored: where it was found
    std::uint64_t region_size = 0;
    std::uint64_t applied_at_unix_ns = 0;
    // Set by a revert that restored every original byte but left the region
    // mapped, because a thread might still return into it; 0 while the
    // patch is in use. A later stop unmaps a retired region once its stack
    // check proves no thread refers to it.
    std::uint64_t retired_at_unix_ns = 0;
    std::vector<MarkedFunction> functions;
    MarkedCallbacks callbacks;  // the callbacks block, after the functions
    // The patch's data region (read+write, never exec: its .data, .bss and
    // new statics), right after the code region; 0 and 0 when it has none.
    // Unmapped with the code region. Stored in the marker's data extension.
    std::uint64_t data_address = 0;
    std::uint64_t data_size = 0;

    bool retired() const { return retired_at_unix_ns != 0; }
};

inline constexpr char region_magic[8] = {'S', 'U', 'T', 'U', 'R', 'E', 'P', 'R'};
inline constexpr std::size_t region_marker_fixed_size = 192;
inline constexpr std::size_t region_marker_function_size = 48;
// Where the marker's own encoded size (a u32) sits: a reader learns from the
// fixed part how many bytes to read for the whole marker.
inline constexpr std::size_t region_marker_size_offset = 12;
// Where `retired_at_unix_ns` sits in the marker (a u64, once reserved, so
// markers written before it existed read as "in use").
inline constexpr std::size_t region_marker_retired_offset = 184;

// Where the marker's flags byte sits (once reserved, so older markers read
// as no flags); bit 0: a callbacks block of 32 bytes follows the functions.
inline constexpr std::size_t region_marker_flags_offset = 177;
inline constexpr std::uint8_t region_marker_has_callbacks = 1;
inline constexpr std::size_t region_marker_callbacks_size = 32;
inline constexpr std::size_t region_marker_data_extension_size = 64;

// The optional parts of a marker. Two mark themselves differently, each the
// way it was first written, so markers in running processes keep reading:
// the callbacks block by flag bit 0, the data extension by the marker's size
// alone (64 bytes more than the marker without it).
struct MarkerExtensions {
    bool callbacks = false;  // the 32-byte callbacks block right after the functions
    bool data = false;       // the 64-byte data extension at the very end
};

// The extensions `marker` is encoded with: callbacks if any is set, data if
// it has a data region.
MarkerExtensions marker_extensions(const RegionMarker& marker);

// Size of the encoded marker for `function_count` functions: the fixed part,
// the functions and the callbacks block, 64-byte aligned, then the data
// extension (64 bytes: magic `SUTUREDA`, data address, data size).
// A marker with neither is byte for byte what suture wrote before either
// existed. Layout: docs/patch-format.md, "Region marker".
std::size_t region_marker_size(std::size_t function_count, MarkerExtensions extensions = {});

std::vector<std::byte> encode_region_marker(const RegionMarker& marker);

// Decodes a marker from the first bytes of a region. Defensive: the region
// lives in a process that may have scribbled over it.
Result<RegionMarker> decode_region_marker(std::span<const std::byte> bytes);

// The intent record: written (in dead executable bytes, at the end of the
// system-call trampoline's page) just before the region is mapped, and
// cleared once the region holds its marker. If the injector dies between the
// target's mmap and the filling of the region, the record is what explains
// the empty page left behind. Layout: magic `SUTUREIN` (8), region address
// (8), region size (8), reserved (8).
struct IntentRecord {
    std::uint64_t region_address = 0;
    std::uint64_t region_size = 0;
};

inline constexpr std::size_t intent_record_size = 32;

std::vector<std::byte> encode_intent_record(const IntentRecord& intent);
std::optional<IntentRecord> decode_intent_record(std::span<const std::byte> bytes);

// The bytes of `jmp rel32` from `site` to `destination`; error if out of range.
Result<std::array<std::byte, jump_size>> encode_jump(std::uint64_t site, std::uint64_t destination);

// Where the jump of `function` goes: the function's start in the library
// the marker was made for (its load base plus the function's offset), after
// an endbr64 if it begins with one.
RemoteAddress jump_site(const RegionMarker& marker, const MarkedFunction& function);

}  // namespace suture
