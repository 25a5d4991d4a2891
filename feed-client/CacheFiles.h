#pragma once

#include <cstdint>
#include <string>

#include "base/Error.h"
#include "base/UniqueFD.h"

// Files the feed client reads back from its own cache (or from a file://
// repository): never more than a cap, only regular files, never through a
// symlink, never blocking on a FIFO or a device. What the cache directories
// must be (owner, mode, no symlink): docs/security-model.md, "The feed cache".
namespace suture::feed {

// Opens `path` for reading with O_NONBLOCK (a FIFO does not block the
// open) and, when `follow` is false, O_NOFOLLOW; then fstat: anything but a
// regular file is refused (io "not a regular file"). A missing file is
// not_found.
Result<UniqueFD> open_regular_file(const std::string& path, bool follow);

// The whole of a regular file (open_regular_file, no symlink), if it has
// at most `cap` bytes; too_large otherwise, before reading it.
Result<std::string> read_capped(const std::string& path, std::uint64_t cap);

// Length and SHA-256 (lowercase hex) of a regular file of at most `cap`
// bytes, read in chunks, never held whole in memory. When `copy_to` is a
// valid descriptor, the bytes hashed are also written to it, so that a copy
// is exactly the bytes that were checked.
struct FileDigest {
    std::uint64_t length = 0;
    std::string sha256;
};
Result<FileDigest> digest_regular_file(const std::string& path, std::uint64_t cap,
                                       int copy_to = -1);

// The same for an open descriptor, read from offset 0.
Result<FileDigest> digest_descriptor(int fd, const std::string& name, std::uint64_t cap,
                                     int copy_to = -1);

// A directory of the cache must be a real directory (not a symlink), owned
// by the caller or by root, and writable by nobody else. A missing one is
// fine (it will be created 0700). Refusals are permission_denied.
Result<void> check_private_directory(const std::string& path);

}  // namespace suture::feed
