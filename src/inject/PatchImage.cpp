#include "inject/PatchImage.h"

#include <elf.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <optional>

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

// Every symbol's address in the target, for one region address: defined in
// the object (inside the region), a reference into the target library
// (from its load base), or an import. A *call* (R_X86_64_PLT32, and its
// stub) to a function the same patch replaces goes straight to its
// replacement: the patch's functions call each other's new versions, not
// the jump at the old entry, so a thread still running patch code after a
// revert (which never waits for it) keeps to one version until it returns.
// Its address as a value (a function pointer the code compares or stores)
// stays the original's, which is what the rest of the library holds.
class SymbolAddresses {
  public:
    SymbolAddresses(const PatchFile& patch, const PatchLayout& layout, RemoteAddress region,
                    RemoteAddress target_base, const ImportResolver& resolve_import)
        : object_(patch.object),
          layout_(layout),
          region_(region),
          target_base_(target_base),
          resolve_import_(resolve_import) {
        for (const TargetReference& reference : patch.metadata.target_references) {
            target_offsets_[reference.symbol] = reference.offset;
        }
        for (const ReplacedFunction& function : patch.metadata.functions) {
            if (const auto* symbol = patch.object.find_defined(function.replacement)) {
                replacement_at_[function.offset] =
                    region + layout.section_offsets[symbol->section] + symbol->value;
            }
        }
        for (const Import& import : patch.metadata.imports) {
            imports_[import.symbol] = &import;
        }
    }

    Result<RemoteAddress> of(std::size_t symbol_index) const {
        const auto& symbol = object_.symbols()[symbol_index];
        if (symbol.is_absolute) {
            return RemoteAddress(symbol.value);
        }
        if (symbol.section != SHN_UNDEF) {
            if (!object_.is_loaded(symbol.section)) {
                return fail(ErrorCode::unsupported, object_.name() + ": reference to " +
                                                        symbol.name + " in unloaded section " +
                                                        object_.sections()[symbol.section].name);
            }
            return region_ + layout_.section_offsets[symbol.section] + symbol.value;
        }
        if (auto found = target_offsets_.find(symbol.name); found != target_offsets_.end()) {
            return target_base_ + found->second;
        }
        if (auto found = imports_.find(symbol.name); found != imports_.end()) {
            return resolve_import_(*found->second);
        }
        if (symbol.name == shadow_table_symbol) {
            return resolve_import_(Import{symbol.name, "suture"});
        }
        return fail(ErrorCode::bad_format, object_.name() + ": unresolved symbol " + symbol.name);
    }

    // Where a call to the symbol goes: a replaced function's replacement,
    // else the symbol's address.
    Result<RemoteAddress> call_target(std::size_t symbol_index) const {
        const auto& symbol = object_.symbols()[symbol_index];
        if (symbol.section == SHN_UNDEF && !symbol.is_absolute) {
            if (auto found = target_offsets_.find(symbol.name); found != target_offsets_.end()) {
                if (auto replaced = replacement_at_.find(found->second);
                    replaced != replacement_at_.end()) {
                    return replaced->second;
                }
            }
        }
        return of(symbol_index);
    }

  private:
    const RelocatableObject& object_;
    const PatchLayout& layout_;
    RemoteAddress region_;
    RemoteAddress target_base_;
    const ImportResolver& resolve_import_;
    std::map<std::string, LibraryOffset> target_offsets_;
    std::map<LibraryOffset, RemoteAddress> replacement_at_;  // by replaced function's offset
    std::map<std::string, const Import*> imports_;
};

// The loaded sections' contents, each at its offset.
void copy_sections(const RelocatableObject& object, const PatchLayout& layout,
                   std::vector<std::byte>& image) {
    for (std::size_t index = 1; index < object.sections().size(); ++index) {
        const auto& section = object.sections()[index];
        if (object.is_loaded(index) && section.type != SHT_NOBITS) {
            std::memcpy(image.data() + layout.section_offsets[index], section.bytes.data(),
                        section.bytes.size());
        }
    }
}

