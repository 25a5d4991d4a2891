#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace suture {

// The linker rewrites some instructions at relocation sites when it knows
// where the symbol ends up: binutils' elf_x86_64_convert_load (bfd/
// elf64-x86-64.c), described in the x86-64 psABI ("Optimize GOTPCRELX
// relocations"). A compile's bytes therefore equal the library's only up to
// these rewrites. Each is accepted only where the relocation type and the
// instruction bytes on both sides say it happened:
//
//   R_X86_64_GOTPCRELX / R_X86_64_REX_GOTPCRELX, field at F:
//     mov  foo@GOTPCREL(%rip),%reg  8b /r     -> lea foo(%rip),%reg      8d /r
//                                             -> mov $foo,%reg           c7 /0 (non-PIC)
//     call *foo@GOTPCREL(%rip)      ff 15     -> addr32 call foo         67 e8 (or 90 e8)
//                                             -> call foo; nop           e8 .. 90
//     jmp  *foo@GOTPCREL(%rip)      ff 25     -> jmp foo; nop            e9 .. 90
//     test %reg,foo@GOTPCREL(%rip)  85 /r     -> test $foo,%reg          f7 /0 (non-PIC)
//     binop foo@GOTPCREL(%rip),%reg 03..3b /r -> binop $foo,%reg         81 /n (non-PIC)
//   (the register moves from ModRM.reg to ModRM.rm, and REX.R to REX.B, in
//   the immediate forms; the "e8 .. 90" and "e9 .. 90" forms move the
//   field one byte back.)
//
// Everything else that differs still differs.

// One relocation of a compiled function: its field's offset from the
// function's first byte, and its type.
struct FieldSite {
    std::uint64_t offset = 0;
    std::uint32_t type = 0;
};

// What the linker did at one relocation site, when it was a relaxation.
struct Relaxation {
    std::uint64_t first = 0;  // the bytes [first, end) of the function it rewrote (first: the
                              // first changed byte, e.g. the opcode after a REX prefix)
    std::uint64_t end = 0;
    std::string form;  // "mov -> lea", for reports
};

// The relaxation that turns `compiled` into `library` at `site` (both the
// same function's bytes, equally long), or nullopt when there is none.
std::optional<Relaxation> linker_relaxation(std::span<const std::byte> compiled,
                                            std::span<const std::byte> library,
                                            const FieldSite& site);

// The outcome of comparing one function's compiled bytes with the library's.
struct LibraryComparison {
    std::size_t differing = 0;           // bytes that differ, not explained
    std::vector<Relaxation> relaxed;     // relaxations accepted
    std::optional<std::uint64_t> first;  // the first unexplained byte
    // The first unexplained byte is just before a relocation field (in its
    // instruction's opcode or ModRM): the linker changed the instruction in
    // a way binutils does not document, or the object was compiled with an
    // assembler option of its own (e.g. -mrelax-relocations). The type.
    std::optional<std::uint32_t> next_to_relocation;
    // The first unexplained byte is a jump's opcode, short (rel8) on one
    // side and near (rel32) on the other: the assembler sized the jump
    // differently. The package build assembles a whole file's functions into
    // one .text, where a jump to a neighbour (a .part.N split, a tail call)
    // can be short and alignment padding falls elsewhere; -ffunction-sections
    // cannot reproduce that.
    bool jump_sized_differently = false;
};

// Compares `compiled` (a function of the original compile, with its
// relocations) with `library` (the library's bytes of the same function)
// outside relocation fields, allowing the linker's relaxations.
LibraryComparison compare_with_library(std::span<const std::byte> compiled,
                                       std::span<const std::byte> library,
                                       const std::vector<FieldSite>& sites);

// "R_X86_64_REX_GOTPCRELX" for messages, else "relocation type N".
std::string relocation_type_name(std::uint32_t type);

}  // namespace suture
