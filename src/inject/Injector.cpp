#include "inject/Injector.h"

#include <sys/mman.h>
#include <sys/syscall.h>

#include <algorithm>
#include <cstring>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <thread>
#include <variant>

#include "base/Sha256.h"
#include "inject/HeldProcess.h"
#include "inject/LoadedObjects.h"
#include "inject/PatchImage.h"
#include "inject/PatchRegions.h"
#include "inject/RegionPlacement.h"
#include "inject/RemoteMapping.h"
#include "inject/RemoteMemory.h"
#include "inject/RemoteSyscall.h"
#include "inject/ReturnGates.h"
#include "inject/ShadowRegion.h"
#include "inject/StoppedProcess.h"
#include "patch/EntryJump.h"
#include "proc/ProcessMaps.h"
#include "proc/ProgramRun.h"

#include "base/Files.h"

namespace suture {

namespace {

// Every import of `patch` resolved against `objects`.
Result<std::map<std::string, RemoteAddress>> resolve_imports(
    const PatchFile& patch, const std::vector<LoadedObject>& objects) {
    SymbolResolver resolver(objects);
    std::map<std::string, RemoteAddress> addresses;
    for (const Import& import : patch.metadata.imports) {
        auto address = resolver.resolve(import);
        if (!address) {
            return tl::unexpected(address.error());
        }
        addresses[import.symbol] = *address;
    }
    return addresses;
}

std::uint64_t unix_now_ns() {
    return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                          std::chrono::system_clock::now().time_since_epoch())
                                          .count());
}

// Unmaps a patch's code region and its data region (if any) together.
Result<void> unmap_patch_regions(RemoteSyscall& syscall, const RegionMarker& marker,
                                 const std::string& subject) {
    if (auto unmapped = unmap_region(syscall, RemoteAddress(marker.region_address),
                                     marker.region_size, subject);
        !unmapped) {
        return unmapped;
    }
    if (marker.data_size == 0) {
        return {};
    }
    return unmap_region(syscall, RemoteAddress(marker.data_address), marker.data_size, subject);
}

// Unmaps, inside the current stop, each retired region that no thread's PC
// or return address refers to (a complete unwind proves it); the others stay
// for a later stop. Returns how many went.
Result<std::size_t> release_clear_retired(HeldProcess& held, RemoteSyscall& syscall,
                                          const std::vector<RegionMarker>& retired,
                                          const std::string& subject) {
    std::size_t released = 0;
    for (const RegionMarker& marker : retired) {
        auto blocking =
            find_blocking_threads(held.stopped, {region_range(marker)}, held.mappings, held.memory);
        if (!blocking) {
            return tl::unexpected(blocking.error());
        }
        if (!blocking->empty()) {
            continue;
        }
        if (auto unmapped = unmap_patch_regions(syscall, marker, subject); !unmapped) {
            return tl::unexpected(unmapped.error());
        }
        ++released;
    }
    return released;
}

// release_clear_retired(), and the gate pages of earlier applies no thread
// refers to (ReturnGates.h), counted together.
Result<std::size_t> release_clear_retired_and_gates(HeldProcess& held, RemoteSyscall& syscall,
                                                    const std::vector<RegionMarker>& retired,
                                                    const std::string& subject) {
    auto regions = release_clear_retired(held, syscall, retired, subject);
    if (!regions) {
        return regions;
    }
    auto gate_pages = release_clear_gate_pages(held, syscall, subject);
    if (!gate_pages) {
        return tl::unexpected(gate_pages.error());
    }
    return *regions + *gate_pages;
}

// True when `pid` still maps a retired region or a gate page (read without
// a stop).
bool leftovers_mapped(int pid) {
    auto listed = list_applied_patches(pid);
    if (listed && std::any_of(listed->begin(), listed->end(), [](const AppliedPatch& patch) {
            return patch.state == PatchState::retired;
        })) {
        return true;
    }
    auto pages = list_gate_pages(pid);
    return pages && !pages->empty();
}

// The regions just retired are usually unreferenced a moment later: let the
// process run for the first backoff, then stop it once more to unmap them.
// A thread the scheduler put aside inside one (a loaded host) can keep it
// referenced longer, so up to `release_stops` stops follow, each after
// double the pause before it. What is still referenced after them stays
// retired for a later stop. Returns how many went; errors only mean they
// stay.
std::size_t release_after_a_pause(int pid, const InjectOptions& options) {
    constexpr int release_stops = 4;
    std::size_t released = 0;
    std::chrono::milliseconds pause = options.first_backoff;
    for (int stop = 0; stop < release_stops; ++stop, pause *= 2) {
        std::this_thread::sleep_for(pause);
        auto went = release_retired_regions(pid);
        if (!went) {
            break;
        }
        released += *went;
        if (!leftovers_mapped(pid)) {
            break;
        }
    }
    return released;
}

// Marks a reverted region retired, in its marker.
Result<void> mark_retired(const RemoteMemory& memory, const RegionMarker& marker) {
    std::uint64_t now = unix_now_ns();
    std::array<std::byte, sizeof now> bytes;
    std::memcpy(bytes.data(), &now, sizeof now);
    return memory.write(RemoteAddress(marker.region_address) + region_marker_retired_offset, bytes);
}

// Step 1 of an apply: the patch's library among the loaded objects, by
// soname and build ID.
Result<const LoadedObject*> find_target_library(const std::vector<LoadedObject>& objects,
                                                const PatchMetadata& metadata,
                                                const std::string& subject) {
    std::string other_builds;
    for (const LoadedObject& object : objects) {
        if (object.soname != metadata.target_soname) {
            continue;
        }
        if (object.build_id == metadata.target_build_id) {
            return &object;
        }
        other_builds += " " + object.build_id;
    }
    if (!other_builds.empty()) {
        return fail(ErrorCode::build_id_mismatch,
                    subject + ": maps " + metadata.target_soname + " build" + other_builds +
                        ", the patch is for build " + metadata.target_build_id);
    }
    return fail(ErrorCode::library_not_mapped,
                subject + ": does not map " + metadata.target_soname);
}

// Where the jump goes in one replaced function, and the bytes it replaces.
struct JumpSite {
    std::uint32_t offset = 0;  // 4 after an endbr64, else 0
    std::array<std::byte, jump_size> original{};
};

// Step 3 of an apply: each replaced function's original bytes (with a
// previous level's jump taken out again) against the recorded SHA-256; and
// where each jump goes.
Result<std::vector<JumpSite>> check_fingerprints(const RemoteMemory& memory,
                                                 const LoadedObject& target,
                                                 const PatchMetadata& metadata,
                                                 const std::optional<RegionMarker>& previous,
                                                 const std::string& subject) {
    std::vector<JumpSite> sites;
    for (const ReplacedFunction& function : metadata.functions) {
        RemoteAddress start = target.base + function.offset;
        auto bytes = memory.read(start, function.size);
        if (!bytes) {
            return tl::unexpected(bytes.error());
        }
        if (previous) {
            for (const MarkedFunction& marked : previous->functions) {
                if (marked.target_offset == function.offset) {
                    std::copy(marked.original.begin(), marked.original.end(),
                              bytes->begin() + marked.jump_offset);
                }
            }
        }
        if (sha256_hex(*bytes) != function.sha256) {
            return fail(ErrorCode::fingerprint_mismatch,
                        subject + ": " + function.symbol + " at " + hex_address(start) +
                            ": bytes differ from the build the patch was made for");
        }
        // The entry rule (patch/EntryJump.h): the jump after an endbr64,
        // which a 5-8-byte function then has no room for.
        if (!holds_entry_jump(*bytes, function.size)) {
            return fail(ErrorCode::unsupported,
                        subject + ": " + function.symbol + " at " + hex_address(start) + ": " +
                            std::to_string(function.size) +
                            " bytes starting with endbr64 cannot hold a 5-byte jump after it");
        }
        JumpSite site;
        site.offset = entry_jump_offset(*bytes);
        std::copy_n(bytes->begin() + site.offset, jump_size, site.original.begin());
        sites.push_back(site);
    }
    return sites;
}

// What running a patch's callbacks (Callbacks.h) needs across the tries
// of one apply or revert, and what they did.
struct CallbackRun {
    RemoteCallBounds bounds;
    std::vector<CallbackOutcome> outcomes;
    std::vector<CodeRange> lock_ranges;  // for the preparation of lock_generation
    int lock_generation = -1;
    bool blocked_by_locks = false;  // the last try's blockers were inside a lock
    bool left_running = false;      // a callback timed out: no more remote work in this stop
};

// Step 4b, for a patch with callbacks: no stopped thread may be inside the
// allocator or the dynamic loader, whose locks a callback could wait for
// forever (Callbacks.h, lock_holding_code). False, with `held.blocking`,
// when one is: the try is given up like one whose stacks are not clear.
Result<bool> callback_locks_clear(HeldProcess& held, const Preparation& preparation,
                                  CallbackRun& run) {
    if (run.lock_generation != preparation.generation) {
        auto ranges = lock_holding_code(preparation.objects);
        if (!ranges) {
            return tl::unexpected(ranges.error());
        }
        run.lock_ranges = std::move(*ranges);
        run.lock_generation = preparation.generation;
    }
    auto blocking = threads_holding_locks(held, run.lock_ranges);
    if (!blocking) {
        return tl::unexpected(blocking.error());
    }
    run.blocked_by_locks = !blocking->empty();
    if (blocking->empty()) {
        return true;
    }
    held.blocking = std::move(*blocking);
    return false;
}

