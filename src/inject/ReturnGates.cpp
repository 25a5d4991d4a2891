#include "inject/ReturnGates.h"

#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/user.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <fstream>
#include <thread>

#include "inject/RemoteMapping.h"
#include "inject/RemoteUnwinder.h"

namespace suture {

namespace {

constexpr int max_frames = 256;

std::uint64_t now_unix_ns() {
    return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                          std::chrono::system_clock::now().time_since_epoch())
                                          .count());
}

std::uint64_t hold_deadline_tsc() {
    return read_tsc() + static_cast<std::uint64_t>(gate_hold_bound.count()) * tsc_ticks_per_ms();
}

bool in_ranges(const std::vector<CodeRange>& ranges, std::uint64_t address) {
    for (const CodeRange& range : ranges) {
        if (address >= range.start && address < range.end) {
            return true;
        }
    }
    return false;
}

std::vector<std::pair<std::uint64_t, std::uint64_t>> bounds_of(
    const std::vector<CodeRange>& ranges) {
    std::vector<std::pair<std::uint64_t, std::uint64_t>> bounds;
    for (const CodeRange& range : ranges) {
        bounds.emplace_back(range.start, range.end);
    }
    return bounds;
}

std::array<std::byte, 8> bytes_of(std::uint64_t value) {
    std::array<std::byte, 8> bytes;
    std::memcpy(bytes.data(), &value, sizeof value);
    return bytes;
}

// A thread with a hardware shadow stack (CET user shadow stacks, Linux 6.6
// and a glibc that enables them) would fault at the `ret` into a gate: the
// shadow stack still holds the original return address.
bool has_shadow_stack(int pid, int tid) {
    std::ifstream status("/proc/" + std::to_string(pid) + "/task/" + std::to_string(tid) +
                         "/status");
    std::string line;
    while (std::getline(status, line)) {
        if (line.rfind("x86_Thread_features:", 0) == 0) {
            return line.find("shstk") != std::string::npos;
        }
    }
    return false;
}

// Where a blocking thread's return out of the replaced code sits.
struct ReturnSlot {
    int tid = 0;
    RemoteAddress slot;            // on the thread's stack
    std::uint64_t return_address;  // what it holds
};

// Finds the return slot of `tid`'s outermost frame in `ranges`, or nullopt
// when the thread cannot be gated: its unwind is incomplete (unknown is not
// safe), no frame is in the ranges (it blocks for another reason), the
// frame has no caller, or the stack slot below the frame's CFA does not hold
// the return address the unwind found.
Result<std::optional<ReturnSlot>> find_return_slot(RemoteUnwinder& unwinder,
                                                   const RemoteMemory& memory, int tid,
                                                   const std::vector<CodeRange>& ranges) {
    auto chain = unwinder.unwind(tid, max_frames);
    if (!chain) {
        return tl::unexpected(chain.error());
    }
    if (!chain->complete) {
        return std::nullopt;
    }
    std::optional<std::size_t> outermost;
    for (std::size_t depth = 0; depth < chain->frames.size(); ++depth) {
        // A return address points after its call: the call is at ip - 1.
        std::uint64_t ip = chain->frames[depth];
        if (in_ranges(ranges, depth == 0 ? ip : ip - 1)) {
            outermost = depth;
        }
    }
    if (!outermost || *outermost + 1 >= chain->frames.size() || *outermost >= chain->cfas.size()) {
        return std::nullopt;
    }
    std::uint64_t return_address = chain->frames[*outermost + 1];
    // x86-64: `call` pushed the return address just below the caller's
    // stack pointer, which is the CFA of the callee's frame.
    RemoteAddress slot(chain->cfas[*outermost] - 8);
    auto held = memory.read(slot, 8);
    if (!held) {
        return std::nullopt;
    }
    std::uint64_t value = 0;
    std::memcpy(&value, held->data(), sizeof value);
    if (value != return_address) {
        return std::nullopt;
    }
    return ReturnSlot{tid, slot, return_address};
}

// Whether the suture that made a gate page still runs (the pid may have been
// reused meanwhile: then the page waits for its deadline).
bool owner_alive(std::uint32_t pid) {
    return pid != 0 && (::kill(static_cast<pid_t>(pid), 0) == 0 || errno == EPERM);
}

}  // namespace

ReturnGates::~ReturnGates() {
    release();
}

