#include "proc/Process.h"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <memory>

#include "base/Files.h"

namespace suture {

namespace {

std::uint64_t namespace_inode(const std::string& path) {
    struct stat st {};
    return ::stat(path.c_str(), &st) == 0 ? st.st_ino : 0;
}

}  // namespace

namespace {

// The numeric entries of a /proc directory (PIDs or TIDs), ascending; the
// directory's errno if it cannot be opened.
Result<std::vector<int>> numeric_entries(const std::string& directory, int errno_if_missing) {
    std::unique_ptr<DIR, int (*)(DIR*)> dir(::opendir(directory.c_str()), ::closedir);
    if (!dir) {
        return fail_errno(directory, errno == ENOENT ? errno_if_missing : errno);
    }
    std::vector<int> ids;
    while (const dirent* entry = ::readdir(dir.get())) {
        int id = 0;
        std::string_view name(entry->d_name);
        auto [end, ec] = std::from_chars(name.data(), name.data() + name.size(), id);
        if (ec == std::errc{} && end == name.data() + name.size() && id > 0) {
            ids.push_back(id);
        }
    }
    std::sort(ids.begin(), ids.end());
    return ids;
}

}  // namespace

Result<std::vector<int>> list_process_ids() {
    return numeric_entries("/proc", ENOENT);
}

Result<std::vector<int>> list_thread_ids(int pid) {
    auto tids = numeric_entries("/proc/" + std::to_string(pid) + "/task", ESRCH);
    if (!tids) {
        return fail_errno("pid " + std::to_string(pid), tids.error().errno_value);
    }
    return tids;
}

Result<std::uint64_t> parse_start_time(std::string_view stat_text) {
    std::size_t close = stat_text.rfind(')');
    if (close == std::string_view::npos) {
        return fail(ErrorCode::bad_format, "stat: no ')' after comm");
    }
    std::string_view rest = stat_text.substr(close + 1);
    // After ')' come fields 3, 4, …; the start time is field 22.
    for (int field = 3; field < 22; ++field) {
        std::size_t space = rest.find(' ', 1);
        if (space == std::string_view::npos) {
            return fail(ErrorCode::bad_format, "stat: fewer than 22 fields");
        }
        rest.remove_prefix(space);
    }
    while (!rest.empty() && rest.front() == ' ') {
        rest.remove_prefix(1);
    }
    std::uint64_t start_time = 0;
    auto [end, ec] = std::from_chars(rest.data(), rest.data() + rest.size(), start_time);
    if (ec != std::errc{} || end == rest.data()) {
        return fail(ErrorCode::bad_format, "stat: field 22 is not a number");
    }
    return start_time;
}

Result<ProcessInfo> read_process_info(int pid) {
    std::string dir = "/proc/" + std::to_string(pid);
    std::string subject = "pid " + std::to_string(pid);
    ProcessInfo info;
    info.pid = pid;

    auto stat_text = read_file(dir + "/stat");
    if (!stat_text) {
        return tl::unexpected(with_context(stat_text.error(), subject));
    }
    auto start_time = parse_start_time(*stat_text);
    if (!start_time) {
        return tl::unexpected(with_context(start_time.error(), subject));
    }
    info.start_time = *start_time;

    // The comm field sits between the first '(' and the last ')'; reading it
    // here rather than from /proc/PID/comm saves one read per process.
    std::size_t open = stat_text->find('(');
    std::size_t close = stat_text->rfind(')');
    if (open != std::string::npos && close > open) {
        info.comm = stat_text->substr(open + 1, close - open - 1);
    }
    info.mount_namespace = namespace_inode(dir + "/ns/mnt");
    return info;
}

std::uint64_t own_mount_namespace() {
    return namespace_inode("/proc/self/ns/mnt");
}

std::string executable_path(int pid) {
    char path[4096];
    ssize_t length =
        ::readlink(("/proc/" + std::to_string(pid) + "/exe").c_str(), path, sizeof path - 1);
    return length > 0 ? std::string(path, static_cast<std::size_t>(length)) : "";
}

Result<ExecutableFile> open_executable(int pid) {
    ExecutableFile file;
    file.path = "/proc/" + std::to_string(pid) + "/exe";
    auto fd = open_read_only(file.path);
    if (!fd) {
        return tl::unexpected(fd.error());
    }
    struct stat info {};
    if (::fstat(fd->get(), &info) != 0) {
        return fail_errno(file.path, errno);
    }
    file.fd = std::move(*fd);
    file.device = static_cast<std::uint64_t>(info.st_dev);
    file.inode = static_cast<std::uint64_t>(info.st_ino);
    file.modified = static_cast<std::int64_t>(info.st_mtime);
    return file;
}

std::string unit_from_cgroup(std::string_view cgroup_text) {
    std::string unit;
    while (!cgroup_text.empty()) {
        std::size_t end = cgroup_text.find('\n');
        std::string_view line = cgroup_text.substr(0, end);
        cgroup_text.remove_prefix(end == std::string_view::npos ? cgroup_text.size() : end + 1);
        if (!line.starts_with("0::") && line.find(":name=systemd:") == std::string_view::npos) {
            continue;
        }
        // "hierarchy:controllers:path": the path follows the second ':'.
        std::size_t second_colon = line.find(':', line.find(':') + 1);
        std::string_view path = line.substr(second_colon + 1);
        while (!path.empty()) {
            std::size_t slash = path.find('/');
            std::string_view part = path.substr(0, slash);
            if (part.ends_with(".service") || part.ends_with(".scope")) {
                unit = std::string(part);
            }
            path.remove_prefix(slash == std::string_view::npos ? path.size() : slash + 1);
        }
    }
    return unit;
}

std::string systemd_unit(int pid) {
    auto text = read_file("/proc/" + std::to_string(pid) + "/cgroup");
    return text ? unit_from_cgroup(*text) : "";
}

}  // namespace suture
