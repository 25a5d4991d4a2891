#include "inject/RemoteUnwinder.h"

#include <elf.h>
#include <libunwind.h>

#include <sys/ptrace.h>
#include <sys/user.h>

#include <cstring>
#include <optional>

#include "base/Files.h"

// libunwind's DWARF table search, exported by libunwind-x86_64.so (it is
// what libunwind-ptrace's own find_proc_info calls) but not declared in its
// public headers.
extern "C" int _Ux86_64_dwarf_search_unwind_table(unw_addr_space_t space, unw_word_t ip,
                                                  unw_dyn_info_t* table, unw_proc_info_t* info,
                                                  int need_unwind_info, void* argument);

namespace suture {

namespace {

constexpr std::uint64_t page_size = 4096;

// DWARF pointer encodings used in .eh_frame_hdr (LSB, "DWARF Extensions",
// .eh_frame_hdr: https://refspecs.linuxfoundation.org/LSB_5.0.0/LSB-Core-generic/LSB-Core-generic/ehframechpt.html).
constexpr std::uint8_t pe_format_mask = 0x0f;
constexpr std::uint8_t pe_udata4 = 0x03;
constexpr std::uint8_t pe_sdata4 = 0x0b;
constexpr std::uint8_t pe_datarel_sdata4 = 0x3b;

// Where one object's binary-search table of FDEs is, in the process.
struct UnwindTable {
    std::uint64_t start = 0;  // the object's lowest and highest mapped address
    std::uint64_t end = 0;
    std::uint64_t header = 0;  // address of .eh_frame_hdr (the table's data-relative base)
    std::uint64_t fde_count = 0;
};

}  // namespace

struct RemoteUnwinder::Session {
    const std::vector<Mapping>& mappings;
    const RemoteMemory& memory;
    // Pages read during this stop: nothing in the process changes meanwhile.
    std::map<std::uint64_t, std::optional<std::vector<std::byte>>> pages;
    // Unwind tables by the object's load base; nullopt: the object has none.
    std::map<std::uint64_t, std::optional<UnwindTable>> tables;
    // The thread being unwound.
    user_regs_struct registers{};
    // Lookups that found no unwind information, and the last one's reason.
    int failed_lookups = 0;
    std::string last_failure;

    Session(const std::vector<Mapping>& mappings_in, const RemoteMemory& memory_in)
        : mappings(mappings_in), memory(memory_in) {}

    const std::vector<std::byte>* page_at(std::uint64_t address) {
        std::uint64_t start = address & ~(page_size - 1);
        auto [entry, inserted] = pages.try_emplace(start);
        if (inserted) {
            if (auto bytes = memory.read(RemoteAddress(start), page_size)) {
                entry->second = std::move(*bytes);
            }
        }
        return entry->second ? &*entry->second : nullptr;
    }

    bool read(std::uint64_t address, void* out, std::size_t size) {
        auto* bytes = static_cast<std::byte*>(out);
        while (size > 0) {
            const std::vector<std::byte>* page = page_at(address);
            if (page == nullptr) {
                return false;
            }
            std::size_t in_page = address & (page_size - 1);
            std::size_t chunk = std::min<std::size_t>(size, page_size - in_page);
            std::memcpy(bytes, page->data() + in_page, chunk);
            bytes += chunk;
            address += chunk;
            size -= chunk;
        }
        return true;
    }

    template <typename T>
    std::optional<T> read_value(std::uint64_t address) {
        T value;
        if (!read(address, &value, sizeof value)) {
            return std::nullopt;
        }
        return value;
    }

    // The load base of the object that `code` (an executable mapping)
    // belongs to: the lowest offset-0 mapping of the same file; for an
    // anonymous or special mapping (the vDSO), the mapping itself.
    std::uint64_t load_base_of(const Mapping& code) const {
        if (!code.is_file()) {
            return code.start;
        }
        std::uint64_t base = UINT64_MAX;
        for (const Mapping& mapping : mappings) {
            if (mapping.inode == code.inode && mapping.dev_major == code.dev_major &&
                mapping.dev_minor == code.dev_minor && mapping.offset == 0 &&
                mapping.start <= code.start) {
                base = std::min(base, mapping.start);
            }
        }
        return base;
    }

    // The object's extent: every mapping of the same file (or the single
    // special mapping).
    std::pair<std::uint64_t, std::uint64_t> extent_of(const Mapping& code) const {
        if (!code.is_file()) {
            return {code.start, code.end};
        }
        std::uint64_t start = UINT64_MAX;
        std::uint64_t end = 0;
        for (const Mapping& mapping : mappings) {
            if (mapping.inode == code.inode && mapping.dev_major == code.dev_major &&
                mapping.dev_minor == code.dev_minor) {
                start = std::min(start, mapping.start);
                end = std::max(end, mapping.end);
            }
        }
        return {start, end};
    }

