// sutured: suture's daemon. Serves the engine on the system bus (D-Bus API:
// data/org.suture.Suture1.xml); systemd starts it (data/systemd/).

#include <chrono>
#include <iostream>

#include <CLI/CLI.hpp>

#include "base/Log.h"
#include "config.h"
#include "daemon/Daemon.h"

int main(int argc, char** argv) {
    CLI::App app{
        "sutured: suture's daemon. Owns org.suture.Suture1 on the system bus (or on\n"
        "$DBUS_SYSTEM_BUS_ADDRESS) and serves the engine: Status, Update, Apply, Revert,\n"
        "History, SetEnabled, Quarantine, ReleaseQuarantine. Mutating methods need root or\n"
        "polkit's org.suture.manage. It watches every patched process for crashes within\n"
        "watch_seconds of its apply (the health watch: docs/operator-guide.md).",
        "sutured"};
    app.footer(
        "Exit status: 0 stopped by SIGTERM/SIGINT, 1 could not start.\n"
        "See docs/operator-guide.md and data/org.suture.Suture1.xml.");
    app.set_version_flag("--version", std::string("sutured ") + SUTURE_VERSION);
    suture::DaemonOptions options;
    int verbosity = 0;
    app.add_option("--state", options.engine.state_database, "State database");
    app.add_option("--config-dir", options.engine.feed.config_directory,
                   "Directory with remotes.d/");
    app.add_option("--cache-dir", options.engine.feed.cache_directory, "Feed cache");
    app.add_option("--distro-support", options.engine.distro_support_dir,
                   "Directory of per-distribution build indexes");
    bool no_new_processes = false;
    app.add_flag("--no-new-processes", no_new_processes,
                 "Do not patch processes as they start (exec events); updates only");
    bool no_load_watch = false;
    app.add_flag("--no-load-watch", no_load_watch,
                 "Do not watch opens of the libssl/libcrypto files patches are for (fanotify):\n"
                 "a library loaded later (dlopen) waits for the rescan, and every start is parked");
    app.add_option("--rescan-seconds", options.rescan_seconds,
                   "Rescan every process this often (the safety net for what gating missed); 0: never")
        ->capture_default_str();
    app.add_option("--metrics-textfile", options.metrics_textfile,
                   "Keep this node_exporter textfile current (Prometheus text format, written\n"
                   "atomically after every rescan and update, if its directory exists); \"\": none")
        ->capture_default_str();
    app.add_option("--new-processes-under", options.new_processes_under,
                   "Patch only new processes whose executable is under this directory "
                   "(repeatable; rescans are not limited: use --rescan-seconds 0)");
    app.add_option("--systemd-bus", options.systemd_bus,
                   "D-Bus address of systemd's manager, whose units entering `failed` the\n"
                   "health watch blames on a recent apply (default: the system bus)");
    app.add_flag("-v,--verbose", verbosity, "More diagnostics on stderr");
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& error) {
        return app.exit(error) == 0 ? 0 : 2;
    }
    suture::log::set_level(verbosity >= 2   ? suture::log::Level::debug
                           : verbosity == 1 ? suture::log::Level::info
                                            : suture::log::Level::warning);
    options.new_processes = !no_new_processes;
    options.library_loads = !no_load_watch;
    // The event loop must never block on the operation lock: a method that
    // finds it held answers `locked` (the CLI asks again within its --wait),
    // a rescan is skipped, a new process is left to the next rescan.
    options.engine.lock_wait = std::chrono::seconds(0);
    auto daemon = suture::Daemon::open(options);
    if (!daemon) {
        suture::log::error("sutured: " + daemon.error().message);
        return 1;
    }
    return (*daemon)->run();
}
