#include "inject/StackCheck.h"

#include <libunwind-ptrace.h>

#include <sys/ptrace.h>
#include <sys/user.h>

#include <cstdio>
#include <cstring>
#include <memory>

#include "base/Files.h"

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

struct AddressSpaceDeleter {
    void operator()(unw_addr_space* space) const { unw_destroy_addr_space(space); }
};
struct UptDeleter {
    void operator()(void* context) const { _UPT_destroy(context); }
};

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
    auto words = memory.read(registers.rsp, top - registers.rsp);
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
                                                          const RemoteMemory& memory) {
    std::vector<const StoppedThread*> to_unwind;
    for (const StoppedThread& thread : process.threads()) {
        if (!scan_proves_safe(thread.tid, ranges, mappings, memory)) {
            to_unwind.push_back(&thread);
        }
    }
    std::vector<BlockingThread> blocking;
    if (to_unwind.empty()) {
        return blocking;
    }
    std::unique_ptr<unw_addr_space, AddressSpaceDeleter> space(
        unw_create_addr_space(&_UPT_accessors, 0));
    if (!space) {
        return fail(ErrorCode::io, "libunwind: cannot create an address space");
    }
    unw_set_caching_policy(space.get(), UNW_CACHE_GLOBAL);
    for (const StoppedThread* stopped_thread : to_unwind) {
        const StoppedThread& thread = *stopped_thread;
        std::unique_ptr<void, UptDeleter> context(_UPT_create(thread.tid));
        if (!context) {
            return fail(ErrorCode::io,
                        "libunwind: cannot attach to thread " + std::to_string(thread.tid));
        }
        unw_cursor_t cursor;
        BlockingThread report{thread.tid, {}};
        int status = unw_init_remote(&cursor, space.get(), context.get());
        int depth = 0;
        for (; status >= 0 && depth < max_frames; ++depth) {
            unw_word_t ip = 0;
            unw_get_reg(&cursor, UNW_REG_IP, &ip);
            // A return address points after the call: the call itself (and
            // the function that made it) is at ip - 1.
            std::uint64_t address = depth == 0 ? ip : ip - 1;
            if (const CodeRange* range = range_containing(ranges, address)) {
                report.frames.push_back("#" + std::to_string(depth) + " " + hex_address(ip) +
                                        " in " + range->name);
            }
            status = unw_step(&cursor);
            if (status == 0) {
                break;  // the outermost frame
            }
        }
        if (status < 0 || depth >= max_frames) {
            report.frames.push_back("(cannot unwind past frame " + std::to_string(depth) +
                                    ": libunwind error " + std::to_string(status) + ")");
        }
        if (!report.frames.empty()) {
            blocking.push_back(std::move(report));
        }
    }
    return blocking;
}

}  // namespace suture
