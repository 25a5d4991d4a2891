#include "builder/PatchBuilder.h"

#include <algorithm>
#include <deque>
#include <map>
#include <set>

#include "base/Files.h"
#include "base/Sha256.h"
#include "builder/LibrarySymbols.h"
#include "builder/LinkerRelaxation.h"
#include "builder/ObjectDiff.h"
#include "builder/ObjectWriter.h"
#include "builder/ShortFunctions.h"
#include "elf/ElfFile.h"
#include "elf/RelocatableObject.h"
#include "patch/EntryJump.h"
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
    std::optional<RelocatableObject> single_text;  // CompiledUnit::single_text_object
    SymbolOwners original_owners;
    SymbolOwners patched_owners;
    ObjectChanges changes;
    std::string file;  // the STT_FILE name, as in the library's symbol table
    const LibrarySymbols::FileBlock* block = nullptr;  // found on first use
    std::set<std::size_t> included_sections;           // of the patched object
    // Changed functions too short for the entry jump, carried as new code
    // and reached through their replaced callers (patched symbol indices).
    std::set<std::size_t> short_functions;

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
    Builder(const BuildRequest& request, BuildReport& report,
            std::shared_ptr<const OpenedLibrary> opened)
        : request_(request), report_(report), opened_(std::move(opened)) {}

    Result<std::vector<std::byte>> run();

  private:
    Result<void> open_library();
    Result<void> load_units();
    void force_replacements(Unit& unit);
    Result<std::optional<std::uint64_t>> too_short_for_jump(Unit& unit, const Symbol& original);
    Result<void> patch_short_functions_through_callers();
    Result<const LibrarySymbols::FileBlock*> block_of(Unit& unit);
    Result<LibrarySymbols::Definition> definition_of(Unit& unit, const Symbol& symbol);
    Result<Destination> destination_of(std::size_t unit_index,
                                       const RelocatableObject::Relocation& relocation,
                                       std::vector<std::pair<std::size_t, std::size_t>>& work);
    Result<std::string> reference_to_external(const std::string& name);
    Result<void> collect_sections();
    Result<void> load_runtime();
    std::optional<std::size_t> runtime_function(const std::string& name) const;
    std::optional<std::pair<std::size_t, std::size_t>> new_global_function(
        const std::string& name) const;
    Result<void> describe_replacements();
    PatchGraph patch_graph() const;
    std::optional<Node> next_node(const Node& node, const RelocatableObject::Relocation& relocation,
                                  const PatchGraph& graph);
    std::string find_tie(const PatchGraph& graph);
    Result<void> decide_consistency();
    Result<void> record_callbacks();
    Result<void> prove_original(const Unit& unit, const Symbol& original,
                                const LibrarySymbols::Definition& definition);
    Result<void> check_original_bytes(const RelocatableObject& object, const Symbol& symbol,
                                      const LibrarySymbols::Definition& definition);
    std::vector<std::byte> write_object();

    const BuildRequest& request_;
    BuildReport& report_;
    std::shared_ptr<const OpenedLibrary> opened_;
    const ElfFile* library_ = nullptr;
    const LibrarySymbols* symbols_ = nullptr;
    const std::map<std::string, std::uint64_t>* plt_ = nullptr;
    // A deque: a Unit's SymbolOwners refer to its own objects, so units
    // must never move once added.
    std::deque<Unit> units_;
    PatchMetadata metadata_;
    // Undefined symbols of the output: reference name -> kept in
    // metadata_.target_references or metadata_.imports.
    std::set<std::string> references_;
    // (unit, patched symbol index) -> name in the output object.
    std::map<std::pair<std::size_t, std::size_t>, std::string> output_names_;
    // The shadow runtime's unit (the last one), if the request names it.
    std::optional<std::size_t> runtime_unit_;
};

}  // namespace

struct OpenedLibrary {
    ElfFile library;
    LibrarySymbols symbols;
    std::map<std::string, std::uint64_t> plt;
    std::string build_id;
    std::string soname;
    std::set<std::string> exported;  // defined in .dynsym: callable from outside
};

