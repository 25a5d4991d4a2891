#include "engine/CrashLock.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "base/Files.h"
#include "base/UniqueFD.h"

namespace suture {

std::string crash_lock_path(const std::string& state_database) {
    auto slash = state_database.rfind('/');
    std::string directory = slash == std::string::npos ? "." : state_database.substr(0, slash);
    return directory + "/crash-lock.json";
}

std::string current_boot_id() {
    if (const char* forced = std::getenv("SUTURE_TEST_BOOT_ID"); forced != nullptr) {
        return forced;
    }
    auto text = read_file("/proc/sys/kernel/random/boot_id");
    if (!text) {
        return "";
    }
    std::string id = *text;
    while (!id.empty() && (id.back() == '\n' || id.back() == ' ')) {
        id.pop_back();
    }
    return id;
}

Result<std::optional<CrashLock>> read_crash_lock(const std::string& path) {
    if (::access(path.c_str(), F_OK) != 0 && errno == ENOENT) {
        return std::optional<CrashLock>{};
    }
    auto text = read_file(path);
    if (!text) {
        return tl::unexpected(text.error());
    }
    auto document = nlohmann::json::parse(*text, nullptr, false);
    try {
        CrashLock lock{.boot_id = document.at("boot_id").get<std::string>(),
                       .at = document.at("at").get<std::int64_t>()};
        for (const nlohmann::json& patch : document.at("patches")) {
            lock.patches.insert(
                {patch.at("patch_id").get<std::string>(), patch.at("level").get<std::uint32_t>()});
        }
        return std::optional<CrashLock>(std::move(lock));
    } catch (const nlohmann::json::exception&) {
        return fail(ErrorCode::bad_format,
                    path + ": not a crash lock (boot_id, at, patches); remove it with "
                           "suture crash-lock --release");
    }
}

Result<void> write_crash_lock(const std::string& path, const CrashLock& lock) {
    nlohmann::json patches = nlohmann::json::array();
    for (const auto& [patch_id, level] : lock.patches) {
        patches.push_back({{"patch_id", patch_id}, {"level", level}});
    }
    std::string text =
        nlohmann::json{{"boot_id", lock.boot_id}, {"at", lock.at}, {"patches", patches}}.dump(2) +
        "\n";
    if (auto written = write_file_atomically(path, bytes_of(text), 0600); !written) {
        return written;
    }
    // The rename reaches the disk with the directory: without this fsync a
    // host that goes down within the file system's commit interval (ext4:
    // 5 s) of the apply boots without the lock (the VM test's hard reset).
    std::string directory = std::filesystem::path(path).parent_path().string();
    UniqueFD directory_fd(::open(directory.empty() ? "." : directory.c_str(),
                                 O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!directory_fd.is_valid() || ::fsync(directory_fd.get()) != 0) {
        return fail_errno(directory + ": fsync", errno);
    }
    return {};
}

Result<void> remove_crash_lock(const std::string& path) {
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
        return fail_errno(path + ": remove", errno);
    }
    return {};
}

}  // namespace suture
