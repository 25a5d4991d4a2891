// Exposure: which CVEs each running process is open to, fixed in memory, or
// needs a restart for (docs/operator-guide.md, "Exposure"). Computed from
// a status scan (the builds each process maps, the patches its region
// markers show active) and the feed's signed advisory data.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include "feed-client/Advisories.h"

namespace suture {

struct StatusReport;

// One CVE as it stands in one process.
enum class CveState {
    patched,             // its live patch is active in the process
    open,                // a live patch exists and is not applied: `suture update`
    open_no_live_patch,  // no live patch: upgrade the package and restart
    not_affected,        // the build does not contain the flaw
};
std::string_view cve_state_name(CveState state);

struct CveExposure {
    std::string id;
    std::string severity;
    std::string summary;
    std::string fixed_in;
    CveState state = CveState::open;
    std::string patch_id;  // the live patch's id, when there is one
    std::string reason;    // not_affected / no live patch: why, from the advisory
    std::string build_id;  // the library build the advisory is for
    // patched by a cumulative patch that supersedes patch_id (feed custom
    // "supersedes"), not by patch_id itself: that patch's id; else "".
    std::string patched_by;
};

// A process as a whole, worst first.
enum class ProcessVerdict {
    needs_restart,  // some CVE is open without a live patch
    exposed,        // some CVE is open, each with a live patch available
    fully_patched,  // every known CVE of its builds is patched or not affected
    unknown,        // a build it maps is not in the advisory data
};
std::string_view verdict_name(ProcessVerdict verdict);

struct ProcessExposure {
    ProcessVerdict verdict = ProcessVerdict::unknown;
    std::vector<CveExposure> cves;  // by CVE id; one entry per CVE
    std::vector<std::string> unknown_builds;  // build IDs the advisory data lacks
};

struct ExposureSummary {
    std::size_t processes = 0;  // using OpenSSL
    std::size_t fully_patched = 0;
    std::size_t exposed = 0;
    std::size_t needs_restart = 0;
    std::size_t unknown = 0;
    // Distinct CVEs open in at least one process, with their severity and
    // whether any of those processes lacks a live patch for it.
    struct OpenCve {
        std::string severity;
        std::size_t processes = 0;
        bool live_patch_available = true;
    };
    std::map<std::string, OpenCve> open_cves;
    std::size_t patched_in_memory = 0;  // (process, CVE) pairs fixed by a live patch
};

struct Exposure {
    bool available = false;             // advisory data was found
    std::vector<std::string> sources;   // where it came from
    std::vector<std::string> problems;  // advisory data that could not be read
    std::map<int, ProcessExposure> processes;  // by pid: those mapping OpenSSL
    ExposureSummary summary;
    // The advisory data of the builds processes map, by build ID.
    std::map<std::string, feed::AdvisoryBuild> builds;

    const feed::AdvisoryBuild* advisory_build(const std::string& build_id) const {
        auto found = builds.find(build_id);
        return found == builds.end() ? nullptr : &found->second;
    }
};

// What a patch also fixes: (build ID, patch id, level) -> the patch ids it
// supersedes, from the signed custom metadata of the feeds' patch targets
// (feed::PatchsetInfo::supersedes; engine/Feed.h, load_advisories).
using Supersessions =
    std::map<std::tuple<std::string, std::string, std::uint32_t>, std::vector<std::string>>;

// Assesses every process of `status` against `advisories` (nullptr: none
// available; each process is then `unknown`). A CVE a library build lists
// is `patched` in a process when a region marker of that process shows its
// `patch_id` active for that very build ID, or shows active, for that
// build, a patch (id and level) that `supersessions` says supersedes its
// `patch_id` (then `patched_by` names it).
Exposure assess_exposure(const StatusReport& status, const feed::Advisories* advisories,
                         const Supersessions& supersessions = {});

// Is some process open to a CVE (the "exposed" exit status of status)?
bool any_exposed(const Exposure& exposure);

}  // namespace suture
