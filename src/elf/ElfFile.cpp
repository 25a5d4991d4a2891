#include "elf/ElfFile.h"

#include <gelf.h>

#include <cstring>
#include <string_view>
#include <utility>

#include "base/Files.h"

namespace suture {

namespace {

// libelf must be told which ELF version the caller understands before any
// other call; doing it once per process is enough and harmless to repeat.
bool initialise_libelf() {
    static const bool ready = elf_version(EV_CURRENT) != EV_NONE;
    return ready;
}

std::string libelf_message() {
    const char* message = elf_errmsg(-1);
    return message != nullptr ? message : "unknown libelf error";
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
        // elf_getdata_rawchunk checks the range against the file size.
        Elf_Data* data = elf_getdata_rawchunk(elf_.get(), static_cast<int64_t>(phdr.p_offset),
                                              phdr.p_filesz, ELF_T_NHDR);
        if (data == nullptr) {
            return fail(ErrorCode::bad_format,
                        name_ + ": note segment outside the file: " + libelf_message());
        }
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

Result<std::optional<std::string>> ElfFile::soname() const {
    for (const GElf_Phdr& phdr : segments_) {
        if (phdr.p_type != PT_DYNAMIC) {
            continue;
        }
        Elf_Data* data = elf_getdata_rawchunk(elf_.get(), static_cast<int64_t>(phdr.p_offset),
                                              phdr.p_filesz, ELF_T_DYN);
        if (data == nullptr) {
            return fail(ErrorCode::bad_format,
                        name_ + ": dynamic segment outside the file: " + libelf_message());
        }
        std::optional<std::uint64_t> soname_index;
        std::optional<std::uint64_t> strtab_address;
        std::uint64_t strtab_size = 0;
        GElf_Dyn entry;
        for (int j = 0; gelf_getdyn(data, j, &entry) != nullptr && entry.d_tag != DT_NULL; ++j) {
            switch (entry.d_tag) {
                case DT_SONAME:
                    soname_index = entry.d_un.d_val;
                    break;
                case DT_STRTAB:
                    strtab_address = entry.d_un.d_ptr;
                    break;
                case DT_STRSZ:
                    strtab_size = entry.d_un.d_val;
                    break;
                default:
                    break;
            }
        }
        if (!soname_index) {
            return std::optional<std::string>{};
        }
        if (!strtab_address || *soname_index >= strtab_size) {
            return fail(ErrorCode::bad_format, name_ + ": DT_SONAME outside DT_STRTAB");
        }
        auto strtab_offset = offset_of_address(*strtab_address);
        auto bytes = mapping_.bytes();
        if (!strtab_offset || *strtab_offset >= bytes.size() ||
            bytes.size() - *strtab_offset < strtab_size) {
            return fail(ErrorCode::bad_format, name_ + ": DT_STRTAB outside the file");
        }
        const char* strtab = reinterpret_cast<const char*>(bytes.data()) + *strtab_offset;
        std::size_t available = static_cast<std::size_t>(strtab_size - *soname_index);
        const char* start = strtab + *soname_index;
        std::size_t length = strnlen(start, available);
        if (length == available) {
            return fail(ErrorCode::bad_format, name_ + ": DT_SONAME is not NUL-terminated");
        }
        return std::optional<std::string>(std::string(start, length));
    }
    return std::optional<std::string>{};
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
