#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "base/Error.h"
#include "patch/PatchFile.h"

namespace suture {

// One source file compiled twice with the package build's flags plus
// -ffunction-sections -fdata-sections: before and after the fix.
struct CompiledUnit {
    std::string original_object;
    std::string patched_object;
};

struct BuildRequest {
    std::vector<CompiledUnit> units;
    // The exact library build the patch is for (the archive's binary; may be
    // stripped): build ID, SONAME, PLT, and the bytes that get hashed.
    std::string library;
    // A file with the full symbol table of the same build ID: the rebuild's
    // debug file (…/.build-id/xx/yyyy.debug) or an unstripped copy.
    std::string debug_symbols;
    std::string patch_id;
    std::uint32_t level = 1;
    std::string description;
    // What the patch's author asks for (patchset.json "consistency"); empty:
    // the builder decides. `strict` is always granted; `entry` only when the
    // rule (decide_consistency in PatchBuilder.cpp, docs/builder.md) allows
    // it, else the build fails saying which function refers to which.
    std::optional<Consistency> consistency;
};

// What went into a patch, for the builder's report.
struct BuildReport {
    std::vector<std::string> replaced;    // "name (file) at 0xOFFSET, N bytes"
    std::vector<std::string> added;       // functions new in the fix
    std::vector<std::string> references;  // "name -> 0xOFFSET"
    std::vector<std::string> imports;     // "name@VERSION"
    std::vector<std::string> callbacks;   // "post_apply: fix_up_state (file)"
    Consistency consistency = Consistency::strict;
    // Why: "one function", "3 independent functions" (entry);
    // "tls1_enc calls ssl3_read_bytes, both replaced" (strict).
    std::string consistency_reason;
};

// Builds a patch file (docs/patch-format.md) from the compiled units:
//  1. diff each unit (diff_objects): changed and new functions;
//  2. take those functions, their cold parts, the read-only data and string
//     literals they use, and any unchanged local function the library does
//     not have on its own (inlined everywhere there);
//  3. resolve every other reference to an offset in the library: statics
//     through their source file's block of the debug symbol table, globals
//     by their unique name, functions from other libraries through the
//     library's own PLT entry (so IFUNCs such as memcpy need no runtime
//     lookup); what remains is an import;
//  4. check that each replaced function's original compile matches the
//     library's bytes outside relocation fields (proof that the flags were
//     right), and hash the library's bytes;
//  5. decide the consistency model: entry when the replaced functions are
//     provably self-contained (one function; or none refers to another and
//     no two share a new function), else strict;
//  6. record the callbacks the fix declares with include/suture/patch.h's
//     macros (new functions named __suture_callback_<kind>, included with
//     everything they reach like any new function; one of each kind);
//  7. write the object and the metadata. Same inputs, same bytes.
// Errors name the symbol and the reason; nothing is guessed.
Result<std::vector<std::byte>> build_patch(const BuildRequest& request, BuildReport& report);

}  // namespace suture
