#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "base/Error.h"

namespace suture::feed {

// Limits for one download. The defaults suit a feed on the Internet; tests
// and slow links set their own (remotes.d: docs/operator-guide.md).
struct FetchLimits {
    long connect_timeout_seconds = 15;
    long total_timeout_seconds = 300;
    // Slow retrieval: fail when fewer than low_speed_bytes arrive per second
    // for low_speed_seconds in a row.
    long low_speed_bytes = 1024;
    long low_speed_seconds = 30;
    int attempts = 3;  // transient failures are retried, resuming if possible
    long retry_delay_ms = 500;
};

// Progress: (bytes so far, total or 0 if unknown).
using Progress = std::function<void(std::uint64_t, std::uint64_t)>;

// Downloads over http:// and https:// with libcurl, loaded at the first such
// download (CurlLibrary.h; proxy settings from the environment, as curl
// reads them), and reads file:// URLs itself: regular
// files only, opened without blocking (a FIFO or a device in a repository is
// refused, never waited on). Never keeps more than `max_bytes`: a larger or
// endless body fails with too_large as soon as it crosses the cap. Every
// fetch, whatever the scheme, ends within total_timeout_seconds (all
// attempts together). Errors: not_found (404 / no such file), too_large,
// too_slow, unreachable (connection failures, 5xx after retries), io (a
// file:// path that is not a regular file, a write to `fd` that failed).
class Fetcher {
  public:
    explicit Fetcher(FetchLimits limits) : limits_(limits) {}

    // Into memory: for metadata, whose caps are small.
    Result<std::vector<std::byte>> fetch(const std::string& url, std::uint64_t max_bytes,
                                         const Progress& progress = {}) const;

    // Streamed into `fd` (an empty file opened for writing), never held in
    // memory: for target files.
    Result<void> fetch_to_file(const std::string& url, std::uint64_t max_bytes, int fd,
                               const Progress& progress = {}) const;

    // Where a download's bytes go (Fetcher.cpp).
    struct Sink;

  private:
    Result<void> fetch_into(const std::string& url, std::uint64_t max_bytes, Sink& sink,
                            const Progress& progress) const;
    Result<void> read_local(const std::string& url, std::uint64_t max_bytes, Sink& sink) const;

    FetchLimits limits_;
};

}  // namespace suture::feed
