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
std::vector<Application> last_apply(const std::vector<Application>& rows, std::int64_t now,
                                    std::uint32_t watch_seconds) {
    std::int64_t last = 0;
    for (const Application& application : rows) {
        last = std::max(last, application.applied_at);
    }
    std::vector<Application> blamed;
    if (rows.empty() || last + watch_seconds < now) {
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

// Step: one quarantine row per blamed patch id (the highest level applied).
std::vector<Quarantine> quarantines_for(const std::vector<Application>& blamed,
                                        const CrashOutcome& crash, std::int64_t now) {
    std::map<std::string, Quarantine> by_id;
    for (const Application& application : blamed) {
        Quarantine& row = by_id[application.patch_id];
        row.level = std::max(row.level, application.level);
        row.patch_id = application.patch_id;
        row.at = now;
        row.reason = "crash";
        row.process = crash.process;
        row.comm = crash.comm;
        row.signal = crash.signal;
        row.message = "pid " + std::to_string(crash.process.pid) + " (" + crash.comm +
                      ") killed by " + signal_name(crash.signal) + " " +
                      std::to_string(now - application.applied_at) + " s after its apply";
    }
    std::vector<Quarantine> rows;
    for (auto& [id, row] : by_id) {
        rows.push_back(std::move(row));
    }
    return rows;
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

// 1. The operation lock (no update applies meanwhile). 2. The patches of
// the process's last apply, if within watch_seconds: none, and the crash is
// nobody's. 3. Each blamed id quarantined, before anything else, so
// nothing applies it again. 4. The dead process's rows closed. 5. The
// ids reverted from every process (each revert recorded as revert() does).
// 6. A history entry per id; the new-process patches reloaded without it.
Result<std::optional<CrashOutcome>> Engine::handle_crash(int pid, int signal,
                                                         const InjectOptions& options) {
    auto started = std::chrono::steady_clock::now();
    auto lock = hold_operation_lock();
    if (!lock) {
        return tl::unexpected(lock.error());
    }
    auto database = state();
    if (!database) {
        return tl::unexpected(database.error());
    }
    StateDatabase& db = **database;
    auto policy = load_policy(options_.feed.config_directory);
    std::uint32_t watch_seconds = policy ? policy->watch_seconds : Policy{}.watch_seconds;
    auto active = db.applications(ApplicationState::active);
    if (!active) {
        return tl::unexpected(active.error());
    }
    std::int64_t now = ::time(nullptr);
    std::vector<Application> rows = applications_of(*active, pid);
    std::vector<Application> blamed = last_apply(rows, now, watch_seconds);
    if (blamed.empty()) {
        return std::optional<CrashOutcome>{};
    }
    CrashOutcome crash{.process = blamed.front().process,
                       .comm = comm_of(pid, blamed.front().executable),
                       .executable = blamed.front().executable,
                       .signal = signal,
                       .at = now};
    crash.quarantined = quarantines_for(blamed, crash, now);
    Records records(&db);
    RevertScope scope;
    for (const Quarantine& row : crash.quarantined) {
        records.wrote("quarantine of " + row.patch_id, db.record_quarantine(row));
        scope.patch_ids.insert(row.patch_id);
    }
    for (const Application& application : rows) {
        std::string name =
            record_name("close", application.process, application.patch_id, application.level);
        records.wrote(name, db.set_application_state(application.id, ApplicationState::exited));
        records.wrote(name + " (history)",
                      db.log({.action = HistoryAction::close,
                              .process = application.process,
                              .patch_id = application.patch_id,
                              .level = application.level,
                              .outcome = HistoryOutcome::ok,
                              .reason = "crashed",
                              .message = "the process was killed by " + signal_name(signal)}));
    }
    auto reverted = revert_everywhere(scope, options);
    if (reverted) {
        crash.reverted = std::move(*reverted);
    }
    crash.revert_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::steady_clock::now() - started)
                          .count();
    for (const Quarantine& row : crash.quarantined) {
        std::size_t count = 0;
        for (const UpdateAction& action : crash.reverted.actions) {
            count += action.patch_id == row.patch_id && action.outcome == ActionOutcome::reverted;
        }
        records.wrote("quarantine of " + row.patch_id + " (history)",
                      db.log({.action = HistoryAction::quarantine,
                              .process = row.process,
                              .patch_id = row.patch_id,
                              .level = row.level,
                              .outcome = reverted ? HistoryOutcome::ok : HistoryOutcome::failed,
                              .reason = "crash",
                              .message = row.message + "; reverted from " + std::to_string(count) +
                                         " process(es)" +
                                         (reverted ? "" : ": " + reverted.error().message)}));
    }
    records.commit();
    crash.reverted.lost_records.insert(crash.reverted.lost_records.end(), records.lost().begin(),
                                       records.lost().end());
    (void)reload_new_process_patches();
    return std::optional<CrashOutcome>(std::move(crash));
}

std::vector<CrashOutcome> Engine::watch_health(std::chrono::seconds duration,
                                               const InjectOptions& options) {
    std::vector<CrashOutcome> outcomes;
    auto deadline = std::chrono::steady_clock::now() + duration;
    while (exit_events_ && std::chrono::steady_clock::now() < deadline) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            deadline - std::chrono::steady_clock::now());
        // A crash waiting for the lock is tried again every 200 ms.
        int timeout = static_cast<int>(pending_deaths_.empty() ? left.count()
                                                               : std::min<long>(left.count(), 200));
        pollfd ready{.fd = exit_events_->fd(), .events = POLLIN, .revents = 0};
        (void)::poll(&ready, 1, std::max(timeout, 0));
        for (CrashOutcome& outcome : handle_health_events(options)) {
            outcomes.push_back(std::move(outcome));
        }
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
