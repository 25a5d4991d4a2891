#pragma once

#include <cstdint>
#include <memory>
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
    // Optional: the source file before the fix compiled with the package
    // build's flags alone (one .text for the whole file, as the library's
    // object was). A replaced function whose jumps or padding the assembler
    // sized otherwise in its own section is proven equal to the library's
    // against this compile instead (docs/builder.md, "Proving the compile").
    std::string single_text_object;
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
    // Functions of the units (names in the original compile) replaced
    // although the fix leaves them unchanged: how the patchable-fraction
    // probe (test/integration/builder-patchable-fraction.sh) asks whether a
    // function could be patched at all, with original == patched.
    std::vector<std::string> force_replace;
    // The in-target shadow runtime (src/patchrt/, suture-patchrt.o): when
    // the fix calls a function it defines (suture_shadow_get …), the
    // sections that function needs are linked into the patch. Empty: none.
    std::string runtime_object;
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
    // Linker relaxations accepted when the original compile was compared
    // with the library: "name +0xOFFSET: mov GOT -> lea" (docs/builder.md).
    std::vector<std::string> relaxations;
    // Replaced functions proven against the single-.text compile
    // (CompiledUnit::single_text_object): "name: 298 bytes with
    // -ffunction-sections, 301 as the package build compiled it".
    std::vector<std::string> single_text_proofs;
    // Functions too short for the entry jump, patched through their
    // callers: "short_fn (3 bytes): through caller_a, caller_b".
    std::vector<std::string> stand_ins;
};

// The library a patch is built for and its symbols, opened once (the
// patchable-fraction probe builds thousands of patches for one library).
struct OpenedLibrary;
Result<std::shared_ptr<const OpenedLibrary>> open_patch_library(const std::string& library,
                                                                const std::string& debug_symbols);

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
//     library's bytes outside relocation fields, up to the linker's
//     documented relaxations (proof that the flags were right), that it
//     holds the entry jump, and hash the library's bytes; a function too
//     short for the jump is patched through its callers, when every
//     reference to it is a direct call or jump in its own file;
//  5. decide the consistency model: entry when the replaced functions are
//     provably self-contained (one function; or none refers to another and
//     no two share a new function), else strict;
//  6. record the callbacks the fix declares with include/suture/patch.h's
//     macros (new functions named __suture_callback_<kind>, included with
//     everything they reach like any new function; one of each kind);
//  7. write the object and the metadata. Same inputs, same bytes.
// Errors name the symbol and the reason; nothing is guessed.
// `opened`: request.library and request.debug_symbols already opened
// (open_patch_library), or null to open them here.
Result<std::vector<std::byte>> build_patch(const BuildRequest& request, BuildReport& report,
                                           std::shared_ptr<const OpenedLibrary> opened = nullptr);

}  // namespace suture
