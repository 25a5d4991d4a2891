#include "daemon/LibraryWatcher.h"

#include <fcntl.h>
#include <sys/fanotify.h>
#include <unistd.h>

#include <algorithm>

namespace suture {

Result<LibraryWatcher> LibraryWatcher::open() {
    // Notification class: the closer never waits for us (no permission
    // events), so a stuck sutured cannot stall a process's dlopen.
    UniqueFD fanotify(::fanotify_init(FAN_CLASS_NOTIF | FAN_CLOEXEC | FAN_NONBLOCK,
                                      O_RDONLY | O_CLOEXEC | O_LARGEFILE));
    if (!fanotify.is_valid()) {
        return fail_errno("fanotify", errno);
    }
    return LibraryWatcher(std::move(fanotify));
}

Result<void> LibraryWatcher::watch(const std::string& path) {
    if (::fanotify_mark(fanotify_.get(), FAN_MARK_ADD, FAN_CLOSE_NOWRITE, AT_FDCWD,
                        path.c_str()) != 0) {
        return fail_errno(path + ": fanotify mark", errno);
    }
    return {};
}

std::vector<int> LibraryWatcher::next_events() {
    alignas(fanotify_event_metadata) char buffer[8192];
    ssize_t received = ::read(fanotify_.get(), buffer, sizeof buffer);
    std::vector<int> pids;
    if (received <= 0) {
        return pids;  // nothing waiting (EAGAIN) or an error: the caller polls again
    }
    auto* event = reinterpret_cast<fanotify_event_metadata*>(buffer);
    for (auto left = received; FAN_EVENT_OK(event, left); event = FAN_EVENT_NEXT(event, left)) {
        if (event->fd >= 0) {
            ::close(event->fd);  // the file, opened for us: not needed
        }
        // One PID once per read: by the time it is handled, every file it
        // closed is mapped. (An overflow loses events: the rescan is the net.)
        if (event->vers == FANOTIFY_METADATA_VERSION && (event->mask & FAN_Q_OVERFLOW) == 0 &&
            event->pid > 0 && std::find(pids.begin(), pids.end(), event->pid) == pids.end()) {
            pids.push_back(event->pid);
        }
    }
    return pids;
}

}  // namespace suture
