#include "builder/LinkerRelaxation.h"

#include <elf.h>

#include <algorithm>

namespace suture {

namespace {

constexpr unsigned rex_w = 0x08;
constexpr unsigned rex_r = 0x04;
constexpr unsigned rex_b = 0x01;

unsigned byte_at(std::span<const std::byte> bytes, std::uint64_t at) {
    return std::to_integer<unsigned>(bytes[at]);
}

bool is_rip_relative(unsigned modrm) {
    return (modrm & 0xc7) == 0x05;  // mod 00, r/m 101: disp32(%rip)
}

bool is_binop(unsigned opcode) {
    // add or adc sbb and sub xor cmp, "r32, r/m32" forms
    return (opcode & 0xc7) == 0x03 && opcode <= 0x3b;
}

// The REX prefix of a REX_GOTPCRELX instruction, 3 bytes before the field
// (REX, opcode, ModRM, field), or 0 for GOTPCRELX (no REX).
std::optional<unsigned> rex_of(std::span<const std::byte> bytes, const FieldSite& site) {
    if (site.type == R_X86_64_GOTPCRELX) {
        return 0u;
    }
    if (site.offset < 3) {
        return std::nullopt;
    }
    unsigned rex = byte_at(bytes, site.offset - 3);
    if ((rex & 0xf0) != 0x40) {
        return std::nullopt;
    }
    return rex;
}

// An immediate form's REX: the register moved from ModRM.reg to ModRM.rm,
// so REX.R moves to REX.B (binutils: rex = (rex & ~REX_R) | (rex & REX_R) >> 2).
bool is_moved_rex(unsigned compiled, unsigned library) {
    unsigned moved = (compiled & ~rex_r) | ((compiled & rex_r) != 0 ? rex_b : 0);
    // x32 links also drop REX.W for mov; accept only what binutils writes.
    return library == moved || library == (moved & ~rex_w);
}

// The ModRM of an immediate form: the register in r/m, mod 11, /digit in reg.
unsigned immediate_modrm(unsigned compiled_modrm, unsigned digit) {
    return 0xc0 | ((compiled_modrm & 0x38) >> 3) | (digit << 3);
}

std::optional<Relaxation> immediate_form(std::span<const std::byte> compiled,
                                         std::span<const std::byte> library, const FieldSite& site,
                                         unsigned new_opcode, unsigned digit, const char* form) {
    auto rex = rex_of(compiled, site);
    unsigned modrm = byte_at(compiled, site.offset - 1);
    if (!rex || byte_at(library, site.offset - 2) != new_opcode ||
        byte_at(library, site.offset - 1) != immediate_modrm(modrm, digit)) {
        return std::nullopt;
    }
    std::uint64_t first = site.offset - 2;
    if (*rex != 0) {
        if (!is_moved_rex(*rex, byte_at(library, site.offset - 3))) {
            return std::nullopt;
        }
        first = site.offset - 3;
    }
    return Relaxation{first, site.offset, form};
}

// call/jmp *foo@GOTPCREL(%rip): the forms binutils writes (prefix nop for
// a call by default: addr32 = 67, or 90 with -z call-nop=prefix-nop; a
// suffix nop for jmp and -z call-nop=suffix-nop, the field moved one back).
std::optional<Relaxation> branch_form(std::span<const std::byte> library, const FieldSite& site,
                                      bool is_call) {
    unsigned before = byte_at(library, site.offset - 2);
    unsigned opcode = byte_at(library, site.offset - 1);
    if (is_call && (before == 0x67 || before == 0x90) && opcode == 0xe8) {
        return Relaxation{site.offset - 2, site.offset, "call *GOT -> addr32 call"};
    }
    unsigned direct = is_call ? 0xe8 : 0xe9;
    if (site.offset + 4 <= library.size() && before == direct &&
        byte_at(library, site.offset + 3) == 0x90) {
        return Relaxation{site.offset - 2, site.offset + 4,
                          is_call ? "call *GOT -> call; nop" : "jmp *GOT -> jmp; nop"};
    }
    return std::nullopt;
}

// Is the jump at `at` short in `a` and near in `b` (jmp eb/e9, jcc 7x/0f 8x)?
bool short_against_near(std::span<const std::byte> a, std::span<const std::byte> b,
                        std::uint64_t at) {
    unsigned short_opcode = byte_at(a, at);
    unsigned near_opcode = byte_at(b, at);
    if (short_opcode == 0xeb && near_opcode == 0xe9) {
        return true;
    }
    return (short_opcode & 0xf0) == 0x70 && near_opcode == 0x0f && at + 1 < b.size() &&
           byte_at(b, at + 1) == (0x80 | (short_opcode & 0x0f));
}

}  // namespace

std::optional<Relaxation> linker_relaxation(std::span<const std::byte> compiled,
                                            std::span<const std::byte> library,
                                            const FieldSite& site) {
    // 1. Only the relocations whose instruction the linker may rewrite.
    if ((site.type != R_X86_64_GOTPCRELX && site.type != R_X86_64_REX_GOTPCRELX) ||
        site.offset < 2 || site.offset + 4 > compiled.size() || compiled.size() != library.size()) {
        return std::nullopt;
    }
    unsigned opcode = byte_at(compiled, site.offset - 2);
    unsigned modrm = byte_at(compiled, site.offset - 1);
    if (opcode == 0xff && (modrm == 0x15 || modrm == 0x25)) {
        // 2. Indirect call or jump through the GOT (never with REX here).
        return site.type == R_X86_64_GOTPCRELX ? branch_form(library, site, modrm == 0x15)
                                               : std::nullopt;
    }
    if (!is_rip_relative(modrm)) {
        return std::nullopt;
    }
    // 3. Loads of the address: lea in PIC, immediates where it fits.
    if (opcode == 0x8b) {
        if (byte_at(library, site.offset - 2) == 0x8d &&
            byte_at(library, site.offset - 1) == modrm) {
            return Relaxation{site.offset - 2, site.offset - 1, "mov GOT -> lea"};
        }
        return immediate_form(compiled, library, site, 0xc7, 0, "mov GOT -> mov $imm");
    }
    if (opcode == 0x85) {
        return immediate_form(compiled, library, site, 0xf7, 0, "test GOT -> test $imm");
    }
    if (is_binop(opcode)) {
        return immediate_form(compiled, library, site, 0x81, (opcode & 0x38) >> 3,
                              "binop GOT -> binop $imm");
    }
    return std::nullopt;
}

LibraryComparison compare_with_library(std::span<const std::byte> compiled,
                                       std::span<const std::byte> library,
                                       const std::vector<FieldSite>& sites) {
    LibraryComparison comparison;
    std::size_t size = std::min(compiled.size(), library.size());
    // 1. Bytes that need not be equal: relocation fields, and what the
    //    linker rewrote at a relaxed site.
    std::vector<bool> explained(size, false);
    auto explain = [&](std::uint64_t first, std::uint64_t end) {
        for (std::uint64_t k = first; k < end && k < size; ++k) {
            explained[k] = true;
        }
    };
    for (const FieldSite& site : sites) {
        std::size_t width = site.type == R_X86_64_64 || site.type == R_X86_64_PC64 ? 8 : 4;
        explain(site.offset, site.offset + width);
    }
    for (const FieldSite& site : sites) {
        bool differs = false;
        for (std::uint64_t k = site.offset >= 3 ? site.offset - 3 : 0; k < site.offset && k < size;
             ++k) {
            differs = differs || compiled[k] != library[k];
        }
        if (!differs) {
            continue;
        }
        if (auto relaxed = linker_relaxation(compiled, library, site)) {
            explain(relaxed->first, relaxed->end);
            comparison.relaxed.push_back(*relaxed);
        }
    }
    // 2. The rest must be equal.
    for (std::uint64_t k = 0; k < size; ++k) {
        if (!explained[k] && compiled[k] != library[k]) {
            if (comparison.differing++ == 0) {
                comparison.first = k;
            }
        }
    }
    // 3. Where the first difference is, for the message.
    if (comparison.first) {
        comparison.jump_sized_differently =
            short_against_near(compiled, library, *comparison.first) ||
            short_against_near(library, compiled, *comparison.first);
        for (const FieldSite& site : sites) {
            if (*comparison.first < site.offset && *comparison.first + 3 >= site.offset) {
                comparison.next_to_relocation = site.type;
                break;
            }
        }
    }
    return comparison;
}

std::string relocation_type_name(std::uint32_t type) {
    switch (type) {
        case R_X86_64_64:
            return "R_X86_64_64";
        case R_X86_64_PC32:
            return "R_X86_64_PC32";
        case R_X86_64_PLT32:
            return "R_X86_64_PLT32";
        case R_X86_64_GOTPCREL:
            return "R_X86_64_GOTPCREL";
        case R_X86_64_32:
            return "R_X86_64_32";
        case R_X86_64_32S:
            return "R_X86_64_32S";
        case R_X86_64_PC64:
            return "R_X86_64_PC64";
        case R_X86_64_GOTPCRELX:
            return "R_X86_64_GOTPCRELX";
        case R_X86_64_REX_GOTPCRELX:
            return "R_X86_64_REX_GOTPCRELX";
        default:
            return "relocation type " + std::to_string(type);
    }
}

}  // namespace suture
