#include "engine/NewProcesses.h"

#include <unistd.h>

#include "base/Log.h"
#include "elf/DependencyClosure.h"
#include "engine/CrashLock.h"
#include "engine/PolicyFacts.h"
#include "inject/EntryGate.h"
#include "proc/Process.h"

namespace suture {

namespace {

// A crash lock of another boot (engine/CrashLock.h) holds its patches back
// from new processes as from every automatic run: after a hard reset within
// watch_seconds of an apply, sutured's exec gate must not reapply at once
// what its first offline update holds back. One of this boot holds nothing.
Result<void> note_crash_lock(const std::string& state_database, RunContext& context) {
    auto lock = read_crash_lock(crash_lock_path(state_database));
    if (!lock) {
        return tl::unexpected(lock.error());
    }
    if (*lock && (*lock)->boot_id != current_boot_id()) {
        context.crash_locked = (*lock)->patches;
        context.crash_locked_at = (*lock)->at;
    }
    return {};
}

// A process held at its entry point, released when this goes out of scope
// (on every path: excluded, gone, timed out, patched).
class Park {
  public:
    explicit Park(std::optional<ParkedProcess> parked) : parked_(std::move(parked)) {}
    ~Park() { release(); }
    Park(const Park&) = delete;
    Park& operator=(const Park&) = delete;

    bool held() const { return parked_.has_value(); }
    const ParkedProcess& process() const { return *parked_; }

    // Into main(). A failure is logged: the next rescan's release_abandoned
    // finds the process again.
    void release() {
        if (!parked_) {
            return;
        }
        if (auto released = release_parked(*parked_); !released) {
            log::error("new process: cannot release pid " + std::to_string(parked_->pid) + ": " +
                       released.error().message);
        }
        parked_.reset();
    }

