#pragma once

#include <sys/user.h>

#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "base/Error.h"
#include "inject/LoadedObjects.h"
#include "inject/RemoteMemory.h"
#include "inject/StoppedProcess.h"
#include "proc/ProcessMaps.h"

namespace suture {

// Where a stopped thread resumes should it finish on its own (after an
// injected system call or function call): where it stopped, or, stopped
// inside an interrupted system call, at that call's `syscall` instruction
// again with its number back in rax, the way the kernel restarts it.
struct ResumePoint {
    std::uint64_t rax = 0;
    std::uint64_t rip = 0;
};
ResumePoint resume_point(const user_regs_struct& saved);

// Spare bytes a trampoline site should have for RemoteCall's trampoline.
inline constexpr std::size_t call_trampoline_room = 320;

// Runs system calls (mmap, munmap) inside a stopped process, on one of its
// threads, such that the thread ends up exactly where it was even if this
// tool is killed at any instant.
//
// The story of an injected system call (x86-64):
//  1. A trampoline is written into dead executable bytes of a loaded object
//     (the slack after an executable segment's contents, in its last page;
//     nothing runs there):
//         syscall
//         mov rax/rdi/rsi/rdx/r10/r8/r9/rcx/r11, [rsp - 64 KiB + …]
//         jmp [rsp - 64 KiB + 72]
//  2. The thread's registers are saved, and the values that resume it are
//     stored on its own stack, 64 KiB below its stack pointer (beyond any
//     signal frame the kernel could push meanwhile). A thread stopped inside
//     an interrupted system call resumes the way the kernel restarts it: at
//     its `syscall` instruction again, with its number back in rax.
//  3. The call is loaded: rip = trampoline, rax = number, the arguments,
//     orig_rax = -1 (so the kernel does not "restart" the thread's own call).
//  4. PTRACE_SYSCALL twice: the thread stops at the entry and at the exit of
//     our system call; rax at the exit is the result. These stops carry
//     SIGTRAP|0x80 (PTRACE_O_TRACESYSGOOD), no valid signal, so a tool that
//     dies there leaves no SIGTRAP behind. (Single-stepping would: the trap
//     flag and its SIGTRAP outlive the tracer and kill the thread.)
//  5. PTRACE_INTERRUPT first, then the saved registers back, then
//     PTRACE_CONT: the thread goes from the system-call exit straight into an
//     interrupt stop without running user code, and leaves that stop later
//     exactly as it would have left its first one (including the kernel's
//     restart of its own interrupted call).
// If the tool dies at any point, the kernel lets the thread run: before step
// 5 it runs the trampoline, which finishes the call and puts its registers
// back; from step 5 on, the pending interrupt makes the kernel apply its
// normal restart rules to the saved registers. No thread is ever left with
// borrowed registers or a stray SIGTRAP.
class RemoteSyscall {
  public:
    // Dead executable bytes [start, end) ending at a page end: the
    // trampoline goes at `start`, an intent record (RegionMarker.h) in the
    // last bytes before `end`.
    struct Site {
        RemoteAddress start;
        RemoteAddress end;
    };

    // Chooses the trampoline's place among `objects` (libc preferred; one
    // with call_trampoline_room bytes to spare preferred over one without).
    // Needs no stop.
    static Result<Site> find_site(const std::vector<LoadedObject>& objects);

    // Installs the trampoline at `site` in the stopped process (the bytes of
    // the whole site are restored by the destructor).
    static Result<RemoteSyscall> install(StoppedProcess& process, const RemoteMemory& memory,
                                         const std::vector<Mapping>& mappings, Site site);

    // The site's bytes this trampoline does not use (between its code and
    // the intent record): where RemoteCall puts its own trampoline. The
    // destructor restores them with the rest of the site.
    Site spare_bytes() const;
    // Leaves the spare bytes as they are at destruction: a thread still
    // runs a call trampoline there (RemoteCall.h, step 6).
    void keep_spare_bytes() { keep_spare_bytes_ = true; }

    // Writes the intent record for a region about to be mapped.
    Result<void> record_intent(RemoteAddress region_address, std::uint64_t region_size);

    // Clears an intent record at `record_address` for good (also from the
    // bytes the destructor puts back, when it lies in this trampoline's site).
    Result<void> clear_intent(RemoteAddress record_address);

    RemoteSyscall(RemoteSyscall&& other) noexcept;
    RemoteSyscall(const RemoteSyscall&) = delete;
    RemoteSyscall& operator=(const RemoteSyscall&) = delete;
    RemoteSyscall& operator=(RemoteSyscall&&) = delete;
    ~RemoteSyscall();

    // Returns the raw result: a value, or -errno.
    Result<long> call(long number, std::uint64_t a0 = 0, std::uint64_t a1 = 0, std::uint64_t a2 = 0,
                      std::uint64_t a3 = 0, std::uint64_t a4 = 0, std::uint64_t a5 = 0) {
        return call_then(nullptr, number, a0, a1, a2, a3, a4, a5);
    }

    // Like call(), and runs `at_exit` with the result while the thread still
    // sits at the exit of the system call (step 4): for an mmap, the new
    // memory can be filled before anything else happens.
    Result<long> call_then(const std::function<Result<void>(long)>& at_exit, long number,
                           std::uint64_t a0 = 0, std::uint64_t a1 = 0, std::uint64_t a2 = 0,
                           std::uint64_t a3 = 0, std::uint64_t a4 = 0, std::uint64_t a5 = 0);

  private:
    // Step 2: the values that resume the thread, stored on its own stack.
    Result<void> store_resume_values(int tid, const user_regs_struct& saved,
                                     const std::string& subject);

    RemoteSyscall(StoppedProcess& process, const RemoteMemory& memory,
                  const std::vector<Mapping>& mappings, Site site,
                  std::vector<std::byte> saved_bytes)
        : process_(process),
          memory_(memory),
          mappings_(mappings),
          site_(site),
          saved_bytes_(std::move(saved_bytes)) {}

    StoppedProcess& process_;
    const RemoteMemory& memory_;
    const std::vector<Mapping>& mappings_;
    Site site_;
    std::vector<std::byte> saved_bytes_;  // the site's bytes before us
    bool installed_ = true;
    bool keep_spare_bytes_ = false;
};

}  // namespace suture
