#include "engine/NewProcesses.h"

#include <elf.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>

#include "base/Files.h"
#include "base/Log.h"
#include "elf/ElfFile.h"
#include "inject/EntryGate.h"
#include "proc/Process.h"

namespace suture {

namespace {

bool is_openssl_soname(const std::string& name) {
    return name.starts_with("libssl.so") || name.starts_with("libcrypto.so");
}

std::string proc_path(int pid, const char* what) {
    return "/proc/" + std::to_string(pid) + "/" + what;
}

// NAME's value in /proc/PID/environ (the environment execve gave it),
// empty when unset.
std::string environment_value(const std::string& environ, std::string_view name) {
    for (std::size_t at = 0; at < environ.size();) {
        std::size_t end = environ.find('\0', at);
        if (end == std::string::npos) {
            end = environ.size();
        }
        std::string_view entry(environ.data() + at, end - at);
        if (entry.size() > name.size() && entry.starts_with(name) && entry[name.size()] == '=') {
            return std::string(entry.substr(name.size() + 1));
        }
        at = end + 1;
    }
    return {};
}

// What /proc/PID/auxv says about one exec image: AT_SECURE (the loader
// ignores LD_LIBRARY_PATH and LD_PRELOAD for setuid and file-capability
// programs) and AT_RANDOM, an address on the new stack that differs from
// one exec to the next, so it tells one exec of a PID from the next.
struct ExecImage {
    bool secure = false;
    std::uint64_t random = 0;
};

ExecImage read_exec_image(int pid) {
    ExecImage image;
    auto auxv = read_file(proc_path(pid, "auxv"));
    if (!auxv) {
        return image;
    }
    for (std::size_t at = 0; at + 16 <= auxv->size(); at += 16) {
        std::uint64_t type = 0;
        std::uint64_t value = 0;
        std::memcpy(&type, auxv->data() + at, 8);
        std::memcpy(&value, auxv->data() + at + 8, 8);
        if (type == AT_SECURE) {
            image.secure = value != 0;
        } else if (type == AT_RANDOM) {
            image.random = value;
        }
    }
    return image;
}

// The executable's path inside the process's root: /proc/PID/exe reads
// relative to *our* root, so a chrooted process's path carries its root's
// path in front (DESIGN.md, "Unwinding containerised processes").
std::string executable_inside_root(int pid) {
    std::error_code error;
    std::string executable = std::filesystem::read_symlink(proc_path(pid, "exe"), error);
    std::string root = std::filesystem::read_symlink(proc_path(pid, "root"), error);
    if (!error && root != "/" && executable.starts_with(root + "/")) {
        return executable.substr(root.size());
    }
    return executable;
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
    // Hands the process over (to the queue of pending execs) unreleased.
    std::optional<ParkedProcess> take() { return std::exchange(parked_, std::nullopt); }
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

NewProcessPatcher::NewProcessPatcher(Engine& engine) : engine_(engine) {
    struct stat status {};
    if (::stat("/", &status) == 0) {
        pending_roots_.push_back({0, status.st_dev, status.st_ino});  // the host's
    }
}

NewProcessPatcher::~NewProcessPatcher() {
    for (PendingExec& pending : pending_execs_) {
        Park release(std::move(pending.parked));
    }
}

Result<void> NewProcessPatcher::reload() {
    auto cached = engine_.list_feeds();
    if (!cached) {
        return tl::unexpected(cached.error());
    }
    std::vector<std::string> problems;
    patches_ = load_usable_patches(*cached, problems);
    auto enabled = engine_.enabled();
    enabled_ = !enabled || *enabled;
    return {};
}

// Reads what decides the loader's closure into `key` and returns the
// verdict cached for it; nullopt on a miss. Errors: the process is gone or
// unreadable (then nothing more can be done for it).
Result<std::optional<ExecVerdict>> NewProcessPatcher::cached_verdict(int pid, LoaderKey& key) {
    auto executable = open_executable(pid);
    if (!executable) {
        return tl::unexpected(executable.error());
    }
    struct stat root_status {};
    if (::stat(proc_path(pid, "root").c_str(), &root_status) != 0) {
        return fail_errno(proc_path(pid, "root"), errno);
    }
    auto environ = read_file(proc_path(pid, "environ"));
    if (!environ) {
        return tl::unexpected(environ.error());
    }
    key.executable_device = executable->device;
    key.executable_inode = executable->inode;
    key.executable_modified = executable->modified;
    key.root_device = root_status.st_dev;
    key.root_inode = root_status.st_ino;
    key.secure = read_exec_image(pid).secure;
    if (!key.secure) {
        key.library_path = environment_value(*environ, "LD_LIBRARY_PATH");
        key.preload = environment_value(*environ, "LD_PRELOAD");
    }
    struct stat cache_status {};
    if (::stat((proc_path(pid, "root") + "/etc/ld.so.cache").c_str(), &cache_status) == 0) {
        key.cache_inode = cache_status.st_ino;
        key.cache_modified = cache_status.st_mtim.tv_sec * 1000000000LL + cache_status.st_mtim.tv_nsec;
    }
    if (!roots_seen_.contains({key.root_device, key.root_inode})) {
        pending_roots_.push_back({pid, key.root_device, key.root_inode});
    }
    if (auto known = verdicts_.find(key); known != verdicts_.end()) {
        return std::optional<ExecVerdict>(known->second);
    }
    return std::optional<ExecVerdict>{};
}

// The loader's closure for `key`, decided from the files in the process's
// root: does it hold libssl or libcrypto, and how deep? The OpenSSL files
// it names are watched from then on (a later dlopen of them by another
// process is a library event).
ExecVerdict NewProcessPatcher::compute_verdict(int pid, const LoaderKey& key) {
    ExecVerdict verdict;
    auto root = LoaderRoot::open(proc_path(pid, "root"));
    if (!root) {
        return verdict;
    }
    LdSoCache cache = LdSoCache::read(*root);
    LoaderInputs inputs{.executable = executable_inside_root(pid),
                        .library_path = key.library_path,
                        .preload = key.preload,
                        .secure = key.secure};
    auto closure = dependency_closure(*root, cache, inputs);
    if (!closure) {
        log::debug("new process: pid " + std::to_string(pid) + ": " + closure.error().message);
        return verdict;
    }
    bool direct = false;
    for (const ClosureObject& object : closure->objects) {
        if (is_openssl_soname(object.soname) || is_openssl_soname(object.name)) {
            verdict.needs_openssl = true;
            direct = direct || object.depth == 1;
            note_library_file(*root, object.path);
        }
    }
    verdict.path = direct ? CaughtBy::direct : CaughtBy::transitive;
    return verdict;
}

// Remembers an OpenSSL file (by device and inode) for the daemon to watch,
// under the name this process resolves it to.
void NewProcessPatcher::note_library_file(const LoaderRoot& root, const std::string& path) {
    auto fd = root.open_file(path);
    struct stat status {};
    if (!fd || ::fstat(fd->get(), &status) != 0) {
        return;
    }
    if (!library_files_seen_.insert({status.st_dev, status.st_ino}).second) {
        return;
    }
    std::error_code error;
    std::string resolved =
        std::filesystem::read_symlink("/proc/self/fd/" + std::to_string(fd->get()), error);
    if (!error) {
        library_files_new_.push_back(resolved);
    }
}

// The OpenSSL libraries a root's loader would find for a dlopen by soname:
// through its ld.so.cache, else in the multiarch directories.
void NewProcessPatcher::note_root(const PendingRoot& pending) {
    if (!roots_seen_.insert({pending.device, pending.inode}).second) {
        return;
    }
    auto root = LoaderRoot::open(pending.pid == 0 ? "/" : proc_path(pending.pid, "root"));
    if (!root) {
        return;
    }
    LdSoCache cache = LdSoCache::read(*root);
    for (const char* name : {"libssl.so.3", "libcrypto.so.3", "libssl.so.1.1", "libcrypto.so.1.1"}) {
        note_library_file(*root, cache.find(name).value_or(std::string("/usr/lib/x86_64-linux-gnu/") + name));
        note_library_file(*root, std::string("/lib/x86_64-linux-gnu/") + name);
    }
}

std::vector<std::string> NewProcessPatcher::take_library_files(bool all_roots) {
    if (all_roots) {
        for (int pid : list_process_ids().value_or(std::vector<int>{})) {
            struct stat status {};
            if (::stat(proc_path(pid, "root").c_str(), &status) == 0 &&
                !roots_seen_.contains({status.st_dev, status.st_ino})) {
                pending_roots_.push_back({pid, status.st_dev, status.st_ino});
            }
        }
    }
    for (const PendingRoot& pending : std::exchange(pending_roots_, {})) {
        note_root(pending);
    }
    return std::exchange(library_files_new_, {});
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
                                                            std::vector<std::string>& lost,
                                                            const std::function<void()>& between) {
    auto database = engine_.state();
    Records records(database ? *database : nullptr, database ? "" : database.error().message);
    records.start_batches();  // one commit for the process, not one fsync per record
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
                if (between) {
                    between();
                }
            }
        }
    }
    lost = records.lost();
    return actions;
}

