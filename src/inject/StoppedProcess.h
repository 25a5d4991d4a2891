#pragma once

#include <sys/user.h>

#include <chrono>
#include <exception>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "base/Error.h"

namespace suture {

// How long one pass of a stop waits for its threads' interrupt stops
// (StoppedProcess, step 7). Threads blocked in a system call stop within
// microseconds and 32 threads spinning on 2 cores within some 25 ms; a
// thread not stopped after this long will not stop soon.
constexpr std::chrono::milliseconds stop_bound{1000};

// Runs `work()` on a new thread and returns its result: the thread that
// stops a process is its tracer, and its exit releases a thread that never
// stopped (StoppedProcess, step 7). Costs one thread start, outside any stop.
template <typename Work>
auto on_tracer_thread(const Work& work) -> decltype(work()) {
    std::optional<decltype(work())> result;
    std::exception_ptr thrown;  // rethrown here: an exception must not end the tracer thread
    std::thread tracer([&] {
        try {
            result.emplace(work());
        } catch (...) {
            thrown = std::current_exception();
        }
    });
    tracer.join();
    if (thrown) {
        std::rethrow_exception(thrown);
    }
    return std::move(*result);
}

// Refuses (busy, "pid 123 is already traced by pid 456 (gdb): …") a process
// a thread of which another tracer (a debugger, strace) holds: ptrace allows
// one tracer per thread. Before an operation that stops `pid`, so the
// refusal names the tracer before any work; StoppedProcess::stop() says the
// same should one attach in between.
Result<void> check_not_traced(int pid);
Error already_traced(int pid, int tracer);

// One thread held in a ptrace stop.
struct StoppedThread {
    int tid = 0;
    // Signals that arrived while we held the thread and that it must still
    // receive, in arrival order. The first is handed back with PTRACE_DETACH
    // (with its original siginfo); any later ones are sent again with
    // tgkill() right after, so no signal meant for the target is lost or
    // reordered (their siginfo then names suture as the sender).
    std::vector<int> pending_signals;
    // Still sitting in the signal-delivery-stop of pending_signals[0], so
    // PTRACE_DETACH can deliver it; false once the thread was resumed.
    bool in_delivery_stop = false;
};

// Every thread of a process, stopped with PTRACE_SEIZE + PTRACE_INTERRUPT,
// for as long as this object lives. Destruction (or resume()) detaches every
// thread, handing back signals that arrived meanwhile.
//
// The story of a stop, as the kernel tells it (ptrace(2)):
//  1. PTRACE_SEIZE does not stop the thread; PTRACE_INTERRUPT asks it to stop
//     and it reports a PTRACE_EVENT_STOP through waitpid(__WALL).
//  2. A thread may report a signal-delivery-stop first (a signal raced with
//     the interrupt). We keep the signal and give it back at detach.
//  3. Threads can be created while we attach: /proc/PID/task is listed again
//     until a pass finds no new thread. A new thread's clone() finishes only
//     once its creator runs, and stopped creators create nothing, so the loop
//     ends.
//  4. A thread can exit meanwhile (ESRCH on seize, or an exit status from
//     waitpid); it is dropped. If the whole process exits, stop() fails with
//     target_died. Any other waitpid failure is an error of its own.
//  5. Every thread seized is detached again on every path out of stop(),
//     failures included: PTRACE_DETACH needs a thread in a ptrace-stop, so
//     one seized but not yet seen stopped is waited for first. A thread left
//     traced would stop at its next signal and wait there for as long as
//     this tool lives (for sutured: until it exits).
//  6. If this tool is killed, the kernel detaches every tracee and they run
//     on; what is in the process's memory then is explained by the region
//     marker (see docs/patch-format.md).
//  7. A thread may never stop: one inside vfork() sleeps (killable only)
//     until its child execs or exits, and our interrupt takes effect only
//     then. So each pass waits at most `stop_bound` for its threads; then
//     stop() fails `busy`, naming the thread and why (the vfork child, or
//     its state and wchan), and every stopped thread is detached at once.
//     The one that did not stop cannot be detached (PTRACE_DETACH needs a
//     ptrace-stop) and must not stop later for a tracer that no longer waits
//     for it: the kernel detaches it, pending interrupt cleared, when the
//     tracer thread exits. Hence on_tracer_thread() below around every
//     operation that stops a process.
//  8. A thread may execve() meanwhile (between two tries, or while this
//     stop seizes the others): the kernel ends every other thread and the
//     exec'ing one goes on as the leader, in another program.
//     PTRACE_O_TRACEEXEC makes that a PTRACE_EVENT_EXEC stop, and stop()
//     fails target_died saying so; waits on the threads that vanished fail
//     with ECHILD. Either way the caller tells the truth with
//     truthful_error() (proc/ProgramRun.h).
//  9. That exec waits, holding the target's cred_guard_mutex, until every
//     thread it ended is reaped, which for our tracees is our waitpid;
//     and a PTRACE_SEIZE meanwhile waits for that mutex: a deadlock (seen
//     in inject-exit-exec-race.sh, an exec about once in 60 races). So
//     while stop() seizes, a thread of its own reaps the target's threads
//     that exited while traced by us (ExitReaper in StoppedProcess.cpp); a
//     wait that then finds a thread no longer ours (ECHILD) counts it as
//     exited.
class StoppedProcess {
  public:
    // Stops every thread of `pid`. Errors: not_found (no such process),
    // permission_denied, target_died (also: it exec'ed while being stopped,
    // step 8), busy (a thread did not stop within stop_bound, step 7; or
    // another tracer holds a thread), and the errno of a failed waitpid.
    static Result<StoppedProcess> stop(int pid);

