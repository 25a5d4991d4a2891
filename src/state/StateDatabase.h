#pragma once

#include <sqlite3.h>
#include <unistd.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/Error.h"
#include "state/Transaction.h"

namespace suture {

// A process as the state database knows it: the PID together with the
// process's start time (from /proc/PID/stat), so a reused PID is never
// mistaken for the process that was patched.
struct ProcessIdentity {
    int pid = 0;
    std::uint64_t start_time = 0;  // clock ticks since boot
    bool operator==(const ProcessIdentity&) const = default;
};

// What the database stores as text, as enums, each with one table of names
// (StateDatabase.cpp) used both ways.
enum class ApplicationState { active, reverted, exited };
enum class HistoryAction { apply, revert, adopt, close, refresh, update, settings, rebuild,
                           quarantine, release,
                           unknown };  // unknown: a name a newer suture wrote
enum class HistoryOutcome { ok, failed, skipped, unknown };
std::string_view name_of(ApplicationState state);
std::string_view name_of(HistoryAction action);
std::string_view name_of(HistoryOutcome outcome);
std::optional<ApplicationState> application_state_named(std::string_view name);
HistoryAction history_action_named(std::string_view name);    // unknown if not a name
HistoryOutcome history_outcome_named(std::string_view name);  // unknown if not a name

// One patch applied to one process, as recorded.
struct Application {
    std::int64_t id = 0;
    ProcessIdentity process;
    std::string executable;
    std::string build_id;
    std::string patch_id;
    std::uint32_t level = 0;
    std::int64_t applied_at = 0;  // Unix seconds
    ApplicationState state = ApplicationState::active;
    // The process's systemd unit when it was recorded (schema 7; "" when it
    // runs in none, and in rows written before schema 7).
    std::string unit;
};

// One line of the audit log: every action with its outcome and reason.
struct HistoryEntry {
    std::int64_t id = 0;
    std::int64_t at = 0;  // Unix seconds
    HistoryAction action = HistoryAction::unknown;
    ProcessIdentity process;
    std::string patch_id;
    std::uint32_t level = 0;
    HistoryOutcome outcome = HistoryOutcome::unknown;
    std::string reason;   // error code name, or why skipped
    std::string message;
    // Whose call it was (schema 5): the uid of the CLI user, or of the D-Bus
    // caller sutured served. Unset when writing: the database's caller
    // (set_caller_uid); unset when read: a row written before schema 5.
    std::optional<std::uint32_t> caller_uid;
    // The feed an apply or adopt entry's patch came from (schema 7), as the
    // feed client verified it for that run: the version of the remote's
    // targets metadata, and the ids of the targets keys whose signatures
    // verified it (sorted; stored comma-separated). Unset and empty when the
    // patch did not come from a feed, and in rows written before schema 7.
    std::optional<std::uint64_t> targets_version;
    std::vector<std::string> signing_keys;
};

// The outcome of one patch callback (inject/Callbacks.h), as recorded.
struct CallbackRecord {
    std::int64_t at = 0;  // Unix seconds
    ProcessIdentity process;
    std::string patch_id;
    std::uint32_t level = 0;  // 0: a revert that failed before it knew the level
    std::string callback;     // pre_apply, post_apply, pre_revert, post_revert
    std::string outcome;      // ran, failed, skipped, refused-busy, timeout
    int code = 0;
    std::int64_t duration_ns = 0;
    std::string message;
};

// A patch id the health watch quarantined (schema 6): the process whose
// crash it was blamed for. Updates and new processes never apply the id
// again (any level) until `suture quarantine release ID` removes the row.
struct Quarantine {
    std::string patch_id;
    std::uint32_t level = 0;   // the level applied in the crashed process
    std::int64_t at = 0;       // Unix seconds
    std::string reason;        // "crash"
    std::string message;       // for the operator
    ProcessIdentity process;   // the crashed process
    std::string comm;
    int signal = 0;            // the signal it died of
};

// A verified patchset of the feed cache, as the last update saw it.
struct CachedPatchset {
    std::string remote;
    std::string name;
    std::string patch_id;
    std::uint32_t level = 0;
    std::string build_id;
    std::string sha256;
    std::string cves;  // comma-separated
    bool usable = false;
};

// suture's state (docs/state.md): intent and history in SQLite. The
// in-target markers are the truth about memory; this is the truth about
// what suture meant to do and did.
//
// The file is created with mode 0600, used in WAL mode with synchronous=FULL
// (a `kill -9` at any point leaves either the old or the new state), and its
// schema is migrated step by step on open (schema versions are listed in
// StateDatabase.cpp; old databases are kept as test fixtures).
class StateDatabase {
  public:
    static Result<StateDatabase> open(const std::string& path);

    StateDatabase(StateDatabase&&) noexcept = default;
    StateDatabase& operator=(StateDatabase&&) noexcept;

    static constexpr int latest_schema_version = 7;
    Result<int> schema_version();

