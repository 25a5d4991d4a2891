// The loader's dependency closure (elf/DependencyClosure.h), checked on real
// programs of this host and on small programs built here, against what
// glibc's own loader says (LD_TRACE_LOADED_OBJECTS, which ldd uses).

#include <elf.h>
#include <signal.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <span>
#include <sstream>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "ScratchDirectory.h"
#include "base/Files.h"
#include "base/MappedFile.h"
#include "elf/ClosureCache.h"
#include "elf/DependencyClosure.h"
#include "elf/LdSoCache.h"

using namespace suture;
namespace fs = std::filesystem;

namespace {

std::string run(const std::string& command) {
    std::string output;
    FILE* pipe = ::popen(command.c_str(), "r");
    REQUIRE(pipe != nullptr);
    char buffer[4096];
    for (std::size_t n; (n = std::fread(buffer, 1, sizeof buffer, pipe)) > 0;) {
        output.append(buffer, n);
    }
    ::pclose(pipe);
    return output;
}

void write(const std::string& path, const std::string& text) {
    std::ofstream(path) << text;
}

// name -> path ("" for "not found") of every library glibc's loader maps for
// `program` under `environment` ("NAME=value ..."), the vDSO and the
// interpreter left out.
std::map<std::string, std::string> loader_trace(const std::string& program,
                                                const std::string& environment = "") {
    std::map<std::string, std::string> libraries;
    std::string output =
        run("env -i LD_TRACE_LOADED_OBJECTS=1 " + environment + " " + program + " 2>&1");
    std::istringstream lines(output);
    for (std::string line; std::getline(lines, line);) {
        std::size_t arrow = line.find(" => ");
        if (arrow == std::string::npos) {
            continue;
        }
        std::string name = line.substr(line.find_first_not_of("\t "), arrow - 1);
        std::string rest = line.substr(arrow + 4);
        libraries[name] = rest.starts_with("not found") ? "" : rest.substr(0, rest.find(" ("));
    }
    return libraries;
}

// The same out of our closure: name -> path of each library (the
// executable and the interpreter left out), missing ones as "".
std::map<std::string, std::string> libraries_of(const DependencyClosure& closure) {
    std::map<std::string, std::string> libraries;
    for (std::size_t i = 2; i < closure.objects.size(); ++i) {
        libraries[closure.objects[i].name] = closure.objects[i].path;
    }
    for (const std::string& name : closure.missing) {
        libraries[name] = "";
    }
    return libraries;
}

DependencyClosure closure_of(const std::string& program, LoaderEnvironment environment = {},
                             const std::string& root = "/") {
    auto inputs = loader_inputs_of_program(root, program, std::move(environment));
    REQUIRE(inputs);
    auto closure = compute_dependency_closure(*inputs);
    REQUIRE(closure);
    return std::move(*closure);
}

OpensslRoute route_of(const std::string& program, LoaderEnvironment environment = {}) {
    return openssl_route(closure_of(program, std::move(environment)));
}

// Small programs and libraries built with cc in a scratch directory:
//   lib/libinner.so   needs libcrypto.so.3
//   lib/libouter.so   needs libinner.so, no search path of its own
//   rpath-program     needs libouter.so, DT_RPATH $ORIGIN/lib
//   runpath-program   needs libouter.so, DT_RUNPATH $ORIGIN/lib
//   plain-program     needs libouter.so, no search path
class Fixture {
  public:
    Fixture() {
        fs::create_directories(directory_.file("lib"));
        write(directory_.file("inner.c"), "int inner(void) { return 1; }\n");
        write(directory_.file("outer.c"),
              "int inner(void);\nint outer(void) { return inner(); }\n");
        write(directory_.file("main.c"),
              "int outer(void);\nint main(void) { return outer() - 1; }\n");
        compile(
            "-shared -fPIC -Wl,-soname,libinner.so -o lib/libinner.so inner.c "
            "-Wl,--no-as-needed -lcrypto");
        compile("-shared -fPIC -Wl,-soname,libouter.so -o lib/libouter.so outer.c -Llib -linner");
        // -rpath-link: the link editor looks for libinner.so itself.
        compile(
            "-o rpath-program main.c -Llib -louter -Wl,-rpath-link,lib "
            "-Wl,--disable-new-dtags -Wl,-rpath,'$ORIGIN/lib'");
        compile(
            "-o runpath-program main.c -Llib -louter -Wl,-rpath-link,lib "
            "-Wl,--enable-new-dtags -Wl,-rpath,'$ORIGIN/lib'");
        compile("-o plain-program main.c -Llib -louter -Wl,-rpath-link,lib");
    }

