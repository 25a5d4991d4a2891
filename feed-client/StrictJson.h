#pragma once

#include <cstdint>
#include <ctime>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/Error.h"

// Reading JSON that nobody vouches for: metadata from a mirror (a signed
// field can still have the wrong type), the custom metadata of targets, key
// files, patchset manifests.
//
// Every reader checks the type (and range) of a value before nlohmann is
// asked for it, so nothing here or in a caller that reads only through
// these functions can throw nlohmann::json::exception. A value that is not
// what it must be throws Invalid, and interpret() is the one place that
// catches it and turns it into a bad_format Error: call the readers only
// inside interpret(), never across a module boundary.
namespace suture::feed::strict {

struct Invalid {
    std::string what;
};

// object[key], which must exist; `object` must be a JSON object.
const nlohmann::json& member(const nlohmann::json& object, const char* key);
// The same, and the member must be an object / an array.
const nlohmann::json& object_member(const nlohmann::json& object, const char* key);
const nlohmann::json& array_member(const nlohmann::json& object, const char* key);

// A string member; non_empty_string_member also refuses "".
std::string string_member(const nlohmann::json& object, const char* key);
std::string non_empty_string_member(const nlohmann::json& object, const char* key);
// A string member that may be absent ("" then).
std::string optional_string_member(const nlohmann::json& object, const char* key);
// An array of strings (possibly empty).
std::vector<std::string> string_array_member(const nlohmann::json& object, const char* key);
// A non-negative integer from `min` to `max` (a float or a negative number
// is not one).
std::uint64_t unsigned_member(const nlohmann::json& object, const char* key, std::uint64_t min,
                              std::uint64_t max);
// A UTC time "YYYY-MM-DDTHH:MM:SSZ" (UtcTime.h).
std::time_t utc_member(const nlohmann::json& object, const char* key);

// Refuses `value` unless it is an object.
void require_object(const nlohmann::json& value);

// How many times interpret() caught nlohmann's own exception, i.e. met a read
// that did not check its type first. The fuzzer asserts that this stays 0; it
// cannot look for the message instead, which quotes the input.
std::uint64_t unchecked_reads();
void count_unchecked_read();

// Runs `read` (which reads through the functions above) and returns what it
// returns, or bad_format "NAME: what was wrong".
template <typename T, typename Read>
Result<T> interpret(const std::string& name, Read&& read) {
    try {
        return read();
    } catch (const Invalid& invalid) {
        return fail(ErrorCode::bad_format, name + ": " + invalid.what);
    } catch (const nlohmann::json::exception& error) {
        // Not reached when every read checks its type first. Kept so that a
        // missed check refuses a file instead of ending the daemon; the
        // fuzzer (test/fuzz/fuzz_metadata.cpp) counts it as a crash.
        count_unchecked_read();
        return fail(ErrorCode::bad_format, name + ": unchecked JSON read: " + error.what());
    }
}

}  // namespace suture::feed::strict