// Runs callback `kind` of the region `marker` describes, if it has one
// (nullopt if not), on a thread outside `avoid`, and records its outcome.
// One that timed out still runs its trampoline in the syscall site's spare
// bytes: they stay, and nothing more runs in this stop.
Result<std::optional<CallbackOutcome>> run_marked_callback(HeldProcess& held,
                                                           RemoteSyscall& syscall,
                                                           CallbackRun& run,
                                                           const RegionMarker& marker,
                                                           CallbackKind kind,
                                                           const std::vector<CodeRange>& avoid) {
    std::uint64_t offset = callback_offset(marker.callbacks, kind);
    if (offset == 0) {
        return std::optional<CallbackOutcome>{};
    }
    if (run.left_running) {
        CallbackOutcome skipped{.kind = kind};
        skipped.reason = "an earlier callback of this stop still runs";
        run.outcomes.push_back(skipped);
        return std::optional<CallbackOutcome>{skipped};
    }
    auto outcome = run_callback(held, syscall, kind, RemoteAddress(marker.region_address) + offset,
                                avoid, run.bounds);
    if (!outcome) {
        return tl::unexpected(outcome.error());
    }
    if (outcome->status == CallbackOutcome::Status::timeout) {
        syscall.keep_spare_bytes();
        run.left_running = true;
    }
    run.outcomes.push_back(*outcome);
    return std::optional<CallbackOutcome>{*outcome};
}

// The outcomes an operation that failed reports: those that ran, and, when
// the last try was refused because a thread held a lock, the callback that
// could not run for it.
std::vector<CallbackOutcome> outcomes_of_failure(const CallbackRun& run, const Error& error,
                                                 CallbackKind first) {
    std::vector<CallbackOutcome> outcomes = run.outcomes;
    if (error.code == ErrorCode::unsafe && run.blocked_by_locks) {
        CallbackOutcome busy{.kind = first, .status = CallbackOutcome::Status::refused_busy};
        busy.reason = error.message;
        outcomes.push_back(busy);
    }
    return outcomes;
}

// What an apply learns before the stop: the region's layout, the process's
// loaded objects, and the imports resolved against them (again inside the
// stop should the preparation have been redone there).
struct ApplyPlan {
    const PatchFile& patch;
    std::string subject;
    PatchLayout layout;
    Preparation preparation;
    std::map<std::string, RemoteAddress> imports;
    int imports_generation = 0;
    ReturnGates* gates = nullptr;  // a strict patch's return gates
    CallbackRun callbacks;         // the patch's callbacks, if it has any
    // The object refers to the per-process shadow table (ShadowRegion.h):
    // found or mapped in the stop, before the region is filled.
    bool uses_shadow_table = false;
    RemoteAddress shadow_table;
};

// Does the patch's object read the shadow table (through the runtime)?
bool uses_shadow_table(const PatchFile& patch) {
    return std::any_of(patch.object.symbols().begin(), patch.object.symbols().end(),
                       [](const RelocatableObject::Symbol& symbol) {
                           return symbol.section == SHN_UNDEF && symbol.name == shadow_table_symbol;
                       });
}

// Step 5 of an apply, first part: the process's shadow region, if the
// patch uses shadow variables. Found (made by an earlier patch or level:
// shadow data outlives them) or mapped near the library.
Result<void> provide_shadow_table(const RemoteMemory& memory,
                                  const std::vector<Mapping>& mappings, RemoteSyscall& syscall,
                                  ApplyPlan& plan, const LoadedObject& target) {
    if (!plan.uses_shadow_table) {
        return {};
    }
    auto table = find_or_map_shadow_region(syscall, memory, mappings, target.start, target.end,
                                           plan.subject);
    if (!table) {
        return tl::unexpected(table.error());
    }
    plan.shadow_table = *table;
    return {};
}

// What a preparation lacks for the patch, if anything: the patch's library
// first (a process without it, another program, cannot resolve the imports
// and may have no room for a trampoline either: its absence is the reason),
// then an import, then room for the trampoline.
Result<std::map<std::string, RemoteAddress>> check_preparation(const Preparation& preparation,
                                                                const PatchFile& patch,
                                                                const std::string& subject) {
    auto imports = resolve_imports(patch, preparation.objects);
    auto site = require_trampoline_site(preparation);
    if (imports && site) {
        return imports;
    }
    if (auto target = find_target_library(preparation.objects, patch.metadata, subject); !target) {
        return tl::unexpected(target.error());
    }
    if (!imports) {
        return tl::unexpected(with_context(imports.error(), subject));
    }
    return tl::unexpected(site.error());
}

// Step 0 of an apply of one or several patches: one preparation for all
// (the slow part, done once), and each patch's imports resolved in it: a
// plan per patch, or why that patch cannot be applied to this process.
// A program just exec'ed (or a thread in dlopen) shows only a part of its
// libraries for some milliseconds: a preparation that lacks something for a
// patch while the loader is changing the objects, or whose maps have
// changed since, is made again, for up to about 20 ms; then that patch is
// `busy`.
Result<std::vector<Result<ApplyPlan>>> plan_applies(int pid,
                                                    const std::vector<const PatchFile*>& patches) {
    constexpr int looks = 20;
    std::string subject = subject_of(pid);
    std::vector<PatchLayout> layouts;
    for (const PatchFile* patch : patches) {
        auto layout = layout_patch(*patch);
        if (!layout) {
            return tl::unexpected(layout.error());
        }
        layouts.push_back(std::move(*layout));
    }
    for (int look = 1;; ++look) {
        auto preparation = prepare_process(pid, SiteCheck::by_caller);
        if (!preparation) {
            return tl::unexpected(preparation.error());
        }
        std::vector<Result<std::map<std::string, RemoteAddress>>> imports;
        bool all_planned = true;
        for (const PatchFile* patch : patches) {
            imports.push_back(check_preparation(*preparation, *patch, subject));
            all_planned = all_planned && imports.back().has_value();
        }
        bool settling = !all_planned && (loader_is_changing_objects(pid, preparation->objects) ||
                                         maps_changed_since(pid, *preparation));
        if (settling && look < looks) {
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
            continue;
        }
        std::vector<Result<ApplyPlan>> plans;
        for (std::size_t i = 0; i < patches.size(); ++i) {
            if (!imports[i] && settling) {
                plans.push_back(fail(
                    ErrorCode::busy,
                    subject + ": its dynamic loader kept loading or unloading libraries "
                              "(the program is starting, or a thread is in dlopen or "
                              "dlclose); try again in a moment (what failed then: " +
                        imports[i].error().message + ")"));
                continue;
            }
            if (!imports[i]) {
                plans.push_back(tl::unexpected(imports[i].error()));
                continue;
            }
            int generation = preparation->generation;
            ApplyPlan plan{*patches[i], subject,         std::move(layouts[i]), *preparation,
                           *imports[i], generation};
            plan.uses_shadow_table = uses_shadow_table(*patches[i]);
            plans.push_back(std::move(plan));
        }
        return plans;
    }
}

// Step 0 of the apply of one patch.
Result<ApplyPlan> plan_apply(int pid, const PatchFile& patch) {
    auto plans = plan_applies(pid, {&patch});
    if (!plans) {
        return tl::unexpected(plans.error());
    }
    return std::move(plans->front());
}

// Resolves the imports again if the preparation was redone in the stop.
Result<void> refresh_imports(ApplyPlan& plan) {
    if (plan.imports_generation == plan.preparation.generation) {
        return {};
    }
    auto imports = resolve_imports(plan.patch, plan.preparation.objects);
    if (!imports) {
        return tl::unexpected(imports.error());
    }
    plan.imports = std::move(*imports);
    plan.imports_generation = plan.preparation.generation;
    return {};
}

// The suture regions already in the process, as an apply of `metadata`
// sees them.
struct ExistingPatches {
    std::optional<RegionMarker> already_applied;  // this level, every jump in place
    // To replace: this id at a lower level, or an id the patch may replace
    // (PatchFile::replaces, a cumulative patch over one it supersedes).
    std::optional<RegionMarker> previous;
    std::vector<RegionMarker> retired;            // reverted regions still mapped
    std::vector<RemoteAddress> staged_found;  // regions staged by this operation, still there
};

// A conflict if `theirs`, another patch, replaces one of the functions of
// `ours`.
Result<void> check_no_overlap(const RegionMarker& theirs, const PatchMetadata& ours,
                              const std::string& subject) {
    for (const MarkedFunction& their_function : theirs.functions) {
        for (const ReplacedFunction& our_function : ours.functions) {
            if (their_function.target_offset == our_function.offset) {
                return fail(ErrorCode::conflict, subject + ": " + our_function.symbol +
                                                     " is already patched by " + theirs.patch_id +
                                                     " level " + std::to_string(theirs.level));
            }
        }
    }
    return {};
}