    std::string file(const std::string& name) const { return directory_.file(name); }

  private:
    void compile(const std::string& arguments) {
        std::string command = "cd " + directory_.path() + " && cc " + arguments + " 2>&1";
        INFO(command);
        REQUIRE(run(command + "; echo status $?").ends_with("status 0\n"));
    }

    ScratchDirectory directory_;
};

// A child stopped by PTRACE_TRACEME right after its execve, before its
// loader ran: where sutured finds a new process. Killed on destruction.
class StoppedAtExec {
  public:
    StoppedAtExec(const std::string& program, std::vector<std::string> environment,
                  const std::string& chroot_to = "") {
        pid_ = ::fork();
        REQUIRE(pid_ >= 0);
        if (pid_ == 0) {
            if (!chroot_to.empty() && (::chroot(chroot_to.c_str()) != 0 || ::chdir("/") != 0)) {
                ::_exit(126);
            }
            std::vector<char*> envp;
            for (std::string& entry : environment) {
                envp.push_back(entry.data());
            }
            envp.push_back(nullptr);
            char* argv[] = {const_cast<char*>(program.c_str()), nullptr};
            ::ptrace(PTRACE_TRACEME, 0, nullptr, nullptr);
            ::execve(program.c_str(), argv, envp.data());
            ::_exit(127);
        }
        int status = 0;
        REQUIRE(::waitpid(pid_, &status, 0) == pid_);
        REQUIRE(WIFSTOPPED(status));
    }
    ~StoppedAtExec() {
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, nullptr, 0);
    }
    StoppedAtExec(const StoppedAtExec&) = delete;
    StoppedAtExec& operator=(const StoppedAtExec&) = delete;

    int pid() const { return pid_; }

  private:
    pid_t pid_ = -1;
};

}  // namespace

TEST_CASE("the host's ld.so.cache parses to what ldconfig -p lists for x86-64") {
    auto fd = open_read_only("/etc/ld.so.cache");
    REQUIRE(fd);
    auto mapping = MappedFile::map(*fd, "/etc/ld.so.cache");
    REQUIRE(mapping);
    auto cache = LdSoCache::parse(mapping->bytes(), "/etc/ld.so.cache");
    REQUIRE(cache);
    CHECK(cache->find("libc.so.6") ==
          std::optional<std::string>("/lib/x86_64-linux-gnu/libc.so.6"));
    CHECK_FALSE(cache->find("libnothing-such.so.1"));
    // "\tlibz.so.1 (libc6,x86-64) => /lib/x86_64-linux-gnu/libz.so.1"; the
    // first line of each soname is the one the loader takes.
    std::istringstream lines(run("ldconfig -p"));
    std::set<std::string> seen;
    std::size_t compared = 0;
    for (std::string line; std::getline(lines, line);) {
        std::size_t flags = line.find(" (libc6,x86-64) => ");
        if (line.empty() || line[0] != '\t' || flags == std::string::npos) {
            continue;
        }
        std::string soname = line.substr(1, flags - 1);
        if (seen.insert(soname).second) {
            INFO(soname);
            CHECK(cache->find(soname) == std::optional(line.substr(flags + 19)));
            ++compared;
        }
    }
    CHECK(compared > 50);
    CHECK(cache->size() == compared);
}

TEST_CASE("what is not an ld.so.cache, or is cut short, is refused") {
    std::string text = "not a cache at all, just words";
    CHECK(LdSoCache::parse(std::as_bytes(std::span(text)), "x").error().code ==
          ErrorCode::bad_format);
    std::string header = "glibc-ld.so.cache1.1";
    header +=
        std::string("\xff\x00\x00\x00", 4) + std::string(24, '\0');  // 255 entries, none there
    CHECK(LdSoCache::parse(std::as_bytes(std::span(header)), "x").error().code ==
          ErrorCode::bad_format);
}

