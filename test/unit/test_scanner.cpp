#include <dlfcn.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include "scan/Scanner.h"

using namespace suture;

TEST_CASE("OpenSSL libraries are recognised by soname") {
    CHECK(is_openssl_soname("libssl.so.3"));
    CHECK(is_openssl_soname("libcrypto.so.3"));
    CHECK(is_openssl_soname("libssl.so.1.1"));
    CHECK(is_openssl_soname("libcrypto.so.1.0.2"));
    CHECK(is_openssl_soname("libcrypto.so.10"));
    CHECK_FALSE(is_openssl_soname("libssl.so"));
    CHECK_FALSE(is_openssl_soname("libssl.so."));
    CHECK_FALSE(is_openssl_soname("libssl3.so"));  // NSS, not OpenSSL
    CHECK_FALSE(is_openssl_soname("libcrypto.so.3x"));
    CHECK_FALSE(is_openssl_soname("libgnutls.so.30"));
    CHECK_FALSE(is_openssl_soname("libssl.so..3"));
}

TEST_CASE(
    "a library loaded into this process is found by soname with its build ID, and a second scan "
    "reads no file") {
    void* handle = ::dlopen(FAKE_OPENSSL_PATH, RTLD_NOW | RTLD_LOCAL);
    REQUIRE(handle != nullptr);

    BuildIndex index;  // empty: the fake build is unknown
    Scanner scanner(index);
    auto report = scanner.scan_process(static_cast<int>(::getpid()));
    REQUIRE(report);
    CHECK(report->errors.empty());
    REQUIRE(report->libraries.size() == 1);
    const MappedLibrary& library = report->libraries[0];
    CHECK(library.soname == "libcrypto.so.99");
    CHECK(library.build_id == FAKE_OPENSSL_BUILD_ID);
    CHECK(library.version_text == std::optional<std::string>("OpenSSL 9.9.9z 1 Jan 2099"));
    CHECK(library.path == FAKE_OPENSSL_PATH);
    CHECK_FALSE(library.deleted);
    CHECK_FALSE(library.replaced);
    CHECK_FALSE(library.package);
    CHECK(library.base_address != 0);
    // The dynamic loader's own idea of where the library starts.
    Dl_info loaded{};
    REQUIRE(::dladdr(::dlsym(handle, "fake_openssl_version"), &loaded) != 0);
    CHECK(library.base_address == reinterpret_cast<std::uintptr_t>(loaded.dli_fbase));

    std::size_t files_read = scanner.statistics().files_identified;
    CHECK(files_read > 0);
    auto again = scanner.scan_process(static_cast<int>(::getpid()));
    REQUIRE(again);
    CHECK(again->libraries.size() == 1);
    CHECK(scanner.statistics().files_identified == files_read);
    CHECK(scanner.statistics().cache_hits > 0);
    ::dlclose(handle);
}

TEST_CASE("a known build ID is named by the index") {
    BuildIndex index;
    std::string document = std::string(R"({"format": "suture-build-index", "format_version": 1,
        "distribution": "test-distro", "builds": [{"build_id": ")") +
                           FAKE_OPENSSL_BUILD_ID + R"(", "soname": "libcrypto.so.99",
        "library": "/x", "package": "libfake", "version": "9.9.9z-1", "source": "fake",
        "architecture": "amd64", "suites": ["s"]}]})";
    REQUIRE(index.add_document(document, "test"));
    void* handle = ::dlopen(FAKE_OPENSSL_PATH, RTLD_NOW | RTLD_LOCAL);
    REQUIRE(handle != nullptr);
    Scanner scanner(index);
    auto report = scanner.scan_process(static_cast<int>(::getpid()));
    REQUIRE(report);
    REQUIRE(report->libraries.size() == 1);
    REQUIRE(report->libraries[0].package);
    CHECK(report->libraries[0].package->package == "libfake");
    CHECK(report->libraries[0].package->version == "9.9.9z-1");
    ::dlclose(handle);
}

TEST_CASE("scanning a process that does not exist is not_found") {
    BuildIndex index;
    Scanner scanner(index);
    auto report = scanner.scan_process(0x3fffffff);
    REQUIRE_FALSE(report);
    CHECK(report.error().code == ErrorCode::not_found);
}
