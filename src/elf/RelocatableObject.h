#pragma once

#include <gelf.h>
#include <libelf.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/Error.h"

namespace suture {

// An x86-64 ELF relocatable object (ET_REL, what `gcc -c` writes): the code
// and data of a patch, with its symbols and RELA relocations. Parsed
// defensively (patch files are untrusted until verified, and fuzzed).
// Spec: System V gABI and the x86-64 psABI, "Relocation".
class RelocatableObject {
  public:
    struct Section {
        std::string name;
        Elf64_Word type = SHT_NULL;
        std::uint64_t flags = 0;
        std::uint64_t size = 0;
        std::uint64_t alignment = 1;
        std::span<const std::byte> bytes;  // empty for SHT_NOBITS
    };
    struct Symbol {
        std::string name;
        std::uint64_t value = 0;  // offset inside `section`
        std::uint64_t size = 0;
        unsigned char type = STT_NOTYPE;
        unsigned char binding = STB_LOCAL;
        std::size_t section = SHN_UNDEF;  // SHN_UNDEF: defined elsewhere
        bool is_absolute = false;         // SHN_ABS
    };
    struct Relocation {
        std::uint64_t offset = 0;  // inside the section it applies to
        std::uint32_t type = 0;    // R_X86_64_*
        std::size_t symbol = 0;
        std::int64_t addend = 0;
    };

    // Takes the object's bytes; `name` is used in messages.
    static Result<RelocatableObject> parse(std::vector<std::byte> bytes, std::string name);

    // Reads the file at `path` and parses it.
    static Result<RelocatableObject> read(const std::string& path);

    RelocatableObject(RelocatableObject&&) noexcept = default;
    RelocatableObject& operator=(RelocatableObject&&) noexcept = default;

    const std::string& name() const { return name_; }
    // Indexed by section index; entry 0 is the null section.
    const std::vector<Section>& sections() const { return sections_; }
    // Indexed by symbol index; entry 0 is the null symbol.
    const std::vector<Symbol>& symbols() const { return symbols_; }
    // The relocations that apply to section `index`.
    const std::vector<Relocation>& relocations_for(std::size_t index) const {
        return relocations_[index];
    }
    // The defined, non-local symbol called `name`, else a local one; nullptr
    // if none.
    const Symbol* find_defined(std::string_view name) const;

    // Sections to load into the target: SHF_ALLOC ones with contents or
    // size, except unwind tables and notes (see docs/patch-format.md).
    bool is_loaded(std::size_t index) const;

  private:
    struct ElfEnd {
        void operator()(Elf* elf) const { elf_end(elf); }
    };
    RelocatableObject() = default;

    std::string name_;
    std::unique_ptr<std::vector<std::byte>> bytes_;  // heap: spans point into it
    std::unique_ptr<Elf, ElfEnd> elf_;
    std::vector<Section> sections_;
    std::vector<Symbol> symbols_;
    std::vector<std::vector<Relocation>> relocations_;
};

}  // namespace suture
