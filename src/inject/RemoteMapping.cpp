#include "inject/RemoteMapping.h"

#include <sys/mman.h>
#include <sys/syscall.h>

#include <algorithm>
#include <cstring>

#include "inject/RegionPlacement.h"

namespace suture {

namespace {

// What one mmap at a fixed address came to.
enum class FixedMapping {
    mapped,  // there, and filled
    taken,   // the address is not free (or the kernel mapped elsewhere): try another
};

// One mmap of `size` bytes at `address` (MAP_FIXED_NOREPLACE) with `prot`,
// and `bytes` written at its start while the call has just returned.
Result<FixedMapping> map_fixed_and_fill(RemoteSyscall& syscall, const RemoteMemory& memory,
                                        RemoteAddress address, std::uint64_t size, int prot,
                                        int extra_flags, std::span<const std::byte> bytes,
                                        const std::string& subject) {
    bool mapped = false;
    auto fill = [&](long result) -> Result<void> {
        if (result != static_cast<long>(address.raw())) {
            return {};
        }
        mapped = true;
        return bytes.empty() ? Result<void>{} : memory.write(address, bytes);
    };
    auto result = syscall.call_then(
        fill, SYS_mmap, address.raw(), size, static_cast<std::uint64_t>(prot),
        static_cast<std::uint64_t>(MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE |
                                   extra_flags),
        static_cast<std::uint64_t>(-1), 0);
    if (!result) {
        if (mapped) {
            // Nothing points into the region yet: take it away again.
            (void)syscall.call(SYS_munmap, address.raw(), size);
        }
        return tl::unexpected(result.error());
    }
    if (*result == static_cast<long>(address.raw())) {
        return FixedMapping::mapped;
    }
    if (*result >= 0) {
        // A kernel without MAP_FIXED_NOREPLACE treats it as a hint; a
        // region elsewhere is of no use.
        (void)syscall.call(SYS_munmap, static_cast<std::uint64_t>(*result), size);
        return FixedMapping::taken;
    }
    if (*result != -EEXIST) {
        return fail(ErrorCode::io, subject + ": mmap in the target failed: " +
                                       std::strerror(static_cast<int>(-*result)));
    }
    return FixedMapping::taken;
}

}  // namespace

Result<RemoteAddress> map_region(
    RemoteSyscall& syscall, const RemoteMemory& memory, const std::vector<Mapping>& mappings,
    RemoteAddress low, RemoteAddress high, std::uint64_t size,
    const std::function<Result<std::vector<std::byte>>(RemoteAddress)>& image_for,
    const std::string& subject) {
    return map_region_with_data(syscall, memory, mappings, low, high, size, 0, image_for,
                                subject);
}

// For each candidate: the image, the intent record, the code mmap (filled
// at its exit), then the data mmap (filled at its exit).
Result<RemoteAddress> map_region_with_data(
    RemoteSyscall& syscall, const RemoteMemory& memory, const std::vector<Mapping>& mappings,
    RemoteAddress low, RemoteAddress high, std::uint64_t code_size, std::uint64_t data_size,
    const std::function<Result<std::vector<std::byte>>(RemoteAddress)>& image_for,
    const std::string& subject) {
    for (RemoteAddress address : region_candidates(mappings, low, high, code_size + data_size)) {
        auto image = image_for(address);
        if (!image) {
            return tl::unexpected(image.error());
        }
        std::span<const std::byte> all(*image);
        // Should this tool die right after the mmap, the record explains
        // the empty page (see IntentRecord).
        if (auto recorded = syscall.record_intent(address, code_size); !recorded) {
            return tl::unexpected(recorded.error());
        }
        auto code = map_fixed_and_fill(syscall, memory, address, code_size, PROT_READ | PROT_EXEC,
                                       0, all.first(std::min<std::size_t>(all.size(), code_size)),
                                       subject);
        if (!code) {
            return tl::unexpected(code.error());
        }
        if (*code == FixedMapping::taken) {
            continue;
        }
        if (data_size == 0) {
            return address;
        }
        auto data = map_fixed_and_fill(syscall, memory, address + code_size, data_size,
                                       PROT_READ | PROT_WRITE, 0, all.subspan(code_size), subject);
        if (data && *data == FixedMapping::mapped) {
            return address;
        }
        // Nothing points into the code yet: take it away again.
        (void)syscall.call(SYS_munmap, address.raw(), code_size);
        if (!data) {
            return tl::unexpected(data.error());
        }
    }
    return fail(ErrorCode::conflict, subject + ": no free address within 2 GiB of the library");
}

Result<RemoteAddress> map_data_region(RemoteSyscall& syscall, const RemoteMemory& memory,
                                      const std::vector<Mapping>& mappings, RemoteAddress low,
                                      RemoteAddress high, std::uint64_t size,
                                      std::span<const std::byte> head,
                                      const std::string& subject) {
    for (RemoteAddress address : region_candidates(mappings, low, high, size)) {
        auto mapped = map_fixed_and_fill(syscall, memory, address, size, PROT_READ | PROT_WRITE,
                                         MAP_NORESERVE, head, subject);
        if (!mapped) {
            return tl::unexpected(mapped.error());
        }
        if (*mapped == FixedMapping::mapped) {
            return address;
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
