// suture: the command-line front end. It parses the command line, calls the
// engine, and is the only place that turns errors into messages and exit codes.

#include <unistd.h>

#include <iostream>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "base/Files.h"
#include "base/Log.h"
#include "cli/DaemonClient.h"
#include "cli/ExitCode.h"
#include "cli/StatusTable.h"
#include "config.h"
#include "engine/Engine.h"
#include "engine/Feed.h"
#include "engine/Update.h"
#include "state/StateDatabase.h"

namespace {

using namespace suture;

constexpr const char* exit_code_help = R"(Exit status:
  0  success
  1  failure: the command could not run (for example the build index is missing)
  2  usage error: bad option or argument
  3  status: done, but some processes or mapped files could not be read;
     they are listed (in --json under "unreadable" and per-process "errors")
  4  no such process                 9  unsafe: threads kept running code being
  5  permission denied                  replaced (the blocking frames are listed)
  6  library not mapped by the process  10 the process died during the operation
  7  another build of the library      11 bad or unsupported patch file
  8  function bytes differ from the    12 conflict: another patch or foreign bytes
     build the patch was made for      13 revert: the patch is not applied
 feed refresh (the first failing remote's reason; the cache stays as it was):
  14 metadata expired (frozen feed)    18 a download exceeded its size cap
  15 rollback to older metadata        19 a download was too slow
  16 signatures below the threshold    20 the remote could not be reached
  17 length or hash differs from the signed metadata
 update:
  0  every matching process is patched (or there was nothing to do)
  21 some processes could not be patched (each is listed with its reason)

Files:
  /etc/suture/remotes.d/*.conf ($SUTURE_CONFIG_DIR/remotes.d)
      the feeds to refresh from (docs/operator-guide.md, "Feeds").
  /var/cache/suture/feed ($SUTURE_FEED_CACHE)
      verified feed metadata and patch files, one directory per remote.
  <datadir>/suture/distro-support/*/builds.json
      build ID -> package index, generated from Debian's archive by
      distro-support/generate-index; --distro-support overrides the directory.

See docs/operator-guide.md, docs/formats.md and docs/patch-format.md.)";

struct StatusOptions {
    bool json = false;
    std::vector<int> pids;
};

struct InjectCommand {
    int pid = 0;
    std::string patch_file;  // apply
    std::string patch_id;    // revert (empty: all)
    bool json = false;
    InjectOptions options;
    int backoff_ms = 5;
    bool direct = false;  // run the engine here even if sutured runs
};

int run_status(const StatusOptions& options, const EngineOptions& engine_options) {
    auto engine = Engine::open(engine_options);
    if (!engine) {
        log::error(engine.error().message);
        return exit_failure;
    }
    StatusReport report = engine->status(options.pids);
    if (options.json) {
        std::cout << status_to_json(report).dump(2) << "\n";
    } else {
        print_status_table(std::cout, report, log::level() >= log::Level::info);
    }
    bool partial = !report.scan.unreadable.empty();
    for (const ProcessReport& process : report.scan.processes) {
        partial = partial || !process.errors.empty();
    }
    return partial ? exit_partial : exit_ok;
}

// An error document ({"error": {reason, message, blocking_threads}}) from
// the engine or the daemon: printed, and its exit status returned.
int report_error_document(const nlohmann::json& document, bool json) {
    const nlohmann::json& error = document["error"];
    if (json) {
        std::cout << document.dump(2) << "\n";
    } else {
        log::error(error.value("message", std::string("failed")));
        for (const auto& thread : error.value("blocking_threads", nlohmann::json::array())) {
            std::cerr << "  thread " << thread.value("tid", 0) << ":";
            for (const auto& frame : thread.value("frames", nlohmann::json::array())) {
                std::cerr << " " << frame.get<std::string>();
            }
            std::cerr << "\n";
        }
    }
    auto code = error_code_from_name(error.value("reason", std::string()));
    return code ? exit_code_for(*code) : exit_failure;
}

// One apply/revert report (inject_report_to_json) as a line.
void print_inject_report(const nlohmann::json& report, const char* verb) {
    std::string head = "pid " + std::to_string(report.value("pid", 0)) + ": ";
    std::string patch_id = report.value("patch_id", std::string());
    if (patch_id.empty()) {
        std::cout << head << "removed the empty region at "
                  << report.value("region_address", std::string())
                  << " an interrupted apply left\n";
        return;
    }
    if (report.value("already_applied", false)) {
        std::cout << head << patch_id << " level " << report.value("level", 0)
                  << " is already applied\n";
        return;
    }
    std::cout << head << verb << " " << patch_id << " level " << report.value("level", 0);
    if (report.contains("replaced_level") && !report["replaced_level"].is_null()) {
        std::cout << " (replacing level " << report["replaced_level"].get<int>() << ")";
    }
    std::cout << ": " << report.value("functions", 0) << " functions, "
              << report.value("threads", 0) << " threads stopped for "
              << report.value("stopped_us", 0) << " us";
    if (std::string(verb) == "applied") {
        std::cout << " (try " << report.value("attempts", 1) << ")";
    }
    std::cout << "\n";
}

// Prints a document the daemon or the engine produced; returns the status.
int finish_inject(const nlohmann::json& document, bool json, const char* verb) {
    if (document.contains("error")) {
        return report_error_document(document, json);
    }
    if (json) {
        std::cout << document.dump(2) << "\n";
    } else if (document.contains("reverted")) {
        for (const auto& report : document["reverted"]) {
            print_inject_report(report, verb);
        }
    } else {
        print_inject_report(document, verb);
    }
    return exit_ok;
}

int run_apply(InjectCommand& command, const EngineOptions& engine_options) {
    if (!command.direct) {
        std::string path = command.patch_file;
        if (char* resolved = ::realpath(path.c_str(), nullptr)) {
            path = resolved;  // the daemon has another working directory
            std::free(resolved);
        }
        auto reply = daemon_apply(command.pid, path);
        if (!reply) {
            log::error(reply.error().message);
            return exit_code_for(reply.error().code);
        }
        if (*reply) {
            return finish_inject(**reply, command.json, "applied");
        }
    }
    auto engine = Engine::open(engine_options);
    if (!engine) {
        log::error(engine.error().message);
        return exit_failure;
    }
    auto patch = read_patch_file(command.patch_file);
    if (!patch) {
        bool missing = patch.error().code == ErrorCode::not_found ||
                       patch.error().code == ErrorCode::permission_denied ||
                       patch.error().code == ErrorCode::io;
        return missing ? (log::error(patch.error().message), exit_failure)
                       : finish_inject(error_to_json(patch.error(), {}), command.json, "applied");
    }
    command.options.first_backoff = std::chrono::milliseconds(command.backoff_ms);
    std::vector<BlockingThread> blocking;
    auto report = engine->apply(command.pid, *patch, command.options, &blocking);
    return finish_inject(report ? inject_report_to_json(command.pid, *report)
                                : error_to_json(report.error(), blocking),
                         command.json, "applied");
}

int run_revert(InjectCommand& command, const EngineOptions& engine_options) {
    if (!command.direct) {
        auto reply = daemon_revert(command.pid, command.patch_id);
        if (!reply) {
            log::error(reply.error().message);
            return exit_code_for(reply.error().code);
        }
        if (*reply) {
            return finish_inject(**reply, command.json, "reverted");
        }
    }
    auto engine = Engine::open(engine_options);
    if (!engine) {
        log::error(engine.error().message);
        return exit_failure;
    }
    command.options.first_backoff = std::chrono::milliseconds(command.backoff_ms);
    std::vector<BlockingThread> blocking;
    auto reports = engine->revert(command.pid, command.patch_id, command.options, &blocking);
    if (!reports) {
        return finish_inject(error_to_json(reports.error(), blocking), command.json, "reverted");
    }
    nlohmann::json reverted = nlohmann::json::array();
    for (const InjectReport& report : *reports) {
        reverted.push_back(inject_report_to_json(command.pid, report));
    }
    return finish_inject({{"reverted", reverted}}, command.json, "reverted");
}

struct StacksCommand {
    int pid = 0;
    bool json = false;
};

int run_stacks(const StacksCommand& command, const EngineOptions& engine_options) {
    auto engine = Engine::open(engine_options);
    if (!engine) {
        log::error(engine.error().message);
        return exit_failure;
    }
    auto stacks = engine->stacks(command.pid);
    if (!stacks) {
        log::error(stacks.error().message);
        return exit_code_for(stacks.error().code);
    }
    nlohmann::json document = thread_stacks_to_json(command.pid, *stacks);
    if (command.json) {
        std::cout << document.dump(2) << "\n";
        return exit_ok;
    }
    for (const ThreadStack& stack : *stacks) {
        std::cout << "thread " << stack.tid << ": " << stack.frames.size() << " frames, "
                  << (stack.complete ? "complete" : "incomplete: " + stack.incomplete_reason)
                  << "\n";
        for (std::size_t depth = 0; depth < stack.frames.size(); ++depth) {
            std::cout << "  #" << depth << " " << hex_address(stack.frames[depth]) << "\n";
        }
    }
    return exit_ok;
}

struct FeedCommand {
    FeedOptions options;
    bool json = false;
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

int run_feed_refresh(const FeedCommand& command) {
    FeedOptions options = resolve_feed_options(command.options);
    bool show_progress =
        !command.json && ::isatty(STDERR_FILENO) && log::level() >= log::Level::warning;
    auto refreshes = refresh_feeds(options, [&](std::uint64_t now, std::uint64_t total) {
        if (show_progress) {
            std::cerr << "\r  downloading: " << now << (total ? " / " + std::to_string(total) : "")
                      << " bytes" << std::flush;
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
    if (command.json) {
        std::cout << refresh_to_json(*refreshes).dump(2) << "\n";
        return status;
    }
    for (const RemoteRefresh& refresh : *refreshes) {
        if (!refresh.result) {
            std::cout << "remote " << refresh.remote << ": refused ("
                      << error_code_name(refresh.result.error().code)
                      << "): " << refresh.result.error().message << "\n"
                      << "  the cache of " << refresh.remote << " is unchanged\n";
            continue;
        }
        const feed::RefreshReport& report = *refresh.result;
        std::cout << "remote " << refresh.remote << ": "
                  << (report.changed ? "updated" : "up to date") << " (root v"
                  << report.root_version << ", timestamp v" << report.timestamp_version
                  << ", snapshot v" << report.snapshot_version << ", targets v"
                  << report.targets_version << "): " << report.targets << " patch file(s), "
                  << report.downloaded << " downloaded, " << report.reused << " from the cache\n";
    }
    return status;
}

int run_feed_list(const FeedCommand& command) {
    auto targets = list_feeds(resolve_feed_options(command.options));
    if (!targets) {
        log::error(targets.error().message);
        return feed_exit_code(targets.error().code, exit_failure);
    }
    // A refused target (malformed custom metadata) is listed, and fails the
    // command as bad_format once everything is shown.
    std::size_t refused = 0;
    for (const feed::CachedTarget& cached : *targets) {
        refused += cached.refused ? 1 : 0;
    }
    int status = refused == 0 ? exit_ok : feed_exit_code(ErrorCode::bad_format, exit_failure);
    if (command.json) {
        std::cout << cached_targets_to_json(*targets).dump(2) << "\n";
        return status;
    }
    if (targets->empty()) {
        std::cout << "No patchsets cached; run `suture feed refresh`.\n";
        return exit_ok;
    }
    for (const feed::CachedTarget& cached : *targets) {
        if (cached.refused) {
            std::cout << "refused (" << error_code_name(cached.refused->code)
                      << "): " << cached.refused->message << "\n"
                      << "  from     remote " << cached.remote << "\n";
            continue;
        }
        const feed::PatchsetInfo& info = cached.target.info;
        std::string cves;
        for (const std::string& cve : info.cves) {
            cves += (cves.empty() ? "" : ",") + cve;
        }
        std::cout << info.patch_id << " level " << info.level << "  " << (cves.empty() ? "-" : cves)
                  << "\n"
                  << "  for      " << info.distribution << " " << info.package << " "
                  << info.version << ", " << info.soname << " build " << info.build_id << "\n"
                  << "  from     remote " << cached.remote << ", channel " << info.channel
                  << ", published " << feed::format_utc(info.published) << "\n"
                  << "  state    "
                  << (cached.usable ? "usable" : "held back: " + cached.held_back_because) << "\n"
                  << "  file     " << cached.path << "\n";
    }
    if (refused > 0) {
        log::error(std::to_string(refused) +
                   " target(s) refused: malformed custom metadata (docs/feed-format.md)");
    }
    return status;
}

void add_feed_options(CLI::App* command, FeedCommand& options) {
    command->add_option("--config-dir", options.options.config_directory,
                        "Directory with remotes.d/ (default $SUTURE_CONFIG_DIR or /etc/suture)");
    command->add_option("--cache-dir", options.options.cache_directory,
                        "Feed cache (default $SUTURE_FEED_CACHE, /var/cache/suture/feed as root)");
    command->add_flag("--json", options.json, "Print a JSON document (docs/feed-format.md)");
}

struct UpdateCommand {
    UpdateOptions options;
    bool offline = false;
    bool json = false;
    bool direct = false;
};

// Prints an update document (update_to_json); returns the exit status.
int finish_update(const nlohmann::json& document, bool json) {
    if (document.contains("error")) {
        report_error_document(document, json);
        return exit_failure;  // the cycle itself could not run
    }
    bool failures = false;
    std::size_t applied = 0;
    for (const auto& action : document["actions"]) {
        failures = failures || action.value("outcome", std::string()) == "failed";
        applied += action.value("outcome", std::string()) == "applied" ? 1 : 0;
    }
    int status = failures ? exit_update_failures : exit_ok;
    if (json) {
        std::cout << document.dump(2) << "\n";
        return status;
    }
    if (!document.value("enabled", true)) {
        std::cout << "suture is disabled (suture enable turns it on again); nothing done\n";
        return exit_ok;
    }
    for (const auto& remote : document.value("feed", nlohmann::json::array())) {
        if (!remote.value("ok", true)) {
            std::cout << "feed " << remote.value("remote", std::string()) << ": not refreshed ("
                      << remote["error"].value("reason", std::string())
                      << "); using the cached patchsets\n";
        }
    }
    for (const auto& problem : document.value("problems", nlohmann::json::array())) {
        log::warning("skipped a cached patch file: " + problem.get<std::string>());
    }
    for (const auto& action : document["actions"]) {
        std::cout << "pid " << action.value("pid", 0) << " (" << action.value("comm", std::string())
                  << "): " << action.value("patch_id", std::string()) << " level "
                  << action.value("level", 0) << ": " << action.value("outcome", std::string());
        std::string message = action.value("message", std::string());
        std::string reason = action.value("reason", std::string());
        if (!message.empty()) {
            std::cout << " (" << (reason.empty() ? "" : reason + ": ") << message << ")";
        }
        std::cout << "\n";
    }
    std::cout << document.value("patchsets", 0) << " usable patchset(s); "
              << document.value("processes_matching", 0) << " of "
              << document.value("processes_examined", 0) << " processes run a build they fix; "
              << applied << " patch(es) applied now";
    if (document.value("closed", 0) > 0) {
        std::cout << "; " << document.value("closed", 0) << " record(s) of exited processes closed";
    }
    std::cout << (failures ? "; some failed (exit 21)" : "") << "\n";
    return status;
}

int run_update_command(UpdateCommand& command, const EngineOptions& engine_options) {
    if (!command.direct) {
        auto reply = daemon_update(command.offline);
        if (!reply) {
            log::error(reply.error().message);
            return exit_code_for(reply.error().code);
        }
        if (*reply) {
            return finish_update(**reply, command.json);
        }
    }
    auto engine = Engine::open(engine_options);
    if (!engine) {
        log::error(engine.error().message);
        return exit_failure;
    }
    command.options.refresh = !command.offline;
    bool show_progress = !command.json && ::isatty(STDERR_FILENO);
    auto report = run_update(*engine, command.options, [&](std::size_t done, std::size_t total) {
        if (show_progress) {
            std::cerr << "\r  " << done << " / " << total << " processes" << std::flush;
        }
    });
    if (show_progress) {
        std::cerr << "\r\033[K" << std::flush;
    }
    if (!report) {
        log::error(report.error().message);
        return exit_failure;
    }
    return finish_update(update_to_json(*report), command.json);
}

int run_history(const std::string& state_database, std::size_t limit, bool json, bool direct) {
    nlohmann::json document;
    std::optional<nlohmann::json> from_daemon;
    if (!direct) {
        auto reply = daemon_history(static_cast<unsigned>(limit));
        if (!reply) {
            log::error(reply.error().message);
            return exit_code_for(reply.error().code);
        }
        from_daemon = *reply;
    }
    if (from_daemon) {
        document = *from_daemon;
    } else {
        auto entries = read_history(state_database, limit);
        if (!entries) {
            log::error(entries.error().message);
            return exit_failure;
        }
        document = history_to_json(*entries);
    }
    if (document.contains("error")) {
        return report_error_document(document, json);
    }
    if (json) {
        std::cout << document.dump(2) << "\n";
        return exit_ok;
    }
    const auto& entries = document["history"];
    for (auto entry = entries.rbegin(); entry != entries.rend(); ++entry) {
        std::cout << feed::format_utc(entry->value("at", std::int64_t{0})) << "  "
                  << entry->value("action", std::string()) << " "
                  << entry->value("outcome", std::string());
        if (entry->value("pid", 0) != 0) {
            std::cout << "  pid " << entry->value("pid", 0);
        }
        if (!entry->value("patch_id", std::string()).empty()) {
            std::cout << "  " << entry->value("patch_id", std::string()) << " level "
                      << entry->value("level", 0);
        }
        if (!entry->value("reason", std::string()).empty()) {
            std::cout << "  (" << entry->value("reason", std::string()) << ")";
        }
        if (!entry->value("message", std::string()).empty()) {
            std::cout << "  " << entry->value("message", std::string());
        }
        std::cout << "\n";
    }
    return exit_ok;
}

void add_inject_options(CLI::App* command, InjectCommand& options) {
    command->add_option("--pid", options.pid, "The process")
        ->required()
        ->check(CLI::Range(1, 1 << 30));
    command->add_flag("--json", options.json, "Print a JSON document (docs/formats.md)");
    command
        ->add_option("--attempts", options.options.attempts,
                     "How many times to stop the process and check its stacks before giving up")
        ->check(CLI::Range(1, 1000))
        ->capture_default_str();
    command
        ->add_option("--backoff-ms", options.backoff_ms,
                     "First pause between tries, doubling up to 500 ms; the process runs meanwhile")
        ->check(CLI::Range(0, 60000))
        ->capture_default_str();
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{
        "suture: live-patch OpenSSL (libssl/libcrypto) in running processes without restarting "
        "them.",
        "suture"};
    app.footer(exit_code_help);
    app.set_version_flag("--version", std::string("suture ") + SUTURE_VERSION);
    app.require_subcommand(1);

    EngineOptions engine_options;
    int verbosity = 0;
    bool quiet = false;
    app.add_option("--distro-support", engine_options.distro_support_dir,
                   "Directory of per-distribution build indexes (default: the installed one)")
        ->check(CLI::ExistingDirectory);
    app.add_flag("-v,--verbose", verbosity, "More diagnostics on stderr (repeat for debug)");
    app.add_flag("-q,--quiet", quiet, "Only errors on stderr");
    bool direct = false;
    app.add_flag("--direct", direct,
                 "Run the engine in this process even when sutured runs (by default update,\n"
                 "apply, revert, history, enable and disable go to sutured over D-Bus when it\n"
                 "answers, and run here when it does not)");

    StatusOptions status_options;
    CLI::App* status = app.add_subcommand(
        "status",
        "Show which OpenSSL build every process maps, read from /proc without ptrace.\n"
        "Libraries are recognised by their ELF DT_SONAME (libssl.so.*, libcrypto.so.*) and\n"
        "identified by the GNU build ID of the very file mapped (through\n"
        "/proc/PID/map_files), so deleted, replaced and containerised copies report their own\n"
        "build. The build ID is looked up in the distribution build index to name the package.\n"
        "Processes mapping a library deleted or replaced on disk are flagged: they still run\n"
        "the old code. Patches applied by suture are read from their in-process markers.\n"
        "Run as root to see every process.");
    status->add_flag("--json", status_options.json,
                     "Print a JSON document (format: docs/formats.md, \"Status document\")");
    status->add_option("--pid", status_options.pids, "Only these processes (repeatable)")
        ->check(CLI::Range(1, 1 << 30));

    InjectCommand apply_command;
    CLI::App* apply = app.add_subcommand(
        "apply",
        "Apply a patch file to one running process. Every thread is stopped; the library is\n"
        "found by build ID and each replaced function's bytes are checked against the SHA-256\n"
        "recorded in the patch; no thread may be inside a function being replaced (checked by\n"
        "unwinding every stack, retried with backoff); the new code is mapped read+exec within\n"
        "2 GiB of the library and each function's entry jumps to it. Nothing changes on error.\n"
        "Applying a higher level of an applied patch id replaces it in the same stop.");
    add_inject_options(apply, apply_command);
    apply->add_option("PATCHFILE", apply_command.patch_file, "The patch file")->required();

    InjectCommand revert_command;
    CLI::App* revert = app.add_subcommand(
        "revert",
        "Revert a suture patch (or all of them) in one running process: under the same stop\n"
        "and stack rules (no thread inside the patch code), the original bytes go back and\n"
        "the patch region is retired: left mapped, marked in its marker, and unmapped by a\n"
        "later stop of the process whose stack check proves no thread can return into it.\n"
        "Works from the in-process marker alone.");
    add_inject_options(revert, revert_command);
    revert->add_option("PATCH-ID", revert_command.patch_id, "Only this patch id (default: all)");

    StacksCommand stacks_command;
    CLI::App* stacks = app.add_subcommand(
        "stacks",
        "Stop one process for a moment, unwind every thread the way the stack check of apply\n"
        "and revert does (DWARF unwind tables read from the process's own memory), print each\n"
        "call chain and whether it reached the outermost frame, and let the process go. An\n"
        "incomplete chain is what makes apply and revert treat a thread as blocking.\n"
        "Changes nothing. Needs ptrace access to the process.");
    stacks->add_option("--pid", stacks_command.pid, "The process")
        ->required()
        ->check(CLI::Range(1, 1 << 30));
    stacks->add_flag("--json", stacks_command.json,
                     "Print a JSON document (docs/formats.md, \"Stacks document\")");

    CLI::App* feed = app.add_subcommand(
        "feed",
        "The signed patch feed (TUF-style; docs/feed-format.md): refresh the patchsets of\n"
        "every remote in remotes.d, or list what the cache holds.");
    feed->require_subcommand(1);
    FeedCommand feed_refresh_command;
    CLI::App* feed_refresh = feed->add_subcommand(
        "refresh",
        "Download and verify every enabled remote, in TUF's order: the root chain (each new\n"
        "root signed by the old and the new root keys), timestamp, snapshot, targets (each\n"
        "signed by its role's threshold, unexpired, never older than what is trusted, with\n"
        "the length and hash the previous role gives), then each patch file by length and\n"
        "SHA-256 before anything reads it. Downloads are capped in size and speed. A remote\n"
        "that fails keeps its previous cache untouched; cached patches stay usable offline.");
    add_feed_options(feed_refresh, feed_refresh_command);
    FeedCommand feed_list_command;
    CLI::App* feed_list = feed->add_subcommand(
        "list",
        "List the verified patchsets in the cache (no network): patch id, level, CVEs, the\n"
        "build they are for, and whether the remote's channel, level pin and delay let them\n"
        "be used.");
    add_feed_options(feed_list, feed_list_command);

    UpdateCommand update_command;
    CLI::App* update = app.add_subcommand(
        "update",
        "The automatic cycle: refresh the feeds (if reachable; the verified cache is used\n"
        "either way), scan every process, apply each usable patchset to every process that\n"
        "maps the exact build it is for (the highest level of each patch id; already active\n"
        "patches are left alone), record it all in the state database, and close the records\n"
        "of processes that exited. Running it again does nothing new.");
    update->add_flag("--offline", update_command.offline,
                     "Do not refresh the feeds; apply from the cache (the boot case)");
    update->add_flag("--json", update_command.json, "Print a JSON document");
    update->add_option("--state", update_command.options.state_database,
                       "State database (default $SUTURE_STATE_DB or /var/lib/suture/state.db)");
    update->add_option("--config-dir", update_command.options.feed.config_directory,
                       "Directory with remotes.d/");
    update->add_option("--cache-dir", update_command.options.feed.cache_directory, "Feed cache");

    std::string history_state;
    std::size_t history_limit = 50;
    bool history_json = false;
    CLI::App* history = app.add_subcommand(
        "history",
        "Show the audit log of the state database, oldest first (every apply,\n"
        "adoption, close, refresh and setting change, with outcome and reason).");
    history->add_option("--state", history_state, "State database");
    history->add_option("--limit", history_limit, "How many of the newest entries")
        ->check(CLI::Range(1, 100000))
        ->capture_default_str();
    history->add_flag("--json", history_json, "Print a JSON document");
    std::string switch_state;
    CLI::App* enable = app.add_subcommand("enable", "Let suture update patch processes (default)");
    enable->add_option("--state", switch_state, "State database");
    CLI::App* disable = app.add_subcommand(
        "disable", "Stop suture update from patching anything (applied patches stay)");
    disable->add_option("--state", switch_state, "State database");

    std::string exclude_state;
    std::string exclude_executable;
    std::string exclude_unit;
    bool exclude_remove = false;
    CLI::App* exclude =
        app.add_subcommand("exclude",
                           "Keep suture away from an executable or a systemd unit (update and the\n"
                           "daemon skip it); without options, list the exclusions.");
    exclude->add_option("--executable", exclude_executable, "Absolute path of an executable");
    exclude->add_option("--unit", exclude_unit, "A systemd unit, e.g. sshd.service");
    exclude->add_flag("--remove", exclude_remove, "Remove the exclusion instead");
    exclude->add_option("--state", exclude_state, "State database");

    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& error) {
        int code = app.exit(error);
        return code == 0 ? exit_ok : exit_usage;
    }

    apply_command.direct = revert_command.direct = update_command.direct = direct;
    log::set_level(quiet            ? log::Level::error
                   : verbosity >= 2 ? log::Level::debug
                   : verbosity == 1 ? log::Level::info
                                    : log::Level::warning);
    if (status->parsed()) {
        return run_status(status_options, engine_options);
    }
    if (apply->parsed()) {
        return run_apply(apply_command, engine_options);
    }
    if (revert->parsed()) {
        return run_revert(revert_command, engine_options);
    }
    if (stacks->parsed()) {
        return run_stacks(stacks_command, engine_options);
    }
    if (history->parsed()) {
        return run_history(history_state, history_limit, history_json, direct);
    }
    if (enable->parsed() || disable->parsed()) {
        auto through_daemon = direct ? Result<std::optional<bool>>(std::optional<bool>{})
                                     : daemon_set_enabled(enable->parsed());
        if (!through_daemon) {
            log::error(through_daemon.error().message);
            return exit_code_for(through_daemon.error().code);
        }
        if (!through_daemon->has_value()) {
            if (auto set = set_enabled(switch_state, enable->parsed()); !set) {
                log::error(set.error().message);
                return exit_failure;
            }
        }
        std::cout << "suture is " << (enable->parsed() ? "enabled" : "disabled") << "\n";
        return exit_ok;
    }
    if (exclude->parsed()) {
        if (exclude_executable.empty() && exclude_unit.empty()) {
            auto rows = read_exclusions(exclude_state);
            if (!rows) {
                log::error(rows.error().message);
                return exit_failure;
            }
            for (const auto& [kind, value] : *rows) {
                std::cout << kind << " " << value << "\n";
            }
            return exit_ok;
        }
        if (!exclude_executable.empty() && !exclude_executable.starts_with("/")) {
            log::error("--executable needs an absolute path");
            return exit_usage;
        }
        for (const auto& [kind, value] :
             {std::pair{"executable", exclude_executable}, std::pair{"unit", exclude_unit}}) {
            if (value.empty()) {
                continue;
            }
            if (auto set = set_exclusion(exclude_state, kind, value, !exclude_remove); !set) {
                log::error(set.error().message);
                return exit_failure;
            }
            std::cout << (exclude_remove ? "no longer excluded: " : "excluded: ") << kind << " "
                      << value << "\n";
        }
        return exit_ok;
    }
    if (update->parsed()) {
        return run_update_command(update_command, engine_options);
    }
    if (feed_refresh->parsed()) {
        return run_feed_refresh(feed_refresh_command);
    }
    if (feed_list->parsed()) {
        return run_feed_list(feed_list_command);
    }
    return exit_usage;
}
