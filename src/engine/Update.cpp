#include "engine/Update.h"

#include <unistd.h>

#include <cstdlib>
#include <ctime>
#include <map>
#include <set>

#include <nlohmann/json.hpp>

#include "base/Files.h"
#include "state/StateDatabase.h"

namespace suture {

namespace {

std::string executable_of(int pid) {
    char path[4096];
    ssize_t length =
        ::readlink(("/proc/" + std::to_string(pid) + "/exe").c_str(), path, sizeof path - 1);
    return length > 0 ? std::string(path, static_cast<std::size_t>(length)) : "";
}

}  // namespace

std::map<std::string, std::vector<UsablePatch>> load_usable_patches(
    const std::vector<feed::CachedTarget>& cached, std::vector<std::string>& problems) {
    // Per build ID and patch id, the highest usable level.
    std::map<std::string, std::map<std::string, UsablePatch>> best;
    for (const feed::CachedTarget& target : cached) {
        if (target.refused) {
            problems.push_back("remote " + target.remote + ": " + target.refused->message);
            continue;
        }
        if (!target.usable) {
            continue;
        }
        auto patch = read_patch_file(target.path);
        if (!patch) {
            problems.push_back(patch.error().message);
            continue;
        }
        // Copies: the patch is moved into the map below.
        std::string patch_id = patch->metadata.patch_id;
        std::uint32_t level = patch->metadata.level;
        auto& slot = best[patch->metadata.target_build_id];
        auto existing = slot.find(patch_id);
        if (existing == slot.end() || existing->second.patch.metadata.level < level) {
            slot.erase(patch_id);
            slot.emplace(patch_id, UsablePatch{target, std::move(*patch)});
        }
    }
    std::map<std::string, std::vector<UsablePatch>> by_build;
    for (auto& [build_id, patches] : best) {
        for (auto& [patch_id, candidate] : patches) {
            by_build[build_id].push_back(std::move(candidate));
        }
    }
    return by_build;
}

void apply_and_record(Engine& engine, StateDatabase* database, const UsablePatch& candidate,
                      const InjectOptions& options, const std::string& executable,
                      const std::string& origin, UpdateAction& action) {
    const PatchMetadata& metadata = candidate.patch.metadata;
    auto applied = engine.apply(action.process.pid, candidate.patch, options);
    action.outcome = applied ? "applied" : "failed";
    if (!applied) {
        action.reason = error_code_name(applied.error().code);
        action.message = applied.error().message;
    }
    if (database == nullptr) {
        return;
    }
    if (applied) {
        (void)database->record_application({0, action.process, executable, metadata.target_build_id,
                                            metadata.patch_id, metadata.level, 0, "active"});
    }
    (void)database->log({0, 0, "apply", action.process, metadata.patch_id, metadata.level,
                         applied ? "ok" : "failed", action.reason,
                         applied ? origin : action.message});
}

std::string resolve_state_database(const std::string& path) {
    if (!path.empty()) {
        return path;
    }
    const char* environment = std::getenv("SUTURE_STATE_DB");
    return environment != nullptr && *environment != '\0' ? environment
                                                          : "/var/lib/suture/state.db";
}

Result<UpdateReport> run_update(Engine& engine, const UpdateOptions& options,
                                const UpdateProgress& progress) {
    auto database = StateDatabase::open(resolve_state_database(options.state_database));
    if (!database) {
        return tl::unexpected(database.error());
    }
    UpdateReport report;
    auto enabled = database->setting("enabled");
    if (enabled && enabled->has_value() && **enabled == "false") {
        report.enabled = false;
        (void)database->log(
            {0, 0, "update", {}, "", 0, "skipped", "disabled", "suture is disabled"});
        return report;
    }
    FeedOptions feed_options = resolve_feed_options(options.feed);
    if (options.refresh) {
        auto refreshes = refresh_feeds(feed_options);
        if (!refreshes) {
            return tl::unexpected(refreshes.error());
        }
        report.refreshes = std::move(*refreshes);
        for (const RemoteRefresh& refresh : report.refreshes) {
            (void)database->log(
                {0,
                 0,
                 "refresh",
                 {},
                 "",
                 0,
                 refresh.result ? "ok" : "failed",
                 refresh.result ? "" : error_code_name(refresh.result.error().code),
                 refresh.result ? "remote " + refresh.remote : refresh.result.error().message});
        }
    }
    auto cached = list_feeds(feed_options);
    if (!cached) {
        return tl::unexpected(cached.error());
    }
    {
        std::vector<CachedPatchset> rows;
        for (const feed::CachedTarget& target : *cached) {
            if (target.refused) {
                continue;  // named in the problems by load_usable_patches
            }
            const feed::PatchsetInfo& info = target.target.info;
            std::string cves;
            for (const std::string& cve : info.cves) {
                cves += (cves.empty() ? "" : ",") + cve;
            }
            rows.push_back({target.remote, target.target.name, info.patch_id, info.level,
                            info.build_id, target.target.sha256, cves, target.usable});
        }
        (void)database->record_patchsets(rows);
    }
    auto candidates = load_usable_patches(*cached, report.problems);
    for (const auto& [build_id, patches] : candidates) {
        report.patchsets += patches.size();
    }
    Exclusions exclusions = Exclusions::load(*database);

    StatusReport status = engine.status();
    report.processes_examined = status.scan.processes_examined;
    std::set<std::pair<int, std::uint64_t>> alive;
    struct Work {
        const ProcessReport* process;
        const UsablePatch* candidate;
    };
    std::vector<Work> work;
    for (const ProcessReport& process : status.scan.processes) {
        alive.insert({process.info.pid, process.info.start_time});
        bool matching = false;
        for (const MappedLibrary& library : process.libraries) {
            auto found = candidates.find(library.build_id);
            if (found == candidates.end()) {
                continue;
            }
            matching = true;
            for (const UsablePatch& candidate : found->second) {
                work.push_back({&process, &candidate});
            }
        }
        report.processes_matching += matching ? 1 : 0;
    }

    auto recorded = database->applications("active");
    std::set<std::tuple<int, std::uint64_t, std::string, std::uint32_t>> known;
    if (recorded) {
        for (const Application& application : *recorded) {
            known.insert({application.process.pid, application.process.start_time,
                          application.patch_id, application.level});
        }
    }
    // The records of a fleet go to disk in batches (see begin_batch): with
    // synchronous=FULL, one transaction per record cost about as much as the
    // applies themselves.
    constexpr std::size_t records_per_batch = 64;
    bool batching = database->begin_batch().has_value();
    std::size_t done = 0;
    for (const Work& item : work) {
        if (batching && done > 0 && done % records_per_batch == 0) {
            batching = database->commit_batch().has_value() && database->begin_batch().has_value();
        }
        const ProcessInfo& info = item.process->info;
        const PatchMetadata& metadata = item.candidate->patch.metadata;
        UpdateAction action{
            {info.pid, info.start_time}, info.comm, metadata.patch_id, metadata.level, "", "", ""};
        std::string executable = executable_of(info.pid);
        const AppliedPatch* present = nullptr;
        if (auto found = status.patches.find(info.pid); found != status.patches.end()) {
            for (const AppliedPatch& applied : found->second) {
                if (applied.marker.patch_id == metadata.patch_id &&
                    applied.state == PatchState::active && applied.marker.level >= metadata.level) {
                    present = &applied;
                }
            }
        }
        if (info.pid == ::getpid()) {
            action.outcome = "excluded";
            action.message = "suture never patches itself";
        } else if (auto excluded = exclusions.reason(info.pid)) {
            action.outcome = "excluded";
            action.message = *excluded;
        } else if (present != nullptr) {
            bool in_database = known.contains(
                {info.pid, info.start_time, metadata.patch_id, present->marker.level});
            action.outcome = in_database ? "already" : "adopted";
            action.level = present->marker.level;
            if (!in_database) {
                // In memory but not in the database (a lost database, or an
                // apply by hand): adopt it, so intent matches memory.
                (void)database->record_application({0, action.process, executable,
                                                    metadata.target_build_id, metadata.patch_id,
                                                    present->marker.level, 0, "active"});
                (void)database->log({0, 0, "adopt", action.process, metadata.patch_id,
                                     present->marker.level, "ok", "", "found active in memory"});
            }
        } else {
            apply_and_record(engine, &*database, *item.candidate, options.inject, executable,
                             "from " + item.candidate->cached.remote, action);
        }
        report.actions.push_back(std::move(action));
        ++done;
        if (progress) {
            progress(done, work.size());
        }
    }

    // Close out what the database believes active in processes now gone (a
    // reused PID has another start time, so it does not count as alive).
    if (recorded) {
        for (const Application& application : *recorded) {
            bool exists = alive.contains({application.process.pid, application.process.start_time});
            if (!exists) {
                auto info = read_process_info(application.process.pid);
                exists = info && info->start_time == application.process.start_time;
            }
            if (!exists) {
                (void)database->set_application_state(application.id, "exited");
                (void)database->log({0, 0, "close", application.process, application.patch_id,
                                     application.level, "ok", "", "the process exited"});
                ++report.closed;
            }
        }
    }
    if (batching) {
        (void)database->commit_batch();
    }
    bool idle = report.closed == 0;
    for (const UpdateAction& action : report.actions) {
        idle = idle && action.outcome == "already";
    }
    if (options.log_idle_runs || !idle) {
        (void)database->log({0,
                             0,
                             "update",
                             {},
                             "",
                             0,
                             "ok",
                             "",
                             std::to_string(report.actions.size()) + " action(s)"});
    }
    return report;
}

nlohmann::json update_to_json(const UpdateReport& report) {
    nlohmann::json actions = nlohmann::json::array();
    for (const UpdateAction& action : report.actions) {
        actions.push_back({{"pid", action.process.pid},
                           {"start_time", action.process.start_time},
                           {"comm", action.comm},
                           {"patch_id", action.patch_id},
                           {"level", action.level},
                           {"outcome", action.outcome},
                           {"reason", action.reason},
                           {"message", action.message}});
    }
    nlohmann::json document = {{"enabled", report.enabled},
                               {"patchsets", report.patchsets},
                               {"processes_examined", report.processes_examined},
                               {"processes_matching", report.processes_matching},
                               {"closed", report.closed},
                               {"problems", report.problems},
                               {"actions", actions}};
    document["feed"] = refresh_to_json(report.refreshes)["remotes"];
    return document;
}

Result<std::vector<HistoryEntry>> read_history(const std::string& state_database,
                                               std::size_t limit) {
    auto database = StateDatabase::open(resolve_state_database(state_database));
    if (!database) {
        return tl::unexpected(database.error());
    }
    return database->history(limit);
}

nlohmann::json history_to_json(const std::vector<HistoryEntry>& entries) {
    nlohmann::json rows = nlohmann::json::array();
    for (const HistoryEntry& entry : entries) {
        rows.push_back({{"id", entry.id},
                        {"at", entry.at},
                        {"action", entry.action},
                        {"pid", entry.process.pid},
                        {"start_time", entry.process.start_time},
                        {"patch_id", entry.patch_id},
                        {"level", entry.level},
                        {"outcome", entry.outcome},
                        {"reason", entry.reason},
                        {"message", entry.message}});
    }
    return {{"history", rows}};
}

Result<void> set_enabled(const std::string& state_database, bool enabled) {
    auto database = StateDatabase::open(resolve_state_database(state_database));
    if (!database) {
        return tl::unexpected(database.error());
    }
    if (auto set = database->set_setting("enabled", enabled ? "true" : "false"); !set) {
        return set;
    }
    return database->log({0, 0, "settings", {}, "", 0, "ok", "", enabled ? "enabled" : "disabled"});
}

Result<bool> is_enabled(const std::string& state_database) {
    auto database = StateDatabase::open(resolve_state_database(state_database));
    if (!database) {
        return tl::unexpected(database.error());
    }
    auto value = database->setting("enabled");
    if (!value) {
        return tl::unexpected(value.error());
    }
    return !value->has_value() || **value != "false";
}

Exclusions Exclusions::load(StateDatabase& database) {
    Exclusions exclusions;
    if (auto rows = database.exclusions()) {
        for (const auto& [kind, value] : *rows) {
            (kind == "unit" ? exclusions.units_ : exclusions.executables_).insert(value);
        }
    }
    return exclusions;
}

std::optional<std::string> Exclusions::reason(int pid) const {
    if (!executables_.empty()) {
        std::string executable = executable_of(pid);
        if (executables_.contains(executable)) {
            return executable + " is excluded";
        }
    }
    if (!units_.empty()) {
        std::string unit = unit_of(pid);
        if (!unit.empty() && units_.contains(unit)) {
            return "unit " + unit + " is excluded";
        }
    }
    return std::nullopt;
}

std::string unit_of(int pid) {
    auto text = read_file("/proc/" + std::to_string(pid) + "/cgroup");
    if (!text) {
        return "";
    }
    // cgroup v2: "0::/system.slice/nginx.service"; v1: "1:name=systemd:/...".
    std::string unit;
    std::size_t start = 0;
    while (start < text->size()) {
        std::size_t end = text->find('\n', start);
        std::string line =
            text->substr(start, end == std::string::npos ? std::string::npos : end - start);
        start = end == std::string::npos ? text->size() : end + 1;
        if (!line.starts_with("0::") && line.find(":name=systemd:") == std::string::npos) {
            continue;
        }
        std::string path = line.substr(line.find(':', line.find(':') + 1) + 1);
        std::size_t from = 0;
        while (from <= path.size()) {
            std::size_t next = path.find('/', from);
            std::string part =
                path.substr(from, next == std::string::npos ? std::string::npos : next - from);
            if (part.ends_with(".service") || part.ends_with(".scope")) {
                unit = part;
            }
            if (next == std::string::npos) {
                break;
            }
            from = next + 1;
        }
    }
    return unit;
}

Result<void> set_exclusion(const std::string& state_database, const std::string& kind,
                           const std::string& value, bool excluded) {
    auto database = StateDatabase::open(resolve_state_database(state_database));
    if (!database) {
        return tl::unexpected(database.error());
    }
    auto changed =
        excluded ? database->add_exclusion(kind, value) : database->remove_exclusion(kind, value);
    if (!changed) {
        return changed;
    }
    return database->log({0,
                          0,
                          "settings",
                          {},
                          "",
                          0,
                          "ok",
                          "",
                          std::string(excluded ? "exclude " : "include ") + kind + " " + value});
}

Result<std::vector<std::pair<std::string, std::string>>> read_exclusions(
    const std::string& state_database) {
    auto database = StateDatabase::open(resolve_state_database(state_database));
    if (!database) {
        return tl::unexpected(database.error());
    }
    return database->exclusions();
}

}  // namespace suture
