// The builder's differ and symbol resolution, on small objects and a small
// shared library compiled here with gcc (the way a patchset is compiled:
// -ffunction-sections -fdata-sections), so every case is a real compiler
// output and not a hand-made ELF.

#include <fcntl.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <algorithm>
#include <map>
#include <set>
#include <string>

#include <catch2/catch.hpp>

#include "ScratchDirectory.h"
#include "base/Files.h"
#include "builder/LibrarySymbols.h"
#include "builder/LinkerRelaxation.h"
#include "builder/ObjectDiff.h"
#include "builder/PatchBuilder.h"
#include "elf/ElfFile.h"
#include "patch/PatchFile.h"

using namespace suture;

namespace {

// A scratch directory with C sources, compiled on demand.
class Workshop {
  public:
    std::string path(const std::string& name) const { return scratch_.file(name); }

    void write(const std::string& name, const std::string& text) const {
        std::ofstream(path(name)) << text;
    }

    // Compiles SOURCE (a file name in the workshop, which becomes the
    // object's STT_FILE name) to OBJECT.
    std::string compile(const std::string& source, const std::string& object,
                        const std::string& flags = "-O2") const {
        run("cd '" + directory_ +
            "' && gcc -c -fPIC -fcf-protection -ffunction-sections "
            "-fdata-sections " +
            flags + " -o '" + object + "' '" + source + "'");
        return path(object);
    }

    std::string link(const std::string& library, const std::vector<std::string>& objects) const {
        std::string command = "cd '" + directory_ + "' && gcc -shared -Wl,--build-id -o '" +
                              library + "' -Wl,-soname," + library;
        for (const std::string& object : objects) {
            command += " '" + object + "'";
        }
        run(command);
        return path(library);
    }

    static void run(const std::string& command) { REQUIRE(std::system(command.c_str()) == 0); }

  private:
    ScratchDirectory scratch_;
    const std::string& directory_ = scratch_.path();
};

RelocatableObject parse_object(const std::string& path) {
    auto object = RelocatableObject::read(path);
    REQUIRE(object);
    return std::move(*object);
}

std::vector<std::string> names_of(const RelocatableObject& object,
                                  const std::vector<std::size_t>& indices) {
    std::vector<std::string> names;
    for (std::size_t index : indices) {
        names.push_back(object.symbols()[index].name);
    }
    std::sort(names.begin(), names.end());
    return names;
}

// The offset of a symbol in an unstripped library, as `nm` would give it:
// for a static, the one defined in the block of `file`.
std::uint64_t library_offset(const std::string& library, const std::string& file,
                             const std::string& name) {
    auto fd = open_read_only(library);
    REQUIRE(fd);
    auto elf = ElfFile::open(*fd, library);
    REQUIRE(elf);
    auto table = elf->static_symbols();
    REQUIRE(table);
    bool in_file = file.empty();
    for (const auto& symbol : *table) {
        if (symbol.type == STT_FILE) {
            in_file = file.empty() || symbol.name == file;
            continue;
        }
        if (in_file && symbol.name == name && symbol.defined) {
            return symbol.value;
        }
    }
    FAIL("no symbol " << name << " in " << file);
    return 0;
}

const char* const file_a = R"(
#include <string.h>
static const char *const greetings[] = { "hello", "hallo" };
static const int weights[] = { 3, 1, 4, 1, 5, 9, 2, 6 };
int counter_a = 0;
__attribute__((noinline)) static int helper(int x) { counter_a++; return x * 3 + 1; }
int api_a(int x) { return helper(x) + (int)strlen(x ? "bonjour" : "hello") + weights[x & 7]; }
int api_a_unchanged(int x) { return helper(x + 1); }
int api_a_greet(int x) { return (int)strlen(greetings[x & 1]); }
)";

const char* const file_b = R"(
int counter_b = 0;
__attribute__((noinline)) static int helper(int x) { counter_b += 2; return x * 5 - 7; }
int api_b(int x) { return helper(x) * 2; }
)";

}  // namespace

TEST_CASE("compiler numbering is normalized away, cold parts are recognised") {
    CHECK(normalized_symbol_name("foo") == "foo");
    CHECK(normalized_symbol_name("foo.isra.0") == "foo.isra");
    CHECK(normalized_symbol_name("bar.constprop.0.isra.12") == "bar.constprop.isra");
    CHECK(normalized_symbol_name("__func__.3") == "__func__");
    CHECK(normalized_symbol_name("baz.part.0.cold") == "baz.part.cold");
    CHECK(is_cold_part("baz.cold"));
    CHECK(is_cold_part("baz.part.0.cold"));
    CHECK_FALSE(is_cold_part("coldness"));
}

