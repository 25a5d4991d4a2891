#include "inject/Injector.h"

#include <sys/mman.h>
#include <sys/syscall.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <functional>
#include <map>
#include <thread>
#include <tuple>

#include "base/Sha256.h"
#include "inject/LoadedObjects.h"
#include "inject/PatchImage.h"
#include "inject/RegionPlacement.h"
#include "inject/RemoteMemory.h"
#include "inject/RemoteSyscall.h"
#include "inject/StoppedProcess.h"
#include "proc/ProcessMaps.h"

#include "base/Files.h"

namespace suture {

namespace {

constexpr unsigned char endbr64[4] = {0xf3, 0x0f, 0x1e, 0xfa};

// The jump `marker` records for `function`, as bytes.
Result<std::array<std::byte, jump_size>> jump_of(const RegionMarker& marker,
                                                 const MarkedFunction& function) {
    return encode_jump(jump_site(marker, function).raw(), function.replacement_address);
}

std::string subject_of(int pid) {
    return "pid " + std::to_string(pid);
}

// Markers of every suture region the process maps: private anonymous
// read+exec mappings that begin with the magic.
std::vector<RegionMarker> find_markers(const RemoteMemory& memory,
                                       const std::vector<Mapping>& mappings) {
    std::vector<RegionMarker> markers;
    for (const Mapping& mapping : mappings) {
        if (mapping.inode != 0 || !mapping.path.empty() || !mapping.executable ||
            mapping.writable || mapping.shared) {
            continue;
        }
        RemoteAddress start(mapping.start);
        auto head = memory.read(start, region_marker_fixed_size);
        if (!head || std::memcmp(head->data(), region_magic, sizeof region_magic) != 0) {
            continue;
        }
        std::uint32_t size = 0;
        std::memcpy(&size, head->data() + region_marker_size_offset, sizeof size);
        if (size > mapping.end - mapping.start || size < region_marker_fixed_size) {
            continue;
        }
        auto whole = memory.read(start, size);
        if (!whole) {
            continue;
        }
        auto marker = decode_region_marker(*whole);
        if (!marker) {
            continue;
        }
        marker->region_address = mapping.start;
        markers.push_back(std::move(*marker));
    }
    return markers;
}

// Counts the functions whose jump site holds the marker's jump.
Result<std::pair<std::size_t, bool>> count_jumps(const RemoteMemory& memory,
                                                 const RegionMarker& marker) {
    std::size_t in_place = 0;
    bool foreign = false;
    for (const MarkedFunction& function : marker.functions) {
        auto current = memory.read(jump_site(marker, function), jump_size);
        if (!current) {
            return tl::unexpected(current.error());
        }
        auto jump = jump_of(marker, function);
        if (jump && std::equal(current->begin(), current->end(), jump->begin())) {
            ++in_place;
        } else if (!std::equal(current->begin(), current->end(), function.original.begin())) {
            foreign = true;
        }
    }
    return std::pair{in_place, foreign};
}

// An empty region an interrupted apply left, and where its intent record is.
struct InterruptedRegion {
    IntentRecord intent;
    RemoteAddress record_address;
};

// Intent records sit in the last bytes of executable file mappings; one whose
// region is still mapped but holds no marker is an interrupted apply's.
std::vector<InterruptedRegion> find_interrupted_regions(const RemoteMemory& memory,
                                                        const std::vector<Mapping>& mappings) {
    std::vector<InterruptedRegion> regions;
    for (const Mapping& mapping : mappings) {
        if (!mapping.is_file() || !mapping.executable) {
            continue;
        }
        RemoteAddress record_address = RemoteAddress(mapping.end) - intent_record_size;
        auto bytes = memory.read(record_address, intent_record_size);
        if (!bytes) {
            continue;
        }
        auto intent = decode_intent_record(*bytes);
        if (!intent) {
            continue;
        }
        const Mapping* region = find_mapping(mappings, intent->region_address);
        if (region == nullptr || region->start != intent->region_address ||
            region->end - region->start != intent->region_size || region->inode != 0 ||
            !region->executable || region->writable) {
            continue;
        }
        auto head = memory.read(RemoteAddress(region->start), sizeof region_magic);
        if (!head || std::memcmp(head->data(), region_magic, sizeof region_magic) == 0) {
            continue;  // the apply got as far as the marker: explained by it
        }
        regions.push_back(InterruptedRegion{*intent, record_address});
    }
    return regions;
}

std::string describe_blocking(const std::vector<BlockingThread>& blocking) {
    std::string text;
    for (const BlockingThread& thread : blocking) {
        text += "\n  thread " + std::to_string(thread.tid) + ":";
        for (const std::string& frame : thread.frames) {
            text += "\n    " + frame;
        }
    }
    return text;
}

// Maps the region read+exec at the first free candidate address within 2 GiB
// of [low, high) and fills it with `image_for(address)` while the mmap call
// has just returned: a killed injector leaves at worst an empty page, never
// one whose contents a later run could misread.
Result<RemoteAddress> map_region(
    RemoteSyscall& syscall, const RemoteMemory& memory, const std::vector<Mapping>& mappings,
    RemoteAddress low, RemoteAddress high, std::uint64_t size,
    const std::function<Result<std::vector<std::byte>>(RemoteAddress)>& image_for,
    const std::string& subject) {
    for (RemoteAddress address : region_candidates(mappings, low, high, size)) {
        auto image = image_for(address);
        if (!image) {
            return tl::unexpected(image.error());
        }
        // Should this tool die right after the mmap, the record explains
        // the empty page (see IntentRecord).
        if (auto recorded = syscall.record_intent(address, size); !recorded) {
            return tl::unexpected(recorded.error());
        }
        bool mapped = false;
        auto fill = [&](long result) -> Result<void> {
            if (result != static_cast<long>(address.raw())) {
                return {};
            }
            mapped = true;
            return memory.write(address, *image);
        };
        auto result = syscall.call_then(fill, SYS_mmap, address.raw(), size, PROT_READ | PROT_EXEC,
                                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE,
                                        static_cast<std::uint64_t>(-1), 0);
        if (!result) {
            if (mapped) {
                // Nothing points into the region yet: take it away again.
                (void)syscall.call(SYS_munmap, address.raw(), size);
            }
            return tl::unexpected(result.error());
        }
        if (*result == static_cast<long>(address.raw())) {
            return address;
        }
        if (*result >= 0) {
            // A kernel without MAP_FIXED_NOREPLACE treats it as a hint; a
            // region elsewhere is of no use.
            (void)syscall.call(SYS_munmap, static_cast<std::uint64_t>(*result), size);
            continue;
        }
        if (*result != -EEXIST) {
            return fail(ErrorCode::io, subject + ": mmap in the target failed: " +
                                           std::strerror(static_cast<int>(-*result)));
        }
    }
    return fail(ErrorCode::conflict, subject + ": no free address within 2 GiB of the library");
}

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

Result<void> unmap_region(RemoteSyscall& syscall, RemoteAddress address, std::uint64_t size,
                          const std::string& subject) {
    auto result = syscall.call(SYS_munmap, address.raw(), size);
    if (!result) {
        return tl::unexpected(result.error());
    }
    if (*result != 0) {
        return fail(ErrorCode::io, subject + ": munmap in the target failed: " +
                                       std::strerror(static_cast<int>(-*result)));
    }
    return {};
}

void sleep_backoff(std::chrono::milliseconds& backoff, const InjectOptions& options) {
    std::this_thread::sleep_for(backoff);
    backoff = std::min(backoff * 2, options.max_backoff);
}

std::uint64_t unix_now_ns() {
    return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                          std::chrono::system_clock::now().time_since_epoch())
                                          .count());
}