TEST_CASE("curl reaches libssl through libcurl: transitive") {
    OpensslRoute route = route_of("/usr/bin/curl");
    CHECK(route.reach == OpensslReach::transitive);
    REQUIRE(route.through.size() == 2);
    CHECK(route.through[0] == "libcurl.so.4");
    CHECK((route.through[1] == "libssl.so.3" || route.through[1] == "libcrypto.so.3"));
}

TEST_CASE("the openssl program links libssl itself: direct") {
    OpensslRoute route = route_of("/usr/bin/openssl");
    CHECK(route.reach == OpensslReach::direct);
    CHECK(route.through == std::vector<std::string>{"libssl.so.3"});
}

TEST_CASE("true reaches no OpenSSL, and its closure is libc") {
    DependencyClosure closure = closure_of("/bin/true");
    CHECK(openssl_route(closure).reach == OpensslReach::none);
    CHECK(libraries_of(closure) ==
          std::map<std::string, std::string>{{"libc.so.6", "/lib/x86_64-linux-gnu/libc.so.6"}});
    CHECK(closure.objects[1].soname == std::optional<std::string>("ld-linux-x86-64.so.2"));
}

TEST_CASE("the closures of curl, openssl and true are the ones glibc's loader maps") {
    for (const char* program : {"/usr/bin/curl", "/usr/bin/openssl", "/bin/true"}) {
        INFO(program);
        CHECK(libraries_of(closure_of(program)) == loader_trace(program));
    }
}

TEST_CASE("a preloaded libssl makes any program direct, by name or by path") {
    OpensslRoute by_name = route_of("/bin/true", {.preload = "libssl.so.3"});
    CHECK(by_name.reach == OpensslReach::direct);
    CHECK(by_name.through == std::vector<std::string>{"libssl.so.3"});
    OpensslRoute by_path =
        route_of("/bin/true", {.preload = "/nothing/here.so /lib/x86_64-linux-gnu/libcrypto.so.3"});
    CHECK(by_path.reach == OpensslReach::direct);
    CHECK(by_path.through == std::vector<std::string>{"/lib/x86_64-linux-gnu/libcrypto.so.3"});
    CHECK(libraries_of(closure_of("/bin/true", {.preload = "libssl.so.3"})) ==
          loader_trace("/bin/true", "LD_PRELOAD=libssl.so.3"));
}

TEST_CASE("a secure program ignores LD_PRELOAD and LD_LIBRARY_PATH") {
    Fixture fixture;
    CHECK(route_of("/bin/true", {.preload = "libssl.so.3", .secure = true}).reach ==
          OpensslReach::none);
    CHECK(route_of(fixture.file("plain-program"),
                   {.library_path = fixture.file("lib"), .secure = true})
              .reach == OpensslReach::none);
}

TEST_CASE("LD_LIBRARY_PATH finds a library no other search does") {
    Fixture fixture;
    std::string program = fixture.file("plain-program");
    DependencyClosure without = closure_of(program);
    CHECK(without.missing == std::vector<std::string>{"libouter.so"});
    CHECK(openssl_route(without).reach == OpensslReach::none);
    LoaderEnvironment environment{.library_path = "/nothing:" + fixture.file("lib")};
    OpensslRoute route = route_of(program, environment);
    CHECK(route.reach == OpensslReach::transitive);
    CHECK(route.through ==
          std::vector<std::string>{"libouter.so", "libinner.so", "libcrypto.so.3"});
    CHECK(libraries_of(closure_of(program, environment)) ==
          loader_trace(program, "LD_LIBRARY_PATH=/nothing:" + fixture.file("lib")));
}

TEST_CASE("DT_RPATH $ORIGIN serves the program's libraries too; DT_RUNPATH only the program") {
    Fixture fixture;
    // rpath-program's RPATH finds libouter.so, and, inherited, the
    // libinner.so that libouter.so needs.
    std::string rpath_program = fixture.file("rpath-program");
    DependencyClosure rpath = closure_of(rpath_program);
    CHECK(rpath.missing.empty());
    CHECK(openssl_route(rpath).reach == OpensslReach::transitive);
    CHECK(libraries_of(rpath).at("libouter.so") == fixture.file("lib") + "/libouter.so");
    CHECK(libraries_of(rpath) == loader_trace(rpath_program));
    // A RUNPATH is not inherited: libouter.so is found, libinner.so not.
    std::string runpath_program = fixture.file("runpath-program");
    DependencyClosure runpath = closure_of(runpath_program);
    CHECK(runpath.missing == std::vector<std::string>{"libinner.so"});
    CHECK(openssl_route(runpath).reach == OpensslReach::none);
    CHECK(libraries_of(runpath) == loader_trace(runpath_program));
}

