#pragma once

#include <array>
#include <span>
#include <string>
#include <vector>

#include <sodium.h>
#include <nlohmann/json.hpp>

#include "base/Error.h"
#include "feed-client/Keys.h"

// The signing half of the feed's keys: only the publisher (`suture-feed`)
// holds private keys, so this lives in the publisher's library and never in
// the client the engine and the daemon link.
namespace suture::feed {

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

// A metadata file: the signed part, signed by `keys` over its canonical
// bytes (Metadata.h).
std::string sign_envelope(const nlohmann::json& signed_part,
                          const std::vector<const KeyPair*>& keys);

}  // namespace suture::feed
