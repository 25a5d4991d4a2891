#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "base/Error.h"
#include "base/UniqueFD.h"
#include "engine/Engine.h"

namespace suture {

// Opens of the libssl and libcrypto files a patch is for, as fanotify
// permission events (FAN_OPEN_PERM on those files' inodes): the opening
// thread waits in open() until sutured answers, so a process that loads
// OpenSSL in any way (dlopen(), LD_PRELOAD, a library that links it) is
// caught before the loader has mapped it. Needs CAP_SYS_ADMIN.
//
// Threads: the answering thread only decides and answers, and never opens
// a watched file itself (it would wait for its own answer). A process that
// no other path claims (ProcessClaims) gets a catching thread of its own,
// which becomes the loading thread's tracer, holds it inside its loader
// (inject/LoadHold.h), and queues the LibraryLoad for the event loop: the
// engine patches it and lets it go there (fd() becomes readable). Every
// other open is allowed at once. If sutured dies, the kernel allows every
// open still waiting, and a held thread's wait ends by itself.
class LoadWatcher {
  public:
    // `in_scope(pid)` says whether a process may be caught at all (sutured's
    // --new-processes-under); it runs on the answering thread.
    using Scope = std::function<bool(int pid)>;
    static Result<std::unique_ptr<LoadWatcher>> open(ProcessClaims& claims, Scope in_scope);
    ~LoadWatcher();  // stops answering (the kernel allows what waits) and
                     // waits for the catches in flight
    LoadWatcher(const LoadWatcher&) = delete;
    LoadWatcher& operator=(const LoadWatcher&) = delete;

    // Watches opens of these files from now on (a file watched already is
    // harmless). Returns those that cannot be watched (each logged).
    std::vector<std::string> watch(const std::vector<std::string>& paths);

    // Readable while caught loads wait for the event loop.
    int fd() const { return ready_.get(); }
    std::vector<LibraryLoad> take_caught();

  private:
    LoadWatcher(ProcessClaims& claims, Scope in_scope, UniqueFD group, UniqueFD ready,
                UniqueFD stop)
        : claims_(claims),
          in_scope_(std::move(in_scope)),
          group_(std::move(group)),
          ready_(std::move(ready)),
          stop_(std::move(stop)) {}

    void answer_opens();  // the answering thread
    void on_open(int tid, int file);
    void catch_load(int pid, int tid, int file);  // a catching thread
    void allow(int file) const;
    void queue(LibraryLoad load);

    ProcessClaims& claims_;
    Scope in_scope_;
    UniqueFD group_;  // the fanotify group
    UniqueFD ready_;  // eventfd: caught loads wait
    UniqueFD stop_;   // eventfd: the answering thread ends
    std::thread answering_;
    std::mutex mutex_;
    std::vector<LibraryLoad> caught_;
    std::atomic<int> catching_{0};
};

}  // namespace suture
