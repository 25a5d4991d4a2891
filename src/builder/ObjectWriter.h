#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include <elf.h>

namespace suture {

// Writes a small x86-64 ELF relocatable object (ET_REL): the patch code the
// builder assembles from pieces of compiled objects. Output depends only on
// what was added, in the order it was added (no timestamps, no padding
// garbage), so the same inputs give byte-identical objects.
// Spec: System V gABI, "Sections", "Symbol Table", "Relocation".
class ObjectWriter {
  public:
    struct Relocation {
        std::uint64_t offset = 0;
        std::uint32_t type = 0;
        std::size_t symbol = 0;  // index returned by add_symbol
        std::int64_t addend = 0;
    };

    // Adds a section with its contents; returns its section index (1...).
    std::size_t add_section(std::string name, Elf64_Word type, std::uint64_t flags,
                            std::uint64_t alignment, std::uint64_t entry_size,
                            std::vector<std::byte> bytes);
    // Adds a symbol. Locals must all be added before the first global
    // (ELF requires locals first). `section` 0 means undefined.
    std::size_t add_symbol(std::string name, unsigned char type, unsigned char binding,
                           std::size_t section, std::uint64_t value, std::uint64_t size);
    void add_relocation(std::size_t section, Relocation relocation);

    // The object's bytes.
    std::vector<std::byte> write() const;

  private:
    struct Section {
        std::string name;
        Elf64_Word type;
        std::uint64_t flags;
        std::uint64_t alignment;
        std::uint64_t entry_size;
        std::vector<std::byte> bytes;
        std::vector<Relocation> relocations;
    };
    struct Symbol {
        std::string name;
        unsigned char type;
        unsigned char binding;
        std::size_t section;
        std::uint64_t value;
        std::uint64_t size;
    };
    // The steps of write(), in order.
    struct Output;  // the bytes and section headers written so far
    void write_contents(Output& out) const;
    std::size_t relocated_sections() const;  // how many have relocations
    void write_relocations(Output& out, std::size_t symbol_table) const;
    void write_symbol_table(Output& out, std::size_t symbol_table) const;
    static void write_header_and_section_table(Output& out);

    std::vector<Section> sections_;
    std::vector<Symbol> symbols_;
};

}  // namespace suture
