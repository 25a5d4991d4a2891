// libFuzzer target: the feed's metadata parser, which reads bytes from any
// mirror before anything is trusted. Every input must end in a value or an
// Error, never a crash, a hang or a sanitizer report; and every refusal must
// come from an explicit check, never from nlohmann's own exceptions (which
// strict::interpret only catches as a last line of defence).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>

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

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    auto bytes = std::as_bytes(std::span(data, size));
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
    (void)parse_targets(envelope->signed_part, "fuzz");
    (void)parse_patchset_info(envelope->signed_part, "fuzz");
    if (root) {
        (void)verify_signatures(*envelope, *root, Role::root, "fuzz");
        (void)canonical_bytes(root_to_json(*root));
    }
    check_explicit();
    return 0;
}
