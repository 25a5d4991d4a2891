// The health watch: exit events from the process connector, a crash blamed
// on the patches applied in the process within watch_seconds, those
// quarantined and reverted from every process of the host.
#include "engine/HealthWatch.h"

#include <linux/cn_proc.h>
#include <linux/connector.h>
#include <linux/netlink.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <ctime>
#include <iterator>
#include <map>

#include "base/Log.h"
#include "engine/Candidates.h"
#include "engine/Engine.h"
#include "engine/Policy.h"
#include "proc/Process.h"
#include "state/HostLock.h"

namespace suture {

bool is_crash_signal(int signal) {
    return signal == SIGSEGV || signal == SIGBUS || signal == SIGILL || signal == SIGABRT ||
           signal == SIGFPE;
}

std::string signal_name(int signal) {
    switch (signal) {
        case SIGSEGV:
            return "SIGSEGV";
        case SIGBUS:
            return "SIGBUS";
        case SIGILL:
            return "SIGILL";
        case SIGABRT:
            return "SIGABRT";
        case SIGFPE:
            return "SIGFPE";
        case SIGKILL:
            return "SIGKILL";
        case SIGTERM:
            return "SIGTERM";
        default:
            return "signal " + std::to_string(signal);
    }
}

Result<ExitEvents> ExitEvents::open() {
    UniqueFD socket(
        ::socket(PF_NETLINK, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, NETLINK_CONNECTOR));
    if (!socket.is_valid()) {
        return fail_errno("proc connector socket", errno);
    }
    // Room for a burst of exits (a host killing a few thousand processes at
    // once); SO_RCVBUFFORCE goes past rmem_max for root, SO_RCVBUF otherwise.
    int buffer = 4 << 20;
    if (::setsockopt(socket.get(), SOL_SOCKET, SO_RCVBUFFORCE, &buffer, sizeof buffer) != 0) {
        (void)::setsockopt(socket.get(), SOL_SOCKET, SO_RCVBUF, &buffer, sizeof buffer);
    }
    sockaddr_nl address{};
    address.nl_family = AF_NETLINK;
    address.nl_groups = CN_IDX_PROC;
    if (::bind(socket.get(), reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
        return fail_errno("proc connector bind", errno);
    }
    // Subscribe: a netlink message carrying a cn_msg carrying the operation.
    alignas(nlmsghdr) char request[NLMSG_SPACE(sizeof(cn_msg) + sizeof(proc_cn_mcast_op))] = {};
    auto* header = reinterpret_cast<nlmsghdr*>(request);
    header->nlmsg_len = NLMSG_LENGTH(sizeof(cn_msg) + sizeof(proc_cn_mcast_op));
    header->nlmsg_type = NLMSG_DONE;
    header->nlmsg_pid = static_cast<__u32>(::getpid());
    auto* message = static_cast<cn_msg*>(NLMSG_DATA(header));
    message->id.idx = CN_IDX_PROC;
    message->id.val = CN_VAL_PROC;
    message->len = sizeof(proc_cn_mcast_op);
    proc_cn_mcast_op operation = PROC_CN_MCAST_LISTEN;
    std::memcpy(message->data, &operation, sizeof operation);
    if (::send(socket.get(), request, header->nlmsg_len, 0) < 0) {
        return fail_errno("proc connector subscribe", errno);
    }
    return ExitEvents(std::move(socket));
}

// The exit event's exit_code is the task's: for a death by signal, the
// signal number (with 0x80 when it dumped core), as a wait status has it;
// for an exit, the status shifted left by 8 (low seven bits zero).
std::vector<Death> ExitEvents::drain() {
    std::vector<Death> deaths;
    alignas(nlmsghdr) char buffer[8192];
    for (;;) {
        sockaddr_nl sender{};
        socklen_t sender_size = sizeof sender;
        ssize_t received = ::recvfrom(socket_.get(), buffer, sizeof buffer, 0,
                                      reinterpret_cast<sockaddr*>(&sender), &sender_size);
        if (received < 0 && errno == ENOBUFS) {
            ++overflows_;  // events were lost; the socket goes on
            continue;
        }
        if (received <= 0) {
            return deaths;  // nothing waiting (EAGAIN)
        }
        if (sender.nl_pid != 0) {
            continue;  // not from the kernel: no process may report a crash
        }
        unsigned remaining = static_cast<unsigned>(received);
        for (auto* header = reinterpret_cast<nlmsghdr*>(buffer); NLMSG_OK(header, remaining);
             header = NLMSG_NEXT(header, remaining)) {
            if (header->nlmsg_type == NLMSG_ERROR || header->nlmsg_type == NLMSG_NOOP) {
                continue;
            }
            auto* message = static_cast<cn_msg*>(NLMSG_DATA(header));
            if (message->id.idx != CN_IDX_PROC || message->len < sizeof(proc_event)) {
                continue;
            }
            auto* event = reinterpret_cast<proc_event*>(message->data);
            if (event->what != proc_event::PROC_EVENT_EXIT) {
                continue;
            }
            const auto& exit = event->event_data.exit;
            int signal = static_cast<int>(exit.exit_code & 0x7f);
            if (exit.process_pid == exit.process_tgid && signal != 0) {
                deaths.push_back({static_cast<int>(exit.process_tgid), signal});
            }
        }
    }
}

namespace {

// The active applications of `pid`.
std::vector<Application> applications_of(const std::vector<Application>& active, int pid) {
    std::vector<Application> rows;
    std::copy_if(active.begin(), active.end(), std::back_inserter(rows),
                 [&](const Application& application) { return application.process.pid == pid; });
    return rows;
}

// The patches blamed for a crash: those of the process's last apply (an
// update applies all of a process's patches in one stop, so they share
// their time), if it was within `watch_seconds` of `now`. suture cannot
// tell which of the patches applied together made the process crash, so
// it blames each; earlier applies, which the process survived, it does not.
// A `watch_seconds` of 0 blames nothing (the watch is off).
std::vector<Application> last_apply(const std::vector<Application>& rows, std::int64_t now,
                                    std::uint32_t watch_seconds) {
    std::int64_t last = 0;
    for (const Application& application : rows) {
        last = std::max(last, application.applied_at);
    }
    std::vector<Application> blamed;
    if (watch_seconds == 0 || rows.empty() || last + watch_seconds < now) {
        return blamed;
    }
    std::copy_if(rows.begin(), rows.end(), std::back_inserter(blamed),
                 [&](const Application& application) { return application.applied_at == last; });
    return blamed;
}

// The comm of the dead process: a zombie's is still in /proc until it is
// reaped; else the executable's file name.
std::string comm_of(int pid, const std::string& executable) {
    if (auto info = read_process_info(pid); info && !info->comm.empty()) {
        return info->comm;
    }
    auto slash = executable.rfind('/');
    return slash == std::string::npos ? executable : executable.substr(slash + 1);
}

// Step: one quarantine row per blamed patch id (the highest level applied),
// `what` saying what was seen ("killed by SIGSEGV", "health_check nginx
// failed: exit 7").
std::vector<Quarantine> quarantines_for(const std::vector<Application>& blamed,
                                        const CrashOutcome& failure, const std::string& what,
                                        std::int64_t now) {
    std::map<std::string, Quarantine> by_id;
    for (const Application& application : blamed) {
        Quarantine& row = by_id[application.patch_id];
        row.level = std::max(row.level, application.level);
        row.patch_id = application.patch_id;
        row.at = now;
        row.reason = failure.cause;
        row.process = application.process;
        row.comm = failure.comm;
        row.signal = failure.signal;
        row.message = "pid " + std::to_string(application.process.pid) + " (" + failure.comm +
                      ") " + what + " " + std::to_string(now - application.applied_at) +
                      " s after its apply";
    }
    std::vector<Quarantine> rows;
    for (auto& [id, row] : by_id) {
        rows.push_back(std::move(row));
    }
    return rows;
}

// The last apply within watch_seconds of each process in `rows`.
std::vector<Application> last_applies(const std::vector<Application>& rows, std::int64_t now,
                                      std::uint32_t watch_seconds) {
    std::map<int, std::vector<Application>> by_pid;
    for (const Application& application : rows) {
        by_pid[application.process.pid].push_back(application);
    }
    std::vector<Application> blamed;
    for (const auto& [pid, own] : by_pid) {
        for (Application& application : last_apply(own, now, watch_seconds)) {
            blamed.push_back(std::move(application));
        }
    }
    return blamed;
}

// The active applications of live processes that health check `check`
// watches (their unit or executable, read now).
std::vector<Application> watched_by(const HealthCheck& check,
                                    const std::vector<Application>& active) {
    std::map<int, bool> watched;
    std::vector<Application> rows;
    for (const Application& application : active) {
        int pid = application.process.pid;
        if (!watched.contains(pid)) {
            auto info = read_process_info(pid);
            watched[pid] = info && info->start_time == application.process.start_time &&
                           health_check_matches(check.name, systemd_unit(pid),
                                                application.executable);
        }
        if (watched[pid]) {
            rows.push_back(application);
        }
    }
    return rows;
}

// Whether the last run of a check that started no later than `applied_at`
// was healthy (none: nothing says the service was well before the apply).
bool healthy_before(const std::deque<CheckRun>& runs, std::int64_t applied_at) {
    const CheckRun* before = nullptr;
    for (const CheckRun& run : runs) {
        if (run.started_at <= applied_at) {
            before = &run;
        }
    }
    return before != nullptr && before->healthy;
}

std::int64_t milliseconds_since(std::chrono::steady_clock::time_point started) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                                 started)
        .count();
}

void remember(CheckState& state, CheckRun run) {
    state.runs.push_back(run);
    while (state.runs.size() > 16) {
        state.runs.pop_front();
    }
}

}  // namespace

