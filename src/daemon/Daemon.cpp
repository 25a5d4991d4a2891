#include "daemon/Daemon.h"

#include <sched.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <exception>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/Log.h"
#include "config.h"

namespace suture {

namespace {

// Every method runs inside this: nothing a caller sends may take the daemon
// down, so an exception (a bug, or memory exhausted) becomes an error reply
// instead of unwinding through sd-bus's C frames into std::terminate.
using MethodHandler = int (*)(sd_bus_message*, void*, sd_bus_error*);
template <MethodHandler handler>
int guarded(sd_bus_message* message, void* self, sd_bus_error* error) {
    try {
        return handler(message, self, error);
    } catch (const std::exception& exception) {
        const char* member = sd_bus_message_get_member(message);
        log::error(std::string("sutured: ") + (member ? member : "?") + ": " + exception.what());
        return sd_bus_error_setf(error, SD_BUS_ERROR_FAILED, "sutured: internal error: %s",
                                 exception.what());
    }
}

const sd_bus_vtable daemon_vtable[] = {
    SD_BUS_VTABLE_START(0),
    SD_BUS_METHOD_WITH_NAMES("Status", "ai", SD_BUS_PARAM(pids), "s", SD_BUS_PARAM(document),
                             guarded<Daemon::status>, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD_WITH_NAMES("Update", "b", SD_BUS_PARAM(offline), "s", SD_BUS_PARAM(document),
                             guarded<Daemon::update>, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD_WITH_NAMES("UpdateWith", "s", SD_BUS_PARAM(options), "s",
                             SD_BUS_PARAM(document), guarded<Daemon::update_with>,
                             SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD_WITH_NAMES("Apply", "is", SD_BUS_PARAM(pid) SD_BUS_PARAM(patch_path), "s",
                             SD_BUS_PARAM(document), guarded<Daemon::apply>,
                             SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD_WITH_NAMES("Revert", "is", SD_BUS_PARAM(pid) SD_BUS_PARAM(patch_id), "s",
                             SD_BUS_PARAM(document), guarded<Daemon::revert>,
                             SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD_WITH_NAMES("RevertEverywhere", "s", SD_BUS_PARAM(scope), "s",
                             SD_BUS_PARAM(document), guarded<Daemon::revert_everywhere>,
                             SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD_WITH_NAMES("History", "u", SD_BUS_PARAM(limit), "s", SD_BUS_PARAM(document),
                             guarded<Daemon::history>, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD_WITH_NAMES("SetEnabled", "b", SD_BUS_PARAM(enabled), "", ,
                             guarded<Daemon::set_enabled>, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD_WITH_NAMES("Quarantine", "", , "s", SD_BUS_PARAM(document),
                             guarded<Daemon::quarantine>, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD_WITH_NAMES("ReleaseQuarantine", "s", SD_BUS_PARAM(patch_id), "s",
                             SD_BUS_PARAM(document), guarded<Daemon::release_quarantine>,
                             SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_PROPERTY("Enabled", "b", Daemon::enabled_property, 0, 0),
    SD_BUS_PROPERTY("Version", "s", Daemon::version_property, 0, SD_BUS_VTABLE_PROPERTY_CONST),
    SD_BUS_SIGNAL_WITH_NAMES("ProcessPatched", "isu",
                             SD_BUS_PARAM(pid) SD_BUS_PARAM(patch_id) SD_BUS_PARAM(level), 0),
    SD_BUS_SIGNAL_WITH_NAMES("PatchQuarantined", "suisiu",
                             SD_BUS_PARAM(patch_id) SD_BUS_PARAM(level) SD_BUS_PARAM(pid)
                                 SD_BUS_PARAM(comm) SD_BUS_PARAM(signal) SD_BUS_PARAM(reverted),
                             0),
    SD_BUS_VTABLE_END};

}  // namespace

Result<std::unique_ptr<Daemon>> Daemon::open(DaemonOptions options) {
    auto engine = Engine::open(options.engine);
    if (!engine) {
        return tl::unexpected(engine.error());
    }
    return std::unique_ptr<Daemon>(new Daemon(std::move(options), std::move(*engine)));
}

// The bus connection, made only once the event loop is about to run: the
// connection's authentication proceeds in that loop, and a bus daemon drops
// a client that does not answer within its auth_timeout (the first offline
// update at boot can take longer than that on a slow machine).
Result<void> Daemon::connect_bus() {
    sd_bus* connection = nullptr;
    int result = sd_bus_open_system(&connection);
    if (result < 0) {
        return fail_errno("system bus", -result);
    }
    bus_.reset(connection);
    sd_bus_slot* slot = nullptr;
    result = sd_bus_add_object_vtable(connection, &slot, bus::path, bus::interface, daemon_vtable,
                                      this);
    if (result < 0) {
        return fail_errno("D-Bus object " + std::string(bus::path), -result);
    }
    slot_.reset(slot);
    if (sd_bus_attach_event(connection, event_.get(), 0) < 0) {
        return fail_errno("system bus: event loop", EINVAL);
    }
    return {};
}

int Daemon::reply(sd_bus_message* message, const nlohmann::json& document) {
    // Invalid UTF-8 (a process's comm can hold any bytes) is replaced, not
    // thrown: the daemon never aborts on what it reads.
    std::string text = document.dump(2, ' ', false, nlohmann::json::error_handler_t::replace);
    return sd_bus_reply_method_return(message, "s", text.c_str());
}

int Daemon::run() {
    sd_event* loop = nullptr;
    if (sd_event_default(&loop) < 0) {
        log::error("sutured: cannot set up the event loop");
        return 1;
    }
    event_.reset(loop);
    // SIGTERM/SIGINT end the loop cleanly (sd-event needs them blocked).
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGTERM);
    sigaddset(&signals, SIGINT);
    sigprocmask(SIG_BLOCK, &signals, nullptr);
    sd_event_add_signal(loop, nullptr, SIGTERM, nullptr, nullptr);
    sd_event_add_signal(loop, nullptr, SIGINT, nullptr, nullptr);
    if (options_.new_processes) {
        watch_new_processes();
    }
    watch_health();
    if (options_.rescan_seconds > 0) {
        sd_event_add_time_relative(loop, nullptr, CLOCK_MONOTONIC,
                                   options_.rescan_seconds * 1000000ULL, 1000000ULL, Daemon::rescan,
                                   this);
    }
    // At boot sutured starts before basic.target, and so before the bus
    // daemon (data/systemd/sutured.service): new processes are gated from
    // here on, and one offline update patches what already runs, before
    // systemd hears that sutured is ready and starts the ordinary services.
    // (Only with rescans: --rescan-seconds 0 asks for no whole-host updates.)
    if (options_.rescan_seconds > 0) {
        rescan_once();
    }
    write_metrics();
    sd_notify(0, "READY=1\nSTATUS=gating new processes; offline update done");
    if (auto connected = connect_bus(); !connected) {
        log::error("sutured: " + connected.error().message);
        return 1;
    }
    watch_units();
    // The name last, asynchronously: the bus daemon may start only after
    // sutured is ready; a client that sees the name finds the daemon fully
    // ready.
    if (int result = sd_bus_request_name_async(bus_.get(), nullptr, bus::name, 0,
                                               Daemon::name_acquired, this);
        result < 0) {
        log::error(std::string("sutured: D-Bus name ") + bus::name + ": " + std::strerror(-result));
        return 1;
    }
    int result = sd_event_loop(loop);
    if (exec_watcher_) {
        log_new_process_statistics();
    }
    return result != 0 ? 1 : 0;  // an error, or name_acquired's exit(1)
}

// The answer to the name request: a refusal (another sutured, or not root)
// ends the daemon as the synchronous request did.
int Daemon::name_acquired(sd_bus_message* reply, void* self, sd_bus_error*) {
    auto* daemon = static_cast<Daemon*>(self);
    if (const sd_bus_error* error = sd_bus_message_get_error(reply); error != nullptr) {
        log::error(std::string("sutured: D-Bus name ") + bus::name + ": " +
                   (error->message ? error->message : error->name) +
                   " (only root may own it; is another sutured running?)");
        sd_event_exit(daemon->event_.get(), 1);
        return 0;
    }
    log::info(std::string("sutured: serving ") + bus::name);
    return 0;
}

void Daemon::watch_new_processes() {
    if (std::size_t released = engine_->release_abandoned_parks(); released > 0) {
        log::warning("sutured: released " + std::to_string(released) +
                     " process(es) a previous sutured left parked");
    }
    if (auto loaded = reload_new_processes(); !loaded) {
        log::warning("sutured: no patchsets for new processes yet: " + loaded.error().message);
    }
    auto watcher = ExecWatcher::open();
    if (!watcher) {
        log::warning("sutured: new processes will not be patched at start: " +
                     watcher.error().message);
        return;
    }
    // A new process's loader runs for a millisecond or two before its
    // entry point: sutured must run the moment an exec event arrives, even
    // on a busy machine, so it takes the lowest real-time priority (the
    // kernel's real-time throttling still leaves others 5% of every second;
    // children do not inherit it). Without the privilege: nice -15.
    sched_param lowest_realtime{};
    lowest_realtime.sched_priority = 1;
    if (::sched_setscheduler(0, SCHED_FIFO | SCHED_RESET_ON_FORK, &lowest_realtime) != 0 &&
        ::setpriority(PRIO_PROCESS, 0, -15) != 0) {
        log::warning("sutured: cannot raise its priority; new processes may be patched late");
    }
    exec_watcher_.emplace(std::move(*watcher));
    sd_event_add_io(event_.get(), nullptr, exec_watcher_->fd(), EPOLLIN, Daemon::exec_events, this);
    log::info("sutured: patching new processes at their entry point");
    if (options_.library_loads) {
        watch_library_loads();
    }
}

// Processes that load OpenSSL later (dlopen) or in a way the exec check
// does not see: caught in their loader (LoadWatcher.h).
void Daemon::watch_library_loads() {
    // The scope is read-only after start, so the answering thread may ask it.
    auto watcher = LoadWatcher::open(engine_->new_process_claims(),
                                     [this](int pid) { return in_new_process_scope(pid); });
    if (!watcher) {
        log::warning("sutured: libraries loaded later (dlopen) are left to the rescan: " +
                     watcher.error().message);
        return;
    }
    load_watcher_ = std::move(*watcher);
    watch_libraries();
    engine_->set_library_loads_watched([this] { watch_libraries(); });
    sd_event_add_io(event_.get(), nullptr, load_watcher_->fd(), EPOLLIN, Daemon::library_loads,
                    this);
    log::info("sutured: patching libraries loaded later before their first call");
}

// The engine's library files to watch; those the kernel refuses are
// handed back, so exec gating parks their programs instead.
void Daemon::watch_libraries() {
    engine_->libraries_marked(load_watcher_->watch(engine_->take_libraries_to_watch()));
}

Result<void> Daemon::reload_new_processes() {
    auto loaded = engine_->reload_new_process_patches();
    if (load_watcher_) {
        watch_libraries();
    }
    return loaded;
}

int Daemon::library_loads(sd_event_source*, int, std::uint32_t, void* self) {
    auto* daemon = static_cast<Daemon*>(self);
    // The exec events waiting first: a program's exec event is sent before
    // its loader opens anything, so a load caught during a start is then
    // known as that start (NewProcesses.cpp, starting_).
    if (daemon->exec_watcher_) {
        exec_events(nullptr, daemon->exec_watcher_->fd(), 0, self);
    }
    for (const LibraryLoad& load : daemon->load_watcher_->take_caught()) {
        try {
            daemon->handle_library_load(load);
        } catch (const std::exception& exception) {
            log::error("sutured: pid " + std::to_string(load.pid) + " loading " + load.library +
                       ": " + exception.what());
        }
    }
    return 0;
}

void Daemon::handle_library_load(const LibraryLoad& load) {
    if (!in_new_process_scope(load.pid)) {
        if (load.held) {
            (void)release_load(*load.held);  // a failure: its wait ends by itself
        }
        engine_->new_process_claims().release(load.pid);
        return;
    }
    log::debug("sutured: pid " + std::to_string(load.pid) + " loads " + load.library);
    auto outcome = engine_->on_library_load(load, options_.inject);
    if (!outcome) {
        return;
    }
    emit_applied(outcome->actions);
    log_lost("pid " + std::to_string(load.pid), outcome->lost_records);
    for (const UpdateAction& action : outcome->actions) {
        // A load caught during a program's start is reported as its start.
        std::string when = outcome->parked  ? " before main()"
                           : outcome->held ? " before its first call"
                                           : " while running";
        log::info(std::string("sutured: ") + (outcome->path == "dlopen" ? "" : "new ") + "pid " +
                  std::to_string(load.pid) + " (" + action.comm + "): " + action.patch_id + " " +
                  std::string(outcome_name(action.outcome)) + when + " (path: " + outcome->path +
                  ")" + (action.message.empty() ? "" : ": " + action.message));
    }
}

void Daemon::watch_health() {
    if (auto opened = engine_->open_health_watch(); !opened) {
        log::warning("sutured: patched processes will not be watched for crashes: " +
                     opened.error().message);
        return;
    }
    sd_event_add_io(event_.get(), nullptr, engine_->health_watch_fd(), EPOLLIN,
                    Daemon::health_events, this);
    sd_event_add_time_relative(event_.get(), &health_retry_, CLOCK_MONOTONIC, 200000, 10000,
                               Daemon::health_retry, this);
    sd_event_source_set_floating(health_retry_, 1);  // the loop owns it
    sd_event_source_set_enabled(health_retry_, SD_EVENT_OFF);
    // The health checks (suture.conf health_check): looked at every 500 ms;
    // a call never blocks (a check runs as a child of its own).
    sd_event_source* tick = nullptr;
    sd_event_add_time_relative(event_.get(), &tick, CLOCK_MONOTONIC, 500000, 50000,
                               Daemon::health_check_tick, this);
    sd_event_source_set_floating(tick, 1);
    sd_event_source_set_enabled(tick, SD_EVENT_ON);
    log::info("sutured: watching patched processes for crashes and health checks");
}

int Daemon::health_check_tick(sd_event_source* source, std::uint64_t, void* self) {
    auto* daemon = static_cast<Daemon*>(self);
    try {
        for (std::string unit : std::exchange(daemon->failed_units_, {})) {
            daemon->handle_failed_unit(unit);
        }
        for (const CrashOutcome& failure :
             daemon->engine_->handle_health_checks(daemon->options_.inject)) {
            daemon->report_failure(failure);
        }
    } catch (const std::exception& exception) {
        log::error(std::string("sutured: health check: ") + exception.what());
    }
    sd_event_source_set_time_relative(source, 500000);
    return 0;
}

int Daemon::health_events(sd_event_source*, int, std::uint32_t, void* self) {
    auto* daemon = static_cast<Daemon*>(self);
    try {
        daemon->handle_health();
    } catch (const std::exception& exception) {
        log::error(std::string("sutured: health watch: ") + exception.what());
    }
    return 0;
}

int Daemon::health_retry(sd_event_source*, std::uint64_t, void* self) {
    return health_events(nullptr, -1, 0, self);
}

// 1. The bus systemd is on. 2. A match for its units' PropertiesChanged.
// 3. Manager.Subscribe, so that it sends them.
void Daemon::watch_units() {
    sd_bus* bus = bus_.get();
    if (!options_.systemd_bus.empty()) {
        sd_bus* connection = nullptr;
        bool opened = sd_bus_new(&connection) >= 0;
        systemd_bus_.reset(connection);
        opened = opened && sd_bus_set_address(connection, options_.systemd_bus.c_str()) >= 0 &&
                 sd_bus_set_bus_client(connection, 1) >= 0 && sd_bus_start(connection) >= 0 &&
                 sd_bus_attach_event(connection, event_.get(), 0) >= 0;
        if (!opened) {
            log::warning("sutured: systemd's bus " + options_.systemd_bus +
                         " unreachable: units entering failed are not watched");
            systemd_bus_.reset();
            return;
        }
        bus = connection;
    }
    sd_bus_slot* slot = nullptr;
    int result = sd_bus_add_match_async(
        bus, &slot,
        "type='signal',sender='org.freedesktop.systemd1',"
        "interface='org.freedesktop.DBus.Properties',member='PropertiesChanged',"
        "arg0='org.freedesktop.systemd1.Unit',path_namespace='/org/freedesktop/systemd1/unit'",
        Daemon::unit_changed, nullptr, this);
    if (result < 0) {
        log::warning(std::string("sutured: units entering failed are not watched: ") +
                     std::strerror(-result));
        return;
    }
    unit_match_.reset(slot);
    sd_bus_call_method_async(bus, nullptr, "org.freedesktop.systemd1", "/org/freedesktop/systemd1",
                             "org.freedesktop.systemd1.Manager", "Subscribe",
                             Daemon::units_subscribed, this, "");
}

int Daemon::units_subscribed(sd_bus_message* reply, void*, sd_bus_error*) {
    if (const sd_bus_error* error = sd_bus_message_get_error(reply); error != nullptr) {
        log::warning(std::string("sutured: systemd's units are not watched (") +
                     (error->message ? error->message : error->name) + ")");
    } else {
        log::info("sutured: watching systemd's units for the failed state");
    }
    return 0;
}

// PropertiesChanged(interface, changed a{sv}, invalidated as) of a unit
// object: an ActiveState of "failed" is acted on; everything else, and
// anything malformed, is ignored.
int Daemon::unit_changed(sd_bus_message* message, void* self, sd_bus_error*) {
    auto* daemon = static_cast<Daemon*>(self);
    char* decoded = nullptr;
    if (sd_bus_path_decode(sd_bus_message_get_path(message), "/org/freedesktop/systemd1/unit",
                           &decoded) <= 0) {
        return 0;
    }
    std::string unit(decoded);
    std::free(decoded);
    const char* interface = nullptr;
    if (sd_bus_message_read(message, "s", &interface) < 0 ||
        sd_bus_message_enter_container(message, 'a', "{sv}") < 0) {
        return 0;
    }
    bool failed = false;
    while (sd_bus_message_enter_container(message, 'e', "sv") > 0) {
        const char* name = nullptr;
        const char* state = nullptr;
        if (sd_bus_message_read(message, "s", &name) < 0) {
            return 0;
        }
        if (std::string_view(name) == "ActiveState" &&
            sd_bus_message_read(message, "v", "s", &state) >= 0) {
            failed = state != nullptr && std::string_view(state) == "failed";
        } else if (sd_bus_message_skip(message, "v") < 0) {
            return 0;
        }
        if (sd_bus_message_exit_container(message) < 0) {
            return 0;
        }
    }
    if (failed) {
        try {
            daemon->handle_failed_unit(unit);
        } catch (const std::exception& exception) {
            log::error("sutured: unit " + unit + ": " + exception.what());
        }
    }
    return 0;
}

void Daemon::handle_failed_unit(const std::string& unit) {
    auto outcome = engine_->handle_unit_failure(unit, options_.inject);
    if (!outcome && outcome.error().code == ErrorCode::locked) {
        failed_units_.push_back(unit);
    } else if (!outcome) {
        log::error("sutured: health watch: unit " + unit + ": " + outcome.error().message);
    } else if (*outcome) {
        report_failure(**outcome);
    }
}

void Daemon::handle_health() {
    for (const CrashOutcome& crash : engine_->handle_health_events(options_.inject)) {
        report_failure(crash);
    }
    if (health_retry_ != nullptr && engine_->health_watch_pending()) {
        sd_event_source_set_time_relative(health_retry_, 200000);
        sd_event_source_set_enabled(health_retry_, SD_EVENT_ONESHOT);
    }
}

void Daemon::report_failure(const CrashOutcome& failure) {
    log_lost("health watch", failure.reverted.lost_records);
    for (const Quarantine& row : failure.quarantined) {
        std::uint32_t reverted = 0;
        for (const UpdateAction& action : failure.reverted.actions) {
            reverted += action.patch_id == row.patch_id && action.outcome == ActionOutcome::reverted;
        }
        log::warning("sutured: " + row.patch_id + " level " + std::to_string(row.level) +
                     " quarantined: " + row.message + "; reverted from " +
                     std::to_string(reverted) + " process(es) in " +
                     std::to_string(failure.revert_ms) + " ms");
        sd_bus_emit_signal(bus_.get(), bus::path, bus::interface, "PatchQuarantined", "suisiu",
                           row.patch_id.c_str(), row.level, row.process.pid, row.comm.c_str(),
                           row.signal, reverted);
    }
    write_metrics();
}

int Daemon::exec_events(sd_event_source*, int, std::uint32_t, void* self) {
    auto* daemon = static_cast<Daemon*>(self);
    daemon->exec_watcher_->drain([&](const ExecEvent& exec) {
        try {
            daemon->handle_exec(exec);
        } catch (const std::exception& exception) {
            // A parked process is released by its guard on the way out.
            log::error("sutured: new pid " + std::to_string(exec.pid) + ": " + exception.what());
        }
    });
    return 0;
}

bool Daemon::in_new_process_scope(int pid) const {
    if (options_.new_processes_under.empty()) {
        return true;
    }
    std::string executable = engine_->executable_of(pid);
    for (const std::string& directory : options_.new_processes_under) {
        std::string prefix = directory.ends_with('/') ? directory : directory + "/";
        if (executable.starts_with(prefix)) {
            return true;
        }
    }
    return false;
}

// What an operator (or a test) reads to see how many programs were patched
// before main() and how many were reached late or not at all.
void Daemon::log_new_process_statistics() const {
    const NewProcessStatistics& counts = engine_->new_process_statistics();
    log::info("sutured: new processes: " + std::to_string(counts.execs) + " exec events, " +
              std::to_string(counts.candidates) + " needing libssl/libcrypto (" +
              std::to_string(counts.direct) + " directly, " + std::to_string(counts.transitive) +
              " through another library), " +
              std::to_string(counts.parked) + " parked, " +
              std::to_string(counts.patched_before_main) + " patched before main(), " +
              std::to_string(counts.patched_late) + " patched while running, " +
              std::to_string(counts.left_to_load_watch) + " left to the library-open watch; " +
              std::to_string(counts.loads_caught) + " library loads caught, " +
              std::to_string(counts.loads_held) + " held in their loader, " +
              std::to_string(counts.patched_before_first_call) + " patched before their first call, " +
              std::to_string(counts.loads_patched_late) + " patched right after");
}

void Daemon::handle_exec(const ExecEvent& exec) {
    int pid = exec.pid;
    if (!in_new_process_scope(pid)) {
        return;
    }
    auto outcome = engine_->on_exec(pid, exec.at, options_.inject);
    // A container's root: its libraries are watched from now on.
    engine_->note_process_root(pid);
    if (load_watcher_) {
        watch_libraries();
    }
    if (!outcome) {
        return;
    }
    emit_applied(outcome->actions);
    log_lost("new pid " + std::to_string(pid), outcome->lost_records);
    for (const UpdateAction& action : outcome->actions) {
        log::info("sutured: new pid " + std::to_string(pid) + " (" + action.comm +
                  "): " + action.patch_id + " " + std::string(outcome_name(action.outcome)) +
                  (outcome->parked ? " before main()" : " while running") + " (path: " +
                  outcome->path + ")" + (action.message.empty() ? "" : ": " + action.message));
    }
}

// The periodic offline update; re-arms itself whatever happens.
int Daemon::rescan(sd_event_source* source, std::uint64_t, void* self) {
    auto* daemon = static_cast<Daemon*>(self);
    try {
        daemon->rescan_once();
    } catch (const std::exception& exception) {
        log::error(std::string("sutured: rescan: ") + exception.what());
    }
    sd_event_source_set_time_relative(source, daemon->options_.rescan_seconds * 1000000ULL);
    sd_event_source_set_enabled(source, SD_EVENT_ONESHOT);
    return 0;
}

void Daemon::write_metrics() {
    if (options_.metrics_textfile.empty()) {
        return;
    }
    if (auto written = engine_->write_metrics_textfile(options_.metrics_textfile); !written) {
        log::warning("sutured: metrics: " + written.error().message);
    }
}

void Daemon::rescan_once() {
    // The rescan is an automatic run: the policy of suture.conf applies.
    UpdateOptions options{.refresh = false,
                          .log_idle_runs = false,
                          .automatic = true,
                          .inject = options_.inject};
    // Between processes, handle exec events that arrived meanwhile, so a
    // process starting during the rescan is still parked in time.
    auto handle_pending_execs = [&](std::size_t, std::size_t) {
        if (exec_watcher_) {
            exec_events(nullptr, exec_watcher_->fd(), 0, this);
        }
    };
    auto report = engine_->update(options, handle_pending_execs);
    if (report) {
        log_lost("rescan", report->lost_records);
        emit_applied(report->actions);
        for (const UpdateAction& action : report->actions) {
            if (action.outcome == ActionOutcome::applied) {
                log::info("sutured: rescan: pid " + std::to_string(action.process.pid) + " (" +
                          action.comm + "): " + action.patch_id + " applied");
            }
        }
    } else if (report.error().code == ErrorCode::locked) {
        // Another operation (an operator's update) runs: the next rescan.
        log::info("sutured: rescan skipped: " + report.error().message);
    } else {
        log::warning("sutured: rescan: " + report.error().message);
    }
    (void)reload_new_processes();
    write_metrics();
    // A process whose release failed (say, a debugger attached to it in
    // between) is found again here; no park is in flight at this point.
    if (exec_watcher_) {
        (void)engine_->release_abandoned_parks();
    }
}

// 1. The caller's effective uid, as the bus daemon knows it (never from the
// message); root may. 2. Anyone else: polkit's CheckAuthorization for the
// caller's bus name (flag AllowUserInteraction: an authentication agent in
// the caller's session may ask for a password; without one, auth_admin is
// a no). 3. No: an AccessDenied error that says "not authorized" with
// the uid and the action (the CLI exits 5), and a line in sutured's log;
// nothing in the history, which an unprivileged caller must not grow.
int Daemon::authorize(sd_bus_message* message, sd_bus_error* error, std::uint32_t& caller_uid) {
    uid_t uid = static_cast<uid_t>(-1);
    sd_bus_creds* raw_creds = nullptr;
    if (sd_bus_query_sender_creds(message, SD_BUS_CREDS_EUID, &raw_creds) >= 0) {
        bus::Creds creds(raw_creds);
        if (sd_bus_creds_get_euid(creds.get(), &uid) < 0) {
            uid = static_cast<uid_t>(-1);
        }
    }
    caller_uid = static_cast<std::uint32_t>(uid);
    if (uid == 0) {
        return 0;
    }
    bool polkit_answered = false;
    if (uid != static_cast<uid_t>(-1) && polkit_allows(message, polkit_answered)) {
        return 0;
    }
    const char* member = sd_bus_message_get_member(message);
    log::warning("sutured: " + std::string(member ? member : "?") + " by uid " +
                 std::to_string(static_cast<unsigned>(uid)) + ": not authorized" +
                 (polkit_answered ? "" : " (polkit is not available)"));
    return sd_bus_error_setf(error, SD_BUS_ERROR_ACCESS_DENIED,
                             "not authorized: uid %u is not allowed to do that: it needs root or "
                             "the polkit action %s%s",
                             static_cast<unsigned>(uid), bus::polkit_action,
                             polkit_answered ? "" : " (polkit is not available)");
}

// CheckAuthorization(subject, action, details, flags, cancellation) with the
// caller's unique bus name as subject; `answered` says whether polkit replied
// with a result at all.
bool Daemon::polkit_allows(sd_bus_message* message, bool& answered) {
    bus::BusError polkit_error;
    sd_bus_message* raw_reply = nullptr;
    const char* sender = sd_bus_message_get_sender(message);
    int result = sd_bus_call_method(
        bus_.get(), "org.freedesktop.PolicyKit1", "/org/freedesktop/PolicyKit1/Authority",
        "org.freedesktop.PolicyKit1.Authority", "CheckAuthorization", polkit_error.get(),
        &raw_reply, "(sa{sv})sa{ss}us", "system-bus-name", 1, "name", "s", sender ? sender : "",
        bus::polkit_action, 0, 1u, "");
    bus::Message reply(raw_reply);
    int authorized = 0;
    answered = result >= 0 && sd_bus_message_enter_container(reply.get(), 'r', "bba{ss}") >= 0 &&
               sd_bus_message_read(reply.get(), "b", &authorized) >= 0;
    return answered && authorized != 0;
}

void Daemon::log_lost(const std::string& what, const std::vector<std::string>& lost) {
    for (const std::string& record : lost) {
        log::error("sutured: " + what + ": not recorded: " + record);
    }
}

void Daemon::emit_patched(int pid, const std::string& patch_id, std::uint32_t level) {
    if (!bus_) {
        return;  // the first offline update runs before the bus connection
    }
    sd_bus_emit_signal(bus_.get(), bus::path, bus::interface, "ProcessPatched", "isu", pid,
                       patch_id.c_str(), level);
}

void Daemon::emit_applied(const std::vector<UpdateAction>& actions) {
    for (const UpdateAction& action : actions) {
        if (action.outcome == ActionOutcome::applied) {
            emit_patched(action.process.pid, action.patch_id, action.level);
        }
    }
}

int Daemon::status(sd_bus_message* message, void* self, sd_bus_error*) {
    auto* daemon = static_cast<Daemon*>(self);
    const void* data = nullptr;
    std::size_t size = 0;
    int result = sd_bus_message_read_array(message, 'i', &data, &size);
    if (result < 0) {
        return result;
    }
    const auto* pids = static_cast<const int*>(data);
    std::vector<int> wanted(pids, pids + size / sizeof(int));
    return reply(message, status_to_json(daemon->engine_->status(wanted)));
}

int Daemon::update(sd_bus_message* message, void* self, sd_bus_error* error) {
    auto* daemon = static_cast<Daemon*>(self);
    int offline = 0;
    if (int result = sd_bus_message_read(message, "b", &offline); result < 0) {
        return result;
    }
    std::uint32_t caller = 0;
    if (int denied = daemon->authorize(message, error, caller); denied < 0) {
        return denied;
    }
    return daemon->run_update(message, UpdateOptions{.refresh = !offline}, caller);
}

int Daemon::update_with(sd_bus_message* message, void* self, sd_bus_error* error) {
    auto* daemon = static_cast<Daemon*>(self);
    const char* text = nullptr;
    if (int result = sd_bus_message_read(message, "s", &text); result < 0) {
        return result;
    }
    auto document = nlohmann::json::parse(text, nullptr, false);
    auto options = update_options_from_json(document);
    if (!options) {
        return sd_bus_error_set(error, SD_BUS_ERROR_INVALID_ARGS, options.error().message.c_str());
    }
    // A dry run changes nothing (and records nothing): open to everyone,
    // like Status.
    std::uint32_t caller = 0;
    if (!options->dry_run) {
        if (int denied = daemon->authorize(message, error, caller); denied < 0) {
            return denied;
        }
    }
    return daemon->run_update(message, *options, caller);
}

int Daemon::run_update(sd_bus_message* message, UpdateOptions options, std::uint32_t caller_uid) {
    CallerScope as_caller(*engine_, caller_uid);
    options.inject = options_.inject;
    auto report = engine_->update(options);
    if (!report) {
        return reply(message, error_to_json(report.error()));
    }
    if (report->dry_run) {
        return reply(message, update_to_json(*report));
    }
    log_lost("update", report->lost_records);
    emit_applied(report->actions);
    (void)reload_new_processes();  // the feed may have brought new patchsets
    write_metrics();
    return reply(message, update_to_json(*report));
}

int Daemon::apply(sd_bus_message* message, void* self, sd_bus_error* error) {
    auto* daemon = static_cast<Daemon*>(self);
    int pid = 0;
    const char* path = nullptr;
    if (int result = sd_bus_message_read(message, "is", &pid, &path); result < 0) {
        return result;
    }
    std::uint32_t caller = 0;
    if (int denied = daemon->authorize(message, error, caller); denied < 0) {
        return denied;
    }
    CallerScope as_caller(*daemon->engine_, caller);
    std::vector<std::string> lost;  // callback outcomes the database failed to record
    auto report = daemon->engine_->apply_file(pid, path, daemon->options_.inject, &lost);
    daemon->log_lost("apply pid " + std::to_string(pid), lost);
    if (!report) {
        return reply(message, failure_to_json(report.error()));
    }
    daemon->emit_patched(pid, report->patch_id, report->level);
    return reply(message, inject_report_to_json(pid, *report));
}

int Daemon::revert(sd_bus_message* message, void* self, sd_bus_error* error) {
    auto* daemon = static_cast<Daemon*>(self);
    int pid = 0;
    const char* patch_id = nullptr;
    if (int result = sd_bus_message_read(message, "is", &pid, &patch_id); result < 0) {
        return result;
    }
    std::uint32_t caller = 0;
    if (int denied = daemon->authorize(message, error, caller); denied < 0) {
        return denied;
    }
    CallerScope as_caller(*daemon->engine_, caller);
    std::vector<std::string> lost;
    auto reports = daemon->engine_->revert(pid, patch_id, daemon->options_.inject, &lost);
    daemon->log_lost("revert", lost);
    if (!reports) {
        return reply(message, failure_to_json(reports.error()));
    }
    return reply(message, reverted_to_json(pid, *reports, lost));
}

int Daemon::revert_everywhere(sd_bus_message* message, void* self, sd_bus_error* error) {
    auto* daemon = static_cast<Daemon*>(self);
    const char* text = nullptr;
    if (int result = sd_bus_message_read(message, "s", &text); result < 0) {
        return result;
    }
    auto request = nlohmann::json::parse(text, nullptr, false);
    RevertScope scope;
    try {
        auto cves = request.at("cves").get<std::vector<std::string>>();
        scope = RevertScope{.cves = {cves.begin(), cves.end()}, .all = request.at("all").get<bool>()};
    } catch (const nlohmann::json::exception&) {
        return sd_bus_error_set(error, SD_BUS_ERROR_INVALID_ARGS,
                                "RevertEverywhere: expected {\"cves\": [...], \"all\": bool}");
    }
    std::uint32_t caller = 0;
    if (int denied = daemon->authorize(message, error, caller); denied < 0) {
        return denied;
    }
    CallerScope as_caller(*daemon->engine_, caller);
    auto report = daemon->engine_->revert_everywhere(scope, daemon->options_.inject);
    if (!report) {
        return reply(message, error_to_json(report.error()));
    }
    daemon->log_lost("revert", report->lost_records);
    (void)daemon->reload_new_processes();
    daemon->write_metrics();
    return reply(message, host_revert_to_json(*report));
}

int Daemon::history(sd_bus_message* message, void* self, sd_bus_error*) {
    auto* daemon = static_cast<Daemon*>(self);
    std::uint32_t limit = 0;
    if (int result = sd_bus_message_read(message, "u", &limit); result < 0) {
        return result;
    }
    auto entries = daemon->engine_->history(limit ? limit : 100);
    if (!entries) {
        return reply(message, error_to_json(entries.error()));
    }
    return reply(message, history_to_json(*entries));
}

int Daemon::set_enabled(sd_bus_message* message, void* self, sd_bus_error* error) {
    auto* daemon = static_cast<Daemon*>(self);
    int enabled = 0;
    if (int result = sd_bus_message_read(message, "b", &enabled); result < 0) {
        return result;
    }
    std::uint32_t caller = 0;
    if (int denied = daemon->authorize(message, error, caller); denied < 0) {
        return denied;
    }
    CallerScope as_caller(*daemon->engine_, caller);
    if (auto set = daemon->engine_->set_enabled(enabled != 0); !set) {
        bool locked = set.error().code == ErrorCode::locked;
        return sd_bus_error_set(error, locked ? bus::error_locked : SD_BUS_ERROR_FAILED,
                                set.error().message.c_str());
    }
    (void)daemon->reload_new_processes();
    sd_bus_emit_properties_changed(daemon->bus_.get(), bus::path, bus::interface, "Enabled",
                                   nullptr);
    return sd_bus_reply_method_return(message, "");
}

int Daemon::quarantine(sd_bus_message* message, void* self, sd_bus_error*) {
    auto* daemon = static_cast<Daemon*>(self);
    auto rows = daemon->engine_->quarantined();
    if (!rows) {
        return reply(message, error_to_json(rows.error()));
    }
    return reply(message, quarantine_to_json(*rows));
}

int Daemon::release_quarantine(sd_bus_message* message, void* self, sd_bus_error* error) {
    auto* daemon = static_cast<Daemon*>(self);
    const char* patch_id = nullptr;
    if (int result = sd_bus_message_read(message, "s", &patch_id); result < 0) {
        return result;
    }
    std::uint32_t caller = 0;
    if (int denied = daemon->authorize(message, error, caller); denied < 0) {
        return denied;
    }
    CallerScope as_caller(*daemon->engine_, caller);
    auto released = daemon->engine_->release_quarantine(patch_id);
    if (!released) {
        return reply(message, error_to_json(released.error()));
    }
    (void)daemon->reload_new_processes();
    return reply(message, {{"patch_id", patch_id}, {"released", *released}});
}

int Daemon::version_property(sd_bus*, const char*, const char*, const char*, sd_bus_message* reply,
                             void*, sd_bus_error*) {
    return sd_bus_message_append(reply, "s", SUTURE_VERSION);
}

int Daemon::enabled_property(sd_bus*, const char*, const char*, const char*, sd_bus_message* reply,
                             void* self, sd_bus_error*) {
    auto* daemon = static_cast<Daemon*>(self);
    auto enabled = daemon->engine_->enabled();
    return sd_bus_message_append(reply, "b", enabled ? static_cast<int>(*enabled) : 1);
}

}  // namespace suture
