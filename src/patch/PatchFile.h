#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/Error.h"
#include "elf/RelocatableObject.h"

namespace suture {

// One function of the target library that the patch replaces.
struct ReplacedFunction {
    std::string symbol;        // its name in the target (for messages)
    std::uint64_t offset = 0;  // from the target's load base
    std::uint64_t size = 0;    // bytes, as in the target's symbol table
    std::string sha256;        // of its original bytes, 64 lowercase hex digits
    std::string replacement;   // defined function symbol of the patch object
};

// A symbol of the target library that the patch code refers to, resolved to
// an offset from the target's load base when the patch was built.
struct TargetReference {
    std::string symbol;
    std::uint64_t offset = 0;
};

// A symbol the patch code takes from another loaded object, by name and
// (when known) version, e.g. memcpy@GLIBC_2.14.
struct Import {
    std::string symbol;
    std::string version;  // empty: the default version
};

// Which threads may be in the way of an apply (docs/patch-format.md,
// "Consistency"). The builder decides; a file without the field is strict.
enum class Consistency {
    // The replaced functions are self-contained: a thread inside an old
    // body finishes it and its next call takes the new code. Only a thread
    // inside the bytes a jump overwrites is in the way.
    entry,
    // The replaced functions depend on each other's new behaviour: no thread
    // may be anywhere in them (or return into them) when the jumps go in.
    strict,
};

std::string consistency_name(Consistency consistency);
// "entry" or "strict"; nullopt for anything else.
std::optional<Consistency> consistency_from_name(std::string_view name);

// The callbacks a patch declares (docs/patch-format.md, "Callbacks"):
// functions `int fn(void)` defined in the object, by symbol name like a
// replacement; empty = none. The author header's macros
// (include/suture/patch.h) define them under the names
// callback_symbol(kind), which the builder and the packer look for.
struct PatchCallbacks {
    std::string pre_apply;
    std::string post_apply;
    std::string pre_revert;
    std::string post_revert;

    bool any() const {
        return !pre_apply.empty() || !post_apply.empty() || !pre_revert.empty() ||
               !post_revert.empty();
    }
    // (member name in the metadata, symbol) for each of the four.
    std::array<std::pair<const char*, const std::string*>, 4> named() const {
        return {{{"pre_apply", &pre_apply},
                 {"post_apply", &post_apply},
                 {"pre_revert", &pre_revert},
                 {"post_revert", &post_revert}}};
    }
};

// "__suture_callback_pre_apply" and so on: what SUTURE_PRE_APPLY(fn) ...
// define in the compiled fix. `kind` is a member name of PatchCallbacks.
std::string callback_symbol(std::string_view kind);

// The callbacks an object declares through the author header's macros,
// found by their symbol names; an error if one is not a function.
Result<PatchCallbacks> declared_callbacks(const RelocatableObject& object);

struct PatchMetadata {
    std::string patch_id;  // [A-Za-z0-9._+-]{1,63}
    std::uint32_t level = 1;
    Consistency consistency = Consistency::strict;
    std::string description;
    std::string target_build_id;  // lowercase hex
    std::string target_soname;
    std::vector<ReplacedFunction> functions;
    std::vector<TargetReference> target_references;
    std::vector<Import> imports;
    PatchCallbacks callbacks;  // "callbacks" (absent: none)
};

// A parsed, validated patch file: metadata plus the relocatable object.
// Format: docs/patch-format.md.
struct PatchFile {
    PatchMetadata metadata;
    RelocatableObject object;
    // Not part of the file: other patch ids whose active region an apply of
    // this patch may replace in its stop, as a higher level replaces a
    // lower one (inject/Injector.h, apply_patch step 2). The engine fills
    // it in from the feed's signed custom "supersedes" (a cumulative patch
    // that carries their fixes); empty, as parse_patch leaves it, another
    // id on one of this patch's functions is a conflict.
    std::vector<std::string> replaces;
};

// The one undefined symbol an object may have beyond its target references
// and imports: the per-process shadow table (docs/patch-format.md, "Shadow
// region"), which the shadow runtime (src/patchrt/) reads through its GOT
// slot and the injector resolves at apply time.
inline constexpr std::string_view shadow_table_symbol = "suture_shadow_table";
// The assembler adds this undefined symbol to any object with GOT-relative
// relocations (the shadow runtime's), though no relocation names it; the
// region's own GOT serves them, so it needs no resolving.
inline constexpr std::string_view got_symbol = "_GLOBAL_OFFSET_TABLE_";

inline constexpr std::uint32_t patch_format_version = 1;
inline constexpr std::size_t max_patch_metadata_size = 1 << 20;
inline constexpr std::size_t max_patch_object_size = 64 << 20;

// Parses and validates the bytes of a patch file: the container, the
// metadata, the object, and their consistency (every replacement defined,
// every undefined symbol of the object a target reference or an import,
// replaced functions large enough for a jump and not overlapping).
Result<PatchFile> parse_patch(std::span<const std::byte> bytes, const std::string& name);

// Reads and parses a patch file from disk.
Result<PatchFile> read_patch_file(const std::string& path);

// Serialises metadata and an object's bytes into the container format.
std::vector<std::byte> write_patch(const PatchMetadata& metadata,
                                   std::span<const std::byte> object_bytes);

// Parses only the metadata document (for tests and tools).
Result<PatchMetadata> parse_patch_metadata(std::string_view json_text, const std::string& name);

}  // namespace suture