Result<void> Engine::open_health_watch() {
    if (exit_events_) {
        return {};
    }
    auto events = ExitEvents::open();
    if (!events) {
        return tl::unexpected(events.error());
    }
    exit_events_ = std::make_unique<ExitEvents>(std::move(*events));
    return {};
}

int Engine::health_watch_fd() const {
    return exit_events_ ? exit_events_->fd() : -1;
}

std::vector<CrashOutcome> Engine::handle_health_events(const InjectOptions& options) {
    // 1. What waited for the lock last time, then what the kernel sent.
    std::vector<std::pair<int, int>> deaths = std::move(pending_deaths_);
    pending_deaths_.clear();
    if (exit_events_) {
        for (const Death& death : exit_events_->drain()) {
            if (is_crash_signal(death.signal)) {
                deaths.push_back({death.pid, death.signal});
            }
        }
    }
    // 2. Each crash in turn; one that finds the lock held waits for the next call.
    std::vector<CrashOutcome> outcomes;
    for (const auto& [pid, signal] : deaths) {
        auto outcome = handle_crash(pid, signal, options);
        if (!outcome && outcome.error().code == ErrorCode::locked) {
            pending_deaths_.push_back({pid, signal});
        } else if (!outcome) {
            log::error("health watch: pid " + std::to_string(pid) + ": " + outcome.error().message);
        } else if (*outcome) {
            outcomes.push_back(std::move(**outcome));
        }
    }
    return outcomes;
}

