#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/Error.h"
#include "feed-client/Fetcher.h"

namespace suture::feed {

// One configured feed, from a file in remotes.d (fwupd's model): an INI-style
// `[remote]` section of key=value lines. Format: docs/operator-guide.md.
struct Remote {
    std::string name;  // default: the file name without ".conf"
    bool enabled = true;
    std::string url;                 // base URL: http://, https:// or file://, ends in '/'
    std::string channel = "stable";  // "stable" or "testing" (testing also sees stable)
    std::string root_file;           // the pinned root metadata trusted on first use
    std::uint32_t delay_hours = 0;   // hide patchsets younger than this
    std::uint32_t pin_level = 0;     // 0: any level; else the highest level to use
    FetchLimits limits;
    std::string source;  // the file it came from, for messages
};

// Parses one remote file's text.
Result<Remote> parse_remote(const std::string& text, const std::string& file_name);

// Every *.conf file of `directory`, sorted by name. A missing directory is
// no remotes; a bad file is an error naming it.
Result<std::vector<Remote>> load_remotes(const std::string& directory);

}  // namespace suture::feed
