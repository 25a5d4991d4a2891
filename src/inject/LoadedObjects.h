#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "base/Error.h"
#include "elf/ElfFile.h"
#include "inject/RemoteAddress.h"
#include "patch/PatchFile.h"
#include "proc/ProcessMaps.h"

namespace suture {

// One ELF object mapped into a process.
struct LoadedObject {
    std::string path;       // as maps shows it
    std::string open_path;  // /proc/PID/map_files/… of one of its mappings
    RemoteAddress start;    // lowest address of its mappings
    RemoteAddress end;      // highest end address of its mappings
    RemoteAddress base;     // load bias: add a symbol value (a LibraryOffset) to get its address
    std::string build_id;
    std::optional<std::string> soname;
    // Dead bytes mapped executable: from the end of an executable segment's
    // file contents to the end of its last page. Nothing executes there; the
    // injector borrows it for its system-call trampoline. Empty if none.
    RemoteAddress slack_start;
    RemoteAddress slack_end;
};

// The ELF objects a stopped process maps (with an executable mapping), read
// through /proc/PID/map_files. Objects that cannot be read are skipped.
Result<std::vector<LoadedObject>> read_loaded_objects(int pid,
                                                      const std::vector<Mapping>& mappings);

// Resolves imports against the .dynsym of the loaded objects in load order,
// the way the dynamic linker's global scope does: the first object that
// defines the symbol with the requested version (or, for an unversioned
// import, its default version) wins. IFUNC symbols are refused: their
// address is chosen by a resolver that would have to run in the target.
class SymbolResolver {
  public:
    explicit SymbolResolver(const std::vector<LoadedObject>& objects) : objects_(objects) {}
    Result<RemoteAddress> resolve(const Import& import);

  private:
    const std::vector<LoadedObject>& objects_;
    std::map<std::string, std::vector<ElfFile::Symbol>> symbols_;  // by open_path
};

// Whether the dynamic loader of `pid` is changing its list of objects now:
// the program is starting (ld.so's _r_debug not initialised yet, or r_state
// RT_ADD while it maps the DT_NEEDED libraries) or a thread is inside
// dlopen()/dlclose() (RT_ADD, RT_DELETE). Read from ld.so's _r_debug
// (<link.h>) through /proc/PID/mem; false for a process without one (a
// static program) or when it cannot be read.
bool loader_is_changing_objects(int pid, const std::vector<LoadedObject>& objects);

}  // namespace suture
