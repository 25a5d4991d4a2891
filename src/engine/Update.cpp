#include "engine/Update.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <thread>

#include "engine/CrashLock.h"
#include "engine/Policy.h"
#include "engine/PolicyFacts.h"
#include "proc/Process.h"
#include "state/HostLock.h"
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
    if (!report.dry_run) {
        records.wrote("the patchsets seen", database.record_patchsets(rows));
    }
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
// apply by hand): adopt it, so intent matches memory. Its history entry
// names the feed that offers `candidate` in this run (memory cannot say
// where the patch came from).
void adopt(Records& records, StateDatabase& database, const UpdateAction& action,
           const std::string& executable, const UsablePatch& candidate, std::uint32_t level) {
    const PatchMetadata& metadata = candidate.patch.metadata;
    std::string name = record_name("adopt", action.process, metadata.patch_id, level);
    records.wrote(name, database.record_application({.process = action.process,
                                                     .executable = executable,
                                                     .build_id = metadata.target_build_id,
                                                     .patch_id = metadata.patch_id,
                                                     .level = level,
                                                     .state = ApplicationState::active,
                                                     .unit = systemd_unit(action.process.pid)}));
    records.wrote(name + " (history)",
                  database.log({.action = HistoryAction::adopt,
                                .process = action.process,
                                .patch_id = metadata.patch_id,
                                .level = level,
                                .outcome = HistoryOutcome::ok,
                                .message = "found active in memory",
                                .targets_version = targets_version_of(candidate.cached),
                                .signing_keys = candidate.cached.signing_keys}));
}

// The crash lockfile of one run (engine/CrashLock.h).
class CrashGuard {
  public:
    CrashGuard(std::string path, std::string boot_id)
        : path_(std::move(path)), boot_id_(std::move(boot_id)) {}

    // At the start: a lock of this boot whose watch is over is removed
    // (unless dry); one of another boot holds its patches in `context`.
    Result<void> load(const Policy& policy, RunContext& context, bool dry_run) {
        auto lock = read_crash_lock(path_);
        if (!lock) {
            return tl::unexpected(lock.error());
        }
        lock_ = std::move(*lock);
        if (!lock_) {
            return {};
        }
        if (lock_->boot_id != boot_id_) {
            foreign_ = true;
            context.crash_locked = lock_->patches;
            context.crash_locked_at = lock_->at;
            return {};
        }
        if (context.now >= lock_->at + policy.watch_seconds && !dry_run) {
            lock_.reset();
            return remove_crash_lock(path_);
        }
        return {};
    }

    // Before an apply: the lock names (patch id, level) on disk, so a host
    // that goes down right after the apply finds it at boot. A lock of
    // another boot is left as it is (it holds until released).
    void cover(const std::string& patch_id, std::uint32_t level, std::time_t now) {
        if (foreign_ || (lock_ && lock_->patches.contains({patch_id, level}))) {
            return;
        }
        if (!lock_) {
            lock_ = CrashLock{.boot_id = boot_id_, .at = now};
        }
        lock_->patches.insert({patch_id, level});
        if (auto written = write_crash_lock(path_, *lock_); !written) {
            problems_.push_back("crash lock not written: " + written.error().message);
        }
    }
    const std::vector<std::string>& problems() const { return problems_; }

  private:
    std::string path_;
    std::string boot_id_;
    std::optional<CrashLock> lock_;
    bool foreign_ = false;
    std::vector<std::string> problems_;
};

// What one run decides with, besides the pair at hand.
struct Run {
    Engine& engine;
    Records& records;
    const StatusReport& status;
    const Exclusions& exclusions;
    const KnownApplications& known;
    const UpdateOptions& options;
    const Policy& policy;
    const RunContext& context;
    const ApprovedPatches& approved;
    const AdvisoryData& advisories;
    CrashGuard& crash;
};

// The rule holding an `apply` back, or nullopt.
std::optional<Hold> hold_of(const Run& run, const UsablePatch& candidate, Severity severity) {
    const PatchMetadata& metadata = candidate.patch.metadata;
    bool approved = run.approved.contains({metadata.patch_id, metadata.level});
    return held_back(facts_of(candidate, severity), run.options.selection, run.policy,
                     run.context, approved);
}

// A dry run's outcome for a decision: what a real run would do.
void describe(const Decision& decision, UpdateAction& action) {
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
            action.outcome = ActionOutcome::would_adopt;
            action.level = decision.level;
            break;
        case Verdict::apply:
            action.outcome = ActionOutcome::would_apply;
            action.message = "from " + action.remote;
            break;
    }
}

