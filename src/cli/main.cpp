// suture: the command-line front end. It parses the command line, calls the
// engine (here, or in sutured through a Backend), and is the only place that
// turns errors into messages and exit codes.

#include <algorithm>
#include <unistd.h>

#include <ctime>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "base/Log.h"
#include "cli/Backend.h"
#include "cli/ExitCode.h"
#include "cli/StatusTable.h"
#include "cli/TextOutput.h"
#include "config.h"
#include "engine/Engine.h"

namespace {

using namespace suture;

// Whether any action of an update or a host-wide revert failed (exit 1).
bool any_failed(const std::vector<UpdateAction>& actions) {
    return std::any_of(actions.begin(), actions.end(), [](const UpdateAction& action) {
        return action.outcome == ActionOutcome::failed;
    });
}

constexpr const char* files_help = R"(
Files:
  /etc/suture/remotes.d/*.conf ($SUTURE_CONFIG_DIR/remotes.d)
      the feeds to refresh from (docs/operator-guide.md, "Feeds").
  /etc/suture/suture.conf ($SUTURE_CONFIG_DIR/suture.conf)
      the policy of automatic runs (update --automatic: the timer, the boot
      unit, sutured): auto_apply, window, immediate_severity, rollout
      (docs/operator-guide.md, "Policy").
  /etc/machine-id
      the host's rollout bucket (SHA-256 of "suture-rollout:" + the id).
  /var/cache/suture/feed ($SUTURE_FEED_CACHE)
      verified feed metadata and patch files, one directory per remote.
  /var/lib/suture/state.db ($SUTURE_STATE_DB)
      the state database: applications, audit log, settings, exclusions
      (docs/state.md; `suture state rebuild` makes it again from memory).
  /var/lib/suture/crash-lock.json (beside the state database)
      the crash lockfile: the patches of the last apply while watched
      (`suture crash-lock`; docs/state.md, "The crash lockfile").
  the quarantine (a table of the state database)
      patch ids the health watch blamed for a crash (`suture quarantine`).
  /run/suture/lock ($SUTURE_LOCK_FILE)
      the operation lock: one apply, revert, update, state rebuild or setting
      change at a time per host (sutured's included); others wait --wait
      seconds (default 300), then exit 23. status and history never take it.
  <datadir>/suture/distro-support/*/builds.json
      build ID -> package index, generated from Debian's archive by
      distro-support/generate-index; --distro-support overrides the directory.

See docs/operator-guide.md, docs/formats.md and docs/patch-format.md.)";

// What every command shares: the engine's options and where to run.
struct Global {
    EngineOptions engine;
    int verbosity = 0;
    bool quiet = false;
    bool direct = false;  // run the engine here even if sutured runs
    int lock_wait_seconds = 300;
};

void print_json(const nlohmann::json& document) {
    // Invalid UTF-8 (a process's comm can hold any bytes) is replaced.
    std::cout << document.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
}

// An error of a command as a whole (not of one process): a message, and
// status 1 (5 when it was a refusal, 23 another operation holding the lock,
// 25 a damaged state database).
int command_failed(const Error& error) {
    log::error(error.message);
    switch (error.code) {
        case ErrorCode::permission_denied:
            return exit_permission;
        case ErrorCode::locked:
            return exit_locked;
        case ErrorCode::corrupt:
            return exit_state_corrupt;
        default:
            return exit_failure;
    }
}

// Records the state database failed to write: each on stderr, and the
// command's status (the work itself was done).
int records_lost(const std::vector<std::string>& lost) {
    for (const std::string& record : lost) {
        log::error("not recorded: " + record);
    }
    log::error(std::to_string(lost.size()) +
               " record(s) lost: the state database does not know all of what was done "
               "(memory is right; the next update adopts what it lacks)");
    return exit_records_lost;
}

// Runs `body` with an engine opened here, or with the backend (sutured or
// an engine here) for commands that go to the daemon; failing to open one
// is the command's failure.
template <typename Body>
int with_engine(const Global& global, Body body) {
    auto engine = Engine::open(global.engine);
    return engine ? body(**engine) : command_failed(engine.error());
}
template <typename Body>
int with_backend(const Global& global, Body body) {
    auto backend = choose_backend(global.direct, global.engine);
    return backend ? body(**backend) : command_failed(backend.error());
}

// Prints a report as its JSON document or as text.
template <typename PrintText>
void print_report(bool json, const nlohmann::json& document, PrintText print_text) {
    if (json) {
        print_json(document);
    } else {
        print_text();
    }
}

void add_state_option(CLI::App* command, Global& global) {
    command->add_option("--state", global.engine.state_database,
                        "State database (default $SUTURE_STATE_DB or /var/lib/suture/state.db)");
}

// The commands that change processes or the database hold the operation
// lock (docs/state.md, "One operation at a time").
void add_wait_option(CLI::App* command, Global& global) {
    command->add_option("--wait", global.lock_wait_seconds,
                        "Seconds to wait while another suture operation runs (the operation\n"
                        "lock /run/suture/lock, $SUTURE_LOCK_FILE); then exit 23 naming its pid;\n"
                        "0: do not wait")
        ->check(CLI::Range(0, 86400))
        ->capture_default_str();
}

