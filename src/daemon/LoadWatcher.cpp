#include "daemon/LoadWatcher.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/fanotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <fstream>

#include "base/Log.h"

namespace suture {

namespace {

// The thread group (process) of thread `tid`; 0 when it is gone.
int process_of(int tid) {
    std::ifstream status("/proc/" + std::to_string(tid) + "/status");
    std::string line;
    while (std::getline(status, line)) {
        if (line.starts_with("Tgid:")) {
            return std::atoi(line.c_str() + 5);
        }
    }
    return 0;
}

// The path of an event's file descriptor, for the log.
std::string path_of(int file) {
    char buffer[4096];
    ssize_t length =
        ::readlink(("/proc/self/fd/" + std::to_string(file)).c_str(), buffer, sizeof buffer);
    return length > 0 ? std::string(buffer, static_cast<std::size_t>(length)) : std::string("?");
}

// Catching threads at a time (each lasts milliseconds, two seconds at most).
constexpr int most_catches = 64;

void signal_eventfd(const UniqueFD& fd) {
    std::uint64_t one = 1;
    [[maybe_unused]] ssize_t written = ::write(fd.get(), &one, sizeof one);
}

}  // namespace

Result<std::unique_ptr<LoadWatcher>> LoadWatcher::open(ProcessClaims& claims, Scope in_scope) {
    // FAN_REPORT_TID: the event names the thread that waits in open(), the
    // one to hold. FAN_CLASS_CONTENT: permission events.
    UniqueFD group(::fanotify_init(FAN_CLASS_CONTENT | FAN_CLOEXEC | FAN_NONBLOCK | FAN_REPORT_TID,
                                   O_RDONLY | O_CLOEXEC | O_LARGEFILE));
    if (!group.is_valid()) {
        return fail_errno("fanotify (library opens)", errno);
    }
    UniqueFD ready(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    UniqueFD stop(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!ready.is_valid() || !stop.is_valid()) {
        return fail_errno("eventfd", errno);
    }
    std::unique_ptr<LoadWatcher> watcher(new LoadWatcher(
        claims, std::move(in_scope), std::move(group), std::move(ready), std::move(stop)));
    watcher->answering_ = std::thread([raw = watcher.get()] { raw->answer_opens(); });
    return watcher;
}

LoadWatcher::~LoadWatcher() {
    signal_eventfd(stop_);
    if (answering_.joinable()) {
        answering_.join();
    }
    // A catch ends within its bounds (LoadHold.cpp: two seconds of steps).
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (catching_.load() > 0 && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
}

std::vector<std::string> LoadWatcher::watch(const std::vector<std::string>& paths) {
    std::vector<std::string> failed;
    for (const std::string& path : paths) {
        if (::fanotify_mark(group_.get(), FAN_MARK_ADD, FAN_OPEN_PERM, AT_FDCWD, path.c_str()) !=
            0) {
            log::warning("sutured: cannot watch opens of " + path + ": " + std::strerror(errno));
            failed.push_back(path);
            continue;
        }
        log::debug("sutured: watching opens of " + path);
    }
    return failed;
}

std::vector<LibraryLoad> LoadWatcher::take_caught() {
    std::uint64_t count = 0;
    [[maybe_unused]] ssize_t read = ::read(ready_.get(), &count, sizeof count);
    std::lock_guard lock(mutex_);
    return std::exchange(caught_, {});
}

void LoadWatcher::answer_opens() {
    alignas(fanotify_event_metadata) char buffer[8192];
    for (;;) {
        pollfd waiting[2] = {{group_.get(), POLLIN, 0}, {stop_.get(), POLLIN, 0}};
        if (::poll(waiting, 2, -1) < 0 && errno != EINTR) {
            log::error(std::string("sutured: library opens: poll: ") + std::strerror(errno));
            return;
        }
        if (waiting[1].revents != 0) {
            return;
        }
        ssize_t length = ::read(group_.get(), buffer, sizeof buffer);
        if (length <= 0) {
            continue;  // EAGAIN, EINTR
        }
        auto* event = reinterpret_cast<fanotify_event_metadata*>(buffer);
        for (; FAN_EVENT_OK(event, length); event = FAN_EVENT_NEXT(event, length)) {
            if (event->fd < 0) {
                continue;  // queue overflow: nothing to answer
            }
            if ((event->mask & FAN_OPEN_PERM) != 0) {
                on_open(event->pid, event->fd);
            } else {
                ::close(event->fd);
            }
        }
    }
}

// Decides at once: sutured's own opens, processes out of scope and those
// another path has are allowed; any other gets a catching thread (which
// answers).
void LoadWatcher::on_open(int tid, int file) {
    int pid = process_of(tid);
    if (pid <= 0 || pid == ::getpid() || !in_scope_(pid) || !claims_.claim(pid)) {
        allow(file);
        ::close(file);
        return;
    }
    if (catching_.load() >= most_catches) {
        // A storm of loads: the rest go on at once, for the rescan.
        claims_.release(pid);
        allow(file);
        ::close(file);
        return;
    }
    ++catching_;
    std::thread([this, pid, tid, file] { catch_load(pid, tid, file); }).detach();
}

void LoadWatcher::catch_load(int pid, int tid, int file) {
    LibraryLoad load{.pid = pid, .library = path_of(file)};
    struct stat status {};
    if (::fstat(file, &status) != 0) {
        allow(file);
        load.why_not_held = std::string("fstat: ") + std::strerror(errno);
    } else {
        auto held = hold_load(pid, tid, status.st_dev, status.st_ino, [&] { allow(file); });
        if (held && *held) {
            load.held = **held;
        } else {
            load.why_not_held = held ? "its thread went on without the loader relocating it (not a load, or past the step limit)" : held.error().message;
        }
    }
    ::close(file);
    queue(std::move(load));
    --catching_;
}

void LoadWatcher::allow(int file) const {
    fanotify_response response{.fd = file, .response = FAN_ALLOW};
    if (::write(group_.get(), &response, sizeof response) != sizeof response) {
        log::error(std::string("sutured: library opens: answer: ") + std::strerror(errno));
    }
}

void LoadWatcher::queue(LibraryLoad load) {
    {
        std::lock_guard lock(mutex_);
        caught_.push_back(std::move(load));
    }
    signal_eventfd(ready_);
}

}  // namespace suture
