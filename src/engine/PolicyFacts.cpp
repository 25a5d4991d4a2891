#include "engine/PolicyFacts.h"

#include <algorithm>

namespace suture {

Severity severity_of(const UsablePatch& candidate, const AdvisoryData& advisories) {
    const feed::PatchsetInfo& info = candidate.cached.target.info;
    if (auto known = severity_from_name(info.severity)) {
        return *known;
    }
    if (!advisories.advisories) {
        return Severity::unknown;
    }
    auto build = advisories.advisories->builds.find(info.build_id);
    if (build == advisories.advisories->builds.end()) {
        return Severity::unknown;
    }
    Severity highest = Severity::unknown;
    for (const feed::Advisory& advisory : build->second.cves) {
        if (advisory.patch_id == info.patch_id) {
            highest = std::max(highest, severity_from_name(advisory.severity).value_or(highest));
        }
    }
    return highest;
}

PatchFacts facts_of(const UsablePatch& candidate, Severity severity) {
    const feed::PatchsetInfo& info = candidate.cached.target.info;
    return {.patch_id = info.patch_id,
            .level = info.level,
            .cves = info.cves,
            .severity = severity,
            .channel = info.channel,
            .published = info.published};
}

Result<ApprovedPatches> approved_patches(StateDatabase& database) {
    ApprovedPatches approved;
    for (ApplicationState state : {ApplicationState::active, ApplicationState::exited}) {
        auto rows = database.applications(state);
        if (!rows) {
            return tl::unexpected(rows.error());
        }
        for (const Application& row : *rows) {
            approved.insert({row.patch_id, row.level});
        }
    }
    return approved;
}

RunContext run_context(bool automatic) {
    RunContext context{.automatic = automatic, .now = policy_now()};
    ::localtime_r(&context.now, &context.local);
    std::string machine_id = read_machine_id();
    context.has_bucket = !machine_id.empty();
    context.bucket = context.has_bucket ? rollout_bucket(machine_id) : 0;
    return context;
}

}  // namespace suture
