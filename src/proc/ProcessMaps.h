#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/Error.h"

namespace suture {

// One line of /proc/PID/maps. Format: proc(5), "/proc/pid/maps".
struct Mapping {
    std::uint64_t start = 0;
    std::uint64_t end = 0;
    bool readable = false;
    bool writable = false;
    bool executable = false;
    bool shared = false;
    std::uint64_t offset = 0;
    unsigned dev_major = 0;
    unsigned dev_minor = 0;
    std::uint64_t inode = 0;
    // The pathname as the kernel shows it, relative to the process's root,
    // with the " (deleted)" suffix removed (see `deleted`). Empty for
    // anonymous memory; "[heap]", "[vdso]" … for special mappings.
    std::string path;
    bool deleted = false;

    // Backed by a file (as opposed to anonymous or special memory).
    bool is_file() const { return inode != 0 && !path.empty() && path[0] == '/'; }

    // The entry name of this mapping in /proc/PID/map_files/.
    std::string map_files_name() const;
};

// Parses the whole text of a maps file. Fails on the first malformed line,
// naming it; the kernel never writes one, so it means a parser bug or a
// non-maps input.
Result<std::vector<Mapping>> parse_maps(std::string_view text);

// The mapping that contains `address`, or nullptr.
const Mapping* find_mapping(const std::vector<Mapping>& mappings, std::uint64_t address);

// Reads and parses /proc/PID/maps.
Result<std::vector<Mapping>> read_process_maps(int pid);

}  // namespace suture
