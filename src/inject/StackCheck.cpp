#include "inject/StackCheck.h"

#include <sys/ptrace.h>
#include <sys/user.h>

#include <cstdio>
#include <cstring>
#include <memory>

#include "base/Files.h"
#include "inject/RemoteUnwinder.h"

namespace suture {

namespace {

constexpr int max_frames = 256;

const CodeRange* range_containing(const std::vector<CodeRange>& ranges, std::uint64_t address) {
    for (const CodeRange& range : ranges) {
        if (address >= range.start && address < range.end) {
            return &range;
        }
    }
    return nullptr;
}

constexpr std::size_t max_scanned_stack = 512 * 1024;

// Step 1 of find_blocking_threads: true when the scan proves the thread safe.
bool scan_proves_safe(int tid, const std::vector<CodeRange>& ranges,
                      const std::vector<Mapping>& mappings, const RemoteMemory& memory) {
    user_regs_struct registers{};
    if (::ptrace(PTRACE_GETREGS, tid, nullptr, &registers) != 0 ||
        range_containing(ranges, registers.rip) != nullptr) {
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
        // A return address points after its call: test word - 1 as well.
        if (range_containing(ranges, word) != nullptr ||
            range_containing(ranges, word - 1) != nullptr) {
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
            // A return address points after the call: the call itself (and
            // the function that made it) is at ip - 1.
            std::uint64_t address = depth == 0 ? ip : ip - 1;
            if (const CodeRange* range = range_containing(ranges, address)) {
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
