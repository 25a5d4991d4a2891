#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "base/Error.h"
#include "base/UniqueFD.h"

namespace suture {

// Library events from fanotify(7): the kernel reports every open of a
// watched file, with the opener's PID. sutured watches the libssl and
// libcrypto files its closures and the roots of processes name; the dynamic
// loader opens such a file, reads its header and maps its segments at once
// (glibc's _dl_map_object_from_fd), before relocating it and running its
// constructors. The open is the event; wait_until_mapped() then follows that
// one process for the few hundred microseconds until the mapping exists.
// (FAN_CLOSE_NOWRITE would be later still but never comes in time: the
// mapping holds the file, so its last close is when the process unmaps it,
// measured: at exit.) Why not the loader's r_brk or any other breakpoint: a
// trap in the target outlives sutured and kills it when nobody catches it
// (DESIGN.md, lessons); fanotify only reports, the opener never waits for
// sutured. Needs CAP_SYS_ADMIN (root).
//
// Marks are on inodes: a watched file replaced by a package upgrade is a
// new inode, found by the next rescan's look into the roots.
struct LibraryEvent {
    int pid = 0;
    std::uint64_t inode = 0;  // of the file opened
};

class LibraryWatcher {
  public:
    static Result<LibraryWatcher> open();

    // The descriptor to poll for readability.
    int fd() const { return fanotify_.get(); }

    // Watches one more file (idempotent in the kernel).
    Result<void> watch(const std::string& path);

    // Reads the events that are waiting and calls `on_open(event)` for
    // each; returns when nothing more is waiting.
    template <typename Callback>
    void drain(Callback on_open) {
        for (;;) {
            std::vector<LibraryEvent> events = next_events();
            if (events.empty()) {
                return;
            }
            for (const LibraryEvent& event : events) {
                on_open(event);
            }
        }
    }

    // Whether `event.pid` maps the file it opened, looking again after a
    // growing pause (100 us doubling, `pause(duration)` waits it: sutured
    // waits on its exec events meanwhile) until `timeout`; false for a
    // process that opened the file without mapping it (a checksum tool,
    // suture's own status) or that is gone.
    template <typename Pause>
    static bool wait_until_mapped(const LibraryEvent& event, std::chrono::microseconds timeout,
                                  Pause pause) {
        auto deadline = std::chrono::steady_clock::now() + timeout;
        auto next = std::chrono::microseconds(100);
        while (!maps_inode(event)) {
            if (std::chrono::steady_clock::now() >= deadline) {
                return false;
            }
            pause(next);
            next *= 2;
        }
        return true;
    }

  private:
    explicit LibraryWatcher(UniqueFD fanotify) : fanotify_(std::move(fanotify)) {}
    // The events of one read (their file descriptors closed); empty when
    // nothing is waiting.
    std::vector<LibraryEvent> next_events();
    static bool maps_inode(const LibraryEvent& event);

    UniqueFD fanotify_;
};

}  // namespace suture
