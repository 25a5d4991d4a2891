#pragma once

#include <cstdint>
#include <vector>

#include "inject/RemoteAddress.h"
#include "proc/ProcessMaps.h"

namespace suture {

// Where a patch region may go. Every jump from the library into the region,
// and every call from the region back into the library, is a rel32: a signed
// 32-bit displacement, so [-2^31, 2^31) bytes from the end of the
// instruction. A region lies wholly within ±2 GiB of every byte of the
// library, less one page of margin on each side for the instruction lengths.

// rel32's reach, less the margin of one page: a region byte and a library
// byte are never further apart than this.
inline constexpr std::uint64_t rel32_reach = (std::uint64_t{1} << 31) - 4096;
// The lowest address mmap gives a process by default (vm.mmap_min_addr,
// 64 KiB on Debian), and where the search for free gaps begins.
inline constexpr std::uint64_t lowest_region_address = 16 * 4096;
// The end of the x86-64 user address space with 4-level paging (TASK_SIZE:
// 2^47 less a guard page). With 5-level paging the kernel maps above it only
// for callers that ask, so regions stay below.
inline constexpr std::uint64_t user_address_limit = (std::uint64_t{1} << 47) - 4096;

// A half-open address range [start, end); empty when start >= end.
struct AddressWindow {
    RemoteAddress start;
    RemoteAddress end;

    bool empty() const { return start >= end; }
};

// The addresses a region near the library [low, high) may occupy: every
// byte in [high - rel32_reach, low + rel32_reach), clipped to the user
// address space [lowest_region_address, user_address_limit). Pure; empty
// when the library itself spans more than rel32 can cross.
AddressWindow rel32_window(RemoteAddress low, RemoteAddress high);

// Start addresses for a region of `size` bytes (page aligned) in the free
// gaps between `mappings` (sorted, as /proc/PID/maps lists them) inside
// rel32_window(low, high), one per gap big enough to leave a free guard page
// on each side, nearest to the library first: the lowest address of a gap
// above the library, the highest of a gap below it. Pure.
std::vector<RemoteAddress> region_candidates(const std::vector<Mapping>& mappings,
                                             RemoteAddress low, RemoteAddress high,
                                             std::uint64_t size);

}  // namespace suture
