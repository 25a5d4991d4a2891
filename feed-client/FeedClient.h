#pragma once

#include <cstdint>
#include <ctime>
#include <optional>
#include <string>
#include <vector>

#include "base/Error.h"
#include "feed-client/Fetcher.h"
#include "feed-client/Metadata.h"
#include "feed-client/RemoteConfig.h"

namespace suture::feed {

// What one refresh of one remote did.
struct RefreshReport {
    std::string remote;
    std::uint64_t root_version = 0;
    std::uint64_t timestamp_version = 0;
    std::uint64_t snapshot_version = 0;
    std::uint64_t targets_version = 0;
    std::size_t targets = 0;     // files the feed lists
    std::size_t downloaded = 0;  // fetched this time
    std::size_t reused = 0;      // unchanged, taken from the cache
    bool changed = false;        // a new cache generation was written
};

// A patch file in the cache, verified, with the custom metadata of the feed
// (target.info). A target whose custom metadata is malformed is listed as
// refused: never usable, no file, and target.info empty.
struct CachedTarget {
    std::string remote;
    Target target;
    std::string path;               // the verified file in the cache ("" if refused)
    bool usable = true;             // passes channel, level pin and delay
    std::string held_back_because;  // why not, if not
    std::optional<Error> refused;   // bad_format "NAME: custom: what", if refused
    // The remote's targets metadata this listing verified (the same for
    // every target of one list()): its version, and the ids of the targets
    // role's keys whose signatures verified it, sorted. What the audit
    // report names as the feed a patch came from.
    std::uint64_t targets_version = 0;
    std::vector<std::string> signing_keys;
};

// The TUF client. Each remote's verified state lives in
// CACHE/<remote>/current, a symlink to a generation directory holding the
// four metadata files, roots/N.root.json (the chain after the pinned root)
// and targets/<name>. A refresh stages the next generation beside it
// (gen-*.partial, removed on any failure) and switches the symlink only
// when everything verified, so a failed or killed refresh leaves the cache
// as it was. The cache is never trusted on its own word: every load checks
// its directories (owner, mode, no symlink) and verifies it again from the
// pinned root (docs/feed-format.md, "What is verified on every load").
class FeedClient {
  public:
    explicit FeedClient(std::string cache_directory) : cache_(std::move(cache_directory)) {}

    // One remote, in TUF's order: the root chain (each new root signed by the
    // old and the new root threshold), then timestamp, snapshot, targets
    // (each signed, unexpired, no rollback, only strictly newer versions
    // replace trusted ones, lengths and hashes as the previous role says,
    // metadata capped at 1 MiB), then the target files, streamed to disk
    // with their signed length as the cap and checked by length and
    // SHA-256. Targets with malformed custom metadata are not downloaded
    // (list() reports them). `now` is the current time; `progress` reports
    // target downloads.
    Result<RefreshReport> refresh(const Remote& remote, std::time_t now,
                                  const Progress& progress = {}) const;

    // The cached, verified targets of one remote (no network), then its
    // refused ones. The cached metadata is verified again from the pinned
    // root, and each cached file again by length and hash (one that no
    // longer matches is refused as hash_mismatch). `now` decides the delay;
    // expired metadata still lists (offline reapplication). The patch
    // file's own metadata is checked against `custom` by the engine
    // (src/engine/Feed.cpp), which may read patch files.
    Result<std::vector<CachedTarget>> list(const Remote& remote, std::time_t now) const;

  private:
    std::string cache_;
};

}  // namespace suture::feed