// GOT slots and stubs: each slot holds its symbol's address, each stub is
// `jmp *[rip + 0]` followed by the same address.
Result<void> fill_got_and_stubs(const PatchLayout& layout, const SymbolAddresses& symbols,
                                std::vector<std::byte>& image) {
    for (const auto& [symbol_index, slot] : layout.slot_of_symbol) {
        auto address = symbols.of(symbol_index);
        auto call_target = symbols.call_target(symbol_index);
        if (!address || !call_target) {
            return tl::unexpected(!address ? address.error() : call_target.error());
        }
        std::uint64_t raw = address->raw();
        std::memcpy(image.data() + layout.got_offset + 8 * slot, &raw, 8);
        std::byte* stub = image.data() + layout.stubs_offset + stub_size * slot;
        const unsigned char jump_indirect[6] = {0xff, 0x25, 0x00, 0x00, 0x00, 0x00};
        std::uint64_t raw_call = call_target->raw();
        std::memcpy(stub, jump_indirect, sizeof jump_indirect);
        std::memcpy(stub + 6, &raw_call, 8);
    }
    return {};
}

// The psABI's names for what a relocation computes from: the symbol (S),
// the addend (A), the place (P), the symbol's GOT slot and stub.
struct RelocationInputs {
    std::int64_t S = 0;
    std::int64_t A = 0;
    std::int64_t P = 0;
    std::int64_t got_slot = 0;
    std::int64_t stub = 0;
};

std::int64_t signed_address(RemoteAddress address) {
    return static_cast<std::int64_t>(address.raw());
}

// What one relocation computes, and whether that fits its field.
struct RelocationValue {
    std::int64_t value = 0;
    bool fits = true;
};

// The value of a relocation of `type` (x86-64 psABI, "Relocation Types");
// nullopt for a type suture does not support.
std::optional<RelocationValue> relocation_value(std::uint32_t type, const RelocationInputs& in) {
    switch (type) {
        case R_X86_64_64:
            return RelocationValue{in.S + in.A};
        case R_X86_64_PC64:
            return RelocationValue{in.S + in.A - in.P};
        case R_X86_64_PC32:
            return RelocationValue{in.S + in.A - in.P, fits_signed32(in.S + in.A - in.P)};
        case R_X86_64_PLT32:
            // A call to code far away goes through the symbol's stub.
            return RelocationValue{fits_signed32(in.S + in.A - in.P) ? in.S + in.A - in.P
                                                                     : in.stub + in.A - in.P};
        case R_X86_64_GOTPCREL:
        case R_X86_64_GOTPCRELX:
        case R_X86_64_REX_GOTPCRELX:
            return RelocationValue{in.got_slot + in.A - in.P};
        case R_X86_64_32:
            return RelocationValue{in.S + in.A, in.S + in.A >= 0 && in.S + in.A <= UINT32_MAX};
        case R_X86_64_32S:
            return RelocationValue{in.S + in.A, fits_signed32(in.S + in.A)};
        default:
            return std::nullopt;
    }
}

// Applies every relocation of loaded section `index` to the image.
Result<void> relocate_section(const RelocatableObject& object, std::size_t index,
                              const PatchLayout& layout, const SymbolAddresses& symbols,
                              RemoteAddress region, std::vector<std::byte>& image) {
    const auto& section = object.sections()[index];
    for (const auto& relocation : object.relocations_for(index)) {
        std::size_t width =
            (relocation.type == R_X86_64_64 || relocation.type == R_X86_64_PC64) ? 8 : 4;
        if (relocation.offset + width > section.size) {
            return fail(ErrorCode::bad_format,
                        object.name() + ": relocation outside " + section.name);
        }
        RegionOffset place = layout.section_offsets[index] + relocation.offset;
        auto symbol_address = relocation.type == R_X86_64_PLT32 ? symbols.call_target(relocation.symbol)
                                                                : symbols.of(relocation.symbol);
        if (!symbol_address) {
            return tl::unexpected(symbol_address.error());
        }
        std::size_t slot = relocation.symbol != 0 ? layout.slot_of_symbol.at(relocation.symbol) : 0;
        RelocationInputs inputs{signed_address(*symbol_address), relocation.addend,
                                signed_address(region + place),
                                signed_address(region + layout.got_offset + 8 * slot),
                                signed_address(region + layout.stubs_offset + stub_size * slot)};
        std::string what = object.name() + ": relocation type " + std::to_string(relocation.type);
        auto value = relocation_value(relocation.type, inputs);
        if (!value) {
            return fail(ErrorCode::unsupported, what + " in " + section.name + " is not supported");
        }
        if (!value->fits) {
            return fail(ErrorCode::unsupported,
                        what + " to " + object.symbols()[relocation.symbol].name + " out of range");
        }
        if (width == 8) {
            std::memcpy(image.data() + place, &value->value, 8);
        } else {
            std::int32_t value32 = static_cast<std::int32_t>(value->value);
            std::memcpy(image.data() + place, &value32, 4);
        }
    }
    return {};
}

