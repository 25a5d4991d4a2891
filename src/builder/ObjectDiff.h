#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "base/Error.h"
#include "elf/RelocatableObject.h"

namespace suture {

// The name a compiler-generated symbol keeps across recompilations: numeric
// parts dropped ("foo.isra.0" -> "foo.isra", "__func__.3" -> "__func__",
// "bar.constprop.0.cold" -> "bar.constprop.cold"). GCC numbers clones and
// static locals per translation unit, so the numbers of the original and the
// patched compile may differ for the same thing.
std::string normalized_symbol_name(std::string_view name);

// Is `name` the cold part GCC splits off a function ("foo.cold")? A cold
// part is only ever entered from its parent, so it travels with it.
bool is_cold_part(std::string_view name);

// Per-object index: which named (function or object) symbol owns which byte
// of which section. With -ffunction-sections -fdata-sections each section
// holds one such symbol; the assembler nevertheless turns references to local
// symbols into "section symbol + offset", which this maps back.
class SymbolOwners {
  public:
    explicit SymbolOwners(const RelocatableObject& object);
    // The index of the named symbol whose bytes contain `offset` of section
    // `section` (or that starts there), or 0 if none.
    std::size_t owner(std::size_t section, std::uint64_t offset) const;
    // The named symbol at offset 0 of `section` (what a section symbol
    // reference with a small addend means), or 0.
    std::size_t first_in(std::size_t section) const;

  private:
    const RelocatableObject& object_;
    std::map<std::size_t, std::vector<std::size_t>> by_section_;
};

// What a relocation refers to, in terms that can be compared between two
// compiles of one source file.
struct RelocationTarget {
    enum class Kind {
        named,      // a function or object symbol (defined here or undefined)
        literal,    // anonymous read-only bytes: string literals, constants, tables
        anonymous,  // anonymous bytes of a section with no owner we can name
    };
    Kind kind = Kind::named;
    std::size_t symbol = 0;   // named: symbol index in the object
    std::int64_t addend = 0;  // named: relative to the symbol; else to the section
    std::size_t section = 0;  // literal/anonymous: section index
    std::string identity;     // equal for the same target in both compiles
};

// Resolves the target of `relocation` (from any section of `object`).
RelocationTarget relocation_target(const RelocatableObject& object, const SymbolOwners& owners,
                                   const RelocatableObject::Relocation& relocation);

// The result of comparing the original and patched compile of one source
// file (both with -ffunction-sections -fdata-sections).
struct ObjectChanges {
    // Functions of the patched object (symbol indices) whose code or
    // relocation targets differ from the original's same-named function.
    std::vector<std::size_t> changed_functions;
    // Functions of the patched object that the original does not have.
    std::vector<std::size_t> new_functions;
    // For each changed function: the index of its original counterpart.
    std::map<std::size_t, std::size_t> original_of;
    // Writable variables of the patched object that the original does not
    // have (new statics: .data, .bss, .data.rel.ro): they go to the patch's
    // data region, with the code that uses them.
    std::vector<std::size_t> new_variables;
};

// What kind of data a writable section holds, for messages: "relocated
// read-only data (.data.rel.ro)" for a `static const` table of pointers
// (read-only once the loader relocated it), "zero-initialised data (.bss)",
// "initialised data (.data)".
std::string data_kind(const RelocatableObject::Section& section);

// Compares two compiles of one translation unit function by function, the
// way kpatch's create-diff-object does: code bytes outside relocation fields,
// and each relocation's type and target identity. Refuses (invalid_argument,
// naming the variable, its section and why) what a live patch cannot carry:
// existing data whose size or initial value changed (running code keeps
// using the library's copy), new thread-local data. New writable variables
// are allowed (ObjectChanges::new_variables).
Result<ObjectChanges> diff_objects(const RelocatableObject& original,
                                   const RelocatableObject& patched);

}  // namespace suture
