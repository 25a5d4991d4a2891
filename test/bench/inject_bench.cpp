// Benchmark: how long a target is stopped by apply and revert, and how many
// apply+revert cycles run per second. Not a test: prints figures only.
//
// For each scenario (1 idle thread, 8 idle threads, 8 threads spinning in
// the patched library) it starts patch-target, then measures in this one
// process, on the same target:
//   floor   stop every thread and resume it, nothing else (the cost of the
//           all-threads stop itself; DESIGN.md measured the same floor)
//   apply   suture's apply of demo-v2.patch: time stopped (every thread),
//           its region staged before the stop (Injector.cpp, step 0b)
//   hold    the same applies: the time one thread was held for the staging
//           (the other threads run on; with one thread, a stop too)
//   apply0  the same apply with staging off (InjectOptions::
//           stage_before_stop): the region mapped and filled inside the
//           stop, as before staging; alternating with `apply` in one run
//   revert  suture's revert: time stopped
// Then the busy scenario for entry patches (run_busy_entry_scenario): 8
// threads spinning inside demo_spin, the function demo-spin-entry.patch
// replaces; the time to a successful apply (its tries included) with the
// injector's default tries and backoff, beside the stop floor of the same
// target, and what the same code packed strict gets; each cycle reverts
// under the spinners too (a revert never waits for busy code).
// Then "gated strict": pair-target's 8 threads spend nearly all their time
// inside the demo pair, which a strict patch replaces (demo-pair.patch);
// backing off alone never succeeds there, return gates do. Per apply: the
// time from the call to the successful apply (wall clock, tries and the
// waits for gated threads included), the time stopped in its last stop, the
// threads gated and the rounds; beside the stop floor of the same target.
// Each revert runs under the busy workers too (a revert never waits).
// Usage: inject-bench [--cycles N] [--idle-only]   (--idle-only: the two idle
// scenarios only)

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
#include <string>
#include <vector>

#include "inject/Injector.h"
#include "inject/StoppedProcess.h"

