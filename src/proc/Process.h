#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/Error.h"
#include "base/UniqueFD.h"

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

// The path of the executable `pid` runs (/proc/PID/exe, as the process's
// mount namespace names it); empty if unreadable (gone, or no permission).
std::string executable_path(int pid);

// The file behind /proc/PID/exe, opened, with what identifies its contents
// (device, inode, modification time): a cache key that changes when the
// file is replaced.
struct ExecutableFile {
    UniqueFD fd;
    std::string path;  // /proc/PID/exe, for messages
    std::uint64_t device = 0;
    std::uint64_t inode = 0;
    std::int64_t modified = 0;  // Unix seconds
};
Result<ExecutableFile> open_executable(int pid);

// The systemd unit a process runs in ("nginx.service"): the last .service
// or .scope component of its cgroup path; empty if none.
std::string systemd_unit(int pid);
// The same out of the text of /proc/PID/cgroup (cgroup v2 "0::/a/b.service"
// or v1 "1:name=systemd:/a/b.service" lines).
std::string unit_from_cgroup(std::string_view cgroup_text);

}  // namespace suture