// Step 2 of an apply of `patch`: the same id at the same level with every
// jump in place is already applied; at a higher level, or another id on one
// of our functions, a conflict; at a lower level it is the level to
// replace, and so is an id of patch.replaces (only one region to replace).
// The regions this operation staged (at `staged`) are none of these.
Result<ExistingPatches> find_existing_patches(const RemoteMemory& memory,
                                              const std::vector<Mapping>& mappings,
                                              const LoadedObject& target, const PatchFile& patch,
                                              const std::string& subject,
                                              const std::vector<RemoteAddress>& staged = {}) {
    const PatchMetadata& metadata = patch.metadata;
    ExistingPatches existing;
    // A second region to replace: refused, the stop replaces one at most.
    auto second_previous = [&](const RegionMarker& marker) -> Result<void> {
        if (!existing.previous) {
            return {};
        }
        return fail(ErrorCode::conflict, subject + ": " + metadata.patch_id +
                                             " would replace both " + existing.previous->patch_id +
                                             " level " + std::to_string(existing.previous->level) +
                                             " and " + marker.patch_id + " level " +
                                             std::to_string(marker.level) + " (revert one first)");
    };
    for (RegionMarker& marker : find_markers(memory, mappings)) {
        RemoteAddress address(marker.region_address);
        if (std::find(staged.begin(), staged.end(), address) != staged.end()) {
            existing.staged_found.push_back(address);
            continue;
        }
        if (marker.retired()) {
            existing.retired.push_back(std::move(marker));
            continue;
        }
        if (RemoteAddress(marker.target_base) != target.base) {
            continue;
        }
        if (marker.patch_id != metadata.patch_id) {
            bool replaceable = std::find(patch.replaces.begin(), patch.replaces.end(),
                                         marker.patch_id) != patch.replaces.end();
            if (!replaceable) {
                if (auto overlap = check_no_overlap(marker, metadata, subject); !overlap) {
                    return tl::unexpected(overlap.error());
                }
                continue;
            }
            if (auto second = second_previous(marker); !second) {
                return tl::unexpected(second.error());
            }
            existing.previous = std::move(marker);
            continue;
        }
        auto jumps = count_jumps(memory, marker);
        if (jumps && marker.level == metadata.level && !jumps->foreign &&
            jumps->in_place == marker.functions.size()) {
            existing.already_applied = std::move(marker);
            return existing;
        }
        if (marker.level > metadata.level) {
            return fail(ErrorCode::conflict, subject + ": " + metadata.patch_id + " level " +
                                                 std::to_string(marker.level) +
                                                 " is applied, newer than " +
                                                 std::to_string(metadata.level));
        }
        if (existing.previous && existing.previous->patch_id != metadata.patch_id) {
            if (auto second = second_previous(marker); !second) {
                return tl::unexpected(second.error());
            }
        }
        existing.previous = std::move(marker);
    }
    return existing;
}

// Step 4 of an apply: the code no thread may be in. Strict: the functions
// being replaced and the region of the level being replaced. Entry: only
// the bytes each jump overwrites (`sites`, one per function), since a thread
// may finish an old body, including the previous level's (retired, not
// unmapped, by retire_level).
std::vector<CodeRange> apply_ranges(const LoadedObject& target, const PatchMetadata& metadata,
                                    const std::vector<JumpSite>& sites,
                                    const std::optional<RegionMarker>& previous) {
    std::vector<CodeRange> ranges;
    for (std::size_t i = 0; i < metadata.functions.size(); ++i) {
        const ReplacedFunction& function = metadata.functions[i];
        RemoteAddress start = target.base + function.offset;
        std::string name = function.symbol + " (" + metadata.target_soname + "+" +
                           hex_address(function.offset) + ")";
        if (metadata.consistency == Consistency::entry) {
            RemoteAddress site = start + sites[i].offset;
            ranges.push_back(CodeRange{site.raw(), (site + jump_size).raw(),
                                       "the jump site of " + name, CodeRange::Kind::overwritten});
        } else {
            ranges.push_back(CodeRange{start.raw(), (start + function.size).raw(), name});
        }
    }
    if (previous && metadata.consistency == Consistency::strict) {
        ranges.push_back(region_range(*previous));
    }
    return ranges;
}

// A region mapped and filled in the target: where, its marker, and the jump
// of each of the marker's functions.
struct FilledRegion {
    RemoteAddress address;
    RegionMarker marker;
    std::vector<std::array<std::byte, jump_size>> jumps;
};

// The bytes of the region at `address`: the patch's code relocated for it,
// its marker on top. `region` receives the marker's functions and jumps.
Result<std::vector<std::byte>> region_image(const ApplyPlan& plan, const LoadedObject& target,
                                            const std::vector<JumpSite>& sites,
                                            RemoteAddress address, FilledRegion& region) {
    std::vector<RemoteAddress> replacements;
    auto image = build_patch_image(
        plan.patch, plan.layout, address, target.base,
        [&](const Import& import) -> Result<RemoteAddress> {
            if (import.version == "suture" && import.symbol == shadow_table_symbol) {
                return plan.shadow_table;
            }
            return plan.imports.at(import.symbol);
        },
        replacements);
    if (!image) {
        return tl::unexpected(image.error());
    }
    const std::vector<ReplacedFunction>& functions = plan.patch.metadata.functions;
    region.marker.callbacks = callback_offsets(plan.patch, plan.layout);
    region.marker.data_address = plan.layout.data_size != 0 ? (address + plan.layout.size).raw() : 0;
    region.marker.functions.clear();
    region.jumps.clear();
    for (std::size_t i = 0; i < functions.size(); ++i) {
        region.marker.functions.push_back(MarkedFunction{functions[i].offset, functions[i].size,
                                                         replacements[i].raw(), sites[i].offset,
                                                         sites[i].original});
        auto jump = jump_of(region.marker, region.marker.functions.back());
        if (!jump) {
            return tl::unexpected(jump.error());
        }
        region.jumps.push_back(*jump);
    }
    auto encoded = encode_region_marker(region.marker);
    std::copy(encoded.begin(), encoded.end(), image->begin());
    return image;
}

// Step 5 of an apply: the region mapped near the library and filled.
// A staged region (`staged`) is marked retired until its stop takes it over
// (stage_region).
Result<FilledRegion> fill_region(const RemoteMemory& memory, const std::vector<Mapping>& mappings,
                                 RemoteSyscall& syscall, const ApplyPlan& plan,
                                 const LoadedObject& target, const std::vector<JumpSite>& sites,
                                 bool staged = false) {
    const PatchMetadata& metadata = plan.patch.metadata;
    FilledRegion region;
    region.marker.patch_id = metadata.patch_id;
    region.marker.level = metadata.level;
    region.marker.target_build_id = metadata.target_build_id;
    region.marker.target_base = target.base.raw();
    region.marker.region_size = plan.layout.size;
    region.marker.data_size = plan.layout.data_size;
    region.marker.applied_at_unix_ns = unix_now_ns();
    region.marker.retired_at_unix_ns = staged ? region.marker.applied_at_unix_ns : 0;
    auto address = map_region_with_data(
        syscall, memory, mappings, target.start, target.end, plan.layout.size,
        plan.layout.data_size,
        [&](RemoteAddress at) { return region_image(plan, target, sites, at, region); },
        plan.subject);
    if (!address) {
        return tl::unexpected(address.error());
    }
    region.address = *address;
    region.marker.region_address = address->raw();
    return region;
}

// The system-call trampoline of a stop, installed the first time a step
// needs it: a stop that only checks stacks and writes jumps (its region
// staged before it) runs no injected system call at all.
class SyscallOnDemand {
  public:
    SyscallOnDemand(HeldProcess& held, RemoteSyscall::Site site) : held_(held), site_(site) {}

    Result<RemoteSyscall*> get() {
        if (!syscall_) {
            auto installed = RemoteSyscall::install(held_.stopped, held_.memory, held_.mappings, site_);
            if (!installed) {
                return tl::unexpected(installed.error());
            }
            syscall_.emplace(std::move(*installed));
        }
        return &*syscall_;
    }

  private:
    HeldProcess& held_;
    RemoteSyscall::Site site_;
    std::optional<RemoteSyscall> syscall_;
};

// Puts back the original bytes of the first `count` functions of `marker`.
Result<void> restore_originals(const RemoteMemory& memory, const RegionMarker& marker,
                               std::size_t count) {
    for (std::size_t i = 0; i < count; ++i) {
        const MarkedFunction& function = marker.functions[i];
        if (auto written = memory.write(jump_site(marker, function), function.original); !written) {
            return tl::unexpected(written.error());
        }
    }
    return {};
}

// Step 6 of an apply: the jumps, the only writes the running code can
// notice. Should one fail, the jumps written before it get their bytes back
// and the region goes again, in this stop: no thread saw any of it. Only if
// that fails too (in practice: the process died) is something left, and the
// region's marker explains it.
Result<void> write_jumps(const HeldProcess& held, SyscallOnDemand& syscall,
                         const FilledRegion& region, const std::string& subject) {
    const RegionMarker& marker = region.marker;
    for (std::size_t i = 0; i < marker.functions.size(); ++i) {
        auto written = held.memory.write(jump_site(marker, marker.functions[i]), region.jumps[i]);
        if (written) {
            continue;
        }
        bool undone = false;
        if (restore_originals(held.memory, marker, i)) {
            auto remote = syscall.get();
            undone = remote && unmap_patch_regions(**remote, marker, subject);
        }
        return tl::unexpected(with_context(
            written.error(), undone ? "writing jumps (undone, the region unmapped again)"
                                    : "writing jumps (the region marker explains the state)"));
    }
    return {};
}

// Step 7 of an upgrade: functions of the old level that the new one no
// longer replaces get their original bytes back, and the old region is
// retired: it stays mapped until a later stop proves that no thread can
// still return into it. Nothing here is reported as an error: the new level
// is in place by now, and a write fails only in a process that died.
void retire_level(const RemoteMemory& memory, const RegionMarker& previous,
                  const PatchMetadata& metadata) {
    for (const MarkedFunction& old : previous.functions) {
        bool still_replaced = std::any_of(
            metadata.functions.begin(), metadata.functions.end(),
            [&](const ReplacedFunction& function) { return function.offset == old.target_offset; });
        if (!still_replaced) {
            (void)memory.write(jump_site(previous, old), old.original);
        }
    }
    (void)mark_retired(memory, previous);
}

