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

// The object as written so far: its bytes, its section headers and the
// names of its sections.
struct ObjectWriter::Output {
    std::vector<std::byte> bytes = std::vector<std::byte>(sizeof(Elf64_Ehdr));
    std::vector<Elf64_Shdr> headers = std::vector<Elf64_Shdr>(1);  // the null section
    StringTable section_names;
    StringTable symbol_names;

    // Appends a string table section holding `table`.
    void add_string_table(const std::string& name, const StringTable& table) {
        Elf64_Shdr header{};
        header.sh_name = section_names.add(name);
        header.sh_type = SHT_STRTAB;
        header.sh_offset = bytes.size();
        header.sh_size = table.bytes.size();
        header.sh_addralign = 1;
        bytes.insert(bytes.end(), table.bytes.begin(), table.bytes.end());
        headers.push_back(header);
    }
};

std::vector<std::byte> ObjectWriter::write() const {
    // Layout: ELF header, section contents, .rela.* , .symtab, .strtab,
    // .shstrtab, then the section header table.
    Output out;
    write_contents(out);
    std::size_t symbol_table = out.headers.size() + relocated_sections();
    write_relocations(out, symbol_table);
    write_symbol_table(out, symbol_table);
    // The string tables go last; .shstrtab names itself, so its name is
    // added before its bytes are copied.
    out.add_string_table(".strtab", out.symbol_names);
    out.add_string_table(".shstrtab", out.section_names);
    write_header_and_section_table(out);
    return std::move(out.bytes);
}

void ObjectWriter::write_contents(Output& out) const {
    for (const Section& section : sections_) {
        align(out.bytes, section.alignment);
        Elf64_Shdr header{};
        header.sh_name = out.section_names.add(section.name);
        header.sh_type = section.type;
        header.sh_flags = section.flags;
        header.sh_offset = out.bytes.size();
        header.sh_size = section.bytes.size();
        header.sh_addralign = section.alignment;
        header.sh_entsize = section.entry_size;
        if (section.type != SHT_NOBITS) {
            out.bytes.insert(out.bytes.end(), section.bytes.begin(), section.bytes.end());
        }
        out.headers.push_back(header);
    }
}

std::size_t ObjectWriter::relocated_sections() const {
    std::size_t with_relocations = 0;
    for (const Section& section : sections_) {
        with_relocations += section.relocations.empty() ? 0 : 1;
    }
    return with_relocations;
}

void ObjectWriter::write_relocations(Output& out, std::size_t symbol_table) const {
    for (std::size_t i = 0; i < sections_.size(); ++i) {
        const Section& section = sections_[i];
        if (section.relocations.empty()) {
            continue;
        }
        align(out.bytes, 8);
        Elf64_Shdr header{};
        header.sh_name = out.section_names.add(".rela" + section.name);
        header.sh_type = SHT_RELA;
        header.sh_flags = SHF_INFO_LINK;
        header.sh_offset = out.bytes.size();
        header.sh_link = static_cast<Elf64_Word>(symbol_table);
        header.sh_info = static_cast<Elf64_Word>(i + 1);
        header.sh_addralign = 8;
        header.sh_entsize = sizeof(Elf64_Rela);
        for (const Relocation& relocation : section.relocations) {
            Elf64_Rela rela{};
            rela.r_offset = relocation.offset;
            rela.r_info = ELF64_R_INFO(relocation.symbol, relocation.type);
            rela.r_addend = relocation.addend;
            append(out.bytes, rela);
        }
        header.sh_size = out.bytes.size() - header.sh_offset;
        out.headers.push_back(header);
    }
}

void ObjectWriter::write_symbol_table(Output& out, std::size_t symbol_table) const {
    align(out.bytes, 8);
    Elf64_Shdr header{};
    header.sh_name = out.section_names.add(".symtab");
    header.sh_type = SHT_SYMTAB;
    header.sh_offset = out.bytes.size();
    header.sh_link = static_cast<Elf64_Word>(symbol_table + 1);  // .strtab, right after
    header.sh_addralign = 8;
    header.sh_entsize = sizeof(Elf64_Sym);
    append(out.bytes, Elf64_Sym{});
    Elf64_Word first_global = static_cast<Elf64_Word>(symbols_.size() + 1);
    for (std::size_t i = 0; i < symbols_.size(); ++i) {
        const Symbol& symbol = symbols_[i];
        if (symbol.binding != STB_LOCAL && first_global > i + 1) {
            first_global = static_cast<Elf64_Word>(i + 1);
        }
        Elf64_Sym raw{};
        raw.st_name = symbol.type == STT_SECTION ? 0 : out.symbol_names.add(symbol.name);
        raw.st_info = ELF64_ST_INFO(symbol.binding, symbol.type);
        raw.st_shndx = static_cast<Elf64_Section>(symbol.section);
        raw.st_value = symbol.value;
        raw.st_size = symbol.size;
        append(out.bytes, raw);
    }
    header.sh_info = first_global;
    header.sh_size = out.bytes.size() - header.sh_offset;
    out.headers.push_back(header);
}

void ObjectWriter::write_header_and_section_table(Output& out) {
    align(out.bytes, 8);
    Elf64_Ehdr elf{};
    std::memcpy(elf.e_ident, ELFMAG, SELFMAG);
    elf.e_ident[EI_CLASS] = ELFCLASS64;
    elf.e_ident[EI_DATA] = ELFDATA2LSB;
    elf.e_ident[EI_VERSION] = EV_CURRENT;
    elf.e_ident[EI_OSABI] = ELFOSABI_NONE;
    elf.e_type = ET_REL;
    elf.e_machine = EM_X86_64;
    elf.e_version = EV_CURRENT;
    elf.e_shoff = out.bytes.size();
    elf.e_ehsize = sizeof(Elf64_Ehdr);
    elf.e_shentsize = sizeof(Elf64_Shdr);
    elf.e_shnum = static_cast<Elf64_Half>(out.headers.size());
    elf.e_shstrndx = static_cast<Elf64_Half>(out.headers.size() - 1);
    for (const Elf64_Shdr& header : out.headers) {
        append(out.bytes, header);
    }
    std::memcpy(out.bytes.data(), &elf, sizeof elf);
}

}  // namespace suture
