#pragma once

#include <cstdint>
#include <ctime>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/Error.h"

namespace suture::feed {

// What a host needs to choose a patch without opening it: the "custom"
// metadata of a target, signed by the targets role (docs/feed-format.md,
// "Target names and custom metadata"). Parsed once, strictly, when the
// targets metadata is interpreted; nothing after that reads the JSON.
struct PatchsetInfo {
    std::string distribution;  // "debian-12"
    std::string package;       // the library's binary package, "libssl3"
    std::string version;       // its source version, "3.0.20-1~deb12u2"
    std::string soname;        // "libcrypto.so.3"
    std::string build_id;      // the build it patches: lowercase hex, as in the patch file
    std::string patch_id;      // "CVE-2026-63076": as in the patch file
    std::uint32_t level = 1;   // 1..65535, as in the patch file
    std::vector<std::string> cves;
    std::string channel;        // "stable" or "testing" (docs/feed-format.md, "Channels")
    std::time_t published = 0;  // Unix time
    std::string severity;       // optional: "" when the publisher gave none
    std::string summary;        // optional
    // "patch" (the default: custom without "kind") or "advisories": the
    // feed's advisory data (feed-client/Advisories.h), whose custom has only
    // kind, channel and published; its other fields stay empty, level 1.
    std::string kind = "patch";
    // Patch ids of the same build whose fixes this patch carries too (a
    // cumulative patch, for functions several fixes change): optional, each
    // a valid patch id other than patch_id, no duplicates. `suture update`
    // applies this one instead of them and replaces them where they are
    // active; a superseded id's CVEs count as patched where this one is
    // active (docs/feed-format.md, "Superseding patches").
    std::vector<std::string> supersedes;
};

// Interprets one target's custom metadata (`custom`: the JSON value, null
// when the target has none). Every field is checked for presence, type and
// range; anything else is bad_format "NAME: custom: what". Unknown fields
// are ignored (a newer publisher may add some).
Result<PatchsetInfo> parse_patchset_info(const nlohmann::json& custom, const std::string& name);

// The custom metadata the publisher signs: every field, so that
// parse_patchset_info(patchset_info_to_json(info)) gives `info` back.
nlohmann::json patchset_info_to_json(const PatchsetInfo& info);

}  // namespace suture::feed
