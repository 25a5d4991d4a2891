#pragma once

#include <chrono>
#include <optional>
#include <string>

#include "base/Error.h"

namespace suture {

// What waitpid(2) reported about one tracee, decoded once. The encodings are
// in wait(2) and ptrace(2), "Stopped states"; for a tracee attached with
// PTRACE_SEIZE:
//  - exited / killed: the thread is gone (WIFEXITED / WIFSIGNALED);
//  - syscall_stop: a PTRACE_SYSCALL stop, SIGTRAP|0x80 with
//    PTRACE_O_TRACESYSGOOD (no valid signal: never delivered);
//  - signal_stop: a signal-delivery-stop, the signal waits for the tracer to
//    pass it on (status >> 16 is 0);
//  - interrupt_stop: PTRACE_EVENT_STOP with SIGTRAP, the stop PTRACE_INTERRUPT
//    asked for;
//  - group_stop: PTRACE_EVENT_STOP with a stopping signal (SIGSTOP, SIGTSTP,
//    SIGTTIN, SIGTTOU): the whole process is job-control stopped;
//  - ptrace_event: any other PTRACE_EVENT_* stop (none is enabled today).
// A tracee that ended is an ordinary result, not an error.
class WaitStatus {
  public:
    enum class Kind {
        exited,
        killed,
        syscall_stop,
        signal_stop,
        interrupt_stop,
        group_stop,
        ptrace_event,
    };

    explicit WaitStatus(int raw) : raw_(raw) {}

    Kind kind() const;
    int raw() const { return raw_; }

    // The thread is gone: exited or killed.
    bool ended() const { return kind() == Kind::exited || kind() == Kind::killed; }
    // Stopped by PTRACE_EVENT_STOP: our interrupt, or a group-stop (either
    // way the thread sits in a ptrace-stop that PTRACE_DETACH ends).
    bool event_stop() const { return kind() == Kind::interrupt_stop || kind() == Kind::group_stop; }

    // exited: the exit code; otherwise 0.
    int exit_code() const;
    // killed: the fatal signal; signal_stop: the signal to be delivered;
    // group_stop: the stopping signal; otherwise 0.
    int signal() const;
    // A ptrace-event stop's PTRACE_EVENT_* (PTRACE_EVENT_STOP for
    // interrupt and group stops); otherwise 0.
    int ptrace_event() const;

  private:
    int raw_;
};

// Waits (waitpid with __WALL, again after EINTR) until tracee `tid` reports
// a stop or its end. Error only for a genuine waitpid failure (ECHILD: not
// our tracee, EINVAL); `subject` starts its message.
Result<WaitStatus> wait_for_stop(int tid, const std::string& subject);

// wait_for_stop() with a bound: nullopt when `tid` has reported nothing by
// `deadline`. It polls (waitpid WNOHANG, yielding the CPU in between, then
// sleeping 20 µs), since a blocking waitpid(2) cannot time out. Needed for
// the thread that cannot stop: one in vfork() waits (killable only) for its
// child to exec or exit, and a PTRACE_INTERRUPT stops it only then.
Result<std::optional<WaitStatus>> wait_for_stop_until(
    int tid, std::chrono::steady_clock::time_point deadline, const std::string& subject);

// Detaches tracee `tid` whose stop nobody has waited for yet: PTRACE_DETACH
// works only on a tracee in a ptrace-stop, so it is interrupted (again,
// should the first PTRACE_INTERRUPT have failed), its stop waited for, and
// then detached, with the signal of a signal-delivery-stop handed back. For
// error paths; best effort: a thread that ended needs nothing, and after a
// failed wait one PTRACE_DETACH is tried all the same. With a `deadline`,
// a tracee that has not stopped by then stays traced: only the exit of the
// tracer thread releases it (StoppedProcess.h, on_tracer_thread).
void detach_when_stopped(int tid);
void detach_when_stopped(int tid, std::chrono::steady_clock::time_point deadline);

}  // namespace suture
