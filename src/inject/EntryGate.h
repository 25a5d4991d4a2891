#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <optional>

#include "base/Error.h"

namespace suture {

// A process parked at its program entry point (AT_ENTRY): the dynamic
// loader has mapped its DT_NEEDED libraries and run their constructors, and
// its main thread spins on a two-byte `jmp .` written over the entry's first
// bytes, so main() has not run. Patches applied now are in place from the
// program's first instruction on.
//
// Why a spin and not a breakpoint: a parked process is not traced, so the
// injector can attach to it as to any process; and if suture dies while a
// process is parked, the process waits instead of dying of a SIGTRAP nobody
// catches, and release_abandoned() (run when sutured starts) puts its entry
// back from the executable file itself.
struct ParkedProcess {
    int pid = 0;
    std::uint64_t start_time = 0;
    std::uint64_t entry = 0;                  // AT_ENTRY
    std::array<unsigned char, 2> original{};  // the entry's first bytes
};

// Called right after `pid` exec'd (a proc connector exec event). Stops it
// for a moment; if its main thread is still inside the dynamic loader, writes
// the spin at its entry and lets it run on. nullopt when it is already past
// the loader (too late: it runs on untouched) or has several threads.
Result<std::optional<ParkedProcess>> park_at_entry(int pid);

// Waits until the parked process spins at its entry (polling, each check a
// few microseconds' stop). Errors: target_died, unsafe (timeout; the caller
// releases it).
Result<void> wait_until_parked(const ParkedProcess& parked, std::chrono::milliseconds timeout);

// Puts the entry's bytes back (with the thread stopped, so it never runs a
// half-written instruction) and lets the process run main(). Idempotent: a
// process whose entry no longer holds the spin is left alone.
Result<void> release_parked(const ParkedProcess& parked);

// Finds processes left parked by a sutured that died (the spin at their
// AT_ENTRY) and releases them, taking the original bytes from their
// executable (/proc/PID/exe at the entry's file offset). Returns how many.
std::size_t release_abandoned();

}  // namespace suture
