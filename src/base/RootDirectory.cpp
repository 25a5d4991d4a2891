#include "base/RootDirectory.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace suture {

namespace {

FileIdentity identity_from(const struct stat& info) {
    return FileIdentity{
        .device = static_cast<std::uint64_t>(info.st_dev),
        .inode = static_cast<std::uint64_t>(info.st_ino),
        .modified_ns =
            static_cast<std::int64_t>(info.st_mtim.tv_sec) * 1'000'000'000 + info.st_mtim.tv_nsec,
        .size = static_cast<std::int64_t>(info.st_size),
    };
}

}  // namespace

Result<FileIdentity> identity_of(const UniqueFD& fd, const std::string& name) {
    struct stat info {};
    if (::fstat(fd.get(), &info) != 0) {
        return fail_errno(name + ": fstat", errno);
    }
    return identity_from(info);
}

Result<RootDirectory> RootDirectory::open(const std::string& path) {
    UniqueFD fd(::open(path.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (!fd.is_valid()) {
        return fail_errno(path, errno);
    }
    auto identity = suture::identity_of(fd, path);
    if (!identity) {
        return tl::unexpected(identity.error());
    }
    return RootDirectory(std::move(fd), path, *identity);
}

// glibc 2.36 has no openat2() wrapper. RESOLVE_NO_MAGICLINKS: a
// /proc/self/... link inside the tree would otherwise lead out of it.
int RootDirectory::open_inside(const std::string& path, int flags) const {
    open_how how{};
    how.flags = static_cast<std::uint64_t>(flags | O_CLOEXEC);
    how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
    return static_cast<int>(::syscall(SYS_openat2, fd_.get(), path.c_str(), &how, sizeof how));
}

Result<UniqueFD> RootDirectory::open_file(const std::string& path) const {
    UniqueFD fd(open_inside(path, O_RDONLY | O_NONBLOCK | O_NOCTTY));
    if (!fd.is_valid()) {
        return fail_errno(name_ + ":" + path, errno);
    }
    struct stat info {};
    if (::fstat(fd.get(), &info) != 0) {
        return fail_errno(name_ + ":" + path + ": fstat", errno);
    }
    if (!S_ISREG(info.st_mode)) {
        return fail(ErrorCode::bad_format, name_ + ":" + path + ": not a regular file");
    }
    return fd;
}

std::optional<FileIdentity> RootDirectory::identity_of(const std::string& path) const {
    UniqueFD fd(open_inside(path, O_PATH));
    struct stat info {};
    if (!fd.is_valid() || ::fstat(fd.get(), &info) != 0) {
        return std::nullopt;
    }
    return identity_from(info);
}

bool RootDirectory::has_directory(const std::string& path) const {
    UniqueFD fd(open_inside(path, O_PATH | O_DIRECTORY));
    return fd.is_valid();
}

}  // namespace suture
