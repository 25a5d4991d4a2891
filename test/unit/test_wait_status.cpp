#include <pthread.h>
#include <signal.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include <catch2/catch.hpp>

#include "inject/StoppedProcess.h"
#include "inject/WaitStatus.h"

using namespace suture;

namespace {

// waitpid's encoding of a ptrace-stop (wait(2), ptrace(2)).
int stop_status(int signal, int event = 0) {
    return (event << 16) | (signal << 8) | 0x7f;
}

// A child that runs `body` and exits 0; killed when the test ends.
class Child {
  public:
    template <typename Body>
    explicit Child(Body body) : pid_(::fork()) {
        if (pid_ == 0) {
            body();
            ::_exit(0);
        }
    }
    ~Child() {
        if (pid_ > 0 && !reaped_) {
            ::kill(pid_, SIGKILL);
            int status = 0;
            ::waitpid(pid_, &status, __WALL);
        }
    }
    int pid() const { return pid_; }
    void reaped() { reaped_ = true; }

  private:
    int pid_;
    bool reaped_ = false;
};

void* sleep_forever(void*) {
    for (;;) {
        ::pause();
    }
}

// The tracer of each thread of `pid`, from /proc/PID/task/TID/status.
std::vector<int> tracers_of(int pid) {
    std::vector<int> tracers;
    for (const auto& task :
         std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/task")) {
        std::ifstream status(task.path() / "status");
        std::string line;
        while (std::getline(status, line)) {
            if (line.starts_with("TracerPid:")) {
                tracers.push_back(std::stoi(line.substr(10)));
            }
        }
    }
    return tracers;
}

std::size_t thread_count(int pid) {
    auto tasks = std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/task");
    return static_cast<std::size_t>(std::distance(begin(tasks), end(tasks)));
}

}  // namespace

TEST_CASE("a wait status says how a thread ended") {
    WaitStatus exited(3 << 8);
    CHECK(exited.kind() == WaitStatus::Kind::exited);
    CHECK(exited.ended());
    CHECK(exited.exit_code() == 3);
    WaitStatus killed(SIGKILL);
    CHECK(killed.kind() == WaitStatus::Kind::killed);
    CHECK(killed.ended());
    CHECK(killed.signal() == SIGKILL);
    CHECK_FALSE(killed.event_stop());
}

TEST_CASE("a wait status tells the ptrace-stops apart") {
    WaitStatus syscall(stop_status(SIGTRAP | 0x80));
    CHECK(syscall.kind() == WaitStatus::Kind::syscall_stop);
    CHECK(syscall.signal() == 0);  // never a signal to deliver
    WaitStatus signal(stop_status(SIGUSR1));
    CHECK(signal.kind() == WaitStatus::Kind::signal_stop);
    CHECK(signal.signal() == SIGUSR1);
    CHECK_FALSE(signal.event_stop());
    WaitStatus interrupt(stop_status(SIGTRAP, PTRACE_EVENT_STOP));
    CHECK(interrupt.kind() == WaitStatus::Kind::interrupt_stop);
    CHECK(interrupt.event_stop());
    CHECK(interrupt.ptrace_event() == PTRACE_EVENT_STOP);
    CHECK(interrupt.signal() == 0);
    for (int stopping : {SIGSTOP, SIGTSTP, SIGTTIN, SIGTTOU}) {
        WaitStatus group(stop_status(stopping, PTRACE_EVENT_STOP));
        CHECK(group.kind() == WaitStatus::Kind::group_stop);
        CHECK(group.event_stop());
        CHECK(group.signal() == stopping);
    }
    WaitStatus exit_event(stop_status(SIGTRAP, PTRACE_EVENT_EXIT));
    CHECK(exit_event.kind() == WaitStatus::Kind::ptrace_event);
    CHECK(exit_event.ptrace_event() == PTRACE_EVENT_EXIT);
    CHECK_FALSE(exit_event.ended());
}

TEST_CASE("wait_for_stop reports a real child's exit and a real interrupt stop") {
    Child exits([] { ::_exit(7); });
    auto ended = wait_for_stop(exits.pid(), "child");
    REQUIRE(ended);
    exits.reaped();
    CHECK(ended->kind() == WaitStatus::Kind::exited);
    CHECK(ended->exit_code() == 7);

    Child sleeper([] { sleep_forever(nullptr); });
    REQUIRE(::ptrace(PTRACE_SEIZE, sleeper.pid(), nullptr, nullptr) == 0);
    REQUIRE(::ptrace(PTRACE_INTERRUPT, sleeper.pid(), nullptr, nullptr) == 0);
    auto stopped = wait_for_stop(sleeper.pid(), "child");
    REQUIRE(stopped);
    CHECK(stopped->kind() == WaitStatus::Kind::interrupt_stop);
    ::ptrace(PTRACE_DETACH, sleeper.pid(), nullptr, nullptr);
}

TEST_CASE("wait_for_stop on a thread that is no tracee of ours is an error, not an exit") {
    auto status = wait_for_stop(::getpid(), "self");
    REQUIRE_FALSE(status);
    CHECK(status.error().errno_value == ECHILD);
}

