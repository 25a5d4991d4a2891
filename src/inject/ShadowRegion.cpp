#include "inject/ShadowRegion.h"

#include <unistd.h>

#include <chrono>
#include <cstring>

#include "inject/RemoteMapping.h"
#include "patch/ShadowLayout.h"

namespace suture {

namespace {

constexpr std::uint64_t page_size = 4096;

std::uint64_t page_align(std::uint64_t value) {
    return (value + page_size - 1) & ~(page_size - 1);
}

std::uint64_t slots_bytes(std::uint32_t slot_count) {
    return page_align(std::uint64_t{slot_count} * 8);
}

std::uint64_t unix_now_ns() {
    return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                          std::chrono::system_clock::now().time_since_epoch())
                                          .count());
}

}  // namespace

std::uint64_t shadow_region_size(std::uint32_t slot_count, std::uint64_t arena_size) {
    return SUTURE_SHADOW_HEADER_SIZE + slots_bytes(slot_count) + page_align(arena_size);
}

std::vector<std::byte> encode_shadow_header(std::uint32_t slot_count, std::uint64_t arena_size,
                                            std::uint64_t created_at_unix_ns,
                                            std::uint32_t creator_pid) {
    suture_shadow_header header{};
    std::memcpy(header.magic, SUTURE_SHADOW_MAGIC, sizeof header.magic);
    header.version = SUTURE_SHADOW_VERSION;
    header.slot_count = slot_count;
    header.region_size = shadow_region_size(slot_count, arena_size);
    header.slots_offset = SUTURE_SHADOW_HEADER_SIZE;
    header.arena_offset = SUTURE_SHADOW_HEADER_SIZE + slots_bytes(slot_count);
    header.arena_size = page_align(arena_size);
    header.created_at_ns = created_at_unix_ns;
    header.creator_pid = creator_pid;
    std::vector<std::byte> bytes(SUTURE_SHADOW_HEADER_SIZE);
    std::memcpy(bytes.data(), &header, sizeof header);
    return bytes;
}

std::optional<ShadowRegion> decode_shadow_header(std::span<const std::byte> bytes,
                                                 std::uint64_t address) {
    suture_shadow_header header;
    if (bytes.size() < sizeof header) {
        return std::nullopt;
    }
    std::memcpy(&header, bytes.data(), sizeof header);
    if (std::memcmp(header.magic, SUTURE_SHADOW_MAGIC, sizeof header.magic) != 0 ||
        header.version != SUTURE_SHADOW_VERSION || header.slot_count == 0 ||
        (header.slot_count & (header.slot_count - 1)) != 0 ||
        header.region_size != shadow_region_size(header.slot_count, header.arena_size)) {
        return std::nullopt;
    }
    return ShadowRegion{
        address,     header.region_size, header.slot_count,    header.arena_size, header.arena_used,
        header.live, header.allocations, header.created_at_ns, header.creator_pid};
}

std::optional<ShadowRegion> find_shadow_region(const RemoteMemory& memory,
                                               const std::vector<Mapping>& mappings) {
    for (const Mapping& mapping : mappings) {
        if (mapping.inode != 0 || !mapping.path.empty() || mapping.executable ||
            !mapping.writable || mapping.shared ||
            mapping.end - mapping.start < SUTURE_SHADOW_HEADER_SIZE) {
            continue;
        }
        auto head = memory.read(RemoteAddress(mapping.start), sizeof(suture_shadow_header));
        if (!head) {
            continue;
        }
        auto region = decode_shadow_header(*head, mapping.start);
        if (region && region->size == mapping.end - mapping.start) {
            return region;
        }
    }
    return std::nullopt;
}

Result<RemoteAddress> find_or_map_shadow_region(RemoteSyscall& syscall, const RemoteMemory& memory,
                                                const std::vector<Mapping>& mappings,
                                                RemoteAddress low, RemoteAddress high,
                                                const std::string& subject) {
    if (auto found = find_shadow_region(memory, mappings)) {
        return RemoteAddress(found->address);
    }
    std::vector<std::byte> header =
        encode_shadow_header(SUTURE_SHADOW_DEFAULT_SLOTS, SUTURE_SHADOW_DEFAULT_ARENA,
                             unix_now_ns(), static_cast<std::uint32_t>(::getpid()));
    return map_data_region(
        syscall, memory, mappings, low, high,
        shadow_region_size(SUTURE_SHADOW_DEFAULT_SLOTS, SUTURE_SHADOW_DEFAULT_ARENA), header,
        subject);
}

}  // namespace suture
