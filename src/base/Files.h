#pragma once

#include <sys/types.h>

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "base/Error.h"
#include "base/UniqueFD.h"

namespace suture {

// Opens `path` read-only with O_CLOEXEC.
Result<UniqueFD> open_read_only(const std::string& path);

// Reads a whole (small, usually /proc) file into a string. Reads until EOF in
// one pass, so a /proc file is read in one consistent snapshot per read().
Result<std::string> read_file(const std::string& path);

// Reads a regular file of at most `max_size` bytes: anything else (a FIFO, a
// device such as /dev/zero, a directory, a larger file) is an error of kind
// bad_format that says so, found without blocking and without reading more
// than `max_size` + 1 bytes. For paths a caller chose (sutured's Apply): a
// single-threaded daemon must not hang on a FIFO or read an endless device.
Result<std::string> read_regular_file(const std::string& path, std::size_t max_size);

// Lowercase hex of `size` bytes at `data`.
std::string to_hex(const unsigned char* data, std::size_t size);

// An address as "0x7f3a1c200000".
std::string hex_address(std::uint64_t address);

// Writes `bytes` to `path` through a temporary file in the same directory,
// fsync and rename, so a reader never sees half a file and an interrupted
// write leaves the old file in place.
Result<void> write_file_atomically(const std::string& path, std::span<const std::byte> bytes,
                                   mode_t mode = 0644);

// The bytes of a string, for APIs that take bytes.
inline std::span<const std::byte> bytes_of(const std::string& text) {
    return std::as_bytes(std::span(text.data(), text.size()));
}

// mkdir -p: creates `path` and any missing parents with `mode`.
Result<void> make_directories(const std::string& path, mode_t mode);

// rm -rf, best effort: removes `path` and everything under it.
void remove_tree(const std::string& path);

// The names in `directory` except "." and "..", sorted; empty if it cannot
// be read.
std::vector<std::string> directory_entries(const std::string& directory);

}  // namespace suture