void add_feed_options(CLI::App* command, Global& global) {
    command->add_option("--config-dir", global.engine.feed.config_directory,
                        "Directory with remotes.d/ (default $SUTURE_CONFIG_DIR or /etc/suture)");
    command->add_option("--cache-dir", global.engine.feed.cache_directory,
                        "Feed cache (default $SUTURE_FEED_CACHE, /var/cache/suture/feed as root)");
}

// Each command below: its options, `define` (its subcommand and help) and
// `run` (returns the exit status).

struct StatusCommand {
    CLI::App* app = nullptr;
    bool json = false;
    std::string format = "text";
    bool per_process_metrics = false;
    std::vector<int> pids;

    void define(CLI::App& parent) {
        app = parent.add_subcommand(
            "status",
            "Show which OpenSSL build every process maps, read from /proc without ptrace, and\n"
            "which CVEs each is open to, fixed in memory, or needs a restart for.\n"
            "Libraries are recognised by their ELF DT_SONAME (libssl.so.*, libcrypto.so.*) and\n"
            "identified by the GNU build ID of the very file mapped (through\n"
            "/proc/PID/map_files, or the mapped headers in /proc/PID/mem for a user's own\n"
            "deleted library), so deleted, replaced and containerised copies report their own\n"
            "build. The build ID is looked up in the distribution build index to name the\n"
            "package (an unknown build still at its path is named from the dpkg database of\n"
            "the process's root). The CVEs come from the feed's signed advisory data\n"
            "(refreshed by suture update or suture feed refresh); patches applied by suture\n"
            "are read from their in-process markers. The first line is the headline.\n"
            "Exit status 27 when some process is exposed to an open CVE.\n"
            "Run as root to see every process.");
        app->add_flag("--json", json,
                      "Print a JSON document (format: docs/formats.md, \"Status document\");\n"
                      "the same as --format json");
        app->add_option("--format", format,
                        "text, json, openmetrics (OpenMetrics 1.0 text), prometheus (the Prometheus\n"
                        "text format, as in sutured's node_exporter textfile) or openvex (an OpenVEX\n"
                        "document for this host); docs/formats.md")
            ->check(CLI::IsMember({"text", "json", "openmetrics", "prometheus", "openvex"}))
            ->capture_default_str();
        app->add_flag("--per-process-metrics", per_process_metrics,
                      "openmetrics, prometheus: add suture_process_open_cves{pid,comm}, one series\n"
                      "per process");
        app->add_option("--pid", pids, "Only these processes (repeatable)")
            ->check(CLI::Range(1, 1 << 30));
    }

    // The metrics, with the history's counters when the state database
    // reads (a user without it gets the scan's metrics only).
    static std::string metrics(Engine& engine, const StatusReport& report, bool openmetrics,
                               bool per_process) {
        auto facts = engine.metrics_facts();
        if (!facts) {
            log::info("metrics without counters: " + facts.error().message);
        }
        return status_to_metrics(report, {.openmetrics = openmetrics,
                                          .per_process = per_process,
                                          .facts = facts ? &*facts : nullptr});
    }

    int run(const Global& global) const {
        return with_engine(global, [&](Engine& engine) -> int {
            StatusReport report = engine.status(pids);
            std::string chosen = json ? "json" : format;
            auto crash_lock = engine.crash_lock();
            if (chosen == "json") {
                nlohmann::json document = status_to_json(report);
                document["crash_lock"] = crash_lock && *crash_lock
                                             ? crash_lock_to_json(**crash_lock)
                                             : nlohmann::json(nullptr);
                print_json(document);
            } else if (chosen == "openmetrics" || chosen == "prometheus") {
                std::cout << metrics(engine, report, chosen == "openmetrics", per_process_metrics);
            } else if (chosen == "openvex") {
                print_json(status_to_openvex(report, "suture on " + host_name(), ::time(nullptr)));
            } else {
                print_status_table(std::cout, report, log::level() >= log::Level::info);
                if (crash_lock && *crash_lock && (*crash_lock)->holding) {
                    print_crash_lock(std::cout, **crash_lock);
                }
            }
            if (!crash_lock) {
                log::warning(crash_lock.error().message);
            }
            if (any_exposed(report.exposure)) {
                return exit_exposed;
            }
            bool partial = !report.scan.unreadable.empty();
            for (const ProcessReport& process : report.scan.processes) {
                partial = partial || !process.errors.empty();
            }
            return partial ? exit_partial : exit_ok;
        });
    }

    static std::string host_name() {
        char name[256] = {};
        return ::gethostname(name, sizeof name - 1) == 0 ? name : "localhost";
    }
};

// apply and revert share their options.
struct InjectCommand {
    CLI::App* app = nullptr;
    int pid = 0;
    std::string patch_file;  // apply
    std::string patch_id;    // revert (empty: all)
    bool json = false;
    InjectOptions options;
    int backoff_ms = 5;
    bool no_return_gates = false;

    CLI::Option* pid_option = nullptr;

    void add_options(Global& global, bool pid_required = true) {
        add_wait_option(app, global);
        pid_option = app->add_option("--pid", pid, "The process")->check(CLI::Range(1, 1 << 30));
        pid_option->required(pid_required);
        app->add_flag("--json", json, "Print a JSON document (docs/formats.md)");
        app->add_option("--attempts", options.attempts,
                        "How many times to stop the process and check its stacks before giving up")
            ->check(CLI::Range(1, 1000))
            ->capture_default_str();
        app->add_option(
               "--backoff-ms", backoff_ms,
               "First pause between tries, doubling up to 500 ms; the process runs meanwhile")
            ->check(CLI::Range(0, 60000))
            ->capture_default_str();
        app->add_flag("--no-return-gates", no_return_gates,
                      "Strict patches only back off while threads are in the way, instead of "
                      "catching them at return gates (docs/architecture.md)");
    }