// What every judgement of the watch starts from, under the operation lock
// (no update applies meanwhile): the state database, watch_seconds
// (suture.conf) and the applications it knows active, read now.
Result<BlameGround> Engine::blame_ground() {
    auto lock = hold_operation_lock();
    if (!lock) {
        return tl::unexpected(lock.error());
    }
    auto database = state();
    if (!database) {
        return tl::unexpected(database.error());
    }
    auto policy = load_policy(options_.feed.config_directory);
    auto active = (*database)->applications(ApplicationState::active);
    if (!active) {
        return tl::unexpected(active.error());
    }
    return BlameGround{.lock = std::move(*lock),
                       .database = *database,
                       .watch_seconds = policy ? policy->watch_seconds : Policy{}.watch_seconds,
                       .active = std::move(*active),
                       .now = ::time(nullptr)};
}

// 1. The blame ground. 2. The patches of the process's last apply, if
// within watch_seconds: none, and the crash is nobody's. 3. The dead
// process's rows closed. 4. The blamed ids quarantined and reverted
// everywhere (quarantine_and_revert).
Result<std::optional<CrashOutcome>> Engine::handle_crash(int pid, int signal,
                                                         const InjectOptions& options) {
    auto started = std::chrono::steady_clock::now();
    auto ground = blame_ground();
    if (!ground) {
        return tl::unexpected(ground.error());
    }
    std::vector<Application> rows = applications_of(ground->active, pid);
    std::vector<Application> blamed = last_apply(rows, ground->now, ground->watch_seconds);
    if (blamed.empty()) {
        return std::optional<CrashOutcome>{};
    }
    CrashOutcome crash{.process = blamed.front().process,
                       .comm = comm_of(pid, blamed.front().executable),
                       .executable = blamed.front().executable,
                       .signal = signal,
                       .cause = "crash",
                       .detail = signal_name(signal),
                       .at = ground->now};
    Records records(ground->database);
    for (const Application& application : rows) {
        close_application(records, application, "crashed",
                          "the process was killed by " + signal_name(signal));
    }
    quarantine_and_revert(blamed, "killed by " + signal_name(signal), crash, records, options);
    crash.revert_ms = milliseconds_since(started);
    return std::optional<CrashOutcome>(std::move(crash));
}

