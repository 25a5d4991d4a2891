#include "feed-client/CurlLibrary.h"

#include <dlfcn.h>

#include <mutex>
#include <optional>
#include <string>

namespace suture::feed {

namespace {

constexpr const char* library_name = "libcurl.so.4";

// `name` from `handle` into `slot`; false if it is missing.
template <typename Function>
bool resolve(void* handle, const char* name, Function*& slot) {
    slot = reinterpret_cast<Function*>(::dlsym(handle, name));
    return slot != nullptr;
}

Result<CurlLibrary> load() {
    // 1. The library, its symbols kept to itself.
    void* handle = ::dlopen(library_name, RTLD_NOW | RTLD_LOCAL);
    if (handle == nullptr) {
        const char* why = ::dlerror();
        return fail(ErrorCode::io,
                    std::string("downloads need ") + library_name + " (package libcurl4): " +
                        (why != nullptr ? why : "cannot be loaded"));
    }
    // 2. Each function the Fetcher calls.
    CurlLibrary curl{};
    bool complete = resolve(handle, "curl_global_init", curl.global_init) &&
                    resolve(handle, "curl_easy_init", curl.easy_init) &&
                    resolve(handle, "curl_easy_cleanup", curl.easy_cleanup) &&
                    resolve(handle, "curl_easy_setopt", curl.easy_setopt) &&
                    resolve(handle, "curl_easy_perform", curl.easy_perform) &&
                    resolve(handle, "curl_easy_getinfo", curl.easy_getinfo) &&
                    resolve(handle, "curl_easy_strerror", curl.easy_strerror);
    if (!complete) {
        ::dlclose(handle);
        return fail(ErrorCode::io,
                    std::string(library_name) + " lacks a function suture needs (too old?)");
    }
    // 3. The global initialisation libcurl wants before any thread uses it.
    if (curl.global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        return fail(ErrorCode::io, std::string(library_name) + ": curl_global_init failed");
    }
    return curl;  // the handle stays open for the life of the process
}

}  // namespace

Result<const CurlLibrary*> curl_library() {
    static std::once_flag once;
    static std::optional<Result<CurlLibrary>> loaded;
    std::call_once(once, [] { loaded = load(); });
    if (!*loaded) {
        return tl::unexpected(loaded->error());
    }
    return &**loaded;
}

}  // namespace suture::feed
