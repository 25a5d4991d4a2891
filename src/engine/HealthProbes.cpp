// The health watch's probes: the operator's command, run without blocking.
#include "engine/HealthProbes.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <ctime>
#include <thread>

#include "engine/HealthWatch.h"

extern char** environ;

namespace suture {

namespace {

constexpr std::size_t kept_output = 512;

// "exit 7", "killed by SIGSEGV".
std::string describe_status(int status) {
    if (WIFEXITED(status)) {
        return "exit " + std::to_string(WEXITSTATUS(status));
    }
    return "killed by " + signal_name(WTERMSIG(status));
}

// The output's last line(s), on one line, for a message.
std::string one_line(std::string text) {
    while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) {
        text.pop_back();
    }
    for (char& c : text) {
        c = c == '\n' || c == '\r' || c == '\t' ? ' ' : c;
    }
    return text;
}

}  // namespace

// 1. A pipe for its output. 2. /bin/sh -c COMMAND spawned in a new process
// group, stdin /dev/null, stdout and stderr the pipe, every signal
// unblocked and default (sutured blocks some for its loop).
Result<ProbeRun> ProbeRun::start(const std::string& command, std::chrono::seconds timeout) {
    int pipe_ends[2];
    if (::pipe2(pipe_ends, O_CLOEXEC) != 0) {
        return fail_errno("health check: pipe", errno);
    }
    UniqueFD reader(pipe_ends[0]);
    UniqueFD writer(pipe_ends[1]);
    (void)::fcntl(reader.get(), F_SETFL, O_NONBLOCK);
    posix_spawn_file_actions_t files;
    posix_spawn_file_actions_init(&files);
    posix_spawn_file_actions_addopen(&files, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&files, writer.get(), 1);
    posix_spawn_file_actions_adddup2(&files, writer.get(), 2);
    posix_spawnattr_t attributes;
    posix_spawnattr_init(&attributes);
    sigset_t none;
    sigemptyset(&none);
    sigset_t all;
    sigfillset(&all);
    posix_spawnattr_setsigmask(&attributes, &none);
    posix_spawnattr_setsigdefault(&attributes, &all);
    posix_spawnattr_setpgroup(&attributes, 0);
    posix_spawnattr_setflags(&attributes,
                             POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    std::string shell = "/bin/sh";
    std::string dash_c = "-c";
    std::string text = command;
    char* argv[] = {shell.data(), dash_c.data(), text.data(), nullptr};
    int pid = 0;
    int spawned = ::posix_spawn(&pid, shell.c_str(), &files, &attributes, argv, environ);
    posix_spawn_file_actions_destroy(&files);
    posix_spawnattr_destroy(&attributes);
    if (spawned != 0) {
        return fail_errno("health check: /bin/sh", spawned);
    }
    return ProbeRun(pid, std::move(reader), Clock::now() + timeout, timeout, ::time(nullptr));
}

ProbeRun::ProbeRun(ProbeRun&& other) noexcept
    : pid_(std::exchange(other.pid_, 0)),
      output_(std::move(other.output_)),
      deadline_(other.deadline_),
      timeout_(other.timeout_),
      started_at_(other.started_at_),
      tail_(std::move(other.tail_)) {}

ProbeRun::~ProbeRun() {
    if (pid_ > 0) {
        ::kill(-pid_, SIGKILL);
        int status = 0;
        (void)::waitpid(pid_, &status, 0);
    }
}

void ProbeRun::read_output() {
    char buffer[4096];
    for (;;) {
        ssize_t got = ::read(output_.get(), buffer, sizeof buffer);
        if (got <= 0) {
            return;
        }
        tail_.append(buffer, static_cast<std::size_t>(got));
        if (tail_.size() > kept_output) {
            tail_.erase(0, tail_.size() - kept_output);
        }
    }
}

// 1. Its output so far. 2. Ended: its status. 3. Past the deadline: the
// group killed, a timeout. 4. Else still running.
std::optional<ProbeResult> ProbeRun::poll() {
    if (pid_ == 0) {
        return ProbeResult{.healthy = false, .detail = "not running"};
    }
    read_output();
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = 0;
        read_output();
        bool healthy = WIFEXITED(status) && WEXITSTATUS(status) == 0;
        std::string output = one_line(tail_);
        return ProbeResult{.healthy = healthy,
                           .detail = describe_status(status) + (output.empty() ? "" : ": " + output)};
    }
    if (Clock::now() >= deadline_) {
        ::kill(-pid_, SIGKILL);
        (void)::waitpid(pid_, &status, 0);
        pid_ = 0;
        return ProbeResult{.healthy = false,
                           .detail = "timed out after " + std::to_string(timeout_.count()) + " s"};
    }
    return std::nullopt;
}

ProbeResult ProbeRun::wait() {
    for (;;) {
        if (auto result = poll()) {
            return *result;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
}

}  // namespace suture
