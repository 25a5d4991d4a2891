// suture-feed: the publisher of a signed patch feed. Writes a static
// repository (docs/feed-format.md) that any HTTP server can serve, with the
// private keys in a separate directory; each command needs only the keys of
// the roles it signs, so the root keys can stay offline.

#include <ctime>
#include <iostream>
#include <map>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "base/Files.h"
#include "config.h"
#include "feed-client/Advisories.h"
#include "feed-client/Publisher.h"
#include "feed-client/StrictJson.h"
#include "patch/PatchFile.h"

namespace {

using namespace suture;
using namespace suture::feed;

// What suture-feed reads of a patchset directory's patchset.json.
struct Manifest {
    std::string output;  // the built patch file, in the directory
    std::string distribution;
    std::string source_package;
    std::string source_version;
    std::string package;   // library.package
    std::string build_id;  // library.build_id
    std::string cve;
    std::string severity;  // optional
    std::string summary;   // optional
    std::vector<std::string> supersedes;  // optional: patch ids whose fixes this one carries
};

Result<Manifest> read_manifest(const std::string& directory) {
    std::string path = directory + "/patchset.json";
    auto text = read_file(path);
    if (!text) {
        return tl::unexpected(text.error());
    }
    auto document = nlohmann::json::parse(*text, nullptr, false);
    return strict::interpret<Manifest>(path, [&] {
        using namespace strict;
        const nlohmann::json& library = object_member(document, "library");
        std::vector<std::string> supersedes;
        if (document.contains("supersedes")) {
            supersedes = string_array_member(document, "supersedes");
        }
        return Manifest{string_member(document, "output"),
                        string_member(document, "distribution"),
                        string_member(document, "source_package"),
                        string_member(document, "source_version"),
                        string_member(library, "package"),
                        string_member(library, "build_id"),
                        string_member(document, "cve"),
                        optional_string_member(document, "severity"),
                        optional_string_member(document, "summary"),
                        std::move(supersedes)};
    });
}

// A patchset directory (patchsets/openssl/...) as a feed target: its built
// patch file, named distribution/package/version/file, with the custom
// metadata a host needs to choose it.
Result<Publisher::NewTarget> target_from_patchset(const std::string& directory,
                                                  const std::string& channel, std::time_t now) {
    auto manifest = read_manifest(directory);
    if (!manifest) {
        return tl::unexpected(manifest.error());
    }
    std::string file = directory + "/" + manifest->output;
    auto patch = read_patch_file(file);  // publish only patches the injector accepts
    if (!patch) {
        return tl::unexpected(patch.error());
    }
    const PatchMetadata& metadata = patch->metadata;
    if (metadata.target_build_id != manifest->build_id) {
        return fail(ErrorCode::bad_format, file + ": built for " + metadata.target_build_id +
                                               ", patchset.json says " + manifest->build_id);
    }
    std::string name = manifest->distribution + "/" + manifest->source_package + "/" +
                       manifest->source_version + "/" + manifest->output;
    PatchsetInfo info{manifest->distribution,
                      manifest->package,
                      manifest->source_version,
                      metadata.target_soname,
                      metadata.target_build_id,
                      metadata.patch_id,
                      metadata.level,
                      {manifest->cve},
                      channel,
                      now,
                      manifest->severity,
                      manifest->summary};
    info.supersedes = manifest->supersedes;  // checked by add_targets, as clients check it
    return Publisher::NewTarget{name, file, std::move(info)};
}

// The name of the advisory data's target: one per feed, replaced by each
// `suture-feed advisories`.
constexpr const char* advisories_target_name = "advisories/openssl.json";

// An advisory document (distro-support/generate-advisories) as a feed
// target, once it parses as clients parse it.
Result<Publisher::NewTarget> target_from_advisories(const std::string& file,
                                                    const std::string& channel, std::time_t now) {
    auto text = read_file(file);
    if (!text) {
        return tl::unexpected(text.error());
    }
    auto advisories = parse_advisories_text(*text, file);
    if (!advisories) {
        return tl::unexpected(advisories.error());
    }
    PatchsetInfo info;
    info.kind = "advisories";
    info.channel = channel;
    info.published = now;
    return Publisher::NewTarget{advisories_target_name, file, std::move(info)};
}

int report(const Result<void>& result) {
    if (!result) {
        std::cerr << "suture-feed: error: " << result.error().message << "\n";
        return 1;
    }
    return 0;
}

// The command line: global options, then one subcommand with its own.
struct CommandLine {
    std::string repository;
    std::string keys;
    std::vector<std::string> expiries;
    unsigned root_keys = 1;
    unsigned root_threshold = 1;
    std::vector<std::string> patchsets;
    std::string advisories_file;
    std::string channel = "stable";
    std::uint64_t forced_version = 0;
    std::string role_text;
    CLI::App* init = nullptr;
    CLI::App* add = nullptr;
    CLI::App* publish = nullptr;
    CLI::App* advisories = nullptr;
    CLI::App* timestamp = nullptr;
    CLI::App* rotate = nullptr;
};

void define_command_line(CLI::App& app, CommandLine& line) {
    app.footer(
        "Roles: root (offline, threshold), targets (the patch list), snapshot and timestamp\n"
        "(online, short expiry). Keys live in --keys, mode 0600, never in the repository.\n"
        "A typical cycle: init once; add PATCHSET_DIR...; publish; timestamp from a timer.\n"
        "Exit status: 0 done, 1 error (message on stderr), 2 usage error.\n"
        "See docs/feed-format.md.");
    app.set_version_flag("--version", std::string("suture-feed ") + SUTURE_VERSION);
    app.require_subcommand(1);
    app.add_option("--repo", line.repository, "The repository directory (what the server serves)")
        ->required();
    app.add_option("--keys", line.keys,
                   "The private keys directory (kept apart from the repository)")
        ->required();
    app.add_option("--expires", line.expiries,
                   "ROLE=SECONDS: lifetime of newly signed ROLE metadata (default root 1 year,\n"
                   "targets 90 days, snapshot 7 days, timestamp 1 day; negative for tests)");

    line.init = app.add_subcommand("init", "Generate keys and version 1 of every role");
    line.init->add_option("--root-keys", line.root_keys, "Number of root keys")
        ->check(CLI::Range(1, 16));
    line.init->add_option("--root-threshold", line.root_threshold, "Root signatures required")
        ->check(CLI::Range(1, 16));

    line.add = app.add_subcommand(
        "add", "Add built patchsets (directories with patchset.json) and sign new targets");
    line.add->add_option("PATCHSET_DIR", line.patchsets, "Patchset directories")
        ->required()
        ->check(CLI::ExistingDirectory);
    line.add->add_option("--channel", line.channel, "stable or testing")
        ->check(CLI::IsMember({"stable", "testing"}));

    line.advisories = app.add_subcommand(
        "advisories",
        "Add (or replace) the advisory data: the CVEs known per library build ID, from\n"
        "distro-support/generate-advisories (docs/feed-format.md, \"Advisory data\"), as the\n"
        "signed target advisories/openssl.json; signs new targets");
    line.advisories->add_option("FILE", line.advisories_file, "The advisory document")
        ->required()
        ->check(CLI::ExistingFile);
    line.advisories->add_option("--channel", line.channel, "stable or testing")
        ->check(CLI::IsMember({"stable", "testing"}));

    line.publish = app.add_subcommand(
        "publish", "Sign a new snapshot of the latest targets and a new timestamp");

    line.timestamp = app.add_subcommand("timestamp", "Re-sign the timestamp (freshness)");
    line.timestamp->add_option("--version", line.forced_version,
                               "Force this version (tests of rollback and fast-forward recovery)");

    line.rotate = app.add_subcommand(
        "rotate", "Replace a role's keys with a new key (needs the root keys); re-signs the role");
    line.rotate->add_option("ROLE", line.role_text, "root, targets, snapshot or timestamp")
        ->required()
        ->check(CLI::IsMember({"root", "targets", "snapshot", "timestamp"}));
}

// --expires ROLE=SECONDS...; the error is a usage message.
Result<Lifetimes> parse_lifetimes(const std::vector<std::string>& expiries) {
    Lifetimes lifetimes;
    std::map<std::string, std::int64_t*> fields = {{"root", &lifetimes.root},
                                                   {"targets", &lifetimes.targets},
                                                   {"snapshot", &lifetimes.snapshot},
                                                   {"timestamp", &lifetimes.timestamp}};
    for (const std::string& expiry : expiries) {
        auto equals = expiry.find('=');
        auto field =
            equals == std::string::npos ? fields.end() : fields.find(expiry.substr(0, equals));
        if (field == fields.end()) {
            return fail(ErrorCode::invalid_argument,
                        "--expires " + expiry + ": expected ROLE=SECONDS");
        }
        try {
            *field->second = std::stoll(expiry.substr(equals + 1));
        } catch (const std::exception&) {
            return fail(ErrorCode::invalid_argument, "--expires " + expiry + ": not a number");
        }
    }
    return lifetimes;
}

int run_add(Publisher& publisher, const CommandLine& line, std::time_t now) {
    std::vector<Publisher::NewTarget> targets;
    for (const std::string& directory : line.patchsets) {
        auto target = target_from_patchset(directory, line.channel, now);
        if (!target) {
            return report(tl::unexpected(target.error()));
        }
        std::cout << "adding " << target->name << "\n";
        targets.push_back(std::move(*target));
    }
    auto version = publisher.add_targets(targets);
    if (!version) {
        return report(tl::unexpected(version.error()));
    }
    std::cout << "signed targets version " << *version << " (run publish to make it visible)\n";
    return 0;
}

int run(const CommandLine& line, const Lifetimes& lifetimes) {
    std::time_t now = std::time(nullptr);
    Publisher publisher(line.repository, line.keys, lifetimes, now);
    if (line.init->parsed()) {
        return report(publisher.init(line.root_keys, line.root_threshold));
    }
    if (line.add->parsed()) {
        return run_add(publisher, line, now);
    }
    if (line.advisories->parsed()) {
        auto target = target_from_advisories(line.advisories_file, line.channel, now);
        if (!target) {
            return report(tl::unexpected(target.error()));
        }
        std::cout << "adding " << target->name << " (advisory data)\n";
        auto version = publisher.add_targets({*target});
        if (!version) {
            return report(tl::unexpected(version.error()));
        }
        std::cout << "signed targets version " << *version << " (run publish to make it visible)\n";
        return 0;
    }
    if (line.publish->parsed()) {
        return report(publisher.publish());
    }
    if (line.timestamp->parsed()) {
        return report(publisher.timestamp(
            line.forced_version != 0 ? std::optional(line.forced_version) : std::nullopt));
    }
    if (line.rotate->parsed()) {
        std::map<std::string, Role> roles = {{"root", Role::root},
                                             {"targets", Role::targets},
                                             {"snapshot", Role::snapshot},
                                             {"timestamp", Role::timestamp}};
        return report(publisher.rotate(roles.at(line.role_text)));
    }
    return 2;
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"suture-feed: publish signed suture patchsets as a static TUF-style repository.",
                 "suture-feed"};
    CommandLine line;
    define_command_line(app, line);
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& error) {
        return app.exit(error) == 0 ? 0 : 2;
    }
    auto lifetimes = parse_lifetimes(line.expiries);
    if (!lifetimes) {
        std::cerr << "suture-feed: " << lifetimes.error().message << "\n";
        return 2;
    }
    return run(line, *lifetimes);
}
