// Internal to the engine: the patches the feed cache offers, what suture
// must not touch, and applying one patch with its records. Shared by the
// update cycle (Update.cpp) and new processes (NewProcesses.cpp).
#pragma once

#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "engine/Engine.h"
#include "patch/PatchFile.h"
#include "state/StateDatabase.h"

namespace suture {

// A patch file from the feed cache (verified by the feed client), parsed.
struct UsablePatch {
    feed::CachedTarget cached;
    PatchFile patch;
};

// The usable patchsets among `cached` by target build ID: per patch id only
// the highest level. Unreadable patch files and targets the feed client
// refused (malformed custom metadata) are skipped and named in `problems`.
std::map<std::string, std::vector<UsablePatch>> load_usable_patches(
    const std::vector<feed::CachedTarget>& cached, std::vector<std::string>& problems);

// Where a process runs from, as exclusions see it.
struct ProcessPlace {
    std::string executable;  // /proc/PID/exe
    std::string unit;        // systemd unit, empty if none (or not read)
};

// What suture must not touch: executables and systemd units from the state
// database's exclusions (`suture exclude`).
class Exclusions {
  public:
    static Exclusions from(const std::vector<Exclusion>& rows);
    // Whether reason() looks at the unit (so callers read cgroups only then).
    bool has_units() const { return !units_.empty(); }
    // Why a process at `place` is excluded, or nullopt.
    std::optional<std::string> reason(const ProcessPlace& place) const;

  private:
    std::set<std::string> executables_;
    std::set<std::string> units_;
};

// The place of a running process: its executable, and its unit when
// `exclusions` look at units.
ProcessPlace place_of(int pid, const Exclusions& exclusions);

// Applies `candidate` to the process `action` names, fills in the action's
// outcome (and reason), and records it in `database` (if any): the
// application when it succeeded, a history entry either way, with `origin`
// as its message on success.
void apply_and_record(Engine& engine, StateDatabase* database, const UsablePatch& candidate,
                      const InjectOptions& options, const std::string& executable,
                      const std::string& origin, UpdateAction& action);

}  // namespace suture
