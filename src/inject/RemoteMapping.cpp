#include "inject/RemoteMapping.h"

#include <sys/mman.h>
#include <sys/syscall.h>

#include <cstring>

#include "inject/RegionPlacement.h"

namespace suture {

// Maps the region read+exec at the first free candidate address within 2 GiB
// of [low, high) and fills it with `image_for(address)` while the mmap call
// has just returned: a killed injector leaves at worst an empty page, never
// one whose contents a later run could misread.
Result<RemoteAddress> map_region(
    RemoteSyscall& syscall, const RemoteMemory& memory, const std::vector<Mapping>& mappings,
    RemoteAddress low, RemoteAddress high, std::uint64_t size,
    const std::function<Result<std::vector<std::byte>>(RemoteAddress)>& image_for,
    const std::string& subject) {
    for (RemoteAddress address : region_candidates(mappings, low, high, size)) {
        auto image = image_for(address);
        if (!image) {
            return tl::unexpected(image.error());
        }
        // Should this tool die right after the mmap, the record explains
        // the empty page (see IntentRecord).
        if (auto recorded = syscall.record_intent(address, size); !recorded) {
            return tl::unexpected(recorded.error());
        }
        bool mapped = false;
        auto fill = [&](long result) -> Result<void> {
            if (result != static_cast<long>(address.raw())) {
                return {};
            }
            mapped = true;
            return memory.write(address, *image);
        };
        auto result = syscall.call_then(fill, SYS_mmap, address.raw(), size, PROT_READ | PROT_EXEC,
                                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE,
                                        static_cast<std::uint64_t>(-1), 0);
        if (!result) {
            if (mapped) {
                // Nothing points into the region yet: take it away again.
                (void)syscall.call(SYS_munmap, address.raw(), size);
            }
            return tl::unexpected(result.error());
        }
        if (*result == static_cast<long>(address.raw())) {
            return address;
        }
        if (*result >= 0) {
            // A kernel without MAP_FIXED_NOREPLACE treats it as a hint; a
            // region elsewhere is of no use.
            (void)syscall.call(SYS_munmap, static_cast<std::uint64_t>(*result), size);
            continue;
        }
        if (*result != -EEXIST) {
            return fail(ErrorCode::io, subject + ": mmap in the target failed: " +
                                           std::strerror(static_cast<int>(-*result)));
        }
    }
    return fail(ErrorCode::conflict, subject + ": no free address within 2 GiB of the library");
}

Result<void> unmap_region(RemoteSyscall& syscall, RemoteAddress address, std::uint64_t size,
                          const std::string& subject) {
    auto result = syscall.call(SYS_munmap, address.raw(), size);
    if (!result) {
        return tl::unexpected(result.error());
    }
    if (*result != 0) {
        return fail(ErrorCode::io, subject + ": munmap in the target failed: " +
                                       std::strerror(static_cast<int>(-*result)));
    }
    return {};
}

}  // namespace suture
