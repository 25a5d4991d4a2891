#include "feed-client/PatchsetInfo.h"

#include <algorithm>

#include "feed-client/StrictJson.h"
#include "feed-client/UtcTime.h"

namespace suture::feed {

namespace {

using json = nlohmann::json;
using namespace strict;

// The rules of the patch file's own metadata (src/patch/PatchFile.cpp), so
// that a target describes only patches the injector could accept.
bool is_patch_id(const std::string& text) {
    return !text.empty() && text.size() <= 63 && std::all_of(text.begin(), text.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-' ||
               c == '+';
    });
}

bool is_lowercase_hex(const std::string& text) {
    return std::all_of(text.begin(), text.end(),
                       [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

std::string build_id_member(const json& custom) {
    std::string build_id = string_member(custom, "build_id");
    if (build_id.size() < 2 || build_id.size() > 128 || build_id.size() % 2 != 0 ||
        !is_lowercase_hex(build_id)) {
        throw Invalid{"\"build_id\" must be 2 to 128 lowercase hex digits, an even number"};
    }
    return build_id;
}

std::string patch_id_member(const json& custom) {
    std::string patch_id = non_empty_string_member(custom, "patch_id");
    if (!is_patch_id(patch_id)) {
        throw Invalid{"\"patch_id\" must be 1 to 63 characters of A-Z a-z 0-9 . _ - +"};
    }
    return patch_id;
}

// Optional "supersedes": other patch ids, each valid, none twice, never the
// patch's own (which would make it hold itself back).
std::vector<std::string> supersedes_member(const json& custom, const std::string& patch_id) {
    if (!custom.contains("supersedes")) {
        return {};
    }
    const json& value = member(custom, "supersedes");
    if (!value.is_array()) {
        throw Invalid{"\"supersedes\" must be an array of patch ids"};
    }
    std::vector<std::string> ids;
    for (const json& id : value) {
        if (!id.is_string() || !is_patch_id(id.get<std::string>())) {
            throw Invalid{
                "\"supersedes\": each must be a patch id of 1 to 63 characters of "
                "A-Z a-z 0-9 . _ - +"};
        }
        std::string text = id.get<std::string>();
        if (text == patch_id) {
            throw Invalid{"\"supersedes\" names the patch's own id " + text};
        }
        if (std::find(ids.begin(), ids.end(), text) != ids.end()) {
            throw Invalid{"\"supersedes\" names " + text + " twice"};
        }
        ids.push_back(std::move(text));
    }
    return ids;
}

}  // namespace

Result<PatchsetInfo> parse_patchset_info(const json& custom, const std::string& name) {
    return interpret<PatchsetInfo>(name + ": custom", [&] {
        require_object(custom);
        PatchsetInfo info;
        info.kind = optional_string_member(custom, "kind");
        if (info.kind == "advisories") {
            info.channel = non_empty_string_member(custom, "channel");
            info.published = utc_member(custom, "published");
            return info;
        }
        if (!info.kind.empty() && info.kind != "patch") {
            throw Invalid{"\"kind\" must be \"patch\" or \"advisories\""};
        }
        info.kind = "patch";
        info.distribution = non_empty_string_member(custom, "distribution");
        info.package = non_empty_string_member(custom, "package");
        info.version = non_empty_string_member(custom, "version");
        info.soname = non_empty_string_member(custom, "soname");
        info.build_id = build_id_member(custom);
        info.patch_id = patch_id_member(custom);
        info.level = static_cast<std::uint32_t>(unsigned_member(custom, "level", 1, 65535));
        info.cves = string_array_member(custom, "cves");
        info.supersedes = supersedes_member(custom, info.patch_id);
        info.channel = non_empty_string_member(custom, "channel");
        info.published = utc_member(custom, "published");
        info.severity = optional_string_member(custom, "severity");
        info.summary = optional_string_member(custom, "summary");
        return info;
    });
}

json patchset_info_to_json(const PatchsetInfo& info) {
    if (info.kind == "advisories") {
        return json{{"kind", info.kind},
                    {"channel", info.channel},
                    {"published", format_utc(info.published)}};
    }
    json custom{{"distribution", info.distribution},
                {"package", info.package},
                {"version", info.version},
                {"soname", info.soname},
                {"build_id", info.build_id},
                {"patch_id", info.patch_id},
                {"level", info.level},
                {"cves", info.cves},
                {"channel", info.channel},
                {"published", format_utc(info.published)},
                {"severity", info.severity},
                {"summary", info.summary}};
    if (!info.supersedes.empty()) {
        custom["supersedes"] = info.supersedes;  // absent when empty, as before the field
    }
    return custom;
}

}  // namespace suture::feed
