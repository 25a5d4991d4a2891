#pragma once

#include <unistd.h>

#include <string>

#include <catch2/catch.hpp>

// A file in /tmp holding `contents`, removed when the object goes out of scope.
class TemporaryFile {
  public:
    explicit TemporaryFile(const std::string& contents) {
        char path[] = "/tmp/suture-test-XXXXXX";
        int fd = ::mkstemp(path);
        REQUIRE(fd >= 0);
        REQUIRE(::write(fd, contents.data(), contents.size()) ==
                static_cast<ssize_t>(contents.size()));
        ::close(fd);
        path_ = path;
    }
    TemporaryFile(const TemporaryFile&) = delete;
    TemporaryFile& operator=(const TemporaryFile&) = delete;
    ~TemporaryFile() { ::unlink(path_.c_str()); }

    const std::string& path() const { return path_; }

  private:
    std::string path_;
};
