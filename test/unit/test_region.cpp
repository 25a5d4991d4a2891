#include <cstring>

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
    CHECK(bytes.size() == region_marker_size(1, true));
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