    // Stops one thread of `pid` (the first of /proc/PID/task that is still
    // there) and leaves the others running: enough to run injected system
    // calls (RemoteSyscall) that map memory nothing references yet (an
    // apply's region before its stop, Injector.cpp). Same errors as stop().
    // Run it on a tracer thread of its own (on_tracer_thread): a thread that
    // never stopped is released when that thread ends (step 7).
    static Result<StoppedProcess> stop_one_thread(int pid);

    StoppedProcess(StoppedProcess&& other) noexcept;
    StoppedProcess& operator=(StoppedProcess&&) = delete;
    StoppedProcess(const StoppedProcess&) = delete;
    StoppedProcess& operator=(const StoppedProcess&) = delete;
    ~StoppedProcess();

    int pid() const { return pid_; }
    std::vector<StoppedThread>& threads() { return threads_; }

    // A thread stopped by our interrupt (not in a signal-delivery-stop),
    // best suited for running injected system calls; the main thread
    // otherwise.
    StoppedThread& worker();

    // Records a signal a thread received while we held it (step 2).
    void keep_signal(int tid, int signal);

    // Detaches every thread now; returns how long the process was stopped.
    std::chrono::nanoseconds resume();

  private:
    explicit StoppedProcess(int pid) : pid_(pid) {}

    std::string subject() const;
    // One pass over /proc/PID/task: seizes and interrupts every thread not
    // seized yet (steps 1, 3, 4); returns how many.
    Result<std::size_t> seize_new_threads();
    // Seizes and interrupts `tid`; false if it exited meanwhile (step 4).
    Result<bool> seize_thread(int tid);
    // Waits for the stop of every thread seized but not yet seen stopped
    // (steps 1, 2, 4).
    Result<void> wait_for_interrupts();

    // The error of a PTRACE_SEIZE of `tid` that failed with `errno_value`:
    // busy, naming the tracer, for a thread another tracer holds.
    Error attach_refused(int tid, int errno_value) const;
    // The error of a pass whose thread `tid` did not stop in time (step 7).
    Error did_not_stop(int tid) const;

    int pid_;
    std::vector<StoppedThread> threads_;
    std::vector<int> interrupted_;  // tids that reported PTRACE_EVENT_STOP
    std::set<int> seized_;          // every tid seized, stopped or not
    std::vector<int> unreported_;   // seized, its stop not yet waited for
    std::set<int> never_stopped_;   // waited for in vain (step 7): left to the tracer's exit
    std::chrono::steady_clock::time_point stopped_at_{};
    bool attached_ = false;
};

}  // namespace suture