// What can be learnt about a process without stopping it: the slow part of
// an apply (opening every mapped ELF file, resolving imports, finding a
// syscall instruction). Inside the stop it is reused only if the maps have
// not changed meanwhile; otherwise it is done again there.
struct Preparation {
    std::vector<Mapping> mappings;
    std::vector<LoadedObject> objects;
    RemoteSyscall::Site trampoline_site;
    int generation = 0;  // counts re-preparations inside stops
};

bool same_file_mappings(const std::vector<Mapping>& a, const std::vector<Mapping>& b) {
    auto file_mappings = [](const std::vector<Mapping>& mappings) {
        std::vector<std::tuple<std::uint64_t, std::uint64_t, std::uint64_t, std::string, bool>> out;
        for (const Mapping& mapping : mappings) {
            if (mapping.is_file() || mapping.path == "[vdso]") {
                out.emplace_back(mapping.start, mapping.end, mapping.inode, mapping.path,
                                 mapping.executable);
            }
        }
        return out;
    };
    return file_mappings(a) == file_mappings(b);
}

Result<Preparation> prepare_from(int pid, std::vector<Mapping> mappings) {
    Preparation preparation;
    auto objects = read_loaded_objects(pid, mappings);
    if (!objects) {
        return tl::unexpected(objects.error());
    }
    auto site = RemoteSyscall::find_site(*objects);
    if (!site) {
        return tl::unexpected(with_context(site.error(), "pid " + std::to_string(pid)));
    }
    preparation.mappings = std::move(mappings);
    preparation.objects = std::move(*objects);
    preparation.trampoline_site = *site;
    return preparation;
}

