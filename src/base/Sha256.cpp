#include "base/Sha256.h"

#include <sodium.h>

#include "base/Files.h"

namespace suture {

std::string sha256_hex(std::span<const std::byte> bytes) {
    unsigned char digest[crypto_hash_sha256_BYTES];
    crypto_hash_sha256(digest, reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size());
    return to_hex(digest, sizeof digest);
}

}  // namespace suture
