// libFuzzer target: the feed's metadata parser, which reads bytes from any
// mirror before anything is trusted. Every input must end in a value or an
// Error, never a crash, a hang or a sanitizer report; and every refusal must
// come from an explicit check, never from nlohmann's own exceptions (which
// strict::interpret only catches as a last line of defence). The input is
// also a target name (the grammar of docs/feed-format.md, "Target names"),
// and every name the grammar accepts must be safe as a cache path and a URL.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <string>

#include "base/Files.h"
#include "feed-client/Metadata.h"
#include "feed-client/StrictJson.h"

using namespace suture;
using namespace suture::feed;

namespace {

// Aborts (a crash for libFuzzer) if a parser reached a read that did not
// check its type first. The count, not the error message, is the oracle: a
// message quotes the input, which may itself say "unchecked JSON read".
void check_explicit() {
    if (strict::unchecked_reads() != 0) {
        std::abort();
    }
}

bool is_url_character(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '.' || c == '_' || c == '~' || c == '-' || c == '/' || c == '%';
}

// A name the grammar accepts can leave neither the cache nor the
// repository: no empty, "." or ".." component, no absolute path, no
// escapes; its URL holds only unreserved characters and escapes.
void check_name(const std::string& name) {
    if (!target_name_problem(name).empty()) {
        return;
    }
    std::string wrapped = "/" + name + "/";
    if (name.front() == '/' || wrapped.find("//") != std::string::npos ||
        wrapped.find("/./") != std::string::npos || wrapped.find("/../") != std::string::npos ||
        wrapped.find("/.") != std::string::npos || name.find('%') != std::string::npos ||
        name.find('\\') != std::string::npos || name.size() > 255) {
        std::abort();
    }
    std::string url = consistent_target_url(Target{name, 1, std::string(64, 'a'), {}});
    for (char c : url) {
        if (!is_url_character(c)) {
            std::abort();
        }
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    auto bytes = std::as_bytes(std::span(data, size));
    check_name(std::string(reinterpret_cast<const char*>(data), size));
    auto envelope = parse_envelope(bytes, "fuzz");
    if (!envelope) {
        return 0;
    }
    // Interpret the signed part as every role (the client does so only after
    // verifying signatures, but the parsers must be safe on any input), and
    // as one target's custom metadata.
    auto root = parse_root(envelope->signed_part, "fuzz");
    (void)parse_timestamp(envelope->signed_part, "fuzz");
    (void)parse_snapshot(envelope->signed_part, "fuzz");
    auto targets = parse_targets(envelope->signed_part, "fuzz");
    (void)parse_patchset_info(envelope->signed_part, "fuzz");
    if (envelope->signed_part.is_object()) {
        for (const auto& [key, value] : envelope->signed_part.items()) {
            check_name(key);
            (void)parse_patchset_info(value, key);
        }
    }
    // Every target the parser accepts has a canonical name.
    if (targets) {
        for (const Target& target : targets->targets) {
            if (!target_name_problem(target.name).empty()) {
                std::abort();
            }
            check_name(target.name);
        }
    }
    // What the client stores of a verified file parses back to the same
    // canonical bytes.
    auto stored = parse_envelope(bytes_of(verified_envelope_text(*envelope, {})), "stored");
    if (!stored || stored->canonical != envelope->canonical) {
        std::abort();
    }
    if (root) {
        (void)verify_signatures(*envelope, *root, Role::root, "fuzz");
        (void)canonical_bytes(root_to_json(*root));
    }
    check_explicit();
    return 0;
}
