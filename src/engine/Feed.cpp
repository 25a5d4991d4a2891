#include "engine/Feed.h"

#include <unistd.h>

#include <cstdlib>
#include <ctime>

#include "engine/Engine.h"

namespace suture {

namespace {

std::string environment_or(const char* name, const std::string& fallback) {
    const char* value = std::getenv(name);
    return value != nullptr && *value != '\0' ? std::string(value) : fallback;
}

Result<std::vector<feed::Remote>> enabled_remotes(const FeedOptions& options) {
    auto remotes = feed::load_remotes(options.config_directory + "/remotes.d");
    if (!remotes) {
        return tl::unexpected(remotes.error());
    }
    std::vector<feed::Remote> enabled;
    for (feed::Remote& remote : *remotes) {
        if (remote.enabled) {
            enabled.push_back(std::move(remote));
        }
    }
    if (enabled.empty()) {
        return fail(ErrorCode::not_found, options.config_directory +
                                              "/remotes.d: no enabled remote (see "
                                              "docs/operator-guide.md, \"Feeds\")");
    }
    return enabled;
}

}  // namespace

FeedOptions resolve_feed_options(FeedOptions options) {
    if (options.config_directory.empty()) {
        options.config_directory = environment_or("SUTURE_CONFIG_DIR", "/etc/suture");
    }
    if (options.cache_directory.empty()) {
        std::string fallback = "/var/cache/suture/feed";
        if (::geteuid() != 0) {
            fallback =
                environment_or("XDG_CACHE_HOME", environment_or("HOME", "/tmp") + "/.cache") +
                "/suture/feed";
        }
        options.cache_directory = environment_or("SUTURE_FEED_CACHE", fallback);
    }
    return options;
}

Result<std::vector<RemoteRefresh>> refresh_feeds(const FeedOptions& options,
                                                 const feed::Progress& progress) {
    auto remotes = enabled_remotes(options);
    if (!remotes) {
        return tl::unexpected(remotes.error());
    }
    feed::FeedClient client(options.cache_directory);
    std::vector<RemoteRefresh> refreshes;
    for (const feed::Remote& remote : *remotes) {
        refreshes.push_back({remote.name, client.refresh(remote, ::time(nullptr), progress)});
    }
    return refreshes;
}

Result<std::vector<feed::CachedTarget>> list_feeds(const FeedOptions& options) {
    auto remotes = enabled_remotes(options);
    if (!remotes) {
        return tl::unexpected(remotes.error());
    }
    feed::FeedClient client(options.cache_directory);
    std::vector<feed::CachedTarget> all;
    for (const feed::Remote& remote : *remotes) {
        auto listed = client.list(remote, ::time(nullptr));
        if (!listed) {
            return tl::unexpected(with_context(listed.error(), "remote " + remote.name));
        }
        all.insert(all.end(), listed->begin(), listed->end());
    }
    return all;
}

nlohmann::json refresh_to_json(const std::vector<RemoteRefresh>& refreshes) {
    nlohmann::json remotes = nlohmann::json::array();
    for (const RemoteRefresh& refresh : refreshes) {
        if (refresh.result) {
            const feed::RefreshReport& report = *refresh.result;
            remotes.push_back({{"remote", refresh.remote},
                               {"ok", true},
                               {"changed", report.changed},
                               {"versions",
                                {{"root", report.root_version},
                                 {"timestamp", report.timestamp_version},
                                 {"snapshot", report.snapshot_version},
                                 {"targets", report.targets_version}}},
                               {"targets", report.targets},
                               {"downloaded", report.downloaded},
                               {"reused", report.reused}});
        } else {
            remotes.push_back({{"remote", refresh.remote},
                               {"ok", false},
                               {"error",
                                {{"reason", error_code_name(refresh.result.error().code)},
                                 {"message", refresh.result.error().message}}}});
        }
    }
    return {{"remotes", remotes}};
}

nlohmann::json cached_targets_to_json(const std::vector<feed::CachedTarget>& targets) {
    nlohmann::json entries = nlohmann::json::array();
    nlohmann::json refused = nlohmann::json::array();
    for (const feed::CachedTarget& cached : targets) {
        if (cached.refused) {
            refused.push_back({{"remote", cached.remote},
                               {"name", cached.target.name},
                               {"error",
                                {{"reason", error_code_name(cached.refused->code)},
                                 {"message", cached.refused->message}}}});
            continue;
        }
        entries.push_back({{"remote", cached.remote},
                           {"name", cached.target.name},
                           {"length", cached.target.length},
                           {"sha256", cached.target.sha256},
                           {"path", cached.path},
                           {"usable", cached.usable},
                           {"held_back_because", cached.held_back_because},
                           {"custom", feed::patchset_info_to_json(cached.target.info)}});
    }
    return {{"patchsets", entries}, {"refused", refused}};
}

}  // namespace suture
