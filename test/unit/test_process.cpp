#include <unistd.h>

#include <algorithm>

#include <catch2/catch.hpp>

#include "proc/Process.h"

using namespace suture;

TEST_CASE("the start time is field 22 of stat, counted after the last ')' of comm") {
    // A comm may contain spaces and parentheses: "a) (b".
    std::string stat =
        "4242 (a) (b) S 1 4242 4242 0 -1 4194560 100 0 0 0 5 3 0 0 20 0 1 0 987654 1000 50";
    auto start_time = parse_start_time(stat);
    REQUIRE(start_time);
    CHECK(*start_time == 987654);
}

TEST_CASE("a truncated stat line is a bad_format error") {
    CHECK_FALSE(parse_start_time("4242 (x) S 1 2 3"));
    CHECK_FALSE(parse_start_time("no parenthesis at all"));
}

TEST_CASE("this process is listed, with its comm, a start time and a mount namespace") {
    auto pids = list_process_ids();
    REQUIRE(pids);
    int self = static_cast<int>(::getpid());
    CHECK(std::binary_search(pids->begin(), pids->end(), self));

    auto info = read_process_info(self);
    REQUIRE(info);
    CHECK(info->pid == self);
    CHECK(info->comm == "test_process");
    CHECK(info->start_time > 0);
    CHECK(info->mount_namespace == own_mount_namespace());
}

TEST_CASE("a process that does not exist is not_found, not a crash") {
    auto info = read_process_info(0x3fffffff);
    REQUIRE_FALSE(info);
    CHECK(info.error().code == ErrorCode::not_found);
}

TEST_CASE("the systemd unit is the last .service or .scope of the cgroup path") {
    CHECK(unit_from_cgroup("0::/system.slice/nginx.service\n") == "nginx.service");
    CHECK(unit_from_cgroup("0::/user.slice/user-1000.slice/session-3.scope\n") == "session-3.scope");
    // The last one wins (a service started inside a session scope's subtree).
    CHECK(unit_from_cgroup("0::/system.slice/a.service/b.scope/c.service\n") == "c.service");
    // cgroup v1: only the name=systemd hierarchy counts.
    CHECK(unit_from_cgroup("12:cpu,cpuacct:/system.slice/wrong.service\n"
                           "1:name=systemd:/system.slice/dovecot.service\n") ==
          "dovecot.service");
    CHECK(unit_from_cgroup("0::/\n").empty());
    CHECK(unit_from_cgroup("").empty());
    CHECK(unit_from_cgroup("0::/system.slice/no-newline.service") == "no-newline.service");
    // A component only named like a unit suffix is not taken as part of another.
    CHECK(unit_from_cgroup("0::/system.slice/my.service.d/x\n") == "");
}
