#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "base/Error.h"
#include "daemon/ExecWatcher.h"
#include "daemon/LoadWatcher.h"
#include "dbus/Bus.h"
#include "engine/Engine.h"

namespace suture {

struct DaemonOptions {
    EngineOptions engine;       // build index, feed and state database locations
    InjectOptions inject;       // for Apply, Revert, updates and new processes
    bool new_processes = true;  // patch processes as they start (exec events)
    bool library_loads = true;  // and libraries as they are loaded (LoadWatcher.h)
    // Rescan every process this often (offline update): catches libraries
    // loaded later with dlopen and exclusions changed meanwhile. 0: never.
    unsigned rescan_seconds = 30;
    // The node_exporter textfile (docs/operator-guide.md, "Metrics") kept
    // current after every rescan and update; "" : none. Written only when
    // its directory exists (the prometheus-node-exporter package makes it).
    std::string metrics_textfile = "/var/lib/prometheus/node-exporter/suture.prom";
    // When not empty, only new processes whose executable (/proc/PID/exe as
    // the host names it) lies under one of these directories are parked and
    // patched: a trial on one application tree (or a test run) that leaves
    // every other program on the machine alone. Rescans are not limited:
    // set rescan_seconds to 0 with it.
    std::vector<std::string> new_processes_under;
    // Where systemd's manager is, for the health watch's unit states (a
    // unit entering `failed`): "" the system bus sutured serves on, else a
    // D-Bus address (a user manager's bus, as the tests use).
    std::string systemd_bus;
};

// sutured: the engine behind a D-Bus API (data/org.suture.Suture1.xml) on
// the system bus (or $DBUS_SYSTEM_BUS_ADDRESS). A thin layer, after fwupd:
// every method calls the engine and returns its JSON document; errors go
// back to the caller, never abort the daemon. Mutating methods need root or
// polkit's org.suture.manage.
class Daemon {
  public:
    static Result<std::unique_ptr<Daemon>> open(DaemonOptions options);

    Daemon(const Daemon&) = delete;
    Daemon& operator=(const Daemon&) = delete;

    // Serves until SIGTERM or SIGINT. Returns the exit status.
    int run();

    // D-Bus method handlers (sd-bus vtable callbacks).
    static int status(sd_bus_message* message, void* self, sd_bus_error* error);
    static int update(sd_bus_message* message, void* self, sd_bus_error* error);
    static int update_with(sd_bus_message* message, void* self, sd_bus_error* error);
    static int apply(sd_bus_message* message, void* self, sd_bus_error* error);
    static int revert(sd_bus_message* message, void* self, sd_bus_error* error);
    static int revert_everywhere(sd_bus_message* message, void* self, sd_bus_error* error);
    static int history(sd_bus_message* message, void* self, sd_bus_error* error);
    static int set_enabled(sd_bus_message* message, void* self, sd_bus_error* error);
    static int quarantine(sd_bus_message* message, void* self, sd_bus_error* error);
    static int release_quarantine(sd_bus_message* message, void* self, sd_bus_error* error);
    static int enabled_property(sd_bus*, const char*, const char*, const char*,
                                sd_bus_message* reply, void* self, sd_bus_error* error);
    static int version_property(sd_bus*, const char*, const char*, const char*,
                                sd_bus_message* reply, void* self, sd_bus_error* error);

    static int exec_events(sd_event_source*, int fd, std::uint32_t, void* self);
    static int library_loads(sd_event_source*, int fd, std::uint32_t, void* self);
    static int rescan(sd_event_source* source, std::uint64_t, void* self);
    static int health_events(sd_event_source*, int fd, std::uint32_t, void* self);
    static int health_retry(sd_event_source* source, std::uint64_t, void* self);
    static int health_check_tick(sd_event_source* source, std::uint64_t, void* self);
    static int unit_changed(sd_bus_message* message, void* self, sd_bus_error*);
    static int units_subscribed(sd_bus_message* reply, void* self, sd_bus_error*);
    static int name_acquired(sd_bus_message* reply, void* self, sd_bus_error* error);

  private:
    Daemon(DaemonOptions options, std::unique_ptr<Engine> engine)
        : options_(std::move(options)), engine_(std::move(engine)) {}

    // One exec event; one offline update with what follows it.
    void handle_exec(const ExecEvent& exec);
    // One caught library load (LoadWatcher.h): patched and let go.
    void handle_library_load(const LibraryLoad& load);
    // Reloads the new-process patches and watches their libraries.
    Result<void> reload_new_processes();
    void watch_library_loads();
    void watch_libraries();
    // Whether new_processes_under lets the daemon touch the new process.
    bool in_new_process_scope(int pid) const;
    // The new-process counters, logged when the daemon stops.
    void log_new_process_statistics() const;
    void rescan_once();
    // Connects to the system bus and serves the object there.
    Result<void> connect_bus();
    // Rewrites the metrics textfile, if there is one (a failure is logged).
    void write_metrics();

    // Starts listening to exec events (a warning, not an error, if the
    // kernel refuses: updates still work).
    void watch_new_processes();
    // Starts the health watch (exit events; a warning if the kernel
    // refuses: nothing is then watched).
    void watch_health();
    // Reads the exit events waiting and acts on crashes (Engine::
    // handle_health_events): PatchQuarantined per quarantined patch, the
    // log, the metrics; a crash that found the operation lock held is tried
    // again 200 ms later.
    void handle_health();
    // Subscribes to systemd's unit changes (asynchronously: at boot the bus
    // may come later; a warning if systemd is not there).
    void watch_units();
    // A unit that entered `failed` (Engine::handle_unit_failure); one that
    // found the operation lock held waits for the next tick.
    void handle_failed_unit(const std::string& unit);
    // One failure the watch acted on: logged, signalled, the metrics rewritten.
    void report_failure(const CrashOutcome& failure);

    // 0 when the sender of `message` may call a mutating method (root, or
    // polkit's org.suture.manage), else an AccessDenied error; `caller_uid`
    // gets the sender's uid either way (-1 when the bus does not say).
    int authorize(sd_bus_message* message, sd_bus_error* error, std::uint32_t& caller_uid);
    bool polkit_allows(sd_bus_message* message, bool& answered);
    void emit_patched(int pid, const std::string& patch_id, std::uint32_t level);
    // Records the state database failed to write, each as an error in the log.
    void log_lost(const std::string& what, const std::vector<std::string>& lost);
    // ProcessPatched for every action that applied a patch.
    void emit_applied(const std::vector<UpdateAction>& actions);
    // Update and UpdateWith after authorization: the run, its signals,
    // the new-process patches and metrics refreshed, the document replied.
    int run_update(sd_bus_message* message, UpdateOptions options, std::uint32_t caller_uid);
    // Replies with one JSON document.
    static int reply(sd_bus_message* message, const nlohmann::json& document);

    DaemonOptions options_;
    std::unique_ptr<Engine> engine_;
    std::optional<ExecWatcher> exec_watcher_;
    std::unique_ptr<LoadWatcher> load_watcher_;
    // Declared in this order so the slot goes before the bus, the bus
    // before the event loop it is attached to.
    bus::Event event_;
    sd_event_source* health_retry_ = nullptr;  // the loop owns it (floating)
    bus::Bus bus_;
    bus::Slot slot_;
    bus::Bus systemd_bus_;                  // only with options_.systemd_bus
    bus::Slot unit_match_;
    std::vector<std::string> failed_units_;  // waiting for the operation lock
};

}  // namespace suture