void NewProcessPatcher::remember_handled(int pid, std::uint64_t start_time) {
    if (handled_at_exec_.size() >= 4096) {
        handled_at_exec_.clear();  // a later event then costs one more scan, no harm
    }
    handled_at_exec_[pid] = {start_time, read_exec_image(pid).random};
}

bool NewProcessPatcher::handled_already(int pid, std::uint64_t start_time) {
    auto handled = handled_at_exec_.find(pid);
    return handled != handled_at_exec_.end() &&
           handled->second == std::make_pair(start_time, read_exec_image(pid).random);
}

namespace {

// The children of `pid` now (every thread's /proc/PID/task/TID/children).
std::vector<int> children_of(int pid) {
    std::vector<int> children;
    std::error_code error;
    for (const auto& task : std::filesystem::directory_iterator(proc_path(pid, "task"), error)) {
        auto listed = read_file(task.path().string() + "/children");
        if (!listed) {
            continue;
        }
        std::size_t at = 0;
        while (at < listed->size()) {
            std::size_t end = listed->find(' ', at);
            end = end == std::string::npos ? listed->size() : end;
            if (end > at) {
                children.push_back(std::stoi(listed->substr(at, end - at)));
            }
            at = end + 1;
        }
    }
    return children;
}

bool any_applied(const std::vector<UpdateAction>& actions) {
    for (const UpdateAction& action : actions) {
        if (action.outcome == ActionOutcome::applied) {
            return true;
        }
    }
    return false;
}

}  // namespace