Result<Preparation> prepare(int pid) {
    auto mappings = read_process_maps(pid);
    if (!mappings) {
        return tl::unexpected(mappings.error());
    }
    return prepare_from(pid, std::move(*mappings));
}

// Re-reads the maps of the stopped process and brings `preparation` up to
// date with them; cheap when nothing changed.
Result<std::vector<Mapping>> refresh(int pid, Preparation& preparation) {
    auto mappings = read_process_maps(pid);
    if (!mappings) {
        return tl::unexpected(mappings.error());
    }
    if (!same_file_mappings(*mappings, preparation.mappings)) {
        auto fresh = prepare_from(pid, *mappings);
        if (!fresh) {
            return tl::unexpected(fresh.error());
        }
        fresh->generation = preparation.generation + 1;
        preparation = std::move(*fresh);
    }
    return mappings;
}

// A process that vanishes between two tries died during the operation; one
// that is not there at the first try never existed (as far as we know).
Error died_between_tries(Error error, int attempt) {
    if (attempt > 1 && error.code == ErrorCode::not_found) {
        error.code = ErrorCode::target_died;
        error.message += " (it exited during the operation)";
    }
    return error;
}

// One try's hold on the process: every thread stopped, the maps read again
// (and the preparation brought up to date with them), its memory open.
struct HeldProcess {
    StoppedProcess stopped;
    std::vector<Mapping> mappings;
    RemoteMemory memory;
};

Result<HeldProcess> hold(int pid, Preparation& preparation, int attempt) {
    auto stopped = StoppedProcess::stop(pid);
    if (!stopped) {
        return tl::unexpected(died_between_tries(stopped.error(), attempt));
    }
    auto mappings = refresh(pid, preparation);
    if (!mappings) {
        return tl::unexpected(mappings.error());
    }
    auto memory = RemoteMemory::open(pid, true);
    if (!memory) {
        return tl::unexpected(memory.error());
    }
    return HeldProcess{std::move(*stopped), std::move(*mappings), std::move(*memory)};
}

