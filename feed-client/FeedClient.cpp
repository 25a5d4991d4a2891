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

// A cached role's file, if it still verifies against the trusted root
// (else it is dropped, and fetched again).
template <typename T, typename Parse>
void load_cached_role(const std::string& path, const Root& root, Role role, Parse parse,
                      std::optional<T>& trusted, std::string& trusted_text) {
    auto text = read_file(path);
    if (!text) {
        return;
    }
    if (auto parsed = verified<T>(*text, root, role, "cached " + role_name(role), parse)) {
        trusted = std::move(*parsed);
        trusted_text = std::move(*text);
    }
}

// Loads the trusted state: the cached generation if any, else the pinned
// root. Cached files that no longer verify are dropped (and re-fetched).
Result<Trusted> load_trusted(const std::string& cache, const Remote& remote) {
    std::string current = current_directory(cache, remote.name);
    auto cached_root = read_file(current + "/root.json");
    auto root_text = cached_root ? cached_root : read_file(remote.root_file);
    if (!root_text) {
        return fail(ErrorCode::not_found,
                    remote.source + ": the pinned root " + remote.root_file + " cannot be read");
    }
    auto root = self_signed_root(*root_text, remote.name + ": trusted root");
    if (!root) {
        return tl::unexpected(root.error());
    }
    Trusted trusted;
    trusted.root = std::move(*root);
    trusted.root_text = std::move(*root_text);
    if (!cached_root) {
        return trusted;
    }
    load_cached_role(current + "/timestamp.json", trusted.root, Role::timestamp, parse_timestamp,
                     trusted.timestamp, trusted.timestamp_text);
    load_cached_role(current + "/snapshot.json", trusted.root, Role::snapshot, parse_snapshot,
                     trusted.snapshot, trusted.snapshot_text);
    load_cached_role(current + "/targets.json", trusted.root, Role::targets, parse_targets,
                     trusted.targets, trusted.targets_text);
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

// The next root of the chain, `name` = N+1.root.json: signed by the
// threshold of the trusted root's root keys and by the threshold of its own,
// and saying version N+1 exactly.
Result<Root> verified_next_root(std::span<const std::byte> bytes, const Root& trusted,
                                const std::string& name) {
    auto envelope = parse_envelope(bytes, name);
    if (!envelope) {
        return tl::unexpected(envelope.error());
    }
    if (auto old_signatures = verify_signatures(*envelope, trusted, Role::root,
                                                name + " (by the previous root's keys)");
        !old_signatures) {
        return tl::unexpected(old_signatures.error());
    }
    auto root = parse_root(envelope->signed_part, name);
    if (!root) {
        return tl::unexpected(root.error());
    }
    if (auto own_signatures =
            verify_signatures(*envelope, *root, Role::root, name + " (by its own root keys)");
        !own_signatures) {
        return tl::unexpected(own_signatures.error());
    }
    if (root->version != trusted.version + 1) {
        return fail(ErrorCode::rollback, name + ": says version " + std::to_string(root->version) +
                                             ", expected " + std::to_string(trusted.version + 1));
    }
    return root;
}

// A new timestamp may not be older than the trusted one, nor name an older
// snapshot.
Result<void> check_timestamp_rollback(const Timestamp& fresh,
                                      const std::optional<Timestamp>& trusted) {
    if (!trusted) {
        return {};
    }
    if (fresh.version < trusted->version) {
        return fail(ErrorCode::rollback,
                    "timestamp.json: version " + std::to_string(fresh.version) +
                        " is older than the trusted " + std::to_string(trusted->version));
    }
    if (fresh.snapshot.version < trusted->snapshot.version) {
        return fail(ErrorCode::rollback, "timestamp.json: names snapshot version " +
                                             std::to_string(fresh.snapshot.version) +
                                             ", older than the trusted " +
                                             std::to_string(trusted->snapshot.version));
    }
    return {};
}

// A new snapshot may not name older targets than the trusted one.
Result<void> check_snapshot_rollback(const Snapshot& fresh, const std::optional<Snapshot>& trusted,
                                     const std::string& name) {
    if (trusted && fresh.targets.version < trusted->targets.version) {
        return fail(ErrorCode::rollback,
                    name + ": names targets version " + std::to_string(fresh.targets.version) +
                        ", older than the trusted " + std::to_string(trusted->targets.version));
    }
    return {};
}

// The cached copy of a target file, if it is still the signed one.
std::optional<std::vector<std::byte>> cached_target_file(const std::string& current,
                                                         const Target& target) {
    auto cached = read_file(current + "/targets/" + target.name);
    if (!cached) {
        return std::nullopt;
    }
    auto bytes = bytes_of(*cached);
    std::vector<std::byte> copy(bytes.begin(), bytes.end());
    if (!check_file(copy, FileInfo{0, target.length, target.sha256}, target.name)) {
        return std::nullopt;
    }
    return copy;
}

// Writes the state and the target files into the directory `staging`.
Result<void> write_generation(const std::string& staging, const Trusted& state,
                              const std::map<std::string, std::vector<std::byte>>& files) {
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
    return {};
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
    if (auto written = write_generation(staging, state, files); !written) {
        return written;
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

// One refresh of one remote, in TUF's order (specification 1.0, 5.3 to
// 5.7): each step verifies one role against what is trusted so far and, if
// it holds, trusts it. Nothing reaches the cache before commit().
class Refresh {
  public:
    Refresh(const std::string& cache, const Remote& remote, std::time_t now,
            const Progress& progress, Trusted trusted)
        : cache_(cache),
          remote_(remote),
          now_(now),
          progress_(progress),
          fetcher_(remote.limits),
          trusted_(std::move(trusted)) {
        report_.remote = remote.name;
    }

    Result<RefreshReport> run() {
        return update_root()
            .and_then([this] { return update_timestamp(); })
            .and_then([this] { return update_snapshot(); })
            .and_then([this] { return update_targets(); })
            .and_then([this] { return fetch_target_files(); })
            .and_then([this] { return commit(); })
            .transform([this] { return report_; });
    }

  private:
    Result<void> update_root();
    Result<bool> rotate_root();
    Result<void> update_timestamp();
    Result<void> update_snapshot();
    Result<void> update_targets();
    Result<void> fetch_target_files();
    Result<void> commit();

    // Trusts a verified role's new file; a file unlike the trusted one
    // makes the refresh a change.
    template <typename T>
    void trust(std::optional<T>& role, std::string& role_text, T fresh, std::string fresh_text) {
        report_.changed = report_.changed || fresh_text != role_text;
        role = std::move(fresh);
        role_text = std::move(fresh_text);
    }

    const std::string& cache_;
    const Remote& remote_;
    std::time_t now_;
    const Progress& progress_;
    Fetcher fetcher_;
    Trusted trusted_;
    RefreshReport report_;
    std::map<std::string, std::vector<std::byte>> files_;  // target name -> verified bytes
};

// 1. The root chain: N+1.root.json until the server has none (at most 1024
// steps); the final root must be unexpired.
Result<void> Refresh::update_root() {
    for (int step = 0; step < 1024; ++step) {
        auto rotated = rotate_root();
        if (!rotated) {
            return tl::unexpected(rotated.error());
        }
        if (!*rotated) {
            break;
        }
    }
    if (auto fresh = check_unexpired(trusted_.root, now_, remote_.name + ": root"); !fresh) {
        return fresh;
    }
    report_.root_version = trusted_.root.version;
    return {};
}

// One step of the root chain; false when the server has no next root.
Result<bool> Refresh::rotate_root() {
    std::string name = std::to_string(trusted_.root.version + 1) + ".root.json";
    auto bytes = fetcher_.fetch(remote_.url + name, max_metadata_size);
    if (!bytes) {
        if (bytes.error().code == ErrorCode::not_found) {
            return false;
        }
        return tl::unexpected(bytes.error());
    }
    auto root = verified_next_root(*bytes, trusted_.root, name);
    if (!root) {
        return tl::unexpected(root.error());
    }
    // Fast-forward recovery: new keys for a role reset what we trusted of
    // it, so an attacker's inflated versions cannot block the feed.
    if (!same_keys(trusted_.root, *root, Role::timestamp) ||
        !same_keys(trusted_.root, *root, Role::snapshot)) {
        trusted_.timestamp.reset();
        trusted_.timestamp_text.clear();
        trusted_.snapshot.reset();
        trusted_.snapshot_text.clear();
    }
    if (!same_keys(trusted_.root, *root, Role::targets)) {
        trusted_.targets.reset();
        trusted_.targets_text.clear();
    }
    trusted_.root = std::move(*root);
    trusted_.root_text = as_text(*bytes);
    report_.changed = true;
    return true;
}

// 2. The timestamp: signed, no rollback, unexpired.
Result<void> Refresh::update_timestamp() {
    auto bytes = fetcher_.fetch(remote_.url + "timestamp.json", max_timestamp_size);
    if (!bytes) {
        return tl::unexpected(bytes.error());
    }
    std::string text = as_text(*bytes);
    auto timestamp = verified<Timestamp>(text, trusted_.root, Role::timestamp, "timestamp.json",
                                         parse_timestamp);
    if (!timestamp) {
        return tl::unexpected(timestamp.error());
    }
    if (auto newer = check_timestamp_rollback(*timestamp, trusted_.timestamp); !newer) {
        return newer;
    }
    if (auto fresh = check_unexpired(*timestamp, now_, "timestamp.json"); !fresh) {
        return fresh;
    }
    report_.timestamp_version = timestamp->version;
    trust(trusted_.timestamp, trusted_.timestamp_text, std::move(*timestamp), std::move(text));
    return {};
}

// 3. The snapshot, exactly as the timestamp describes it; no rollback of
// the targets it names; unexpired.
Result<void> Refresh::update_snapshot() {
    const FileInfo& described = trusted_.timestamp->snapshot;
    std::string name = std::to_string(described.version) + ".snapshot.json";
    auto snapshot = described_role<Snapshot>(fetcher_, remote_.url, name, described, trusted_.root,
                                             Role::snapshot, parse_snapshot, trusted_.snapshot,
                                             trusted_.snapshot_text);
    if (!snapshot) {
        return tl::unexpected(snapshot.error());
    }
    if (auto newer = check_snapshot_rollback(snapshot->first, trusted_.snapshot, name); !newer) {
        return newer;
    }
    if (auto fresh = check_unexpired(snapshot->first, now_, name); !fresh) {
        return fresh;
    }
    report_.snapshot_version = snapshot->first.version;
    trust(trusted_.snapshot, trusted_.snapshot_text, std::move(snapshot->first),
          std::move(snapshot->second));
    return {};
}

// 4. The targets, exactly as the snapshot describes them; unexpired.
Result<void> Refresh::update_targets() {
    const FileInfo& described = trusted_.snapshot->targets;
    std::string name = std::to_string(described.version) + ".targets.json";
    auto targets = described_role<Targets>(fetcher_, remote_.url, name, described, trusted_.root,
                                           Role::targets, parse_targets, trusted_.targets,
                                           trusted_.targets_text);
    if (!targets) {
        return tl::unexpected(targets.error());
    }
    if (auto fresh = check_unexpired(targets->first, now_, name); !fresh) {
        return fresh;
    }
    report_.targets_version = targets->first.version;
    report_.targets = targets->first.targets.size();
    trust(trusted_.targets, trusted_.targets_text, std::move(targets->first),
          std::move(targets->second));
    return {};
}

// 5. The target files, by length and hash, before anything reads them:
// the cached copy when it is still the signed file, else downloaded with a
// cap of the signed length. Refused targets are not fetched.
Result<void> Refresh::fetch_target_files() {
    std::string current = current_directory(cache_, remote_.name);
    for (const Target& target : trusted_.targets->targets) {
        if (auto cached = cached_target_file(current, target)) {
            files_.emplace(target.name, std::move(*cached));
            ++report_.reused;
            continue;
        }
        auto bytes =
            fetcher_.fetch(remote_.url + consistent_target_path(target), target.length, progress_);
        if (!bytes) {
            return tl::unexpected(with_context(bytes.error(), target.name));
        }
        if (auto matches =
                check_file(*bytes, FileInfo{0, target.length, target.sha256}, target.name);
            !matches) {
            return matches;
        }
        files_.emplace(target.name, std::move(*bytes));
        ++report_.downloaded;
    }
    return {};
}

// 6. A new cache generation, unless nothing changed.
Result<void> Refresh::commit() {
    if (!report_.changed && report_.downloaded == 0) {
        return {};
    }
    if (auto committed = commit_generation(cache_, remote_.name, trusted_, files_); !committed) {
        return committed;
    }
    report_.changed = true;
    return {};
}

}  // namespace

Result<RefreshReport> FeedClient::refresh(const Remote& remote, std::time_t now,
                                          const Progress& progress) const {
    auto trusted = load_trusted(cache_, remote);
    if (!trusted) {
        return tl::unexpected(trusted.error());
    }
    return Refresh(cache_, remote, now, progress, std::move(*trusted)).run();
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
