#include "feed-client/CacheFiles.h"

#include <fcntl.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <vector>

#include "base/Files.h"

namespace suture::feed {

namespace {

constexpr std::size_t chunk_size = 64 << 10;

Result<void> write_all(int fd, const unsigned char* data, std::size_t size,
                       const std::string& name) {
    while (size > 0) {
        ssize_t written = ::write(fd, data, size);
        if (written < 0) {
            if (errno == EINTR) {
                continue;
            }
            return fail_errno(name + ": write", errno);
        }
        data += written;
        size -= static_cast<std::size_t>(written);
    }
    return {};
}

}  // namespace

Result<UniqueFD> open_regular_file(const std::string& path, bool follow) {
    int flags = O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY | (follow ? 0 : O_NOFOLLOW);
    // 1. Refuse a special file before opening it (opening a device can
    // have effects of its own); fstat below closes the race.
    struct stat before {};
    int status = follow ? ::stat(path.c_str(), &before) : ::lstat(path.c_str(), &before);
    if (status != 0) {
        return errno == ENOENT ? fail(ErrorCode::not_found, path + ": not found")
                               : fail_errno(path, errno);
    }
    if (!S_ISREG(before.st_mode)) {
        return fail(ErrorCode::io, path + ": not a regular file");
    }
    // 2. Open without blocking and check what was opened.
    UniqueFD fd(::open(path.c_str(), flags));
    if (!fd.is_valid()) {
        if (errno == ENOENT) {
            return fail(ErrorCode::not_found, path + ": not found");
        }
        return errno == ELOOP ? fail(ErrorCode::io, path + ": not a regular file (a symlink)")
                              : fail_errno(path, errno);
    }
    struct stat opened {};
    if (::fstat(fd.get(), &opened) != 0) {
        return fail_errno(path, errno);
    }
    if (!S_ISREG(opened.st_mode)) {
        return fail(ErrorCode::io, path + ": not a regular file");
    }
    return fd;
}

Result<std::string> read_capped(const std::string& path, std::uint64_t cap) {
    auto fd = open_regular_file(path, false);
    if (!fd) {
        return tl::unexpected(fd.error());
    }
    struct stat st {};
    if (::fstat(fd->get(), &st) != 0) {
        return fail_errno(path, errno);
    }
    if (static_cast<std::uint64_t>(st.st_size) > cap) {
        return fail(ErrorCode::too_large,
                    path + ": more than " + std::to_string(cap) + " bytes (size cap)");
    }
    std::string text;
    std::vector<char> chunk(chunk_size);
    for (;;) {
        ssize_t got = ::read(fd->get(), chunk.data(), chunk.size());
        if (got < 0 && errno == EINTR) {
            continue;
        }
        if (got < 0) {
            return fail_errno(path + ": read", errno);
        }
        if (got == 0) {
            return text;
        }
        if (text.size() + static_cast<std::size_t>(got) > cap) {  // it grew meanwhile
            return fail(ErrorCode::too_large,
                        path + ": more than " + std::to_string(cap) + " bytes (size cap)");
        }
        text.append(chunk.data(), static_cast<std::size_t>(got));
    }
}

Result<FileDigest> digest_descriptor(int fd, const std::string& name, std::uint64_t cap,
                                     int copy_to) {
    if (::lseek(fd, 0, SEEK_SET) != 0) {
        return fail_errno(name + ": seek", errno);
    }
    crypto_hash_sha256_state state;
    crypto_hash_sha256_init(&state);
    FileDigest digest;
    std::vector<unsigned char> chunk(chunk_size);
    for (;;) {
        ssize_t got = ::read(fd, chunk.data(), chunk.size());
        if (got < 0 && errno == EINTR) {
            continue;
        }
        if (got < 0) {
            return fail_errno(name + ": read", errno);
        }
        if (got == 0) {
            break;
        }
        digest.length += static_cast<std::uint64_t>(got);
        if (digest.length > cap) {
            return fail(ErrorCode::too_large,
                        name + ": more than " + std::to_string(cap) + " bytes (size cap)");
        }
        crypto_hash_sha256_update(&state, chunk.data(), static_cast<unsigned long long>(got));
        if (copy_to >= 0) {
            if (auto written = write_all(copy_to, chunk.data(), static_cast<std::size_t>(got), name);
                !written) {
                return tl::unexpected(written.error());
            }
        }
    }
    unsigned char hash[crypto_hash_sha256_BYTES];
    crypto_hash_sha256_final(&state, hash);
    digest.sha256 = to_hex(hash, sizeof hash);
    return digest;
}

Result<FileDigest> digest_regular_file(const std::string& path, std::uint64_t cap, int copy_to) {
    auto fd = open_regular_file(path, false);
    if (!fd) {
        return tl::unexpected(fd.error());
    }
    return digest_descriptor(fd->get(), path, cap, copy_to);
}

Result<void> check_private_directory(const std::string& path) {
    struct stat st {};
    if (::lstat(path.c_str(), &st) != 0) {
        return errno == ENOENT ? Result<void>{} : fail_errno(path, errno);
    }
    if (S_ISLNK(st.st_mode)) {
        return fail(ErrorCode::permission_denied,
                    path + ": the cache directory is a symlink; refused");
    }
    if (!S_ISDIR(st.st_mode)) {
        return fail(ErrorCode::permission_denied, path + ": the cache directory is not a directory");
    }
    if (st.st_uid != ::geteuid() && st.st_uid != 0) {
        return fail(ErrorCode::permission_denied,
                    path + ": the cache directory is owned by uid " + std::to_string(st.st_uid) +
                        ", neither this user nor root; refused");
    }
    if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0) {
        return fail(ErrorCode::permission_denied,
                    path + ": the cache directory is writable by group or others; refused");
    }
    return {};
}

}  // namespace suture::feed
