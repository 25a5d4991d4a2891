#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "base/Error.h"

namespace suture {

// What the loaded headers of an ELF shared object say about it, read from
// the process's memory.
struct MappedElfIdentity {
    std::string build_id;               // lowercase hex of the NT_GNU_BUILD_ID note
    std::optional<std::string> soname;  // DT_SONAME, nullopt if it has none
};

// Reads the build ID and soname of the shared object mapped at `base` (its
// offset-0 mapping) in process `pid` through /proc/PID/mem: the ELF header
// and program headers are in that first page, the PT_NOTE segment holds
// the build ID, PT_DYNAMIC the soname's string table offset.
//
// For an unprivileged caller whose own process maps a deleted library:
// /proc/PID/map_files needs CAP_SYS_ADMIN (or CAP_CHECKPOINT_RESTORE) and
// the path is gone, but /proc/PID/mem only needs ptrace access (the same
// user, a dumpable process). Error bad_format when the memory there is not
// a loaded ELF object, permission_denied when mem cannot be read.
Result<MappedElfIdentity> read_mapped_elf_identity(int pid, std::uint64_t base);

}  // namespace suture
