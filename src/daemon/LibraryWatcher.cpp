#include "daemon/LibraryWatcher.h"

#include <fcntl.h>
#include <sys/fanotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/Engine.h"

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
    if (::fanotify_mark(fanotify_.get(), FAN_MARK_ADD, FAN_OPEN, AT_FDCWD, path.c_str()) != 0) {
        return fail_errno(path + ": fanotify mark", errno);
    }
    return {};
}

std::vector<LibraryEvent> LibraryWatcher::next_events() {
    alignas(fanotify_event_metadata) char buffer[8192];
    ssize_t received = ::read(fanotify_.get(), buffer, sizeof buffer);
    std::vector<LibraryEvent> events;
    if (received <= 0) {
        return events;  // nothing waiting (EAGAIN) or an error: the caller polls again
    }
    auto* event = reinterpret_cast<fanotify_event_metadata*>(buffer);
    for (auto left = received; FAN_EVENT_OK(event, left); event = FAN_EVENT_NEXT(event, left)) {
        struct stat status {};
        bool known = event->fd >= 0 && ::fstat(event->fd, &status) == 0;
        if (event->fd >= 0) {
            ::close(event->fd);  // the file, opened for us: only its inode is needed
        }
        // (An overflow loses events: the rescan is the net.)
        if (event->vers == FANOTIFY_METADATA_VERSION && (event->mask & FAN_Q_OVERFLOW) == 0 &&
            event->pid > 0 && known) {
            events.push_back({event->pid, status.st_ino});
        }
    }
    return events;
}

bool LibraryWatcher::maps_inode(const LibraryEvent& event) {
    return Engine::process_maps_inode(event.pid, event.inode);
}

}  // namespace suture
