#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "base/Error.h"
#include "inject/RemoteMemory.h"
#include "proc/ProcessMaps.h"

namespace suture {

// One thread's call chain, as far as the unwind tables could follow it.
struct CallChain {
    // frames[0] is the thread's PC; every later entry is a return address.
    std::vector<std::uint64_t> frames;
    // cfas[k] is the canonical frame address of frame k (the caller's stack
    // pointer right after frame k returns; on x86-64 frame k's return
    // address, frames[k + 1], sits at cfas[k] - 8). One entry per frame that
    // has a caller: cfas.size() == frames.size() - 1 for a complete chain.
    std::vector<std::uint64_t> cfas;
    // True only when the unwind reached the outermost frame the unwind
    // tables themselves mark (glibc marks `_start`, `clone` and `clone3`
    // with an undefined return address): every frame had unwind
    // information and libunwind reported no error.
    bool complete = false;
    // Why it is not complete: "frame #3 at 0x7f…: no unwind information".
    std::string incomplete_reason;
};

// Unwinds the threads of one stopped process with libunwind, reading
// everything from the process's memory: registers through ptrace, memory
// through /proc/PID/mem (a page cache for the duration of one stop), and
// each object's unwind table from its own mapped `.eh_frame_hdr`, found
// through the ELF and program headers mapped at the object's load base.
//
// Why memory and not files: what the process maps is exactly what it runs,
// whichever mount namespace, chroot, deleted or replaced file it came from.
// libunwind-ptrace's own accessors open each object by the path in
// /proc/PID/maps (prefixed with /proc/PID/root), a path the kernel prints
// relative to the *reader's* root: for a chrooted process the prefix is
// doubled, every open fails, and libunwind ends the chain early as if the
// stack ended there (docs/architecture.md, "The stack check").
//
// The memory, mappings and the stopped threads must outlive the unwinder
// and stay stopped while it is used.
class RemoteUnwinder {
  public:
    RemoteUnwinder(const std::vector<Mapping>& mappings, const RemoteMemory& memory);
    ~RemoteUnwinder();
    RemoteUnwinder(const RemoteUnwinder&) = delete;
    RemoteUnwinder& operator=(const RemoteUnwinder&) = delete;

    // Unwinds thread `tid` (ptrace-stopped) up to `max_frames` frames.
    // Errors only when libunwind cannot be set up; an unwind that fails
    // midway is a CallChain with `complete` false.
    Result<CallChain> unwind(int tid, int max_frames);

    struct Session;  // the accessors' state; defined in the .cpp

  private:
    std::unique_ptr<Session> session_;
};

}  // namespace suture