// The stack check of an apply (step 4); with return gates (a strict apply),
// the threads parked in this apply's gates are excused, and the threads
// still in the way get gates for the next try (ReturnGates.h). The gate page
// goes near [low, high).
Result<bool> stacks_clear_or_gate(HeldProcess& held, ReturnGates* gates, RemoteSyscall::Site site,
                                  RemoteAddress low, RemoteAddress high,
                                  const std::vector<CodeRange>& ranges) {
    auto clear = stacks_clear(held, ranges);
    if (!clear || *clear || gates == nullptr) {
        return clear;
    }
    if (gates->excuse_gated(held, ranges)) {
        return true;
    }
    auto gated = gates->gate_blockers(held, ranges, site, low, high);
    if (!gated) {
        return tl::unexpected(gated.error());
    }
    return false;
}

// Step 5b of an apply: the patch's pre_apply. One that does not return 0
// refuses the apply: the region (and its data region) goes again (nothing
// changed; a shadow region mapped for it stays: it belongs to the process,
// and is empty unless the callback filled it); one still
// running at the hard bound cannot have its code unmapped under it, so the
// region is retired instead, for a later stop to unmap once no thread is
// in it (the marker explains it meanwhile).
Result<void> run_pre_apply(HeldProcess& held, RemoteSyscall& syscall, ApplyPlan& plan,
                           const FilledRegion& region, const std::vector<CodeRange>& ranges) {
    auto pre = run_marked_callback(held, syscall, plan.callbacks, region.marker,
                                   CallbackKind::pre_apply, ranges);
    if (!pre) {
        return tl::unexpected(pre.error());
    }
    if (!*pre || (*pre)->status == CallbackOutcome::Status::ran) {
        return {};
    }
    std::string what_stays;
    if ((*pre)->status == CallbackOutcome::Status::timeout) {
        (void)mark_retired(held.memory, region.marker);
        what_stays = "no jump written; the region stays mapped, retired, until the callback "
                     "has left it";
    } else if (unmap_patch_regions(syscall, region.marker, plan.subject)) {
        // The data region too, if the patch has one: both went in together.
        what_stays = "nothing changed (the region is unmapped again)";
    } else {
        what_stays = "no jump written (the region marker explains the state)";
    }
    return tl::unexpected(
        callback_refusal(plan.subject, plan.patch.metadata.patch_id, **pre, what_stays));
}

InjectReport already_applied_report(const RegionMarker& marker, Consistency consistency) {
    InjectReport report;
    report.consistency = consistency;
    report.patch_id = marker.patch_id;
    report.level = marker.level;
    report.already_applied = true;
    report.region_address = marker.region_address;
    report.functions = marker.functions.size();
    return report;
}

// A region mapped and filled before the stop (stage_region), with what its
// image was made from: the stop takes it over only if all of it still
// holds. Until then its marker says `retired`: should this tool die before
// the stop takes it over, any later stop (apply, revert, update's rescan,
// release_retired_regions) unmaps it, as it does a reverted region, since
// no jump ever led into it.
struct StagedRegion {
    FilledRegion region;
    RemoteAddress target_base;
    std::vector<JumpSite> sites;
    int generation = 0;  // of the preparation its imports were resolved in
    bool taken = false;  // a stop took it over (used or unmapped it)
};

bool staged_still_there(const StagedRegion& staged, const ExistingPatches& existing) {
    return std::find(existing.staged_found.begin(), existing.staged_found.end(),
                     staged.region.address) != existing.staged_found.end();
}

bool same_sites(const std::vector<JumpSite>& a, const std::vector<JumpSite>& b) {
    return a.size() == b.size() &&
           std::equal(a.begin(), a.end(), b.begin(), [](const JumpSite& x, const JumpSite& y) {
               return x.offset == y.offset && x.original == y.original;
           });
}

// Whether the stop can use `staged`: still there with its marker, and made
// for the library, jump sites (original bytes included) and imports this
// stop sees.
bool staged_usable(const StagedRegion* staged, const ExistingPatches& existing,
                   const ApplyPlan& plan, const LoadedObject& target,
                   const std::vector<JumpSite>& sites) {
    return staged != nullptr && staged_still_there(*staged, existing) &&
           staged->generation == plan.preparation.generation && staged->target_base == target.base &&
           same_sites(staged->sites, sites);
}

// Clears a staged region's retired mark: from here on it is this apply's
// region, in this stop (an undo unmaps it here, as one filled here).
Result<void> mark_in_use(const RemoteMemory& memory, const RegionMarker& marker) {
    std::array<std::byte, sizeof(std::uint64_t)> zero{};
    return memory.write(RemoteAddress(marker.region_address) + region_marker_retired_offset, zero);
}

// Step 5 of an apply: the region, after unmapping the retired regions and
// gate pages no thread refers to. The staged region if usable; else (the
// maps or the bytes changed since it was made) it goes and the region is
// mapped and filled here, as without staging. `released` receives how many
// retired regions and gate pages went.
Result<FilledRegion> region_in_stop(HeldProcess& held, SyscallOnDemand& syscall, ApplyPlan& plan,
                                    const LoadedObject& target, const ExistingPatches& existing,
                                    const std::vector<JumpSite>& sites, StagedRegion* staged,
                                    std::size_t& released) {
    if (!existing.retired.empty() || !find_gate_pages(held.memory, held.mappings).empty()) {
        auto remote = syscall.get();
        if (!remote) {
            return tl::unexpected(remote.error());
        }
        auto went = release_clear_retired_and_gates(held, **remote, existing.retired, plan.subject);
        if (!went) {
            return tl::unexpected(went.error());
        }
        released = *went;
    }
    if (staged_usable(staged, existing, plan, target, sites)) {
        staged->taken = true;
        if (auto in_use = mark_in_use(held.memory, staged->region.marker); !in_use) {
            return tl::unexpected(in_use.error());  // it stays retired: a later stop unmaps it
        }
        return staged->region;
    }
    auto remote = syscall.get();
    if (!remote) {
        return tl::unexpected(remote.error());
    }
    if (staged != nullptr && staged_still_there(*staged, existing)) {
        staged->taken = true;  // nothing points into it: it goes now
        if (auto unmapped = unmap_patch_regions(**remote, staged->region.marker, plan.subject);
            !unmapped) {
            return tl::unexpected(unmapped.error());
        }
    }
    if (auto imports = refresh_imports(plan); !imports) {
        return tl::unexpected(imports.error());
    }
    if (auto shadow = provide_shadow_table(held.memory, held.mappings, **remote, plan, target);
        !shadow) {
        return tl::unexpected(shadow.error());
    }
    return fill_region(held.memory, held.mappings, **remote, plan, target, sites);
}

// What steps 1 to 3 of an apply found in the stop: the library, the
// patches already there, the jump sites, and the code no thread may be in.
struct CheckedApply {
    const LoadedObject* target = nullptr;
    ExistingPatches existing;
    std::vector<JumpSite> sites;
    std::vector<CodeRange> ranges;
};

// Steps 1 to 3 of an apply, in the stop. `staged` are the regions this
// operation staged (none of them counts as a patch already there). An
// InjectReport instead when the patch is applied already.
Result<std::variant<CheckedApply, InjectReport>> check_in_stop(
    HeldProcess& held, const ApplyPlan& plan, const std::vector<RemoteAddress>& staged) {
    const PatchMetadata& metadata = plan.patch.metadata;
    const std::string& subject = plan.subject;
    CheckedApply checked;
    // 1. The library, by soname and build ID, in the maps as they are now.
    auto found = find_target_library(plan.preparation.objects, metadata, subject);
    if (!found) {
        return tl::unexpected(found.error());
    }
    checked.target = *found;
    // 2. The patches already there.
    auto existing = find_existing_patches(held.memory, held.mappings, *checked.target, plan.patch,
                                          subject, staged);
    if (!existing) {
        return tl::unexpected(existing.error());
    }
    if (existing->already_applied) {
        return already_applied_report(*existing->already_applied, metadata.consistency);
    }
    checked.existing = std::move(*existing);
    // 3. Fingerprints, in the stopped process.
    auto sites = check_fingerprints(held.memory, *checked.target, metadata,
                                    checked.existing.previous, subject);
    if (!sites) {
        return tl::unexpected(sites.error());
    }
    checked.sites = std::move(*sites);
    checked.ranges =
        apply_ranges(*checked.target, metadata, checked.sites, checked.existing.previous);
    return checked;
}

// Steps 5 to 7 of an apply, in the stop, once the stacks are clear.
Result<InjectReport> commit_in_stop(HeldProcess& held, SyscallOnDemand& syscall, ApplyPlan& plan,
                                    const CheckedApply& checked, StagedRegion* staged) {
    const PatchMetadata& metadata = plan.patch.metadata;
    const LoadedObject& target = *checked.target;
    const ExistingPatches& existing = checked.existing;
    // 5. The region (staged before the stop, or mapped and filled now).
    std::size_t released = 0;
    auto region =
        region_in_stop(held, syscall, plan, target, existing, checked.sites, staged, released);
    if (!region) {
        return tl::unexpected(region.error());
    }
    // 5b. pre_apply, with the region's code in place and no jump yet.
    if (metadata.callbacks.any()) {
        auto remote = syscall.get();
        if (!remote) {
            return tl::unexpected(remote.error());
        }
        if (auto pre = run_pre_apply(held, **remote, plan, *region, checked.ranges); !pre) {
            return tl::unexpected(pre.error());
        }
    }
    // 6. The jumps.
    if (auto written = write_jumps(held, syscall, *region, plan.subject); !written) {
        return tl::unexpected(written.error());
    }
    // 6b. post_apply: reported, not undone.
    if (metadata.callbacks.any()) {
        auto remote = syscall.get();
        if (!remote) {
            return tl::unexpected(remote.error());
        }
        if (auto post = run_marked_callback(held, **remote, plan.callbacks, region->marker,
                                            CallbackKind::post_apply, checked.ranges);
            !post) {
            return tl::unexpected(post.error());
        }
    }
    if (plan.gates != nullptr) {
        plan.gates->release();  // the gated threads return into the new code's callers
    }
    // 7. The level replaced.
    InjectReport report;
    if (existing.previous) {
        retire_level(held.memory, *existing.previous, metadata);
        report.replaced_level = existing.previous->level;
        report.replaced_patch_id = existing.previous->patch_id;
    }
    report.patch_id = metadata.patch_id;
    report.level = metadata.level;
    report.consistency = metadata.consistency;
    report.region_address = region->address.raw();
    report.functions = metadata.functions.size();
    report.released_regions = released;
    report.callbacks = plan.callbacks.outcomes;
    return report;
}

