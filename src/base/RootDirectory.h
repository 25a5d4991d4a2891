// Files of another process's file system tree, opened the way that process
// would see them.
#pragma once

#include <compare>
#include <cstdint>
#include <optional>
#include <string>

#include "base/Error.h"
#include "base/UniqueFD.h"

namespace suture {

// What identifies one version of a file's contents: a package upgrade or a
// rebuild writes a new inode (or at least a new mtime or size).
struct FileIdentity {
    std::uint64_t device = 0;
    std::uint64_t inode = 0;
    std::int64_t modified_ns = 0;  // st_mtim in nanoseconds since the epoch
    std::int64_t size = 0;

    auto operator<=>(const FileIdentity&) const = default;
};

// The identity of the file open on `fd` (fstat); error io if fstat fails.
Result<FileIdentity> identity_of(const UniqueFD& fd, const std::string& name);

// A directory that stands for "/" of some process: /proc/PID/root, or the
// top of a chroot tree. Every path is resolved inside it with openat2's
// RESOLVE_IN_ROOT, so "..", and symlinks, absolute ones included, never
// leave it, just as they cannot for a process chrooted there.
//
// Opening never blocks: files are opened O_NONBLOCK (a FIFO planted where a
// library should be opens at once and is then refused as not regular).
class RootDirectory {
  public:
    // Opens `path` (a directory) as the root. `path` is resolved normally
    // (it is usually /proc/PID/root, a magic link to the process's root).
    static Result<RootDirectory> open(const std::string& path);

    // The identity of the root directory itself: two processes with equal
    // identities see the same tree.
    const FileIdentity& identity() const { return identity_; }
    const std::string& name() const { return name_; }

    // Opens the regular file at `path` (absolute, inside the root) for
    // reading. Error not_found when nothing is there, bad_format when it is
    // not a regular file.
    Result<UniqueFD> open_file(const std::string& path) const;

    // The identity of whatever is at `path` (a file or a directory), or
    // nullopt when nothing is there (or it cannot be reached).
    std::optional<FileIdentity> identity_of(const std::string& path) const;

    // Is there a directory at `path`?
    bool has_directory(const std::string& path) const;

  private:
    RootDirectory(UniqueFD fd, std::string name, FileIdentity identity)
        : fd_(std::move(fd)), name_(std::move(name)), identity_(identity) {}
    // openat2(RESOLVE_IN_ROOT) of `path` with `flags`; -1 and errno on failure.
    int open_inside(const std::string& path, int flags) const;

    UniqueFD fd_;
    std::string name_;
    FileIdentity identity_;
};

}  // namespace suture