// Step 3 of apply and step 2 of revert: true when no thread is in `ranges`.
// Otherwise lets the process run again and either gives up as `unsafe` (the
// last try, naming the threads and frames) or sleeps the backoff and returns
// false, after which the caller tries again.
Result<bool> stacks_clear_or_back_off(StoppedProcess& stopped, const std::vector<CodeRange>& ranges,
                                      const std::vector<Mapping>& mappings,
                                      const RemoteMemory& memory, int attempt,
                                      const InjectOptions& options,
                                      std::chrono::milliseconds& backoff,
                                      std::vector<BlockingThread>* blocking_out,
                                      const std::string& what_blocks,
                                      StackCheckFigures& figures) {
    auto blocking = find_blocking_threads(stopped, ranges, mappings, memory, &figures);
    if (!blocking) {
        return tl::unexpected(blocking.error());
    }
    if (blocking->empty()) {
        return true;
    }
    stopped.resume();
    std::string frames = describe_blocking(*blocking);
    if (blocking_out != nullptr) {
        *blocking_out = std::move(*blocking);
    }
    if (attempt >= options.attempts) {
        return fail(ErrorCode::unsafe, "pid " + std::to_string(stopped.pid()) + ": threads are " +
                                           what_blocks + " (gave up after " +
                                           std::to_string(attempt) + " tries):" + frames);
    }
    sleep_backoff(backoff, options);
    return false;
}

// The code range of a patch region, for the stack check.
CodeRange region_range(const RegionMarker& marker) {
    return CodeRange{marker.region_address, marker.region_address + marker.region_size,
                     marker.patch_id + " level " + std::to_string(marker.level) +
                         (marker.retired() ? " retired region" : " region")};
}

// Unmaps, inside the current stop, each retired region that no thread's PC
// or return address refers to (a complete unwind proves it); the others stay
// for a later stop. Returns how many went.
Result<std::size_t> release_clear_retired(StoppedProcess& stopped, RemoteSyscall& syscall,
                                          const std::vector<Mapping>& mappings,
                                          const RemoteMemory& memory,
                                          const std::vector<RegionMarker>& retired,
                                          const std::string& subject) {
    std::size_t released = 0;
    for (const RegionMarker& marker : retired) {
        auto blocking = find_blocking_threads(stopped, {region_range(marker)}, mappings, memory);
        if (!blocking) {
            return tl::unexpected(blocking.error());
        }
        if (!blocking->empty()) {
            continue;
        }
        if (auto unmapped = unmap_region(syscall, RemoteAddress(marker.region_address),
                                         marker.region_size, subject);
            !unmapped) {
            return tl::unexpected(unmapped.error());
        }
        ++released;
    }
    return released;
}

// The regions just retired are usually unreferenced a moment later: let the
// process run for the first backoff, then stop it once more to unmap them.
// What is still referenced stays retired for a later stop. Returns how many
// went; errors only mean they stay.
std::size_t release_after_a_pause(int pid, const InjectOptions& options) {
    std::this_thread::sleep_for(options.first_backoff);
    auto released = release_retired_regions(pid);
    return released ? *released : 0;
}

// Marks a reverted region retired, in its marker.
Result<void> mark_retired(const RemoteMemory& memory, const RegionMarker& marker) {
    std::uint64_t now = unix_now_ns();
    std::array<std::byte, sizeof now> bytes;
    std::memcpy(bytes.data(), &now, sizeof now);
    return memory.write(RemoteAddress(marker.region_address) + region_marker_retired_offset, bytes);
}

// The patch's library among the loaded objects, by soname and build ID.
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