    InjectOptions inject_options() const {
        InjectOptions chosen = options;
        chosen.first_backoff = std::chrono::milliseconds(backoff_ms);
        chosen.return_gates = !no_return_gates;
        return chosen;
    }

    int failed(const InjectFailure& failure) const {
        print_report(json, failure_to_json(failure), [&] { print_failure(failure); });
        return exit_code_for(failure.error.code);
    }
};

struct ApplyCommand : InjectCommand {
    void define(CLI::App& parent, Global& global) {
        app = parent.add_subcommand(
            "apply",
            "Apply a patch file to one running process. Every thread is stopped; the library is\n"
            "found by build ID and each replaced function's bytes are checked against the SHA-256\n"
            "recorded in the patch; no thread may be inside a function being replaced (checked by\n"
            "unwinding every stack, retried with backoff); the new code is mapped read+exec "
            "within\n"
            "2 GiB of the library and each function's entry jumps to it. Nothing changes on "
            "error.\n"
            "Applying a higher level of an applied patch id replaces it in the same stop.");
        add_options(global);
        app->add_option("PATCHFILE", patch_file, "The patch file")->required();
    }

    int run(const Global& global) const {
        return with_backend(global, [&](Backend& backend) -> int {
            std::vector<std::string> lost;  // callback outcomes not recorded
            auto report = backend.apply(pid, patch_file, inject_options(), lost);
            if (!report) {
                if (!lost.empty()) {
                    (void)records_lost(lost);  // the failure's status says more
                }
                return failed(report.error());
            }
            auto document = inject_report_to_json(pid, *report);
            if (!lost.empty()) {
                document["lost_records"] = lost;
            }
            print_report(json, document, [&] {
                print_inject_report(std::cout, pid, *report, InjectVerb::applied);
            });
            return lost.empty() ? exit_ok : records_lost(lost);
        });
    }
};

struct RevertCommand : InjectCommand {
    std::vector<std::string> cves;
    bool all = false;

    void define(CLI::App& parent, Global& global) {
        app = parent.add_subcommand(
            "revert",
            "Revert a suture patch (or all of them) in one running process, in one short stop\n"
            "that never waits for busy code: the original bytes go back at once and the patch\n"
            "region is retired: left mapped (a thread still running in it finishes there),\n"
            "marked in its marker, and unmapped by the first stop whose stack check proves no\n"
            "thread can return into it (this one, one right after, or a later apply, revert or\n"
            "update). Works from the in-process marker alone. The state database's records of\n"
            "the reverted patches become `reverted`, with a history entry.\n"
            "The rollback plan: --cve ID... reverts the patches that fix these CVEs, --all every\n"
            "suture patch, from every process of the host (one revert per process and patch,\n"
            "each recorded; `suture disable` then keeps update from applying them again).");
        add_options(global, false);
        app->add_option("PATCH-ID", patch_id, "With --pid: only this patch id (default: all)");
        auto* cve = app->add_option("--cve", cves,
                                    "Every process of the host: the patches fixing these CVEs")
                        ->expected(1, -1)
                        ->excludes(pid_option);
        app->add_flag("--all", all, "Every process of the host: every suture patch")
            ->excludes(pid_option)
            ->excludes(cve);
    }

    int run(const Global& global) const {
        if (pid == 0 && cves.empty() && !all) {
            log::error("revert: needs --pid PID, --cve ID... or --all");
            return exit_usage;
        }
        if (pid == 0) {
            return run_everywhere(global);
        }
        return with_backend(global, [&](Backend& backend) -> int {
            std::vector<std::string> lost;
            auto reports = backend.revert(pid, patch_id, inject_options(), lost);
            if (!reports) {
                return failed(reports.error());
            }
            if (json) {
                print_json(reverted_to_json(pid, *reports, lost));
            } else {
                for (const InjectReport& report : *reports) {
                    print_inject_report(std::cout, pid, report, InjectVerb::reverted);
                }
            }
            return lost.empty() ? exit_ok : records_lost(lost);
        });
    }

    // --cve or --all: every process of the host.
    int run_everywhere(const Global& global) const {
        return with_backend(global, [&](Backend& backend) -> int {
            RevertScope scope{.cves = {cves.begin(), cves.end()}, .all = all};
            auto report = backend.revert_everywhere(scope, inject_options());
            if (!report) {
                if (json) {
                    print_json(error_to_json(report.error()));
                }
                return command_failed(report.error());
            }
            bool failures = any_failed(report->actions);
            print_report(json, host_revert_to_json(*report),
                         [&] { print_host_revert(std::cout, *report); });
            if (!report->lost_records.empty()) {
                return records_lost(report->lost_records);
            }
            return failures ? exit_update_failures : exit_ok;
        });
    }
};

struct StacksCommand {
    CLI::App* app = nullptr;
    int pid = 0;
    bool json = false;

