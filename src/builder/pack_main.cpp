// suture-pack: packs a hand-written, compiled patch object into a suture patch
// file for one exact library build (the tests' demo patches). Patches made
// from a distribution's source come from suture-build / suture-make-patch.

#include <iostream>

#include <CLI/CLI.hpp>

#include "base/Files.h"
#include "builder/PatchPacker.h"
#include "config.h"

int main(int argc, char** argv) {
    CLI::App app{
        "suture-pack: make a suture patch file from a relocatable object (gcc -c output)\n"
        "for one exact build of a shared library. Each --replace SYMBOL=FUNCTION says\n"
        "that FUNCTION of the object replaces SYMBOL of the library; SYMBOL's offset,\n"
        "size and SHA-256 are read from the library itself.",
        "suture-pack"};
    app.footer(
        "Exit status: 0 written, 1 error (message on stderr), 2 usage error.\n"
        "Format: docs/patch-format.md.");
    app.set_version_flag("--version", std::string("suture-pack ") + SUTURE_VERSION);
    suture::PackRequest request;
    std::string output;
    std::vector<std::string> replacements;
    std::string consistency = "strict";
    app.add_option("--target", request.target_library, "The library build the patch is for")
        ->required()
        ->check(CLI::ExistingFile);
    app.add_option("--object", request.object_path, "The patch code (ELF relocatable object)")
        ->required()
        ->check(CLI::ExistingFile);
    app.add_option("--id", request.patch_id, "Patch id, e.g. CVE-2026-63076")->required();
    app.add_option("--level", request.level,
                   "Patch level (1..65535; a higher level replaces a lower)")
        ->check(CLI::Range(1, 65535));
    app.add_option("--description", request.description, "One line for humans");
    app.add_option("--replace", replacements, "SYMBOL=FUNCTION (repeatable)")->required();
    app.add_option("--consistency", consistency,
                   "entry or strict (default strict). entry only if the replaced functions are "
                   "self-contained: none depends on another's new behaviour, so a thread may "
                   "finish an old body while others run new ones (docs/patch-format.md)")
        ->check(CLI::IsMember({"entry", "strict"}));
    app.add_option("-o,--output", output, "Where to write the patch file")->required();
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& error) {
        return app.exit(error) == 0 ? 0 : 2;
    }
    for (const std::string& replacement : replacements) {
        auto equals = replacement.find('=');
        if (equals == std::string::npos || equals == 0 || equals + 1 == replacement.size()) {
            std::cerr << "suture-pack: error: --replace " << replacement
                      << ": expected SYMBOL=FUNCTION\n";
            return 2;
        }
        request.replacements.emplace_back(replacement.substr(0, equals),
                                          replacement.substr(equals + 1));
    }
    request.consistency = *suture::consistency_from_name(consistency);
    auto patch = suture::pack_patch(request);
    if (!patch) {
        std::cerr << "suture-pack: error: " << patch.error().message << "\n";
        return 1;
    }
    if (auto written = suture::write_file_atomically(output, *patch); !written) {
        std::cerr << "suture-pack: error: " << written.error().message << "\n";
        return 1;
    }
    return 0;
}
