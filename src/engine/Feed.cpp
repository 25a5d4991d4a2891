#include "engine/Feed.h"

#include <pwd.h>
#include <unistd.h>

#include <cstdlib>
#include <ctime>

#include "base/Files.h"
#include "feed-client/StrictJson.h"
#include "feed-client/UtcTime.h"
#include "patch/PatchFile.h"


namespace suture {

static_assert(feed::max_target_size >= max_patch_metadata_size + max_patch_object_size,
              "the feed's target cap must admit every patch file PatchFile accepts");

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

// The home directory of the effective user: $HOME, else the password
// database; "" if neither says (never a shared directory such as /tmp,
// where another user could plant a cache).
std::string home_directory() {
    std::string home = environment_or("HOME", "");
    if (!home.empty()) {
        return home;
    }
    struct passwd entry {};
    struct passwd* found = nullptr;
    char buffer[4096];
    if (::getpwuid_r(::geteuid(), &entry, buffer, sizeof buffer, &found) == 0 && found != nullptr &&
        found->pw_dir != nullptr && found->pw_dir[0] == '/') {
        return found->pw_dir;
    }
    return "";
}

// Why a verified cached patch file is not what its signed custom metadata
// says it is (build ID, soname, patch id, level, read from the file itself
// with src/patch/PatchFile); "" when it is.
std::string patch_file_problem(const feed::CachedTarget& cached) {
    auto patch = read_patch_file(cached.path);
    if (!patch) {
        return "not a patch file the injector accepts: " + patch.error().message;
    }
    const PatchMetadata& file = patch->metadata;
    const feed::PatchsetInfo& info = cached.target.info;
    auto differs = [](const char* field, const std::string& in_file, const std::string& signed_) {
        return std::string("the patch file's ") + field + " is " + in_file +
               ", the signed custom metadata says " + signed_;
    };
    if (file.target_build_id != info.build_id) {
        return differs("build ID", file.target_build_id, info.build_id);
    }
    if (file.target_soname != info.soname) {
        return differs("soname", file.target_soname, info.soname);
    }
    if (file.patch_id != info.patch_id) {
        return differs("patch id", file.patch_id, info.patch_id);
    }
    if (file.level != info.level) {
        return differs("level", std::to_string(file.level), std::to_string(info.level));
    }
    return "";
}

// Refuses (bad_format, never usable) each listed target whose file says
// otherwise than its signed custom metadata; channels and pins, judged by
// the client on the custom fields, then judge the file's real values.
void refuse_mismatching_files(std::vector<feed::CachedTarget>& listed) {
    for (feed::CachedTarget& cached : listed) {
        if (cached.refused) {
            continue;
        }
        if (std::string problem = patch_file_problem(cached); !problem.empty()) {
            cached.usable = false;
            cached.held_back_because = "refused: " + problem;
            cached.refused = Error{ErrorCode::bad_format, cached.target.name + ": " + problem};
            cached.path.clear();
        }
    }
}

}  // namespace

FeedOptions resolve_feed_options(FeedOptions options) {
    if (options.config_directory.empty()) {
        options.config_directory = environment_or("SUTURE_CONFIG_DIR", "/etc/suture");
    }
    if (options.cache_directory.empty()) {
        std::string fallback = "/var/cache/suture/feed";
        if (::geteuid() != 0) {
            // A user's cache: under XDG_CACHE_HOME or the home directory;
            // none at all ("" is refused by the feed client) if neither is
            // known.
            std::string home = home_directory();
            std::string user_cache = environment_or("XDG_CACHE_HOME", home.empty() ? "" : home + "/.cache");
            fallback = user_cache.empty() ? "" : user_cache + "/suture/feed";
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
        std::erase_if(*listed, [](const feed::CachedTarget& cached) {
            return cached.target.info.kind == "advisories";
        });
        refuse_mismatching_files(*listed);
        all.insert(all.end(), listed->begin(), listed->end());
    }
    return all;
}

namespace {

// The expiry of a remote's cached timestamp metadata, which list() has just
// verified from the pinned root; 0 if it does not read.
std::time_t cached_timestamp_expiry(const FeedOptions& options, const std::string& remote) {
    auto text = read_file(options.cache_directory + "/" + remote + "/current/timestamp.json");
    if (!text) {
        return 0;
    }
    auto document = nlohmann::json::parse(*text, nullptr, false);
    auto expires = feed::strict::interpret<std::time_t>("timestamp.json", [&] {
        return feed::strict::utc_member(feed::strict::object_member(document, "signed"),
                                        "expires");
    });
    return expires ? *expires : 0;
}

// Step of load_advisories: one remote's verified advisories target, merged
// into `data`.
void add_remote_advisories(const feed::Remote& remote, const std::vector<feed::CachedTarget>& listed,
                           AdvisoryData& data) {
    for (const feed::CachedTarget& cached : listed) {
        const feed::PatchsetInfo& info = cached.target.info;
        if (info.kind == "patch" && !cached.refused && !info.supersedes.empty()) {
            data.supersessions.try_emplace({info.build_id, info.patch_id, info.level},
                                           info.supersedes);
        }
        if (info.kind != "advisories" || cached.refused || !cached.usable) {
            continue;
        }
        auto text = read_file(cached.path);
        auto parsed = text ? feed::parse_advisories_text(*text, "remote " + remote.name + ": " +
                                                                    cached.target.name)
                           : Result<feed::Advisories>(tl::unexpected(text.error()));
        if (!parsed) {
            data.problems.push_back(parsed.error().message);
            continue;
        }
        if (!data.advisories) {
            data.advisories.emplace();
        }
        for (auto& [build_id, build] : parsed->builds) {
            data.advisories->builds.try_emplace(build_id, std::move(build));
        }
        data.sources.push_back("remote " + remote.name + ", published " +
                               feed::format_utc(cached.target.info.published));
    }
}

}  // namespace

AdvisoryData load_advisories(const FeedOptions& options) {
    AdvisoryData data;
    auto remotes = enabled_remotes(options);
    if (!remotes) {
        return data;  // no feed configured: no advisory data, not a problem of status
    }
    feed::FeedClient client(options.cache_directory);
    for (const feed::Remote& remote : *remotes) {
        auto listed = client.list(remote, ::time(nullptr));
        if (!listed) {
            data.problems.push_back("remote " + remote.name + ": " + listed.error().message);
            continue;
        }
        add_remote_advisories(remote, *listed, data);
        std::time_t expires = cached_timestamp_expiry(options, remote.name);
        if (expires != 0 && (data.feed_expires == 0 || expires < data.feed_expires)) {
            data.feed_expires = expires;
        }
    }
    return data;
}

}  // namespace suture