TEST_CASE("the differ finds exactly the changed and the new functions") {
    Workshop workshop;
    workshop.write("a.c", file_a);
    auto original = parse_object(workshop.compile("a.c", "original.o"));

    SECTION("an identical compile has no changes") {
        auto again = parse_object(workshop.compile("a.c", "again.o"));
        auto changes = diff_objects(original, again);
        REQUIRE(changes);
        CHECK(changes->changed_functions.empty());
        CHECK(changes->new_functions.empty());
    }
    SECTION("a changed body changes that function only") {
        std::string fixed = file_a;
        fixed.replace(fixed.find("x * 3 + 1"), 9, "x * 3 + 2");
        workshop.write("a.c", fixed);
        auto patched = parse_object(workshop.compile("a.c", "patched.o"));
        auto changes = diff_objects(original, patched);
        REQUIRE(changes);
        CHECK(names_of(patched, changes->changed_functions) == std::vector<std::string>{"helper"});
    }
    SECTION("a changed string literal changes the function that uses it") {
        std::string fixed = file_a;
        fixed.replace(fixed.find("\"bonjour\""), 9, "\"salut\"");
        workshop.write("a.c", fixed);
        auto patched = parse_object(workshop.compile("a.c", "patched.o"));
        auto changes = diff_objects(original, patched);
        REQUIRE(changes);
        CHECK(names_of(patched, changes->changed_functions) == std::vector<std::string>{"api_a"});
    }
    SECTION("a changed constant table changes the function that reads it") {
        std::string fixed = file_a;
        fixed.replace(fixed.find("2, 6 }"), 6, "2, 7 }");
        workshop.write("a.c", fixed);
        auto patched = parse_object(workshop.compile("a.c", "patched.o"));
        auto changes = diff_objects(original, patched);
        REQUIRE(changes);
        CHECK(names_of(patched, changes->changed_functions) == std::vector<std::string>{"api_a"});
    }
    SECTION("a changed table of pointers (relocated, so writable at load) is refused") {
        std::string fixed = file_a;
        fixed.replace(fixed.find("\"hallo\" }"), 9, "\"salut\" }");
        workshop.write("a.c", fixed);
        auto patched = parse_object(workshop.compile("a.c", "patched.o"));
        auto changes = diff_objects(original, patched);
        REQUIRE_FALSE(changes);
        CHECK(changes.error().message.find(
                  "existing static variable greetings, relocated read-only data "
                  "(.data.rel.ro): its initial value changed") != std::string::npos);
    }
    SECTION("a new function is new, and its caller changed") {
        std::string fixed = file_a;
        fixed.replace(
            fixed.find("int api_a_unchanged"), 0,
            "__attribute__((noinline)) static int clamp(int x) { return x < 0 ? 0 : x; }\n");
        fixed.replace(fixed.find("return helper(x + 1);"), 21, "return helper(clamp(x));");
        workshop.write("a.c", fixed);
        auto patched = parse_object(workshop.compile("a.c", "patched.o"));
        auto changes = diff_objects(original, patched);
        REQUIRE(changes);
        CHECK(names_of(patched, changes->changed_functions) ==
              std::vector<std::string>{"api_a_unchanged"});
        CHECK(names_of(patched, changes->new_functions) == std::vector<std::string>{"clamp"});
    }
    SECTION("a changed initial value of existing data is refused, naming it") {
        std::string fixed = file_a;
        fixed.replace(fixed.find("int counter_a = 0;"), 18, "int counter_a = 5;");
        workshop.write("a.c", fixed);
        auto patched = parse_object(workshop.compile("a.c", "patched.o"));
        auto changes = diff_objects(original, patched);
        REQUIRE_FALSE(changes);
        CHECK(changes.error().message.find("counter_a") != std::string::npos);
    }
    SECTION("new statics are new variables, for the data region") {
        workshop.write("a.c", std::string(file_a) +
                                  "int fresh_state = 7;\n"
                                  "static long fresh_zero;\n"
                                  "static const char *const fresh_table[] = { \"x\", \"y\" };\n"
                                  "int api_new(int x) { fresh_zero += x;\n"
                                  "  return fresh_state + (int)fresh_zero + fresh_table[x & 1][0]; }\n");
        auto patched = parse_object(workshop.compile("a.c", "patched.o"));
        auto changes = diff_objects(original, patched);
        REQUIRE(changes);
        auto added = names_of(patched, changes->new_variables);
        std::sort(added.begin(), added.end());
        CHECK(added == std::vector<std::string>{"fresh_state", "fresh_table", "fresh_zero"});
        CHECK(names_of(patched, changes->new_functions) == std::vector<std::string>{"api_new"});
        std::map<std::string, std::string> kinds;
        for (std::size_t index : changes->new_variables) {
            const auto& symbol = patched.symbols()[index];
            kinds[symbol.name] = data_kind(patched.sections()[symbol.section]);
        }
        CHECK(kinds["fresh_state"] == "initialised data (.data.fresh_state)");
        CHECK(kinds["fresh_zero"] == "zero-initialised data (.bss.fresh_zero)");
        CHECK(kinds["fresh_table"].starts_with("relocated read-only data (.data.rel.ro)"));
    }
    SECTION("a changed size of existing data is refused, saying which and why") {
        std::string fixed = file_a;
        fixed.replace(fixed.find("int counter_a = 0;"), 18, "long counter_a = 0;");
        workshop.write("a.c", fixed);
        auto patched = parse_object(workshop.compile("a.c", "patched.o"));
        auto changes = diff_objects(original, patched);
        REQUIRE_FALSE(changes);
        CHECK(changes.error().message.find(
                  "existing global variable counter_a, zero-initialised data (.bss.counter_a): "
                  "its size changed (4 -> 8 bytes)") != std::string::npos);
        CHECK(changes.error().message.find("shadow variable") != std::string::npos);
    }
    SECTION("thread-local data is refused when the object is read") {
        workshop.write("a.c", std::string(file_a) +
                                  "__thread int per_thread;\n"
                                  "int touch(void) { return ++per_thread; }\n");
        auto patched = RelocatableObject::read(workshop.compile("a.c", "patched.o"));
        REQUIRE_FALSE(patched);
        CHECK(patched.error().message.find("thread-local") != std::string::npos);
    }
}

