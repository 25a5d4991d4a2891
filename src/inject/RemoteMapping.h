#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "base/Error.h"
#include "inject/RemoteAddress.h"
#include "inject/RemoteMemory.h"
#include "inject/RemoteSyscall.h"
#include "proc/ProcessMaps.h"

namespace suture {

// Maps `size` bytes read+exec at the first free candidate address within
// 2 GiB of [low, high) (region_candidates) and fills them with
// `image_for(address)` while the mmap call has just returned: a killed
// injector leaves at worst an empty mapping, explained by the intent record
// written just before the mmap, never one whose contents a later run could
// misread. Errors: conflict (no free address), io (mmap failed).
Result<RemoteAddress> map_region(
    RemoteSyscall& syscall, const RemoteMemory& memory, const std::vector<Mapping>& mappings,
    RemoteAddress low, RemoteAddress high, std::uint64_t size,
    const std::function<Result<std::vector<std::byte>>(RemoteAddress)>& image_for,
    const std::string& subject);

// map_region() for a patch with a data region: `code_size` bytes read+exec
// and right after them `data_size` bytes read+write (never executable, so a
// target under MDWE or MemoryDenyWriteExecute= can be patched), placed
// together in one free gap near the library. `image_for(address)` gives
// both: code_size bytes of code, then the data. The code is mapped and
// filled first (its marker then explains the data region, should this tool
// die before the data is mapped: munmap of the pair undoes either state);
// the data is filled at its own mmap's exit. data_size 0: map_region().
Result<RemoteAddress> map_region_with_data(
    RemoteSyscall& syscall, const RemoteMemory& memory, const std::vector<Mapping>& mappings,
    RemoteAddress low, RemoteAddress high, std::uint64_t code_size, std::uint64_t data_size,
    const std::function<Result<std::vector<std::byte>>(RemoteAddress)>& image_for,
    const std::string& subject);

// Maps `size` bytes read+write (MAP_NORESERVE: pages cost nothing until
// touched) at the first free candidate near [low, high) and writes `head`
// (at most `size` bytes) at its start at the mmap's exit. No intent record:
// a killed injector leaves at worst an anonymous read+write mapping without
// the caller's magic, which nothing reads. For the per-process shadow
// region (ShadowRegion.h).
Result<RemoteAddress> map_data_region(RemoteSyscall& syscall, const RemoteMemory& memory,
                                      const std::vector<Mapping>& mappings, RemoteAddress low,
                                      RemoteAddress high, std::uint64_t size,
                                      std::span<const std::byte> head,
                                      const std::string& subject);

// munmap in the target; io when the kernel refuses.
Result<void> unmap_region(RemoteSyscall& syscall, RemoteAddress address, std::uint64_t size,
                          const std::string& subject);

}  // namespace suture
