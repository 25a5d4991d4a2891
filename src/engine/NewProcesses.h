// Internal to the engine: patching processes as they start (behind
// Engine::on_exec and Engine::on_library_opened).
#pragma once

#include <chrono>
#include <compare>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "base/Error.h"
#include "elf/LoaderSearch.h"
#include "engine/Candidates.h"
#include "engine/Engine.h"
#include "inject/EntryGate.h"
#include "proc/Process.h"

namespace suture {

// What decides the loader's closure of one exec, apart from the files
// inside it: the executable, the process's root and its ld.so.cache (each
// by device, inode and modification time: a replaced file is another key),
// and the environment's LD_LIBRARY_PATH and LD_PRELOAD (ignored, like the
// loader does, for a secure-execution program).
struct LoaderKey {
    std::uint64_t executable_device = 0, executable_inode = 0;
    std::int64_t executable_modified = 0;
    std::uint64_t root_device = 0, root_inode = 0;
    std::uint64_t cache_inode = 0;
    std::int64_t cache_modified = 0;
    std::string library_path, preload;
    bool secure = false;
    auto operator<=>(const LoaderKey&) const = default;
};

// The cached verdict for one LoaderKey.
struct ExecVerdict {
    bool needs_openssl = false;
    CaughtBy path = CaughtBy::direct;  // direct or transitive
};

// Patches processes as they start (sutured):
// - on an exec event, an executable whose load closure (elf/LoaderSearch.h,
//   cached per LoaderKey) holds libssl or libcrypto is parked at its entry
//   point (inject/EntryGate.h), the usable patchsets for the builds it
//   mapped are applied, and it is released into main(). On a cache miss it
//   is parked first and the closure computed while it waits, so even the
//   first run of an executable is patched before main(). A process already
//   past its loader, or with several threads, is patched while it runs;
// - on a library event (sutured's fanotify marks on the OpenSSL files the
//   closures and the process roots name), a process that mapped libssl or
//   libcrypto later (dlopen) is patched while it runs.
// Never touches sutured.
class NewProcessPatcher {
  public:
    explicit NewProcessPatcher(Engine& engine);
    ~NewProcessPatcher();  // releases the processes still parked
    NewProcessPatcher(const NewProcessPatcher&) = delete;
    NewProcessPatcher& operator=(const NewProcessPatcher&) = delete;

    // Reloads the usable patchsets from the feed cache and the global switch
    // (after an update or a settings change).
    Result<void> reload();

    // Handles one exec event: decides, and parks a candidate (only cheap
    // work: the loader is racing us); the slow part is finish_next_exec's.
    // Parking every new process before patching any keeps a burst of
    // execs (a master starting workers) from waiting behind one apply.
    void on_exec(int pid);
    std::size_t pending_execs() const { return pending_execs_.size(); }
    // Patches the oldest parked (or too late to park) candidate and lets it
    // run; `between` runs between two patch applications (sutured parks
    // the execs that arrived meanwhile). nullopt when it was gone or excluded.
    std::optional<NewProcessOutcome> finish_next_exec(const InjectOptions& options,
                                                      const std::function<void()>& between);

    // Handles one library event (`pid` opened an OpenSSL file and maps it
    // now; `seen` is when the event was read); nullopt when
    // there was nothing to do.
    std::optional<NewProcessOutcome> on_library_opened(int pid, const InjectOptions& options,
                                                       std::chrono::steady_clock::time_point seen);

    // Counts the processes the rescan patched (the safety net's share).
    void count_rescan(const std::vector<UpdateAction>& actions);

    // The OpenSSL library files found since the last call (as this process
    // can open them), for the daemon to watch; also looks in the root of
    // every running process when `all_roots`.
    std::vector<std::string> take_library_files(bool all_roots);
    void count_watched(std::size_t files) { statistics_.library_files_watched += files; }

    const NewProcessStatistics& statistics() const { return statistics_; }

  private:
    // A root not looked into yet; pid 0 is our own ("/").
    struct PendingRoot {
        int pid = 0;
        std::uint64_t device = 0, inode = 0;
    };

    Result<std::optional<ExecVerdict>> cached_verdict(int pid, LoaderKey& key);
    ExecVerdict compute_verdict(int pid, const LoaderKey& key);
    void note_root(const PendingRoot& pending);
    void note_library_file(const LoaderRoot& root, const std::string& path);
    bool excluded(int pid);
    std::vector<UpdateAction> apply_matching(const ProcessInfo& info, const InjectOptions& options,
                                             std::vector<std::string>& lost,
                                             const std::function<void()>& between = {});
    // The exec path handled this exec image of `pid` (start time, AT_RANDOM).
    void remember_handled(int pid, std::uint64_t start_time);
    bool handled_already(int pid, std::uint64_t start_time);

    Engine& engine_;
    std::map<std::string, std::vector<UsablePatch>> patches_;
    std::map<LoaderKey, ExecVerdict> verdicts_;
    std::set<std::pair<std::uint64_t, std::uint64_t>> roots_seen_;
    std::set<std::pair<std::uint64_t, std::uint64_t>> library_files_seen_;
    std::vector<std::string> library_files_new_;
    std::vector<PendingRoot> pending_roots_;
    // Parked (or too late to park) candidates, oldest first.
    struct PendingExec {
        std::optional<ParkedProcess> parked;
        ProcessInfo info;
        CaughtBy path = CaughtBy::direct;
    };
    std::deque<PendingExec> pending_execs_;
    // Processes the exec path just handled: their own loader's library
    // events follow and need nothing more (pid -> start time, AT_RANDOM).
    std::map<int, std::pair<std::uint64_t, std::uint64_t>> handled_at_exec_;
    NewProcessStatistics statistics_;
    bool enabled_ = true;
};

}  // namespace suture
