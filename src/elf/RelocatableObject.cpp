#include "elf/RelocatableObject.h"

#include <cstring>

#include "base/Files.h"
#include "elf/ElfFile.h"

namespace suture {

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
    GElf_Ehdr header;
    if (elf == nullptr || elf_kind(elf) != ELF_K_ELF || gelf_getehdr(elf, &header) == nullptr) {
        return fail(ErrorCode::bad_format, subject + ": " + libelf_message());
    }
    if (gelf_getclass(elf) != ELFCLASS64 || header.e_machine != EM_X86_64 ||
        header.e_type != ET_REL || header.e_ident[EI_DATA] != ELFDATA2LSB) {
        return fail(ErrorCode::unsupported,
                    subject + ": not an x86-64 little-endian ELF64 relocatable object");
    }
    std::size_t section_count = 0;
    if (elf_getshdrnum(elf, &section_count) != 0 || section_count == 0 || section_count > 65535) {
        return fail(ErrorCode::bad_format, subject + ": bad section count");
    }
    std::size_t names_index = 0;
    if (elf_getshdrstrndx(elf, &names_index) != 0) {
        return fail(ErrorCode::bad_format, subject + ": no section name table");
    }
    object.sections_.resize(section_count);
    object.relocations_.resize(section_count);
    std::size_t symbol_table = 0;
    for (std::size_t index = 1; index < section_count; ++index) {
        Elf_Scn* scn = elf_getscn(elf, index);
        GElf_Shdr shdr;
        if (scn == nullptr || gelf_getshdr(scn, &shdr) == nullptr) {
            return fail(ErrorCode::bad_format,
                        subject + ": section " + std::to_string(index) + ": " + libelf_message());
        }
        Section& section = object.sections_[index];
        const char* section_name = elf_strptr(elf, names_index, shdr.sh_name);
        section.name = section_name != nullptr ? section_name : "";
        section.type = shdr.sh_type;
        section.flags = shdr.sh_flags;
        section.size = shdr.sh_size;
        section.alignment = shdr.sh_addralign == 0 ? 1 : shdr.sh_addralign;
        if ((section.alignment & (section.alignment - 1)) != 0 || section.alignment > 4096) {
            return fail(ErrorCode::bad_format, subject + ": section " + section.name +
                                                   ": alignment " +
                                                   std::to_string(section.alignment));
        }
        if (shdr.sh_type != SHT_NOBITS && shdr.sh_type != SHT_NULL) {
            if (shdr.sh_offset > image.size() || shdr.sh_size > image.size() - shdr.sh_offset) {
                return fail(ErrorCode::bad_format,
                            subject + ": section " + section.name + " outside the file");
            }
            section.bytes = std::span<const std::byte>(image).subspan(shdr.sh_offset, shdr.sh_size);
        }
        if ((shdr.sh_flags & SHF_TLS) != 0) {
            return fail(ErrorCode::unsupported,
                        subject + ": section " + section.name + ": thread-local storage");
        }
        if (shdr.sh_type == SHT_SYMTAB) {
            if (symbol_table != 0) {
                return fail(ErrorCode::bad_format, subject + ": two symbol tables");
            }
            symbol_table = index;
        }
    }
    if (symbol_table == 0) {
        return fail(ErrorCode::bad_format, subject + ": no symbol table");
    }

    // Symbols.
    Elf_Scn* symbols_scn = elf_getscn(elf, symbol_table);
    GElf_Shdr symbols_shdr;
    Elf_Data* symbols_data = elf_getdata(symbols_scn, nullptr);
    if (symbols_data == nullptr || gelf_getshdr(symbols_scn, &symbols_shdr) == nullptr) {
        return fail(ErrorCode::bad_format, subject + ": symbol table: " + libelf_message());
    }
    std::size_t symbol_count =
        symbols_shdr.sh_entsize == 0 ? 0 : symbols_shdr.sh_size / symbols_shdr.sh_entsize;
    object.symbols_.resize(symbol_count);
    for (std::size_t i = 1; i < symbol_count; ++i) {
        GElf_Sym raw;
        if (gelf_getsym(symbols_data, static_cast<int>(i), &raw) == nullptr) {
            return fail(ErrorCode::bad_format, subject + ": symbol " + std::to_string(i));
        }
        Symbol& symbol = object.symbols_[i];
        const char* symbol_name = elf_strptr(elf, symbols_shdr.sh_link, raw.st_name);
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
        } else if (raw.st_shndx == SHN_COMMON || raw.st_shndx >= SHN_LORESERVE) {
            return fail(ErrorCode::unsupported,
                        subject + ": symbol " + symbol.name +
                            ": common or special section (compile with -fno-common)");
        } else {
            if (raw.st_shndx >= section_count) {
                return fail(ErrorCode::bad_format,
                            subject + ": symbol " + symbol.name + ": section index out of range");
            }
            symbol.section = raw.st_shndx;
            if (symbol.section != SHN_UNDEF &&
                (symbol.value > object.sections_[symbol.section].size)) {
                return fail(ErrorCode::bad_format,
                            subject + ": symbol " + symbol.name + ": value outside its section");
            }
        }
    }

    // Relocations (RELA only: x86-64 objects never use REL).
    for (std::size_t index = 1; index < section_count; ++index) {
        const Section& section = object.sections_[index];
        if (section.type == SHT_REL) {
            return fail(ErrorCode::unsupported,
                        subject + ": " + section.name + ": REL relocations");
        }
        if (section.type != SHT_RELA) {
            continue;
        }
        Elf_Scn* scn = elf_getscn(elf, index);
        GElf_Shdr shdr;
        Elf_Data* data = elf_getdata(scn, nullptr);
        if (data == nullptr || gelf_getshdr(scn, &shdr) == nullptr) {
            return fail(ErrorCode::bad_format, subject + ": " + section.name);
        }
        if (shdr.sh_info == 0 || shdr.sh_info >= section_count || shdr.sh_link != symbol_table) {
            return fail(ErrorCode::bad_format,
                        subject + ": " + section.name + ": bad sh_info/sh_link");
        }
        std::size_t count = shdr.sh_entsize == 0 ? 0 : shdr.sh_size / shdr.sh_entsize;
        auto& relocations = object.relocations_[shdr.sh_info];
        const Section& target = object.sections_[shdr.sh_info];
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
            relocations.push_back(relocation);
        }
    }
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