Result<std::shared_ptr<const OpenedLibrary>> open_patch_library(const std::string& library_path,
                                                                const std::string& debug_symbols) {
    if (!initialise_libelf()) {
        return fail(ErrorCode::unsupported, "libelf: " + libelf_message());
    }
    auto library = open_elf(library_path);
    if (!library) {
        return tl::unexpected(library.error());
    }
    auto debug = open_elf(debug_symbols);
    if (!debug) {
        return tl::unexpected(debug.error());
    }
    auto library_id = library->build_id();
    auto debug_id = debug->build_id();
    if (!library_id || !debug_id) {
        return fail(ErrorCode::bad_format, library_path + ": no GNU build ID");
    }
    if (*library_id != *debug_id) {
        return fail(ErrorCode::build_id_mismatch, debug_symbols + ": build ID " + *debug_id +
                                                      " is not the library's (" + *library_id +
                                                      "): symbols of another build");
    }
    auto soname = library->soname();
    if (!soname || !soname->has_value()) {
        return fail(ErrorCode::invalid_argument, library_path + ": no DT_SONAME");
    }
    auto table = debug->static_symbols();
    if (!table) {
        return tl::unexpected(table.error());
    }
    if (table->empty()) {
        return fail(ErrorCode::not_found,
                    debug_symbols + ": no .symtab (give the -dbgsym debug file)");
    }
    auto plt = library->plt_entries();
    if (!plt) {
        return tl::unexpected(plt.error());
    }
    auto dynamic = library->dynamic_symbols();
    if (!dynamic) {
        return tl::unexpected(dynamic.error());
    }
    std::set<std::string> exported;
    for (const auto& symbol : *dynamic) {
        if (symbol.defined) {
            exported.insert(symbol.name);
        }
    }
    return std::make_shared<const OpenedLibrary>(
        OpenedLibrary{std::move(*library), LibrarySymbols::from_table(*table, debug_symbols),
                      std::move(*plt), *library_id, **soname, std::move(exported)});
}

