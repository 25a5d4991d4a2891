#include "inject/LoadHold.h"

#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdlib>
#include <cstring>
#include <fstream>

#include "inject/RemoteMemory.h"
#include "inject/WaitStatus.h"
#include "proc/ProcessMaps.h"

namespace suture {

namespace {

// A program's start maps all its libraries before relocating any (curl:
// 33, some 250 system calls); a program that reads the file instead (a
// checksum, a backup) is let go after this many stops (two per call).
constexpr int step_limit = 3000;
constexpr auto step_bound = std::chrono::seconds(2);

// glibc's mprotect wrapper, as ld.so has it (2.31 to 2.41): `syscall`, then
// `cmp $-4095, %rax; jae error; ret`. Only there are the argument registers
// dead after the call, as the wait of step 3 needs.
constexpr std::array<unsigned char, 2> syscall_instruction = {0x0f, 0x05};
constexpr std::array<unsigned char, 6> wrapper_check = {0x48, 0x3d, 0x01, 0xf0, 0xff, 0xff};
constexpr unsigned char jae_short = 0x73;
constexpr unsigned char ret = 0xc3;

std::string subject_of(int tid) {
    return "thread " + std::to_string(tid);
}

// Calls the permission event's answer once, whatever happens.
class Answer {
  public:
    explicit Answer(const std::function<void()>& allow) : allow_(allow) {}
    ~Answer() { give(); }
    Answer(const Answer&) = delete;
    Answer& operator=(const Answer&) = delete;
    void give() {
        if (!given_) {
            given_ = true;
            allow_();
        }
    }

