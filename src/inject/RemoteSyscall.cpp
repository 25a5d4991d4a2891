#include "inject/RemoteSyscall.h"

#include <signal.h>
#include <sys/ptrace.h>
#include <sys/user.h>
#include <sys/wait.h>

#include <algorithm>
#include <cstring>
#include <string>

#include "inject/RegionMarker.h"
#include "inject/WaitStatus.h"

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


// The registers that run system call `number` with `arguments` at the
// trampoline (step 3). orig_rax -1: the kernel must not "restart" the
// thread's own call.
user_regs_struct call_registers(const user_regs_struct& saved, long number,
                                const std::array<std::uint64_t, 6>& arguments,
                                RemoteAddress trampoline) {
    user_regs_struct call = saved;
    call.rax = static_cast<unsigned long long>(number);
    call.rdi = arguments[0];
    call.rsi = arguments[1];
    call.rdx = arguments[2];
    call.r10 = arguments[3];
    call.r8 = arguments[4];
    call.r9 = arguments[5];
    call.rip = trampoline.raw();
    call.orig_rax = static_cast<unsigned long long>(-1);
    return call;
}

// One leg of steps 4 and 5: how the thread is resumed, the stop that ends
// the leg, and what to say when it goes wrong.
struct Leg {
    __ptrace_request request;
    bool (*arrived)(const WaitStatus&);
    const char* resume_failed;
    const char* never_arrived;
};

constexpr Leg to_system_call_stop = {
    PTRACE_SYSCALL,
    [](const WaitStatus& status) { return status.kind() == WaitStatus::Kind::syscall_stop; },
    "resume to the system call", "the thread never reached the system call"};
constexpr Leg to_interrupt_stop = {PTRACE_CONT,
                                   [](const WaitStatus& status) { return status.event_stop(); },
                                   "back to the interrupt stop", "the thread did not stop again"};

// Resumes `thread` along `leg` until it reports the leg's stop. A signal
// that races in is kept for the thread (StoppedProcess hands it back at
// detach) and the thread resumed without it.
Result<void> follow(StoppedProcess& process, int tid, const Leg& leg, const std::string& subject) {
    for (int stops = 0;; ++stops) {
        if (::ptrace(leg.request, tid, nullptr, nullptr) != 0) {
            return fail_errno(subject + ": " + leg.resume_failed, errno);
        }
        auto status = wait_for_stop(tid, subject);
        if (!status) {
            return tl::unexpected(status.error());
        }
        if (status->ended()) {
            return fail(ErrorCode::target_died, subject + ": the target died");
        }
        if (leg.arrived(*status)) {
            return {};
        }
        if (status->kind() == WaitStatus::Kind::signal_stop) {
            process.keep_signal(tid, status->signal());
        }
        if (stops > 100) {
            return fail(ErrorCode::io, subject + ": " + leg.never_arrived);
        }
    }
}

}  // namespace

ResumePoint resume_point(const user_regs_struct& saved) {
    ResumePoint point{saved.rax, saved.rip};
    long interrupted = static_cast<long>(saved.rax);
    if (static_cast<long>(saved.orig_rax) < 0) {
        return point;  // not inside a system call
    }
    if (interrupted == -erestartsys || interrupted == -erestartnointr ||
        interrupted == -erestartnohand) {
        point = ResumePoint{saved.orig_rax, saved.rip - 2};
    } else if (interrupted == -erestart_restartblock) {
        point = ResumePoint{nr_restart_syscall, saved.rip - 2};
    }
    return point;
}

