// Internal to the engine: patching processes as they start (behind
// Engine::on_exec).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "base/Error.h"
#include "elf/ClosureCache.h"
#include "engine/Candidates.h"
#include "engine/Engine.h"

namespace suture {

// Patches processes as they start (sutured, on exec events): an executable
// whose loader brings in libssl or libcrypto (its own DT_NEEDED, a preload,
// or a library it loads: elf/DependencyClosure.h; cached per executable,
// root and loader environment) is parked at its entry point
// (inject/EntryGate.h), the usable patchsets for the builds it mapped are
// applied, and it is released into main(). A process already
// past its loader is patched like `suture update` would. Libraries loaded
// later with dlopen are left to the next update. Never touches sutured.
class NewProcessPatcher {
  public:
    explicit NewProcessPatcher(Engine& engine) : engine_(engine) {}

    // Reloads the usable patchsets from the feed cache and the global switch
    // (after an update or a settings change).
    Result<void> reload();

    // Handles one exec event; nullopt when the process is not a candidate.
    std::optional<NewProcessOutcome> on_exec(int pid, const InjectOptions& options);

    const NewProcessStatistics& statistics() const { return statistics_; }

  private:
    // Drops from patches_ what the policy holds back now (NewProcesses.cpp).
    Result<void> hold_back_by_policy();
    OpensslReach needs_openssl(int pid);
    bool excluded(int pid);
    std::vector<UpdateAction> apply_matching(const ProcessInfo& info, const InjectOptions& options,
                                             std::vector<std::string>& lost);

    Engine& engine_;
    std::map<std::string, std::vector<UsablePatch>> patches_;
    ClosureCache closures_;
    NewProcessStatistics statistics_;
    bool enabled_ = true;
};

}  // namespace suture