bool ReturnGates::excuse_gated(HeldProcess& held, const std::vector<CodeRange>& ranges) {
    if (gates_.empty() || bounds_of(ranges) != ranges_) {
        return held.blocking.empty();
    }
    // Why a thread in its gate needs no stack check: it was gated only after
    // a complete unwind showed every frame beyond the redirected one outside
    // the replaced code, and it got into the gate by returning out of that
    // frame, so nothing of the replaced code is left on its stack; the only
    // way back into it is through the gate, which holds it until release.
    // (A signal handler running on top of the gate shows a PC outside the
    // gate: that thread is checked as usual, and blocks.)
    std::erase_if(held.blocking, [&](const BlockingThread& thread) {
        user_regs_struct registers{};
        if (::ptrace(PTRACE_GETREGS, thread.tid, nullptr, &registers) != 0) {
            return false;
        }
        for (const Gate& gate : gates_) {
            RemoteAddress code = gate_code_address(*page_, gate.index);
            if (gate.tid == thread.tid && registers.rip >= code.raw() &&
                registers.rip < (code + gate_code_size).raw()) {
                return true;
            }
        }
        return false;
    });
    return held.blocking.empty();
}

Result<RemoteAddress> ReturnGates::map_page(HeldProcess& held, RemoteSyscall::Site site,
                                            RemoteAddress low, RemoteAddress high) {
    std::string subject = subject_of(pid_);
    auto syscall = RemoteSyscall::install(held.stopped, held.memory, held.mappings, site);
    if (!syscall) {
        return tl::unexpected(syscall.error());
    }
    GatePageHeader header{0, now_unix_ns(), static_cast<std::uint32_t>(::getpid())};
    std::vector<std::byte> image = encode_gate_page(header, hold_deadline_tsc());
    auto address = map_region(
        *syscall, held.memory, held.mappings, low, high, gate_page_size,
        [&](RemoteAddress) -> Result<std::vector<std::byte>> { return image; }, subject);
    if (!address) {
        return tl::unexpected(address.error());
    }
    // The gates write their arrived bytes: the data page becomes writable
    // (and loses exec). Nothing points into the page yet, so a failure here
    // takes it away again.
    auto protected_ = syscall->call(SYS_mprotect, (*address + gate_data_offset).raw(), 4096,
                                    PROT_READ | PROT_WRITE);
    if (!protected_ || *protected_ != 0) {
        (void)unmap_region(*syscall, *address, gate_page_size, subject);
        if (!protected_) {
            return tl::unexpected(protected_.error());
        }
        return fail(ErrorCode::io, subject + ": mprotect of the gate page failed: " +
                                       std::strerror(static_cast<int>(-*protected_)));
    }
    auto memory = RemoteMemory::open(pid_, true);
    if (!memory) {
        (void)unmap_region(*syscall, *address, gate_page_size, subject);
        return tl::unexpected(memory.error());
    }
    memory_.emplace(std::move(*memory));
    return *address;
}

Result<std::size_t> ReturnGates::gate_blockers(HeldProcess& held,
                                               const std::vector<CodeRange>& ranges,
                                               RemoteSyscall::Site site, RemoteAddress low,
                                               RemoteAddress high) {
    last_round_.clear();
    if (held.attempt >= attempts_ || released_ ||
        (!ranges_.empty() && bounds_of(ranges) != ranges_)) {
        return 0;
    }
    // 1. Where each blocker's return out of the replaced code sits.
    std::vector<ReturnSlot> slots;
    {
        RemoteUnwinder unwinder(held.mappings, held.memory);
        for (const BlockingThread& thread : held.blocking) {
            if (gates_.size() + slots.size() >= gate_capacity ||
                has_shadow_stack(pid_, thread.tid)) {
                continue;
            }
            auto slot = find_return_slot(unwinder, held.memory, thread.tid, ranges);
            if (!slot) {
                return tl::unexpected(slot.error());
            }
            if (*slot) {
                slots.push_back(**slot);
            }
        }
    }
    if (slots.empty()) {
        return 0;
    }
    // 2. The page, at the first gating.
    if (!page_) {
        auto page = map_page(held, site, low, high);
        if (!page) {
            return tl::unexpected(page.error());
        }
        page_ = *page;
        ranges_ = bounds_of(ranges);
    }
    // 3. A fresh deadline for this round, then each gate and its return
    // slot before the thread's stack points at it: a suture killed in
    // between leaves only complete gates behind.
    if (auto written = memory_->write(*page_ + gate_data_offset + gate_deadline_offset,
                                      bytes_of(hold_deadline_tsc()));
        !written) {
        return tl::unexpected(written.error());
    }
    for (const ReturnSlot& slot : slots) {
        std::size_t index = gates_.size();
        auto code = encode_gate(*page_, index);
        auto count = static_cast<std::uint32_t>(index + 1);
        std::array<std::byte, 4> count_bytes;
        std::memcpy(count_bytes.data(), &count, sizeof count);
        Result<void> written = held.memory.write(gate_code_address(*page_, index), code);
        written = written.and_then([&] {
            return held.memory.write(gate_slot_address(*page_, index),
                                     bytes_of(slot.return_address));
        });
        written = written.and_then(
            [&] { return held.memory.write(*page_ + gate_count_offset, count_bytes); });
        // 4. The thread's return now leads into its gate.
        written = written.and_then([&] {
            return held.memory.write(slot.slot, bytes_of(gate_code_address(*page_, index).raw()));
        });
        if (!written) {
            return tl::unexpected(written.error());
        }
        gates_.push_back(Gate{slot.tid, index});
        last_round_.push_back(gates_.back());
    }
    gated_ += slots.size();
    ++rounds_;
    return slots.size();
}

