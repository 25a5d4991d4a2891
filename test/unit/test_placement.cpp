#include <cstring>

#include <catch2/catch.hpp>

#include "inject/RegionMarker.h"
#include "inject/RegionPlacement.h"
#include "inject/RemoteAddress.h"

using namespace suture;

namespace {

constexpr std::uint64_t two_gib = std::uint64_t{1} << 31;
constexpr std::uint64_t page = 4096;

Mapping mapped(std::uint64_t start, std::uint64_t end) {
    Mapping mapping;
    mapping.start = start;
    mapping.end = end;
    return mapping;
}

bool jump_reaches(RemoteAddress site, RemoteAddress destination) {
    return encode_jump(site.raw(), destination.raw()).has_value();
}

}  // namespace

TEST_CASE("a remote address moves by offsets, and two of them differ by one") {
    RemoteAddress base(0x7f0000000000);
    RemoteAddress function = base + 0x1150;
    CHECK(function.raw() == 0x7f0000001150);
    CHECK(function - base == 0x1150);
    CHECK(function - 0x150 == base + 0x1000);
    CHECK(base < function);
    CHECK(RemoteAddress(0x7f0000001234).align_down(page) == base + 0x1000);
    CHECK(RemoteAddress(0x7f0000001234).align_up(page) == base + 0x2000);
    CHECK(RemoteAddress(0x7f0000001000).align_up(page) == base + 0x1000);
}

TEST_CASE("a jump reaches 2^31 - 1 bytes forward and 2^31 back from its end, no further") {
    RemoteAddress site(0x7f0000000000);
    RemoteAddress end = site + jump_size;
    CHECK(jump_reaches(site, end + (two_gib - 1)));
    CHECK_FALSE(jump_reaches(site, end + two_gib));
    CHECK(jump_reaches(site, end - two_gib));
    CHECK_FALSE(jump_reaches(site, end - (two_gib + 1)));
}

TEST_CASE("a marked function's jump site is its start in the library, after an endbr64") {
    RegionMarker marker;
    marker.target_base = 0x7f0000000000;
    MarkedFunction plain{0x1150, 16, 0, 0, {}};
    MarkedFunction after_endbr64{0x1150, 16, 0, 4, {}};
    CHECK(jump_site(marker, plain) == RemoteAddress(0x7f0000001150));
    CHECK(jump_site(marker, after_endbr64) == RemoteAddress(0x7f0000001154));
}

TEST_CASE("the rel32 window lies within 2 GiB of every byte of the library, less a page") {
    RemoteAddress low(0x7f0000000000);
    RemoteAddress high = low + 0x400000;
    AddressWindow window = rel32_window(low, high);
    CHECK(window.start == high - two_gib + page);
    CHECK(window.end == low + two_gib - page);
    // Every jump site of the library reaches every byte of the window, and
    // every call site of the window reaches every byte of the library.
    CHECK(jump_reaches(low, window.end - 1));
    CHECK(jump_reaches(high - jump_size, window.start));
    CHECK(jump_reaches(window.start, high - 1));
    CHECK(jump_reaches(window.end - jump_size, low));
    // A byte more than a page below the window is out of the reach of the
    // library's last jump site.
    CHECK_FALSE(jump_reaches(high - jump_size, window.start - page - 1));
}

TEST_CASE("the rel32 window stops at the lowest address mmap hands out, never wrapping below 0") {
    SECTION("a library low in memory") {
        AddressWindow window = rel32_window(RemoteAddress(0x400000), RemoteAddress(0x500000));
        CHECK(window.start == RemoteAddress(lowest_region_address));
        CHECK(window.end == RemoteAddress(0x400000 + two_gib - page));
    }
    SECTION("a library ending exactly 2^31 bytes up") {
        AddressWindow window =
            rel32_window(RemoteAddress(two_gib - 0x100000), RemoteAddress(two_gib));
        CHECK(window.start == RemoteAddress(lowest_region_address));
    }
    SECTION("a library ending 2^31 + 16 pages up: the window begins a page above the floor") {
        std::uint64_t high = two_gib + lowest_region_address;
        AddressWindow window = rel32_window(RemoteAddress(high - page), RemoteAddress(high));
        CHECK(window.start == RemoteAddress(lowest_region_address + page));
    }
}

TEST_CASE("the rel32 window stops at the end of the user address space") {
    RemoteAddress low(user_address_limit - 0x10000000);
    AddressWindow window = rel32_window(low, low + 0x100000);
    CHECK(window.end == RemoteAddress(user_address_limit));
    CHECK(window.start == low + 0x100000 - two_gib + page);
    SECTION("even for a library said to lie above it") {
        AddressWindow above =
            rel32_window(RemoteAddress(0xffffffffff600000), RemoteAddress(0xffffffffff601000));
        CHECK(above.end == RemoteAddress(user_address_limit));
        CHECK(above.empty());
    }
}

