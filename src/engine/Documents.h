// The engine's typed reports and their JSON documents (docs/formats.md,
// docs/feed-format.md, docs/state.md), both directions, in one place: the
// CLI prints what the engine returns and what sutured sends back as the
// same types, so a renamed field fails to compile instead of printing 0.
#pragma once

#include <cstdint>
#include <ctime>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "base/Error.h"
#include "engine/Exposure.h"
#include "engine/Feed.h"
#include "inject/Injector.h"
#include "scan/Scanner.h"
#include "state/StateDatabase.h"

namespace suture {

struct UpdateOptions;  // engine/Engine.h

// What `status` reports: the scan, plus the suture patches found in each
// reported process through their region markers (no ptrace).
struct StatusReport {
    ScanReport scan;
    std::map<int, std::vector<AppliedPatch>> patches;  // by pid; absent: none
    std::map<int, std::vector<GatePage>> gate_pages;   // by pid; absent: none
    std::map<int, ShadowRegion> shadow_regions;        // by pid; absent: none
    // Which CVEs each process is open to (engine/Exposure.h), from the
    // feed's advisory data.
    Exposure exposure;
    std::time_t feed_expires = 0;  // earliest expiry of the feeds' timestamps; 0: unknown
};

// A failed apply or revert: the error, and on `unsafe` the threads that
// blocked the last try.
struct InjectFailure {
    Error error;
    std::vector<BlockingThread> blocking;
    std::vector<CallbackOutcome> callbacks;  // the patch's callbacks that ran or were refused
};
template <typename T>
using InjectResult = tl::expected<T, InjectFailure>;

// What happened to one (process, patch) pair in an update or to a new
// process.
enum class ActionOutcome {
    applied,   // patched now
    already,   // the marker shows it active, and the database knows it
    adopted,   // active in memory but unknown to the database: recorded now
    excluded,  // suture itself, or an excluded executable or unit
    failed,    // the apply failed; `reason` and `message` say why
    held,      // held back by a rule: --cve/--exclude-cve/--min-severity, or for
               // automatic runs auto_apply, the rollout wave, the window
               // (`reason` names the rule, `message` says how)
    would_apply,  // --dry-run: would be applied
    would_adopt,  // --dry-run: would be adopted
    reverted,     // suture revert --cve/--all: reverted from the process
};
std::string_view outcome_name(ActionOutcome outcome);
std::optional<ActionOutcome> outcome_from_name(std::string_view name);

struct UpdateAction {
    ProcessIdentity process;
    std::string comm;
    std::string patch_id;
    std::uint32_t level = 0;
    ActionOutcome outcome = ActionOutcome::failed;
    std::string reason;  // error code name when failed; the rule when held
    std::string message;
    std::string severity;  // the patch's ("" unknown): signed custom metadata, else advisories
    std::string remote;    // the feed it came from
    // With canaries (suture.conf canary_seconds): "canary" for a process
    // patched first and watched, "after_canary" for one patched once the
    // canaries survived; "" without canaries. A dry run says the same.
    std::string phase;
    // Applied: how long the process's threads were stopped for it (the one
    // stop that applied all of the process's patches of this update).
    std::optional<std::int64_t> stopped_us;
};

struct CrashOutcome;  // below: what the health watch did about one crash

struct UpdateReport {
    bool enabled = true;
    bool dry_run = false;    // nothing was changed: the actions say what would be
    bool automatic = false;  // the policy (suture.conf) applied
    // The policy's view of the run (docs/operator-guide.md, "Policy").
    std::int64_t policy_time = 0;   // Unix seconds the rules used
    std::string window;             // "inside", "outside", or "none" (no window configured)
    std::optional<double> rollout_bucket;  // the host's bucket; nullopt without a machine id
    std::vector<RemoteRefresh> refreshes;  // empty when offline
    std::size_t patchsets = 0;             // usable patch files in the cache
    std::size_t processes_examined = 0;
    std::size_t processes_matching = 0;  // mapping a build some patchset is for
    std::size_t closed = 0;              // recorded applications whose process exited
    std::size_t released_regions = 0;    // retired regions unmapped (docs/architecture.md)
    std::size_t removed_empty_regions = 0;  // empty regions of killed applies unmapped
    std::vector<std::string> problems;   // cached patch files that could not be read
    std::vector<UpdateAction> actions;
    // Records the state database failed to write (a full disk, an I/O
    // error), each "what: why": the run did them, the database lacks them.
    std::vector<std::string> lost_records;
    // Canaries (suture.conf canary_seconds): how many processes were
    // patched first and watched, and what the watch saw of them.
    std::size_t canaries = 0;
    std::vector<CrashOutcome> crashes;
};

// What `suture revert --cve ID… | --all` did: one action per (process,
// patch) it reverted (`reverted`) or failed to (`failed`, with the reason).
struct HostRevertReport {
    std::vector<UpdateAction> actions;
    std::vector<std::string> lost_records;  // as in UpdateReport
};

// What the health watch did about one failure (HealthWatch.cpp): a crash,
// a failed health check or a failed unit, the patch ids of the last apply
// within watch_seconds of the processes it concerns (each quarantined),
// and their reverts from every process.
struct CrashOutcome {
    ProcessIdentity process;  // the process that died (health_check, unit_failed: the first blamed)
    std::string comm;
    std::string executable;
    int signal = 0;           // 0 unless a crash
    // What was seen: "crash" (a death by a crash signal), "health_check"
    // (suture.conf health_check failed), "unit_failed" (its systemd unit
    // entered `failed`); `detail` says how (the check's name and result,
    // the unit's name and result).
    std::string cause = "crash";
    std::string detail;
    std::int64_t at = 0;                  // Unix seconds of the crash as seen
    std::vector<Quarantine> quarantined;  // the patches blamed
    HostRevertReport reverted;            // their reverts everywhere
    std::int64_t revert_ms = 0;           // from reading the event to the last revert
};

// The audit report (`suture report`, Engine::audit_report in Report.cpp):
// per patch (id and level), each application with who made it and how it
// ended, the feed it came from, and what the health watch saw.
struct AuditApplication {
    Application application;  // where and when: process, executable, build, level
    std::string how;          // applied | adopted ("" : no history entry of it)
    std::optional<std::uint32_t> caller_uid;  // whose call (the apply's history entry)
    bool automatic = false;   // by an automatic run (the timer, the boot unit, sutured)
    std::string source;       // the apply entry's message: "from REMOTE[ (automatic)]"
    // The feed's targets metadata the apply came from (its version and the
    // ids of the keys that signed it), as the apply entry recorded it
    // (schema 7); unset and empty when not from a feed or not recorded.
    std::optional<std::uint64_t> targets_version;
    std::vector<std::string> signing_keys;
    std::int64_t ended_at = 0;  // 0: still active
    std::string ended_by;       // revert | exit | crash
    std::string ended_message;
    std::optional<std::uint32_t> ended_by_uid;
};
struct AuditPatch {
    std::string patch_id;
    std::uint32_t level = 0;
    std::optional<CachedPatchset> feed;  // as the last update saw the feed cache
    std::vector<AuditApplication> applications;
    std::vector<HistoryEntry> events;  // reverts, crashes, quarantines, releases
    std::optional<Quarantine> quarantine;  // quarantined now
};
struct AuditReport {
    std::int64_t since = 0;
    std::int64_t generated_at = 0;
    std::vector<AuditPatch> patches;
    std::vector<HistoryEntry> runs;  // updates, refreshes, settings
};

// What `suture state rebuild` did (Engine::rebuild_state).
struct StateRebuild {
    std::string database;
    std::string kept_as;  // where the old file went; empty if there was none
    std::vector<Application> applications;  // recorded from the markers
    std::size_t settings_kept = 0;          // salvaged from the old file
    std::size_t exclusions_kept = 0;
};

// What happened to one new process (sutured, on an exec event).
struct NewProcessOutcome {
    int pid = 0;
    bool parked = false;  // held before main(): at its entry point, or in its loader at start
    bool held = false;    // held inside its loader before its first call (a load)
    // How OpenSSL got in: "direct", "transitive" (at exec) or "dlopen"
    // (a library load caught later: dlopen(), LD_PRELOAD, a missed start).
    std::string path;
    std::vector<UpdateAction> actions;
    std::vector<std::string> lost_records;  // as in UpdateReport
};

// Counters since the daemon started.
struct NewProcessStatistics {
    std::uint64_t execs = 0;       // exec events seen
    std::uint64_t candidates = 0;  // executables that need libssl/libcrypto
    std::uint64_t direct = 0;      // candidates: by their own DT_NEEDED or a preload
    std::uint64_t transitive = 0;  // candidates: through a library they load (libcurl)
    std::uint64_t parked = 0;      // held at their entry point in time
    std::uint64_t patched_before_main = 0;
    std::uint64_t patched_late = 0;  // too late to park: patched while running
    // Starts whose OpenSSL files are watched: left to the load watcher (their
    // loader waits at the open), not parked.
    std::uint64_t left_to_load_watch = 0;
    std::uint64_t loads_caught = 0;  // opens of libssl/libcrypto handed to sutured
    std::uint64_t loads_held = 0;    // of those, held inside the loader in time
    std::uint64_t patched_before_first_call = 0;
    std::uint64_t loads_patched_late = 0;  // a load not held, patched right after it
};

// Name of an ErrorCode as it appears in JSON ("permission_denied"), and the
// inverse (nullopt if unknown).
std::string error_code_name(ErrorCode code);
std::optional<ErrorCode> error_code_from_name(const std::string& name);

// "3.0.20" out of "OpenSSL 3.0.20 16 Jan 2026" (or "1.1.1w" out of
// "OpenSSL 1.1.1w  11 Sep 2023"); nullopt when the text has no version.
std::optional<std::string> openssl_version_number(const std::string& version_text);

// "2026-12-01T10:05:17Z" (the feed's and the history's time format).
std::string format_utc_time(std::int64_t unix_seconds);

// To JSON. Every document of a failure has the same shape:
// {"ok": false, "error": {"reason", "message", "blocking_threads"}}.
nlohmann::json status_to_json(const StatusReport& report);
nlohmann::json inject_report_to_json(int pid, const InjectReport& report);
nlohmann::json reverted_to_json(int pid, const std::vector<InjectReport>& reports,
                                const std::vector<std::string>& lost_records = {});
nlohmann::json failure_to_json(const InjectFailure& failure);
nlohmann::json error_to_json(const Error& error);
nlohmann::json thread_stacks_to_json(int pid, const std::vector<ThreadStack>& stacks);
nlohmann::json update_to_json(const UpdateReport& report);
// The options of one update as sutured's UpdateWith method takes them
// (docs/formats.md, "Update options"); inject options are the daemon's.
nlohmann::json update_options_to_json(const UpdateOptions& options);
Result<UpdateOptions> update_options_from_json(const nlohmann::json& document);
nlohmann::json host_revert_to_json(const HostRevertReport& report);
// The crash lockfile (`suture crash-lock --json`, status's "crash_lock").
struct CrashLockStatus;  // engine/Engine.h
nlohmann::json crash_lock_to_json(const CrashLockStatus& status);
Result<HostRevertReport> host_revert_from_json(const nlohmann::json& document);
nlohmann::json state_rebuild_to_json(const StateRebuild& rebuild);
nlohmann::json quarantine_to_json(const std::vector<Quarantine>& quarantined);
nlohmann::json audit_report_to_json(const AuditReport& report);
nlohmann::json crash_outcomes_to_json(const std::vector<CrashOutcome>& outcomes);
nlohmann::json history_to_json(const std::vector<HistoryEntry>& entries);
nlohmann::json refresh_to_json(const std::vector<RemoteRefresh>& refreshes);
nlohmann::json cached_targets_to_json(const std::vector<feed::CachedTarget>& targets);

// From JSON: the documents sutured sends back, read strictly. A missing
// field or a wrong type is a bad_format error naming the field; a failure
// document becomes the failure it describes.
InjectResult<InjectReport> inject_report_from_json(const nlohmann::json& document);
InjectResult<std::vector<InjectReport>> reverted_from_json(
    const nlohmann::json& document, std::vector<std::string>* lost_records = nullptr);
Result<UpdateReport> update_from_json(const nlohmann::json& document);
Result<std::vector<HistoryEntry>> history_from_json(const nlohmann::json& document);
Result<std::vector<Quarantine>> quarantine_from_json(const nlohmann::json& document);
Result<CrashOutcome> crash_outcome_from_json(const nlohmann::json& document);
// The failure a document describes, or nullopt when it is not one.
std::optional<InjectFailure> failure_from_json(const nlohmann::json& document);

}  // namespace suture