    void define(CLI::App& parent) {
        app = parent.add_subcommand(
            "stacks",
            "Stop one process for a moment, unwind every thread the way the stack check of apply\n"
            "and revert does (DWARF unwind tables read from the process's own memory), print each\n"
            "call chain and whether it reached the outermost frame, and let the process go. An\n"
            "incomplete chain is what makes apply and revert treat a thread as blocking.\n"
            "Changes nothing. Needs ptrace access to the process.");
        app->add_option("--pid", pid, "The process")->required()->check(CLI::Range(1, 1 << 30));
        app->add_flag("--json", json,
                      "Print a JSON document (docs/formats.md, \"Stacks document\")");
    }

    int run(const Global& global) const {
        return with_engine(global, [&](Engine& engine) -> int {
            auto stacks = engine.stacks(pid);
            if (!stacks) {
                log::error(stacks.error().message);
                return exit_code_for(stacks.error().code);
            }
            print_report(json, thread_stacks_to_json(pid, *stacks),
                         [&] { print_thread_stacks(std::cout, *stacks); });
            return exit_ok;
        });
    }
};

// The exit status for a feed error; `not_found_status` for a missing file
// or configuration (exit_code_for would call it "no such process").
int feed_exit_code(ErrorCode code, int not_found_status) {
    if (code == ErrorCode::not_found) {
        return not_found_status;
    }
    int status = exit_code_for(code);
    return status == exit_bad_patch || status == exit_permission ? exit_failure : status;
}

struct FeedRefreshCommand {
    CLI::App* app = nullptr;
    bool json = false;

    void define(CLI::App& feed, Global& global) {
        app = feed.add_subcommand(
            "refresh",
            "Download and verify every enabled remote, in TUF's order: the root chain (each new\n"
            "root signed by the old and the new root keys), timestamp, snapshot, targets (each\n"
            "signed by its role's threshold, unexpired, never older than what is trusted, with\n"
            "the length and hash the previous role gives), then each patch file by length and\n"
            "SHA-256 before anything reads it. Downloads are capped in size and speed. A remote\n"
            "that fails keeps its previous cache untouched; cached patches stay usable offline.");
        add_feed_options(app, global);
        app->add_flag("--json", json, "Print a JSON document (docs/feed-format.md)");
    }

    int run(const Global& global) const {
        return with_engine(global, [&](Engine& engine) -> int {
            bool show_progress =
                !json && ::isatty(STDERR_FILENO) && log::level() >= log::Level::warning;
            auto refreshes = engine.refresh_feeds([&](std::uint64_t now, std::uint64_t total) {
                if (show_progress) {
                    std::cerr << "\r  downloading: " << now
                              << (total ? " / " + std::to_string(total) : "") << " bytes"
                              << std::flush;
                }
            });
            if (show_progress) {
                std::cerr << "\r\033[K" << std::flush;
            }
            if (!refreshes) {
                log::error(refreshes.error().message);
                return exit_failure;
            }
            int status = exit_ok;
            for (const RemoteRefresh& refresh : *refreshes) {
                if (!refresh.result && status == exit_ok) {
                    // A file the feed must serve is missing: as good as unreachable.
                    status = feed_exit_code(refresh.result.error().code, exit_feed_unreachable);
                }
            }
            print_report(json, refresh_to_json(*refreshes),
                         [&] { print_refreshes(std::cout, *refreshes); });
            return status;
        });
    }
};

struct FeedListCommand {
    CLI::App* app = nullptr;
    bool json = false;

    void define(CLI::App& feed, Global& global) {
        app = feed.add_subcommand(
            "list",
            "List the verified patchsets in the cache (no network): patch id, level, CVEs, the\n"
            "build they are for, and whether the remote's channel, level pin and delay let them\n"
            "be used.");
        add_feed_options(app, global);
        app->add_flag("--json", json, "Print a JSON document (docs/feed-format.md)");
    }

    int run(const Global& global) const {
        return with_engine(global, [&](Engine& engine) -> int {
            auto targets = engine.list_feeds();
            if (!targets) {
                log::error(targets.error().message);
                return feed_exit_code(targets.error().code, exit_failure);
            }
            print_report(json, cached_targets_to_json(*targets),
                         [&] { print_cached_targets(std::cout, *targets); });
            // A refused target (malformed custom metadata, or a patch file
            // unlike its signed metadata) is listed, and fails the command
            // as bad_format once everything is shown.
            std::size_t refused = 0;
            for (const feed::CachedTarget& cached : *targets) {
                refused += cached.refused ? 1 : 0;
            }
            if (refused == 0) {
                return exit_ok;
            }
            log::error(std::to_string(refused) +
                       " target(s) refused: malformed custom metadata or a patch file unlike it "
                       "(docs/feed-format.md)");
            return feed_exit_code(ErrorCode::bad_format, exit_failure);
        });
    }
};

struct UpdateCommand {
    CLI::App* app = nullptr;
    bool offline = false;
    bool json = false;
    bool dry_run = false;
    bool automatic = false;
    std::vector<std::string> cves;
    std::vector<std::string> exclude_cves;
    std::string min_severity;
    unsigned parallel = 0;
    bool watch = false;
    unsigned watch_seconds = 0;

