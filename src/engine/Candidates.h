// Internal to the engine: the patches the feed cache offers, what suture
// must not touch, and applying one patch with its records. Shared by the
// update cycle (Update.cpp) and new processes (NewProcesses.cpp).
#pragma once

#include <cstddef>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <span>
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

// The version of the targets metadata `cached` was listed from, as a
// history entry records it: unset when the listing did not say (0).
std::optional<std::uint64_t> targets_version_of(const feed::CachedTarget& cached);

// One candidate as supersession sees it: a cumulative patch (feed custom
// "supersedes", feed::PatchsetInfo) carries the fixes of other patch ids
// of its build, so where it is in effect they are not applied.
struct SupersedeKey {
    std::string build_id;
    std::string patch_id;
    std::vector<std::string> supersedes;
};
SupersedeKey supersede_key(const UsablePatch& candidate);

// Decides the candidates of one process (`keys`), each only after every
// candidate that supersedes it: `decide(i)` decides candidate i and says
// whether it is in effect (active in the process, or about to be applied).
// Returns, per candidate, the index of a candidate in effect that
// supersedes it (it is then not decided: `superseded`), or nullopt (it was
// decided). A candidate supersedes only candidates of its own build. In a
// cycle (A supersedes B, B supersedes A: a publisher's mistake) the first
// pending member is decided on its own, then the others as above. Pure.
std::vector<std::optional<std::size_t>> resolve_supersedes(
    std::span<const SupersedeKey> keys, const std::function<bool(std::size_t)>& decide);

// Drops from `candidates` (the patches of one build, or of one process)
// those another of them supersedes: what a new process gets (nothing of it
// is active yet, so every candidate left is to be applied).
void drop_superseded(std::vector<UsablePatch>& candidates);

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

// The writes of one run to the state database, each checked (nothing is
// ever discarded): a write that fails, and every write of a batch whose
// commit fails, is named in lost(), so the run can say which records it
// lost (docs/state.md, "Write failures"). After start_batches(), the writes
// go to disk in transactions of `per_batch`: with synchronous=FULL one
// transaction per record cost about as much as the applies themselves; a
// crash loses at most one batch, and the next update finds those patches in
// memory and adopts them. Without a database (it would not open) every
// write is lost.
class Records {
  public:
    explicit Records(StateDatabase* database, std::string unavailable = "");
    ~Records();  // commits the batch in progress
    Records(const Records&) = delete;
    Records& operator=(const Records&) = delete;

    StateDatabase* database() { return database_; }
    // One write and its result; `what` names the record ("apply pid 12
    // CVE-2026-1 level 1"). Every `per_batch` writes, the batch is committed.
    void wrote(const std::string& what, const Result<void>& written);
    template <typename T>
    void wrote(const std::string& what, const Result<T>& written) {
        wrote(what, written ? Result<void>{} : Result<void>(tl::unexpected(written.error())));
    }
    // A record that could not even be attempted (no database).
    void lose(const std::string& what, const std::string& why);
    // From here on, writes in batches.
    void start_batches();
    // Commits the batch in progress (the records in it are lost if that fails).
    void commit();
    const std::vector<std::string>& lost() const { return lost_; }

  private:
    static constexpr std::size_t per_batch = 64;
    void begin();
    void lose_pending(const std::string& why);

    StateDatabase* database_;
    bool batched_ = false;
    std::string unavailable_;            // why there is no database
    std::vector<std::string> pending_;   // written into the open batch
    std::vector<std::string> lost_;
};

// A record's name in Records: "<action> pid <pid> <patch id> level <n>".
std::string record_name(std::string_view action, const ProcessIdentity& process,
                        const std::string& patch_id, std::uint32_t level);

// The record of `application` closed (its process is gone), through
// `records`, with a history entry `close` giving `reason` and `message`.
void close_application(Records& records, const Application& application,
                       const std::string& reason, const std::string& message);

// Applies `candidate` to the process `action` names, fills in the action's
// outcome (and reason), and records it in `records`: the application (with
// the process's systemd unit) when it succeeded, a history entry either
// way, with `origin` as its message on success and the feed's targets
// metadata (version, signing keys) the candidate was listed from. An apply that finds the patch already active in the stop (another
// run got there first) is `already`, never `applied`; it is recorded as an
// adoption if the database lacks it.
void apply_and_record(Engine& engine, Records& records, const UsablePatch& candidate,
                      const InjectOptions& options, const std::string& executable,
                      const std::string& origin, UpdateAction& action);

// Fills in `action` from the outcome of applying `candidate` and records it,
// as apply_and_record does (for an update that applied in parallel).
void record_apply(Records& records, const UsablePatch& candidate, const std::string& executable,
                  const std::string& origin, UpdateAction& action,
                  const InjectResult<InjectReport>& applied);

// The same for several candidates to one process (every action names the
// same process), applied in one stop (Engine::apply_many) and each
// recorded as above. What an update or a new process should call when a
// process gets more than one patch.
void apply_and_record_all(Engine& engine, Records& records,
                          const std::vector<const UsablePatch*>& candidates,
                          const InjectOptions& options, const std::string& executable,
                          const std::string& origin, const std::vector<UpdateAction*>& actions);

}  // namespace suture
