#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/Error.h"
#include "inject/RemoteMemory.h"
#include "inject/StoppedProcess.h"
#include "proc/ProcessMaps.h"

namespace suture {

// Code that no thread may be in while it is being replaced. Two kinds:
//  - body (strict patches, regions): the half-open range [start, end); a
//    thread is in the way if its PC lies in it, or a return address r does
//    with r - 1 (the call) in it.
//  - overwritten (entry patches): the bytes a 5-byte jump replaces at
//    start; a thread finishing the old body elsewhere is fine. It is in the
//    way only if its PC is strictly inside (start, end) (PC == start will
//    execute the jump), or a return address r satisfies start < r < end (a
//    call among the overwritten bytes returning into them; r == end
//    continues the old body).
struct CodeRange {
    enum class Kind { body, overwritten };
    std::uint64_t start = 0;
    std::uint64_t end = 0;
    std::string name;  // for reports: "compute (libdemo.so+0x1139)"
    Kind kind = Kind::body;

    // Is a thread whose PC is `pc` in the way?
    bool holds_pc(std::uint64_t pc) const {
        return kind == Kind::body ? pc >= start && pc < end : pc > start && pc < end;
    }
    // Is a thread that will return to `address` in the way?
    bool holds_return_address(std::uint64_t address) const {
        return kind == Kind::body ? address - 1 >= start && address - 1 < end
                                  : address > start && address < end;
    }
    // The conservative scan's test of a stack word: true for every word
    // holds_return_address is true for (and, for a body, for its first
    // byte too, as ever).
    bool might_hold_word(std::uint64_t word) const {
        return kind == Kind::body ? word >= start && word <= end : holds_return_address(word);
    }
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
// `ranges` (CodeRange::holds_pc, holds_return_address). A thread that cannot be unwound to its end is reported as
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
