#include "engine/Engine.h"

#include <chrono>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "config.h"

#include "base/Files.h"

namespace suture {

namespace {

std::string default_distro_support_dir() {
    if (std::filesystem::is_directory(SUTURE_INSTALLED_DISTRO_SUPPORT_DIR)) {
        return SUTURE_INSTALLED_DISTRO_SUPPORT_DIR;
    }
    return SUTURE_SOURCE_DISTRO_SUPPORT_DIR;
}

nlohmann::json package_to_json(const std::optional<KnownBuild>& package) {
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

template <typename T>
nlohmann::json optional_to_json(const std::optional<T>& value) {
    return value ? nlohmann::json(*value) : nlohmann::json(nullptr);
}

}  // namespace

Result<Engine> Engine::open(const EngineOptions& options) {
    std::string directory = options.distro_support_dir.empty() ? default_distro_support_dir()
                                                               : options.distro_support_dir;
    auto index = BuildIndex::load_directory(directory);
    if (!index) {
        return tl::unexpected(with_context(index.error(), "build index"));
    }
    return Engine(std::make_unique<BuildIndex>(std::move(*index)));
}

StatusReport Engine::status(const std::vector<int>& pids) {
    StatusReport status;
    ScanReport& scan = status.scan;
    if (pids.empty()) {
        scan = scanner_->scan_all();
    } else {
        for (int pid : pids) {
            auto report = scanner_->scan_process(pid);
            if (!report) {
                scan.unreadable.push_back(UnreadableProcess{pid, "", report.error()});
                continue;
            }
            ++scan.processes_examined;
            scan.processes.push_back(std::move(*report));
        }
    }
    for (const ProcessReport& process : scan.processes) {
        if (process.anonymous_code_mappings == 0) {
            continue;  // no place a suture region could be
        }
        auto patches = list_applied_patches(process.info.pid);
        if (patches && !patches->empty()) {
            status.patches[process.info.pid] = std::move(*patches);
        }
    }
    return status;
}

Result<InjectReport> Engine::apply(int pid, const PatchFile& patch, const InjectOptions& options,
                                   std::vector<BlockingThread>* blocking) {
    return apply_patch(pid, patch, options, blocking);
}

Result<std::vector<InjectReport>> Engine::revert(int pid, const std::string& patch_id,
                                                 const InjectOptions& options,
                                                 std::vector<BlockingThread>* blocking) {
    return revert_patches(pid, patch_id, options, blocking);
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

std::optional<ErrorCode> error_code_from_name(const std::string& name) {
    for (int value = 0; value <= static_cast<int>(ErrorCode::unreachable); ++value) {
        auto code = static_cast<ErrorCode>(value);
        if (error_code_name(code) == name) {
            return code;
        }
    }
    return std::nullopt;
}

std::string error_code_name(ErrorCode code) {
    switch (code) {
        case ErrorCode::io:
            return "io";
        case ErrorCode::not_found:
            return "not_found";
        case ErrorCode::permission_denied:
            return "permission_denied";
        case ErrorCode::bad_format:
            return "bad_format";
        case ErrorCode::unsupported:
            return "unsupported";
        case ErrorCode::invalid_argument:
            return "invalid_argument";
        case ErrorCode::library_not_mapped:
            return "library_not_mapped";
        case ErrorCode::build_id_mismatch:
            return "build_id_mismatch";
        case ErrorCode::fingerprint_mismatch:
            return "fingerprint_mismatch";
        case ErrorCode::unsafe:
            return "unsafe";
        case ErrorCode::target_died:
            return "target_died";
        case ErrorCode::conflict:
            return "conflict";
        case ErrorCode::not_applied:
            return "not_applied";
        case ErrorCode::expired:
            return "expired";
        case ErrorCode::rollback:
            return "rollback";
        case ErrorCode::bad_signature:
            return "bad_signature";
        case ErrorCode::hash_mismatch:
            return "hash_mismatch";
        case ErrorCode::too_large:
            return "too_large";
        case ErrorCode::too_slow:
            return "too_slow";
        case ErrorCode::unreachable:
            return "unreachable";
    }
    return "unknown";
}

nlohmann::json inject_report_to_json(int pid, const InjectReport& report) {
    return {
        {"pid", pid},
        {"patch_id", report.patch_id},
        {"level", report.level},
        {"replaced_level", optional_to_json(report.replaced_level)},
        {"already_applied", report.already_applied},
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
    };
}

nlohmann::json thread_stacks_to_json(int pid, const std::vector<ThreadStack>& stacks) {
    nlohmann::json threads = nlohmann::json::array();
    for (const ThreadStack& stack : stacks) {
        nlohmann::json frames = nlohmann::json::array();
        for (std::uint64_t frame : stack.frames) {
            frames.push_back(hex_address(frame));
        }
        threads.push_back({{"tid", stack.tid},
                           {"complete", stack.complete},
                           {"incomplete_reason", stack.complete
                                                     ? nlohmann::json(nullptr)
                                                     : nlohmann::json(stack.incomplete_reason)},
                           {"frames", std::move(frames)}});
    }
    return {{"pid", pid}, {"threads", std::move(threads)}};
}

nlohmann::json error_to_json(const Error& error, const std::vector<BlockingThread>& blocking) {
    nlohmann::json threads = nlohmann::json::array();
    for (const BlockingThread& thread : blocking) {
        threads.push_back({{"tid", thread.tid},
                           {"frames", thread.frames},
                           {"cannot_unwind", thread.cannot_unwind.empty()
                                                 ? nlohmann::json(nullptr)
                                                 : nlohmann::json(thread.cannot_unwind)}});
    }
    return {{"error",
             {{"reason", error_code_name(error.code)},
              {"message", error.message},
              {"blocking_threads", std::move(threads)}}}};
}

nlohmann::json status_to_json(const StatusReport& status) {
    const ScanReport& report = status.scan;
    nlohmann::json processes = nlohmann::json::array();
    std::size_t with_openssl = 0;
    for (const ProcessReport& process : report.processes) {
        nlohmann::json libraries = nlohmann::json::array();
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
                {"deleted", library.deleted},
                {"replaced", library.replaced},
                {"on_disk_build_id", optional_to_json(library.on_disk_build_id)},
                {"base_address", hex_address(library.base_address)},
            });
        }
        nlohmann::json errors = nlohmann::json::array();
        for (const Error& error : process.errors) {
            errors.push_back({{"reason", error_code_name(error.code)}, {"message", error.message}});
        }
        with_openssl += process.libraries.empty() ? 0 : 1;
        nlohmann::json patches = nlohmann::json::array();
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
                    {"applied_at_unix_ns", patch.marker.applied_at_unix_ns},
                });
            }
        }
        processes.push_back({
            {"pid", process.info.pid},
            {"comm", process.info.comm},
            {"start_time", process.info.start_time},
            {"other_mount_namespace", process.other_mount_namespace},
            {"root", process.root},
            {"libraries", std::move(libraries)},
            {"errors", std::move(errors)},
            {"patches", std::move(patches)},
        });
    }
    nlohmann::json unreadable = nlohmann::json::array();
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
         }},
        {"processes", std::move(processes)},
        {"unreadable", std::move(unreadable)},
    };
}

}  // namespace suture
