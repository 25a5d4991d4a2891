#include "builder/ShortFunctions.h"

#include <algorithm>

#include "base/Files.h"

namespace suture {

namespace {

using Relocation = RelocatableObject::Relocation;

// Is `relocation` (to the function's first byte: `addend` -4 from it) the
// rel32 field of a direct call (e8), jump (e9) or conditional jump (0f 8x)?
bool is_branch_field(std::span<const std::byte> bytes, const Relocation& relocation,
                     std::int64_t addend) {
    if ((relocation.type != R_X86_64_PC32 && relocation.type != R_X86_64_PLT32) ||
        relocation.offset < 1 || relocation.offset + 4 > bytes.size() || addend != -4) {
        return false;
    }
    auto opcode = std::to_integer<unsigned>(bytes[relocation.offset - 1]);
    bool conditional = relocation.offset >= 2 &&
                       std::to_integer<unsigned>(bytes[relocation.offset - 2]) == 0x0f &&
                       (opcode & 0xf0) == 0x80;
    return opcode == 0xe8 || opcode == 0xe9 || conditional;
}

// The function a cold part belongs to ("foo.cold" -> foo), or `index`.
std::size_t parent_of(const RelocatableObject& object, std::size_t index) {
    const std::string& name = object.symbols()[index].name;
    if (!is_cold_part(name)) {
        return index;
    }
    std::string parent = name.substr(0, name.find(".cold"));
    const auto& symbols = object.symbols();
    for (std::size_t i = 1; i < symbols.size(); ++i) {
        if (symbols[i].type == STT_FUNC && symbols[i].section != SHN_UNDEF &&
            symbols[i].name == parent) {
            return i;
        }
    }
    return 0;
}

}  // namespace

DirectCallers direct_callers(const RelocatableObject& object, const SymbolOwners& owners,
                             std::size_t function) {
    DirectCallers found;
    const auto& symbol = object.symbols()[function];
    if (symbol.binding != STB_LOCAL) {
        found.global = true;
        found.uncoverable =
            "it is global, so callers in other files of the library (and outside it, if "
            "exported) call it where it is, and the fix's units cannot name them";
        return found;
    }
    for (std::size_t section = 1; section < object.sections().size(); ++section) {
        const auto& bytes = object.sections()[section].bytes;
        for (const Relocation& relocation : object.relocations_for(section)) {
            RelocationTarget target = relocation_target(object, owners, relocation);
            if (target.kind != RelocationTarget::Kind::named || target.symbol != function) {
                continue;
            }
            std::size_t owner = owners.owner(section, relocation.offset);
            std::string where =
                owner != 0 ? object.symbols()[owner].name : object.sections()[section].name;
            where += " +" + hex_address(relocation.offset -
                                        (owner != 0 ? object.symbols()[owner].value : 0));
            bool in_code = owner != 0 && object.symbols()[owner].type == STT_FUNC;
            if (!in_code || !is_branch_field(bytes, relocation, target.addend)) {
                found.uncoverable = "its address is taken (" + where +
                                    "): a pointer can call the old copy from anywhere";
                return found;
            }
            std::size_t caller = parent_of(object, owner);
            if (caller == 0) {
                found.uncoverable = "it is called from " + where + ", whose function is unknown";
                return found;
            }
            if (caller != function && std::find(found.callers.begin(), found.callers.end(),
                                                caller) == found.callers.end()) {
                found.callers.push_back(caller);
            }
        }
    }
    return found;
}

}  // namespace suture