Result<RemoteSyscall::Site> RemoteSyscall::find_site(const std::vector<LoadedObject>& objects) {
    // Room for the function-call trampoline too (RemoteCall.h) if any object
    // has it, libc preferred; else the system-call trampoline alone.
    std::size_t needed = trampoline_code().size() + intent_record_size;
    for (std::size_t room : {needed + call_trampoline_room, needed}) {
        const LoadedObject* best = nullptr;
        for (const LoadedObject& object : objects) {
            if (object.slack_end - object.slack_start < room) {
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
        if (best != nullptr) {
            return Site{best->slack_start, best->slack_end};
        }
    }
    return fail(ErrorCode::unsupported,
                "no loaded object has spare executable bytes for the system-call trampoline");
}

RemoteSyscall::Site RemoteSyscall::spare_bytes() const {
    return Site{site_.start + trampoline_code().size(), site_.end - intent_record_size};
}

Result<RemoteSyscall> RemoteSyscall::install(StoppedProcess& process, const RemoteMemory& memory,
                                             const std::vector<Mapping>& mappings, Site site) {
    auto saved = memory.read(site.start, site.end - site.start);
    if (!saved) {
        return tl::unexpected(saved.error());
    }
    if (auto written = memory.write(site.start, trampoline_code()); !written) {
        (void)memory.write(site.start, *saved);  // dead bytes, but as they were
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
      installed_(std::exchange(other.installed_, false)),
      keep_spare_bytes_(other.keep_spare_bytes_) {}

RemoteSyscall::~RemoteSyscall() {
    if (installed_) {
        // Dead bytes either way; put them back to leave no trace (but for
        // a call trampoline a thread still runs).
        if (!keep_spare_bytes_) {
            (void)memory_.write(site_.start, saved_bytes_);
        } else {
            std::size_t head = trampoline_code().size();
            (void)memory_.write(site_.start, std::span(saved_bytes_).first(head));
            (void)memory_.write(site_.end - intent_record_size,
                                std::span(saved_bytes_).last(intent_record_size));
        }
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
    if (auto stored = store_resume_values(thread.tid, saved, subject); !stored) {
        return tl::unexpected(stored.error());
    }
    user_regs_struct call = call_registers(saved, number, {a0, a1, a2, a3, a4, a5}, site_.start);
    if (::ptrace(PTRACE_SETREGS, thread.tid, nullptr, &call) != 0) {
        return fail_errno(subject + ": set registers", errno);
    }
    // Resuming the thread below drops a signal it sat on; StoppedProcess
    // sends it again at detach.
    thread.in_delivery_stop = false;
    // Step 4: to the entry of our system call, then to its exit.
    for (int stop = 0; stop < 2; ++stop) {
        if (auto stopped = follow(process_, thread.tid, to_system_call_stop, subject); !stopped) {
            return tl::unexpected(stopped.error());
        }
    }
    user_regs_struct after{};
    if (::ptrace(PTRACE_GETREGS, thread.tid, nullptr, &after) != 0) {
        return fail_errno(subject + ": get registers", errno);
    }
    long result = static_cast<long>(after.rax);
    Result<void> followed = at_exit ? at_exit(result) : Result<void>{};
    // Step 5: interrupt pending, registers back, into the interrupt stop.
    if (::ptrace(PTRACE_INTERRUPT, thread.tid, nullptr, nullptr) != 0 ||
        ::ptrace(PTRACE_SETREGS, thread.tid, nullptr, &saved) != 0) {
        return fail_errno(subject + ": restore registers", errno);
    }
    if (auto back = follow(process_, thread.tid, to_interrupt_stop, subject); !back) {
        return tl::unexpected(back.error());
    }
    if (!followed) {
        return tl::unexpected(followed.error());
    }
    return result;
}

Result<void> RemoteSyscall::store_resume_values(int tid, const user_regs_struct& saved,
                                                const std::string& subject) {
    RemoteAddress save_area = RemoteAddress(saved.rsp) - save_area_below_sp;
    const Mapping* stack = find_mapping(mappings_, saved.rsp);
    if (stack == nullptr || save_area < RemoteAddress(stack->start) || !stack->writable) {
        return fail(ErrorCode::unsupported,
                    subject + ": thread " + std::to_string(tid) +
                        " has less than 64 KiB of stack below its stack pointer");
    }
    ResumePoint resume = resume_point(saved);
    std::uint64_t values[save_area_size / 8] = {resume.rax, saved.rdi, saved.rsi, saved.rdx,
                                                saved.r10,  saved.r8,  saved.r9,  saved.rcx,
                                                saved.r11,  resume.rip};
    return memory_.write(save_area, std::as_bytes(std::span(values)));
}

}  // namespace suture
