#pragma once

#include <string>
#include <vector>

#include "base/Error.h"
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
Result<std::vector<feed::CachedTarget>> list_feeds(const FeedOptions& options);

}  // namespace suture