namespace {

using namespace suture;
using Clock = std::chrono::steady_clock;

struct Target {
    pid_t pid = -1;
    int stdin_fd = -1;
    int stdout_fd = -1;
};

Target start_program(const char* path, const char* threads, const char* extra) {
    int input[2];
    int output[2];
    if (::pipe(input) != 0 || ::pipe(output) != 0) {
        std::perror("pipe");
        std::exit(1);
    }
    pid_t pid = ::fork();
    if (pid == 0) {
        ::prctl(PR_SET_PDEATHSIG, SIGKILL);
        ::dup2(input[0], STDIN_FILENO);
        ::dup2(output[1], STDOUT_FILENO);
        ::close(input[1]);
        ::close(output[0]);
        ::execl(path, path, threads, extra, nullptr);
        ::_exit(127);
    }
    ::close(input[0]);
    ::close(output[1]);
    char line[64];
    ssize_t n = ::read(output[0], line, sizeof line);  // "ready PID"
    if (n <= 0) {
        std::fprintf(stderr, "%s did not start\n", path);
        std::exit(1);
    }
    // The output stays open: a target answering a command into a closed
    // pipe would die of SIGPIPE (answers are few; the pipe holds them).
    return Target{pid, input[1], output[0]};
}

Target start_target(const char* threads, bool idle) {
    return start_program(PATCH_TARGET_PATH, threads, idle ? "--idle" : nullptr);
}

double percentile(std::vector<double> values, double p) {
    std::sort(values.begin(), values.end());
    return values[static_cast<std::size_t>(p * static_cast<double>(values.size() - 1))];
}

double to_us(std::chrono::nanoseconds duration) {
    return static_cast<double>(duration.count()) / 1000.0;
}

void print_row(const char* scenario, const char* what, const std::vector<double>& us,
               double floor_median) {
    std::printf("%-14s %-7s %10.0f %10.0f %10.0f %9.2f\n", scenario, what, percentile(us, 0.5),
                percentile(us, 0.99), *std::max_element(us.begin(), us.end()),
                percentile(us, 0.5) / floor_median);
}

// 8 threads that never leave demo_spin, the function demo-spin-entry.patch
// replaces. As an entry patch only a thread on the 5 bytes the jump
// overwrites is in the way; as strict (demo-spin-strict.patch, the same
// code) every spinning thread is, every try.
void run_busy_entry_scenario(int cycles) {
    auto entry = read_patch_file(DEMO_SPIN_ENTRY_PATCH_PATH);
    auto strict_patch = read_patch_file(DEMO_SPIN_STRICT_PATCH_PATH);
    if (!entry || !strict_patch) {
        std::fprintf(stderr, "%s\n", (entry ? strict_patch : entry).error().message.c_str());
        std::exit(1);
    }
    // 1. The target: 8 workers spinning in demo_spin.
    Target target = start_program(PATCH_TARGET_PATH, "8", "--spin");
    ::usleep(200 * 1000);
    // 2. Strict first: how the same code fares when every thread counts.
    InjectOptions defaults;  // what `suture apply` uses: 8 tries, 5..500 ms backoff
    auto strict = apply_patch(target.pid, *strict_patch, defaults);
    std::string outcome = strict ? "applied, " + std::to_string(strict->gated_threads) +
                                       " threads caught at return gates"
                                 : "refused: " + strict.error().message;
    outcome = outcome.substr(0, outcome.find('\n'));  // the threads' frames follow
    std::printf("%-14s strict: %s\n", "8 busy", outcome.c_str());
    if (strict) {
        (void)revert_patches(target.pid, "", defaults);
    }
    // 3. Entry: the floor, the time to a successful apply, and a revert,
    //    in turn.
    std::vector<double> floor, until_applied, stopped, tries;
    int failures = 0;
    int failed_reverts = 0;
    for (int i = 0; i < cycles; ++i) {
        if (auto held = StoppedProcess::stop(target.pid)) {
            floor.push_back(to_us(held->resume()));
        }
        auto started = Clock::now();
        auto applied = apply_patch(target.pid, *entry, defaults);
        if (!applied) {
            ++failures;
            continue;
        }
        until_applied.push_back(to_us(Clock::now() - started));
        stopped.push_back(to_us(applied->stopped_for));
        tries.push_back(applied->attempts);
        if (!revert_patches(target.pid, "", defaults)) {
            ++failed_reverts;
        }
    }
    // 4. The figures.
    if (floor.empty() || until_applied.empty()) {
        std::printf("%-14s entry: no successful apply (%d failures)\n", "8 busy", failures);
    } else {
        double floor_median = percentile(floor, 0.5);
        print_row("8 busy", "floor", floor, floor_median);
        print_row("8 busy", "stopped", stopped, floor_median);
        print_row("8 busy", "apply*", until_applied, floor_median);
        std::printf("%-14s apply* = time to a successful apply, its tries included\n", "8 busy");
        std::printf("%-14s tries per apply: median %.0f, max %.0f; failed applies: %d\n", "8 busy",
                    percentile(tries, 0.5), *std::max_element(tries.begin(), tries.end()),
                    failures);
        std::printf("%-14s failed reverts while they spin: %d\n", "8 busy", failed_reverts);
    }
    ::kill(target.pid, SIGKILL);
    ::waitpid(target.pid, nullptr, 0);
    ::close(target.stdin_fd);
    ::close(target.stdout_fd);
}

// The "gated strict" scenario (see the top).
void run_gated_strict(int cycles) {
    auto patch = read_patch_file(DEMO_PAIR_PATCH_PATH);
    if (!patch) {
        std::fprintf(stderr, "%s\n", patch.error().message.c_str());
        return;
    }
    InjectOptions options;  // the defaults: 8 tries
    Target target = start_program(PAIR_TARGET_PATH, "8", nullptr);
    ::usleep(200000);
    std::vector<double> floor, to_success, stopped;
    std::size_t gated = 0;
    int rounds = 0, failures = 0;
    for (int i = 0; i < cycles; ++i) {
        if (auto held = StoppedProcess::stop(target.pid)) {
            floor.push_back(to_us(held->resume()));
        }
        auto started = Clock::now();
        auto applied = apply_patch(target.pid, *patch, options);
        if (!applied) {
            ++failures;
        } else {
            to_success.push_back(to_us(Clock::now() - started));
            stopped.push_back(to_us(applied->stopped_for));
            gated += applied->gated_threads;
            rounds += applied->gate_rounds;
        }
        (void)revert_patches(target.pid, "", options);  // under the busy workers
        ::usleep(20000);
    }
    if (floor.empty() || to_success.empty()) {
        std::printf("%-14s no successful apply (%d failures)\n", "gated strict", failures);
    } else {
        double floor_median = percentile(floor, 0.5);
        print_row("gated strict", "floor", floor, floor_median);
        print_row("gated strict", "stopped", stopped, floor_median);
        print_row("gated strict", "to ok", to_success, floor_median);
        std::printf(
            "%-14s %zu applies: %.1f threads gated and %.1f rounds on average; "
            "failed applies: %d\n",
            "gated strict", to_success.size(),
            static_cast<double>(gated) / static_cast<double>(to_success.size()),
            static_cast<double>(rounds) / static_cast<double>(to_success.size()), failures);
    }
    ::kill(target.pid, SIGKILL);
    ::waitpid(target.pid, nullptr, 0);
    ::close(target.stdin_fd);
    ::close(target.stdout_fd);
}

}  // namespace