  private:
    const std::function<void()>& allow_;
    bool given_ = false;
};

// Where the file (device, inode) is mapped: from its first mapping to the
// end of its last; empty (0, 0) while it is not.
std::pair<std::uint64_t, std::uint64_t> range_of_file(int pid, dev_t device, ino_t inode) {
    std::pair<std::uint64_t, std::uint64_t> range{0, 0};
    auto mappings = read_process_maps(pid);
    if (!mappings) {
        return range;
    }
    for (const Mapping& mapping : *mappings) {
        if (mapping.inode == inode && ::makedev(mapping.dev_major, mapping.dev_minor) == device) {
            range.first = range.first == 0 ? mapping.start : std::min(range.first, mapping.start);
            range.second = std::max(range.second, mapping.end);
        }
    }
    return range;
}

// Is the process under a seccomp filter (/proc/PID/status "Seccomp: 2")?
// One could refuse the wait's ppoll, and a refusal may kill.
bool filtered_by_seccomp(int pid) {
    std::ifstream status("/proc/" + std::to_string(pid) + "/status");
    std::string line;
    while (std::getline(status, line)) {
        if (line.starts_with("Seccomp:")) {
            return std::atoi(line.c_str() + 8) != 0;
        }
    }
    return true;  // cannot tell: do not risk it
}

// Does the code around `rip` (just after a `syscall`) look like the wrapper?
bool returns_after_syscall(const RemoteMemory& memory, std::uint64_t rip) {
    auto bytes = memory.read(RemoteAddress(rip - 2), 2 + wrapper_check.size() + 3);
    if (!bytes || bytes->size() < 2 + wrapper_check.size() + 3) {
        return false;
    }
    auto byte = [&](std::size_t at) { return static_cast<unsigned char>((*bytes)[at]); };
    for (std::size_t at = 0; at < 2; ++at) {
        if (byte(at) != syscall_instruction[at]) {
            return false;
        }
    }
    for (std::size_t at = 0; at < wrapper_check.size(); ++at) {
        if (byte(2 + at) != wrapper_check[at]) {
            return false;
        }
    }
    std::size_t after = 2 + wrapper_check.size();
    return byte(after) == jae_short && byte(after + 2) == ret;
}

// Follows `tid` from system call to system call (step 2) until the
// loader's mprotect(PROT_READ) of a mapping of the file returns; leaves it
// in that syscall-exit-stop. false if it never gets there (it is then in
// a stop too, `deliver` the signal to hand back at the detach).
Result<bool> step_to_relocation(int pid, int tid, dev_t device, ino_t inode, int& deliver) {
    auto deadline = std::chrono::steady_clock::now() + step_bound;
    std::pair<std::uint64_t, std::uint64_t> file{0, 0};  // read once it is mapped
    __ptrace_syscall_info entry{};
    deliver = 0;  // a signal that arrived, passed on at the next resume
    for (int step = 0; step < step_limit && std::chrono::steady_clock::now() < deadline; ++step) {
        if (::ptrace(PTRACE_SYSCALL, tid, nullptr, reinterpret_cast<void*>(long{deliver})) != 0) {
            return fail_errno(subject_of(tid) + ": follow its system calls", errno);
        }
        deliver = 0;
        auto status = wait_for_stop(tid, subject_of(tid));
        if (!status) {
            return tl::unexpected(status.error());
        }
        if (status->ended()) {
            return fail(ErrorCode::target_died, subject_of(tid) + ": exited while loading");
        }
        if (status->kind() == WaitStatus::Kind::signal_stop) {
            deliver = status->signal();
            continue;
        }
        if (status->kind() != WaitStatus::Kind::syscall_stop) {
            return false;  // a group-stop or another event: not ours to follow
        }
        __ptrace_syscall_info info{};
        if (::ptrace(PTRACE_GET_SYSCALL_INFO, tid, reinterpret_cast<void*>(sizeof info), &info) <=
            0) {
            return fail_errno(subject_of(tid) + ": system call info", errno);
        }
        if (info.op == PTRACE_SYSCALL_INFO_ENTRY) {
            entry = info;
            continue;
        }
        bool relro = entry.op == PTRACE_SYSCALL_INFO_ENTRY && entry.entry.nr == SYS_mprotect &&
                     entry.entry.args[2] == PROT_READ && info.op == PTRACE_SYSCALL_INFO_EXIT &&
                     info.exit.rval == 0;
        if (relro && file.second == 0) {
            file = range_of_file(pid, device, inode);
        }
        std::uint64_t address = entry.entry.args[0];
        if (relro && address >= file.first && address < file.second) {
            return true;
        }
        entry = {};
    }
    return false;
}

// Step 3: `tid`, in the mprotect's syscall-exit-stop, re-enters its
// `syscall` instruction as a signal-proof ppoll and is let go.
Result<std::optional<HeldLoad>> wait_in_ppoll(int pid, int tid) {
    HeldLoad held{.pid = pid, .tid = tid, .held_at = std::chrono::steady_clock::now()};
    if (::ptrace(PTRACE_GETREGS, tid, nullptr, &held.saved) != 0) {
        return fail_errno(subject_of(tid) + ": registers", errno);
    }
    auto memory = RemoteMemory::open(pid, true);
    if (!memory) {
        return tl::unexpected(memory.error());
    }
    if (!returns_after_syscall(*memory, held.saved.rip) || filtered_by_seccomp(pid)) {
        return std::optional<HeldLoad>{};  // do not touch its registers
    }
    // The ppoll's timeout and signal mask, below the red zone of its stack.
    struct {
        std::int64_t seconds = load_hold_bound.count();
        std::int64_t nanoseconds = 0;
        std::uint64_t blocked = ~std::uint64_t{0};
    } arguments;
    std::uint64_t scratch = (held.saved.rsp - 128 - sizeof arguments) & ~std::uint64_t{15};
    if (auto written = memory->write(RemoteAddress(scratch), std::as_bytes(std::span(&arguments, 1)));
        !written) {
        return tl::unexpected(written.error());
    }
    user_regs_struct waiting = held.saved;
    waiting.rip = held.saved.rip - syscall_instruction.size();
    waiting.rax = SYS_ppoll;
    waiting.rdi = 0;                 // no descriptors
    waiting.rsi = 0;
    waiting.rdx = scratch;           // the timeout
    waiting.r10 = scratch + 16;      // every signal blocked while it waits
    waiting.r8 = sizeof(std::uint64_t);
    if (::ptrace(PTRACE_SETREGS, tid, nullptr, &waiting) != 0) {
        return fail_errno(subject_of(tid) + ": registers", errno);
    }
    if (::ptrace(PTRACE_DETACH, tid, nullptr, nullptr) != 0) {
        return fail_errno(subject_of(tid) + ": detach", errno);
    }
    return std::optional<HeldLoad>(held);
}

// PTRACE_SEIZE + PTRACE_INTERRUPT and the wait for that stop; a signal
// that raced with it is returned, to hand back at the detach.
Result<int> seize_and_stop(int tid, long options, Answer* answer) {
    if (::ptrace(PTRACE_SEIZE, tid, nullptr, reinterpret_cast<void*>(options)) != 0) {
        return fail_errno(subject_of(tid) + ": seize", errno);
    }
    if (::ptrace(PTRACE_INTERRUPT, tid, nullptr, nullptr) != 0) {
        int error = errno;
        detach_when_stopped(tid);
        return fail_errno(subject_of(tid) + ": interrupt", error);
    }
    if (answer != nullptr) {
        answer->give();  // the thread returns from open() into our stop
    }
    int pending = 0;
    for (;;) {
        auto status = wait_for_stop(tid, subject_of(tid));
        if (!status) {
            return tl::unexpected(status.error());
        }
        if (status->ended()) {
            return fail(ErrorCode::target_died, subject_of(tid) + ": exited");
        }
        if (status->event_stop()) {
            return pending;
        }
        pending = status->signal();  // delivered later; wait for our stop
        ::ptrace(PTRACE_CONT, tid, nullptr, nullptr);
        ::ptrace(PTRACE_INTERRUPT, tid, nullptr, nullptr);
    }
}

}  // namespace

Result<std::optional<HeldLoad>> hold_load(int pid, int tid, dev_t device, ino_t inode,
                                          const std::function<void()>& allow) {
    Answer answer(allow);
    // 1. Seize it while it waits in open(), then let the open go on.
    auto pending = seize_and_stop(tid, PTRACE_O_TRACESYSGOOD, &answer);
    if (!pending) {
        return tl::unexpected(pending.error());
    }
    if (*pending != 0) {
        // A signal is due: deliver it and leave this load to the rescan
        // rather than hold a thread that has a handler to run.
        ::ptrace(PTRACE_DETACH, tid, nullptr, reinterpret_cast<void*>(long{*pending}));
        return std::optional<HeldLoad>{};
    }
    // 2. Follow it to the start of relocation.
    int deliver = 0;
    auto reached = step_to_relocation(pid, tid, device, inode, deliver);
    if (!reached || !*reached) {
        if (!reached && reached.error().code == ErrorCode::target_died) {
            return tl::unexpected(reached.error());
        }
        ::ptrace(PTRACE_DETACH, tid, nullptr, reinterpret_cast<void*>(long{deliver}));
        return reached ? Result<std::optional<HeldLoad>>(std::optional<HeldLoad>{})
                       : tl::unexpected(reached.error());
    }
    // 3. Wait there, untraced.
    auto held = wait_in_ppoll(pid, tid);
    if (!held || !*held) {
        ::ptrace(PTRACE_DETACH, tid, nullptr, nullptr);
    }
    return held;
}

Result<bool> release_load(const HeldLoad& held) {
    auto pending = seize_and_stop(held.tid, 0, nullptr);
    if (!pending) {
        return tl::unexpected(pending.error());
    }
    user_regs_struct now{};
    if (::ptrace(PTRACE_GETREGS, held.tid, nullptr, &now) != 0) {
        int error = errno;
        ::ptrace(PTRACE_DETACH, held.tid, nullptr, reinterpret_cast<void*>(long{*pending}));
        return fail_errno(subject_of(held.tid) + ": registers", error);
    }
    // Still in our wait (ppoll, or its restart after a stop), or not even
    // in it yet (its `syscall` not executed: a busy CPU may not have run
    // the thread since the hold): back to the mprotect's return. Otherwise
    // the wait ended by itself: leave it.
    bool in_wait = now.rip == held.saved.rip &&
                   (now.orig_rax == SYS_ppoll || now.orig_rax == SYS_restart_syscall);
    bool before_wait = now.rip == held.saved.rip - syscall_instruction.size() &&
                       now.rax == SYS_ppoll;
    bool waiting = in_wait || before_wait;
    if (waiting && ::ptrace(PTRACE_SETREGS, held.tid, nullptr, &held.saved) != 0) {
        int error = errno;
        ::ptrace(PTRACE_DETACH, held.tid, nullptr, reinterpret_cast<void*>(long{*pending}));
        return fail_errno(subject_of(held.tid) + ": registers", error);
    }
    if (::ptrace(PTRACE_DETACH, held.tid, nullptr, reinterpret_cast<void*>(long{*pending})) != 0) {
        return fail_errno(subject_of(held.tid) + ": detach", errno);
    }
    return waiting;
}

}  // namespace suture
