#include "inject/WaitStatus.h"

#include <sched.h>
#include <signal.h>
#include <sys/ptrace.h>
#include <sys/wait.h>

#include <thread>

#include <string>

namespace suture {

namespace {

bool is_stopping_signal(int signal) {
    return signal == SIGSTOP || signal == SIGTSTP || signal == SIGTTIN || signal == SIGTTOU;
}

}  // namespace

WaitStatus::Kind WaitStatus::kind() const {
    if (WIFEXITED(raw_)) {
        return Kind::exited;
    }
    if (WIFSIGNALED(raw_)) {
        return Kind::killed;
    }
    int event = raw_ >> 16;
    int stop_signal = WSTOPSIG(raw_);
    if (event == 0) {
        return stop_signal == (SIGTRAP | 0x80) ? Kind::syscall_stop : Kind::signal_stop;
    }
    if (event == PTRACE_EVENT_STOP) {
        return is_stopping_signal(stop_signal) ? Kind::group_stop : Kind::interrupt_stop;
    }
    return Kind::ptrace_event;
}

int WaitStatus::exit_code() const {
    return kind() == Kind::exited ? WEXITSTATUS(raw_) : 0;
}

int WaitStatus::signal() const {
    switch (kind()) {
        case Kind::killed:
            return WTERMSIG(raw_);
        case Kind::signal_stop:
        case Kind::group_stop:
            return WSTOPSIG(raw_);
        default:
            return 0;
    }
}

int WaitStatus::ptrace_event() const {
    return WIFSTOPPED(raw_) ? raw_ >> 16 : 0;
}

Result<WaitStatus> wait_for_stop(int tid, const std::string& subject) {
    int status = 0;
    while (::waitpid(tid, &status, __WALL) < 0) {
        if (errno != EINTR) {
            return fail_errno(subject + ": wait for thread " + std::to_string(tid), errno);
        }
    }
    return WaitStatus(status);
}

Result<std::optional<WaitStatus>> wait_for_stop_until(
    int tid, std::chrono::steady_clock::time_point deadline, const std::string& subject) {
    // A stop usually comes within microseconds: yield first, sleep later.
    constexpr int yields = 200;
    for (int polls = 0;; ++polls) {
        int status = 0;
        pid_t reported = ::waitpid(tid, &status, __WALL | WNOHANG);
        if (reported == tid) {
            return WaitStatus(status);
        }
        if (reported < 0 && errno != EINTR) {
            return fail_errno(subject + ": wait for thread " + std::to_string(tid), errno);
        }
        if (std::chrono::steady_clock::now() >= deadline) {
            return std::nullopt;
        }
        if (polls < yields) {
            ::sched_yield();
        } else {
            std::this_thread::sleep_for(std::chrono::microseconds(20));
        }
    }
}

void detach_when_stopped(int tid, std::chrono::steady_clock::time_point deadline) {
    ::ptrace(PTRACE_INTERRUPT, tid, nullptr, nullptr);
    auto status = wait_for_stop_until(tid, deadline, "thread " + std::to_string(tid));
    if (status && !*status) {
        return;  // not stopped: left to the tracer thread's exit
    }
    if (status && (*status)->ended()) {
        return;
    }
    long signal =
        status && (*status)->kind() == WaitStatus::Kind::signal_stop ? (*status)->signal() : 0;
    ::ptrace(PTRACE_DETACH, tid, nullptr, reinterpret_cast<void*>(signal));
}

void detach_when_stopped(int tid) {
    ::ptrace(PTRACE_INTERRUPT, tid, nullptr, nullptr);
    auto status = wait_for_stop(tid, "thread " + std::to_string(tid));
    if (status && status->ended()) {
        return;
    }
    long signal = status && status->kind() == WaitStatus::Kind::signal_stop ? status->signal() : 0;
    ::ptrace(PTRACE_DETACH, tid, nullptr, reinterpret_cast<void*>(signal));
}

}  // namespace suture
