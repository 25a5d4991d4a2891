// `suture state rebuild` (Engine::rebuild_state): the state database made
// again from the in-target region markers, the truth about memory.

#include <cstdio>
#include <ctime>
#include <filesystem>

#include "engine/Engine.h"
#include "proc/Process.h"
#include "state/HostLock.h"
#include "state/StateDatabase.h"

namespace suture {

namespace {

// "20261201T160512Z": when the old file was set aside.
std::string utc_stamp() {
    std::time_t now = std::time(nullptr);
    std::tm parts{};
    ::gmtime_r(&now, &parts);
    char text[32];
    std::strftime(text, sizeof text, "%Y%m%dT%H%M%SZ", &parts);
    return text;
}

// Step 3: the database and its -wal and -shm renamed to <path>.damaged-<stamp>
// (a -wal left beside the new file would be replayed into it). Returns the
// new name of the database, empty if there was none.
Result<std::string> set_aside(const std::string& path) {
    std::error_code error;
    if (!std::filesystem::exists(path, error)) {
        return std::string();
    }
    std::string kept = path + ".damaged-" + utc_stamp();
    for (const char* suffix : {"", "-wal", "-shm"}) {
        std::string from = path + suffix;
        if (!std::filesystem::exists(from, error)) {
            continue;
        }
        std::filesystem::rename(from, kept + suffix, error);
        if (error) {
            return fail(ErrorCode::io, from + ": cannot set it aside: " + error.message());
        }
    }
    return kept;
}

// Step 5: one row per patch active in memory.
std::vector<Application> applications_in_memory(const StatusReport& status) {
    std::vector<Application> rows;
    for (const ProcessReport& process : status.scan.processes) {
        auto patches = status.patches.find(process.info.pid);
        if (patches == status.patches.end()) {
            continue;
        }
        for (const AppliedPatch& patch : patches->second) {
            if (patch.state != PatchState::active) {
                continue;  // what update would apply or revert would finish
            }
            rows.push_back(
                {.process = {process.info.pid, process.info.start_time},
                 .executable = executable_path(process.info.pid),
                 .build_id = patch.marker.target_build_id,
                 .patch_id = patch.marker.patch_id,
                 .level = patch.marker.level,
                 .applied_at = static_cast<std::int64_t>(patch.marker.applied_at_unix_ns / 1000000000),
                 .state = ApplicationState::active,
                 .unit = systemd_unit(process.info.pid)});
        }
    }
    return rows;
}

// Steps 4 to 6 in one transaction: all of it or nothing.
Result<void> write_rebuilt(StateDatabase& database, const StateDatabase::Salvage& salvaged,
                           StateRebuild& rebuild) {
    if (auto begun = database.begin_batch(); !begun) {
        return begun;
    }
    for (const auto& [key, value] : salvaged.settings) {
        if (auto set = database.set_setting(key, value); !set) {
            return set;
        }
    }
    for (const auto& [kind, value] : salvaged.exclusions) {
        if (auto added = database.add_exclusion(kind, value); !added) {
            return added;
        }
    }
    for (const Application& application : rebuild.applications) {
        if (auto recorded = database.record_application(application); !recorded) {
            return tl::unexpected(recorded.error());
        }
    }
    std::string message = "rebuilt from the markers in memory: " +
                          std::to_string(rebuild.applications.size()) + " active patch(es)" +
                          (rebuild.kept_as.empty() ? "" : "; the old file is " + rebuild.kept_as);
    if (auto logged = database.log({.action = HistoryAction::rebuild,
                                    .outcome = HistoryOutcome::ok,
                                    .message = message});
        !logged) {
        return logged;
    }
    return database.commit_batch();
}

}  // namespace

Result<StateRebuild> Engine::rebuild_state() {
    // 1. Nothing patches or records meanwhile.
    auto lock = hold_operation_lock();
    if (!lock) {
        return tl::unexpected(lock.error());
    }
    // 2. What memory says, and what still reads of the old file.
    StateRebuild rebuild{.database = options_.state_database};
    rebuild.applications = applications_in_memory(status());
    StateDatabase::Salvage salvaged = StateDatabase::salvage(options_.state_database);
    rebuild.settings_kept = salvaged.settings.size();
    rebuild.exclusions_kept = salvaged.exclusions.size();
    // 3. The old file aside (our own connection to it closed first).
    state_.reset();
    auto kept = set_aside(options_.state_database);
    if (!kept) {
        return tl::unexpected(kept.error());
    }
    rebuild.kept_as = *kept;
    // 4. A new database, 5. the rows, 6. the history entry.
    auto database = state();
    if (!database) {
        return tl::unexpected(database.error());
    }
    if (auto written = write_rebuilt(**database, salvaged, rebuild); !written) {
        return tl::unexpected(with_context(written.error(), "state rebuild"));
    }
    return rebuild;
}

}  // namespace suture
