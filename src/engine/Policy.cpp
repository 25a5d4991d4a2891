#include "engine/Policy.h"

#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cctype>
#include <span>
#include <charconv>
#include <cstdlib>
#include <sstream>

#include "base/Files.h"
#include "base/Sha256.h"
#include "engine/Documents.h"

namespace suture {

namespace {

constexpr std::array<std::string_view, 7> day_names = {"mon", "tue", "wed", "thu",
                                                       "fri", "sat", "sun"};

std::string lowercase(std::string_view text) {
    std::string lower(text);
    std::transform(lower.begin(), lower.end(), lower.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return lower;
}

std::string trimmed(std::string_view text) {
    auto begin = text.find_first_not_of(" \t\r");
    auto end = text.find_last_not_of(" \t\r");
    return begin == std::string::npos ? "" : std::string(text.substr(begin, end - begin + 1));
}

template <typename T>
bool parse_number(std::string_view text, T& value) {
    auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
    return error == std::errc{} && end == text.data() + text.size();
}

std::optional<int> day_index(std::string_view name) {
    auto found = std::find(day_names.begin(), day_names.end(), lowercase(name));
    if (found == day_names.end()) {
        return std::nullopt;
    }
    return static_cast<int>(found - day_names.begin());
}

// "Mon-Fri", "Sat,Sun", "Mon-Wed,Fri": a set of days as Window::days bits.
std::optional<std::uint8_t> parse_days(std::string_view text) {
    std::uint8_t days = 0;
    std::istringstream items{std::string(text)};
    std::string item;
    while (std::getline(items, item, ',')) {
        auto dash = item.find('-');
        auto first = day_index(item.substr(0, dash));
        auto last = dash == std::string::npos ? first : day_index(item.substr(dash + 1));
        if (!first || !last) {
            return std::nullopt;
        }
        // Mon-Sun wraps as a week does: Fri-Mon is Fri, Sat, Sun, Mon.
        for (int day = *first;; day = (day + 1) % 7) {
            days |= static_cast<std::uint8_t>(1u << day);
            if (day == *last) {
                break;
            }
        }
    }
    return days == 0 ? std::nullopt : std::optional(days);
}

// "02:00" as minutes since midnight.
std::optional<int> parse_clock(std::string_view text) {
    int hours = 0;
    int minutes = 0;
    if (text.size() != 5 || text[2] != ':' || !parse_number(text.substr(0, 2), hours) ||
        !parse_number(text.substr(3), minutes) || hours > 24 || minutes > 59 ||
        (hours == 24 && minutes != 0)) {
        return std::nullopt;
    }
    return hours * 60 + minutes;
}

Result<Severity> parse_severity_value(const std::string& value, const std::string& where) {
    auto severity = severity_from_name(value);
    if (!severity) {
        return fail(ErrorCode::bad_format,
                    where + ": unknown severity " + value + " (Low, Moderate, High, Critical)");
    }
    return *severity;
}

}  // namespace

Result<HealthCheck> parse_health_check(std::string_view text) {
    auto colon = text.find(':');
    bool split = colon != std::string_view::npos;
    std::string name = split ? trimmed(text.substr(0, colon)) : "";
    std::string command = split ? trimmed(text.substr(colon + 1)) : "";
    bool plain = !name.empty() && name.find_first_of(" \t/") == std::string::npos;
    if (!plain || command.empty()) {
        return fail(ErrorCode::bad_format, "health_check is NAME: COMMAND, NAME a unit or "
                                           "executable name without spaces (got \"" +
                                               std::string(text) + "\")");
    }
    return HealthCheck{.name = std::move(name), .command = std::move(command)};
}

bool health_check_matches(const std::string& name, const std::string& unit,
                          const std::string& executable) {
    auto slash = executable.rfind('/');
    std::string base = slash == std::string::npos ? executable : executable.substr(slash + 1);
    return (!unit.empty() && (unit == name || unit == name + ".service")) || base == name;
}

namespace {

// One key = value line of suture.conf into `policy`.
Result<void> apply_setting(Policy& policy, const std::string& key, const std::string& value,
                           const std::string& where) {
    if (key == "auto_apply") {
        if (value == "all" || value == "none") {
            policy.auto_apply = value == "all" ? Policy::AutoApply::all : Policy::AutoApply::none;
            return {};
        }
        if (!value.starts_with("min_severity=")) {
            return fail(ErrorCode::bad_format,
                        where + ": auto_apply is all, none or min_severity=LEVEL (got " + value + ")");
        }
        auto severity = parse_severity_value(value.substr(13), where);
        if (!severity) {
            return tl::unexpected(severity.error());
        }
        policy.auto_apply = Policy::AutoApply::min_severity;
        policy.auto_min_severity = *severity;
        return {};
    }
    if (key == "window") {
        auto window = parse_window(value);
        if (!window) {
            return fail(ErrorCode::bad_format, where + ": " + window.error().message);
        }
        policy.windows.push_back(std::move(*window));
        return {};
    }
    if (key == "watch_seconds") {
        if (!parse_number(std::string_view(value), policy.watch_seconds)) {
            return fail(ErrorCode::bad_format, where + ": bad value for watch_seconds: " + value);
        }
        return {};
    }
    if (key == "canary_seconds") {
        if (!parse_number(std::string_view(value), policy.canary_seconds) ||
            policy.canary_seconds > max_canary_seconds) {
            return fail(ErrorCode::bad_format, where + ": bad value for canary_seconds: " + value +
                                                   " (0 to " + std::to_string(max_canary_seconds) +
                                                   ")");
        }
        return {};
    }
    if (key == "health_check") {
        auto check = parse_health_check(value);
        if (!check) {
            return fail(ErrorCode::bad_format, where + ": " + check.error().message);
        }
        for (const HealthCheck& other : policy.health_checks) {
            if (other.name == check->name) {
                return fail(ErrorCode::bad_format,
                            where + ": a second health_check for " + check->name);
            }
        }
        policy.health_checks.push_back(std::move(*check));
        return {};
    }
    if (key == "health_check_interval" || key == "health_check_timeout") {
        std::uint32_t& seconds = key == "health_check_interval" ? policy.health_check_interval
                                                                : policy.health_check_timeout;
        if (!parse_number(std::string_view(value), seconds) || seconds == 0 ||
            seconds > max_health_check_seconds) {
            return fail(ErrorCode::bad_format, where + ": bad value for " + key + ": " + value +
                                                   " (1 to " +
                                                   std::to_string(max_health_check_seconds) + ")");
        }
        return {};
    }
    if (key == "immediate_severity") {
        auto severity = parse_severity_value(value, where);
        if (!severity) {
            return tl::unexpected(severity.error());
        }
        policy.immediate_severity = *severity;
        return {};
    }
    if (key == "rollout" || key.starts_with("rollout.")) {
        auto waves = parse_rollout(value);
        if (!waves) {
            return fail(ErrorCode::bad_format, where + ": " + waves.error().message);
        }
        (key == "rollout" ? policy.rollout : policy.rollout_by_channel[key.substr(8)]) =
            std::move(*waves);
        return {};
    }
    return fail(ErrorCode::bad_format, where + ": unknown key " + key);
}

bool selected(const PatchFacts& patch, const std::set<std::string>& cves) {
    return std::any_of(patch.cves.begin(), patch.cves.end(),
                       [&](const std::string& cve) { return cves.contains(cve); });
}

std::string severity_label(Severity severity) {
    return severity == Severity::unknown ? "no severity" : std::string(severity_name(severity));
}

// The selection's rule, for every run.
std::optional<Hold> selection_holds(const PatchFacts& patch, const Selection& selection) {
    if (!selection.cves.empty() && !selected(patch, selection.cves)) {
        return Hold{"cve", "--cve: fixes none of the CVEs asked for"};
    }
    if (selected(patch, selection.exclude_cves)) {
        return Hold{"exclude_cve", "--exclude-cve: fixes an excluded CVE"};
    }
    if (patch.severity < selection.min_severity) {
        return Hold{"min_severity", "--min-severity " +
                                        std::string(severity_name(selection.min_severity)) +
                                        ": " + severity_label(patch.severity)};
    }
    return std::nullopt;
}

// The rollout's rule: the host's wave, and whether its delay has passed.
std::optional<std::string> rollout_holds(const PatchFacts& patch, const Policy& policy,
                                         const RunContext& run) {
    const std::vector<Wave>& waves = rollout_for(policy, patch.channel);
    if (waves.empty()) {
        return std::nullopt;
    }
    if (!run.has_bucket) {
        return "no machine id, so no wave";
    }
    std::ostringstream bucket;
    bucket.precision(4);
    bucket << run.bucket;
    auto wave = wave_of(waves, run.bucket);
    if (!wave) {
        return "bucket " + bucket.str() + " is in no wave";
    }
    std::time_t due = patch.published + static_cast<std::time_t>(waves[*wave].delay_hours) * 3600;
    if (run.now >= due) {
        return std::nullopt;
    }
    return "wave " + std::to_string(*wave + 1) + " (bucket " + bucket.str() +
           ") from " + format_utc_time(due);
}

std::optional<std::string> window_holds(const PatchFacts& patch, const Policy& policy,
                                        const RunContext& run) {
    if (policy.windows.empty() || patch.severity >= policy.immediate_severity) {
        return std::nullopt;
    }
    bool inside = std::any_of(policy.windows.begin(), policy.windows.end(),
                              [&](const Window& window) { return in_window(window, run.local); });
    if (inside) {
        return std::nullopt;
    }
    return "outside the maintenance window, " + severity_label(patch.severity) +
           " is below immediate_severity " +
           std::string(severity_name(policy.immediate_severity));
}

}  // namespace

std::optional<Severity> severity_from_name(std::string_view name) {
    std::string lower = lowercase(name);
    if (lower == "low") {
        return Severity::low;
    }
    if (lower == "moderate" || lower == "medium") {
        return Severity::moderate;
    }
    if (lower == "high") {
        return Severity::high;
    }
    if (lower == "critical") {
        return Severity::critical;
    }
    return std::nullopt;
}

std::string_view severity_name(Severity severity) {
    switch (severity) {
        case Severity::low:
            return "Low";
        case Severity::moderate:
            return "Moderate";
        case Severity::high:
            return "High";
        case Severity::critical:
            return "Critical";
        case Severity::unknown:
            break;
    }
    return "";
}

Result<Window> parse_window(std::string_view text) {
    std::string value = trimmed(text);
    auto space = value.find(' ');
    std::string days = space == std::string::npos ? "" : value.substr(0, space);
    std::string clock = trimmed(space == std::string::npos ? value : value.substr(space + 1));
    auto bad = [&] {
        return fail(ErrorCode::bad_format,
                    "bad window \"" + value + "\" (expected like Mon-Fri 02:00-05:00)");
    };
    auto dash = clock.find('-');
    if (dash == std::string::npos) {
        return bad();
    }
    auto start = parse_clock(clock.substr(0, dash));
    auto end = parse_clock(clock.substr(dash + 1));
    auto day_set = days.empty() ? std::optional<std::uint8_t>(0x7f) : parse_days(days);
    if (!start || !end || !day_set || *start == *end) {
        return bad();
    }
    return Window{.days = *day_set, .start_minute = *start, .end_minute = *end, .text = value};
}

bool in_window(const Window& window, const std::tm& local) {
    int minute = local.tm_hour * 60 + local.tm_min;
    int today = (local.tm_wday + 6) % 7;  // tm_wday 0 is Sunday; ours is Monday
    int yesterday = (today + 6) % 7;
    auto starts_on = [&](int day) { return (window.days >> day) & 1; };
    if (window.start_minute < window.end_minute) {
        return starts_on(today) && minute >= window.start_minute && minute < window.end_minute;
    }
    // Across midnight: the evening part today, or the morning part of one
    // that started yesterday.
    return (starts_on(today) && minute >= window.start_minute) ||
           (starts_on(yesterday) && minute < window.end_minute);
}

Result<std::vector<Wave>> parse_rollout(std::string_view text) {
    std::vector<Wave> waves;
    std::istringstream items{std::string(text)};
    std::string item;
    while (items >> item) {
        auto at = item.find('@');
        Wave wave;
        std::string percent = at == std::string::npos ? "" : item.substr(0, at);
        if (percent.ends_with('%')) {
            percent.pop_back();
        }
        std::string hours = at == std::string::npos ? "" : item.substr(at + 1);
        if (hours.ends_with('h')) {
            hours.pop_back();
        }
        if (!parse_number(percent, wave.percent) || !parse_number(hours, wave.delay_hours) ||
            wave.percent <= 0 || wave.percent > 100 ||
            (!waves.empty() && wave.percent <= waves.back().percent)) {
            return fail(ErrorCode::bad_format,
                        "bad rollout \"" + std::string(text) +
                            "\" (expected PERCENT@HOURS waves in increasing percent, like "
                            "5@0 25@24 100@72)");
        }
        waves.push_back(wave);
    }
    if (waves.empty()) {
        return fail(ErrorCode::bad_format, "empty rollout");
    }
    return waves;
}

Result<Policy> parse_policy(const std::string& text, const std::string& file_name) {
    Policy policy;
    policy.source = file_name;
    std::istringstream lines(text);
    std::string line;
    int number = 0;
    while (std::getline(lines, line)) {
        ++number;
        line = trimmed(line);
        if (line.empty() || line[0] == '#' || line[0] == ';') {
            continue;
        }
        std::string where = file_name + ":" + std::to_string(number);
        auto equals = line.find('=');
        if (equals == std::string::npos) {
            return fail(ErrorCode::bad_format, where + ": expected key = value");
        }
        if (auto set = apply_setting(policy, trimmed(line.substr(0, equals)),
                                     trimmed(line.substr(equals + 1)), where);
            !set) {
            return tl::unexpected(set.error());
        }
    }
    return policy;
}

Result<Policy> load_policy(const std::string& config_directory) {
    std::string path = config_directory + "/suture.conf";
    if (::access(path.c_str(), F_OK) != 0 && errno == ENOENT) {
        return Policy{};
    }
    auto text = read_file(path);
    if (!text) {
        return tl::unexpected(text.error());
    }
    return parse_policy(*text, path);
}

double rollout_bucket(std::string_view machine_id) {
    std::string input = "suture-rollout:" + std::string(machine_id);
    std::string digest = sha256_hex(std::as_bytes(std::span(input.data(), input.size())));
    std::uint64_t value = 0;
    for (std::size_t i = 0; i < 16; ++i) {
        char c = digest[i];
        value = value * 16 + static_cast<std::uint64_t>(c <= '9' ? c - '0' : c - 'a' + 10);
    }
    return static_cast<double>(value % 10000) / 100.0;
}

std::string read_machine_id() {
    const char* override_path = std::getenv("SUTURE_MACHINE_ID_FILE");
    auto text = read_file(override_path != nullptr ? override_path : "/etc/machine-id");
    return text ? trimmed(*text) : "";
}

std::time_t policy_now() {
    if (const char* forced = std::getenv("SUTURE_TEST_NOW"); forced != nullptr) {
        std::int64_t seconds = 0;
        if (parse_number(std::string_view(forced), seconds)) {
            return static_cast<std::time_t>(seconds);
        }
    }
    return std::time(nullptr);
}

std::optional<std::size_t> wave_of(const std::vector<Wave>& waves, double bucket) {
    for (std::size_t i = 0; i < waves.size(); ++i) {
        if (bucket < waves[i].percent) {
            return i;
        }
    }
    return std::nullopt;
}

const std::vector<Wave>& rollout_for(const Policy& policy, const std::string& channel) {
    auto found = policy.rollout_by_channel.find(channel);
    return found == policy.rollout_by_channel.end() ? policy.rollout : found->second;
}

std::optional<Hold> held_back(const PatchFacts& patch, const Selection& selection,
                              const Policy& policy, const RunContext& run, bool approved_on_host) {
    if (auto quarantined = run.quarantined.find(patch.patch_id);
        quarantined != run.quarantined.end()) {
        return Hold{"quarantined", quarantined->second + "; suture quarantine release " +
                                       patch.patch_id + " lets it be applied again"};
    }
    if (auto held = selection_holds(patch, selection)) {
        return held;
    }
    if (!run.automatic) {
        return std::nullopt;
    }
    if (policy.auto_apply == Policy::AutoApply::none) {
        return Hold{"auto_apply", "auto_apply = none: automatic runs apply nothing"};
    }
    if (policy.auto_apply == Policy::AutoApply::min_severity &&
        patch.severity < policy.auto_min_severity) {
        return Hold{"auto_apply", "auto_apply = min_severity=" +
                                      std::string(severity_name(policy.auto_min_severity)) +
                                      ": " + severity_label(patch.severity)};
    }
    if (run.crash_locked.contains({patch.patch_id, patch.level})) {
        return Hold{"crash_lock", "the host went down within watch_seconds of its apply at " +
                                      format_utc_time(run.crash_locked_at) +
                                      "; suture crash-lock --release lets it be applied again"};
    }
    if (approved_on_host) {
        return std::nullopt;
    }
    if (auto held = rollout_holds(patch, policy, run)) {
        return Hold{"rollout", *held};
    }
    if (auto held = window_holds(patch, policy, run)) {
        return Hold{"window", *held};
    }
    return std::nullopt;
}

}  // namespace suture
