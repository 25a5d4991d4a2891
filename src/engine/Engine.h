// The engine: the one API of suture. The CLI (src/cli) and the daemon
// (src/daemon) call only this and the documents of engine/Documents.h;
// meson and scripts/check-layers make reaching past it a build error.
#pragma once

#include <unistd.h>

#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "base/Error.h"
#include "engine/CrashLock.h"
#include "engine/Documents.h"
#include "engine/Exports.h"
#include "engine/Feed.h"
#include "engine/Policy.h"
#include "inject/LoadHold.h"
#include "patch/PatchFile.h"
#include "state/StateDatabase.h"

namespace suture {

class BuildIndex;
class HostLock;
class Scanner;
class StateDatabase;
class NewProcessPatcher;
class Records;  // engine/Candidates.h
class ExitEvents;  // engine/HealthWatch.h
struct HealthChecks;
struct CheckState;

// A process caught loading libssl or libcrypto (sutured's library-open
// watcher, daemon/LoadWatcher.h).
struct LibraryLoad {
    int pid = 0;
    std::string library;           // the file's path, as fanotify names it
    std::optional<HeldLoad> held;  // empty: it could not be held (why_not_held)
    std::string why_not_held;
};

// The processes a new-process path (exec gating, or a caught library load)
// is handling now: each process is handled by one of them at a time, so the
// exec gate never parks a process whose loader a catch holds, and a catch
// never takes one the exec gate parks. Thread-safe.
class ProcessClaims {
  public:
    // false if another path has it.
    bool claim(int pid);
    void release(int pid);

  private:
    std::mutex mutex_;
    std::set<int> claimed_;
};
struct BlameGround;

struct EngineOptions {
    // Directory holding <distribution>/builds.json; empty means the installed
    // copy, or the source tree's when running from a build directory.
    std::string distro_support_dir;
    // The state database; empty: $SUTURE_STATE_DB or /var/lib/suture/state.db.
    // Opened on first use (status and stacks never need it).
    std::string state_database;
    FeedOptions feed;  // empty fields get their defaults (resolve_feed_options)
    // The operation lock (state/HostLock.h, docs/state.md); empty:
    // $SUTURE_LOCK_FILE or /run/suture/lock. Operations that change
    // processes or the database wait this long for another holder (0: they
    // fail at once with `locked`, as sutured's do: its event loop must not
    // block), calling `lock_waiting` with the holder's PID when they have to.
    std::string lock_file;
    std::chrono::seconds lock_wait{300};
    std::function<void(int)> lock_waiting;
};


struct UpdateOptions {
    bool refresh = true;        // false: offline, from the cache only (the boot case)
    bool log_idle_runs = true;  // false: no history entry for a run that did nothing
    // Changes nothing (no refresh, no apply, no record, no lock): the
    // report's actions say what would be done (would_apply, would_adopt)
    // and what is held back by which rule (held).
    bool dry_run = false;
    // The timer's and sutured's runs: the policy of suture.conf (auto_apply,
    // windows, rollout) applies on top of the selection.
    bool automatic = false;
    Selection selection;  // --cve, --exclude-cve, --min-severity
    InjectOptions inject;
    // How many processes are patched at once (one tracer thread each; the
    // state database is written by the update's own thread alone); 0: the
    // number of cores.
    unsigned parallel = 0;
};

// What `suture revert --cve ID… | --all` reverts: the patches that fix
// one of `cves` (a patch id equal to the CVE, or one whose signed custom
// metadata lists it in the feed cache), or with `all` every suture patch.
struct RevertScope {
    std::set<std::string> cves;
    bool all = false;
    std::set<std::string> patch_ids;  // these patch ids too (the health watch's)
};

// The crash lockfile as `suture crash-lock` and `suture status` show it.
struct CrashLockStatus {
    std::string path;
    CrashLock lock;
    bool holding = false;  // from another boot: automatic runs hold its patches back
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
    // The exposure of each process (engine/Exposure.h) is assessed from the
    // feed cache's verified advisory data (no network).
    StatusReport status(const std::vector<int>& pids = {});
    // The scan of one process alone (what it maps, with build IDs): no
    // patch list, no exposure, no feed read. What a new process's patches
    // are matched on.
    Result<ProcessReport> scan_process(int pid);
    // What the metrics export besides the scan (engine/Exports.h): the
    // history's counters and timestamps, from the state database.
    Result<MetricsFacts> metrics_facts();
    // Writes the status metrics in the Prometheus text format to `path`
    // for node_exporter's textfile collector: atomically (a temporary file
    // in the same directory, renamed), mode 0644, low cardinality (no
    // per-process series). Nothing is written, and no error, when the
    // directory does not exist.
    Result<void> write_metrics_textfile(const std::string& path);
    // Unwinds every thread of one process, stopped for the duration, as the
    // stack check would (`suture stacks`); changes nothing.
    Result<std::vector<ThreadStack>> stacks(int pid);

