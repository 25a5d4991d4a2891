// One program run of a process, and what became of it: how an operation
// tells the truth about a process that exited, became a zombie or exec'ed
// while it worked on it (instead of reporting what that did to its reads:
// an empty maps file, a library "not mapped", an import no object defines,
// EPERM from ptrace on a zombie, ECHILD from waitpid).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "base/Error.h"

namespace suture {

// What tells one program run of a process apart from the process that had
// its pid before or after (the start time) and from the program it exec's
// next: execve(2) keeps pid and start time but maps a new executable and
// builds a new stack for the arguments, at a new random address (ASLR).
struct ProgramRun {
    int pid = 0;
    std::uint64_t start_time = 0;  // /proc/PID/stat field 22
    // stat field 48 of a task not exiting, where execve put argv; 0 when the reader may
    // not see it (no ptrace access) and then not compared.
    std::uint64_t arg_start = 0;
    std::uint64_t exe_device = 0;  // of the file /proc/PID/exe names (0, 0:
    std::uint64_t exe_inode = 0;   // not ours to see; then not compared)
    std::string executable;  // its path, for messages
};

// What /proc shows of a process at one moment.
struct ProcessSighting {
    enum class Kind {
        gone,     // no /proc/PID (or its stat vanished while being read)
        zombie,   // exited: no task has memory any more (a zombie, or about to be)
        running,  // `run` says which program
    };
    Kind kind = Kind::gone;
    ProgramRun run;
};

// Looks at `pid` now.
ProcessSighting sight_process(int pid);

// The run of `pid` now, to compare with at the end of an operation. Errors:
// not_found, "pid N: no such process" (for a zombie: "... (a zombie: it has
// exited and its parent has not reaped it yet)").
Result<ProgramRun> read_program_run(int pid);

// What became of a run since it was read.
enum class RunFate {
    running,  // the same program still runs
    exited,   // the process is gone, or its pid belongs to another one now
    zombie,   // it exited; its parent has not reaped it yet
    execed,   // the same process runs another program now
};

// Pure: the fate of `before` given a later sighting of its pid.
RunFate fate_of(const ProgramRun& before, const ProcessSighting& now);

// The error an operation on `before` ended with, told truthfully: if the
// process has exited, is a zombie or runs another program now, the error
// says that (target_died, with "exited during the operation" or "exec'ed
// during the operation", and the original message as what it caused);
// otherwise it is returned unchanged. Call it once the operation has let go
// of the process.
Error truthful_error(const ProgramRun& before, Error error);

// Parses /proc/PID/stat text into its fields from 3 on (state, ppid, …):
// the comm field (2) may hold spaces and parentheses, so they are counted
// from the last ')'. `field` is the number in proc(5); empty when absent.
std::string_view stat_field(std::string_view stat_text, int field);

// The pid tracing any thread of `pid` (TracerPid in
// /proc/PID/task/TID/status), or only thread `only_tid`; 0 when none is
// traced.
int tracer_of(int pid, int only_tid = 0);

// "pid 456 (gdb)": a process named for a message ("pid 456" if its comm is
// unreadable).
std::string describe_process(int pid);

}  // namespace suture
