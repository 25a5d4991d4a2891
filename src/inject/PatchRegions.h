#pragma once

#include <array>
#include <cstddef>
#include <optional>
#include <vector>

#include "base/Error.h"
#include "inject/RegionMarker.h"
#include "inject/RemoteAddress.h"
#include "inject/RemoteMemory.h"
#include "inject/StackCheck.h"
#include "proc/ProcessMaps.h"

namespace suture {

// Suture's regions in a process, found by reading its maps and memory (no
// stop needed; inside a stop the answers are final): the markers of applied
// and retired patches, how far each is in effect, and the empty regions
// that interrupted applies left (explained by their intent records). Layout
// of both: RegionMarker.h.

// The jump `marker` records for `function`, as bytes.
Result<std::array<std::byte, jump_size>> jump_of(const RegionMarker& marker,
                                                 const MarkedFunction& function);

// Markers of every suture region the process maps: private anonymous
// read+exec mappings that begin with the magic.
std::vector<RegionMarker> find_markers(const RemoteMemory& memory,
                                       const std::vector<Mapping>& mappings);

// How many of a marker's jump sites hold its jump, and whether any holds
// neither that jump nor the original bytes.
struct JumpCount {
    std::size_t in_place = 0;
    bool foreign = false;
};

Result<JumpCount> count_jumps(const RemoteMemory& memory, const RegionMarker& marker);

// An empty region an interrupted apply left, and where its intent record is.
struct InterruptedRegion {
    IntentRecord intent;
    RemoteAddress record_address;
};

// Intent records sit in the last bytes of executable file mappings; one whose
// region is still mapped but holds no marker is an interrupted apply's.
std::vector<InterruptedRegion> find_interrupted_regions(const RemoteMemory& memory,
                                                        const std::vector<Mapping>& mappings);

// The code range of a patch region, for the stack check.
CodeRange region_range(const RegionMarker& marker);

}  // namespace suture