    void define(CLI::App& parent, Global& global) {
        app = parent.add_subcommand(
            "update",
            "The automatic cycle: refresh the feeds (if reachable; the verified cache is used\n"
            "either way), scan every process, apply each usable patchset to every process that\n"
            "maps the exact build it is for (the highest level of each patch id; already active\n"
            "patches are left alone), record it all in the state database, close the records\n"
            "of processes that exited, and unmap the retired regions of earlier reverts that no\n"
            "thread refers to any more. Running it again does nothing new.\n"
            "A patch that a rule holds back is listed as `held` with the rule: --cve,\n"
            "--exclude-cve, --min-severity for this run; with --automatic (the timer and sutured)\n"
            "also the policy of /etc/suture/suture.conf: auto_apply, the rollout wave, the\n"
            "maintenance window (docs/operator-guide.md, \"Policy\").");
        app->add_flag("--offline", offline,
                      "Do not refresh the feeds; apply from the cache (the boot case)");
        app->add_flag("--json", json,
                      "Print a JSON document (also when it fails: the error document)");
        app->add_flag("--dry-run", dry_run,
                      "Change nothing: no refresh, no apply, no record, no lock. Lists what would\n"
                      "be applied where (would_apply, would_adopt) and what is held back by which\n"
                      "rule (held), with the policy's view (time, window, rollout bucket)");
        app->add_flag("--automatic", automatic,
                      "Run as the timer and sutured do: the policy of suture.conf applies\n"
                      "(auto_apply, maintenance windows, immediate_severity, rollout waves)");
        app->add_option("--cve", cves,
                        "Only patches that fix one of these CVEs (one-time; repeat or list)")
            ->expected(1, -1);
        app->add_option("--exclude-cve", exclude_cves,
                        "Never patches that fix one of these CVEs (one-time)")
            ->expected(1, -1);
        app->add_option("--min-severity", min_severity,
                        "Only patches of at least this severity: Low, Moderate, High, Critical\n"
                        "(from the feed's signed metadata, else its advisory data; a patch of\n"
                        "unknown severity is below Low)")
            ->check([](const std::string& value) {
                return severity_from_name(value) ? "" : "Low, Moderate, High or Critical";
            });
        app->add_option("--parallel", parallel,
                        "Processes patched at once (each gets all its patches in one stop); "
                        "0: the number of cores")
            ->check(CLI::Range(0, 1024))
            ->capture_default_str();
        app->add_flag("--watch", watch,
                      "Without sutured (or with --direct): stay in the foreground after the\n"
                      "update and watch the patched processes for watch_seconds (suture.conf):\n"
                      "a crash (SIGSEGV, SIGBUS, SIGILL, SIGABRT, SIGFPE) quarantines the patches\n"
                      "applied in it and reverts them from every process (docs/operator-guide.md,\n"
                      "\"Health watch\"). sutured watches by itself; then this does nothing");
        app->add_option("--watch-seconds", watch_seconds,
                        "With --watch: watch this long instead (0: watch_seconds of suture.conf)")
            ->check(CLI::Range(0, 86400))
            ->capture_default_str();
        add_state_option(app, global);
        add_feed_options(app, global);
        add_wait_option(app, global);
    }

    UpdateOptions options() const {
        UpdateOptions chosen{.refresh = !offline, .dry_run = dry_run, .automatic = automatic};
        chosen.selection.cves = {cves.begin(), cves.end()};
        chosen.selection.exclude_cves = {exclude_cves.begin(), exclude_cves.end()};
        chosen.selection.min_severity =
            severity_from_name(min_severity).value_or(Severity::unknown);
        chosen.parallel = parallel;
        return chosen;
    }

    int run(const Global& global) const {
        auto backend = choose_backend(global.direct, global.engine);
        if (!backend) {
            if (json) {
                print_json(error_to_json(backend.error()));
            }
            return command_failed(backend.error());
        }
        return run_with(**backend);
    }

    int run_with(Backend& backend) const {
        // The watch listens before the first apply (a crash right after it
        // is not missed).
        bool watching = watch && !dry_run && !backend.in_daemon();
        if (watching) {
            if (auto opened = backend.open_health_watch(); !opened) {
                return command_failed(opened.error());
            }
        } else if (watch && backend.in_daemon()) {
            log::info("sutured watches the patched processes (--watch is for runs without it)");
        }
        {
            bool show_progress = !json && ::isatty(STDERR_FILENO);
            auto report = backend.update(options(), [&](std::size_t done, std::size_t total) {
                if (show_progress) {
                    std::cerr << "\r  " << done << " / " << total << " processes" << std::flush;
                }
            });
            if (show_progress) {
                std::cerr << "\r\033[K" << std::flush;
            }
            if (!report) {
                if (json) {
                    print_json(error_to_json(report.error()));
                }
                return command_failed(report.error());
            }
            bool failures = any_failed(report->actions);
            auto document = update_to_json(*report);
            if (watching) {
                // The update's report first (text), then what the watch saw.
                if (!json) {
                    print_update(std::cout, *report);
                    std::cout << std::flush;
                }
                auto crashes = backend.watch_health(std::chrono::seconds(watch_seconds),
                                                    options().inject);
                document["health"] = crash_outcomes_to_json(crashes)["crashes"];
                print_report(json, document, [&] { print_crashes(std::cout, crashes); });
            } else {
                print_report(json, document, [&] { print_update(std::cout, *report); });
            }
            if (!report->lost_records.empty()) {
                return records_lost(report->lost_records);
            }
            return failures && report->enabled ? exit_update_failures : exit_ok;
        }
    }
};

