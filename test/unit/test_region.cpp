#include <algorithm>
#include <cstring>

#include <elf.h>

#include <catch2/catch.hpp>

#include "inject/PatchImage.h"
#include "inject/RegionMarker.h"
#include "inject/StackCheck.h"

using namespace suture;

TEST_CASE("a region marker decodes to what was encoded") {
    RegionMarker marker;
    marker.patch_id = "CVE-2026-63076";
    marker.level = 3;
    marker.target_build_id = "7d90f38412d00023e58392b03612a24b62fcaede";
    marker.target_base = 0x7f0000000000;
    marker.region_size = 8192;
    marker.applied_at_unix_ns = 1234567890;
    marker.functions.push_back(
        MarkedFunction{0x1150,
                       10,
                       0x7f0000100040,
                       4,
                       {std::byte{1}, std::byte{2}, std::byte{3}, std::byte{4}, std::byte{5}}});
    auto bytes = encode_region_marker(marker);
    CHECK(bytes.size() == region_marker_size(1));
    CHECK(bytes.size() % 64 == 0);
    auto decoded = decode_region_marker(bytes);
    REQUIRE(decoded);
    CHECK(decoded->patch_id == marker.patch_id);
    CHECK(decoded->level == 3);
    CHECK(decoded->target_build_id == marker.target_build_id);
    CHECK(decoded->target_base == marker.target_base);
    CHECK(decoded->region_size == 8192);
    REQUIRE(decoded->functions.size() == 1);
    CHECK(decoded->functions[0].replacement_address == 0x7f0000100040);
    CHECK(decoded->functions[0].jump_offset == 4);
    CHECK(decoded->functions[0].original == marker.functions[0].original);
}

TEST_CASE("damaged markers are refused, never trusted") {
    RegionMarker marker;
    marker.patch_id = "p";
    marker.level = 1;
    marker.target_build_id = "ab";
    marker.functions.resize(2, MarkedFunction{0, 16, 0, 4, {}});
    auto bytes = encode_region_marker(marker);
    CHECK_FALSE(decode_region_marker(std::span(bytes).first(100)));
    auto wrong_count = bytes;
    wrong_count[44] = std::byte{200};
    CHECK_FALSE(decode_region_marker(wrong_count));
    auto no_magic = bytes;
    no_magic[0] = std::byte{'X'};
    CHECK_FALSE(decode_region_marker(no_magic));
    auto bad_jump = bytes;
    bad_jump[192 + 24] = std::byte{9};  // jump_offset 9 > 4
    CHECK_FALSE(decode_region_marker(bad_jump));
}

TEST_CASE("a jump is e9 and a displacement from the end of the jump") {
    auto jump = encode_jump(0x1000, 0x2000);
    REQUIRE(jump);
    CHECK((*jump)[0] == std::byte{0xe9});
    std::int32_t displacement;
    std::memcpy(&displacement, jump->data() + 1, 4);
    CHECK(displacement == 0x2000 - 0x1005);
    CHECK_FALSE(encode_jump(0x1000, 0x1000 + (1ull << 32)));
}

TEST_CASE("the patch image resolves calls into the library relative to its base") {
    auto patch = read_patch_file(DEMO_PATCH_V2);
    REQUIRE(patch);
    auto layout = layout_patch(*patch);
    REQUIRE(layout);
    CHECK(layout->size % 4096 == 0);
    const std::uint64_t region = 0x7f1000000000;
    const std::uint64_t base = 0x7f1000200000;
    std::vector<RemoteAddress> replacements;
    auto image = build_patch_image(
        *patch, *layout, RemoteAddress(region), RemoteAddress(base),
        [](const Import&) -> Result<RemoteAddress> {
            return RemoteAddress(0x7f2000000000);  // far away
        },
        replacements);
    REQUIRE(image);
    REQUIRE(replacements.size() == 6);
    // demo_with_helper_v2: endbr64; sub rsp,8; call demo_helper (e8 rel32).
    std::uint64_t function = replacements[2].raw();
    std::size_t offset = function - region;
    REQUIRE((*image)[offset + 8] == std::byte{0xe8});
    std::int32_t rel32;
    std::memcpy(&rel32, image->data() + offset + 9, 4);
    std::uint64_t helper_offset = 0;
    for (const auto& reference : patch->metadata.target_references) {
        if (reference.symbol == "demo_helper") {
            helper_offset = reference.offset;
        }
    }
    CHECK(function + 13 + rel32 == base + helper_offset);
    // A call to an import 4 GiB away goes through a stub: jmp *0(%rip).
    std::uint64_t libc_function = replacements[4].raw();
    bool through_stub = false;
    for (std::size_t at = libc_function - region; at + 5 < image->size(); ++at) {
        if ((*image)[at] != std::byte{0xe8}) {
            continue;
        }
        std::memcpy(&rel32, image->data() + at + 1, 4);
        std::uint64_t destination = region + at + 5 + rel32;
        if (destination >= region + layout->stubs_offset && destination < region + layout->size) {
            through_stub = (*image)[destination - region] == std::byte{0xff};
            break;
        }
    }
    CHECK(through_stub);
}