// 1. Each blamed id quarantined, before anything else, so nothing applies
// it again. 2. The ids reverted from every process (each revert recorded
// as revert() does). 3. A history entry per id; the records committed;
// the new-process patches reloaded without them.
void Engine::quarantine_and_revert(const std::vector<Application>& blamed,
                                   const std::string& what, CrashOutcome& failure,
                                   Records& records, const InjectOptions& options) {
    StateDatabase& db = *records.database();
    failure.quarantined = quarantines_for(blamed, failure, what, failure.at);
    RevertScope scope;
    for (const Quarantine& row : failure.quarantined) {
        records.wrote("quarantine of " + row.patch_id, db.record_quarantine(row));
        scope.patch_ids.insert(row.patch_id);
    }
    auto reverted = revert_everywhere(scope, options);
    if (reverted) {
        failure.reverted = std::move(*reverted);
    }
    for (const Quarantine& row : failure.quarantined) {
        std::size_t count = 0;
        for (const UpdateAction& action : failure.reverted.actions) {
            count += action.patch_id == row.patch_id && action.outcome == ActionOutcome::reverted;
        }
        records.wrote("quarantine of " + row.patch_id + " (history)",
                      db.log({.action = HistoryAction::quarantine,
                              .process = row.process,
                              .patch_id = row.patch_id,
                              .level = row.level,
                              .outcome = reverted ? HistoryOutcome::ok : HistoryOutcome::failed,
                              .reason = failure.cause,
                              .message = row.message + "; reverted from " + std::to_string(count) +
                                         " process(es)" +
                                         (reverted ? "" : ": " + reverted.error().message)}));
    }
    records.commit();
    failure.reverted.lost_records.insert(failure.reverted.lost_records.end(),
                                         records.lost().begin(), records.lost().end());
    (void)reload_new_process_patches();
}

// 1. The blame ground. 2. The active applications recorded in `unit`, the
// last apply within watch_seconds of each process: none, and the failure
// is nobody's. 3. The records of its processes that are gone closed. 4.
// The blamed ids quarantined and reverted everywhere.
Result<std::optional<CrashOutcome>> Engine::handle_unit_failure(const std::string& unit,
                                                                const InjectOptions& options) {
    auto started = std::chrono::steady_clock::now();
    auto ground = blame_ground();
    if (!ground) {
        return tl::unexpected(ground.error());
    }
    std::vector<Application> rows;
    std::copy_if(ground->active.begin(), ground->active.end(), std::back_inserter(rows),
                 [&](const Application& application) { return application.unit == unit; });
    std::vector<Application> blamed = last_applies(rows, ground->now, ground->watch_seconds);
    if (blamed.empty()) {
        return std::optional<CrashOutcome>{};
    }
    CrashOutcome failure{.process = blamed.front().process,
                         .comm = comm_of(blamed.front().process.pid, blamed.front().executable),
                         .executable = blamed.front().executable,
                         .signal = 0,
                         .cause = "unit_failed",
                         .detail = unit + " entered failed",
                         .at = ground->now};
    std::erase_if(rows, [](const Application& application) {
        auto info = read_process_info(application.process.pid);
        return info && info->start_time == application.process.start_time;  // alive: reverted
    });
    Records records(ground->database);
    for (const Application& application : rows) {
        close_application(records, application, "unit_failed",
                          "the process exited; its unit " + unit + " entered failed");
    }
    quarantine_and_revert(blamed, "of unit " + unit + " which entered failed", failure, records,
                          options);
    failure.revert_ms = milliseconds_since(started);
    return std::optional<CrashOutcome>(std::move(failure));
}