// Steps 1 to 7 of an apply, in one stop; nullopt when threads are in the
// way (step 4). The caller's with_process_stopped() fills in what the stop
// cost. `staged` (if any): the region staged before the stop.
Result<std::optional<InjectReport>> apply_in_stop(HeldProcess& held, ApplyPlan& plan,
                                                  StagedRegion* staged) {
    // 1 to 3. Library, patches already there, fingerprints.
    std::vector<RemoteAddress> staged_addresses;
    if (staged != nullptr) {
        staged_addresses.push_back(staged->region.address);
    }
    auto checked = check_in_stop(held, plan, staged_addresses);
    if (!checked) {
        return tl::unexpected(checked.error());
    }
    if (auto* already = std::get_if<InjectReport>(&*checked)) {
        return std::move(*already);
    }
    CheckedApply& check = std::get<CheckedApply>(*checked);
    // 4. Stacks.
    auto clear = stacks_clear_or_gate(held, plan.gates, plan.preparation.trampoline_site,
                                      check.target->start, check.target->end, check.ranges);
    if (!clear) {
        return tl::unexpected(clear.error());
    }
    if (!*clear) {
        return std::optional<InjectReport>{};  // threads in the way: another try
    }
    // 4b. With callbacks: no thread inside the allocator or the loader.
    if (plan.patch.metadata.callbacks.any()) {
        auto locks = callback_locks_clear(held, plan.preparation, plan.callbacks);
        if (!locks) {
            return tl::unexpected(locks.error());
        }
        if (!*locks) {
            return std::optional<InjectReport>{};  // a lock may be held: another try
        }
    }
    // 5 to 7. Region, jumps, the level replaced.
    SyscallOnDemand syscall(held, plan.preparation.trampoline_site);
    auto report = commit_in_stop(held, syscall, plan, check, staged);
    if (!report) {
        return tl::unexpected(report.error());
    }
    return std::optional<InjectReport>{std::move(*report)};
}

// Step 0b of an apply: the region mapped and filled before the stop, with
// one thread held and the others running (new memory nothing references
// until the jumps exist), so that the stop does no injected system call.
//  1. Read without a stop: the library, the patches already there (a
//     previous level's jumps hide original bytes), the jump sites and the
//     fingerprints. Nothing to stage when the patch is applied already.
//  2. The region mapped and filled on `held` (one thread held) at its
//     mmap's exit exactly as in a stop (intent record first), its marker
//     saying `retired` until the stop takes it over.
// nullopt when there is nothing to stage or staging fails: the stop then
// maps and fills the region itself and tells any error.
std::optional<StagedRegion> stage_on(StoppedProcess& held, const RemoteMemory& memory,
                                     const std::vector<Mapping>& mappings, ApplyPlan& plan) {
    const PatchMetadata& metadata = plan.patch.metadata;
    // 1. What the image depends on.
    auto found = find_target_library(plan.preparation.objects, metadata, plan.subject);
    if (!found) {
        return std::nullopt;
    }
    const LoadedObject& target = **found;
    auto existing = find_existing_patches(memory, mappings, target, plan.patch, plan.subject);
    if (!existing || existing->already_applied) {
        return std::nullopt;
    }
    auto sites = check_fingerprints(memory, target, metadata, existing->previous, plan.subject);
    if (!sites) {
        return std::nullopt;
    }
    // 2. The region mapped and filled; the trampoline's bytes back before
    // the thread goes.
    auto syscall =
        RemoteSyscall::install(held, memory, mappings, plan.preparation.trampoline_site);
    if (!syscall || !provide_shadow_table(memory, mappings, *syscall, plan, target)) {
        return std::nullopt;
    }
    auto region = fill_region(memory, mappings, *syscall, plan, target, *sites, true);
    if (!region) {
        return std::nullopt;
    }
    return StagedRegion{std::move(*region), target.base, std::move(*sites),
                        plan.preparation.generation};
}

// Step 0b for every plan of `plans`, with one thread of `pid` held once (on
// a tracer thread of its own, whose end releases a thread that never
// stopped). `held_for` receives how long the thread was held.
std::vector<std::optional<StagedRegion>> stage_regions(int pid,
                                                       const std::vector<ApplyPlan*>& plans,
                                                       std::chrono::nanoseconds& held_for) {
    std::vector<std::optional<StagedRegion>> staged(plans.size());
    auto memory = RemoteMemory::open(pid, true);
    auto mappings = read_process_maps(pid);
    if (!memory || !mappings) {
        return staged;
    }
    on_tracer_thread([&] {
        auto held = StoppedProcess::stop_one_thread(pid);
        if (!held) {
            return 0;
        }
        for (std::size_t i = 0; i < plans.size(); ++i) {
            staged[i] = stage_on(*held, *memory, *mappings, *plans[i]);
            // The next region's free gaps are those left by this one.
            if (!staged[i]) {
                continue;
            }
            if (auto fresh = read_process_maps(pid)) {
                *mappings = std::move(*fresh);
            }
        }
        held_for = held->resume();
        return 0;
    });
    return staged;
}

// Staged regions no stop took over (the apply failed, or another apply got
// there first): nothing ever pointed into them, so they go with one thread
// held, each if its marker is still there. Should that fail, they stay
// retired and a later stop unmaps them.
void discard_staged(int pid, const std::vector<const StagedRegion*>& staged,
                    const Preparation& preparation) {
    if (staged.empty()) {
        return;
    }
    std::string subject = subject_of(pid);
    std::optional<Preparation> fresh;
    if (maps_changed_since(pid, preparation)) {
        auto prepared = prepare_process(pid);
        if (!prepared) {
            return;
        }
        fresh = std::move(*prepared);
    }
    RemoteSyscall::Site site = (fresh ? *fresh : preparation).trampoline_site;
    on_tracer_thread([&] {
        auto held = StoppedProcess::stop_one_thread(pid);
        auto memory = RemoteMemory::open(pid, true);
        auto mappings = read_process_maps(pid);
        if (!held || !memory || !mappings) {
            return 0;
        }
        std::vector<RegionMarker> markers = find_markers(*memory, *mappings);
        auto syscall = RemoteSyscall::install(*held, *memory, *mappings, site);
        for (const StagedRegion* region : staged) {
            const RegionMarker& ours = region->region.marker;
            bool still_ours = std::any_of(markers.begin(), markers.end(), [&](const RegionMarker& m) {
                return m.region_address == ours.region_address &&
                       m.applied_at_unix_ns == ours.applied_at_unix_ns && m.retired();
            });
            if (still_ours && syscall) {
                (void)unmap_patch_regions(*syscall, ours, subject);
            }
        }
        return 0;
    });
}

// The staged regions of `staged` no stop took over.
std::vector<const StagedRegion*> untaken(const std::vector<std::optional<StagedRegion>>& staged) {
    std::vector<const StagedRegion*> left;
    for (const std::optional<StagedRegion>& region : staged) {
        if (region && !region->taken) {
            left.push_back(&*region);
        }
    }
    return left;
}

// The suture regions a revert of `patch_id` (every one when empty) sees.
struct RevertTargets {
    std::vector<RegionMarker> markers;  // the regions to revert
    std::vector<RegionMarker> retired;
    std::vector<InterruptedRegion> interrupted;

    bool empty() const { return markers.empty() && interrupted.empty(); }
};

// Step 1 of a revert.
RevertTargets find_revert_targets(const HeldProcess& held, const std::string& patch_id) {
    RevertTargets targets;
    for (RegionMarker& marker : find_markers(held.memory, held.mappings)) {
        if (marker.retired()) {
            targets.retired.push_back(std::move(marker));
        } else if (patch_id.empty() || marker.patch_id == patch_id) {
            targets.markers.push_back(std::move(marker));
        }
    }
    targets.interrupted = find_interrupted_regions(held.memory, held.mappings);
    return targets;
}

// Step 2 of a revert: every jump site holds our jump or the original bytes
// (foreign bytes are a conflict).
Result<void> check_jump_sites(const RemoteMemory& memory, const RevertTargets& targets,
                              const std::string& subject) {
    for (const RegionMarker& marker : targets.markers) {
        auto jumps = count_jumps(memory, marker);
        if (!jumps) {
            return tl::unexpected(jumps.error());
        }
        if (jumps->foreign) {
            return fail(ErrorCode::conflict,
                        subject + ": " + marker.patch_id +
                            ": a jump site holds bytes suture did not write; not touching it");
        }
    }
    return {};
}

