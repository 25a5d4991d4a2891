// Internal to the engine: the automatic cycle behind Engine::update.
#pragma once

#include <cstdint>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "engine/Candidates.h"
#include "engine/Engine.h"

namespace suture {

// The applications the database knows active: (pid, start time, patch id,
// level).
using KnownApplications = std::set<std::tuple<int, std::uint64_t, std::string, std::uint32_t>>;

// One process as the update decision sees it.
struct UpdateSubject {
    ProcessIdentity process;
    ProcessPlace place;
    bool is_self = false;                    // the process running suture
    const std::vector<AppliedPatch>* in_memory = nullptr;  // its markers; null: none
};

// What to do about one (process, candidate patch) pair.
enum class Verdict {
    apply,    // not active yet
    already,  // active in memory at this level or higher, and recorded
    adopt,    // active in memory at this level or higher, but not recorded
    exclude,  // suture itself, or excluded by executable or unit
};
struct Decision {
    Verdict verdict = Verdict::apply;
    std::uint32_t level = 0;  // already/adopt: the level active in memory
    std::string why;          // exclude: the reason
};

// The update decision, pure: exclusion first, then what memory shows.
Decision decide(const UpdateSubject& subject, const PatchMetadata& candidate,
                const Exclusions& exclusions, const KnownApplications& known);

// The automatic cycle (`suture update`), under the operation lock (a second
// update waits or is refused): refresh the feeds (failures are reported;
// the cache is used anyway), scan, match each process's mapped library
// build ID against the usable cached patchsets, apply the highest level of
// each patch id that is not already active (read from the in-target
// markers; one found active in the apply's stop is `already`), record
// everything in the state database (a write that fails is named in
// `lost_records`, never dropped), close out applications whose process
// (pid + start time) is gone, unmap the retired regions of earlier reverts
// that no thread refers to and the empty regions killed applies left.
// Idempotent: a second run finds everything active and does nothing. Never
// touches the calling process or excluded executables.
Result<UpdateReport> run_update(Engine& engine, const UpdateOptions& options,
                                const UpdateProgress& progress);

}  // namespace suture
