#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <vector>

#include "base/Error.h"
#include "inject/RemoteAddress.h"
#include "patch/PatchFile.h"

namespace suture {

// Where everything of a patch goes inside its region, computed before any
// address is known (so before the target is stopped):
//
//   +0               region marker (RegionMarker), 64-byte aligned
//   +code_offset     the object's loaded sections, each at its alignment
//   +got_offset      one 8-byte slot per referenced symbol (GOT)
//   +stubs_offset    one 16-byte `jmp *slot(%rip)` stub per referenced
//                    symbol, for calls to code more than 2 GiB away
//   size             page aligned: the code region ends here
//   +size            the data region (only if the object has writable
//                    sections): .data, .bss, .data.rel.ro …, each at its
//                    alignment; data_size page aligned
//
// The code region is mapped read+exec only, the data region read+write
// only (never executable, so MDWE targets can be patched); both are
// written through /proc/PID/mem. The data region follows the code region
// directly, so one address places both, and section offsets count from the
// code region's start in either.
struct PatchLayout {
    std::size_t marker_size = 0;
    std::vector<RegionOffset> section_offsets;          // by section index; 0 if not loaded
    std::map<std::size_t, std::size_t> slot_of_symbol;  // symbol index -> GOT/stub slot
    RegionOffset got_offset = 0;
    RegionOffset stubs_offset = 0;
    std::size_t size = 0;       // the code region
    std::size_t data_size = 0;  // the data region at +size; 0: none
};

// Is section `index` of `object` placed in the data region (loaded and
// writable: .data, .bss, .data.rel.ro and their -fdata-sections parts)?
bool is_data_section(const RelocatableObject& object, std::size_t index);

Result<PatchLayout> layout_patch(const PatchFile& patch);

// Resolves an import (name@version) to an address in the target.
using ImportResolver = std::function<Result<RemoteAddress>(const Import&)>;

// The region's bytes for `region_address`, with every relocation applied,
// but without the marker (the caller fills [0, marker_size) last):
// layout.size bytes of code followed by layout.data_size bytes of data.
// The symbol `shadow_table_symbol` (PatchFile.h) is resolved through
// `resolve_import` too, as an import of that name with version "suture".
// Supported: R_X86_64_64, PC32, PLT32, GOTPCREL, GOTPCRELX, REX_GOTPCRELX,
// 32, 32S, PC64. `replacement_addresses` receives, per metadata function,
// the absolute address of its replacement.
Result<std::vector<std::byte>> build_patch_image(const PatchFile& patch, const PatchLayout& layout,
                                                 RemoteAddress region_address,
                                                 RemoteAddress target_base,
                                                 const ImportResolver& resolve_import,
                                                 std::vector<RemoteAddress>& replacement_addresses);

}  // namespace suture
