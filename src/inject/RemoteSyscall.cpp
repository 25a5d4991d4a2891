#include "inject/RemoteSyscall.h"

#include <signal.h>
#include <sys/ptrace.h>
#include <sys/user.h>
#include <sys/wait.h>

#include <cstring>
#include <string>

#include "inject/RemoteMemory.h"
#include "proc/ProcessMaps.h"

namespace suture {

namespace {

bool is_syscall_source(const Mapping& mapping) {
    if (!mapping.executable || !mapping.readable) {
        return false;
    }
    if (mapping.path == "[vdso]") {
        return true;
    }
    std::string_view path = mapping.path;
    std::size_t slash = path.rfind('/');
    std::string_view file = slash == std::string_view::npos ? path : path.substr(slash + 1);
    return file.starts_with("libc.so") || file.starts_with("libc-") || file.starts_with("ld-linux");
}

}  // namespace

Result<std::uint64_t> RemoteSyscall::find_instruction(int pid, const std::vector<Mapping>& mappings) {
    std::string subject = "pid " + std::to_string(pid);
    auto memory = RemoteMemory::open(pid, false);
    if (!memory) {
        return tl::unexpected(memory.error());
    }
    // The vDSO first (small, always there), then libc and the loader.
    for (int pass = 0; pass < 2; ++pass) {
        for (const Mapping& mapping : mappings) {
            if (!is_syscall_source(mapping) || (pass == 0) != (mapping.path == "[vdso]")) {
                continue;
            }
            std::size_t size = std::min<std::uint64_t>(mapping.end - mapping.start, 4 << 20);
            auto bytes = memory->read(mapping.start, size);
            if (!bytes) {
                continue;
            }
            for (std::size_t i = 0; i + 1 < bytes->size(); ++i) {
                if ((*bytes)[i] == std::byte{0x0f} && (*bytes)[i + 1] == std::byte{0x05}) {
                    return mapping.start + i;
                }
            }
        }
    }
    return fail(ErrorCode::unsupported, subject + ": no syscall instruction found in vDSO or libc");
}

Result<long> RemoteSyscall::call(long number, std::uint64_t a0, std::uint64_t a1, std::uint64_t a2,
                                 std::uint64_t a3, std::uint64_t a4, std::uint64_t a5) {
    StoppedThread& thread = process_.worker();
    std::string subject = "pid " + std::to_string(process_.pid()) + ": injected syscall " +
                          std::to_string(number);
    user_regs_struct saved{};
    if (::ptrace(PTRACE_GETREGS, thread.tid, nullptr, &saved) != 0) {
        return fail_errno(subject + ": get registers", errno);
    }
    user_regs_struct call = saved;
    call.rax = static_cast<unsigned long long>(number);
    call.rdi = a0;
    call.rsi = a1;
    call.rdx = a2;
    call.r10 = a3;
    call.r8 = a4;
    call.r9 = a5;
    call.rip = instruction_;
    call.orig_rax = static_cast<unsigned long long>(-1);
    if (::ptrace(PTRACE_SETREGS, thread.tid, nullptr, &call) != 0) {
        return fail_errno(subject + ": set registers", errno);
    }
    user_regs_struct after{};
    for (int attempt = 0;; ++attempt) {
        if (::ptrace(PTRACE_SINGLESTEP, thread.tid, nullptr, nullptr) != 0) {
            return fail_errno(subject + ": single-step", errno);
        }
        int status = 0;
        while (::waitpid(thread.tid, &status, __WALL) < 0) {
            if (errno != EINTR) {
                return fail_errno(subject + ": wait", errno);
            }
        }
        if (WIFEXITED(status) || WIFSIGNALED(status)) {
            return fail(ErrorCode::target_died, subject + ": the target died");
        }
        if (::ptrace(PTRACE_GETREGS, thread.tid, nullptr, &after) != 0) {
            return fail_errno(subject + ": get registers", errno);
        }
        if (WIFSTOPPED(status) && WSTOPSIG(status) == SIGTRAP && after.rip == instruction_ + 2) {
            break;
        }
        if (WIFSTOPPED(status) && WSTOPSIG(status) != SIGTRAP && (status >> 16) == 0) {
            process_.keep_signal(thread.tid, WSTOPSIG(status));
        }
        if (attempt > 100) {
            ::ptrace(PTRACE_SETREGS, thread.tid, nullptr, &saved);
            return fail(ErrorCode::io, subject + ": the thread never reached the system call");
        }
        if (after.rip != instruction_) {
            // Not at the instruction any more and no trap: give up safely.
            ::ptrace(PTRACE_SETREGS, thread.tid, nullptr, &saved);
            return fail(ErrorCode::io, subject + ": the thread left the system call");
        }
    }
    if (::ptrace(PTRACE_SETREGS, thread.tid, nullptr, &saved) != 0) {
        return fail_errno(subject + ": restore registers", errno);
    }
    return static_cast<long>(after.rax);
}

}  // namespace suture
