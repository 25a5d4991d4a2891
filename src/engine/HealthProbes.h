// Internal to the engine: the health watch's probes (suture.conf
// `health_check = NAME: COMMAND`). A probe is the operator's command run
// by /bin/sh in a process group of its own, its input /dev/null, its
// output kept (the last 512 bytes, for the message); exit 0 is healthy.
// A run never blocks its caller: it is started, then polled, and killed
// (the whole group) when its timeout passes or its owner lets it go.
#pragma once

#include <chrono>
#include <optional>
#include <string>

#include "base/Error.h"
#include "base/UniqueFD.h"

namespace suture {

// How one probe run ended.
struct ProbeResult {
    bool healthy = false;
    std::string detail;  // "exit 7: curl: (7) Failed to connect …", "timed out after 10 s"
};

class ProbeRun {
  public:
    using Clock = std::chrono::steady_clock;

    // Starts `command`; it has `timeout` to finish.
    static Result<ProbeRun> start(const std::string& command, std::chrono::seconds timeout);
    ProbeRun(ProbeRun&& other) noexcept;
    ProbeRun& operator=(ProbeRun&&) = delete;
    ProbeRun(const ProbeRun&) = delete;
    ProbeRun& operator=(const ProbeRun&) = delete;
    // A run still going is killed (its group) and reaped.
    ~ProbeRun();

    // nullopt while it runs (its output read meanwhile, so it never blocks
    // on a full pipe); its result once it ended or timed out (then killed).
    std::optional<ProbeResult> poll();
    // Waits for the end (at most the timeout).
    ProbeResult wait();
    // When the run started (Unix seconds).
    std::int64_t started_at() const { return started_at_; }

  private:
    ProbeRun(int pid, UniqueFD output, Clock::time_point deadline, std::chrono::seconds timeout,
             std::int64_t started_at)
        : pid_(pid),
          output_(std::move(output)),
          deadline_(deadline),
          timeout_(timeout),
          started_at_(started_at) {}
    void read_output();

    int pid_ = 0;  // 0: reaped
    UniqueFD output_;
    Clock::time_point deadline_;
    std::chrono::seconds timeout_;
    std::int64_t started_at_ = 0;
    std::string tail_;  // the last bytes of its output
};

}  // namespace suture
