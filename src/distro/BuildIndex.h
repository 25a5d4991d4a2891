#pragma once

#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "base/Error.h"

namespace suture {

// One library file of one distribution package build, as recorded by
// distro-support/generate-index from the archive's own .deb.
struct KnownBuild {
    std::string build_id;
    std::string distribution;  // descriptor id, e.g. "debian-12"
    std::string package;       // binary package, e.g. "libssl3"
    std::string version;       // package version, e.g. "3.0.20-1~deb12u2"
    std::string source;        // source package, e.g. "openssl"
    std::string architecture;  // e.g. "amd64"
    std::string library;  // path inside the package, e.g. "/usr/lib/x86_64-linux-gnu/libssl.so.3"
    std::string soname;
    std::vector<std::string> suites;  // archive suites that offered it when indexed
};

// Build ID → package lookup over the indexes in distro-support/*/builds.json.
// Format: docs/formats.md, "Build index".
class BuildIndex {
  public:
    // Loads every `<distribution>/builds.json` under `directory`. A directory
    // without any index is an error (the installation is broken); a
    // distribution directory without builds.json is skipped.
    static Result<BuildIndex> load_directory(const std::string& directory);

    // Adds the builds of one index document. `name` is used in messages.
    Result<void> add_document(std::string_view json_text, const std::string& name);

    // The build with this (lowercase hex) build ID, or nullptr.
    const KnownBuild* find(std::string_view build_id) const;

    std::size_t size() const { return builds_.size(); }
    const std::vector<std::string>& distributions() const { return distributions_; }

  private:
    std::unordered_map<std::string, KnownBuild> builds_;
    std::vector<std::string> distributions_;
};

}  // namespace suture
