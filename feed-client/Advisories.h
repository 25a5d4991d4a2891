#pragma once

#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/Error.h"

namespace suture::feed {

// The advisory data of a feed (docs/feed-format.md, "Advisory data"): per
// library build ID, the CVEs known for it and what suture can do about each.
// Published by `suture-feed advisories` as one signed target whose custom
// metadata has "kind": "advisories"; generated from the coverage data
// (patchsets/openssl/coverage.json) by distro-support/generate-advisories.

// What the feed knows of one CVE in one build.
enum class AdvisoryStatus {
    patched,             // a live patch exists: `patch_id`
    not_affected,        // the build does not contain the flaw: `reason`
    not_live_patchable,  // no live patch will be made: restart after upgrading
    open,                // no live patch (yet): restart after upgrading
};
std::string advisory_status_name(AdvisoryStatus status);

struct Advisory {
    std::string cve;       // "CVE-2026-84782"
    std::string severity;  // upstream's: "High", "Moderate", "Low" ("" if unknown)
    std::string summary;
    std::string fixed_in;  // first fixed build of the same release, or "openssl 3.0.22"
    AdvisoryStatus status = AdvisoryStatus::open;
    std::string patch_id;  // patched only: the live patch's id
    std::string reason;    // not_affected / not_live_patchable: why
};

// One library build (a file with one GNU build ID) and its CVEs.
struct AdvisoryBuild {
    std::string build_id;  // lowercase hex
    std::string soname;
    std::string distribution;
    std::string package;
    std::string version;
    std::vector<Advisory> cves;  // sorted by CVE id
};

struct Advisories {
    std::string generator;
    std::map<std::string, AdvisoryBuild> builds;  // by build ID
};

// Parses an advisory document (format "suture-advisories", format_version
// 1), strictly: a missing field, a wrong type or an unknown status is
// bad_format "NAME: what". Unknown fields are ignored.
Result<Advisories> parse_advisories(const nlohmann::json& document, const std::string& name);
// The same from the file's bytes.
Result<Advisories> parse_advisories_text(const std::string& text, const std::string& name);

// The largest advisory file a client reads.
inline constexpr std::size_t max_advisories_size = 16 * 1024 * 1024;

}  // namespace suture::feed
