#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "inject/RemoteAddress.h"

namespace suture {

// Return gates: how a strict apply catches a thread on its way out of the
// code being replaced, with nothing a dead tracer could leave behind (no
// int3, no debug register, no single-step: each of those turns into a
// SIGTRAP that kills the target once its tracer is gone).
//
// While the process is stopped, the return address of the outermost frame
// that lies in a replaced function is rewritten, in the thread's own stack,
// to point at a gate: a few instructions in a page suture maps. When the
// thread returns out of the replaced code it lands in the gate, which says
// so (its `arrived` byte), then spins until suture says `release` or a TSC
// deadline passes, and finally jumps to the original return address. The
// gate touches no register and no flag the thread could notice. Layout of
// the page (docs/patch-format.md, "Gate page"):
//
//   code page, read+exec (page 0):
//     0     magic "SUTUREGT"
//     8     u32 layout version (1)
//     12    u32 gates written (0..gate_capacity)
//     16    u64 created, Unix ns
//     24    u32 pid of the suture that made it
//     28    reserved up to 64
//     64    u64 original return address of gate k, at 64 + 8 k
//     1024  the code of gate k, at 1024 + 64 k (gate_code_size bytes used)
//   data page, read+write (page 1; the gates write their `arrived` byte):
//     0     u8 release: nonzero lets every gate through at once
//     8     u64 deadline, in TSC ticks: a gate lets its thread through
//           once the TSC passes it, whether or not anyone says release
//     16    u64 released, Unix ns (0 while an apply waits on the gates)
//     64    u8 arrived of gate k, at 64 + k
inline constexpr char gate_page_magic[8] = {'S', 'U', 'T', 'U', 'R', 'E', 'G', 'T'};
inline constexpr std::uint32_t gate_page_version = 1;
inline constexpr std::uint64_t gate_page_size = 8192;  // code page + data page
inline constexpr std::uint64_t gate_data_offset = 4096;
inline constexpr std::size_t gate_header_size = 64;
inline constexpr std::size_t gate_slots_offset = 64;
inline constexpr std::size_t gate_code_offset = 1024;
inline constexpr std::size_t gate_stride = 64;
inline constexpr std::size_t gate_capacity = (4096 - gate_code_offset) / gate_stride;  // 48
inline constexpr std::size_t gate_count_offset = 12;
inline constexpr std::size_t gate_release_offset = 0;   // in the data page
inline constexpr std::size_t gate_deadline_offset = 8;  // in the data page
inline constexpr std::size_t gate_released_at_offset = 16;
inline constexpr std::size_t gate_arrived_offset = 64;

// Where gate `index` of the page at `page` has its code, its return slot
// and its arrived byte.
inline RemoteAddress gate_code_address(RemoteAddress page, std::size_t index) {
    return page + gate_code_offset + gate_stride * index;
}
inline RemoteAddress gate_slot_address(RemoteAddress page, std::size_t index) {
    return page + gate_slots_offset + 8 * index;
}
inline RemoteAddress gate_arrived_address(RemoteAddress page, std::size_t index) {
    return page + gate_data_offset + gate_arrived_offset + index;
}

// The machine code of gate `index` of the page at `page` (x86-64, position
// dependent: every operand is rip-relative to that page). 48 bytes.
inline constexpr std::size_t gate_code_size = 48;
std::array<std::byte, gate_code_size> encode_gate(RemoteAddress page, std::size_t index);

// What the header of a gate page says, and its data page.
struct GatePageHeader {
    std::uint32_t gates = 0;
    std::uint64_t created_at_unix_ns = 0;
    std::uint32_t owner_pid = 0;
};

// The whole initial image of a gate page (both pages): header, no gates
// yet, release 0, deadline `deadline_tsc`.
std::vector<std::byte> encode_gate_page(const GatePageHeader& header, std::uint64_t deadline_tsc);

// The header, from a gate page's first bytes; nullopt without the magic or
// with a count out of range (the page lives in a process that may have
// scribbled over it).
std::optional<GatePageHeader> decode_gate_page_header(std::span<const std::byte> bytes);

// A gate page in a process, as `suture status` explains it.
struct GatePage {
    std::uint64_t address = 0;
    GatePageHeader header;
    std::size_t arrived = 0;  // gates whose thread got there
    bool released = false;    // release set: every gate lets its thread go
    std::uint64_t released_at_unix_ns = 0;
    bool deadline_passed = false;  // the TSC deadline is behind us
};

// The time stamp counter (rdtsc), as the gates read it: the same on every
// core of machines with an invariant TSC, which the deadline relies on (on
// others a gate may let its thread go earlier or later; it never holds it
// forever, as release is set on every way out of suture).
std::uint64_t read_tsc();

// TSC ticks per millisecond, measured once per process (rdtsc against
// steady_clock over a few milliseconds).
std::uint64_t tsc_ticks_per_ms();

}  // namespace suture
