#pragma once

#include <cstdint>

#include "base/Error.h"
#include <vector>

#include "inject/StoppedProcess.h"
#include "proc/ProcessMaps.h"

namespace suture {

// Runs one system call inside a stopped process, on its worker thread.
//
// The story of an injected system call (x86-64):
//  1. Save the thread's registers.
//  2. Load the call: rax = number, rdi/rsi/rdx/r10/r8/r9 = arguments, rip =
//     the address of a `syscall` instruction (0f 05) found in the target's
//     own executable memory, and orig_rax = -1: a thread stopped inside an
//     interrupted system call would otherwise have the kernel "restart" that
//     call instead of running ours.
//  3. Single-step: the thread executes `syscall` and stops with SIGTRAP
//     right after it. Another signal may stop it first; it is kept for the
//     thread (StoppedProcess::keep_signal) and the step is retried.
//  4. Read rax (the result, -errno on failure) and restore every register:
//     the thread's own interrupted system call restarts as if nothing
//     happened.
class RemoteSyscall {
public:
    // Finds a `syscall` instruction in the process's vDSO or libc. Needs no
    // stop (it reads /proc/PID/mem), so callers do it before stopping.
    static Result<std::uint64_t> find_instruction(int pid, const std::vector<Mapping>& mappings);

    // `instruction` from find_instruction, on maps that have not changed since.
    RemoteSyscall(StoppedProcess& process, std::uint64_t instruction)
        : process_(process), instruction_(instruction) {}

    // Returns the raw result: a value, or -errno.
    Result<long> call(long number, std::uint64_t a0 = 0, std::uint64_t a1 = 0, std::uint64_t a2 = 0,
                      std::uint64_t a3 = 0, std::uint64_t a4 = 0, std::uint64_t a5 = 0);

private:
    StoppedProcess& process_;
    std::uint64_t instruction_;  // address of 0f 05 in the target
};

}  // namespace suture