// Step: decide about one pair and act on it (or, in a dry run, say what
// would be done), but for an apply: `to_apply` is set, and
// decide_process gathers the process's pairs to apply in one stop.
UpdateAction act_on(const Run& run, const Work& item, bool& to_apply) {
    const ProcessInfo& info = item.process->info;
    const UsablePatch& candidate = *item.candidate;
    const PatchMetadata& metadata = candidate.patch.metadata;
    Severity severity = severity_of(candidate, run.advisories);
    UpdateAction action{.process = {info.pid, info.start_time},
                        .comm = info.comm,
                        .patch_id = metadata.patch_id,
                        .level = metadata.level,
                        .severity = std::string(severity_name(severity)),
                        .remote = candidate.cached.remote};
    auto in_memory = run.status.patches.find(info.pid);
    UpdateSubject subject{
        .process = action.process,
        .place = place_of(info.pid, run.exclusions),
        .is_self = info.pid == ::getpid(),
        .in_memory = in_memory == run.status.patches.end() ? nullptr : &in_memory->second};
    Decision decision = decide(subject, metadata, run.exclusions, run.known);
    if (decision.verdict == Verdict::apply) {
        if (auto hold = hold_of(run, candidate, severity)) {
            action.outcome = ActionOutcome::held;
            action.reason = hold->rule;
            action.message = hold->message;
            return action;
        }
    }
    if (run.options.dry_run) {
        describe(decision, action);
        to_apply = decision.verdict == Verdict::apply;  // for the canary plan
        return action;
    }
    switch (decision.verdict) {
        case Verdict::exclude:
        case Verdict::already:
            describe(decision, action);
            break;
        case Verdict::adopt:
            action.outcome = ActionOutcome::adopted;
            action.level = decision.level;
            adopt(run.records, *run.records.database(), action, subject.place.executable,
                  candidate, decision.level);
            break;
        case Verdict::apply:
            run.crash.cover(metadata.patch_id, metadata.level, run.context.now);
            to_apply = true;
            break;
    }
    return action;
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

// Is an action's patch in effect in its process, or about to be (a real
// run's apply is still `failed` until it is recorded: `to_apply` says so)?
bool in_effect(const UpdateAction& action, bool to_apply) {
    switch (action.outcome) {
        case ActionOutcome::already:
        case ActionOutcome::adopted:
        case ActionOutcome::would_apply:
        case ActionOutcome::would_adopt:
            return true;
        default:
            return to_apply;
    }
}

// The action for a candidate that a cumulative patch in effect supersedes:
// `held`, reason `superseded` (docs/operator-guide.md, "Cumulative
// patches"). Where the superseded patch is active, the cumulative one's
// apply replaces it in its stop (Injector.h, apply_patch step 2).
UpdateAction superseded_action(const Run& run, const Work& item, const UsablePatch& by,
                               bool by_applies) {
    const ProcessInfo& info = item.process->info;
    const UsablePatch& candidate = *item.candidate;
    const PatchMetadata& metadata = candidate.patch.metadata;
    std::string by_name =
        by.patch.metadata.patch_id + " level " + std::to_string(by.patch.metadata.level);
    bool active = false;
    if (auto in_memory = run.status.patches.find(info.pid); in_memory != run.status.patches.end()) {
        active = std::any_of(in_memory->second.begin(), in_memory->second.end(),
                             [&](const AppliedPatch& applied) {
                                 return applied.state == PatchState::active &&
                                        applied.marker.patch_id == metadata.patch_id &&
                                        applied.marker.target_build_id == metadata.target_build_id;
                             });
    }
    bool replacing = active && by_applies;
    return {.process = {info.pid, info.start_time},
            .comm = info.comm,
            .patch_id = metadata.patch_id,
            .level = metadata.level,
            .outcome = ActionOutcome::held,
            .reason = "superseded",
            .message = "superseded by " + by_name + ", which carries its fix" +
                       (replacing ? "; active here, replaced by it in this update"
                        : active  ? "; still active here"
                                  : ""),
            .severity = std::string(severity_name(severity_of(candidate, run.advisories))),
            .remote = candidate.cached.remote};
}

// Step: the pairs of one process (`items`, all naming it), decided one by
// one, each with an action appended to `report` (in the items' order); the
// job of those to apply (none: nothing to apply). A candidate that another
// candidate in effect supersedes is not decided but `held` (superseded);
// the superseding one is decided first (resolve_supersedes).
std::optional<ProcessJob> decide_process(const Run& run, std::span<const Work> items,
                                         UpdateReport& report) {
    std::vector<SupersedeKey> keys;
    for (const Work& item : items) {
        keys.push_back(supersede_key(*item.candidate));
    }
    std::vector<UpdateAction> actions(items.size());
    std::vector<bool> to_apply(items.size(), false);
    auto superseded = resolve_supersedes(keys, [&](std::size_t i) {
        bool apply = false;
        actions[i] = act_on(run, items[i], apply);
        to_apply[i] = apply;
        return in_effect(actions[i], apply);
    });
    ProcessJob job;
    for (std::size_t i = 0; i < items.size(); ++i) {
        if (superseded[i]) {
            std::size_t by = *superseded[i];
            bool by_applies = to_apply[by] || actions[by].outcome == ActionOutcome::would_apply;
            actions[i] = superseded_action(run, items[i], *items[by].candidate, by_applies);
        }
        report.actions.push_back(std::move(actions[i]));
        if (to_apply[i]) {
            job.actions.push_back(report.actions.size() - 1);
            job.candidates.push_back(items[i].candidate);
            job.patches.push_back(&items[i].candidate->patch);
        }
    }
    if (job.candidates.empty()) {
        return std::nullopt;
    }
    job.pid = items.front().process->info.pid;
    job.executable = place_of(job.pid, run.exclusions).executable;
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

// Canaries inside the host (suture.conf canary_seconds): the jobs of each
// (executable, systemd unit) split into one canary, applied first, and the
// rest, applied once the canary has run canary_seconds without crashing.
// A group of one has nothing to protect: it goes with the canaries, its
// phase "" (it is not one).
struct CanaryPlan {
    std::vector<ProcessJob> first;  // the canaries, and groups of one
    std::vector<ProcessJob> rest;
    std::size_t canaries = 0;  // groups of more than one process (0: no wait)
};

// Step: each action of `job` says its phase ("canary", "after_canary").
void mark_phase(const ProcessJob& job, const std::string& phase, UpdateReport& report) {
    for (std::size_t index : job.actions) {
        report.actions[index].phase = phase;
    }
}

CanaryPlan plan_canaries(std::vector<ProcessJob> jobs, UpdateReport& report) {
    using Group = std::pair<std::string, std::string>;
    std::vector<Group> group_of;
    std::map<Group, std::size_t> sizes;
    for (const ProcessJob& job : jobs) {
        group_of.push_back({job.executable, systemd_unit(job.pid)});
        ++sizes[group_of.back()];
    }
    CanaryPlan plan;
    std::set<Group> started;
    for (std::size_t i = 0; i < jobs.size(); ++i) {
        bool alone = sizes[group_of[i]] == 1;
        bool canary = !alone && started.insert(group_of[i]).second;
        plan.canaries += canary ? 1 : 0;
        mark_phase(jobs[i], alone ? "" : canary ? "canary" : "after_canary", report);
        (alone || canary ? plan.first : plan.rest).push_back(std::move(jobs[i]));
    }
    return plan;
}

// A dry run's canary plan: the phase each would-be apply would have, and
// how many groups would have a canary (what a real run then does).
void describe_canaries(std::vector<ProcessJob> jobs, const Policy& policy, UpdateReport& report) {
    if (policy.canary_seconds > 0) {
        report.canaries = plan_canaries(std::move(jobs), report).canaries;
    }
}

// Step: the canaries watched for canary_seconds (the engine's health
// watch, opened here if sutured has not: the update holds the operation
// lock, so only this engine can act on a crash meanwhile); returns what
// the watch quarantined, patch id -> message.
std::map<std::string, std::string> watch_canaries(Engine& engine, std::uint32_t seconds,
                                                  const InjectOptions& inject,
                                                  UpdateReport& report) {
    std::map<std::string, std::string> quarantined;
    if (auto opened = engine.open_health_watch(); !opened) {
        report.problems.push_back("canaries not watched: " + opened.error().message);
        return quarantined;
    }
    for (const CrashOutcome& crash : engine.watch_health(std::chrono::seconds(seconds), inject)) {
        for (const Quarantine& row : crash.quarantined) {
            quarantined[row.patch_id] = row.message;
        }
        report.crashes.push_back(crash);
    }
    return quarantined;
}

// Step: the patches the canaries' watch quarantined taken out of the other
// jobs (their actions `held`, reason quarantined); a job left with nothing
// is dropped, so its process is never stopped.
void hold_quarantined(std::vector<ProcessJob>& jobs,
                      const std::map<std::string, std::string>& quarantined,
                      UpdateReport& report) {
    for (ProcessJob& job : jobs) {
        for (std::size_t i = job.candidates.size(); i-- > 0;) {
            auto found = quarantined.find(job.candidates[i]->patch.metadata.patch_id);
            if (found == quarantined.end()) {
                continue;
            }
            UpdateAction& action = report.actions[job.actions[i]];
            action.outcome = ActionOutcome::held;
            action.reason = "quarantined";
            action.message = "its canary crashed: " + found->second;
            job.candidates.erase(job.candidates.begin() + static_cast<std::ptrdiff_t>(i));
            job.patches.erase(job.patches.begin() + static_cast<std::ptrdiff_t>(i));
            job.actions.erase(job.actions.begin() + static_cast<std::ptrdiff_t>(i));
        }
    }
    std::erase_if(jobs, [](const ProcessJob& job) { return job.patches.empty(); });
}

// Step: each job's outcomes recorded, in order, from this thread alone (an
// automatic run's applies say so: the audit report tells the timer's and
// sutured's from an operator's).
void record_jobs(Engine& engine, Records& records, std::vector<ProcessJob>& jobs,
                 UpdateReport& report) {
    for (ProcessJob& job : jobs) {
        auto results = engine.record_applied(job.pid, job.patches, job.applied, records);
        for (std::size_t i = 0; i < job.candidates.size(); ++i) {
            const UsablePatch& candidate = *job.candidates[i];
            std::string origin = "from " + candidate.cached.remote +
                                 (report.automatic ? " (automatic)" : "");
            record_apply(records, candidate, job.executable, origin,
                         report.actions[job.actions[i]], results[i]);
        }
    }
}

// Step: the health checks watching the jobs' processes run once (their
// state before the apply), then the jobs applied and recorded: all at
// once, or (canary_seconds) one process per executable and unit first,
// recorded (the watch blames from the records) and watched, then the rest
// without what a canary's crash quarantined.
void apply_and_record(Engine& engine, Records& records, std::vector<ProcessJob> jobs,
                      const Policy& policy, const UpdateOptions& options, UpdateReport& report) {
    unsigned parallel = options.parallel != 0 ? options.parallel
                                              : std::max(1U, std::thread::hardware_concurrency());
    std::vector<int> pids;
    for (const ProcessJob& job : jobs) {
        pids.push_back(job.pid);
    }
    for (std::string& problem : engine.run_health_baselines(pids)) {
        report.problems.push_back(std::move(problem));
    }
    if (policy.canary_seconds == 0) {
        apply_jobs(jobs, options.inject, parallel);
        record_jobs(engine, records, jobs, report);
        return;
    }
    CanaryPlan plan = plan_canaries(std::move(jobs), report);
    apply_jobs(plan.first, options.inject, parallel);
    record_jobs(engine, records, plan.first, report);
    report.canaries = plan.canaries;
    if (plan.canaries > 0) {
        auto quarantined = watch_canaries(engine, policy.canary_seconds, options.inject, report);
        hold_quarantined(plan.rest, quarantined, report);
    }
    apply_jobs(plan.rest, options.inject, parallel);
    record_jobs(engine, records, plan.rest, report);
}

// Step: close out what the database believes active in processes now gone
// (a reused PID has another start time, so it does not count as alive).
void close_exited(const StatusReport& status,
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
        close_application(records, application, "", "the process exited");
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
        idle = idle && (action.outcome == ActionOutcome::already ||
                        action.outcome == ActionOutcome::held);
    }
    return idle;
}

std::size_t count_held(const UpdateReport& report) {
    return std::count_if(report.actions.begin(), report.actions.end(), [](const UpdateAction& a) {
        return a.outcome == ActionOutcome::held;
    });
}

// The report's summary of the policy's view.
void describe_policy(const Policy& policy, const RunContext& context, UpdateReport& report) {
    report.automatic = context.automatic;
    report.policy_time = context.now;
    bool inside = std::any_of(policy.windows.begin(), policy.windows.end(),
                              [&](const Window& window) { return in_window(window, context.local); });
    report.window = policy.windows.empty() ? "none" : inside ? "inside" : "outside";
    if (context.has_bucket) {
        report.rollout_bucket = context.bucket;
    }
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
    // refused rather than applying the same patches again. A dry run changes
    // nothing, so it neither waits nor blocks anyone.
    std::shared_ptr<HostLock> lock;
    if (!options.dry_run) {
        auto held = engine.hold_operation_lock();
        if (!held) {
            return tl::unexpected(held.error());
        }
        lock = std::move(*held);
    }
    auto database = engine.state();
    if (!database) {
        return tl::unexpected(database.error());
    }
    StateDatabase& state = **database;
    UpdateReport report;
    report.dry_run = options.dry_run;
    // Every write of the run, checked; the lost ones end in the report. A
    // dry run writes none.
    Records records(&state);
    auto finish = [&] {
        records.commit();
        report.lost_records = records.lost();
        return report;
    };
    // 1. The global switch.
    if (switched_off(state)) {
        report.enabled = false;
        if (!options.dry_run) {
            records.wrote("the update (history)", state.log({.action = HistoryAction::update,
                                                             .outcome = HistoryOutcome::skipped,
                                                             .reason = "disabled",
                                                             .message = "suture is disabled"}));
        }
        return finish();
    }
    // 2. The policy (suture.conf) and the circumstances it looks at.
    auto policy = load_policy(engine.feed_options().config_directory);
    if (!policy) {
        return tl::unexpected(policy.error());
    }
    RunContext context = run_context(options.automatic);
    CrashGuard crash(crash_lock_path(engine.state_database_path()), current_boot_id());
    if (auto loaded = crash.load(*policy, context, options.dry_run); !loaded) {
        return tl::unexpected(loaded.error());
    }
    describe_policy(*policy, context, report);
    // 3. The feeds, then what their caches offer.
    if (options.refresh && !options.dry_run) {
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
    AdvisoryData advisories = load_advisories(engine.feed_options());
    // 4. Every process, matched against the candidates.
    StatusReport status = engine.status();
    report.processes_examined = status.scan.processes_examined;
    std::vector<Work> work = match(status, *candidates, report);
    // 5. Decide and act, pair by pair.
    auto active = state.applications(ApplicationState::active);
    if (!active) {
        return tl::unexpected(active.error());
    }
    auto approved = approved_patches(state);
    if (!approved) {
        return tl::unexpected(approved.error());
    }
    // Never a quarantined patch (HealthWatch.cpp), whatever the run.
    auto quarantined = quarantined_patches(state);
    if (!quarantined) {
        return tl::unexpected(quarantined.error());
    }
    context.quarantined = std::move(*quarantined);
    KnownApplications known = known_applications(*active);
    Run run{engine,  records,  status,    excluded,   known, options,
            *policy, context,  *approved, advisories, crash};
    if (!options.dry_run) {
        records.start_batches();
    }
    std::vector<ProcessJob> jobs;
    for (std::size_t begin = 0; begin < work.size();) {
        std::size_t end = begin + 1;
        while (end < work.size() && work[end].process == work[begin].process) {
            ++end;
        }
        auto job = decide_process(run, std::span(work).subspan(begin, end - begin), report);
        if (job) {
            jobs.push_back(std::move(*job));
        }
        begin = end;
    }
    if (options.dry_run) {
        describe_canaries(std::move(jobs), *policy, report);
    } else {
        apply_and_record(engine, records, std::move(jobs), *policy, options, report);
    }
    if (progress) {
        progress(report.actions.size(), work.size());
    }
    report.problems.insert(report.problems.end(), crash.problems().begin(),
                           crash.problems().end());
    if (options.dry_run) {
        return finish();
    }
    // 6. Records of processes that are gone.
    close_exited(status, *active, records, report);
    // 7. Retired regions no thread refers to any more, and empty regions.
    release_retired(status, report);
    remove_empty(status, report);
    // 8. The run itself, in the history.
    if (options.log_idle_runs || !did_nothing(report)) {
        std::size_t held = count_held(report);
        records.wrote("the update (history)",
                      state.log({.action = HistoryAction::update,
                                 .outcome = HistoryOutcome::ok,
                                 .message = std::to_string(report.actions.size() - held) +
                                            " action(s)" +
                                            (held ? ", " + std::to_string(held) + " held back" : "") +
                                            (context.automatic ? " (automatic)" : "")}));
    }
    return finish();
}

}  // namespace suture
