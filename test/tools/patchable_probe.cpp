// patchable-probe: which functions of a library could the builder patch?
// For every function of the given objects (the library's C units compiled
// the way suture-build compiles them), builds a patch that replaces just it
// (BuildRequest::force_replace, the fix "changes" nothing) and records
// whether the builder accepts it, and if not why. Functions of the library's
// symbol table that no object defines (assembly, linker stubs) count as
// refused. Prints the fraction the builder can patch now, the fraction the
// rules before issue 14 part 6 allowed (accepted, and neither a linker
// relaxation, nor a function under 9 bytes, nor one patched through its
// callers), and the reasons for the rest, grouped.
//
// Usage: patchable-probe LIBRARY DEBUG_SYMBOLS OBJECT...
// PROBE_SAMPLE=1: count only the functions the objects define (a sample of
// the units); PROBE_VERBOSE=1: every refusal on stderr.

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <map>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include "base/Files.h"
#include "builder/LibrarySymbols.h"
#include "builder/ObjectDiff.h"
#include "builder/PatchBuilder.h"
#include "elf/ElfFile.h"
#include "elf/RelocatableObject.h"
#include "patch/PatchFile.h"

using namespace suture;

namespace {

// What became of one function of the library.
struct Verdict {
    bool patchable = false;
    bool before = false;  // also under the old rules
    std::string reason;   // refused: why (grouped), accepted: which new rule
    std::string example;  // refused: the builder's message
};

// The reason without names, numbers and paths, so that equal causes group.
std::string reason_group(std::string message) {
    static const std::regex object_prefix(R"(^\S*\.o: )");
    static const std::regex function_name(R"(^[A-Za-z_][A-Za-z_0-9.]*(: | ))");
    static const std::regex compiled_library(R"(\(compiled [0-9a-f]+, library [0-9a-f]+\))");
    static const std::regex taken(R"(address is taken \([^)]*\))");
    static const std::regex hex(R"(0x[0-9a-f]+)");
    static const std::regex number(R"(\b[0-9]+\b)");
    if (auto newline = message.find('\n'); newline != std::string::npos) {
        message.resize(newline);
    }
    message = std::regex_replace(message, object_prefix, "");
    message = std::regex_replace(message, function_name, "F$1");
    message = std::regex_replace(message, compiled_library, "(compiled X, library Y)");
    message = std::regex_replace(message, taken, "address is taken (...)");
    message = std::regex_replace(message, hex, "X");
    message = std::regex_replace(message, number, "N");
    // Names in the middle of the common messages.
    static const std::regex named(
        R"((statics?|the library does not define|its caller|refers to|uses thread-local) [A-Za-z_0-9.:/-]+)");
    return std::regex_replace(message, named, "$1 NAME");
}

std::set<std::string> local_names(const RelocatableObject& object) {
    std::set<std::string> names;
    for (const auto& symbol : object.symbols()) {
        if (symbol.binding == STB_LOCAL && symbol.section != SHN_UNDEF && !symbol.name.empty() &&
            (symbol.type == STT_FUNC || symbol.type == STT_OBJECT || symbol.type == STT_TLS)) {
            names.insert(symbol.name);
        }
    }
    return names;
}

std::string file_of(const RelocatableObject& object) {
    for (const auto& symbol : object.symbols()) {
        if (symbol.type == STT_FILE && !symbol.name.empty()) {
            return symbol.name;
        }
    }
    return {};
}

// The library offset of a function of `object`, through the same lookup the
// builder uses; nullopt when the library lacks it (inlined everywhere).
std::optional<std::uint64_t> library_offset(const LibrarySymbols& symbols,
                                            const LibrarySymbols::FileBlock* block,
                                            const RelocatableObject::Symbol& symbol) {
    if (symbol.binding == STB_LOCAL) {
        if (block == nullptr) {
            return std::nullopt;
        }
        auto local = symbols.local(*block, symbol.name);
        return local ? std::optional(local->offset) : std::nullopt;
    }
    auto global = symbols.global(symbol.name);
    return global && global->has_value() ? std::optional((*global)->offset) : std::nullopt;
}

// Tries every function of one object; fills `verdicts` by library offset.
void probe_object(const std::string& path, const std::string& library,
                  const std::string& debug_symbols,
                  const std::shared_ptr<const OpenedLibrary>& opened, const LibrarySymbols& symbols,
                  std::map<std::uint64_t, Verdict>& verdicts) {
    auto object = RelocatableObject::read(path);
    if (!object) {
        std::cerr << "patchable-probe: " << object.error().message << "\n";
        return;
    }
    auto block = symbols.block_for(file_of(*object), local_names(*object));
    const LibrarySymbols::FileBlock* file_block = block ? *block : nullptr;
    for (const auto& symbol : object->symbols()) {
        if (symbol.type != STT_FUNC || symbol.section == SHN_UNDEF || symbol.name.empty()) {
            continue;
        }
        auto offset = library_offset(symbols, file_block, symbol);
        if (!offset || !verdicts.contains(*offset)) {
            continue;
        }
        Verdict& verdict = verdicts[*offset];
        if (is_cold_part(symbol.name)) {
            verdict.reason = "a cold part: replaced with its parent, never alone";
            continue;
        }
        BuildRequest request;
        request.units = {{path, path}};
        request.library = library;
        request.debug_symbols = debug_symbols;
        request.patch_id = "probe";
        request.force_replace = {symbol.name};
        BuildReport report;
        auto patch = build_patch(request, report, opened);
        if (!patch) {
            verdict.reason = reason_group(patch.error().message);
            verdict.example = patch.error().message.substr(0, patch.error().message.find('\n'));
            if (std::getenv("PROBE_VERBOSE") != nullptr) {
                std::fprintf(stderr, "refused: %s\n", verdict.example.c_str());
            }
            continue;
        }
        auto parsed = parse_patch(*patch, "probe");
        if (!parsed) {
            verdict.reason = "the builder's own output does not parse: " + parsed.error().message;
            continue;
        }
        bool small = false;
        for (const auto& function : parsed->metadata.functions) {
            small = small || function.size < 9;
        }
        verdict.patchable = true;
        verdict.before = report.relaxations.empty() && report.stand_ins.empty() && !small;
        verdict.reason = !report.stand_ins.empty() ? "through its callers (too short for the jump)"
                         : small                   ? "5-8 bytes, no endbr64"
                         : !report.relaxations.empty() ? "linker relaxation accepted"
                                                       : "";
    }
}

void print_fraction(const char* what, std::size_t count, std::size_t total) {
    std::printf("%s: %zu of %zu functions (%.1f%%)\n", what, count, total,
                total == 0 ? 0.0 : 100.0 * static_cast<double>(count) / static_cast<double>(total));
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 4) {
        std::cerr << "usage: patchable-probe LIBRARY DEBUG_SYMBOLS OBJECT...\n";
        return 2;
    }
    std::string library = argv[1];
    std::string debug_symbols = argv[2];
    // 1. The library, opened once, and its functions (symbol table).
    auto opened = open_patch_library(library, debug_symbols);
    if (!opened) {
        std::cerr << "patchable-probe: " << opened.error().message << "\n";
        return 1;
    }
    auto fd = open_read_only(debug_symbols);
    if (!fd) {
        std::cerr << "patchable-probe: " << fd.error().message << "\n";
        return 1;
    }
    auto debug = ElfFile::open(*fd, debug_symbols);
    if (!debug) {
        std::cerr << "patchable-probe: " << debug.error().message << "\n";
        return 1;
    }
    auto table = debug->static_symbols();
    if (!table) {
        std::cerr << "patchable-probe: " << table.error().message << "\n";
        return 1;
    }
    LibrarySymbols symbols = LibrarySymbols::from_table(*table, debug_symbols);
    std::map<std::uint64_t, Verdict> verdicts;
    for (const auto& symbol : *table) {
        if (symbol.type == STT_FUNC && symbol.defined && symbol.size > 0) {
            verdicts[symbol.value].reason = "no C object defines it (assembly or linker-made)";
        }
    }
    // 2. Every function of every object.
    for (int i = 3; i < argc; ++i) {
        probe_object(argv[i], library, debug_symbols, *opened, symbols, verdicts);
    }
    // 3. The figures, over the library's functions the objects define when
    //    only some objects were given (the quick variant), else all.
    std::size_t total = 0, now = 0, before = 0;
    std::map<std::string, std::size_t> refused, gained;
    std::map<std::string, std::string> examples;
    bool sample = std::getenv("PROBE_SAMPLE") != nullptr;
    for (const auto& [offset, verdict] : verdicts) {
        if (sample && verdict.reason.starts_with("no C object")) {
            continue;
        }
        ++total;
        now += verdict.patchable ? 1 : 0;
        before += verdict.before ? 1 : 0;
        if (!verdict.patchable) {
            ++refused[verdict.reason];
            examples.emplace(verdict.reason, verdict.example);
        } else if (!verdict.before) {
            ++gained[verdict.reason];
        }
    }
    print_fraction("patchable before", before, total);
    print_fraction("patchable now", now, total);
    std::printf("newly patchable, by rule:\n");
    for (const auto& [reason, count] : gained) {
        std::printf("  %6zu  %s\n", count, reason.c_str());
    }
    std::vector<std::pair<std::size_t, std::string>> groups;
    for (const auto& [reason, count] : refused) {
        groups.emplace_back(count, reason);
    }
    std::sort(groups.rbegin(), groups.rend());
    std::printf("still refused, by reason:\n");
    for (const auto& [count, reason] : groups) {
        std::printf("  %6zu  %s\n", count, reason.c_str());
        if (!examples[reason].empty()) {
            std::printf("          e.g. %s\n", examples[reason].c_str());
        }
    }
    return 0;
}