// Checks each replaced function's original bytes (with a previous level's
// jump taken out again) against the recorded SHA-256.
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
        JumpSite site;
        site.offset = std::memcmp(bytes->data(), endbr64, sizeof endbr64) == 0 ? sizeof endbr64 : 0;
        std::copy_n(bytes->begin() + site.offset, jump_size, site.original.begin());
        sites.push_back(site);
    }
    return sites;
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
    auto mappings = read_process_maps(pid);
    if (!mappings) {
        return tl::unexpected(mappings.error());
    }
    auto memory = RemoteMemory::open(pid, false);
    if (!memory) {
        return tl::unexpected(memory.error());
    }
    std::vector<AppliedPatch> patches;
    for (RegionMarker& marker : find_markers(*memory, *mappings)) {
        auto jumps = count_jumps(*memory, marker);
        if (!jumps) {
            return tl::unexpected(jumps.error());
        }
        AppliedPatch patch{std::move(marker), PatchState::active, jumps->first};
        if (patch.marker.retired()) {
            patch.state = PatchState::retired;
        } else if (jumps->second) {
            patch.state = PatchState::foreign;
        } else if (jumps->first == 0) {
            patch.state = PatchState::inactive;
        } else if (jumps->first < patch.marker.functions.size()) {
            patch.state = PatchState::partial;
        }
        patches.push_back(std::move(patch));
    }
    for (const InterruptedRegion& interrupted : find_interrupted_regions(*memory, *mappings)) {
        AppliedPatch patch;
        patch.marker.region_address = interrupted.intent.region_address;
        patch.marker.region_size = interrupted.intent.region_size;
        patch.state = PatchState::empty;
        patches.push_back(std::move(patch));
    }
    return patches;
}

