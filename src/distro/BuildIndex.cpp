#include "distro/BuildIndex.h"

#include <algorithm>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "base/Files.h"
#include "base/Log.h"

namespace suture {

namespace {

constexpr int supported_format_version = 1;

bool is_lowercase_hex(std::string_view text) {
    return !text.empty() && std::all_of(text.begin(), text.end(), [](char c) {
        return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
    });
}

}  // namespace

Result<void> BuildIndex::add_document(std::string_view json_text, const std::string& name) {
    // nlohmann::json reports errors by exception; they stop here so that no
    // exception crosses the module boundary.
    std::vector<KnownBuild> parsed;
    std::string distribution;
    try {
        auto document = nlohmann::json::parse(json_text);
        if (document.at("format").get<std::string>() != "suture-build-index") {
            return fail(ErrorCode::bad_format, name + ": not a suture build index");
        }
        if (document.at("format_version").get<int>() != supported_format_version) {
            return fail(ErrorCode::unsupported, name + ": build index format_version " +
                                                    document.at("format_version").dump() +
                                                    " is not supported");
        }
        distribution = document.at("distribution").get<std::string>();
        for (const auto& entry : document.at("builds")) {
            KnownBuild build;
            build.build_id = entry.at("build_id").get<std::string>();
            build.distribution = distribution;
            build.package = entry.at("package").get<std::string>();
            build.version = entry.at("version").get<std::string>();
            build.source = entry.at("source").get<std::string>();
            build.architecture = entry.at("architecture").get<std::string>();
            build.library = entry.at("library").get<std::string>();
            build.soname = entry.at("soname").get<std::string>();
            build.suites = entry.at("suites").get<std::vector<std::string>>();
            if (!is_lowercase_hex(build.build_id)) {
                return fail(ErrorCode::bad_format,
                            name + ": build_id '" + build.build_id + "' is not lowercase hex");
            }
            parsed.push_back(std::move(build));
        }
    } catch (const nlohmann::json::exception& error) {
        return fail(ErrorCode::bad_format, name + ": " + error.what());
    }
    for (auto& build : parsed) {
        auto [existing, inserted] = builds_.try_emplace(build.build_id, build);
        if (!inserted && (existing->second.package != build.package ||
                          existing->second.version != build.version)) {
            log::warning(name + ": build " + build.build_id + " is also " +
                         existing->second.distribution + " " + existing->second.package + " " +
                         existing->second.version + "; keeping the first");
        }
    }
    distributions_.push_back(std::move(distribution));
    return {};
}

Result<BuildIndex> BuildIndex::load_directory(const std::string& directory) {
    namespace fs = std::filesystem;
    std::error_code error;
    std::vector<fs::path> index_files;
    for (const auto& entry : fs::directory_iterator(directory, error)) {
        fs::path candidate = entry.path() / "builds.json";
        if (entry.is_directory() && fs::exists(candidate)) {
            index_files.push_back(candidate);
        }
    }
    if (error) {
        return fail_errno(directory, error.value());
    }
    if (index_files.empty()) {
        return fail(ErrorCode::not_found, directory + ": no */builds.json build index");
    }
    std::sort(index_files.begin(), index_files.end());  // deterministic precedence
    BuildIndex index;
    for (const auto& path : index_files) {
        auto text = read_file(path.string());
        if (!text) {
            return tl::unexpected(text.error());
        }
        if (auto added = index.add_document(*text, path.string()); !added) {
            return tl::unexpected(added.error());
        }
    }
    return index;
}

const KnownBuild* BuildIndex::find(std::string_view build_id) const {
    auto found = builds_.find(std::string(build_id));
    return found == builds_.end() ? nullptr : &found->second;
}

}  // namespace suture
