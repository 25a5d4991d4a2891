// libFuzzer target: the patch file parser (container, JSON metadata, ELF
// relocatable object), which reads files that came through the feed.
#include <cstddef>
#include <cstdint>
#include <span>

#include "elf/ElfFile.h"
#include "patch/PatchFile.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static bool initialised = suture::initialise_libelf();
    (void)initialised;
    (void)suture::parse_patch(std::as_bytes(std::span(data, size)), "fuzz");
    return 0;
}
