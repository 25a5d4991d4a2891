// The policy of automatic runs (engine/Policy.h): suture.conf, maintenance
// windows, rollout buckets and waves, which rule holds a patch back, and the
// crash lockfile (engine/CrashLock.h).
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdio>
#include <cstdlib>

#include <unistd.h>

#include "engine/CrashLock.h"
#include "engine/Documents.h"
#include "engine/Engine.h"
#include "engine/Policy.h"

using namespace suture;

namespace {

// Local time on a weekday (0 Sunday .. 6 Saturday) at hh:mm.
std::tm at(int weekday, int hour, int minute) {
    std::tm local{};
    local.tm_wday = weekday;
    local.tm_hour = hour;
    local.tm_min = minute;
    return local;
}

PatchFacts patch_of(Severity severity, std::time_t published = 1000000) {
    return {.patch_id = "CVE-2026-1",
            .cves = {"CVE-2026-1"},
            .severity = severity,
            .channel = "stable",
            .published = published};
}

RunContext automatic_at(std::tm local, std::time_t now = 2000000, double bucket = 50) {
    return {.automatic = true, .now = now, .local = local, .bucket = bucket, .has_bucket = true};
}

// A synthetic machine id: 32 lowercase hex digits, as systemd writes them.
std::string machine_id(int n) {
    char text[33];
    std::snprintf(text, sizeof text, "%08x%08x%08x%08x", n * 2654435761u, n, ~n, n * 40503u);
    return text;
}

}  // namespace

TEST_CASE("suture.conf: every key, its defaults and its errors") {
    auto defaults = parse_policy("", "suture.conf");
    REQUIRE(defaults);
    CHECK(defaults->auto_apply == Policy::AutoApply::all);
    CHECK(defaults->windows.empty());
    CHECK(defaults->immediate_severity == Severity::high);
    CHECK(defaults->rollout.empty());

    auto policy = parse_policy(
        "# comment\n"
        "auto_apply = min_severity=Moderate\n"
        "window = Mon-Fri 02:00-05:00\n"
        "window = Sat,Sun 22:00-06:00\n"
        "immediate_severity = Critical\n"
        "rollout = 5@0 25@24 100@72\n"
        "rollout.testing = 100@0\n",
        "suture.conf");
    REQUIRE(policy);
    CHECK(policy->auto_apply == Policy::AutoApply::min_severity);
    CHECK(policy->auto_min_severity == Severity::moderate);
    CHECK(policy->windows.size() == 2);
    CHECK(policy->immediate_severity == Severity::critical);
    REQUIRE(policy->rollout.size() == 3);
    CHECK(policy->rollout[1].percent == 25);
    CHECK(policy->rollout[1].delay_hours == 24);
    CHECK(rollout_for(*policy, "testing").size() == 1);
    CHECK(rollout_for(*policy, "stable").size() == 3);

    auto unknown = parse_policy("colour = blue\n", "suture.conf");
    REQUIRE_FALSE(unknown);
    CHECK(unknown.error().message == "suture.conf:1: unknown key colour");
    CHECK_FALSE(parse_policy("auto_apply = some\n", "suture.conf"));
    CHECK_FALSE(parse_policy("immediate_severity = Severe\n", "suture.conf"));
    CHECK_FALSE(parse_policy("window = Mon-Fri 2-5\n", "suture.conf"));
    CHECK_FALSE(parse_policy("rollout = 25@0 5@24\n", "suture.conf"));  // not increasing
    CHECK_FALSE(parse_policy("rollout = 150@0\n", "suture.conf"));
}