TEST_CASE("library symbols: statics with one name in two files are told apart by file") {
    auto symbol = [](std::string name, unsigned char type, unsigned char binding,
                     std::uint64_t value) {
        ElfFile::Symbol s;
        s.name = std::move(name);
        s.type = type;
        s.binding = binding;
        s.value = value;
        s.size = 16;
        s.defined = true;
        return s;
    };
    std::vector<ElfFile::Symbol> table = {
        symbol("a.c", STT_FILE, STB_LOCAL, 0),
        symbol("helper", STT_FUNC, STB_LOCAL, 0x100),
        symbol("table", STT_OBJECT, STB_LOCAL, 0x900),
        symbol("b.c", STT_FILE, STB_LOCAL, 0),
        symbol("helper", STT_FUNC, STB_LOCAL, 0x200),
        symbol("twin.c", STT_FILE, STB_LOCAL, 0),
        symbol("only", STT_FUNC, STB_LOCAL, 0x300),
        symbol("twin.c", STT_FILE, STB_LOCAL, 0),
        symbol("only", STT_FUNC, STB_LOCAL, 0x400),
        symbol("", STT_FILE, STB_LOCAL, 0),
        symbol("hidden_api", STT_FUNC, STB_LOCAL, 0x500),
        symbol("api", STT_FUNC, STB_GLOBAL, 0x600),
        symbol("twice", STT_FUNC, STB_GLOBAL, 0x700),
        symbol("twice", STT_FUNC, STB_GLOBAL, 0x780),
    };
    LibrarySymbols library = LibrarySymbols::from_table(table, "libtest.so");

    auto a = library.block_for("a.c", {"helper", "table"});
    REQUIRE(a);
    CHECK(library.local(**a, "helper")->offset == 0x100);
    auto b = library.block_for("b.c", {"helper"});
    REQUIRE(b);
    CHECK(library.local(**b, "helper")->offset == 0x200);

    SECTION("a block whose locals differ from the object's is a different build") {
        auto wrong = library.block_for("a.c", {"helper"});
        REQUIRE_FALSE(wrong);
        CHECK(wrong.error().message.find("only in the library: table") != std::string::npos);
    }
    SECTION("two objects with the same file name and locals: ambiguous, never a guess") {
        auto twin = library.block_for("twin.c", {"only"});
        REQUIRE_FALSE(twin);
        CHECK(twin.error().message.find("ambiguous") != std::string::npos);
    }
    SECTION("globals, including hidden ones the linker made local") {
        CHECK(library.global("api")->value().offset == 0x600);
        CHECK(library.global("hidden_api")->value().offset == 0x500);
        CHECK_FALSE(library.global("missing")->has_value());
        CHECK_FALSE(library.global("twice"));
    }
}