TEST_CASE("detach_when_stopped lets go of a thread seized but never waited for") {
    Child sleeper([] { sleep_forever(nullptr); });
    REQUIRE(::ptrace(PTRACE_SEIZE, sleeper.pid(), nullptr, nullptr) == 0);
    REQUIRE(::ptrace(PTRACE_INTERRUPT, sleeper.pid(), nullptr, nullptr) == 0);
    detach_when_stopped(sleeper.pid());
    CHECK(tracers_of(sleeper.pid()) == std::vector<int>{0});
}

TEST_CASE("a stopped process holds every thread and lets every one go again") {
    Child threads([] {
        pthread_t thread;
        for (int i = 0; i < 3; ++i) {
            pthread_create(&thread, nullptr, sleep_forever, nullptr);
        }
        sleep_forever(nullptr);
    });
    while (thread_count(threads.pid()) < 4) {
        ::usleep(1000);
    }
    {
        auto stopped = StoppedProcess::stop(threads.pid());
        REQUIRE(stopped);
        CHECK(stopped->threads().size() == 4);
        CHECK(tracers_of(threads.pid()) == std::vector<int>(4, ::getpid()));
    }
    CHECK(tracers_of(threads.pid()) == std::vector<int>(4, 0));
}

TEST_CASE("a stop that fails midway lets go of every thread it had seized") {
    Child threads([] {
        pthread_t thread;
        pthread_create(&thread, nullptr, sleep_forever, nullptr);
        sleep_forever(nullptr);
    });
    while (thread_count(threads.pid()) < 2) {
        ::usleep(1000);
    }
    // Another tracer holds the second thread: seizing it fails with EPERM,
    // after the main thread (listed first) was seized and interrupted; the
    // refusal names that tracer (not this one, which holds the main thread).
    int second = 0;
    for (const auto& task :
         std::filesystem::directory_iterator("/proc/" + std::to_string(threads.pid()) + "/task")) {
        second = std::max(second, std::stoi(task.path().filename()));
    }
    REQUIRE(second > threads.pid());
    int ready[2];
    REQUIRE(::pipe(ready) == 0);
    Child tracer([&] {
        if (::ptrace(PTRACE_SEIZE, second, nullptr, nullptr) == 0) {
            (void)!::write(ready[1], "s", 1);
        }
        sleep_forever(nullptr);
    });
    char seized = 0;
    REQUIRE(::read(ready[0], &seized, 1) == 1);
    auto stopped = StoppedProcess::stop(threads.pid());
    REQUIRE_FALSE(stopped);
    CHECK(stopped.error().code == ErrorCode::busy);
    INFO(stopped.error().message);
    CHECK(stopped.error().message.find("is already traced by pid " + std::to_string(tracer.pid())) !=
          std::string::npos);
    std::ifstream status("/proc/" + std::to_string(threads.pid()) + "/task/" +
                         std::to_string(threads.pid()) + "/status");
    std::string line;
    int main_tracer = -1;
    while (std::getline(status, line)) {
        if (line.starts_with("TracerPid:")) {
            main_tracer = std::stoi(line.substr(10));
        }
    }
    CHECK(main_tracer == 0);
    ::close(ready[0]);
    ::close(ready[1]);
}

namespace {

// The state letter of `pid` in /proc/PID/stat ('t' in a ptrace-stop).
char state_of(int pid) {
    std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
    std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
    std::size_t close = text.rfind(')');
    return close == std::string::npos || close + 2 >= text.size() ? '?' : text[close + 2];
}

}  // namespace

TEST_CASE(
    "a thread waiting in vfork() cannot stop: the stop gives up after its bound and the "
    "tracer thread's exit lets go of it") {
    // The child vforks; the grandchild sleeps 1.5 s before it exits, and
    // meanwhile the child's only thread waits in vfork().
    Child parent([] {
        if (::vfork() == 0) {
            ::usleep(1500 * 1000);
            ::_exit(0);
        }
        sleep_forever(nullptr);
    });
    while (state_of(parent.pid()) != 'D') {
        ::usleep(1000);
    }
    auto started = std::chrono::steady_clock::now();
    auto stopped = on_tracer_thread([&] { return StoppedProcess::stop(parent.pid()); });
    auto took = std::chrono::steady_clock::now() - started;
    REQUIRE_FALSE(stopped);
    CHECK(stopped.error().code == ErrorCode::busy);
    INFO(stopped.error().message);
    CHECK(stopped.error().message.find("did not stop within") != std::string::npos);
    CHECK(stopped.error().message.find("waits in vfork()") != std::string::npos);
    CHECK(took >= stop_bound);
    CHECK(took < stop_bound + std::chrono::milliseconds(400));
    // The grandchild exits; the parent leaves vfork() and runs on, untraced.
    ::usleep(1000 * 1000);
    CHECK(tracers_of(parent.pid()) == std::vector<int>{0});
    CHECK(state_of(parent.pid()) == 'S');
}
