#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
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

// munmap in the target; io when the kernel refuses.
Result<void> unmap_region(RemoteSyscall& syscall, RemoteAddress address, std::uint64_t size,
                          const std::string& subject);

}  // namespace suture
