#pragma once

#include <compare>
#include <cstdint>
#include <string>

#include "base/Files.h"

namespace suture {

// An address in the target process, never one of ours: it is only ever read
// or written through RemoteMemory, or handed to a system call run in the
// target. Built explicitly from a raw value (what /proc/PID/maps, a register
// or a region marker says); `raw()` gives it back for a system call or a
// marker field. Arithmetic is the kind that keeps its meaning:
//
//   address + offset  -> address   (an offset from a load base or a region start)
//   address - offset  -> address
//   address - address -> offset    (how far the first lies above the second)
//
// The sum of two addresses does not compile. Arithmetic wraps like the
// uint64_t it holds; callers compare before subtracting.
class RemoteAddress {
  public:
    constexpr RemoteAddress() = default;
    constexpr explicit RemoteAddress(std::uint64_t raw) : raw_(raw) {}

    constexpr std::uint64_t raw() const { return raw_; }

    constexpr RemoteAddress operator+(std::uint64_t offset) const {
        return RemoteAddress(raw_ + offset);
    }
    constexpr RemoteAddress operator-(std::uint64_t offset) const {
        return RemoteAddress(raw_ - offset);
    }
    constexpr RemoteAddress& operator+=(std::uint64_t offset) {
        raw_ += offset;
        return *this;
    }
    constexpr std::uint64_t operator-(RemoteAddress base) const { return raw_ - base.raw_; }

    // Rounded down or up to a multiple of `alignment` (a power of two).
    constexpr RemoteAddress align_down(std::uint64_t alignment) const {
        return RemoteAddress(raw_ & ~(alignment - 1));
    }
    constexpr RemoteAddress align_up(std::uint64_t alignment) const {
        return RemoteAddress((raw_ + alignment - 1) & ~(alignment - 1));
    }

    constexpr auto operator<=>(const RemoteAddress&) const = default;

  private:
    std::uint64_t raw_ = 0;
};

// Offsets, named for what they count from. Plain integers: they come from
// patch metadata, ELF symbols and region layouts, and only ever meet an
// address by being added to one.
using LibraryOffset = std::uint64_t;  // from a library's load base (its symbol values)
using RegionOffset = std::uint64_t;   // from the start of a patch region

// "0x7f3a1c200000", for messages.
inline std::string hex_address(RemoteAddress address) {
    return hex_address(address.raw());
}

}  // namespace suture
