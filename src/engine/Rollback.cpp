// The rollback plan: Engine::revert_everywhere (one command for every
// process of the host) and the crash lockfile's status and release.
#include <set>

#include "engine/CrashLock.h"
#include "engine/Engine.h"
#include "state/HostLock.h"

namespace suture {

namespace {

// The patch ids that fix one of `cves`: the CVE ids themselves (the shipped
// patches are named after their CVE) and every patch id whose signed custom
// metadata lists one of them.
std::set<std::string> patch_ids_for(const std::set<std::string>& cves,
                                    const std::vector<feed::CachedTarget>& cached) {
    std::set<std::string> ids(cves.begin(), cves.end());
    for (const feed::CachedTarget& target : cached) {
        for (const std::string& cve : target.target.info.cves) {
            if (cves.contains(cve)) {
                ids.insert(target.target.info.patch_id);
            }
        }
    }
    return ids;
}

bool in_scope(const RevertScope& scope, const std::set<std::string>& ids,
              const AppliedPatch& patch) {
    return patch.state == PatchState::active && !patch.marker.patch_id.empty() &&
           (scope.all || ids.contains(patch.marker.patch_id));
}

}  // namespace

Result<HostRevertReport> Engine::revert_everywhere(const RevertScope& scope,
                                                   const InjectOptions& options) {
    // 1. The operation lock, so no update applies while the host is rolled back.
    auto lock = hold_operation_lock();
    if (!lock) {
        return tl::unexpected(lock.error());
    }
    // 2. Which patch ids the scope names (the cache is read only for CVEs).
    std::set<std::string> ids = scope.patch_ids;
    if (!scope.all && !scope.cves.empty()) {
        auto cached = list_feeds();
        ids.merge(patch_ids_for(scope.cves, cached ? *cached : std::vector<feed::CachedTarget>{}));
    }
    // 3. Every process's markers (no ptrace), then one revert per patch.
    StatusReport report = status();
    HostRevertReport reverted;
    for (const ProcessReport& process : report.scan.processes) {
        auto patches = report.patches.find(process.info.pid);
        if (patches == report.patches.end()) {
            continue;
        }
        for (const AppliedPatch& patch : patches->second) {
            if (!in_scope(scope, ids, patch)) {
                continue;
            }
            UpdateAction action{.process = {process.info.pid, process.info.start_time},
                                .comm = process.info.comm,
                                .patch_id = patch.marker.patch_id,
                                .level = patch.marker.level};
            std::vector<std::string> lost;
            auto done = revert(process.info.pid, patch.marker.patch_id, options, &lost);
            action.outcome = done ? ActionOutcome::reverted : ActionOutcome::failed;
            if (!done) {
                action.reason = error_code_name(done.error().error.code);
                action.message = done.error().error.message;
            }
            reverted.lost_records.insert(reverted.lost_records.end(), lost.begin(), lost.end());
            reverted.actions.push_back(std::move(action));
        }
    }
    return reverted;
}

Result<std::optional<CrashLockStatus>> Engine::crash_lock() {
    std::string path = crash_lock_path(options_.state_database);
    auto lock = read_crash_lock(path);
    if (!lock) {
        return tl::unexpected(lock.error());
    }
    if (!*lock) {
        return std::optional<CrashLockStatus>{};
    }
    bool holding = (*lock)->boot_id != current_boot_id();
    return std::optional<CrashLockStatus>(
        CrashLockStatus{.path = path, .lock = std::move(**lock), .holding = holding});
}

Result<void> Engine::release_crash_lock() {
    auto lock = hold_operation_lock();
    if (!lock) {
        return tl::unexpected(lock.error());
    }
    if (auto removed = remove_crash_lock(crash_lock_path(options_.state_database)); !removed) {
        return removed;
    }
    auto database = state();
    if (!database) {
        return tl::unexpected(database.error());
    }
    return (*database)->log({.action = HistoryAction::settings,
                             .outcome = HistoryOutcome::ok,
                             .message = "crash lock released"});
}

// A clean shutdown (suture-shutdown.service's ExecStop) is not the host
// going down because of an apply: the lock of this boot goes, recorded, so
// the next boot reapplies what ran. A lock of an earlier boot stays: that
// boot ended uncleanly, and only an operator's --release lets it go.
Result<bool> Engine::clear_crash_lock_at_shutdown() {
    auto lock = hold_operation_lock();
    if (!lock) {
        return tl::unexpected(lock.error());
    }
    std::string path = crash_lock_path(options_.state_database);
    auto found = read_crash_lock(path);
    if (!found) {
        return tl::unexpected(found.error());
    }
    if (!*found || (*found)->boot_id != current_boot_id()) {
        return false;
    }
    if (auto removed = remove_crash_lock(path); !removed) {
        return tl::unexpected(removed.error());
    }
    auto database = state();
    if (!database) {
        return tl::unexpected(database.error());
    }
    auto logged = (*database)->log({.action = HistoryAction::settings,
                                    .outcome = HistoryOutcome::ok,
                                    .message = "crash lock cleared: a clean shutdown of its boot"});
    if (!logged) {
        return tl::unexpected(logged.error());
    }
    return true;
}

}  // namespace suture