    // Reads the ELF and program headers at `base` and the .eh_frame_hdr
    // they point to. nullopt (with `why`) when any of it is missing.
    std::optional<UnwindTable> read_table(std::uint64_t base, const Mapping& code,
                                          std::string& why) {
        auto header = read_value<Elf64_Ehdr>(base);
        if (!header || std::memcmp(header->e_ident, ELFMAG, SELFMAG) != 0 ||
            header->e_ident[EI_CLASS] != ELFCLASS64 || header->e_phentsize != sizeof(Elf64_Phdr) ||
            header->e_phnum == 0 || header->e_phnum > 256) {
            why = "no ELF header mapped at " + hex_address(base);
            return std::nullopt;
        }
        std::vector<Elf64_Phdr> segments(header->e_phnum);
        if (!read(base + header->e_phoff, segments.data(), segments.size() * sizeof(Elf64_Phdr))) {
            why = "program headers not mapped";
            return std::nullopt;
        }
        std::uint64_t lowest_load = UINT64_MAX;
        const Elf64_Phdr* eh_frame_hdr = nullptr;
        for (const Elf64_Phdr& segment : segments) {
            if (segment.p_type == PT_LOAD) {
                lowest_load = std::min(lowest_load, segment.p_vaddr);
            } else if (segment.p_type == PT_GNU_EH_FRAME) {
                eh_frame_hdr = &segment;
            }
        }
        if (eh_frame_hdr == nullptr || lowest_load == UINT64_MAX) {
            why = "the object has no .eh_frame_hdr";
            return std::nullopt;
        }
        std::uint64_t bias = base - (lowest_load & ~(page_size - 1));
        UnwindTable table;
        table.header = bias + eh_frame_hdr->p_vaddr;
        // version, eh_frame_ptr encoding, fde_count encoding, table encoding
        auto encodings = read_value<std::array<std::uint8_t, 4>>(table.header);
        if (!encodings || (*encodings)[0] != 1 || (*encodings)[3] != pe_datarel_sdata4) {
            why = "unsupported .eh_frame_hdr at " + hex_address(table.header);
            return std::nullopt;
        }
        auto four_bytes = [](std::uint8_t encoding) {
            std::uint8_t format = encoding & pe_format_mask;
            return format == pe_udata4 || format == pe_sdata4;
        };
        if (!four_bytes((*encodings)[1]) || !four_bytes((*encodings)[2])) {
            why = "unsupported .eh_frame_hdr encodings at " + hex_address(table.header);
            return std::nullopt;
        }
        auto fde_count = read_value<std::uint32_t>(table.header + 8);
        if (!fde_count) {
            why = ".eh_frame_hdr not readable";
            return std::nullopt;
        }
        table.fde_count = *fde_count;
        std::tie(table.start, table.end) = extent_of(code);
        return table;
    }

