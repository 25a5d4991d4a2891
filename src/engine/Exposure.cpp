#include "engine/Exposure.h"

#include <algorithm>
#include <set>

#include "engine/Documents.h"

namespace suture {

namespace {

// The patch ids in effect in a process, per target build ID: each active
// one -> itself, and each id an active one supersedes -> that one (the
// first found, when two do).
using InEffect = std::map<std::pair<std::string, std::string>, std::string>;

InEffect active_patches(const StatusReport& status, int pid, const Supersessions& supersessions) {
    InEffect active;
    auto found = status.patches.find(pid);
    if (found == status.patches.end()) {
        return active;
    }
    for (const AppliedPatch& patch : found->second) {
        if (patch.state == PatchState::active) {
            const RegionMarker& marker = patch.marker;
            active[{marker.target_build_id, marker.patch_id}] = marker.patch_id;
        }
    }
    for (const AppliedPatch& patch : found->second) {
        const RegionMarker& marker = patch.marker;
        auto superseded =
            supersessions.find({marker.target_build_id, marker.patch_id, marker.level});
        if (patch.state != PatchState::active || superseded == supersessions.end()) {
            continue;
        }
        for (const std::string& id : superseded->second) {
            active.try_emplace({marker.target_build_id, id}, marker.patch_id);
        }
    }
    return active;
}

CveState state_in_process(const feed::Advisory& advisory, const std::string& build_id,
                          const InEffect& active) {
    switch (advisory.status) {
        case feed::AdvisoryStatus::not_affected:
            return CveState::not_affected;
        case feed::AdvisoryStatus::patched:
            return active.contains({build_id, advisory.patch_id}) ? CveState::patched
                                                                  : CveState::open;
        case feed::AdvisoryStatus::not_live_patchable:
        case feed::AdvisoryStatus::open:
            return CveState::open_no_live_patch;
    }
    return CveState::open_no_live_patch;
}

// How bad a state is, to keep the worst when two libraries of a process
// list the same CVE.
int badness(CveState state) {
    switch (state) {
        case CveState::open_no_live_patch:
            return 3;
        case CveState::open:
            return 2;
        case CveState::patched:
            return 1;
        case CveState::not_affected:
            return 0;
    }
    return 3;
}

// Step of assess_exposure: one process.
ProcessExposure assess_process(const StatusReport& status, const ProcessReport& process,
                               const feed::Advisories* advisories,
                               const Supersessions& supersessions) {
    ProcessExposure result;
    InEffect active = active_patches(status, process.info.pid, supersessions);
    std::map<std::string, CveExposure> by_id;
    for (const MappedLibrary& library : process.libraries) {
        const feed::AdvisoryBuild* build = nullptr;
        if (advisories != nullptr) {
            if (auto found = advisories->builds.find(library.build_id);
                found != advisories->builds.end()) {
                build = &found->second;
            }
        }
        if (build == nullptr) {
            result.unknown_builds.push_back(library.build_id);
            continue;
        }
        for (const feed::Advisory& advisory : build->cves) {
            CveExposure cve{advisory.cve,      advisory.severity,
                            advisory.summary,  advisory.fixed_in,
                            state_in_process(advisory, library.build_id, active),
                            advisory.patch_id, advisory.reason,
                            library.build_id};
            if (auto by = active.find({library.build_id, advisory.patch_id});
                cve.state == CveState::patched && by->second != advisory.patch_id) {
                cve.patched_by = by->second;
            }
            auto [slot, inserted] = by_id.try_emplace(cve.id, cve);
            if (!inserted && badness(cve.state) > badness(slot->second.state)) {
                slot->second = cve;
            }
        }
    }
    for (auto& [id, cve] : by_id) {
        result.cves.push_back(std::move(cve));
    }
    auto has = [&](CveState state) {
        return std::any_of(result.cves.begin(), result.cves.end(),
                           [&](const CveExposure& cve) { return cve.state == state; });
    };
    result.verdict = has(CveState::open_no_live_patch) ? ProcessVerdict::needs_restart
                     : has(CveState::open)             ? ProcessVerdict::exposed
                     : !result.unknown_builds.empty()  ? ProcessVerdict::unknown
                                                       : ProcessVerdict::fully_patched;
    return result;
}

// Step of assess_exposure: the counts over every process.
void add_to_summary(const ProcessExposure& process, ExposureSummary& summary) {
    ++summary.processes;
    switch (process.verdict) {
        case ProcessVerdict::needs_restart:
            ++summary.needs_restart;
            break;
        case ProcessVerdict::exposed:
            ++summary.exposed;
            break;
        case ProcessVerdict::fully_patched:
            ++summary.fully_patched;
            break;
        case ProcessVerdict::unknown:
            ++summary.unknown;
            break;
    }
    for (const CveExposure& cve : process.cves) {
        if (cve.state == CveState::patched) {
            ++summary.patched_in_memory;
        }
        if (cve.state != CveState::open && cve.state != CveState::open_no_live_patch) {
            continue;
        }
        ExposureSummary::OpenCve& open = summary.open_cves[cve.id];
        open.severity = cve.severity;
        ++open.processes;
        open.live_patch_available =
            open.live_patch_available && cve.state == CveState::open;
    }
}

}  // namespace

std::string_view cve_state_name(CveState state) {
    switch (state) {
        case CveState::patched:
            return "patched";
        case CveState::open:
            return "open";
        case CveState::open_no_live_patch:
            return "open_no_live_patch";
        case CveState::not_affected:
            return "not_affected";
    }
    return "open";
}

std::string_view verdict_name(ProcessVerdict verdict) {
    switch (verdict) {
        case ProcessVerdict::needs_restart:
            return "needs_restart";
        case ProcessVerdict::exposed:
            return "exposed";
        case ProcessVerdict::fully_patched:
            return "fully_patched";
        case ProcessVerdict::unknown:
            return "unknown";
    }
    return "unknown";
}

Exposure assess_exposure(const StatusReport& status, const feed::Advisories* advisories,
                         const Supersessions& supersessions) {
    Exposure exposure;
    exposure.available = advisories != nullptr;
    for (const ProcessReport& process : status.scan.processes) {
        if (process.libraries.empty()) {
            continue;
        }
        ProcessExposure assessed = assess_process(status, process, advisories, supersessions);
        for (const MappedLibrary& library : process.libraries) {
            if (advisories == nullptr || exposure.builds.contains(library.build_id)) {
                continue;
            }
            if (auto found = advisories->builds.find(library.build_id);
                found != advisories->builds.end()) {
                exposure.builds.emplace(found->first, found->second);
            }
        }
        add_to_summary(assessed, exposure.summary);
        exposure.processes.emplace(process.info.pid, std::move(assessed));
    }
    return exposure;
}

bool any_exposed(const Exposure& exposure) {
    return exposure.summary.exposed > 0 || exposure.summary.needs_restart > 0;
}

}  // namespace suture