// The destination of the first `call rel32` (e8) in the function at `at`.
std::uint64_t first_call_destination(const std::vector<std::byte>& image, std::uint64_t region,
                                     std::uint64_t at) {
    for (std::size_t offset = at - region; offset + 5 < image.size(); ++offset) {
        if (image[offset] == std::byte{0xe8}) {
            std::int32_t rel32;
            std::memcpy(&rel32, image.data() + offset + 1, 4);
            return region + offset + 5 + rel32;
        }
    }
    return 0;
}

TEST_CASE("a call to a function the same patch replaces goes to its replacement") {
    // demo-pair: demo_pair_sum_pair calls demo_pair_step, which the patch
    // replaces too. The call must not go through the old entry's jump, which
    // a revert takes away while a thread may still run the new sum.
    auto patch = read_patch_file(DEMO_PATCH_PAIR);
    REQUIRE(patch);
    auto layout = layout_patch(*patch);
    REQUIRE(layout);
    const std::uint64_t region = 0x7f1000000000;
    const std::uint64_t base = 0x7f1000200000;
    std::vector<RemoteAddress> replacements;
    auto image = build_patch_image(
        *patch, *layout, RemoteAddress(region), RemoteAddress(base),
        [](const Import&) -> Result<RemoteAddress> { return RemoteAddress(0x7f2000000000); },
        replacements);
    REQUIRE(image);
    REQUIRE(patch->metadata.functions.size() == 2);
    REQUIRE(patch->metadata.functions[0].symbol == "demo_pair_step");
    REQUIRE(patch->metadata.functions[1].symbol == "demo_pair_sum");
    CHECK(first_call_destination(*image, region, replacements[1].raw()) == replacements[0].raw());
}

TEST_CASE("an intent record names the region about to be mapped, and nothing else passes for one") {
    auto bytes = encode_intent_record(IntentRecord{0x7f3183dc0000, 8192});
    CHECK(bytes.size() == intent_record_size);
    auto intent = decode_intent_record(bytes);
    REQUIRE(intent);
    CHECK(intent->region_address == 0x7f3183dc0000);
    CHECK(intent->region_size == 8192);
    CHECK_FALSE(decode_intent_record(std::vector<std::byte>(intent_record_size)));  // zeros
    CHECK_FALSE(decode_intent_record(std::span(bytes).first(16)));
    auto unaligned = encode_intent_record(IntentRecord{0x7f3183dc0010, 8192});
    CHECK_FALSE(decode_intent_record(unaligned));
}

TEST_CASE("a retired region's marker says so; markers from before the field read as in use") {
    RegionMarker marker;
    marker.patch_id = "CVE-2026-63076";
    marker.level = 1;
    marker.target_build_id = "ab";
    auto in_use = decode_region_marker(encode_region_marker(marker));
    REQUIRE(in_use);
    CHECK_FALSE(in_use->retired());
    marker.retired_at_unix_ns = 1700000000000000000ull;
    auto bytes = encode_region_marker(marker);
    std::uint64_t stored = 0;
    std::memcpy(&stored, bytes.data() + region_marker_retired_offset, sizeof stored);
    CHECK(stored == marker.retired_at_unix_ns);  // where the revert writes it
    auto retired = decode_region_marker(bytes);
    REQUIRE(retired);
    CHECK(retired->retired());
    CHECK(retired->retired_at_unix_ns == marker.retired_at_unix_ns);
}

