#include "feed-client/FeedClient.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <optional>

#include "base/Files.h"
#include "base/Sha256.h"

namespace suture::feed {

namespace {

std::string as_text(const std::vector<std::byte>& bytes) {
    return std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size());
}

// Metadata the client trusts: verified files and what they say.
struct Trusted {
    Root root;
    std::string root_text;
    std::optional<Timestamp> timestamp;
    std::string timestamp_text;
    std::optional<Snapshot> snapshot;
    std::string snapshot_text;
    std::optional<Targets> targets;
    std::string targets_text;
};

// Parses, verifies against `root` and interprets one role's file.
template <typename T, typename Parse>
Result<T> verified(const std::string& text, const Root& root, Role role, const std::string& name,
                   Parse parse) {
    auto envelope = parse_envelope(bytes_of(text), name);
    if (!envelope) {
        return tl::unexpected(envelope.error());
    }
    if (auto signatures = verify_signatures(*envelope, root, role, name); !signatures) {
        return tl::unexpected(signatures.error());
    }
    return parse(envelope->signed_part, name);
}

// A root file that signs itself (the pinned root, or the cached one).
Result<Root> self_signed_root(const std::string& text, const std::string& name) {
    auto envelope = parse_envelope(bytes_of(text), name);
    if (!envelope) {
        return tl::unexpected(envelope.error());
    }
    auto root = parse_root(envelope->signed_part, name);
    if (!root) {
        return tl::unexpected(root.error());
    }
    if (auto signatures = verify_signatures(*envelope, *root, Role::root, name); !signatures) {
        return tl::unexpected(signatures.error());
    }
    return root;
}

Result<void> check_unexpired(const Common& role, std::time_t now, const std::string& name) {
    if (now >= role.expires) {
        return fail(ErrorCode::expired,
                    name + ": expired at " + format_utc(role.expires) + " (a frozen feed?)");
    }
    return {};
}

Result<void> check_file(const std::vector<std::byte>& bytes, const FileInfo& expected,
                        const std::string& name) {
    if (bytes.size() != expected.length) {
        return fail(ErrorCode::hash_mismatch, name + ": " + std::to_string(bytes.size()) +
                                                  " bytes, signed metadata says " +
                                                  std::to_string(expected.length));
    }
    if (sha256_hex(bytes) != expected.sha256) {
        return fail(ErrorCode::hash_mismatch, name + ": SHA-256 differs from the signed metadata");
    }
    return {};
}

bool same_keys(const Root& a, const Root& b, Role role) {
    return a.roles.at(role).key_ids == b.roles.at(role).key_ids &&
           a.roles.at(role).threshold == b.roles.at(role).threshold;
}

std::string current_directory(const std::string& cache, const std::string& remote) {
    return cache + "/" + remote + "/current";
}

// Loads the trusted state: the cached generation if any, else the pinned
// root. Cached files that no longer verify are dropped (and re-fetched).
Result<Trusted> load_trusted(const std::string& cache, const Remote& remote) {
    Trusted trusted;
    std::string current = current_directory(cache, remote.name);
    auto cached_root = read_file(current + "/root.json");
    std::string root_text;
    if (cached_root) {
        root_text = *cached_root;
    } else {
        auto pinned = read_file(remote.root_file);
        if (!pinned) {
            return fail(ErrorCode::not_found, remote.source + ": the pinned root " +
                                                  remote.root_file + " cannot be read");
        }
        root_text = *pinned;
    }
    auto root = self_signed_root(root_text, remote.name + ": trusted root");
    if (!root) {
        return tl::unexpected(root.error());
    }
    trusted.root = std::move(*root);
    trusted.root_text = root_text;
    if (!cached_root) {
        return trusted;
    }
    if (auto text = read_file(current + "/timestamp.json")) {
        if (auto timestamp = verified<Timestamp>(*text, trusted.root, Role::timestamp,
                                                 "cached timestamp", parse_timestamp)) {
            trusted.timestamp = *timestamp;
            trusted.timestamp_text = *text;
        }
    }
    if (auto text = read_file(current + "/snapshot.json")) {
        if (auto snapshot = verified<Snapshot>(*text, trusted.root, Role::snapshot,
                                               "cached snapshot", parse_snapshot)) {
            trusted.snapshot = *snapshot;
            trusted.snapshot_text = *text;
        }
    }
    if (auto text = read_file(current + "/targets.json")) {
        if (auto targets = verified<Targets>(*text, trusted.root, Role::targets, "cached targets",
                                             parse_targets)) {
            trusted.targets = *targets;
            trusted.targets_text = *text;
        }
    }
    return trusted;
}

// A snapshot or targets file as the previous role describes it (`expected`:
// version, length, SHA-256): the trusted copy if it is that very file, else
// downloaded with a cap of that length, checked by length and hash, verified
// by `role`'s keys, and of exactly that version. Returns it with its text.
template <typename T, typename Parse>
Result<std::pair<T, std::string>> described_role(const Fetcher& fetcher, const std::string& base,
                                                 const std::string& name, const FileInfo& expected,
                                                 const Root& root, Role role, Parse parse,
                                                 const std::optional<T>& trusted,
                                                 const std::string& trusted_text) {
    if (trusted && trusted->version == expected.version &&
        sha256_hex(bytes_of(trusted_text)) == expected.sha256) {
        return std::pair{*trusted, trusted_text};
    }
    auto bytes = fetcher.fetch(base + name, expected.length);
    if (!bytes) {
        return tl::unexpected(bytes.error());
    }
    if (auto matches = check_file(*bytes, expected, name); !matches) {
        return tl::unexpected(matches.error());
    }
    std::string text = as_text(*bytes);
    auto parsed = verified<T>(text, root, role, name, parse);
    if (!parsed) {
        return tl::unexpected(parsed.error());
    }
    if (parsed->version != expected.version) {
        return fail(ErrorCode::rollback,
                    name + ": says version " + std::to_string(parsed->version));
    }
    return std::pair{std::move(*parsed), std::move(text)};
}

// Writes a new generation and switches `current` to it.
Result<void> commit_generation(const std::string& cache, const std::string& remote,
                               const Trusted& state,
                               const std::map<std::string, std::vector<std::byte>>& files) {
    std::string base = cache + "/" + remote;
    if (auto made = make_directories(base, 0700); !made) {
        return made;
    }
    std::string generation;
    for (unsigned n = 1;; ++n) {
        generation = "gen-" + std::to_string(::time(nullptr)) + "-" + std::to_string(n);
        if (::access((base + "/" + generation).c_str(), F_OK) != 0) {
            break;
        }
    }
    std::string staging = base + "/" + generation + ".partial";
    remove_tree(staging);
    auto write = [&](const std::string& relative,
                     std::span<const std::byte> bytes) -> Result<void> {
        std::string path = staging + "/" + relative;
        if (auto made = make_directories(path.substr(0, path.rfind('/')), 0700); !made) {
            return made;
        }
        return write_file_atomically(path, bytes, 0600);
    };
    for (const auto& [relative, bytes] : files) {
        if (auto written = write("targets/" + relative, bytes); !written) {
            return written;
        }
    }
    for (const auto& [name, text] : {std::pair{"root.json", &state.root_text},
                                     std::pair{"timestamp.json", &state.timestamp_text},
                                     std::pair{"snapshot.json", &state.snapshot_text},
                                     std::pair{"targets.json", &state.targets_text}}) {
        if (auto written = write(name, bytes_of(*text)); !written) {
            return written;
        }
    }
    if (::rename(staging.c_str(), (base + "/" + generation).c_str()) != 0) {
        return fail_errno(staging, errno);
    }
    std::string link = base + "/current.new";
    ::unlink(link.c_str());
    if (::symlink(generation.c_str(), link.c_str()) != 0 ||
        ::rename(link.c_str(), (base + "/current").c_str()) != 0) {
        return fail_errno(base + "/current", errno);
    }
    // Older generations (and leftovers of interrupted refreshes) go.
    for (const std::string& name : directory_entries(base)) {
        if (name.starts_with("gen-") && name != generation) {
            remove_tree(base + "/" + name);
        }
    }
    return {};
}

// Why `remote` holds a target back (docs/feed-format.md, "Channels, pins and
// delays"); "" when it does not.
std::string held_back_because(const PatchsetInfo& info, const Remote& remote, std::time_t now) {
    if (info.channel != "stable" && info.channel != remote.channel) {
        return "channel " + info.channel;
    }
    if (remote.pin_level != 0 && info.level > remote.pin_level) {
        return "level pinned at " + std::to_string(remote.pin_level);
    }
    if (remote.delay_hours != 0 &&
        info.published + static_cast<std::time_t>(remote.delay_hours) * 3600 > now) {
        return "delayed " + std::to_string(remote.delay_hours) + " h";
    }
    return "";
}

}  // namespace

