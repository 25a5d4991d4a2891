#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>
#include <thread>

#include "ScratchDirectory.h"
#include "engine/Engine.h"
#include "engine/HealthProbes.h"

using namespace suture;

TEST_CASE("the OpenSSL version number is the word after 'OpenSSL '") {
    CHECK(openssl_version_number("OpenSSL 3.0.20 16 Jan 2026") ==
          std::optional<std::string>("3.0.20"));
    CHECK(openssl_version_number("OpenSSL 1.1.1w  11 Sep 2023") ==
          std::optional<std::string>("1.1.1w"));
    CHECK_FALSE(openssl_version_number("LibreSSL 3.8.2"));
    CHECK_FALSE(openssl_version_number("OpenSSL "));
}

TEST_CASE("the status document lists each process's libraries with package null when unknown") {
    ScanReport report;
    report.processes_examined = 5;
    report.processes_vanished = 1;
    ProcessReport process;
    process.info.pid = 42;
    process.info.comm = "nginx";
    process.info.start_time = 1234;
    MappedLibrary unknown;
    unknown.soname = "libcrypto.so.3";
    unknown.path = "/usr/lib/x86_64-linux-gnu/libcrypto.so.3";
    unknown.build_id = "abcd";
    unknown.version_text = "OpenSSL 3.0.19 27 Jan 2026";
    unknown.deleted = true;
    unknown.base_address = 0x7f0000000000;
    MappedLibrary known = unknown;
    known.soname = "libssl.so.3";
    known.version_text.reset();
    known.deleted = false;
    known.package = KnownBuild{"ef01",
                               "debian-12",
                               "libssl3",
                               "3.0.20-1~deb12u2",
                               "openssl",
                               "amd64",
                               "/usr/lib/x86_64-linux-gnu/libssl.so.3",
                               "libssl.so.3",
                               {"bookworm"}};
    process.libraries = {unknown, known};
    report.processes.push_back(process);
    report.unreadable.push_back(
        {1, "init", Error{ErrorCode::permission_denied, "pid 1: maps: denied", EACCES}});

    nlohmann::json document = status_to_json(StatusReport{report, {}});
    CHECK(document["format"] == "suture-status");
    CHECK(document["format_version"] == 1);
    CHECK(document["summary"]["processes_examined"] == 5);
    CHECK(document["summary"]["processes_with_openssl"] == 1);
    CHECK(document["summary"]["processes_vanished"] == 1);
    CHECK(document["summary"]["processes_unreadable"] == 1);
    const auto& json_process = document["processes"][0];
    CHECK(json_process["pid"] == 42);
    CHECK(json_process["comm"] == "nginx");
    const auto& first = json_process["libraries"][0];
    CHECK(first["soname"] == "libcrypto.so.3");
    CHECK(first["build_id"] == "abcd");
    CHECK(first["version"] == "3.0.19");
    CHECK(first["package"].is_null());
    CHECK(first["deleted"] == true);
    CHECK(first["base_address"] == "0x7f0000000000");
    const auto& second = json_process["libraries"][1];
    CHECK(second["version"].is_null());
    CHECK(second["package"]["name"] == "libssl3");
    CHECK(second["package"]["version"] == "3.0.20-1~deb12u2");
    CHECK(second["package"]["distribution"] == "debian-12");
    CHECK(document["unreadable"][0]["reason"] == "permission_denied");
    CHECK(json_process["patches"].empty());
}

