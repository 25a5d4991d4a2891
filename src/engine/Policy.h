// When an update may apply a patch (Severity and Selection are part of the
// engine's API: UpdateOptions carries them). The host's
// policy (suture.conf: auto_apply, maintenance windows, immediate_severity,
// phased rollout), the one-time selection of `suture update --cve …
// --exclude-cve … --min-severity …`, and the rule that holds a patch back.
// Format and semantics: docs/operator-guide.md, "Policy"; pure functions
// but for load_policy, read_machine_id and policy_now.
#pragma once

#include <cstdint>
#include <ctime>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/Error.h"

namespace suture {

// Upstream OpenSSL's severity scale; unknown (the publisher gave none) sorts
// below everything.
enum class Severity { unknown, low, moderate, high, critical };
// "Low", "Moderate" ("Medium" too), "High", "Critical", any case; nullopt
// for anything else.
std::optional<Severity> severity_from_name(std::string_view name);
std::string_view severity_name(Severity severity);

// A maintenance window in local time: days of the week (bit 0 Monday ..
// bit 6 Sunday) and minutes since midnight; end <= start crosses midnight
// (the days are those the window starts on).
struct Window {
    std::uint8_t days = 0x7f;
    int start_minute = 0;
    int end_minute = 0;
    std::string text;  // as configured, for messages
};
// "Mon-Fri 02:00-05:00", "Sat,Sun 00:00-06:00", "22:00-04:00" (every day).
Result<Window> parse_window(std::string_view text);
// Whether local time `local` (tm_wday, tm_hour, tm_min) is inside `window`.
bool in_window(const Window& window, const std::tm& local);

// One wave of a phased rollout: hosts whose bucket is below `percent` get a
// patch `delay_hours` after its signed `published` time.
struct Wave {
    double percent = 100;
    std::uint32_t delay_hours = 0;
};
// "5@0 25@24 100@72": waves in increasing percent; the last should be 100
// (hosts above it never get the patch automatically).
Result<std::vector<Wave>> parse_rollout(std::string_view text);

// One health check of suture.conf: the unit or executable it watches, and
// the command that says whether it is healthy (exit 0).
struct HealthCheck {
    std::string name;
    std::string command;
};
// "nginx: curl -fsS https://127.0.0.1/health" (NAME: a unit or executable
// name, no spaces; COMMAND: the rest, not empty).
Result<HealthCheck> parse_health_check(std::string_view text);
// Whether check `name` watches a process of `unit` ("" none) running
// `executable` (its path).
bool health_check_matches(const std::string& name, const std::string& unit,
                          const std::string& executable);

// The host's policy for automatic runs (the timer, sutured's rescan).
struct Policy {
    enum class AutoApply { all, min_severity, none };
    AutoApply auto_apply = AutoApply::all;
    Severity auto_min_severity = Severity::unknown;  // AutoApply::min_severity only
    std::vector<Window> windows;                     // empty: any time
    Severity immediate_severity = Severity::high;    // applies outside the windows too
    std::vector<Wave> rollout;                       // empty: every host at once
    std::map<std::string, std::vector<Wave>> rollout_by_channel;  // overrides `rollout`
    // The crash lock covers an apply this long, and the health watch blames
    // a crash on the patches applied in the process this long before it (0:
    // the health watch blames nothing).
    std::uint32_t watch_seconds = 300;
    // Canaries inside the host: for each executable (and systemd unit) with
    // several processes to patch, an update applies to one process first and
    // watches it this long before the rest (0: off, every process at once).
    std::uint32_t canary_seconds = 0;
    // Health checks (`health_check = NAME: COMMAND`, several allowed): while
    // a process of the systemd unit NAME (NAME.service too) or of the
    // executable named NAME is within watch_seconds of an apply, COMMAND
    // (/bin/sh -c) runs every health_check_interval seconds, each run given
    // health_check_timeout seconds; a failure blames that apply
    // (HealthWatch.cpp).
    std::vector<HealthCheck> health_checks;
    std::uint32_t health_check_interval = 10;
    std::uint32_t health_check_timeout = 10;
    std::string source;                              // the file, "" for the defaults
};
// The longest canary watch: an update holds the operation lock (and sutured
// its event loop) meanwhile, and sutured's callers wait at most 10 minutes.
constexpr std::uint32_t max_canary_seconds = 300;
// The longest health_check_interval and health_check_timeout.
constexpr std::uint32_t max_health_check_seconds = 3600;
// Parses suture.conf's text (key = value lines, '#' comments).
Result<Policy> parse_policy(const std::string& text, const std::string& file_name);
// CONFIG_DIRECTORY/suture.conf; a missing file is the defaults.
Result<Policy> load_policy(const std::string& config_directory);

// The host's rollout bucket in [0, 100): the first 8 bytes of
// SHA-256("suture-rollout:" + machine id), big-endian, modulo 10,000, over
// 100. Stable for a machine id, uniform across machine ids.
double rollout_bucket(std::string_view machine_id);
// /etc/machine-id ($SUTURE_MACHINE_ID_FILE in tests), trimmed; "" unreadable.
std::string read_machine_id();
// The time policy decisions use: now, or $SUTURE_TEST_NOW (Unix seconds;
// test-only, documented as such) when set.
std::time_t policy_now();

// The one-time selection of one `suture update` run.
struct Selection {
    std::set<std::string> cves;          // not empty: only patches fixing one of these
    std::set<std::string> exclude_cves;  // never patches fixing one of these
    Severity min_severity = Severity::unknown;
    bool empty() const {
        return cves.empty() && exclude_cves.empty() && min_severity == Severity::unknown;
    }
};

// What the rules look at of one candidate patch.
struct PatchFacts {
    std::string patch_id;
    std::uint32_t level = 1;
    std::vector<std::string> cves;
    Severity severity = Severity::unknown;
    std::string channel;
    std::time_t published = 0;
};

// The circumstances of one run.
struct RunContext {
    bool automatic = false;  // the timer or sutured: the policy applies
    std::time_t now = 0;
    std::tm local{};         // `now` in local time
    double bucket = 0;       // rollout_bucket of the host
    bool has_bucket = false;  // false: no machine id, the rollout holds everything
    // Patches (id, level) of an apply the host went down after, within
    // watch_seconds (engine/CrashLock.h): automatic runs hold them back.
    std::set<std::pair<std::string, std::uint32_t>> crash_locked;
    std::int64_t crash_locked_at = 0;
    // Patch ids the health watch quarantined (every level), each with why:
    // every run holds them back, manual or automatic, until released.
    std::map<std::string, std::string> quarantined;
};

// Why `patch` is held back in this run, or nullopt to go ahead. A
// quarantine first, the selection next (both every run), then for automatic runs auto_apply, the
// crash lock, the rollout wave and the window. `approved_on_host`: the patch (id and level)
// was already applied on this host (the state database has it), so neither
// the rollout nor the window holds it back: a process started later never
// stays unpatched because of the clock.
struct Hold {
    // quarantined, cve, exclude_cve, min_severity, auto_apply, crash_lock,
    // rollout, window
    std::string rule;
    std::string message;  // how, for the operator
};
std::optional<Hold> held_back(const PatchFacts& patch, const Selection& selection,
                              const Policy& policy, const RunContext& run, bool approved_on_host);

// The host's wave for `waves`: its index, or nullopt when the bucket is
// above every wave.
std::optional<std::size_t> wave_of(const std::vector<Wave>& waves, double bucket);
// The rollout of patches of `channel`.
const std::vector<Wave>& rollout_for(const Policy& policy, const std::string& channel);

}  // namespace suture
