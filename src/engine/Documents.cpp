#include "engine/Documents.h"

#include <chrono>
#include <cstdlib>

#include <nlohmann/json.hpp>

#include "base/Files.h"
#include "config.h"
#include "engine/Engine.h"
#include "feed-client/UtcTime.h"

namespace suture {

namespace {

using nlohmann::json;

template <typename T>
json optional_to_json(const std::optional<T>& value) {
    return value ? json(*value) : json(nullptr);
}

json package_to_json(const std::optional<KnownBuild>& package) {
    if (!package) {
        return nullptr;
    }
    return {
        {"name", package->package},
        {"version", package->version},
        {"source", package->source},
        {"distribution", package->distribution},
        {"architecture", package->architecture},
        {"suites", package->suites},
    };
}

json installed_to_json(const std::optional<InstalledPackage>& installed) {
    if (!installed) {
        return nullptr;
    }
    return {{"name", installed->package},
            {"version", installed->version},
            {"architecture", installed->architecture},
            {"dpkg_database", installed->database},
            {"in_archive_index", false}};
}

// What an operator does about a process, in one phrase.
std::string action_for(const ProcessExposure& process) {
    switch (process.verdict) {
        case ProcessVerdict::needs_restart:
            return "upgrade the package and restart: no live patch for some open CVE";
        case ProcessVerdict::exposed:
            return "run suture update: a live patch is available";
        case ProcessVerdict::fully_patched:
            return "none";
        case ProcessVerdict::unknown:
            return "unknown: the advisory data does not describe this build";
    }
    return "";
}

// Per process only what differs between processes; what a CVE is (summary,
// fixed-in version, reason) is said once, in summary.exposure.cves.
json process_cves_to_json(const ProcessExposure& process) {
    json cves = json::array();
    for (const CveExposure& cve : process.cves) {
        json entry = {{"id", cve.id},
                      {"severity", cve.severity},
                      {"state", std::string(cve_state_name(cve.state))},
                      {"patch_id", cve.patch_id.empty() ? json(nullptr) : json(cve.patch_id)}};
        if (!cve.patched_by.empty()) {
            entry["patched_by"] = cve.patched_by;  // a cumulative patch superseding patch_id
        }
        cves.push_back(std::move(entry));
    }
    return cves;
}

// Each CVE the advisory data lists for a build some process maps.
json exposure_cves_to_json(const Exposure& exposure) {
    json cves = json::object();
    for (const auto& [build_id, build] : exposure.builds) {
        for (const feed::Advisory& advisory : build.cves) {
            json& entry = cves[advisory.cve];
            if (entry.is_null()) {
                entry = {{"severity", advisory.severity},
                         {"summary", advisory.summary},
                         {"fixed_in", advisory.fixed_in},
                         {"builds", json::object()}};
            }
            entry["builds"][build_id] = {
                {"status", feed::advisory_status_name(advisory.status)},
                {"patch_id", advisory.patch_id.empty() ? json(nullptr) : json(advisory.patch_id)},
                {"reason", advisory.reason}};
        }
    }
    return cves;
}

json exposure_summary_to_json(const Exposure& exposure) {
    const ExposureSummary& summary = exposure.summary;
    json open = json::array();
    for (const auto& [id, cve] : summary.open_cves) {
        open.push_back({{"id", id},
                        {"severity", cve.severity},
                        {"processes", cve.processes},
                        {"live_patch_available", cve.live_patch_available}});
    }
    return {{"advisory_data", exposure.available},
            {"sources", exposure.sources},
            {"problems", exposure.problems},
            {"processes", summary.processes},
            {"fully_patched", summary.fully_patched},
            {"exposed", summary.exposed},
            {"needs_restart", summary.needs_restart},
            {"unknown", summary.unknown},
            {"patched_in_memory", summary.patched_in_memory},
            {"open_cves", std::move(open)},
            {"cves", exposure_cves_to_json(exposure)}};
}

// Reads the fields of one JSON object strictly: a missing field or a wrong
// type is remembered (the first one) and yields a default, so a reader is a
// plain list of reads followed by one check of `problem()`.
class FieldReader {
  public:
    FieldReader(const json& object, std::string where) : object_(object), where_(std::move(where)) {
        if (!object_.is_object()) {
            note(where_ + " is not an object");
        }
    }

    template <typename T>
    T get(const char* key) {
        if (problem_ || !object_.contains(key)) {
            note(where_ + ": no \"" + key + "\"");
            return T{};
        }
        return convert<T>(object_.at(key), key);
    }

    // Absent or null: nullopt.
    template <typename T>
    std::optional<T> optional(const char* key) {
        if (problem_ || !object_.contains(key) || object_.at(key).is_null()) {
            return std::nullopt;
        }
        return convert<T>(object_.at(key), key);
    }

    // A member that must be an array (else an empty one, and a problem).
    const json& array(const char* key) {
        static const json empty = json::array();
        if (problem_ || !object_.contains(key) || !object_.at(key).is_array()) {
            note(where_ + ": \"" + key + "\" is not an array");
            return empty;
        }
        return object_.at(key);
    }

    const json& object(const char* key) {
        static const json empty = json::object();
        if (problem_ || !object_.contains(key) || !object_.at(key).is_object()) {
            note(where_ + ": \"" + key + "\" is not an object");
            return empty;
        }
        return object_.at(key);
    }

