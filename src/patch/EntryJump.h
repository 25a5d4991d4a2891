#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>

namespace suture {

// The entry rule, shared by the builder and the injector: each replaced
// function gets a 5-byte `jmp rel32` at its entry, after its `endbr64` if it
// starts with one (so indirect-branch tracking still finds a landing pad),
// else at offset 0. A function holds the jump when its size is at least the
// jump's offset + 5: 5 bytes without endbr64, 9 with it. (Bookworm's
// libcrypto 3.0.20 compiles its C without -fcf-protection: no endbr64, and
// 1,404 of its functions are 5-8 bytes long.) Functions shorter than that
// are patched through their callers instead (docs/builder.md).
inline constexpr std::size_t entry_jump_size = 5;
inline constexpr unsigned char endbr64_bytes[4] = {0xf3, 0x0f, 0x1e, 0xfa};

// Where the jump goes in a function whose bytes (at least its first four,
// when it has that many) are `function`.
inline std::uint32_t entry_jump_offset(std::span<const std::byte> function) {
    return function.size() >= sizeof endbr64_bytes &&
                   std::memcmp(function.data(), endbr64_bytes, sizeof endbr64_bytes) == 0
               ? sizeof endbr64_bytes
               : 0;
}

// Does a function of `size` bytes starting with `function` hold the jump?
inline bool holds_entry_jump(std::span<const std::byte> function, std::uint64_t size) {
    return size >= entry_jump_offset(function) + entry_jump_size;
}

}  // namespace suture