namespace {

// The runtime becomes one more unit, original and patched alike, so it
// changes nothing by itself; only what the fix's code calls is included.
Result<void> Builder::load_runtime() {
    if (request_.runtime_object.empty()) {
        return {};
    }
    auto first = RelocatableObject::read(request_.runtime_object);
    auto second = RelocatableObject::read(request_.runtime_object);
    if (!first || !second) {
        return tl::unexpected(!first ? first.error() : second.error());
    }
    Unit& unit = units_.emplace_back(std::move(*first), std::move(*second));
    unit.file = source_file_of(unit.original);
    runtime_unit_ = units_.size() - 1;
    return {};
}

// The runtime's global function `name` (its symbol index), if it has one.
std::optional<std::size_t> Builder::runtime_function(const std::string& name) const {
    if (!runtime_unit_) {
        return std::nullopt;
    }
    const auto& symbols = units_[*runtime_unit_].patched.symbols();
    for (std::size_t i = 1; i < symbols.size(); ++i) {
        if (symbols[i].name == name && symbols[i].type == STT_FUNC &&
            symbols[i].binding != STB_LOCAL && symbols[i].section != SHN_UNDEF) {
            return i;
        }
    }
    return std::nullopt;
}

// A global function that the fix adds in one of its units, named `name`:
// (unit, symbol index of its patched object). Another unit of the fix that
// calls it leaves it undefined, and the library has no definition of it.
std::optional<std::pair<std::size_t, std::size_t>> Builder::new_global_function(
    const std::string& name) const {
    for (std::size_t u = 0; u < units_.size(); ++u) {
        if (runtime_unit_ && u == *runtime_unit_) {
            continue;
        }
        const auto& symbols = units_[u].patched.symbols();
        for (std::size_t index : units_[u].changes.new_functions) {
            if (symbols[index].name == name && symbols[index].binding != STB_LOCAL) {
                return std::pair{u, index};
            }
        }
    }
    return std::nullopt;
}

Result<void> Builder::open_library() {
    if (!opened_) {
        auto opened = open_patch_library(request_.library, request_.debug_symbols);
        if (!opened) {
            return tl::unexpected(opened.error());
        }
        opened_ = std::move(*opened);
    }
    library_ = &opened_->library;
    symbols_ = &opened_->symbols;
    plt_ = &opened_->plt;
    metadata_.patch_id = request_.patch_id;
    metadata_.level = request_.level;
    metadata_.description = request_.description;
    metadata_.target_build_id = opened_->build_id;
    metadata_.target_soname = opened_->soname;
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
        if (!compiled.single_text_object.empty()) {
            auto single_text = RelocatableObject::read(compiled.single_text_object);
            if (!single_text) {
                return tl::unexpected(single_text.error());
            }
            unit.single_text = std::move(*single_text);
        }
        unit.file = source_file_of(unit.original);
        auto changes = diff_objects(unit.original, unit.patched);
        if (!changes) {
            return tl::unexpected(changes.error());
        }
        unit.changes = std::move(*changes);
        force_replacements(unit);
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

// request.force_replace: functions the fix leaves unchanged, replaced all
// the same (the patchable-fraction probe).
void Builder::force_replacements(Unit& unit) {
    const auto& symbols = unit.patched.symbols();
    for (const std::string& name : request_.force_replace) {
        for (std::size_t i = 1; i < symbols.size(); ++i) {
            if (symbols[i].name != name || symbols[i].type != STT_FUNC ||
                symbols[i].section == SHN_UNDEF) {
                continue;
            }
            for (std::size_t o = 1; o < unit.original.symbols().size(); ++o) {
                const Symbol& original = unit.original.symbols()[o];
                bool listed = unit.changes.original_of.contains(i);
                if (!listed && original.name == name && original.type == STT_FUNC &&
                    original.section != SHN_UNDEF) {
                    unit.changes.changed_functions.push_back(i);
                    unit.changes.original_of[i] = o;
                }
            }
        }
    }
}

// The library's size of a replaced function when the entry jump does not fit
// in it (patch/EntryJump.h), else nullopt. Errors: not in the library, or
// its bytes unreadable (describe_replacements says the same later).
Result<std::optional<std::uint64_t>> Builder::too_short_for_jump(Unit& unit,
                                                                 const Symbol& original) {
    auto definition = definition_of(unit, original);
    if (!definition) {
        return tl::unexpected(definition.error());
    }
    auto file_offset = library_->offset_of_address(definition->offset);
    if (!file_offset) {
        return fail(ErrorCode::bad_format,
                    request_.library + ": " + original.name + " is not inside a loaded segment");
    }
    auto bytes = library_->bytes_at(*file_offset, definition->size);
    if (!bytes) {
        return tl::unexpected(bytes.error());
    }
    if (holds_entry_jump(*bytes, definition->size)) {
        return std::nullopt;
    }
    return definition->size;
}

// Step 1b: a changed function too short for the entry jump is replaced
// through its callers (ShortFunctions.h): each caller becomes a replaced
// function (calling the new copy), the short one travels as new code. A
// caller may be short itself, hence the work list.
Result<void> Builder::patch_short_functions_through_callers() {
    for (std::size_t u = 0; u < units_.size(); ++u) {
        Unit& unit = units_[u];
        auto& changed = unit.changes.changed_functions;
        for (std::size_t next = 0; next < changed.size(); ++next) {
            std::size_t index = changed[next];
            const Symbol& patched = unit.patched.symbols()[index];
            if (is_cold_part(patched.name)) {
                continue;
            }
            const Symbol& original = unit.original.symbols()[unit.changes.original_of.at(index)];
            auto size = too_short_for_jump(unit, original);
            if (!size || !*size) {
                continue;  // fits, or describe_replacements reports why not
            }
            std::string subject = unit.original.name() + ": " + original.name + " is " +
                                  std::to_string(**size) + " bytes, too short for the entry jump";
            DirectCallers found = direct_callers(unit.original, unit.original_owners,
                                                 unit.changes.original_of.at(index));
            if (found.global) {
                found.uncoverable =
                    opened_->exported.contains(original.name)
                        ? "it is exported by " + opened_->soname +
                              ", so programs and other libraries call it where it is"
                        : "it is global in its file (hidden in the library), so other files of "
                          "the library call it where it is, and the fix's units cannot show "
                          "every such call";
            }
            if (!found.uncoverable.empty()) {
                return fail(ErrorCode::unsupported,
                            subject + ", and it cannot be patched through its callers: " +
                                found.uncoverable);
            }
            std::string callers;
            for (std::size_t caller : found.callers) {
                const std::string& name = unit.original.symbols()[caller].name;
                std::size_t counterpart = 0;
                for (std::size_t i = 1; i < unit.patched.symbols().size() && !counterpart; ++i) {
                    const Symbol& candidate = unit.patched.symbols()[i];
                    if (candidate.name == name && candidate.type == STT_FUNC &&
                        candidate.section != SHN_UNDEF) {
                        counterpart = i;
                    }
                }
                // GCC numbers clones per compile (foo.constprop.0 may be .1
                // in the fixed compile): the normalized name, if unique.
                std::size_t alike = 0;
                for (std::size_t i = 1; i < unit.patched.symbols().size() && !counterpart; ++i) {
                    const Symbol& candidate = unit.patched.symbols()[i];
                    if (candidate.type == STT_FUNC && candidate.section != SHN_UNDEF &&
                        normalized_symbol_name(candidate.name) == normalized_symbol_name(name)) {
                        alike = alike == 0 ? i : SIZE_MAX;
                    }
                }
                if (counterpart == 0 && alike != 0 && alike != SIZE_MAX) {
                    counterpart = alike;
                }
                if (counterpart == 0) {
                    return fail(ErrorCode::unsupported,
                                subject + ": its caller " + name + " is gone from the fix");
                }
                if (!unit.changes.original_of.contains(counterpart)) {
                    changed.push_back(counterpart);
                    unit.changes.original_of[counterpart] = caller;
                }
                callers += (callers.empty() ? "" : ", ") + name;
            }
            // The short function: new code the replaced callers call.
            changed.erase(changed.begin() + static_cast<std::ptrdiff_t>(next--));
            unit.changes.original_of.erase(index);
            unit.changes.new_functions.push_back(index);
            unit.short_functions.insert(index);
            report_.stand_ins.push_back(
                original.name + " (" + std::to_string(**size) + " bytes): " +
                (callers.empty() ? "never called, nothing to redirect" : "through " + callers));
        }
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
    if (auto entry = plt_->find(name); entry != plt_->end()) {
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

// Is symbol `index` of the unit's patched object a variable the fix adds?
bool is_new_variable(const Unit& unit, std::size_t index) {
    const auto& added = unit.changes.new_variables;
    return std::find(added.begin(), added.end(), index) != added.end();
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
    auto include_from = [&](std::size_t from, std::size_t section, std::int64_t addend) {
        if (!units_[from].included_sections.contains(section)) {
            units_[from].included_sections.insert(section);
            work.emplace_back(from, section);
        }
        destination.included = true;
        destination.unit = from;
        destination.section = section;
        destination.addend = addend;
        return destination;
    };
    auto include = [&](std::size_t section, std::int64_t addend) {
        return include_from(unit_index, section, addend);
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
    if (symbol.section == SHN_UNDEF && (symbol.name == shadow_table_symbol ||
                                        symbol.name == got_symbol)) {
        // The shadow runtime's table: the injector resolves it in the target.
        references_.insert(symbol.name);
        destination.reference = symbol.name;
        destination.addend = target.addend;
        return destination;
    }
    if (symbol.section == SHN_UNDEF) {
        if (auto runtime = runtime_function(symbol.name)) {
            // suture_shadow_* (suture/patch.h): linked from the runtime.
            const Symbol& defined = units_[*runtime_unit_].patched.symbols()[*runtime];
            return include_from(*runtime_unit_, defined.section,
                                target.addend + static_cast<std::int64_t>(defined.value));
        }
        if (auto added = new_global_function(symbol.name)) {
            // A new function of another unit of the fix: it travels in the patch.
            const Symbol& defined = units_[added->first].patched.symbols()[added->second];
            return include_from(added->first, defined.section,
                                target.addend + static_cast<std::int64_t>(defined.value));
        }
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
    if (runtime_unit_ && unit_index == *runtime_unit_) {
        return include(symbol.section, section_addend);  // the runtime's own: all of it new
    }
    if (symbol.type == STT_OBJECT && (section.flags & SHF_WRITE) == 0) {
        return include(symbol.section, section_addend);  // read-only data: a copy
    }
    if (is_new_variable(unit, target.symbol)) {
        // A new static (.data, .bss, .data.rel.ro): the patch's own, in its
        // data region, fresh for each level.
        return include(symbol.section, section_addend);
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

// Why a function's compiled size is not the library's. A few bytes (3 per
// jump; 27 measured for padding) are typically jumps or alignment padding
// the package build's assembler sized otherwise (one .text for the whole
// file, see LibraryComparison::jump_sized_differently): on libcrypto 3.0.20,
// X509V3_parse_list has the same 179 instructions, 8 bytes apart.
std::string size_mismatch_cause(std::uint64_t compiled, std::uint64_t library) {
    std::uint64_t apart = compiled > library ? compiled - library : library - compiled;
    if (apart <= 32) {
        return "the unit was not compiled with the package build's flags, or the package "
               "build's assembler sized jumps or alignment padding otherwise in the file's "
               "single .text section than a compile with -ffunction-sections can";
    }
    return "the unit was not compiled with the package build's flags";
}

// Why a function's compiled bytes are not the library's (compare_with_library
// found bytes that no relocation field and no linker relaxation explain).
std::string library_mismatch_cause(const LibraryComparison& comparison, std::byte compiled,
                                   std::byte library) {
    auto hex_byte = [](std::byte value) {
        auto byte = static_cast<unsigned char>(value);
        return to_hex(&byte, 1);
    };
    std::string where = std::to_string(comparison.differing) +
                        " bytes outside relocations differ from the library's, the first at +" +
                        hex_address(*comparison.first) + " (compiled " + hex_byte(compiled) +
                        ", library " + hex_byte(library) + ")";
    if (comparison.jump_sized_differently) {
        return where +
               ": a jump is short in one and near in the other: the package build's assembler "
               "sized it within the file's single .text section (a jump to a neighbouring "
               "function, other alignment padding), which a compile with -ffunction-sections "
               "cannot reproduce; this function cannot be proven equal to the library's";
    }
    if (comparison.next_to_relocation) {
        return where + ": in the instruction of an " +
               relocation_type_name(*comparison.next_to_relocation) +
               " relocation, rewritten in a way the linker's documented relaxations do not "
               "explain (another linker, or assembler options of its own?)";
    }
    return where + ": the unit was not compiled with the package build's flags";
}

// The library's function is what the unit's source compiles to: the
// -ffunction-sections compile of it has the library's size and bytes, or,
// when that compile sized a jump or padding otherwise (the package build
// had one .text for the whole file), the single-.text compile has them.
Result<void> Builder::prove_original(const Unit& unit, const Symbol& original,
                                     const LibrarySymbols::Definition& definition) {
    Result<void> proven = {};
    if (definition.size != original.size) {
        proven = fail(ErrorCode::fingerprint_mismatch,
                      unit.original.name() + ": " + original.name + " is " +
                          std::to_string(original.size) + " bytes, the library's " +
                          std::to_string(definition.size) + ": " +
                          size_mismatch_cause(original.size, definition.size));
    } else {
        proven = check_original_bytes(unit.original, original, definition);
    }
    if (proven || !unit.single_text) {
        return proven;
    }
    const Symbol* alone = nullptr;
    for (const Symbol& symbol : unit.single_text->symbols()) {
        if (symbol.name == original.name && symbol.type == STT_FUNC &&
            symbol.binding == original.binding && symbol.section != SHN_UNDEF) {
            alone = &symbol;
        }
    }
    std::string also = " (and the single-.text compile " + unit.single_text->name() + " ";
    if (alone == nullptr) {
        return fail(proven.error().code,
                    proven.error().message + also + "has no function " + original.name + ")");
    }
    if (alone->size != definition.size) {
        return fail(proven.error().code, proven.error().message + also + "makes it " +
                                             std::to_string(alone->size) + " bytes)");
    }
    if (auto same = check_original_bytes(*unit.single_text, *alone, definition); !same) {
        return fail(proven.error().code,
                    proven.error().message + also + "differs too: " + same.error().message + ")");
    }
    report_.single_text_proofs.push_back(
        original.name + ": " + std::to_string(original.size) + " bytes with -ffunction-sections, " +
        std::to_string(definition.size) + " as the package build compiled it");
    return {};
}

Result<void> Builder::check_original_bytes(const RelocatableObject& object, const Symbol& symbol,
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
    const auto& section = object.sections()[symbol.section];
    if (symbol.value + symbol.size > section.bytes.size()) {
        return fail(ErrorCode::bad_format,
                    object.name() + ": " + symbol.name + " lies outside its section");
    }
    std::vector<FieldSite> sites;
    for (const auto& relocation : object.relocations_for(symbol.section)) {
        if (relocation.offset >= symbol.value && relocation.offset < symbol.value + symbol.size) {
            sites.push_back(FieldSite{relocation.offset - symbol.value, relocation.type});
        }
    }
    LibraryComparison comparison = compare_with_library(
        std::span(section.bytes).subspan(symbol.value, symbol.size), *library_bytes, sites);
    for (const Relaxation& relaxed : comparison.relaxed) {
        report_.relaxations.push_back(symbol.name + " +" + hex_address(relaxed.first) + ": " +
                                      relaxed.form);
    }
    if (comparison.differing != 0) {
        return fail(
            ErrorCode::fingerprint_mismatch,
            object.name() + ": " + symbol.name + ": " +
                library_mismatch_cause(comparison, section.bytes[symbol.value + *comparison.first],
                                       (*library_bytes)[*comparison.first]));
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
            if (auto proven = prove_original(unit, original, *definition); !proven) {
                return tl::unexpected(proven.error());
            }
            auto file_offset = library_->offset_of_address(definition->offset);
            auto bytes = library_->bytes_at(*file_offset, definition->size);
            if (!bytes) {
                return tl::unexpected(bytes.error());
            }
            if (!holds_entry_jump(*bytes, definition->size)) {
                return fail(ErrorCode::unsupported,
                            unit.original.name() + ": " + original.name + " is " +
                                std::to_string(definition->size) +
                                " bytes starting with endbr64: no room for the 5-byte jump "
                                "after it");
            }
            metadata_.functions.push_back(ReplacedFunction{original.name, definition->offset,
                                                           definition->size, sha256_hex(*bytes),
                                                           output_names_.at({u, index})});
            report_.replaced.push_back(original.name + " (" + unit.file + ") at " +
                                       hex_address(definition->offset) + ", " +
                                       std::to_string(definition->size) + " bytes");
        }
        for (std::size_t index : unit.changes.new_functions) {
            if (unit.short_functions.contains(index)) {
                continue;  // in report_.stand_ins
            }
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
            // .bss has no bytes in the file, only a size, which the
            // writer takes from the (unwritten) contents.
            std::vector<std::byte> bytes =
                section.type == SHT_NOBITS
                    ? std::vector<std::byte>(section.size)
                    : std::vector<std::byte>(section.bytes.begin(), section.bytes.end());
            output_section[{u, index}] =
                writer.add_section(section.name, section.type, section.flags, section.alignment,
                                   entry_size, std::move(bytes));
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
    if (auto covered = patch_short_functions_through_callers(); !covered) {
        return tl::unexpected(covered.error());
    }
    if (auto runtime = load_runtime(); !runtime) {
        return tl::unexpected(runtime.error());
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

Result<std::vector<std::byte>> build_patch(const BuildRequest& request, BuildReport& report,
                                           std::shared_ptr<const OpenedLibrary> opened) {
    if (!initialise_libelf()) {
        return fail(ErrorCode::unsupported, "libelf: " + libelf_message());
    }
    Builder builder(request, report, std::move(opened));
    return builder.run();
}

}  // namespace suture