// Step 3 of a revert: each marked region's original bytes back, the region
// retired (not unmapped: a thread may still run in it or return into it;
// step 4 or a later stop unmaps it once no thread refers to it), and the
// empty regions of interrupted applies unmapped.
Result<std::vector<InjectReport>> undo_patches(const HeldProcess& held, RemoteSyscall& syscall,
                                               const RevertTargets& targets,
                                               const std::string& subject) {
    std::vector<InjectReport> reports;
    for (const RegionMarker& marker : targets.markers) {
        if (auto restored = restore_originals(held.memory, marker, marker.functions.size());
            !restored) {
            return tl::unexpected(restored.error());
        }
        if (auto retiring = mark_retired(held.memory, marker); !retiring) {
            return tl::unexpected(retiring.error());
        }
        InjectReport report;
        report.patch_id = marker.patch_id;
        report.level = marker.level;
        report.region_address = marker.region_address;
        report.functions = marker.functions.size();
        reports.push_back(report);
    }
    for (const InterruptedRegion& region : targets.interrupted) {
        if (auto unmapped = unmap_region(syscall, RemoteAddress(region.intent.region_address),
                                         region.intent.region_size, subject);
            !unmapped) {
            return tl::unexpected(unmapped.error());
        }
        (void)syscall.clear_intent(region.record_address);
        InjectReport report;
        report.region_address = region.intent.region_address;
        reports.push_back(report);  // patch_id "": an empty region removed
    }
    return reports;
}

bool any_callbacks(const RevertTargets& targets) {
    return std::any_of(targets.markers.begin(), targets.markers.end(),
                       [](const RegionMarker& marker) { return marker.callbacks.any(); });
}

// Revert callbacks run for a patch that was in effect: every jump in
// place. A region an apply killed before or while writing its jumps
// (inactive, partial) never ran post_apply, so its revert callbacks are
// skipped, and reported so.
struct RevertCallbacks {
    std::vector<std::optional<CallbackOutcome>> pre;  // by marker
    std::vector<bool> in_effect;                      // by marker
};

std::optional<CallbackOutcome> skipped_not_in_effect(const RegionMarker& marker,
                                                     CallbackKind kind, CallbackRun& run) {
    if (callback_offset(marker.callbacks, kind) == 0) {
        return std::nullopt;
    }
    CallbackOutcome skipped{.kind = kind};
    skipped.reason = "the patch was not in effect (an interrupted apply): not run";
    run.outcomes.push_back(skipped);
    return skipped;
}

// Before step 3 of a revert: every region's pre_revert, in marker order;
// the first that does not return 0 refuses the whole revert (nothing is
// reverted; the pre_revert callbacks that ran before it did run).
Result<RevertCallbacks> run_pre_reverts(HeldProcess& held, RemoteSyscall& syscall,
                                        const RevertTargets& targets, const std::string& subject,
                                        CallbackRun& run) {
    RevertCallbacks callbacks;
    for (const RegionMarker& marker : targets.markers) {
        auto jumps = count_jumps(held.memory, marker);
        bool in_effect = jumps && !jumps->foreign && jumps->in_place == marker.functions.size();
        callbacks.in_effect.push_back(in_effect);
        if (!in_effect) {
            callbacks.pre.push_back(skipped_not_in_effect(marker, CallbackKind::pre_revert, run));
            continue;
        }
        auto pre = run_marked_callback(held, syscall, run, marker, CallbackKind::pre_revert, {});
        if (!pre) {
            return tl::unexpected(pre.error());
        }
        if (*pre && (*pre)->status != CallbackOutcome::Status::ran) {
            return tl::unexpected(
                callback_refusal(subject, marker.patch_id, **pre, "nothing reverted"));
        }
        callbacks.pre.push_back(*pre);
    }
    return callbacks;
}

// After step 3: every reverted region's post_revert; each region's report
// gets its pre_revert and post_revert outcomes. Failures are reported, not
// undone.
Result<void> run_post_reverts(HeldProcess& held, RemoteSyscall& syscall,
                              const RevertTargets& targets, const RevertCallbacks& callbacks,
                              std::vector<InjectReport>& reports, CallbackRun& run) {
    for (std::size_t i = 0; i < targets.markers.size(); ++i) {
        const RegionMarker& marker = targets.markers[i];
        std::optional<CallbackOutcome> post;
        if (!callbacks.in_effect[i]) {
            post = skipped_not_in_effect(marker, CallbackKind::post_revert, run);
        } else {
            auto ran =
                run_marked_callback(held, syscall, run, marker, CallbackKind::post_revert, {});
            if (!ran) {
                return tl::unexpected(ran.error());
            }
            post = *ran;
        }
        for (const auto& outcome : {callbacks.pre[i], post}) {
            if (outcome) {
                reports[i].callbacks.push_back(*outcome);
            }
        }
    }
    return {};
}

// Steps 1 to 4 of a revert, in one stop; an empty list when there is
// nothing to revert. A revert never waits for busy code: no stack check
// stands between it and the original bytes (a thread inside a region runs
// on in mapped code and returns to the unchanged callers; its next call
// takes the original function).
Result<std::optional<std::vector<InjectReport>>> revert_in_stop(HeldProcess& held,
                                                                const Preparation& preparation,
                                                                const std::string& patch_id,
                                                                const std::string& subject,
                                                                CallbackRun& run) {
    // 1. The regions to revert; with callbacks, no thread inside the
    // allocator or the loader.
    RevertTargets targets = find_revert_targets(held, patch_id);
    if (targets.empty()) {
        return std::vector<InjectReport>{};
    }
    if (any_callbacks(targets)) {
        auto locks = callback_locks_clear(held, preparation, run);
        if (!locks) {
            return tl::unexpected(locks.error());
        }
        if (!*locks) {
            return std::optional<std::vector<InjectReport>>{};  // another try
        }
    }
    // 2. The jump sites.
    if (auto sites = check_jump_sites(held.memory, targets, subject); !sites) {
        return tl::unexpected(sites.error());
    }
    // 3. The original bytes back, each region retired; the empty regions of
    // interrupted applies unmapped.
    auto syscall = RemoteSyscall::install(held.stopped, held.memory, held.mappings,
                                          preparation.trampoline_site);
    if (!syscall) {
        return tl::unexpected(syscall.error());
    }
    auto pre = run_pre_reverts(held, *syscall, targets, subject, run);
    if (!pre) {
        return tl::unexpected(pre.error());
    }
    auto reports = undo_patches(held, *syscall, targets, subject);
    if (!reports) {
        return tl::unexpected(reports.error());
    }
    if (auto post = run_post_reverts(held, *syscall, targets, *pre, *reports, run); !post) {
        return tl::unexpected(post.error());
    }
    if (run.left_running) {
        return std::move(*reports);  // a post_revert still runs: the release waits for a later stop
    }
    // 4. Every retired region (the ones just retired included) and every
    // released gate page that no thread refers to unmapped; the others stay
    // for a later stop.
    std::vector<RegionMarker> retired = std::move(targets.retired);
    std::move(targets.markers.begin(), targets.markers.end(), std::back_inserter(retired));
    auto released = release_clear_retired_and_gates(held, *syscall, retired, subject);
    if (!released) {
        return tl::unexpected(released.error());
    }
    for (InjectReport& report : *reports) {
        report.released_regions = *released;
    }
    return std::move(*reports);
}

// What reading a process needs: its maps, and its memory open read-only.
struct ProcessView {
    std::vector<Mapping> mappings;
    RemoteMemory memory;
};

Result<ProcessView> view_of(int pid) {
    auto mappings = read_process_maps(pid);
    if (!mappings) {
        return tl::unexpected(mappings.error());
    }
    auto memory = RemoteMemory::open(pid, false);
    if (!memory) {
        return tl::unexpected(memory.error());
    }
    return ProcessView{std::move(*mappings), std::move(*memory)};
}

// Copies what the stop cost into `report`.
void add_stop_figures(InjectReport& report, int attempts, std::size_t threads,
                      const StackCheckFigures& stack_check, std::chrono::nanoseconds stopped_for) {
    report.attempts = attempts;
    report.threads = threads;
    report.stack_check = stack_check;
    report.stopped_for = stopped_for;
}

}  // namespace

std::string patch_state_name(PatchState state) {
    switch (state) {
        case PatchState::active:
            return "active";
        case PatchState::inactive:
            return "inactive";
        case PatchState::partial:
            return "partial";
        case PatchState::foreign:
            return "foreign";
        case PatchState::empty:
            return "empty";
        case PatchState::retired:
            return "retired";
    }
    return "unknown";
}

Result<std::vector<AppliedPatch>> list_applied_patches(int pid) {
    auto run = read_program_run(pid);
    if (!run) {
        return tl::unexpected(run.error());
    }
    auto view = view_of(pid);
    if (!view) {
        return tl::unexpected(truthful_error(*run, view.error()));
    }
    const RemoteMemory& memory = view->memory;
    std::vector<AppliedPatch> patches;
    for (RegionMarker& marker : find_markers(memory, view->mappings)) {
        auto jumps = count_jumps(memory, marker);
        if (!jumps) {
            return tl::unexpected(jumps.error());
        }
        AppliedPatch patch{std::move(marker), PatchState::active, jumps->in_place};
        if (patch.marker.retired()) {
            patch.state = PatchState::retired;
        } else if (jumps->foreign) {
            patch.state = PatchState::foreign;
        } else if (jumps->in_place == 0) {
            patch.state = PatchState::inactive;
        } else if (jumps->in_place < patch.marker.functions.size()) {
            patch.state = PatchState::partial;
        }
        patches.push_back(std::move(patch));
    }
    for (const InterruptedRegion& interrupted : find_interrupted_regions(memory, view->mappings)) {
        AppliedPatch patch;
        patch.marker.region_address = interrupted.intent.region_address;
        patch.marker.region_size = interrupted.intent.region_size;
        patch.state = PatchState::empty;
        patches.push_back(std::move(patch));
    }
    return patches;
}

Result<std::optional<ShadowRegion>> list_shadow_region(int pid) {
    auto view = view_of(pid);
    if (!view) {
        return tl::unexpected(view.error());
    }
    return find_shadow_region(view->memory, view->mappings);
}