TEST_CASE("A window holds on its days, across midnight from the day it starts") {
    auto weekdays = parse_window("Mon-Fri 02:00-05:00");
    REQUIRE(weekdays);
    CHECK(in_window(*weekdays, at(1, 2, 0)));    // Monday 02:00
    CHECK(in_window(*weekdays, at(5, 4, 59)));   // Friday 04:59
    CHECK_FALSE(in_window(*weekdays, at(5, 5, 0)));  // its end is outside
    CHECK_FALSE(in_window(*weekdays, at(6, 3, 0)));  // Saturday
    CHECK_FALSE(in_window(*weekdays, at(0, 3, 0)));  // Sunday

    auto night = parse_window("Fri 22:00-04:00");
    REQUIRE(night);
    CHECK(in_window(*night, at(5, 23, 0)));        // Friday evening
    CHECK(in_window(*night, at(6, 3, 0)));         // Saturday morning, started Friday
    CHECK_FALSE(in_window(*night, at(5, 3, 0)));   // Friday morning: Thursday's, not configured
    CHECK_FALSE(in_window(*night, at(6, 23, 0)));

    auto every_day = parse_window("12:00-13:00");
    REQUIRE(every_day);
    for (int day = 0; day < 7; ++day) {
        CHECK(in_window(*every_day, at(day, 12, 30)));
    }
    auto wrapping = parse_window("Sat-Mon 01:00-02:00");
    REQUIRE(wrapping);
    CHECK(in_window(*wrapping, at(0, 1, 30)));  // Sunday
    CHECK_FALSE(in_window(*wrapping, at(2, 1, 30)));  // Tuesday
    CHECK_FALSE(parse_window("Mon-Fri 05:00-05:00"));
    CHECK_FALSE(parse_window("Someday 01:00-02:00"));
}

TEST_CASE("Rollout buckets: 1,000 machine ids split within 2 % of the waves, each always the same") {
    auto waves = parse_rollout("5@0 25@24 100@72");
    REQUIRE(waves);
    const int hosts = 1000;
    int in_wave[3] = {0, 0, 0};
    for (int n = 0; n < hosts; ++n) {
        double bucket = rollout_bucket(machine_id(n));
        REQUIRE(bucket >= 0);
        REQUIRE(bucket < 100);
        CHECK(rollout_bucket(machine_id(n)) == bucket);  // stable
        auto wave = wave_of(*waves, bucket);
        REQUIRE(wave);
        ++in_wave[*wave];
    }
    double first = 100.0 * in_wave[0] / hosts;
    double up_to_second = 100.0 * (in_wave[0] + in_wave[1]) / hosts;
    INFO("wave 1: " << first << " %, waves 1-2: " << up_to_second << " %");
    CHECK(std::abs(first - 5) <= 2);
    CHECK(std::abs(up_to_second - 25) <= 2);
    CHECK(in_wave[0] + in_wave[1] + in_wave[2] == hosts);
    // Different machine ids do not collapse onto a few buckets.
    CHECK(rollout_bucket(machine_id(1)) != rollout_bucket(machine_id(2)));
}

TEST_CASE("The one-time selection holds in every run") {
    Policy policy;
    RunContext manual{.automatic = false, .now = 0};
    Selection only{.cves = {"CVE-2026-2"}};
    auto held = held_back(patch_of(Severity::high), only, policy, manual, false);
    REQUIRE(held);
    CHECK(held->rule == "cve");
    Selection except{.exclude_cves = {"CVE-2026-1"}};
    CHECK(held_back(patch_of(Severity::high), except, policy, manual, false)->rule == "exclude_cve");
    Selection severe{.min_severity = Severity::high};
    CHECK(held_back(patch_of(Severity::moderate), severe, policy, manual, false)->rule ==
          "min_severity");
    CHECK(held_back(patch_of(Severity::unknown), severe, policy, manual, false));
    CHECK_FALSE(held_back(patch_of(Severity::critical), severe, policy, manual, false));
}

TEST_CASE("Outside the window automatic runs apply only immediate_severity, unless applied before") {
    auto policy = parse_policy("window = Mon-Fri 02:00-05:00\n", "suture.conf");
    REQUIRE(policy);
    RunContext outside = automatic_at(at(3, 14, 0));  // Wednesday 14:00
    RunContext inside = automatic_at(at(3, 3, 0));
    auto held = held_back(patch_of(Severity::moderate), {}, *policy, outside, false);
    REQUIRE(held);
    CHECK(held->rule == "window");
    CHECK_FALSE(held_back(patch_of(Severity::high), {}, *policy, outside, false));
    CHECK_FALSE(held_back(patch_of(Severity::moderate), {}, *policy, inside, false));
    // Already applied on the host: a new process gets it whatever the clock.
    CHECK_FALSE(held_back(patch_of(Severity::moderate), {}, *policy, outside, true));
    // A manual run is the operator's decision.
    RunContext manual = outside;
    manual.automatic = false;
    CHECK_FALSE(held_back(patch_of(Severity::low), {}, *policy, manual, false));
}