std::vector<std::string> Engine::run_health_baselines(const std::vector<int>& pids) {
    std::vector<std::string> problems;
    auto policy = load_policy(options_.feed.config_directory);
    if (!policy || policy->health_checks.empty()) {
        return problems;
    }
    if (!health_checks_) {
        health_checks_ = std::make_unique<HealthChecks>();
    }
    for (const HealthCheck& check : policy->health_checks) {
        bool watched = std::any_of(pids.begin(), pids.end(), [&](int pid) {
            return health_check_matches(check.name, systemd_unit(pid), executable_of(pid));
        });
        if (!watched) {
            continue;
        }
        CheckState& check_state = health_checks_->by_name[check.name];
        check_state.running.reset();  // a run going on says nothing of now
        auto run = ProbeRun::start(check.command, std::chrono::seconds(policy->health_check_timeout));
        if (!run) {
            problems.push_back("health_check " + check.name + ": " + run.error().message);
            continue;
        }
        ProbeResult result = run->wait();
        remember(check_state, {.started_at = run->started_at(), .healthy = result.healthy});
        if (!result.healthy) {
            problems.push_back("health_check " + check.name + " failed before the apply (" +
                               result.detail + "): its failures are not blamed on this apply");
        }
    }
    return problems;
}

std::vector<CrashOutcome> Engine::handle_health_checks(const InjectOptions& options) {
    std::vector<CrashOutcome> outcomes;
    auto policy = load_policy(options_.feed.config_directory);
    if (!policy || policy->health_checks.empty()) {
        health_checks_.reset();
        return outcomes;
    }
    if (!health_checks_) {
        health_checks_ = std::make_unique<HealthChecks>();
    }
    for (const HealthCheck& check : policy->health_checks) {
        CheckState& check_state = health_checks_->by_name[check.name];
        auto outcome = step_health_check(check, *policy, check_state, options);
        if (!outcome && outcome.error().code != ErrorCode::locked) {
            log::error("health watch: health_check " + check.name + ": " + outcome.error().message);
        } else if (outcome && *outcome) {
            outcomes.push_back(std::move(**outcome));
        }
    }
    return outcomes;
}

// 1. A failure that waited for the lock, or the end of the run going on:
// a healthy end remembered; a failure judged (blame_health_check). 2. No
// run going on and one due: started, if some process it watches is within
// watch_seconds of an apply (else nothing needs watching).
Result<std::optional<CrashOutcome>> Engine::step_health_check(const HealthCheck& check,
                                                              const Policy& policy,
                                                              CheckState& check_state,
                                                              const InjectOptions& options) {
    if (!check_state.pending_failure && check_state.running) {
        if (auto result = check_state.running->poll()) {
            CheckRun run{.started_at = check_state.running->started_at(), .healthy = result->healthy};
            check_state.running.reset();
            if (result->healthy) {
                remember(check_state, run);
            } else {
                check_state.pending_failure = std::make_pair(run, result->detail);
            }
        }
    }
    if (check_state.pending_failure) {
        auto outcome = blame_health_check(check, check_state, options);
        if (outcome || outcome.error().code != ErrorCode::locked) {
            remember(check_state, check_state.pending_failure->first);
            check_state.pending_failure.reset();
        }
        return outcome;
    }
    auto now = ProbeRun::Clock::now();
    if (check_state.running || now < check_state.next_due) {
        return std::optional<CrashOutcome>{};
    }
    // Due: looked at again an interval from now, whether it runs or not.
    check_state.next_due = now + std::chrono::seconds(policy.health_check_interval);
    auto database = state();
    if (!database) {
        return tl::unexpected(database.error());
    }
    auto active = (*database)->applications(ApplicationState::active);
    if (!active) {
        return tl::unexpected(active.error());
    }
    std::int64_t seconds = ::time(nullptr);
    if (last_applies(watched_by(check, *active), seconds, policy.watch_seconds).empty()) {
        return std::optional<CrashOutcome>{};
    }
    auto run = ProbeRun::start(check.command, std::chrono::seconds(policy.health_check_timeout));
    if (!run) {
        return tl::unexpected(run.error());
    }
    check_state.running.emplace(std::move(*run));
    return std::optional<CrashOutcome>{};
}

