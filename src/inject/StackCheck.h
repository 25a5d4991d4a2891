#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/Error.h"
#include "inject/RemoteMemory.h"
#include "inject/StoppedProcess.h"
#include "proc/ProcessMaps.h"

namespace suture {

// A half-open address range [start, end) that no thread may be executing in
// (its PC) or return into (a return address) while it is being replaced.
struct CodeRange {
    std::uint64_t start = 0;
    std::uint64_t end = 0;
    std::string name;  // for reports: "compute (libdemo.so+0x1139)"
};

// One thread whose stack touches a range, with the frames that do; or one
// that could not be unwound completely (then `cannot_unwind` says why).
struct BlockingThread {
    int tid = 0;
    std::vector<std::string> frames;  // "#2 0x7f…1139 in compute (libdemo.so+0x1139)"
    std::string cannot_unwind;        // "frame #3 at 0x…: no unwind information"
};

// What one stack check did, for reports and tests: how many threads the
// scan alone proved safe, how many were unwound, how many of those unwinds
// were complete, and the deepest complete call chain.
struct StackCheckFigures {
    std::size_t threads = 0;
    std::size_t proven_by_scan = 0;
    std::size_t unwound = 0;
    std::size_t complete_unwinds = 0;
    std::size_t deepest_frames = 0;
};

// Returns the stopped threads whose PC or any return address lies in one of
// `ranges`. A thread that cannot be unwound to its end is reported as
// blocking too: unknown is not safe. An unwind is complete only when it
// reaches the frame the unwind tables mark outermost; a frame without unwind
// information, a libunwind error or too many frames leave it incomplete,
// and an incomplete unwind never overrides what the scan saw.
//
// Two steps, the first only to save time inside the stop:
//  1. A conservative scan: if the thread's PC is outside every range, its
//     stack pointer is on its own stack (the main [stack], or the mapping
//     that holds its TLS block, where glibc puts thread stacks; not a
//     sigaltstack), and no 8-byte word between the stack pointer and the top
//     of that stack points into a range, then no return address can: every
//     return address of the thread's call chain, signal frames included, is
//     such a word. The thread is safe.
//  2. Otherwise the thread is unwound (RemoteUnwinder: DWARF CFI read from
//     the process's own memory; Debian's libcrypto has no frame pointers),
//     which decides and names the frames. A stale word that merely looks
//     like an address costs one unwind, never a wrong answer.
// `figures` (if given) receives what the check did.
Result<std::vector<BlockingThread>> find_blocking_threads(StoppedProcess& process,
                                                          const std::vector<CodeRange>& ranges,
                                                          const std::vector<Mapping>& mappings,
                                                          const RemoteMemory& memory,
                                                          StackCheckFigures* figures = nullptr);

// Every thread's call chain, unwound in the stopped process (for `suture
// stacks`: what the stack check would see).
struct ThreadStack {
    int tid = 0;
    std::vector<std::uint64_t> frames;
    bool complete = false;
    std::string incomplete_reason;
};
Result<std::vector<ThreadStack>> unwind_every_thread(StoppedProcess& process,
                                                     const std::vector<Mapping>& mappings,
                                                     const RemoteMemory& memory);

}  // namespace suture