TEST_CASE("a patch for a real library resolves the static of the right file") {
    Workshop workshop;
    workshop.write("a.c", file_a);
    workshop.write("b.c", file_b);
    std::string original_a = workshop.compile("a.c", "a.o");
    std::string library = workshop.link("libtwo.so", {"a.o", workshop.compile("b.c", "b.o")});

    std::string fixed = file_a;
    fixed.replace(fixed.find("return helper(x) + "), 19, "return helper(x) - ");
    fixed.replace(fixed.find("return (int)strlen(greetings"), 6, "return -");
    workshop.write("a.c", fixed);
    std::string patched_a = workshop.compile("a.c", "a-fixed.o");

    BuildRequest request;
    request.units = {{original_a, patched_a}};
    request.library = library;
    request.debug_symbols = library;  // unstripped: its own symbol table
    request.patch_id = "test-fix";
    request.description = "test";
    BuildReport report;
    auto patch = build_patch(request, report);
    REQUIRE(patch);
    auto parsed = parse_patch(*patch, "test-fix");
    REQUIRE(parsed);
    const PatchMetadata& metadata = parsed->metadata;

    REQUIRE(metadata.functions.size() == 2);
    CHECK(metadata.functions[0].symbol == "api_a");
    CHECK(metadata.functions[0].offset == library_offset(library, "", "api_a"));
    CHECK(metadata.functions[1].symbol == "api_a_greet");

    std::map<std::string, std::uint64_t> references;
    for (const auto& reference : metadata.target_references) {
        references[reference.symbol] = reference.offset;
    }
    // helper exists in a.c and in b.c; the patch must call a.c's.
    REQUIRE(references.contains("a.c:helper"));
    CHECK(references["a.c:helper"] == library_offset(library, "a.c", "helper"));
    CHECK(references["a.c:helper"] != library_offset(library, "b.c", "helper"));
    // strlen comes from libc: through the library's own PLT entry.
    CHECK(references.contains("plt:strlen"));
    // A table of pointers is relocated at load time (RELRO): the library's own.
    REQUIRE(references.contains("a.c:greetings"));
    CHECK(references["a.c:greetings"] == library_offset(library, "a.c", "greetings"));
    // Read-only constants travel with the code; the library's data does not.
    CHECK_FALSE(references.contains("a.c:weights"));

    SECTION("same inputs give the same bytes") {
        BuildReport again_report;
        auto again = build_patch(request, again_report);
        REQUIRE(again);
        CHECK(*again == *patch);
    }
    SECTION("new statics of the fix go to the data region; the library's own stay its own") {
        std::string with_statics = file_a;
        with_statics.replace(
            with_statics.find("int api_a_unchanged(int x) { return helper(x + 1); }"), 52,
            "static long calls;\n"
            "static int limit = 9;\n"
            "static const int *const limits[] = { &limit, &limit };\n"
            "int api_a_unchanged(int x) { calls++; counter_a++;\n"
            "  return x > *limits[x & 1] ? (int)calls : helper(x + 1); }");
        workshop.write("a.c", with_statics);
        request.units = {{original_a, workshop.compile("a.c", "a-statics.o")}};
        BuildReport statics_report;
        auto statics = build_patch(request, statics_report);
        REQUIRE(statics);
        auto statics_patch = parse_patch(*statics, "test-fix");
        REQUIRE(statics_patch);
        std::set<std::string> data_sections;
        const auto& object = statics_patch->object;
        for (std::size_t index = 1; index < object.sections().size(); ++index) {
            if (object.is_loaded(index) && (object.sections()[index].flags & SHF_WRITE) != 0) {
                data_sections.insert(object.sections()[index].name);
            }
        }
        CHECK(data_sections.contains(".bss.calls"));
        CHECK(data_sections.contains(".data.limit"));
        CHECK(std::any_of(data_sections.begin(), data_sections.end(), [](const std::string& name) {
            return name.starts_with(".data.rel.ro") && name.ends_with("limits");
        }));
        std::set<std::string> references;
        for (const auto& reference : statics_patch->metadata.target_references) {
            references.insert(reference.symbol);
        }
        CHECK(references.contains("counter_a"));  // existing: the library's
        CHECK_FALSE(references.contains("a.c:calls"));
    }
    SECTION("a fix that calls the shadow API gets the runtime linked in, and nothing more") {
        std::string with_shadow = file_a;
        with_shadow.replace(with_shadow.find("#include <string.h>"), 19,
                            "#include <string.h>\n#include <suture/patch.h>");
        with_shadow.replace(
            with_shadow.find("int api_a_unchanged(int x) { return helper(x + 1); }"), 52,
            "int api_a_unchanged(int x) {\n"
            "  long *seen = suture_shadow_get_or_alloc(&counter_a, 1, sizeof *seen);\n"
            "  if (seen) ++*seen;\n"
            "  return helper(x + 1); }");
        workshop.write("a.c", with_shadow);
        request.units = {
            {original_a, workshop.compile("a.c", "a-shadow.o",
                                          "-O2 -I" SOURCE_ROOT "/include")}};
        request.runtime_object = PATCHRT_OBJECT;
        BuildReport shadow_report;
        auto shadow = build_patch(request, shadow_report);
        REQUIRE(shadow);
        auto shadow_patch = parse_patch(*shadow, "test-fix");
        REQUIRE(shadow_patch);
        const auto& object = shadow_patch->object;
        CHECK(object.find_defined("suture_shadow_get_or_alloc") != nullptr);
        CHECK(object.find_defined("suture_shadow_free") == nullptr);  // not called: not linked
        bool reads_table = false;
        for (const auto& symbol : object.symbols()) {
            reads_table = reads_table || (symbol.section == SHN_UNDEF &&
                                          symbol.name == shadow_table_symbol);
        }
        CHECK(reads_table);
        for (const auto& import : shadow_patch->metadata.imports) {
            CHECK(import.symbol.find("suture") == std::string::npos);
        }
        request.runtime_object.clear();
        BuildReport without_report;
        auto without = build_patch(request, without_report);
        // Without the runtime the call is an import no process provides.
        REQUIRE(without);
        auto without_patch = parse_patch(*without, "test-fix");
        REQUIRE(without_patch);
        CHECK(std::any_of(without_patch->metadata.imports.begin(),
                          without_patch->metadata.imports.end(), [](const Import& import) {
                              return import.symbol == "suture_shadow_get_or_alloc";
                          }));
    }
    SECTION("an original compiled with other flags does not match the library") {
        workshop.write("a.c", file_a);
        request.units = {{workshop.compile("a.c", "a-O1.o", "-O1"), patched_a}};
        BuildReport mismatch_report;
        auto mismatch = build_patch(request, mismatch_report);
        REQUIRE_FALSE(mismatch);
        CHECK(mismatch.error().code == ErrorCode::fingerprint_mismatch);
    }
    SECTION("debug symbols of another build are refused") {
        workshop.write("b.c", std::string(file_b) + "int extra(void) { return 1; }\n");
        request.debug_symbols =
            workshop.link("libother.so", {"a.o", workshop.compile("b.c", "b2.o")});
        BuildReport other_report;
        auto other = build_patch(request, other_report);
        REQUIRE_FALSE(other);
        CHECK(other.error().code == ErrorCode::build_id_mismatch);
    }
    SECTION("a fix across two files: each unit resolves its own statics") {
        std::string fixed_b = file_b;
        fixed_b.replace(fixed_b.find("helper(x) * 2"), 13, "helper(x) * 4");
        workshop.write("b.c", file_b);
        std::string original_b = workshop.compile("b.c", "b-original.o");
        workshop.write("b.c", fixed_b);
        request.units.push_back({original_b, workshop.compile("b.c", "b-fixed.o")});
        BuildReport both_report;
        auto both = build_patch(request, both_report);
        REQUIRE(both);
        auto both_parsed = parse_patch(*both, "test-fix");
        REQUIRE(both_parsed);
        std::map<std::string, std::uint64_t> both_references;
        for (const auto& reference : both_parsed->metadata.target_references) {
            both_references[reference.symbol] = reference.offset;
        }
        CHECK(both_parsed->metadata.functions.size() == 3);
        CHECK(both_references["a.c:helper"] == library_offset(library, "a.c", "helper"));
        CHECK(both_references["b.c:helper"] == library_offset(library, "b.c", "helper"));
    }
    SECTION("a new global function of one unit, called from another, travels in the patch") {
        // CVE-2026-54872's shape: bn_set_top_fixed added to bn_intern.c,
        // called from ec_mult.c; the library has no such function to call.
        std::string fixed_b = std::string(file_b) + "int added_b(int x) { return x ^ 0x55; }\n";
        workshop.write("b.c", file_b);
        std::string original_b = workshop.compile("b.c", "b-original.o");
        workshop.write("b.c", fixed_b);
        std::string calls_added = file_a;
        calls_added.replace(calls_added.find("int api_a(int x) {"), 18,
                            "int added_b(int);\nint api_a(int x) { x = added_b(x);");
        workshop.write("a.c", calls_added);
        request.units = {{original_a, workshop.compile("a.c", "a-calls-added.o")},
                         {original_b, workshop.compile("b.c", "b-added.o")}};
        BuildReport added_report;
        auto added = build_patch(request, added_report);
        REQUIRE(added);
        CHECK(added_report.imports.empty());
        REQUIRE(added_report.added.size() == 1);
        CHECK(added_report.added[0].find("added_b") != std::string::npos);
        auto added_parsed = parse_patch(*added, "test-fix");
        REQUIRE(added_parsed);
        CHECK(added_parsed->metadata.imports.empty());
    }
    SECTION("a fix that changes nothing is refused") {
        request.units = {{original_a, original_a}};
        BuildReport nothing_report;
        auto nothing = build_patch(request, nothing_report);
        REQUIRE_FALSE(nothing);
        CHECK(nothing.error().message.find("changes no function") != std::string::npos);
    }
}

