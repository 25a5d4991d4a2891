#include "feed-client/KeyPair.h"

#include <sys/stat.h>

#include "base/Files.h"
#include "feed-client/Metadata.h"
#include "feed-client/StrictJson.h"

namespace suture::feed {

namespace {

// Key files hold a private key: one others can read is refused.
Result<void> check_private(const std::string& path) {
    struct stat info {};
    if (::stat(path.c_str(), &info) != 0) {
        return fail_errno(path, errno);
    }
    if ((info.st_mode & 077) != 0) {
        return fail(ErrorCode::permission_denied,
                    path + ": a private key readable by others (mode " +
                        std::to_string(info.st_mode & 0777) + "); chmod 600 it");
    }
    return {};
}

}  // namespace

KeyPair KeyPair::generate() {
    KeyPair pair;
    crypto_sign_keypair(pair.public_.bytes.data(), pair.secret_.data());
    return pair;
}

KeyPair::KeyPair(KeyPair&& other) noexcept : public_(other.public_), secret_(other.secret_) {
    sodium_memzero(other.secret_.data(), other.secret_.size());
}

KeyPair::~KeyPair() {
    sodium_memzero(secret_.data(), secret_.size());
}

std::string KeyPair::sign(std::span<const std::byte> message) const {
    std::array<unsigned char, crypto_sign_BYTES> signature{};
    crypto_sign_detached(signature.data(), nullptr,
                         reinterpret_cast<const unsigned char*>(message.data()), message.size(),
                         secret_.data());
    return to_hex_string(signature);
}

Result<KeyPair> KeyPair::load(const std::string& path) {
    if (auto private_file = check_private(path); !private_file) {
        return tl::unexpected(private_file.error());
    }
    auto text = read_file(path);
    if (!text) {
        return tl::unexpected(text.error());
    }
    KeyPair pair;
    auto document = nlohmann::json::parse(*text, nullptr, false);
    sodium_memzero(text->data(), text->size());
    auto read = strict::interpret<bool>(path, [&] {
        bool good = strict::string_member(document, "keytype") == "ed25519" &&
                    from_hex_string(strict::string_member(document, "public"), pair.public_.bytes);
        std::string secret_hex = strict::string_member(document, "secret");
        good = good && from_hex_string(secret_hex, pair.secret_);
        sodium_memzero(secret_hex.data(), secret_hex.size());
        return good;
    });
    if (!read) {
        return tl::unexpected(read.error());
    }
    if (!*read) {
        return fail(ErrorCode::bad_format, path + ": not an ed25519 key file");
    }
    // The public half must belong to the secret half (libsodium keeps it in
    // the last 32 bytes of the secret key).
    if (sodium_memcmp(pair.secret_.data() + 32, pair.public_.bytes.data(), 32) != 0) {
        return fail(ErrorCode::bad_format, path + ": public and secret key do not match");
    }
    return pair;
}

Result<void> KeyPair::save(const std::string& path) const {
    std::string secret_hex = to_hex_string(secret_);
    std::string text =
        nlohmann::json{{"keytype", "ed25519"}, {"public", public_.hex()}, {"secret", secret_hex}}
            .dump(2) +
        "\n";
    auto written = write_file_atomically(path, bytes_of(text), 0600);
    sodium_memzero(secret_hex.data(), secret_hex.size());
    sodium_memzero(text.data(), text.size());
    return written;
}

std::string sign_envelope(const nlohmann::json& signed_part,
                          const std::vector<const KeyPair*>& keys) {
    std::string canonical = canonical_bytes(signed_part);
    auto message = bytes_of(canonical);
    nlohmann::json signatures = nlohmann::json::array();
    for (const KeyPair* key : keys) {
        signatures.push_back({{"keyid", key->public_key().key_id()}, {"sig", key->sign(message)}});
    }
    return nlohmann::json{{"signatures", signatures}, {"signed", signed_part}}.dump(1) + "\n";
}

}  // namespace suture::feed
