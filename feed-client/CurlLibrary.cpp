#include "feed-client/CurlLibrary.h"

#include "base/LoadedLibrary.h"

#include <dlfcn.h>

#include <string>

namespace suture::feed {

namespace {

constexpr const char* library_name = "libcurl.so.4";

Result<CurlLibrary> load() {
    // 1. The library, its symbols kept to itself.
    auto handle = open_library(library_name, "libcurl4", "downloads need");
    if (!handle) {
        return tl::unexpected(handle.error());
    }
    // 2. Each function the Fetcher calls.
    CurlLibrary curl{};
    bool complete = resolve_symbol(*handle, "curl_global_init", curl.global_init) &&
                    resolve_symbol(*handle, "curl_easy_init", curl.easy_init) &&
                    resolve_symbol(*handle, "curl_easy_cleanup", curl.easy_cleanup) &&
                    resolve_symbol(*handle, "curl_easy_setopt", curl.easy_setopt) &&
                    resolve_symbol(*handle, "curl_easy_perform", curl.easy_perform) &&
                    resolve_symbol(*handle, "curl_easy_getinfo", curl.easy_getinfo) &&
                    resolve_symbol(*handle, "curl_easy_strerror", curl.easy_strerror);
    if (!complete) {
        ::dlclose(*handle);
        return library_too_old(library_name);
    }
    // 3. The global initialisation libcurl wants before any thread uses it.
    if (curl.global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        return fail(ErrorCode::io, std::string(library_name) + ": curl_global_init failed");
    }
    return curl;  // the handle stays open for the life of the process
}

}  // namespace

Result<const CurlLibrary*> curl_library() {
    return load_once<CurlLibrary, load>();
}

}  // namespace suture::feed
