#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "base/Error.h"
#include "base/UniqueFD.h"
#include "inject/RemoteAddress.h"

namespace suture {

// Another process's memory through /proc/PID/mem. Reading needs ptrace
// read access (root, or the same user without Yama restrictions) but no
// attachment; writing goes through the kernel's FOLL_FORCE path, so it also
// writes into read-only and executable pages, the way a debugger sets
// breakpoints. See proc(5), /proc/pid/mem.
class RemoteMemory {
  public:
    static Result<RemoteMemory> open(int pid, bool writable);

    Result<std::vector<std::byte>> read(RemoteAddress address, std::size_t size) const;
    Result<void> write(RemoteAddress address, std::span<const std::byte> bytes) const;

    int pid() const { return pid_; }

  private:
    RemoteMemory(int pid, UniqueFD fd) : pid_(pid), fd_(std::move(fd)) {}

    int pid_;
    UniqueFD fd_;
};

}  // namespace suture
