#include "engine/Candidates.h"

#include <algorithm>

#include "proc/Process.h"

namespace suture {

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
        // A cumulative patch may replace, in its apply's stop, the patches
        // it supersedes (their fixes are in it): as the signed custom says.
        patch->replaces = target.target.info.supersedes;
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

std::optional<std::uint64_t> targets_version_of(const feed::CachedTarget& cached) {
    return cached.targets_version != 0 ? std::optional<std::uint64_t>(cached.targets_version)
                                       : std::nullopt;
}

SupersedeKey supersede_key(const UsablePatch& candidate) {
    return {.build_id = candidate.patch.metadata.target_build_id,
            .patch_id = candidate.patch.metadata.patch_id,
            .supersedes = candidate.cached.target.info.supersedes};
}

std::vector<std::optional<std::size_t>> resolve_supersedes(
    std::span<const SupersedeKey> keys, const std::function<bool(std::size_t)>& decide) {
    std::size_t count = keys.size();
    // superseders[i]: the candidates whose fix includes candidate i's.
    std::vector<std::vector<std::size_t>> superseders(count);
    for (std::size_t i = 0; i < count; ++i) {
        for (std::size_t j = 0; j < count; ++j) {
            const std::vector<std::string>& ids = keys[j].supersedes;
            if (i != j && keys[i].build_id == keys[j].build_id &&
                std::find(ids.begin(), ids.end(), keys[i].patch_id) != ids.end()) {
                superseders[i].push_back(j);
            }
        }
    }
    std::vector<std::optional<std::size_t>> result(count);
    std::vector<bool> done(count, false);
    std::vector<bool> in_effect(count, false);
    std::size_t left = count;
    bool waiting = true;  // false: break a cycle by deciding the first pending one
    while (left > 0) {
        bool progress = false;
        for (std::size_t i = 0; i < count && left > 0; ++i) {
            if (done[i]) {
                continue;
            }
            const std::vector<std::size_t>& by = superseders[i];
            if (waiting &&
                std::any_of(by.begin(), by.end(), [&](std::size_t j) { return !done[j]; })) {
                continue;
            }
            auto superseding = std::find_if(by.begin(), by.end(),
                                            [&](std::size_t j) { return done[j] && in_effect[j]; });
            if (superseding != by.end()) {
                result[i] = *superseding;
            } else {
                in_effect[i] = decide(i);
            }
            done[i] = true;
            --left;
            progress = true;
            if (!waiting) {
                waiting = true;  // one member of the cycle decided: the rest wait again
                break;
            }
        }
        if (!progress) {
            waiting = false;
        }
    }
    return result;
}

void drop_superseded(std::vector<UsablePatch>& candidates) {
    std::vector<SupersedeKey> keys;
    for (const UsablePatch& candidate : candidates) {
        keys.push_back(supersede_key(candidate));
    }
    auto superseded = resolve_supersedes(keys, [](std::size_t) { return true; });
    for (std::size_t i = candidates.size(); i-- > 0;) {
        if (superseded[i]) {
            candidates.erase(candidates.begin() + static_cast<std::ptrdiff_t>(i));
        }
    }
}

Exclusions Exclusions::from(const std::vector<Exclusion>& rows) {
    Exclusions exclusions;
    for (const auto& [kind, value] : rows) {
        (kind == "unit" ? exclusions.units_ : exclusions.executables_).insert(value);
    }
    return exclusions;
}

std::optional<std::string> Exclusions::reason(const ProcessPlace& place) const {
    if (executables_.contains(place.executable)) {
        return place.executable + " is excluded";
    }
    if (!place.unit.empty() && units_.contains(place.unit)) {
        return "unit " + place.unit + " is excluded";
    }
    return std::nullopt;
}

ProcessPlace place_of(int pid, const Exclusions& exclusions) {
    return {.executable = executable_path(pid),
            .unit = exclusions.has_units() ? systemd_unit(pid) : ""};
}

Records::Records(StateDatabase* database, std::string unavailable)
    : database_(database), unavailable_(std::move(unavailable)) {}

void Records::start_batches() {
    batched_ = true;
    begin();
}

Records::~Records() {
    commit();
}

void Records::begin() {
    if (database_ == nullptr || !batched_) {
        return;
    }
    if (auto begun = database_->begin_batch(); !begun) {
        batched_ = false;  // each write on its own, each checked
    }
}

void Records::lose_pending(const std::string& why) {
    for (const std::string& what : pending_) {
        lost_.push_back(what + ": " + why);
    }
    pending_.clear();
}

void Records::commit() {
    if (database_ == nullptr || !batched_) {
        return;
    }
    // A batch SQLite rolled back by itself fails to commit too: its records
    // are lost all the same.
    if (auto committed = database_->commit_batch(); !committed && !pending_.empty()) {
        lose_pending(committed.error().message);
    }
    pending_.clear();
}

void Records::lose(const std::string& what, const std::string& why) {
    lost_.push_back(what + ": " + why);
}

void Records::wrote(const std::string& what, const Result<void>& written) {
    if (database_ == nullptr) {
        lose(what, unavailable_.empty() ? "no state database" : unavailable_);
        return;
    }
    if (!written) {
        lose(what, written.error().message);
        // A full disk or an I/O error makes SQLite roll the batch back by
        // itself: what it held is lost too; the next writes get a new one.
        if (batched_ && !database_->in_batch()) {
            lose_pending("rolled back: " + written.error().message);
            begin();
        }
        return;
    }
    if (!batched_) {
        return;
    }
    pending_.push_back(what);
    if (pending_.size() >= per_batch) {
        commit();
        begin();
    }
}

std::string record_name(std::string_view action, const ProcessIdentity& process,
                        const std::string& patch_id, std::uint32_t level) {
    return std::string(action) + " pid " + std::to_string(process.pid) + " " + patch_id +
           " level " + std::to_string(level);
}

void close_application(Records& records, const Application& application,
                       const std::string& reason, const std::string& message) {
    StateDatabase& database = *records.database();
    std::string name =
        record_name("close", application.process, application.patch_id, application.level);
    records.wrote(name, database.set_application_state(application.id, ApplicationState::exited));
    records.wrote(name + " (history)", database.log({.action = HistoryAction::close,
                                                     .process = application.process,
                                                     .patch_id = application.patch_id,
                                                     .level = application.level,
                                                     .outcome = HistoryOutcome::ok,
                                                     .reason = reason,
                                                     .message = message}));
}

namespace {

// An apply the injector found already done in its stop: `already`, and
// recorded as an adoption if the database does not know it yet (with the
// feed that offered the patch in this run).
void record_already(Records& records, const UsablePatch& candidate,
                    const std::string& executable, UpdateAction& action) {
    const PatchMetadata& metadata = candidate.patch.metadata;
    action.outcome = ActionOutcome::already;
    StateDatabase* database = records.database();
    std::string name = record_name("adopt", action.process, metadata.patch_id, action.level);
    if (database == nullptr) {
        records.wrote(name, Result<void>{});  // lost: no database
        return;
    }
    auto known = database->has_active_application(action.process, metadata.patch_id, action.level);
    if (known && *known) {
        return;
    }
    if (!known) {
        records.wrote(name, known);
        return;
    }
    records.wrote(name, database->record_application({.process = action.process,
                                                      .executable = executable,
                                                      .build_id = metadata.target_build_id,
                                                      .patch_id = metadata.patch_id,
                                                      .level = action.level,
                                                      .state = ApplicationState::active,
                                                      .unit = systemd_unit(action.process.pid)}));
    records.wrote(name + " (history)",
                  database->log({.action = HistoryAction::adopt,
                                 .process = action.process,
                                 .patch_id = metadata.patch_id,
                                 .level = action.level,
                                 .outcome = HistoryOutcome::ok,
                                 .message = "found active in the stop of an apply",
                                 .targets_version = targets_version_of(candidate.cached),
                                 .signing_keys = candidate.cached.signing_keys}));
}

}  // namespace

void record_apply(Records& records, const UsablePatch& candidate, const std::string& executable,
                  const std::string& origin, UpdateAction& action,
                  const InjectResult<InjectReport>& applied) {
    const PatchMetadata& metadata = candidate.patch.metadata;
    if (applied && applied->already_applied) {
        action.level = applied->level;
        record_already(records, candidate, executable, action);
        return;
    }
    action.outcome = applied ? ActionOutcome::applied : ActionOutcome::failed;
    if (applied) {
        action.stopped_us =
            std::chrono::duration_cast<std::chrono::microseconds>(applied->stopped_for).count();
    }
    if (!applied) {
        action.reason = error_code_name(applied.error().error.code);
        action.message = applied.error().error.message;
    }
    std::string name = record_name("apply", action.process, metadata.patch_id, metadata.level);
    StateDatabase* database = records.database();
    if (applied && applied->replaced_level && database != nullptr) {
        // The lower level (or, for a cumulative patch, the patch it
        // supersedes) this apply replaced in the same stop is no longer
        // active: its row says so (reverted), not two active patches.
        const std::string& replaced =
            applied->replaced_patch_id.empty() ? metadata.patch_id : applied->replaced_patch_id;
        std::string replace =
            record_name("replace", action.process, replaced, *applied->replaced_level);
        records.wrote(replace, database->mark_reverted(action.process, replaced));
        if (replaced != metadata.patch_id) {
            records.wrote(replace + " (history)",
                          database->log({.action = HistoryAction::revert,
                                         .process = action.process,
                                         .patch_id = replaced,
                                         .level = *applied->replaced_level,
                                         .outcome = HistoryOutcome::ok,
                                         .reason = "superseded",
                                         .message = "replaced by " + metadata.patch_id + " level " +
                                                    std::to_string(metadata.level) +
                                                    ", which carries its fix"}));
        }
    }
    if (applied) {
        records.wrote(name, database ? database->record_application(
                                           {.process = action.process,
                                            .executable = executable,
                                            .build_id = metadata.target_build_id,
                                            .patch_id = metadata.patch_id,
                                            .level = metadata.level,
                                            .state = ApplicationState::active,
                                            .unit = systemd_unit(action.process.pid)})
                                     : Result<std::int64_t>(0));
    }
    records.wrote(name + " (history)",
                  database ? database->log({.action = HistoryAction::apply,
                                            .process = action.process,
                                            .patch_id = metadata.patch_id,
                                            .level = metadata.level,
                                            .outcome = applied ? HistoryOutcome::ok
                                                               : HistoryOutcome::failed,
                                            .reason = action.reason,
                                            .message = applied ? origin : action.message,
                                            .targets_version = targets_version_of(candidate.cached),
                                            .signing_keys = candidate.cached.signing_keys})
                           : Result<void>{});
}


void apply_and_record(Engine& engine, Records& records, const UsablePatch& candidate,
                      const InjectOptions& options, const std::string& executable,
                      const std::string& origin, UpdateAction& action) {
    auto applied = engine.apply(action.process.pid, candidate.patch, options, records);
    record_apply(records, candidate, executable, origin, action, applied);
}

void apply_and_record_all(Engine& engine, Records& records,
                          const std::vector<const UsablePatch*>& candidates,
                          const InjectOptions& options, const std::string& executable,
                          const std::string& origin, const std::vector<UpdateAction*>& actions) {
    if (candidates.empty()) {
        return;
    }
    std::vector<const PatchFile*> patches;
    for (const UsablePatch* candidate : candidates) {
        patches.push_back(&candidate->patch);
    }
    auto applied = engine.apply_many(actions.front()->process.pid, patches, options, records);
    for (std::size_t i = 0; i < candidates.size(); ++i) {
        record_apply(records, *candidates[i], executable, origin, *actions[i], applied[i]);
    }
}

}  // namespace suture
