#include "inject/PatchRegions.h"

#include "inject/ReturnGate.h"

#include <algorithm>
#include <cstring>
#include <string>

namespace suture {

namespace {

// Whether `head`, a region's first bytes, begins with the marker's magic.
bool has_region_magic(std::span<const std::byte> head) {
    return head.size() >= sizeof region_magic &&
           std::memcmp(head.data(), region_magic, sizeof region_magic) == 0;
}

// The marker at the start of `mapping`, if it holds one that decodes.
std::optional<RegionMarker> read_marker(const RemoteMemory& memory, const Mapping& mapping) {
    RemoteAddress start(mapping.start);
    auto head = memory.read(start, region_marker_fixed_size);
    if (!head || !has_region_magic(*head)) {
        return std::nullopt;
    }
    std::uint32_t size = 0;
    std::memcpy(&size, head->data() + region_marker_size_offset, sizeof size);
    if (size > mapping.end - mapping.start || size < region_marker_fixed_size) {
        return std::nullopt;
    }
    auto whole = memory.read(start, size);
    if (!whole) {
        return std::nullopt;
    }
    auto marker = decode_region_marker(*whole);
    if (!marker) {
        return std::nullopt;
    }
    marker->region_address = mapping.start;
    return std::move(*marker);
}

// The intent record at `record_address`, if there is one.
std::optional<IntentRecord> read_intent(const RemoteMemory& memory, RemoteAddress record_address) {
    auto bytes = memory.read(record_address, intent_record_size);
    return bytes ? decode_intent_record(*bytes) : std::nullopt;
}

}  // namespace

Result<std::array<std::byte, jump_size>> jump_of(const RegionMarker& marker,
                                                 const MarkedFunction& function) {
    return encode_jump(jump_site(marker, function).raw(), function.replacement_address);
}

std::vector<RegionMarker> find_markers(const RemoteMemory& memory,
                                       const std::vector<Mapping>& mappings) {
    std::vector<RegionMarker> markers;
    for (const Mapping& mapping : mappings) {
        if (mapping.inode != 0 || !mapping.path.empty() || !mapping.executable ||
            mapping.writable || mapping.shared) {
            continue;
        }
        if (auto marker = read_marker(memory, mapping)) {
            markers.push_back(std::move(*marker));
        }
    }
    return markers;
}

Result<JumpCount> count_jumps(const RemoteMemory& memory, const RegionMarker& marker) {
    JumpCount count;
    for (const MarkedFunction& function : marker.functions) {
        auto current = memory.read(jump_site(marker, function), jump_size);
        if (!current) {
            return tl::unexpected(current.error());
        }
        auto jump = jump_of(marker, function);
        if (jump && std::equal(current->begin(), current->end(), jump->begin())) {
            ++count.in_place;
        } else if (!std::equal(current->begin(), current->end(), function.original.begin())) {
            count.foreign = true;
        }
    }
    return count;
}

std::vector<InterruptedRegion> find_interrupted_regions(const RemoteMemory& memory,
                                                        const std::vector<Mapping>& mappings) {
    std::vector<InterruptedRegion> regions;
    for (const Mapping& mapping : mappings) {
        if (!mapping.is_file() || !mapping.executable) {
            continue;
        }
        RemoteAddress record_address = RemoteAddress(mapping.end) - intent_record_size;
        auto intent = read_intent(memory, record_address);
        if (!intent) {
            continue;
        }
        const Mapping* region = find_mapping(mappings, intent->region_address);
        if (region == nullptr || region->start != intent->region_address ||
            region->end - region->start != intent->region_size || region->inode != 0 ||
            !region->executable || region->writable) {
            continue;
        }
        auto head = memory.read(RemoteAddress(region->start), sizeof region_magic);
        if (!head || has_region_magic(*head) ||
            std::memcmp(head->data(), gate_page_magic, sizeof gate_page_magic) == 0) {
            continue;  // the apply got as far as the marker (or a gate page's): explained by it
        }
        regions.push_back(InterruptedRegion{*intent, record_address});
    }
    return regions;
}

CodeRange region_range(const RegionMarker& marker) {
    return CodeRange{marker.region_address, marker.region_address + marker.region_size,
                     marker.patch_id + " level " + std::to_string(marker.level) +
                         (marker.retired() ? " retired region" : " region")};
}

}  // namespace suture
