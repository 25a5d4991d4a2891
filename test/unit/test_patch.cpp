#include <cstring>
#include <random>

#include <catch2/catch.hpp>

#include "base/Files.h"
#include "patch/EntryJump.h"
#include "patch/PatchFile.h"

using namespace suture;

namespace {

std::vector<std::byte> file_bytes(const std::string& path) {
    auto text = read_file(path);
    REQUIRE(text);
    auto bytes = std::as_bytes(std::span(text->data(), text->size()));
    return {bytes.begin(), bytes.end()};
}

}  // namespace

TEST_CASE("a packed patch file reads back with its metadata and object") {
    auto patch = read_patch_file(DEMO_PATCH_V2);
    REQUIRE(patch);
    const PatchMetadata& metadata = patch->metadata;
    CHECK(metadata.patch_id == "demo-fix");
    CHECK(metadata.level == 1);
    CHECK(metadata.target_soname == "libsuture-demo.so");
    CHECK(metadata.target_build_id.size() == 40);
    REQUIRE(metadata.functions.size() == 6);
    CHECK(metadata.functions[0].symbol == "demo_generation");
    CHECK(metadata.functions[0].replacement == "demo_generation_v2");
    CHECK(metadata.functions[0].sha256.size() == 64);
    auto has_reference = [&](const std::string& name) {
        for (const auto& reference : metadata.target_references) {
            if (reference.symbol == name) {
                return true;
            }
        }
        return false;
    };
    // The static helper and the global variable resolve into the library.
    CHECK(has_reference("demo_helper"));
    CHECK(has_reference("demo_global"));
    std::vector<std::string> imports;
    for (const auto& import : metadata.imports) {
        imports.push_back(import.symbol + "@" + import.version);
    }
    std::sort(imports.begin(), imports.end());
    // Versions are those the library itself imports the symbols with.
    CHECK(imports == std::vector<std::string>{"OpenSSL_version_num@OPENSSL_3.0.0",
                                              "snprintf@GLIBC_2.2.5", "strtol@GLIBC_2.2.5"});
    CHECK(patch->object.find_defined("demo_compute_v2") != nullptr);
}

TEST_CASE("writing the parsed metadata back gives the same bytes") {
    auto original = file_bytes(DEMO_PATCH_V2);
    auto patch = parse_patch(original, "demo-v2");
    REQUIRE(patch);
    std::uint32_t metadata_size;
    std::memcpy(&metadata_size, original.data() + 16, 4);
    auto object = std::span(original).subspan(32 + metadata_size);
    CHECK(write_patch(patch->metadata, object) == original);
}

TEST_CASE("metadata that breaks a rule is refused with the rule named") {
    auto check_refused = [](const std::string& json, const std::string& expected) {
        auto metadata = parse_patch_metadata(json, "m");
        REQUIRE_FALSE(metadata);
        CHECK(metadata.error().code == ErrorCode::bad_format);
        INFO(metadata.error().message);
        CHECK(metadata.error().message.find(expected) != std::string::npos);
    };
    std::string function = R"({"symbol": "f", "offset": 4096, "size": 32, "sha256": ")" +
                           std::string(64, 'a') + R"(", "replacement": "f2"})";
    auto document = [&](const std::string& id, int level, const std::string& functions) {
        return R"({"patch_id": ")" + id + R"(", "level": )" + std::to_string(level) +
               R"(, "target": {"build_id": "abcd", "soname": "libx.so"}, "functions": [)" +
               functions + "]}";
    };
    CHECK(parse_patch_metadata(document("ok-1", 1, function), "m"));
    check_refused(document("bad id", 1, function), "patch_id");
    check_refused(document("x", 0, function), "level");
    check_refused(document("x", 1, ""), "functions");
    check_refused(document("x", 1, function + "," + function), "overlap");
    std::string tiny = function;
    tiny.replace(tiny.find("\"size\": 32"), 10, "\"size\": 4");
    check_refused(document("x", 1, tiny), "cannot hold a jump");
    // 5 bytes hold the jump when the function has no endbr64 (the builder
    // and the injector check that against its bytes: patch/EntryJump.h).
    std::string five = function;
    five.replace(five.find("\"size\": 32"), 10, "\"size\": 5");
    CHECK(parse_patch_metadata(document("x", 1, five), "m"));
    check_refused(R"({"patch_id": 1})", "metadata");
    // Found by the patch-parser fuzzer: a float where an integer belongs
    // (converting 2.994e+47 to an integer is undefined behaviour).
    std::string huge = function;
    huge.replace(huge.find("4096"), 4, "2.994e+47");
    check_refused(document("x", 1, huge), "\"offset\" must be an unsigned integer");
    check_refused(document("x", -1, function), "\"level\" must be an unsigned integer");
}

TEST_CASE("random damage to a patch file gives errors, never a crash") {
    auto original = file_bytes(DEMO_PATCH_V2);
    std::mt19937 random(20261123);
    int accepted = 0;
    for (int round = 0; round < 3000; ++round) {
        auto damaged = original;
        switch (round % 3) {
            case 0:  // flip a few bytes anywhere
                for (int i = 0; i < 1 + static_cast<int>(random() % 8); ++i) {
                    damaged[random() % damaged.size()] ^= std::byte(1u << (random() % 8));
                }
                break;
            case 1:  // truncate
                damaged.resize(random() % damaged.size());
                break;
            case 2:  // damage the ELF object's headers
                for (int i = 0; i < 4; ++i) {
                    std::size_t at = damaged.size() - 1 - random() % 2048;
                    damaged[at] = std::byte(random() & 0xff);
                }
                break;
        }
        accepted += parse_patch(damaged, "damaged") ? 1 : 0;
    }
    // Flips inside code bytes are still valid patches: some are accepted.
    SUCCEED(accepted << " of 3000 damaged files still parsed");
}

