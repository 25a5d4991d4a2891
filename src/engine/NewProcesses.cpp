#include "engine/NewProcesses.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <filesystem>

#include "base/Log.h"
#include "elf/DependencyClosure.h"
#include "elf/ElfFile.h"
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

// A start held in its loader, parked at its entry point as well, for the
// patches whose callbacks cannot run inside the loader; nullopt (logged)
// if it cannot be: they are then applied while it runs.
std::optional<ParkedProcess> park_for_callbacks(int pid) {
    auto parked = park_at_entry(pid);
    if (!parked || !*parked) {
        log::debug("library load: pid " + std::to_string(pid) + " not parked for its callbacks" +
                   (parked ? std::string(": past its loader") : ": " + parked.error().message));
        return std::nullopt;
    }
    return std::move(**parked);
}

// A process claimed for one new-process path, released on every path out.
class Claim {
  public:
    Claim(ProcessClaims& claims, int pid) : claims_(claims), pid_(pid), held_(claims.claim(pid)) {}
    ~Claim() {
        if (held_) {
            claims_.release(pid_);
        }
    }
    Claim(const Claim&) = delete;
    Claim& operator=(const Claim&) = delete;
    bool held() const { return held_; }

  private:
    ProcessClaims& claims_;
    int pid_;
    bool held_;
};

// The claim a library-open watcher took, released when this goes out of
// scope (after the held thread).
class TakenClaim {
  public:
    TakenClaim(ProcessClaims& claims, int pid) : claims_(claims), pid_(pid) {}
    ~TakenClaim() { claims_.release(pid_); }
    TakenClaim(const TakenClaim&) = delete;
    TakenClaim& operator=(const TakenClaim&) = delete;

  private:
    ProcessClaims& claims_;
    int pid_;
};

// A thread held inside its loader, let go when this goes out of scope (on
// every path: excluded, gone, patched).
class HeldThread {
  public:
    explicit HeldThread(std::optional<HeldLoad> held) : held_(std::move(held)) {}
    ~HeldThread() { release(); }
    HeldThread(const HeldThread&) = delete;
    HeldThread& operator=(const HeldThread&) = delete;

    // true if the thread was still held (nothing ran past the hold).
    bool release() {
        if (!held_) {
            return false;
        }
        auto released = release_load(*held_);
        if (!released) {
            log::error("library load: cannot release thread " + std::to_string(held_->tid) +
                       ": " + released.error().message + " (its wait ends by itself)");
        }
        held_.reset();
        return released && *released;
    }

  private:
    std::optional<HeldLoad> held_;
};

using FileKey = std::pair<std::uint64_t, std::uint64_t>;

std::optional<FileKey> key_of(const std::string& path, bool follow) {
    struct stat status {};
    if ((follow ? ::stat(path.c_str(), &status) : ::lstat(path.c_str(), &status)) != 0) {
        return std::nullopt;
    }
    if (!follow && !S_ISREG(status.st_mode)) {
        return std::nullopt;
    }
    return FileKey{status.st_dev, status.st_ino};
}

bool is_openssl_file_name(const std::string& name) {
    return name.starts_with("libssl.so.") || name.starts_with("libcrypto.so.");
}

// Where Debian's and the usual builds put libssl and libcrypto.
constexpr std::array library_directories = {"usr/lib/x86_64-linux-gnu", "lib/x86_64-linux-gnu",
                                            "usr/local/lib", "usr/local/lib/x86_64-linux-gnu",
                                            "usr/lib", "lib"};

}  // namespace

bool ProcessClaims::claim(int pid) {
    std::lock_guard lock(mutex_);
    return claimed_.insert(pid).second;
}

void ProcessClaims::release(int pid) {
    std::lock_guard lock(mutex_);
    claimed_.erase(pid);
}

