#include "builder/PatchPacker.h"

#include <map>

#include "base/Files.h"
#include "base/Sha256.h"
#include "elf/ElfFile.h"
#include "elf/RelocatableObject.h"
#include "patch/EntryJump.h"
#include "patch/PatchFile.h"

namespace suture {

namespace {

// The one address `name` has in the library, or an error naming the
// ambiguity.
Result<const ElfFile::Symbol*> unique_definition(const std::vector<ElfFile::Symbol>& symbols,
                                                 const std::string& name,
                                                 const std::string& library) {
    const ElfFile::Symbol* found = nullptr;
    for (const ElfFile::Symbol& symbol : symbols) {
        if (!symbol.defined || symbol.name != name || symbol.type == STT_FILE ||
            symbol.type == STT_SECTION) {
            continue;
        }
        if (found != nullptr && found->value != symbol.value) {
            return fail(ErrorCode::invalid_argument,
                        library + ": " + name + " is defined more than once (at " +
                            std::to_string(found->value) + " and " + std::to_string(symbol.value) +
                            "): ambiguous");
        }
        found = &symbol;
    }
    return found;
}

// What a patch needs from its target library.
struct TargetLibrary {
    ElfFile elf;
    std::string build_id;
    std::string soname;
    std::vector<ElfFile::Symbol> symbols;  // .symtab if present, else .dynsym
    std::vector<ElfFile::Symbol> dynamic;  // .dynsym, for the versions it imports
};

Result<TargetLibrary> read_target_library(const std::string& path) {
    auto fd = open_read_only(path);
    if (!fd) {
        return tl::unexpected(fd.error());
    }
    auto library = ElfFile::open(*fd, path);
    if (!library) {
        return tl::unexpected(library.error());
    }
    auto build_id = library->build_id();
    auto soname = library->soname();
    if (!build_id) {
        return tl::unexpected(build_id.error());
    }
    if (!soname || !soname->has_value()) {
        return fail(ErrorCode::invalid_argument, path + ": no DT_SONAME");
    }
    auto symbols = library->static_symbols();
    if (!symbols) {
        return tl::unexpected(symbols.error());
    }
    if (symbols->empty()) {
        symbols = library->dynamic_symbols();
        if (!symbols) {
            return tl::unexpected(symbols.error());
        }
    }
    auto dynamic = library->dynamic_symbols();
    if (!dynamic) {
        return tl::unexpected(dynamic.error());
    }
    return TargetLibrary{std::move(*library), *build_id, **soname, std::move(*symbols),
                         std::move(*dynamic)};
}

// Each function to replace: its offset and size from the library's symbol
// table, the SHA-256 of its bytes.
Result<std::vector<ReplacedFunction>> replaced_functions(const TargetLibrary& library,
                                                         const PackRequest& request) {
    std::vector<ReplacedFunction> functions;
    for (const auto& [target_symbol, replacement] : request.replacements) {
        auto definition = unique_definition(library.symbols, target_symbol, request.target_library);
        if (!definition) {
            return tl::unexpected(definition.error());
        }
        const ElfFile::Symbol* symbol = *definition;
        if (symbol == nullptr || symbol->type != STT_FUNC) {
            return fail(ErrorCode::invalid_argument,
                        request.target_library + ": no function " + target_symbol);
        }
        auto file_offset = library.elf.offset_of_address(symbol->value);
        if (!file_offset) {
            return fail(ErrorCode::bad_format,
                        request.target_library + ": " + target_symbol + " is not in the file");
        }
        auto bytes = library.elf.bytes_at(*file_offset, symbol->size);
        if (!bytes) {
            return tl::unexpected(bytes.error());
        }
        if (!holds_entry_jump(*bytes, symbol->size)) {
            return fail(ErrorCode::unsupported,
                        request.target_library + ": " + target_symbol + " is " +
                            std::to_string(symbol->size) +
                            " bytes: too short for the 5-byte entry jump" +
                            (entry_jump_offset(*bytes) != 0 ? " after its endbr64" : "") +
                            " (replace its callers instead)");
        }
        functions.push_back(ReplacedFunction{target_symbol, symbol->value, symbol->size,
                                             sha256_hex(*bytes), replacement});
    }
    return functions;
}

// Sorts each undefined symbol of `object` into `metadata`: a target
// reference when the library defines it, else an import, versioned as the
// library itself imports it.
Result<void> add_references_and_imports(const TargetLibrary& library,
                                        const RelocatableObject& object,
                                        const std::string& library_path, PatchMetadata& metadata) {
    std::map<std::string, std::string> imported_versions;
    for (const ElfFile::Symbol& symbol : library.dynamic) {
        if (!symbol.defined && !symbol.version.empty()) {
            imported_versions.emplace(symbol.name, symbol.version);
        }
    }
    std::map<std::string, bool> seen;
    for (const auto& symbol : object.symbols()) {
        if (symbol.section != SHN_UNDEF || symbol.is_absolute || symbol.name.empty() ||
            symbol.name == shadow_table_symbol ||  // the injector provides it
            symbol.name == got_symbol ||           // named by no relocation
            seen[symbol.name]) {
            continue;
        }
        seen[symbol.name] = true;
        auto definition = unique_definition(library.symbols, symbol.name, library_path);
        if (!definition) {
            return tl::unexpected(definition.error());
        }
        if (*definition != nullptr) {
            metadata.target_references.push_back(
                TargetReference{symbol.name, (*definition)->value});
        } else {
            auto version = imported_versions.find(symbol.name);
            metadata.imports.push_back(
                Import{symbol.name, version != imported_versions.end() ? version->second : ""});
        }
    }
    return {};
}

}  // namespace

Result<std::vector<std::byte>> pack_patch(const PackRequest& request) {
    auto library = read_target_library(request.target_library);
    if (!library) {
        return tl::unexpected(library.error());
    }
    PatchMetadata metadata;
    metadata.patch_id = request.patch_id;
    metadata.level = request.level;
    metadata.description = request.description;
    metadata.consistency = request.consistency;
    metadata.target_build_id = library->build_id;
    metadata.target_soname = library->soname;
    auto functions = replaced_functions(*library, request);
    if (!functions) {
        return tl::unexpected(functions.error());
    }
    metadata.functions = std::move(*functions);

    auto object_text = read_file(request.object_path);
    if (!object_text) {
        return tl::unexpected(object_text.error());
    }
    auto object_bytes = bytes_of(*object_text);
    auto object = RelocatableObject::parse(
        std::vector<std::byte>(object_bytes.begin(), object_bytes.end()), request.object_path);
    if (!object) {
        return tl::unexpected(object.error());
    }
    if (auto sorted =
            add_references_and_imports(*library, *object, request.target_library, metadata);
        !sorted) {
        return tl::unexpected(sorted.error());
    }
    // Callbacks declared with the author header's macros.
    auto callbacks = declared_callbacks(*object);
    if (!callbacks) {
        return tl::unexpected(callbacks.error());
    }
    metadata.callbacks = std::move(*callbacks);

    std::vector<std::byte> patch = write_patch(metadata, object_bytes);
    // Check our own output with the same parser the injector uses.
    if (auto parsed = parse_patch(patch, request.patch_id); !parsed) {
        return tl::unexpected(parsed.error());
    }
    return patch;
}

}  // namespace suture
