#include "feed-client/StrictJson.h"

#include <atomic>

#include "feed-client/UtcTime.h"

namespace suture::feed::strict {

namespace {

using json = nlohmann::json;

[[noreturn]] void refuse(const char* key, const std::string& what) {
    throw Invalid{std::string("\"") + key + "\" " + what};
}

}  // namespace

void require_object(const json& value) {
    if (!value.is_object()) {
        throw Invalid{"must be a JSON object"};
    }
}

const json& member(const json& object, const char* key) {
    if (!object.is_object()) {
        throw Invalid{std::string("expected an object with \"") + key + "\""};
    }
    auto found = object.find(key);
    if (found == object.end()) {
        refuse(key, "is missing");
    }
    return *found;
}

const json& object_member(const json& object, const char* key) {
    const json& value = member(object, key);
    if (!value.is_object()) {
        refuse(key, "must be an object");
    }
    return value;
}

const json& array_member(const json& object, const char* key) {
    const json& value = member(object, key);
    if (!value.is_array()) {
        refuse(key, "must be an array");
    }
    return value;
}

std::string string_member(const json& object, const char* key) {
    const json& value = member(object, key);
    if (!value.is_string()) {
        refuse(key, "must be a string");
    }
    return value.get<std::string>();
}

std::string non_empty_string_member(const json& object, const char* key) {
    std::string text = string_member(object, key);
    if (text.empty()) {
        refuse(key, "must not be empty");
    }
    return text;
}

std::string optional_string_member(const json& object, const char* key) {
    if (!object.is_object() || !object.contains(key)) {
        return "";
    }
    return string_member(object, key);
}

std::vector<std::string> string_array_member(const json& object, const char* key) {
    std::vector<std::string> strings;
    for (const json& item : array_member(object, key)) {
        if (!item.is_string()) {
            refuse(key, "must be an array of strings");
        }
        strings.push_back(item.get<std::string>());
    }
    return strings;
}

std::uint64_t unsigned_member(const json& object, const char* key, std::uint64_t min,
                              std::uint64_t max) {
    const json& value = member(object, key);
    if (!value.is_number_unsigned() || value.get<std::uint64_t>() < min ||
        value.get<std::uint64_t>() > max) {
        refuse(key,
               "must be an integer from " + std::to_string(min) + " to " + std::to_string(max));
    }
    return value.get<std::uint64_t>();
}

std::time_t utc_member(const json& object, const char* key) {
    auto time = parse_utc(string_member(object, key));
    if (!time) {
        refuse(key, "is not YYYY-MM-DDTHH:MM:SSZ");
    }
    return *time;
}

namespace {
std::atomic<std::uint64_t> unchecked_read_count{0};
}  // namespace

std::uint64_t unchecked_reads() { return unchecked_read_count.load(); }

void count_unchecked_read() { ++unchecked_read_count; }

}  // namespace suture::feed::strict
