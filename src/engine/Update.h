#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "base/Error.h"
#include "engine/Engine.h"
#include "engine/Feed.h"
#include "state/StateDatabase.h"

namespace suture {

struct UpdateOptions {
    FeedOptions feed;
    std::string state_database;  // default $SUTURE_STATE_DB or /var/lib/suture/state.db
    bool refresh = true;         // false: offline, from the cache only (the boot case)
    bool log_idle_runs = true;   // false: no history entry for a run that did nothing
    InjectOptions inject;
};

// What happened to one (process, patch) pair.
struct UpdateAction {
    ProcessIdentity process;
    std::string comm;
    std::string patch_id;
    std::uint32_t level = 0;
    // "applied", "already" (the marker shows it active), "adopted" (active in
    // memory but unknown to the database), "excluded", "failed"
    std::string outcome;
    std::string reason;  // error code name when failed
    std::string message;
};

struct UpdateReport {
    bool enabled = true;
    std::vector<RemoteRefresh> refreshes;  // empty when offline
    std::size_t patchsets = 0;             // usable patch files in the cache
    std::size_t processes_examined = 0;
    std::size_t processes_matching = 0;  // mapping a build some patchset is for
    std::size_t closed = 0;              // recorded applications whose process exited
    std::vector<std::string> problems;   // cached patch files that could not be read
    std::vector<UpdateAction> actions;
};

// A patch file from the feed cache (verified by the feed client), parsed.
struct UsablePatch {
    feed::CachedTarget cached;
    PatchFile patch;
};

// The usable patchsets among `cached` (list_feeds) by target build ID: per
// patch id only the highest level. Unreadable patch files are skipped and
// named in `problems`.
std::map<std::string, std::vector<UsablePatch>> load_usable_patches(
    const std::vector<feed::CachedTarget>& cached, std::vector<std::string>& problems);

// Applies `candidate` to the process `action` names, fills in the action's
// outcome (and reason), and records it in `database` (if any): the
// application when it succeeded, a history entry either way, with `origin`
// as its message on success.
void apply_and_record(Engine& engine, StateDatabase* database, const UsablePatch& candidate,
                      const InjectOptions& options, const std::string& executable,
                      const std::string& origin, UpdateAction& action);

// What suture must not touch: executables and systemd units from the state
// database's exclusions (`suture exclude`).
class Exclusions {
  public:
    static Exclusions load(StateDatabase& database);
    // Why `pid` is excluded, or nullopt.
    std::optional<std::string> reason(int pid) const;

  private:
    std::set<std::string> executables_;
    std::set<std::string> units_;
};

// The systemd unit a process runs in ("nginx.service"), from the last
// .service or .scope component of its cgroup path; empty if none.
std::string unit_of(int pid);

// Progress: (processes handled, processes to handle).
using UpdateProgress = std::function<void(std::size_t, std::size_t)>;

// The automatic cycle (`suture update`): refresh the feeds (failures are
// reported; the cache is used anyway), scan, match each process's mapped
// library build ID against the usable cached patchsets, apply the highest
// level of each patch id that is not already active (read from the in-target
// markers), record everything in the state database, and close out
// applications whose process (pid + start time) is gone. Idempotent: a
// second run finds everything active and does nothing. Never touches the
// calling process or excluded executables.
Result<UpdateReport> run_update(Engine& engine, const UpdateOptions& options,
                                const UpdateProgress& progress = {});

// The database path with the default applied.
std::string resolve_state_database(const std::string& path);

nlohmann::json update_to_json(const UpdateReport& report);

// `suture history`: the newest `limit` entries of the audit log.
Result<std::vector<HistoryEntry>> read_history(const std::string& state_database,
                                               std::size_t limit);
nlohmann::json history_to_json(const std::vector<HistoryEntry>& entries);

// `suture enable` / `suture disable`: the global switch `update` obeys.
Result<void> set_enabled(const std::string& state_database, bool enabled);
Result<bool> is_enabled(const std::string& state_database);

// `suture exclude`: add (or remove) an exclusion; kind "executable" or "unit".
Result<void> set_exclusion(const std::string& state_database, const std::string& kind,
                           const std::string& value, bool excluded);
Result<std::vector<std::pair<std::string, std::string>>> read_exclusions(
    const std::string& state_database);

}  // namespace suture
