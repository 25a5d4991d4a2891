// Benchmark: how long `suture status` takes to scan a host with many
// processes mapping libcrypto. Not a test: it prints figures and asserts
// nothing about time.
//
// It starts N hold-openssl processes (default 1000), then times, in this one
// process and on the same /proc:
//   baseline  walk /proc and read every process's maps (the I/O floor any
//             scanner pays)
//   cold      a fresh Scanner (empty file cache) scanning everything
//   warm      one Scanner scanning again and again (the daemon's case)
//   cli       `suture status --json > /dev/null` end to end, in a child
//             process: start-up, index load, a cold scan, JSON output
// and prints medians and ratios. Usage: scan-bench [--processes N] [--rounds R]

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
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

#include "distro/BuildIndex.h"
#include "proc/Process.h"
#include "proc/ProcessMaps.h"
#include "scan/Scanner.h"

namespace {

using namespace suture;
using Clock = std::chrono::steady_clock;

// Starts one holder with stdout on `ready_pipe`; it dies with us.
pid_t start_holder(const char* holder, int ready_pipe) {
    pid_t pid = ::fork();
    if (pid == 0) {
        ::prctl(PR_SET_PDEATHSIG, SIGKILL);
        int null = ::open("/dev/null", O_RDWR);
        ::dup2(null, STDIN_FILENO);
        ::dup2(ready_pipe, STDOUT_FILENO);
        ::execl(holder, holder, "libcrypto.so.3", static_cast<char*>(nullptr));
        ::_exit(127);
    }
    return pid;
}

double median(std::vector<double> values) {
    std::sort(values.begin(), values.end());
    return values[values.size() / 2];
}

std::vector<double> time_rounds(int rounds, const std::function<void()>& work) {
    std::vector<double> milliseconds;
    for (int i = 0; i < rounds; ++i) {
        auto start = Clock::now();
        work();
        milliseconds.push_back(
            std::chrono::duration<double, std::milli>(Clock::now() - start).count());
    }
    return milliseconds;
}

std::size_t count_openssl_processes(const ScanReport& report) {
    return static_cast<std::size_t>(
        std::count_if(report.processes.begin(), report.processes.end(),
                      [](const ProcessReport& process) { return !process.libraries.empty(); }));
}

}  // namespace

int main(int argc, char** argv) {
    int processes = 1000;
    int rounds = 11;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (std::strcmp(argv[i], "--processes") == 0) {
            processes = std::atoi(argv[i + 1]);
        } else if (std::strcmp(argv[i], "--rounds") == 0) {
            rounds = std::atoi(argv[i + 1]);
        }
    }
    if (processes < 0 || rounds < 1) {
        std::fprintf(stderr, "usage: scan-bench [--processes N] [--rounds R]\n");
        return 2;
    }

    int ready[2];
    if (::pipe2(ready, O_CLOEXEC) != 0) {
        std::perror("pipe");
        return 1;
    }
    ::fcntl(ready[1], F_SETFD, 0);  // the holders inherit the write end as stdout
    std::vector<pid_t> holders;
    auto spawn_start = Clock::now();
    for (int i = 0; i < processes; ++i) {
        pid_t pid = start_holder(HOLD_OPENSSL_PATH, ready[1]);
        if (pid < 0) {
            std::perror("fork");
            break;
        }
        holders.push_back(pid);
    }
    ::close(ready[1]);
    // Each holder prints "loaded …" and "ready PID": count the ready lines.
    std::size_t ready_count = 0;
    std::string pending;
    char buffer[65536];
    while (ready_count < holders.size()) {
        ssize_t n = ::read(ready[0], buffer, sizeof buffer);
        if (n <= 0) {
            break;
        }
        pending.append(buffer, static_cast<std::size_t>(n));
        for (std::size_t at; (at = pending.find("ready ")) != std::string::npos;) {
            ++ready_count;
            pending.erase(0, at + 6);
        }
    }
    double spawn_seconds = std::chrono::duration<double>(Clock::now() - spawn_start).count();
    std::printf("started %zu holders mapping libcrypto.so.3 in %.1f s\n", ready_count,
                spawn_seconds);

    BuildIndex index;  // the lookup is one hash probe per library: not what is measured here
    std::size_t found = 0;
    auto baseline = time_rounds(rounds, [] {
        auto pids = list_process_ids();
        for (int pid : *pids) {
            (void)read_process_maps(pid);
        }
    });
    auto cold = time_rounds(rounds, [&] {
        Scanner scanner(index);
        found = count_openssl_processes(scanner.scan_all());
    });
    Scanner warm_scanner(index);
    (void)warm_scanner.scan_all();
    auto warm =
        time_rounds(rounds, [&] { found = count_openssl_processes(warm_scanner.scan_all()); });

    auto cli = time_rounds(rounds, [] {
        pid_t child = ::fork();
        if (child == 0) {
            int null = ::open("/dev/null", O_WRONLY);
            ::dup2(null, STDOUT_FILENO);
            ::execl(SUTURE_PATH, SUTURE_PATH, "status", "--json", static_cast<char*>(nullptr));
            ::_exit(127);
        }
        ::waitpid(child, nullptr, 0);
    });

    double baseline_ms = median(baseline);
    double cold_ms = median(cold);
    double warm_ms = median(warm);
    std::printf("processes mapping OpenSSL found by the scan: %zu (holders: %zu)\n", found,
                ready_count);
    std::printf("%-10s %10s %10s %14s\n", "scan", "median ms", "max ms", "x baseline");
    std::printf("%-10s %10.2f %10.2f %14.2f\n", "baseline", baseline_ms,
                *std::max_element(baseline.begin(), baseline.end()), 1.0);
    std::printf("%-10s %10.2f %10.2f %14.2f\n", "cold", cold_ms,
                *std::max_element(cold.begin(), cold.end()), cold_ms / baseline_ms);
    std::printf("%-10s %10.2f %10.2f %14.2f\n", "warm", warm_ms,
                *std::max_element(warm.begin(), warm.end()), warm_ms / baseline_ms);
    std::printf("%-10s %10.2f %10.2f %14.2f\n", "cli", median(cli),
                *std::max_element(cli.begin(), cli.end()), median(cli) / baseline_ms);
    std::printf("warm per process: %.1f us; files read per cold scan: %zu\n",
                warm_ms * 1000.0 / std::max<std::size_t>(found, 1), [&] {
                    Scanner s(index);
                    (void)s.scan_all();
                    return s.statistics().files_identified;
                }());

    for (pid_t pid : holders) {
        ::kill(pid, SIGKILL);
    }
    for (pid_t pid : holders) {
        ::waitpid(pid, nullptr, 0);
    }
    return found >= ready_count ? 0 : 1;
}
