#pragma once

#include <curl/curl.h>

#include "base/Error.h"

namespace suture::feed {

// libcurl, loaded when the first download needs it rather than by the
// dynamic loader at every start: libcurl and the libraries it needs are
// some thirty of the CLI's shared objects, and most commands (status,
// apply, revert) never download anything. The functions the Fetcher uses,
// resolved from "libcurl.so.4" (Debian's libcurl4).
struct CurlLibrary {
    CURLcode (*global_init)(long flags);
    CURL* (*easy_init)();
    void (*easy_cleanup)(CURL* handle);
    CURLcode (*easy_setopt)(CURL* handle, CURLoption option, ...);
    CURLcode (*easy_perform)(CURL* handle);
    CURLcode (*easy_getinfo)(CURL* handle, CURLINFO info, ...);
    const char* (*easy_strerror)(CURLcode code);
};

// The library, loaded and globally initialised once per process (thread
// safe); later calls return the same table, or the same error (io),
// naming the library and the package to install.
Result<const CurlLibrary*> curl_library();

}  // namespace suture::feed
