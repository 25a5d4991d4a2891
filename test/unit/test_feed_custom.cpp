// The custom metadata of feed targets (docs/feed-format.md, "Target names
// and custom metadata"): parsed once, strictly, into PatchsetInfo. A target
// whose custom metadata has a wrong type is refused as bad_format on its
// own; its siblings are still refreshed and listed.

#include <stdlib.h>

#include <catch2/catch.hpp>

#include "ScratchDirectory.h"

#include "base/Files.h"
#include "base/Sha256.h"
#include "feed-client/FeedClient.h"
#include "feed-client/KeyPair.h"
#include "feed-client/Publisher.h"

using namespace suture;
using namespace suture::feed;
using json = nlohmann::json;

namespace {

// The custom metadata suture-feed writes for a patch.
json good_custom(const std::string& patch_id = "CVE-2026-63076") {
    return json::parse(R"({"distribution": "debian-12", "package": "libssl3",
        "version": "3.0.20-1~deb12u2", "soname": "libcrypto.so.3",
        "build_id": "7d90f38412d00023e58392b03612a24b62fcaede", "patch_id": ")" +
                       patch_id + R"(", "level": 1, "cves": [")" + patch_id + R"("],
        "severity": "Moderate", "summary": "a fix", "channel": "stable",
        "published": "2026-11-23T21:09:13Z"})");
}

// The reason parse_patchset_info gives for `custom`, or "accepted".
std::string refusal(const json& custom) {
    auto info = parse_patchset_info(custom, "t.suture");
    if (info) {
        return "accepted";
    }
    CHECK(info.error().code == ErrorCode::bad_format);
    return info.error().message;
}

// A targets entry for a file of `text` with `custom`.
json target_entry(const std::string& text, const json& custom) {
    return {{"length", text.size()},
            {"hashes", {{"sha256", sha256_hex(bytes_of(text))}}},
            {"custom", custom}};
}

}  // namespace

TEST_CASE("custom metadata as suture-feed writes it parses, and round-trips") {
    auto info = parse_patchset_info(good_custom(), "t.suture");
    REQUIRE(info);
    CHECK(info->patch_id == "CVE-2026-63076");
    CHECK(info->level == 1);
    CHECK(info->build_id == "7d90f38412d00023e58392b03612a24b62fcaede");
    CHECK(info->cves == std::vector<std::string>{"CVE-2026-63076"});
    CHECK(info->channel == "stable");
    CHECK(info->published == *parse_utc("2026-11-23T21:09:13Z"));
    CHECK(patchset_info_to_json(*info) == good_custom());
}

TEST_CASE("severity and summary are optional, and unknown fields are ignored") {
    json custom = good_custom();
    custom.erase("severity");
    custom.erase("summary");
    custom["reboot_required"] = false;
    auto info = parse_patchset_info(custom, "t.suture");
    REQUIRE(info);
    CHECK(info->severity.empty());
    CHECK(info->summary.empty());
}

TEST_CASE("supersedes is optional, parsed, and round-trips") {
    auto plain = parse_patchset_info(good_custom(), "t.suture");
    REQUIRE(plain);
    CHECK(plain->supersedes.empty());
    json custom = good_custom("CVE-2026-9076");
    custom["supersedes"] = json::array({"CVE-2025-9230", "CVE-2026-42766"});
    auto info = parse_patchset_info(custom, "t.suture");
    REQUIRE(info);
    CHECK(info->supersedes == std::vector<std::string>{"CVE-2025-9230", "CVE-2026-42766"});
    CHECK(patchset_info_to_json(*info) == custom);
    custom["supersedes"] = json::array();  // empty: the same as absent
    info = parse_patchset_info(custom, "t.suture");
    REQUIRE(info);
    CHECK(info->supersedes.empty());
}

