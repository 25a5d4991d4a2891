#pragma once

#include <string>
#include <vector>

#include "base/Error.h"
#include "base/UniqueFD.h"

namespace suture {

// Library events from fanotify(7): the kernel reports every close of a
// watched file opened for reading, with the closer's PID. sutured watches
// the libssl and libcrypto files its closures and the roots of processes
// name; the dynamic loader opens such a file, maps its segments and closes
// it again (glibc's _dl_map_object_from_fd) before relocating it and
// running its constructors, so the close is the moment the library is
// mapped and nothing in it has run yet. Why not the loader's r_brk or any
// other breakpoint: a trap in the target outlives sutured and kills it
// when nobody catches it (DESIGN.md, lessons); fanotify only reports, the
// closer never waits for sutured. Needs CAP_SYS_ADMIN (root).
//
// Marks are on inodes: a watched file replaced by a package upgrade is a
// new inode, found by the next rescan's look into the roots.
class LibraryWatcher {
  public:
    static Result<LibraryWatcher> open();

    // The descriptor to poll for readability.
    int fd() const { return fanotify_.get(); }

    // Watches one more file (idempotent in the kernel).
    Result<void> watch(const std::string& path);

    // Reads the events that are waiting and calls `on_close(pid)` for each;
    // returns when nothing more is waiting.
    template <typename Callback>
    void drain(Callback on_close) {
        for (;;) {
            std::vector<int> pids = next_events();
            if (pids.empty()) {
                return;
            }
            for (int pid : pids) {
                on_close(pid);
            }
        }
    }

  private:
    explicit LibraryWatcher(UniqueFD fanotify) : fanotify_(std::move(fanotify)) {}
    // The PIDs of the events of one read (their file descriptors closed);
    // empty when nothing is waiting.
    std::vector<int> next_events();

    UniqueFD fanotify_;
};

}  // namespace suture
