// The CLI's human-readable output of the engine's typed reports (the
// `--json` output is engine/Documents.h's). Status has its own table
// (StatusTable.h).
#pragma once

#include <iosfwd>
#include <vector>

#include "engine/Engine.h"

namespace suture {

enum class InjectVerb { applied, reverted };

// One line per report: "pid 12: applied CVE-… level 1: 3 functions, …".
void print_inject_report(std::ostream& out, int pid, const InjectReport& report, InjectVerb verb);
// The failure's message (log::error); for `unsafe` it lists each blocking
// thread with its frames.
void print_failure(const InjectFailure& failure);
void print_thread_stacks(std::ostream& out, const std::vector<ThreadStack>& stacks);
void print_refreshes(std::ostream& out, const std::vector<RemoteRefresh>& refreshes);
void print_cached_targets(std::ostream& out, const std::vector<feed::CachedTarget>& targets);
// The actions and a summary line; unreadable cached files are warnings.
void print_update(std::ostream& out, const UpdateReport& report);
// `suture revert --cve ID... | --all`: each process and patch, then a summary.
void print_host_revert(std::ostream& out, const HostRevertReport& report);
// The crash lockfile, and whether it holds its patches back.
void print_crash_lock(std::ostream& out, const CrashLockStatus& status);
// Oldest first (`entries` come newest first).
void print_history(std::ostream& out, const std::vector<HistoryEntry>& entries);

}  // namespace suture
