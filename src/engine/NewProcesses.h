// Internal to the engine: patching processes as they start (behind
// Engine::on_exec).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "base/Error.h"
#include "base/UniqueFD.h"
#include "elf/ClosureCache.h"
#include "engine/Candidates.h"
#include "engine/Engine.h"

namespace suture {

// Patches processes as they start (sutured, on exec events): an executable
// whose loader brings in libssl or libcrypto (its own DT_NEEDED, a preload,
// or a library it loads: elf/DependencyClosure.h; cached per executable,
// root and loader environment) is parked at its entry point
// (inject/EntryGate.h), the usable patchsets for the builds it mapped are
// applied, and it is released into main(). A process already past its
// loader is patched like `suture update` would. A library loaded later
// (dlopen) is caught by sutured's library-open watcher, which holds the
// loading thread inside its loader (inject/LoadHold.h) and hands it to
// on_library_load(). Never touches sutured.
class NewProcessPatcher {
  public:
    explicit NewProcessPatcher(Engine& engine) : engine_(engine) {}

    // Reloads the usable patchsets from the feed cache and the global switch
    // (after an update or a settings change).
    Result<void> reload();

    // Handles one exec event; nullopt when the process is not a candidate.
    // `exec_time`: the kernel's stamp of the exec (CLOCK_MONOTONIC ns).
    std::optional<NewProcessOutcome> on_exec(int pid, std::uint64_t exec_time,
                                             const InjectOptions& options);

    // Patches a process caught loading libssl/libcrypto, releases its
    // held thread and its claim.
    std::optional<NewProcessOutcome> on_library_load(const LibraryLoad& load,
                                                     const InjectOptions& options);
    ProcessClaims& claims() { return claims_; }

    // Library files to watch (Engine::take_libraries_to_watch).
    std::vector<std::string> take_libraries_to_watch();
    void libraries_marked(const std::vector<std::string>& failed);
    void note_process_root(int pid);
    // sutured's library-open watcher runs (exec gating then leaves a
    // process whose OpenSSL files are watched to it); `mark` has it mark
    // the files not handed out yet (Engine::set_library_loads_watched).
    void set_loads_watched(std::function<void()> mark) { mark_libraries_ = std::move(mark); }

    const NewProcessStatistics& statistics() const { return statistics_; }

  private:
    // Drops from patches_ what the policy holds back now (NewProcesses.cpp).
    Result<void> hold_back_by_policy();
    OpensslRoute needs_openssl(int pid);
    bool loader_will_wait(int pid, std::uint64_t exec_time,
                          const std::vector<std::string>& libraries);
    void watch_if_patched(const std::string& path, std::vector<std::string>& found);
    bool excluded(int pid);
    std::vector<const UsablePatch*> matching(const ProcessInfo& info);
    std::vector<UpdateAction> apply_matching(const ProcessInfo& info,
                                             const std::vector<const UsablePatch*>& candidates,
                                             const InjectOptions& options,
                                             std::vector<std::string>& lost,
                                             const std::function<void()>& applied);
    // The libssl/libcrypto files under `root` ("/" or /proc/PID/root) that
    // a usable patch is for, not handed out yet.
    void find_libraries(const std::string& root, std::vector<std::string>& found);

    Engine& engine_;
    std::map<std::string, std::vector<UsablePatch>> patches_;
    ClosureCache closures_;
    NewProcessStatistics statistics_;
    bool enabled_ = true;
    ProcessClaims claims_;
    // Roots seen at exec (device, inode of /proc/PID/root) and the last
    // process seen in each, through which its files are reached again.
    std::map<std::pair<std::uint64_t, std::uint64_t>, int> roots_;
    // Library files looked at (device, inode): true if watched (a usable
    // patch is for it), false if not; cleared on reload.
    std::map<std::pair<std::uint64_t, std::uint64_t>, bool> examined_;
    // When the watcher had marked each watched file (CLOCK_MONOTONIC ns):
    // kept across reloads (the watcher never removes a mark), so a reload
    // does not make a watched file look newly watched.
    std::map<std::pair<std::uint64_t, std::uint64_t>, std::uint64_t> marked_since_;
    bool look_everywhere_ = true;  // after a reload: every root again
    std::vector<int> new_roots_;   // processes in roots not looked at yet
    // Processes whose exec event found their loader caught already (a
    // start, not a dlopen), with how OpenSSL gets in.
    std::map<int, OpensslReach> starting_;
    std::function<void()> mark_libraries_;  // empty: no library-open watcher
    std::vector<UniqueFD> unexamined_;          // OpenSSL files seen at exec, to look at
    std::vector<UniqueFD> opened_for_watching_;  // kept open until the next take
};

}  // namespace suture
