// Internal to the engine: the health watch's ear, the kernel's process
// connector (netlink, CN_IDX_PROC: linux/cn_proc.h) listening for exit
// events. An exit event carries the task's exit code, so a death by signal
// is told apart from an exit, for any process on the host.
//
// Why not a pidfd: poll on a pidfd says only that a process ended, and
// waitid(P_PIDFD, ..., WEXITED) gives the signal only to the parent, which
// suture is not (it patches services it did not start). The connector
// tells anyone with CAP_NET_ADMIN (root) how every task ended. Its messages
// are multicast into a socket buffer: a flood of exits on a busy host can
// overflow it (ENOBUFS); the buffer is made large and an overflow is
// counted, never mistaken for health.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/Error.h"
#include "base/UniqueFD.h"
#include "engine/HealthProbes.h"
#include "state/StateDatabase.h"

namespace suture {

class HostLock;

// A process (thread group) that died of a signal.
struct Death {
    int pid = 0;
    int signal = 0;
};

// The signals the health watch counts as a crash: SIGSEGV, SIGBUS, SIGILL,
// SIGABRT, SIGFPE (what a bad replacement function dies of). A SIGKILL or
// SIGTERM is someone's decision, not a crash.
bool is_crash_signal(int signal);
// "SIGSEGV" and so on; "signal N" for the others.
std::string signal_name(int signal);

class ExitEvents {
  public:
    // Opens and subscribes the socket (needs CAP_NET_ADMIN).
    static Result<ExitEvents> open();

    // The socket to poll for readability.
    int fd() const { return socket_.get(); }

    // Every death by signal of a thread group leader waiting in the socket
    // (a whole process; a thread's own exit is not one); returns when
    // nothing more is waiting.
    std::vector<Death> drain();
    // How many times the socket buffer overflowed (events lost) so far.
    std::uint64_t overflows() const { return overflows_; }

  private:
    explicit ExitEvents(UniqueFD socket) : socket_(std::move(socket)) {}

    UniqueFD socket_;
    std::uint64_t overflows_ = 0;
};

// The health checks' state between calls (suture.conf health_check), per
// check name: the run going on, when the next is due, the ends of the last
// runs (a failure blames an apply only if the last run started before the
// apply was healthy: a service already failing is not the patch's fault),
// and a failure waiting for the operation lock.
struct CheckRun {
    std::int64_t started_at = 0;  // Unix seconds
    bool healthy = false;
};
struct CheckState {
    std::optional<ProbeRun> running;
    ProbeRun::Clock::time_point next_due{};
    std::deque<CheckRun> runs;  // the last few, oldest first
    std::optional<std::pair<CheckRun, std::string>> pending_failure;  // its run, the detail
};
struct HealthChecks {
    std::map<std::string, CheckState> by_name;
};

// What every judgement of the health watch starts from (Engine::
// blame_ground): the operation lock held, the state database, watch_seconds
// and the active applications, read at `now` (Unix seconds).
struct BlameGround {
    std::shared_ptr<HostLock> lock;
    StateDatabase* database = nullptr;
    std::uint32_t watch_seconds = 0;
    std::vector<Application> active;
    std::int64_t now = 0;
};

}  // namespace suture