TEST_CASE("a bad supersedes refuses the target, naming the field") {
    auto with = [](const json& value) {
        json custom = good_custom("CVE-2026-9076");
        custom["supersedes"] = value;
        return refusal(custom);
    };
    CHECK(with("CVE-2025-9230") ==
          "t.suture: custom: \"supersedes\" must be an array of patch ids");
    CHECK(with(json::object()) == "t.suture: custom: \"supersedes\" must be an array of patch ids");
    CHECK(with(json::array({"CVE-2025-9230", 9230}))
              .find("\"supersedes\": each must be a patch id") != std::string::npos);
    CHECK(with(json::array({"CVE 2025/9230"})).find("\"supersedes\": each must be a patch id") !=
          std::string::npos);
    CHECK(with(json::array({""})).find("\"supersedes\": each must be a patch id") !=
          std::string::npos);
    CHECK(with(json::array({"CVE-2026-9076"})) ==
          "t.suture: custom: \"supersedes\" names the patch's own id CVE-2026-9076");
    CHECK(with(json::array({"CVE-2025-9230", "CVE-2025-9230"})) ==
          "t.suture: custom: \"supersedes\" names CVE-2025-9230 twice");
}

TEST_CASE("a wrong type, a missing field or a value out of range is bad_format, naming it") {
    auto changed = [](const char* field, const json& value) {
        json custom = good_custom();
        custom[field] = value;
        return refusal(custom);
    };
    auto without = [](const char* field) {
        json custom = good_custom();
        custom.erase(field);
        return refusal(custom);
    };
    CHECK(changed("level", "1") ==
          "t.suture: custom: \"level\" must be an integer from 1 to 65535");
    CHECK(changed("level", 0u) == "t.suture: custom: \"level\" must be an integer from 1 to 65535");
    CHECK(changed("level", 65536u) ==
          "t.suture: custom: \"level\" must be an integer from 1 to 65535");
    CHECK(changed("level", -1) == "t.suture: custom: \"level\" must be an integer from 1 to 65535");
    CHECK(changed("cves", "CVE-2026-63076") == "t.suture: custom: \"cves\" must be an array");
    CHECK(changed("cves", json::array({"CVE-2026-63076", 63076})) ==
          "t.suture: custom: \"cves\" must be an array of strings");
    CHECK(without("patch_id") == "t.suture: custom: \"patch_id\" is missing");
    CHECK(changed("patch_id", "CVE 2026/63076").find("\"patch_id\" must be 1 to 63") !=
          std::string::npos);
    CHECK(changed("build_id", 7u) == "t.suture: custom: \"build_id\" must be a string");
    CHECK(changed("build_id", "7D90F384").find("\"build_id\" must be 2 to 128 lowercase hex") !=
          std::string::npos);
    CHECK(changed("build_id", "7d90f").find("\"build_id\" must be") != std::string::npos);
    CHECK(changed("published", "last Tuesday") ==
          "t.suture: custom: \"published\" is not YYYY-MM-DDTHH:MM:SSZ");
    CHECK(changed("published", 1795435200u) == "t.suture: custom: \"published\" must be a string");
    CHECK(without("channel") == "t.suture: custom: \"channel\" is missing");
    CHECK(changed("soname", json::object()) == "t.suture: custom: \"soname\" must be a string");
    CHECK(changed("distribution", "") == "t.suture: custom: \"distribution\" must not be empty");
    CHECK(changed("severity", 3u) == "t.suture: custom: \"severity\" must be a string");
    CHECK(refusal(json::array()) == "t.suture: custom: must be a JSON object");
    CHECK(refusal(json()) == "t.suture: custom: must be a JSON object");
}

TEST_CASE("a signed target with wrong-typed custom metadata is refused on its own") {
    json custom = good_custom("CVE-2026-63072");
    custom["level"] = "2";
    json signed_part = {{"_type", "targets"},
                        {"spec_version", "1.0"},
                        {"version", 3u},
                        {"expires", "2030-01-01T00:00:00Z"},
                        {"targets",
                         {{"debian-12/openssl/v/good.suture", target_entry("good", good_custom())},
                          {"debian-12/openssl/v/bad.suture", target_entry("bad", custom)},
                          {"debian-12/openssl/v/none.suture",
                           {{"length", 4u}, {"hashes", {{"sha256", std::string(64, 'a')}}}}}}}};
    auto targets = parse_targets(signed_part, "3.targets.json");
    REQUIRE(targets);
    REQUIRE(targets->targets.size() == 1);
    CHECK(targets->targets[0].name == "debian-12/openssl/v/good.suture");
    CHECK(targets->targets[0].info.patch_id == "CVE-2026-63076");
    REQUIRE(targets->refused.size() == 2);
    CHECK(targets->refused[0].name == "debian-12/openssl/v/bad.suture");
    CHECK(targets->refused[0].error.code == ErrorCode::bad_format);
    CHECK(targets->refused[0].error.message ==
          "debian-12/openssl/v/bad.suture: custom: \"level\" must be an integer from 1 to 65535");
    CHECK(targets->refused[1].error.message ==
          "debian-12/openssl/v/none.suture: custom: must be a JSON object");
}

