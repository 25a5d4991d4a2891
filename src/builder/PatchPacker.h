#pragma once

#include <string>
#include <utility>
#include <vector>

#include "base/Error.h"
#include "patch/PatchFile.h"

namespace suture {

struct PackRequest {
    std::string target_library;  // path of the exact library build the patch is for
    std::string object_path;     // the patch code, `gcc -c` output
    std::string patch_id;
    std::uint32_t level = 1;
    std::string description;
    // (symbol in the target, replacement function in the object)
    std::vector<std::pair<std::string, std::string>> replacements;
    // Recorded as given: a hand-written object comes with no proof that its
    // functions are self-contained, so the default is strict.
    Consistency consistency = Consistency::strict;
};

// Builds a patch file's bytes: "this object's function X replaces symbol Y of
// library L". Reads Y's offset and size from L's own symbol table (.symtab if
// present, else .dynsym), hashes Y's bytes, turns every undefined symbol of
// the object that L defines into a target reference (offset from L's base)
// and every other one into an import, versioned as L itself imports it.
// A symbol L defines more than once at different addresses is an error,
// never a guess. Callbacks the object declares with include/suture/patch.h's
// macros (by their symbol names) go into the metadata's "callbacks".
Result<std::vector<std::byte>> pack_patch(const PackRequest& request);

}  // namespace suture
