#pragma once

#include "base/Error.h"
#include "base/UniqueFD.h"

namespace suture {

// Exec and fork events from the kernel's process connector (netlink,
// CN_IDX_PROC: linux/cn_proc.h): one event per successful execve, with the
// thread group ID, and one per fork (parent and child thread group IDs),
// delivered as they happen. Needs CAP_NET_ADMIN (root).
class ExecWatcher {
  public:
    static Result<ExecWatcher> open();

    // The socket to poll for readability.
    int fd() const { return socket_.get(); }

    // Reads the events that are waiting and calls `on_exec(pid)` for each
    // exec and `on_fork(parent, child)` for each new process (not for new
    // threads); returns when nothing more is waiting.
    template <typename OnExec, typename OnFork>
    void drain(OnExec on_exec, OnFork on_fork) {
        for (;;) {
            Event event = next_event();
            if (event.kind == Event::none) {
                return;
            }
            if (event.kind == Event::exec) {
                on_exec(event.pid);
            } else if (event.kind == Event::fork) {
                on_fork(event.parent, event.pid);
            }
        }
    }

  private:
    explicit ExecWatcher(UniqueFD socket) : socket_(std::move(socket)) {}
    struct Event {
        enum Kind { none, exec, fork, other } kind = none;
        int pid = 0;     // the process that exec'd, or the child
        int parent = 0;  // for a fork
    };
    Event next_event();

    UniqueFD socket_;
};

}  // namespace suture
