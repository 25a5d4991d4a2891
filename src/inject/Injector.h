#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "base/Error.h"
#include "inject/Callbacks.h"
#include "inject/RegionMarker.h"
#include "inject/ReturnGate.h"
#include "inject/ShadowRegion.h"
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
    // A strict patch catches the threads in its way at return gates
    // (ReturnGates.h) instead of only backing off.
    bool return_gates = true;
    // How long a patch callback may run (Callbacks.h, RemoteCall.h).
    RemoteCallBounds callback_bounds;
    // Map and fill the region before the all-threads stop, with one thread
    // held (step 0b below); false: inside the stop, as before (for
    // benchmarks that compare the two in one run).
    bool stage_before_stop = true;
};

// What one apply or revert did.
struct InjectReport {
    std::string patch_id;
    std::uint32_t level = 0;
    std::optional<std::uint32_t> replaced_level;  // an upgrade replaced this level
    // ... of this patch id: patch_id for an upgrade, another id for a
    // cumulative patch that replaced a patch it supersedes (PatchFile::replaces).
    std::string replaced_patch_id;
    bool already_applied = false;                 // nothing to do
    // The patch's consistency model: which code the stack check kept clear.
    Consistency consistency = Consistency::strict;
    std::uint64_t region_address = 0;
    std::size_t functions = 0;
    int attempts = 0;                        // stops needed (1 = first try)
    std::chrono::nanoseconds stopped_for{};  // the successful stop
    // The region was mapped and filled before the stop (step 0b), with one
    // thread held for `staged_for` (the others ran on); with a single
    // thread, that is a stop of the process too.
    bool staged = false;
    std::chrono::nanoseconds staged_for{};
    std::size_t threads = 0;
    StackCheckFigures stack_check;  // the successful stop's stack check
    // Regions of earlier reverts and gate pages unmapped in this stop (see
    // `retired`) or in the stop right after it.
    std::size_t released_regions = 0;
    // A strict apply: threads caught at return gates on their way out of
    // the replaced code, and the rounds of gating (ReturnGates.h).
    std::size_t gated_threads = 0;
    int gate_rounds = 0;
    // The patch's callbacks this operation concerned (apply: pre_apply,
    // post_apply; revert: pre_revert, post_revert), in the order they ran.
    std::vector<CallbackOutcome> callbacks;
};

// Applies `patch` to process `pid` (docs/architecture.md has the story; the
// step numbers here are those of Injector.cpp):
//  0. Before any stop: lay out the region, read the maps, open every mapped
//     ELF object, resolve the imports.
//  0b. With one thread held (the others run on), map and fill the region
//     (options.stage_before_stop): new memory nothing references until the
//     jumps exist. Its marker says `retired` until step 5 takes it over, so
//     an injector killed meanwhile leaves a retired region no jump ever led
//     into, which any later stop unmaps.
//  1. Stop every thread; only now are the maps final (step 0 is redone in
//     the stop if a file mapping changed). Find the library by soname and
//     build ID.
//  2. Find the patches already there: the same id and level with every jump
//     in place is `already_applied` (resumed, nothing written); a higher
//     level, or another id on one of our functions, is a conflict; a lower
//     level is replaced within this stop. So is the region of an id the
//     patch may replace (PatchFile::replaces: a cumulative patch replacing
//     one it supersedes), exactly as a lower level; two regions to replace
//     (a lower level and such an id, or two such ids) are a conflict.
//  3. Check every function's SHA-256 in the stopped process.
//  4. Check every stack: no thread in a function being replaced or in the
//     region of the level being replaced. If one is: resume, back off
//     (doubling), and start again at 1, up to `options.attempts` tries.
//     A strict patch (with options.return_gates) first gates the threads in
//     the way instead and, once they have reached their gates, tries again
//     without a backoff; the gates are released right after step 6, and on
//     every other way out (ReturnGates.h).
//  5. Unmap retired regions this stop proves unreferenced; take over the
//     staged region (its retired mark cleared) if it was made from the maps,
//     jump sites and bytes this stop sees; else unmap it and map the new
//     region near the library and fill it (code relocated, marker).
//  6. Write the jumps.
//  7. For an upgrade, give the functions the new level no longer replaces
//     their bytes back and retire the old region. Resume. One first backoff
//     later a second stop unmaps the old region if no thread refers to it.
// Errors: not_found, permission_denied, library_not_mapped,
// build_id_mismatch, fingerprint_mismatch, conflict, unsafe, busy (another
// process shares the memory, before step 0 and again in each stop; a
// thread did not stop within stop_bound; another tracer holds the process),
// target_died;
// io or unsupported when a system call or the patch itself fails. Every
// error resumes every thread. What it leaves behind:
//  - steps 0 to 4: nothing changed (a staged region is unmapped again with
//    one thread held; if that fails, it stays retired for a later stop);
//  - from step 5 on, retired regions of earlier reverts that step 5 unmapped
//    stay unmapped (no thread referred to them); besides that:
//  - step 5: no free address, or a failed mmap: nothing else; a failure
//    while filling the region: the region is unmapped again;
//  - step 6: the jumps already written get their bytes back and the region
//    is unmapped again, in the same stop, so no thread ran any of it; should
//    that undo fail too (a process that died), what stays is explained by
//    the region's marker (`partial`);
//  - step 7 reports no error: the new level is in place by then.
// A killed injector leaves the threads running (the kernel detaches them)
// and its state explained by the region's marker or, right after the mmap,
// by the intent record (RegionMarker.h).
// On `unsafe`, `blocking` (if given) receives the threads and frames that
// blocked the last try; the message names them too.
// A patch with callbacks (Callbacks.h) also needs, at step 4, no stopped
// thread inside the allocator or the dynamic loader (else: another try,
// and `unsafe` naming the thread and function after the last); pre_apply
// runs between steps 5 and 6 (non-zero: `refused`, the region unmapped
// again, nothing changed; past its hard bound: `refused`, the region left
// retired until the callback has left it), post_apply after step 6.
// `callbacks` (if given) receives their outcomes on errors too.
Result<InjectReport> apply_patch(int pid, const PatchFile& patch, const InjectOptions& options,
                                 std::vector<BlockingThread>* blocking = nullptr,
                                 std::vector<CallbackOutcome>* callbacks = nullptr);