Result<RefreshReport> FeedClient::refresh(const Remote& remote, std::time_t now,
                                          const Progress& progress) const {
    auto loaded = load_trusted(cache_, remote);
    if (!loaded) {
        return tl::unexpected(loaded.error());
    }
    Trusted state = std::move(*loaded);
    Fetcher fetcher(remote.limits);
    RefreshReport report;
    report.remote = remote.name;
    const std::string& base = remote.url;

    // 1. The root chain: N+1.root.json until there is none.
    for (int step = 0; step < 1024; ++step) {
        std::uint64_t next = state.root.version + 1;
        std::string name = std::to_string(next) + ".root.json";
        auto bytes = fetcher.fetch(base + name, max_metadata_size);
        if (!bytes) {
            if (bytes.error().code == ErrorCode::not_found) {
                break;
            }
            return tl::unexpected(bytes.error());
        }
        std::string text = as_text(*bytes);
        // Signed by the threshold of the trusted root's root keys...
        auto envelope = parse_envelope(*bytes, name);
        if (!envelope) {
            return tl::unexpected(envelope.error());
        }
        if (auto old_signatures = verify_signatures(*envelope, state.root, Role::root,
                                                    name + " (by the previous root's keys)");
            !old_signatures) {
            return tl::unexpected(old_signatures.error());
        }
        auto new_root = parse_root(envelope->signed_part, name);
        if (!new_root) {
            return tl::unexpected(new_root.error());
        }
        // ...and by its own.
        if (auto own_signatures = verify_signatures(*envelope, *new_root, Role::root,
                                                    name + " (by its own root keys)");
            !own_signatures) {
            return tl::unexpected(own_signatures.error());
        }
        if (new_root->version != next) {
            return fail(ErrorCode::rollback, name + ": says version " +
                                                 std::to_string(new_root->version) + ", expected " +
                                                 std::to_string(next));
        }
        // Fast-forward recovery: new keys for a role reset what we trusted
        // of it, so an attacker's inflated versions cannot block the feed.
        if (!same_keys(state.root, *new_root, Role::timestamp) ||
            !same_keys(state.root, *new_root, Role::snapshot)) {
            state.timestamp.reset();
            state.snapshot.reset();
        }
        if (!same_keys(state.root, *new_root, Role::targets)) {
            state.targets.reset();
        }
        state.root = std::move(*new_root);
        state.root_text = text;
        report.changed = true;
    }
    if (auto fresh = check_unexpired(state.root, now, remote.name + ": root"); !fresh) {
        return tl::unexpected(fresh.error());
    }
    report.root_version = state.root.version;

    // 2. Timestamp.
    auto timestamp_bytes = fetcher.fetch(base + "timestamp.json", max_timestamp_size);
    if (!timestamp_bytes) {
        return tl::unexpected(timestamp_bytes.error());
    }
    std::string timestamp_text = as_text(*timestamp_bytes);
    auto timestamp = verified<Timestamp>(timestamp_text, state.root, Role::timestamp,
                                         "timestamp.json", parse_timestamp);
    if (!timestamp) {
        return tl::unexpected(timestamp.error());
    }
    if (state.timestamp) {
        if (timestamp->version < state.timestamp->version) {
            return fail(ErrorCode::rollback, "timestamp.json: version " +
                                                 std::to_string(timestamp->version) +
                                                 " is older than the trusted " +
                                                 std::to_string(state.timestamp->version));
        }
        if (timestamp->snapshot.version < state.timestamp->snapshot.version) {
            return fail(ErrorCode::rollback, "timestamp.json: names snapshot version " +
                                                 std::to_string(timestamp->snapshot.version) +
                                                 ", older than the trusted " +
                                                 std::to_string(state.timestamp->snapshot.version));
        }
    }
    if (auto fresh = check_unexpired(*timestamp, now, "timestamp.json"); !fresh) {
        return tl::unexpected(fresh.error());
    }
    report.timestamp_version = timestamp->version;
    bool timestamp_changed = timestamp_text != state.timestamp_text;

    // 3. Snapshot, exactly as the timestamp describes it.
    std::string snapshot_name = std::to_string(timestamp->snapshot.version) + ".snapshot.json";
    auto snapshot = described_role<Snapshot>(fetcher, base, snapshot_name, timestamp->snapshot,
                                             state.root, Role::snapshot, parse_snapshot,
                                             state.snapshot, state.snapshot_text);
    if (!snapshot) {
        return tl::unexpected(snapshot.error());
    }
    if (state.snapshot && snapshot->first.targets.version < state.snapshot->targets.version) {
        return fail(ErrorCode::rollback, snapshot_name + ": names targets version " +
                                             std::to_string(snapshot->first.targets.version) +
                                             ", older than the trusted " +
                                             std::to_string(state.snapshot->targets.version));
    }
    if (auto fresh = check_unexpired(snapshot->first, now, snapshot_name); !fresh) {
        return tl::unexpected(fresh.error());
    }
    report.snapshot_version = snapshot->first.version;

    // 4. Targets, exactly as the snapshot describes them.
    std::string targets_name = std::to_string(snapshot->first.targets.version) + ".targets.json";
    auto described_targets =
        described_role<Targets>(fetcher, base, targets_name, snapshot->first.targets, state.root,
                                Role::targets, parse_targets, state.targets, state.targets_text);
    if (!described_targets) {
        return tl::unexpected(described_targets.error());
    }
    const Targets* targets = &described_targets->first;
    if (auto fresh = check_unexpired(*targets, now, targets_name); !fresh) {
        return tl::unexpected(fresh.error());
    }
    report.targets_version = targets->version;
    report.targets = targets->targets.size();

    // 5. The target files, by length and hash, before anything reads them.
    std::map<std::string, std::vector<std::byte>> files;
    std::string current = current_directory(cache_, remote.name);
    for (const Target& target : targets->targets) {
        FileInfo expected{0, target.length, target.sha256};
        if (auto cached = read_file(current + "/targets/" + target.name)) {
            auto bytes = bytes_of(*cached);
            std::vector<std::byte> copy(bytes.begin(), bytes.end());
            if (check_file(copy, expected, target.name)) {
                files.emplace(target.name, std::move(copy));
                ++report.reused;
                continue;
            }
        }
        auto bytes = fetcher.fetch(base + consistent_target_path(target), target.length,
                                   [&](std::uint64_t now_bytes, std::uint64_t total) {
                                       if (progress) {
                                           progress(now_bytes, total);
                                       }
                                   });
        if (!bytes) {
            return tl::unexpected(with_context(bytes.error(), target.name));
        }
        if (auto matches = check_file(*bytes, expected, target.name); !matches) {
            return tl::unexpected(matches.error());
        }
        files.emplace(target.name, std::move(*bytes));
        ++report.downloaded;
    }

    bool unchanged = !report.changed && !timestamp_changed &&
                     snapshot->second == state.snapshot_text &&
                     described_targets->second == state.targets_text && report.downloaded == 0;
    if (unchanged) {
        return report;
    }
    state.timestamp = *timestamp;
    state.timestamp_text = timestamp_text;
    state.snapshot = snapshot->first;
    state.snapshot_text = snapshot->second;
    state.targets = described_targets->first;
    state.targets_text = described_targets->second;
    if (auto committed = commit_generation(cache_, remote.name, state, files); !committed) {
        return tl::unexpected(committed.error());
    }
    report.changed = true;
    return report;
}

Result<std::vector<CachedTarget>> FeedClient::list(const Remote& remote, std::time_t now) const {
    std::vector<CachedTarget> listed;
    std::string current = current_directory(cache_, remote.name);
    if (::access((current + "/targets.json").c_str(), F_OK) != 0) {
        return listed;  // never refreshed
    }
    auto trusted = load_trusted(cache_, remote);
    if (!trusted) {
        return tl::unexpected(trusted.error());
    }
    if (!trusted->targets) {
        return fail(ErrorCode::bad_signature,
                    remote.name + ": the cached targets metadata no longer verifies");
    }
    for (const Target& target : trusted->targets->targets) {
        std::string held_back = held_back_because(target.info, remote, now);
        listed.push_back(CachedTarget{remote.name, target, current + "/targets/" + target.name,
                                      held_back.empty(), held_back, std::nullopt});
    }
    for (const RefusedTarget& refused : trusted->targets->refused) {
        listed.push_back(CachedTarget{remote.name,
                                      Target{refused.name, refused.length, refused.sha256, {}}, "",
                                      false, "refused: " + refused.error.message, refused.error});
    }
    return listed;
}

}  // namespace suture::feed