    // Patching one process (see apply_patch and revert_patches in
    // inject/Injector.h), under the operation lock. An apply gets a history
    // entry (ok or failed, with the caller's uid) but no application row
    // (`update` adopts what it finds in memory); a revert is recorded: the
    // process's active rows of each reverted patch become `reverted`, with a
    // history entry (a failed revert gets one too).
    // Either way the outcome of each patch callback that ran (or was
    // skipped) is a row of the callbacks table, written under the lock.
    // Records it could not write are named in `lost_records`.
    InjectResult<InjectReport> apply(int pid, const PatchFile& patch, const InjectOptions& options,
                                     std::vector<std::string>* lost_records = nullptr);
    // The same from a patch file's path; a file that does not parse is a
    // bad_format (or unsupported) failure.
    InjectResult<InjectReport> apply_file(int pid, const std::string& path,
                                          const InjectOptions& options,
                                          std::vector<std::string>* lost_records = nullptr);
    // Reverts `patch_id` (every suture patch if empty) in one process.
    InjectResult<std::vector<InjectReport>> revert(int pid, const std::string& patch_id,
                                                   const InjectOptions& options,
                                                   std::vector<std::string>* lost_records = nullptr);

    // The rollback plan in one command (`suture revert --cve ID… | --all`,
    // HostRevert.cpp): under the operation lock, every active suture patch
    // of every process of the host that `scope` names is reverted as
    // revert() does (its rows and history written); a process that fails
    // is an action `failed` with its reason, and the others go on.
    Result<HostRevertReport> revert_everywhere(const RevertScope& scope,
                                               const InjectOptions& options);

    // The crash lockfile (engine/CrashLock.h, docs/state.md): what it holds
    // (nullopt: none), whether it is from another boot (so it holds its
    // patches back in automatic runs); and its release, under the operation
    // lock, with a history entry.
    Result<std::optional<CrashLockStatus>> crash_lock();
    Result<void> release_crash_lock();
    // At a clean shutdown: the lock of the current boot removed (recorded),
    // true; false when there is none or it is an earlier boot's (kept).
    Result<bool> clear_crash_lock_at_shutdown();

    // The health watch (HealthWatch.cpp; docs/operator-guide.md, "Health
    // watch"). Every death by a crash signal (SIGSEGV, SIGBUS, SIGILL,
    // SIGABRT, SIGFPE) of a process whose last apply (as the state database
    // has it) was less than watch_seconds (suture.conf) before is blamed on
    // the patch ids of that apply: each is quarantined (never applied again by an update or to
    // a new process until released), reverted from every process of the
    // host, and recorded in the history. A crash of a process suture never
    // patched (or patched longer ago) is blamed on nothing.
    // open_health_watch subscribes to the kernel's exit events (root);
    // health_watch_fd is the socket to poll (-1 before); each readable
    // moment, handle_health_events reads what is waiting and acts. A crash
    // whose revert found the operation lock held is kept and tried again by
    // the next call (health_watch_pending says so).
    Result<void> open_health_watch();
    int health_watch_fd() const;
    std::vector<CrashOutcome> handle_health_events(const InjectOptions& options);
    bool health_watch_pending() const { return !pending_deaths_.empty(); }
    // Health checks (suture.conf health_check = NAME: COMMAND; HealthWatch.cpp):
    // run_health_baselines runs, before an apply to `pids`, each check that
    // watches one of them, to its end (a failure then is not blamed on the
    // apply; returned as problems). handle_health_checks never blocks: it
    // starts the checks due (every health_check_interval while a process
    // they watch is within watch_seconds of an apply) and judges those that
    // ended: a failure blames the last apply of each watched process if the
    // check was healthy before it (quarantine and revert as for a crash).
    // sutured calls it from a timer; watch_health does too.
    std::vector<std::string> run_health_baselines(const std::vector<int>& pids);
    // A systemd unit that entered `failed` (sutured watches systemd's units
    // over D-Bus): the last apply within watch_seconds of each process the
    // state database recorded in that unit is blamed (quarantine and
    // revert as for a crash), the records of its processes that are gone
    // closed. nullopt: nothing blamed; error `locked`: try again later.
    Result<std::optional<CrashOutcome>> handle_unit_failure(const std::string& unit,
                                                            const InjectOptions& options);
    std::vector<CrashOutcome> handle_health_checks(const InjectOptions& options);
    // The foreground form (`suture --direct update --watch`): handles events
    // as they come for `duration`, then returns what it did.
    std::vector<CrashOutcome> watch_health(std::chrono::seconds duration,
                                           const InjectOptions& options);
    // `suture quarantine list | release ID`; a release (under the operation
    // lock) is recorded in the history; false when ID was not quarantined.
    Result<std::vector<Quarantine>> quarantined();
    Result<bool> release_quarantine(const std::string& patch_id);