Result<InjectReport> apply_patch(int pid, const PatchFile& patch, const InjectOptions& options,
                                 std::vector<BlockingThread>* blocking_out) {
    const PatchMetadata& metadata = patch.metadata;
    std::string subject = subject_of(pid);
    // Everything that needs no address is done before the stop.
    auto layout = layout_patch(patch);
    if (!layout) {
        return tl::unexpected(layout.error());
    }
    auto preparation = prepare(pid);
    if (!preparation) {
        return tl::unexpected(preparation.error());
    }
    auto imports = resolve_imports(patch, preparation->objects);
    if (!imports) {
        return tl::unexpected(with_context(imports.error(), subject));
    }
    int imports_generation = preparation->generation;
    std::chrono::milliseconds backoff = options.first_backoff;
    for (int attempt = 1;; ++attempt) {
        // 1. Only now, with every thread held, is what the maps say final.
        auto held = hold(pid, *preparation, attempt);
        if (!held) {
            return tl::unexpected(held.error());
        }
        StoppedProcess& stopped = held->stopped;
        const std::vector<Mapping>& mappings = held->mappings;
        const RemoteMemory& memory = held->memory;
        auto found = find_target_library(preparation->objects, metadata, subject);
        if (!found) {
            return tl::unexpected(found.error());
        }
        const LoadedObject* target = *found;

        // 2. Patches already there: the same id at another level is
        // replaced within this stop; anything else touching our functions
        // is a conflict.
        std::optional<RegionMarker> previous;
        std::vector<RegionMarker> retired;
        for (RegionMarker& marker : find_markers(memory, mappings)) {
            if (marker.retired()) {
                retired.push_back(std::move(marker));
                continue;
            }
            if (RemoteAddress(marker.target_base) != target->base) {
                continue;
            }
            if (marker.patch_id == metadata.patch_id) {
                auto jumps = count_jumps(memory, marker);
                if (jumps && marker.level == metadata.level && !jumps->second &&
                    jumps->first == marker.functions.size()) {
                    InjectReport report;
                    report.patch_id = metadata.patch_id;
                    report.level = metadata.level;
                    report.already_applied = true;
                    report.region_address = marker.region_address;
                    report.functions = marker.functions.size();
                    report.attempts = attempt;
                    report.threads = stopped.threads().size();
                    report.stopped_for = stopped.resume();
                    return report;
                }
                if (marker.level > metadata.level) {
                    return fail(ErrorCode::conflict, subject + ": " + metadata.patch_id +
                                                         " level " + std::to_string(marker.level) +
                                                         " is applied, newer than " +
                                                         std::to_string(metadata.level));
                }
                previous = std::move(marker);
                continue;
            }
            for (const MarkedFunction& theirs : marker.functions) {
                for (const ReplacedFunction& ours : metadata.functions) {
                    if (theirs.target_offset == ours.offset) {
                        return fail(ErrorCode::conflict,
                                    subject + ": " + ours.symbol + " is already patched by " +
                                        marker.patch_id + " level " + std::to_string(marker.level));
                    }
                }
            }
        }

        // 3. Fingerprints, in the stopped process.
        auto sites = check_fingerprints(memory, *target, metadata, previous, subject);
        if (!sites) {
            return tl::unexpected(sites.error());
        }

        // 4. Stacks: no thread may be inside a function being replaced, or
        // inside the region of the level being replaced.
        std::vector<CodeRange> ranges;
        for (const ReplacedFunction& function : metadata.functions) {
            ranges.push_back(CodeRange{(target->base + function.offset).raw(),
                                       (target->base + function.offset + function.size).raw(),
                                       function.symbol + " (" + metadata.target_soname + "+" +
                                           hex_address(function.offset) + ")"});
        }
        if (previous) {
            ranges.push_back(region_range(*previous));
        }
        StackCheckFigures figures;
        auto clear = stacks_clear_or_back_off(stopped, ranges, mappings, memory, attempt, options,
                                              backoff, blocking_out, "running code being replaced",
                                              figures);
        if (!clear) {
            return tl::unexpected(clear.error());
        }
        if (!*clear) {
            continue;
        }

        // 5. The region: map near the library, relocate, fill.
        if (imports_generation != preparation->generation) {
            imports = resolve_imports(patch, preparation->objects);
            imports_generation = preparation->generation;
        }
        if (!imports) {
            return tl::unexpected(imports.error());
        }
        auto installed =
            RemoteSyscall::install(stopped, memory, mappings, preparation->trampoline_site);
        if (!installed) {
            return tl::unexpected(installed.error());
        }
        RemoteSyscall& syscall = *installed;
        auto released = release_clear_retired(stopped, syscall, mappings, memory, retired, subject);
        if (!released) {
            return tl::unexpected(released.error());
        }
        RegionMarker marker;
        marker.patch_id = metadata.patch_id;
        marker.level = metadata.level;
        marker.target_build_id = metadata.target_build_id;
        marker.target_base = target->base.raw();
        marker.region_size = layout->size;
        marker.applied_at_unix_ns = unix_now_ns();
        std::vector<std::array<std::byte, jump_size>> jumps;
        // The whole region for one address: code relocated, marker on top.
        auto image_for = [&](RemoteAddress address) -> Result<std::vector<std::byte>> {
            std::vector<RemoteAddress> replacements;
            auto image = build_patch_image(
                patch, *layout, address, target->base,
                [&](const Import& import) -> Result<RemoteAddress> {
                    return imports->at(import.symbol);
                },
                replacements);
            if (!image) {
                return tl::unexpected(image.error());
            }
            marker.functions.clear();
            jumps.clear();
            for (std::size_t i = 0; i < metadata.functions.size(); ++i) {
                const ReplacedFunction& function = metadata.functions[i];
                const JumpSite& site = (*sites)[i];
                marker.functions.push_back(MarkedFunction{function.offset, function.size,
                                                          replacements[i].raw(), site.offset,
                                                          site.original});
                auto jump = jump_of(marker, marker.functions.back());
                if (!jump) {
                    return tl::unexpected(jump.error());
                }
                jumps.push_back(*jump);
            }
            auto encoded = encode_region_marker(marker);
            std::copy(encoded.begin(), encoded.end(), image->begin());
            return image;
        };
        auto region = map_region(syscall, memory, mappings, target->start, target->end,
                                 layout->size, image_for, subject);
        if (!region) {
            return tl::unexpected(region.error());
        }

        // 6. The jumps: the only writes the running code can notice.
        for (std::size_t i = 0; i < marker.functions.size(); ++i) {
            if (auto written = memory.write(jump_site(marker, marker.functions[i]), jumps[i]);
                !written) {
                return tl::unexpected(with_context(written.error(),
                                                   "writing jumps (the region "
                                                   "marker explains the state)"));
            }
        }
        std::optional<std::uint32_t> replaced_level;
        if (previous) {
            // Functions of the old level that the new one no longer replaces
            // get their original bytes back; then the old region goes.
            for (const MarkedFunction& old : previous->functions) {
                bool still_replaced =
                    std::any_of(metadata.functions.begin(), metadata.functions.end(),
                                [&](const ReplacedFunction& function) {
                                    return function.offset == old.target_offset;
                                });
                if (!still_replaced) {
                    (void)memory.write(jump_site(*previous, old), old.original);
                }
            }
            // The old level's region stays mapped, retired, until a later
            // stop proves no thread can still return into it.
            (void)mark_retired(memory, *previous);
            replaced_level = previous->level;
        }
        InjectReport report;
        report.patch_id = metadata.patch_id;
        report.level = metadata.level;
        report.replaced_level = replaced_level;
        report.region_address = region->raw();
        report.functions = metadata.functions.size();
        report.attempts = attempt;
        report.threads = stopped.threads().size();
        report.stack_check = figures;
        report.released_regions = *released;
        report.stopped_for = stopped.resume();
        if (previous) {
            report.released_regions += release_after_a_pause(pid, options);
        }
        return report;
    }
}