namespace {

// Whether PID is gone or a zombie within TIMEOUT.
bool dies_within(int pid, std::chrono::milliseconds timeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
        std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
        std::string text;
        std::getline(stat, text);
        if (text.empty() || text.substr(text.rfind(')') + 2, 1) == "Z") {
            return true;
        }
        if (std::chrono::steady_clock::now() >= deadline) {
            return false;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
}

}  // namespace

TEST_CASE("A health check run: exit 0 is healthy; a failure keeps its status and last output") {
    using namespace std::chrono_literals;
    auto healthy = ProbeRun::start("echo fine", 5s);
    REQUIRE(healthy);
    ProbeResult ok = healthy->wait();
    CHECK(ok.healthy);
    CHECK(ok.detail == "exit 0: fine");
    auto failing = ProbeRun::start("echo 'curl: (7) Failed to connect' >&2; exit 7", 5s);
    REQUIRE(failing);
    ProbeResult failed = failing->wait();
    CHECK_FALSE(failed.healthy);
    CHECK(failed.detail == "exit 7: curl: (7) Failed to connect");
    auto killed = ProbeRun::start("kill -SEGV $$", 5s);
    REQUIRE(killed);
    CHECK(killed->wait().detail == "killed by SIGSEGV");
    // A run that outlasts its timeout is killed with its children (the
    // background sleep's pid is gone), and poll() does not wait for it.
    std::string pid_file = "/tmp/suture-probe-test-" + std::to_string(::getpid());
    auto slow = ProbeRun::start("sleep 30 & echo $! >" + pid_file + "; sleep 30", 1s);
    REQUIRE(slow);
    CHECK_FALSE(slow->poll());
    ProbeResult timed_out = slow->wait();
    CHECK_FALSE(timed_out.healthy);
    CHECK(timed_out.detail == "timed out after 1 s");
    std::ifstream file(pid_file);
    int child = 0;
    file >> child;
    std::remove(pid_file.c_str());
    REQUIRE(child > 0);
    // Gone, or dead and waiting for init to reap it. SIGKILL reaches the
    // group at once but a busy machine may run the sleep's exit a little
    // later than the shell's, so this waits for it (up to 10 s).
    CHECK(dies_within(child, 10s));
}

TEST_CASE("the audit report names each application's unit and the feed metadata of its apply") {
    ScratchDirectory scratch;
    std::string path = scratch.file("state.db");
    {
        auto database = StateDatabase::open(path);
        REQUIRE(database);
        for (auto [pid, unit] : {std::pair{4711, "nginx.service"}, std::pair{4712, ""}}) {
            REQUIRE(database->record_application({.process = {pid, 100},
                                                  .executable = "/usr/sbin/nginx",
                                                  .build_id = "7d90f384",
                                                  .patch_id = "CVE-2026-63076",
                                                  .level = 1,
                                                  .applied_at = 1795400001,
                                                  .unit = unit}));
        }
        REQUIRE(database->log({.at = 1795400001,
                               .action = HistoryAction::apply,
                               .process = {4711, 100},
                               .patch_id = "CVE-2026-63076",
                               .level = 1,
                               .outcome = HistoryOutcome::ok,
                               .message = "from local (automatic)",
                               .targets_version = 3,
                               .signing_keys = {"5e3c", "0a1b"}}));
        REQUIRE(database->log({.at = 1795400001,
                               .action = HistoryAction::apply,
                               .process = {4712, 100},
                               .patch_id = "CVE-2026-63076",
                               .level = 1,
                               .outcome = HistoryOutcome::ok,
                               .message = "applied by hand (suture apply)"}));
    }
    auto engine = Engine::open({.distro_support_dir = SOURCE_DISTRO_SUPPORT_DIR,
                                .state_database = path,
                                .lock_file = scratch.file("lock")});
    REQUIRE(engine);
    auto report = (*engine)->audit_report(0);
    REQUIRE(report);
    REQUIRE(report->patches.size() == 1);
    const auto& applications = report->patches.front().applications;
    REQUIRE(applications.size() == 2);
    CHECK(applications[0].application.unit == "nginx.service");
    CHECK(applications[0].automatic);
    CHECK(applications[0].source == "from local (automatic)");
    CHECK(applications[0].targets_version == std::optional<std::uint64_t>(3));
    CHECK(applications[0].signing_keys == std::vector<std::string>{"0a1b", "5e3c"});
    CHECK(applications[1].application.unit.empty());
    CHECK_FALSE(applications[1].automatic);
    CHECK_FALSE(applications[1].targets_version);
    CHECK(applications[1].signing_keys.empty());

    nlohmann::json document = audit_report_to_json(*report)["patches"][0]["applications"];
    CHECK(document[0]["unit"] == "nginx.service");
    CHECK(document[0]["targets_version"] == 3);
    CHECK(document[0]["signing_keys"] == nlohmann::json::array({"0a1b", "5e3c"}));
    CHECK(document[1]["unit"] == "");
    CHECK(document[1]["targets_version"].is_null());
    CHECK(document[1]["signing_keys"] == nlohmann::json::array());
}

TEST_CASE("a history entry's feed metadata survives its JSON (sutured to the CLI)") {
    std::vector<HistoryEntry> entries{
        {.id = 2,
         .action = HistoryAction::apply,
         .outcome = HistoryOutcome::ok,
         .message = "from local",
         .targets_version = 7,
         .signing_keys = {"0a1b", "5e3c"}},
        {.id = 1, .action = HistoryAction::apply, .outcome = HistoryOutcome::ok}};
    auto read = history_from_json(history_to_json(entries));
    REQUIRE(read);
    REQUIRE(read->size() == 2);
    CHECK(read->at(0).targets_version == std::optional<std::uint64_t>(7));
    CHECK(read->at(0).signing_keys == std::vector<std::string>{"0a1b", "5e3c"});
    CHECK_FALSE(read->at(1).targets_version);
    CHECK(read->at(1).signing_keys.empty());
    // An older sutured's entries have neither member.
    nlohmann::json older = history_to_json(entries);
    older["history"][0].erase("targets_version");
    older["history"][0].erase("signing_keys");
    auto from_older = history_from_json(older);
    REQUIRE(from_older);
    CHECK_FALSE(from_older->at(0).targets_version);
    CHECK(from_older->at(0).signing_keys.empty());
}
