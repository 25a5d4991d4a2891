#pragma once

#include <sys/user.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "base/Error.h"
#include "inject/RemoteMemory.h"
#include "inject/RemoteSyscall.h"
#include "inject/StackCheck.h"
#include "inject/StoppedProcess.h"
#include "proc/ProcessMaps.h"

namespace suture {

// How long a function run in the target may take. Past `deadline` the
// call is reported slow; the other threads stay stopped until it returns or
// `hard_bound` passes (see RemoteCall's story, step 6).
struct RemoteCallBounds {
    std::chrono::milliseconds deadline{200};
    std::chrono::milliseconds hard_bound{2000};
};

// What one call did.
struct RemoteCallResult {
    enum class Kind {
        returned,   // the function returned `value`
        timed_out,  // still running at the hard bound: left to finish alone
    };
    Kind kind = Kind::returned;
    int value = 0;  // the function's int result (eax)
    int tid = 0;    // the thread that ran it
    std::chrono::nanoseconds duration{};
};

// The frame a call builds below a thread's stack pointer, computed from its
// registers alone (pure, for unit tests). From low to high addresses:
//   [lowest_used, frame)  room for the callee's own stack (callee_stack)
//   frame                 64-byte aligned: the rsp at the call (16-aligned,
//                         as the ABI wants), where the XSAVE area starts
//   frame + save_block    the saved registers and signal mask (160 bytes)
//   ...                   at least the 128-byte red zone below the old rsp
struct CallFrame {
    std::uint64_t frame = 0;
    std::uint64_t save_block = 0;   // offset of the saved registers from frame
    std::uint64_t lowest_used = 0;  // the lowest stack byte the call may touch
};
inline constexpr std::uint64_t red_zone = 128;
inline constexpr std::uint64_t callee_stack = 64 * 1024;
inline constexpr std::uint64_t call_save_block_size = 160;
CallFrame call_frame(std::uint64_t rsp, std::size_t xsave_size);

// The trampoline's bytes for a frame with `save_block` and the XSAVE (or,
// without it, FXSAVE) instruction pair; `resume_rip` is where it jumps at
// its end. `done` receives the offset just after its sync `syscall`.
std::vector<std::byte> call_trampoline(std::uint64_t save_block, bool use_xsave,
                                       std::uint64_t resume_rip, std::size_t& done);

// Runs `int function(void)` inside a stopped process, on one of its
// stopped threads, while every other thread stays stopped; the thread ends
// up exactly where it was, registers, vector state and signal mask
// included, even if this tool is killed at any instant (the kernel then
// detaches every thread and this one finishes alone).
//
// The story of a call (x86-64):
//  1. A thread is chosen: stopped by our interrupt (not sitting on a
//     signal), its PC outside `avoid` (the code being replaced), with its
//     stack mapped and writable far enough below its stack pointer for the
//     frame and callee_stack more.
//  2. Its registers (PTRACE_GETREGS), its XSAVE state (PTRACE_GETREGSET
//     NT_X86_XSTATE) and its signal mask (PTRACE_GETSIGMASK) are saved.
//  3. The frame is built below the red zone (call_frame): the XSAVE area
//     zeroed (XSAVE writes only the XSTATE_BV word of its header; XRSTOR
//     faults on stale bytes in the rest of it), the saved
//     registers, the resume point (RemoteSyscall.h's resume_point: a thread
//     stopped in an interrupted system call restarts it) and the old mask.
//     The trampoline goes into the spare bytes of the system-call
//     trampoline's site (dead executable bytes). It does:
//         xsave (%rsp)            ; the vector state, as the thread had it
//         call *function
//         mov %rax, result
//         rt_sigprocmask(SIG_SETMASK, old mask)   <- the sync point
//         xrstor (%rsp); popfq; every register back; jmp *resume
//  4. rip = trampoline, rsp = the frame (16-aligned at the call, the red
//     zone skipped), orig_rax = -1 (no restart of the thread's own call),
//     DF and TF clear; only then every signal is blocked
//     (PTRACE_SETSIGMASK): a tool killed in between leaves a thread that
//     runs the trampoline with its own mask and puts it back.
//  5. PTRACE_SYSCALL until the thread enters the sync rt_sigprocmask (its
//     own system calls on the way are let through; a signal that still
//     arrives, SIGSTOP say, is kept for the thread and handed back at
//     detach). The result is read from the frame.
//  6. Bounds: past `deadline` the call is merely slow; at `hard_bound` it is
//     left alone: the thread is interrupted wherever it is (a ptrace-stop
//     that the detach ends), the result says timed_out, and when the
//     process is resumed the thread finishes the function and the
//     trampoline by itself, putting back its mask, vector state and
//     registers. Nothing kills or keeps stopping the process. The caller
//     must then run nothing more on this stop's threads (the thread is not
//     at an interrupt stop) and must not unmap the callee's code.
//  7. Done: to the exit of the sync call (the mask is back), then
//     PTRACE_INTERRUPT, the XSAVE state back, the registers back, the mask
//     back, PTRACE_CONT: the thread goes from the system-call exit straight
//     into an interrupt stop and later leaves it exactly as it would have
//     left its first one.
// Errors: target_died (the process died during the call: the caller tells
// it as such), unsupported (no thread qualifies), io (ptrace failed).
Result<RemoteCallResult> call_in_target(StoppedProcess& process, const RemoteMemory& memory,
                                        const std::vector<Mapping>& mappings,
                                        const RemoteSyscall& syscall, RemoteAddress function,
                                        const std::vector<CodeRange>& avoid,
                                        const RemoteCallBounds& bounds);

}  // namespace suture
