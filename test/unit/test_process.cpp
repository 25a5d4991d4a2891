#include <unistd.h>

#include <pthread.h>
#include <sys/wait.h>

#include <algorithm>
#include <chrono>
#include <cstdio>

#include <catch2/catch.hpp>

#include "proc/MemorySharers.h"
#include "proc/Process.h"
#include "proc/ProgramRun.h"

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

namespace {

// A thread of this process that vforks; the child sleeps `milliseconds`
// without exec'ing, then exits.
void* vfork_and_wait(void* milliseconds) {
    if (::vfork() == 0) {
        ::usleep(static_cast<useconds_t>(reinterpret_cast<long>(milliseconds)) * 1000);
        ::_exit(0);
    }
    return nullptr;
}

}  // namespace

TEST_CASE(
    "a vfork child that has not exec'ed yet shares this process's memory; the scan of "
    "every process finds it, and so does the look at the relatives") {
    auto alone = find_memory_sharers(::getpid(), SharerSearch::every_process);
    REQUIRE(alone);
    CHECK(alone->empty());
    pthread_t thread;
    REQUIRE(pthread_create(&thread, nullptr, vfork_and_wait, reinterpret_cast<void*>(600L)) == 0);
    ::usleep(100 * 1000);
    for (SharerSearch search : {SharerSearch::every_process, SharerSearch::relatives}) {
        auto sharers = find_memory_sharers(::getpid(), search);
        REQUIRE(sharers);
        REQUIRE(sharers->size() == 1);
        CHECK(sharers->front().relation == MemorySharer::Relation::child);
        CHECK(sharers->front().vfork_wait);
        std::string message = describe_sharer(::getpid(), sharers->front());
        INFO(message);
        CHECK(message.find("a vfork() child that has not exec'ed yet") != std::string::npos);
    }
    // What the scan of every process costs, printed for the record.
    auto pids = list_process_ids();
    REQUIRE(pids);
    auto started = std::chrono::steady_clock::now();
    constexpr int rounds = 20;
    for (int i = 0; i < rounds; ++i) {
        (void)find_memory_sharers(::getpid(), SharerSearch::every_process);
    }
    auto every = std::chrono::steady_clock::now() - started;
    started = std::chrono::steady_clock::now();
    for (int i = 0; i < rounds; ++i) {
        (void)find_memory_sharers(::getpid(), SharerSearch::relatives);
    }
    auto relatives = std::chrono::steady_clock::now() - started;
    std::printf(
        "memory sharer search over %zu processes: every process %lld us, relatives %lld us "
        "(mean of %d)\n",
        pids->size(),
        static_cast<long long>(
            std::chrono::duration_cast<std::chrono::microseconds>(every).count() / rounds),
        static_cast<long long>(
            std::chrono::duration_cast<std::chrono::microseconds>(relatives).count() / rounds),
        rounds);
    pthread_join(thread, nullptr);
    int status = 0;
    while (::waitpid(-1, &status, WNOHANG | __WALL) > 0) {
    }
    auto after = find_memory_sharers(::getpid(), SharerSearch::every_process);
    REQUIRE(after);
    CHECK(after->empty());
}

TEST_CASE("stat fields are counted after the last ')' of comm") {
    std::string stat = "4242 (a) (b) S 1 4242 4242 0 -1 4194560 100 0 0 0 5 3 0 0 20 0 1 0 987654";
    CHECK(stat_field(stat, 3) == "S");
    CHECK(stat_field(stat, 4) == "1");
    CHECK(stat_field(stat, 22) == "987654");
    CHECK(stat_field(stat, 23).empty());
    CHECK(stat_field("no parenthesis", 3).empty());
}

TEST_CASE("the fate of a program run: exited, reused, zombie, exec'ed or still running") {
    ProgramRun before{.pid = 42, .start_time = 100, .arg_start = 0x7ffc0000, .exe_device = 1,
                      .exe_inode = 7, .executable = "/usr/sbin/nginx"};
    ProcessSighting same{ProcessSighting::Kind::running, before};
    CHECK(fate_of(before, same) == RunFate::running);
    CHECK(fate_of(before, ProcessSighting{}) == RunFate::exited);
    CHECK(fate_of(before, ProcessSighting{ProcessSighting::Kind::zombie, {}}) == RunFate::zombie);
    ProcessSighting reused = same;
    reused.run.start_time = 200;
    CHECK(fate_of(before, reused) == RunFate::exited);
    ProcessSighting other_program = same;
    other_program.run.exe_inode = 8;
    CHECK(fate_of(before, other_program) == RunFate::execed);
    // The same file exec'ed again: only the new stack tells.
    ProcessSighting same_file_again = same;
    same_file_again.run.arg_start = 0x7ffd0000;
    CHECK(fate_of(before, same_file_again) == RunFate::execed);
    // An exec under way: new memory, its stack not built yet.
    ProcessSighting exec_under_way = same;
    exec_under_way.run.arg_start = 0;
    CHECK(fate_of(before, exec_under_way) == RunFate::execed);
    // What we may not see is not compared.
    ProcessSighting unseen = same;
    unseen.run.arg_start = 0;
    unseen.run.exe_inode = 0;
    CHECK(fate_of(before, unseen) == RunFate::running);
}

TEST_CASE("errors about a child that exited, became a zombie or exec'ed are told truthfully") {
    int to_child[2];
    REQUIRE(::pipe(to_child) == 0);
    pid_t child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) {
        char command = 0;
        if (::read(to_child[0], &command, 1) == 1 && command == 'e') {
            ::execl("/bin/sleep", "sleep", "5", static_cast<char*>(nullptr));
        }
        ::_exit(0);
    }
    auto run = read_program_run(child);
    REQUIRE(run);
    Error misleading{ErrorCode::library_not_mapped, "pid: does not map libcrypto.so.3", 0};
    SECTION("still running: the error stands") {
        Error told = truthful_error(*run, misleading);
        CHECK(told.code == ErrorCode::library_not_mapped);
        ::write(to_child[1], "x", 1);
        ::waitpid(child, nullptr, 0);
    }
    SECTION("exec'ed") {
        ::write(to_child[1], "e", 1);
        for (int i = 0; i < 2000 && executable_path(child) != "/usr/bin/sleep"; ++i) {
            ::usleep(1000);
        }
        Error told = truthful_error(*run, misleading);
        INFO(told.message);
        CHECK(told.code == ErrorCode::target_died);
        CHECK(told.message.find("exec'ed during the operation: it runs /usr/bin/sleep now") !=
              std::string::npos);
        CHECK(told.message.find("does not map libcrypto.so.3") != std::string::npos);
        ::kill(child, SIGKILL);
        ::waitpid(child, nullptr, 0);
    }
    SECTION("a zombie, then reaped") {
        ::write(to_child[1], "x", 1);
        ::waitid(P_PID, static_cast<id_t>(child), nullptr, WEXITED | WNOWAIT);  // a zombie now
        auto again = read_program_run(child);
        REQUIRE_FALSE(again);
        CHECK(again.error().code == ErrorCode::not_found);
        CHECK(again.error().message.find("no such process (a zombie") != std::string::npos);
        Error told = truthful_error(*run, misleading);
        CHECK(told.code == ErrorCode::target_died);
        CHECK(told.message.find("exited during the operation (a zombie now") != std::string::npos);
        ::waitpid(child, nullptr, 0);
        CHECK(truthful_error(*run, misleading).message.find("a zombie") == std::string::npos);
        CHECK(read_program_run(child).error().message == "pid " + std::to_string(child) +
                                                             ": no such process");
    }
    ::close(to_child[0]);
    ::close(to_child[1]);
}