Result<void> NewProcessPatcher::reload() {
    auto cached = engine_.list_feeds();
    if (!cached) {
        return tl::unexpected(cached.error());
    }
    std::vector<std::string> problems;
    patches_ = load_usable_patches(*cached, problems);
    examined_.clear();
    look_everywhere_ = true;
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
OpensslRoute NewProcessPatcher::needs_openssl(int pid) {
    auto inputs = loader_inputs_of_process(pid);
    auto route = inputs ? closures_.openssl_route(*inputs)
                        : Result<OpensslRoute>(tl::unexpected(inputs.error()));
    if (!route) {
        log::debug("new process: pid " + std::to_string(pid) + ": " + route.error().message);
        return {};
    }
    return *route;
}

// Will its loader wait at the open of an OpenSSL file for the load
// watcher? Yes when every libssl/libcrypto of its closure is known: watched
// since before its exec (a usable patch is for it), or without a usable
// patch; and at least one is watched. The watcher then holds it there: a
// catch that cannot lose a race, unlike parking. A file marked after the
// exec may have been opened before the mark (the exec event is read late
// on a busy machine): that start is parked. A file not known yet is opened
// now (the process may be gone when take_libraries_to_watch() looks at it;
// the loader is racing us, so nothing more is done here) and watched from
// then on.
bool NewProcessPatcher::loader_will_wait(int pid, std::uint64_t exec_time,
                                         const std::vector<std::string>& libraries) {
    std::string root = "/proc/" + std::to_string(pid) + "/root";
    bool all_known = true;
    bool any_watched = false;
    bool watched_in_time = true;
    for (const std::string& library : libraries) {
        auto key = key_of(root + library, false);
        auto known = key ? examined_.find(*key) : examined_.end();
        if (known == examined_.end()) {
            all_known = false;
            UniqueFD fd(::open((root + library).c_str(), O_RDONLY | O_CLOEXEC));
            if (fd.is_valid()) {
                unexamined_.push_back(std::move(fd));
            }
            continue;
        }
        if (known->second) {
            any_watched = true;
            auto marked = marked_since_.find(*key);
            watched_in_time =
                watched_in_time && marked != marked_since_.end() && marked->second < exec_time;
        }
    }
    return mark_libraries_ && all_known && any_watched && watched_in_time;
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

// The usable patches for the builds the process maps (its scan alone: a
// whole status would also read and verify the feed's advisory data at
// every start).
std::vector<const UsablePatch*> NewProcessPatcher::matching(const ProcessInfo& info) {
    std::vector<const UsablePatch*> candidates;
    auto process = engine_.scan_process(info.pid);
    if (!process) {
        log::debug("new process: " + process.error().message);
        return candidates;
    }
    for (const MappedLibrary& library : process->libraries) {
        if (auto found = patches_.find(library.build_id); found != patches_.end()) {
            for (const UsablePatch& candidate : found->second) {
                candidates.push_back(&candidate);
            }
        }
    }
    return candidates;
}

// `candidates`, in one stop; `applied` runs right after it (the process is
// let go there), before the records are written: the process does not wait
// for the state database. Lost records are added to `lost`.
std::vector<UpdateAction> NewProcessPatcher::apply_matching(
    const ProcessInfo& info, const std::vector<const UsablePatch*>& candidates,
    const InjectOptions& options, std::vector<std::string>& lost,
    const std::function<void()>& applied) {
    // 1. Apply them together, and let the process go on.
    std::vector<const PatchFile*> patches;
    for (const UsablePatch* candidate : candidates) {
        patches.push_back(&candidate->patch);
    }
    auto database = engine_.state();
    Records records(database ? *database : nullptr, database ? "" : database.error().message);
    std::vector<InjectResult<InjectReport>> results;
    if (!patches.empty()) {
        results = engine_.apply_many(info.pid, patches, options, records);
    }
    applied();
    // 2. Record each, in one transaction: one write to disk per start, not
    // two per patch (synchronous=FULL).
    if (!candidates.empty()) {
        records.start_batches();
    }
    std::vector<UpdateAction> actions;
    for (std::size_t i = 0; i < candidates.size(); ++i) {
        const PatchMetadata& metadata = candidates[i]->patch.metadata;
        UpdateAction action{.process = {info.pid, info.start_time},
                            .comm = info.comm,
                            .patch_id = metadata.patch_id,
                            .level = metadata.level};
        record_apply(records, *candidates[i], "", "new process", action, results[i]);
        actions.push_back(std::move(action));
    }
    records.commit();
    std::vector<std::string> lost_here = records.lost();
    lost.insert(lost.end(), lost_here.begin(), lost_here.end());
    return actions;
}

std::optional<NewProcessOutcome> NewProcessPatcher::on_exec(int pid, std::uint64_t exec_time,
                                                            const InjectOptions& options) {
    ++statistics_.execs;
    // Only cheap, cached checks before parking: the loader is racing us.
    if (pid == ::getpid() || !enabled_ || patches_.empty()) {
        return std::nullopt;
    }
    OpensslRoute route = needs_openssl(pid);
    OpensslReach reach = route.reach;
    if (reach == OpensslReach::none) {
        return std::nullopt;
    }
    ++statistics_.candidates;
    ++(reach == OpensslReach::direct ? statistics_.direct : statistics_.transitive);
    if (loader_will_wait(pid, exec_time, route.libraries)) {
        ++statistics_.left_to_load_watch;
        starting_[pid] = reach;  // on_library_load reports it as a start
        return std::nullopt;
    }
    // A catch of its loader (on_library_load) may have it already.
    Claim claim(claims_, pid);
    if (!claim.held()) {
        // Caught at its library's open during its start: on_library_load
        // reports it as a start, with this path.
        log::debug("new process: pid " + std::to_string(pid) + ": its loader is held already");
        if (starting_.size() > 1024) {
            starting_.clear();  // entries of catches handled before their exec event
        }
        starting_[pid] = reach;
        return std::nullopt;
    }
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
    // 2. Its OpenSSL files not watched yet are watched from now on, while it
    // is parked: a start after it cannot open them unwatched.
    if (mark_libraries_) {
        mark_libraries_();
    }
    // 3. Skip what is gone or excluded (released on return).
    auto info = read_process_info(pid);
    if (!info || excluded(pid)) {
        return std::nullopt;
    }
    // 4. Wait until the loader is done and it spins at its entry.
    NewProcessOutcome outcome{.pid = pid,
                              .path = reach == OpensslReach::direct ? "direct" : "transitive"};
    if (park.held()) {
        if (auto ready = wait_until_parked(park.process(), std::chrono::seconds(5)); !ready) {
            log::warning("new process: " + ready.error().message);
            return std::nullopt;
        }
        outcome.parked = true;
        ++statistics_.parked;
    }
    // 5. Apply what matches the libraries it mapped, under the operation
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
    // 6. Into main(), patched (before the records are written).
    outcome.actions =
        apply_matching(*info, matching(*info), options, outcome.lost_records, [&] { park.release(); });
    bool any_applied = false;
    for (const UpdateAction& action : outcome.actions) {
        any_applied = any_applied || action.outcome == ActionOutcome::applied;
    }
    if (any_applied) {
        ++(outcome.parked ? statistics_.patched_before_main : statistics_.patched_late);
    }
    return outcome;
}

std::optional<NewProcessOutcome> NewProcessPatcher::on_library_load(const LibraryLoad& load,
                                                                    const InjectOptions& options) {
    TakenClaim claim(claims_, load.pid);  // released last, after the thread
    HeldThread thread(load.held);
    ++statistics_.loads_caught;
    if (load.held) {
        ++statistics_.loads_held;
    } else {
        log::debug("library load: pid " + std::to_string(load.pid) + " not held: " +
                   load.why_not_held);
    }
    // 1. Skip what is gone or excluded, or when nothing is to be applied.
    if (load.pid == ::getpid() || !enabled_ || patches_.empty()) {
        return std::nullopt;
    }
    auto info = read_process_info(load.pid);
    if (!info || excluded(load.pid)) {
        return std::nullopt;
    }
    // 2. Apply what matches, under the operation lock (never waited for,
    // as for a parked process: the held thread waits meanwhile).
    auto lock = engine_.hold_operation_lock();
    if (!lock) {
        log::info("library load: pid " + std::to_string(load.pid) +
                  " left to the next update: " + lock.error().message);
        return std::nullopt;
    }
    // A load during the program's start (its exec event found it caught
    // already) is a start, on the path the exec check saw.
    NewProcessOutcome outcome{.pid = load.pid, .path = "dlopen"};
    if (auto start = starting_.find(load.pid); start != starting_.end()) {
        outcome.path = start->second == OpensslReach::direct ? "direct" : "transitive";
        starting_.erase(start);
    }
    // 3. What matches. A patch with callbacks cannot have them run inside
    // the loader (its lock is held, and at a start libc is not initialised
    // yet): at a start the process is parked at its entry point for them,
    // after a dlopen() they follow once the loader is done.
    std::vector<const UsablePatch*> in_loader;
    std::vector<const UsablePatch*> after_loader;
    for (const UsablePatch* candidate : matching(*info)) {
        (candidate->patch.metadata.callbacks.any() ? after_loader : in_loader).push_back(candidate);
    }
    bool start = outcome.path != "dlopen";
    Park park(start && !after_loader.empty() && load.held ? park_for_callbacks(load.pid)
                                                           : std::nullopt);
    // 4. Let the loader go on, patched (before its first call only if its
    // wait had not ended by itself meanwhile), before the records are written.
    outcome.actions = apply_matching(*info, in_loader, options, outcome.lost_records,
                                     [&] { outcome.held = thread.release(); });
    outcome.parked = outcome.held && start;
    // 5. The patches with callbacks: at the entry point (before main()), or
    // while the process runs.
    if (!after_loader.empty()) {
        bool at_entry = park.held() && wait_until_parked(park.process(), std::chrono::seconds(5));
        std::vector<UpdateAction> later = apply_matching(
            *info, after_loader, options, outcome.lost_records, [&] { park.release(); });
        if (!at_entry) {
            // Some of its patches came while it ran: reported so for all.
            outcome.parked = false;
            outcome.held = false;
        }
        std::move(later.begin(), later.end(), std::back_inserter(outcome.actions));
    }
    bool any_applied = false;
    for (const UpdateAction& action : outcome.actions) {
        any_applied = any_applied || action.outcome == ActionOutcome::applied;
    }
    if (any_applied) {
        ++(outcome.held ? statistics_.patched_before_first_call : statistics_.loads_patched_late);
        if (outcome.parked) {
            ++statistics_.patched_before_main;
        }
    }
    return outcome;
}

void NewProcessPatcher::note_process_root(int pid) {
    auto root = key_of("/proc/" + std::to_string(pid) + "/root", true);
    auto host = key_of("/", true);
    if (!root || root == host) {
        return;
    }
    auto [known, added] = roots_.insert_or_assign(*root, pid);
    if (added) {
        new_roots_.push_back(pid);
    }
}

std::vector<std::string> NewProcessPatcher::take_libraries_to_watch() {
    std::vector<std::string> found;
    if (patches_.empty()) {
        return found;
    }
    std::vector<int> roots = std::exchange(new_roots_, {});
    // Files opened at exec: watched through /proc/self/fd, open until the
    // next call (the caller marks them meanwhile).
    opened_for_watching_ = std::exchange(unexamined_, {});
    for (const UniqueFD& fd : opened_for_watching_) {
        watch_if_patched("/proc/self/fd/" + std::to_string(fd.get()), found);
    }
    if (std::exchange(look_everywhere_, false)) {
        find_libraries("/", found);
        roots.clear();
        for (auto root = roots_.begin(); root != roots_.end();) {
            // A root whose last process is gone (or moved) is forgotten.
            std::string path = "/proc/" + std::to_string(root->second) + "/root";
            if (key_of(path, true) != root->first) {
                root = roots_.erase(root);
                continue;
            }
            roots.push_back(root->second);
            ++root;
        }
    }
    for (int pid : roots) {
        find_libraries("/proc/" + std::to_string(pid) + "/root", found);
    }
    return found;
}

// Those not watched after all are forgotten, so their programs are parked
// again (and they are tried again at their next start); the others are
// watched from now on: starts exec'ed after this wait at their open.
void NewProcessPatcher::libraries_marked(const std::vector<std::string>& failed) {
    for (const std::string& path : failed) {
        if (auto key = key_of(path, true)) {
            examined_.erase(*key);
            marked_since_.erase(*key);
        }
    }
    timespec now{};
    ::clock_gettime(CLOCK_MONOTONIC, &now);
    std::uint64_t marked_by = static_cast<std::uint64_t>(now.tv_sec) * 1000000000ULL +
                              static_cast<std::uint64_t>(now.tv_nsec);
    for (const auto& [key, watched] : examined_) {
        if (watched) {
            marked_since_.try_emplace(key, marked_by);  // an earlier mark stays
        }
    }
}

void NewProcessPatcher::find_libraries(const std::string& root, std::vector<std::string>& found) {
    for (const char* directory : library_directories) {
        std::error_code error;
        std::filesystem::directory_iterator entries(std::filesystem::path(root) / directory, error);
        for (; !error && entries != std::filesystem::directory_iterator(); entries.increment(error)) {
            std::string path = entries->path();
            // Regular files only: a symbolic link would resolve against
            // sutured's root, not the process's.
            if (is_openssl_file_name(entries->path().filename())) {
                watch_if_patched(path, found);
            }
        }
    }
}

// Adds `path` to `found` if it is a regular file not examined yet whose
// build a usable patch is for; notes either way what it found.
void NewProcessPatcher::watch_if_patched(const std::string& path, std::vector<std::string>& found) {
    bool through_descriptor = path.starts_with("/proc/self/fd/");
    auto key = key_of(path, through_descriptor);  // a descriptor's link is followed
    if (!key || examined_.contains(*key)) {
        return;
    }
    UniqueFD fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd.is_valid()) {
        return;
    }
    auto elf = ElfFile::open(fd, path);
    auto build_id = elf ? elf->build_id() : tl::unexpected(elf.error());
    bool patched = build_id && patches_.contains(*build_id);
    examined_[*key] = patched;
    if (patched) {
        found.push_back(path);
    }
}

}  // namespace suture
