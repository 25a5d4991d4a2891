#pragma once

#include <string>
#include <vector>

#include "base/Error.h"
#include "engine/Exposure.h"
#include "feed-client/Advisories.h"
#include "feed-client/FeedClient.h"

namespace suture {

// Where the feed client reads its remotes and keeps its cache.
struct FeedOptions {
    std::string config_directory;  // holds remotes.d/; default $SUTURE_CONFIG_DIR or /etc/suture
    std::string cache_directory;   // default $SUTURE_FEED_CACHE, /var/cache/suture/feed as root,
                                   // else ~/.cache/suture/feed
};

// The options with every empty field set to its default.
FeedOptions resolve_feed_options(FeedOptions options);

// One remote's refresh: its report or its error.
struct RemoteRefresh {
    std::string remote;
    Result<feed::RefreshReport> result;
};

// Refreshes every enabled remote of remotes.d (docs/feed-format.md). A
// remote that fails leaves its cache as it was; the others go on.
// Error only if the configuration cannot be read or names no remote.
Result<std::vector<RemoteRefresh>> refresh_feeds(const FeedOptions& options,
                                                 const feed::Progress& progress = {});

// The verified patchsets in the cache of every enabled remote (no network).
// Patch files only: the advisory data is load_advisories'.
Result<std::vector<feed::CachedTarget>> list_feeds(const FeedOptions& options);

// The advisory data in the verified caches (docs/feed-format.md, "Advisory
// data"): each enabled remote's usable advisories target, verified by the
// client like any target (signed length and SHA-256, from the pinned root),
// then parsed strictly. The remotes' builds are merged, the first remote
// (in remotes.d order) winning a build two describe. Never fails: what
// could not be read is named in `problems`; no remote at all is no data.
struct AdvisoryData {
    std::optional<feed::Advisories> advisories;  // nullopt: no remote offers any
    std::vector<std::string> sources;            // "remote NAME, published TIME"
    std::vector<std::string> problems;
    // For the metrics: the earliest expiry of the remotes' verified
    // timestamp metadata (0: unknown).
    std::time_t feed_expires = 0;
    // What the remotes' patch targets (refused ones aside, usable or not:
    // what an active patch fixes does not depend on the channel) say they
    // supersede, for the exposure of processes where they are active.
    Supersessions supersessions;
};
AdvisoryData load_advisories(const FeedOptions& options);

}  // namespace suture
