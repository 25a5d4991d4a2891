#include "proc/MappedHeaders.h"

#include <elf.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "base/Files.h"
#include "base/UniqueFD.h"

namespace suture {

namespace {

// Reads `size` bytes at `address`; an error unless every byte was read.
Result<std::vector<unsigned char>> read_at(int fd, std::uint64_t address, std::size_t size,
                                           const std::string& what) {
    std::vector<unsigned char> bytes(size);
    ssize_t got = ::pread(fd, bytes.data(), size, static_cast<off_t>(address));
    if (got < 0) {
        return fail_errno(what, errno);
    }
    if (static_cast<std::size_t>(got) != size) {
        return fail(ErrorCode::bad_format, what + ": short read");
    }
    return bytes;
}

// The build ID from a PT_NOTE segment's bytes; "" if none there.
std::string build_id_in_notes(const std::vector<unsigned char>& notes) {
    std::size_t at = 0;
    while (at + sizeof(Elf64_Nhdr) <= notes.size()) {
        Elf64_Nhdr header;
        std::memcpy(&header, notes.data() + at, sizeof header);
        std::size_t name_at = at + sizeof header;
        std::size_t desc_at = name_at + ((header.n_namesz + 3) & ~3U);
        std::size_t next = desc_at + ((header.n_descsz + 3) & ~3U);
        if (next > notes.size()) {
            break;
        }
        if (header.n_type == NT_GNU_BUILD_ID && header.n_namesz == 4 &&
            std::memcmp(notes.data() + name_at, "GNU", 4) == 0) {
            return to_hex(notes.data() + desc_at, header.n_descsz);
        }
        at = next;
    }
    return "";
}

// An address from the dynamic section: ld.so rewrites some (DT_STRTAB) to
// absolute addresses in place; others stay relative to the base.
std::uint64_t absolute(std::uint64_t value, std::uint64_t base) {
    return value < base ? base + value : value;
}

// DT_SONAME of the object, from its dynamic section at `dynamic` (size bytes).
Result<std::optional<std::string>> soname_from_dynamic(int fd, std::uint64_t base,
                                                       std::uint64_t dynamic, std::size_t size,
                                                       const std::string& what) {
    auto entries = read_at(fd, dynamic, size, what + ": dynamic section");
    if (!entries) {
        return tl::unexpected(entries.error());
    }
    std::uint64_t strtab = 0;
    std::optional<std::uint64_t> soname;
    for (std::size_t at = 0; at + sizeof(Elf64_Dyn) <= entries->size(); at += sizeof(Elf64_Dyn)) {
        Elf64_Dyn entry;
        std::memcpy(&entry, entries->data() + at, sizeof entry);
        if (entry.d_tag == DT_NULL) {
            break;
        }
        if (entry.d_tag == DT_STRTAB) {
            strtab = absolute(entry.d_un.d_ptr, base);
        } else if (entry.d_tag == DT_SONAME) {
            soname = entry.d_un.d_val;
        }
    }
    if (!soname || strtab == 0) {
        return std::optional<std::string>{};
    }
    auto text = read_at(fd, strtab + *soname, 256, what + ": soname");
    if (!text) {
        return tl::unexpected(text.error());
    }
    auto end = std::find(text->begin(), text->end(), '\0');
    if (end == text->end()) {
        return fail(ErrorCode::bad_format, what + ": soname is not terminated");
    }
    return std::optional<std::string>(std::string(text->begin(), end));
}

}  // namespace

Result<MappedElfIdentity> read_mapped_elf_identity(int pid, std::uint64_t base) {
    std::string what = "pid " + std::to_string(pid) + ": mapped headers at " + hex_address(base);
    std::string path = "/proc/" + std::to_string(pid) + "/mem";
    UniqueFD fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd.is_valid()) {
        return fail_errno(path, errno);
    }
    // 1. The ELF header.
    auto header_bytes = read_at(fd.get(), base, sizeof(Elf64_Ehdr), what);
    if (!header_bytes) {
        return tl::unexpected(header_bytes.error());
    }
    Elf64_Ehdr header;
    std::memcpy(&header, header_bytes->data(), sizeof header);
    if (std::memcmp(header.e_ident, ELFMAG, SELFMAG) != 0 || header.e_ident[EI_CLASS] != ELFCLASS64 ||
        header.e_type != ET_DYN || header.e_phentsize != sizeof(Elf64_Phdr) || header.e_phnum > 256) {
        return fail(ErrorCode::bad_format, what + ": not a loaded 64-bit ELF shared object");
    }
    // 2. The program headers (in the first page, which the loader maps).
    auto program_bytes = read_at(fd.get(), base + header.e_phoff,
                                 header.e_phnum * sizeof(Elf64_Phdr), what + ": program headers");
    if (!program_bytes) {
        return tl::unexpected(program_bytes.error());
    }
    // 3. PT_NOTE for the build ID, PT_DYNAMIC for the soname. Addresses are
    //    the base plus p_vaddr (a shared object is linked at 0).
    MappedElfIdentity identity;
    for (std::size_t i = 0; i < header.e_phnum; ++i) {
        Elf64_Phdr segment;
        std::memcpy(&segment, program_bytes->data() + i * sizeof segment, sizeof segment);
        if (segment.p_type == PT_NOTE && identity.build_id.empty() && segment.p_memsz <= 65536) {
            auto notes = read_at(fd.get(), base + segment.p_vaddr, segment.p_memsz, what + ": notes");
            if (notes) {
                identity.build_id = build_id_in_notes(*notes);
            }
        } else if (segment.p_type == PT_DYNAMIC && segment.p_memsz <= 65536) {
            auto soname = soname_from_dynamic(fd.get(), base, base + segment.p_vaddr,
                                              segment.p_memsz, what);
            if (!soname) {
                return tl::unexpected(soname.error());
            }
            identity.soname = *soname;
        }
    }
    if (identity.build_id.empty()) {
        return fail(ErrorCode::bad_format, what + ": no GNU build ID note");
    }
    return identity;
}

}  // namespace suture
