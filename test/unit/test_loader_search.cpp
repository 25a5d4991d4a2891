#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <set>
#include <string>

#include <catch2/catch.hpp>

#include "ScratchDirectory.h"
#include "elf/LoaderSearch.h"

using namespace suture;

namespace {

// The files the real loader maps for `command` (LD_TRACE_LOADED_OBJECTS:
// it resolves every dependency and prints "name => path (address)"), the
// loader itself and the vDSO left out.
std::set<std::string> loader_trace(const std::string& environment, const std::string& program) {
    std::string command = "env " + environment + " LD_TRACE_LOADED_OBJECTS=1 " + program;
    std::FILE* pipe = ::popen(command.c_str(), "r");
    REQUIRE(pipe != nullptr);
    std::set<std::string> paths;
    char line[4096];
    while (std::fgets(line, sizeof line, pipe) != nullptr) {
        std::string text(line);
        auto arrow = text.find("=> ");
        auto address = text.rfind(" (0x");
        if (arrow == std::string::npos || address == std::string::npos || address < arrow) {
            continue;
        }
        std::string path = text.substr(arrow + 3, address - arrow - 3);
        if (path.find("ld-linux") == std::string::npos) {
            paths.insert(std::filesystem::canonical(path).string());
        }
    }
    ::pclose(pipe);
    return paths;
}

std::set<std::string> closure_paths(const DependencyClosure& closure) {
    std::set<std::string> paths;
    for (const ClosureObject& object : closure.objects) {
        if (object.path.find("ld-linux") == std::string::npos) {
            paths.insert(std::filesystem::canonical(object.path).string());
        }
    }
    return paths;
}

DependencyClosure closure_of(const LoaderInputs& inputs) {
    auto root = LoaderRoot::open("/");
    REQUIRE(root);
    LdSoCache cache = LdSoCache::read(*root);
    auto closure = dependency_closure(*root, cache, inputs);
    REQUIRE(closure);
    return std::move(*closure);
}

const ClosureObject* find_soname(const DependencyClosure& closure, const std::string& soname) {
    for (const ClosureObject& object : closure.objects) {
        if (object.soname == soname) {
            return &object;
        }
    }
    return nullptr;
}

}  // namespace

TEST_CASE("the host's ld.so.cache names the C library where ldconfig put it") {
    auto root = LoaderRoot::open("/");
    REQUIRE(root);
    LdSoCache cache = LdSoCache::read(*root);
    CHECK(cache.size() > 10);
    auto libc = cache.find("libc.so.6");
    REQUIRE(libc);
    CHECK(std::filesystem::exists(*libc));
    CHECK_FALSE(cache.find("libdoes-not-exist.so.1"));
}

TEST_CASE("a cache in an unknown format, or truncated, is empty rather than misread") {
    CHECK(LdSoCache::parse("").size() == 0);
    CHECK(LdSoCache::parse("glibc-ld.so.cache1.1").size() == 0);
    std::string truncated = "glibc-ld.so.cache1.1";
    truncated += std::string("\xff\xff\x00\x00", 4) + std::string(24, '\0');
    CHECK(LdSoCache::parse(truncated).size() == 0);
}

TEST_CASE("the closure of programs on this host is exactly what the loader maps") {
    for (const char* program : {"/usr/bin/curl", "/usr/bin/openssl", "/usr/bin/ssh", "/bin/ls"}) {
        if (!std::filesystem::exists(program)) {
            continue;
        }
        INFO(program);
        DependencyClosure closure = closure_of({.executable = program});
        CHECK(closure.unresolved.empty());
        CHECK(closure_paths(closure) == loader_trace("", program));
    }
}

TEST_CASE("curl reaches libssl through libcurl: in the closure, one level down") {
    if (!std::filesystem::exists("/usr/bin/curl")) {
        WARN("curl is not installed: not checked");
        return;
    }
    DependencyClosure closure = closure_of({.executable = "/usr/bin/curl"});
    const ClosureObject* libssl = find_soname(closure, "libssl.so.3");
    REQUIRE(libssl != nullptr);
    CHECK(libssl->depth >= 2);
    const ClosureObject* libcurl = find_soname(closure, "libcurl.so.4");
    REQUIRE(libcurl != nullptr);
    CHECK(libcurl->depth == 1);
}

TEST_CASE("LD_LIBRARY_PATH wins over the cache, unless the program runs in secure mode") {
    if (!std::filesystem::exists("/usr/bin/openssl")) {
        WARN("openssl is not installed: not checked");
        return;
    }
    auto root = LoaderRoot::open("/");
    REQUIRE(root);
    auto system_copy = LdSoCache::read(*root).find("libcrypto.so.3");
    REQUIRE(system_copy);
    ScratchDirectory directory;
    std::filesystem::copy_file(*system_copy, directory.file("libcrypto.so.3"));
    LoaderInputs inputs{.executable = "/usr/bin/openssl",
                        .library_path = "/nonexistent::" + directory.path()};
    DependencyClosure closure = closure_of(inputs);
    const ClosureObject* libcrypto = find_soname(closure, "libcrypto.so.3");
    REQUIRE(libcrypto != nullptr);
    CHECK(libcrypto->path == directory.file("libcrypto.so.3"));
    CHECK(closure_paths(closure) ==
          loader_trace("LD_LIBRARY_PATH=" + inputs.library_path, "/usr/bin/openssl"));
    inputs.secure = true;
    CHECK(find_soname(closure_of(inputs), "libcrypto.so.3")->path !=
          directory.file("libcrypto.so.3"));
}

TEST_CASE("a RUNPATH with $ORIGIN is followed, as the loader does") {
    // runpath-probe: linked against the fake libcrypto.so.99, whose copy
    // under that name sits next to it, found through the RUNPATH $ORIGIN/.
    DependencyClosure closure = closure_of({.executable = RUNPATH_PROBE_PATH});
    const ClosureObject* fake = find_soname(closure, "libcrypto.so.99");
    REQUIRE(fake != nullptr);
    CHECK(fake->path ==
          std::filesystem::path(RUNPATH_PROBE_PATH).parent_path() / "libcrypto.so.99");
    CHECK(fake->depth == 1);
    CHECK(closure_paths(closure) == loader_trace("", RUNPATH_PROBE_PATH));
}

TEST_CASE("LD_PRELOAD's objects are in the closure, before the executable's") {
    DependencyClosure closure =
        closure_of({.executable = "/bin/true", .preload = FAKE_OPENSSL_PATH});
    REQUIRE_FALSE(closure.objects.empty());
    CHECK(closure.objects.front().soname == "libcrypto.so.99");
    CHECK(closure.objects.front().depth == 0);
}

TEST_CASE("a missing dependency is named unresolved, not invented") {
    ScratchDirectory directory;
    std::filesystem::copy_file(RUNPATH_PROBE_PATH, directory.file("probe"));
    DependencyClosure closure = closure_of({.executable = directory.file("probe")});
    CHECK(find_soname(closure, "libcrypto.so.99") == nullptr);
    CHECK(closure.unresolved == std::vector<std::string>{"libcrypto.so.99"});
}
