#include "inject/StackCheck.h"

#include <libunwind-ptrace.h>

#include <cstdio>
#include <memory>

namespace suture {

namespace {

constexpr int max_frames = 256;

std::string hex(std::uint64_t value) {
    char text[24];
    std::snprintf(text, sizeof text, "0x%llx", static_cast<unsigned long long>(value));
    return text;
}

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

}  // namespace

Result<std::vector<BlockingThread>> find_blocking_threads(StoppedProcess& process,
                                                          const std::vector<CodeRange>& ranges) {
    std::unique_ptr<unw_addr_space, AddressSpaceDeleter> space(
        unw_create_addr_space(&_UPT_accessors, 0));
    if (!space) {
        return fail(ErrorCode::io, "libunwind: cannot create an address space");
    }
    std::vector<BlockingThread> blocking;
    for (const StoppedThread& thread : process.threads()) {
        std::unique_ptr<void, UptDeleter> context(_UPT_create(thread.tid));
        if (!context) {
            return fail(ErrorCode::io, "libunwind: cannot attach to thread " +
                                           std::to_string(thread.tid));
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
                report.frames.push_back("#" + std::to_string(depth) + " " + hex(ip) + " in " +
                                        range->name);
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
