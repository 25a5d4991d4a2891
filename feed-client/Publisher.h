#pragma once

#include <cstdint>
#include <ctime>
#include <optional>
#include <string>
#include <vector>

#include "base/Error.h"
#include "feed-client/KeyPair.h"
#include "feed-client/Metadata.h"

namespace suture::feed {

// How long each role's new metadata stays valid, in seconds from now.
// Root and targets are signed rarely (offline keys), snapshot and timestamp
// often (online keys), so their lifetimes differ.
struct Lifetimes {
    std::int64_t root = 365 * 86400;
    std::int64_t targets = 90 * 86400;
    std::int64_t snapshot = 7 * 86400;
    std::int64_t timestamp = 86400;
};

// The publisher's side of the feed (`suture-feed`): a static repository
// directory any HTTP server can serve, and a separate keys directory.
//
// Repository layout (docs/feed-format.md):
//   root.json, N.root.json            every root version (the chain)
//   N.targets.json, N.snapshot.json   consistent snapshots
//   timestamp.json                    the only file rewritten in place
//   targets/<dirs>/<sha256>.<name>    the patch files
// Keys: KEYS/<role>-<n>.key, mode 0600, never inside the repository.
// Every operation needs only the keys of the roles it signs.
class Publisher {
  public:
    Publisher(std::string repository, std::string keys, Lifetimes lifetimes, std::time_t now)
        : repository_(std::move(repository)),
          keys_(std::move(keys)),
          lifetimes_(lifetimes),
          now_(now) {}

    // New keys (root_keys root keys with `root_threshold`, one key per online
    // role) and version 1 of every role, with no targets.
    Result<void> init(unsigned root_keys, unsigned root_threshold);

    // Adds (or replaces, by name) patch files with their custom metadata and
    // signs a new targets version. Needs the targets key. Refuses custom
    // metadata clients would refuse, and a repository whose latest targets
    // list a target clients refuse (it would be dropped silently).
    struct NewTarget {
        std::string name;
        std::string file;
        PatchsetInfo info;
    };
    Result<std::uint64_t> add_targets(const std::vector<NewTarget>& targets);

    // Signs a new snapshot of the latest targets and a new timestamp. Needs
    // the snapshot and timestamp keys.
    Result<void> publish();

    // Re-signs the timestamp only (freshness). `version` forces a version
    // (tests of rollback and fast-forward recovery).
    Result<void> timestamp(std::optional<std::uint64_t> version = std::nullopt);

    // Replaces the keys of `role` by a new key; root version N+1 is signed by
    // the old root keys and the new ones. Needs the root keys.
    Result<void> rotate(Role role);

  private:
    Result<Root> latest_root() const;
    Result<std::uint64_t> latest_version(const std::string& role) const;
    Result<FileInfo> latest_file_info(const std::string& role) const;
    Result<std::vector<KeyPair>> load_keys(Role role) const;
    Result<void> write_metadata(const std::string& file, const nlohmann::json& signed_part,
                                const std::vector<KeyPair>& keys);
    Result<void> write_root(const Root& root, const std::vector<const KeyPair*>& signers);

    std::string repository_;
    std::string keys_;
    Lifetimes lifetimes_;
    std::time_t now_;
};

}  // namespace suture::feed
