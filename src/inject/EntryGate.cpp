#include "inject/EntryGate.h"

#include <elf.h>
#include <signal.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/user.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <thread>

#include "base/Files.h"
#include "base/Log.h"
#include "elf/ElfFile.h"
#include "inject/RemoteMemory.h"
#include "inject/WaitStatus.h"
#include "proc/Process.h"
#include "proc/ProcessMaps.h"

namespace suture {

namespace {

constexpr std::array<unsigned char, 2> spin = {0xeb, 0xfe};  // jmp .

std::string subject_of(int pid) {
    return "pid " + std::to_string(pid);
}

// A short ptrace hold on a single-threaded process: seize, interrupt, wait
// for the stop; detaching (with any signal that arrived meanwhile) in the
// destructor, on every path: a thread seized but not yet seen stopped is
// waited for first (detach_when_stopped). The whole hold lasts microseconds.
class BriefStop {
  public:
    static Result<BriefStop> take(int pid) {
        if (::ptrace(PTRACE_SEIZE, pid, nullptr, nullptr) != 0) {
            return fail_errno(subject_of(pid) + ": seize", errno);
        }
        BriefStop stop(pid);
        if (::ptrace(PTRACE_INTERRUPT, pid, nullptr, nullptr) != 0) {
            return fail_errno(subject_of(pid) + ": interrupt", errno);
        }
        for (;;) {
            auto status = wait_for_stop(pid, subject_of(pid));
            if (!status) {
                return tl::unexpected(status.error());
            }
            if (status->ended()) {
                stop.attached_ = false;
                return fail(ErrorCode::target_died, subject_of(pid) + ": exited");
            }
            if (status->event_stop()) {
                stop.stopped_ = true;
                return stop;  // our interrupt (or a group-stop): stopped
            }
            // A signal arrived first: keep it for the detach, wait on.
            stop.pending_signal_ = status->signal();
            ::ptrace(PTRACE_CONT, pid, nullptr, nullptr);
            ::ptrace(PTRACE_INTERRUPT, pid, nullptr, nullptr);
        }
    }

    BriefStop(BriefStop&& other) noexcept
        : pid_(other.pid_),
          attached_(std::exchange(other.attached_, false)),
          stopped_(other.stopped_),
          pending_signal_(other.pending_signal_) {}
    BriefStop& operator=(BriefStop&&) = delete;
    ~BriefStop() {
        if (!attached_) {
            return;
        }
        if (!stopped_) {
            detach_when_stopped(pid_);  // an error cut take() short
            if (pending_signal_ != 0) {
                ::syscall(SYS_tgkill, pid_, pid_, pending_signal_);
            }
            return;
        }
        ::ptrace(PTRACE_DETACH, pid_, nullptr,
                 reinterpret_cast<void*>(static_cast<long>(pending_signal_)));
    }

    Result<RemoteAddress> instruction_pointer() const {
        user_regs_struct registers{};
        if (::ptrace(PTRACE_GETREGS, pid_, nullptr, &registers) != 0) {
            return fail_errno(subject_of(pid_) + ": registers", errno);
        }
        return RemoteAddress(registers.rip);
    }

