// The OpenSSL route of each program, computed once per executable.
#pragma once

#include <compare>
#include <cstddef>
#include <cstdint>
#include <map>
#include <vector>

#include "base/Error.h"
#include "base/RootDirectory.h"
#include "elf/DependencyClosure.h"

namespace suture {

// Remembers how programs reach OpenSSL, so that sutured pays for a closure
// (compute_dependency_closure) once per executable, not once per exec.
//
// An entry is keyed by what selects the closure besides the files: the
// executable (device, inode, mtime, size), the process's root (device and
// inode of its "/") and the loader environment (LD_LIBRARY_PATH, LD_PRELOAD,
// secure). It keeps the identity of every file and directory the closure
// rests on (DependencyClosure::inputs: each library, ld.so.cache,
// ld.so.preload, each directory searched in vain) and is used only while a
// fresh look (one openat2 and fstat each, inside the root) finds them all
// unchanged: an upgraded library is a new inode, ldconfig writes a new
// ld.so.cache, a library dropped into an RPATH directory changes that
// directory's mtime. A changed entry is computed again.
//
// Closures that depend on the working directory (relative entries) are not
// kept. When `capacity` entries are held the cache starts over.
class ClosureCache {
  public:
    explicit ClosureCache(std::size_t capacity = 4096) : capacity_(capacity) {}

    // How the program of `inputs` reaches libssl or libcrypto. Error when
    // the executable cannot be read (nothing is cached then).
    Result<OpensslRoute> openssl_route(const LoaderInputs& inputs);

    struct Statistics {
        std::uint64_t hits = 0;         // answered from an unchanged entry
        std::uint64_t computed = 0;     // closures computed (misses and stale entries)
        std::uint64_t invalidated = 0;  // entries found stale
    };
    const Statistics& statistics() const { return statistics_; }
    std::size_t size() const { return entries_.size(); }

  private:
    struct Key {
        FileIdentity executable;
        FileIdentity root;
        LoaderEnvironment environment;
        auto operator<=>(const Key&) const = default;
    };
    struct Entry {
        OpensslRoute route;
        std::vector<ClosureInput> inputs;
    };

    // Are all the entry's inputs as they were?
    static bool unchanged(const Entry& entry, const RootDirectory& root);

    std::size_t capacity_;
    std::map<Key, Entry> entries_;
    Statistics statistics_;
};

}  // namespace suture
