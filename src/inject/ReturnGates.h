#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "base/Error.h"
#include "inject/HeldProcess.h"
#include "inject/RemoteAddress.h"
#include "inject/RemoteMemory.h"
#include "inject/RemoteSyscall.h"
#include "inject/ReturnGate.h"
#include "inject/StackCheck.h"

namespace suture {

// How long a strict apply waits for gated threads to arrive at their gates
// (the process runs meanwhile), and how long a gate holds its thread at
// most should nobody release it (suture killed): the TSC deadline.
inline constexpr std::chrono::milliseconds gate_arrival_bound{300};
inline constexpr std::chrono::milliseconds gate_hold_bound{1000};

// The return gates of one strict apply (ReturnGate.h has the mechanism):
// the steps of docs/architecture.md, "Strict patches on busy functions".
//  1. A try's stack check finds threads in the way: gate_blockers() gives
//     each thread whose unwind is complete a gate on the return address of
//     its outermost frame in the replaced code (mapping the gate page at the
//     first gating), in the stop.
//  2. The process runs; wait_for_arrivals() polls the gates' arrived bytes
//     (no stop) until every gated thread is in its gate, bounded.
//  3. The next try's stack check excuses the threads parked in a gate of
//     this apply (excuse_gated()); new blockers get gates in their turn.
//  4. Once clear, the jumps are written, and release() lets every gate go
//     in the same stop. Any other way out (giving up, an error, this object
//     destroyed) releases them too, without a stop: the flags sit in the
//     gate page's writable data page. A later stop unmaps the page once no
//     thread refers to it (release_clear_gate_pages()).
class ReturnGates {
  public:
    ReturnGates(int pid, int attempts) : pid_(pid), attempts_(attempts) {}
    ~ReturnGates();
    ReturnGates(const ReturnGates&) = delete;
    ReturnGates& operator=(const ReturnGates&) = delete;

    // Step 3: drops from held.blocking every thread whose PC lies in a gate
    // this apply gave that thread, provided the ranges are those the gate
    // was made for. True when nobody is left in the way.
    bool excuse_gated(HeldProcess& held, const std::vector<CodeRange>& ranges);

    // Step 1, in the stop of a try whose blockers are in held.blocking.
    // Gates what can be gated and returns how many; 0 on the last try (no
    // try would follow the wait). Threads that cannot be gated (incomplete
    // unwind, a return slot that does not hold what the unwind says, a
    // shadow stack, no gate left) stay blockers. [low, high) is the library,
    // near which the page goes if there is room.
    Result<std::size_t> gate_blockers(HeldProcess& held, const std::vector<CodeRange>& ranges,
                                      RemoteSyscall::Site site, RemoteAddress low,
                                      RemoteAddress high);

    // Step 2, with the process running: true when the last round gated
    // someone (the caller then tries again at once, instead of a backoff).
    bool wait_for_arrivals();

    // Step 4: lets every gate go and marks the page released. Idempotent.
    void release();

    std::size_t gated() const { return gated_; }
    int rounds() const { return rounds_; }

  private:
    struct Gate {
        int tid = 0;
        std::size_t index = 0;
    };

    Result<RemoteAddress> map_page(HeldProcess& held, RemoteSyscall::Site site, RemoteAddress low,
                                   RemoteAddress high);
    Result<bool> gate_thread(HeldProcess& held, class RemoteUnwinder& unwinder, int tid,
                             const std::vector<CodeRange>& ranges);

    int pid_;
    int attempts_;
    std::optional<RemoteAddress> page_;
    std::optional<RemoteMemory> memory_;  // for the flags, outside the stops
    std::vector<Gate> gates_;
    std::vector<Gate> last_round_;
    std::vector<std::pair<std::uint64_t, std::uint64_t>> ranges_;  // those the gates are for
    std::size_t gated_ = 0;
    int rounds_ = 0;
    bool released_ = false;
};

// The gate pages of a process: private anonymous read+exec mappings that
// begin with the gate magic (no stop needed).
std::vector<GatePage> find_gate_pages(const RemoteMemory& memory,
                                      const std::vector<Mapping>& mappings);

// In a stop: unmaps every gate page that is released (or whose deadline
// passed: its suture is gone) and that no thread's PC or return address
// refers to. Returns how many went.
Result<std::size_t> release_clear_gate_pages(HeldProcess& held, RemoteSyscall& syscall,
                                             const std::string& subject);

}  // namespace suture
