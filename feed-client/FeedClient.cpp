#include "feed-client/FeedClient.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <optional>
#include <thread>

#include "base/Files.h"
#include "base/Sha256.h"
#include "feed-client/CacheFiles.h"

namespace suture::feed {

namespace {

std::string as_text(const std::vector<std::byte>& bytes) {
    return std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size());
}

// One role's verified metadata: what it says, the bytes the cache keeps
// (stored), the canonical signed bytes that were verified, which are
// what "the same file" means (a re-encoding is not a change), and the ids
// of the role's keys whose signatures verified them (sorted).
template <typename T>
struct Held {
    T role;
    std::string stored;
    std::string canonical;
    std::vector<std::string> signed_by;
};

// Metadata the client trusts: the root chain from the pinned root, and the
// verified files of the other roles.
struct Trusted {
    Root root;
    std::string root_text;                                  // of `root`, as stored
    std::vector<std::pair<std::uint64_t, std::string>> chain;  // roots after the pinned one
    std::optional<Held<Timestamp>> timestamp;
    std::optional<Held<Snapshot>> snapshot;
    std::optional<Held<Targets>> targets;
};

// How a verified file is stored: snapshot and targets exactly as served
// (their length and hash are signed by the role above, so no byte of them
// is a mirror's choice); the timestamp and roots in canonical form with only
// the signatures that verified.
enum class Storage { as_served, canonical };

// Parses, verifies against `root` and interprets one role's file.
template <typename T, typename Parse>
Result<Held<T>> verified(const std::string& text, const Root& root, Role role,
                         const std::string& name, Parse parse, Storage storage) {
    auto envelope = parse_envelope(bytes_of(text), name);
    if (!envelope) {
        return tl::unexpected(envelope.error());
    }
    ValidSignatures valid;
    if (auto signatures = verify_signatures(*envelope, root, role, name, &valid); !signatures) {
        return tl::unexpected(signatures.error());
    }
    auto parsed = parse(envelope->signed_part, name);
    if (!parsed) {
        return tl::unexpected(parsed.error());
    }
    std::string stored =
        storage == Storage::canonical ? verified_envelope_text(*envelope, valid) : text;
    std::vector<std::string> signed_by;
    for (const auto& [key_id, signature] : valid) {
        signed_by.push_back(key_id);  // a map: in key id order
    }
    return Held<T>{std::move(*parsed), std::move(stored), std::move(envelope->canonical),
                   std::move(signed_by)};
}

// A root file that signs itself (the pinned root).
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

// The next root of the chain, `name` = N+1.root.json: signed by the
// threshold of the trusted root's root keys and by the threshold of its own,
// and saying version N+1 exactly. Returns it with the text to store.
Result<std::pair<Root, std::string>> verified_next_root(std::span<const std::byte> bytes,
                                                        const Root& trusted,
                                                        const std::string& name) {
    auto envelope = parse_envelope(bytes, name);
    if (!envelope) {
        return tl::unexpected(envelope.error());
    }
    ValidSignatures valid;
    if (auto old_signatures = verify_signatures(*envelope, trusted, Role::root,
                                                name + " (by the previous root's keys)", &valid);
        !old_signatures) {
        return tl::unexpected(old_signatures.error());
    }
    auto root = parse_root(envelope->signed_part, name);
    if (!root) {
        return tl::unexpected(root.error());
    }
    if (auto own_signatures = verify_signatures(*envelope, *root, Role::root,
                                                name + " (by its own root keys)", &valid);
        !own_signatures) {
        return tl::unexpected(own_signatures.error());
    }
    if (root->version != trusted.version + 1) {
        return fail(ErrorCode::rollback, name + ": says version " + std::to_string(root->version) +
                                             ", expected " + std::to_string(trusted.version + 1));
    }
    return std::pair{std::move(*root), verified_envelope_text(*envelope, valid)};
}

Result<void> check_unexpired(const Common& role, std::time_t now, const std::string& name) {
    if (now >= role.expires) {
        return fail(ErrorCode::expired,
                    name + ": expired at " + format_utc(role.expires) + " (a frozen feed?)");
    }
    return {};
}

Result<void> check_digest(const FileDigest& digest, std::uint64_t length, const std::string& sha256,
                          const std::string& name) {
    if (digest.length != length) {
        return fail(ErrorCode::hash_mismatch, name + ": " + std::to_string(digest.length) +
                                                  " bytes, signed metadata says " +
                                                  std::to_string(length));
    }
    if (digest.sha256 != sha256) {
        return fail(ErrorCode::hash_mismatch, name + ": SHA-256 differs from the signed metadata");
    }
    return {};
}

Result<void> check_file(const std::vector<std::byte>& bytes, const FileInfo& expected,
                        const std::string& name) {
    return check_digest(FileDigest{bytes.size(), sha256_hex(bytes)}, expected.length,
                        expected.sha256, name);
}

bool same_keys(const Root& a, const Root& b, Role role) {
    return a.roles.at(role).key_ids == b.roles.at(role).key_ids &&
           a.roles.at(role).threshold == b.roles.at(role).threshold;
}

// --- the cache on disk --------------------------------------------------------

std::string remote_directory(const std::string& cache, const std::string& remote) {
    return cache + "/" + remote;
}

// The generation `current` names (CACHE/REMOTE/gen-...), after checking
// the cache's directories (check_private_directory) and that `current` is
// a symlink to a sibling generation; nullopt when there is no cache yet.
Result<std::optional<std::string>> cached_generation(const std::string& cache,
                                                     const std::string& remote) {
    if (cache.empty()) {
        return fail(ErrorCode::invalid_argument,
                    "no feed cache directory: set SUTURE_FEED_CACHE, or HOME for a user's cache");
    }
    std::string base = remote_directory(cache, remote);
    for (const std::string& directory : {cache, base}) {
        if (auto checked = check_private_directory(directory); !checked) {
            return tl::unexpected(checked.error());
        }
    }
    char target[256];
    ssize_t length = ::readlink((base + "/current").c_str(), target, sizeof target - 1);
    if (length < 0) {
        if (errno == ENOENT) {
            return std::optional<std::string>{};
        }
        return fail(ErrorCode::permission_denied,
                    base + "/current: not a symlink to a generation; refused");
    }
    std::string name(target, static_cast<std::size_t>(length));
    if (!name.starts_with("gen-") || name.find('/') != std::string::npos ||
        name.ends_with(".partial")) {
        return fail(ErrorCode::permission_denied,
                    base + "/current: points to \"" + name + "\", not a generation; refused");
    }
    std::string generation = base + "/" + name;
    struct stat st {};
    if (::lstat(generation.c_str(), &st) != 0) {
        return std::optional<std::string>{};  // dangling: as if never refreshed
    }
    if (auto checked = check_private_directory(generation); !checked) {
        return tl::unexpected(checked.error());
    }
    return std::optional<std::string>{generation};
}

// A cached role's file, if it still verifies against the trusted root
// (else it is dropped, and fetched again).
template <typename T, typename Parse>
void load_cached_role(const std::string& path, const Root& root, Role role, Parse parse,
                      Storage storage, std::optional<Held<T>>& trusted) {
    auto text = read_capped(path, role == Role::timestamp ? max_timestamp_size : max_metadata_size);
    if (!text) {
        return;
    }
    if (auto held = verified<T>(*text, root, role, "cached " + role_name(role), parse, storage)) {
        trusted = std::move(*held);
    }
}

// Does `held`'s file match what the role above says of it?
template <typename T>
bool is_described_file(const Held<T>& held, const FileInfo& described) {
    return held.role.version == described.version && held.stored.size() == described.length &&
           sha256_hex(bytes_of(held.stored)) == described.sha256;
}

// Loads the trusted state, verified on every load from the pinned root:
// the pinned root, then the cached root chain (roots/N.root.json, each
// signed by its predecessor), then each cached role if it verifies against
// that root and is the very file the role above describes. A file that does
// not hold is dropped (a refresh fetches it again; list() refuses a cache
// without verified targets). Returns the generation read, if any.
Result<std::pair<Trusted, std::optional<std::string>>> load_trusted(const std::string& cache,
                                                                    const Remote& remote) {
    // 1. The cache's directories, before anything is read from them.
    auto generation = cached_generation(cache, remote.name);
    if (!generation) {
        return tl::unexpected(generation.error());
    }
    // 2. The pinned root.
    Trusted trusted;
    auto pinned = read_capped(remote.root_file, max_metadata_size);
    if (!pinned) {
        return fail(ErrorCode::not_found, remote.source + ": the pinned root " + remote.root_file +
                                              " cannot be read: " + pinned.error().message);
    }
    auto root = self_signed_root(*pinned, remote.name + ": pinned root");
    if (!root) {
        return tl::unexpected(root.error());
    }
    trusted.root = std::move(*root);
    trusted.root_text = std::move(*pinned);
    if (!*generation) {
        return std::pair{std::move(trusted), std::optional<std::string>{}};
    }
    const std::string& directory = **generation;
    // 3. The cached root chain.
    for (;;) {
        std::uint64_t version = trusted.root.version + 1;
        auto text = read_capped(directory + "/roots/" + std::to_string(version) + ".root.json",
                                max_metadata_size);
        if (!text) {
            break;
        }
        auto next = verified_next_root(bytes_of(*text), trusted.root, "cached root");
        if (!next) {
            break;
        }
        trusted.root = std::move(next->first);
        trusted.root_text = next->second;
        trusted.chain.emplace_back(version, std::move(next->second));
    }
    // 4. The roles, each tied to the one above it.
    load_cached_role(directory + "/timestamp.json", trusted.root, Role::timestamp,
                     parse_timestamp, Storage::as_served, trusted.timestamp);
    load_cached_role(directory + "/snapshot.json", trusted.root, Role::snapshot, parse_snapshot,
                     Storage::as_served, trusted.snapshot);
    load_cached_role(directory + "/targets.json", trusted.root, Role::targets, parse_targets,
                     Storage::as_served, trusted.targets);
    if (!trusted.timestamp || !trusted.snapshot ||
        !is_described_file(*trusted.snapshot, trusted.timestamp->role.snapshot)) {
        trusted.snapshot.reset();
    }
    if (!trusted.snapshot || !trusted.targets ||
        !is_described_file(*trusted.targets, trusted.snapshot->role.targets)) {
        trusted.targets.reset();
    }
    return std::pair{std::move(trusted), *generation};
}

// Holds the remote's directory locked (flock) against another refresh of
// the same remote (the daemon's and a CLI's), for at most `seconds`.
Result<UniqueFD> lock_directory(const std::string& directory, long seconds) {
    UniqueFD fd(::open(directory.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!fd.is_valid()) {
        return fail_errno(directory, errno);
    }
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
    while (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
        if (errno != EWOULDBLOCK && errno != EINTR) {
            return fail_errno(directory + ": lock", errno);
        }
        if (std::chrono::steady_clock::now() >= deadline) {
            return fail(ErrorCode::busy, directory + ": another refresh of this remote is running");
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return fd;
}

// Leftovers of refreshes that failed or were killed: staging directories
// and a half-made link.
void remove_leftovers(const std::string& base) {
    for (const std::string& name : directory_entries(base)) {
        if ((name.starts_with("gen-") && name.ends_with(".partial")) || name == "current.new") {
            remove_tree(base + "/" + name);
        }
    }
}

// A staging directory that is removed unless it was committed, so that no
// failure path leaves one behind.
class Staging {
  public:
    explicit Staging(std::string path) : path_(std::move(path)) {}
    Staging(const Staging&) = delete;
    Staging& operator=(const Staging&) = delete;
    ~Staging() {
        if (!committed_) {
            remove_tree(path_);
        }
    }
    const std::string& path() const { return path_; }
    void committed() { committed_ = true; }

  private:
    std::string path_;
    bool committed_ = false;
};

// Why the cached file at `path` is not the target the signed metadata
// describes (length and hash, read with its cap, a regular file only); ""
// when it is. On every load, for every target.
std::string file_problem(const std::string& path, const Target& target) {
    auto digest = digest_regular_file(path, target.length);
    if (!digest) {
        return "the cached file cannot be used (" + digest.error().message + "); refresh again";
    }
    if (auto matches = check_digest(*digest, target.length, target.sha256, "the cached file");
        !matches) {
        return matches.error().message + "; refresh again";
    }
    return "";
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
// it holds, trusts it. Only a strictly newer version replaces a trusted
// file. Nothing reaches the cache before commit(), and nothing a refresh
// stages outlives it unless committed.
class Refresh {
  public:
    Refresh(const std::string& cache, const Remote& remote, std::time_t now,
            const Progress& progress, Trusted trusted, std::optional<std::string> generation)
        : cache_(cache),
          base_(remote_directory(cache, remote.name)),
          remote_(remote),
          now_(now),
          progress_(progress),
          fetcher_(remote.limits),
          trusted_(std::move(trusted)),
          generation_(std::move(generation)) {
        report_.remote = remote.name;
    }

    Result<RefreshReport> run() {
        return lock_and_clean()
            .and_then([this] { return update_root(); })
            .and_then([this] { return update_timestamp(); })
            .and_then([this] { return update_snapshot(); })
            .and_then([this] { return update_targets(); })
            .and_then([this] { return update_target_files(); })
            .transform([this] { return report_; });
    }

  private:
    Result<void> lock_and_clean();
    Result<void> update_root();
    Result<bool> rotate_root();
    void reset_rotated_roles(const Root& next);
    Result<void> update_timestamp();
    Result<void> update_snapshot();
    Result<void> update_targets();
    Result<void> update_target_files();
    bool cache_has_every_target() const;
    Result<void> stage_target(const Staging& staging, const Target& target);
    Result<void> write_metadata(const Staging& staging) const;
    Result<void> commit(Staging& staging, const std::string& generation);

    // A snapshot or targets file as the role above describes it.
    template <typename T, typename Parse>
    Result<std::optional<Held<T>>> described_role(const std::string& described_by,
                                                  const std::string& name,
                                                  const FileInfo& expected, Role role,
                                                  Parse parse, const std::optional<Held<T>>& held);

    const std::string& cache_;
    std::string base_;
    const Remote& remote_;
    std::time_t now_;
    const Progress& progress_;
    Fetcher fetcher_;
    Trusted trusted_;
    std::optional<std::string> generation_;  // the cached generation, if any
    UniqueFD lock_;
    RefreshReport report_;
};

// 0. Against a concurrent refresh of this remote, then the leftovers of
// failed ones. A remote never refreshed has no directory yet: commit()
// creates and locks it.
Result<void> Refresh::lock_and_clean() {
    struct stat st {};
    if (::lstat(base_.c_str(), &st) != 0) {
        return {};
    }
    auto lock = lock_directory(base_, remote_.limits.total_timeout_seconds);
    if (!lock) {
        return tl::unexpected(lock.error());
    }
    lock_ = std::move(*lock);
    remove_leftovers(base_);
    return {};
}

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
    auto next = verified_next_root(*bytes, trusted_.root, name);
    if (!next) {
        return tl::unexpected(next.error());
    }
    reset_rotated_roles(next->first);
    trusted_.root = std::move(next->first);
    trusted_.root_text = next->second;
    trusted_.chain.emplace_back(trusted_.root.version, std::move(next->second));
    report_.changed = true;
    return true;
}

// Fast-forward recovery (TUF 5.3.11): new keys for a role reset what was
// trusted of it and of the roles whose rollback checks rest on it, so that
// versions an attacker inflated with a stolen key cannot block the feed:
// the timestamp's check rests on the snapshot version, the snapshot's on
// the targets version.
void Refresh::reset_rotated_roles(const Root& next) {
    bool timestamp = !same_keys(trusted_.root, next, Role::timestamp);
    bool snapshot = !same_keys(trusted_.root, next, Role::snapshot);
    bool targets = !same_keys(trusted_.root, next, Role::targets);
    if (timestamp || snapshot) {
        trusted_.timestamp.reset();
    }
    if (timestamp || snapshot || targets) {
        trusted_.snapshot.reset();
    }
    if (targets) {
        trusted_.targets.reset();
    }
}

// 2. The timestamp: signed, no rollback, unexpired. The trusted version
// again is no change if it is the same signed content, and refused if it
// is not (the trusted one is kept).
Result<void> Refresh::update_timestamp() {
    auto bytes = fetcher_.fetch(remote_.url + "timestamp.json", max_timestamp_size);
    if (!bytes) {
        return tl::unexpected(bytes.error());
    }
    auto fresh = verified<Timestamp>(as_text(*bytes), trusted_.root, Role::timestamp,
                                     "timestamp.json", parse_timestamp, Storage::canonical);
    if (!fresh) {
        return tl::unexpected(fresh.error());
    }
    const Timestamp& timestamp = fresh->role;
    if (const auto& held = trusted_.timestamp) {
        if (timestamp.version < held->role.version) {
            return fail(ErrorCode::rollback,
                        "timestamp.json: version " + std::to_string(timestamp.version) +
                            " is older than the trusted " + std::to_string(held->role.version));
        }
        if (timestamp.version == held->role.version && fresh->canonical != held->canonical) {
            return fail(ErrorCode::rollback,
                        "timestamp.json: version " + std::to_string(timestamp.version) +
                            " again, with other signed content than the trusted one (kept)");
        }
        if (timestamp.snapshot.version < held->role.snapshot.version) {
            return fail(ErrorCode::rollback, "timestamp.json: names snapshot version " +
                                                 std::to_string(timestamp.snapshot.version) +
                                                 ", older than the trusted " +
                                                 std::to_string(held->role.snapshot.version));
        }
    }
    if (auto unexpired = check_unexpired(timestamp, now_, "timestamp.json"); !unexpired) {
        return unexpired;
    }
    report_.timestamp_version = timestamp.version;
    if (!trusted_.timestamp || timestamp.version > trusted_.timestamp->role.version) {
        trusted_.timestamp = std::move(*fresh);
        report_.changed = true;
    }
    return {};
}

// The file `name` as `described_by` describes it (`expected`: version,
// length, SHA-256): the trusted one (nullopt) if it is that very file,
// refused if it is the trusted version with other content or an older one;
// else downloaded with a cap of min(signed length, max_metadata_size),
// checked by length and hash, verified by `role`'s keys, and of exactly
// that version.
template <typename T, typename Parse>
Result<std::optional<Held<T>>> Refresh::described_role(const std::string& described_by,
                                                       const std::string& name,
                                                       const FileInfo& expected, Role role,
                                                       Parse parse,
                                                       const std::optional<Held<T>>& held) {
    std::string what = role_name(role) + " version " + std::to_string(expected.version);
    if (held) {
        if (is_described_file(*held, expected)) {
            return std::optional<Held<T>>{};
        }
        if (expected.version <= held->role.version) {
            return fail(ErrorCode::rollback,
                        described_by + ": names " + what +
                            (expected.version == held->role.version
                                 ? ", the trusted version, with other content (the trusted one "
                                   "is kept)"
                                 : ", older than the trusted " +
                                       std::to_string(held->role.version)));
        }
    }
    if (expected.length > max_metadata_size) {
        return fail(ErrorCode::too_large, described_by + ": names " + what + " of " +
                                              std::to_string(expected.length) +
                                              " bytes, more than the metadata cap of " +
                                              std::to_string(max_metadata_size));
    }
    auto bytes = fetcher_.fetch(remote_.url + name, expected.length);
    if (!bytes) {
        return tl::unexpected(bytes.error());
    }
    if (auto matches = check_file(*bytes, expected, name); !matches) {
        return tl::unexpected(matches.error());
    }
    auto fresh = verified<T>(as_text(*bytes), trusted_.root, role, name, parse, Storage::as_served);
    if (!fresh) {
        return tl::unexpected(fresh.error());
    }
    if (fresh->role.version != expected.version) {
        return fail(ErrorCode::rollback,
                    name + ": says version " + std::to_string(fresh->role.version));
    }
    return std::optional<Held<T>>{std::move(*fresh)};
}

// 3. The snapshot, exactly as the timestamp describes it; no rollback of
// the targets it names; unexpired.
Result<void> Refresh::update_snapshot() {
    const FileInfo& described = trusted_.timestamp->role.snapshot;
    std::string name = std::to_string(described.version) + ".snapshot.json";
    auto fresh = described_role<Snapshot>("timestamp.json", name, described, Role::snapshot,
                                          parse_snapshot, trusted_.snapshot);
    if (!fresh) {
        return tl::unexpected(fresh.error());
    }
    if (*fresh) {
        const Snapshot& snapshot = (*fresh)->role;
        if (trusted_.snapshot &&
            snapshot.targets.version < trusted_.snapshot->role.targets.version) {
            return fail(ErrorCode::rollback,
                        name + ": names targets version " + std::to_string(snapshot.targets.version) +
                            ", older than the trusted " +
                            std::to_string(trusted_.snapshot->role.targets.version));
        }
        trusted_.snapshot = std::move(**fresh);
        report_.changed = true;
    }
    if (auto unexpired = check_unexpired(trusted_.snapshot->role, now_, name); !unexpired) {
        return unexpired;
    }
    report_.snapshot_version = trusted_.snapshot->role.version;
    return {};
}

// 4. The targets, exactly as the snapshot describes them; unexpired.
Result<void> Refresh::update_targets() {
    const FileInfo& described = trusted_.snapshot->role.targets;
    std::string name = std::to_string(described.version) + ".targets.json";
    auto fresh =
        described_role<Targets>(std::to_string(trusted_.snapshot->role.version) + ".snapshot.json",
                                name, described, Role::targets, parse_targets, trusted_.targets);
    if (!fresh) {
        return tl::unexpected(fresh.error());
    }
    if (*fresh) {
        trusted_.targets = std::move(**fresh);
        report_.changed = true;
    }
    if (auto unexpired = check_unexpired(trusted_.targets->role, now_, name); !unexpired) {
        return unexpired;
    }
    report_.targets_version = trusted_.targets->role.version;
    report_.targets = trusted_.targets->role.targets.size();
    return {};
}

// Is every target's file in the cached generation, the signed file?
bool Refresh::cache_has_every_target() const {
    if (!generation_) {
        return false;
    }
    return std::all_of(trusted_.targets->role.targets.begin(),
                       trusted_.targets->role.targets.end(), [&](const Target& target) {
                           auto digest = digest_regular_file(
                               *generation_ + "/targets/" + target.name, target.length);
                           return digest && check_digest(*digest, target.length, target.sha256,
                                                         target.name);
                       });
}

// 5. The target files, by length and hash, before anything reads them. A
// target larger than any patch file is refused before any download. If the
// metadata did not change and the cache holds every file, nothing is
// written; else a new generation is staged, each file copied from the cache
// when it is still the signed one or else streamed from the server into the
// staging directory with a cap of its signed length, then committed.
// Refused targets are not fetched.
Result<void> Refresh::update_target_files() {
    const std::vector<Target>& targets = trusted_.targets->role.targets;
    for (const Target& target : targets) {
        if (target.length > max_target_size) {
            return fail(ErrorCode::too_large,
                        target.name + ": signed length " + std::to_string(target.length) +
                            " is more than any patch file (" + std::to_string(max_target_size) +
                            " bytes)");
        }
    }
    if (!report_.changed && cache_has_every_target()) {
        report_.reused = targets.size();
        return {};
    }
    if (auto made = make_directories(base_, 0700); !made) {
        return made;
    }
    if (auto checked = check_private_directory(base_); !checked) {
        return checked;
    }
    if (!lock_.is_valid()) {
        if (auto locked = lock_and_clean(); !locked) {
            return locked;
        }
    }
    std::string generation;
    for (unsigned n = 1;; ++n) {
        generation = "gen-" + std::to_string(::time(nullptr)) + "-" + std::to_string(n);
        if (::access((base_ + "/" + generation).c_str(), F_OK) != 0 &&
            ::access((base_ + "/" + generation + ".partial").c_str(), F_OK) != 0) {
            break;
        }
    }
    Staging staging(base_ + "/" + generation + ".partial");
    if (::mkdir(staging.path().c_str(), 0700) != 0) {
        return fail_errno(staging.path(), errno);
    }
    for (const Target& target : targets) {
        if (auto staged = stage_target(staging, target); !staged) {
            return staged;
        }
    }
    return write_metadata(staging).and_then([&] { return commit(staging, generation); });
}

// One target file into the staging directory: the cached copy if it is
// the signed file (the bytes copied are the bytes checked), else
// downloaded into it.
Result<void> Refresh::stage_target(const Staging& staging, const Target& target) {
    std::string path = staging.path() + "/targets/" + target.name;
    if (auto made = make_directories(path.substr(0, path.rfind('/')), 0700); !made) {
        return made;
    }
    UniqueFD fd(::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
    if (!fd.is_valid()) {
        return fail_errno(path, errno);
    }
    if (generation_) {
        auto copied =
            digest_regular_file(*generation_ + "/targets/" + target.name, target.length, fd.get());
        if (copied && check_digest(*copied, target.length, target.sha256, target.name)) {
            ++report_.reused;
            return {};
        }
        if (::ftruncate(fd.get(), 0) != 0 || ::lseek(fd.get(), 0, SEEK_SET) != 0) {
            return fail_errno(path, errno);
        }
    }
    if (auto fetched = fetcher_.fetch_to_file(remote_.url + consistent_target_url(target),
                                              target.length, fd.get(), progress_);
        !fetched) {
        return tl::unexpected(with_context(fetched.error(), target.name));
    }
    auto digest = digest_descriptor(fd.get(), target.name, target.length);
    if (!digest) {
        return tl::unexpected(digest.error());
    }
    if (auto matches = check_digest(*digest, target.length, target.sha256, target.name);
        !matches) {
        return matches;
    }
    if (::fsync(fd.get()) != 0) {
        return fail_errno(path, errno);
    }
    ++report_.downloaded;
    return {};
}

// The verified metadata into the staging directory: the four roles, and
// the root chain from the pinned root (roots/N.root.json) that lets every
// load verify the cache from the pinned root again.
Result<void> Refresh::write_metadata(const Staging& staging) const {
    auto write = [&](const std::string& relative, const std::string& text) -> Result<void> {
        std::string path = staging.path() + "/" + relative;
        if (auto made = make_directories(path.substr(0, path.rfind('/')), 0700); !made) {
            return made;
        }
        return write_file_atomically(path, bytes_of(text), 0600);
    };
    for (const auto& [version, text] : trusted_.chain) {
        if (auto written = write("roots/" + std::to_string(version) + ".root.json", text);
            !written) {
            return written;
        }
    }
    for (const auto& [name, text] : {std::pair{"root.json", &trusted_.root_text},
                                     std::pair{"timestamp.json", &trusted_.timestamp->stored},
                                     std::pair{"snapshot.json", &trusted_.snapshot->stored},
                                     std::pair{"targets.json", &trusted_.targets->stored}}) {
        if (auto written = write(name, *text); !written) {
            return written;
        }
    }
    return {};
}

// 6. The staged generation becomes `current`; older generations go.
Result<void> Refresh::commit(Staging& staging, const std::string& generation) {
    std::string final_path = base_ + "/" + generation;
    if (::rename(staging.path().c_str(), final_path.c_str()) != 0) {
        return fail_errno(staging.path(), errno);
    }
    staging.committed();
    std::string link = base_ + "/current.new";
    ::unlink(link.c_str());
    if (::symlink(generation.c_str(), link.c_str()) != 0 ||
        ::rename(link.c_str(), (base_ + "/current").c_str()) != 0) {
        int error = errno;
        ::unlink(link.c_str());
        remove_tree(final_path);
        return fail_errno(base_ + "/current", error);
    }
    for (const std::string& name : directory_entries(base_)) {
        if (name.starts_with("gen-") && name != generation) {
            remove_tree(base_ + "/" + name);
        }
    }
    report_.changed = true;
    return {};
}

}  // namespace

Result<RefreshReport> FeedClient::refresh(const Remote& remote, std::time_t now,
                                          const Progress& progress) const {
    auto loaded = load_trusted(cache_, remote);
    if (!loaded) {
        return tl::unexpected(loaded.error());
    }
    return Refresh(cache_, remote, now, progress, std::move(loaded->first),
                   std::move(loaded->second))
        .run();
}

Result<std::vector<CachedTarget>> FeedClient::list(const Remote& remote, std::time_t now) const {
    std::vector<CachedTarget> listed;
    auto loaded = load_trusted(cache_, remote);
    if (!loaded) {
        return tl::unexpected(loaded.error());
    }
    const auto& [trusted, generation] = *loaded;
    if (!generation) {
        return listed;  // never refreshed
    }
    if (!trusted.targets) {
        return fail(ErrorCode::bad_signature,
                    remote.name + ": the cached targets metadata does not verify from the pinned "
                                  "root (refresh again)");
    }
    // Each with the metadata that said so, for the records of what is applied.
    auto listing = [&](Target target, std::string path, std::string held_back,
                       std::optional<Error> refused) {
        return CachedTarget{.remote = remote.name,
                            .target = std::move(target),
                            .path = std::move(path),
                            .usable = !refused && held_back.empty(),
                            .held_back_because = std::move(held_back),
                            .refused = std::move(refused),
                            .targets_version = trusted.targets->role.version,
                            .signing_keys = trusted.targets->signed_by};
    };
    for (const Target& target : trusted.targets->role.targets) {
        std::string path = *generation + "/targets/" + target.name;
        if (std::string problem = file_problem(path, target); !problem.empty()) {
            listed.push_back(listing(target, "", "refused: " + problem,
                                     Error{ErrorCode::hash_mismatch, target.name + ": " + problem}));
            continue;
        }
        listed.push_back(listing(target, path, held_back_because(target.info, remote, now),
                                 std::nullopt));
    }
    for (const RefusedTarget& refused : trusted.targets->role.refused) {
        listed.push_back(listing(Target{refused.name, refused.length, refused.sha256, {}}, "",
                                 "refused: " + refused.error.message, refused.error));
    }
    return listed;
}

}  // namespace suture::feed