TEST_CASE("a process stopped at its exec is read from /proc: environment, executable, origin") {
    Fixture fixture;
    StoppedAtExec process(fixture.file("plain-program"),
                          {"PATH=/bin", "LD_LIBRARY_PATH=/nothing",
                           "LD_PRELOAD=", "LD_LIBRARY_PATH=" + fixture.file("lib")});
    auto inputs = loader_inputs_of_process(process.pid());
    REQUIRE(inputs);
    CHECK(inputs->executable_path == fixture.file("plain-program"));
    // The last of each variable counts, as for the loader.
    CHECK(inputs->environment.library_path == std::optional(fixture.file("lib")));
    CHECK(inputs->environment.preload == std::optional<std::string>(""));
    CHECK_FALSE(inputs->environment.secure);
    auto closure = compute_dependency_closure(*inputs);
    REQUIRE(closure);
    CHECK(openssl_route(*closure).reach == OpensslReach::transitive);
}

// A tree with its own libraries in /opt/lib (no default directory), listed
// in its own ld.so.cache by `ldconfig -r`, libssl.so.3 an absolute symlink
// to /opt/real/libssl.so.3, which exists only inside the tree.
class ChrootTree {
  public:
    ChrootTree() {
        for (const char* directory : {"usr/bin", "opt/lib", "opt/real", "lib64", "etc"}) {
            fs::create_directories(root_.file(directory));
        }
        fs::copy_file("/usr/bin/openssl", root_.file("usr/bin/openssl"));
        fs::copy_file("/lib64/ld-linux-x86-64.so.2", root_.file("lib64/ld-linux-x86-64.so.2"));
        for (const char* library : {"libcrypto.so.3", "libc.so.6"}) {
            fs::copy_file(std::string("/lib/x86_64-linux-gnu/") + library,
                          root_.file("opt/lib/") + library);
        }
        fs::copy_file("/lib/x86_64-linux-gnu/libssl.so.3", root_.file("opt/real/libssl.so.3"));
        fs::create_symlink("/opt/real/libssl.so.3", root_.file("opt/lib/libssl.so.3"));
        write(root_.file("etc/ld.so.conf"), "/opt/lib\n");
        REQUIRE(run("ldconfig -X -r " + root_.path() + " 2>&1; echo status $?")
                    .ends_with("status 0\n"));
    }

    const std::string& path() const { return root_.path(); }

  private:
    ScratchDirectory root_;
};

TEST_CASE("a chroot's libraries come from its own ld.so.cache, symlinks resolved inside it") {
    ChrootTree tree;
    DependencyClosure closure = closure_of("/usr/bin/openssl", {}, tree.path());
    CHECK(closure.missing.empty());
    CHECK(libraries_of(closure) ==
          std::map<std::string, std::string>{{"libssl.so.3", "/opt/lib/libssl.so.3"},
                                             {"libcrypto.so.3", "/opt/lib/libcrypto.so.3"},
                                             {"libc.so.6", "/opt/lib/libc.so.6"}});
    CHECK(openssl_route(closure).reach == OpensslReach::direct);
    // On the host, /opt/real/libssl.so.3 is not there: the symlink was
    // followed inside the tree.
    CHECK_FALSE(fs::exists("/opt/real/libssl.so.3"));
}

TEST_CASE("a process chrooted into the tree is read through its /proc/PID/root") {
    ChrootTree tree;
    if (::geteuid() != 0) {
        WARN("skipped: chroot needs root");
        return;
    }
    StoppedAtExec process("/usr/bin/openssl", {"PATH=/usr/bin"}, tree.path());
    auto inputs = loader_inputs_of_process(process.pid());
    REQUIRE(inputs);
    CHECK(inputs->executable_path == "/usr/bin/openssl");
    struct stat tree_root {};
    REQUIRE(::stat(tree.path().c_str(), &tree_root) == 0);
    CHECK(inputs->root.identity().inode == tree_root.st_ino);
    auto closure = compute_dependency_closure(*inputs);
    REQUIRE(closure);
    OpensslRoute route = openssl_route(*closure);
    CHECK(route.reach == OpensslReach::direct);
    CHECK(libraries_of(*closure).at("libssl.so.3") == "/opt/lib/libssl.so.3");
}

