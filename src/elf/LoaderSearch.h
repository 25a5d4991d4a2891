#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "base/Error.h"
#include "base/UniqueFD.h"

namespace suture {

// A process's root directory, held open: every path the loader model
// opens is resolved inside it (openat2 RESOLVE_IN_ROOT), so an absolute
// symbolic link in a container's tree stays in that tree, as it does for
// the loader running there.
class LoaderRoot {
  public:
    // `root` as this process sees it: "/" or "/proc/PID/root".
    static Result<LoaderRoot> open(const std::string& root);

    // Opens `path` (absolute, inside the root) for reading.
    Result<UniqueFD> open_file(const std::string& path) const;
    // `path` inside the root as a path this process can open (for
    // fanotify marks and messages).
    std::string outside(const std::string& path) const { return root_ + path; }
    const std::string& root() const { return root_; }

  private:
    LoaderRoot(UniqueFD fd, std::string root) : fd_(std::move(fd)), root_(std::move(root)) {}
    UniqueFD fd_;
    std::string root_;  // "" for "/"
};

// /etc/ld.so.cache of one root, read once: soname -> path of the x86-64
// libc6 entry ldconfig chose. Format: glibc's sysdeps/generic/dl-cache.h
// (the "glibc-ld.so.cache1.1" layout, alone or after the old
// "ld.so-1.7.0" one). Entries for glibc-hwcaps subdirectories are skipped:
// the baseline entry is the one every CPU can load.
class LdSoCache {
  public:
    // An empty cache when the file is missing or not in a known format
    // (the loader then searches its default directories only).
    static LdSoCache read(const LoaderRoot& root);
    static LdSoCache parse(std::string_view bytes);

    std::optional<std::string> find(const std::string& soname) const;
    std::size_t size() const { return entries_.size(); }

  private:
    std::map<std::string, std::string> entries_;
};

// What the dynamic loader of one process searches, after ld.so(8):
// DT_RPATH (of the object and the objects that loaded it, when it has no
// DT_RUNPATH), LD_LIBRARY_PATH, DT_RUNPATH (for the object's own
// DT_NEEDED), ld.so.cache, the default directories; $ORIGIN, $LIB and
// $PLATFORM expanded. LD_PRELOAD's objects come first.
struct LoaderInputs {
    std::string executable;    // absolute path inside the root
    std::string library_path;  // LD_LIBRARY_PATH from its environment
    std::string preload;       // LD_PRELOAD from its environment
    bool secure = false;       // AT_SECURE (setuid): both of the above ignored
};

struct ClosureObject {
    std::string name;    // as asked for (DT_NEEDED or LD_PRELOAD entry)
    std::string path;    // where it was found, inside the root
    std::string soname;  // DT_SONAME, or the name asked for
    int depth = 0;       // 0: LD_PRELOAD; 1: the executable's DT_NEEDED; 2...: deeper
};

struct DependencyClosure {
    std::vector<ClosureObject> objects;   // breadth first, as the loader maps them
    std::vector<std::string> unresolved;  // names found nowhere (the loader would fail)
};

// The objects the loader will map for `inputs` before the program's entry
// point (not those dlopen'ed later). Errors: the executable cannot be
// opened or is no ELF file.
Result<DependencyClosure> dependency_closure(const LoaderRoot& root, const LdSoCache& cache,
                                             const LoaderInputs& inputs);

}  // namespace suture
