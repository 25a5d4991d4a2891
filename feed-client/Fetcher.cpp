#include "feed-client/Fetcher.h"

#include <unistd.h>

#include <chrono>
#include <memory>
#include <thread>

#include "feed-client/CacheFiles.h"
#include "feed-client/CurlLibrary.h"

namespace suture::feed {

// Where a download's bytes go: memory (metadata) or a file (targets).
struct Fetcher::Sink {
    std::vector<std::byte>* memory = nullptr;
    int fd = -1;
    std::uint64_t size = 0;
    bool write_failed = false;

    bool put(const char* data, std::size_t bytes) {
        if (memory != nullptr) {
            auto* begin = reinterpret_cast<const std::byte*>(data);
            memory->insert(memory->end(), begin, begin + bytes);
        } else {
            for (std::size_t done = 0; done < bytes;) {
                ssize_t written = ::write(fd, data + done, bytes - done);
                if (written < 0 && errno == EINTR) {
                    continue;
                }
                if (written <= 0) {
                    write_failed = true;
                    return false;
                }
                done += static_cast<std::size_t>(written);
            }
        }
        size += bytes;
        return true;
    }

    // Back to empty, for a transfer that starts again from byte 0.
    bool reset() {
        size = 0;
        if (memory != nullptr) {
            memory->clear();
            return true;
        }
        return ::ftruncate(fd, 0) == 0 && ::lseek(fd, 0, SEEK_SET) == 0;
    }
};

namespace {

using Clock = std::chrono::steady_clock;

struct Transfer {
    const CurlLibrary* curl = nullptr;
    CURL* handle = nullptr;  // of the current attempt
    Fetcher::Sink* sink = nullptr;
    std::uint64_t max_bytes = 0;
    bool over_cap = false;
    std::uint64_t resume_from = 0;
    Clock::time_point deadline;
    bool past_deadline = false;
    const Progress* progress = nullptr;
};

std::size_t write_body(char* data, std::size_t size, std::size_t count, void* user) {
    auto* transfer = static_cast<Transfer*>(user);
    std::size_t bytes = size * count;
    long status = 0;
    transfer->curl->easy_getinfo(transfer->handle, CURLINFO_RESPONSE_CODE, &status);
    if (status >= 300) {
        return bytes;  // an error page is not part of the file: drop it
    }
    if (transfer->sink->size + bytes > transfer->max_bytes) {
        transfer->over_cap = true;
        return 0;  // libcurl aborts the transfer: CURLE_WRITE_ERROR
    }
    return transfer->sink->put(data, bytes) ? bytes : 0;
}

// Also the watchdog: libcurl calls it at least once a second, and a
// transfer past the fetch's deadline is aborted whatever it is doing.
int report_progress(void* user, curl_off_t total, curl_off_t now, curl_off_t, curl_off_t) {
    auto* transfer = static_cast<Transfer*>(user);
    if (Clock::now() >= transfer->deadline) {
        transfer->past_deadline = true;
        return 1;  // CURLE_ABORTED_BY_CALLBACK
    }
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

int hex_value(char c) {
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

// The local path of a file:// URL ("file:///p" or "file://localhost/p"),
// percent-decoded; "" if it is not one a client should read (another
// host, a relative path, a bad escape, a NUL).
std::string local_path(const std::string& url) {
    std::string rest = url.substr(std::string("file://").size());
    if (rest.starts_with("localhost/")) {
        rest = rest.substr(std::string("localhost").size());
    }
    if (!rest.starts_with("/")) {
        return "";
    }
    std::string path;
    for (std::size_t i = 0; i < rest.size(); ++i) {
        if (rest[i] != '%') {
            path += rest[i];
            continue;
        }
        int high = i + 2 < rest.size() ? hex_value(rest[i + 1]) : -1;
        int low = i + 2 < rest.size() ? hex_value(rest[i + 2]) : -1;
        if (high < 0 || low < 0 || (high == 0 && low == 0)) {
            return "";
        }
        path += static_cast<char>(high * 16 + low);
        i += 2;
    }
    return path;
}

}  // namespace

Result<std::vector<std::byte>> Fetcher::fetch(const std::string& url, std::uint64_t max_bytes,
                                              const Progress& progress) const {
    std::vector<std::byte> body;
    Sink sink;
    sink.memory = &body;
    if (auto fetched = fetch_into(url, max_bytes, sink, progress); !fetched) {
        return tl::unexpected(fetched.error());
    }
    return body;
}

Result<void> Fetcher::fetch_to_file(const std::string& url, std::uint64_t max_bytes, int fd,
                                    const Progress& progress) const {
    Sink sink;
    sink.fd = fd;
    return fetch_into(url, max_bytes, sink, progress);
}

// A file:// URL, read here rather than by libcurl (which would open a FIFO
// and block in open() for ever): a regular file, within the cap and the
// fetch's time limit.
Result<void> Fetcher::read_local(const std::string& url, std::uint64_t max_bytes,
                                 Sink& sink) const {
    auto deadline = Clock::now() + std::chrono::seconds(limits_.total_timeout_seconds);
    std::string path = local_path(url);
    if (path.empty()) {
        return fail(ErrorCode::invalid_argument, url + ": not a local file:// URL");
    }
    auto fd = open_regular_file(path, true);
    if (!fd) {
        return tl::unexpected(
            Error{fd.error().code, url + ": " + (fd.error().code == ErrorCode::not_found
                                                     ? std::string("not found")
                                                     : fd.error().message),
                  fd.error().errno_value});
    }
    std::vector<char> chunk(64 << 10);
    for (;;) {
        if (Clock::now() >= deadline) {
            return fail(ErrorCode::too_slow, url + ": too slow (timeout_seconds reached)");
        }
        ssize_t got = ::read(fd->get(), chunk.data(), chunk.size());
        if (got < 0 && errno == EINTR) {
            continue;
        }
        if (got < 0) {
            return fail_errno(url + ": read", errno);
        }
        if (got == 0) {
            return {};
        }
        if (sink.size + static_cast<std::uint64_t>(got) > max_bytes) {
            return fail(ErrorCode::too_large,
                        url + ": more than " + std::to_string(max_bytes) + " bytes (size cap)");
        }
        if (!sink.put(chunk.data(), static_cast<std::size_t>(got))) {
            return fail_errno(url + ": write", errno);
        }
    }
}

Result<void> Fetcher::fetch_into(const std::string& url, std::uint64_t max_bytes, Sink& sink,
                                 const Progress& progress) const {
    if (url.starts_with("file://")) {
        return read_local(url, max_bytes, sink);
    }
    auto library = curl_library();
    if (!library) {
        return tl::unexpected(Error{library.error().code, url + ": " + library.error().message});
    }
    const CurlLibrary& curl = **library;
    Transfer transfer;
    transfer.curl = &curl;
    transfer.sink = &sink;
    transfer.max_bytes = max_bytes;
    transfer.progress = &progress;
    // One deadline for the whole fetch, all attempts and their delays.
    transfer.deadline = Clock::now() + std::chrono::seconds(limits_.total_timeout_seconds);
    std::string last_error;
    bool restarted_without_range = false;
    for (int attempt = 1; attempt <= limits_.attempts; ++attempt) {
        auto remaining = std::chrono::duration_cast<std::chrono::milliseconds>(
            transfer.deadline - Clock::now());
        if (remaining.count() <= 0) {
            return fail(ErrorCode::too_slow, url + ": too slow (timeout_seconds reached)");
        }
        std::unique_ptr<CURL, void (*)(CURL*)> easy(curl.easy_init(), curl.easy_cleanup);
        if (!easy) {
            return fail(ErrorCode::io, url + ": cannot initialise libcurl");
        }
        char curl_message[CURL_ERROR_SIZE] = "";
        CURL* handle = easy.get();
        transfer.handle = handle;
        curl.easy_setopt(handle, CURLOPT_URL, url.c_str());
        curl.easy_setopt(handle, CURLOPT_PROTOCOLS_STR, "http,https");
        curl.easy_setopt(handle, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
        curl.easy_setopt(handle, CURLOPT_FOLLOWLOCATION, 1L);
        curl.easy_setopt(handle, CURLOPT_MAXREDIRS, 3L);
        curl.easy_setopt(handle, CURLOPT_NOSIGNAL, 1L);
        curl.easy_setopt(handle, CURLOPT_ERRORBUFFER, curl_message);
        curl.easy_setopt(handle, CURLOPT_CONNECTTIMEOUT, limits_.connect_timeout_seconds);
        curl.easy_setopt(handle, CURLOPT_TIMEOUT_MS, static_cast<long>(remaining.count()));
        curl.easy_setopt(handle, CURLOPT_LOW_SPEED_LIMIT, limits_.low_speed_bytes);
        curl.easy_setopt(handle, CURLOPT_LOW_SPEED_TIME, limits_.low_speed_seconds);
        curl.easy_setopt(handle, CURLOPT_MAXFILESIZE_LARGE, static_cast<curl_off_t>(max_bytes));
        curl.easy_setopt(handle, CURLOPT_WRITEFUNCTION, write_body);
        curl.easy_setopt(handle, CURLOPT_WRITEDATA, &transfer);
        curl.easy_setopt(handle, CURLOPT_NOPROGRESS, 0L);
        curl.easy_setopt(handle, CURLOPT_XFERINFOFUNCTION, report_progress);
        curl.easy_setopt(handle, CURLOPT_XFERINFODATA, &transfer);
        curl.easy_setopt(handle, CURLOPT_USERAGENT, "suture-feed-client");
        // Resume a transfer that broke off, if the server honours ranges.
        transfer.resume_from = sink.size;
        if (transfer.resume_from > 0) {
            curl.easy_setopt(handle, CURLOPT_RESUME_FROM_LARGE,
                             static_cast<curl_off_t>(transfer.resume_from));
        }
        CURLcode code = curl.easy_perform(handle);
        long http_status = 0;
        curl.easy_getinfo(handle, CURLINFO_RESPONSE_CODE, &http_status);
        if (code == CURLE_RANGE_ERROR && !restarted_without_range) {
            // The server cannot resume: start again from byte 0, at once and
            // without spending an attempt (this happens at most once).
            restarted_without_range = true;
            if (!sink.reset()) {
                return fail_errno(url + ": truncate", errno);
            }
            --attempt;
            continue;
        }
        if (sink.write_failed) {
            return fail(ErrorCode::io, url + ": cannot write the download");
        }
        if (transfer.over_cap || code == CURLE_FILESIZE_EXCEEDED) {
            return fail(ErrorCode::too_large,
                        url + ": more than " + std::to_string(max_bytes) + " bytes (size cap)");
        }
        if (code == CURLE_OPERATION_TIMEDOUT || transfer.past_deadline) {
            return fail(ErrorCode::too_slow,
                        url + ": too slow (" +
                            (transfer.past_deadline ? std::string("timeout_seconds reached")
                                                    : std::string(curl_message)) +
                            ")");
        }
        if (http_status == 404 || http_status == 410) {
            return fail(ErrorCode::not_found, url + ": not found");
        }
        if (code == CURLE_OK && http_status >= 200 && http_status < 300) {
            return {};
        }
        last_error = code != CURLE_OK
                         ? std::string(curl.easy_strerror(code)) +
                               (curl_message[0] ? std::string(": ") + curl_message : "")
                         : "HTTP status " + std::to_string(http_status);
        if (!is_transient(code, http_status)) {
            return fail(ErrorCode::unreachable, url + ": " + last_error);
        }
        if (attempt < limits_.attempts) {
            auto delay = std::chrono::milliseconds(limits_.retry_delay_ms * attempt);
            if (Clock::now() + delay >= transfer.deadline) {
                break;
            }
            std::this_thread::sleep_for(delay);
        }
    }
    return fail(ErrorCode::unreachable, url + ": " + last_error + " (after " +
                                            std::to_string(limits_.attempts) + " attempts)");
}

}  // namespace suture::feed
