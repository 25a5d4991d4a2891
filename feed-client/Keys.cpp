#include "feed-client/Keys.h"

#include "base/Sha256.h"

namespace suture::feed {

std::string to_hex_string(std::span<const unsigned char> bytes) {
    std::string text(bytes.size() * 2 + 1, '\0');
    sodium_bin2hex(text.data(), text.size(), bytes.data(), bytes.size());
    text.pop_back();
    return text;
}

bool from_hex_string(const std::string& text, std::span<unsigned char> out) {
    std::size_t length = 0;
    return text.size() == out.size() * 2 &&
           sodium_hex2bin(out.data(), out.size(), text.data(), text.size(), nullptr, &length,
                          nullptr) == 0 &&
           length == out.size();
}

std::string PublicKey::hex() const {
    return to_hex_string(bytes);
}

std::string PublicKey::key_id() const {
    return sha256_hex(std::as_bytes(std::span(bytes)));
}

Result<PublicKey> PublicKey::from_hex(const std::string& text) {
    PublicKey key;
    if (!from_hex_string(text, key.bytes)) {
        return fail(ErrorCode::bad_format, "public key: expected 64 hex digits");
    }
    return key;
}

bool signature_is_valid(const PublicKey& key, std::span<const std::byte> message,
                        const std::string& signature_hex) {
    std::array<unsigned char, crypto_sign_BYTES> signature{};
    if (!from_hex_string(signature_hex, signature)) {
        return false;
    }
    return crypto_sign_verify_detached(signature.data(),
                                       reinterpret_cast<const unsigned char*>(message.data()),
                                       message.size(), key.bytes.data()) == 0;
}

}  // namespace suture::feed