TEST_CASE("what a code range holds: a whole body (strict) or a jump's 5 bytes (entry)") {
    CodeRange body{0x1000, 0x1040, "f"};
    CHECK(body.holds_pc(0x1000));
    CHECK(body.holds_pc(0x103f));
    CHECK_FALSE(body.holds_pc(0x1040));
    // A return address r is in the way when its call, at r - 1, is inside.
    CHECK(body.holds_return_address(0x1040));
    CHECK_FALSE(body.holds_return_address(0x1000));
    CHECK(body.might_hold_word(0x1000));
    CHECK(body.might_hold_word(0x1040));

    CodeRange site{0x1004, 0x1009, "jump site of f", CodeRange::Kind::overwritten};
    CHECK_FALSE(site.holds_pc(0x1004));  // it will execute the jump
    CHECK(site.holds_pc(0x1005));
    CHECK(site.holds_pc(0x1008));
    CHECK_FALSE(site.holds_pc(0x1009));  // past the jump: the old body goes on
    CHECK_FALSE(site.holds_pc(0x1030));
    CHECK(site.holds_return_address(0x1008));  // a call among the 5 bytes returns into them
    CHECK_FALSE(site.holds_return_address(0x1009));
    CHECK_FALSE(site.holds_return_address(0x1004));
    // The scan's test agrees with the unwinder's for every word.
    for (std::uint64_t word = 0x1000; word < 0x1010; ++word) {
        CHECK(site.might_hold_word(word) == site.holds_return_address(word));
    }
}

TEST_CASE("a region marker keeps its callbacks block, and older markers read as none") {
    RegionMarker marker;
    marker.patch_id = "demo-callbacks";
    marker.level = 1;
    marker.target_build_id = "abcd";
    marker.region_size = 8192;
    marker.functions.push_back(MarkedFunction{0x1150, 10, 0x7f0000100040, 4, {}});
    auto plain = encode_region_marker(marker);
    auto decoded_plain = decode_region_marker(plain);
    REQUIRE(decoded_plain);
    CHECK_FALSE(decoded_plain->callbacks.any());
    CHECK(std::to_integer<int>(plain[region_marker_flags_offset]) == 0);

    marker.callbacks = MarkedCallbacks{0x100, 0x140, 0, 0x1c0};
    auto bytes = encode_region_marker(marker);
    CHECK(bytes.size() == region_marker_size(1, {.callbacks = true}));
    auto decoded = decode_region_marker(bytes);
    REQUIRE(decoded);
    CHECK(decoded->callbacks.pre_apply == 0x100);
    CHECK(decoded->callbacks.post_apply == 0x140);
    CHECK(decoded->callbacks.pre_revert == 0);
    CHECK(decoded->callbacks.post_revert == 0x1c0);

    // An offset outside the region is damage, not a callback.
    marker.callbacks.post_apply = 9000;
    CHECK_FALSE(decode_region_marker(encode_region_marker(marker)));
}

TEST_CASE("a marker with a data region carries it in its extension; one without is unchanged") {
    RegionMarker marker;
    marker.patch_id = "demo-data";
    marker.level = 2;
    marker.target_build_id = "ab";
    marker.region_size = 8192;
    marker.functions.resize(1, MarkedFunction{0x1150, 16, 0x7f0000100040, 4, {}});
    auto without = encode_region_marker(marker);
    CHECK(without.size() == region_marker_size(1));
    marker.data_address = 0x7f0000102000;
    marker.data_size = 4096;
    auto with = encode_region_marker(marker);
    CHECK(with.size() == region_marker_size(1, {.data = true}));
    CHECK(with.size() == without.size() + 64);
    // The part before the extension is what a marker without data holds,
    // but for the marker's own size (bytes 12..15).
    CHECK(std::equal(without.begin() + 16, without.end(), with.begin() + 16));
    auto decoded = decode_region_marker(with);
    REQUIRE(decoded);
    CHECK(decoded->data_address == 0x7f0000102000);
    CHECK(decoded->data_size == 4096);
    CHECK(decoded->functions.size() == 1);
    auto plain = decode_region_marker(without);
    REQUIRE(plain);
    CHECK(plain->data_size == 0);
    auto bad_magic = with;
    bad_magic[with.size() - 64] = std::byte{'X'};
    CHECK_FALSE(decode_region_marker(bad_magic));
    auto unaligned = with;
    unaligned[with.size() - 64 + 8] = std::byte{1};  // data address not page aligned
    CHECK_FALSE(decode_region_marker(unaligned));
}