// What apply_patches() did for one of its patches: what apply_patch()
// returns and gives through its pointers.
struct PatchApplication {
    Result<InjectReport> report;
    std::vector<BlockingThread> blocking;    // on `unsafe`: the last try's threads in the way
    std::vector<CallbackOutcome> callbacks;  // the patch's callbacks (on errors too)
};

// Applies several patches to `pid` in one all-threads stop: THE call for
// all the patches one process gets at once (`suture update`, exec gating,
// the CLI with several patch files). One outcome per patch, in order, each
// as apply_patch() would give it. How:
//  0. One preparation for all (maps, ELF objects, imports), once; every
//     region staged with one thread held once (step 0b of apply_patch).
//  1. One stop: steps 1 to 3 for each patch (a patch that fails them, or
//     is applied already, gets its outcome there), one stack check over
//     the code of all of them, then steps 5 to 7 for each: only the jumps
//     (and an upgrade's old jumps) are written there.
//  2. Should threads be in the way, nothing is written in that stop and
//     each remaining patch is applied alone, with apply_patch()'s tries,
//     backoff and return gates. Patches with callbacks, a second patch of
//     the same id and a patch on a function another of the list replaces
//     are always applied alone, after the shared stop, in list order.
// What each error leaves behind is what apply_patch() says for it.
std::vector<PatchApplication> apply_patches(int pid, std::span<const PatchFile* const> patches,
                                            const InjectOptions& options);

// Reverts the patch `patch_id` (or every suture patch when empty) in `pid`,
// in one stop (with the same refusal of a process whose memory another
// process shares as an apply). A revert never waits for busy code: no
// thread is in its way.
//  1. Stop every thread; find the regions to revert, the retired regions and
//     the empty regions interrupted applies left. None to revert:
//     not_applied (after one more stop that unmaps the retired regions no
//     thread refers to).
//  2. Every jump site must hold our jump or the original bytes (conflict).
//  3. Restore the original bytes and mark each region retired instead of
//     unmapping it: a thread running in it finishes in mapped code and
//     returns to its unchanged caller; its next call takes the original
//     function. Unmap the empty regions.
//  4. Unmap every retired region, the ones just retired included, that the
//     stack check proves no thread's PC or return address refers to. Resume.
// Should a just-retired region still be referred to, a second stop one first
// backoff later tries again; after that every stop of a later apply, revert
// or update (the daemon's rescan) does. Every error resumes every thread.
// Errors up to step 2 change nothing (but for not_applied's release of
// retired regions); an error in step 3 (in practice: a process that died)
// leaves what it did so far: regions reverted, the one in progress partly,
// as its marker explains (`partial` or `inactive`); a revert again finishes
// it.
// Regions with callbacks (recorded in their markers) add: step 1 waits,
// like an apply, for no stopped thread inside the allocator or the dynamic
// loader; each pre_revert runs before step 3 (non-zero or past its hard
// bound: `refused`, nothing reverted); each post_revert after step 3,
// before step 4. `callbacks` (if given) receives their outcomes on errors
// too.
Result<std::vector<InjectReport>> revert_patches(int pid, const std::string& patch_id,
                                                 const InjectOptions& options,
                                                 std::vector<CallbackOutcome>* callbacks = nullptr);

// Stops `pid` once and unmaps every retired region no thread refers to;
// returns how many it unmapped (0 without a stop when there are none).
Result<std::size_t> release_retired_regions(int pid);

// Stops `pid` once and unmaps the empty regions applies killed right after
// their mmap left (PatchState::empty), as a revert does; returns how many
// (0 when there are none). `suture update` calls it for every process
// status shows one in.
Result<std::size_t> remove_empty_regions(int pid);

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

// The gate pages of strict applies in `pid` (ReturnGates.h): what is left
// of an apply that gated threads, until a later stop unmaps it. Read like
// list_applied_patches(): no ptrace, no stop.
Result<std::vector<GatePage>> list_gate_pages(int pid);

// The shadow region of `pid` (ShadowRegion.h), if it has one: how many
// shadows are attached, how much of the table and arena is used. Read like
// list_applied_patches(): no ptrace, no stop.
Result<std::optional<ShadowRegion>> list_shadow_region(int pid);

}  // namespace suture
