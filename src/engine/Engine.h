#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "base/Error.h"
#include "distro/BuildIndex.h"
#include "inject/Injector.h"
#include "patch/PatchFile.h"
#include "scan/Scanner.h"

namespace suture {

struct EngineOptions {
    // Directory holding <distribution>/builds.json; empty means the installed
    // copy, or the source tree's when running from a build directory.
    std::string distro_support_dir;
};

// What `status` reports: the scan, plus the suture patches found in each
// reported process through their region markers (no ptrace).
struct StatusReport {
    ScanReport scan;
    std::map<int, std::vector<AppliedPatch>> patches;  // by pid; absent: none
};

// The one API the CLI (and later the daemon) calls. It owns the build index
// and the scanner with its cache, so a long-lived caller scans warm.
class Engine {
  public:
    static Result<Engine> open(const EngineOptions& options);

    // Scans every process, or only `pids` when not empty (a PID that does not
    // exist is reported as unreadable with reason not_found).
    StatusReport status(const std::vector<int>& pids = {});

    // Applies a patch file to one process (see apply_patch in
    // inject/Injector.h). `blocking` receives the threads that blocked the
    // last try when the result is `unsafe`.
    Result<InjectReport> apply(int pid, const PatchFile& patch, const InjectOptions& options,
                               std::vector<BlockingThread>* blocking = nullptr);

    // Reverts `patch_id` (every suture patch if empty) in one process.
    Result<std::vector<InjectReport>> revert(int pid, const std::string& patch_id,
                                             const InjectOptions& options,
                                             std::vector<BlockingThread>* blocking = nullptr);

    // Unwinds every thread of one process, stopped for the duration, as the
    // stack check would (`suture stacks`); changes nothing.
    Result<std::vector<ThreadStack>> stacks(int pid) { return unwind_threads(pid); }

    const BuildIndex& build_index() const { return *index_; }

  private:
    explicit Engine(std::unique_ptr<BuildIndex> index)
        : index_(std::move(index)), scanner_(std::make_unique<Scanner>(*index_)) {}

    std::unique_ptr<BuildIndex> index_;  // heap: the scanner keeps a reference
    std::unique_ptr<Scanner> scanner_;
};

// "3.0.20" out of "OpenSSL 3.0.20 16 Jan 2026" (or "1.1.1w" out of
// "OpenSSL 1.1.1w  11 Sep 2023"); nullopt when the text has no version.
std::optional<std::string> openssl_version_number(const std::string& version_text);

// The `suture status --json` document (docs/formats.md, "Status document").
nlohmann::json status_to_json(const StatusReport& report);

// One apply/revert result, and an error with its blocking threads, as JSON
// (docs/formats.md, "Apply and revert documents").
nlohmann::json inject_report_to_json(int pid, const InjectReport& report);
// The `suture stacks --json` document (docs/formats.md, "Stacks document").
nlohmann::json thread_stacks_to_json(int pid, const std::vector<ThreadStack>& stacks);
nlohmann::json error_to_json(const Error& error, const std::vector<BlockingThread>& blocking);

// Name of an ErrorCode as it appears in JSON ("permission_denied").
std::string error_code_name(ErrorCode code);
// The inverse, for documents that come back over D-Bus; nullopt if unknown.
std::optional<ErrorCode> error_code_from_name(const std::string& name);

}  // namespace suture
