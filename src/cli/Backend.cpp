#include "cli/Backend.h"

#include <cstdlib>

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
                                     const InjectOptions& options) override {
        return engine_->apply_file(pid, patch_path, options);
    }
    InjectResult<std::vector<InjectReport>> revert(int pid, const std::string& patch_id,
                                                   const InjectOptions& options) override {
        return engine_->revert(pid, patch_id, options);
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
    explicit DaemonBackend(DaemonClient client) : client_(std::move(client)) {}

    Result<UpdateReport> update(const UpdateOptions& options, const UpdateProgress&) override {
        auto document = client_.call("Update", true, "b", static_cast<int>(!options.refresh));
        if (!document) {
            return tl::unexpected(document.error());
        }
        return update_from_json(*document);
    }
    InjectResult<InjectReport> apply(int pid, const std::string& patch_path,
                                     const InjectOptions&) override {
        // The daemon has another working directory.
        std::string path = patch_path;
        if (char* resolved = ::realpath(path.c_str(), nullptr)) {
            path = resolved;
            std::free(resolved);
        }
        auto document = client_.call("Apply", true, "is", pid, path.c_str());
        if (!document) {
            return tl::unexpected(InjectFailure{document.error(), {}});
        }
        return inject_report_from_json(*document);
    }
    InjectResult<std::vector<InjectReport>> revert(int pid, const std::string& patch_id,
                                                   const InjectOptions&) override {
        auto document = client_.call("Revert", true, "is", pid, patch_id.c_str());
        if (!document) {
            return tl::unexpected(InjectFailure{document.error(), {}});
        }
        return reverted_from_json(*document);
    }
    Result<std::vector<HistoryEntry>> history(std::size_t limit) override {
        auto document = client_.call("History", true, "u", static_cast<unsigned>(limit));
        if (!document) {
            return tl::unexpected(document.error());
        }
        return history_from_json(*document);
    }
    Result<void> set_enabled(bool enabled) override {
        auto done = client_.call("SetEnabled", false, "b", static_cast<int>(enabled));
        if (!done) {
            return tl::unexpected(done.error());
        }
        return {};
    }

  private:
    DaemonClient client_;
};

}  // namespace

Result<std::unique_ptr<Backend>> choose_backend(bool direct, const EngineOptions& options) {
    if (!direct) {
        if (auto client = DaemonClient::connect()) {
            return std::make_unique<DaemonBackend>(std::move(*client));
        }
    }
    auto engine = Engine::open(options);
    if (!engine) {
        return tl::unexpected(engine.error());
    }
    return std::make_unique<LocalBackend>(std::move(*engine));
}

}  // namespace suture
