// The engine: the one API of suture. The CLI (src/cli) and the daemon
// (src/daemon) call only this and the documents of engine/Documents.h;
// meson and scripts/check-layers make reaching past it a build error.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "base/Error.h"
#include "engine/Documents.h"
#include "engine/Feed.h"
#include "patch/PatchFile.h"

namespace suture {

class BuildIndex;
class Scanner;
class StateDatabase;
class NewProcessPatcher;

struct EngineOptions {
    // Directory holding <distribution>/builds.json; empty means the installed
    // copy, or the source tree's when running from a build directory.
    std::string distro_support_dir;
    // The state database; empty: $SUTURE_STATE_DB or /var/lib/suture/state.db.
    // Opened on first use (status and stacks never need it).
    std::string state_database;
    FeedOptions feed;  // empty fields get their defaults (resolve_feed_options)
};

struct UpdateOptions {
    bool refresh = true;        // false: offline, from the cache only (the boot case)
    bool log_idle_runs = true;  // false: no history entry for a run that did nothing
    InjectOptions inject;
};

// Progress of an update: (processes handled, processes to handle).
using UpdateProgress = std::function<void(std::size_t, std::size_t)>;

// An exclusion: kind "executable" (an absolute path) or "unit" (a systemd
// unit), and its value.
using Exclusion = std::pair<std::string, std::string>;

// Owns the build index, the scanner with its cache (a long-lived caller
// scans warm), the state database and the feed configuration, and offers
// every operation. Not copyable or movable: its parts refer to it.
class Engine {
  public:
    static Result<std::unique_ptr<Engine>> open(EngineOptions options);
    ~Engine();
    Engine(const Engine&) = delete;
    Engine& operator=(const Engine&) = delete;

    // Looking: no ptrace, nothing changes.
    // Scans every process, or only `pids` when not empty (a PID that does not
    // exist is reported as unreadable with reason not_found).
    StatusReport status(const std::vector<int>& pids = {});
    // Unwinds every thread of one process, stopped for the duration, as the
    // stack check would (`suture stacks`); changes nothing.
    Result<std::vector<ThreadStack>> stacks(int pid);

    // Patching one process (see apply_patch and revert_patches in
    // inject/Injector.h). Not recorded in the state database: `update`
    // adopts what it finds in memory.
    InjectResult<InjectReport> apply(int pid, const PatchFile& patch, const InjectOptions& options);
    // The same from a patch file's path; a file that does not parse is a
    // bad_format (or unsupported) failure.
    InjectResult<InjectReport> apply_file(int pid, const std::string& path,
                                          const InjectOptions& options);
    // Reverts `patch_id` (every suture patch if empty) in one process.
    InjectResult<std::vector<InjectReport>> revert(int pid, const std::string& patch_id,
                                                   const InjectOptions& options);

    // The automatic cycle (`suture update`, Engine::update in Update.cpp).
    Result<UpdateReport> update(const UpdateOptions& options, const UpdateProgress& progress = {});
    // The feed: refresh every enabled remote, or list the verified cache.
    Result<std::vector<RemoteRefresh>> refresh_feeds(const feed::Progress& progress = {});
    Result<std::vector<feed::CachedTarget>> list_feeds();

    // New processes (sutured): see NewProcesses.h.
    Result<void> reload_new_process_patches();
    std::optional<NewProcessOutcome> on_exec(int pid, const InjectOptions& options);
    const NewProcessStatistics& new_process_statistics() const;
    // Releases processes a previous sutured left parked; returns how many.
    std::size_t release_abandoned_parks();

    // State: the audit log, the global switch, exclusions.
    Result<std::vector<HistoryEntry>> history(std::size_t limit);
    Result<void> set_enabled(bool enabled);
    Result<bool> enabled();
    Result<void> set_exclusion(const Exclusion& exclusion, bool excluded);
    Result<std::vector<Exclusion>> exclusions();

    // For the engine's own parts (Update.cpp, NewProcesses.cpp).
    // The state database, opened on first use and opened again when its
    // file was replaced or removed meanwhile.
    Result<StateDatabase*> state();
    const FeedOptions& feed_options() const { return options_.feed; }

  private:
    Engine(EngineOptions options, std::unique_ptr<BuildIndex> index);
    void record_callbacks(int pid, const std::string& patch_id, std::uint32_t level,
                          const std::vector<CallbackOutcome>& outcomes);

    EngineOptions options_;  // defaults resolved
    std::unique_ptr<BuildIndex> index_;
    std::unique_ptr<Scanner> scanner_;  // keeps a reference to *index_
    std::unique_ptr<StateDatabase> state_;
    std::pair<std::uint64_t, std::uint64_t> state_file_{};  // device, inode
    std::unique_ptr<NewProcessPatcher> new_processes_;
};

}  // namespace suture
