// Internal to the engine: what the policy rules (engine/Policy.h) look at,
// gathered from the feed cache, the advisory data, the state database and
// the clock. Shared by the update cycle (Update.cpp) and new processes
// (NewProcesses.cpp), so sutured's two paths hold back the same patches.
#pragma once

#include <set>
#include <string>
#include <utility>

#include "engine/Candidates.h"
#include "engine/Feed.h"
#include "engine/Policy.h"

namespace suture {

// The severity of a candidate: its signed custom metadata's, else the
// highest the advisory data gives its patch id in its build.
Severity severity_of(const UsablePatch& candidate, const AdvisoryData& advisories);

// What the rules look at of a candidate.
PatchFacts facts_of(const UsablePatch& candidate, Severity severity);

// Patch ids and levels the database has applied on this host before (in a
// process still running or since exited): the rollout and the window do not
// hold them back.
using ApprovedPatches = std::set<std::pair<std::string, std::uint32_t>>;
Result<ApprovedPatches> approved_patches(StateDatabase& database);

// The circumstances of a run: the clock (SUTURE_TEST_NOW in tests), local
// time, the host's rollout bucket from its machine id.
RunContext run_context(bool automatic);

}  // namespace suture