TEST_CASE("the consistency field: absent reads as strict, entry and strict round-trip") {
    std::string function = R"({"symbol": "f", "offset": 4096, "size": 32, "sha256": ")" +
                           std::string(64, 'a') + R"(", "replacement": "f2"})";
    auto document = [&](const std::string& consistency) {
        return R"({"patch_id": "c", "level": 1, )" + consistency +
               R"("target": {"build_id": "abcd", "soname": "libx.so"}, "functions": [)" +
               function + "]}";
    };
    SECTION("a file written before the field existed is strict") {
        auto metadata = parse_patch_metadata(document(""), "old");
        REQUIRE(metadata);
        CHECK(metadata->consistency == Consistency::strict);
    }
    SECTION("entry and strict are read as written, and written back") {
        for (Consistency model : {Consistency::entry, Consistency::strict}) {
            auto metadata =
                parse_patch_metadata(document(R"("consistency": ")" + consistency_name(model) +
                                              R"(", )"),
                                     "m");
            REQUIRE(metadata);
            CHECK(metadata->consistency == model);
            // Through a whole file: write_patch keeps it, parse_patch reads it.
            auto demo = read_patch_file(DEMO_PATCH_V2);
            REQUIRE(demo);
            PatchMetadata changed = demo->metadata;
            changed.consistency = model;
            auto original = file_bytes(DEMO_PATCH_V2);
            std::uint32_t metadata_size;
            std::memcpy(&metadata_size, original.data() + 16, 4);
            auto object = std::span(original).subspan(32 + metadata_size);
            auto reread = parse_patch(write_patch(changed, object), "round-trip");
            REQUIRE(reread);
            CHECK(reread->metadata.consistency == model);
        }
    }
    SECTION("any other value or type is refused as bad_format") {
        for (std::string value : {R"("Entry")", R"("")", R"("loose")", "1", "true", "null",
                                  R"(["entry"])", R"({"model": "entry"})"}) {
            INFO(value);
            auto metadata = parse_patch_metadata(document(R"("consistency": )" + value + ", "), "m");
            REQUIRE_FALSE(metadata);
            CHECK(metadata.error().code == ErrorCode::bad_format);
            CHECK(metadata.error().message.find("consistency") != std::string::npos);
        }
    }
}

TEST_CASE("the callbacks field: absent is none, names functions of the object, and round-trips") {
    auto demo = read_patch_file(DEMO_PATCH_V2);
    REQUIRE(demo);
    CHECK_FALSE(demo->metadata.callbacks.any());  // written before the field existed
    auto original = file_bytes(DEMO_PATCH_V2);
    std::uint32_t metadata_size;
    std::memcpy(&metadata_size, original.data() + 16, 4);
    auto object = std::span(original).subspan(32 + metadata_size);
    std::string function = demo->metadata.functions.front().replacement;
    SECTION("a function of the object is accepted and read back") {
        PatchMetadata changed = demo->metadata;
        changed.callbacks.post_apply = function;
        auto reread = parse_patch(write_patch(changed, object), "round-trip");
        REQUIRE(reread);
        CHECK(reread->metadata.callbacks.post_apply == function);
        CHECK(reread->metadata.callbacks.pre_apply.empty());
    }
    SECTION("a name the object does not define as a function is refused") {
        PatchMetadata changed = demo->metadata;
        changed.callbacks.pre_revert = "no_such_function";
        auto reread = parse_patch(write_patch(changed, object), "bad");
        REQUIRE_FALSE(reread);
        CHECK(reread.error().message.find("callback pre_revert (no_such_function)") !=
              std::string::npos);
    }
    SECTION("an unknown member is refused") {
        std::string text = R"({"patch_id": "c", "level": 1, "target": {"build_id": "abcd",
            "soname": "libx.so"}, "functions": [{"symbol": "f", "offset": 4096, "size": 32,
            "sha256": ")" + std::string(64, 'a') +
                           R"(", "replacement": "f2"}], "callbacks": {"on_load": "f2"}})";
        auto metadata = parse_patch_metadata(text, "m");
        REQUIRE_FALSE(metadata);
        CHECK(metadata.error().message.find("callbacks.on_load") != std::string::npos);
    }
}

TEST_CASE("the entry jump needs 5 bytes, 9 when the function starts with endbr64") {
    auto bytes = [](std::initializer_list<unsigned> values) {
        std::vector<std::byte> out;
        for (unsigned value : values) {
            out.push_back(static_cast<std::byte>(value));
        }
        return out;
    };
    auto plain = bytes({0x48, 0x8d, 0x47, 0x01, 0xc3});  // lea 1(%rdi),%rax; ret
    CHECK(entry_jump_offset(plain) == 0);
    CHECK(holds_entry_jump(plain, 5));
    CHECK_FALSE(holds_entry_jump(plain, 4));
    auto ibt = bytes({0xf3, 0x0f, 0x1e, 0xfa, 0x8d, 0x47, 0x01, 0xc3});  // endbr64; lea; ret
    CHECK(entry_jump_offset(ibt) == 4);
    CHECK_FALSE(holds_entry_jump(ibt, 8));
    CHECK(holds_entry_jump(ibt, 9));
}
