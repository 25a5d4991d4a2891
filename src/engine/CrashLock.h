// Internal to the engine: the crash lockfile (Canonical Livepatch's rule).
// An update that applies a patch first writes, beside the state database,
// `crash-lock.json`: the boot it happened in (/proc/sys/kernel/random/
// boot_id), when, and the patch ids and levels it applies. A later run in
// the same boot removes it once `watch_seconds` have passed since. A lock
// found from another boot means the host went down (or was killed) within
// `watch_seconds` of that apply: automatic runs (the boot unit, the timer,
// sutured) then hold those patches back, rule `crash_lock`, until an
// operator runs `suture crash-lock --release`. Format: docs/state.md.
#pragma once

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <utility>

#include "base/Error.h"

namespace suture {

struct CrashLock {
    std::string boot_id;
    std::int64_t at = 0;  // Unix seconds of the first apply it covers
    std::set<std::pair<std::string, std::uint32_t>> patches;
};

// DIRECTORY-OF-STATE-DATABASE/crash-lock.json.
std::string crash_lock_path(const std::string& state_database);
// The current boot's id ($SUTURE_TEST_BOOT_ID in tests; "" unreadable).
std::string current_boot_id();
// The lock at `path`; nullopt when there is none. A lock that does not parse
// is an error (it is never silently dropped).
Result<std::optional<CrashLock>> read_crash_lock(const std::string& path);
// Written atomically (temporary file renamed), mode 0600.
Result<void> write_crash_lock(const std::string& path, const CrashLock& lock);
Result<void> remove_crash_lock(const std::string& path);

}  // namespace suture
