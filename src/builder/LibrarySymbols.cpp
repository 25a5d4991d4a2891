#include "builder/LibrarySymbols.h"

#include <algorithm>

namespace suture {

namespace {

bool is_named_definition(const ElfFile::Symbol& symbol) {
    return symbol.defined && !symbol.name.empty() &&
           (symbol.type == STT_FUNC || symbol.type == STT_OBJECT || symbol.type == STT_TLS ||
            symbol.type == STT_GNU_IFUNC || symbol.type == STT_NOTYPE);
}

std::string join(const std::vector<std::string>& items) {
    std::string text;
    for (const std::string& item : items) {
        text += (text.empty() ? "" : ", ") + item;
    }
    return text;
}

}  // namespace

LibrarySymbols LibrarySymbols::from_table(const std::vector<ElfFile::Symbol>& symbols,
                                          std::string name) {
    LibrarySymbols library;
    library.name_ = std::move(name);
    FileBlock* current = nullptr;
    for (const ElfFile::Symbol& symbol : symbols) {
        if (symbol.type == STT_FILE) {
            // ld ends the per-object blocks with an unnamed file symbol
            // followed by the locals it made from hidden globals.
            if (symbol.name.empty()) {
                current = nullptr;
            } else {
                library.blocks_.push_back(FileBlock{symbol.name, {}});
                current = &library.blocks_.back();
            }
            continue;
        }
        if (!is_named_definition(symbol)) {
            continue;
        }
        Definition definition{symbol.value, symbol.size, symbol.type};
        if (symbol.binding == STB_LOCAL && current != nullptr) {
            // Labels the assembler kept (size 0, no type) are not symbols an
            // object defines on purpose.
            if (symbol.type != STT_NOTYPE) {
                current->locals.emplace(symbol.name, definition);
            }
        } else if (symbol.type != STT_NOTYPE || symbol.binding != STB_LOCAL) {
            auto& definitions = library.globals_[symbol.name];
            if (std::none_of(definitions.begin(), definitions.end(),
                             [&](const Definition& d) { return d.offset == definition.offset; })) {
                definitions.push_back(definition);
            }
        }
    }
    return library;
}

Result<const LibrarySymbols::FileBlock*> LibrarySymbols::block_for(
    const std::string& file, const std::set<std::string>& local_names) const {
    std::vector<const FileBlock*> same_file;
    for (const FileBlock& block : blocks_) {
        if (block.file == file) {
            same_file.push_back(&block);
        }
    }
    if (same_file.empty()) {
        return fail(ErrorCode::not_found,
                    name_ + ": no symbols of source file " + file + " (a different build?)");
    }
    std::vector<const FileBlock*> matching;
    for (const FileBlock* block : same_file) {
        std::set<std::string> names;
        for (const auto& [local_name, definition] : block->locals) {
            names.insert(local_name);
        }
        if (names == local_names) {
            matching.push_back(block);
        }
    }
    if (matching.size() == 1) {
        return matching.front();
    }
    if (matching.empty() && same_file.size() == 1) {
        // The only block of that file, yet its locals differ: the library
        // was not built from this compile. Say which names differ.
        std::vector<std::string> only_object;
        std::vector<std::string> only_library;
        for (const std::string& local_name : local_names) {
            if (!same_file.front()->locals.contains(local_name)) {
                only_object.push_back(local_name);
            }
        }
        for (const auto& [local_name, definition] : same_file.front()->locals) {
            if (!local_names.contains(local_name)) {
                only_library.push_back(local_name);
            }
        }
        return fail(ErrorCode::fingerprint_mismatch,
                    name_ + ": the local symbols of " + file +
                        " differ from the object's (only in the object: " + join(only_object) +
                        "; only in the library: " + join(only_library) + ")");
    }
    return fail(ErrorCode::invalid_argument,
                name_ + ": " +
                    std::to_string(matching.empty() ? same_file.size() : matching.size()) +
                    " objects named " + file + " match the object's local symbols: ambiguous");
}

Result<LibrarySymbols::Definition> LibrarySymbols::local(const FileBlock& block,
                                                         const std::string& name) const {
    auto found = block.locals.find(name);
    if (found == block.locals.end()) {
        return fail(ErrorCode::not_found,
                    name_ + ": " + block.file + " has no local symbol " + name);
    }
    return found->second;
}

Result<std::optional<LibrarySymbols::Definition>> LibrarySymbols::global(
    const std::string& name) const {
    auto found = globals_.find(name);
    if (found == globals_.end()) {
        return std::optional<Definition>{};
    }
    if (found->second.size() > 1) {
        return fail(ErrorCode::invalid_argument, name_ + ": " + name + " is defined at " +
                                                     std::to_string(found->second.size()) +
                                                     " addresses: ambiguous");
    }
    return std::optional<Definition>{found->second.front()};
}

}  // namespace suture