  private:
    std::optional<ParkedProcess> parked_;
};

}  // namespace

Result<void> NewProcessPatcher::reload() {
    auto cached = engine_.list_feeds();
    if (!cached) {
        return tl::unexpected(cached.error());
    }
    std::vector<std::string> problems;
    patches_ = load_usable_patches(*cached, problems);
    auto enabled = engine_.enabled();
    enabled_ = !enabled || *enabled;
    return hold_back_by_policy();
}

// sutured's runs are automatic: a new process gets what an automatic run
// would apply now (the policy of suture.conf and the crash lock, with the
// same rule that a patch the host already applied is never held back by the
// clock or the rollout). The next reload (every rescan) looks again.
Result<void> NewProcessPatcher::hold_back_by_policy() {
    auto policy = load_policy(engine_.feed_options().config_directory);
    if (!policy) {
        patches_.clear();  // no patch on a policy that cannot be read
        return tl::unexpected(policy.error());
    }
    auto database = engine_.state();
    auto approved = database ? approved_patches(**database) : Result<ApprovedPatches>(
                                                                   tl::unexpected(database.error()));
    if (!approved) {
        patches_.clear();
        return tl::unexpected(approved.error());
    }
    RunContext context = run_context(true);
    auto quarantined = quarantined_patches(**database);
    if (!quarantined) {
        patches_.clear();
        return tl::unexpected(quarantined.error());
    }
    context.quarantined = std::move(*quarantined);
    if (auto noted = note_crash_lock(engine_.state_database_path(), context); !noted) {
        patches_.clear();  // no patch on a crash lock that cannot be read
        return tl::unexpected(noted.error());
    }
    AdvisoryData advisories = load_advisories(engine_.feed_options());
    for (auto& [build_id, candidates] : patches_) {
        std::erase_if(candidates, [&](const UsablePatch& candidate) {
            const PatchMetadata& metadata = candidate.patch.metadata;
            bool known = approved->contains({metadata.patch_id, metadata.level});
            return held_back(facts_of(candidate, severity_of(candidate, advisories)), {}, *policy,
                             context, known)
                .has_value();
        });
        // A cumulative patch goes on instead of the ones it supersedes.
        drop_superseded(candidates);
    }
    return {};
}

// How the process's loader brings in libssl or libcrypto: the closure of
// its executable under its root and loader environment, computed once
// (ClosureCache) while the loader runs; none when /proc cannot tell.
OpensslReach NewProcessPatcher::needs_openssl(int pid) {
    auto inputs = loader_inputs_of_process(pid);
    auto route = inputs ? closures_.openssl_route(*inputs)
                        : Result<OpensslRoute>(tl::unexpected(inputs.error()));
    if (!route) {
        log::debug("new process: pid " + std::to_string(pid) + ": " + route.error().message);
        return OpensslReach::none;
    }
    return route->reach;
}

// Exclusions are read fresh (the process waits parked meanwhile), so a
// `suture exclude` takes effect for the very next process.
bool NewProcessPatcher::excluded(int pid) {
    auto rows = engine_.exclusions();
    if (!rows) {
        return false;
    }
    Exclusions exclusions = Exclusions::from(*rows);
    if (auto why = exclusions.reason(place_of(pid, exclusions))) {
        log::debug("new process: pid " + std::to_string(pid) + ": " + *why);
        return true;
    }
    return false;
}

std::vector<UpdateAction> NewProcessPatcher::apply_matching(const ProcessInfo& info,
                                                            const InjectOptions& options,
                                                            std::vector<std::string>& lost) {
    auto database = engine_.state();
    Records records(database ? *database : nullptr, database ? "" : database.error().message);
    std::vector<UpdateAction> actions;
    StatusReport status = engine_.status({info.pid});
    for (const ProcessReport& process : status.scan.processes) {
        for (const MappedLibrary& library : process.libraries) {
            auto found = patches_.find(library.build_id);
            if (found == patches_.end()) {
                continue;
            }
            for (const UsablePatch& candidate : found->second) {
                const PatchMetadata& metadata = candidate.patch.metadata;
                UpdateAction action{.process = {info.pid, info.start_time},
                                    .comm = info.comm,
                                    .patch_id = metadata.patch_id,
                                    .level = metadata.level};
                apply_and_record(engine_, records, candidate, options, "", "new process", action);
                actions.push_back(std::move(action));
            }
        }
    }
    lost = records.lost();
    return actions;
}

std::optional<NewProcessOutcome> NewProcessPatcher::on_exec(int pid, const InjectOptions& options) {
    ++statistics_.execs;
    // Only cheap, cached checks before parking: the loader is racing us.
    if (pid == ::getpid() || !enabled_ || patches_.empty()) {
        return std::nullopt;
    }
    OpensslReach reach = needs_openssl(pid);
    if (reach == OpensslReach::none) {
        return std::nullopt;
    }
    ++statistics_.candidates;
    ++(reach == OpensslReach::direct ? statistics_.direct : statistics_.transitive);
    // 1. Park it at its entry point (or find it past its loader already).
    auto parked = park_at_entry(pid);
    if (!parked) {
        log::debug("new process: " + parked.error().message);
        return std::nullopt;
    }
    Park park(std::move(*parked));
    if (!park.held()) {
        log::debug("new process: pid " + std::to_string(pid) + " is past its loader already");
    }
    // 2. Skip what is gone or excluded (released on return).
    auto info = read_process_info(pid);
    if (!info || excluded(pid)) {
        return std::nullopt;
    }
    // 3. Wait until the loader is done and it spins at its entry.
    NewProcessOutcome outcome{.pid = pid};
    if (park.held()) {
        if (auto ready = wait_until_parked(park.process(), std::chrono::seconds(5)); !ready) {
            log::warning("new process: " + ready.error().message);
            return std::nullopt;
        }
        outcome.parked = true;
        ++statistics_.parked;
    }
    // 4. Apply what matches the libraries it mapped, under the operation
    // lock, taken only now: parking is the race against the loader, and a
    // parked process waits at its entry without harm. The lock is never
    // waited for here (the daemon's lock_wait is 0): while another operation
    // holds it, the process is released unpatched, for the next update
    // (the daemon's rescan) to find.
    auto lock = engine_.hold_operation_lock();
    if (!lock) {
        log::info("new process: pid " + std::to_string(pid) +
                  " left to the next update: " + lock.error().message);
        return std::nullopt;
    }
    outcome.actions = apply_matching(*info, options, outcome.lost_records);
    // 5. Into main(), patched.
    park.release();
    bool any_applied = false;
    for (const UpdateAction& action : outcome.actions) {
        any_applied = any_applied || action.outcome == ActionOutcome::applied;
    }
    if (any_applied) {
        ++(outcome.parked ? statistics_.patched_before_main : statistics_.patched_late);
    }
    return outcome;
}

}  // namespace suture
