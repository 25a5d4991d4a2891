#pragma once

#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#include <memory>
#include <string>

#include "base/Error.h"
#include "daemon/ExecWatcher.h"
#include "engine/Engine.h"
#include "engine/NewProcesses.h"
#include "engine/Update.h"

namespace suture {

inline constexpr const char* bus_name = "org.suture.Suture1";
inline constexpr const char* bus_path = "/org/suture/Suture1";
inline constexpr const char* bus_interface = "org.suture.Suture1";
inline constexpr const char* polkit_action = "org.suture.manage";

struct DaemonOptions {
    EngineOptions engine;
    UpdateOptions update;       // feed and state database locations
    bool new_processes = true;  // patch processes as they start (exec events)
    // Rescan every process this often (offline update): catches libraries
    // loaded later with dlopen and exclusions changed meanwhile. 0: never.
    unsigned rescan_seconds = 30;
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
    ~Daemon();

    // Serves until SIGTERM or SIGINT. Returns the exit status.
    int run();

    // D-Bus method handlers (sd-bus vtable callbacks).
    static int status(sd_bus_message* message, void* self, sd_bus_error* error);
    static int update(sd_bus_message* message, void* self, sd_bus_error* error);
    static int apply(sd_bus_message* message, void* self, sd_bus_error* error);
    static int revert(sd_bus_message* message, void* self, sd_bus_error* error);
    static int history(sd_bus_message* message, void* self, sd_bus_error* error);
    static int set_enabled(sd_bus_message* message, void* self, sd_bus_error* error);
    static int enabled_property(sd_bus*, const char*, const char*, const char*,
                                sd_bus_message* reply, void* self, sd_bus_error* error);
    static int version_property(sd_bus*, const char*, const char*, const char*,
                                sd_bus_message* reply, void* self, sd_bus_error* error);

    static int exec_events(sd_event_source*, int fd, std::uint32_t, void* self);
    static int rescan(sd_event_source* source, std::uint64_t, void* self);

  private:
    Daemon(DaemonOptions options, Engine engine)
        : options_(std::move(options)),
          engine_(std::move(engine)),
          new_processes_(engine_, options_.update) {}

    // Starts listening to exec events (a warning, not an error, if the
    // kernel refuses: updates still work).
    void watch_new_processes();

    // 0 if the sender may mutate; else a negative errno with `error` set.
    int authorize(sd_bus_message* message, sd_bus_error* error);
    void emit_patched(int pid, const std::string& patch_id, std::uint32_t level);

    DaemonOptions options_;
    Engine engine_;
    NewProcessPatcher new_processes_;
    std::optional<ExecWatcher> exec_watcher_;
    sd_bus* bus_ = nullptr;
    sd_event* event_ = nullptr;
    sd_bus_slot* slot_ = nullptr;
};

}  // namespace suture