int main(int argc, char** argv) {
    ::signal(SIGPIPE, SIG_IGN);  // a target that died shows as failed cycles instead
    int cycles = 200;
    bool idle_only = false;
    for (int i = 1; i < argc; ++i) {
        if (std::strcmp(argv[i], "--cycles") == 0 && i + 1 < argc) {
            cycles = std::max(1, std::atoi(argv[++i]));
        } else if (std::strcmp(argv[i], "--idle-only") == 0) {
            idle_only = true;
        }
    }
    auto patch = read_patch_file(DEMO_PATCH_PATH);
    if (!patch) {
        std::fprintf(stderr, "%s\n", patch.error().message.c_str());
        return 1;
    }
    InjectOptions options;
    options.attempts = 200;
    options.first_backoff = std::chrono::milliseconds(1);
    options.max_backoff = std::chrono::milliseconds(5);
    InjectOptions unstaged = options;
    unstaged.stage_before_stop = false;

    std::printf("%d apply/revert cycles per scenario; times the target is stopped, in us\n",
                cycles);
    std::printf("%-14s %-7s %10s %10s %10s %9s\n", "scenario", "op", "median", "p99", "max",
                "x floor");
    struct Scenario {
        const char* name;
        const char* threads;
        bool idle;
    };
    for (Scenario scenario : {Scenario{"1 idle", "0", true}, Scenario{"8 idle", "7", true},
                              Scenario{"8 spinning", "8", false}}) {
        if (idle_only && !scenario.idle) {
            continue;
        }
        Target target = start_target(scenario.threads, scenario.idle);
        std::vector<double> floor, apply, hold, apply0, revert;
        int failures = 0;
        for (int i = 0; i < cycles; ++i) {
            {
                auto stopped = StoppedProcess::stop(target.pid);
                if (stopped) {
                    floor.push_back(to_us(stopped->resume()));
                }
            }
            auto applied = apply_patch(target.pid, *patch, options);
            if (!applied) {
                ++failures;
                continue;
            }
            apply.push_back(to_us(applied->stopped_for));
            if (applied->staged) {
                hold.push_back(to_us(applied->staged_for));
            }
            auto reverted = revert_patches(target.pid, "", options);
            if (!reverted || reverted->empty()) {
                ++failures;
                continue;
            }
            revert.push_back(to_us((*reverted)[0].stopped_for));
            auto applied0 = apply_patch(target.pid, *patch, unstaged);
            if (!applied0) {
                ++failures;
                continue;
            }
            apply0.push_back(to_us(applied0->stopped_for));
            if (!revert_patches(target.pid, "", options)) {
                ++failures;
            }
        }
        auto started = Clock::now();
        int timed_cycles = std::min(cycles, 50);
        for (int i = 0; i < timed_cycles; ++i) {
            (void)apply_patch(target.pid, *patch, options);
            (void)revert_patches(target.pid, "", options);
        }
        double seconds = std::chrono::duration<double>(Clock::now() - started).count();
        if (floor.empty() || apply.empty() || revert.empty()) {
            std::printf("%-14s no successful cycle (%d failures)\n", scenario.name, failures);
        } else {
            double floor_median = percentile(floor, 0.5);
            print_row(scenario.name, "floor", floor, floor_median);
            print_row(scenario.name, "apply", apply, floor_median);
            if (!hold.empty()) {
                print_row(scenario.name, "hold", hold, floor_median);
            }
            if (!apply0.empty()) {
                print_row(scenario.name, "apply0", apply0, floor_median);
            }
            print_row(scenario.name, "revert", revert, floor_median);
            std::printf("%-14s applies staged before the stop: %zu of %zu\n", scenario.name,
                        hold.size(), apply.size());
            std::printf("%-14s apply+revert cycles per second: %.1f; failed cycles: %d\n",
                        scenario.name, timed_cycles / seconds, failures);
        }
        ::kill(target.pid, SIGKILL);
        ::waitpid(target.pid, nullptr, 0);
        ::close(target.stdin_fd);
        ::close(target.stdout_fd);
    }
    if (idle_only) {
        return 0;
    }
    run_busy_entry_scenario(std::min(cycles, 100));
    run_gated_strict(std::min(cycles, 40));
    return 0;
}
