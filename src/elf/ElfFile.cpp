#include "elf/ElfFile.h"

#include <gelf.h>

#include <algorithm>
#include <cstring>
#include <string_view>
#include <utility>

#include "base/Files.h"

namespace suture {

bool initialise_libelf() {
    static const bool ready = elf_version(EV_CURRENT) != EV_NONE;
    return ready;
}

std::string libelf_message() {
    const char* message = elf_errmsg(-1);
    return message != nullptr ? message : "unknown libelf error";
}

namespace {

// The contents of segment `phdr`, as libelf data of `type`;
// elf_getdata_rawchunk checks the range against the file size.
Result<Elf_Data*> segment_data(Elf* elf, const GElf_Phdr& phdr, Elf_Type type,
                               const std::string& what) {
    Elf_Data* data =
        elf_getdata_rawchunk(elf, static_cast<int64_t>(phdr.p_offset), phdr.p_filesz, type);
    if (data == nullptr) {
        return fail(ErrorCode::bad_format, what + " outside the file: " + libelf_message());
    }
    return data;
}

}  // namespace

Result<ElfFile> ElfFile::open(const UniqueFD& fd, std::string name) {
    if (!initialise_libelf()) {
        return fail(ErrorCode::unsupported, "libelf: " + libelf_message());
    }
    auto mapping = MappedFile::map(fd, name);
    if (!mapping) {
        return tl::unexpected(mapping.error());
    }
    auto bytes = mapping->bytes();
    if (bytes.size() < EI_NIDENT || std::memcmp(bytes.data(), ELFMAG, SELFMAG) != 0) {
        return fail(ErrorCode::bad_format, name + ": not an ELF file");
    }
    // libelf only reads through this pointer in ELF_C_READ mode; the cast
    // drops const because elf_memory's signature predates const.
    auto* image = const_cast<char*>(reinterpret_cast<const char*>(bytes.data()));
    ElfHandle elf(elf_memory(image, bytes.size()));
    if (!elf || elf_kind(elf.get()) != ELF_K_ELF) {
        return fail(ErrorCode::bad_format, name + ": libelf: " + libelf_message());
    }
    std::size_t count = 0;
    if (elf_getphdrnum(elf.get(), &count) != 0) {
        return fail(ErrorCode::bad_format, name + ": program headers: " + libelf_message());
    }
    std::vector<GElf_Phdr> segments(count);
    for (std::size_t i = 0; i < count; ++i) {
        if (gelf_getphdr(elf.get(), static_cast<int>(i), &segments[i]) == nullptr) {
            return fail(ErrorCode::bad_format,
                        name + ": program header " + std::to_string(i) + ": " + libelf_message());
        }
    }
    return ElfFile(std::move(name), std::move(*mapping), std::move(elf), std::move(segments));
}

bool ElfFile::is_shared_object() const {
    GElf_Ehdr header;
    return gelf_getehdr(elf_.get(), &header) != nullptr && header.e_type == ET_DYN;
}

Result<std::string> ElfFile::build_id() const {
    for (const GElf_Phdr& phdr : segments_) {
        if (phdr.p_type != PT_NOTE) {
            continue;
        }
        auto segment = segment_data(elf_.get(), phdr, ELF_T_NHDR, name_ + ": note segment");
        if (!segment) {
            return tl::unexpected(segment.error());
        }
        Elf_Data* data = *segment;
        std::size_t offset = 0;
        GElf_Nhdr note;
        std::size_t name_offset = 0;
        std::size_t desc_offset = 0;
        while (offset < data->d_size) {
            std::size_t next = gelf_getnote(data, offset, &note, &name_offset, &desc_offset);
            if (next == 0) {
                break;  // malformed note: stop reading this segment
            }
            const char* base = static_cast<const char*>(data->d_buf);
            if (note.n_type == NT_GNU_BUILD_ID && note.n_namesz == 4 &&
                std::memcmp(base + name_offset, "GNU", 4) == 0 && note.n_descsz > 0) {
                return to_hex(reinterpret_cast<const unsigned char*>(base + desc_offset),
                              note.n_descsz);
            }
            offset = next;
        }
    }
    return fail(ErrorCode::not_found, name_ + ": no GNU build ID note");
}

std::optional<std::size_t> ElfFile::offset_of_address(std::uint64_t vaddr) const {
    for (const GElf_Phdr& phdr : segments_) {
        if (phdr.p_type != PT_LOAD) {
            continue;
        }
        if (vaddr >= phdr.p_vaddr && vaddr - phdr.p_vaddr < phdr.p_filesz) {
            return static_cast<std::size_t>(phdr.p_offset + (vaddr - phdr.p_vaddr));
        }
    }
    return std::nullopt;
}

Result<std::vector<std::string>> ElfFile::dynamic_strings(std::int64_t tag) const {
    std::vector<std::string> strings;
    for (const GElf_Phdr& phdr : segments_) {
        if (phdr.p_type != PT_DYNAMIC) {
            continue;
        }
        auto segment = segment_data(elf_.get(), phdr, ELF_T_DYN, name_ + ": dynamic segment");
        if (!segment) {
            return tl::unexpected(segment.error());
        }
        Elf_Data* data = *segment;
        std::vector<std::uint64_t> indices;
        std::optional<std::uint64_t> strtab_address;
        std::uint64_t strtab_size = 0;
        GElf_Dyn entry;
        for (int j = 0; gelf_getdyn(data, j, &entry) != nullptr && entry.d_tag != DT_NULL; ++j) {
            if (entry.d_tag == tag) {
                indices.push_back(entry.d_un.d_val);
            } else if (entry.d_tag == DT_STRTAB) {
                strtab_address = entry.d_un.d_ptr;
            } else if (entry.d_tag == DT_STRSZ) {
                strtab_size = entry.d_un.d_val;
            }
        }
        if (indices.empty()) {
            return strings;
        }
        auto strtab_offset = strtab_address ? offset_of_address(*strtab_address) : std::nullopt;
        auto bytes = mapping_.bytes();
        if (!strtab_offset || *strtab_offset >= bytes.size() ||
            bytes.size() - *strtab_offset < strtab_size) {
            return fail(ErrorCode::bad_format, name_ + ": DT_STRTAB outside the file");
        }
        const char* strtab = reinterpret_cast<const char*>(bytes.data()) + *strtab_offset;
        for (std::uint64_t index : indices) {
            if (index >= strtab_size) {
                return fail(ErrorCode::bad_format, name_ + ": a dynamic string outside DT_STRTAB");
            }
            std::size_t available = static_cast<std::size_t>(strtab_size - index);
            std::size_t length = strnlen(strtab + index, available);
            if (length == available) {
                return fail(ErrorCode::bad_format,
                            name_ + ": a dynamic string is not NUL-terminated");
            }
            strings.emplace_back(strtab + index, length);
        }
        return strings;
    }
    return strings;
}

Result<std::optional<std::string>> ElfFile::dynamic_string(std::int64_t tag) const {
    auto strings = dynamic_strings(tag);
    if (!strings) {
        return tl::unexpected(strings.error());
    }
    return strings->empty() ? std::optional<std::string>{}
                            : std::optional<std::string>(strings->front());
}

Result<std::optional<std::string>> ElfFile::soname() const {
    return dynamic_string(DT_SONAME);
}

Result<std::vector<std::string>> ElfFile::needed() const {
    return dynamic_strings(DT_NEEDED);
}

std::optional<std::uint64_t> ElfFile::dynamic_value(std::int64_t tag) const {
    for (const GElf_Phdr& phdr : segments_) {
        if (phdr.p_type != PT_DYNAMIC) {
            continue;
        }
        auto segment = segment_data(elf_.get(), phdr, ELF_T_DYN, name_ + ": dynamic segment");
        if (!segment) {
            return std::nullopt;
        }
        GElf_Dyn entry;
        for (int j = 0; gelf_getdyn(*segment, j, &entry) != nullptr && entry.d_tag != DT_NULL;
             ++j) {
            if (entry.d_tag == tag) {
                return entry.d_un.d_val;
            }
        }
    }
    return std::nullopt;
}

std::optional<std::string> ElfFile::interpreter() const {
    auto bytes = mapping_.bytes();
    for (const GElf_Phdr& phdr : segments_) {
        if (phdr.p_type != PT_INTERP || phdr.p_offset >= bytes.size() ||
            bytes.size() - phdr.p_offset < phdr.p_filesz) {
            continue;
        }
        const char* text = reinterpret_cast<const char*>(bytes.data()) + phdr.p_offset;
        return std::string(text, strnlen(text, phdr.p_filesz));
    }
    return std::nullopt;
}

Result<ElfFile::LoadingInfo> ElfFile::loading_info() const {
    GElf_Ehdr header;
    if (gelf_getehdr(elf_.get(), &header) == nullptr) {
        return fail(ErrorCode::bad_format, name_ + ": ELF header: " + libelf_message());
    }
    LoadingInfo info;
    info.native = header.e_ident[EI_CLASS] == ELFCLASS64 &&
                  header.e_ident[EI_DATA] == ELFDATA2LSB && header.e_machine == EM_X86_64;
    if (!info.native) {
        return info;  // the loader reads no further
    }
    info.interpreter = interpreter();
    auto soname = dynamic_string(DT_SONAME);
    auto needed = dynamic_strings(DT_NEEDED);
    auto rpath = dynamic_string(DT_RPATH);
    auto runpath = dynamic_string(DT_RUNPATH);
    for (const Error* error :
         {soname ? nullptr : &soname.error(), needed ? nullptr : &needed.error(),
          rpath ? nullptr : &rpath.error(), runpath ? nullptr : &runpath.error()}) {
        if (error != nullptr) {
            return tl::unexpected(*error);
        }
    }
    info.soname = std::move(*soname);
    info.needed = std::move(*needed);
    info.runpath = std::move(*runpath);
    info.rpath = info.runpath ? std::nullopt : std::move(*rpath);
    info.no_default_libraries = (dynamic_value(DT_FLAGS_1).value_or(0) & DF_1_NODEFLIB) != 0;
    return info;
}

std::uint64_t ElfFile::entry_address() const {
    GElf_Ehdr header;
    return gelf_getehdr(elf_.get(), &header) != nullptr ? header.e_entry : 0;
}

std::optional<std::string> ElfFile::openssl_version_text() const {
    static constexpr std::string_view prefix{"OpenSSL ", 8};
    auto bytes = mapping_.bytes();
    std::string_view file(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    for (const GElf_Phdr& phdr : segments_) {
        if (phdr.p_type != PT_LOAD || (phdr.p_flags & (PF_X | PF_W)) != 0 ||
            phdr.p_offset >= file.size()) {
            continue;
        }
        std::string_view segment = file.substr(phdr.p_offset, phdr.p_filesz);
        for (std::size_t at = segment.find(prefix); at != std::string_view::npos;
             at = segment.find(prefix, at + 1)) {
            bool starts_string = at == 0 || segment[at - 1] == '\0';
            bool digit_follows = at + prefix.size() < segment.size() &&
                                 segment[at + prefix.size()] >= '0' &&
                                 segment[at + prefix.size()] <= '9';
            if (!starts_string || !digit_follows) {
                continue;
            }
            std::size_t end = segment.find('\0', at);
            if (end == std::string_view::npos || end - at > 128) {
                continue;
            }
            return std::string(segment.substr(at, end - at));
        }
    }
    return std::nullopt;
}

}  // namespace suture

namespace suture {

Result<std::span<const std::byte>> ElfFile::bytes_at(std::uint64_t offset,
                                                     std::uint64_t size) const {
    auto bytes = mapping_.bytes();
    if (offset > bytes.size() || size > bytes.size() - offset) {
        return fail(ErrorCode::bad_format, name_ + ": range " + std::to_string(offset) + "+" +
                                               std::to_string(size) + " outside the file");
    }
    return bytes.subspan(offset, size);
}

std::uint64_t ElfFile::lowest_load_address() const {
    std::uint64_t lowest = UINT64_MAX;
    for (const GElf_Phdr& phdr : segments_) {
        if (phdr.p_type == PT_LOAD) {
            lowest = std::min<std::uint64_t>(lowest, phdr.p_vaddr);
        }
    }
    return lowest == UINT64_MAX ? 0 : lowest;
}

Result<std::vector<ElfFile::Symbol>> ElfFile::dynamic_symbols() const {
    return read_symbols(SHT_DYNSYM);
}

Result<std::vector<ElfFile::Symbol>> ElfFile::static_symbols() const {
    return read_symbols(SHT_SYMTAB);
}

namespace {

// Version index -> (name, is_need), from .gnu.version_d (definitions) and
// .gnu.version_r (needs). Spec: LSB Core, "Symbol Versioning".
using VersionNames = std::vector<std::pair<std::string, bool>>;

void set_version_name(VersionNames& names, std::size_t index, const char* name, bool is_need) {
    if (names.size() <= index) {
        names.resize(index + 1);
    }
    names[index] = {name != nullptr ? name : "", is_need};
}

// The entries of a .gnu.version_d section.
void add_version_definitions(Elf* elf, const GElf_Shdr& header, Elf_Data* data,
                             VersionNames& names) {
    std::size_t offset = 0;
    for (std::size_t i = 0; i < header.sh_info; ++i) {
        GElf_Verdef definition;
        GElf_Verdaux auxiliary;
        if (gelf_getverdef(data, static_cast<int>(offset), &definition) == nullptr ||
            gelf_getverdaux(data, static_cast<int>(offset + definition.vd_aux), &auxiliary) ==
                nullptr) {
            return;
        }
        set_version_name(names, definition.vd_ndx,
                         elf_strptr(elf, header.sh_link, auxiliary.vda_name), false);
        if (definition.vd_next == 0) {
            return;
        }
        offset += definition.vd_next;
    }
}

// The entries of a .gnu.version_r section: each needed file's versions.
void add_version_needs(Elf* elf, const GElf_Shdr& header, Elf_Data* data, VersionNames& names) {
    std::size_t offset = 0;
    for (std::size_t i = 0; i < header.sh_info; ++i) {
        GElf_Verneed need;
        if (gelf_getverneed(data, static_cast<int>(offset), &need) == nullptr) {
            return;
        }
        std::size_t aux_offset = offset + need.vn_aux;
        for (std::size_t j = 0; j < need.vn_cnt; ++j) {
            GElf_Vernaux auxiliary;
            if (gelf_getvernaux(data, static_cast<int>(aux_offset), &auxiliary) == nullptr) {
                break;
            }
            set_version_name(names, auxiliary.vna_other & 0x7fff,
                             elf_strptr(elf, header.sh_link, auxiliary.vna_name), true);
            if (auxiliary.vna_next == 0) {
                break;
            }
            aux_offset += auxiliary.vna_next;
        }
        if (need.vn_next == 0) {
            return;
        }
        offset += need.vn_next;
    }
}

// Where a symbol table and (for .dynsym) its versions are.
struct SymbolTableSections {
    Elf_Scn* symbols = nullptr;
    std::size_t names = 0;       // the string table of the symbols' names
    Elf_Data* versym = nullptr;  // .gnu.version: each symbol's version index
    VersionNames version_names;
};

// The symbol table of `section_type` and, for .dynsym, its versions.
Result<SymbolTableSections> find_symbol_table(Elf* elf, Elf64_Word section_type,
                                              const std::string& subject) {
    SymbolTableSections found;
    for (Elf_Scn* section = elf_nextscn(elf, nullptr); section != nullptr;
         section = elf_nextscn(elf, section)) {
        GElf_Shdr header;
        if (gelf_getshdr(section, &header) == nullptr) {
            return fail(ErrorCode::bad_format, subject + ": section header: " + libelf_message());
        }
        bool definitions = header.sh_type == SHT_GNU_verdef;
        if (header.sh_type == section_type) {
            found.symbols = section;
            found.names = header.sh_link;
        } else if (section_type != SHT_DYNSYM) {
            continue;  // versions are .dynsym's only
        } else if (header.sh_type == SHT_GNU_versym) {
            found.versym = elf_getdata(section, nullptr);
        } else if (definitions || header.sh_type == SHT_GNU_verneed) {
            Elf_Data* data = elf_getdata(section, nullptr);
            if (data == nullptr) {
                continue;
            }
            if (definitions) {
                add_version_definitions(elf, header, data, found.version_names);
            } else {
                add_version_needs(elf, header, data, found.version_names);
            }
        }
    }
    return found;
}

}  // namespace

Result<std::vector<ElfFile::Symbol>> ElfFile::read_symbols(Elf64_Word section_type) const {
    auto sections = find_symbol_table(elf_.get(), section_type, name_);
    if (!sections) {
        return tl::unexpected(sections.error());
    }
    std::vector<Symbol> symbols;
    if (sections->symbols == nullptr) {
        return symbols;
    }
    Elf_Data* data = elf_getdata(sections->symbols, nullptr);
    if (data == nullptr) {
        return fail(ErrorCode::bad_format, name_ + ": symbol table: " + libelf_message());
    }
    for (int i = 1;; ++i) {  // entry 0 is the null symbol
        GElf_Sym raw;
        if (gelf_getsym(data, i, &raw) == nullptr) {
            break;
        }
        Symbol symbol;
        const char* name = elf_strptr(elf_.get(), sections->names, raw.st_name);
        symbol.name = name != nullptr ? name : "";
        symbol.value = raw.st_value;
        symbol.size = raw.st_size;
        symbol.type = GELF_ST_TYPE(raw.st_info);
        symbol.binding = GELF_ST_BIND(raw.st_info);
        symbol.defined = raw.st_shndx != SHN_UNDEF;
        GElf_Versym version_index;
        if (sections->versym != nullptr &&
            gelf_getversym(sections->versym, i, &version_index) != nullptr) {
            std::size_t index = version_index & 0x7fff;
            symbol.hidden_version = (version_index & 0x8000) != 0;
            if (index > 1 && index < sections->version_names.size()) {
                symbol.version = sections->version_names[index].first;
            }
        }
        symbols.push_back(std::move(symbol));
    }
    return symbols;
}

Result<std::map<std::string, std::uint64_t>> ElfFile::plt_entries() const {
    Elf* elf = elf_.get();
    std::size_t names_index = 0;
    if (elf_getshdrstrndx(elf, &names_index) != 0) {
        return fail(ErrorCode::bad_format, name_ + ": section names: " + libelf_message());
    }
    Elf_Scn* relocations = nullptr;
    Elf_Scn* plt = nullptr;
    GElf_Shdr plt_header{};
    std::size_t dynamic_symbols_index = 0;
    for (Elf_Scn* section = elf_nextscn(elf, nullptr); section != nullptr;
         section = elf_nextscn(elf, section)) {
        GElf_Shdr header;
        if (gelf_getshdr(section, &header) == nullptr) {
            return fail(ErrorCode::bad_format, name_ + ": section header: " + libelf_message());
        }
        const char* name = elf_strptr(elf, names_index, header.sh_name);
        std::string_view section_name = name != nullptr ? name : "";
        if (section_name == ".rela.plt" && header.sh_type == SHT_RELA) {
            relocations = section;
            dynamic_symbols_index = header.sh_link;
        } else if (section_name == ".plt.sec" || (section_name == ".plt" && plt == nullptr)) {
            plt = section;
            plt_header = header;
        }
    }
    std::map<std::string, std::uint64_t> entries;
    if (relocations == nullptr || plt == nullptr) {
        return entries;
    }
    // GOT slot address -> symbol name.
    std::map<std::uint64_t, std::string> slot_symbols;
    Elf_Scn* dynamic_symbols = elf_getscn(elf, dynamic_symbols_index);
    GElf_Shdr dynamic_symbols_header;
    Elf_Data* relocation_data = elf_getdata(relocations, nullptr);
    Elf_Data* symbol_data = dynamic_symbols ? elf_getdata(dynamic_symbols, nullptr) : nullptr;
    if (relocation_data == nullptr || symbol_data == nullptr ||
        gelf_getshdr(dynamic_symbols, &dynamic_symbols_header) == nullptr) {
        return fail(ErrorCode::bad_format, name_ + ": .rela.plt: " + libelf_message());
    }
    for (int i = 0;; ++i) {
        GElf_Rela relocation;
        if (gelf_getrela(relocation_data, i, &relocation) == nullptr) {
            break;
        }
        GElf_Sym symbol;
        if (GELF_R_TYPE(relocation.r_info) != R_X86_64_JUMP_SLOT ||
            gelf_getsym(symbol_data, static_cast<int>(GELF_R_SYM(relocation.r_info)), &symbol) ==
                nullptr) {
            continue;
        }
        const char* name = elf_strptr(elf, dynamic_symbols_header.sh_link, symbol.st_name);
        if (name != nullptr && *name != '\0') {
            slot_symbols[relocation.r_offset] = name;
        }
    }
    // Each entry: [endbr64] [bnd] jmp *disp32(%rip) ... in 16 bytes. The
    // first entry of a plain .plt is the resolver stub; it matches no slot.
    auto bytes = bytes_at(plt_header.sh_offset, plt_header.sh_size);
    if (!bytes) {
        return tl::unexpected(bytes.error());
    }
    constexpr std::size_t entry_size = 16;
    for (std::size_t entry = 0; entry + entry_size <= bytes->size(); entry += entry_size) {
        std::size_t at = entry;
        auto byte = [&](std::size_t i) { return static_cast<unsigned char>((*bytes)[i]); };
        if (byte(at) == 0xf3 && byte(at + 1) == 0x0f && byte(at + 2) == 0x1e &&
            byte(at + 3) == 0xfa) {
            at += 4;  // endbr64
        }
        if (byte(at) == 0xf2) {
            ++at;  // bnd prefix
        }
        if (at + 6 > entry + entry_size || byte(at) != 0xff || byte(at + 1) != 0x25) {
            continue;
        }
        std::int32_t displacement = 0;
        std::memcpy(&displacement, bytes->data() + at + 2, sizeof displacement);
        std::uint64_t entry_address = plt_header.sh_addr + entry;
        std::uint64_t slot = plt_header.sh_addr + at + 6 + static_cast<std::int64_t>(displacement);
        if (auto found = slot_symbols.find(slot); found != slot_symbols.end()) {
            entries.emplace(found->second, entry_address);
        }
    }
    return entries;
}

}  // namespace suture