namespace {

// The consistency rule's library: three global functions, caller calls
// leaf_a (each big enough to hold a jump).
const char* const file_c = R"(
#define KEEP __attribute__((noipa))
KEEP int leaf_a(int x) { x = x / 3 - (x ^ 0x5a5a); return x + 1; }
KEEP int leaf_b(int x) { x = x / 5 - (x ^ 0x3c3c); return x * 2; }
KEEP int caller(int x) { return leaf_a(x) + 3; }
)";

// Builds a patch of libc.so (from file_c) to `fixed`, with the author's
// `requested` model; the report's consistency and reason, or the error.
struct ConsistencyOutcome {
    bool built = false;
    Consistency recorded = Consistency::strict;  // in the patch file's metadata
    Consistency reported = Consistency::strict;
    std::string reason;
    std::string error;
};

ConsistencyOutcome build_with_fix(const std::string& fixed,
                                  std::optional<Consistency> requested = std::nullopt) {
    Workshop workshop;
    workshop.write("c.c", file_c);
    std::string original = workshop.compile("c.c", "c.o");
    std::string library = workshop.link("libc-rule.so", {"c.o"});
    workshop.write("c.c", fixed);
    BuildRequest request;
    request.units = {{original, workshop.compile("c.c", "c-fixed.o")}};
    request.library = library;
    request.debug_symbols = library;
    request.patch_id = "rule";
    request.consistency = requested;
    BuildReport report;
    auto patch = build_patch(request, report);
    ConsistencyOutcome outcome;
    if (!patch) {
        outcome.error = patch.error().message;
        UNSCOPED_INFO("build_patch: " << outcome.error);
        return outcome;
    }
    auto parsed = parse_patch(*patch, "rule");
    REQUIRE(parsed);
    outcome.built = true;
    outcome.recorded = parsed->metadata.consistency;
    outcome.reported = report.consistency;
    outcome.reason = report.consistency_reason;
    return outcome;
}

std::string with(std::string text, const std::string& from, const std::string& to) {
    auto at = text.find(from);
    REQUIRE(at != std::string::npos);
    return text.replace(at, from.size(), to);
}

}  // namespace

TEST_CASE("the builder decides the consistency model from what the new code refers to") {
    std::string c = file_c;
    SECTION("one replaced function is entry") {
        auto outcome = build_with_fix(with(c, "x + 1", "x + 11"));
        REQUIRE(outcome.built);
        CHECK(outcome.recorded == Consistency::entry);
        CHECK(outcome.reported == Consistency::entry);
        CHECK(outcome.reason == "one function");
    }
    SECTION("two functions that do not refer to each other are entry") {
        auto outcome = build_with_fix(with(with(c, "x + 1", "x + 11"), "x * 2", "x * 3"));
        REQUIRE(outcome.built);
        CHECK(outcome.recorded == Consistency::entry);
        CHECK(outcome.reason == "2 independent functions");
    }
    SECTION("a replaced function calling another replaced function is strict") {
        std::string fixed = with(with(c, "x + 1", "x + 11"), "leaf_a(x) + 3", "leaf_a(x) + 4");
        auto outcome = build_with_fix(fixed);
        REQUIRE(outcome.built);
        CHECK(outcome.recorded == Consistency::strict);
        CHECK(outcome.reason == "caller calls leaf_a, both replaced");
        SECTION("and asking for entry is refused, saying why") {
            auto refused = build_with_fix(fixed, Consistency::entry);
            CHECK_FALSE(refused.built);
            INFO(refused.error);
            CHECK(refused.error.find("caller calls leaf_a, both replaced") != std::string::npos);
        }
    }
    SECTION("taking the address of another replaced function is strict") {
        auto outcome = build_with_fix(
            with(with(c, "x + 1", "x + 11"), "return x * 2;",
                 "int (*volatile f)(int) = leaf_a; return f(x) * 2;"));
        REQUIRE(outcome.built);
        CHECK(outcome.recorded == Consistency::strict);
        CHECK(outcome.reason == "leaf_b takes the address of leaf_a, both replaced");
    }
    SECTION("a new helper used by two replaced functions ties them") {
        std::string fixed =
            with(with(with(c, "KEEP int leaf_a",
                           "KEEP static int clamp_new(int x) { return x < 0 ? 0 : x; }\n"
                           "KEEP int leaf_a"),
                      "return x + 1;", "return clamp_new(x) + 1;"),
                 "return x * 2;", "return clamp_new(x) * 2;");
        auto outcome = build_with_fix(fixed);
        REQUIRE(outcome.built);
        CHECK(outcome.recorded == Consistency::strict);
        CHECK(outcome.reason == "leaf_a and leaf_b share the new function clamp_new");
    }
    SECTION("reaching another replaced function through a new helper is strict") {
        std::string fixed =
            with(with(with(c, "KEEP int leaf_a",
                           "int leaf_b(int x);\n"
                           "KEEP static int via_new(int x) { return leaf_b(x) - 1; }\n"
                           "KEEP int leaf_a"),
                      "return x + 1;", "return via_new(x) + 1;"),
                 "x * 2", "x * 3");
        auto outcome = build_with_fix(fixed);
        REQUIRE(outcome.built);
        CHECK(outcome.recorded == Consistency::strict);
        CHECK(outcome.reason == "leaf_a reaches leaf_b through via_new, both replaced");
    }
    SECTION("the author may force strict where the rule allows entry") {
        auto outcome = build_with_fix(with(c, "x + 1", "x + 11"), Consistency::strict);
        REQUIRE(outcome.built);
        CHECK(outcome.recorded == Consistency::strict);
        CHECK(outcome.reason.find("asked for") != std::string::npos);
    }
    SECTION("asking for entry where the rule allows it is granted") {
        auto outcome = build_with_fix(with(c, "x + 1", "x + 11"), Consistency::entry);
        REQUIRE(outcome.built);
        CHECK(outcome.recorded == Consistency::entry);
    }
}