bool ReturnGates::wait_for_arrivals() {
    if (last_round_.empty() || !memory_) {
        return false;
    }
    auto deadline = std::chrono::steady_clock::now() + gate_arrival_bound;
    RemoteAddress arrived = *page_ + gate_data_offset + gate_arrived_offset;
    while (std::chrono::steady_clock::now() < deadline) {
        auto flags = memory_->read(arrived, gate_capacity);
        if (!flags) {
            break;  // the process died: the next stop says so
        }
        bool all = true;
        for (const Gate& gate : last_round_) {
            all = all && (*flags)[gate.index] != std::byte{0};
        }
        if (all) {
            break;
        }
        std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    last_round_.clear();
    return true;
}

void ReturnGates::release() {
    if (!page_ || !memory_ || released_) {
        return;
    }
    released_ = true;
    RemoteAddress data = *page_ + gate_data_offset;
    // Errors only mean the process is gone, or the page already was
    // unmapped by a later stop (no thread was in it).
    (void)memory_->write(data + gate_released_at_offset, bytes_of(now_unix_ns()));
    (void)memory_->write(data + gate_release_offset, std::array<std::byte, 1>{std::byte{1}});
}

std::vector<GatePage> find_gate_pages(const RemoteMemory& memory,
                                      const std::vector<Mapping>& mappings) {
    std::vector<GatePage> pages;
    for (const Mapping& mapping : mappings) {
        std::uint64_t size = mapping.end - mapping.start;
        if (mapping.inode != 0 || !mapping.path.empty() || !mapping.executable ||
            mapping.writable || mapping.shared || (size != 4096 && size != gate_page_size)) {
            continue;
        }
        RemoteAddress start(mapping.start);
        auto head = memory.read(start, gate_header_size);
        if (!head) {
            continue;
        }
        auto header = decode_gate_page_header(*head);
        if (!header) {
            continue;
        }
        GatePage page{mapping.start, *header, 0, false, 0, false};
        auto data = memory.read(start + gate_data_offset, gate_arrived_offset + gate_capacity);
        if (data) {
            page.released = (*data)[gate_release_offset] != std::byte{0};
            std::uint64_t deadline = 0;
            std::memcpy(&deadline, data->data() + gate_deadline_offset, sizeof deadline);
            std::memcpy(&page.released_at_unix_ns, data->data() + gate_released_at_offset,
                        sizeof page.released_at_unix_ns);
            page.deadline_passed = read_tsc() > deadline;
            for (std::size_t k = 0; k < header->gates; ++k) {
                page.arrived += (*data)[gate_arrived_offset + k] != std::byte{0} ? 1 : 0;
            }
        }
        pages.push_back(page);
    }
    return pages;
}

Result<std::size_t> release_clear_gate_pages(HeldProcess& held, RemoteSyscall& syscall,
                                             const std::string& subject) {
    std::size_t released = 0;
    for (const GatePage& page : find_gate_pages(held.memory, held.mappings)) {
        // A page whose apply still waits on it is neither released nor past
        // its deadline, and its suture lives. One whose suture died is
        // released here (its gates would let go at their deadline anyway).
        if (!page.released && !page.deadline_passed && owner_alive(page.header.owner_pid)) {
            continue;
        }
        if (!page.released) {
            RemoteAddress data = RemoteAddress(page.address) + gate_data_offset;
            (void)held.memory.write(data + gate_released_at_offset, bytes_of(now_unix_ns()));
            (void)held.memory.write(data + gate_release_offset,
                                    std::array<std::byte, 1>{std::byte{1}});
        }
        CodeRange range{page.address, page.address + gate_page_size, "gate page"};
        auto blocking = find_blocking_threads(held.stopped, {range}, held.mappings, held.memory);
        if (!blocking) {
            return tl::unexpected(blocking.error());
        }
        if (!blocking->empty()) {
            continue;  // a thread is in a gate, or will return into one
        }
        if (auto unmapped =
                unmap_region(syscall, RemoteAddress(page.address), gate_page_size, subject);
            !unmapped) {
            return tl::unexpected(unmapped.error());
        }
        ++released;
    }
    return released;
}

}  // namespace suture