void NewProcessPatcher::on_exec(int pid) {
    ++statistics_.execs;
    // Only cheap, cached checks before parking: the loader is racing us.
    if (pid == ::getpid() || !enabled_ || patches_.empty()) {
        return;
    }
    // 1. The loader's inputs, and the verdict cached for them. (A process
    // that exec'd twice before its first event was read is handled on the
    // first; the second finds the same image.)
    auto info = read_process_info(pid);
    if (!info || handled_already(pid, info->start_time)) {
        return;
    }
    LoaderKey key;
    auto verdict = cached_verdict(pid, key);
    if (!verdict) {
        return;  // gone already
    }
    if (*verdict && !(*verdict)->needs_openssl) {
        ++statistics_.closure_hits;
        return;
    }
    // 2. Park it at its entry point (or find it past its loader already).
    // A process whose closure is not known yet is parked before it is
    // decided, so the first run of an executable is in time too.
    auto parked = park_at_entry(pid);
    if (!parked) {
        log::debug("new process: " + parked.error().message);
        return;
    }
    Park park(std::move(parked->parked));
    // 3. On a miss, its closure, decided while it waits (released on return).
    if (*verdict) {
        ++statistics_.closure_hits;
    } else {
        ++statistics_.closure_misses;
        *verdict = verdicts_[key] = compute_verdict(pid, key);
        if (!(*verdict)->needs_openssl) {
            return;
        }
    }
    ++statistics_.candidates;
    if (!park.held()) {
        bool threads = parked->why == NotParked::several_threads;
        ++(threads ? statistics_.not_parked_threads : statistics_.not_parked_past_loader);
        log::debug("new process: pid " + std::to_string(pid) +
                   (threads ? " has several threads at its entry: not parked"
                            : " is past its loader already"));
    }
    // 4. Skip what is excluded (released on return); the rest waits for
    // finish_next_exec.
    if (excluded(pid)) {
        return;
    }
    // A process that runs already goes first: the parked ones wait harmlessly.
    PendingExec pending{park.take(), *info, (*verdict)->path};
    if (pending.parked) {
        pending_execs_.push_back(std::move(pending));
    } else {
        pending_execs_.push_front(std::move(pending));
    }
    remember_handled(pid, info->start_time);
}

