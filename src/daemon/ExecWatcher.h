#pragma once

#include <cstdint>

#include "base/Error.h"
#include "base/UniqueFD.h"

namespace suture {

// Exec events from the kernel's process connector (netlink, CN_IDX_PROC:
// linux/cn_proc.h): one event per successful execve, with the thread group
// ID and the time of the exec (CLOCK_MONOTONIC nanoseconds, the kernel's
// stamp), delivered as it happens. Needs CAP_NET_ADMIN (root).
struct ExecEvent {
    int pid = 0;
    std::uint64_t at = 0;  // CLOCK_MONOTONIC ns
};

class ExecWatcher {
  public:
    static Result<ExecWatcher> open();

    // The socket to poll for readability.
    int fd() const { return socket_.get(); }

    // Reads the events that are waiting and calls `on_exec(ExecEvent)` for
    // each exec; returns when nothing more is waiting.
    template <typename Callback>
    void drain(Callback on_exec) {
        ExecEvent event;
        while ((event = next_exec()).pid != 0) {
            if (event.pid > 0) {
                on_exec(event);
            }
        }
    }

  private:
    explicit ExecWatcher(UniqueFD socket) : socket_(std::move(socket)) {}
    // The next event: an exec, pid -1 for another event, pid 0 for none.
    ExecEvent next_exec();

    UniqueFD socket_;
};

}  // namespace suture
