#include "inject/StoppedProcess.h"

#include <signal.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <memory>
#include <set>
#include <string>

#include "proc/Process.h"

namespace suture {

StoppedProcess::StoppedProcess(StoppedProcess&& other) noexcept
    : pid_(other.pid_),
      threads_(std::move(other.threads_)),
      interrupted_(std::move(other.interrupted_)),
      stopped_at_(other.stopped_at_),
      attached_(std::exchange(other.attached_, false)) {}

StoppedProcess::~StoppedProcess() {
    resume();
}

Result<StoppedProcess> StoppedProcess::stop(int pid) {
    StoppedProcess process(pid);
    process.attached_ = true;
    std::string subject = "pid " + std::to_string(pid);
    std::set<int> seized;
    process.stopped_at_ = std::chrono::steady_clock::now();
    for (;;) {
        auto tids = list_thread_ids(pid);
        if (!tids) {
            if (!seized.empty()) {
                return fail(ErrorCode::target_died, subject + ": exited while being stopped");
            }
            return tl::unexpected(tids.error());
        }
        std::vector<int> fresh;
        for (int tid : *tids) {
            if (seized.contains(tid)) {
                continue;
            }
            // TRACESYSGOOD marks system-call stops with SIGTRAP|0x80, which is no
            // valid signal: should this tool die during such a stop, the kernel
            // does not deliver a SIGTRAP to the thread (see RemoteSyscall).
            if (::ptrace(PTRACE_SEIZE, tid, nullptr,
                         reinterpret_cast<void*>(PTRACE_O_TRACESYSGOOD)) != 0) {
                if (errno == ESRCH) {
                    continue;  // the thread exited: nothing to hold
                }
                int error = errno;
                if (error == EPERM && seized.empty()) {
                    return fail_errno(subject + ": attach (already traced, or not permitted)",
                                      error);
                }
                return fail_errno(subject + ": attach thread " + std::to_string(tid), error);
            }
            seized.insert(tid);
            if (::ptrace(PTRACE_INTERRUPT, tid, nullptr, nullptr) != 0 && errno != ESRCH) {
                return fail_errno(subject + ": interrupt thread " + std::to_string(tid), errno);
            }
            fresh.push_back(tid);
        }
        if (fresh.empty()) {
            break;  // a whole pass found no new thread: the list is stable
        }
        for (int tid : fresh) {
            int status = 0;
            for (;;) {
                pid_t waited = ::waitpid(tid, &status, __WALL);
                if (waited < 0 && errno == EINTR) {
                    continue;
                }
                break;
            }
            if (WIFEXITED(status) || WIFSIGNALED(status)) {
                if (tid == pid) {
                    return fail(ErrorCode::target_died, subject + ": exited while being stopped");
                }
                continue;  // one thread exited
            }
            if (!WIFSTOPPED(status)) {
                continue;
            }
            process.threads_.push_back(StoppedThread{tid, {}});
            if ((status >> 16) == PTRACE_EVENT_STOP) {
                process.interrupted_.push_back(tid);
            } else {
                // A signal-delivery-stop: keep the signal for the thread.
                process.threads_.back().pending_signals.push_back(WSTOPSIG(status));
                process.threads_.back().in_delivery_stop = true;
            }
        }
    }
    if (process.threads_.empty()) {
        return fail(ErrorCode::target_died, subject + ": no thread left to stop");
    }
    return process;
}

StoppedThread& StoppedProcess::worker() {
    for (StoppedThread& thread : threads_) {
        if (std::find(interrupted_.begin(), interrupted_.end(), thread.tid) != interrupted_.end() &&
            thread.pending_signals.empty()) {
            return thread;
        }
    }
    return threads_.front();
}

void StoppedProcess::keep_signal(int tid, int signal) {
    for (StoppedThread& thread : threads_) {
        if (thread.tid == tid) {
            thread.pending_signals.push_back(signal);
            return;
        }
    }
}

std::chrono::nanoseconds StoppedProcess::resume() {
    if (!attached_) {
        return {};
    }
    attached_ = false;
    for (const StoppedThread& thread : threads_) {
        // PTRACE_DETACH delivers a signal only from a signal-delivery-stop.
        std::size_t resent_from = thread.in_delivery_stop ? 1 : 0;
        int first = thread.in_delivery_stop ? thread.pending_signals.front() : 0;
        // Fails only for a thread that exited meanwhile: nothing to do then.
        ::ptrace(PTRACE_DETACH, thread.tid, nullptr,
                 reinterpret_cast<void*>(static_cast<long>(first)));
        for (std::size_t i = resent_from; i < thread.pending_signals.size(); ++i) {
            ::syscall(SYS_tgkill, pid_, thread.tid, thread.pending_signals[i]);
        }
    }
    return std::chrono::steady_clock::now() - stopped_at_;
}

}  // namespace suture
