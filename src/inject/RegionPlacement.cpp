#include "inject/RegionPlacement.h"

#include <algorithm>

namespace suture {

namespace {

constexpr std::uint64_t page = 4096;

// The free gaps [start, end) between the mappings, from the lowest region
// address on.
std::vector<AddressWindow> free_gaps(const std::vector<Mapping>& mappings) {
    std::vector<AddressWindow> gaps;
    std::uint64_t previous_end = lowest_region_address;
    for (const Mapping& mapping : mappings) {
        if (mapping.start > previous_end) {
            gaps.push_back(
                AddressWindow{RemoteAddress(previous_end), RemoteAddress(mapping.start)});
        }
        previous_end = std::max(previous_end, mapping.end);
    }
    return gaps;
}

}  // namespace

AddressWindow rel32_window(RemoteAddress low, RemoteAddress high) {
    // Written so that nothing wraps around: a library near address 0 or
    // near the top of the address space clips the window instead.
    std::uint64_t start = high.raw() > rel32_reach ? high.raw() - rel32_reach : 0;
    std::uint64_t end =
        low.raw() < user_address_limit - rel32_reach ? low.raw() + rel32_reach : user_address_limit;
    return AddressWindow{RemoteAddress(std::max(start, lowest_region_address)), RemoteAddress(end)};
}

std::vector<RemoteAddress> region_candidates(const std::vector<Mapping>& mappings,
                                             RemoteAddress low, RemoteAddress high,
                                             std::uint64_t size) {
    AddressWindow window = rel32_window(low, high);
    std::vector<RemoteAddress> candidates;
    for (AddressWindow gap : free_gaps(mappings)) {
        gap.start = std::max(gap.start, window.start);
        gap.end = std::min(gap.end, window.end);
        if (gap.empty() || gap.end - gap.start < size + 2 * page) {
            continue;
        }
        // A guard page on each side; the end of the gap nearest the library.
        if (gap.start >= high) {
            candidates.push_back(gap.start + page);
        } else {
            candidates.push_back(RemoteAddress((gap.end - page - size).raw() & ~(page - 1)));
        }
    }
    auto distance = [&](RemoteAddress x) { return x >= high ? x - high : low - x; };
    std::sort(candidates.begin(), candidates.end(),
              [&](RemoteAddress a, RemoteAddress b) { return distance(a) < distance(b); });
    return candidates;
}

}  // namespace suture