struct CrashLockCommand {
    CLI::App* app = nullptr;
    bool release = false;
    bool clean_shutdown = false;
    bool json = false;

    void define(CLI::App& parent, Global& global) {
        app = parent.add_subcommand(
            "crash-lock",
            "Show the crash lockfile: an update that applies patches writes it (beside the\n"
            "state database: the boot, the time, the patch ids and levels) and a run in the\n"
            "same boot removes it once watch_seconds (suture.conf, default 300) have passed.\n"
            "Found from another boot, the host went down within watch_seconds of that apply:\n"
            "automatic runs (the boot unit, the timer, sutured) then hold those patches back\n"
            "(rule crash_lock) until --release. suture status says so.");
        app->add_flag("--release", release,
                      "Remove the lock: automatic runs may apply its patches again (recorded)");
        app->add_flag("--clean-shutdown", clean_shutdown,
                      "What suture-shutdown.service runs at a clean shutdown: this boot's lock\n"
                      "is removed (recorded), so the next boot reapplies; an earlier boot's\n"
                      "lock (that boot went down uncleanly) is kept")
            ->excludes("--release");
        app->add_flag("--json", json, "Print a JSON document (null: no lock)");
        add_state_option(app, global);
        add_wait_option(app, global);
    }

    int run(const Global& global) const {
        return with_engine(global, [&](Engine& engine) -> int {
            if (clean_shutdown) {
                auto cleared = engine.clear_crash_lock_at_shutdown();
                if (!cleared) {
                    return command_failed(cleared.error());
                }
                std::cout << (*cleared ? "crash lock of this boot cleared (clean shutdown)\n"
                                       : "no crash lock of this boot\n");
                return exit_ok;
            }
            if (release) {
                auto released = engine.release_crash_lock();
                return released ? exit_ok : command_failed(released.error());
            }
            auto lock = engine.crash_lock();
            if (!lock) {
                return command_failed(lock.error());
            }
            if (json) {
                print_json(*lock ? crash_lock_to_json(**lock) : nlohmann::json(nullptr));
            } else if (*lock) {
                print_crash_lock(std::cout, **lock);
            } else {
                std::cout << "no crash lock\n";
            }
            return exit_ok;
        });
    }
};

struct QuarantineCommand {
    CLI::App* list = nullptr;
    CLI::App* release = nullptr;
    std::string patch_id;
    bool json = false;

    void define(CLI::App& parent, Global& global) {
        CLI::App* app = parent.add_subcommand(
            "quarantine",
            "The patch ids the health watch quarantined: a process died of SIGSEGV, SIGBUS,\n"
            "SIGILL, SIGABRT or SIGFPE within watch_seconds (suture.conf) of their apply, so\n"
            "they were reverted from every process, and no update or new process gets them\n"
            "again (rule `quarantined`, every level) until released (docs/operator-guide.md,\n"
            "\"Health watch\").");
        app->require_subcommand(1);
        list = app->add_subcommand("list", "List the quarantined patch ids, with the crash of each");
        list->add_flag("--json", json, "Print a JSON document (docs/formats.md)");
        add_state_option(list, global);
        release = app->add_subcommand(
            "release",
            "Let updates and new processes apply ID again (recorded; root or polkit's\n"
            "org.suture.manage through sutured). Exit 1 when ID is not quarantined.");
        release->add_option("ID", patch_id, "The patch id")->required();
        add_state_option(release, global);
        add_wait_option(release, global);
    }

    int run(const Global& global) const {
        return with_backend(global, [&](Backend& backend) -> int {
            if (release->parsed()) {
                auto released = backend.release_quarantine(patch_id);
                if (!released) {
                    return command_failed(released.error());
                }
                if (!*released) {
                    log::error(patch_id + " is not quarantined");
                    return exit_failure;
                }
                std::cout << patch_id << ": released from quarantine\n";
                return exit_ok;
            }
            auto rows = backend.quarantined();
            if (!rows) {
                return command_failed(rows.error());
            }
            print_report(json, quarantine_to_json(*rows), [&] { print_quarantine(std::cout, *rows); });
            return exit_ok;
        });
    }
};

struct ReportCommand {
    CLI::App* app = nullptr;
    std::string since;
    std::string format = "markdown";

    void define(CLI::App& parent, Global& global) {
        app = parent.add_subcommand(
            "report",
            "The audit report, from the state database alone: per patch (id and level), each\n"
            "process it was applied to (pid, start time, executable, build, time), by whom\n"
            "(the caller's uid; automatic runs: the timer, the boot unit, sutured) and from\n"
            "which feed (remote, target, sha256, CVEs), how it ended (revert, exit, crash),\n"
            "what the health watch saw and the quarantine; then the runs (updates, refreshes,\n"
            "settings). Changes nothing (docs/operator-guide.md, \"Audit report\").");
        app->add_option("--since", since,
                        "Only patches applied from this time: YYYY-MM-DD, YYYY-MM-DDTHH:MM:SSZ\n"
                        "(UTC) or Unix seconds (default: everything)");
        app->add_option("--format", format, "markdown or json (docs/formats.md)")
            ->check(CLI::IsMember({"markdown", "json"}))
            ->capture_default_str();
        add_state_option(app, global);
    }