    // Takes over a nested reader's problem.
    void adopt(const FieldReader& nested) {
        if (nested.problem_) {
            note(*nested.problem_);
        }
    }
    void note(std::string problem) {
        if (!problem_) {
            problem_ = std::move(problem);
        }
    }
    const std::optional<std::string>& problem() const { return problem_; }
    Error error() const { return Error{ErrorCode::bad_format, "sutured's reply: " + *problem_}; }

  private:
    template <typename T>
    T convert(const json& value, const char* key) {
        try {
            return value.get<T>();
        } catch (const json::exception&) {
            note(where_ + ": \"" + key + "\" has the wrong type");
            return T{};
        }
    }

    const json& object_;
    std::string where_;
    std::optional<std::string> problem_;
};

std::uint64_t parse_hex_address(const std::string& text, FieldReader& fields) {
    char* end = nullptr;
    std::uint64_t address = std::strtoull(text.c_str(), &end, 16);
    if (!text.starts_with("0x") || end == nullptr || *end != '\0') {
        fields.note("\"" + text + "\" is not a hex address");
    }
    return address;
}

BlockingThread blocking_thread_from_json(const json& value, FieldReader& parent) {
    FieldReader fields(value, "blocking thread");
    BlockingThread thread{
        .tid = fields.get<int>("tid"),
        .frames = fields.get<std::vector<std::string>>("frames"),
        .cannot_unwind = fields.optional<std::string>("cannot_unwind").value_or("")};
    parent.adopt(fields);
    return thread;
}

// A patch callback's outcome (Callbacks.h), both ways.
json callbacks_to_json(const std::vector<CallbackOutcome>& outcomes) {
    json list = json::array();
    for (const CallbackOutcome& outcome : outcomes) {
        list.push_back(
            {{"callback", callback_kind_name(outcome.kind)},
             {"outcome", callback_status_name(outcome.status)},
             {"code", outcome.code},
             {"tid", outcome.tid},
             {"duration_us",
              std::chrono::duration_cast<std::chrono::microseconds>(outcome.duration).count()},
             {"over_deadline", outcome.over_deadline},
             {"reason", outcome.reason}});
    }
    return list;
}

// The "callbacks" list of `parent` (an older reply has none; anything
// that is not a list of objects reads as none).
std::vector<CallbackOutcome> callbacks_from_json(const json& parent) {
    std::vector<CallbackOutcome> outcomes;
    if (!parent.is_object() || !parent.contains("callbacks") || !parent["callbacks"].is_array()) {
        return outcomes;
    }
    for (const json& item : parent["callbacks"]) {
        if (!item.is_object()) {
            continue;
        }
        CallbackOutcome outcome;
        std::string kind = item.value("callback", "");
        for (CallbackKind k : {CallbackKind::pre_apply, CallbackKind::post_apply,
                               CallbackKind::pre_revert, CallbackKind::post_revert}) {
            outcome.kind = callback_kind_name(k) == kind ? k : outcome.kind;
        }
        std::string status = item.value("outcome", "");
        for (auto s : {CallbackOutcome::Status::ran, CallbackOutcome::Status::failed,
                       CallbackOutcome::Status::skipped, CallbackOutcome::Status::refused_busy,
                       CallbackOutcome::Status::timeout}) {
            outcome.status = callback_status_name(s) == status ? s : outcome.status;
        }
        outcome.code = item.value("code", 0);
        outcome.tid = item.value("tid", 0);
        outcome.duration = std::chrono::microseconds(item.value("duration_us", std::int64_t{0}));
        outcome.over_deadline = item.value("over_deadline", false);
        outcome.reason = item.value("reason", "");
        outcomes.push_back(std::move(outcome));
    }
    return outcomes;
}

InjectReport one_inject_report_from_json(const json& document, FieldReader& parent) {
    FieldReader fields(document, "report");
    InjectReport report{
        .patch_id = fields.get<std::string>("patch_id"),
        .level = fields.get<std::uint32_t>("level"),
        .replaced_level = fields.optional<std::uint32_t>("replaced_level"),
        .replaced_patch_id = fields.optional<std::string>("replaced_patch_id").value_or(""),
        .already_applied = fields.get<bool>("already_applied"),
        .region_address = parse_hex_address(fields.get<std::string>("region_address"), fields),
        .functions = fields.get<std::size_t>("functions"),
        .attempts = fields.get<int>("attempts"),
        .stopped_for = std::chrono::microseconds(fields.get<std::int64_t>("stopped_us")),
        .threads = fields.get<std::size_t>("threads"),
        .stack_check = {},
        .released_regions = fields.get<std::size_t>("released_regions"),
        .gated_threads = fields.get<std::size_t>("gated_threads"),
        .gate_rounds = fields.get<int>("gate_rounds"),
    };
    report.callbacks = callbacks_from_json(document);
    if (auto consistency = consistency_from_name(fields.get<std::string>("consistency"))) {
        report.consistency = *consistency;
    } else {
        fields.note("report: \"consistency\" is not \"entry\" or \"strict\"");
    }
    FieldReader check(fields.object("stack_check"), "stack_check");
    report.stack_check = {.threads = check.get<std::size_t>("threads"),
                          .proven_by_scan = check.get<std::size_t>("proven_by_scan"),
                          .unwound = check.get<std::size_t>("unwound"),
                          .complete_unwinds = check.get<std::size_t>("complete_unwinds"),
                          .deepest_frames = check.get<std::size_t>("deepest_frames")};
    fields.adopt(check);
    parent.adopt(fields);
    return report;
}

RemoteRefresh remote_refresh_from_json(const json& value, FieldReader& parent) {
    FieldReader fields(value, "feed remote");
    RemoteRefresh refresh{.remote = fields.get<std::string>("remote"), .result = {}};
    if (!fields.get<bool>("ok")) {
        FieldReader error(fields.object("error"), "feed error");
        auto code = error_code_from_name(error.get<std::string>("reason"));
        refresh.result = tl::unexpected(
            Error{code.value_or(ErrorCode::io), error.get<std::string>("message"), 0});
        fields.adopt(error);
    } else {
        FieldReader versions(fields.object("versions"), "versions");
        refresh.result = feed::RefreshReport{
            .remote = refresh.remote,
            .root_version = versions.get<std::uint64_t>("root"),
            .timestamp_version = versions.get<std::uint64_t>("timestamp"),
            .snapshot_version = versions.get<std::uint64_t>("snapshot"),
            .targets_version = versions.get<std::uint64_t>("targets"),
            .targets = fields.get<std::size_t>("targets"),
            .downloaded = fields.get<std::size_t>("downloaded"),
            .reused = fields.get<std::size_t>("reused"),
            .changed = fields.get<bool>("changed"),
        };
        fields.adopt(versions);
    }
    parent.adopt(fields);
    return refresh;
}

UpdateAction update_action_from_json(const json& value, FieldReader& parent) {
    FieldReader fields(value, "action");
    UpdateAction action{
        .process = {.pid = fields.get<int>("pid"),
                    .start_time = fields.get<std::uint64_t>("start_time")},
        .comm = fields.get<std::string>("comm"),
        .patch_id = fields.get<std::string>("patch_id"),
        .level = fields.get<std::uint32_t>("level"),
        .outcome = ActionOutcome::failed,
        .reason = fields.get<std::string>("reason"),
        .message = fields.get<std::string>("message"),
        .severity = fields.optional<std::string>("severity").value_or(""),
        .remote = fields.optional<std::string>("remote").value_or(""),
        .phase = fields.optional<std::string>("phase").value_or(""),
        .stopped_us = fields.optional<std::int64_t>("stopped_us"),
    };
    std::string outcome = fields.get<std::string>("outcome");
    if (auto known = outcome_from_name(outcome)) {
        action.outcome = *known;
    } else {
        fields.note("unknown outcome \"" + outcome + "\"");
    }
    parent.adopt(fields);
    return action;
}

}  // namespace

std::string_view outcome_name(ActionOutcome outcome) {
    switch (outcome) {
        case ActionOutcome::applied:
            return "applied";
        case ActionOutcome::already:
            return "already";
        case ActionOutcome::adopted:
            return "adopted";
        case ActionOutcome::excluded:
            return "excluded";
        case ActionOutcome::failed:
            return "failed";
        case ActionOutcome::held:
            return "held";
        case ActionOutcome::would_apply:
            return "would_apply";
        case ActionOutcome::would_adopt:
            return "would_adopt";
        case ActionOutcome::reverted:
            return "reverted";
    }
    return "failed";
}

std::optional<ActionOutcome> outcome_from_name(std::string_view name) {
    for (ActionOutcome outcome :
         {ActionOutcome::applied, ActionOutcome::already, ActionOutcome::adopted,
          ActionOutcome::excluded, ActionOutcome::failed, ActionOutcome::held,
          ActionOutcome::would_apply, ActionOutcome::would_adopt, ActionOutcome::reverted}) {
        if (outcome_name(outcome) == name) {
            return outcome;
        }
    }
    return std::nullopt;
}

std::optional<std::string> openssl_version_number(const std::string& version_text) {
    constexpr std::string_view prefix = "OpenSSL ";
    if (!version_text.starts_with(prefix)) {
        return std::nullopt;
    }
    std::size_t end = version_text.find(' ', prefix.size());
    std::string number = version_text.substr(prefix.size(), end - prefix.size());
    if (number.empty()) {
        return std::nullopt;
    }
    return number;
}

// ErrorCode's names in JSON, one table used both ways.
constexpr std::pair<ErrorCode, std::string_view> error_code_names[] = {
    {ErrorCode::io, "io"},
    {ErrorCode::not_found, "not_found"},
    {ErrorCode::permission_denied, "permission_denied"},
    {ErrorCode::bad_format, "bad_format"},
    {ErrorCode::unsupported, "unsupported"},
    {ErrorCode::invalid_argument, "invalid_argument"},
    {ErrorCode::library_not_mapped, "library_not_mapped"},
    {ErrorCode::build_id_mismatch, "build_id_mismatch"},
    {ErrorCode::fingerprint_mismatch, "fingerprint_mismatch"},
    {ErrorCode::unsafe, "unsafe"},
    {ErrorCode::busy, "busy"},
    {ErrorCode::target_died, "target_died"},
    {ErrorCode::conflict, "conflict"},
    {ErrorCode::not_applied, "not_applied"},
    {ErrorCode::refused, "refused"},
    {ErrorCode::expired, "expired"},
    {ErrorCode::rollback, "rollback"},
    {ErrorCode::bad_signature, "bad_signature"},
    {ErrorCode::hash_mismatch, "hash_mismatch"},
    {ErrorCode::too_large, "too_large"},
    {ErrorCode::too_slow, "too_slow"},
    {ErrorCode::unreachable, "unreachable"},
    {ErrorCode::locked, "locked"},
    {ErrorCode::corrupt, "corrupt"},
};

std::optional<ErrorCode> error_code_from_name(const std::string& name) {
    for (const auto& [code, code_name] : error_code_names) {
        if (name == code_name) {
            return code;
        }
    }
    return std::nullopt;
}

std::string error_code_name(ErrorCode code) {
    for (const auto& [entry, name] : error_code_names) {
        if (entry == code) {
            return std::string(name);
        }
    }
    return "unknown";
}

std::string format_utc_time(std::int64_t unix_seconds) {
    return feed::format_utc(static_cast<std::time_t>(unix_seconds));
}

// To JSON.

json inject_report_to_json(int pid, const InjectReport& report) {
    return {
        {"callbacks", callbacks_to_json(report.callbacks)},
        {"pid", pid},
        {"patch_id", report.patch_id},
        {"level", report.level},
        {"replaced_level", optional_to_json(report.replaced_level)},
        {"replaced_patch_id",
         report.replaced_patch_id.empty() ? json(nullptr) : json(report.replaced_patch_id)},
        {"already_applied", report.already_applied},
        {"consistency", consistency_name(report.consistency)},
        {"region_address", hex_address(report.region_address)},
        {"functions", report.functions},
        {"attempts", report.attempts},
        {"threads", report.threads},
        {"stopped_us",
         std::chrono::duration_cast<std::chrono::microseconds>(report.stopped_for).count()},
        {"stack_check",
         {{"threads", report.stack_check.threads},
          {"proven_by_scan", report.stack_check.proven_by_scan},
          {"unwound", report.stack_check.unwound},
          {"complete_unwinds", report.stack_check.complete_unwinds},
          {"deepest_frames", report.stack_check.deepest_frames}}},
        {"released_regions", report.released_regions},
        {"gated_threads", report.gated_threads},
        {"gate_rounds", report.gate_rounds},
    };
}

json reverted_to_json(int pid, const std::vector<InjectReport>& reports,
                      const std::vector<std::string>& lost_records) {
    json reverted = json::array();
    for (const InjectReport& report : reports) {
        reverted.push_back(inject_report_to_json(pid, report));
    }
    return {{"reverted", std::move(reverted)}, {"lost_records", lost_records}};
}

json thread_stacks_to_json(int pid, const std::vector<ThreadStack>& stacks) {
    json threads = json::array();
    for (const ThreadStack& stack : stacks) {
        json frames = json::array();
        for (std::uint64_t frame : stack.frames) {
            frames.push_back(hex_address(frame));
        }
        threads.push_back(
            {{"tid", stack.tid},
             {"complete", stack.complete},
             {"incomplete_reason", stack.complete ? json(nullptr) : json(stack.incomplete_reason)},
             {"frames", std::move(frames)}});
    }
    return {{"pid", pid}, {"threads", std::move(threads)}};
}

json failure_to_json(const InjectFailure& failure) {
    json threads = json::array();
    for (const BlockingThread& thread : failure.blocking) {
        threads.push_back(
            {{"tid", thread.tid},
             {"frames", thread.frames},
             {"cannot_unwind",
              thread.cannot_unwind.empty() ? json(nullptr) : json(thread.cannot_unwind)}});
    }
    return {{"ok", false},
            {"error",
             {{"reason", error_code_name(failure.error.code)},
              {"message", failure.error.message},
              {"blocking_threads", std::move(threads)},
              {"callbacks", callbacks_to_json(failure.callbacks)}}}};
}

json error_to_json(const Error& error) {
    return failure_to_json({error, {}});
}

namespace {

// A process's shadow region (docs/patch-format.md, "Shadow region"), or
// null when it has none.
json shadow_region_json(const StatusReport& status, int pid) {
    auto found = status.shadow_regions.find(pid);
    if (found == status.shadow_regions.end()) {
        return nullptr;
    }
    const ShadowRegion& region = found->second;
    return {{"address", hex_address(region.address)},
            {"size", region.size},
            {"slots", region.slot_count},
            {"live", region.live},
            {"allocations", region.allocations},
            {"arena_used", region.arena_used},
            {"arena_size", region.arena_size},
            {"created_at_unix_ns", region.created_at_unix_ns},
            {"creator_pid", region.creator_pid}};
}

}  // namespace

json status_to_json(const StatusReport& status) {
    const ScanReport& report = status.scan;
    json processes = json::array();
    std::size_t with_openssl = 0;
    for (const ProcessReport& process : report.processes) {
        json libraries = json::array();
        for (const MappedLibrary& library : process.libraries) {
            std::optional<std::string> version;
            if (library.version_text) {
                version = openssl_version_number(*library.version_text);
            }
            libraries.push_back({
                {"soname", library.soname},
                {"path", library.path},
                {"build_id", library.build_id},
                {"version", optional_to_json(version)},
                {"version_text", optional_to_json(library.version_text)},
                {"package", package_to_json(library.package)},
                {"installed_package", installed_to_json(library.installed)},
                {"deleted", library.deleted},
                {"replaced", library.replaced},
                {"on_disk_build_id", optional_to_json(library.on_disk_build_id)},
                {"base_address", hex_address(library.base_address)},
            });
        }
        json errors = json::array();
        for (const Error& error : process.errors) {
            errors.push_back({{"reason", error_code_name(error.code)}, {"message", error.message}});
        }
        with_openssl += process.libraries.empty() ? 0 : 1;
        json patches = json::array();
        if (auto found = status.patches.find(process.info.pid); found != status.patches.end()) {
            for (const AppliedPatch& patch : found->second) {
                patches.push_back({
                    {"patch_id", patch.marker.patch_id},
                    {"level", patch.marker.level},
                    {"state", patch_state_name(patch.state)},
                    {"target_build_id", patch.marker.target_build_id},
                    {"functions", patch.marker.functions.size()},
                    {"jumps_in_place", patch.jumps_in_place},
                    {"region_address", hex_address(patch.marker.region_address)},
                    {"data_address", hex_address(patch.marker.data_address)},
                    {"data_size", patch.marker.data_size},
                    {"applied_at_unix_ns", patch.marker.applied_at_unix_ns},
                });
            }
        }
        json gate_pages = json::array();
        if (auto found = status.gate_pages.find(process.info.pid);
            found != status.gate_pages.end()) {
            for (const GatePage& page : found->second) {
                gate_pages.push_back({
                    {"address", hex_address(page.address)},
                    {"gates", page.header.gates},
                    {"arrived", page.arrived},
                    {"released", page.released},
                    {"released_at_unix_ns", page.released_at_unix_ns},
                    {"deadline_passed", page.deadline_passed},
                    {"created_at_unix_ns", page.header.created_at_unix_ns},
                    {"owner_pid", page.header.owner_pid},
                });
            }
        }
        auto exposure = status.exposure.processes.find(process.info.pid);
        bool assessed = exposure != status.exposure.processes.end();
        processes.push_back({
            {"pid", process.info.pid},
            {"comm", process.info.comm},
            {"start_time", process.info.start_time},
            {"other_mount_namespace", process.other_mount_namespace},
            {"root", process.root},
            {"libraries", std::move(libraries)},
            {"errors", std::move(errors)},
            {"patches", std::move(patches)},
            {"gate_pages", std::move(gate_pages)},
            {"shadow_region", shadow_region_json(status, process.info.pid)},
            {"exposure", assessed ? json(std::string(verdict_name(exposure->second.verdict)))
                                  : json(nullptr)},
            {"action", assessed ? json(action_for(exposure->second)) : json(nullptr)},
            {"cves", assessed ? process_cves_to_json(exposure->second) : json::array()},
        });
    }
    json unreadable = json::array();
    for (const UnreadableProcess& process : report.unreadable) {
        unreadable.push_back({
            {"pid", process.pid},
            {"comm", process.comm},
            {"reason", error_code_name(process.error.code)},
            {"message", process.error.message},
        });
    }
    return {
        {"format", "suture-status"},
        {"format_version", 1},
        {"suture_version", SUTURE_VERSION},
        {"summary",
         {
             {"processes_examined", report.processes_examined},
             {"processes_with_openssl", with_openssl},
             {"processes_vanished", report.processes_vanished},
             {"processes_unreadable", report.unreadable.size()},
             {"exposure", exposure_summary_to_json(status.exposure)},
         }},
        {"processes", std::move(processes)},
        {"unreadable", std::move(unreadable)},
    };
}

json refresh_to_json(const std::vector<RemoteRefresh>& refreshes) {
    json remotes = json::array();
    for (const RemoteRefresh& refresh : refreshes) {
        if (refresh.result) {
            const feed::RefreshReport& report = *refresh.result;
            remotes.push_back({{"remote", refresh.remote},
                               {"ok", true},
                               {"changed", report.changed},
                               {"versions",
                                {{"root", report.root_version},
                                 {"timestamp", report.timestamp_version},
                                 {"snapshot", report.snapshot_version},
                                 {"targets", report.targets_version}}},
                               {"targets", report.targets},
                               {"downloaded", report.downloaded},
                               {"reused", report.reused}});
        } else {
            remotes.push_back({{"remote", refresh.remote},
                               {"ok", false},
                               {"error",
                                {{"reason", error_code_name(refresh.result.error().code)},
                                 {"message", refresh.result.error().message}}}});
        }
    }
    return {{"remotes", remotes}};
}

json cached_targets_to_json(const std::vector<feed::CachedTarget>& targets) {
    json entries = json::array();
    json refused = json::array();
    for (const feed::CachedTarget& cached : targets) {
        if (cached.refused) {
            refused.push_back({{"remote", cached.remote},
                               {"name", cached.target.name},
                               {"error",
                                {{"reason", error_code_name(cached.refused->code)},
                                 {"message", cached.refused->message}}}});
            continue;
        }
        entries.push_back({{"remote", cached.remote},
                           {"name", cached.target.name},
                           {"length", cached.target.length},
                           {"sha256", cached.target.sha256},
                           {"path", cached.path},
                           {"usable", cached.usable},
                           {"held_back_because", cached.held_back_because},
                           {"custom", feed::patchset_info_to_json(cached.target.info)}});
    }
    return {{"patchsets", entries}, {"refused", refused}};
}

namespace {

json actions_to_json(const std::vector<UpdateAction>& list) {
    json actions = json::array();
    for (const UpdateAction& action : list) {
        actions.push_back({{"pid", action.process.pid},
                           {"start_time", action.process.start_time},
                           {"comm", action.comm},
                           {"patch_id", action.patch_id},
                           {"level", action.level},
                           {"outcome", outcome_name(action.outcome)},
                           {"reason", action.reason},
                           {"message", action.message},
                           {"severity", action.severity},
                           {"remote", action.remote},
                           {"phase", action.phase},
                           {"stopped_us", optional_to_json(action.stopped_us)}});
    }
    return actions;
}

}  // namespace

json host_revert_to_json(const HostRevertReport& report) {
    return {{"actions", actions_to_json(report.actions)}, {"lost_records", report.lost_records}};
}

json quarantine_to_json(const std::vector<Quarantine>& quarantined) {
    json rows = json::array();
    for (const Quarantine& row : quarantined) {
        rows.push_back({{"patch_id", row.patch_id},
                        {"level", row.level},
                        {"at", row.at},
                        {"at_utc", format_utc_time(row.at)},
                        {"reason", row.reason},
                        {"message", row.message},
                        {"pid", row.process.pid},
                        {"start_time", row.process.start_time},
                        {"comm", row.comm},
                        {"signal", row.signal}});
    }
    return {{"quarantined", rows}};
}

json audit_report_to_json(const AuditReport& report) {
    auto uid = [](const std::optional<std::uint32_t>& value) {
        return value ? json(*value) : json(nullptr);
    };
    json patches = json::array();
    for (const AuditPatch& patch : report.patches) {
        json applications = json::array();
        for (const AuditApplication& audit : patch.applications) {
            const Application& row = audit.application;
            applications.push_back({{"pid", row.process.pid},
                                    {"start_time", row.process.start_time},
                                    {"executable", row.executable},
                                    {"build_id", row.build_id},
                                    {"applied_at", row.applied_at},
                                    {"applied_at_utc", format_utc_time(row.applied_at)},
                                    {"state", name_of(row.state)},
                                    {"unit", row.unit},
                                    {"how", audit.how},
                                    {"caller_uid", uid(audit.caller_uid)},
                                    {"automatic", audit.automatic},
                                    {"source", audit.source},
                                    {"targets_version", audit.targets_version
                                                            ? json(*audit.targets_version)
                                                            : json(nullptr)},
                                    {"signing_keys", audit.signing_keys},
                                    {"ended_at", audit.ended_at},
                                    {"ended_by", audit.ended_by},
                                    {"ended_message", audit.ended_message},
                                    {"ended_by_uid", uid(audit.ended_by_uid)}});
        }
        json feed = nullptr;
        if (patch.feed) {
            feed = {{"remote", patch.feed->remote},
                    {"target", patch.feed->name},
                    {"sha256", patch.feed->sha256},
                    {"cves", patch.feed->cves}};
        }
        patches.push_back(
            {{"patch_id", patch.patch_id},
             {"level", patch.level},
             {"feed", feed},
             {"applications", applications},
             {"events", history_to_json(patch.events)["history"]},
             {"quarantine", patch.quarantine
                                ? quarantine_to_json({*patch.quarantine})["quarantined"][0]
                                : json(nullptr)}});
    }
    return {{"since", report.since},
            {"since_utc", format_utc_time(report.since)},
            {"generated_at", report.generated_at},
            {"generated_at_utc", format_utc_time(report.generated_at)},
            {"patches", patches},
            {"runs", history_to_json(report.runs)["history"]}};
}

json crash_outcomes_to_json(const std::vector<CrashOutcome>& outcomes) {
    json crashes = json::array();
    for (const CrashOutcome& outcome : outcomes) {
        crashes.push_back({{"pid", outcome.process.pid},
                           {"start_time", outcome.process.start_time},
                           {"comm", outcome.comm},
                           {"executable", outcome.executable},
                           {"signal", outcome.signal},
                           {"cause", outcome.cause},
                           {"detail", outcome.detail},
                           {"at", outcome.at},
                           {"quarantined", quarantine_to_json(outcome.quarantined)["quarantined"]},
                           {"reverted", host_revert_to_json(outcome.reverted)},
                           {"revert_ms", outcome.revert_ms}});
    }
    return {{"crashes", crashes}};
}

json update_to_json(const UpdateReport& report) {
    json actions = actions_to_json(report.actions);
    json document = {{"enabled", report.enabled},
                     {"dry_run", report.dry_run},
                     {"automatic", report.automatic},
                     {"policy_time", report.policy_time},
                     {"policy_time_utc", format_utc_time(report.policy_time)},
                     {"window", report.window},
                     {"rollout_bucket", report.rollout_bucket ? json(*report.rollout_bucket)
                                                              : json(nullptr)},
                     {"patchsets", report.patchsets},
                     {"processes_examined", report.processes_examined},
                     {"processes_matching", report.processes_matching},
                     {"closed", report.closed},
                     {"released_regions", report.released_regions},
                     {"removed_empty_regions", report.removed_empty_regions},
                     {"problems", report.problems},
                     {"lost_records", report.lost_records},
                     {"canaries", report.canaries},
                     {"actions", actions}};
    document["crashes"] = crash_outcomes_to_json(report.crashes)["crashes"];
    document["feed"] = refresh_to_json(report.refreshes)["remotes"];
    return document;
}

json state_rebuild_to_json(const StateRebuild& rebuild) {
    json applications = json::array();
    for (const Application& application : rebuild.applications) {
        applications.push_back({{"pid", application.process.pid},
                                {"start_time", application.process.start_time},
                                {"executable", application.executable},
                                {"build_id", application.build_id},
                                {"patch_id", application.patch_id},
                                {"level", application.level}});
    }
    return {{"database", rebuild.database},
            {"kept_as", rebuild.kept_as.empty() ? json(nullptr) : json(rebuild.kept_as)},
            {"settings_kept", rebuild.settings_kept},
            {"exclusions_kept", rebuild.exclusions_kept},
            {"applications", std::move(applications)}};
}

json history_to_json(const std::vector<HistoryEntry>& entries) {
    json rows = json::array();
    for (const HistoryEntry& entry : entries) {
        rows.push_back({{"id", entry.id},
                        {"at", entry.at},
                        {"action", name_of(entry.action)},
                        {"pid", entry.process.pid},
                        {"start_time", entry.process.start_time},
                        {"patch_id", entry.patch_id},
                        {"level", entry.level},
                        {"outcome", name_of(entry.outcome)},
                        {"reason", entry.reason},
                        {"message", entry.message},
                        {"caller_uid", entry.caller_uid ? json(*entry.caller_uid) : json()},
                        {"targets_version",
                         entry.targets_version ? json(*entry.targets_version) : json()},
                        {"signing_keys", entry.signing_keys}});
    }
    return {{"history", rows}};
}

// From JSON.

std::optional<InjectFailure> failure_from_json(const json& document) {
    if (!document.is_object() || !document.contains("error")) {
        return std::nullopt;
    }
    FieldReader fields(document, "document");
    FieldReader error(fields.object("error"), "error");
    std::string reason = error.get<std::string>("reason");
    InjectFailure failure{.error = {error_code_from_name(reason).value_or(ErrorCode::io),
                                    error.get<std::string>("message"), 0},
                          .blocking = {}};
    if (error.optional<json>("blocking_threads")) {
        for (const json& thread : error.array("blocking_threads")) {
            failure.blocking.push_back(blocking_thread_from_json(thread, error));
        }
    }
    failure.callbacks = callbacks_from_json(document["error"]);
    fields.adopt(error);
    if (fields.problem()) {
        return InjectFailure{fields.error(), {}};
    }
    return failure;
}

InjectResult<InjectReport> inject_report_from_json(const json& document) {
    if (auto failure = failure_from_json(document)) {
        return tl::unexpected(*failure);
    }
    FieldReader fields(document, "document");
    InjectReport report = one_inject_report_from_json(document, fields);
    if (fields.problem()) {
        return tl::unexpected(InjectFailure{fields.error(), {}});
    }
    return report;
}

InjectResult<std::vector<InjectReport>> reverted_from_json(const json& document,
                                                          std::vector<std::string>* lost_records) {
    if (auto failure = failure_from_json(document)) {
        return tl::unexpected(*failure);
    }
    FieldReader fields(document, "document");
    if (lost_records != nullptr) {
        *lost_records = fields.optional<std::vector<std::string>>("lost_records")
                            .value_or(std::vector<std::string>{});
    }
    std::vector<InjectReport> reports;
    for (const json& report : fields.array("reverted")) {
        reports.push_back(one_inject_report_from_json(report, fields));
    }
    if (fields.problem()) {
        return tl::unexpected(InjectFailure{fields.error(), {}});
    }
    return reports;
}

Result<UpdateReport> update_from_json(const json& document) {
    if (auto failure = failure_from_json(document)) {
        return tl::unexpected(failure->error);
    }
    FieldReader fields(document, "update document");
    UpdateReport report{
        .enabled = fields.get<bool>("enabled"),
        .refreshes = {},
        .patchsets = fields.get<std::size_t>("patchsets"),
        .processes_examined = fields.get<std::size_t>("processes_examined"),
        .processes_matching = fields.get<std::size_t>("processes_matching"),
        .closed = fields.get<std::size_t>("closed"),
        .released_regions = fields.get<std::size_t>("released_regions"),
        .removed_empty_regions = fields.optional<std::size_t>("removed_empty_regions").value_or(0),
        .problems = fields.get<std::vector<std::string>>("problems"),
        .actions = {},
        .lost_records =
            fields.optional<std::vector<std::string>>("lost_records").value_or(std::vector<std::string>{}),
    };
    report.dry_run = fields.optional<bool>("dry_run").value_or(false);
    report.automatic = fields.optional<bool>("automatic").value_or(false);
    report.window = fields.optional<std::string>("window").value_or("");
    report.rollout_bucket = fields.optional<double>("rollout_bucket");
    report.policy_time = fields.optional<std::int64_t>("policy_time").value_or(0);
    report.canaries = fields.optional<std::size_t>("canaries").value_or(0);
    if (fields.optional<json>("crashes")) {
        for (const json& crash : fields.array("crashes")) {
            auto outcome = crash_outcome_from_json(crash);
            if (!outcome) {
                return tl::unexpected(outcome.error());
            }
            report.crashes.push_back(std::move(*outcome));
        }
    }
    for (const json& remote : fields.array("feed")) {
        report.refreshes.push_back(remote_refresh_from_json(remote, fields));
    }
    for (const json& action : fields.array("actions")) {
        report.actions.push_back(update_action_from_json(action, fields));
    }
    if (fields.problem()) {
        return tl::unexpected(fields.error());
    }
    return report;
}

Result<CrashOutcome> crash_outcome_from_json(const json& document) {
    FieldReader fields(document, "crash");
    CrashOutcome outcome{
        .process = {.pid = fields.get<int>("pid"),
                    .start_time = fields.get<std::uint64_t>("start_time")},
        .comm = fields.get<std::string>("comm"),
        .executable = fields.get<std::string>("executable"),
        .signal = fields.get<int>("signal"),
        .cause = fields.optional<std::string>("cause").value_or("crash"),
        .detail = fields.optional<std::string>("detail").value_or(""),
        .at = fields.get<std::int64_t>("at"),
        .quarantined = {},
        .reverted = {},
        .revert_ms = fields.get<std::int64_t>("revert_ms")};
    if (fields.problem()) {
        return tl::unexpected(fields.error());
    }
    auto quarantined = quarantine_from_json(json{{"quarantined", document.at("quarantined")}});
    auto reverted = host_revert_from_json(document.at("reverted"));
    if (!quarantined || !reverted) {
        return tl::unexpected(!quarantined ? quarantined.error() : reverted.error());
    }
    outcome.quarantined = std::move(*quarantined);
    outcome.reverted = std::move(*reverted);
    return outcome;
}

Result<HostRevertReport> host_revert_from_json(const json& document) {
    if (auto failure = failure_from_json(document)) {
        return tl::unexpected(failure->error);
    }
    FieldReader fields(document, "revert document");
    HostRevertReport report;
    report.lost_records = fields.get<std::vector<std::string>>("lost_records");
    for (const json& action : fields.array("actions")) {
        report.actions.push_back(update_action_from_json(action, fields));
    }
    if (fields.problem()) {
        return tl::unexpected(fields.error());
    }
    return report;
}

json crash_lock_to_json(const CrashLockStatus& status) {
    json patches = json::array();
    for (const auto& [patch_id, level] : status.lock.patches) {
        patches.push_back({{"patch_id", patch_id}, {"level", level}});
    }
    return {{"path", status.path},
            {"boot_id", status.lock.boot_id},
            {"at", format_utc_time(status.lock.at)},
            {"holding", status.holding},
            {"patches", patches}};
}

json update_options_to_json(const UpdateOptions& options) {
    const Selection& selection = options.selection;
    return {{"refresh", options.refresh},
            {"dry_run", options.dry_run},
            {"automatic", options.automatic},
            {"cves", selection.cves},
            {"exclude_cves", selection.exclude_cves},
            {"min_severity", severity_name(selection.min_severity)}};
}

Result<UpdateOptions> update_options_from_json(const json& document) {
    FieldReader fields(document, "update options");
    UpdateOptions options;
    options.refresh = fields.get<bool>("refresh");
    options.dry_run = fields.get<bool>("dry_run");
    options.automatic = fields.get<bool>("automatic");
    auto cves = fields.get<std::vector<std::string>>("cves");
    auto excluded = fields.get<std::vector<std::string>>("exclude_cves");
    options.selection.cves = {cves.begin(), cves.end()};
    options.selection.exclude_cves = {excluded.begin(), excluded.end()};
    std::string severity = fields.get<std::string>("min_severity");
    if (!severity.empty()) {
        auto known = severity_from_name(severity);
        if (!known) {
            fields.note("unknown min_severity \"" + severity + "\"");
        }
        options.selection.min_severity = known.value_or(Severity::unknown);
    }
    if (fields.problem()) {
        return fail(ErrorCode::bad_format, *fields.problem());
    }
    return options;
}

namespace {

// A history row's caller_uid: null (a row older than schema 5) or absent
// (an older sutured) is unknown.
std::optional<std::uint32_t> caller_uid_of(const json& row) {
    auto uid = row.find("caller_uid");
    if (uid == row.end() || !uid->is_number_unsigned()) {
        return std::nullopt;
    }
    return uid->get<std::uint32_t>();
}

// A history row's feed metadata (schema 7): a null or absent version (an
// older row, an older sutured) is unknown, and so are absent keys; keys
// that are not strings are not key ids and are left out.
std::optional<std::uint64_t> targets_version_of(const json& row) {
    auto version = row.find("targets_version");
    if (version == row.end() || !version->is_number_unsigned()) {
        return std::nullopt;
    }
    return version->get<std::uint64_t>();
}

std::vector<std::string> signing_keys_of(const json& row) {
    std::vector<std::string> keys;
    auto listed = row.find("signing_keys");
    if (listed == row.end() || !listed->is_array()) {
        return keys;
    }
    for (const json& key : *listed) {
        if (key.is_string()) {
            keys.push_back(key.get<std::string>());
        }
    }
    return keys;
}

}  // namespace

Result<std::vector<HistoryEntry>> history_from_json(const json& document) {
    if (auto failure = failure_from_json(document)) {
        return tl::unexpected(failure->error);
    }
    FieldReader fields(document, "history document");
    std::vector<HistoryEntry> entries;
    for (const json& row : fields.array("history")) {
        FieldReader entry(row, "history entry");
        entries.push_back({
            .id = entry.get<std::int64_t>("id"),
            .at = entry.get<std::int64_t>("at"),
            .action = history_action_named(entry.get<std::string>("action")),
            .process = {.pid = entry.get<int>("pid"),
                        .start_time = entry.get<std::uint64_t>("start_time")},
            .patch_id = entry.get<std::string>("patch_id"),
            .level = entry.get<std::uint32_t>("level"),
            .outcome = history_outcome_named(entry.get<std::string>("outcome")),
            .reason = entry.get<std::string>("reason"),
            .message = entry.get<std::string>("message"),
            .caller_uid = caller_uid_of(row),
            .targets_version = targets_version_of(row),
            .signing_keys = signing_keys_of(row),
        });
        fields.adopt(entry);
    }
    if (fields.problem()) {
        return tl::unexpected(fields.error());
    }
    return entries;
}

Result<std::vector<Quarantine>> quarantine_from_json(const json& document) {
    if (auto failure = failure_from_json(document)) {
        return tl::unexpected(failure->error);
    }
    FieldReader fields(document, "quarantine document");
    std::vector<Quarantine> rows;
    for (const json& row : fields.array("quarantined")) {
        FieldReader entry(row, "quarantine entry");
        rows.push_back({.patch_id = entry.get<std::string>("patch_id"),
                        .level = entry.get<std::uint32_t>("level"),
                        .at = entry.get<std::int64_t>("at"),
                        .reason = entry.get<std::string>("reason"),
                        .message = entry.get<std::string>("message"),
                        .process = {.pid = entry.get<int>("pid"),
                                    .start_time = entry.get<std::uint64_t>("start_time")},
                        .comm = entry.get<std::string>("comm"),
                        .signal = entry.get<int>("signal")});
        fields.adopt(entry);
    }
    if (fields.problem()) {
        return tl::unexpected(fields.error());
    }
    return rows;
}

}  // namespace suture
