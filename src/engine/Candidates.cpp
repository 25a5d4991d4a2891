#include "engine/Candidates.h"

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

void apply_and_record(Engine& engine, StateDatabase* database, const UsablePatch& candidate,
                      const InjectOptions& options, const std::string& executable,
                      const std::string& origin, UpdateAction& action) {
    const PatchMetadata& metadata = candidate.patch.metadata;
    auto applied = engine.apply(action.process.pid, candidate.patch, options);
    action.outcome = applied ? ActionOutcome::applied : ActionOutcome::failed;
    if (!applied) {
        action.reason = error_code_name(applied.error().error.code);
        action.message = applied.error().error.message;
    }
    if (database == nullptr) {
        return;
    }
    if (applied) {
        (void)database->record_application({.process = action.process,
                                            .executable = executable,
                                            .build_id = metadata.target_build_id,
                                            .patch_id = metadata.patch_id,
                                            .level = metadata.level,
                                            .state = ApplicationState::active});
    }
    (void)database->log({.action = HistoryAction::apply,
                         .process = action.process,
                         .patch_id = metadata.patch_id,
                         .level = metadata.level,
                         .outcome = applied ? HistoryOutcome::ok : HistoryOutcome::failed,
                         .reason = action.reason,
                         .message = applied ? origin : action.message});
}

}  // namespace suture
