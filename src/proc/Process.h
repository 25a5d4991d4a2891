#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/Error.h"

namespace suture {

// Identity of one process as /proc shows it. A PID alone can be reused; the
// pair (pid, start_time) cannot.
struct ProcessInfo {
    int pid = 0;
    std::string comm;                   // /proc/PID/comm, without the newline
    std::uint64_t start_time = 0;       // /proc/PID/stat field 22, clock ticks since boot
    std::uint64_t mount_namespace = 0;  // inode of /proc/PID/ns/mnt, 0 if unreadable
};

// Every process (thread group) now in /proc, in ascending PID order.
Result<std::vector<int>> list_process_ids();

// The thread IDs of `pid` now (/proc/PID/task), ascending. Error not_found
// (ESRCH) when the process is gone.
Result<std::vector<int>> list_thread_ids(int pid);

// Reads comm, start time and namespace of `pid`. Error not_found when the
// process exited meanwhile.
Result<ProcessInfo> read_process_info(int pid);

// The inode of /proc/self/ns/mnt: processes whose value differs live in
// another mount namespace (a container or a chroot made with unshare).
std::uint64_t own_mount_namespace();

// Parses the start time (field 22) out of the text of /proc/PID/stat. The
// comm field (2) may hold spaces and parentheses, so fields are counted from
// the last ')'.
Result<std::uint64_t> parse_start_time(std::string_view stat_text);

}  // namespace suture
