#include "builder/ObjectDiff.h"

#include <algorithm>
#include <cctype>
#include <cstring>

namespace suture {

namespace {

using Relocation = RelocatableObject::Relocation;
using Section = RelocatableObject::Section;
using Symbol = RelocatableObject::Symbol;

bool is_all_digits(std::string_view text) {
    return !text.empty() && std::all_of(text.begin(), text.end(), [](char c) {
        return std::isdigit(static_cast<unsigned char>(c)) != 0;
    });
}

bool is_pc_relative(std::uint32_t type) {
    return type == R_X86_64_PC32 || type == R_X86_64_PLT32 || type == R_X86_64_PC64 ||
           type == R_X86_64_GOTPCREL || type == R_X86_64_GOTPCRELX ||
           type == R_X86_64_REX_GOTPCRELX;
}

std::size_t field_size(std::uint32_t type) {
    return type == R_X86_64_64 || type == R_X86_64_PC64 ? 8 : 4;
}

bool is_named(const Symbol& symbol) {
    return (symbol.type == STT_FUNC || symbol.type == STT_OBJECT || symbol.type == STT_TLS) &&
           !symbol.name.empty();
}

bool is_writable(const Section& section) {
    return (section.flags & SHF_WRITE) != 0;
}

std::string hex_of(std::span<const std::byte> bytes) {
    static const char digits[] = "0123456789abcdef";
    std::string text;
    for (std::byte b : bytes) {
        auto value = static_cast<unsigned>(b);
        text += digits[value >> 4];
        text += digits[value & 15];
    }
    return text;
}

// The identity of anonymous read-only bytes: for a string section the string
// the reference points at, for a constant pool the constant, else the
// section's name, offset and whole contents (a jump table, say).
std::string literal_identity(const Section& section, std::int64_t addend, std::uint32_t type) {
    // A PC-relative reference to data ends with its 4-byte field: the
    // data is at addend + 4 (lea .LC0(%rip) has addend -4).
    std::int64_t at = is_pc_relative(type) ? addend + 4 : addend;
    if ((section.flags & SHF_STRINGS) != 0 && at >= 0 &&
        static_cast<std::uint64_t>(at) < section.bytes.size()) {
        auto start = reinterpret_cast<const char*>(section.bytes.data()) + at;
        std::size_t length = strnlen(start, section.bytes.size() - static_cast<std::size_t>(at));
        return "string:" + std::string(start, length);
    }
    if ((section.flags & SHF_MERGE) != 0 && section.alignment > 0 && at >= 0 &&
        static_cast<std::uint64_t>(at) + section.alignment <= section.bytes.size()) {
        return "constant:" +
               hex_of(section.bytes.subspan(static_cast<std::size_t>(at), section.alignment));
    }
    return "bytes:" + normalized_symbol_name(section.name) + "+" + std::to_string(addend) + ":" +
           hex_of(section.bytes);
}

// The named symbols of `object` by normalized name (functions and objects
// separately from each other would be overkill: names are unique per file).
// Exact names first: clones such as foo.constprop.0 and foo.constprop.1 can
// coexist, and only a name missing from one compile falls back to its
// normalized form.
std::map<std::string, std::size_t> named_symbols(const RelocatableObject& object) {
    std::map<std::string, std::size_t> names;
    const auto& symbols = object.symbols();
    for (std::size_t i = 1; i < symbols.size(); ++i) {
        if (is_named(symbols[i]) && symbols[i].section != SHN_UNDEF && !symbols[i].is_absolute) {
            names.emplace(symbols[i].name, i);
            names.emplace("normalized:" + normalized_symbol_name(symbols[i].name), i);
        }
    }
    return names;
}

std::map<std::string, std::size_t>::const_iterator find_counterpart(
    const std::map<std::string, std::size_t>& names, const std::string& name) {
    auto exact = names.find(name);
    return exact != names.end() ? exact : names.find("normalized:" + normalized_symbol_name(name));
}

// The relocations whose field lies inside [start, start + size), sorted by
// offset.
std::vector<Relocation> relocations_in(const RelocatableObject& object, std::size_t section,
                                       std::uint64_t start, std::uint64_t size) {
    std::vector<Relocation> inside;
    for (const Relocation& relocation : object.relocations_for(section)) {
        if (relocation.offset >= start && relocation.offset < start + size) {
            inside.push_back(relocation);
        }
    }
    std::sort(inside.begin(), inside.end(),
              [](const Relocation& a, const Relocation& b) { return a.offset < b.offset; });
    return inside;
}

// Two symbols' bytes and relocations are the same program: bytes equal
// outside relocation fields, and each relocation of the same type at the same
// offset pointing at the same thing.
bool same_contents(const RelocatableObject& original, const SymbolOwners& original_owners,
                   const Symbol& original_symbol, const RelocatableObject& patched,
                   const SymbolOwners& patched_owners, const Symbol& patched_symbol) {
    if (original_symbol.size != patched_symbol.size) {
        return false;
    }
    const Section& original_section = original.sections()[original_symbol.section];
    const Section& patched_section = patched.sections()[patched_symbol.section];
    if (original_section.type != patched_section.type) {
        return false;
    }
    auto original_relocations = relocations_in(original, original_symbol.section,
                                               original_symbol.value, original_symbol.size);
    auto patched_relocations =
        relocations_in(patched, patched_symbol.section, patched_symbol.value, patched_symbol.size);
    if (original_relocations.size() != patched_relocations.size()) {
        return false;
    }
    std::vector<bool> in_field(original_symbol.size, false);
    for (std::size_t i = 0; i < original_relocations.size(); ++i) {
        const Relocation& a = original_relocations[i];
        const Relocation& b = patched_relocations[i];
        if (a.offset - original_symbol.value != b.offset - patched_symbol.value ||
            a.type != b.type) {
            return false;
        }
        RelocationTarget target_a = relocation_target(original, original_owners, a);
        RelocationTarget target_b = relocation_target(patched, patched_owners, b);
        if (target_a.identity != target_b.identity) {
            return false;
        }
        for (std::size_t k = 0; k < field_size(a.type); ++k) {
            std::uint64_t at = a.offset - original_symbol.value + k;
            if (at < in_field.size()) {
                in_field[at] = true;
            }
        }
    }
    if (original_section.type == SHT_NOBITS) {
        return true;
    }
    if (original_symbol.value + original_symbol.size > original_section.bytes.size() ||
        patched_symbol.value + patched_symbol.size > patched_section.bytes.size()) {
        return false;
    }
    for (std::uint64_t k = 0; k < original_symbol.size; ++k) {
        if (!in_field[k] && original_section.bytes[original_symbol.value + k] !=
                                patched_section.bytes[patched_symbol.value + k]) {
            return false;
        }
    }
    return true;
}

}  // namespace

std::string normalized_symbol_name(std::string_view name) {
    std::string result;
    std::size_t start = 0;
    bool first = true;
    while (start <= name.size()) {
        std::size_t dot = name.find('.', start);
        std::string_view part = name.substr(
            start, dot == std::string_view::npos ? std::string_view::npos : dot - start);
        if (first || !is_all_digits(part)) {
            if (!first) {
                result += '.';
            }
            result += part;
        }
        first = false;
        if (dot == std::string_view::npos) {
            break;
        }
        start = dot + 1;
    }
    return result;
}

bool is_cold_part(std::string_view name) {
    std::string normalized = normalized_symbol_name(name);
    std::string_view text = normalized;
    return text.ends_with(".cold") || text.find(".cold.") != std::string_view::npos;
}

SymbolOwners::SymbolOwners(const RelocatableObject& object) : object_(object) {
    const auto& symbols = object.symbols();
    for (std::size_t i = 1; i < symbols.size(); ++i) {
        if (is_named(symbols[i]) && symbols[i].section != SHN_UNDEF && !symbols[i].is_absolute &&
            symbols[i].section < object.sections().size()) {
            by_section_[symbols[i].section].push_back(i);
        }
    }
}

std::size_t SymbolOwners::owner(std::size_t section, std::uint64_t offset) const {
    auto found = by_section_.find(section);
    if (found == by_section_.end()) {
        return 0;
    }
    for (std::size_t index : found->second) {
        const Symbol& symbol = object_.symbols()[index];
        if (offset >= symbol.value &&
            (offset < symbol.value + symbol.size || offset == symbol.value)) {
            return index;
        }
    }
    return 0;
}

std::size_t SymbolOwners::first_in(std::size_t section) const {
    return owner(section, 0);
}

namespace {

// The target of a reference to "section + addend" (a section symbol, or an
// assembler label such as .LC0 that the assembler kept because it points
// into a mergeable section).
RelocationTarget section_target(const RelocatableObject& object, const SymbolOwners& owners,
                                std::size_t section_index, std::int64_t addend,
                                std::uint32_t type) {
    RelocationTarget target;
    // Find the named symbol the addend points into. A PC-relative
    // reference's addend is -4 (or less) from the byte it means.
    std::int64_t at = is_pc_relative(type) ? addend + 4 : addend;
    std::size_t owner = at >= 0 ? owners.owner(section_index, static_cast<std::uint64_t>(at)) : 0;
    if (owner == 0 && at < 0) {
        owner = owners.first_in(section_index);
    }
    if (owner != 0) {
        const Symbol& named = object.symbols()[owner];
        target.kind = RelocationTarget::Kind::named;
        target.symbol = owner;
        target.addend = addend - static_cast<std::int64_t>(named.value);
        target.identity = normalized_symbol_name(named.name) + "+" + std::to_string(target.addend);
        const Section& section = object.sections()[named.section];
        if (named.type == STT_OBJECT && !is_writable(section) && section.type != SHT_NOBITS &&
            named.value + named.size <= section.bytes.size()) {
            // A static const object ("__func__.3", a table) is known by its
            // contents: GCC numbers them per file, and a changed table makes
            // every function that reads it a changed function.
            target.identity = "rodata:" + hex_of(section.bytes.subspan(named.value, named.size)) +
                              "+" + std::to_string(target.addend);
        }
        return target;
    }
    const Section& section = object.sections()[section_index];
    target.section = section_index;
    target.addend = addend;
    target.kind =
        is_writable(section) ? RelocationTarget::Kind::anonymous : RelocationTarget::Kind::literal;
    target.identity = literal_identity(section, addend, type);
    return target;
}

}  // namespace

RelocationTarget relocation_target(const RelocatableObject& object, const SymbolOwners& owners,
                                   const Relocation& relocation) {
    const Symbol& symbol = object.symbols()[relocation.symbol];
    bool is_label = symbol.type == STT_NOTYPE && symbol.binding == STB_LOCAL &&
                    symbol.section != SHN_UNDEF && !symbol.is_absolute;
    if ((symbol.type == STT_SECTION || is_label) && symbol.section < object.sections().size()) {
        std::int64_t label_offset = is_label ? static_cast<std::int64_t>(symbol.value) : 0;
        return section_target(object, owners, symbol.section, relocation.addend + label_offset,
                              relocation.type);
    }
    RelocationTarget target;
    target.kind = RelocationTarget::Kind::named;
    target.symbol = relocation.symbol;
    target.addend = relocation.addend;
    target.identity = normalized_symbol_name(symbol.name) + "+" + std::to_string(relocation.addend);
    return target;
}

std::string data_kind(const Section& section) {
    std::string name = section.name;
    if (name.starts_with(".data.rel.ro")) {
        return "relocated read-only data (.data.rel.ro)";
    }
    if (section.type == SHT_NOBITS) {
        return "zero-initialised data (" + name + ")";
    }
    if ((section.flags & SHF_WRITE) == 0) {
        return "read-only data (" + name + ")";
    }
    return "initialised data (" + name + ")";
}

namespace {

// Why an existing variable cannot change, precisely: which one, where, how.
std::string existing_data_changed(const RelocatableObject& patched, const Symbol& before,
                                  const Symbol& after) {
    const Section& section = patched.sections()[after.section];
    std::string how = before.size != after.size
                          ? "its size changed (" + std::to_string(before.size) + " -> " +
                                std::to_string(after.size) + " bytes)"
                          : "its initial value changed (" + std::to_string(after.size) +
                                " bytes)";
    std::string what = std::string(after.binding == STB_LOCAL ? "static" : "global") +
                       " variable " + after.name + ", " + data_kind(section);
    return patched.name() + ": existing " + what + ": " + how +
           "; the library's copy is the one running code and existing objects use, and a "
           "live patch cannot change it. Change the code that uses it instead, add a new "
           "static under a new name (placed in the patch's data region), or keep the new "
           "state in a shadow variable (docs/builder.md, \"Patch author guide\")";
}

}  // namespace

Result<ObjectChanges> diff_objects(const RelocatableObject& original,
                                   const RelocatableObject& patched) {
    SymbolOwners original_owners(original);
    SymbolOwners patched_owners(patched);
    std::map<std::string, std::size_t> original_names = named_symbols(original);
    ObjectChanges changes;
    const auto& symbols = patched.symbols();
    for (std::size_t i = 1; i < symbols.size(); ++i) {
        const Symbol& symbol = symbols[i];
        if (!is_named(symbol) || symbol.section == SHN_UNDEF || symbol.is_absolute) {
            continue;
        }
        const Section& section = patched.sections()[symbol.section];
        auto counterpart = find_counterpart(original_names, symbol.name);
        if (symbol.type == STT_TLS) {
            if (counterpart == original_names.end()) {
                return fail(ErrorCode::invalid_argument,
                            patched.name() + ": new thread-local variable " + symbol.name +
                                ": a live patch cannot add TLS");
            }
            continue;
        }
        if (counterpart == original_names.end()) {
            if (symbol.type == STT_FUNC) {
                changes.new_functions.push_back(i);
            } else if (is_writable(section) && symbol.type == STT_OBJECT) {
                // A new static: the patch's data region holds it, fresh for
                // each level (docs/builder.md, "Patch author guide").
                changes.new_variables.push_back(i);
            }
            continue;  // new read-only data travels with the code that uses it
        }
        const Symbol& before = original.symbols()[counterpart->second];
        bool same =
            same_contents(original, original_owners, before, patched, patched_owners, symbol);
        if (symbol.type == STT_FUNC) {
            if (!same) {
                changes.changed_functions.push_back(i);
                changes.original_of[i] = counterpart->second;
            }
        } else if (!same && (is_writable(section) || symbol.binding != STB_LOCAL) &&
                   symbol.type == STT_OBJECT) {
            return fail(ErrorCode::invalid_argument, existing_data_changed(patched, before, symbol));
        }
        // A changed local read-only object (a static const table) is
        // copied along with every function that uses it, and those functions
        // count as changed (references to it compare by contents).
    }
    return changes;
}

}  // namespace suture
