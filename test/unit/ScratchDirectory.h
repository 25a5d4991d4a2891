#pragma once

#include <cstdlib>
#include <filesystem>
#include <string>
#include <system_error>

#include <catch2/catch.hpp>

// A new directory in /tmp, removed with everything in it when the object
// goes out of scope (also when an assertion fails).
class ScratchDirectory {
  public:
    ScratchDirectory() {
        char directory[] = "/tmp/suture-test-XXXXXX";
        REQUIRE(::mkdtemp(directory) != nullptr);
        path_ = directory;
    }
    ScratchDirectory(const ScratchDirectory&) = delete;
    ScratchDirectory& operator=(const ScratchDirectory&) = delete;
    ~ScratchDirectory() {
        std::error_code ignored;
        std::filesystem::remove_all(path_, ignored);
    }

    const std::string& path() const { return path_; }
    std::string file(const std::string& name) const { return path_ + "/" + name; }

  private:
    std::string path_;
};
