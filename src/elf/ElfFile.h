#pragma once

#include <gelf.h>
#include <libelf.h>

#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "base/Error.h"
#include "base/MappedFile.h"
#include "base/UniqueFD.h"

namespace suture {

// The message of libelf's last error.
std::string libelf_message();

// Tells libelf which ELF version we understand; must precede any other
// libelf call. Cheap to call again. False if libelf refuses.
bool initialise_libelf();

// A read-only view of one ELF file through libelf, built from the program
// headers (what the dynamic loader maps), so it also works on libraries whose
// section headers were stripped.
//
// Spec: System V gABI, "Program Header" and "Dynamic Section"
// (https://refspecs.linuxfoundation.org/elf/gabi4+/contents.html); the GNU
// build-ID note is NT_GNU_BUILD_ID in note name "GNU".
class ElfFile {
  public:
    // Maps the file open on `fd` and checks that it is an ELF file. The
    // descriptor may be closed afterwards. `name` is used in error messages.
    static Result<ElfFile> open(const UniqueFD& fd, std::string name);

    ElfFile(ElfFile&&) noexcept = default;
    ElfFile& operator=(ElfFile&&) noexcept = default;

    const std::string& name() const { return name_; }

    // Is this a shared object or PIE (e_type ET_DYN)?
    bool is_shared_object() const;

    // The GNU build ID as lowercase hex, read from the PT_NOTE segments.
    // Error not_found if the file has none.
    Result<std::string> build_id() const;

    // DT_SONAME from the PT_DYNAMIC segment, or nullopt when the file has no
    // dynamic section or no SONAME (executables, plugins).
    Result<std::optional<std::string>> soname() const;

    // The DT_NEEDED entries (libraries the loader maps before the program
    // runs), in order; empty for a static executable.
    Result<std::vector<std::string>> needed() const;

    // What glibc's dynamic loader reads of a file to find what it needs
    // (elf/dl-load.c): its class and machine, PT_INTERP and the search
    // entries of PT_DYNAMIC, as raw strings ($ORIGIN not expanded).
    struct LoadingInfo {
        // ELFCLASS64, little-endian, EM_X86_64: what ld-linux-x86-64.so.2
        // maps. The loader skips any other candidate and searches on.
        bool native = false;
        std::optional<std::string> interpreter;  // PT_INTERP; nullopt: no loader runs
        std::optional<std::string> soname;
        std::vector<std::string> needed;
        // DT_RPATH, nullopt when the file also has a DT_RUNPATH: the loader
        // then ignores it (elf/get-dynamic-info.h).
        std::optional<std::string> rpath;
        std::optional<std::string> runpath;
        bool no_default_libraries = false;  // DF_1_NODEFLIB: no ld.so.cache, no default dirs
    };
    Result<LoadingInfo> loading_info() const;

    // The first NUL-terminated string starting with "OpenSSL " and a digit in
    // a read-only, non-executable loaded segment: the text OpenSSL_version()
    // returns, e.g. "OpenSSL 3.0.20 16 Jan 2026". libssl holds none.
    std::optional<std::string> openssl_version_text() const;

    // A symbol of .symtab or .dynsym.
    struct Symbol {
        std::string name;
        std::uint64_t value = 0;  // for a shared object: offset from the load base
        std::uint64_t size = 0;
        unsigned char type = STT_NOTYPE;
        unsigned char binding = STB_LOCAL;
        bool defined = false;  // st_shndx != SHN_UNDEF
        // Symbol version: for a defined .dynsym symbol its version definition
        // ("OPENSSL_3.0.0"), for an undefined one the version it needs
        // ("GLIBC_2.14"); empty if unversioned.
        std::string version;
        bool hidden_version = false;  // a non-default version (name@VER, not name@@VER)
    };

    // The symbols of .dynsym with their versions (needs section headers).
    Result<std::vector<Symbol>> dynamic_symbols() const;

    // The symbols of .symtab (the full table of an unstripped file, locals
    // included); empty if the file has none.
    Result<std::vector<Symbol>> static_symbols() const;

    // The library's PLT entries by the name of the symbol each one jumps to:
    // name -> offset of the entry from the load base. Read from .rela.plt
    // (R_X86_64_JUMP_SLOT: which GOT slot holds which symbol) and the
    // `jmp *slot(%rip)` of each 16-byte entry of .plt.sec (IBT builds) or
    // .plt. Calling an entry is calling the symbol exactly as the library's
    // own code does, IFUNCs and interposition included. Needs section headers.
    Result<std::map<std::string, std::uint64_t>> plt_entries() const;

    // The program headers.
    const std::vector<GElf_Phdr>& segments() const { return segments_; }

    // The lowest p_vaddr of the PT_LOAD segments (0 for ordinary shared
    // libraries; the link address for a non-PIE executable).
    std::uint64_t lowest_load_address() const;

    // e_entry: the program's entry point as a link-time address.
    std::uint64_t entry_address() const;

    // The bytes at file offset `offset`, or an error if out of range.
    Result<std::span<const std::byte>> bytes_at(std::uint64_t offset, std::uint64_t size) const;

    // File offset of virtual address `vaddr`, through the PT_LOAD segments.
    std::optional<std::size_t> offset_of_address(std::uint64_t vaddr) const;

  private:
    struct ElfEnd {
        void operator()(Elf* elf) const { elf_end(elf); }
    };
    using ElfHandle = std::unique_ptr<Elf, ElfEnd>;

    ElfFile(std::string name, MappedFile mapping, ElfHandle elf, std::vector<GElf_Phdr> segments)
        : name_(std::move(name)),
          mapping_(std::move(mapping)),
          elf_(std::move(elf)),
          segments_(std::move(segments)) {}

    Result<std::vector<Symbol>> read_symbols(Elf64_Word section_type) const;
    // Every string of the PT_DYNAMIC entries with `tag` (DT_SONAME, DT_NEEDED).
    Result<std::vector<std::string>> dynamic_strings(std::int64_t tag) const;
    // The value of the first PT_DYNAMIC entry with `tag`, nullopt if none.
    std::optional<std::uint64_t> dynamic_value(std::int64_t tag) const;
    // The first string of entry `tag` (DT_SONAME, DT_RPATH), nullopt if none.
    Result<std::optional<std::string>> dynamic_string(std::int64_t tag) const;
    // The NUL-terminated contents of PT_INTERP, nullopt if none.
    std::optional<std::string> interpreter() const;

    std::string name_;
    MappedFile mapping_;  // declared before elf_: unmapped only after elf_end()
    ElfHandle elf_;
    std::vector<GElf_Phdr> segments_;  // the program headers, read once
};

}  // namespace suture
