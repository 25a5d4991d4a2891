#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "base/Error.h"
#include "engine/Engine.h"
#include "engine/Update.h"
#include "state/StateDatabase.h"

namespace suture {

// What happened to one new process.
struct NewProcessOutcome {
    int pid = 0;
    bool parked = false;  // held at its entry point before main()
    std::vector<UpdateAction> actions;
};

// Counters since the daemon started.
struct NewProcessStatistics {
    std::uint64_t execs = 0;       // exec events seen
    std::uint64_t candidates = 0;  // executables that need libssl/libcrypto
    std::uint64_t parked = 0;      // held at their entry point in time
    std::uint64_t patched_before_main = 0;
    std::uint64_t patched_late = 0;  // too late to park: patched while running
};

// Patches processes as they start (sutured, on exec events): an executable
// that needs libssl or libcrypto (DT_NEEDED; cached per file) is parked at
// its entry point (EntryGate.h), the usable patchsets for the builds it
// mapped are applied, and it is released into main(). A process already
// past its loader is patched like `suture update` would. Libraries loaded
// later with dlopen are left to the next update. Never touches sutured.
class NewProcessPatcher {
  public:
    NewProcessPatcher(Engine& engine, UpdateOptions options);

    // Reloads the usable patchsets from the feed cache and the global switch
    // (after an update or a settings change).
    Result<void> reload();

    // Handles one exec event; nullopt when the process is not a candidate.
    std::optional<NewProcessOutcome> on_exec(int pid);

    const NewProcessStatistics& statistics() const { return statistics_; }

  private:
    bool needs_openssl(int pid);
    std::vector<UpdateAction> apply_matching(int pid, std::uint64_t start_time,
                                             const std::string& comm, StateDatabase* database);

    Engine& engine_;
    UpdateOptions options_;
    std::map<std::string, std::vector<UsablePatch>> patches_;
    std::map<std::tuple<std::uint64_t, std::uint64_t, std::int64_t>, bool> executables_;
    NewProcessStatistics statistics_;
    bool enabled_ = true;
};

}  // namespace suture
