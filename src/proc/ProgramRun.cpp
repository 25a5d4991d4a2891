#include "proc/ProgramRun.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <chrono>
#include <thread>

#include "base/Files.h"
#include "proc/Process.h"

namespace suture {

namespace {

std::uint64_t stat_number(std::string_view stat_text, int field) {
    std::string_view text = stat_field(stat_text, field);
    std::uint64_t value = 0;
    std::from_chars(text.data(), text.data() + text.size(), value);
    return value;
}

constexpr std::uint64_t pf_exiting = 0x00000004;  // include/linux/sched.h
constexpr std::uint64_t pf_kthread = 0x00200000;

// Whether a task is on its way out: PF_EXITING in its flags (stat field 9),
// or SIGKILL pending (field 31, its own pending signals). The second is the
// state of every other thread of a process whose leader called exit()
// (exit_group(2)) until each one runs again: PF_EXITING not set yet, its exe
// link still there, while the leader's own /proc files show no memory
// already. A fatal signal to the process puts SIGKILL in each thread's own
// set too.
bool task_is_leaving(std::string_view task_stat) {
    constexpr std::uint64_t sigkill_bit = 1ULL << (9 - 1);
    return (stat_number(task_stat, 9) & pf_exiting) != 0 ||
           (stat_number(task_stat, 31) & sigkill_bit) != 0;
}

}  // namespace

std::string_view stat_field(std::string_view stat_text, int field) {
    std::size_t close = stat_text.rfind(')');
    if (close == std::string_view::npos || field < 3) {
        return {};
    }
    std::string_view rest = stat_text.substr(close + 1);
    for (int at = 3;; ++at) {
        std::size_t start = rest.find_first_not_of(" \n");
        if (start == std::string_view::npos) {
            return {};
        }
        rest.remove_prefix(start);
        std::size_t end = std::min(rest.find_first_of(" \n"), rest.size());
        if (at == field) {
            return rest.substr(0, end);
        }
        rest.remove_prefix(end);
    }
}

ProcessSighting sight_process(int pid) {
    // 1. Its stat: gone without one.
    std::string dir = "/proc/" + std::to_string(pid);
    ProcessSighting sighting;
    auto stat_text = read_file(dir + "/stat");
    if (!stat_text) {
        return sighting;  // gone
    }
    ProgramRun& run = sighting.run;
    run.pid = pid;
    run.start_time = stat_number(*stat_text, 22);
    sighting.kind = ProcessSighting::Kind::running;
    if ((stat_number(*stat_text, 9) & pf_kthread) != 0) {
        return sighting;  // a kernel thread: no program, and never a zombie for that
    }
    // 2. Its program, through the first task that still has memory and is
    // not exiting: a task's exe link goes (ENOENT) when its memory does, at
    // its exit, and its flags say PF_EXITING from the moment it starts to
    // (SIGKILL pending, before that: task_is_leaving()). A
    // leader that called pthread_exit() has none while its threads run on;
    // when no task has any, the process has exited (a zombie, or one about
    // to be).
    auto tids = list_thread_ids(pid);
    for (int tid : tids ? *tids : std::vector<int>{}) {
        std::string task_dir = dir + "/task/" + std::to_string(tid);
        auto task_stat = read_file(task_dir + "/stat");
        if (!task_stat || task_is_leaving(*task_stat)) {
            continue;
        }
        std::string exe = task_dir + "/exe";
        struct stat file {};
        if (::stat(exe.c_str(), &file) == 0) {
            // Where its memory has argv, read through the same task: an
            // exiting leader's own stat shows 0 while its threads run on.
            run.arg_start = stat_number(*task_stat, 48);
            run.exe_device = static_cast<std::uint64_t>(file.st_dev);
            run.exe_inode = static_cast<std::uint64_t>(file.st_ino);
            char path[4096];
            ssize_t length = ::readlink(exe.c_str(), path, sizeof path - 1);
            run.executable = length > 0 ? std::string(path, static_cast<std::size_t>(length)) : "";
            return sighting;
        }
        if (errno != ENOENT) {
            return sighting;  // not ours to see (EACCES): running, program unknown
        }
    }
    sighting.kind = ::access(dir.c_str(), F_OK) == 0 ? ProcessSighting::Kind::zombie
                                                      : ProcessSighting::Kind::gone;
    return sighting;
}

Result<ProgramRun> read_program_run(int pid) {
    ProcessSighting sighting = sight_process(pid);
    std::string subject = "pid " + std::to_string(pid);
    switch (sighting.kind) {
        case ProcessSighting::Kind::gone:
            return tl::unexpected(Error{ErrorCode::not_found, subject + ": no such process", ESRCH});
        case ProcessSighting::Kind::zombie:
            return tl::unexpected(Error{ErrorCode::not_found,
                                        subject +
                                            ": no such process (a zombie: it has exited and its "
                                            "parent has not reaped it yet)",
                                        ESRCH});
        case ProcessSighting::Kind::running:
            break;
    }
    return sighting.run;
}

RunFate fate_of(const ProgramRun& before, const ProcessSighting& now) {
    switch (now.kind) {
        case ProcessSighting::Kind::gone:
            return RunFate::exited;
        case ProcessSighting::Kind::zombie:
            return RunFate::zombie;
        case ProcessSighting::Kind::running:
            break;
    }
    if (now.run.start_time != before.start_time) {
        return RunFate::exited;  // the pid was reused
    }
    bool both_seen = now.run.exe_inode != 0 && before.exe_inode != 0;
    bool other_file = both_seen && (now.run.exe_device != before.exe_device ||
                                    now.run.exe_inode != before.exe_inode);
    // A new stack, or none yet: an exec between replacing the memory and
    // building the new stack shows arg_start 0 to a reader who still sees the
    // exe link (without access both read as 0, and nothing is compared).
    bool stack_seen = now.run.arg_start != 0 || now.run.exe_inode != 0;
    bool new_stack =
        before.arg_start != 0 && stack_seen && now.run.arg_start != before.arg_start;
    return other_file || new_stack ? RunFate::execed : RunFate::running;
}

Error truthful_error(const ProgramRun& before, Error error) {
    // A process on its way out fails reads (EPERM from ptrace on an exiting
    // thread, empty maps) a moment before /proc shows it gone: on an error
    // path a second look 10 ms later is cheap.
    ProcessSighting now = sight_process(before.pid);
    RunFate fate = fate_of(before, now);
    if (fate == RunFate::running) {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
        now = sight_process(before.pid);
        fate = fate_of(before, now);
    }
    std::string subject = "pid " + std::to_string(before.pid);
    std::string cause = " (what failed then: " + error.message + ")";
    switch (fate) {
        case RunFate::running:
            return error;
        case RunFate::exited:
        case RunFate::zombie:
            if (error.code == ErrorCode::target_died) {
                return error;  // already says so
            }
            error.message = subject + " exited during the operation" +
                            (fate == RunFate::zombie ? " (a zombie now, not yet reaped)" : "") +
                            cause;
            break;
        case RunFate::execed: {
            std::string program =
                now.run.executable.empty() ? "another program" : now.run.executable;
            std::string was = before.executable.empty() || before.executable == program
                                  ? ""
                                  : ", no longer " + before.executable;
            error.message =
                subject + " exec'ed during the operation: it runs " + program + " now" + was + cause;
            break;
        }
    }
    error.code = ErrorCode::target_died;
    return error;
}

int tracer_of(int pid, int only_tid) {
    auto tids = only_tid != 0 ? Result<std::vector<int>>(std::vector<int>{only_tid})
                              : list_thread_ids(pid);
    for (int tid : tids ? *tids : std::vector<int>{}) {
        auto status =
            read_file("/proc/" + std::to_string(pid) + "/task/" + std::to_string(tid) + "/status");
        if (!status) {
            continue;
        }
        std::size_t at = status->find("\nTracerPid:");
        if (at == std::string::npos) {
            continue;
        }
        std::string_view value = std::string_view(*status).substr(at + 11);
        value.remove_prefix(std::min(value.find_first_not_of(" \t"), value.size()));
        int tracer = 0;
        std::from_chars(value.data(), value.data() + value.size(), tracer);
        if (tracer != 0) {
            return tracer;
        }
    }
    return 0;
}

std::string describe_process(int pid) {
    std::string text = "pid " + std::to_string(pid);
    auto comm = read_file("/proc/" + std::to_string(pid) + "/comm");
    if (comm && !comm->empty()) {
        if (comm->back() == '\n') {
            comm->pop_back();
        }
        text += " (" + *comm + ")";
    }
    return text;
}

}  // namespace suture
