#include "engine/Engine.h"

#include <sys/stat.h>

#include <algorithm>
#include <cstdlib>
#include <ctime>
#include <filesystem>

#include "base/Files.h"
#include "base/Log.h"
#include "config.h"
#include "distro/BuildIndex.h"
#include "engine/Candidates.h"
#include "engine/HealthWatch.h"
#include "engine/NewProcesses.h"
#include "engine/Update.h"
#include "inject/EntryGate.h"
#include "proc/Process.h"
#include "scan/Scanner.h"
#include "state/HostLock.h"
#include "state/StateDatabase.h"

namespace suture {

namespace {

std::string default_distro_support_dir() {
    if (std::filesystem::is_directory(SUTURE_INSTALLED_DISTRO_SUPPORT_DIR)) {
        return SUTURE_INSTALLED_DISTRO_SUPPORT_DIR;
    }
    return SUTURE_SOURCE_DISTRO_SUPPORT_DIR;
}

// (device, inode) of a file; (0, 0) if it does not exist.
std::pair<std::uint64_t, std::uint64_t> file_identity(const std::string& path) {
    struct stat info {};
    if (::stat(path.c_str(), &info) != 0) {
        return {0, 0};
    }
    return {static_cast<std::uint64_t>(info.st_dev), static_cast<std::uint64_t>(info.st_ino)};
}

InjectFailure failure_of(const Error& error) {
    return InjectFailure{error, {}};
}

// The blocking threads belong to an `unsafe` of the stack check only: an
// error told otherwise afterwards (the process exited meanwhile) has none.
InjectFailure failure_of(const Error& error, std::vector<BlockingThread> blocking) {
    if (error.code != ErrorCode::unsafe) {
        blocking.clear();
    }
    return InjectFailure{error, std::move(blocking)};
}

// The database path with the default applied.
std::string resolve_state_database(const std::string& path) {
    if (!path.empty()) {
        return path;
    }
    const char* environment = std::getenv("SUTURE_STATE_DB");
    return environment != nullptr && *environment != '\0' ? environment
                                                          : "/var/lib/suture/state.db";
}

}  // namespace

Result<std::unique_ptr<Engine>> Engine::open(EngineOptions options) {
    if (options.distro_support_dir.empty()) {
        options.distro_support_dir = default_distro_support_dir();
    }
    options.state_database = resolve_state_database(options.state_database);
    options.lock_file = HostLock::resolve_path(options.lock_file);
    options.feed = resolve_feed_options(options.feed);
    auto index = BuildIndex::load_directory(options.distro_support_dir);
    if (!index) {
        return tl::unexpected(with_context(index.error(), "build index"));
    }
    return std::unique_ptr<Engine>(
        new Engine(std::move(options), std::make_unique<BuildIndex>(std::move(*index))));
}

Engine::Engine(EngineOptions options, std::unique_ptr<BuildIndex> index)
    : options_(std::move(options)),
      index_(std::move(index)),
      scanner_(std::make_unique<Scanner>(*index_)),
      new_processes_(std::make_unique<NewProcessPatcher>(*this)) {}

Engine::~Engine() = default;

// Looking.

Result<ProcessReport> Engine::scan_process(int pid) {
    return scanner_->scan_process(pid);
}

StatusReport Engine::status(const std::vector<int>& pids) {
    StatusReport status;
    ScanReport& scan = status.scan;
    if (pids.empty()) {
        scan = scanner_->scan_all();
    } else {
        for (int pid : pids) {
            auto report = scanner_->scan_process(pid);
            if (!report) {
                scan.unreadable.push_back(UnreadableProcess{pid, "", report.error()});
                continue;
            }
            ++scan.processes_examined;
            scan.processes.push_back(std::move(*report));
        }
    }
    for (const ProcessReport& process : scan.processes) {
        if (process.anonymous_code_mappings == 0) {
            continue;  // no place a suture region could be
        }
        auto patches = list_applied_patches(process.info.pid);
        if (patches && !patches->empty()) {
            status.patches[process.info.pid] = std::move(*patches);
        }
        auto gate_pages = list_gate_pages(process.info.pid);
        if (gate_pages && !gate_pages->empty()) {
            status.gate_pages[process.info.pid] = std::move(*gate_pages);
        }
        auto shadow = list_shadow_region(process.info.pid);
        if (shadow && *shadow) {
            status.shadow_regions[process.info.pid] = **shadow;
        }
    }
    // What each process is exposed to, from the feed's verified advisory data.
    AdvisoryData advisories = load_advisories(options_.feed);
    status.exposure =
        assess_exposure(status, advisories.advisories ? &*advisories.advisories : nullptr,
                        advisories.supersessions);
    status.exposure.sources = std::move(advisories.sources);
    status.exposure.problems = std::move(advisories.problems);
    status.feed_expires = advisories.feed_expires;
    return status;
}

Result<MetricsFacts> Engine::metrics_facts() {
    auto database = state();
    if (!database) {
        return tl::unexpected(database.error());
    }
    auto totals = (*database)->history_totals();
    if (!totals) {
        return tl::unexpected(totals.error());
    }
    return metrics_facts_from(*totals);
}

Result<void> Engine::write_metrics_textfile(const std::string& path) {
    std::string directory = std::filesystem::path(path).parent_path().string();
    struct stat st {};
    if (::stat(directory.empty() ? "." : directory.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
        return {};  // no node_exporter textfile directory: nothing to keep current
    }
    StatusReport report = status();
    auto facts = metrics_facts();
    std::string text = status_to_metrics(
        report, {.openmetrics = false, .per_process = false, .facts = facts ? &*facts : nullptr});
    return write_file_atomically(path, bytes_of(text), 0644);
}

Result<std::vector<ThreadStack>> Engine::stacks(int pid) {
    return unwind_threads(pid);
}

// Patching one process.

// 1. the operation lock, for the apply and its records; 2. the identity
// before the apply (the history names the process by it); 3. the apply;
// 4. its history entry and callback outcomes, each write checked.
InjectResult<InjectReport> Engine::apply(int pid, const PatchFile& patch,
                                         const InjectOptions& options,
                                         std::vector<std::string>* lost_records) {
    auto lock = hold_operation_lock();
    if (!lock) {
        return tl::unexpected(failure_of(lock.error()));
    }
    auto info = read_process_info(pid);
    std::vector<CallbackOutcome> outcomes;
    auto report = apply_held(pid, patch, options, outcomes);
    auto lost = record_manual_apply({pid, info ? info->start_time : 0}, patch.metadata, report);
    auto more =
        record_callbacks_alone(pid, patch.metadata.patch_id, patch.metadata.level, outcomes);
    lost.insert(lost.end(), more.begin(), more.end());
    if (lost_records != nullptr) {
        *lost_records = std::move(lost);
    }
    return report;
}

// As above, the outcomes written into the caller's (batched) records.
InjectResult<InjectReport> Engine::apply(int pid, const PatchFile& patch,
                                         const InjectOptions& options, Records& records) {
    auto lock = hold_operation_lock();
    if (!lock) {
        return tl::unexpected(failure_of(lock.error()));
    }
    std::vector<CallbackOutcome> outcomes;
    auto report = apply_held(pid, patch, options, outcomes);
    record_callbacks(records, pid, patch.metadata.patch_id, patch.metadata.level, outcomes);
    return report;
}

std::vector<InjectResult<InjectReport>> Engine::apply_many(
    int pid, std::span<const PatchFile* const> patches, const InjectOptions& options,
    Records& records) {
    std::vector<InjectResult<InjectReport>> results;
    auto lock = hold_operation_lock();
    if (!lock) {
        for (std::size_t i = 0; i < patches.size(); ++i) {
            results.push_back(tl::unexpected(failure_of(lock.error())));
        }
        return results;
    }
    std::vector<PatchApplication> applied = apply_patches(pid, patches, options);
    return record_applied(pid, patches, applied, records);
}

std::vector<InjectResult<InjectReport>> Engine::record_applied(
    int pid, std::span<const PatchFile* const> patches, std::vector<PatchApplication>& applied,
    Records& records) {
    std::vector<InjectResult<InjectReport>> results;
    for (std::size_t i = 0; i < patches.size(); ++i) {
        const PatchMetadata& metadata = patches[i]->metadata;
        PatchApplication& outcome = applied[i];
        record_callbacks(records, pid, metadata.patch_id, metadata.level, outcome.callbacks);
        if (!outcome.report) {
            InjectFailure failure = failure_of(outcome.report.error(), std::move(outcome.blocking));
            failure.callbacks = outcome.callbacks;
            results.push_back(tl::unexpected(std::move(failure)));
        } else {
            results.push_back(std::move(*outcome.report));
        }
    }
    return results;
}

InjectResult<InjectReport> Engine::apply_held(int pid, const PatchFile& patch,
                                              const InjectOptions& options,
                                              std::vector<CallbackOutcome>& outcomes) {
    std::vector<BlockingThread> blocking;
    auto report = apply_patch(pid, patch, options, &blocking, &outcomes);
    if (!report) {
        InjectFailure failure = failure_of(report.error(), std::move(blocking));
        failure.callbacks = outcomes;
        return tl::unexpected(std::move(failure));
    }
    outcomes = report->callbacks;
    return *report;
}

InjectResult<InjectReport> Engine::apply_file(int pid, const std::string& path,
                                              const InjectOptions& options,
                                              std::vector<std::string>* lost_records) {
    auto patch = read_patch_file(path);
    if (!patch) {
        // A file that cannot be read is not the process's fault: not
        // not_found ("no such process") but io.
        bool unreadable = patch.error().code == ErrorCode::not_found ||
                          patch.error().code == ErrorCode::permission_denied;
        Error error = patch.error();
        error.code = unreadable ? ErrorCode::io : error.code;
        return tl::unexpected(failure_of(error));
    }
    return apply(pid, *patch, options, lost_records);
}

InjectResult<std::vector<InjectReport>> Engine::revert(int pid, const std::string& patch_id,
                                                       const InjectOptions& options,
                                                       std::vector<std::string>* lost_records) {
    // 1. The operation lock, for the revert and its records.
    auto lock = hold_operation_lock();
    if (!lock) {
        return tl::unexpected(failure_of(lock.error()));
    }
    // 2. The identity before the revert: the rows name the process by it.
    auto info = read_process_info(pid);
    // 3. The revert (never waits: no blocking threads).
    std::vector<CallbackOutcome> callbacks;
    auto reports = revert_patches(pid, patch_id, options, &callbacks);
    // 4. Its rows and history, then its callbacks' outcomes.
    std::vector<std::string> lost;
    if (info) {
        lost = record_revert({pid, info->start_time}, patch_id, reports);
    }
    auto keep_lost = [&lost](std::vector<std::string> more) {
        lost.insert(lost.end(), more.begin(), more.end());
    };
    if (reports) {
        for (const InjectReport& report : *reports) {
            keep_lost(record_callbacks_alone(pid, report.patch_id, report.level, report.callbacks));
        }
    } else {
        keep_lost(record_callbacks_alone(pid, patch_id, 0, callbacks));  // level not known yet
    }
    if (lost_records != nullptr) {
        *lost_records = std::move(lost);
    }
    if (!reports) {
        InjectFailure failure = failure_of(reports.error());
        failure.callbacks = std::move(callbacks);
        return tl::unexpected(std::move(failure));
    }
    return *reports;
}

std::vector<std::string> Engine::record_manual_apply(const ProcessIdentity& process,
                                                     const PatchMetadata& metadata,
                                                     const InjectResult<InjectReport>& report) {
    auto database = state();
    Result<void> written =
        database
            ? (*database)->log({.action = HistoryAction::apply,
                                .process = process,
                                .patch_id = metadata.patch_id,
                                .level = metadata.level,
                                .outcome = report ? HistoryOutcome::ok : HistoryOutcome::failed,
                                .reason = report ? "" : error_code_name(report.error().error.code),
                                .message = report ? "applied by hand (suture apply)"
                                                  : report.error().error.message})
            : Result<void>(tl::unexpected(database.error()));
    if (!written) {
        return {"apply pid " + std::to_string(process.pid) +
                " (history): " + written.error().message};
    }
    return {};
}

std::vector<std::string> Engine::record_revert(
    const ProcessIdentity& process, const std::string& patch_id,
    const Result<std::vector<InjectReport>>& reports) {
    std::vector<std::string> lost;
    bool any_patch = reports && std::any_of(reports->begin(), reports->end(),
                                            [](const InjectReport& report) {
                                                return !report.patch_id.empty();
                                            });
    if (reports && !any_patch) {
        return lost;  // only empty regions removed: nothing was ever recorded of them
    }
    auto database = state();
    auto keep = [&](const std::string& what, const Result<void>& written) {
        if (!written) {
            lost.push_back(what + ": " + written.error().message);
        }
    };
    if (!database) {
        if (reports) {
            lost.push_back("revert pid " + std::to_string(process.pid) + ": " +
                           database.error().message);
        }
        return lost;
    }
    if (!reports) {
        keep("revert pid " + std::to_string(process.pid) + " (history)",
             (*database)->log({.action = HistoryAction::revert,
                               .process = process,
                               .patch_id = patch_id,
                               .outcome = HistoryOutcome::failed,
                               .reason = error_code_name(reports.error().code),
                               .message = reports.error().message}));
        return lost;
    }
    for (const InjectReport& report : *reports) {
        if (report.patch_id.empty()) {
            continue;  // an empty region removed: nothing was recorded of it
        }
        std::string what = "revert pid " + std::to_string(process.pid) + " " + report.patch_id +
                           " level " + std::to_string(report.level);
        auto marked = (*database)->mark_reverted(process, report.patch_id);
        keep(what, marked ? Result<void>{} : Result<void>(tl::unexpected(marked.error())));
        keep(what + " (history)",
             (*database)->log({.action = HistoryAction::revert,
                               .process = process,
                               .patch_id = report.patch_id,
                               .level = report.level,
                               .outcome = HistoryOutcome::ok,
                               .message = "reverted"}));
    }
    return lost;
}

// Each callback outcome of an apply or revert, a row of the callbacks
// table; the process is named by its identity now (a process that died
// meanwhile loses its rows, named as such).
void Engine::record_callbacks(Records& records, int pid, const std::string& patch_id,
                              std::uint32_t level, const std::vector<CallbackOutcome>& outcomes) {
    auto info = outcomes.empty() ? Result<ProcessInfo>{} : read_process_info(pid);
    for (const CallbackOutcome& outcome : outcomes) {
        ProcessIdentity process{pid, info ? info->start_time : 0};
        std::string name =
            record_name(callback_kind_name(outcome.kind) + " callback", process, patch_id, level);
        StateDatabase* database = records.database();
        if (!info || database == nullptr) {
            records.wrote(name, info ? Result<void>{} : Result<void>(tl::unexpected(info.error())));
            continue;
        }
        records.wrote(name,
                      database->record_callback({.process = process,
                                                 .patch_id = patch_id,
                                                 .level = level,
                                                 .callback = callback_kind_name(outcome.kind),
                                                 .outcome = callback_status_name(outcome.status),
                                                 .code = outcome.code,
                                                 .duration_ns = outcome.duration.count(),
                                                 .message = outcome.reason}));
    }
}

std::vector<std::string> Engine::record_callbacks_alone(
    int pid, const std::string& patch_id, std::uint32_t level,
    const std::vector<CallbackOutcome>& outcomes) {
    if (outcomes.empty()) {
        return {};  // no database opened for nothing
    }
    auto database = state();
    Records records(database ? *database : nullptr, database ? "" : database.error().message);
    record_callbacks(records, pid, patch_id, level, outcomes);
    return records.lost();
}

// The update cycle and the feed.

Result<UpdateReport> Engine::update(const UpdateOptions& options, const UpdateProgress& progress) {
    return run_update(*this, options, progress);  // takes the operation lock
}

Result<std::vector<RemoteRefresh>> Engine::refresh_feeds(const feed::Progress& progress) {
    return suture::refresh_feeds(options_.feed, progress);
}

Result<std::vector<feed::CachedTarget>> Engine::list_feeds() {
    return suture::list_feeds(options_.feed);
}

// New processes.

Result<void> Engine::reload_new_process_patches() {
    return new_processes_->reload();
}

std::optional<NewProcessOutcome> Engine::on_exec(int pid, std::uint64_t exec_time,
                                                 const InjectOptions& options) {
    return new_processes_->on_exec(pid, exec_time, options);  // takes the operation lock once parked
}

std::optional<NewProcessOutcome> Engine::on_library_load(const LibraryLoad& load,
                                                         const InjectOptions& options) {
    return new_processes_->on_library_load(load, options);
}

ProcessClaims& Engine::new_process_claims() {
    return new_processes_->claims();
}

std::vector<std::string> Engine::take_libraries_to_watch() {
    return new_processes_->take_libraries_to_watch();
}

void Engine::libraries_marked(const std::vector<std::string>& failed) {
    new_processes_->libraries_marked(failed);
}

void Engine::note_process_root(int pid) {
    new_processes_->note_process_root(pid);
}

void Engine::set_library_loads_watched(std::function<void()> mark) {
    new_processes_->set_loads_watched(std::move(mark));
}

const NewProcessStatistics& Engine::new_process_statistics() const {
    return new_processes_->statistics();
}

std::string Engine::executable_of(int pid) const {
    return executable_path(pid);
}

std::size_t Engine::release_abandoned_parks() {
    return release_abandoned();
}

// State.

Result<StateDatabase*> Engine::state() {
    auto identity = file_identity(options_.state_database);
    if (state_ && identity != state_file_) {
        state_.reset();  // replaced or removed since it was opened
    }
    if (!state_) {
        auto database = StateDatabase::open(options_.state_database);
        if (!database) {
            return tl::unexpected(database.error());
        }
        // Records of an earlier boot are closed before anything reads them
        // (docs/state.md, "After a reboot"). The boot id is the crash
        // lock's (engine/CrashLock.h): one notion of "this boot".
        if (auto boot = current_boot_id(); !boot.empty()) {
            auto closed = database->close_applications_of_earlier_boot(boot);
            if (!closed) {
                return tl::unexpected(closed.error());
            }
            if (*closed > 0) {
                log::info("state: " + std::to_string(*closed) +
                          " record(s) of the previous boot closed (the system rebooted)");
            }
        }
        state_ = std::make_unique<StateDatabase>(std::move(*database));
        state_file_ = file_identity(options_.state_database);
    }
    state_->set_caller_uid(caller_uid_);
    return state_.get();
}

void Engine::set_caller_uid(std::uint32_t uid) {
    caller_uid_ = uid;
    if (state_) {
        state_->set_caller_uid(uid);
    }
}

Result<std::vector<HistoryEntry>> Engine::history(std::size_t limit) {
    auto database = state();
    if (!database) {
        return tl::unexpected(database.error());
    }
    return (*database)->history(limit);
}

Result<void> Engine::set_enabled(bool enabled) {
    auto lock = hold_operation_lock();
    if (!lock) {
        return tl::unexpected(lock.error());
    }
    auto database = state();
    if (!database) {
        return tl::unexpected(database.error());
    }
    if (auto set = (*database)->set_setting("enabled", enabled ? "true" : "false"); !set) {
        return set;
    }
    return (*database)->log(
        {.action = HistoryAction::settings, .outcome = HistoryOutcome::ok, .message = enabled ? "enabled" : "disabled"});
}

Result<bool> Engine::enabled() {
    auto database = state();
    if (!database) {
        return tl::unexpected(database.error());
    }
    auto value = (*database)->setting("enabled");
    if (!value) {
        return tl::unexpected(value.error());
    }
    return !value->has_value() || **value != "false";
}

Result<void> Engine::set_exclusion(const Exclusion& exclusion, bool excluded) {
    const auto& [kind, value] = exclusion;
    if (kind != "executable" && kind != "unit") {
        return fail(ErrorCode::invalid_argument, "exclusion kind \"" + kind +
                                                     "\": must be executable or unit");
    }
    if (kind == "executable" && !value.starts_with("/")) {
        return fail(ErrorCode::invalid_argument, "--executable needs an absolute path");
    }
    auto lock = hold_operation_lock();
    if (!lock) {
        return tl::unexpected(lock.error());
    }
    auto database = state();
    if (!database) {
        return tl::unexpected(database.error());
    }
    auto changed = excluded ? (*database)->add_exclusion(kind, value)
                            : (*database)->remove_exclusion(kind, value);
    if (!changed) {
        return changed;
    }
    return (*database)->log(
        {.action = HistoryAction::settings,
         .outcome = HistoryOutcome::ok,
         .message = std::string(excluded ? "exclude " : "include ") + kind + " " + value});
}

Result<std::vector<Exclusion>> Engine::exclusions() {
    auto database = state();
    if (!database) {
        return tl::unexpected(database.error());
    }
    return (*database)->exclusions();
}

// The operation lock.

Result<std::shared_ptr<HostLock>> Engine::hold_operation_lock() {
    if (auto held = lock_.lock()) {
        return held;
    }
    auto acquired = HostLock::acquire(options_.lock_file, options_.lock_wait, options_.lock_waiting);
    if (!acquired) {
        return tl::unexpected(acquired.error());
    }
    auto held = std::make_shared<HostLock>(std::move(*acquired));
    lock_ = held;
    return held;
}

}  // namespace suture
