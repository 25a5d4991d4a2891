#include "builder/PatchBuilder.h"

#include <deque>
#include <map>
#include <set>

#include "base/Files.h"
#include "base/Sha256.h"
#include "builder/LibrarySymbols.h"
#include "builder/ObjectDiff.h"
#include "builder/ObjectWriter.h"
#include "elf/ElfFile.h"
#include "elf/RelocatableObject.h"
#include "patch/PatchFile.h"

namespace suture {

namespace {

using Symbol = RelocatableObject::Symbol;

Result<ElfFile> open_elf(const std::string& path) {
    auto fd = open_read_only(path);
    if (!fd) {
        return tl::unexpected(fd.error());
    }
    return ElfFile::open(*fd, path);
}

// One compiled unit, parsed and diffed.
struct Unit {
    RelocatableObject original;
    RelocatableObject patched;
    SymbolOwners original_owners;
    SymbolOwners patched_owners;
    ObjectChanges changes;
    std::string file;  // the STT_FILE name, as in the library's symbol table
    const LibrarySymbols::FileBlock* block = nullptr;  // found on first use
    std::set<std::size_t> included_sections;           // of the patched object

    Unit(RelocatableObject original_object, RelocatableObject patched_object)
        : original(std::move(original_object)),
          patched(std::move(patched_object)),
          original_owners(original),
          patched_owners(patched) {}
};

std::string source_file_of(const RelocatableObject& object) {
    for (const Symbol& symbol : object.symbols()) {
        if (symbol.type == STT_FILE && !symbol.name.empty()) {
            return symbol.name;
        }
    }
    return {};
}

std::set<std::string> local_names_of(const RelocatableObject& object) {
    std::set<std::string> names;
    for (const Symbol& symbol : object.symbols()) {
        if (symbol.binding == STB_LOCAL && symbol.section != SHN_UNDEF && !symbol.name.empty() &&
            (symbol.type == STT_FUNC || symbol.type == STT_OBJECT || symbol.type == STT_TLS)) {
            names.insert(symbol.name);
        }
    }
    return names;
}

// Where a reference from the patch code goes in the output object.
struct Destination {
    bool included = false;    // into a section of the output
    std::size_t unit = 0;     // included: which unit's section
    std::size_t section = 0;  // included: section index in that unit's patched object
    std::int64_t addend = 0;  // section-relative (included) or symbol-relative (reference)
    std::string reference;    // not included: the undefined symbol's name
};

// The consistency rule (docs/builder.md, "Consistency"). The code of the
// patch is a graph: included sections (one function or one piece of data
// each, with -ffunction-sections -fdata-sections) joined by relocations.
// A replaced function is self-contained when nothing it reaches, through its
// own cold part, new helpers, copied functions or read-only tables, is
// another replaced function, and when no new function is reached from two
// replaced functions (the helper's new behaviour would tie them). Only then
// may a thread finish an old body while others already run new ones.
using Node = std::pair<std::size_t, std::size_t>;  // (unit, section of its patched object)

struct ReplacedNode {
    Node node;
    std::string name;
};

// The nodes that matter to the rule.
struct PatchGraph {
    std::vector<ReplacedNode> replaced;           // not cold parts: those belong to their parent
    std::map<Node, std::string> replaced_names;
    std::map<Node, std::string> new_functions;
    // Global functions of the units by name: another unit refers to them
    // through an undefined symbol, or through the library's PLT entry.
    std::map<std::string, Node> global_functions;
};

class Builder {
  public:
    Builder(const BuildRequest& request, BuildReport& report)
        : request_(request), report_(report) {}

    Result<std::vector<std::byte>> run();

  private:
    Result<void> open_library();
    Result<void> load_units();
    Result<const LibrarySymbols::FileBlock*> block_of(Unit& unit);
    Result<LibrarySymbols::Definition> definition_of(Unit& unit, const Symbol& symbol);
    Result<Destination> destination_of(std::size_t unit_index,
                                       const RelocatableObject::Relocation& relocation,
                                       std::vector<std::pair<std::size_t, std::size_t>>& work);
    Result<std::string> reference_to_external(const std::string& name);
    Result<void> collect_sections();
    Result<void> describe_replacements();
    PatchGraph patch_graph() const;
    std::optional<Node> next_node(const Node& node, const RelocatableObject::Relocation& relocation,
                                  const PatchGraph& graph);
    std::string find_tie(const PatchGraph& graph);
    Result<void> decide_consistency();
    Result<void> record_callbacks();
    Result<void> check_original_bytes(const Unit& unit, const Symbol& symbol,
                                      const LibrarySymbols::Definition& definition);
    std::vector<std::byte> write_object();

