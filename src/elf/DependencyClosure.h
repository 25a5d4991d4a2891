// Which libraries glibc's dynamic loader maps into a program before main(),
// computed from outside the process while its loader runs.
#pragma once

#include <compare>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/Error.h"
#include "base/RootDirectory.h"
#include "base/UniqueFD.h"

namespace suture {

// What a program's loader goes by besides the files: the two environment
// variables that change its search, and whether it runs secure.
struct LoaderEnvironment {
    std::optional<std::string> library_path;  // LD_LIBRARY_PATH; nullopt when unset
    std::optional<std::string> preload;       // LD_PRELOAD; nullopt when unset
    // AT_SECURE (set-uid or set-gid, or file capabilities): the loader then
    // ignores LD_LIBRARY_PATH, and LD_PRELOAD too here (it would take only
    // set-uid libraries from the system directories).
    bool secure = false;

    auto operator<=>(const LoaderEnvironment&) const = default;
};

// Everything the closure of one program start is computed from.
struct LoaderInputs {
    RootDirectory root;  // the process's "/": every path below lives inside it
    UniqueFD executable;
    FileIdentity executable_identity;
    // The program's path inside the root, symlinks resolved, for $ORIGIN;
    // empty when it cannot be told (then no $ORIGIN entry is expanded, as
    // the loader does when it cannot find its own origin).
    std::string executable_path;
    std::string working_directory = "/";  // for relative entries, inside the root
    LoaderEnvironment environment;
};

// Reads the inputs of process `pid`, which has just exec'ed (its loader may
// be running): /proc/PID/root, /proc/PID/exe, /proc/PID/cwd, only
// LD_LIBRARY_PATH and LD_PRELOAD out of /proc/PID/environ (the last of each,
// as the loader takes them), AT_SECURE out of /proc/PID/auxv (or, when that
// is unreadable, the set-uid and set-gid bits). Reads a handful of small
// /proc files; never waits on the process. Error not_found when it is gone.
Result<LoaderInputs> loader_inputs_of_process(int pid);

// The inputs of starting `program` (a path inside `root`, taken as
// resolved) under `root` (a directory; "/" for this host) with
// `environment`: for tests and the benchmark, no process needed.
Result<LoaderInputs> loader_inputs_of_program(const std::string& root, const std::string& program,
                                              LoaderEnvironment environment,
                                              std::string working_directory = "/");

// One object the loader maps.
struct ClosureObject {
    // How it was asked for: a DT_NEEDED or LD_PRELOAD entry as written
    // (the executable's and the interpreter's: their paths).
    std::string name;
    std::string path;  // where the loader finds it, inside the root
    std::optional<std::string> soname;
    // Index of the object whose DT_NEEDED named it first: its loader, whose
    // RPATH/RUNPATH was searched. 0 (the executable) for the executable
    // itself, the interpreter and preloaded objects.
    std::size_t loader = 0;
    bool preloaded = false;  // LD_PRELOAD or /etc/ld.so.preload
};

// A file or directory the closure rests on, with its identity when the
// closure was computed (nullopt: it was absent). If none of them changed,
// neither did the closure (the executable and the environment aside).
struct ClosureInput {
    std::string path;  // inside the root
    std::optional<FileIdentity> identity;
};

struct DependencyClosure {
    // [0] the executable, [1] its interpreter (when it has one), then the
    // preloads, then breadth first as the loader maps them, each file once.
    std::vector<ClosureObject> objects;
    // Names no search found. A missing DT_NEEDED stops the program before
    // main(); a missing preload is skipped with a warning.
    std::vector<std::string> missing;
    // Each library's file, ld.so.cache and ld.so.preload, and every
    // directory searched in vain before a name was found (a library that
    // appears there later would be found first).
    std::vector<ClosureInput> inputs;
    // A relative entry or name was resolved against the working directory:
    // the same executable started elsewhere may load something else.
    bool uses_working_directory = false;
};

// Computes the closure the way glibc 2.36's ld.so searches (elf/dl-load.c,
// elf/rtld.c, ld.so(8)): the preloads, then each DT_NEEDED breadth first,
// each soname (or file) once. A name without '/' is looked for in the DT_RPATH
// of its loader and of the loader's loaders (unless the loader has a
// DT_RUNPATH), LD_LIBRARY_PATH, the loader's DT_RUNPATH, ld.so.cache and
// the default directories (/lib/x86_64-linux-gnu, /usr/lib/x86_64-linux-gnu,
// /lib, /usr/lib); $ORIGIN, $LIB and $PLATFORM are expanded. A candidate of
// another class or machine is skipped. Not modelled: the glibc-hwcaps and
// legacy hwcap subdirectories (a CPU-specific build of the same soname,
// with the same dependencies in every package we know), and the trusted
// directory rule for $ORIGIN in secure programs.
//
// Opens only regular files, O_NONBLOCK, inside `inputs.root`. Error only
// when the executable itself cannot be read; missing libraries are part of
// the answer.
Result<DependencyClosure> compute_dependency_closure(const LoaderInputs& inputs);

// How a program reaches libssl or libcrypto when it starts.
enum class OpensslReach {
    none,        // neither is in its closure
    direct,      // its own DT_NEEDED or a preload names one
    transitive,  // only a library it loads does (curl through libcurl)
};

std::string_view reach_name(OpensslReach reach);  // "none", "direct", "transitive"

struct OpensslRoute {
    OpensslReach reach = OpensslReach::none;
    // The names from the executable down to the first OpenSSL library
    // found: {"libssl.so.3"} (direct), {"libcurl.so.4", "libssl.so.3"}
    // (transitive). Empty for none.
    std::vector<std::string> through;
    // Every libssl and libcrypto of the closure: its path inside the root.
    std::vector<std::string> libraries;
};

// Is `object` libssl or libcrypto (by its soname, else by its file name)?
bool is_openssl_object(const ClosureObject& object);

// The shortest way from the executable to libssl or libcrypto in
// `closure`, direct ones first.
OpensslRoute openssl_route(const DependencyClosure& closure);

}  // namespace suture
