#include "inject/StackCheck.h"

#include <sys/ptrace.h>
#include <sys/user.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <memory>

#include "base/Files.h"
#include "inject/RemoteUnwinder.h"

namespace suture {

namespace {

constexpr int max_frames = 256;

// The range a frame is in the way of: frame 0 by its PC, any other by its
// return address.
const CodeRange* range_holding(const std::vector<CodeRange>& ranges, std::uint64_t ip,
                               bool is_pc) {
    for (const CodeRange& range : ranges) {
        if (is_pc ? range.holds_pc(ip) : range.holds_return_address(ip)) {
            return &range;
        }
    }
    return nullptr;
}

bool any_might_hold(const std::vector<CodeRange>& ranges, std::uint64_t word) {
    return std::any_of(ranges.begin(), ranges.end(),
                       [&](const CodeRange& range) { return range.might_hold_word(word); });
}

constexpr std::size_t max_scanned_stack = 512 * 1024;

// Step 1 of find_blocking_threads: true when the scan proves the thread safe.
bool scan_proves_safe(int tid, const std::vector<CodeRange>& ranges,
                      const std::vector<Mapping>& mappings, const RemoteMemory& memory) {
    user_regs_struct registers{};
    if (::ptrace(PTRACE_GETREGS, tid, nullptr, &registers) != 0 ||
        range_holding(ranges, registers.rip, true) != nullptr) {
        return false;
    }
    const Mapping* stack = find_mapping(mappings, registers.rsp);
    if (stack == nullptr) {
        return false;
    }
    bool own_stack = stack->path == "[stack]" ||
                     (registers.fs_base >= stack->start && registers.fs_base < stack->end);
    std::uint64_t top = stack->end;
    if (!own_stack || top - registers.rsp > max_scanned_stack) {
        return false;
    }
    auto words = memory.read(RemoteAddress(registers.rsp), top - registers.rsp);
    if (!words) {
        return false;
    }
    for (std::size_t at = 0; at + 8 <= words->size(); at += 8) {
        std::uint64_t word;
        std::memcpy(&word, words->data() + at, sizeof word);
        // Any word may be a return address (which points after its call).
        if (any_might_hold(ranges, word)) {
            return false;
        }
    }
    return true;
}

}  // namespace

Result<std::vector<BlockingThread>> find_blocking_threads(StoppedProcess& process,
                                                          const std::vector<CodeRange>& ranges,
                                                          const std::vector<Mapping>& mappings,
                                                          const RemoteMemory& memory,
                                                          StackCheckFigures* figures) {
    StackCheckFigures counted;
    counted.threads = process.threads().size();
    std::vector<int> to_unwind;
    for (const StoppedThread& thread : process.threads()) {
        if (scan_proves_safe(thread.tid, ranges, mappings, memory)) {
            ++counted.proven_by_scan;
        } else {
            to_unwind.push_back(thread.tid);
        }
    }
    std::vector<BlockingThread> blocking;
    RemoteUnwinder unwinder(mappings, memory);
    for (int tid : to_unwind) {
        auto chain = unwinder.unwind(tid, max_frames);
        if (!chain) {
            return tl::unexpected(chain.error());
        }
        ++counted.unwound;
        BlockingThread report{tid, {}, {}};
        for (std::size_t depth = 0; depth < chain->frames.size(); ++depth) {
            std::uint64_t ip = chain->frames[depth];
            // Frame 0 is the PC; every other ip is a return address.
            if (const CodeRange* range = range_holding(ranges, ip, depth == 0)) {
                report.frames.push_back("#" + std::to_string(depth) + " " + hex_address(ip) +
                                        " in " + range->name);
            }
        }
        if (chain->complete) {
            ++counted.complete_unwinds;
            counted.deepest_frames = std::max(counted.deepest_frames, chain->frames.size());
        } else {
            // Unknown is not safe: the scan saw a word pointing into a range
            // and only a complete unwind may overrule it.
            report.cannot_unwind = chain->incomplete_reason;
            report.frames.push_back("(cannot unwind thread " + std::to_string(tid) + ": " +
                                    chain->incomplete_reason + ")");
        }
        if (!report.frames.empty()) {
            blocking.push_back(std::move(report));
        }
    }
    if (figures != nullptr) {
        *figures = counted;
    }
    return blocking;
}

Result<std::vector<ThreadStack>> unwind_every_thread(StoppedProcess& process,
                                                     const std::vector<Mapping>& mappings,
                                                     const RemoteMemory& memory) {
    std::vector<ThreadStack> stacks;
    RemoteUnwinder unwinder(mappings, memory);
    for (const StoppedThread& thread : process.threads()) {
        auto chain = unwinder.unwind(thread.tid, max_frames);
        if (!chain) {
            return tl::unexpected(chain.error());
        }
        stacks.push_back(ThreadStack{thread.tid, std::move(chain->frames), chain->complete,
                                     std::move(chain->incomplete_reason)});
    }
    return stacks;
}

}  // namespace suture
