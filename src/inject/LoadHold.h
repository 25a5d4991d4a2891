#pragma once

#include <sys/types.h>
#include <sys/user.h>

#include <chrono>
#include <functional>
#include <optional>

#include "base/Error.h"

namespace suture {

// A thread caught while the dynamic loader loads libssl or libcrypto into
// its process (dlopen(), LD_PRELOAD, a program's start), held at the moment
// the loader has mapped every object of the load and begins to relocate
// them: the new library's code is in memory, and nothing can have called
// into it yet (the loader runs constructors and returns from dlopen() only
// after relocating). Patches applied now are in place before its first call.
//
// How it is caught (no breakpoint, nothing that outlives suture):
//  1. The caller has a fanotify permission event for the library file: the
//     thread sits in open(), waiting for the answer. hold_load() seizes it,
//     asks it to stop, then lets the caller answer "allow".
//  2. It follows the thread's system calls (PTRACE_SYSCALL) until the
//     loader's first mprotect(PROT_READ) of a mapping of that file returns:
//     the RELRO protection of the first relocated object, so mapping is
//     done. At most `step_limit` calls (a program that only reads the
//     file, like sha256sum, is let go).
//  3. There it rewinds the thread onto its `syscall` instruction, turned
//     into ppoll(NULL, 0, {10 s}, all signals blocked), and detaches: the
//     thread waits in the kernel, untraced, where any tracer (the injector)
//     can stop it, and no signal interrupts the wait (a signal handler
//     would make the loader's mprotect return EINTR and fail the load).
//  4. release_load() stops it again and puts back the registers of the
//     mprotect's return: the loader goes on as if nothing happened.
// If suture dies in between, the wait ends by itself after 10 s with 0, the
// mprotect's own result on success: the load goes on (its RELRO range
// stays writable, nothing else changes; the loader's mprotect is a
// wrapper that returns straight after the system call, which step 3
// checks, so the argument registers the wait used are dead).
struct HeldLoad {
    int pid = 0;
    int tid = 0;
    user_regs_struct saved{};  // at the return of the loader's mprotect
    std::chrono::steady_clock::time_point held_at;
};

// How long a held thread waits at most (step 3).
constexpr std::chrono::seconds load_hold_bound{10};

// Steps 1–3 for thread `tid` of `pid`, blocked in the open() of the file
// (device, inode). `allow` answers the permission event; it is called
// exactly once, on every path, right after the seize (or at once if the
// seize fails). nullopt when the thread let the file go without loading it,
// or the loader's code is not what step 3 expects, or a seccomp filter
// could refuse the wait's ppoll (the thread runs on, not held). Errors:
// target_died, busy (already traced), unsafe.
Result<std::optional<HeldLoad>> hold_load(int pid, int tid, dev_t device, ino_t inode,
                                          const std::function<void()>& allow);

// Step 4: true if the thread was still waiting (so nothing of the load
// ran past the hold). Safe after the wait ended by itself: the thread is
// then left alone (it already went on), false. Errors: target_died, io.
Result<bool> release_load(const HeldLoad& held);

}  // namespace suture