std::optional<NewProcessOutcome> NewProcessPatcher::finish_next_exec(
    const InjectOptions& options, const std::function<void()>& between) {
    if (pending_execs_.empty()) {
        return std::nullopt;
    }
    PendingExec next = std::move(pending_execs_.front());
    pending_execs_.pop_front();
    Park park(std::move(next.parked));
    int pid = next.info.pid;
    // 1. Wait until the loader is done and it spins at its entry.
    NewProcessOutcome outcome{.pid = pid, .caught_by = next.path};
    if (park.held()) {
        if (auto ready = wait_until_parked(park.process(), std::chrono::seconds(5)); !ready) {
            log::warning("new process: " + ready.error().message);
            return std::nullopt;
        }
        outcome.parked = true;
        ++statistics_.parked;
    }
    // 2. Apply what matches the libraries it mapped, under the operation
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
    outcome.actions = apply_matching(next.info, options, outcome.lost_records, between);
    // 3. Into main(), patched.
    park.release();
    if (any_applied(outcome.actions)) {
        ++(outcome.parked ? statistics_.patched_before_main : statistics_.patched_late);
        ++(outcome.caught_by == CaughtBy::direct ? statistics_.caught_direct
                                                 : statistics_.caught_transitive);
    }
    return outcome;
}

std::optional<NewProcessOutcome> NewProcessPatcher::on_library_opened(
    int pid, const InjectOptions& options, std::chrono::steady_clock::time_point seen) {
    ++statistics_.library_events;
    if (pid == ::getpid() || !enabled_ || patches_.empty()) {
        return std::nullopt;
    }
    // 1. Its own loader's events, after the exec path patched it: nothing
    // more to do.
    auto info = read_process_info(pid);
    if (!info) {
        return std::nullopt;
    }
    if (handled_already(pid, info->start_time) || excluded(pid)) {
        log::debug("library event: pid " + std::to_string(pid) + " handled at its exec, or excluded");
        return std::nullopt;
    }
    // 2. Apply what matches what it maps now, while it runs (every thread
    // stopped by the injector, as for an update); a file opened without
    // being mapped matches nothing.
    auto lock = engine_.hold_operation_lock();
    if (!lock) {
        log::info("new process: pid " + std::to_string(pid) +
                  " left to the next update: " + lock.error().message);
        return std::nullopt;
    }
    NewProcessOutcome outcome{.pid = pid, .caught_by = CaughtBy::dlopen};
    outcome.actions = apply_matching(*info, options, outcome.lost_records);
    if (outcome.actions.empty()) {
        log::debug("library event: pid " + std::to_string(pid) + " (" + info->comm +
                   ") maps no build a patchset is for");
        return std::nullopt;
    }
    // 3. Children it forked before the patch landed (Apache's parent starts
    // its children right after loading mod_ssl) share the unpatched
    // library: patched as well, at once.
    if (any_applied(outcome.actions)) {
        for (int child : children_of(pid)) {
            auto child_info = read_process_info(child);
            if (!child_info || excluded(child)) {
                continue;
            }
            std::vector<std::string> lost;
            auto child_actions = apply_matching(*child_info, options, lost);
            outcome.lost_records.insert(outcome.lost_records.end(), lost.begin(), lost.end());
            if (any_applied(child_actions)) {
                ++statistics_.caught_dlopen;
            }
            outcome.actions.insert(outcome.actions.end(), child_actions.begin(), child_actions.end());
        }
    }
    // 4. The bound from the open to patched (the event is read the moment
    // it arrives: sutured runs at real-time priority).
    if (any_applied(outcome.actions)) {
        auto latency = std::chrono::duration_cast<std::chrono::microseconds>(
            std::chrono::steady_clock::now() - seen);
        outcome.latency_us = static_cast<std::uint64_t>(latency.count());
        ++statistics_.caught_dlopen;
        statistics_.dlopen_latency_us_total += outcome.latency_us;
        statistics_.dlopen_latency_us_max =
            std::max(statistics_.dlopen_latency_us_max, outcome.latency_us);
    }
    return outcome;
}

void NewProcessPatcher::count_rescan(const std::vector<UpdateAction>& actions) {
    std::set<int> patched;
    for (const UpdateAction& action : actions) {
        if (action.outcome == ActionOutcome::applied) {
            patched.insert(action.process.pid);
        }
    }
    statistics_.caught_rescan += patched.size();
}

}  // namespace suture