TEST_CASE("callbacks declared with suture/patch.h are found, included and recorded") {
    Workshop workshop;
    workshop.write("a.c", file_a);
    std::string original_a = workshop.compile("a.c", "a.o");
    std::string library = workshop.link("libcb.so", {"a.o"});
    std::string fixed = file_a;
    fixed.replace(fixed.find("return helper(x) + "), 19, "return helper(x) - ");
    // After every function, so no line of the existing ones moves.
    fixed += R"(
#include <suture/patch.h>
static int reset_counter(void) { counter_a = 0; return 0; }
static int refuse_when_busy(void) { return counter_a > 1000 ? 3 : 0; }
SUTURE_PRE_APPLY(refuse_when_busy);
SUTURE_POST_APPLY(reset_counter);
)";
    workshop.write("a.c", fixed);
    std::string patched_a =
        workshop.compile("a.c", "a-fixed.o", std::string("-O2 -I") + SOURCE_INCLUDE_DIR);

    BuildRequest request;
    request.units = {{original_a, patched_a}};
    request.library = library;
    request.debug_symbols = library;
    request.patch_id = "test-callbacks";
    request.description = "test";
    BuildReport report;
    auto patch = build_patch(request, report);
    REQUIRE(patch);
    auto parsed = parse_patch(*patch, "test-callbacks");
    REQUIRE(parsed);
    const PatchCallbacks& callbacks = parsed->metadata.callbacks;
    CHECK(callbacks.pre_apply == "__suture_callback_pre_apply");
    CHECK(callbacks.post_apply == "__suture_callback_post_apply");
    CHECK(callbacks.pre_revert.empty());
    CHECK(callbacks.post_revert.empty());
    CHECK(report.callbacks == std::vector<std::string>{"pre_apply (a.c)", "post_apply (a.c)"});
    // The callbacks are not replacements; what they reach is in the patch:
    // the library's own counter_a, by reference.
    REQUIRE(parsed->metadata.functions.size() == 1);
    CHECK(parsed->metadata.functions[0].symbol == "api_a");
    bool counter = false;
    for (const auto& reference : parsed->metadata.target_references) {
        counter = counter || reference.symbol == "counter_a";
    }
    CHECK(counter);
    // (reset_counter itself is inlined into the macro's function.)
    const auto* wrapper = parsed->object.find_defined("__suture_callback_post_apply");
    REQUIRE(wrapper != nullptr);
    CHECK(wrapper->type == STT_FUNC);
}

namespace {

std::vector<std::byte> bytes_of(std::initializer_list<unsigned> values) {
    std::vector<std::byte> bytes;
    for (unsigned value : values) {
        bytes.push_back(static_cast<std::byte>(value));
    }
    return bytes;
}

std::string relaxation_form(std::initializer_list<unsigned> compiled,
                            std::initializer_list<unsigned> library, std::uint64_t field,
                            std::uint32_t type) {
    auto relaxed = linker_relaxation(bytes_of(compiled), bytes_of(library), {field, type});
    return relaxed ? relaxed->form : "none";
}

}  // namespace

