#include "engine/Update.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <optional>
#include <thread>
#include <span>

#include "proc/Process.h"
#include "state/StateDatabase.h"

namespace suture {

namespace {

using Candidates = std::map<std::string, std::vector<UsablePatch>>;

// One (process, candidate) pair to decide about.
struct Work {
    const ProcessReport* process;
    const UsablePatch* candidate;
};

bool switched_off(StateDatabase& database) {
    auto enabled = database.setting("enabled");
    return enabled && enabled->has_value() && **enabled == "false";
}

// Step: refresh every remote, each result in the history.
Result<void> refresh_feeds(Engine& engine, StateDatabase& database, Records& records,
                           UpdateReport& report) {
    auto refreshes = engine.refresh_feeds();
    if (!refreshes) {
        return tl::unexpected(refreshes.error());
    }
    report.refreshes = std::move(*refreshes);
    for (const RemoteRefresh& refresh : report.refreshes) {
        records.wrote("refresh of remote " + refresh.remote + " (history)", database.log(
            {.action = HistoryAction::refresh,
             .outcome = refresh.result ? HistoryOutcome::ok : HistoryOutcome::failed,
             .reason = refresh.result ? "" : error_code_name(refresh.result.error().code),
             .message =
                 refresh.result ? "remote " + refresh.remote : refresh.result.error().message}));
    }
    return {};
}

// Step: what the cache offers, recorded as the patchsets the update saw.
Result<Candidates> load_candidates(Engine& engine, StateDatabase& database, Records& records,
                                   UpdateReport& report) {
    auto cached = engine.list_feeds();
    if (!cached) {
        return tl::unexpected(cached.error());
    }
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
        rows.push_back({.remote = target.remote,
                        .name = target.target.name,
                        .patch_id = info.patch_id,
                        .level = info.level,
                        .build_id = info.build_id,
                        .sha256 = target.target.sha256,
                        .cves = cves,
                        .usable = target.usable});
    }
    records.wrote("the patchsets seen", database.record_patchsets(rows));
    Candidates candidates = load_usable_patches(*cached, report.problems);
    for (const auto& [build_id, patches] : candidates) {
        report.patchsets += patches.size();
    }
    return candidates;
}

// Step: every (process, candidate) pair whose build ID matches.
std::vector<Work> match(const StatusReport& status, const Candidates& candidates,
                        UpdateReport& report) {
    std::vector<Work> work;
    for (const ProcessReport& process : status.scan.processes) {
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
    return work;
}

KnownApplications known_applications(const std::vector<Application>& active) {
    KnownApplications known;
    for (const Application& application : active) {
        known.insert({application.process.pid, application.process.start_time,
                      application.patch_id, application.level});
    }
    return known;
}

// In memory but not in the database (a lost database, a lost record, or an
// apply by hand): adopt it, so intent matches memory.
void adopt(Records& records, StateDatabase& database, const UpdateAction& action,
           const std::string& executable, const PatchMetadata& metadata, std::uint32_t level) {
    std::string name = record_name("adopt", action.process, metadata.patch_id, level);
    records.wrote(name, database.record_application({.process = action.process,
                                                     .executable = executable,
                                                     .build_id = metadata.target_build_id,
                                                     .patch_id = metadata.patch_id,
                                                     .level = level,
                                                     .state = ApplicationState::active}));
    records.wrote(name + " (history)", database.log({.action = HistoryAction::adopt,
                                                     .process = action.process,
                                                     .patch_id = metadata.patch_id,
                                                     .level = level,
                                                     .outcome = HistoryOutcome::ok,
                                                     .message = "found active in memory"}));
}

// Step: decide about one pair and act on it, but for an apply: true when
// the pair is to be applied (act_on_process applies a process's pairs
// together).
bool act_on(Records& records, const StatusReport& status, const Work& item,
            const Exclusions& exclusions, const KnownApplications& known, UpdateAction& action) {
    StateDatabase& database = *records.database();
    const ProcessInfo& info = item.process->info;
    const PatchMetadata& metadata = item.candidate->patch.metadata;
    action = UpdateAction{.process = {info.pid, info.start_time},
                          .comm = info.comm,
                          .patch_id = metadata.patch_id,
                          .level = metadata.level};
    auto in_memory = status.patches.find(info.pid);
    UpdateSubject subject{
        .process = action.process,
        .place = place_of(info.pid, exclusions),
        .is_self = info.pid == ::getpid(),
        .in_memory = in_memory == status.patches.end() ? nullptr : &in_memory->second};
    Decision decision = decide(subject, metadata, exclusions, known);
    switch (decision.verdict) {
        case Verdict::exclude:
            action.outcome = ActionOutcome::excluded;
            action.message = decision.why;
            break;
        case Verdict::already:
            action.outcome = ActionOutcome::already;
            action.level = decision.level;
            break;
        case Verdict::adopt:
            action.outcome = ActionOutcome::adopted;
            action.level = decision.level;
            adopt(records, database, action, subject.place.executable, metadata, decision.level);
            break;
        case Verdict::apply:
            return true;
    }
    return false;
}

// The pairs of one process to apply, in one stop: the candidates, the
// indices of their actions in the report, and, once applied, the outcomes.
struct ProcessJob {
    int pid = 0;
    std::string executable;
    std::vector<const UsablePatch*> candidates;
    std::vector<const PatchFile*> patches;
    std::vector<std::size_t> actions;  // into report.actions
    std::vector<PatchApplication> applied;
};

// Step: the pairs of one process (`items`, all naming it), decided one by
// one, each with an action appended to `report`; the job of those to apply
// (none: nothing to apply).
std::optional<ProcessJob> decide_process(Records& records, const StatusReport& status,
                                         std::span<const Work> items,
                                         const Exclusions& exclusions,
                                         const KnownApplications& known, UpdateReport& report) {
    ProcessJob job;
    for (const Work& item : items) {
        UpdateAction action;
        if (act_on(records, status, item, exclusions, known, action)) {
            job.actions.push_back(report.actions.size());
            job.candidates.push_back(item.candidate);
            job.patches.push_back(&item.candidate->patch);
        }
        report.actions.push_back(std::move(action));
    }
    if (job.candidates.empty()) {
        return std::nullopt;
    }
    job.pid = items.front().process->info.pid;
    job.executable = place_of(job.pid, exclusions).executable;
    return job;
}

// Step: every job's patches applied (apply_patches: one stop per process),
// `parallel` processes at once, each on a thread of its own (a tracer per
// target: ptrace is per thread). Nothing here touches the engine or the
// state database.
void apply_jobs(std::vector<ProcessJob>& jobs, const InjectOptions& inject, unsigned parallel) {
    std::atomic<std::size_t> next{0};
    auto work = [&] {
        for (std::size_t i = next++; i < jobs.size(); i = next++) {
            jobs[i].applied = apply_patches(jobs[i].pid, jobs[i].patches, inject);
        }
    };
    std::size_t workers = std::min<std::size_t>(std::max(parallel, 1U), jobs.size());
    std::vector<std::thread> threads;
    for (std::size_t i = 1; i < workers; ++i) {
        threads.emplace_back(work);
    }
    work();
    for (std::thread& thread : threads) {
        thread.join();
    }
}

// Step: each job's outcomes recorded, in order, from this thread alone.
void record_jobs(Engine& engine, Records& records, std::vector<ProcessJob>& jobs,
                 UpdateReport& report) {
    for (ProcessJob& job : jobs) {
        auto results = engine.record_applied(job.pid, job.patches, job.applied, records);
        for (std::size_t i = 0; i < job.candidates.size(); ++i) {
            const UsablePatch& candidate = *job.candidates[i];
            record_apply(records, candidate, job.executable, "from " + candidate.cached.remote,
                         report.actions[job.actions[i]], results[i]);
        }
    }
}

// Step: close out what the database believes active in processes now gone
// (a reused PID has another start time, so it does not count as alive).
void close_exited(StateDatabase& database, const StatusReport& status,
                  const std::vector<Application>& active, Records& records,
                  UpdateReport& report) {
    std::set<std::pair<int, std::uint64_t>> alive;
    for (const ProcessReport& process : status.scan.processes) {
        alive.insert({process.info.pid, process.info.start_time});
    }
    for (const Application& application : active) {
        bool exists = alive.contains({application.process.pid, application.process.start_time});
        if (!exists) {
            auto info = read_process_info(application.process.pid);
            exists = info && info->start_time == application.process.start_time;
        }
        if (exists) {
            continue;
        }
        std::string name =
            record_name("close", application.process, application.patch_id, application.level);
        records.wrote(name, database.set_application_state(application.id, ApplicationState::exited));
        records.wrote(name + " (history)", database.log({.action = HistoryAction::close,
                                                         .process = application.process,
                                                         .patch_id = application.patch_id,
                                                         .level = application.level,
                                                         .outcome = HistoryOutcome::ok,
                                                         .message = "the process exited"}));
        ++report.closed;
    }
}

// Step: regions of earlier reverts still mapped because a thread was running
// in them are unmapped once no thread refers to them (one short stop per
// process that has any; the daemon's rescan runs this step too).
void release_retired(const StatusReport& status, UpdateReport& report) {
    for (const auto& [pid, patches] : status.patches) {
        bool any_retired = std::any_of(patches.begin(), patches.end(), [](const AppliedPatch& patch) {
            return patch.state == PatchState::retired;
        });
        if (!any_retired) {
            continue;
        }
        if (auto released = release_retired_regions(pid)) {
            report.released_regions += *released;
        }
    }
}

// Step: the empty regions applies killed right after their mmap left are
// unmapped, as a revert would (one short stop per process that has any).
void remove_empty(const StatusReport& status, UpdateReport& report) {
    for (const auto& [pid, patches] : status.patches) {
        bool any_empty = std::any_of(patches.begin(), patches.end(), [](const AppliedPatch& patch) {
            return patch.state == PatchState::empty;
        });
        if (!any_empty) {
            continue;
        }
        if (auto removed = remove_empty_regions(pid)) {
            report.removed_empty_regions += *removed;
        } else {
            report.problems.push_back("pid " + std::to_string(pid) +
                                      ": empty region left in place: " + removed.error().message);
        }
    }
}

bool did_nothing(const UpdateReport& report) {
    bool idle = report.closed == 0 && report.released_regions == 0 &&
                report.removed_empty_regions == 0;
    for (const UpdateAction& action : report.actions) {
        idle = idle && action.outcome == ActionOutcome::already;
    }
    return idle;
}

}  // namespace

Decision decide(const UpdateSubject& subject, const PatchMetadata& candidate,
                const Exclusions& exclusions, const KnownApplications& known) {
    if (subject.is_self) {
        return {.verdict = Verdict::exclude, .why = "suture never patches itself"};
    }
    if (auto excluded = exclusions.reason(subject.place)) {
        return {.verdict = Verdict::exclude, .why = *excluded};
    }
    const AppliedPatch* present = nullptr;
    if (subject.in_memory != nullptr) {
        for (const AppliedPatch& applied : *subject.in_memory) {
            if (applied.marker.patch_id == candidate.patch_id &&
                applied.state == PatchState::active && applied.marker.level >= candidate.level) {
                present = &applied;
            }
        }
    }
    if (present == nullptr) {
        return {.verdict = Verdict::apply};
    }
    std::uint32_t level = present->marker.level;
    bool recorded = known.contains(
        {subject.process.pid, subject.process.start_time, candidate.patch_id, level});
    return {.verdict = recorded ? Verdict::already : Verdict::adopt, .level = level};
}

Result<UpdateReport> run_update(Engine& engine, const UpdateOptions& options,
                                const UpdateProgress& progress) {
    // One update at a time per host (HostLock.h): a second one waits or is
    // refused rather than applying the same patches again.
    auto lock = engine.hold_operation_lock();
    if (!lock) {
        return tl::unexpected(lock.error());
    }
    auto database = engine.state();
    if (!database) {
        return tl::unexpected(database.error());
    }
    StateDatabase& state = **database;
    UpdateReport report;
    // Every write of the run, checked; the lost ones end in the report.
    Records records(&state);
    auto finish = [&] {
        records.commit();
        report.lost_records = records.lost();
        return report;
    };
    // 1. The global switch.
    if (switched_off(state)) {
        report.enabled = false;
        records.wrote("the update (history)", state.log({.action = HistoryAction::update,
                                                         .outcome = HistoryOutcome::skipped,
                                                         .reason = "disabled",
                                                         .message = "suture is disabled"}));
        return finish();
    }
    // 2. The feeds, then what their caches offer.
    if (options.refresh) {
        if (auto refreshed = refresh_feeds(engine, state, records, report); !refreshed) {
            return tl::unexpected(refreshed.error());
        }
    }
    auto candidates = load_candidates(engine, state, records, report);
    if (!candidates) {
        return tl::unexpected(candidates.error());
    }
    auto exclusions = state.exclusions();
    if (!exclusions) {
        // Patching without knowing what must not be touched is not an option.
        return tl::unexpected(exclusions.error());
    }
    Exclusions excluded = Exclusions::from(*exclusions);
    // 3. Every process, matched against the candidates.
    StatusReport status = engine.status();
    report.processes_examined = status.scan.processes_examined;
    std::vector<Work> work = match(status, *candidates, report);
    // 4. Decide and act, pair by pair.
    auto active = state.applications(ApplicationState::active);
    if (!active) {
        return tl::unexpected(active.error());
    }
    KnownApplications known = known_applications(*active);
    records.start_batches();
    std::vector<ProcessJob> jobs;
    for (std::size_t begin = 0; begin < work.size();) {
        std::size_t end = begin + 1;
        while (end < work.size() && work[end].process == work[begin].process) {
            ++end;
        }
        auto job = decide_process(records, status, std::span(work).subspan(begin, end - begin),
                                  excluded, known, report);
        if (job) {
            jobs.push_back(std::move(*job));
        }
        begin = end;
    }
    unsigned parallel = options.parallel != 0 ? options.parallel
                                              : std::max(1U, std::thread::hardware_concurrency());
    apply_jobs(jobs, options.inject, parallel);
    record_jobs(engine, records, jobs, report);
    if (progress) {
        progress(report.actions.size(), work.size());
    }
    // 5. Records of processes that are gone.
    close_exited(state, status, *active, records, report);
    // 6. Retired regions no thread refers to any more, and empty regions.
    release_retired(status, report);
    remove_empty(status, report);
    // 7. The run itself, in the history.
    if (options.log_idle_runs || !did_nothing(report)) {
        records.wrote("the update (history)",
                      state.log({.action = HistoryAction::update,
                                 .outcome = HistoryOutcome::ok,
                                 .message = std::to_string(report.actions.size()) + " action(s)"}));
    }
    return finish();
}

}  // namespace suture
