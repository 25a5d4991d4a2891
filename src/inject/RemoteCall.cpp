#include "inject/RemoteCall.h"

#include <cpuid.h>
#include <elf.h>
#include <signal.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/user.h>
#include <sys/wait.h>

#include <array>
#include <cstring>
#include <optional>

#include "inject/WaitStatus.h"

namespace suture {

namespace {

// Offsets inside the save block (RemoteCall.h, CallFrame).
enum SaveSlot : std::uint64_t {
    slot_rax = 0,
    slot_rbx = 8,
    slot_rcx = 16,
    slot_rdx = 24,
    slot_rsi = 32,
    slot_rdi = 40,
    slot_rbp = 48,
    slot_r8 = 56,
    slot_r9 = 64,
    slot_r10 = 72,
    slot_r11 = 80,
    slot_r12 = 88,
    slot_r13 = 96,
    slot_r14 = 104,
    slot_r15 = 112,
    slot_rflags = 120,
    slot_rsp = 128,
    slot_function = 136,
    slot_mask = 144,
    slot_result = 152,
};

constexpr std::uint64_t flag_tf = 0x100;  // trap flag
constexpr std::uint64_t flag_df = 0x400;  // direction flag: the ABI wants it clear at a call

class Code {
  public:
    void bytes(std::initializer_list<unsigned> values) {
        for (unsigned value : values) {
            code_.push_back(static_cast<std::byte>(value));
        }
    }
    void u32(std::uint32_t value) {
        for (int i = 0; i < 4; ++i) {
            code_.push_back(static_cast<std::byte>(value >> (8 * i)));
        }
    }
    void u64(std::uint64_t value) {
        for (int i = 0; i < 8; ++i) {
            code_.push_back(static_cast<std::byte>(value >> (8 * i)));
        }
    }
    // `op REG, [rsp + disp32]` with register number `reg` (0-15) and
    // REX.W: for mov (0x8b), mov store (0x89), lea (0x8d).
    void rsp_relative(unsigned opcode, unsigned reg, std::uint64_t displacement) {
        bytes({reg >= 8 ? 0x4cu : 0x48u, opcode, 0x84u | ((reg & 7u) << 3), 0x24});
        u32(static_cast<std::uint32_t>(displacement));
    }
    std::size_t size() const { return code_.size(); }
    std::vector<std::byte> take() { return std::move(code_); }

