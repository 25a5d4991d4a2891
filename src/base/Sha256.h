#pragma once

#include <cstddef>
#include <span>
#include <string>

namespace suture {

// SHA-256 of `bytes` as 64 lowercase hex digits (libsodium's
// crypto_hash_sha256, FIPS 180-4).
std::string sha256_hex(std::span<const std::byte> bytes);

}  // namespace suture
