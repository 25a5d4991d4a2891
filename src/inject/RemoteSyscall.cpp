#include "inject/RemoteSyscall.h"

#include <signal.h>
#include <sys/ptrace.h>
#include <sys/user.h>
#include <sys/wait.h>

#include <algorithm>
#include <cstring>
#include <string>

#include "inject/RegionMarker.h"

namespace suture {

namespace {

// Where, below the stack pointer, the resume values live: far beyond the red
// zone (128 bytes) and any signal frame (a few KiB, ~11 KiB with AMX state).
constexpr std::uint64_t save_area_below_sp = 64 * 1024;
constexpr std::size_t save_area_size = 80;  // rax rdi rsi rdx r10 r8 r9 rcx r11 rip

// Kernel-internal restart codes a thread stopped in a system call may carry
// in rax (include/linux/errno.h).
constexpr long erestartsys = 512;
constexpr long erestartnointr = 513;
constexpr long erestartnohand = 514;
constexpr long erestart_restartblock = 516;
constexpr long nr_restart_syscall = 219;

// syscall; mov REG, [rsp - 64 KiB + k] for each saved register; jmp [rsp - 64 KiB + 72]
std::vector<std::byte> trampoline_code() {
    // ModRM/REX bytes of `mov REG, [rsp + disp32]` (48/4C 8B xx 24 disp32).
    static constexpr unsigned char loads[9][3] = {
        {0x48, 0x8b, 0x84},  // rax
        {0x48, 0x8b, 0xbc},  // rdi
        {0x48, 0x8b, 0xb4},  // rsi
        {0x48, 0x8b, 0x94},  // rdx
        {0x4c, 0x8b, 0x94},  // r10
        {0x4c, 0x8b, 0x84},  // r8
        {0x4c, 0x8b, 0x8c},  // r9
        {0x48, 0x8b, 0x8c},  // rcx
        {0x4c, 0x8b, 0x9c},  // r11
    };
    std::vector<std::byte> code = {std::byte{0x0f}, std::byte{0x05}};
    auto put_displacement = [&](std::int32_t displacement) {
        std::byte bytes[4];
        std::memcpy(bytes, &displacement, 4);
        code.insert(code.end(), bytes, bytes + 4);
    };
    std::int32_t base = -static_cast<std::int32_t>(save_area_below_sp);
    for (int i = 0; i < 9; ++i) {
        code.push_back(std::byte{loads[i][0]});
        code.push_back(std::byte{loads[i][1]});
        code.push_back(std::byte{loads[i][2]});
        code.push_back(std::byte{0x24});
        put_displacement(base + 8 * i);
    }
    // jmp qword [rsp + disp32]: FF A4 24 disp32
    code.push_back(std::byte{0xff});
    code.push_back(std::byte{0xa4});
    code.push_back(std::byte{0x24});
    put_displacement(base + 72);
    return code;
}

// Waits for `tid` to stop; the raw waitpid status, or target_died.
Result<int> wait_for_stop(int tid, const std::string& subject) {
    int status = 0;
    while (::waitpid(tid, &status, __WALL) < 0) {
        if (errno != EINTR) {
            return fail_errno(subject + ": wait", errno);
        }
    }
    if (WIFEXITED(status) || WIFSIGNALED(status)) {
        return fail(ErrorCode::target_died, subject + ": the target died");
    }
    return status;
}

}  // namespace

Result<RemoteSyscall::Site> RemoteSyscall::find_site(const std::vector<LoadedObject>& objects) {
    std::size_t needed = trampoline_code().size() + intent_record_size;
    const LoadedObject* best = nullptr;
    for (const LoadedObject& object : objects) {
        if (object.slack_end - object.slack_start < needed) {
            continue;
        }
        bool is_libc = object.soname && object.soname->starts_with("libc.so");
        if (best == nullptr || is_libc) {
            best = &object;
        }
        if (is_libc) {
            break;
        }
    }
    if (best == nullptr) {
        return fail(ErrorCode::unsupported,
                    "no loaded object has spare executable bytes for the system-call trampoline");
    }
    return Site{best->slack_start, best->slack_end};
}

Result<RemoteSyscall> RemoteSyscall::install(StoppedProcess& process, const RemoteMemory& memory,
                                             const std::vector<Mapping>& mappings, Site site) {
    auto saved = memory.read(site.start, site.end - site.start);
    if (!saved) {
        return tl::unexpected(saved.error());
    }
    if (auto written = memory.write(site.start, trampoline_code()); !written) {
        return tl::unexpected(written.error());
    }
    return RemoteSyscall(process, memory, mappings, site, std::move(*saved));
}

Result<void> RemoteSyscall::record_intent(RemoteAddress region_address, std::uint64_t region_size) {
    return memory_.write(site_.end - intent_record_size,
                         encode_intent_record(IntentRecord{region_address.raw(), region_size}));
}

Result<void> RemoteSyscall::clear_intent(RemoteAddress record_address) {
    if (record_address >= site_.start && record_address + intent_record_size <= site_.end) {
        std::fill_n(
            saved_bytes_.begin() + static_cast<std::ptrdiff_t>(record_address - site_.start),
            intent_record_size, std::byte{0});
    }
    return memory_.write(record_address, std::vector<std::byte>(intent_record_size));
}

RemoteSyscall::RemoteSyscall(RemoteSyscall&& other) noexcept
    : process_(other.process_),
      memory_(other.memory_),
      mappings_(other.mappings_),
      site_(other.site_),
      saved_bytes_(std::move(other.saved_bytes_)),
      installed_(std::exchange(other.installed_, false)) {}

RemoteSyscall::~RemoteSyscall() {
    if (installed_) {
        // Dead bytes either way; put them back to leave no trace.
        (void)memory_.write(site_.start, saved_bytes_);
    }
}

Result<long> RemoteSyscall::call_then(const std::function<Result<void>(long)>& at_exit, long number,
                                      std::uint64_t a0, std::uint64_t a1, std::uint64_t a2,
                                      std::uint64_t a3, std::uint64_t a4, std::uint64_t a5) {
    StoppedThread& thread = process_.worker();
    std::string subject =
        "pid " + std::to_string(process_.pid()) + ": injected syscall " + std::to_string(number);
    user_regs_struct saved{};
    if (::ptrace(PTRACE_GETREGS, thread.tid, nullptr, &saved) != 0) {
        return fail_errno(subject + ": get registers", errno);
    }

    // Where the thread resumes if it has to finish on its own (step 2).
    std::uint64_t resume_rax = saved.rax;
    std::uint64_t resume_rip = saved.rip;
    long interrupted = static_cast<long>(saved.rax);
    if (static_cast<long>(saved.orig_rax) >= 0) {
        if (interrupted == -erestartsys || interrupted == -erestartnointr ||
            interrupted == -erestartnohand) {
            resume_rax = saved.orig_rax;
            resume_rip = saved.rip - 2;
        } else if (interrupted == -erestart_restartblock) {
            resume_rax = nr_restart_syscall;
            resume_rip = saved.rip - 2;
        }
    }
    RemoteAddress save_area = RemoteAddress(saved.rsp) - save_area_below_sp;
    const Mapping* stack = find_mapping(mappings_, saved.rsp);
    if (stack == nullptr || save_area < RemoteAddress(stack->start) || !stack->writable) {
        return fail(ErrorCode::unsupported,
                    subject + ": thread " + std::to_string(thread.tid) +
                        " has less than 64 KiB of stack below its stack pointer");
    }
    std::uint64_t values[save_area_size / 8] = {resume_rax, saved.rdi, saved.rsi, saved.rdx,
                                                saved.r10,  saved.r8,  saved.r9,  saved.rcx,
                                                saved.r11,  resume_rip};
    if (auto written = memory_.write(save_area, std::as_bytes(std::span(values))); !written) {
        return tl::unexpected(written.error());
    }

    user_regs_struct call = saved;
    call.rax = static_cast<unsigned long long>(number);
    call.rdi = a0;
    call.rsi = a1;
    call.rdx = a2;
    call.r10 = a3;
    call.r8 = a4;
    call.r9 = a5;
    call.rip = site_.start.raw();
    call.orig_rax = static_cast<unsigned long long>(-1);
    if (::ptrace(PTRACE_SETREGS, thread.tid, nullptr, &call) != 0) {
        return fail_errno(subject + ": set registers", errno);
    }
    // Resuming the thread below drops a signal it sat on; StoppedProcess
    // sends it again at detach.
    thread.in_delivery_stop = false;
    // Step 4: to the entry of our system call, then to its exit.
    user_regs_struct after{};
    bool entered = false;
    for (int stops = 0;; ++stops) {
        if (::ptrace(PTRACE_SYSCALL, thread.tid, nullptr, nullptr) != 0) {
            return fail_errno(subject + ": resume to the system call", errno);
        }
        auto status = wait_for_stop(thread.tid, subject);
        if (!status) {
            return tl::unexpected(status.error());
        }
        if (WSTOPSIG(*status) == (SIGTRAP | 0x80)) {
            if (!entered) {
                entered = true;
                continue;
            }
            break;
        }
        if ((*status >> 16) == 0) {
            process_.keep_signal(thread.tid, WSTOPSIG(*status));  // a signal raced in
        }
        if (stops > 100) {
            return fail(ErrorCode::io, subject + ": the thread never reached the system call");
        }
    }
    if (::ptrace(PTRACE_GETREGS, thread.tid, nullptr, &after) != 0) {
        return fail_errno(subject + ": get registers", errno);
    }
    Result<void> followed = {};
    if (at_exit) {
        followed = at_exit(static_cast<long>(after.rax));
    }
    // Step 5: interrupt pending, registers back, into the interrupt stop.
    if (::ptrace(PTRACE_INTERRUPT, thread.tid, nullptr, nullptr) != 0 ||
        ::ptrace(PTRACE_SETREGS, thread.tid, nullptr, &saved) != 0) {
        return fail_errno(subject + ": restore registers", errno);
    }
    for (int stops = 0;; ++stops) {
        if (::ptrace(PTRACE_CONT, thread.tid, nullptr, nullptr) != 0) {
            return fail_errno(subject + ": back to the interrupt stop", errno);
        }
        auto status = wait_for_stop(thread.tid, subject);
        if (!status) {
            return tl::unexpected(status.error());
        }
        if ((*status >> 16) == PTRACE_EVENT_STOP) {
            break;
        }
        if ((*status >> 16) == 0 && WSTOPSIG(*status) != (SIGTRAP | 0x80)) {
            process_.keep_signal(thread.tid, WSTOPSIG(*status));
        }
        if (stops > 100) {
            return fail(ErrorCode::io, subject + ": the thread did not stop again");
        }
    }
    if (!followed) {
        return tl::unexpected(followed.error());
    }
    return static_cast<long>(after.rax);
}

}  // namespace suture
