// The audit report (`suture report`): what the state database says of each
// patch since a date, gathered per (patch id, level).
#include <algorithm>
#include <limits>
#include <map>

#include "engine/Engine.h"

namespace suture {

namespace {

using PatchKey = std::pair<std::string, std::uint32_t>;

// Every history entry, oldest first.
Result<std::vector<HistoryEntry>> whole_history(StateDatabase& database) {
    auto entries =
        database.history(static_cast<std::size_t>(std::numeric_limits<std::int64_t>::max()));
    if (!entries) {
        return tl::unexpected(entries.error());
    }
    std::reverse(entries->begin(), entries->end());
    return entries;
}

// Step: every application row, of every state.
Result<std::vector<Application>> every_application(StateDatabase& database) {
    std::vector<Application> rows;
    for (ApplicationState state :
         {ApplicationState::active, ApplicationState::reverted, ApplicationState::exited}) {
        auto some = database.applications(state);
        if (!some) {
            return tl::unexpected(some.error());
        }
        rows.insert(rows.end(), some->begin(), some->end());
    }
    std::sort(rows.begin(), rows.end(),
              [](const Application& a, const Application& b) { return a.id < b.id; });
    return rows;
}

bool same_subject(const HistoryEntry& entry, const Application& application) {
    return entry.process == application.process && entry.patch_id == application.patch_id &&
           (entry.level == 0 || entry.level == application.level);
}

// Step: who applied it (the apply entry nearest its time) and how it ended
// (the first revert or close after it).
AuditApplication audit_of(const Application& application,
                          const std::vector<HistoryEntry>& history) {
    AuditApplication audit{.application = application};
    const HistoryEntry* apply = nullptr;
    for (const HistoryEntry& entry : history) {
        if (!same_subject(entry, application)) {
            continue;
        }
        bool applied = entry.action == HistoryAction::apply || entry.action == HistoryAction::adopt;
        if (applied && entry.outcome == HistoryOutcome::ok && entry.at <= application.applied_at + 1 &&
            (apply == nullptr || entry.at >= apply->at)) {
            apply = &entry;
        }
        bool ended = entry.action == HistoryAction::revert || entry.action == HistoryAction::close;
        if (ended && entry.outcome == HistoryOutcome::ok && entry.at >= application.applied_at &&
            audit.ended_at == 0 && application.state != ApplicationState::active) {
            audit.ended_at = entry.at;
            audit.ended_by = entry.action == HistoryAction::revert ? "revert"
                             : entry.reason == "crashed"          ? "crash"
                                                                  : "exit";
            audit.ended_message = entry.message;
            audit.ended_by_uid = entry.caller_uid;
        }
    }
    if (apply != nullptr) {
        audit.caller_uid = apply->caller_uid;
        audit.how = apply->action == HistoryAction::adopt ? "adopted" : "applied";
        // An automatic run says so; new processes are sutured's.
        audit.automatic =
            apply->message.ends_with("(automatic)") || apply->message == "new process";
        audit.source = apply->message;
        audit.targets_version = apply->targets_version;
        audit.signing_keys = apply->signing_keys;
    }
    return audit;
}

}  // namespace

Result<AuditReport> Engine::audit_report(std::int64_t since) {
    // 1. What the database holds: applications, history, quarantine, the
    // patchsets the last update saw (their remote, target and digest).
    auto database = state();
    if (!database) {
        return tl::unexpected(database.error());
    }
    StateDatabase& db = **database;
    auto applications = every_application(db);
    auto history = applications ? whole_history(db) : Result<std::vector<HistoryEntry>>();
    auto quarantine = history ? db.quarantined() : Result<std::vector<Quarantine>>();
    auto patchsets = quarantine ? db.patchsets() : Result<std::vector<CachedPatchset>>();
    if (!applications || !history || !quarantine || !patchsets) {
        const Error& error = !applications ? applications.error()
                             : !history    ? history.error()
                             : !quarantine ? quarantine.error()
                                           : patchsets.error();
        return tl::unexpected(error);
    }
    AuditReport report{.since = since, .generated_at = ::time(nullptr)};
    // 2. One entry per (patch id, level) applied since `since`, with each
    // application, who made it and how it ended.
    std::map<PatchKey, AuditPatch> patches;
    for (const Application& application : *applications) {
        if (application.applied_at < since) {
            continue;
        }
        AuditPatch& patch = patches[{application.patch_id, application.level}];
        patch.patch_id = application.patch_id;
        patch.level = application.level;
        patch.applications.push_back(audit_of(application, *history));
    }
    // 3. The feed each came from, the health watch's view (quarantines,
    // crashes, releases) and every revert of it.
    for (auto& [key, patch] : patches) {
        for (const CachedPatchset& set : *patchsets) {
            if (set.patch_id == key.first && set.level == key.second) {
                patch.feed = set;
            }
        }
        for (const Quarantine& row : *quarantine) {
            if (row.patch_id == key.first) {
                patch.quarantine = row;
            }
        }
        for (const HistoryEntry& entry : *history) {
            bool watch = entry.action == HistoryAction::quarantine ||
                         entry.action == HistoryAction::release ||
                         (entry.action == HistoryAction::close && entry.reason == "crashed");
            if (entry.patch_id == key.first && entry.at >= since &&
                (watch || entry.action == HistoryAction::revert)) {
                patch.events.push_back(entry);
            }
        }
        report.patches.push_back(std::move(patch));
    }
    // 4. The runs themselves (updates, refreshes, settings) since `since`.
    for (const HistoryEntry& entry : *history) {
        bool run = entry.action == HistoryAction::update || entry.action == HistoryAction::refresh ||
                   entry.action == HistoryAction::settings;
        if (run && entry.at >= since) {
            report.runs.push_back(entry);
        }
    }
    return report;
}

}  // namespace suture