Result<std::vector<InjectReport>> revert_patches(int pid, const std::string& patch_id,
                                                 const InjectOptions& options,
                                                 std::vector<BlockingThread>* blocking_out) {
    std::string subject = subject_of(pid);
    auto preparation = prepare(pid);
    if (!preparation) {
        return tl::unexpected(preparation.error());
    }
    std::chrono::milliseconds backoff = options.first_backoff;
    for (int attempt = 1;; ++attempt) {
        auto held = hold(pid, *preparation, attempt);
        if (!held) {
            return tl::unexpected(held.error());
        }
        StoppedProcess& stopped = held->stopped;
        const std::vector<Mapping>& mappings = held->mappings;
        const RemoteMemory& memory = held->memory;
        std::vector<RegionMarker> markers;
        std::vector<RegionMarker> retired;
        for (RegionMarker& marker : find_markers(memory, mappings)) {
            if (marker.retired()) {
                retired.push_back(std::move(marker));
            } else if (patch_id.empty() || marker.patch_id == patch_id) {
                markers.push_back(std::move(marker));
            }
        }
        auto interrupted = find_interrupted_regions(memory, mappings);
        if (markers.empty() && interrupted.empty()) {
            stopped.resume();
            (void)release_retired_regions(pid);
            return fail(ErrorCode::not_applied,
                        subject + ": " +
                            (patch_id.empty() ? "no suture patch is applied"
                                              : patch_id + " is not applied"));
        }
        std::vector<CodeRange> ranges;
        for (const RegionMarker& marker : markers) {
            auto jumps = count_jumps(memory, marker);
            if (!jumps) {
                return tl::unexpected(jumps.error());
            }
            if (jumps->second) {
                return fail(ErrorCode::conflict,
                            subject + ": " + marker.patch_id +
                                ": a jump site holds bytes suture did not write; not touching it");
            }
            ranges.push_back(region_range(marker));
        }
        for (const InterruptedRegion& region : interrupted) {
            ranges.push_back(CodeRange{region.intent.region_address,
                                       region.intent.region_address + region.intent.region_size,
                                       "empty region of an interrupted apply"});
        }
        StackCheckFigures figures;
        auto clear = stacks_clear_or_back_off(stopped, ranges, mappings, memory, attempt, options,
                                              backoff, blocking_out, "running patch code", figures);
        if (!clear) {
            return tl::unexpected(clear.error());
        }
        if (!*clear) {
            continue;
        }
        auto installed =
            RemoteSyscall::install(stopped, memory, mappings, preparation->trampoline_site);
        if (!installed) {
            return tl::unexpected(installed.error());
        }
        RemoteSyscall& syscall = *installed;
        auto released = release_clear_retired(stopped, syscall, mappings, memory, retired, subject);
        if (!released) {
            return tl::unexpected(released.error());
        }
        std::vector<InjectReport> reports;
        for (const RegionMarker& marker : markers) {
            for (const MarkedFunction& function : marker.functions) {
                if (auto written = memory.write(jump_site(marker, function), function.original);
                    !written) {
                    return tl::unexpected(written.error());
                }
            }
            // Not unmapped: retired, so that even a thread the stack check
            // could not see returns into mapped code. A later stop unmaps it.
            if (auto retiring = mark_retired(memory, marker); !retiring) {
                return tl::unexpected(retiring.error());
            }
            InjectReport report;
            report.patch_id = marker.patch_id;
            report.level = marker.level;
            report.region_address = marker.region_address;
            report.functions = marker.functions.size();
            report.attempts = attempt;
            reports.push_back(report);
        }
        for (const InterruptedRegion& region : interrupted) {
            if (auto unmapped = unmap_region(syscall, RemoteAddress(region.intent.region_address),
                                             region.intent.region_size, subject);
                !unmapped) {
                return tl::unexpected(unmapped.error());
            }
            (void)syscall.clear_intent(region.record_address);
            InjectReport report;
            report.region_address = region.intent.region_address;
            report.attempts = attempt;
            reports.push_back(report);  // patch_id "": an empty region removed
        }
        auto stopped_for = stopped.resume();
        std::size_t released_later = markers.empty() ? 0 : release_after_a_pause(pid, options);
        for (InjectReport& report : reports) {
            report.stopped_for = stopped_for;
            report.threads = stopped.threads().size();
            report.stack_check = figures;
            report.released_regions = *released + released_later;
        }
        return reports;
    }
}

