#include "inject/StoppedProcess.h"

#include <signal.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <sys/wait.h>

#include <algorithm>
#include <condition_variable>
#include <mutex>
#include <string>

#include "inject/WaitStatus.h"
#include "proc/MemorySharers.h"
#include "proc/Process.h"
#include "proc/ProgramRun.h"

namespace suture {

StoppedProcess::StoppedProcess(StoppedProcess&& other) noexcept
    : pid_(other.pid_),
      threads_(std::move(other.threads_)),
      interrupted_(std::move(other.interrupted_)),
      seized_(std::move(other.seized_)),
      unreported_(std::move(other.unreported_)),
      never_stopped_(std::move(other.never_stopped_)),
      stopped_at_(other.stopped_at_),
      attached_(std::exchange(other.attached_, false)) {}

StoppedProcess::~StoppedProcess() {
    resume();
}

namespace {

// Step 9: reaps, from a thread of its own, the target's threads that
// exited while traced by us, for as long as stop() seizes. An execve() in a
// thread of the target ends the other threads and waits, holding the
// target's cred_guard_mutex, until each is reaped; for a traced thread that
// is its tracer's waitpid. PTRACE_SEIZE of another thread meanwhile waits
// for that very mutex: the tracer would wait forever for the exec, the exec
// for the tracer. Any thread of the tracer's process may reap its tracees
// (wait(2) without __WNOTHREAD); it looks with WNOWAIT and reaps only
// exits, never the stops stop() waits for.
class ExitReaper {
  public:
    explicit ExitReaper(int pid) : pid_(pid), thread_([this] { run(); }) {}
    ExitReaper(const ExitReaper&) = delete;
    ExitReaper& operator=(const ExitReaper&) = delete;
    ~ExitReaper() {
        {
            std::lock_guard lock(mutex_);
            done_ = true;
        }
        wake_.notify_one();
        thread_.join();
    }

  private:
    // Every task of the target, not only those this stop seized: one an
    // earlier stop of this tracer thread could not detach (step 7) is ours
    // to reap too. A zombie thread stays listed until it is reaped; waitid
    // on a task that is not our tracee fails (ECHILD) and does nothing.
    void run() {
        std::unique_lock lock(mutex_);
        while (!done_) {
            wake_.wait_for(lock, std::chrono::milliseconds(2));
            auto tids = list_thread_ids(pid_);
            for (int tid : tids ? *tids : std::vector<int>{}) {
                // A tracee's ptrace-stops are reported whatever the flags
                // say: look first (WNOWAIT), reap only an exit.
                siginfo_t info{};
                auto id = static_cast<id_t>(tid);
                if (::waitid(P_PID, id, &info, WEXITED | WNOHANG | WNOWAIT | __WALL) == 0 &&
                    info.si_pid == tid &&
                    (info.si_code == CLD_EXITED || info.si_code == CLD_KILLED ||
                     info.si_code == CLD_DUMPED)) {
                    ::waitid(P_PID, id, &info, WEXITED | WNOHANG | __WALL);
                }
            }
        }
    }

