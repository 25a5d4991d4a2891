#include <catch2/catch.hpp>

#include "distro/BuildIndex.h"

using namespace suture;

namespace {

constexpr const char* one_build = R"({
  "format": "suture-build-index", "format_version": 1, "distribution": "debian-12",
  "builds": [{"build_id": "7d90f38412d00023e58392b03612a24b62fcaede", "soname": "libcrypto.so.3",
              "library": "/usr/lib/x86_64-linux-gnu/libcrypto.so.3", "package": "libssl3",
              "version": "3.0.20-1~deb12u2", "source": "openssl", "architecture": "amd64",
              "suites": ["bookworm"], "sha256": "ignored"}]
})";

}  // namespace

TEST_CASE("a build is found by its build ID with its package and version") {
    BuildIndex index;
    REQUIRE(index.add_document(one_build, "test"));
    const KnownBuild* build = index.find("7d90f38412d00023e58392b03612a24b62fcaede");
    REQUIRE(build != nullptr);
    CHECK(build->distribution == "debian-12");
    CHECK(build->package == "libssl3");
    CHECK(build->version == "3.0.20-1~deb12u2");
    CHECK(build->suites == std::vector<std::string>{"bookworm"});
    CHECK(index.find("0000") == nullptr);
}

TEST_CASE("malformed or foreign index documents are refused with the file named") {
    BuildIndex index;
    auto not_json = index.add_document("{", "broken.json");
    REQUIRE_FALSE(not_json);
    CHECK(not_json.error().code == ErrorCode::bad_format);
    CHECK(not_json.error().message.starts_with("broken.json: "));

    auto wrong_format = index.add_document(R"({"format": "other", "format_version": 1})", "x");
    REQUIRE_FALSE(wrong_format);
    CHECK(wrong_format.error().message == "x: not a suture build index");

    auto future = index.add_document(
        R"({"format": "suture-build-index", "format_version": 2, "distribution": "d", "builds": []})",
        "future.json");
    REQUIRE_FALSE(future);
    CHECK(future.error().code == ErrorCode::unsupported);

    std::string upper = one_build;
    upper.replace(upper.find("7d90f384"), 8, "7D90F384");
    CHECK_FALSE(index.add_document(upper, "upper"));
    CHECK(index.size() == 0);  // nothing half-added
}

TEST_CASE(
    "the shipped index knows Debian 12's 3.0.20-1~deb12u2 libcrypto by the build ID measured on "
    "the build machines") {
    auto index = BuildIndex::load_directory(SOURCE_DISTRO_SUPPORT_DIR);
    REQUIRE(index);
    // The build IDs DESIGN.md records for the archive's libssl3 3.0.20-1~deb12u2.
    const KnownBuild* libcrypto = index->find("7d90f38412d00023e58392b03612a24b62fcaede");
    REQUIRE(libcrypto != nullptr);
    CHECK(libcrypto->package == "libssl3");
    CHECK(libcrypto->version == "3.0.20-1~deb12u2");
    CHECK(libcrypto->soname == "libcrypto.so.3");
    const KnownBuild* libssl = index->find("aa0eeee44fa27da26d1a3c3b5e3fa7ae2628bc63");
    REQUIRE(libssl != nullptr);
    CHECK(libssl->soname == "libssl.so.3");
    CHECK(index->distributions() ==
          std::vector<std::string>{"debian-11", "debian-12", "debian-13"});
}

TEST_CASE("a directory without any index is an error, not an empty index") {
    auto index = BuildIndex::load_directory("/tmp");
    REQUIRE_FALSE(index);
    CHECK(index.error().code == ErrorCode::not_found);
}
