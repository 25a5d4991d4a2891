#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <string>

#include <catch2/catch.hpp>

#include "TemporaryFile.h"
#include "base/Error.h"
#include "base/Files.h"
#include "base/MappedFile.h"
#include "base/UniqueFD.h"

using namespace suture;

namespace {

bool is_open(int fd) {
    return ::fcntl(fd, F_GETFD) != -1;
}

}  // namespace

TEST_CASE("a UniqueFD closes its descriptor when it goes out of scope") {
    int raw = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    REQUIRE(is_open(raw));
    { UniqueFD fd(raw); }
    CHECK_FALSE(is_open(raw));
}

TEST_CASE("a released UniqueFD leaves the descriptor open for its new owner") {
    UniqueFD fd(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    int raw = fd.release();
    CHECK_FALSE(fd.is_valid());
    CHECK(is_open(raw));
    ::close(raw);
}

TEST_CASE("moving a UniqueFD transfers ownership exactly once") {
    UniqueFD first(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    int raw = first.get();
    UniqueFD second(std::move(first));
    CHECK_FALSE(first.is_valid());
    CHECK(second.get() == raw);
    UniqueFD third;
    third = std::move(second);
    CHECK(third.get() == raw);
    CHECK(is_open(raw));
}

TEST_CASE("a MappedFile shows the file's bytes and an empty file maps as empty") {
    TemporaryFile path_file("hello, suture");
    const std::string& path = path_file.path();
    auto fd = open_read_only(path);
    REQUIRE(fd);
    auto mapping = MappedFile::map(*fd, path);
    REQUIRE(mapping);
    auto bytes = mapping->bytes();
    CHECK(std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size()) ==
          "hello, suture");

    TemporaryFile empty_file("");
    const std::string& empty = empty_file.path();
    auto empty_fd = open_read_only(empty);
    REQUIRE(empty_fd);
    auto empty_mapping = MappedFile::map(*empty_fd, empty);
    REQUIRE(empty_mapping);
    CHECK(empty_mapping->bytes().empty());
}

TEST_CASE("errors from system calls name their subject, then the reason, and keep errno") {
    auto fd = open_read_only("/nonexistent/suture");
    REQUIRE_FALSE(fd);
    CHECK(fd.error().code == ErrorCode::not_found);
    CHECK(fd.error().errno_value == ENOENT);
    CHECK(fd.error().message == "/nonexistent/suture: No such file or directory");

    CHECK(fail_errno("pid 1: maps", EACCES).value().code == ErrorCode::permission_denied);
    CHECK(fail_errno("pid 1: maps", EPERM).value().code == ErrorCode::permission_denied);
    CHECK(fail_errno("pid 1", ESRCH).value().code == ErrorCode::not_found);
    CHECK(fail_errno("x", EIO).value().code == ErrorCode::io);
    CHECK(with_context(Error{ErrorCode::io, "read", 0}, "pid 7").message == "pid 7: read");
}

TEST_CASE("read_file reads a whole file and to_hex spells bytes in lowercase") {
    TemporaryFile path_file(std::string(40000, 'x') + "end");
    const std::string& path = path_file.path();
    auto text = read_file(path);
    REQUIRE(text);
    CHECK(text->size() == 40003);
    CHECK(text->ends_with("end"));

    const unsigned char bytes[] = {0x00, 0x7d, 0x90, 0xff};
    CHECK(to_hex(bytes, sizeof bytes) == "007d90ff");
}

TEST_CASE("read_regular_file reads a small regular file and refuses anything else") {
    TemporaryFile small(std::string(40000, 'x'));
    auto text = read_regular_file(small.path(), 40000);
    REQUIRE(text);
    CHECK(text->size() == 40000);
    // One byte over the cap, an endless device, a directory: errors, at once.
    auto larger = read_regular_file(small.path(), 39999);
    REQUIRE_FALSE(larger);
    CHECK(larger.error().code == ErrorCode::bad_format);
    CHECK(larger.error().message.find("larger than 39999 bytes") != std::string::npos);
    auto zero = read_regular_file("/dev/zero", 1 << 20);
    REQUIRE_FALSE(zero);
    CHECK(zero.error().message == "/dev/zero: not a regular file");
    CHECK_FALSE(read_regular_file("/tmp", 1 << 20));
    // A FIFO without a writer: refused without blocking in open.
    std::string fifo = small.path() + ".fifo";
    REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
    auto from_fifo = read_regular_file(fifo, 1 << 20);
    ::unlink(fifo.c_str());
    REQUIRE_FALSE(from_fifo);
    CHECK(from_fifo.error().message == fifo + ": not a regular file");
    CHECK(read_regular_file("/nonexistent/patch", 10).error().code == ErrorCode::not_found);
}
