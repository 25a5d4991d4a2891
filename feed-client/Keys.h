#pragma once

#include <array>
#include <cstddef>
#include <span>
#include <string>

#include <sodium.h>

#include "base/Error.h"

namespace suture::feed {

// An Ed25519 public key (libsodium crypto_sign, RFC 8032) and its key ID:
// the SHA-256 of the 32 public key bytes, as hex (what role definitions in
// root metadata list).
struct PublicKey {
    std::array<unsigned char, crypto_sign_PUBLICKEYBYTES> bytes{};

    std::string hex() const;
    std::string key_id() const;
    static Result<PublicKey> from_hex(const std::string& text);
};

// Does `signature` (64 bytes, hex) sign exactly `message` under `key`?
bool signature_is_valid(const PublicKey& key, std::span<const std::byte> message,
                        const std::string& signature_hex);

// Lowercase hex <-> bytes.
std::string to_hex_string(std::span<const unsigned char> bytes);
bool from_hex_string(const std::string& text, std::span<unsigned char> out);

}  // namespace suture::feed
