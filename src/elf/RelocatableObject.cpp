#include "elf/RelocatableObject.h"

#include <cstring>

#include "base/Files.h"
#include "elf/ElfFile.h"

namespace suture {

namespace {

using Section = RelocatableObject::Section;
using Symbol = RelocatableObject::Symbol;
using Relocation = RelocatableObject::Relocation;

// An x86-64 little-endian ELF64 ET_REL, as libelf reads it.
Result<void> check_header(Elf* elf, const std::string& subject) {
    GElf_Ehdr header;
    if (elf == nullptr || elf_kind(elf) != ELF_K_ELF || gelf_getehdr(elf, &header) == nullptr) {
        return fail(ErrorCode::bad_format, subject + ": " + libelf_message());
    }
    if (gelf_getclass(elf) != ELFCLASS64 || header.e_machine != EM_X86_64 ||
        header.e_type != ET_REL || header.e_ident[EI_DATA] != ELFDATA2LSB) {
        return fail(ErrorCode::unsupported,
                    subject + ": not an x86-64 little-endian ELF64 relocatable object");
    }
    return {};
}

// Section `index`'s header, checked: a power-of-two alignment up to a page,
// contents inside the file, no thread-local storage.
Result<Section> read_section(Elf* elf, std::size_t index, std::size_t names_index,
                             std::span<const std::byte> image, const std::string& subject) {
    Elf_Scn* scn = elf_getscn(elf, index);
    GElf_Shdr shdr;
    if (scn == nullptr || gelf_getshdr(scn, &shdr) == nullptr) {
        return fail(ErrorCode::bad_format,
                    subject + ": section " + std::to_string(index) + ": " + libelf_message());
    }
    Section section;
    const char* section_name = elf_strptr(elf, names_index, shdr.sh_name);
    section.name = section_name != nullptr ? section_name : "";
    section.type = shdr.sh_type;
    section.flags = shdr.sh_flags;
    section.size = shdr.sh_size;
    section.alignment = shdr.sh_addralign == 0 ? 1 : shdr.sh_addralign;
    if ((section.alignment & (section.alignment - 1)) != 0 || section.alignment > 4096) {
        return fail(ErrorCode::bad_format, subject + ": section " + section.name + ": alignment " +
                                               std::to_string(section.alignment));
    }
    if (shdr.sh_type != SHT_NOBITS && shdr.sh_type != SHT_NULL) {
        if (shdr.sh_offset > image.size() || shdr.sh_size > image.size() - shdr.sh_offset) {
            return fail(ErrorCode::bad_format,
                        subject + ": section " + section.name + " outside the file");
        }
        section.bytes = image.subspan(shdr.sh_offset, shdr.sh_size);
    }
    if ((shdr.sh_flags & SHF_TLS) != 0) {
        return fail(ErrorCode::unsupported,
                    subject + ": section " + section.name + ": thread-local storage");
    }
    return section;
}

// Every section (entry 0 the null section), and the index of the one
// symbol table.
struct SectionTable {
    std::vector<Section> sections;
    std::size_t symbol_table = 0;
};

Result<SectionTable> read_sections(Elf* elf, std::span<const std::byte> image,
                                   const std::string& subject) {
    std::size_t section_count = 0;
    if (elf_getshdrnum(elf, &section_count) != 0 || section_count == 0 || section_count > 65535) {
        return fail(ErrorCode::bad_format, subject + ": bad section count");
    }
    std::size_t names_index = 0;
    if (elf_getshdrstrndx(elf, &names_index) != 0) {
        return fail(ErrorCode::bad_format, subject + ": no section name table");
    }
    SectionTable table;
    table.sections.resize(section_count);
    for (std::size_t index = 1; index < section_count; ++index) {
        auto section = read_section(elf, index, names_index, image, subject);
        if (!section) {
            return tl::unexpected(section.error());
        }
        if (section->type == SHT_SYMTAB) {
            if (table.symbol_table != 0) {
                return fail(ErrorCode::bad_format, subject + ": two symbol tables");
            }
            table.symbol_table = index;
        }
        table.sections[index] = std::move(*section);
    }
    if (table.symbol_table == 0) {
        return fail(ErrorCode::bad_format, subject + ": no symbol table");
    }
    return table;
}

// One symbol, checked: no TLS, IFUNC or common symbols, a value inside its
// section.
Result<Symbol> read_symbol(Elf* elf, const GElf_Sym& raw, std::size_t names_index,
                           const std::vector<Section>& sections, const std::string& subject) {
    Symbol symbol;
    const char* symbol_name = elf_strptr(elf, names_index, raw.st_name);
    symbol.name = symbol_name != nullptr ? symbol_name : "";
    symbol.value = raw.st_value;
    symbol.size = raw.st_size;
    symbol.type = GELF_ST_TYPE(raw.st_info);
    symbol.binding = GELF_ST_BIND(raw.st_info);
    if (symbol.type == STT_TLS || symbol.type == STT_GNU_IFUNC) {
        return fail(ErrorCode::unsupported,
                    subject + ": symbol " + symbol.name +
                        (symbol.type == STT_TLS ? ": thread-local storage" : ": IFUNC"));
    }
    if (raw.st_shndx == SHN_ABS) {
        symbol.is_absolute = true;
        return symbol;
    }
    if (raw.st_shndx == SHN_COMMON || raw.st_shndx >= SHN_LORESERVE) {
        return fail(ErrorCode::unsupported,
                    subject + ": symbol " + symbol.name +
                        ": common or special section (compile with -fno-common)");
    }
    if (raw.st_shndx >= sections.size()) {
        return fail(ErrorCode::bad_format,
                    subject + ": symbol " + symbol.name + ": section index out of range");
    }
    symbol.section = raw.st_shndx;
    if (symbol.section != SHN_UNDEF && symbol.value > sections[symbol.section].size) {
        return fail(ErrorCode::bad_format,
                    subject + ": symbol " + symbol.name + ": value outside its section");
    }
    return symbol;
}

// The symbol table (entry 0 the null symbol).
Result<std::vector<Symbol>> read_symbols(Elf* elf, const SectionTable& table,
                                         const std::string& subject) {
    Elf_Scn* symbols_scn = elf_getscn(elf, table.symbol_table);
    GElf_Shdr symbols_shdr;
    Elf_Data* symbols_data = elf_getdata(symbols_scn, nullptr);
    if (symbols_data == nullptr || gelf_getshdr(symbols_scn, &symbols_shdr) == nullptr) {
        return fail(ErrorCode::bad_format, subject + ": symbol table: " + libelf_message());
    }
    std::size_t symbol_count =
        symbols_shdr.sh_entsize == 0 ? 0 : symbols_shdr.sh_size / symbols_shdr.sh_entsize;
    std::vector<Symbol> symbols(symbol_count);
    for (std::size_t i = 1; i < symbol_count; ++i) {
        GElf_Sym raw;
        if (gelf_getsym(symbols_data, static_cast<int>(i), &raw) == nullptr) {
            return fail(ErrorCode::bad_format, subject + ": symbol " + std::to_string(i));
        }
        auto symbol = read_symbol(elf, raw, symbols_shdr.sh_link, table.sections, subject);
        if (!symbol) {
            return tl::unexpected(symbol.error());
        }
        symbols[i] = std::move(*symbol);
    }
    return symbols;
}

// The entries of RELA section `index`, each checked against its symbol
// table and the section it applies to (its sh_info), where they go.
Result<void> read_rela_section(Elf* elf, std::size_t index, const SectionTable& table,
                               std::size_t symbol_count,
                               std::vector<std::vector<Relocation>>& relocations,
                               const std::string& subject) {
    const Section& section = table.sections[index];
    Elf_Scn* scn = elf_getscn(elf, index);
    GElf_Shdr shdr;
    Elf_Data* data = elf_getdata(scn, nullptr);
    if (data == nullptr || gelf_getshdr(scn, &shdr) == nullptr) {
        return fail(ErrorCode::bad_format, subject + ": " + section.name);
    }
    if (shdr.sh_info == 0 || shdr.sh_info >= table.sections.size() ||
        shdr.sh_link != table.symbol_table) {
        return fail(ErrorCode::bad_format, subject + ": " + section.name + ": bad sh_info/sh_link");
    }
    std::size_t count = shdr.sh_entsize == 0 ? 0 : shdr.sh_size / shdr.sh_entsize;
    const Section& target = table.sections[shdr.sh_info];
    for (std::size_t i = 0; i < count; ++i) {
        GElf_Rela raw;
        if (gelf_getrela(data, static_cast<int>(i), &raw) == nullptr) {
            return fail(ErrorCode::bad_format,
                        subject + ": " + section.name + ": entry " + std::to_string(i));
        }
        Relocation relocation{raw.r_offset, static_cast<std::uint32_t>(GELF_R_TYPE(raw.r_info)),
                              static_cast<std::size_t>(GELF_R_SYM(raw.r_info)), raw.r_addend};
        if (relocation.symbol >= symbol_count || relocation.offset > target.size ||
            target.size - relocation.offset < 4) {
            return fail(ErrorCode::bad_format, subject + ": " + section.name + ": entry " +
                                                   std::to_string(i) + " out of range");
        }
        relocations[shdr.sh_info].push_back(relocation);
    }
    return {};
}

// Every section's relocations, by the index of the section they apply to
// (RELA only: x86-64 objects never use REL).
Result<std::vector<std::vector<Relocation>>> read_relocations(Elf* elf, const SectionTable& table,
                                                              std::size_t symbol_count,
                                                              const std::string& subject) {
    std::vector<std::vector<Relocation>> relocations(table.sections.size());
    for (std::size_t index = 1; index < table.sections.size(); ++index) {
        const Section& section = table.sections[index];
        if (section.type == SHT_REL) {
            return fail(ErrorCode::unsupported,
                        subject + ": " + section.name + ": REL relocations");
        }
        if (section.type != SHT_RELA) {
            continue;
        }
        if (auto read = read_rela_section(elf, index, table, symbol_count, relocations, subject);
            !read) {
            return tl::unexpected(read.error());
        }
    }
    return relocations;
}

}  // namespace

Result<RelocatableObject> RelocatableObject::parse(std::vector<std::byte> bytes, std::string name) {
    if (!initialise_libelf()) {
        return fail(ErrorCode::unsupported, "libelf: " + libelf_message());
    }
    RelocatableObject object;
    object.name_ = std::move(name);
    object.bytes_ = std::make_unique<std::vector<std::byte>>(std::move(bytes));
    const std::string& subject = object.name_;
    auto& image = *object.bytes_;
    if (image.size() < sizeof(Elf64_Ehdr) || std::memcmp(image.data(), ELFMAG, SELFMAG) != 0) {
        return fail(ErrorCode::bad_format, subject + ": not an ELF object");
    }
    object.elf_.reset(elf_memory(reinterpret_cast<char*>(image.data()), image.size()));
    Elf* elf = object.elf_.get();
    if (auto checked = check_header(elf, subject); !checked) {
        return tl::unexpected(checked.error());
    }
    auto table = read_sections(elf, image, subject);
    if (!table) {
        return tl::unexpected(table.error());
    }
    auto symbols = read_symbols(elf, *table, subject);
    if (!symbols) {
        return tl::unexpected(symbols.error());
    }
    auto relocations = read_relocations(elf, *table, symbols->size(), subject);
    if (!relocations) {
        return tl::unexpected(relocations.error());
    }
    object.sections_ = std::move(table->sections);
    object.symbols_ = std::move(*symbols);
    object.relocations_ = std::move(*relocations);
    return object;
}

Result<RelocatableObject> RelocatableObject::read(const std::string& path) {
    auto text = read_file(path);
    if (!text) {
        return tl::unexpected(text.error());
    }
    auto bytes = bytes_of(*text);
    return parse(std::vector<std::byte>(bytes.begin(), bytes.end()), path);
}

const RelocatableObject::Symbol* RelocatableObject::find_defined(std::string_view name) const {
    const Symbol* local = nullptr;
    for (const Symbol& symbol : symbols_) {
        if (symbol.name != name || symbol.section == SHN_UNDEF) {
            continue;
        }
        if (symbol.binding != STB_LOCAL) {
            return &symbol;
        }
        local = local != nullptr ? local : &symbol;
    }
    return local;
}

bool RelocatableObject::is_loaded(std::size_t index) const {
    if (index == 0 || index >= sections_.size()) {
        return false;
    }
    const Section& section = sections_[index];
    if ((section.flags & SHF_ALLOC) == 0 || section.size == 0) {
        return false;
    }
    // Unwind tables are not needed: a frame inside the patch region already
    // makes a stack unsafe before the unwinder would need to step past it.
    return section.name != ".eh_frame" && section.type != SHT_NOTE;
}

}  // namespace suture
