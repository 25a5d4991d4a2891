#include "cli/Backend.h"

#include <chrono>
#include <cstdlib>
#include <thread>

#include "cli/DaemonClient.h"

namespace suture {

namespace {

// The engine in this process.
class LocalBackend final : public Backend {
  public:
    explicit LocalBackend(std::unique_ptr<Engine> engine) : engine_(std::move(engine)) {}

    Result<UpdateReport> update(const UpdateOptions& options,
                                const UpdateProgress& progress) override {
        return engine_->update(options, progress);
    }
    InjectResult<InjectReport> apply(int pid, const std::string& patch_path,
                                     const InjectOptions& options,
                                     std::vector<std::string>& lost_records) override {
        return engine_->apply_file(pid, patch_path, options, &lost_records);
    }
    InjectResult<std::vector<InjectReport>> revert(int pid, const std::string& patch_id,
                                                   const InjectOptions& options,
                                                   std::vector<std::string>& lost_records) override {
        return engine_->revert(pid, patch_id, options, &lost_records);
    }
    Result<HostRevertReport> revert_everywhere(const RevertScope& scope,
                                               const InjectOptions& options) override {
        return engine_->revert_everywhere(scope, options);
    }
    Result<std::vector<HistoryEntry>> history(std::size_t limit) override {
        return engine_->history(limit);
    }
    Result<void> set_enabled(bool enabled) override { return engine_->set_enabled(enabled); }

  private:
    std::unique_ptr<Engine> engine_;
};

// sutured, over D-Bus: each method's document read back into the types.
class DaemonBackend final : public Backend {
  public:
    DaemonBackend(DaemonClient client, const EngineOptions& options)
        : client_(std::move(client)), options_(options) {}

    Result<UpdateReport> update(const UpdateOptions& options, const UpdateProgress&) override {
        // Update for a plain run (what every sutured answers), UpdateWith
        // when a dry run, an automatic run or a selection needs saying.
        bool plain = !options.dry_run && !options.automatic && options.selection.empty();
        std::string with = update_options_to_json(options).dump();
        return until_unlocked([&]() -> Result<UpdateReport> {
            auto document = plain ? client_.call("Update", true, "b", static_cast<int>(!options.refresh))
                                  : client_.call("UpdateWith", true, "s", with.c_str());
            if (!document) {
                return tl::unexpected(document.error());
            }
            return update_from_json(*document);
        });
    }
    InjectResult<InjectReport> apply(int pid, const std::string& patch_path, const InjectOptions&,
                                     std::vector<std::string>&) override {
        // The daemon has another working directory.
        std::string path = patch_path;
        if (char* resolved = ::realpath(path.c_str(), nullptr)) {
            path = resolved;
            std::free(resolved);
        }
        return until_unlocked([&]() -> InjectResult<InjectReport> {
            auto document = client_.call("Apply", true, "is", pid, path.c_str());
            if (!document) {
                return tl::unexpected(InjectFailure{document.error(), {}});
            }
            return inject_report_from_json(*document);
        });
    }
    InjectResult<std::vector<InjectReport>> revert(int pid, const std::string& patch_id,
                                                   const InjectOptions&,
                                                   std::vector<std::string>& lost_records) override {
        return until_unlocked([&]() -> InjectResult<std::vector<InjectReport>> {
            auto document = client_.call("Revert", true, "is", pid, patch_id.c_str());
            if (!document) {
                return tl::unexpected(InjectFailure{document.error(), {}});
            }
            return reverted_from_json(*document, &lost_records);
        });
    }
    Result<HostRevertReport> revert_everywhere(const RevertScope& scope,
                                               const InjectOptions&) override {
        nlohmann::json request = {{"cves", scope.cves}, {"all", scope.all}};
        std::string text = request.dump();
        return until_unlocked([&]() -> Result<HostRevertReport> {
            auto document = client_.call("RevertEverywhere", true, "s", text.c_str());
            if (!document) {
                return tl::unexpected(document.error());
            }
            return host_revert_from_json(*document);
        });
    }
    Result<std::vector<HistoryEntry>> history(std::size_t limit) override {
        auto document = client_.call("History", true, "u", static_cast<unsigned>(limit));
        if (!document) {
            return tl::unexpected(document.error());
        }
        return history_from_json(*document);
    }
    Result<void> set_enabled(bool enabled) override {
        return until_unlocked([&]() -> Result<void> {
            auto done = client_.call("SetEnabled", false, "b", static_cast<int>(enabled));
            if (!done) {
                return tl::unexpected(done.error());
            }
            return {};
        });
    }

  private:
    static const Error& error_of(const Error& error) { return error; }
    static const Error& error_of(const InjectFailure& failure) { return failure.error; }

    // Calls `call` again while sutured answers `locked`, until the wait is over.
    template <typename Call>
    auto until_unlocked(Call call) -> decltype(call()) {
        auto deadline = std::chrono::steady_clock::now() + options_.lock_wait;
        bool told = false;
        for (;;) {
            auto result = call();
            if (result || error_of(result.error()).code != ErrorCode::locked ||
                std::chrono::steady_clock::now() >= deadline) {
                return result;
            }
            if (!told && options_.lock_waiting) {
                options_.lock_waiting(0);
            }
            told = true;
            std::this_thread::sleep_for(std::chrono::milliseconds(200));
        }
    }

    DaemonClient client_;
    EngineOptions options_;
};

}  // namespace

Result<std::unique_ptr<Backend>> choose_backend(bool direct, const EngineOptions& options) {
    if (!direct) {
        if (auto client = DaemonClient::connect()) {
            return std::make_unique<DaemonBackend>(std::move(*client), options);
        }
    }
    auto engine = Engine::open(options);
    if (!engine) {
        return tl::unexpected(engine.error());
    }
    return std::make_unique<LocalBackend>(std::move(*engine));
}

}  // namespace suture
