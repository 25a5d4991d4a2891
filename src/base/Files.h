#pragma once

#include <string>

#include "base/Error.h"
#include "base/UniqueFD.h"

namespace suture {

// Opens `path` read-only with O_CLOEXEC.
Result<UniqueFD> open_read_only(const std::string& path);

// Reads a whole (small, usually /proc) file into a string. Reads until EOF in
// one pass, so a /proc file is read in one consistent snapshot per read().
Result<std::string> read_file(const std::string& path);

// Lowercase hex of `size` bytes at `data`.
std::string to_hex(const unsigned char* data, std::size_t size);

}  // namespace suture