TEST_CASE("auto_apply and the rollout waves hold automatic runs") {
    auto none = parse_policy("auto_apply = none\n", "suture.conf");
    REQUIRE(none);
    RunContext run = automatic_at(at(3, 3, 0));
    CHECK(held_back(patch_of(Severity::critical), {}, *none, run, true)->rule == "auto_apply");
    auto high = parse_policy("auto_apply = min_severity=High\n", "suture.conf");
    REQUIRE(high);
    CHECK(held_back(patch_of(Severity::moderate), {}, *high, run, false)->rule == "auto_apply");
    CHECK_FALSE(held_back(patch_of(Severity::high), {}, *high, run, false));

    auto phased = parse_policy("rollout = 5@0 25@24 100@72\n", "suture.conf");
    REQUIRE(phased);
    std::time_t published = 1000000;
    // Bucket 50 is in the third wave: 72 hours after publication.
    RunContext early = automatic_at(at(3, 3, 0), published + 71 * 3600, 50);
    RunContext due = automatic_at(at(3, 3, 0), published + 72 * 3600, 50);
    auto held = held_back(patch_of(Severity::low, published), {}, *phased, early, false);
    REQUIRE(held);
    CHECK(held->rule == "rollout");
    CHECK(held->message.starts_with("wave 3 (bucket 50)"));
    CHECK_FALSE(held_back(patch_of(Severity::low, published), {}, *phased, due, false));
    // Bucket 3 is in the first wave: at once.
    RunContext canary = automatic_at(at(3, 3, 0), published, 3);
    CHECK_FALSE(held_back(patch_of(Severity::low, published), {}, *phased, canary, false));
    // No machine id: no wave.
    RunContext anonymous = due;
    anonymous.has_bucket = false;
    CHECK(held_back(patch_of(Severity::low, published), {}, *phased, anonymous, false));
}

TEST_CASE("Update options go to sutured and back") {
    UpdateOptions options{.refresh = false, .dry_run = true, .automatic = true};
    options.selection.cves = {"CVE-2026-1", "CVE-2026-2"};
    options.selection.exclude_cves = {"CVE-2026-3"};
    options.selection.min_severity = Severity::moderate;
    auto back = update_options_from_json(update_options_to_json(options));
    REQUIRE(back);
    CHECK(back->refresh == false);
    CHECK(back->dry_run);
    CHECK(back->automatic);
    CHECK(back->selection.cves == options.selection.cves);
    CHECK(back->selection.exclude_cves == options.selection.exclude_cves);
    CHECK(back->selection.min_severity == Severity::moderate);
    auto bad = update_options_to_json(options);
    bad["min_severity"] = "Severe";
    CHECK_FALSE(update_options_from_json(bad));
}

TEST_CASE("The crash lock holds its patches in automatic runs, even those the host applied") {
    Policy policy;
    RunContext run = automatic_at(at(3, 3, 0));
    run.crash_locked = {{"CVE-2026-1", 1}};
    run.crash_locked_at = 1796220000;
    auto held = held_back(patch_of(Severity::critical), {}, policy, run, true);
    REQUIRE(held);
    CHECK(held->rule == "crash_lock");
    CHECK(held->message.find("2026-") != std::string::npos);
    PatchFacts other = patch_of(Severity::low);
    other.patch_id = "CVE-2026-2";
    CHECK_FALSE(held_back(other, {}, policy, run, false));
    RunContext manual = run;
    manual.automatic = false;
    CHECK_FALSE(held_back(patch_of(Severity::low), {}, policy, manual, false));
    auto watched = parse_policy("watch_seconds = 60\n", "suture.conf");
    REQUIRE(watched);
    CHECK(watched->watch_seconds == 60);
    CHECK_FALSE(parse_policy("watch_seconds = soon\n", "suture.conf"));
    // Canaries: off by default, at most max_canary_seconds.
    CHECK(Policy{}.canary_seconds == 0);
    auto canary = parse_policy("canary_seconds = 60\n", "suture.conf");
    REQUIRE(canary);
    CHECK(canary->canary_seconds == 60);
    CHECK_FALSE(parse_policy("canary_seconds = 301\n", "suture.conf"));
    CHECK_FALSE(parse_policy("canary_seconds = -1\n", "suture.conf"));
}