  private:
    std::vector<std::byte> code_;
};

// Register numbers of the x86-64 encoding, with their save slots, in the
// order the trampoline restores them (rsp last, separately).
struct SavedRegister {
    unsigned number;
    std::uint64_t slot;
};
constexpr std::array<SavedRegister, 15> restored_registers = {{
    {0, slot_rax},
    {3, slot_rbx},
    {1, slot_rcx},
    {2, slot_rdx},
    {6, slot_rsi},
    {7, slot_rdi},
    {5, slot_rbp},
    {8, slot_r8},
    {9, slot_r9},
    {10, slot_r10},
    {11, slot_r11},
    {12, slot_r12},
    {13, slot_r13},
    {14, slot_r14},
    {15, slot_r15},
}};

// The size of the XSAVE area for the features the OS enabled (CPUID 0xd,
// sub-leaf 0, EBX); 0 without XSAVE (FXSAVE's 512 bytes are used then).
std::size_t xsave_area_size() {
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
    if (__get_cpuid(1, &eax, &ebx, &ecx, &edx) == 0 || (ecx & (1u << 27)) == 0) {
        return 0;  // no OSXSAVE
    }
    if (__get_cpuid_count(0xd, 0, &eax, &ebx, &ecx, &edx) == 0) {
        return 0;
    }
    return ebx;
}

// What step 2 saves.
struct SavedThread {
    user_regs_struct regs{};
    std::vector<std::byte> xstate;  // NT_X86_XSTATE as the kernel gives it
    std::uint64_t mask = 0;
};

Result<SavedThread> save_thread(int tid, const std::string& subject) {
    SavedThread saved;
    if (::ptrace(PTRACE_GETREGS, tid, nullptr, &saved.regs) != 0) {
        return fail_errno(subject + ": get registers", errno);
    }
    saved.xstate.resize(64 * 1024);
    iovec io{saved.xstate.data(), saved.xstate.size()};
    if (::ptrace(PTRACE_GETREGSET, tid, reinterpret_cast<void*>(NT_X86_XSTATE), &io) != 0) {
        return fail_errno(subject + ": get the XSAVE state", errno);
    }
    saved.xstate.resize(io.iov_len);
    if (::ptrace(PTRACE_GETSIGMASK, tid, reinterpret_cast<void*>(sizeof saved.mask),
                 &saved.mask) != 0) {
        return fail_errno(subject + ": get the signal mask", errno);
    }
    return saved;
}

// Step 7's restore (also the way back from a failure before the call ran):
// the XSAVE state first, so a tool killed between the two writes leaves a
// thread whose trampoline restores its registers over the right vector state.
Result<void> restore_thread(int tid, const SavedThread& saved, const std::string& subject) {
    iovec io{const_cast<std::byte*>(saved.xstate.data()), saved.xstate.size()};
    if (::ptrace(PTRACE_SETREGSET, tid, reinterpret_cast<void*>(NT_X86_XSTATE), &io) != 0 ||
        ::ptrace(PTRACE_SETREGS, tid, nullptr, &saved.regs) != 0 ||
        ::ptrace(PTRACE_SETSIGMASK, tid, reinterpret_cast<void*>(sizeof saved.mask),
                 &saved.mask) != 0) {
        return fail_errno(subject + ": restore the thread", errno);
    }
    return {};
}

// Step 1: the thread for the call, and its frame.
struct ChosenThread {
    StoppedThread* thread = nullptr;
    CallFrame frame;
};

bool in_avoided_code(std::uint64_t pc, const std::vector<CodeRange>& avoid) {
    for (const CodeRange& range : avoid) {
        if (range.holds_pc(pc) || (pc >= range.start && pc < range.end)) {
            return true;
        }
    }
    return false;
}

Result<ChosenThread> choose_thread(StoppedProcess& process, const std::vector<Mapping>& mappings,
                                   const std::vector<CodeRange>& avoid, std::size_t xsave_size,
                                   const std::string& subject) {
    std::string reasons;
    for (StoppedThread& thread : process.threads()) {
        std::string tid = std::to_string(thread.tid);
        if (thread.in_delivery_stop || !thread.pending_signals.empty()) {
            reasons += "; thread " + tid + " sits on a signal";
            continue;
        }
        user_regs_struct regs{};
        if (::ptrace(PTRACE_GETREGS, thread.tid, nullptr, &regs) != 0) {
            reasons += "; thread " + tid + ": no registers";
            continue;
        }
        if (in_avoided_code(regs.rip, avoid)) {
            reasons += "; thread " + tid + " is in code being replaced";
            continue;
        }
        CallFrame frame = call_frame(regs.rsp, xsave_size);
        const Mapping* stack = find_mapping(mappings, regs.rsp);
        if (stack == nullptr || !stack->writable || frame.lowest_used < stack->start ||
            regs.rsp < red_zone) {
            reasons += "; thread " + tid + " has too little stack";
            continue;
        }
        return ChosenThread{&thread, frame};
    }
    return fail(ErrorCode::unsupported,
                subject + ": no thread can run the call" + reasons.substr(reasons.empty() ? 0 : 1));
}

// Step 3: the save block's contents.
std::array<std::uint64_t, call_save_block_size / 8> save_block_of(const SavedThread& saved,
                                                                   RemoteAddress function) {
    const user_regs_struct& r = saved.regs;
    ResumePoint resume = resume_point(r);
    std::array<std::uint64_t, call_save_block_size / 8> block{};
    auto put = [&](std::uint64_t slot, std::uint64_t value) { block[slot / 8] = value; };
    put(slot_rax, resume.rax);
    put(slot_rbx, r.rbx);
    put(slot_rcx, r.rcx);
    put(slot_rdx, r.rdx);
    put(slot_rsi, r.rsi);
    put(slot_rdi, r.rdi);
    put(slot_rbp, r.rbp);
    put(slot_r8, r.r8);
    put(slot_r9, r.r9);
    put(slot_r10, r.r10);
    put(slot_r11, r.r11);
    put(slot_r12, r.r12);
    put(slot_r13, r.r13);
    put(slot_r14, r.r14);
    put(slot_r15, r.r15);
    put(slot_rflags, r.eflags);
    put(slot_rsp, r.rsp);
    put(slot_function, function.raw());
    put(slot_mask, saved.mask);
    put(slot_result, 0);
    return block;
}

// Step 4's registers: at the trampoline, on the frame, with the XSAVE mask
// in edx:eax.
user_regs_struct call_registers(const user_regs_struct& saved, RemoteAddress trampoline,
                                std::uint64_t frame) {
    user_regs_struct call = saved;
    call.rip = trampoline.raw();
    call.rsp = frame;
    call.rax = ~0ull;
    call.rdx = ~0ull;
    call.orig_rax = static_cast<unsigned long long>(-1);
    call.eflags &= ~(flag_tf | flag_df);
    return call;
}

// Waits for the next stop of `tid` until `deadline`; nullopt at the deadline.
Result<std::optional<WaitStatus>> next_stop(int tid, std::chrono::steady_clock::time_point deadline,
                                            const std::string& subject) {
    auto status = wait_for_stop_until(tid, deadline, subject);
    if (!status) {
        return tl::unexpected(status.error());
    }
    if (*status && (*status)->ended()) {
        return fail(ErrorCode::target_died, subject + ": the target died during the call");
    }
    return status;
}

// Resumes `tid` with `request`, handing no signal to it.
Result<void> resume_with(int tid, __ptrace_request request, const std::string& subject) {
    if (::ptrace(request, tid, nullptr, nullptr) != 0) {
        return fail_errno(subject + ": resume the thread", errno);
    }
    return {};
}

// Step 5: PTRACE_SYSCALL until the sync call's entry (rip just after it);
// false at the hard bound.
Result<bool> run_to_sync_point(StoppedProcess& process, int tid, RemoteAddress sync_rip,
                               std::chrono::steady_clock::time_point hard_deadline,
                               const std::string& subject) {
    for (;;) {
        if (auto resumed = resume_with(tid, PTRACE_SYSCALL, subject); !resumed) {
            return tl::unexpected(resumed.error());
        }
        auto status = next_stop(tid, hard_deadline, subject);
        if (!status) {
            return tl::unexpected(status.error());
        }
        if (!*status) {
            return false;
        }
        if ((*status)->kind() == WaitStatus::Kind::signal_stop) {
            process.keep_signal(tid, (*status)->signal());
            continue;
        }
        if ((*status)->kind() != WaitStatus::Kind::syscall_stop) {
            continue;  // a group stop or a stray interrupt: on with the call
        }
        user_regs_struct regs{};
        if (::ptrace(PTRACE_GETREGS, tid, nullptr, &regs) != 0) {
            return fail_errno(subject + ": get registers", errno);
        }
        if (regs.rip == sync_rip.raw() && regs.orig_rax == SYS_rt_sigprocmask) {
            return true;
        }
        // The callee's own system call, at its entry or exit: let it through.
    }
}

// Step 6: the call runs on past the hard bound. The thread is stopped
// wherever it is (any ptrace-stop is one the detach ends); it finishes the
// call by itself once the process is resumed.
Result<void> leave_running(StoppedProcess& process, int tid, const std::string& subject) {
    if (::ptrace(PTRACE_INTERRUPT, tid, nullptr, nullptr) != 0) {
        return fail_errno(subject + ": interrupt the thread", errno);
    }
    auto deadline = std::chrono::steady_clock::now() + stop_bound;
    for (;;) {
        auto status = next_stop(tid, deadline, subject);
        if (!status) {
            return tl::unexpected(status.error());
        }
        if (!*status) {
            return fail(ErrorCode::io, subject + ": the thread did not stop after the hard bound");
        }
        if ((*status)->kind() == WaitStatus::Kind::signal_stop) {
            process.keep_signal(tid, (*status)->signal());
            if (auto resumed = resume_with(tid, PTRACE_CONT, subject); !resumed) {
                return tl::unexpected(resumed.error());
            }
            continue;
        }
        return {};  // interrupt, group or system-call stop: detachable
    }
}

// Step 7: from the sync call's entry to an interrupt stop with the thread
// as it was.
Result<void> finish_call(StoppedProcess& process, int tid, const SavedThread& saved,
                         const std::string& subject) {
    auto deadline = std::chrono::steady_clock::now() + stop_bound;
    if (auto resumed = resume_with(tid, PTRACE_SYSCALL, subject); !resumed) {
        return tl::unexpected(resumed.error());
    }
    for (;;) {  // to the exit of the sync call
        auto status = next_stop(tid, deadline, subject);
        if (!status) {
            return tl::unexpected(status.error());
        }
        if (!*status) {
            return fail(ErrorCode::io, subject + ": the sync call did not return");
        }
        if ((*status)->kind() == WaitStatus::Kind::syscall_stop) {
            break;
        }
        if ((*status)->kind() == WaitStatus::Kind::signal_stop) {
            process.keep_signal(tid, (*status)->signal());
        }
        if (auto resumed = resume_with(tid, PTRACE_SYSCALL, subject); !resumed) {
            return tl::unexpected(resumed.error());
        }
    }
    if (::ptrace(PTRACE_INTERRUPT, tid, nullptr, nullptr) != 0) {
        return fail_errno(subject + ": interrupt the thread", errno);
    }
    if (auto restored = restore_thread(tid, saved, subject); !restored) {
        return restored;
    }
    for (;;) {  // into the interrupt stop
        if (auto resumed = resume_with(tid, PTRACE_CONT, subject); !resumed) {
            return tl::unexpected(resumed.error());
        }
        auto status = next_stop(tid, deadline, subject);
        if (!status) {
            return tl::unexpected(status.error());
        }
        if (!*status) {
            return fail(ErrorCode::io, subject + ": the thread did not stop again");
        }
        if ((*status)->event_stop()) {
            return {};
        }
        if ((*status)->kind() == WaitStatus::Kind::signal_stop) {
            process.keep_signal(tid, (*status)->signal());
        }
    }
}

}  // namespace

CallFrame call_frame(std::uint64_t rsp, std::size_t xsave_size) {
    std::uint64_t area = (std::max<std::size_t>(xsave_size, 512) + 63) & ~std::uint64_t{63};
    CallFrame frame;
    frame.save_block = area;
    frame.frame = (rsp - red_zone - call_save_block_size - area) & ~std::uint64_t{63};
    frame.lowest_used = frame.frame - callee_stack;
    return frame;
}

std::vector<std::byte> call_trampoline(std::uint64_t save_block, bool use_xsave,
                                       std::uint64_t resume_rip, std::size_t& done) {
    Code code;
    // xsave64 / fxsave64 (%rsp): the thread's own vector state.
    code.bytes({0x48, 0x0f, 0xae, use_xsave ? 0x24u : 0x04u, 0x24});
    // call *function(%rsp)
    code.bytes({0xff, 0x94, 0x24});
    code.u32(static_cast<std::uint32_t>(save_block + slot_function));
    // mov %rax, result(%rsp)
    code.rsp_relative(0x89, 0, save_block + slot_result);
    // rt_sigprocmask(SIG_SETMASK, &old mask, NULL, 8): the sync point.
    code.bytes({0xb8});
    code.u32(SYS_rt_sigprocmask);
    code.bytes({0xbf});
    code.u32(SIG_SETMASK);
    code.rsp_relative(0x8d, 6, save_block + slot_mask);  // lea mask(%rsp), %rsi
    code.bytes({0x31, 0xd2});                             // xor %edx, %edx
    code.bytes({0x41, 0xba, 0x08, 0x00, 0x00, 0x00});     // mov $8, %r10d
    code.bytes({0x0f, 0x05});                             // syscall
    done = code.size();
    // What runs only when this tool is gone: everything back, then home.
    code.bytes({0xb8, 0xff, 0xff, 0xff, 0xff});  // mov $-1, %eax
    code.bytes({0xba, 0xff, 0xff, 0xff, 0xff});  // mov $-1, %edx
    code.bytes({0x48, 0x0f, 0xae, use_xsave ? 0x2cu : 0x0cu, 0x24});  // xrstor64 / fxrstor64
    code.bytes({0xff, 0xb4, 0x24});                                    // push rflags(%rsp)
    code.u32(static_cast<std::uint32_t>(save_block + slot_rflags));
    code.bytes({0x9d});  // popfq
    for (const SavedRegister& reg : restored_registers) {
        code.rsp_relative(0x8b, reg.number, save_block + reg.slot);
    }
    code.rsp_relative(0x8b, 4, save_block + slot_rsp);   // mov rsp(%rsp), %rsp
    code.bytes({0xff, 0x25, 0x00, 0x00, 0x00, 0x00});    // jmp *0(%rip)
    code.u64(resume_rip);
    return code.take();
}

Result<RemoteCallResult> call_in_target(StoppedProcess& process, const RemoteMemory& memory,
                                        const std::vector<Mapping>& mappings,
                                        const RemoteSyscall& syscall, RemoteAddress function,
                                        const std::vector<CodeRange>& avoid,
                                        const RemoteCallBounds& bounds) {
    std::string subject = "pid " + std::to_string(process.pid()) + ": call " +
                          hex_address(function);
    std::size_t xsave_size = xsave_area_size();
    // 1. The thread.
    auto chosen = choose_thread(process, mappings, avoid, xsave_size, subject);
    if (!chosen) {
        return tl::unexpected(chosen.error());
    }
    int tid = chosen->thread->tid;
    subject += " on thread " + std::to_string(tid);
    // 2. What it was.
    auto saved = save_thread(tid, subject);
    if (!saved) {
        return tl::unexpected(saved.error());
    }
    CallFrame frame = call_frame(saved->regs.rsp, std::max(xsave_size, saved->xstate.size()));
    // 3. The frame and the trampoline.
    RemoteSyscall::Site site = syscall.spare_bytes();
    std::size_t done = 0;
    std::vector<std::byte> trampoline =
        call_trampoline(frame.save_block, xsave_size != 0, resume_point(saved->regs).rip, done);
    if (site.end - site.start < trampoline.size()) {
        return fail(ErrorCode::unsupported,
                    subject + ": no room for the call trampoline in dead executable bytes");
    }
    // The XSAVE area zeroed (XSAVE writes only XSTATE_BV of its header, and
    // XRSTOR faults on stale bytes in the rest), then the save block.
    auto block = save_block_of(*saved, function);
    std::vector<std::byte> frame_bytes(frame.save_block);
    auto block_bytes = std::as_bytes(std::span(block));
    frame_bytes.insert(frame_bytes.end(), block_bytes.begin(), block_bytes.end());
    if (auto written = memory.write(RemoteAddress(frame.frame), frame_bytes); !written) {
        return tl::unexpected(written.error());
    }
    if (auto written = memory.write(site.start, trampoline); !written) {
        return tl::unexpected(written.error());
    }
    // 4. Into the trampoline, then every signal blocked.
    user_regs_struct call = call_registers(saved->regs, site.start, frame.frame);
    std::uint64_t blocked = ~std::uint64_t{0};
    if (::ptrace(PTRACE_SETREGS, tid, nullptr, &call) != 0 ||
        ::ptrace(PTRACE_SETSIGMASK, tid, reinterpret_cast<void*>(sizeof blocked), &blocked) != 0) {
        int error = errno;
        (void)restore_thread(tid, *saved, subject);
        return fail_errno(subject + ": set up the call", error);
    }
    chosen->thread->in_delivery_stop = false;
    // 5. The call, within the bounds (6).
    auto started = std::chrono::steady_clock::now();
    auto synced = run_to_sync_point(process, tid, site.start + done, started + bounds.hard_bound,
                                    subject);
    if (!synced) {
        return tl::unexpected(synced.error());
    }
    RemoteCallResult result;
    result.tid = tid;
    result.duration = std::chrono::steady_clock::now() - started;
    if (!*synced) {
        if (auto left = leave_running(process, tid, subject); !left) {
            return tl::unexpected(left.error());
        }
        result.kind = RemoteCallResult::Kind::timed_out;
        return result;
    }
    auto value = memory.read(RemoteAddress(frame.frame + frame.save_block + slot_result), 8);
    if (!value) {
        return tl::unexpected(value.error());
    }
    std::int32_t returned = 0;
    std::memcpy(&returned, value->data(), sizeof returned);
    result.value = returned;
    // 7. The thread as it was.
    if (auto finished = finish_call(process, tid, *saved, subject); !finished) {
        return tl::unexpected(finished.error());
    }
    return result;
}

}  // namespace suture
