#include <unistd.h>

#include <string>

#include <catch2/catch.hpp>

#include "TemporaryFile.h"
#include "base/Files.h"
#include "elf/ElfFile.h"

using namespace suture;

namespace {

ElfFile open_elf(const std::string& path) {
    auto fd = open_read_only(path);
    REQUIRE(fd);
    auto elf = ElfFile::open(*fd, path);
    REQUIRE(elf);
    return std::move(*elf);
}

}  // namespace

TEST_CASE("a shared library's build ID, soname and OpenSSL version string are read exactly") {
    ElfFile elf = open_elf(FAKE_OPENSSL_PATH);
    CHECK(elf.is_shared_object());
    auto build_id = elf.build_id();
    REQUIRE(build_id);
    CHECK(*build_id == FAKE_OPENSSL_BUILD_ID);
    auto soname = elf.soname();
    REQUIRE(soname);
    CHECK(*soname == std::optional<std::string>("libcrypto.so.99"));
    CHECK(elf.openssl_version_text() == std::optional<std::string>("OpenSSL 9.9.9z 1 Jan 2099"));
}

TEST_CASE("an executable has no soname and no OpenSSL version string") {
    // coreutils' true: an executable that has nothing to do with OpenSSL.
    ElfFile elf = open_elf("/usr/bin/true");
    auto soname = elf.soname();
    REQUIRE(soname);
    CHECK_FALSE(soname->has_value());
    CHECK_FALSE(elf.openssl_version_text());
}

TEST_CASE("a file that is not ELF is refused as bad_format") {
    TemporaryFile path_file("#!/bin/sh\necho not elf\n");
    const std::string& path = path_file.path();
    auto fd = open_read_only(path);
    REQUIRE(fd);
    auto elf = ElfFile::open(*fd, path);
    REQUIRE_FALSE(elf);
    CHECK(elf.error().code == ErrorCode::bad_format);
    CHECK(elf.error().message == path + ": not an ELF file");
}

TEST_CASE("every truncation of a real library is handled without crashing") {
    auto whole = read_file(FAKE_OPENSSL_PATH);
    REQUIRE(whole);
    // Cut the library at many lengths: each cut must give a value or an
    // error, never a crash or a read past the end (run under ASan to see).
    for (std::size_t length = 0; length < whole->size(); length += 97) {
        TemporaryFile path_file(whole->substr(0, length));
        const std::string& path = path_file.path();
        auto fd = open_read_only(path);
        REQUIRE(fd);
        if (auto elf = ElfFile::open(*fd, path)) {
            (void)elf->build_id();
            (void)elf->soname();
            (void)elf->openssl_version_text();
        }
    }
    SUCCEED("no crash over " << whole->size() / 97 << " truncations");
}
