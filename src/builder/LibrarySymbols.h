#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "base/Error.h"
#include "elf/ElfFile.h"

namespace suture {

// The full symbol table of one library build (from its separate debug file,
// e.g. the rebuild's -dbgsym package, or from an unstripped library), split
// the way the linker wrote it: one block per input object (an STT_FILE symbol
// followed by that object's local symbols), then the global symbols.
//
// Static functions and data of different source files may share a name
// (OpenSSL's providers are full of them); they are told apart by their
// file's block, chosen as kpatch's lookup.c does: the block whose file name
// equals the object's STT_FILE and whose set of local function/object names
// equals the object's. Every lookup either finds exactly one address or
// fails saying why: never a guess.
class LibrarySymbols {
  public:
    struct Definition {
        std::uint64_t offset = 0;  // from the load base
        std::uint64_t size = 0;
        unsigned char type = STT_NOTYPE;
    };
    struct FileBlock {
        std::string file;  // the STT_FILE name, e.g. "../crypto/cmp/cmp_protect.c"
        std::map<std::string, Definition> locals;
    };

    // `symbols`: a symbol table in file order (ElfFile::static_symbols()).
    // `name`: for messages.
    static LibrarySymbols from_table(const std::vector<ElfFile::Symbol>& symbols, std::string name);

    // The block of the object whose STT_FILE is `file` and whose local
    // function/object names are `local_names`. Error if none or several.
    Result<const FileBlock*> block_for(const std::string& file,
                                       const std::set<std::string>& local_names) const;

    // A local symbol of `block`.
    Result<Definition> local(const FileBlock& block, const std::string& name) const;

    // The one definition of a symbol that was global in its object (it may
    // have become local in the library through hidden visibility). nullopt
    // if the library does not define it; an error if it defines it at more
    // than one address.
    Result<std::optional<Definition>> global(const std::string& name) const;

  private:
    std::string name_;
    std::vector<FileBlock> blocks_;
    // Globals, and locals outside any named block (hidden symbols the linker
    // made local): name -> definitions.
    std::map<std::string, std::vector<Definition>> globals_;
};

}  // namespace suture