TEST_CASE("a library as wide as twice the reach leaves no window") {
    RemoteAddress low(0x7f0000000000);
    CHECK(rel32_window(low, low + 2 * rel32_reach).empty());
    CHECK_FALSE(rel32_window(low, low + 2 * rel32_reach - page).empty());
}

TEST_CASE("region candidates: one per free gap in the window, guard pages kept, nearest first") {
    const std::uint64_t library = 0x7f0000000000;
    std::vector<Mapping> mappings = {
        mapped(0x555500000000, 0x555500100000),                    // far below: outside the window
        mapped(library - 0x40000000, library - 0x3000),            // leaves a 3-page gap below
        mapped(library, library + 0x100000),                       // the library
        mapped(library + 0x100000 + 0x10000, library + 0x200000),  // a 16-page gap above
        mapped(library + 0x300000, library + 0x400000),            // then a 256-page gap
        mapped(0x7ffd00000000, 0x7ffd00021000),                    // [stack]
        mapped(0xffffffffff600000, 0xffffffffff601000),            // [vsyscall]
    };
    RemoteAddress low(library);
    RemoteAddress high(library + 0x100000);
    SECTION("one page fits a 3-page gap with its guards") {
        auto candidates = region_candidates(mappings, low, high, page);
        REQUIRE(candidates.size() >= 3);
        // The 16-page gap just above: its lowest page but one, a page away.
        CHECK(candidates[0] == high + page);
        // The 3-page gap just below: its highest page but one, two pages away.
        CHECK(candidates[1] == low - 2 * page);
        CHECK(candidates[2] == RemoteAddress(library + 0x200000 + page));
    }
    SECTION("sixteen pages fit only the 256-page gap and those further away") {
        auto candidates = region_candidates(mappings, low, high, 16 * page);
        REQUIRE_FALSE(candidates.empty());
        CHECK(candidates[0] == RemoteAddress(library + 0x200000 + page));
    }
    SECTION("no candidate outside the window") {
        AddressWindow window = rel32_window(low, high);
        for (RemoteAddress candidate : region_candidates(mappings, low, high, page)) {
            CHECK(candidate >= window.start);
            CHECK(candidate + page <= window.end);
        }
    }
}

TEST_CASE("the gap between the end of user space and [vsyscall] is no candidate") {
    const std::uint64_t library = user_address_limit - 0x40000000;
    std::vector<Mapping> mappings = {
        mapped(library, library + 0x100000),
        mapped(library + 0x100000, user_address_limit),  // up to the top: the stack
        mapped(0xffffffffff600000, 0xffffffffff601000),  // [vsyscall]
    };
    auto candidates = region_candidates(mappings, RemoteAddress(library),
                                        RemoteAddress(library + 0x100000), 4 * page);
    REQUIRE(candidates.size() == 1);
    CHECK(candidates[0] == RemoteAddress(library - 5 * page));
}

TEST_CASE("code and data are placed as one: the pair fits a gap with a guard page each side") {
    // The library at [lib, lib + 2 MiB); a gap above it of exactly
    // code + data + two guard pages, then another mapping.
    const std::uint64_t lib = 0x7f0000000000;
    const std::uint64_t code = 3 * page;
    const std::uint64_t data = 2 * page;
    const std::uint64_t gap_start = lib + 0x200000;
    std::vector<Mapping> mappings = {mapped(lib, gap_start),
                                     mapped(gap_start + code + data + 2 * page, lib + 0x400000)};
    auto candidates =
        region_candidates(mappings, RemoteAddress(lib), RemoteAddress(gap_start), code + data);
    REQUIRE_FALSE(candidates.empty());
    RemoteAddress region = candidates.front();
    CHECK(region == RemoteAddress(gap_start + page));
    // The data region (region + code) ends a guard page before the next
    // mapping, and every byte of both is within rel32 reach of the library.
    CHECK((region + code + data).raw() + page == mappings[1].start);
    CHECK(jump_reaches(RemoteAddress(lib), region + code + data - 1));
    // One page more of data and the gap no longer holds the pair.
    auto too_big = region_candidates(mappings, RemoteAddress(lib), RemoteAddress(gap_start),
                                     code + data + page);
    for (RemoteAddress candidate : too_big) {
        CHECK(candidate != RemoteAddress(gap_start + page));
    }
}