// Where each metadata function's replacement lies in the region.
std::vector<RemoteAddress> replacements_in(const PatchFile& patch, const PatchLayout& layout,
                                           RemoteAddress region) {
    std::vector<RemoteAddress> addresses;
    for (const ReplacedFunction& function : patch.metadata.functions) {
        const auto* symbol = patch.object.find_defined(function.replacement);
        addresses.push_back(region + layout.section_offsets[symbol->section] + symbol->value);
    }
    return addresses;
}

}  // namespace

bool is_data_section(const RelocatableObject& object, std::size_t index) {
    return object.is_loaded(index) && (object.sections()[index].flags & SHF_WRITE) != 0;
}

namespace {

// The sections of one region (code: !data; data: data), each at its
// alignment from `offset`; returns the end.
Result<std::size_t> place_sections(const RelocatableObject& object, bool data, std::size_t offset,
                                   PatchLayout& layout) {
    for (std::size_t index = 1; index < object.sections().size(); ++index) {
        if (!object.is_loaded(index) || is_data_section(object, index) != data) {
            continue;
        }
        const auto& section = object.sections()[index];
        if (data && (section.flags & SHF_EXECINSTR) != 0) {
            return fail(ErrorCode::unsupported,
                        object.name() + ": section " + section.name +
                            " is writable and executable; a patch's code is never writable");
        }
        if ((section.flags & SHF_TLS) != 0) {
            return fail(ErrorCode::unsupported, object.name() + ": section " + section.name +
                                                    " is thread-local; patches cannot add TLS");
        }
        if (section.alignment > page_size) {
            return fail(ErrorCode::unsupported, object.name() + ": section " + section.name +
                                                    " wants more than page alignment");
        }
        offset = align_up(offset, std::max<std::size_t>(section.alignment, 1));
        layout.section_offsets[index] = offset;
        offset += section.size;
    }
    return offset;
}

}  // namespace

Result<PatchLayout> layout_patch(const PatchFile& patch) {
    const RelocatableObject& object = patch.object;
    PatchLayout layout;
    bool has_data = false;
    for (std::size_t index = 1; index < object.sections().size(); ++index) {
        has_data = has_data || (is_data_section(object, index) && object.sections()[index].size);
    }
    layout.marker_size = region_marker_size(
        patch.metadata.functions.size(),
        MarkerExtensions{.callbacks = patch.metadata.callbacks.any(), .data = has_data});
    layout.section_offsets.assign(object.sections().size(), 0);
    auto code_end = place_sections(object, false, layout.marker_size, layout);
    if (!code_end) {
        return tl::unexpected(code_end.error());
    }
    std::size_t offset = *code_end;
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
    if (has_data) {
        auto data_end = place_sections(object, true, layout.size, layout);
        if (!data_end) {
            return tl::unexpected(data_end.error());
        }
        layout.data_size = align_up(*data_end, page_size) - layout.size;
    }
    return layout;
}

Result<std::vector<std::byte>> build_patch_image(
    const PatchFile& patch, const PatchLayout& layout, RemoteAddress region_address,
    RemoteAddress target_base, const ImportResolver& resolve_import,
    std::vector<RemoteAddress>& replacement_addresses) {
    const RelocatableObject& object = patch.object;
    std::vector<std::byte> image(layout.size + layout.data_size);
    copy_sections(object, layout, image);
    SymbolAddresses symbols(patch, layout, region_address, target_base, resolve_import);
    if (auto filled = fill_got_and_stubs(layout, symbols, image); !filled) {
        return tl::unexpected(filled.error());
    }
    for (std::size_t index = 1; index < object.sections().size(); ++index) {
        if (!object.is_loaded(index)) {
            continue;
        }
        if (auto relocated =
                relocate_section(object, index, layout, symbols, region_address, image);
            !relocated) {
            return tl::unexpected(relocated.error());
        }
    }
    replacement_addresses = replacements_in(patch, layout, region_address);
    return image;
}

}  // namespace suture
