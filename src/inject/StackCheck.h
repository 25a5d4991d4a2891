#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/Error.h"
#include "inject/StoppedProcess.h"

namespace suture {

// A half-open address range [start, end) that no thread may be executing in
// (its PC) or return into (a return address) while it is being replaced.
struct CodeRange {
    std::uint64_t start = 0;
    std::uint64_t end = 0;
    std::string name;  // for reports: "compute (libdemo.so+0x1139)"
};

// One thread whose stack touches a range, with the frames that do.
struct BlockingThread {
    int tid = 0;
    std::vector<std::string> frames;  // "#2 0x7f…1139 in compute (libdemo.so+0x1139)"
};

// Unwinds every stopped thread with libunwind-ptrace (DWARF CFI: Debian's
// libcrypto has no frame pointers) and returns the threads whose PC or any
// return address lies in one of `ranges`. A thread that cannot be unwound
// to its end is reported as blocking too: unknown is not safe.
Result<std::vector<BlockingThread>> find_blocking_threads(StoppedProcess& process,
                                                          const std::vector<CodeRange>& ranges);

}  // namespace suture