TEST_CASE("the cache answers again until a library of the closure is replaced") {
    Fixture fixture;
    std::string program = fixture.file("rpath-program");
    auto inputs = loader_inputs_of_program("/", program, {});
    REQUIRE(inputs);
    ClosureCache cache;
    CHECK(cache.openssl_route(*inputs)->reach == OpensslReach::transitive);
    CHECK(cache.openssl_route(*inputs)->reach == OpensslReach::transitive);
    CHECK(cache.statistics().computed == 1);
    CHECK(cache.statistics().hits == 1);
    // An upgrade writes a new file and renames it over the old one: the
    // inner library no longer needs libcrypto.
    std::string inner = fixture.file("lib/libinner.so");
    REQUIRE(run("cd " + fixture.file("") +
                " && cc -shared -fPIC -Wl,-soname,libinner.so "
                "-o lib/libinner.so.new inner.c && mv lib/libinner.so.new lib/libinner.so; "
                "echo status $?")
                .ends_with("status 0\n"));
    CHECK(cache.openssl_route(*inputs)->reach == OpensslReach::none);
    CHECK(cache.statistics().invalidated == 1);
    CHECK(cache.statistics().computed == 2);
}

TEST_CASE("the cache keeps one entry per loader environment") {
    ClosureCache cache;
    auto plain = loader_inputs_of_program("/", "/bin/true", {});
    auto preloaded = loader_inputs_of_program("/", "/bin/true", {.preload = "libcrypto.so.3"});
    REQUIRE(plain);
    REQUIRE(preloaded);
    CHECK(cache.openssl_route(*plain)->reach == OpensslReach::none);
    CHECK(cache.openssl_route(*preloaded)->reach == OpensslReach::direct);
    CHECK(cache.openssl_route(*plain)->reach == OpensslReach::none);
    CHECK(cache.size() == 2);
    CHECK(cache.statistics().hits == 1);
}

TEST_CASE("a library dropped into a directory searched in vain invalidates the entry") {
    Fixture fixture;
    // plain-program with LD_LIBRARY_PATH=empty:lib: empty is searched in
    // vain for libouter.so; then another library appears there under that
    // name (libz, which needs no OpenSSL).
    std::string empty = fixture.file("empty");
    fs::create_directories(empty);
    auto inputs = loader_inputs_of_program("/", fixture.file("plain-program"),
                                           {.library_path = empty + ":" + fixture.file("lib")});
    REQUIRE(inputs);
    ClosureCache cache;
    CHECK(cache.openssl_route(*inputs)->reach == OpensslReach::transitive);
    fs::copy_file("/lib/x86_64-linux-gnu/libz.so.1", empty + "/libouter.so");
    CHECK(cache.openssl_route(*inputs)->reach == OpensslReach::none);
    CHECK(cache.statistics().invalidated == 1);
}

TEST_CASE("a candidate for another machine is skipped and the search goes on") {
    Fixture fixture;
    // wrong/libouter.so: libouter.so with e_machine EM_386 (offset 18).
    std::string wrong = fixture.file("wrong");
    fs::create_directories(wrong);
    fs::copy_file(fixture.file("lib/libouter.so"), wrong + "/libouter.so");
    {
        std::fstream file(wrong + "/libouter.so", std::ios::in | std::ios::out | std::ios::binary);
        file.seekp(18);
        file.put(static_cast<char>(EM_386));
    }
    std::string program = fixture.file("plain-program");
    std::string library_path = wrong + ":" + fixture.file("lib");
    DependencyClosure closure = closure_of(program, {.library_path = library_path});
    CHECK(libraries_of(closure).at("libouter.so") == fixture.file("lib") + "/libouter.so");
    CHECK(libraries_of(closure) == loader_trace(program, "LD_LIBRARY_PATH=" + library_path));
}
