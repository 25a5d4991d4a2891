// suture-make-patch: the builder's last step. Given a source file compiled
// before and after a fix (with the package build's flags plus
// -ffunction-sections -fdata-sections), the archive's library and the
// rebuild's debug symbols, writes the patch file. suture-build runs it;
// it is also usable alone.

#include <algorithm>
#include <iostream>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "base/Files.h"
#include "builder/PatchBuilder.h"
#include "config.h"

namespace {

// "a.o:b.o:c.o" -> {"a.o", "b.o", "c.o"}.
std::vector<std::string> split_unit_argument(const std::string& argument) {
    std::vector<std::string> parts;
    std::size_t start = 0;
    for (std::size_t colon = argument.find(':'); colon != std::string::npos;
         colon = argument.find(':', start)) {
        parts.push_back(argument.substr(start, colon - start));
        start = colon + 1;
    }
    parts.push_back(argument.substr(start));
    return parts;
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{
        "suture-make-patch: diff two compiles of the source files a fix touches, function by\n"
        "function, and write a suture patch for one exact library build. Each --unit\n"
        "ORIGINAL.o:PATCHED.o is one source file compiled without and with the fix, using\n"
        "the package build's exact flags plus -ffunction-sections -fdata-sections; a third\n"
        "object, the same file before the fix compiled with the package build's flags alone,\n"
        "proves the functions whose jumps the assembler sized otherwise in their own section.",
        "suture-make-patch"};
    app.footer(
        "Exit status: 0 written, 1 error (message on stderr: the refused change, the\n"
        "ambiguous symbol, the mismatching bytes), 2 usage error.\n"
        "See docs/builder.md (how the diff works) and docs/patch-format.md.");
    app.set_version_flag("--version", std::string("suture-make-patch ") + SUTURE_VERSION);
    suture::BuildRequest request;
    std::vector<std::string> units;
    std::string output;
    bool json = false;
    std::string consistency;
    app.add_option("--library", request.library,
                   "The archive's library the patch is for (may be stripped)")
        ->required()
        ->check(CLI::ExistingFile);
    app.add_option("--debug-symbols", request.debug_symbols,
                   "Full symbol table of the same build (the rebuild's .debug file)")
        ->required()
        ->check(CLI::ExistingFile);
    app.add_option("--unit", units,
                   "ORIGINAL.o:PATCHED.o[:SINGLE_TEXT.o] (repeatable): the unit compiled with "
                   "-ffunction-sections -fdata-sections before and after the fix, and "
                   "optionally before the fix with the package build's flags alone, against "
                   "which a replaced function whose jumps the assembler sized otherwise in its "
                   "own section is proven equal to the library's")
        ->required();
    app.add_option("--id", request.patch_id, "Patch id, e.g. CVE-2026-63076")->required();
    app.add_option("--level", request.level, "Patch level (1..65535)")->check(CLI::Range(1, 65535));
    app.add_option("--description", request.description, "One line for humans");
    app.add_option("--runtime", request.runtime_object,
                   "The shadow runtime object (suture-patchrt.o), linked in when the fix "
                   "calls suture_shadow_*");
    app.add_option("-o,--output", output, "Where to write the patch file")->required();
    app.add_option("--consistency", consistency,
                   "entry or strict: what the patch's author asks for (default: the builder "
                   "decides; strict is always granted, entry only when the functions are "
                   "provably self-contained, see docs/builder.md)")
        ->check(CLI::IsMember({"entry", "strict"}));
    app.add_flag("--json", json, "Print the report as JSON");
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& error) {
        return app.exit(error) == 0 ? 0 : 2;
    }
    for (const std::string& unit : units) {
        auto parts = split_unit_argument(unit);
        if (parts.size() < 2 || parts.size() > 3 ||
            std::any_of(parts.begin(), parts.end(), [](const auto& part) { return part.empty(); })) {
            std::cerr << "suture-make-patch: error: --unit " << unit
                      << ": expected ORIGINAL.o:PATCHED.o or ORIGINAL.o:PATCHED.o:SINGLE_TEXT.o\n";
            return 2;
        }
        request.units.push_back({parts[0], parts[1], parts.size() == 3 ? parts[2] : ""});
    }
    if (!consistency.empty()) {
        request.consistency = suture::consistency_from_name(consistency);
    }
    suture::BuildReport report;
    auto patch = suture::build_patch(request, report);
    if (!patch) {
        std::cerr << "suture-make-patch: error: " << patch.error().message << "\n";
        return 1;
    }
    if (auto written = suture::write_file_atomically(output, *patch); !written) {
        std::cerr << "suture-make-patch: error: " << written.error().message << "\n";
        return 1;
    }
    if (json) {
        nlohmann::json document = {{"output", output},
                                   {"replaced", report.replaced},
                                   {"added", report.added},
                                   {"references", report.references},
                                   {"imports", report.imports},
                                   {"callbacks", report.callbacks},
                                   {"consistency", suture::consistency_name(report.consistency)},
                                   {"consistency_reason", report.consistency_reason},
                                   {"relaxations", report.relaxations},
                                   {"single_text_proofs", report.single_text_proofs},
                                   {"stand_ins", report.stand_ins}};
        std::cout << document.dump(2) << "\n";
    } else {
        std::cout << output << ": " << report.replaced.size() << " function(s) replaced\n";
        std::cout << "  consistency: " << suture::consistency_name(report.consistency) << " ("
                  << report.consistency_reason << ")\n";
        for (const auto& line : report.replaced) {
            std::cout << "  replaces " << line << "\n";
        }
        for (const auto& line : report.added) {
            std::cout << "  adds     " << line << "\n";
        }
        for (const auto& line : report.stand_ins) {
            std::cout << "  short    " << line << "\n";
        }
        for (const auto& line : report.relaxations) {
            std::cout << "  relaxed  " << line << "\n";
        }
        for (const auto& line : report.single_text_proofs) {
            std::cout << "  proven   " << line << " (the single-.text compile)\n";
        }
        for (const auto& line : report.references) {
            std::cout << "  uses     " << line << "\n";
        }
        for (const auto& line : report.imports) {
            std::cout << "  imports  " << line << "\n";
        }
        for (const auto& line : report.callbacks) {
            std::cout << "  callback " << line << "\n";
        }
    }
    return 0;
}
