#include "feed-client/Metadata.h"

#include <algorithm>
#include <set>

#include "base/Files.h"

namespace suture::feed {

namespace {

using json = nlohmann::json;

// Thrown only inside this file while interpreting a signed part, caught at
// each parse_* boundary and returned as an Error.
struct Invalid {
    std::string what;
};

const json& member(const json& object, const char* key) {
    if (!object.is_object() || !object.contains(key)) {
        throw Invalid{std::string("missing \"") + key + "\""};
    }
    return object.at(key);
}

std::uint64_t unsigned_member(const json& object, const char* key, std::uint64_t max) {
    const json& value = member(object, key);
    if (!value.is_number_unsigned() || value.get<std::uint64_t>() > max) {
        throw Invalid{std::string("\"") + key + "\" must be an integer from 0 to " +
                      std::to_string(max)};
    }
    return value.get<std::uint64_t>();
}

std::string string_member(const json& object, const char* key) {
    const json& value = member(object, key);
    if (!value.is_string()) {
        throw Invalid{std::string("\"") + key + "\" must be a string"};
    }
    return value.get<std::string>();
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
    common.version = unsigned_member(signed_part, "version", std::uint64_t{1} << 53);
    if (common.version == 0) {
        throw Invalid{"\"version\" must be at least 1"};
    }
    auto expires = parse_utc(string_member(signed_part, "expires"));
    if (!expires) {
        throw Invalid{"\"expires\" is not YYYY-MM-DDTHH:MM:SSZ"};
    }
    common.expires = *expires;
}

json common_to_json(const char* type, const Common& common) {
    return json{{"_type", type},
                {"spec_version", "1.0"},
                {"version", common.version},
                {"expires", format_utc(common.expires)}};
}

FileInfo read_file_info(const json& entry, bool with_version) {
    FileInfo info;
    if (with_version) {
        info.version = unsigned_member(entry, "version", std::uint64_t{1} << 53);
    }
    if (entry.contains("length")) {
        info.length = unsigned_member(entry, "length", std::uint64_t{1} << 40);
    }
    if (entry.contains("hashes")) {
        info.sha256 = string_member(member(entry, "hashes"), "sha256");
        if (!is_sha256_hex(info.sha256)) {
            throw Invalid{"\"sha256\" must be 64 lowercase hex digits"};
        }
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

// Runs `interpret`, turning Invalid and JSON type errors into bad_format.
template <typename T, typename F>
Result<T> interpret(const std::string& name, F&& interpret_fields) {
    try {
        return interpret_fields();
    } catch (const Invalid& invalid) {
        return fail(ErrorCode::bad_format, name + ": " + invalid.what);
    } catch (const json::exception& error) {
        return fail(ErrorCode::bad_format, name + ": " + error.what());
    }
}

const std::map<std::string, Role> role_by_name = {{"root", Role::root},
                                                  {"targets", Role::targets},
                                                  {"snapshot", Role::snapshot},
                                                  {"timestamp", Role::timestamp}};

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
                               const std::string& name) {
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
        for (const auto& [key_id, entry] : member(signed_part, "keys").items()) {
            if (string_member(entry, "keytype") != "ed25519" ||
                string_member(entry, "scheme") != "ed25519") {
                throw Invalid{"key " + key_id + ": only ed25519 keys are supported"};
            }
            auto key = PublicKey::from_hex(string_member(member(entry, "keyval"), "public"));
            if (!key || key->key_id() != key_id) {
                throw Invalid{"key " + key_id + ": its ID is not the SHA-256 of its public key"};
            }
            root.keys.emplace(key_id, *key);
        }
        for (const auto& [role_text, role] : role_by_name) {
            const json& entry = member(member(signed_part, "roles"), role_text.c_str());
            RoleKeys keys;
            keys.threshold = static_cast<std::uint32_t>(unsigned_member(entry, "threshold", 256));
            for (const json& key_id : member(entry, "keyids")) {
                if (!key_id.is_string() || !root.keys.contains(key_id.get<std::string>())) {
                    throw Invalid{role_text + ": a key ID not defined in \"keys\""};
                }
                keys.key_ids.push_back(key_id.get<std::string>());
            }
            if (keys.threshold == 0 || keys.threshold > keys.key_ids.size()) {
                throw Invalid{role_text + ": threshold must be 1.." +
                              std::to_string(keys.key_ids.size())};
            }
            root.roles.emplace(role, std::move(keys));
        }
        return root;
    });
}

Result<Timestamp> parse_timestamp(const json& signed_part, const std::string& name) {
    return interpret<Timestamp>(name, [&] {
        Timestamp timestamp;
        read_common(signed_part, "timestamp", timestamp);
        timestamp.snapshot =
            read_file_info(member(member(signed_part, "meta"), "snapshot.json"), true);
        if (timestamp.snapshot.length == 0 || timestamp.snapshot.sha256.empty()) {
            throw Invalid{"snapshot.json needs \"length\" and \"hashes\""};
        }
        return timestamp;
    });
}

Result<Snapshot> parse_snapshot(const json& signed_part, const std::string& name) {
    return interpret<Snapshot>(name, [&] {
        Snapshot snapshot;
        read_common(signed_part, "snapshot", snapshot);
        snapshot.targets =
            read_file_info(member(member(signed_part, "meta"), "targets.json"), true);
        if (snapshot.targets.length == 0 || snapshot.targets.sha256.empty()) {
            throw Invalid{"targets.json needs \"length\" and \"hashes\""};
        }
        return snapshot;
    });
}

Result<Targets> parse_targets(const json& signed_part, const std::string& name) {
    return interpret<Targets>(name, [&] {
        Targets targets;
        read_common(signed_part, "targets", targets);
        for (const auto& [target_name, entry] : member(signed_part, "targets").items()) {
            // Target names become file names in the cache: no way out of it.
            if (target_name.empty() || target_name.size() > 255 || target_name.front() == '/' ||
                target_name.find("..") != std::string::npos ||
                target_name.find('\0') != std::string::npos) {
                throw Invalid{"bad target name \"" + target_name + "\""};
            }
            FileInfo info = read_file_info(entry, false);
            if (info.length == 0 || info.sha256.empty()) {
                throw Invalid{target_name + ": needs \"length\" and \"hashes\""};
            }
            Target target{target_name, info.length, info.sha256,
                          entry.contains("custom") ? entry["custom"] : json::object()};
            if (!target.custom.is_object()) {
                throw Invalid{target_name + ": \"custom\" must be an object"};
            }
            targets.targets.push_back(std::move(target));
        }
        return targets;
    });
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
        entry["custom"] = target.custom;
        entries[target.name] = entry;
    }
    signed_part["targets"] = entries;
    return signed_part;
}

std::string sign_envelope(const json& signed_part, const std::vector<const KeyPair*>& keys) {
    std::string canonical = canonical_bytes(signed_part);
    auto message = bytes_of(canonical);
    json signatures = json::array();
    for (const KeyPair* key : keys) {
        signatures.push_back({{"keyid", key->public_key().key_id()}, {"sig", key->sign(message)}});
    }
    return json{{"signatures", signatures}, {"signed", signed_part}}.dump(1) + "\n";
}

std::optional<std::time_t> parse_utc(const std::string& text) {
    struct tm fields {};
    const char* end = ::strptime(text.c_str(), "%Y-%m-%dT%H:%M:%SZ", &fields);
    if (end == nullptr || *end != '\0' || text.size() != 20) {
        return std::nullopt;
    }
    return ::timegm(&fields);
}

std::string format_utc(std::time_t time) {
    struct tm fields {};
    ::gmtime_r(&time, &fields);
    char text[32];
    std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", &fields);
    return text;
}

}  // namespace suture::feed
