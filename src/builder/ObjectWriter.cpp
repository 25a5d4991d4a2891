#include "builder/ObjectWriter.h"

#include <cstring>

namespace suture {

namespace {

// Appends `value`'s bytes to `out`.
template <typename T>
void append(std::vector<std::byte>& out, const T& value) {
    const auto* bytes = reinterpret_cast<const std::byte*>(&value);
    out.insert(out.end(), bytes, bytes + sizeof value);
}

void align(std::vector<std::byte>& out, std::uint64_t alignment) {
    while (alignment > 1 && out.size() % alignment != 0) {
        out.push_back(std::byte{0});
    }
}

// A string table: offset of each added string.
struct StringTable {
    std::vector<std::byte> bytes{std::byte{0}};
    Elf64_Word add(const std::string& text) {
        if (text.empty()) {
            return 0;
        }
        auto offset = static_cast<Elf64_Word>(bytes.size());
        for (char c : text) {
            bytes.push_back(static_cast<std::byte>(c));
        }
        bytes.push_back(std::byte{0});
        return offset;
    }
};

}  // namespace

std::size_t ObjectWriter::add_section(std::string name, Elf64_Word type, std::uint64_t flags,
                                      std::uint64_t alignment, std::uint64_t entry_size,
                                      std::vector<std::byte> bytes) {
    sections_.push_back(
        Section{std::move(name), type, flags, alignment, entry_size, std::move(bytes), {}});
    return sections_.size();
}

std::size_t ObjectWriter::add_symbol(std::string name, unsigned char type, unsigned char binding,
                                     std::size_t section, std::uint64_t value, std::uint64_t size) {
    symbols_.push_back(Symbol{std::move(name), type, binding, section, value, size});
    return symbols_.size();
}

void ObjectWriter::add_relocation(std::size_t section, Relocation relocation) {
    sections_.at(section - 1).relocations.push_back(relocation);
}

std::vector<std::byte> ObjectWriter::write() const {
    // Layout: ELF header, section contents, .rela.* , .symtab, .strtab,
    // .shstrtab, then the section header table.
    std::vector<std::byte> out(sizeof(Elf64_Ehdr));
    std::vector<Elf64_Shdr> headers(1);  // the null section
    StringTable section_names;
    for (const Section& section : sections_) {
        align(out, section.alignment);
        Elf64_Shdr header{};
        header.sh_name = section_names.add(section.name);
        header.sh_type = section.type;
        header.sh_flags = section.flags;
        header.sh_offset = out.size();
        header.sh_size = section.bytes.size();
        header.sh_addralign = section.alignment;
        header.sh_entsize = section.entry_size;
        if (section.type != SHT_NOBITS) {
            out.insert(out.end(), section.bytes.begin(), section.bytes.end());
        }
        headers.push_back(header);
    }
    std::size_t symbol_table_index = headers.size() + [&] {
        std::size_t with_relocations = 0;
        for (const Section& section : sections_) {
            with_relocations += section.relocations.empty() ? 0 : 1;
        }
        return with_relocations;
    }();
    for (std::size_t i = 0; i < sections_.size(); ++i) {
        const Section& section = sections_[i];
        if (section.relocations.empty()) {
            continue;
        }
        align(out, 8);
        Elf64_Shdr header{};
        header.sh_name = section_names.add(".rela" + section.name);
        header.sh_type = SHT_RELA;
        header.sh_flags = SHF_INFO_LINK;
        header.sh_offset = out.size();
        header.sh_link = static_cast<Elf64_Word>(symbol_table_index);
        header.sh_info = static_cast<Elf64_Word>(i + 1);
        header.sh_addralign = 8;
        header.sh_entsize = sizeof(Elf64_Rela);
        for (const Relocation& relocation : section.relocations) {
            Elf64_Rela rela{};
            rela.r_offset = relocation.offset;
            rela.r_info = ELF64_R_INFO(relocation.symbol, relocation.type);
            rela.r_addend = relocation.addend;
            append(out, rela);
        }
        header.sh_size = out.size() - header.sh_offset;
        headers.push_back(header);
    }
    StringTable symbol_names;
    align(out, 8);
    Elf64_Shdr symbol_header{};
    symbol_header.sh_name = section_names.add(".symtab");
    symbol_header.sh_type = SHT_SYMTAB;
    symbol_header.sh_offset = out.size();
    symbol_header.sh_link = static_cast<Elf64_Word>(symbol_table_index + 1);
    symbol_header.sh_addralign = 8;
    symbol_header.sh_entsize = sizeof(Elf64_Sym);
    append(out, Elf64_Sym{});
    Elf64_Word first_global = static_cast<Elf64_Word>(symbols_.size() + 1);
    for (std::size_t i = 0; i < symbols_.size(); ++i) {
        const Symbol& symbol = symbols_[i];
        if (symbol.binding != STB_LOCAL && first_global > i + 1) {
            first_global = static_cast<Elf64_Word>(i + 1);
        }
        Elf64_Sym raw{};
        raw.st_name = symbol.type == STT_SECTION ? 0 : symbol_names.add(symbol.name);
        raw.st_info = ELF64_ST_INFO(symbol.binding, symbol.type);
        raw.st_shndx = static_cast<Elf64_Section>(symbol.section);
        raw.st_value = symbol.value;
        raw.st_size = symbol.size;
        append(out, raw);
    }
    symbol_header.sh_info = first_global;
    symbol_header.sh_size = out.size() - symbol_header.sh_offset;
    headers.push_back(symbol_header);

    // The string tables go last; .shstrtab names itself, so its name is
    // added before its bytes are copied.
    auto add_string_table = [&](const std::string& name, const StringTable* table) {
        Elf64_Shdr header{};
        header.sh_name = section_names.add(name);
        header.sh_type = SHT_STRTAB;
        header.sh_offset = out.size();
        header.sh_size = table->bytes.size();
        header.sh_addralign = 1;
        out.insert(out.end(), table->bytes.begin(), table->bytes.end());
        headers.push_back(header);
    };
    add_string_table(".strtab", &symbol_names);
    add_string_table(".shstrtab", &section_names);

    align(out, 8);
    Elf64_Ehdr elf{};
    std::memcpy(elf.e_ident, ELFMAG, SELFMAG);
    elf.e_ident[EI_CLASS] = ELFCLASS64;
    elf.e_ident[EI_DATA] = ELFDATA2LSB;
    elf.e_ident[EI_VERSION] = EV_CURRENT;
    elf.e_ident[EI_OSABI] = ELFOSABI_NONE;
    elf.e_type = ET_REL;
    elf.e_machine = EM_X86_64;
    elf.e_version = EV_CURRENT;
    elf.e_shoff = out.size();
    elf.e_ehsize = sizeof(Elf64_Ehdr);
    elf.e_shentsize = sizeof(Elf64_Shdr);
    elf.e_shnum = static_cast<Elf64_Half>(headers.size());
    elf.e_shstrndx = static_cast<Elf64_Half>(headers.size() - 1);
    for (const Elf64_Shdr& header : headers) {
        append(out, header);
    }
    std::memcpy(out.data(), &elf, sizeof elf);
    return out;
}

}  // namespace suture
