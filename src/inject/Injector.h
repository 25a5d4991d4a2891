#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "base/Error.h"
#include "inject/RegionMarker.h"
#include "inject/StackCheck.h"
#include "patch/PatchFile.h"

namespace suture {

struct InjectOptions {
    // How often to stop the process and check its stacks before giving up
    // as `unsafe`, and the pause between tries (doubling, letting the
    // process run) up to `max_backoff`.
    int attempts = 8;
    std::chrono::milliseconds first_backoff{5};
    std::chrono::milliseconds max_backoff{500};
};

// What one apply or revert did.
struct InjectReport {
    std::string patch_id;
    std::uint32_t level = 0;
    std::optional<std::uint32_t> replaced_level;  // an upgrade replaced this level
    bool already_applied = false;                 // nothing to do
    std::uint64_t region_address = 0;
    std::size_t functions = 0;
    int attempts = 0;                        // stops needed (1 = first try)
    std::chrono::nanoseconds stopped_for{};  // the successful stop
    std::size_t threads = 0;
    StackCheckFigures stack_check;  // the successful stop's stack check
    // Regions of earlier reverts unmapped in this stop (see `retired`).
    std::size_t released_regions = 0;
};

// Applies `patch` to process `pid`, following docs/architecture.md,
// "Applying": stop every thread; only then read the maps, find the library
// by build ID and check every function's SHA-256; check every stack; map the
// region near the library, fill it, write the jumps; resume. A higher level
// of an applied patch id replaces the lower one within the same stop.
// Nothing is changed on any error. Errors: not_found, permission_denied,
// library_not_mapped, build_id_mismatch, fingerprint_mismatch, conflict,
// unsafe, target_died. On `unsafe`, `blocking` (if given) receives the
// threads and frames that blocked the last try; the message names them too.
Result<InjectReport> apply_patch(int pid, const PatchFile& patch, const InjectOptions& options,
                                 std::vector<BlockingThread>* blocking = nullptr);

// Reverts the patch `patch_id` (or every suture patch when empty) in
// `pid`: under the same stop and stack rules (no thread inside the patch
// region) restores the original bytes and marks the region retired instead
// of unmapping it: should any thread still hold a return address into it,
// it returns into mapped code. A second stop right after (one first backoff
// later), and every stop of a later apply or revert, unmaps the retired
// regions its stack check proves unreferenced. Empty
// regions left by interrupted applies are removed at once.
Result<std::vector<InjectReport>> revert_patches(int pid, const std::string& patch_id,
                                                 const InjectOptions& options,
                                                 std::vector<BlockingThread>* blocking = nullptr);

// Stops `pid` once and unmaps every retired region no thread refers to;
// returns how many it unmapped (0 without a stop when there are none).
Result<std::size_t> release_retired_regions(int pid);

// Stops `pid` and unwinds every thread as the stack check would (for
// `suture stacks`); changes nothing.
Result<std::vector<ThreadStack>> unwind_threads(int pid);

// How far a marked patch is in effect, read back from the jump sites.
enum class PatchState {
    active,    // every jump is in place
    inactive,  // no jump in place (a killed apply, before its jumps)
    partial,   // some jumps in place (a killed apply or revert, midway)
    foreign,   // a jump site holds bytes suture did not write
    empty,     // an empty region an apply killed right after its mmap left
               // (explained by its intent record; no marker, no jumps)
    retired,   // reverted, original bytes back, the region still mapped
               // until a stop proves no thread refers to it
};

struct AppliedPatch {
    RegionMarker marker;
    PatchState state = PatchState::active;
    std::size_t jumps_in_place = 0;
};

// The suture patches in `pid`, found through their region markers by
// reading /proc/PID/maps and /proc/PID/mem: no ptrace, no stop.
Result<std::vector<AppliedPatch>> list_applied_patches(int pid);

std::string patch_state_name(PatchState state);

}  // namespace suture
