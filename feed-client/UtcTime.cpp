#include "feed-client/UtcTime.h"

namespace suture::feed {

std::optional<std::time_t> parse_utc(const std::string& text) {
    struct tm fields {};
    const char* end = ::strptime(text.c_str(), "%Y-%m-%dT%H:%M:%SZ", &fields);
    if (end == nullptr || *end != '\0' || text.size() != 20) {
        return std::nullopt;
    }
    return ::timegm(&fields);
}

std::string format_utc(std::time_t time) {
    struct tm fields {};
    ::gmtime_r(&time, &fields);
    char text[32];
    std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", &fields);
    return text;
}

}  // namespace suture::feed