Result<std::vector<GatePage>> list_gate_pages(int pid) {
    auto view = view_of(pid);
    if (!view) {
        return tl::unexpected(view.error());
    }
    return find_gate_pages(view->memory, view->mappings);
}

namespace {

Result<InjectReport> apply_as_tracer(int pid, const PatchFile& patch, const InjectOptions& options,
                                     std::vector<BlockingThread>* blocking_out,
                                     std::vector<CallbackOutcome>* callbacks_out) {
    // 0. Everything that needs no address, before the stop; first of all,
    // no other process may share the memory.
    if (auto alone = check_memory_not_shared(pid, SharerSearch::every_process); !alone) {
        return tl::unexpected(alone.error());
    }
    auto plan = plan_apply(pid, patch);
    if (!plan) {
        return tl::unexpected(plan.error());
    }
    // A strict patch waits for busy threads at return gates instead of
    // only backing off; the gates are released on every way out.
    std::optional<ReturnGates> gates;
    if (patch.metadata.consistency == Consistency::strict && options.return_gates) {
        gates.emplace(pid, options.attempts);
        plan->gates = &*gates;
    }
    plan->callbacks.bounds = options.callback_bounds;
    // 0b. The region, staged before the stop.
    std::chrono::nanoseconds staged_for{};
    std::vector<std::optional<StagedRegion>> staged_all(1);
    if (options.stage_before_stop) {
        staged_all = stage_regions(pid, {&*plan}, staged_for);
    }
    std::optional<StagedRegion>& staged = staged_all.front();
    // 1 to 7, in one stop (tried again while threads are in the way).
    auto applied = with_process_stopped<InjectReport>(
        pid, plan->preparation, options,
        patch.metadata.callbacks.any()
            ? "running code being replaced or inside a lock the patch's callbacks may need"
            : "running code being replaced",
        blocking_out,
        [&](HeldProcess& held) {
            return apply_in_stop(held, *plan, staged ? &*staged : nullptr);
        },
        [&] { return gates && gates->wait_for_arrivals(); });
    discard_staged(pid, untaken(staged_all), plan->preparation);
    bool gated = gates && gates->rounds() > 0;
    if (gates) {
        gates->release();
    }
    if (!applied) {
        if (gated) {
            (void)release_after_a_pause(pid, options);  // the gate page, if nobody is in it
        }
        if (callbacks_out != nullptr) {
            CallbackKind first = patch.metadata.callbacks.pre_apply.empty()
                                     ? CallbackKind::post_apply
                                     : CallbackKind::pre_apply;
            *callbacks_out = outcomes_of_failure(plan->callbacks, applied.error(), first);
        }
        return tl::unexpected(applied.error());
    }
    InjectReport report = std::move(applied->value);
    add_stop_figures(report, applied->attempts, applied->threads, applied->stack_check,
                     applied->stopped_for);
    report.staged = staged && staged->taken && !report.already_applied &&
                    report.region_address == staged->region.address.raw();
    report.staged_for = staged_for;
    if (gates) {
        report.gated_threads = gates->gated();
        report.gate_rounds = gates->rounds();
    }
    // The replaced level's region, retired in that stop, and the gate page
    // usually go in a second stop a moment later.
    if (report.replaced_level || gated) {
        report.released_regions += release_after_a_pause(pid, options);
    }
    return report;
}

// Which patches of an apply_patches() go through one shared stop: those
// without callbacks (their lock checks and refusals stay per patch), each
// id once, no two on the same function. The others are applied alone.
std::vector<bool> groupable(const std::vector<const PatchFile*>& patches) {
    std::vector<bool> grouped(patches.size(), false);
    std::set<std::string> ids;
    std::set<std::pair<std::string, std::uint64_t>> functions;
    for (std::size_t i = 0; i < patches.size(); ++i) {
        const PatchMetadata& metadata = patches[i]->metadata;
        bool fits = !metadata.callbacks.any() && !ids.contains(metadata.patch_id);
        for (const ReplacedFunction& function : metadata.functions) {
            fits = fits && !functions.contains({metadata.target_soname, function.offset});
        }
        if (!fits) {
            continue;
        }
        grouped[i] = true;
        ids.insert(metadata.patch_id);
        for (const ReplacedFunction& function : metadata.functions) {
            functions.insert({metadata.target_soname, function.offset});
        }
    }
    return grouped;
}

// The shared stop of apply_patches(), one try: steps 1 to 3 for each plan
// (a patch that fails them, or is applied already, gets its outcome and
// drops out), one stack check over the code of all of them, then steps 5
// to 7 for each. False when threads were in the way (nothing changed):
// the caller applies the remaining patches one by one, each with its own
// tries and return gates.
Result<bool> apply_group_in_stop(HeldProcess& held, std::vector<ApplyPlan*>& plans,
                                 std::vector<std::optional<StagedRegion>>& staged,
                                 const Preparation& shared, std::vector<PatchApplication*>& out) {
    std::vector<RemoteAddress> staged_addresses;
    for (const std::optional<StagedRegion>& region : staged) {
        if (region) {
            staged_addresses.push_back(region->region.address);
        }
    }
    // 1 to 3, for each plan.
    std::vector<std::optional<CheckedApply>> checked(plans.size());
    std::vector<CodeRange> ranges;
    for (std::size_t i = 0; i < plans.size(); ++i) {
        if (plans[i]->preparation.generation != shared.generation) {
            plans[i]->preparation = shared;  // redone in this stop: the maps changed
        }
        auto check = check_in_stop(held, *plans[i], staged_addresses);
        if (!check) {
            out[i]->report = tl::unexpected(check.error());
        } else if (auto* already = std::get_if<InjectReport>(&*check)) {
            out[i]->report = std::move(*already);
        } else {
            checked[i] = std::move(std::get<CheckedApply>(*check));
            ranges.insert(ranges.end(), checked[i]->ranges.begin(), checked[i]->ranges.end());
        }
    }
    // 4. One stack check for all.
    auto clear = stacks_clear(held, ranges);
    if (!clear) {
        return tl::unexpected(clear.error());
    }
    if (!*clear) {
        for (std::size_t i = 0; i < plans.size(); ++i) {
            if (checked[i]) {
                out[i] = nullptr;  // not decided: applied alone by the caller
            }
        }
        return false;
    }
    // 5 to 7, for each; the retired regions go with the first.
    SyscallOnDemand syscall(held, shared.trampoline_site);
    bool released = false;
    for (std::size_t i = 0; i < plans.size(); ++i) {
        if (!checked[i]) {
            continue;
        }
        if (released) {
            checked[i]->existing.retired.clear();
        }
        released = true;
        StagedRegion* region = staged[i] ? &*staged[i] : nullptr;
        out[i]->report = commit_in_stop(held, syscall, *plans[i], *checked[i], region);
        // A region mapped in this stop: the next one's free gaps are those
        // it left.
        bool used_staged = region != nullptr && out[i]->report &&
                           out[i]->report->region_address == region->region.address.raw();
        if (!used_staged) {
            if (auto fresh = read_process_maps(held.stopped.pid())) {
                held.mappings = std::move(*fresh);
            }
        }
    }
    return true;
}

// apply_patches() on the tracer thread. Returns an error only when nothing
// was tried (the process is shared or cannot be prepared at all).
Result<std::vector<PatchApplication>> apply_group_as_tracer(
    int pid, const std::vector<const PatchFile*>& patches, const InjectOptions& options) {
    std::vector<PatchApplication> out(patches.size());
    std::vector<bool> alone(patches.size(), true);
    // 0. No other process shares the memory; the plans, one preparation.
    if (auto shared_memory = check_memory_not_shared(pid, SharerSearch::every_process);
        !shared_memory) {
        return tl::unexpected(shared_memory.error());
    }
    std::vector<bool> grouped = groupable(patches);
    std::vector<const PatchFile*> group_patches;
    std::vector<std::size_t> group_index;
    for (std::size_t i = 0; i < patches.size(); ++i) {
        if (grouped[i]) {
            group_patches.push_back(patches[i]);
            group_index.push_back(i);
        }
    }
    std::vector<Result<ApplyPlan>> planned;
    if (group_patches.size() >= 2) {
        auto plans = plan_applies(pid, group_patches);
        if (!plans) {
            return tl::unexpected(plans.error());
        }
        planned = std::move(*plans);
    }
    std::vector<ApplyPlan*> plans;
    std::vector<PatchApplication*> outcomes;
    for (std::size_t k = 0; k < planned.size(); ++k) {
        std::size_t i = group_index[k];
        alone[i] = false;
        if (!planned[k]) {
            out[i].report = tl::unexpected(planned[k].error());
            continue;
        }
        plans.push_back(&*planned[k]);
        outcomes.push_back(&out[i]);
    }
    // 0b, 1 to 7: the regions staged with one thread held, then one stop.
    if (!plans.empty()) {
        std::chrono::nanoseconds staged_for{};
        std::vector<std::optional<StagedRegion>> staged(plans.size());
        if (options.stage_before_stop) {
            staged = stage_regions(pid, plans, staged_for);
        }
        Preparation shared = plans.front()->preparation;
        auto held = hold_process(pid, shared, 1);
        std::vector<PatchApplication*> decided = outcomes;
        bool replaced = false;
        if (!held && !stop_timed_out(held.error())) {
            for (PatchApplication* outcome : outcomes) {
                outcome->report = tl::unexpected(held.error());
            }
        } else if (!held) {
            std::fill(decided.begin(), decided.end(), nullptr);  // each alone, with its tries
        } else {
            auto done = apply_group_in_stop(*held, plans, staged, shared, decided);
            std::size_t threads = held->stopped.threads().size();
            StackCheckFigures figures = held->stack_check;
            std::chrono::nanoseconds stopped_for = held->stopped.resume();
            for (std::size_t k = 0; k < plans.size(); ++k) {
                if (!done) {
                    outcomes[k]->report = tl::unexpected(done.error());
                } else if (decided[k] != nullptr && outcomes[k]->report) {
                    InjectReport& report = *outcomes[k]->report;
                    add_stop_figures(report, 1, threads, figures, stopped_for);
                    report.staged = staged[k] && staged[k]->taken && !report.already_applied &&
                                    report.region_address == staged[k]->region.address.raw();
                    report.staged_for = staged_for;
                    replaced = replaced || report.replaced_level.has_value();
                }
            }
        }
        held = tl::unexpected(Error{});  // every thread resumed before the clean-ups
        discard_staged(pid, untaken(staged), shared);
        if (replaced) {
            std::size_t released = release_after_a_pause(pid, options);
            for (PatchApplication* outcome : outcomes) {
                if (outcome->report) {
                    outcome->report->released_regions += released;
                }
            }
        }
        for (std::size_t k = 0; k < plans.size(); ++k) {
            if (decided[k] == nullptr) {
                std::size_t i = static_cast<std::size_t>(outcomes[k] - out.data());
                alone[i] = true;
            }
        }
    }
    // The rest, one by one.
    for (std::size_t i = 0; i < patches.size(); ++i) {
        if (alone[i]) {
            out[i].report = apply_as_tracer(pid, *patches[i], options, &out[i].blocking,
                                            &out[i].callbacks);
            if (out[i].report) {
                out[i].callbacks = out[i].report->callbacks;
            }
        }
    }
    return out;
}

Result<std::vector<InjectReport>> revert_as_tracer(int pid, const std::string& patch_id,
                                                   const InjectOptions& options,
                                                   std::vector<CallbackOutcome>* callbacks_out) {
    std::string subject = subject_of(pid);
    if (auto alone = check_memory_not_shared(pid, SharerSearch::every_process); !alone) {
        return tl::unexpected(alone.error());
    }
    auto preparation = prepare_process(pid);
    if (!preparation) {
        return tl::unexpected(preparation.error());
    }
    CallbackRun run{.bounds = options.callback_bounds};
    auto reverted = with_process_stopped<std::vector<InjectReport>>(
        pid, *preparation, options, "inside a lock the patch's callbacks may need", nullptr,
        [&](HeldProcess& held) {
            return revert_in_stop(held, *preparation, patch_id, subject, run);
        });
    if (!reverted) {
        if (callbacks_out != nullptr) {
            *callbacks_out = outcomes_of_failure(run, reverted.error(), CallbackKind::pre_revert);
        }
        return tl::unexpected(reverted.error());
    }
    std::vector<InjectReport>& reports = reverted->value;
    if (reports.empty()) {
        // Nothing to revert; still, retired regions may be releasable.
        (void)release_retired_regions(pid);
        return fail(ErrorCode::not_applied, subject + ": " +
                                                (patch_id.empty() ? "no suture patch is applied"
                                                                  : patch_id + " is not applied"));
    }
    // A region a thread was still running in stays retired; it usually goes
    // in a second stop a moment later.
    std::size_t released_later = leftovers_mapped(pid) ? release_after_a_pause(pid, options) : 0;
    for (InjectReport& report : reports) {
        add_stop_figures(report, reverted->attempts, reverted->threads, reverted->stack_check,
                         reverted->stopped_for);
        report.released_regions += released_later;
    }
    return std::move(reports);
}

// One stop of a process no other process shares memory with, a single try
// (the clean-ups below: nothing waits on a stack, so no retries), running
// `step(held, preparation)` inside it.
template <typename Step>
Result<std::size_t> in_one_stop_alone(int pid, Step step) {
    if (auto alone = check_memory_not_shared(pid, SharerSearch::every_process); !alone) {
        return tl::unexpected(alone.error());
    }
    auto preparation = prepare_process(pid);
    if (!preparation) {
        return tl::unexpected(preparation.error());
    }
    auto held = hold_process(pid, *preparation, 1);
    if (!held) {
        return tl::unexpected(held.error());
    }
    return step(*held, *preparation);
}

Result<std::size_t> release_as_tracer(int pid) {
    std::string subject = subject_of(pid);
    if (!leftovers_mapped(pid)) {
        return 0;
    }
    return in_one_stop_alone(pid, [&](HeldProcess& held,
                                      Preparation& preparation) -> Result<std::size_t> {
        std::vector<RegionMarker> retired = find_markers(held.memory, held.mappings);
        std::erase_if(retired, [](const RegionMarker& marker) { return !marker.retired(); });
        auto syscall = RemoteSyscall::install(held.stopped, held.memory, held.mappings,
                                              preparation.trampoline_site);
        if (!syscall) {
            return tl::unexpected(syscall.error());
        }
        return release_clear_retired_and_gates(held, *syscall, retired, subject);
    });
}

// The empty regions of interrupted applies unmapped in one stop, as a
// revert's step 3 does (nothing jumps into an empty region: no stack check).
Result<std::size_t> remove_empty_as_tracer(int pid) {
    std::string subject = subject_of(pid);
    return in_one_stop_alone(pid, [&](HeldProcess& held,
                                      Preparation& preparation) -> Result<std::size_t> {
        RevertTargets targets;
        targets.interrupted = find_interrupted_regions(held.memory, held.mappings);
        if (targets.interrupted.empty()) {
            return 0;
        }
        auto syscall = RemoteSyscall::install(held.stopped, held.memory, held.mappings,
                                              preparation.trampoline_site);
        if (!syscall) {
            return tl::unexpected(syscall.error());
        }
        auto removed = undo_patches(held, *syscall, targets, subject);
        if (!removed) {
            return tl::unexpected(removed.error());
        }
        return removed->size();
    });
}

Result<std::vector<ThreadStack>> unwind_as_tracer(int pid) {
    auto stopped = StoppedProcess::stop(pid);
    if (!stopped) {
        return tl::unexpected(stopped.error());
    }
    auto view = view_of(pid);
    if (!view) {
        return tl::unexpected(view.error());
    }
    auto stacks = unwind_every_thread(*stopped, view->mappings, view->memory);
    stopped->resume();
    return stacks;
}

}  // namespace

