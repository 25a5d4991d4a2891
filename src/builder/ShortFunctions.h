#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "builder/ObjectDiff.h"
#include "elf/RelocatableObject.h"

namespace suture {

// A function shorter than the entry jump (patch/EntryJump.h: a 1-byte `ret`,
// a 3-byte `xor %eax,%eax; ret`) cannot be redirected where it is. Its
// callers can: a replaced caller calls the new copy of it. That covers every
// call only when every call is known, i.e. when the function is static
// (callable only from its own file) and every reference to it in that file
// is a direct call or jump. Anything else (its address stored or loaded: a
// pointer can call it from anywhere) is reported, never guessed.
struct DirectCallers {
    // Symbol indices (in the object) of the functions that call or jump to
    // it, each once, a cold part's parent in place of the cold part.
    std::vector<std::size_t> callers;
    // Why its calls cannot all be covered; empty when `callers` covers them.
    std::string uncoverable;
    // The function is global in its object: callable from other files (and,
    // if the library exports it, from outside), which this object does not
    // show. `uncoverable` is then set too; the caller may say more.
    bool global = false;
};

// The direct callers of function `function` (a symbol index) of `object`,
// from the object's relocations (every section, code and data).
DirectCallers direct_callers(const RelocatableObject& object, const SymbolOwners& owners,
                             std::size_t function);

}  // namespace suture
