// The feed client's reads of its cache and of file:// repositories: capped,
// regular files only, never blocking; the cache directories' checks.

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <fstream>

#include <catch2/catch.hpp>

#include "ScratchDirectory.h"
#include "feed-client/CacheFiles.h"
#include "feed-client/Fetcher.h"

using namespace suture;
using namespace suture::feed;

namespace {

void write_text(const std::string& path, const std::string& text) {
    std::ofstream(path, std::ios::binary) << text;
}

}  // namespace

TEST_CASE("read_capped: within the cap, regular files only, no symlink") {
    ScratchDirectory scratch;
    write_text(scratch.file("small"), "12345");
    CHECK(read_capped(scratch.file("small"), 5) == "12345");
    auto large = read_capped(scratch.file("small"), 4);
    REQUIRE_FALSE(large);
    CHECK(large.error().code == ErrorCode::too_large);
    REQUIRE(::mkfifo(scratch.file("fifo").c_str(), 0600) == 0);
    auto fifo = read_capped(scratch.file("fifo"), 100);  // must not block
    REQUIRE_FALSE(fifo);
    CHECK(fifo.error().code == ErrorCode::io);
    REQUIRE(::symlink("small", scratch.file("link").c_str()) == 0);
    CHECK_FALSE(read_capped(scratch.file("link"), 100));
    REQUIRE(::symlink("/dev/zero", scratch.file("zero").c_str()) == 0);
    CHECK_FALSE(read_capped(scratch.file("zero"), 100));
    CHECK(read_capped(scratch.file("missing"), 100).error().code == ErrorCode::not_found);
}

TEST_CASE("digest_regular_file: hashes and copies within the cap") {
    ScratchDirectory scratch;
    write_text(scratch.file("abc"), "abc");
    UniqueFD copy(::open(scratch.file("copy").c_str(), O_RDWR | O_CREAT, 0600));
    auto digest = digest_regular_file(scratch.file("abc"), 3, copy.get());
    REQUIRE(digest);
    CHECK(digest->length == 3);
    CHECK(digest->sha256 == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    CHECK(read_capped(scratch.file("copy"), 3) == "abc");
    CHECK(digest_regular_file(scratch.file("abc"), 2).error().code == ErrorCode::too_large);
}

TEST_CASE("check_private_directory: the user's own, not a symlink, not writable by others") {
    ScratchDirectory scratch;
    CHECK(check_private_directory(scratch.file("missing")));
    REQUIRE(::mkdir(scratch.file("cache").c_str(), 0700) == 0);
    CHECK(check_private_directory(scratch.file("cache")));
    REQUIRE(::symlink("cache", scratch.file("link").c_str()) == 0);
    CHECK(check_private_directory(scratch.file("link")).error().code ==
          ErrorCode::permission_denied);
    REQUIRE(::chmod(scratch.file("cache").c_str(), 0777) == 0);
    CHECK(check_private_directory(scratch.file("cache")).error().code ==
          ErrorCode::permission_denied);
    REQUIRE(::chmod(scratch.file("cache").c_str(), 0720) == 0);
    CHECK_FALSE(check_private_directory(scratch.file("cache")));
}

TEST_CASE("file:// fetches: regular files only, at once, capped, streamed to a file") {
    ScratchDirectory scratch;
    FetchLimits limits;
    limits.total_timeout_seconds = 2;
    Fetcher fetcher(limits);
    write_text(scratch.file("file+1"), "content");
    auto fetched = fetcher.fetch("file://" + scratch.file("file%2B1"), 100);
    REQUIRE(fetched);
    CHECK(fetched->size() == 7);
    CHECK(fetcher.fetch("file://" + scratch.file("file+1"), 6).error().code ==
          ErrorCode::too_large);
    CHECK(fetcher.fetch("file://" + scratch.file("nothing"), 6).error().code ==
          ErrorCode::not_found);
    REQUIRE(::mkfifo(scratch.file("fifo").c_str(), 0600) == 0);
    auto began = std::chrono::steady_clock::now();
    auto fifo = fetcher.fetch("file://" + scratch.file("fifo"), 100);
    REQUIRE_FALSE(fifo);
    CHECK(fifo.error().code == ErrorCode::io);
    CHECK(std::chrono::steady_clock::now() - began < std::chrono::seconds(2));
    CHECK(fetcher.fetch("file://" + scratch.path(), 100).error().code == ErrorCode::io);
    CHECK(fetcher.fetch("file://" + scratch.file("%2e%2e%00x"), 100).error().code ==
          ErrorCode::invalid_argument);
    UniqueFD out(::open(scratch.file("out").c_str(), O_RDWR | O_CREAT, 0600));
    REQUIRE(fetcher.fetch_to_file("file://" + scratch.file("file+1"), 7, out.get()));
    CHECK(read_capped(scratch.file("out"), 7) == "content");
}