TEST_CASE("the linker's documented relaxations are equal at relocation sites, nothing else") {
    SECTION("mov foo@GOTPCREL(%rip),%rax -> lea foo(%rip),%rax") {
        CHECK(relaxation_form({0x48, 0x8b, 0x05, 0, 0, 0, 0}, {0x48, 0x8d, 0x05, 1, 2, 3, 4}, 3,
                              R_X86_64_REX_GOTPCRELX) == "mov GOT -> lea");
        CHECK(relaxation_form({0x8b, 0x0d, 0, 0, 0, 0}, {0x8d, 0x0d, 1, 2, 3, 4}, 2,
                              R_X86_64_GOTPCRELX) == "mov GOT -> lea");
        // The register changed too: not what the linker does.
        CHECK(relaxation_form({0x48, 0x8b, 0x05, 0, 0, 0, 0}, {0x48, 0x8d, 0x0d, 1, 2, 3, 4}, 3,
                              R_X86_64_REX_GOTPCRELX) == "none");
        // GOTPCREL (no X) is never relaxed, nor is a PC32 reference.
        CHECK(relaxation_form({0x48, 0x8b, 0x05, 0, 0, 0, 0}, {0x48, 0x8d, 0x05, 1, 2, 3, 4}, 3,
                              R_X86_64_GOTPCREL) == "none");
        CHECK(relaxation_form({0x48, 0x8b, 0x05, 0, 0, 0, 0}, {0x48, 0x8d, 0x05, 1, 2, 3, 4}, 3,
                              R_X86_64_PC32) == "none");
    }
    SECTION("call and jmp through the GOT -> direct, with the nop binutils adds") {
        CHECK(relaxation_form({0xff, 0x15, 0, 0, 0, 0}, {0x67, 0xe8, 1, 2, 3, 4}, 2,
                              R_X86_64_GOTPCRELX) == "call *GOT -> addr32 call");
        CHECK(relaxation_form({0xff, 0x15, 0, 0, 0, 0}, {0xe8, 1, 2, 3, 4, 0x90}, 2,
                              R_X86_64_GOTPCRELX) == "call *GOT -> call; nop");
        CHECK(relaxation_form({0xff, 0x25, 0, 0, 0, 0}, {0xe9, 1, 2, 3, 4, 0x90}, 2,
                              R_X86_64_GOTPCRELX) == "jmp *GOT -> jmp; nop");
        // A jump without the nop, or turned into a call, is something else.
        CHECK(relaxation_form({0xff, 0x25, 0, 0, 0, 0}, {0xe9, 1, 2, 3, 4, 0xcc}, 2,
                              R_X86_64_GOTPCRELX) == "none");
        CHECK(relaxation_form({0xff, 0x25, 0, 0, 0, 0}, {0x67, 0xe8, 1, 2, 3, 4}, 2,
                              R_X86_64_GOTPCRELX) == "none");
    }
    SECTION("the immediate forms of non-PIC links: the register moves to r/m, REX.R to REX.B") {
        // mov foo@GOTPCREL(%rip),%r9 (4c 8b 0d) -> mov $foo,%r9 (49 c7 c1)
        CHECK(relaxation_form({0x4c, 0x8b, 0x0d, 0, 0, 0, 0}, {0x49, 0xc7, 0xc1, 1, 2, 3, 4}, 3,
                              R_X86_64_REX_GOTPCRELX) == "mov GOT -> mov $imm");
        // test %rdx,foo@GOTPCREL(%rip) (48 85 15) -> test $foo,%rdx (48 f7 c2)
        CHECK(relaxation_form({0x48, 0x85, 0x15, 0, 0, 0, 0}, {0x48, 0xf7, 0xc2, 1, 2, 3, 4}, 3,
                              R_X86_64_REX_GOTPCRELX) == "test GOT -> test $imm");
        // cmp foo@GOTPCREL(%rip),%ecx (3b 0d) -> cmp $foo,%ecx (81 f9)
        CHECK(relaxation_form({0x3b, 0x0d, 0, 0, 0, 0}, {0x81, 0xf9, 1, 2, 3, 4}, 2,
                              R_X86_64_GOTPCRELX) == "binop GOT -> binop $imm");
        // REX.R left in place: not the linker's output.
        CHECK(relaxation_form({0x4c, 0x8b, 0x0d, 0, 0, 0, 0}, {0x4c, 0xc7, 0xc1, 1, 2, 3, 4}, 3,
                              R_X86_64_REX_GOTPCRELX) == "none");
    }
    SECTION("other differences still differ, and say where") {
        // lea at the relocation, and an unrelated byte changed later.
        auto compiled = bytes_of({0x48, 0x8b, 0x05, 0, 0, 0, 0, 0x8b, 0x00, 0xc3});
        auto library = bytes_of({0x48, 0x8d, 0x05, 9, 9, 9, 9, 0x8b, 0x01, 0xc3});
        auto comparison = compare_with_library(compiled, library, {{3, R_X86_64_REX_GOTPCRELX}});
        CHECK(comparison.relaxed.size() == 1);
        CHECK(comparison.differing == 1);
        CHECK(comparison.first == 8u);
        CHECK_FALSE(comparison.next_to_relocation);
        // A GOTPCREL load the library has as lea: next to that relocation.
        auto plain = compare_with_library(compiled, library, {{3, R_X86_64_GOTPCREL}});
        CHECK(plain.relaxed.empty());
        CHECK(plain.first == 1u);
        CHECK(plain.next_to_relocation == R_X86_64_GOTPCREL);
    }
    SECTION("a jump sized short on one side and near on the other is named as such") {
        // jmp rel32 to a neighbour (relocated) in the compile; jmp rel8 in
        // the package build's single .text.
        auto compiled = bytes_of({0x48, 0x85, 0xff, 0xe9, 0, 0, 0, 0});
        auto library = bytes_of({0x48, 0x85, 0xff, 0xeb, 0x99, 0x66, 0x90, 0x90});
        auto comparison = compare_with_library(compiled, library, {{4, R_X86_64_PC32}});
        CHECK(comparison.first == 3u);
        CHECK(comparison.jump_sized_differently);
        // jne rel8 against jne rel32
        auto conditional = compare_with_library(bytes_of({0x75, 0x10, 0x90, 0x90, 0x90, 0x90}),
                                                bytes_of({0x0f, 0x85, 1, 0, 0, 0}), {});
        CHECK(conditional.jump_sized_differently);
        // jne against je is a different program
        auto other = compare_with_library(bytes_of({0x75, 0x10, 0x90, 0x90, 0x90, 0x90}),
                                          bytes_of({0x0f, 0x84, 1, 0, 0, 0}), {});
        CHECK_FALSE(other.jump_sized_differently);
    }
}

namespace {

// A library like bookworm's libcrypto: no endbr64 (-fcf-protection=none
// unless `flags` say otherwise), globals made local by a version script, so
// the linker relaxes their GOT loads to lea.
const char* const file_reach = R"(
extern int shared_state;
#define KEEP __attribute__((noipa))
KEEP int reach_read(int x) { return shared_state * 2 + x; }
KEEP long reach_five(long x) { return x + 1; }
KEEP int reach_eight(int x) { return x * 9 + 100000; }
KEEP int reach_four(int x) { return x + 1; }
KEEP void reach_nothing(void) {}
KEEP static int reach_zero(void) { return 0; }
KEEP int reach_use_zero(int x) { return reach_zero() + x * 3; }
KEEP int reach_use_zero_too(int x) { return reach_zero() - x; }
KEEP static void reach_noop(void) {}
KEEP void (*reach_pointer(void))(void) { return reach_noop; }
KEEP int hidden_short(int x) { return x; }
)";

struct ReachOutcome {
    std::string error;
    BuildReport report;
    PatchMetadata metadata;
};

ReachOutcome build_reach(const std::string& from, const std::string& to,
                         const std::string& flags = "-O2 -fcf-protection=none",
                         const std::string& original_flags = "") {
    Workshop workshop;
    workshop.write("reach.c", file_reach);
    workshop.write("state.c", "int shared_state = 21;\n");
    workshop.write("reach.map", "{ global: reach_*; local: *; };\n");
    std::string original = workshop.compile("reach.c", "reach.o", flags);
    workshop.compile("state.c", "state.o", flags);
    std::string library =
        workshop.link("libreach.so", {"reach.o", "state.o", "-Wl,--version-script=reach.map"});
    if (!original_flags.empty()) {
        original = workshop.compile("reach.c", "reach-other.o", original_flags);
    }
    workshop.write("reach.c", with(file_reach, from, to));
    BuildRequest request;
    request.units = {{original, workshop.compile("reach.c", "reach-fixed.o", flags)}};
    request.library = library;
    request.debug_symbols = library;
    request.patch_id = "reach";
    ReachOutcome outcome;
    auto patch = build_patch(request, outcome.report);
    if (!patch) {
        outcome.error = patch.error().message;
        UNSCOPED_INFO("build_patch: " << outcome.error);
        return outcome;
    }
    auto parsed = parse_patch(*patch, "reach");
    REQUIRE(parsed);
    outcome.metadata = parsed->metadata;
    return outcome;
}

