#include "state/HostLock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <thread>

namespace suture {

namespace {

constexpr const char* default_lock_file = "/run/suture/lock";

// Opens (creating it, mode 0600, and its directory, mode 0755) the lock
// file. Only root can open the default one: a user who could flock it
// could keep every update from running.
Result<UniqueFD> open_lock_file(const std::string& path) {
    std::error_code ignored;
    std::filesystem::path directory = std::filesystem::path(path).parent_path();
    if (!directory.empty() && !std::filesystem::exists(directory, ignored)) {
        std::filesystem::create_directories(directory, ignored);
        ::chmod(directory.c_str(), 0755);
    }
    UniqueFD fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
    if (!fd.is_valid()) {
        return fail_errno("operation lock " + path, errno);
    }
    return fd;
}

// The PID the holder wrote, 0 if none could be read.
int holder_of(int fd) {
    char text[32] = {};
    ssize_t length = ::pread(fd, text, sizeof text - 1, 0);
    return length > 0 ? std::atoi(text) : 0;
}

void write_holder(int fd) {
    std::string pid = std::to_string(::getpid()) + "\n";
    if (::ftruncate(fd, 0) == 0) {
        (void)!::pwrite(fd, pid.data(), pid.size(), 0);  // only for messages
    }
}

Error locked_by(int holder, const std::string& path) {
    return Error{ErrorCode::locked,
                 "another suture operation is running (" +
                     (holder > 0 ? "pid " + std::to_string(holder) : std::string("pid unknown")) +
                     ", lock " + path + "); try again when it is done, or pass --wait SECONDS",
                 0};
}

}  // namespace

std::string HostLock::resolve_path(const std::string& path) {
    if (!path.empty()) {
        return path;
    }
    const char* environment = std::getenv("SUTURE_LOCK_FILE");
    return environment != nullptr && *environment != '\0' ? environment : default_lock_file;
}

Result<HostLock> HostLock::acquire(const std::string& path, std::chrono::seconds wait,
                                   const std::function<void(int)>& waiting) {
    // 1. The file.
    auto fd = open_lock_file(path);
    if (!fd) {
        return tl::unexpected(fd.error());
    }
    // 2. The lock, polled until the deadline (flock has no timeout of its
    // own, and a signal-based one would disturb the caller's handlers).
    auto deadline = std::chrono::steady_clock::now() + wait;
    bool told = false;
    while (::flock(fd->get(), LOCK_EX | LOCK_NB) != 0) {
        if (errno == EINTR) {
            continue;
        }
        if (errno != EWOULDBLOCK) {
            return fail_errno("operation lock " + path + ": flock", errno);
        }
        if (std::chrono::steady_clock::now() >= deadline) {
            return tl::unexpected(locked_by(holder_of(fd->get()), path));
        }
        if (!told && waiting) {
            waiting(holder_of(fd->get()));
        }
        told = true;
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    // 3. Ours: say who holds it.
    write_holder(fd->get());
    return HostLock(std::move(*fd));
}

HostLock::~HostLock() {
    // Closing the descriptor releases the lock; the PID stays in the file
    // until the next holder writes its own (it is only read while locked).
    if (fd_.is_valid()) {
        (void)::flock(fd_.get(), LOCK_UN);
    }
}

}  // namespace suture
