#pragma once

#include <cstdint>
#include <ctime>
#include <map>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/Error.h"
#include "feed-client/Keys.h"
#include "feed-client/PatchsetInfo.h"
#include "feed-client/UtcTime.h"

// The feed's metadata: TUF's four roles (root, targets, snapshot,
// timestamp) as signed JSON documents. Format and rules: docs/feed-format.md.
// Spec the model follows: The Update Framework specification 1.0
// (https://theupdateframework.github.io/specification/latest/).
namespace suture::feed {

inline constexpr std::size_t max_metadata_size = 1 << 20;  // any role's file
inline constexpr std::size_t max_timestamp_size = 16 << 10;
// Any target file: the largest patch file src/patch/PatchFile accepts (1 MiB
// of metadata, a 64 MiB object) and room for its container. A target whose
// signed length is larger is refused before any download.
inline constexpr std::uint64_t max_target_size = 66 << 20;

enum class Role { root, targets, snapshot, timestamp };
std::string role_name(Role role);

// A role's keys and how many of them must sign.
struct RoleKeys {
    std::vector<std::string> key_ids;
    std::uint32_t threshold = 1;
};

// The fields every role's signed part has.
struct Common {
    std::uint64_t version = 0;
    std::time_t expires = 0;  // Unix time
};

struct Root : Common {
    std::map<std::string, PublicKey> keys;  // key ID -> key
    std::map<Role, RoleKeys> roles;
};

// What a role says about another file: its version and, optionally, its
// length and SHA-256 (TUF's METAFILES / TARGETS entries).
struct FileInfo {
    std::uint64_t version = 0;  // metadata files only
    std::uint64_t length = 0;
    std::string sha256;  // lowercase hex; empty if not given
};

struct Timestamp : Common {
    FileInfo snapshot;  // meta["snapshot.json"]
};

struct Snapshot : Common {
    FileInfo targets;  // meta["targets.json"]
};

// One patch file the feed offers, with the custom metadata a host needs to
// choose it without opening it.
struct Target {
    std::string name;  // e.g. "debian-12/openssl/3.0.20-1~deb12u2/CVE-2026-63076.suture"
    std::uint64_t length = 0;
    std::string sha256;
    PatchsetInfo info;  // its "custom", parsed
};

// A target whose custom metadata is malformed: the rest of the targets
// metadata still holds, this one target is never downloaded nor used.
struct RefusedTarget {
    std::string name;
    std::uint64_t length = 0;
    std::string sha256;
    Error error;  // bad_format "NAME: custom: what"
};

struct Targets : Common {
    std::vector<Target> targets;         // sorted by name
    std::vector<RefusedTarget> refused;  // sorted by name
};

// Target names (docs/feed-format.md, "Target names"): one canonical form.
// 1 to 255 bytes of path components joined by '/'; each component 1 to 128
// characters of A-Z a-z 0-9 . _ + ~ -, not starting with '.' (so no "." or
// ".." component, no hidden file); no empty component (no leading,
// trailing or double '/'); no escapes of any kind. Returns what is wrong,
// or "" for a canonical name.
std::string target_name_problem(const std::string& name);

// Where the repository keeps a target's file (consistent snapshots,
// docs/feed-format.md): targets/DIRNAME/SHA256.BASENAME, relative to it.
std::string consistent_target_path(const Target& target);
// The same as a relative URL: each component percent-escaped (RFC 3986:
// all but the unreserved characters).
std::string consistent_target_url(const Target& target);

// A parsed metadata file: the signed part (as parsed JSON and as the exact
// canonical bytes the signatures cover) and its signatures.
struct Envelope {
    nlohmann::json signed_part;
    std::string canonical;                                        // canonical_bytes(signed_part)
    std::vector<std::pair<std::string, std::string>> signatures;  // (key ID, signature hex)
};

// The canonical form signatures cover: keys sorted bytewise, no whitespace,
// integers only (floats are refused when parsing), strings UTF-8 with only
// the escapes JSON requires.
std::string canonical_bytes(const nlohmann::json& value);

// Parses a metadata file's bytes into an Envelope. Checks the shape only
// ("signed" object, "signatures" array of {keyid, sig}); nothing inside
// "signed" is interpreted before verify_signatures().
Result<Envelope> parse_envelope(std::span<const std::byte> bytes, const std::string& name);

// Do at least `threshold` distinct keys of `role` (as `root` defines it)
// sign the envelope's canonical bytes? A key counts once however many
// signatures carry its ID; unknown key IDs and bad signatures count zero.
// `valid`, if given, receives the signatures that verified (key ID ->
// signature), also when there are too few.
using ValidSignatures = std::map<std::string, std::string>;
Result<void> verify_signatures(const Envelope& envelope, const Root& root, Role role,
                               const std::string& name, ValidSignatures* valid = nullptr);

// What the client stores of a verified file it has no hash of (the
// timestamp, each root): the canonical signed part and only the signatures
// that verified, in canonical form, so that no byte a mirror chose (extra
// whitespace, unknown members, bogus signatures) reaches the cache.
std::string verified_envelope_text(const Envelope& envelope, const ValidSignatures& valid);

// Interpret a verified signed part. Each checks "_type", the field types
// and ranges, and refuses anything else. parse_targets refuses a target
// with malformed custom metadata on its own (Targets::refused).
Result<Root> parse_root(const nlohmann::json& signed_part, const std::string& name);
Result<Timestamp> parse_timestamp(const nlohmann::json& signed_part, const std::string& name);
Result<Snapshot> parse_snapshot(const nlohmann::json& signed_part, const std::string& name);
Result<Targets> parse_targets(const nlohmann::json& signed_part, const std::string& name);

// The signed parts: the inverse of the parsers, for the publisher (and for
// tests). targets_to_json writes Targets::targets only.
nlohmann::json root_to_json(const Root& root);
nlohmann::json timestamp_to_json(const Timestamp& timestamp);
nlohmann::json snapshot_to_json(const Snapshot& snapshot);
nlohmann::json targets_to_json(const Targets& targets);

}  // namespace suture::feed
