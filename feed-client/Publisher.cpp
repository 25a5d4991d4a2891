#include "feed-client/Publisher.h"

#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>

#include "base/Files.h"
#include "base/Sha256.h"

namespace suture::feed {

namespace {

using json = nlohmann::json;

const Role all_roles[] = {Role::root, Role::targets, Role::snapshot, Role::timestamp};

// Reads one of our own metadata files and interprets it (the publisher
// trusts its repository; the client never does).
template <typename T, typename Parse>
Result<T> read_own(const std::string& path, Parse parse) {
    auto text = read_file(path);
    if (!text) {
        return tl::unexpected(text.error());
    }
    auto envelope = parse_envelope(bytes_of(*text), path);
    if (!envelope) {
        return tl::unexpected(envelope.error());
    }
    return parse(envelope->signed_part, path);
}

std::string real_path(const std::string& path) {
    char resolved[PATH_MAX];
    return ::realpath(path.c_str(), resolved) != nullptr ? std::string(resolved) + "/" : path + "/";
}

// Copies a new target's file into the repository under its consistent
// name, once its custom metadata is exactly what clients accept.
Result<Target> store_target(const std::string& repository, const Publisher::NewTarget& addition) {
    if (auto accepted = parse_patchset_info(patchset_info_to_json(addition.info), addition.name);
        !accepted) {
        return tl::unexpected(accepted.error());
    }
    auto text = read_file(addition.file);
    if (!text) {
        return tl::unexpected(text.error());
    }
    Target target{addition.name, text->size(), sha256_hex(bytes_of(*text)), addition.info};
    std::string path = repository + "/" + consistent_target_path(target);
    if (auto made = make_directories(path.substr(0, path.rfind('/')), 0755); !made) {
        return tl::unexpected(made.error());
    }
    if (auto written = write_file_atomically(path, bytes_of(*text), 0644); !written) {
        return tl::unexpected(written.error());
    }
    return target;
}

}  // namespace

Result<std::uint64_t> Publisher::latest_version(const std::string& role) const {
    std::uint64_t latest = 0;
    std::string suffix = "." + role + ".json";
    for (const std::string& name : directory_entries(repository_)) {
        if (name.ends_with(suffix)) {
            latest = std::max<std::uint64_t>(latest, std::strtoull(name.c_str(), nullptr, 10));
        }
    }
    if (latest == 0) {
        return fail(ErrorCode::not_found, repository_ + ": no " + role + " metadata (run init)");
    }
    return latest;
}

Result<Root> Publisher::latest_root() const {
    auto version = latest_version("root");
    if (!version) {
        return tl::unexpected(version.error());
    }
    return read_own<Root>(repository_ + "/" + std::to_string(*version) + ".root.json", parse_root);
}

// The key files of `role` whose keys the latest root lists for it.
Result<std::vector<KeyPair>> Publisher::load_keys(Role role) const {
    auto root = latest_root();
    if (!root) {
        return tl::unexpected(root.error());
    }
    const auto& wanted = root->roles.at(role).key_ids;
    std::vector<KeyPair> keys;
    for (const std::string& name : directory_entries(keys_)) {
        if (!name.starts_with(role_name(role) + "-") || !name.ends_with(".key")) {
            continue;
        }
        auto key = KeyPair::load(keys_ + "/" + name);
        if (!key) {
            return tl::unexpected(key.error());
        }
        if (std::find(wanted.begin(), wanted.end(), key->public_key().key_id()) != wanted.end()) {
            keys.push_back(std::move(*key));
        }
    }
    if (keys.size() < root->roles.at(role).threshold) {
        return fail(ErrorCode::not_found, keys_ + ": " + std::to_string(keys.size()) + " " +
                                              role_name(role) + " key(s) here, the role needs " +
                                              std::to_string(root->roles.at(role).threshold) +
                                              " (signing a role needs that role's keys)");
    }
    return keys;
}

Result<void> Publisher::write_metadata(const std::string& file, const json& signed_part,
                                       const std::vector<KeyPair>& keys) {
    std::vector<const KeyPair*> signers;
    for (const KeyPair& key : keys) {
        signers.push_back(&key);
    }
    std::string text = sign_envelope(signed_part, signers);
    return write_file_atomically(repository_ + "/" + file, bytes_of(text), 0644);
}

Result<void> Publisher::write_root(const Root& root, const std::vector<const KeyPair*>& signers) {
    std::string text = sign_envelope(root_to_json(root), signers);
    std::string versioned = repository_ + "/" + std::to_string(root.version) + ".root.json";
    if (auto written = write_file_atomically(versioned, bytes_of(text), 0644); !written) {
        return written;
    }
    return write_file_atomically(repository_ + "/root.json", bytes_of(text), 0644);
}

Result<void> Publisher::init(unsigned root_keys, unsigned root_threshold) {
    if (root_keys == 0 || root_threshold == 0 || root_threshold > root_keys) {
        return fail(ErrorCode::invalid_argument, "root threshold must be 1..number of root keys");
    }
    if (::access((repository_ + "/root.json").c_str(), F_OK) == 0) {
        return fail(ErrorCode::invalid_argument, repository_ + ": already a feed repository");
    }
    if (auto made = make_directories(repository_ + "/targets", 0755); !made) {
        return made;
    }
    if (auto made = make_directories(keys_, 0700); !made) {
        return made;
    }
    if (real_path(keys_).starts_with(real_path(repository_))) {
        return fail(
            ErrorCode::invalid_argument,
            keys_ + ": the keys directory must not be inside the repository (it is served)");
    }
    Root root;
    root.version = 1;
    root.expires = now_ + lifetimes_.root;
    std::vector<KeyPair> root_pairs;
    for (Role role : all_roles) {
        unsigned count = role == Role::root ? root_keys : 1;
        RoleKeys role_keys;
        role_keys.threshold = role == Role::root ? root_threshold : 1;
        for (unsigned n = 1; n <= count; ++n) {
            KeyPair pair = KeyPair::generate();
            std::string file = keys_ + "/" + role_name(role) + "-" + std::to_string(n) + ".key";
            if (::access(file.c_str(), F_OK) == 0) {
                return fail(ErrorCode::invalid_argument,
                            file + ": exists; refusing to overwrite a key");
            }
            if (auto saved = pair.save(file); !saved) {
                return saved;
            }
            root.keys.emplace(pair.public_key().key_id(), pair.public_key());
            role_keys.key_ids.push_back(pair.public_key().key_id());
            if (role == Role::root) {
                root_pairs.push_back(std::move(pair));
            }
        }
        root.roles.emplace(role, std::move(role_keys));
    }
    std::vector<const KeyPair*> signers;
    for (const KeyPair& pair : root_pairs) {
        signers.push_back(&pair);
    }
    if (auto written = write_root(root, signers); !written) {
        return written;
    }
    Targets targets;
    targets.version = 1;
    targets.expires = now_ + lifetimes_.targets;
    auto keys = load_keys(Role::targets);
    if (!keys) {
        return tl::unexpected(keys.error());
    }
    if (auto written = write_metadata("1.targets.json", targets_to_json(targets), *keys);
        !written) {
        return written;
    }
    return publish();
}

Result<std::uint64_t> Publisher::add_targets(const std::vector<NewTarget>& additions) {
    auto version = latest_version("targets");
    if (!version) {
        return tl::unexpected(version.error());
    }
    std::string latest = repository_ + "/" + std::to_string(*version) + ".targets.json";
    auto targets = read_own<Targets>(latest, parse_targets);
    if (!targets) {
        return tl::unexpected(targets.error());
    }
    if (!targets->refused.empty()) {
        return fail(ErrorCode::bad_format, latest + ": " + targets->refused.front().error.message);
    }
    auto keys = load_keys(Role::targets);
    if (!keys) {
        return tl::unexpected(keys.error());
    }
    for (const NewTarget& addition : additions) {
        if (std::string problem = target_name_problem(addition.name); !problem.empty()) {
            return fail(ErrorCode::bad_format,
                        "target name \"" + addition.name + "\": " + problem +
                            " (docs/feed-format.md, \"Target names\")");
        }
        auto target = store_target(repository_, addition);
        if (!target) {
            return tl::unexpected(target.error());
        }
        std::erase_if(targets->targets, [&](const Target& t) { return t.name == target->name; });
        targets->targets.push_back(std::move(*target));
    }
    std::sort(targets->targets.begin(), targets->targets.end(),
              [](const Target& a, const Target& b) { return a.name < b.name; });
    targets->version = *version + 1;
    targets->expires = now_ + lifetimes_.targets;
    if (auto written = write_metadata(std::to_string(targets->version) + ".targets.json",
                                      targets_to_json(*targets), *keys);
        !written) {
        return tl::unexpected(written.error());
    }
    return targets->version;
}

// The newest N.ROLE.json as the role above it describes it: version,
// length and SHA-256.
Result<FileInfo> Publisher::latest_file_info(const std::string& role) const {
    auto version = latest_version(role);
    if (!version) {
        return tl::unexpected(version.error());
    }
    auto text = read_file(repository_ + "/" + std::to_string(*version) + "." + role + ".json");
    if (!text) {
        return tl::unexpected(text.error());
    }
    return FileInfo{*version, text->size(), sha256_hex(bytes_of(*text))};
}

Result<void> Publisher::publish() {
    auto targets = latest_file_info("targets");
    if (!targets) {
        return tl::unexpected(targets.error());
    }
    auto keys = load_keys(Role::snapshot);
    if (!keys) {
        return tl::unexpected(keys.error());
    }
    auto snapshot_version = latest_version("snapshot");
    Snapshot snapshot;
    snapshot.version = snapshot_version ? *snapshot_version + 1 : 1;
    snapshot.expires = now_ + lifetimes_.snapshot;
    snapshot.targets = *targets;
    if (auto written = write_metadata(std::to_string(snapshot.version) + ".snapshot.json",
                                      snapshot_to_json(snapshot), *keys);
        !written) {
        return written;
    }
    return timestamp();
}

Result<void> Publisher::timestamp(std::optional<std::uint64_t> version) {
    auto keys = load_keys(Role::timestamp);
    if (!keys) {
        return tl::unexpected(keys.error());
    }
    auto snapshot = latest_file_info("snapshot");
    if (!snapshot) {
        return tl::unexpected(snapshot.error());
    }
    Timestamp timestamp;
    if (version) {
        timestamp.version = *version;
    } else {
        auto current = read_own<Timestamp>(repository_ + "/timestamp.json", parse_timestamp);
        timestamp.version = current ? current->version + 1 : 1;
    }
    timestamp.expires = now_ + lifetimes_.timestamp;
    timestamp.snapshot = *snapshot;
    return write_metadata("timestamp.json", timestamp_to_json(timestamp), *keys);
}

Result<void> Publisher::rotate(Role role) {
    auto root = latest_root();
    if (!root) {
        return tl::unexpected(root.error());
    }
    auto old_root_keys = load_keys(Role::root);
    if (!old_root_keys) {
        return tl::unexpected(old_root_keys.error());
    }
    // The next free file number for this role.
    unsigned n = 1;
    while (::access((keys_ + "/" + role_name(role) + "-" + std::to_string(n) + ".key").c_str(),
                    F_OK) == 0) {
        ++n;
    }
    KeyPair fresh = KeyPair::generate();
    if (auto saved = fresh.save(keys_ + "/" + role_name(role) + "-" + std::to_string(n) + ".key");
        !saved) {
        return saved;
    }
    Root next = *root;
    next.version = root->version + 1;
    next.expires = now_ + lifetimes_.root;
    next.roles[role] = RoleKeys{{fresh.public_key().key_id()}, 1};
    next.keys.emplace(fresh.public_key().key_id(), fresh.public_key());
    std::erase_if(next.keys, [&](const auto& entry) {
        return std::none_of(std::begin(all_roles), std::end(all_roles), [&](Role r) {
            const auto& ids = next.roles.at(r).key_ids;
            return std::find(ids.begin(), ids.end(), entry.first) != ids.end();
        });
    });
    // Signed by the old root's threshold and by the new root's own keys.
    std::vector<const KeyPair*> signers;
    for (const KeyPair& key : *old_root_keys) {
        signers.push_back(&key);
    }
    if (role == Role::root) {
        signers.push_back(&fresh);
    }
    if (auto written = write_root(next, signers); !written) {
        return written;
    }
    // Re-sign what the new key now speaks for.
    switch (role) {
        case Role::root:
            return {};
        case Role::targets:
            if (auto added = add_targets({}); !added) {
                return tl::unexpected(added.error());
            }
            return publish();
        case Role::snapshot:
            return publish();
        case Role::timestamp:
            return timestamp();
    }
    return {};
}

}  // namespace suture::feed