// A failed run of `check`: under the operation lock, the last apply within
// watch_seconds of each process it watches, if the check was healthy
// before that apply, quarantined and reverted everywhere.
Result<std::optional<CrashOutcome>> Engine::blame_health_check(const HealthCheck& check,
                                                               CheckState& check_state,
                                                               const InjectOptions& options) {
    auto started = std::chrono::steady_clock::now();
    auto ground = blame_ground();
    if (!ground) {
        return tl::unexpected(ground.error());
    }
    std::vector<Application> blamed;
    for (Application& application :
         last_applies(watched_by(check, ground->active), ground->now, ground->watch_seconds)) {
        if (healthy_before(check_state.runs, application.applied_at)) {
            blamed.push_back(std::move(application));
        }
    }
    const std::string& detail = check_state.pending_failure->second;
    if (blamed.empty()) {
        log::warning("health watch: health_check " + check.name + " failed (" + detail +
                     "), but it was not healthy before the last apply: nothing blamed");
        return std::optional<CrashOutcome>{};
    }
    CrashOutcome failure{.process = blamed.front().process,
                         .comm = comm_of(blamed.front().process.pid, blamed.front().executable),
                         .executable = blamed.front().executable,
                         .signal = 0,
                         .cause = "health_check",
                         .detail = check.name + ": " + detail,
                         .at = ground->now};
    Records records(ground->database);
    quarantine_and_revert(blamed, "failed health_check " + check.name + " (" + detail + ")",
                          failure, records, options);
    failure.revert_ms = milliseconds_since(started);
    return std::optional<CrashOutcome>(std::move(failure));
}

std::vector<CrashOutcome> Engine::watch_health(std::chrono::seconds duration,
                                               const InjectOptions& options) {
    std::vector<CrashOutcome> outcomes;
    auto take = [&](std::vector<CrashOutcome> more) {
        for (CrashOutcome& outcome : more) {
            outcomes.push_back(std::move(outcome));
        }
    };
    auto deadline = std::chrono::steady_clock::now() + duration;
    while (exit_events_ && std::chrono::steady_clock::now() < deadline) {
        take(handle_health_checks(options));
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            deadline - std::chrono::steady_clock::now());
        // A crash waiting for the lock and the health checks are looked at
        // every 200 ms.
        bool often = !pending_deaths_.empty() || health_checks_ != nullptr;
        int timeout = static_cast<int>(often ? std::min<long>(left.count(), 200) : left.count());
        pollfd ready{.fd = exit_events_->fd(), .events = POLLIN, .revents = 0};
        (void)::poll(&ready, 1, std::max(timeout, 0));
        take(handle_health_events(options));
    }
    return outcomes;
}

Result<std::vector<Quarantine>> Engine::quarantined() {
    auto database = state();
    if (!database) {
        return tl::unexpected(database.error());
    }
    return (*database)->quarantined();
}

Result<bool> Engine::release_quarantine(const std::string& patch_id) {
    auto lock = hold_operation_lock();
    if (!lock) {
        return tl::unexpected(lock.error());
    }
    auto database = state();
    if (!database) {
        return tl::unexpected(database.error());
    }
    auto released = (*database)->release_quarantine(patch_id);
    if (!released || !*released) {
        return released;
    }
    if (auto logged = (*database)->log({.action = HistoryAction::release,
                                        .patch_id = patch_id,
                                        .outcome = HistoryOutcome::ok,
                                        .message = "quarantine released"});
        !logged) {
        return tl::unexpected(logged.error());
    }
    (void)reload_new_process_patches();
    return true;
}

}  // namespace suture