    // The audit report (`suture report`, Report.cpp): every patch applied
    // since `since` (Unix seconds), read from the state database alone.
    Result<AuditReport> audit_report(std::int64_t since);

    // The automatic cycle (`suture update`, Engine::update in Update.cpp).
    Result<UpdateReport> update(const UpdateOptions& options, const UpdateProgress& progress = {});
    // The feed: refresh every enabled remote, or list the verified cache.
    Result<std::vector<RemoteRefresh>> refresh_feeds(const feed::Progress& progress = {});
    Result<std::vector<feed::CachedTarget>> list_feeds();

    // New processes (sutured): see NewProcesses.h.
    Result<void> reload_new_process_patches();
    // `exec_time`: when the kernel ran the exec (CLOCK_MONOTONIC ns).
    std::optional<NewProcessOutcome> on_exec(int pid, std::uint64_t exec_time,
                                             const InjectOptions& options);
    // A process caught loading libssl/libcrypto (LoadHold.h; `held` empty
    // when it could not be held): patched and let go. Its claim is released.
    std::optional<NewProcessOutcome> on_library_load(const LibraryLoad& load,
                                                     const InjectOptions& options);
    // Processes one of the two paths handles (thread-safe: sutured's
    // library-open watcher claims from its own threads).
    ProcessClaims& new_process_claims();
    // The library files whose opens sutured should watch (the libssl and
    // libcrypto files, in every root seen, that a usable patch is for),
    // those not handed out yet; after a reload, all of them again.
    std::vector<std::string> take_libraries_to_watch();
    // After the watcher marked them: those it could not watch are not
    // known as watched; the others are watched from now on.
    void libraries_marked(const std::vector<std::string>& failed);
    // Notes the root of a process that just exec'ed (a container's): its
    // libraries are watched from now on.
    void note_process_root(int pid);
    // sutured's library-open watcher runs (NewProcesses.h): `mark` marks
    // the files take_libraries_to_watch() hands out (and reports them with
    // libraries_marked()).
    void set_library_loads_watched(std::function<void()> mark);
    const NewProcessStatistics& new_process_statistics() const;
    // The executable of PID as the host names it ("" when it is gone):
    // for sutured's --new-processes-under scope.
    std::string executable_of(int pid) const;
    // Releases processes a previous sutured left parked; returns how many.
    std::size_t release_abandoned_parks();

    // State: the audit log, the global switch, exclusions.
    Result<std::vector<HistoryEntry>> history(std::size_t limit);
    // Whose calls the history entries written from now on record (default:
    // this process's real uid). sutured names each D-Bus caller's uid for
    // the duration of its call (CallerScope below), and its own (0) again
    // for rescans and new processes.
    void set_caller_uid(std::uint32_t uid);
    std::uint32_t caller_uid() const { return caller_uid_; }
    Result<void> set_enabled(bool enabled);
    Result<bool> enabled();
    Result<void> set_exclusion(const Exclusion& exclusion, bool excluded);
    Result<std::vector<Exclusion>> exclusions();
    // `suture state rebuild`: the database rebuilt from the region markers
    // of every process (what status reads), the old file (and its -wal and
    // -shm) kept aside as <path>.damaged-<UTC time>, its settings and
    // exclusions salvaged when they still read.
    Result<StateRebuild> rebuild_state();

    // The operation lock, held while the returned handle lives; reentrant
    // within this engine (an update's applies take it again).
    Result<std::shared_ptr<HostLock>> hold_operation_lock();

