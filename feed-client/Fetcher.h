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

// Downloads over http://, https:// and file:// with libcurl (proxy settings
// from the environment, as curl reads them). Never keeps more than
// `max_bytes`: a larger or endless body fails with too_large as soon as it
// crosses the cap. Errors: not_found (404 / no such file), too_large,
// too_slow, unreachable (connection failures, 5xx after retries), io.
class Fetcher {
  public:
    explicit Fetcher(FetchLimits limits) : limits_(limits) {}

    Result<std::vector<std::byte>> fetch(const std::string& url, std::uint64_t max_bytes,
                                         const Progress& progress = {}) const;

  private:
    FetchLimits limits_;
};

}  // namespace suture::feed
