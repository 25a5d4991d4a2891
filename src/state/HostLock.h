#pragma once

#include <chrono>
#include <functional>
#include <string>

#include "base/Error.h"
#include "base/UniqueFD.h"

namespace suture {

// One suture operation at a time per host (docs/state.md, "One operation at
// a time"): every operation that changes processes or the state database
// (apply, revert, update, the daemon's rescan and new processes, state
// rebuild, settings) holds an exclusive flock(2) on one root-owned file,
// /run/suture/lock ($SUTURE_LOCK_FILE), for its duration. Two updates at
// once would both apply every missing patch and fight over the same
// processes; the kernel drops the lock when its holder dies, so a killed
// run never leaves it held. The holder writes its PID into the file so a
// refused caller can name it. Read-only commands never take it.
class HostLock {
  public:
    // The lock file: `path` if not empty, else $SUTURE_LOCK_FILE, else
    // /run/suture/lock.
    static std::string resolve_path(const std::string& path);

    // Takes the lock, waiting up to `wait` for a holder to finish (0: do not
    // wait). `waiting` is called once, with the holder's PID (0 if unknown),
    // when it has to wait. A holder that does not finish in time is a
    // `locked` error: "another suture operation is running (pid N)".
    static Result<HostLock> acquire(const std::string& path, std::chrono::seconds wait,
                                    const std::function<void(int)>& waiting = {});

    HostLock(HostLock&&) noexcept = default;
    HostLock& operator=(HostLock&&) noexcept = default;
    ~HostLock();  // releases it

  private:
    explicit HostLock(UniqueFD fd) : fd_(std::move(fd)) {}
    UniqueFD fd_;
};

}  // namespace suture
