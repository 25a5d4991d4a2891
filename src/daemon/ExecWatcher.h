#pragma once

#include "base/Error.h"
#include "base/UniqueFD.h"

namespace suture {

// Exec events from the kernel's process connector (netlink, CN_IDX_PROC:
// linux/cn_proc.h): one event per successful execve, with the thread group
// ID, delivered as it happens. Needs CAP_NET_ADMIN (root).
class ExecWatcher {
  public:
    static Result<ExecWatcher> open();

    // The socket to poll for readability.
    int fd() const { return socket_.get(); }

    // Reads the events that are waiting and calls `on_exec(pid)` for each
    // exec; returns when nothing more is waiting.
    template <typename Callback>
    void drain(Callback on_exec) {
        int pid = 0;
        while ((pid = next_exec()) != 0) {
            if (pid > 0) {
                on_exec(pid);
            }
        }
    }

  private:
    explicit ExecWatcher(UniqueFD socket) : socket_(std::move(socket)) {}
    // The next event: a pid for an exec, -1 for another event, 0 for none.
    int next_exec();

    UniqueFD socket_;
};

}  // namespace suture
