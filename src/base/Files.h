#pragma once

#include <cstdint>
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

// An address as "0x7f3a1c200000".
std::string hex_address(std::uint64_t address);

}  // namespace suture