    // For the engine's own parts (Update.cpp, NewProcesses.cpp).
    // apply, its callback outcomes written through the run's `records`
    // (the update's batch), so a batch that fails names them lost too.
    InjectResult<InjectReport> apply(int pid, const PatchFile& patch, const InjectOptions& options,
                                     Records& records);
    // Several patches to one process in one stop (apply_patches in
    // inject/Injector.h), under the operation lock: one outcome per patch,
    // in order, each as apply() gives it; their callback outcomes written
    // through `records`. For `update` and for new processes (exec gating).
    std::vector<InjectResult<InjectReport>> apply_many(int pid,
                                                       std::span<const PatchFile* const> patches,
                                                       const InjectOptions& options,
                                                       Records& records);
    // The second half of apply_many, for a caller that ran apply_patches()
    // itself (an update patching processes in parallel) and records from
    // one thread: each outcome as apply_many gives it, its callbacks
    // written through `records`.
    std::vector<InjectResult<InjectReport>> record_applied(int pid,
                                                           std::span<const PatchFile* const> patches,
                                                           std::vector<PatchApplication>& applied,
                                                           Records& records);
    // The state database, opened on first use and opened again when its
    // file was replaced or removed meanwhile.
    Result<StateDatabase*> state();
    const FeedOptions& feed_options() const { return options_.feed; }
    const std::string& state_database_path() const { return options_.state_database; }

  private:
    Engine(EngineOptions options, std::unique_ptr<BuildIndex> index);
    // A manual apply's history entry; returns the record it could not write.
    std::vector<std::string> record_manual_apply(const ProcessIdentity& process,
                                                 const PatchMetadata& metadata,
                                                 const InjectResult<InjectReport>& report);
    // Revert's rows and history; returns the records it could not write.
    std::vector<std::string> record_revert(const ProcessIdentity& process,
                                           const std::string& patch_id,
                                           const Result<std::vector<InjectReport>>& reports);
    // apply_patch with the lock already held; `outcomes` gets the callback
    // outcomes of the apply, whether it succeeded or not.
    InjectResult<InjectReport> apply_held(int pid, const PatchFile& patch,
                                          const InjectOptions& options,
                                          std::vector<CallbackOutcome>& outcomes);
    // Each callback outcome, one row of the callbacks table, written through
    // `records` (checked: a failed write is named in records.lost()).
    void record_callbacks(Records& records, int pid, const std::string& patch_id,
                          std::uint32_t level, const std::vector<CallbackOutcome>& outcomes);
    // The same through a Records of its own on state(); returns the lost.
    std::vector<std::string> record_callbacks_alone(int pid, const std::string& patch_id,
                                                    std::uint32_t level,
                                                    const std::vector<CallbackOutcome>& outcomes);

    EngineOptions options_;  // defaults resolved
    std::unique_ptr<BuildIndex> index_;
    std::unique_ptr<Scanner> scanner_;  // keeps a reference to *index_
    std::unique_ptr<StateDatabase> state_;
    std::pair<std::uint64_t, std::uint64_t> state_file_{};  // device, inode
    std::uint32_t caller_uid_ = static_cast<std::uint32_t>(::getuid());
    std::unique_ptr<NewProcessPatcher> new_processes_;
    std::weak_ptr<HostLock> lock_;  // the operation lock while some operation holds it
    std::unique_ptr<ExitEvents> exit_events_;  // the health watch's socket, once opened
    std::vector<std::pair<int, int>> pending_deaths_;  // (pid, signal) waiting for the lock
    // One crash (HealthWatch.cpp): nullopt when nothing is blamed; error
    // `locked` when the operation lock is held elsewhere (tried again).
    Result<std::optional<CrashOutcome>> handle_crash(int pid, int signal,
                                                     const InjectOptions& options);
    // The blamed applications' patch ids quarantined (what: what was seen),
    // reverted from every process, recorded through `records` (committed).
    void quarantine_and_revert(const std::vector<Application>& blamed, const std::string& what,
                               CrashOutcome& failure, Records& records,
                               const InjectOptions& options);
    // One health check's turn (handle_health_checks), and its failure judged.
    Result<std::optional<CrashOutcome>> step_health_check(const HealthCheck& check,
                                                          const Policy& policy, CheckState& check_state,
                                                          const InjectOptions& options);
    Result<std::optional<CrashOutcome>> blame_health_check(const HealthCheck& check,
                                                           CheckState& check_state,
                                                           const InjectOptions& options);
    // What the watch's judgements start from (HealthWatch.cpp), under the
    // operation lock.
    Result<BlameGround> blame_ground();
    std::unique_ptr<HealthChecks> health_checks_;  // the checks' state, once configured
};

// Names `uid` as the engine's caller while it lives, then the previous
// caller again: sutured wraps each mutating D-Bus call in one.
class CallerScope {
  public:
    CallerScope(Engine& engine, std::uint32_t uid)
        : engine_(engine), previous_(engine.caller_uid()) {
        engine_.set_caller_uid(uid);
    }
    ~CallerScope() { engine_.set_caller_uid(previous_); }
    CallerScope(const CallerScope&) = delete;
    CallerScope& operator=(const CallerScope&) = delete;

  private:
    Engine& engine_;
    std::uint32_t previous_;
};

}  // namespace suture