namespace {

// A marker of `function_count` functions with the given extensions; the
// callbacks and the data region at fixed places.
RegionMarker combination_marker(std::size_t function_count, bool callbacks, bool data) {
    RegionMarker marker;
    marker.patch_id = "demo-both";
    marker.level = 1;
    marker.target_build_id = "0123456789abcdef";
    marker.target_base = 0x7f0000000000;
    marker.region_size = 16384;
    marker.applied_at_unix_ns = 42;
    for (std::size_t i = 0; i < function_count; ++i) {
        marker.functions.push_back(
            MarkedFunction{0x1000 + 0x100 * i, 32, 0x7f0000101000 + i, 0, {std::byte{0x55}}});
    }
    if (callbacks) {
        marker.callbacks = MarkedCallbacks{0x1000, 0x1040, 0x1080, 0};
    }
    if (data) {
        marker.data_address = 0x7f0000104000;
        marker.data_size = 8192;
    }
    return marker;
}

}  // namespace

TEST_CASE("data and callbacks extensions coexist: every combination round-trips") {
    // 2 functions: the callbacks block fits in the padding (288 + 32 = 320,
    // so the size alone cannot tell it; the flag does); 3: it makes the
    // marker 64 bytes longer. Both must read back every extension.
    for (std::size_t functions : {std::size_t{1}, std::size_t{2}, std::size_t{3}}) {
        for (bool callbacks : {false, true}) {
            for (bool data : {false, true}) {
                INFO("functions " << functions << " callbacks " << callbacks << " data " << data);
                RegionMarker marker = combination_marker(functions, callbacks, data);
                auto bytes = encode_region_marker(marker);
                CHECK(bytes.size() == region_marker_size(functions, {callbacks, data}));
                CHECK(bytes.size() % 64 == 0);
                CHECK(std::to_integer<int>(bytes[region_marker_flags_offset]) ==
                      (callbacks ? 1 : 0));
                auto decoded = decode_region_marker(bytes);
                REQUIRE(decoded);
                CHECK(decoded->functions.size() == functions);
                CHECK(decoded->callbacks.pre_apply == marker.callbacks.pre_apply);
                CHECK(decoded->callbacks.post_apply == marker.callbacks.post_apply);
                CHECK(decoded->callbacks.pre_revert == marker.callbacks.pre_revert);
                CHECK(decoded->callbacks.post_revert == 0);
                CHECK(decoded->data_address == marker.data_address);
                CHECK(decoded->data_size == marker.data_size);
                // Encoding what was decoded gives the same bytes.
                decoded->region_address = 0;
                CHECK(encode_region_marker(*decoded) == bytes);
            }
        }
    }
}

TEST_CASE("a marker with neither extension is byte for byte the original layout") {
    RegionMarker marker = combination_marker(2, false, false);
    auto bytes = encode_region_marker(marker);
    // Fixed part 192 + 2 functions of 48 = 288, aligned to 320; nothing else.
    REQUIRE(bytes.size() == 320);
    CHECK(std::to_integer<int>(bytes[region_marker_flags_offset]) == 0);
    std::uint32_t size = 0;
    std::memcpy(&size, bytes.data() + region_marker_size_offset, 4);
    CHECK(size == 320);
    // Everything after the functions is zero: no callbacks block, no data
    // extension.
    CHECK(std::all_of(bytes.begin() + 288, bytes.end(),
                      [](std::byte b) { return b == std::byte{0}; }));
    // The bytes of the layout before either extension, written by hand.
    std::vector<std::byte> expected(320);
    auto put = [&](std::size_t at, const void* value, std::size_t length) {
        std::memcpy(expected.data() + at, value, length);
    };
    put(0, "SUTUREPR", 8);
    std::uint32_t version = 1, function_count = 2, level = 1;
    std::uint64_t region_size = 16384, base = 0x7f0000000000, applied = 42;
    put(8, &version, 4);
    put(12, &size, 4);
    put(16, &region_size, 8);
    put(24, &base, 8);
    put(32, &applied, 8);
    put(40, &level, 4);
    put(44, &function_count, 4);
    const unsigned char build_id[] = {8, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef};
    put(48, build_id, sizeof build_id);
    const char patch_id[] =
        "\x09"
        "demo-both";
    put(113, patch_id, 10);
    for (std::size_t i = 0; i < 2; ++i) {
        const MarkedFunction& function = marker.functions[i];
        std::size_t at = 192 + 48 * i;
        put(at, &function.target_offset, 8);
        put(at + 8, &function.target_size, 8);
        put(at + 16, &function.replacement_address, 8);
        put(at + 24, &function.jump_offset, 4);
        put(at + 28, function.original.data(), 5);
    }
    CHECK(bytes == expected);
}

