#include "feed-client/Advisories.h"

#include <algorithm>

#include "feed-client/StrictJson.h"

namespace suture::feed {

namespace {

using json = nlohmann::json;
using namespace strict;

AdvisoryStatus status_member(const json& entry) {
    std::string status = non_empty_string_member(entry, "status");
    for (AdvisoryStatus known : {AdvisoryStatus::patched, AdvisoryStatus::not_affected,
                                 AdvisoryStatus::not_live_patchable, AdvisoryStatus::open}) {
        if (advisory_status_name(known) == status) {
            return known;
        }
    }
    throw Invalid{"\"status\" must be patched, not_affected, not_live_patchable or open, not \"" +
                  status + "\""};
}

Advisory read_advisory(const json& entry) {
    require_object(entry);
    Advisory advisory;
    advisory.cve = non_empty_string_member(entry, "id");
    advisory.severity = optional_string_member(entry, "severity");
    advisory.summary = optional_string_member(entry, "summary");
    advisory.fixed_in = optional_string_member(entry, "fixed_in");
    advisory.status = status_member(entry);
    advisory.patch_id = optional_string_member(entry, "patch_id");
    advisory.reason = optional_string_member(entry, "reason");
    if (advisory.status == AdvisoryStatus::patched && advisory.patch_id.empty()) {
        throw Invalid{advisory.cve + ": a patched CVE needs \"patch_id\""};
    }
    return advisory;
}

AdvisoryBuild read_build(const json& entry) {
    require_object(entry);
    AdvisoryBuild build;
    build.build_id = non_empty_string_member(entry, "build_id");
    if (!std::all_of(build.build_id.begin(), build.build_id.end(),
                     [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); })) {
        throw Invalid{"\"build_id\" must be lowercase hex"};
    }
    build.soname = non_empty_string_member(entry, "soname");
    build.distribution = non_empty_string_member(entry, "distribution");
    build.package = non_empty_string_member(entry, "package");
    build.version = non_empty_string_member(entry, "version");
    for (const json& cve : array_member(entry, "cves")) {
        build.cves.push_back(read_advisory(cve));
    }
    std::sort(build.cves.begin(), build.cves.end(),
              [](const Advisory& a, const Advisory& b) { return a.cve < b.cve; });
    return build;
}

}  // namespace

std::string advisory_status_name(AdvisoryStatus status) {
    switch (status) {
        case AdvisoryStatus::patched:
            return "patched";
        case AdvisoryStatus::not_affected:
            return "not_affected";
        case AdvisoryStatus::not_live_patchable:
            return "not_live_patchable";
        case AdvisoryStatus::open:
            return "open";
    }
    return "open";
}

Result<Advisories> parse_advisories(const json& document, const std::string& name) {
    return interpret<Advisories>(name, [&] {
        require_object(document);
        if (string_member(document, "format") != "suture-advisories") {
            throw Invalid{"\"format\" must be \"suture-advisories\""};
        }
        if (unsigned_member(document, "format_version", 0, ~std::uint64_t{0}) != 1) {
            throw Invalid{"unknown \"format_version\" (this suture reads 1)"};
        }
        Advisories advisories;
        advisories.generator = optional_string_member(document, "generator");
        for (const json& entry : array_member(document, "builds")) {
            AdvisoryBuild build = read_build(entry);
            std::string build_id = build.build_id;
            if (!advisories.builds.emplace(build_id, std::move(build)).second) {
                throw Invalid{"build " + build_id + " listed twice"};
            }
        }
        return advisories;
    });
}

Result<Advisories> parse_advisories_text(const std::string& text, const std::string& name) {
    if (text.size() > max_advisories_size) {
        return fail(ErrorCode::too_large, name + ": larger than " +
                                              std::to_string(max_advisories_size) + " bytes");
    }
    json document = json::parse(text, nullptr, false);
    if (document.is_discarded()) {
        return fail(ErrorCode::bad_format, name + ": not JSON");
    }
    return parse_advisories(document, name);
}

}  // namespace suture::feed