Result<std::size_t> release_retired_regions(int pid) {
    std::string subject = subject_of(pid);
    auto listed = list_applied_patches(pid);
    if (!listed) {
        return tl::unexpected(listed.error());
    }
    if (std::none_of(listed->begin(), listed->end(), [](const AppliedPatch& patch) {
            return patch.state == PatchState::retired;
        })) {
        return 0;
    }
    auto preparation = prepare(pid);
    if (!preparation) {
        return tl::unexpected(preparation.error());
    }
    auto held = hold(pid, *preparation, 1);
    if (!held) {
        return tl::unexpected(held.error());
    }
    std::vector<RegionMarker> retired;
    for (RegionMarker& marker : find_markers(held->memory, held->mappings)) {
        if (marker.retired()) {
            retired.push_back(std::move(marker));
        }
    }
    auto installed = RemoteSyscall::install(held->stopped, held->memory, held->mappings,
                                            preparation->trampoline_site);
    if (!installed) {
        return tl::unexpected(installed.error());
    }
    auto released = release_clear_retired(held->stopped, *installed, held->mappings,
                                          held->memory, retired, subject);
    held->stopped.resume();
    return released;
}

Result<std::vector<ThreadStack>> unwind_threads(int pid) {
    auto stopped = StoppedProcess::stop(pid);
    if (!stopped) {
        return tl::unexpected(stopped.error());
    }
    auto mappings = read_process_maps(pid);
    if (!mappings) {
        return tl::unexpected(mappings.error());
    }
    auto memory = RemoteMemory::open(pid, false);
    if (!memory) {
        return tl::unexpected(memory.error());
    }
    auto stacks = unwind_every_thread(*stopped, *mappings, *memory);
    stopped->resume();
    return stacks;
}

}  // namespace suture