TEST_CASE("refresh and list: a good target is kept beside a refused sibling") {
    ScratchDirectory work;
    std::string repo = work.path() + "/repo";
    std::string keys = work.path() + "/keys";
    std::time_t now = ::time(nullptr);
    Publisher publisher(repo, keys, Lifetimes{}, now);
    REQUIRE(publisher.init(1, 1));

    // A publisher with the targets key whose tool wrote "level" as a string.
    json bad = good_custom("CVE-2026-63072");
    bad["level"] = "1";
    REQUIRE(make_directories(repo + "/targets/d", 0755));
    json entries = json::object();
    for (const auto& [name, custom] :
         {std::pair{"good.suture", good_custom()}, std::pair{"bad.suture", bad}}) {
        std::string text = std::string("patch bytes of ") + name;
        REQUIRE(write_file_atomically(
            repo + "/" +
                consistent_target_path(
                    Target{std::string("d/") + name, text.size(), sha256_hex(bytes_of(text)), {}}),
            bytes_of(text)));
        entries[std::string("d/") + name] = target_entry(text, custom);
    }
    json signed_part = {{"_type", "targets"},
                        {"spec_version", "1.0"},
                        {"version", 2u},
                        {"expires", format_utc(now + 3600)},
                        {"targets", entries}};
    auto targets_key = KeyPair::load(keys + "/targets-1.key");
    REQUIRE(targets_key);
    std::string file = sign_envelope(signed_part, {&*targets_key});
    REQUIRE(write_file_atomically(repo + "/2.targets.json", bytes_of(file)));
    REQUIRE(publisher.publish());

    Remote remote;
    remote.name = "feed";
    remote.url = "file://" + repo + "/";
    remote.root_file = repo + "/1.root.json";
    FeedClient client(work.path() + "/cache");
    auto refreshed = client.refresh(remote, now);
    REQUIRE(refreshed);
    CHECK(refreshed->targets == 1);
    CHECK(refreshed->downloaded == 1);  // the refused target is not fetched

    auto listed = client.list(remote, now);
    REQUIRE(listed);
    REQUIRE(listed->size() == 2);
    const CachedTarget& good = (*listed)[0];
    CHECK(good.target.name == "d/good.suture");
    CHECK(good.usable);
    CHECK_FALSE(good.refused);
    CHECK(good.target.info.patch_id == "CVE-2026-63076");
    CHECK(read_file(good.path) == std::string("patch bytes of good.suture"));
    const CachedTarget& refused = (*listed)[1];
    CHECK(refused.target.name == "d/bad.suture");
    CHECK_FALSE(refused.usable);
    CHECK(refused.path.empty());
    REQUIRE(refused.refused);
    CHECK(refused.refused->code == ErrorCode::bad_format);
    CHECK(refused.refused->message ==
          "d/bad.suture: custom: \"level\" must be an integer from 1 to 65535");

    // The publisher will not re-sign a list with a target clients refuse.
    auto added = publisher.add_targets({});
    REQUIRE_FALSE(added);
    CHECK(added.error().code == ErrorCode::bad_format);
}

TEST_CASE("the publisher signs only custom metadata clients accept") {
    ScratchDirectory work;
    Publisher publisher(work.path() + "/repo", work.path() + "/keys", Lifetimes{}, ::time(nullptr));
    REQUIRE(publisher.init(1, 1));
    std::string patch = work.path() + "/x.suture";
    REQUIRE(write_file_atomically(patch, bytes_of(std::string("bytes"))));
    auto info = parse_patchset_info(good_custom(), "x.suture");
    REQUIRE(info);
    info->build_id = "not hex";
    auto added = publisher.add_targets({{"d/x.suture", patch, *info}});
    REQUIRE_FALSE(added);
    CHECK(added.error().message.find("\"build_id\" must be") != std::string::npos);
}