    // Applications.
    Result<std::int64_t> record_application(const Application& application);
    Result<std::vector<Application>> applications(
        ApplicationState state = ApplicationState::active);
    Result<void> set_application_state(std::int64_t id, ApplicationState state);
    // Whether an active application of (process, patch id, level) is recorded.
    Result<bool> has_active_application(const ProcessIdentity& process,
                                        const std::string& patch_id, std::uint32_t level);
    // Marks the active applications of `patch_id` in `process` (every level)
    // reverted; returns how many rows it changed.
    Result<std::size_t> mark_reverted(const ProcessIdentity& process, const std::string& patch_id);

    // Callback outcomes (schema 4).
    Result<void> record_callback(const CallbackRecord& record);
    Result<std::vector<CallbackRecord>> callback_records();

    // Quarantine (schema 6): one row per patch id; recording an id already
    // there replaces its row (the latest crash).
    Result<void> record_quarantine(const Quarantine& quarantine);
    Result<std::vector<Quarantine>> quarantined();
    // Removes the row of `patch_id`; false when there was none.
    Result<bool> release_quarantine(const std::string& patch_id);

    // History.
    // The uid every history entry written from now on names as its caller
    // unless the entry names one itself (default: this process's real uid).
    // sutured sets it to each D-Bus caller's for the duration of the call.
    void set_caller_uid(std::uint32_t uid) { caller_uid_ = uid; }
    Result<void> log(const HistoryEntry& entry);
    Result<std::vector<HistoryEntry>> history(std::size_t limit = 100);
    // The whole history counted per (action, outcome), with the time of the
    // latest entry of each: what the metrics export (counters, timestamps).
    struct HistoryTotal {
        HistoryAction action = HistoryAction::unknown;
        HistoryOutcome outcome = HistoryOutcome::unknown;
        std::int64_t count = 0;
        std::int64_t last_at = 0;  // Unix seconds
    };
    Result<std::vector<HistoryTotal>> history_totals();

    // Groups the writes in between into one transaction: one fsync instead
    // of one per record. `suture update` writes a fleet's records in batches;
    // a crash loses at most one batch of records, and the next update finds
    // those patches in memory and adopts them.
    // A batch that fails to commit is rolled back (commit_batch() returns
    // the error), and so is one still open when the database is destroyed.
    Result<void> begin_batch();
    Result<void> commit_batch();
    // Whether a batch is still open: SQLite rolls one back by itself after a
    // full disk or an I/O error, and the writes before it are then lost.
    bool in_batch() const;

    // After a reboot: process identities (pid, start time in clock ticks
    // since boot) from an earlier boot can repeat exactly in this one (a
    // deterministic boot starts nginx with the same pid at the same tick),
    // so a record of the last boot must never be taken for a process of
    // this one. When the "boot_id" setting differs from `boot_id` (the
    // kernel's /proc/sys/kernel/random/boot_id), every active application
    // becomes exited, each with a history entry saying so, and the setting
    // takes `boot_id`; without the setting (a database from before it was
    // kept) only the setting is written. One immediate transaction, so a
    // concurrent writer's records of this boot are never closed. Returns
    // how many applications it closed.
    Result<std::size_t> close_applications_of_earlier_boot(const std::string& boot_id);

    // Settings: "enabled", "channel", … (key/value text).
    Result<std::optional<std::string>> setting(const std::string& key);
    Result<void> set_setting(const std::string& key, const std::string& value);

    // The feed cache's verified patchsets: replaced as a whole.
    Result<void> record_patchsets(const std::vector<CachedPatchset>& patchsets);
    Result<std::vector<CachedPatchset>> patchsets();

    // Exclusions: executable paths or systemd units suture must not touch.
    Result<void> add_exclusion(const std::string& kind, const std::string& value);
    Result<void> remove_exclusion(const std::string& kind, const std::string& value);
    Result<std::vector<std::pair<std::string, std::string>>> exclusions();

    // What can be read from a database that will not open (a damaged one,
    // for `suture state rebuild`): its settings and exclusions, through a
    // read-only connection; whatever fails to read is left out.
    struct Salvage {
        std::vector<std::pair<std::string, std::string>> settings;
        std::vector<std::pair<std::string, std::string>> exclusions;
    };
    static Salvage salvage(const std::string& path);

  private:
    struct Close {
        void operator()(sqlite3* db) const { sqlite3_close_v2(db); }
    };
    explicit StateDatabase(sqlite3* db, std::string path) : db_(db), path_(std::move(path)) {}
    Result<void> execute(const std::string& sql);
    Result<void> migrate();
    Result<void> migrate_to(int version);

    std::unique_ptr<sqlite3, Close> db_;
    std::string path_;
    std::uint32_t caller_uid_ = static_cast<std::uint32_t>(::getuid());
    // The transaction begin_batch() opened, if any; declared after db_ so it
    // is rolled back before the connection closes.
    std::optional<Transaction> batch_;
};

}  // namespace suture
