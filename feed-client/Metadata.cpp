#include "feed-client/Metadata.h"

#include <algorithm>
#include <cctype>
#include <set>

#include "base/Files.h"
#include "feed-client/StrictJson.h"

namespace suture::feed {

namespace {

using json = nlohmann::json;

using namespace strict;

constexpr std::uint64_t max_version = std::uint64_t{1} << 53;
constexpr std::uint64_t max_length = std::uint64_t{1} << 40;

bool is_name_character(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '.' || c == '_' || c == '+' || c == '~' || c == '-';
}

// A name for a message: control characters and non-ASCII as \xNN, at most
// 100 characters.
std::string printable(const std::string& text) {
    std::string out;
    for (char c : text.substr(0, 100)) {
        auto byte = static_cast<unsigned char>(c);
        if (byte < 0x20 || byte >= 0x7f || c == '"' || c == '\\') {
            out += "\\x" + to_hex(&byte, 1);
        } else {
            out += c;
        }
    }
    return text.size() > 100 ? out + "..." : out;
}

// RFC 3986 percent-escape of one path component.
std::string url_escaped(const std::string& component) {
    std::string out;
    for (char c : component) {
        bool unreserved = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                          (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '~' || c == '-';
        if (unreserved) {
            out += c;
        } else {
            auto byte = static_cast<unsigned char>(c);
            std::string hex = to_hex(&byte, 1);
            out += '%';
            out += static_cast<char>(std::toupper(hex[0]));
            out += static_cast<char>(std::toupper(hex[1]));
        }
    }
    return out;
}

bool is_sha256_hex(const std::string& text) {
    return text.size() == 64 && std::all_of(text.begin(), text.end(), [](char c) {
               return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
           });
}

void read_common(const json& signed_part, const char* type, Common& common) {
    if (string_member(signed_part, "_type") != type) {
        throw Invalid{std::string("\"_type\" is not \"") + type + "\""};
    }
    if (string_member(signed_part, "spec_version").rfind("1.", 0) != 0) {
        throw Invalid{"unsupported \"spec_version\""};
    }
    common.version = unsigned_member(signed_part, "version", 1, max_version);
    common.expires = utc_member(signed_part, "expires");
}

json common_to_json(const char* type, const Common& common) {
    return json{{"_type", type},
                {"spec_version", "1.0"},
                {"version", common.version},
                {"expires", format_utc(common.expires)}};
}

// A METAFILES or TARGETS entry: {version?, length?, hashes?: {sha256}}.
FileInfo read_file_info(const json& entry, bool with_version) {
    require_object(entry);
    FileInfo info;
    if (with_version) {
        info.version = unsigned_member(entry, "version", 0, max_version);
    }
    if (entry.contains("length")) {
        info.length = unsigned_member(entry, "length", 0, max_length);
    }
    if (entry.contains("hashes")) {
        info.sha256 = string_member(object_member(entry, "hashes"), "sha256");
        if (!is_sha256_hex(info.sha256)) {
            throw Invalid{"\"sha256\" must be 64 lowercase hex digits"};
        }
    }
    return info;
}

// The entry of the file `name` in `meta`, which must give its length and
// hash (the snapshot in the timestamp, the targets in the snapshot).
FileInfo read_described_file(const json& signed_part, const char* name) {
    FileInfo info = read_file_info(member(object_member(signed_part, "meta"), name), true);
    if (info.length == 0 || info.sha256.empty()) {
        throw Invalid{std::string(name) + " needs \"length\" and \"hashes\""};
    }
    return info;
}

json file_info_to_json(const FileInfo& info, bool with_version) {
    json entry = json::object();
    if (with_version) {
        entry["version"] = info.version;
    }
    if (info.length != 0) {
        entry["length"] = info.length;
    }
    if (!info.sha256.empty()) {
        entry["hashes"] = {{"sha256", info.sha256}};
    }
    return entry;
}

const std::map<std::string, Role> role_by_name = {{"root", Role::root},
                                                  {"targets", Role::targets},
                                                  {"snapshot", Role::snapshot},
                                                  {"timestamp", Role::timestamp}};

// root.keys: key ID -> {keytype, scheme, keyval: {public}}.
std::map<std::string, PublicKey> read_keys(const json& signed_part) {
    std::map<std::string, PublicKey> keys;
    for (const auto& [key_id, entry] : object_member(signed_part, "keys").items()) {
        if (string_member(entry, "keytype") != "ed25519" ||
            string_member(entry, "scheme") != "ed25519") {
            throw Invalid{"key " + key_id + ": only ed25519 keys are supported"};
        }
        auto key = PublicKey::from_hex(string_member(object_member(entry, "keyval"), "public"));
        if (!key || key->key_id() != key_id) {
            throw Invalid{"key " + key_id + ": its ID is not the SHA-256 of its public key"};
        }
        keys.emplace(key_id, *key);
    }
    return keys;
}

// root.roles[role]: {keyids, threshold}, every key ID defined in `keys`.
RoleKeys read_role_keys(const json& entry, const std::string& role,
                        const std::map<std::string, PublicKey>& keys) {
    RoleKeys role_keys;
    role_keys.threshold = static_cast<std::uint32_t>(unsigned_member(entry, "threshold", 0, 256));
    for (const json& key_id : array_member(entry, "keyids")) {
        if (!key_id.is_string() || !keys.contains(key_id.get<std::string>())) {
            throw Invalid{role + ": a key ID not defined in \"keys\""};
        }
        role_keys.key_ids.push_back(key_id.get<std::string>());
    }
    if (role_keys.threshold == 0 || role_keys.threshold > role_keys.key_ids.size()) {
        throw Invalid{role + ": threshold must be 1.." + std::to_string(role_keys.key_ids.size())};
    }
    return role_keys;
}

// Target names become file names in the cache and paths of URLs: one
// canonical form only (target_name_problem).
void check_target_name(const std::string& name) {
    if (std::string problem = target_name_problem(name); !problem.empty()) {
        throw Invalid{"bad target name \"" + printable(name) + "\": " + problem};
    }
}

// In the cache, a target is a file and every prefix of its name a
// directory: "a" and "a/b" cannot both be targets.
void check_no_name_is_a_directory(const json& entries) {
    for (const auto& [name, entry] : entries.items()) {
        for (auto slash = name.find('/'); slash != std::string::npos;
             slash = name.find('/', slash + 1)) {
            if (entries.contains(name.substr(0, slash))) {
                throw Invalid{"target \"" + name.substr(0, slash) +
                              "\" is also a directory of \"" + name + "\""};
            }
        }
    }
}

// One entry of targets.targets. Its length and hash belong to TUF and a
// fault there refuses the whole file; a fault in its custom metadata
// refuses this target only.
void read_target(const std::string& name, const json& entry, Targets& targets) {
    check_target_name(name);
    if (!entry.is_object()) {
        throw Invalid{name + ": must be a JSON object"};
    }
    FileInfo file = read_file_info(entry, false);
    if (file.length == 0 || file.sha256.empty()) {
        throw Invalid{name + ": needs \"length\" and \"hashes\""};
    }
    static const json absent;  // null: refused as not an object
    auto info = parse_patchset_info(entry.contains("custom") ? entry.at("custom") : absent, name);
    if (info) {
        targets.targets.push_back(Target{name, file.length, file.sha256, std::move(*info)});
    } else {
        targets.refused.push_back(RefusedTarget{name, file.length, file.sha256, info.error()});
    }
}

// Refuses floats anywhere: their text form is not canonical.
bool has_float(const json& value) {
    if (value.is_number_float()) {
        return true;
    }
    if (value.is_structured()) {
        for (const auto& item : value) {
            if (has_float(item)) {
                return true;
            }
        }
    }
    return false;
}

// The deepest nesting of [ and { outside strings: nlohmann's values free
// themselves recursively, so hostile nesting must be refused before parsing.
std::size_t nesting_depth(std::span<const std::byte> bytes) {
    std::size_t depth = 0;
    std::size_t deepest = 0;
    bool in_string = false;
    bool escaped = false;
    for (std::byte b : bytes) {
        char c = static_cast<char>(b);
        if (in_string) {
            if (escaped) {
                escaped = false;
            } else if (c == '\\') {
                escaped = true;
            } else if (c == '"') {
                in_string = false;
            }
        } else if (c == '"') {
            in_string = true;
        } else if (c == '[' || c == '{') {
            deepest = std::max(deepest, ++depth);
        } else if ((c == ']' || c == '}') && depth > 0) {
            --depth;
        }
    }
    return deepest;
}

constexpr std::size_t max_nesting = 32;

}  // namespace

std::string role_name(Role role) {
    switch (role) {
        case Role::root:
            return "root";
        case Role::targets:
            return "targets";
        case Role::snapshot:
            return "snapshot";
        case Role::timestamp:
            return "timestamp";
    }
    return "?";
}

std::string canonical_bytes(const json& value) {
    // nlohmann's object type is a std::map: keys come out sorted bytewise;
    // dump() without indent writes no whitespace.
    return value.dump(-1, ' ', false, json::error_handler_t::strict);
}

Result<Envelope> parse_envelope(std::span<const std::byte> bytes, const std::string& name) {
    if (bytes.size() > max_metadata_size) {
        return fail(ErrorCode::too_large,
                    name + ": larger than " + std::to_string(max_metadata_size) + " bytes");
    }
    if (nesting_depth(bytes) > max_nesting) {
        return fail(ErrorCode::bad_format,
                    name + ": nested deeper than " + std::to_string(max_nesting) + " levels");
    }
    Envelope envelope;
    json document =
        json::parse(reinterpret_cast<const char*>(bytes.data()),
                    reinterpret_cast<const char*>(bytes.data()) + bytes.size(), nullptr, false);
    if (document.is_discarded() || !document.is_object()) {
        return fail(ErrorCode::bad_format, name + ": not a JSON object");
    }
    if (!document.contains("signed") || !document["signed"].is_object() ||
        !document.contains("signatures") || !document["signatures"].is_array()) {
        return fail(ErrorCode::bad_format, name + ": needs \"signed\" and \"signatures\"");
    }
    if (has_float(document["signed"])) {
        return fail(ErrorCode::bad_format, name + ": floating-point numbers are not allowed");
    }
    for (const json& signature : document["signatures"]) {
        if (!signature.is_object() || !signature.contains("keyid") ||
            !signature["keyid"].is_string() || !signature.contains("sig") ||
            !signature["sig"].is_string()) {
            return fail(ErrorCode::bad_format, name + ": a signature needs \"keyid\" and \"sig\"");
        }
        envelope.signatures.emplace_back(signature["keyid"].get<std::string>(),
                                         signature["sig"].get<std::string>());
    }
    envelope.signed_part = std::move(document["signed"]);
    try {
        envelope.canonical = canonical_bytes(envelope.signed_part);
    } catch (const json::exception&) {
        return fail(ErrorCode::bad_format, name + ": invalid UTF-8");
    }
    return envelope;
}

Result<void> verify_signatures(const Envelope& envelope, const Root& root, Role role,
                               const std::string& name, ValidSignatures* valid) {
    auto definition = root.roles.find(role);
    if (definition == root.roles.end()) {
        return fail(ErrorCode::bad_format, "root defines no " + role_name(role) + " role");
    }
    const RoleKeys& role_keys = definition->second;
    std::set<std::string> valid_keys;
    auto message = bytes_of(envelope.canonical);
    for (const auto& [key_id, signature] : envelope.signatures) {
        if (valid_keys.contains(key_id) ||
            std::find(role_keys.key_ids.begin(), role_keys.key_ids.end(), key_id) ==
                role_keys.key_ids.end()) {
            continue;  // counted already, or not a key of this role
        }
        auto key = root.keys.find(key_id);
        if (key != root.keys.end() && signature_is_valid(key->second, message, signature)) {
            valid_keys.insert(key_id);
            if (valid != nullptr) {
                valid->emplace(key_id, signature);
            }
        }
    }
    if (valid_keys.size() < role_keys.threshold) {
        return fail(ErrorCode::bad_signature, name + ": " + std::to_string(valid_keys.size()) +
                                                  " valid signature(s) of " + role_name(role) +
                                                  " keys, threshold " +
                                                  std::to_string(role_keys.threshold));
    }
    return {};
}

Result<Root> parse_root(const json& signed_part, const std::string& name) {
    return interpret<Root>(name, [&] {
        Root root;
        read_common(signed_part, "root", root);
        root.keys = read_keys(signed_part);
        const json& roles = object_member(signed_part, "roles");
        for (const auto& [role_text, role] : role_by_name) {
            root.roles.emplace(
                role, read_role_keys(member(roles, role_text.c_str()), role_text, root.keys));
        }
        return root;
    });
}

Result<Timestamp> parse_timestamp(const json& signed_part, const std::string& name) {
    return interpret<Timestamp>(name, [&] {
        Timestamp timestamp;
        read_common(signed_part, "timestamp", timestamp);
        timestamp.snapshot = read_described_file(signed_part, "snapshot.json");
        return timestamp;
    });
}

Result<Snapshot> parse_snapshot(const json& signed_part, const std::string& name) {
    return interpret<Snapshot>(name, [&] {
        Snapshot snapshot;
        read_common(signed_part, "snapshot", snapshot);
        snapshot.targets = read_described_file(signed_part, "targets.json");
        return snapshot;
    });
}

Result<Targets> parse_targets(const json& signed_part, const std::string& name) {
    return interpret<Targets>(name, [&] {
        Targets targets;
        read_common(signed_part, "targets", targets);
        const json& entries = object_member(signed_part, "targets");
        for (const auto& [target_name, entry] : entries.items()) {
            read_target(target_name, entry, targets);
        }
        check_no_name_is_a_directory(entries);
        return targets;
    });
}

std::string target_name_problem(const std::string& name) {
    if (name.empty() || name.size() > 255) {
        return "must be 1 to 255 bytes";
    }
    std::size_t start = 0;
    for (;;) {
        std::size_t slash = name.find('/', start);
        std::string component =
            name.substr(start, slash == std::string::npos ? std::string::npos : slash - start);
        if (component.empty()) {
            return "an empty path component (a leading, trailing or double '/')";
        }
        if (component.size() > 128) {
            return "a path component longer than 128 characters";
        }
        if (component.front() == '.') {
            return "a path component starting with '.'";
        }
        if (!std::all_of(component.begin(), component.end(), is_name_character)) {
            return "a character outside A-Z a-z 0-9 . _ + ~ - in a path component";
        }
        if (slash == std::string::npos) {
            return "";
        }
        start = slash + 1;
    }
}

std::string consistent_target_path(const Target& target) {
    auto slash = target.name.rfind('/');
    std::string directory = slash == std::string::npos ? "" : target.name.substr(0, slash + 1);
    std::string base = slash == std::string::npos ? target.name : target.name.substr(slash + 1);
    return "targets/" + directory + target.sha256 + "." + base;
}

std::string consistent_target_url(const Target& target) {
    std::string path = "targets";
    std::size_t start = 0;
    for (std::size_t slash; (slash = target.name.find('/', start)) != std::string::npos;
         start = slash + 1) {
        path += "/" + url_escaped(target.name.substr(start, slash - start));
    }
    return path + "/" + target.sha256 + "." + url_escaped(target.name.substr(start));
}

std::string verified_envelope_text(const Envelope& envelope, const ValidSignatures& valid) {
    json signatures = json::array();
    for (const auto& [key_id, signature] : valid) {
        signatures.push_back({{"keyid", key_id}, {"sig", signature}});
    }
    return canonical_bytes(json{{"signatures", signatures}, {"signed", envelope.signed_part}});
}

json root_to_json(const Root& root) {
    json signed_part = common_to_json("root", root);
    signed_part["consistent_snapshot"] = true;
    json keys = json::object();
    for (const auto& [key_id, key] : root.keys) {
        keys[key_id] = {
            {"keytype", "ed25519"}, {"scheme", "ed25519"}, {"keyval", {{"public", key.hex()}}}};
    }
    signed_part["keys"] = keys;
    json roles = json::object();
    for (const auto& [role, role_keys] : root.roles) {
        roles[role_name(role)] = {{"keyids", role_keys.key_ids},
                                  {"threshold", role_keys.threshold}};
    }
    signed_part["roles"] = roles;
    return signed_part;
}

json timestamp_to_json(const Timestamp& timestamp) {
    json signed_part = common_to_json("timestamp", timestamp);
    signed_part["meta"] = {{"snapshot.json", file_info_to_json(timestamp.snapshot, true)}};
    return signed_part;
}

json snapshot_to_json(const Snapshot& snapshot) {
    json signed_part = common_to_json("snapshot", snapshot);
    signed_part["meta"] = {{"targets.json", file_info_to_json(snapshot.targets, true)}};
    return signed_part;
}

json targets_to_json(const Targets& targets) {
    json signed_part = common_to_json("targets", targets);
    json entries = json::object();
    for (const Target& target : targets.targets) {
        json entry = file_info_to_json(FileInfo{0, target.length, target.sha256}, false);
        entry["custom"] = patchset_info_to_json(target.info);
        entries[target.name] = entry;
    }
    signed_part["targets"] = entries;
    return signed_part;
}

}  // namespace suture::feed
