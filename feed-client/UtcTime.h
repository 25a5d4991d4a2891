#pragma once

#include <ctime>
#include <optional>
#include <string>

namespace suture::feed {

// "2027-11-23T00:00:00Z" <-> Unix time: the one timestamp format of the
// feed's metadata (UTC only, whole seconds).
std::optional<std::time_t> parse_utc(const std::string& text);
std::string format_utc(std::time_t time);

}  // namespace suture::feed
