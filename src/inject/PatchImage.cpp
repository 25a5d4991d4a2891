#include "inject/PatchImage.h"

#include <elf.h>

#include <cstring>
#include <limits>

#include "inject/RegionMarker.h"

namespace suture {

namespace {

constexpr std::size_t page_size = 4096;
constexpr std::size_t stub_size = 16;

std::size_t align_up(std::size_t value, std::size_t alignment) {
    return (value + alignment - 1) & ~(alignment - 1);
}

bool fits_signed32(std::int64_t value) {
    return value >= std::numeric_limits<std::int32_t>::min() &&
           value <= std::numeric_limits<std::int32_t>::max();
}

}  // namespace

Result<PatchLayout> layout_patch(const PatchFile& patch) {
    const RelocatableObject& object = patch.object;
    PatchLayout layout;
    layout.marker_size = region_marker_size(patch.metadata.functions.size());
    layout.section_offsets.assign(object.sections().size(), 0);
    std::size_t offset = layout.marker_size;
    for (std::size_t index = 1; index < object.sections().size(); ++index) {
        if (!object.is_loaded(index)) {
            continue;
        }
        const auto& section = object.sections()[index];
        if ((section.flags & SHF_WRITE) != 0) {
            return fail(ErrorCode::unsupported,
                        object.name() + ": section " + section.name +
                            " is writable data; patch regions are read+exec only");
        }
        offset = align_up(offset, section.alignment);
        layout.section_offsets[index] = offset;
        offset += section.size;
    }
    for (std::size_t index = 1; index < object.sections().size(); ++index) {
        if (!object.is_loaded(index)) {
            continue;
        }
        for (const auto& relocation : object.relocations_for(index)) {
            if (relocation.symbol != 0) {
                layout.slot_of_symbol.try_emplace(relocation.symbol, layout.slot_of_symbol.size());
            }
        }
    }
    layout.got_offset = align_up(offset, 8);
    layout.stubs_offset = layout.got_offset + 8 * layout.slot_of_symbol.size();
    layout.size =
        align_up(layout.stubs_offset + stub_size * layout.slot_of_symbol.size(), page_size);
    return layout;
}

Result<std::vector<std::byte>> build_patch_image(
    const PatchFile& patch, const PatchLayout& layout, RemoteAddress region_address,
    RemoteAddress target_base, const ImportResolver& resolve_import,
    std::vector<RemoteAddress>& replacement_addresses) {
    const RelocatableObject& object = patch.object;
    std::vector<std::byte> image(layout.size);
    for (std::size_t index = 1; index < object.sections().size(); ++index) {
        const auto& section = object.sections()[index];
        if (object.is_loaded(index) && section.type != SHT_NOBITS) {
            std::memcpy(image.data() + layout.section_offsets[index], section.bytes.data(),
                        section.bytes.size());
        }
    }

    // Every symbol's address in the target.
    std::map<std::string, std::uint64_t> target_offsets;
    for (const TargetReference& reference : patch.metadata.target_references) {
        target_offsets[reference.symbol] = reference.offset;
    }
    std::map<std::string, const Import*> imports;
    for (const Import& import : patch.metadata.imports) {
        imports[import.symbol] = &import;
    }
    auto address_of = [&](std::size_t symbol_index) -> Result<RemoteAddress> {
        const auto& symbol = object.symbols()[symbol_index];
        if (symbol.is_absolute) {
            return RemoteAddress(symbol.value);
        }
        if (symbol.section != SHN_UNDEF) {
            if (!object.is_loaded(symbol.section)) {
                return fail(ErrorCode::unsupported, object.name() + ": reference to " +
                                                        symbol.name + " in unloaded section " +
                                                        object.sections()[symbol.section].name);
            }
            return region_address + layout.section_offsets[symbol.section] + symbol.value;
        }
        if (auto found = target_offsets.find(symbol.name); found != target_offsets.end()) {
            return target_base + found->second;
        }
        if (auto found = imports.find(symbol.name); found != imports.end()) {
            return resolve_import(*found->second);
        }
        return fail(ErrorCode::bad_format, object.name() + ": unresolved symbol " + symbol.name);
    };

    // GOT slots and stubs: `jmp *[rip + 0]` followed by the 8-byte address.
    for (const auto& [symbol_index, slot] : layout.slot_of_symbol) {
        auto address = address_of(symbol_index);
        if (!address) {
            return tl::unexpected(address.error());
        }
        std::uint64_t raw = address->raw();
        std::memcpy(image.data() + layout.got_offset + 8 * slot, &raw, 8);
        std::byte* stub = image.data() + layout.stubs_offset + stub_size * slot;
        const unsigned char jump_indirect[6] = {0xff, 0x25, 0x00, 0x00, 0x00, 0x00};
        std::memcpy(stub, jump_indirect, sizeof jump_indirect);
        std::memcpy(stub + 6, &raw, 8);
    }

    for (std::size_t index = 1; index < object.sections().size(); ++index) {
        if (!object.is_loaded(index)) {
            continue;
        }
        const auto& section = object.sections()[index];
        for (const auto& relocation : object.relocations_for(index)) {
            std::size_t width =
                (relocation.type == R_X86_64_64 || relocation.type == R_X86_64_PC64) ? 8 : 4;
            if (relocation.offset + width > section.size) {
                return fail(ErrorCode::bad_format,
                            object.name() + ": relocation outside " + section.name);
            }
            std::size_t place_offset = layout.section_offsets[index] + relocation.offset;
            RemoteAddress place = region_address + place_offset;
            auto symbol_address = address_of(relocation.symbol);
            if (!symbol_address) {
                return tl::unexpected(symbol_address.error());
            }
            std::int64_t S = static_cast<std::int64_t>(symbol_address->raw());
            std::int64_t A = relocation.addend;
            std::int64_t P = static_cast<std::int64_t>(place.raw());
            std::size_t slot =
                relocation.symbol != 0 ? layout.slot_of_symbol.at(relocation.symbol) : 0;
            std::int64_t got_slot =
                static_cast<std::int64_t>((region_address + layout.got_offset + 8 * slot).raw());
            std::int64_t stub = static_cast<std::int64_t>(
                (region_address + layout.stubs_offset + stub_size * slot).raw());
            std::int64_t value = 0;
            const std::string& symbol_name = object.symbols()[relocation.symbol].name;
            auto out_of_range = [&] {
                return fail(ErrorCode::unsupported, object.name() + ": relocation type " +
                                                        std::to_string(relocation.type) + " to " +
                                                        symbol_name + " out of range");
            };
            switch (relocation.type) {
                case R_X86_64_64:
                    value = S + A;
                    break;
                case R_X86_64_PC64:
                    value = S + A - P;
                    break;
                case R_X86_64_PC32:
                    value = S + A - P;
                    if (!fits_signed32(value)) {
                        return out_of_range();
                    }
                    break;
                case R_X86_64_PLT32:
                    value = S + A - P;
                    if (!fits_signed32(value)) {
                        value = stub + A - P;  // a call to code far away goes through a stub
                    }
                    break;
                case R_X86_64_GOTPCREL:
                case R_X86_64_GOTPCRELX:
                case R_X86_64_REX_GOTPCRELX:
                    value = got_slot + A - P;
                    break;
                case R_X86_64_32:
                    value = S + A;
                    if (value < 0 || value > std::numeric_limits<std::uint32_t>::max()) {
                        return out_of_range();
                    }
                    break;
                case R_X86_64_32S:
                    value = S + A;
                    if (!fits_signed32(value)) {
                        return out_of_range();
                    }
                    break;
                default:
                    return fail(ErrorCode::unsupported, object.name() + ": relocation type " +
                                                            std::to_string(relocation.type) +
                                                            " in " + section.name +
                                                            " is not supported");
            }
            if (width == 8) {
                std::memcpy(image.data() + place_offset, &value, 8);
            } else {
                std::int32_t value32 = static_cast<std::int32_t>(value);
                std::memcpy(image.data() + place_offset, &value32, 4);
            }
        }
    }

    replacement_addresses.clear();
    for (const ReplacedFunction& function : patch.metadata.functions) {
        const auto* symbol = object.find_defined(function.replacement);
        replacement_addresses.push_back(region_address + layout.section_offsets[symbol->section] +
                                        symbol->value);
    }
    return image;
}

}  // namespace suture
