// Benchmark: what deciding at exec whether a new process needs OpenSSL
// costs sutured (elf/DependencyClosure.h, elf/ClosureCache.h). Not a test:
// it prints figures and asserts nothing about time.
//
// For each program (curl: libssl through libcurl; openssl: directly; true:
// none), with the program started and stopped right after its execve (as
// sutured finds it, through PTRACE_TRACEME), it times, median of R runs:
//   old       the check before: open /proc/PID/exe and fstat it (a cache
//             lookup by device, inode, mtime followed)
//   inputs    reading the loader's inputs out of /proc/PID (root, exe,
//             cwd, environ, auxv): paid on every exec
//   cold      inputs + a whole closure computed (a new executable)
//   cached    inputs + ClosureCache's answer for a known executable, its
//             inputs revalidated (the common case)
// and, first, what reading the host's /etc/ld.so.cache costs.
// Usage: closure-bench [--rounds R]

#include <signal.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "base/Files.h"
#include "base/MappedFile.h"
#include "elf/ClosureCache.h"
#include "elf/DependencyClosure.h"
#include "elf/LdSoCache.h"
#include "proc/Process.h"

namespace {

using namespace suture;
using Clock = std::chrono::steady_clock;

// A child stopped right after execve, before its loader ran.
pid_t start_stopped(const char* program) {
    pid_t pid = ::fork();
    if (pid == 0) {
        char* argv[] = {const_cast<char*>(program), nullptr};
        char* envp[] = {const_cast<char*>("PATH=/usr/bin:/bin"), nullptr};
        ::ptrace(PTRACE_TRACEME, 0, nullptr, nullptr);
        ::execve(program, argv, envp);
        ::_exit(127);
    }
    int status = 0;
    if (pid < 0 || ::waitpid(pid, &status, 0) != pid || !WIFSTOPPED(status)) {
        return -1;
    }
    return pid;
}

double median_microseconds(int rounds, const std::function<void()>& work) {
    std::vector<double> microseconds;
    for (int i = 0; i < rounds; ++i) {
        auto start = Clock::now();
        work();
        microseconds.push_back(
            std::chrono::duration<double, std::micro>(Clock::now() - start).count());
    }
    std::sort(microseconds.begin(), microseconds.end());
    return microseconds[microseconds.size() / 2];
}

// Times one program; false if it cannot be started or read.
bool measure(const char* program, int rounds) {
    pid_t pid = start_stopped(program);
    if (pid < 0) {
        std::fprintf(stderr, "closure-bench: %s: cannot start it stopped\n", program);
        return false;
    }
    auto first = loader_inputs_of_process(pid);
    auto closure = first ? compute_dependency_closure(*first)
                         : Result<DependencyClosure>(tl::unexpected(first.error()));
    if (!closure) {
        std::fprintf(stderr, "closure-bench: %s: %s\n", program, closure.error().message.c_str());
        ::kill(pid, SIGKILL);
        ::waitpid(pid, nullptr, 0);
        return false;
    }
    OpensslRoute route = openssl_route(*closure);
    double old_check = median_microseconds(rounds, [&] {
        auto executable = open_executable(pid);
        (void)executable;
    });
    double inputs = median_microseconds(rounds, [&] { (void)loader_inputs_of_process(pid); });
    double cold = median_microseconds(rounds, [&] {
        auto fresh = loader_inputs_of_process(pid);
        (void)compute_dependency_closure(*fresh);
    });
    ClosureCache cache;
    double cached = median_microseconds(rounds, [&] {
        auto fresh = loader_inputs_of_process(pid);
        (void)cache.openssl_route(*fresh);
    });
    std::printf(
        "%-17s %-10s %3zu objects %3zu inputs | old %6.1f us  inputs %6.1f us  "
        "cold %7.1f us  cached %6.1f us  (%llu computed, %llu hits)\n",
        program, std::string(reach_name(route.reach)).c_str(), closure->objects.size(),
        closure->inputs.size(), old_check, inputs, cold, cached,
        static_cast<unsigned long long>(cache.statistics().computed),
        static_cast<unsigned long long>(cache.statistics().hits));
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
    return true;
}

}  // namespace

int main(int argc, char** argv) {
    int rounds = 501;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (std::strcmp(argv[i], "--rounds") == 0) {
            rounds = std::atoi(argv[i + 1]);
        }
    }
    if (rounds < 1) {
        std::fprintf(stderr, "usage: closure-bench [--rounds R]\n");
        return 2;
    }
    std::printf("median of %d runs each, on a process stopped right after its execve\n", rounds);
    double parse = median_microseconds(rounds, [] {
        auto fd = open_read_only("/etc/ld.so.cache");
        auto mapping = fd ? MappedFile::map(*fd, "/etc/ld.so.cache")
                          : Result<MappedFile>(tl::unexpected(fd.error()));
        if (mapping) {
            (void)LdSoCache::parse(mapping->bytes(), "/etc/ld.so.cache");
        }
    });
    std::printf("/etc/ld.so.cache: open, map and parse %6.1f us\n", parse);
    bool all = true;
    for (const char* program : {"/usr/bin/curl", "/usr/bin/openssl", "/bin/true"}) {
        all = measure(program, rounds) && all;
    }
    return all ? 0 : 1;
}