std::vector<std::string> replaced_names(const PatchMetadata& metadata) {
    std::vector<std::string> names;
    for (const auto& function : metadata.functions) {
        names.push_back(function.symbol + "/" + std::to_string(function.size));
    }
    std::sort(names.begin(), names.end());
    return names;
}

}  // namespace

TEST_CASE("a function whose GOT load the linker relaxed to lea is patchable") {
    SECTION("the relaxation is accepted and reported; the global resolves by offset") {
        ReachOutcome outcome = build_reach("shared_state * 2", "shared_state * 3");
        REQUIRE(outcome.error.empty());
        CHECK(replaced_names(outcome.metadata) == std::vector<std::string>{"reach_read/13"});
        REQUIRE(outcome.report.relaxations.size() == 1);
        CHECK(outcome.report.relaxations[0] == "reach_read +0x1: mov GOT -> lea");
        // The patch's own code reads the global through its GOT slot, filled
        // with the library's address of it: a target reference.
        bool referenced = false;
        for (const auto& reference : outcome.metadata.target_references) {
            referenced = referenced || reference.symbol == "shared_state";
        }
        CHECK(referenced);
    }
    SECTION("a GOT load the assembler did not mark relaxable differs, and says where") {
        ReachOutcome outcome =
            build_reach("shared_state * 2", "shared_state * 3", "-O2 -fcf-protection=none",
                        "-O2 -fcf-protection=none -Wa,-mrelax-relocations=no");
        CHECK(outcome.error.find("reach_read: 1 bytes outside relocations differ from the "
                                 "library's, the first at +0x1 (compiled 8b, library 8d): in the "
                                 "instruction of an R_X86_64_GOTPCREL relocation") !=
              std::string::npos);
    }
    SECTION("other flags are still named as the cause") {
        ReachOutcome outcome =
            build_reach("x * 9 + 100000", "x * 9 + 100001", "-O2 -fcf-protection=none",
                        "-O2 -fcf-protection=none -fno-omit-frame-pointer");
        CHECK(outcome.error.find("not compiled with the package build's flags") !=
              std::string::npos);
    }
}

TEST_CASE("the entry jump needs 5 bytes, or 9 after an endbr64") {
    SECTION("without endbr64: 5- and 8-byte functions take the jump at offset 0") {
        CHECK(replaced_names(build_reach("return x + 1; }\nKEEP int reach_eight",
                                         "return x + 2; }\nKEEP int reach_eight")
                                 .metadata) == std::vector<std::string>{"reach_five/5"});
        CHECK(replaced_names(build_reach("x * 9 + 100000", "x * 9 + 100001").metadata) ==
              std::vector<std::string>{"reach_eight/8"});
    }
    SECTION("with endbr64: 9 bytes hold the jump after it, 8 and 5 do not") {
        const std::string ibt = "-O2 -fcf-protection=full";
        CHECK(replaced_names(build_reach("return x + 1; }\nKEEP int reach_eight",
                                         "return x + 2; }\nKEEP int reach_eight", ibt)
                                 .metadata) == std::vector<std::string>{"reach_five/9"});
        ReachOutcome eight = build_reach("reach_four(int x) { return x + 1; }",
                                         "reach_four(int x) { return x + 2; }", ibt);
        CHECK(eight.error.find("reach_four is 8 bytes, too short for the entry jump") !=
              std::string::npos);
        ReachOutcome five =
            build_reach("reach_nothing(void) {}", "reach_nothing(void) { shared_state = 0; }", ibt);
        CHECK(five.error.find("reach_nothing is 5 bytes, too short for the entry jump") !=
              std::string::npos);
    }
}

TEST_CASE("a function shorter than the jump is patched through its callers") {
    SECTION("a static called directly: its callers are replaced, and say for whom") {
        ReachOutcome outcome =
            build_reach("reach_zero(void) { return 0; }", "reach_zero(void) { return 7; }");
        REQUIRE(outcome.error.empty());
        CHECK(replaced_names(outcome.metadata) ==
              std::vector<std::string>{"reach_use_zero/17", "reach_use_zero_too/12"});
        REQUIRE(outcome.report.stand_ins.size() == 1);
        CHECK(outcome.report.stand_ins[0] ==
              "reach_zero (3 bytes): through reach_use_zero, reach_use_zero_too");
        CHECK(outcome.report.added.empty());
        // Both callers now share the new copy: strict.
        CHECK(outcome.report.consistency == Consistency::strict);
    }
    SECTION("a static whose address is taken cannot be covered, and says where") {
        ReachOutcome outcome =
            build_reach("reach_noop(void) {}", "reach_noop(void) { shared_state = 1; }");
        CHECK(outcome.error.find(
                  "reach_noop is 1 bytes, too short for the entry jump, and it cannot be patched "
                  "through its callers: its address is taken (reach_pointer +0x") !=
              std::string::npos);
    }
    SECTION("a global made local by the version script cannot be covered: other files") {
        ReachOutcome outcome =
            build_reach("hidden_short(int x) { return x; }", "hidden_short(int x) { return -x; }");
        CHECK(outcome.error.find("hidden_short is 3 bytes, too short for the entry jump, and it "
                                 "cannot be patched through its callers: it is global in its "
                                 "file (hidden in the library)") != std::string::npos);
    }
    SECTION("a global (exported here) cannot be covered: callers outside the unit") {
        ReachOutcome outcome = build_reach("reach_four(int x) { return x + 1; }",
                                           "reach_four(int x) { return x + 2; }");
        CHECK(outcome.error.find("reach_four is 4 bytes, too short for the entry jump, and it "
                                 "cannot be patched through its callers: it is exported by "
                                 "libreach.so, so programs and other libraries call it where "
                                 "it is") != std::string::npos);
    }
}