    // YYYY-MM-DD, YYYY-MM-DDTHH:MM:SSZ (UTC) or Unix seconds.
    static std::optional<std::int64_t> parse_since(const std::string& text) {
        if (!text.empty() && text.find_first_not_of("0123456789") == std::string::npos) {
            return std::stoll(text);
        }
        for (const char* layout : {"%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%d"}) {
            std::tm time{};
            const char* end = ::strptime(text.c_str(), layout, &time);
            if (end != nullptr && *end == '\0') {
                return static_cast<std::int64_t>(::timegm(&time));
            }
        }
        return std::nullopt;
    }

    int run(const Global& global) const {
        auto from = since.empty() ? std::optional<std::int64_t>(0) : parse_since(since);
        if (!from) {
            log::error("report: --since " + since +
                       ": expected YYYY-MM-DD, YYYY-MM-DDTHH:MM:SSZ or Unix seconds");
            return exit_usage;
        }
        return with_engine(global, [&](Engine& engine) -> int {
            auto report = engine.audit_report(*from);
            if (!report) {
                return command_failed(report.error());
            }
            print_report(format == "json", audit_report_to_json(*report),
                         [&] { print_audit_markdown(std::cout, *report); });
            return exit_ok;
        });
    }
};

struct HistoryCommand {
    CLI::App* app = nullptr;
    std::size_t limit = 50;
    bool json = false;

    void define(CLI::App& parent, Global& global) {
        app = parent.add_subcommand(
            "history",
            "Show the audit log of the state database, oldest first (every apply,\n"
            "adoption, close, refresh and setting change, with outcome and reason).");
        add_state_option(app, global);
        app->add_option("--limit", limit, "How many of the newest entries")
            ->check(CLI::Range(1, 100000))
            ->capture_default_str();
        app->add_flag("--json", json, "Print a JSON document");
    }

    int run(const Global& global) const {
        return with_backend(global, [&](Backend& backend) -> int {
            auto entries = backend.history(limit);
            if (!entries) {
                if (json) {
                    print_json(error_to_json(entries.error()));
                }
                return command_failed(entries.error());
            }
            print_report(json, history_to_json(*entries),
                         [&] { print_history(std::cout, *entries); });
            return exit_ok;
        });
    }
};

// enable and disable.
struct SwitchCommand {
    CLI::App* app = nullptr;
    bool enable = true;

    void define(CLI::App& parent, Global& global, bool turns_on) {
        enable = turns_on;
        app = turns_on
                  ? parent.add_subcommand("enable", "Let suture update patch processes (default)")
                  : parent.add_subcommand(
                        "disable",
                        "Stop suture update from patching anything (applied patches stay)");
        add_state_option(app, global);
        add_wait_option(app, global);
    }

    int run(const Global& global) const {
        return with_backend(global, [&](Backend& backend) -> int {
            if (auto set = backend.set_enabled(enable); !set) {
                return command_failed(set.error());
            }
            std::cout << "suture is " << (enable ? "enabled" : "disabled") << "\n";
            return exit_ok;
        });
    }
};

struct ExcludeCommand {
    CLI::App* app = nullptr;
    std::string executable;
    std::string unit;
    bool remove = false;

    void define(CLI::App& parent, Global& global) {
        app = parent.add_subcommand(
            "exclude",
            "Keep suture away from an executable or a systemd unit (update and the\n"
            "daemon skip it); without options, list the exclusions.");
        app->add_option("--executable", executable, "Absolute path of an executable");
        app->add_option("--unit", unit, "A systemd unit, e.g. sshd.service");
        app->add_flag("--remove", remove, "Remove the exclusion instead");
        add_state_option(app, global);
        add_wait_option(app, global);
    }

    int run(const Global& global) const {
        if (!executable.empty() && !executable.starts_with("/")) {
            log::error("--executable needs an absolute path");
            return exit_usage;
        }
        return with_engine(global, [&](Engine& engine) -> int {
            if (executable.empty() && unit.empty()) {
                return list(engine);
            }
            for (const Exclusion& exclusion :
                 {Exclusion{"executable", executable}, Exclusion{"unit", unit}}) {
                if (exclusion.second.empty()) {
                    continue;
                }
                if (auto set = engine.set_exclusion(exclusion, !remove); !set) {
                    return command_failed(set.error());
                }
                std::cout << (remove ? "no longer excluded: " : "excluded: ") << exclusion.first
                          << " " << exclusion.second << "\n";
            }
            return exit_ok;
        });
    }

    static int list(Engine& engine) {
        auto rows = engine.exclusions();
        if (!rows) {
            return command_failed(rows.error());
        }
        for (const auto& [kind, value] : *rows) {
            std::cout << kind << " " << value << "\n";
        }
        return exit_ok;
    }
};

struct StateRebuildCommand {
    CLI::App* app = nullptr;
    bool json = false;

    void define(CLI::App& state, Global& global) {
        app = state.add_subcommand(
            "rebuild",
            "Rebuild the state database from the region markers in every process (what\n"
            "`suture status` reads: the truth about memory), for a database that is damaged\n"
            "(exit status 25) or lost. The old file (and its -wal, -shm) is kept aside as\n"
            "<database>.damaged-<UTC time>; its settings and exclusions are carried over when\n"
            "they still read. The new database lists every patch active in memory as an active\n"
            "application; the history starts again with one `rebuild` entry. Run as root.");
        add_state_option(app, global);
        add_wait_option(app, global);
        app->add_flag("--json", json, "Print a JSON document (docs/formats.md)");
    }