    const BuildRequest& request_;
    BuildReport& report_;
    std::optional<ElfFile> library_;
    std::optional<LibrarySymbols> symbols_;
    std::map<std::string, std::uint64_t> plt_;
    // A deque: a Unit's SymbolOwners refer to its own objects, so units
    // must never move once added.
    std::deque<Unit> units_;
    PatchMetadata metadata_;
    // Undefined symbols of the output: reference name -> kept in
    // metadata_.target_references or metadata_.imports.
    std::set<std::string> references_;
    // (unit, patched symbol index) -> name in the output object.
    std::map<std::pair<std::size_t, std::size_t>, std::string> output_names_;
};

Result<void> Builder::open_library() {
    auto library = open_elf(request_.library);
    if (!library) {
        return tl::unexpected(library.error());
    }
    auto debug = open_elf(request_.debug_symbols);
    if (!debug) {
        return tl::unexpected(debug.error());
    }
    auto library_id = library->build_id();
    auto debug_id = debug->build_id();
    if (!library_id || !debug_id) {
        return fail(ErrorCode::bad_format, request_.library + ": no GNU build ID");
    }
    if (*library_id != *debug_id) {
        return fail(ErrorCode::build_id_mismatch, request_.debug_symbols + ": build ID " +
                                                      *debug_id + " is not the library's (" +
                                                      *library_id + "): symbols of another build");
    }
    auto soname = library->soname();
    if (!soname || !soname->has_value()) {
        return fail(ErrorCode::invalid_argument, request_.library + ": no DT_SONAME");
    }
    auto table = debug->static_symbols();
    if (!table) {
        return tl::unexpected(table.error());
    }
    if (table->empty()) {
        return fail(ErrorCode::not_found,
                    request_.debug_symbols + ": no .symtab (give the -dbgsym debug file)");
    }
    auto plt = library->plt_entries();
    if (!plt) {
        return tl::unexpected(plt.error());
    }
    plt_ = std::move(*plt);
    symbols_ = LibrarySymbols::from_table(*table, request_.debug_symbols);
    metadata_.patch_id = request_.patch_id;
    metadata_.level = request_.level;
    metadata_.description = request_.description;
    metadata_.target_build_id = *library_id;
    metadata_.target_soname = **soname;
    library_.emplace(std::move(*library));
    return {};
}

Result<void> Builder::load_units() {
    for (const CompiledUnit& compiled : request_.units) {
        auto original = RelocatableObject::read(compiled.original_object);
        auto patched = RelocatableObject::read(compiled.patched_object);
        if (!original) {
            return tl::unexpected(original.error());
        }
        if (!patched) {
            return tl::unexpected(patched.error());
        }
        Unit& unit = units_.emplace_back(std::move(*original), std::move(*patched));
        unit.file = source_file_of(unit.original);
        auto changes = diff_objects(unit.original, unit.patched);
        if (!changes) {
            return tl::unexpected(changes.error());
        }
        unit.changes = std::move(*changes);
    }
    bool any = false;
    for (const Unit& unit : units_) {
        any = any || !unit.changes.changed_functions.empty() || !unit.changes.new_functions.empty();
    }
    if (!any) {
        return fail(ErrorCode::invalid_argument,
                    "the fix changes no function: nothing to patch (is it a header-only or "
                    "data-only change?)");
    }
    return {};
}

Result<const LibrarySymbols::FileBlock*> Builder::block_of(Unit& unit) {
    if (unit.block == nullptr) {
        auto block = symbols_->block_for(unit.file, local_names_of(unit.original));
        if (!block) {
            return tl::unexpected(block.error());
        }
        unit.block = *block;
    }
    return unit.block;
}

// The library's definition of a symbol the unit defines (by its name in the
// original compile): local ones in the unit's file block, others globally.
Result<LibrarySymbols::Definition> Builder::definition_of(Unit& unit, const Symbol& symbol) {
    if (symbol.binding == STB_LOCAL) {
        auto block = block_of(unit);
        if (!block) {
            return tl::unexpected(block.error());
        }
        return symbols_->local(**block, symbol.name);
    }
    auto definition = symbols_->global(symbol.name);
    if (!definition) {
        return tl::unexpected(definition.error());
    }
    if (!definition->has_value()) {
        return fail(ErrorCode::not_found,
                    request_.debug_symbols + ": the library does not define " + symbol.name);
    }
    return **definition;
}

// A symbol the object leaves undefined: the library's own definition, else
// the library's PLT entry for it, else an import resolved in the target.
Result<std::string> Builder::reference_to_external(const std::string& name) {
    std::string plt_reference = "plt:" + name;
    if (references_.contains(name) || references_.contains(plt_reference)) {
        return references_.contains(name) ? name : plt_reference;
    }
    auto definition = symbols_->global(name);
    if (!definition) {
        return tl::unexpected(definition.error());
    }
    if (definition->has_value()) {
        if ((*definition)->type == STT_GNU_IFUNC) {
            return fail(ErrorCode::unsupported, name + " is an IFUNC of the library itself");
        }
        metadata_.target_references.push_back(TargetReference{name, (*definition)->offset});
        report_.references.push_back(name + " -> " + hex_address((*definition)->offset));
        references_.insert(name);
        return name;
    }
    if (auto entry = plt_.find(name); entry != plt_.end()) {
        metadata_.target_references.push_back(TargetReference{plt_reference, entry->second});
        report_.references.push_back(plt_reference + " -> " + hex_address(entry->second));
        references_.insert(plt_reference);
        return plt_reference;
    }
    metadata_.imports.push_back(Import{name, ""});
    report_.imports.push_back(name);
    references_.insert(name);
    return name;
}

// Decides where one relocation of an included section points in the output,
// queueing sections that must be included too.
Result<Destination> Builder::destination_of(
    std::size_t unit_index, const RelocatableObject::Relocation& relocation,
    std::vector<std::pair<std::size_t, std::size_t>>& work) {
    Unit& unit = units_[unit_index];
    const RelocatableObject& object = unit.patched;
    RelocationTarget target = relocation_target(object, unit.patched_owners, relocation);
    Destination destination;
    auto include = [&](std::size_t section, std::int64_t addend) {
        if (!unit.included_sections.contains(section)) {
            unit.included_sections.insert(section);
            work.emplace_back(unit_index, section);
        }
        destination.included = true;
        destination.unit = unit_index;
        destination.section = section;
        destination.addend = addend;
        return destination;
    };
    if (target.kind == RelocationTarget::Kind::literal) {
        return include(target.section, target.addend);
    }
    if (target.kind == RelocationTarget::Kind::anonymous) {
        return fail(ErrorCode::invalid_argument,
                    object.name() + ": patch code refers to anonymous writable data in " +
                        object.sections()[target.section].name);
    }
    const Symbol& symbol = object.symbols()[target.symbol];
    if (symbol.section == SHN_UNDEF) {
        auto name = reference_to_external(symbol.name);
        if (!name) {
            return tl::unexpected(name.error());
        }
        destination.reference = *name;
        destination.addend = target.addend;
        return destination;
    }
    const RelocatableObject::Section& section = object.sections()[symbol.section];
    auto section_addend = target.addend + static_cast<std::int64_t>(symbol.value);
    if (symbol.type == STT_TLS) {
        return fail(ErrorCode::unsupported,
                    object.name() + ": patch code uses thread-local " + symbol.name);
    }
    if (symbol.type == STT_OBJECT && (section.flags & SHF_WRITE) == 0) {
        return include(symbol.section, section_addend);  // read-only data: a copy
    }
    if (symbol.type == STT_FUNC) {
        bool changed = false;
        for (std::size_t index : unit.changes.changed_functions) {
            changed = changed || index == target.symbol;
        }
        for (std::size_t index : unit.changes.new_functions) {
            changed = changed || index == target.symbol;
        }
        if (changed || is_cold_part(symbol.name)) {
            return include(symbol.section, section_addend);
        }
    }
    // Unchanged code or writable data: the library's own, by offset. The
    // patched compile's symbol has the same name as the original's (it is
    // unchanged), so look it up under that name.
    auto definition = definition_of(unit, symbol);
    if (!definition) {
        if (symbol.type == STT_FUNC && symbol.binding == STB_LOCAL &&
            definition.error().code == ErrorCode::not_found) {
            // Inlined everywhere in the library: carry a copy.
            return include(symbol.section, section_addend);
        }
        return tl::unexpected(definition.error());
    }
    std::string name = symbol.binding == STB_LOCAL ? unit.file + ":" + symbol.name : symbol.name;
    if (!references_.contains(name)) {
        references_.insert(name);
        metadata_.target_references.push_back(TargetReference{name, definition->offset});
        report_.references.push_back(name + " -> " + hex_address(definition->offset));
    }
    destination.reference = name;
    destination.addend = target.addend;
    return destination;
}

Result<void> Builder::collect_sections() {
    std::vector<std::pair<std::size_t, std::size_t>> work;
    for (std::size_t u = 0; u < units_.size(); ++u) {
        Unit& unit = units_[u];
        for (const auto* list : {&unit.changes.changed_functions, &unit.changes.new_functions}) {
            for (std::size_t index : *list) {
                std::size_t section = unit.patched.symbols()[index].section;
                if (unit.included_sections.insert(section).second) {
                    work.emplace_back(u, section);
                }
            }
        }
    }
    // Follow every relocation of every included section (this also checks
    // that each one resolves) until nothing new is included.
    while (!work.empty()) {
        auto [u, section] = work.back();
        work.pop_back();
        for (const auto& relocation : units_[u].patched.relocations_for(section)) {
            auto destination = destination_of(u, relocation, work);
            if (!destination) {
                return tl::unexpected(destination.error());
            }
        }
    }
    return {};
}

Result<void> Builder::check_original_bytes(const Unit& unit, const Symbol& symbol,
                                           const LibrarySymbols::Definition& definition) {
    auto file_offset = library_->offset_of_address(definition.offset);
    if (!file_offset) {
        return fail(ErrorCode::bad_format,
                    request_.library + ": " + symbol.name + " is not inside a loaded segment");
    }
    auto library_bytes = library_->bytes_at(*file_offset, definition.size);
    if (!library_bytes) {
        return tl::unexpected(library_bytes.error());
    }
    const auto& section = unit.original.sections()[symbol.section];
    if (symbol.value + symbol.size > section.bytes.size()) {
        return fail(ErrorCode::bad_format,
                    unit.original.name() + ": " + symbol.name + " lies outside its section");
    }
    std::vector<bool> in_field(symbol.size, false);
    for (const auto& relocation : unit.original.relocations_for(symbol.section)) {
        std::size_t width =
            relocation.type == R_X86_64_64 || relocation.type == R_X86_64_PC64 ? 8 : 4;
        for (std::size_t k = 0; k < width; ++k) {
            std::uint64_t at = relocation.offset + k;
            if (at >= symbol.value && at < symbol.value + symbol.size) {
                in_field[at - symbol.value] = true;
            }
        }
    }
    std::size_t differing = 0;
    for (std::uint64_t k = 0; k < symbol.size; ++k) {
        if (!in_field[k] && section.bytes[symbol.value + k] != (*library_bytes)[k]) {
            ++differing;
        }
    }
    if (differing != 0) {
        return fail(ErrorCode::fingerprint_mismatch,
                    unit.original.name() + ": " + symbol.name + ": " + std::to_string(differing) +
                        " bytes outside relocations differ from the library's: the unit was "
                        "not compiled with the package build's flags");
    }
    return {};
}

Result<void> Builder::describe_replacements() {
    for (std::size_t u = 0; u < units_.size(); ++u) {
        Unit& unit = units_[u];
        for (std::size_t index : unit.changes.changed_functions) {
            const Symbol& patched = unit.patched.symbols()[index];
            if (is_cold_part(patched.name)) {
                continue;  // entered only from its parent, which is replaced
            }
            std::size_t original_index = unit.changes.original_of.at(index);
            const Symbol& original = unit.original.symbols()[original_index];
            auto definition = definition_of(unit, original);
            if (!definition) {
                return tl::unexpected(definition.error());
            }
            if (definition->size != original.size) {
                return fail(ErrorCode::fingerprint_mismatch,
                            unit.original.name() + ": " + original.name + " is " +
                                std::to_string(original.size) + " bytes, the library's " +
                                std::to_string(definition->size) +
                                ": the unit was not compiled with the package build's flags");
            }
            if (auto same = check_original_bytes(unit, original, *definition); !same) {
                return tl::unexpected(same.error());
            }
            auto file_offset = library_->offset_of_address(definition->offset);
            auto bytes = library_->bytes_at(*file_offset, definition->size);
            if (!bytes) {
                return tl::unexpected(bytes.error());
            }
            metadata_.functions.push_back(ReplacedFunction{original.name, definition->offset,
                                                           definition->size, sha256_hex(*bytes),
                                                           output_names_.at({u, index})});
            report_.replaced.push_back(original.name + " (" + unit.file + ") at " +
                                       hex_address(definition->offset) + ", " +
                                       std::to_string(definition->size) + " bytes");
        }
        for (std::size_t index : unit.changes.new_functions) {
            report_.added.push_back(unit.patched.symbols()[index].name + " (" + unit.file + ")");
        }
    }
    return {};
}

// How the instruction at `offset` of `bytes` uses the 4-byte field there:
// the opcode byte before a rel32 field says call (e8) or jump (e9, 0f 8x).
std::string use_of_field(std::span<const std::byte> bytes, std::uint64_t offset) {
    if (offset == 0 || offset > bytes.size()) {
        return "refers to";
    }
    auto opcode = std::to_integer<unsigned>(bytes[offset - 1]);
    if (opcode == 0xe8) {
        return "calls";
    }
    bool conditional = offset >= 2 && std::to_integer<unsigned>(bytes[offset - 2]) == 0x0f &&
                       (opcode & 0xf0) == 0x80;
    if (opcode == 0xe9 || conditional) {
        return "jumps to";
    }
    return "takes the address of";
}

// "foo.cold", "table": what a node of the graph holds, for messages.
std::string node_name(const Unit& unit, std::size_t section) {
    std::size_t owner = unit.patched_owners.first_in(section);
    return owner != 0 ? unit.patched.symbols()[owner].name : unit.patched.sections()[section].name;
}

PatchGraph Builder::patch_graph() const {
    PatchGraph graph;
    for (std::size_t u = 0; u < units_.size(); ++u) {
        const auto& symbols = units_[u].patched.symbols();
        for (std::size_t index : units_[u].changes.changed_functions) {
            if (!is_cold_part(symbols[index].name)) {
                graph.replaced.push_back({{u, symbols[index].section}, symbols[index].name});
                graph.replaced_names[{u, symbols[index].section}] = symbols[index].name;
            }
        }
        for (std::size_t index : units_[u].changes.new_functions) {
            graph.new_functions[{u, symbols[index].section}] = symbols[index].name;
        }
        for (const auto* list :
             {&units_[u].changes.changed_functions, &units_[u].changes.new_functions}) {
            for (std::size_t index : *list) {
                if (symbols[index].binding != STB_LOCAL) {
                    graph.global_functions[symbols[index].name] = {u, symbols[index].section};
                }
            }
        }
    }
    return graph;
}

// The node a relocation of `node` leads to, if it is code or data of the
// patch (else nullopt: the library's unchanged code or data).
std::optional<Node> Builder::next_node(const Node& node,
                                       const RelocatableObject::Relocation& relocation,
                                       const PatchGraph& graph) {
    std::vector<Node> no_more_work;
    // Every destination was resolved once already in collect_sections.
    Destination destination = *destination_of(node.first, relocation, no_more_work);
    if (destination.included) {
        return Node{destination.unit, destination.section};
    }
    std::string name = destination.reference;
    if (name.starts_with("plt:")) {
        name = name.substr(4);
    }
    auto global = graph.global_functions.find(name);
    if (global == graph.global_functions.end()) {
        return std::nullopt;
    }
    return global->second;
}

// What ties the replaced functions together ("A calls B, both replaced"),
// or empty when nothing does: from each replaced function, walks everything
// it reaches without passing through another replaced function.
std::string Builder::find_tie(const PatchGraph& graph) {
    std::map<Node, std::size_t> first_user_of_new;  // new function -> index in graph.replaced
    for (std::size_t r = 0; r < graph.replaced.size(); ++r) {
        const ReplacedNode& from = graph.replaced[r];
        std::set<Node> seen{from.node};
        std::vector<std::pair<Node, std::string>> work{{from.node, ""}};  // node, reached via
        while (!work.empty()) {
            auto [node, via] = work.back();
            work.pop_back();
            const Unit& unit = units_[node.first];
            for (const auto& relocation : unit.patched.relocations_for(node.second)) {
                std::optional<Node> next = next_node(node, relocation, graph);
                if (!next || *next == from.node) {
                    continue;
                }
                if (auto other = graph.replaced_names.find(*next);
                    other != graph.replaced_names.end()) {
                    std::string how =
                        via.empty() ? use_of_field(unit.patched.sections()[node.second].bytes,
                                                   relocation.offset)
                                    : "reaches";
                    return from.name + " " + how + " " + other->second +
                           (via.empty() ? "" : " through " + via) + ", both replaced";
                }
                if (auto helper = graph.new_functions.find(*next);
                    helper != graph.new_functions.end()) {
                    auto [user, first] = first_user_of_new.emplace(*next, r);
                    if (!first && user->second != r) {
                        return graph.replaced[user->second].name + " and " + from.name +
                               " share the new function " + helper->second;
                    }
                }
                if (seen.insert(*next).second) {
                    work.emplace_back(*next, via.empty()
                                                 ? node_name(units_[next->first], next->second)
                                                 : via);
                }
            }
        }
    }
    return {};
}

Result<void> Builder::decide_consistency() {
    // 1. The rule.
    PatchGraph graph = patch_graph();
    std::string tie = find_tie(graph);
    Consistency decided = tie.empty() ? Consistency::entry : Consistency::strict;
    if (tie.empty()) {
        report_.consistency_reason = graph.replaced.size() == 1
                                         ? "one function"
                                         : std::to_string(graph.replaced.size()) +
                                               " independent functions";
    } else {
        report_.consistency_reason = tie;
    }
    // 2. The author's request, held against the rule.
    if (request_.consistency == Consistency::entry && decided == Consistency::strict) {
        return fail(ErrorCode::invalid_argument,
                    "consistency \"entry\" was asked for, but the replaced functions are not "
                    "self-contained: " +
                        tie);
    }
    if (request_.consistency == Consistency::strict && decided == Consistency::entry) {
        decided = Consistency::strict;
        report_.consistency_reason = "asked for by the patch's author (the rule allows entry: " +
                                     report_.consistency_reason + ")";
    }
    metadata_.consistency = decided;
    report_.consistency = decided;
    return {};
}

// Step 6: the callbacks of the fix, by the macros' symbol names, under
// their names in the output object (new functions, so already included).
Result<void> Builder::record_callbacks() {
    PatchCallbacks& callbacks = metadata_.callbacks;
    for (auto [kind, slot] : {std::pair{"pre_apply", &callbacks.pre_apply},
                              std::pair{"post_apply", &callbacks.post_apply},
                              std::pair{"pre_revert", &callbacks.pre_revert},
                              std::pair{"post_revert", &callbacks.post_revert}}) {
        std::string wanted = callback_symbol(kind);
        for (std::size_t u = 0; u < units_.size(); ++u) {
            const auto& symbols = units_[u].patched.symbols();
            for (std::size_t i = 1; i < symbols.size(); ++i) {
                if (symbols[i].name != wanted || symbols[i].section == SHN_UNDEF) {
                    continue;
                }
                auto name = output_names_.find({u, i});
                if (symbols[i].type != STT_FUNC || name == output_names_.end()) {
                    return fail(ErrorCode::invalid_argument,
                                units_[u].patched.name() + ": " + wanted +
                                    " is not a new function of the fix (declare it with "
                                    "SUTURE_" + std::string(kind) + " of suture/patch.h)");
                }
                if (!slot->empty()) {
                    return fail(ErrorCode::invalid_argument,
                                units_[u].patched.name() + ": a second " + std::string(kind) +
                                    " callback (one per patch)");
                }
                *slot = name->second;
                report_.callbacks.push_back(std::string(kind) + " (" + units_[u].file + ")");
            }
        }
    }
    return {};
}

std::vector<std::byte> Builder::write_object() {
    ObjectWriter writer;
    // Output section index and section symbol per (unit, patched section).
    std::map<std::pair<std::size_t, std::size_t>, std::size_t> output_section;
    std::map<std::pair<std::size_t, std::size_t>, std::size_t> section_symbol;
    for (std::size_t u = 0; u < units_.size(); ++u) {
        for (std::size_t index : units_[u].included_sections) {
            const auto& section = units_[u].patched.sections()[index];
            std::uint64_t entry_size = (section.flags & SHF_MERGE) != 0 ? section.alignment : 0;
            output_section[{u, index}] = writer.add_section(
                section.name, section.type, section.flags, section.alignment, entry_size,
                std::vector<std::byte>(section.bytes.begin(), section.bytes.end()));
        }
    }
    for (const auto& [key, index] : output_section) {
        section_symbol[key] = writer.add_symbol("", STT_SECTION, STB_LOCAL, index, 0, 0);
    }
    for (const auto& [key, name] : output_names_) {
        const Symbol& symbol = units_[key.first].patched.symbols()[key.second];
        writer.add_symbol(name, symbol.type, STB_LOCAL,
                          output_section.at({key.first, symbol.section}), symbol.value,
                          symbol.size);
    }
    std::map<std::string, std::size_t> undefined;
    for (const std::string& name : references_) {
        undefined[name] = writer.add_symbol(name, STT_NOTYPE, STB_GLOBAL, 0, 0, 0);
    }
    std::vector<std::pair<std::size_t, std::size_t>> no_more_work;
    for (const auto& [key, index] : output_section) {
        for (const auto& relocation : units_[key.first].patched.relocations_for(key.second)) {
            // Every destination was resolved once already in collect_sections.
            Destination destination = *destination_of(key.first, relocation, no_more_work);
            ObjectWriter::Relocation out{relocation.offset, relocation.type, 0, destination.addend};
            out.symbol = destination.included
                             ? section_symbol.at({destination.unit, destination.section})
                             : undefined.at(destination.reference);
            writer.add_relocation(index, out);
        }
    }
    return writer.write();
}

Result<std::vector<std::byte>> Builder::run() {
    if (auto opened = open_library(); !opened) {
        return tl::unexpected(opened.error());
    }
    if (auto loaded = load_units(); !loaded) {
        return tl::unexpected(loaded.error());
    }
    if (auto collected = collect_sections(); !collected) {
        return tl::unexpected(collected.error());
    }
    // Name every function and object of the included sections once, unique
    // across units (static functions of two files may share a name).
    std::set<std::string> taken(references_.begin(), references_.end());
    for (std::size_t u = 0; u < units_.size(); ++u) {
        const auto& symbols = units_[u].patched.symbols();
        for (std::size_t i = 1; i < symbols.size(); ++i) {
            const Symbol& symbol = symbols[i];
            if (symbol.name.empty() || symbol.section == SHN_UNDEF || symbol.is_absolute ||
                (symbol.type != STT_FUNC && symbol.type != STT_OBJECT) ||
                !units_[u].included_sections.contains(symbol.section)) {
                continue;
            }
            std::string name = symbol.name;
            for (int n = 1; taken.contains(name); ++n) {
                name = symbol.name + ".patch" + std::to_string(n);
            }
            taken.insert(name);
            output_names_[{u, i}] = name;
        }
    }
    if (auto described = describe_replacements(); !described) {
        return tl::unexpected(described.error());
    }
    if (auto decided = decide_consistency(); !decided) {
        return tl::unexpected(decided.error());
    }
    if (auto recorded = record_callbacks(); !recorded) {
        return tl::unexpected(recorded.error());
    }
    std::vector<std::byte> object = write_object();
    std::vector<std::byte> patch = write_patch(metadata_, object);
    // Check our own output with the parser the injector uses.
    if (auto parsed = parse_patch(patch, request_.patch_id); !parsed) {
        return tl::unexpected(parsed.error());
    }
    return patch;
}

}  // namespace

Result<std::vector<std::byte>> build_patch(const BuildRequest& request, BuildReport& report) {
    if (!initialise_libelf()) {
        return fail(ErrorCode::unsupported, "libelf: " + libelf_message());
    }
    Builder builder(request, report);
    return builder.run();
}

}  // namespace suture