namespace {

// Runs one operation that stops `pid` on a tracer thread of its own
// (StoppedProcess.h, on_tracer_thread: a thread that never stopped is
// released when it ends), and tells its error truthfully:
//  1. The program run of `pid` first: a process that is gone or a zombie
//     is not_found, "no such process".
//  2. One with another tracer (a debugger) is refused, naming the tracer.
//  3. The operation.
//  4. Its error, once every thread is released, in the light of what
//     became of the process meanwhile: one that exited, became a zombie or
//     exec'ed makes every read fail in its own misleading way (an empty maps
//     file, a library "not mapped", an unresolvable import, EPERM from
//     ptrace, ECHILD from waitpid); truthful_error() says what happened.
template <typename Work>
auto on_process(int pid, const Work& work) -> decltype(work()) {
    auto run = read_program_run(pid);
    if (!run) {
        return tl::unexpected(run.error());
    }
    if (auto untraced = check_not_traced(pid); !untraced) {
        return tl::unexpected(untraced.error());
    }
    auto result = on_tracer_thread(work);
    if (!result) {
        return tl::unexpected(truthful_error(*run, std::move(result.error())));
    }
    return result;
}

}  // namespace

Result<InjectReport> apply_patch(int pid, const PatchFile& patch, const InjectOptions& options,
                                 std::vector<BlockingThread>* blocking_out,
                                 std::vector<CallbackOutcome>* callbacks_out) {
    return on_process(pid, [&] {
        return apply_as_tracer(pid, patch, options, blocking_out, callbacks_out);
    });
}

std::vector<PatchApplication> apply_patches(int pid, std::span<const PatchFile* const> patches,
                                            const InjectOptions& options) {
    std::vector<const PatchFile*> list(patches.begin(), patches.end());
    std::vector<PatchApplication> failed(list.size());
    auto run = read_program_run(pid);
    if (!run) {
        for (PatchApplication& outcome : failed) {
            outcome.report = tl::unexpected(run.error());
        }
        return failed;
    }
    Result<std::vector<PatchApplication>> applied = check_not_traced(pid).and_then([&] {
        return on_tracer_thread([&] { return apply_group_as_tracer(pid, list, options); });
    });
    if (!applied) {
        Error error = truthful_error(*run, std::move(applied.error()));
        for (PatchApplication& outcome : failed) {
            outcome.report = tl::unexpected(error);
        }
        return failed;
    }
    for (PatchApplication& outcome : *applied) {
        if (!outcome.report) {
            outcome.report = tl::unexpected(truthful_error(*run, std::move(outcome.report.error())));
        }
    }
    return std::move(*applied);
}

Result<std::vector<InjectReport>> revert_patches(int pid, const std::string& patch_id,
                                                 const InjectOptions& options,
                                                 std::vector<CallbackOutcome>* callbacks_out) {
    return on_process(pid, [&] { return revert_as_tracer(pid, patch_id, options, callbacks_out); });
}

Result<std::size_t> release_retired_regions(int pid) {
    return on_process(pid, [&] { return release_as_tracer(pid); });
}

Result<std::size_t> remove_empty_regions(int pid) {
    return on_process(pid, [&] { return remove_empty_as_tracer(pid); });
}

Result<std::vector<ThreadStack>> unwind_threads(int pid) {
    return on_process(pid, [&] { return unwind_as_tracer(pid); });
}

}  // namespace suture