    int run(const Global& global) const {
        return with_engine(global, [&](Engine& engine) -> int {
            auto rebuilt = engine.rebuild_state();
            if (!rebuilt) {
                if (json) {
                    print_json(error_to_json(rebuilt.error()));
                }
                return command_failed(rebuilt.error());
            }
            print_report(json, state_rebuild_to_json(*rebuilt), [&] {
                std::cout << "state database " << rebuilt->database << " rebuilt: "
                          << rebuilt->applications.size() << " active patch(es) recorded from "
                          << "memory, " << rebuilt->settings_kept << " setting(s) and "
                          << rebuilt->exclusions_kept << " exclusion(s) kept\n";
                if (!rebuilt->kept_as.empty()) {
                    std::cout << "the old file is " << rebuilt->kept_as << "\n";
                }
            });
            return exit_ok;
        });
    }
};

// Every command, defined on one CLI11 app.
struct Commands {
    StatusCommand status;
    ApplyCommand apply;
    RevertCommand revert;
    StacksCommand stacks;
    FeedRefreshCommand feed_refresh;
    FeedListCommand feed_list;
    UpdateCommand update;
    HistoryCommand history;
    CrashLockCommand crash_lock;
    QuarantineCommand quarantine;
    ReportCommand report;
    SwitchCommand enable;
    SwitchCommand disable;
    ExcludeCommand exclude;
    StateRebuildCommand state_rebuild;

    void define(CLI::App& app, Global& global) {
        status.define(app);
        apply.define(app, global);
        revert.define(app, global);
        stacks.define(app);
        CLI::App* feed = app.add_subcommand(
            "feed",
            "The signed patch feed (TUF-style; docs/feed-format.md): refresh the patchsets of\n"
            "every remote in remotes.d, or list what the cache holds.");
        feed->require_subcommand(1);
        feed_refresh.define(*feed, global);
        feed_list.define(*feed, global);
        update.define(app, global);
        history.define(app, global);
        crash_lock.define(app, global);
        quarantine.define(app, global);
        report.define(app, global);
        enable.define(app, global, true);
        disable.define(app, global, false);
        exclude.define(app, global);
        CLI::App* state = app.add_subcommand(
            "state", "The state database (docs/state.md): rebuild it from memory.");
        state->require_subcommand(1);
        state_rebuild.define(*state, global);
    }

    // The exit status of the command the command line chose.
    int run(const Global& global) const {
        if (status.app->parsed())
            return status.run(global);
        if (apply.app->parsed())
            return apply.run(global);
        if (revert.app->parsed())
            return revert.run(global);
        if (stacks.app->parsed())
            return stacks.run(global);
        if (feed_refresh.app->parsed())
            return feed_refresh.run(global);
        if (feed_list.app->parsed())
            return feed_list.run(global);
        if (update.app->parsed())
            return update.run(global);
        if (crash_lock.app->parsed())
            return crash_lock.run(global);
        if (quarantine.list->parsed() || quarantine.release->parsed())
            return quarantine.run(global);
        if (report.app->parsed())
            return report.run(global);
        if (history.app->parsed())
            return history.run(global);
        if (enable.app->parsed())
            return enable.run(global);
        if (disable.app->parsed())
            return disable.run(global);
        if (exclude.app->parsed())
            return exclude.run(global);
        if (state_rebuild.app->parsed())
            return state_rebuild.run(global);
        return exit_usage;
    }
};

void define_global_options(CLI::App& app, Global& global) {
    app.footer(exit_status_help() + files_help);
    app.set_version_flag("--version", std::string("suture ") + SUTURE_VERSION);
    app.require_subcommand(1);
    app.add_option("--distro-support", global.engine.distro_support_dir,
                   "Directory of per-distribution build indexes (default: the installed one)")
        ->check(CLI::ExistingDirectory);
    app.add_flag("-v,--verbose", global.verbosity, "More diagnostics on stderr (repeat for debug)");
    app.add_flag("-q,--quiet", global.quiet, "Only errors on stderr");
    app.add_flag("--direct", global.direct,
                 "Run the engine in this process even when sutured runs (by default update,\n"
                 "apply, revert, history, enable and disable go to sutured over D-Bus when it\n"
                 "answers, and run here when it does not)");
}

log::Level log_level(const Global& global) {
    return global.quiet            ? log::Level::error
           : global.verbosity >= 2 ? log::Level::debug
           : global.verbosity == 1 ? log::Level::info
                                   : log::Level::warning;
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{
        "suture: live-patch OpenSSL (libssl/libcrypto) in running processes without restarting "
        "them.",
        "suture"};
    Global global;
    Commands commands;
    define_global_options(app, global);
    commands.define(app, global);
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& error) {
        int code = app.exit(error);
        return code == 0 ? exit_ok : exit_usage;
    }
    log::set_level(log_level(global));
    global.engine.lock_wait = std::chrono::seconds(global.lock_wait_seconds);
    global.engine.lock_waiting = [seconds = global.lock_wait_seconds](int holder) {
        log::warning("waiting up to " + std::to_string(seconds) +
                     " s for another suture operation to finish" +
                     (holder > 0 ? " (pid " + std::to_string(holder) + ")" : std::string()));
    };
    return commands.run(global);
}
