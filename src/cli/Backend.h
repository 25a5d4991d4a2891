#pragma once

#include <memory>
#include <string>
#include <vector>

#include "engine/Engine.h"

namespace suture {

// Where the CLI's mutating commands run: in sutured (over D-Bus) when it
// answers, else in this process. Chosen once per command line; both return
// the same typed reports, so the output does not depend on which one ran.
class Backend {
  public:
    virtual ~Backend() = default;

    virtual Result<UpdateReport> update(const UpdateOptions& options,
                                        const UpdateProgress& progress) = 0;
    // sutured reads the patch file itself and uses its own inject options.
    // `lost_records`: the callback outcomes the state database failed to
    // write (here; sutured logs its own).
    virtual InjectResult<InjectReport> apply(int pid, const std::string& patch_path,
                                             const InjectOptions& options,
                                             std::vector<std::string>& lost_records) = 0;
    // `lost_records`: the revert's records the state database failed to write.
    virtual InjectResult<std::vector<InjectReport>> revert(int pid, const std::string& patch_id,
                                                           const InjectOptions& options,
                                                           std::vector<std::string>& lost_records) = 0;
    // `suture revert --cve ID… | --all` (Engine::revert_everywhere).
    virtual Result<HostRevertReport> revert_everywhere(const RevertScope& scope,
                                                       const InjectOptions& options) = 0;
    virtual Result<std::vector<HistoryEntry>> history(std::size_t limit) = 0;
    virtual Result<void> set_enabled(bool enabled) = 0;
};

// sutured when it owns its name on the system bus and `direct` is false;
// else an engine opened here with `options` (the error is the engine's).
// sutured never waits for the operation lock (its event loop must not
// block): its `locked` answers are asked again until options.lock_wait is
// over, so the wait means the same either way.
Result<std::unique_ptr<Backend>> choose_backend(bool direct, const EngineOptions& options);

}  // namespace suture