  private:
    explicit BriefStop(int pid) : pid_(pid) {}
    int pid_;
    bool attached_ = true;
    bool stopped_ = false;  // seen in its ptrace-stop: PTRACE_DETACH works
    int pending_signal_ = 0;
};

Result<RemoteAddress> entry_point_of(int pid) {
    auto auxv = read_file("/proc/" + std::to_string(pid) + "/auxv");
    if (!auxv) {
        return tl::unexpected(auxv.error());
    }
    for (std::size_t at = 0; at + 16 <= auxv->size(); at += 16) {
        std::uint64_t type = 0;
        std::uint64_t value = 0;
        std::memcpy(&type, auxv->data() + at, 8);
        std::memcpy(&value, auxv->data() + at + 8, 8);
        if (type == AT_ENTRY) {
            return RemoteAddress(value);
        }
    }
    return fail(ErrorCode::not_found, subject_of(pid) + ": no AT_ENTRY in auxv");
}

// Is `address` inside the dynamic loader (ld-linux*.so, ld.so)?
bool in_dynamic_loader(const std::vector<Mapping>& mappings, RemoteAddress address) {
    const Mapping* mapping = find_mapping(mappings, address.raw());
    if (mapping == nullptr) {
        return false;
    }
    std::string name = std::filesystem::path(mapping->path).filename();
    return name.starts_with("ld-linux") || name.starts_with("ld.so") || name.starts_with("ld-");
}

Result<std::array<unsigned char, 2>> read_entry(const RemoteMemory& memory, RemoteAddress entry) {
    auto bytes = memory.read(entry, 2);
    if (!bytes) {
        return tl::unexpected(bytes.error());
    }
    return std::array<unsigned char, 2>{static_cast<unsigned char>((*bytes)[0]),
                                        static_cast<unsigned char>((*bytes)[1])};
}

Result<void> write_entry(const RemoteMemory& memory, RemoteAddress entry,
                         const std::array<unsigned char, 2>& bytes) {
    return memory.write(entry, std::as_bytes(std::span(bytes)));
}

}  // namespace

Result<std::optional<ParkedProcess>> park_at_entry(int pid) {
    auto info = read_process_info(pid);
    if (!info) {
        return tl::unexpected(info.error());
    }
    auto entry = entry_point_of(pid);
    if (!entry) {
        return tl::unexpected(entry.error());
    }
    auto stop = BriefStop::take(pid);
    if (!stop) {
        return tl::unexpected(stop.error());
    }
    auto threads = list_thread_ids(pid);
    if (!threads || threads->size() != 1) {
        return std::optional<ParkedProcess>{};
    }
    auto rip = stop->instruction_pointer();
    auto mappings = read_process_maps(pid);
    if (!rip || !mappings) {
        return tl::unexpected(!rip ? rip.error() : mappings.error());
    }
    if (!in_dynamic_loader(*mappings, *rip)) {
        const Mapping* where = find_mapping(*mappings, rip->raw());
        log::debug(subject_of(pid) + ": at " + hex_address(*rip) + " in " +
                   (where != nullptr ? where->path : std::string("?")) + ": past the loader");
        return std::optional<ParkedProcess>{};  // already running the program
    }
    auto memory = RemoteMemory::open(pid, true);
    if (!memory) {
        return tl::unexpected(memory.error());
    }
    auto original = read_entry(*memory, *entry);
    if (!original) {
        return tl::unexpected(original.error());
    }
    if (*original == spin) {
        return fail(ErrorCode::conflict, subject_of(pid) + ": its entry already spins");
    }
    if (auto written = write_entry(*memory, *entry, spin); !written) {
        return tl::unexpected(written.error());
    }
    return std::optional<ParkedProcess>(
        ParkedProcess{pid, info->start_time, entry->raw(), *original});
}

Result<void> wait_until_parked(const ParkedProcess& parked, std::chrono::milliseconds timeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    auto pause = std::chrono::microseconds(50);
    for (;;) {
        {
            auto stop = BriefStop::take(parked.pid);
            if (!stop) {
                return tl::unexpected(stop.error());
            }
            auto rip = stop->instruction_pointer();
            if (!rip) {
                return tl::unexpected(rip.error());
            }
            if (*rip == RemoteAddress(parked.entry)) {
                return {};
            }
        }
        if (std::chrono::steady_clock::now() > deadline) {
            return fail(ErrorCode::unsafe,
                        subject_of(parked.pid) + ": did not reach its entry point in time");
        }
        std::this_thread::sleep_for(pause);
        pause = std::min(pause * 2, std::chrono::microseconds(2000));
    }
}

Result<void> release_parked(const ParkedProcess& parked) {
    auto info = read_process_info(parked.pid);
    if (!info || info->start_time != parked.start_time) {
        return {};  // gone (or another process with that PID): nothing to put back
    }
    auto stop = BriefStop::take(parked.pid);
    if (!stop) {
        return tl::unexpected(stop.error());
    }
    auto memory = RemoteMemory::open(parked.pid, true);
    if (!memory) {
        return tl::unexpected(memory.error());
    }
    auto current = read_entry(*memory, RemoteAddress(parked.entry));
    if (!current) {
        return tl::unexpected(current.error());
    }
    if (*current != spin) {
        return {};  // already released
    }
    return write_entry(*memory, RemoteAddress(parked.entry), parked.original);
}

std::size_t release_abandoned() {
    std::size_t released = 0;
    auto pids = list_process_ids();
    if (!pids) {
        return 0;
    }
    for (int pid : *pids) {
        auto entry = entry_point_of(pid);
        auto info = read_process_info(pid);
        auto memory = RemoteMemory::open(pid, false);
        if (!entry || !info || !memory) {
            continue;
        }
        auto current = read_entry(*memory, *entry);
        if (!current || *current != spin) {
            continue;
        }
        // The original bytes, from the file: its e_entry is at the same
        // place relative to the load bias as AT_ENTRY is in memory.
        auto fd = open_read_only("/proc/" + std::to_string(pid) + "/exe");
        if (!fd) {
            continue;
        }
        auto elf = ElfFile::open(*fd, "pid " + std::to_string(pid) + " executable");
        if (!elf) {
            continue;
        }
        auto offset = elf->offset_of_address(elf->entry_address());
        if (!offset) {
            continue;
        }
        auto bytes = elf->bytes_at(*offset, 2);
        if (!bytes) {
            continue;
        }
        std::array<unsigned char, 2> original = {static_cast<unsigned char>((*bytes)[0]),
                                                 static_cast<unsigned char>((*bytes)[1])};
        if (original == spin) {
            continue;  // the program itself begins so: not ours
        }
        if (release_parked(ParkedProcess{pid, info->start_time, entry->raw(), original})) {
            log::warning(subject_of(pid) +
                         ": released from its entry point, where a previous "
                         "sutured had parked it");
            ++released;
        }
    }
    return released;
}

}  // namespace suture
