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

// An Ed25519 key pair. The secret half is wiped when the object dies and is
// never copied.
class KeyPair {
  public:
    static KeyPair generate();
    // Reads a key file written by save(): JSON {"keytype":"ed25519",
    // "public":HEX,"secret":HEX}. Refuses files others can read.
    static Result<KeyPair> load(const std::string& path);
    // Writes the key file with mode 0600 (never through a more open mode).
    Result<void> save(const std::string& path) const;

    KeyPair(const KeyPair&) = delete;
    KeyPair& operator=(const KeyPair&) = delete;
    KeyPair(KeyPair&& other) noexcept;
    KeyPair& operator=(KeyPair&&) = delete;
    ~KeyPair();

    const PublicKey& public_key() const { return public_; }
    // The detached signature of `message`, as hex.
    std::string sign(std::span<const std::byte> message) const;

  private:
    KeyPair() = default;
    PublicKey public_;
    std::array<unsigned char, crypto_sign_SECRETKEYBYTES> secret_{};
};

// Lowercase hex <-> bytes.
std::string to_hex_string(std::span<const unsigned char> bytes);
bool from_hex_string(const std::string& text, std::span<unsigned char> out);

}  // namespace suture::feed