TEST_CASE("Health checks: NAME: COMMAND, one per name, matched by unit or executable") {
    auto policy = parse_policy(
        "health_check = nginx: curl -fsS https://127.0.0.1/health\n"
        "health_check = postfix.service:  /usr/local/bin/smtp-check --tls \n"
        "health_check_interval = 2\nhealth_check_timeout = 7\n",
        "suture.conf");
    REQUIRE(policy);
    REQUIRE(policy->health_checks.size() == 2);
    CHECK(policy->health_checks[0].name == "nginx");
    CHECK(policy->health_checks[0].command == "curl -fsS https://127.0.0.1/health");
    CHECK(policy->health_checks[1].name == "postfix.service");
    CHECK(policy->health_checks[1].command == "/usr/local/bin/smtp-check --tls");
    CHECK(policy->health_check_interval == 2);
    CHECK(policy->health_check_timeout == 7);
    CHECK(Policy{}.health_check_interval == 10);
    CHECK(Policy{}.health_checks.empty());
    // Refused, naming the file and line: no command, no name, a name with
    // a space or a slash, a second check of one name, bad seconds.
    for (const char* bad : {"health_check = nginx\n", "health_check = nginx:   \n",
                            "health_check = : true\n", "health_check = my app: true\n",
                            "health_check = /usr/sbin/nginx: true\n",
                            "health_check = a: true\nhealth_check = a: false\n",
                            "health_check_interval = 0\n", "health_check_timeout = 3601\n",
                            "health_check_interval = often\n"}) {
        auto refused = parse_policy(bad, "suture.conf");
        REQUIRE_FALSE(refused);
        CHECK(refused.error().message.starts_with("suture.conf:"));
    }
    // A unit (with or without .service) or an executable's file name.
    CHECK(health_check_matches("nginx", "nginx.service", "/usr/sbin/nginx"));
    CHECK(health_check_matches("nginx", "", "/usr/sbin/nginx"));
    CHECK(health_check_matches("web", "web.service", "/usr/sbin/nginx"));
    CHECK(health_check_matches("web.service", "web.service", "/usr/sbin/nginx"));
    CHECK_FALSE(health_check_matches("web", "", "/usr/sbin/nginx"));
    CHECK_FALSE(health_check_matches("nginx", "apache2.service", "/usr/sbin/apache2"));
    CHECK_FALSE(health_check_matches("ngin", "", "/usr/sbin/nginx"));
}

TEST_CASE("A quarantined patch id is held in every run, before any other rule") {
    Policy policy;
    RunContext manual{.automatic = false, .now = 0};
    manual.quarantined = {{"CVE-2026-1", "quarantined at 2026-12-02T14:00:12Z: pid 7 (x) killed by SIGILL"}};
    // Manual, already applied on the host, selected by --cve: still held.
    Selection only{.cves = {"CVE-2026-1"}};
    auto held = held_back(patch_of(Severity::critical), only, policy, manual, true);
    REQUIRE(held);
    CHECK(held->rule == "quarantined");
    CHECK(held->message.find("killed by SIGILL") != std::string::npos);
    CHECK(held->message.find("suture quarantine release CVE-2026-1") != std::string::npos);
    RunContext automatic = automatic_at(at(3, 3, 0));
    automatic.quarantined = manual.quarantined;
    PatchFacts higher = patch_of(Severity::critical);
    higher.level = 7;  // every level of the id
    CHECK(held_back(higher, {}, policy, automatic, true)->rule == "quarantined");
    PatchFacts other = patch_of(Severity::low);
    other.patch_id = "CVE-2026-2";
    CHECK_FALSE(held_back(other, {}, policy, manual, false));
}

TEST_CASE("The crash lockfile is written whole and read back; a bad one is an error") {
    char directory[] = "/tmp/suture-crash-lock-XXXXXX";
    REQUIRE(::mkdtemp(directory) != nullptr);
    std::string path = crash_lock_path(std::string(directory) + "/state.db");
    CHECK(path == std::string(directory) + "/crash-lock.json");
    auto none = read_crash_lock(path);
    REQUIRE(none);
    CHECK_FALSE(*none);
    CrashLock lock{.boot_id = "boot-1", .at = 42, .patches = {{"CVE-2026-1", 2}}};
    REQUIRE(write_crash_lock(path, lock));
    auto back = read_crash_lock(path);
    REQUIRE(back);
    REQUIRE(*back);
    CHECK((*back)->boot_id == "boot-1");
    CHECK((*back)->at == 42);
    CHECK((*back)->patches == lock.patches);
    std::FILE* file = std::fopen(path.c_str(), "w");
    std::fputs("{\"boot_id\": 1}", file);
    std::fclose(file);
    CHECK_FALSE(read_crash_lock(path));
    REQUIRE(remove_crash_lock(path));
    REQUIRE(remove_crash_lock(path));  // absent is fine
    ::rmdir(directory);
}
