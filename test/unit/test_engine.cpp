#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>

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
    // Gone, or dead and waiting for init to reap it.
    std::ifstream stat("/proc/" + std::to_string(child) + "/stat");
    std::string text;
    std::getline(stat, text);
    bool dead = text.empty() || text.substr(text.rfind(')') + 2, 1) == "Z";
    CHECK(dead);
}