TEST_CASE("a marker with both extensions: callbacks after the functions, data at the end") {
    RegionMarker marker = combination_marker(1, true, true);
    auto bytes = encode_region_marker(marker);
    // 192 + 48 + 32 = 272, aligned to 320, then the 64-byte data extension.
    REQUIRE(bytes.size() == 384);
    std::uint64_t pre_apply = 0;
    std::memcpy(&pre_apply, bytes.data() + 192 + 48, 8);
    CHECK(pre_apply == 0x1000);
    CHECK(std::memcmp(bytes.data() + 320, "SUTUREDA", 8) == 0);
    // Without its flag the size fits no layout (256 or 256 + 64): refused,
    // not misread.
    auto no_flag = bytes;
    no_flag[region_marker_flags_offset] = std::byte{0};
    CHECK_FALSE(decode_region_marker(no_flag));
    // A callbacks offset outside the region is damage in either combination.
    marker.callbacks.post_revert = marker.region_size;
    CHECK_FALSE(decode_region_marker(encode_region_marker(marker)));
}

namespace {

std::uint64_t read_u64(const std::vector<std::byte>& image, std::uint64_t at) {
    std::uint64_t value;
    std::memcpy(&value, image.data() + at, 8);
    return value;
}

}  // namespace

TEST_CASE("writable sections go to the data region after the code, relocated both ways") {
    // demo-data: .bss (calls), .data (step), .data.rel.ro (counters: a
    // pointer into the data region; steps: a pointer into the code).
    auto patch = read_patch_file(DEMO_DATA_1);
    REQUIRE(patch);
    auto layout = layout_patch(*patch);
    REQUIRE(layout);
    CHECK(layout->size % 4096 == 0);
    CHECK(layout->data_size % 4096 == 0);
    CHECK(layout->data_size > 0);
    CHECK(layout->marker_size ==
          region_marker_size(patch->metadata.functions.size(), {.data = true}));
    const auto& object = patch->object;
    std::size_t data_sections = 0;
    for (std::size_t index = 1; index < object.sections().size(); ++index) {
        if (!object.is_loaded(index)) {
            continue;
        }
        bool data = is_data_section(object, index);
        data_sections += data ? 1 : 0;
        if (data) {
            CHECK(layout->section_offsets[index] >= layout->size);
            CHECK(layout->section_offsets[index] + object.sections()[index].size <=
                  layout->size + layout->data_size);
        } else {
            CHECK(layout->section_offsets[index] < layout->size);
            CHECK((object.sections()[index].flags & SHF_WRITE) == 0);
        }
    }
    CHECK(data_sections >= 3);
    const std::uint64_t region = 0x7f1000000000;
    const std::uint64_t base = 0x7f1000200000;
    const std::uint64_t shadow = 0x7f1000400000;
    std::vector<RemoteAddress> replacements;
    auto image = build_patch_image(
        *patch, *layout, RemoteAddress(region), RemoteAddress(base),
        [&](const Import& import) -> Result<RemoteAddress> {
            if (import.symbol == shadow_table_symbol && import.version == "suture") {
                return RemoteAddress(shadow);
            }
            return RemoteAddress(0x7f2000000000);
        },
        replacements);
    REQUIRE(image);
    CHECK(image->size() == layout->size + layout->data_size);
    auto address_of = [&](const char* name) {
        const auto* symbol = object.find_defined(name);
        REQUIRE(symbol != nullptr);
        return region + layout->section_offsets[symbol->section] + symbol->value;
    };
    std::uint64_t calls = address_of("calls");
    std::uint64_t step = address_of("step");
    CHECK(calls >= region + layout->size);
    CHECK(step >= region + layout->size);
    CHECK(read_u64(*image, step - region) == 1);  // .data keeps its initial value
    CHECK(read_u64(*image, address_of("counters") - region) == calls);
    std::uint64_t add_step = address_of("add_step");
    CHECK(add_step < region + layout->size);
    CHECK(read_u64(*image, address_of("steps") - region) == add_step);
    // The runtime reads the shadow table through its GOT slot.
    bool shadow_in_got = false;
    for (std::uint64_t at = layout->got_offset; at < layout->stubs_offset; at += 8) {
        shadow_in_got = shadow_in_got || read_u64(*image, at) == shadow;
    }
    CHECK(shadow_in_got);
}