    int pid_;
    std::mutex mutex_;
    std::condition_variable wake_;
    bool done_ = false;
    std::thread thread_;  // last: started once the members it uses exist
};

}  // namespace

Result<StoppedProcess> StoppedProcess::stop(int pid) {
    ExitReaper reaper(pid);  // step 9; started before the stop's clock
    // From here on every thread seized is detached again by `process`'s
    // destructor, on every path out.
    StoppedProcess process(pid);
    process.attached_ = true;
    process.stopped_at_ = std::chrono::steady_clock::now();
    for (;;) {
        auto fresh = process.seize_new_threads();
        if (!fresh) {
            return tl::unexpected(fresh.error());
        }
        if (*fresh == 0) {
            break;  // a whole pass found no new thread: the list is stable (step 3)
        }
        if (auto stopped = process.wait_for_interrupts(); !stopped) {
            return tl::unexpected(stopped.error());
        }
    }
    if (process.threads_.empty()) {
        return fail(ErrorCode::target_died, process.subject() + ": no thread left to stop");
    }
    return process;
}

Result<StoppedProcess> StoppedProcess::stop_one_thread(int pid) {
    StoppedProcess process(pid);
    process.attached_ = true;
    process.stopped_at_ = std::chrono::steady_clock::now();
    auto tids = list_thread_ids(pid);
    if (!tids) {
        return tl::unexpected(tids.error());
    }
    for (int tid : *tids) {
        auto seized = process.seize_thread(tid);
        if (!seized) {
            return tl::unexpected(seized.error());
        }
        if (!*seized) {
            continue;
        }
        if (auto stopped = process.wait_for_interrupts(); !stopped) {
            return tl::unexpected(stopped.error());
        }
        if (!process.threads_.empty()) {
            return process;
        }
    }
    return fail(ErrorCode::target_died, process.subject() + ": no thread left to stop");
}

Error already_traced(int pid, int tracer) {
    return Error{ErrorCode::busy,
                 "pid " + std::to_string(pid) + " is already traced by " +
                     describe_process(tracer) +
                     ": a process has one tracer at a time; nothing changed, try again when it "
                     "has detached",
                 EPERM};
}

Result<void> check_not_traced(int pid) {
    if (int tracer = tracer_of(pid); tracer != 0) {
        return tl::unexpected(already_traced(pid, tracer));
    }
    return {};
}

std::string StoppedProcess::subject() const {
    return "pid " + std::to_string(pid_);
}

Result<std::size_t> StoppedProcess::seize_new_threads() {
    auto tids = list_thread_ids(pid_);
    if (!tids) {
        if (!seized_.empty()) {
            return fail(ErrorCode::target_died, subject() + ": exited while being stopped");
        }
        return tl::unexpected(tids.error());
    }
    std::size_t fresh = 0;
    for (int tid : *tids) {
        if (seized_.contains(tid)) {
            continue;
        }
        auto seized = seize_thread(tid);
        if (!seized) {
            return tl::unexpected(seized.error());
        }
        fresh += *seized ? 1 : 0;
    }
    return fresh;
}

Result<bool> StoppedProcess::seize_thread(int tid) {
    // TRACESYSGOOD marks system-call stops with SIGTRAP|0x80, which is no
    // valid signal: should this tool die during such a stop, the kernel
    // does not deliver a SIGTRAP to the thread (see RemoteSyscall).
    // TRACEEXEC reports an execve() as a stop of its own (step 8).
    constexpr long options = PTRACE_O_TRACESYSGOOD | PTRACE_O_TRACEEXEC;
    if (::ptrace(PTRACE_SEIZE, tid, nullptr, reinterpret_cast<void*>(options)) != 0) {
        if (errno == ESRCH) {
            return false;  // the thread exited: nothing to hold (step 4)
        }
        return tl::unexpected(attach_refused(tid, errno));
    }
    seized_.insert(tid);
    unreported_.push_back(tid);
    if (::ptrace(PTRACE_INTERRUPT, tid, nullptr, nullptr) != 0 && errno != ESRCH) {
        return fail_errno(subject() + ": interrupt thread " + std::to_string(tid), errno);
    }
    return true;
}

Result<void> StoppedProcess::wait_for_interrupts() {
    auto deadline = std::chrono::steady_clock::now() + stop_bound;
    while (!unreported_.empty()) {
        int tid = unreported_.front();
        auto waited = wait_for_stop_until(tid, deadline, subject());
        if (!waited && waited.error().errno_value == ECHILD) {
            // No longer our tracee: it exited and the reaper took it (step
            // 9), or an exec in another thread ended it (step 8).
            unreported_.erase(unreported_.begin());
            if (tid == pid_) {
                return fail(ErrorCode::target_died, subject() + ": exited while being stopped");
            }
            continue;
        }
        if (!waited) {
            return tl::unexpected(waited.error());  // still unreported: resume() sees to it
        }
        if (!*waited) {
            never_stopped_.insert(tid);  // step 7
            return tl::unexpected(did_not_stop(tid));
        }
        WaitStatus* status = &**waited;
        unreported_.erase(unreported_.begin());
        if (status->ended()) {
            if (tid == pid_) {
                return fail(ErrorCode::target_died, subject() + ": exited while being stopped");
            }
            continue;  // one thread exited (step 4)
        }
        if (status->ptrace_event() == PTRACE_EVENT_EXEC) {
            // Step 8: the process runs another program now. The thread sits
            // in a ptrace-stop, so resume() can detach it with the others.
            threads_.push_back(StoppedThread{pid_, {}});
            return fail(ErrorCode::target_died,
                        subject() + ": exec'ed " + executable_path(pid_) + " while being stopped");
        }
        threads_.push_back(StoppedThread{tid, {}});
        if (status->kind() == WaitStatus::Kind::signal_stop) {
            // A signal-delivery-stop (step 2): keep the signal for the thread.
            threads_.back().pending_signals.push_back(status->signal());
            threads_.back().in_delivery_stop = true;
        } else {
            interrupted_.push_back(tid);
        }
    }
    return {};
}

Error StoppedProcess::attach_refused(int tid, int errno_value) const {
    // A thread has one tracer at a time: PTRACE_SEIZE fails with EPERM on a
    // thread a debugger (or strace) holds; name it. (EPERM on a zombie is
    // told truthfully by the caller: proc/ProgramRun.h, truthful_error.)
    if (errno_value == EPERM) {
        if (int tracer = tracer_of(pid_, tid); tracer != 0) {
            return already_traced(pid_, tracer);
        }
    }
    return fail_errno(subject() + ": attach thread " + std::to_string(tid), errno_value).value();
}

Error StoppedProcess::did_not_stop(int tid) const {
    std::string why = describe_thread_wait(tid);
    std::string advice = "try again later";
    if (waits_in_vfork(tid)) {
        why = "it waits in vfork()";
        auto sharers = find_memory_sharers(pid_, SharerSearch::relatives);
        for (const MemorySharer& sharer : sharers ? *sharers : std::vector<MemorySharer>{}) {
            if (sharer.creator_tid == tid) {
                why += " for pid " + std::to_string(sharer.pid) +
                       ", which shares its memory, to exec or exit";
                advice =
                    "try again when pid " + std::to_string(sharer.pid) + " has exec'ed or exited";
            }
        }
    }
    return Error{ErrorCode::busy,
                 subject() + ": thread " + std::to_string(tid) + " did not stop within " +
                     std::to_string(stop_bound.count()) + " ms (" + why +
                     "): every thread released, nothing changed; " + advice,
                 ETIMEDOUT};  // with_process_stopped() tries such a stop again
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
    // Seized, but stop() failed before their stop was seen (step 5); but
    // for a thread that did not stop in time: the tracer's exit releases it
    // (step 7).
    auto deadline = std::chrono::steady_clock::now() + stop_bound;
    for (int tid : unreported_) {
        if (!never_stopped_.contains(tid)) {
            detach_when_stopped(tid, deadline);
        }
    }
    unreported_.clear();
    return std::chrono::steady_clock::now() - stopped_at_;
}

}  // namespace suture
