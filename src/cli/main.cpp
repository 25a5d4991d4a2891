// suture: the command-line front end. It parses the command line, calls the
// engine, and is the only place that turns errors into messages and exit codes.

#include <unistd.h>

#include <iostream>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "base/Log.h"
#include "cli/ExitCode.h"
#include "cli/StatusTable.h"
#include "config.h"
#include "engine/Engine.h"

namespace {

using namespace suture;

constexpr const char* exit_code_help = R"(Exit status:
  0  success: every process was examined
  1  failure: the command could not run (for example the build index is missing)
  2  usage error: bad option or argument
  3  partial: done, but some processes or mapped files could not be read;
     they are listed (in --json under "unreadable" and per-process "errors")

Files:
  <datadir>/suture/distro-support/*/builds.json
      build ID -> package index, generated from Debian's archive by
      distro-support/generate-index; --distro-support overrides the directory.

See docs/operator-guide.md and docs/formats.md for details.)";

struct StatusOptions {
    bool json = false;
    std::vector<int> pids;
};

int run_status(const StatusOptions& options, const EngineOptions& engine_options) {
    auto engine = Engine::open(engine_options);
    if (!engine) {
        log::error(engine.error().message);
        return exit_failure;
    }
    ScanReport report = engine->status(options.pids);
    if (options.json) {
        std::cout << status_to_json(report).dump(2) << "\n";
    } else {
        print_status_table(std::cout, report, log::level() >= log::Level::info);
    }
    bool partial = !report.unreadable.empty();
    for (const ProcessReport& process : report.processes) {
        partial = partial || !process.errors.empty();
    }
    return partial ? exit_partial : exit_ok;
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

    StatusOptions status_options;
    CLI::App* status = app.add_subcommand(
        "status",
        "Show which OpenSSL build every process maps, read from /proc without ptrace.\n"
        "Libraries are recognised by their ELF DT_SONAME (libssl.so.*, libcrypto.so.*) and\n"
        "identified by the GNU build ID of the very file mapped (through\n"
        "/proc/PID/map_files), so deleted, replaced and containerised copies report their own\n"
        "build. The build ID is looked up in the distribution build index to name the package.\n"
        "Processes mapping a library deleted or replaced on disk are flagged: they still run\n"
        "the old code. Run as root to see every process.");
    status->add_flag("--json", status_options.json,
                     "Print a JSON document (format: docs/formats.md, \"Status document\")");
    status->add_option("--pid", status_options.pids, "Only these processes (repeatable)")
        ->check(CLI::PositiveNumber);

    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& error) {
        int code = app.exit(error);
        return code == 0 ? exit_ok : exit_usage;
    }

    log::set_level(quiet            ? log::Level::error
                   : verbosity >= 2 ? log::Level::debug
                   : verbosity == 1 ? log::Level::info
                                    : log::Level::warning);
    if (status->parsed()) {
        return run_status(status_options, engine_options);
    }
    return exit_usage;
}