    // The unwind table covering `ip`, or nullptr with `last_failure` set.
    const UnwindTable* table_for(std::uint64_t ip) {
        const Mapping* code = find_mapping(mappings, ip);
        if (code == nullptr || !code->executable) {
            last_failure = hex_address(ip) + " is not in executable memory";
            return nullptr;
        }
        std::uint64_t base = load_base_of(*code);
        if (base == UINT64_MAX) {
            last_failure = hex_address(ip) + ": no mapping of the start of " + code->path;
            return nullptr;
        }
        auto [entry, inserted] = tables.try_emplace(base);
        std::string why;
        if (inserted) {
            entry->second = read_table(base, *code, why);
        }
        if (!entry->second) {
            std::string where = code->path.empty() ? "anonymous memory" : code->path;
            last_failure = hex_address(ip) + " in " + where + ": " +
                           (why.empty() ? "no unwind information" : why);
            return nullptr;
        }
        return &*entry->second;
    }
};

namespace {

using Session = RemoteUnwinder::Session;

Session& session_of(void* argument) {
    return *static_cast<Session*>(argument);
}

int find_proc_info(unw_addr_space_t space, unw_word_t ip, unw_proc_info_t* info,
                   int need_unwind_info, void* argument) {
    Session& session = session_of(argument);
    const UnwindTable* table = session.table_for(ip);
    if (table == nullptr) {
        ++session.failed_lookups;
        return -UNW_ENOINFO;
    }
    unw_dyn_info_t search{};
    search.start_ip = table->start;
    search.end_ip = table->end;
    search.format = UNW_INFO_FORMAT_REMOTE_TABLE;
    search.u.rti.segbase = table->header;
    search.u.rti.table_data = table->header + 12;
    // Two 32-bit values per entry, counted in words.
    search.u.rti.table_len = table->fde_count * 8 / sizeof(unw_word_t);
    int status = _Ux86_64_dwarf_search_unwind_table(space, ip, &search, info, need_unwind_info,
                                                    argument);
    if (status < 0) {
        ++session.failed_lookups;
        session.last_failure = hex_address(ip) + ": no unwind information (libunwind error " +
                               std::to_string(status) + ")";
    }
    return status;
}

void put_unwind_info(unw_addr_space_t, unw_proc_info_t*, void*) {
    // libunwind frees what its DWARF search allocated itself; this accessor
    // is only called for dynamically registered unwind info, never ours.
}

int get_dyn_info_list_addr(unw_addr_space_t, unw_word_t*, void*) {
    return -UNW_ENOINFO;  // OpenSSL's users register no dynamic unwind info
}

int access_mem(unw_addr_space_t, unw_word_t address, unw_word_t* value, int write,
               void* argument) {
    if (write != 0) {
        return -UNW_EINVAL;  // the unwinder only reads
    }
    return session_of(argument).read(address, value, sizeof *value) ? 0 : -UNW_EINVAL;
}

// The general registers in libunwind's x86-64 numbering (UNW_X86_64_RAX …
// UNW_X86_64_RIP), from PTRACE_GETREGS.
int access_reg(unw_addr_space_t, unw_regnum_t number, unw_word_t* value, int write,
               void* argument) {
    if (write != 0) {
        return -UNW_EREADONLYREG;
    }
    const user_regs_struct& r = session_of(argument).registers;
    const unsigned long long by_number[] = {r.rax, r.rdx, r.rcx, r.rbx, r.rsi, r.rdi,
                                            r.rbp, r.rsp, r.r8,  r.r9,  r.r10, r.r11,
                                            r.r12, r.r13, r.r14, r.r15, r.rip};
    if (number < 0 || static_cast<std::size_t>(number) >= std::size(by_number)) {
        return -UNW_EBADREG;
    }
    *value = by_number[number];
    return 0;
}

int access_fpreg(unw_addr_space_t, unw_regnum_t, unw_fpreg_t*, int, void*) {
    return -UNW_EBADREG;  // never needed to find return addresses
}

int resume(unw_addr_space_t, unw_cursor_t*, void*) {
    return -UNW_EINVAL;  // the unwinder never runs the thread
}

int get_proc_name(unw_addr_space_t, unw_word_t, char*, std::size_t, unw_word_t*, void*) {
    return -UNW_ENOINFO;
}

unw_accessors_t accessors = {find_proc_info, put_unwind_info, get_dyn_info_list_addr,
                             access_mem,     access_reg,      access_fpreg,
                             resume,         get_proc_name};

struct AddressSpaceDeleter {
    void operator()(unw_addr_space* space) const { unw_destroy_addr_space(space); }
};

}  // namespace

RemoteUnwinder::RemoteUnwinder(const std::vector<Mapping>& mappings, const RemoteMemory& memory)
    : session_(std::make_unique<Session>(mappings, memory)) {}

RemoteUnwinder::~RemoteUnwinder() = default;

Result<CallChain> RemoteUnwinder::unwind(int tid, int max_frames) {
    Session& session = *session_;
    CallChain chain;
    if (::ptrace(PTRACE_GETREGS, tid, nullptr, &session.registers) != 0) {
        chain.incomplete_reason = "cannot read its registers: " + std::string(std::strerror(errno));
        return chain;
    }
    // One address space per thread: libunwind caches what it learnt per
    // address space, and a fresh one costs nothing next to the reads.
    std::unique_ptr<unw_addr_space, AddressSpaceDeleter> space(
        unw_create_addr_space(&accessors, 0));
    if (!space) {
        return fail(ErrorCode::io, "libunwind: cannot create an address space");
    }
    unw_cursor_t cursor;
    int status = unw_init_remote(&cursor, space.get(), &session);
    if (status < 0) {
        chain.incomplete_reason = "libunwind error " + std::to_string(status) + " at its PC";
        return chain;
    }
    for (int depth = 0;; ++depth) {
        unw_word_t ip = 0;
        unw_get_reg(&cursor, UNW_REG_IP, &ip);
        chain.frames.push_back(ip);
        if (depth + 1 >= max_frames) {
            chain.incomplete_reason = "more than " + std::to_string(max_frames) + " frames";
            return chain;
        }
        int failures_before = session.failed_lookups;
        status = unw_step(&cursor);
        std::string frame = "frame #" + std::to_string(depth) + " at " + hex_address(ip);
        // libunwind falls back to guesses (frame pointers, "the end") where
        // a lookup found nothing; a guess is never a complete unwind.
        if (session.failed_lookups != failures_before) {
            chain.incomplete_reason = frame + ": " + session.last_failure;
            return chain;
        }
        if (status < 0) {
            chain.incomplete_reason = frame + ": libunwind error " + std::to_string(status);
            return chain;
        }
        if (status == 0) {
            chain.complete = true;  // the tables mark this frame outermost
            return chain;
        }
        // After a step the cursor's stack pointer is the caller's, which
        // libunwind sets to the CFA of the frame just left.
        unw_word_t cfa = 0;
        unw_get_reg(&cursor, UNW_REG_SP, &cfa);
        chain.cfas.push_back(cfa);
    }
}

}  // namespace suture
