#include "feed-client/Fetcher.h"

#include <curl/curl.h>

#include <chrono>
#include <memory>
#include <mutex>
#include <thread>

namespace suture::feed {

namespace {

struct CurlEasyDelete {
    void operator()(CURL* curl) const { curl_easy_cleanup(curl); }
};

// libcurl wants one global initialisation before any thread uses it.
void initialise_curl_once() {
    static std::once_flag once;
    std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

struct Transfer {
    CURL* handle = nullptr;  // of the current attempt
    std::vector<std::byte> body;
    std::uint64_t max_bytes = 0;
    bool over_cap = false;
    std::uint64_t resume_from = 0;
    const Progress* progress = nullptr;
};

std::size_t write_body(char* data, std::size_t size, std::size_t count, void* user) {
    auto* transfer = static_cast<Transfer*>(user);
    std::size_t bytes = size * count;
    long status = 0;
    curl_easy_getinfo(transfer->handle, CURLINFO_RESPONSE_CODE, &status);
    if (status >= 300) {
        return bytes;  // an error page is not part of the file: drop it
    }
    if (transfer->body.size() + bytes > transfer->max_bytes) {
        transfer->over_cap = true;
        return 0;  // libcurl aborts the transfer: CURLE_WRITE_ERROR
    }
    auto* begin = reinterpret_cast<const std::byte*>(data);
    transfer->body.insert(transfer->body.end(), begin, begin + bytes);
    return bytes;
}

int report_progress(void* user, curl_off_t total, curl_off_t now, curl_off_t, curl_off_t) {
    auto* transfer = static_cast<Transfer*>(user);
    if (transfer->progress != nullptr && *transfer->progress) {
        (*transfer->progress)(
            transfer->resume_from + static_cast<std::uint64_t>(now),
            total > 0 ? transfer->resume_from + static_cast<std::uint64_t>(total) : 0);
    }
    return 0;
}

bool is_transient(CURLcode code, long http_status) {
    switch (code) {
        case CURLE_COULDNT_CONNECT:
        case CURLE_RECV_ERROR:
        case CURLE_SEND_ERROR:
        case CURLE_PARTIAL_FILE:
        case CURLE_GOT_NOTHING:
        case CURLE_COULDNT_RESOLVE_HOST:
            return true;
        case CURLE_OK:
            return http_status >= 500;
        default:
            return false;
    }
}

}  // namespace

Result<std::vector<std::byte>> Fetcher::fetch(const std::string& url, std::uint64_t max_bytes,
                                              const Progress& progress) const {
    initialise_curl_once();
    Transfer transfer;
    transfer.max_bytes = max_bytes;
    transfer.progress = &progress;
    std::string last_error;
    bool restarted_without_range = false;
    for (int attempt = 1; attempt <= limits_.attempts; ++attempt) {
        std::unique_ptr<CURL, CurlEasyDelete> curl(curl_easy_init());
        if (!curl) {
            return fail(ErrorCode::io, url + ": cannot initialise libcurl");
        }
        char curl_message[CURL_ERROR_SIZE] = "";
        CURL* handle = curl.get();
        transfer.handle = handle;
        curl_easy_setopt(handle, CURLOPT_URL, url.c_str());
        curl_easy_setopt(handle, CURLOPT_PROTOCOLS_STR, "http,https,file");
        curl_easy_setopt(handle, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(handle, CURLOPT_FOLLOWLOCATION, 1L);
        curl_easy_setopt(handle, CURLOPT_MAXREDIRS, 3L);
        curl_easy_setopt(handle, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(handle, CURLOPT_ERRORBUFFER, curl_message);
        curl_easy_setopt(handle, CURLOPT_CONNECTTIMEOUT, limits_.connect_timeout_seconds);
        curl_easy_setopt(handle, CURLOPT_TIMEOUT, limits_.total_timeout_seconds);
        curl_easy_setopt(handle, CURLOPT_LOW_SPEED_LIMIT, limits_.low_speed_bytes);
        curl_easy_setopt(handle, CURLOPT_LOW_SPEED_TIME, limits_.low_speed_seconds);
        curl_easy_setopt(handle, CURLOPT_MAXFILESIZE_LARGE, static_cast<curl_off_t>(max_bytes));
        curl_easy_setopt(handle, CURLOPT_WRITEFUNCTION, write_body);
        curl_easy_setopt(handle, CURLOPT_WRITEDATA, &transfer);
        curl_easy_setopt(handle, CURLOPT_NOPROGRESS, 0L);
        curl_easy_setopt(handle, CURLOPT_XFERINFOFUNCTION, report_progress);
        curl_easy_setopt(handle, CURLOPT_XFERINFODATA, &transfer);
        curl_easy_setopt(handle, CURLOPT_USERAGENT, "suture-feed-client");
        // Resume a transfer that broke off, if the server honours ranges.
        transfer.resume_from = transfer.body.size();
        if (transfer.resume_from > 0) {
            curl_easy_setopt(handle, CURLOPT_RESUME_FROM_LARGE,
                             static_cast<curl_off_t>(transfer.resume_from));
        }
        CURLcode code = curl_easy_perform(handle);
        long http_status = 0;
        curl_easy_getinfo(handle, CURLINFO_RESPONSE_CODE, &http_status);
        if (code == CURLE_RANGE_ERROR && !restarted_without_range) {
            // The server cannot resume: start again from byte 0, at once and
            // without spending an attempt (this happens at most once).
            restarted_without_range = true;
            transfer.body.clear();
            --attempt;
            continue;
        }
        if (transfer.over_cap || code == CURLE_FILESIZE_EXCEEDED) {
            return fail(ErrorCode::too_large,
                        url + ": more than " + std::to_string(max_bytes) + " bytes (size cap)");
        }
        if (code == CURLE_OPERATION_TIMEDOUT) {
            return fail(ErrorCode::too_slow,
                        url + ": too slow (" + std::string(curl_message) + ")");
        }
        if (code == CURLE_FILE_COULDNT_READ_FILE || http_status == 404 || http_status == 410) {
            return fail(ErrorCode::not_found, url + ": not found");
        }
        if (code == CURLE_OK && (http_status == 0 || (http_status >= 200 && http_status < 300))) {
            return std::move(transfer.body);
        }
        last_error = code != CURLE_OK
                         ? std::string(curl_easy_strerror(code)) +
                               (curl_message[0] ? std::string(": ") + curl_message : "")
                         : "HTTP status " + std::to_string(http_status);
        if (!is_transient(code, http_status)) {
            return fail(ErrorCode::unreachable, url + ": " + last_error);
        }
        if (attempt < limits_.attempts) {
            std::this_thread::sleep_for(
                std::chrono::milliseconds(limits_.retry_delay_ms * attempt));
        }
    }
    return fail(ErrorCode::unreachable, url + ": " + last_error + " (after " +
                                            std::to_string(limits_.attempts) + " attempts)");
}

}  // namespace suture::feed
