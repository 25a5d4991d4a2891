// The feed's metadata and remote configuration: signing, thresholds,
// canonical bytes and the strict interpretation of each role; and which
// targets metadata (version, signing keys) a listing of the cache says its
// targets came from. The attacks against a real server are in
// test/integration/feed-attacks.sh.

#include <algorithm>

#include <catch2/catch.hpp>

#include "ScratchDirectory.h"
#include "TemporaryFile.h"
#include "base/Files.h"
#include "feed-client/FeedClient.h"
#include "feed-client/KeyPair.h"
#include "feed-client/Metadata.h"
#include "feed-client/Publisher.h"
#include "feed-client/RemoteConfig.h"

using namespace suture;
using namespace suture::feed;
using json = nlohmann::json;

namespace {

// A root whose roles all use `keys` with `threshold`.
Root root_with(const std::vector<const KeyPair*>& keys, std::uint32_t threshold) {
    Root root;
    root.version = 1;
    root.expires = 2000000000;
    RoleKeys role_keys;
    role_keys.threshold = threshold;
    for (const KeyPair* key : keys) {
        root.keys.emplace(key->public_key().key_id(), key->public_key());
        role_keys.key_ids.push_back(key->public_key().key_id());
    }
    for (Role role : {Role::root, Role::targets, Role::snapshot, Role::timestamp}) {
        root.roles[role] = role_keys;
    }
    return root;
}

Timestamp some_timestamp() {
    Timestamp timestamp;
    timestamp.version = 7;
    timestamp.expires = 2000000000;
    timestamp.snapshot = FileInfo{3, 120, std::string(64, 'a')};
    return timestamp;
}

}  // namespace

TEST_CASE("canonical bytes: sorted keys, no whitespace, independent of input order") {
    json a = json::parse(R"({"b": 1, "a": {"y": [1, 2], "x": "é"}})");
    json b = json::parse(R"({"a":{"x":"é","y":[1,2]},"b":1})");
    CHECK(canonical_bytes(a) == R"({"a":{"x":"é","y":[1,2]},"b":1})");
    CHECK(canonical_bytes(a) == canonical_bytes(b));
}

TEST_CASE("a signed file verifies, and any change to its signed part breaks it") {
    KeyPair key = KeyPair::generate();
    Root root = root_with({&key}, 1);
    std::string file = sign_envelope(timestamp_to_json(some_timestamp()), {&key});

    auto envelope = parse_envelope(bytes_of(file), "timestamp.json");
    REQUIRE(envelope);
    CHECK(verify_signatures(*envelope, root, Role::timestamp, "timestamp.json"));
    auto timestamp = parse_timestamp(envelope->signed_part, "timestamp.json");
    REQUIRE(timestamp);
    CHECK(timestamp->version == 7);
    CHECK(timestamp->snapshot.version == 3);

    std::string tampered = file;
    tampered.replace(tampered.find("\"version\": 7"), 12, "\"version\": 8");
    auto changed = parse_envelope(bytes_of(tampered), "timestamp.json");
    REQUIRE(changed);
    auto refused = verify_signatures(*changed, root, Role::timestamp, "timestamp.json");
    REQUIRE_FALSE(refused);
    CHECK(refused.error().code == ErrorCode::bad_signature);
}

TEST_CASE("thresholds count distinct keys of the role only") {
    KeyPair first = KeyPair::generate();
    KeyPair second = KeyPair::generate();
    KeyPair stranger = KeyPair::generate();
    Root root = root_with({&first, &second}, 2);
    json signed_part = timestamp_to_json(some_timestamp());

    auto verify = [&](const std::vector<const KeyPair*>& signers) {
        auto envelope = parse_envelope(bytes_of(sign_envelope(signed_part, signers)), "t");
        REQUIRE(envelope);
        return bool(verify_signatures(*envelope, root, Role::timestamp, "t"));
    };
    CHECK(verify({&first, &second}));
    CHECK_FALSE(verify({&first}));
    CHECK_FALSE(verify({&first, &first}));     // one key twice counts once
    CHECK_FALSE(verify({&first, &stranger}));  // a key the root does not list
    CHECK(verify({&stranger, &second, &first}));
}

TEST_CASE("roles are interpreted strictly") {
    KeyPair key = KeyPair::generate();
    json root = root_to_json(root_with({&key}, 1));
    REQUIRE(parse_root(root, "root.json"));

    SECTION("the wrong _type") {
        root["_type"] = "targets";
        CHECK_FALSE(parse_root(root, "root.json"));
    }
    SECTION("a key whose ID is not its hash") {
        json keys = root["keys"];
        json entry = keys.begin().value();
        root["keys"] = {{std::string(64, 'b'), entry}};
        CHECK_FALSE(parse_root(root, "root.json"));
    }
    SECTION("a threshold above the number of keys") {
        root["roles"]["timestamp"]["threshold"] = 2;
        CHECK_FALSE(parse_root(root, "root.json"));
    }
    SECTION("a version of 0 or a bad expiry") {
        root["version"] = 0;
        CHECK_FALSE(parse_root(root, "root.json"));
        root["version"] = 1;
        root["expires"] = "tomorrow";
        CHECK_FALSE(parse_root(root, "root.json"));
    }
    SECTION("target names that would escape the cache") {
        Targets targets;
        targets.version = 1;
        targets.expires = 2000000000;
        for (std::string name : {"../evil", "/etc/passwd", "a/../../b"}) {
            targets.targets = {Target{name, 10, std::string(64, 'c'), PatchsetInfo{}}};
            auto parsed = parse_targets(targets_to_json(targets), "targets.json");
            REQUIRE_FALSE(parsed);
            CHECK(parsed.error().message.find("bad target name") != std::string::npos);
        }
    }
}

TEST_CASE("wrong types in the roles themselves refuse the file, never throw") {
    KeyPair key = KeyPair::generate();
    json good = root_to_json(root_with({&key}, 1));
    REQUIRE(parse_root(good, "root.json"));
    auto refused = [](const json& signed_part) {
        auto parsed = parse_root(signed_part, "root.json");
        return parsed ? "accepted" : parsed.error().message;
    };
    json keys_array = good;
    keys_array["keys"] = json::array({1, 2});
    CHECK(refused(keys_array) == "root.json: \"keys\" must be an object");
    json keyids_object = good;
    keyids_object["roles"]["timestamp"]["keyids"] = {{"a", key.public_key().key_id()}};
    CHECK(refused(keyids_object) == "root.json: \"keyids\" must be an array");
    json threshold_string = good;
    threshold_string["roles"]["root"]["threshold"] = "1";
    CHECK(refused(threshold_string) == "root.json: \"threshold\" must be an integer from 0 to 256");
    json roles_null = good;
    roles_null["roles"] = nullptr;
    CHECK(refused(roles_null) == "root.json: \"roles\" must be an object");

    json timestamp = timestamp_to_json(some_timestamp());
    timestamp["meta"]["snapshot.json"]["hashes"] = "abc";
    auto parsed = parse_timestamp(timestamp, "timestamp.json");
    REQUIRE_FALSE(parsed);
    CHECK(parsed.error().message == "timestamp.json: \"hashes\" must be an object");
    CHECK(parse_targets(json{{"_type", "targets"},
                             {"spec_version", "1.0"},
                             {"version", 1u},
                             {"expires", "2030-01-01T00:00:00Z"},
                             {"targets", {{"a.suture", "not an entry"}}}},
                        "1.targets.json")
              .error()
              .message == "1.targets.json: a.suture: must be a JSON object");
}

TEST_CASE("a key file with wrong types is refused, never thrown") {
    for (const char* text :
         {R"({"keytype": "ed25519", "public": 5, "secret": "00"})", R"({"keytype": ["ed25519"]})",
          R"(["not", "an", "object"])", "not JSON"}) {
        TemporaryFile file(text);  // mode 0600, as key files must be
        auto key = KeyPair::load(file.path());
        REQUIRE_FALSE(key);
        CHECK(key.error().code == ErrorCode::bad_format);
    }
}

TEST_CASE("the envelope parser refuses hostile shapes before interpreting anything") {
    CHECK_FALSE(parse_envelope(bytes_of("not json"), "x"));
    CHECK_FALSE(parse_envelope(bytes_of(R"({"signed":{}})"), "x"));
    CHECK_FALSE(parse_envelope(bytes_of(R"({"signed":{"a":1.5},"signatures":[]})"), "x"));
    CHECK_FALSE(parse_envelope(bytes_of(R"({"signed":{},"signatures":[{"keyid":1}]})"), "x"));
    std::string deep = std::string(100, '[') + std::string(100, ']');
    auto nested =
        parse_envelope(bytes_of(R"({"signed":{"a":)" + deep + R"(},"signatures":[]})"), "x");
    REQUIRE_FALSE(nested);
    CHECK(nested.error().message.find("nested") != std::string::npos);
}

TEST_CASE("UTC times round-trip and only the one format is accepted") {
    CHECK(parse_utc("2026-11-23T12:00:00Z") == std::optional<std::time_t>(1795435200));
    CHECK(format_utc(1795435200) == "2026-11-23T12:00:00Z");
    CHECK_FALSE(parse_utc("2026-11-23 12:00:00"));
    CHECK_FALSE(parse_utc("2026-11-23T12:00:00+01:00"));
}

TEST_CASE("remotes.d files") {
    auto remote = parse_remote(
        "# a comment\n[remote]\nurl=https://feed.example/debian-12\n"
        "root=/etc/suture/roots/vendor.json\nchannel=testing\n"
        "delay_hours=24\n",
        "/etc/suture/remotes.d/vendor.conf");
    REQUIRE(remote);
    CHECK(remote->name == "vendor");
    CHECK(remote->url == "https://feed.example/debian-12/");
    CHECK(remote->channel == "testing");
    CHECK(remote->delay_hours == 24);

    auto no_root = parse_remote("[remote]\nurl=http://x/\n", "a.conf");
    REQUIRE_FALSE(no_root);
    CHECK(no_root.error().message.find("root=") != std::string::npos);
    auto bad_scheme = parse_remote("[remote]\nurl=ftp://x/\nroot=/r\n", "a.conf");
    REQUIRE_FALSE(bad_scheme);
    auto unknown_key = parse_remote("[remote]\nurl=http://x/\nroot=/r\ncolour=blue\n", "a.conf");
    REQUIRE_FALSE(unknown_key);
    CHECK(unknown_key.error().message.find("a.conf:4") != std::string::npos);
}

// --- issue 15: names, stored bytes, capped and non-blocking reads ----------

TEST_CASE("target names: one canonical form") {
    for (const char* good : {"debian-12/openssl/3.0.20-1~deb12u2/CVE-2026-63076.suture", "x",
                             "a/b+c~d_e-f.g", "a/b.", "-x"}) {
        CHECK(target_name_problem(good).empty());
    }
    for (const char* bad :
         {"", ".", "..", "./x", "dir/./x", "dir/x/", "dir/", "/x", "a//b", "a/../b", "..x",
          "a/.hidden", "%2e%2e/x", "a/%2E%2E/b", "a b", "a\\b", "caf\xc3\xa9", "a\tb", "a:b"}) {
        CHECK_FALSE(target_name_problem(bad).empty());
    }
    CHECK_FALSE(target_name_problem(std::string(256, 'a')).empty());
    CHECK_FALSE(target_name_problem(std::string(129, 'a')).empty());
    CHECK(target_name_problem(std::string(128, 'a') + "/" + std::string(126, 'b')).empty());
}

TEST_CASE("parse_targets refuses a non-canonical name and a name that is another's directory") {
    json entry = {{"length", 1u}, {"hashes", {{"sha256", std::string(64, 'a')}}}, {"custom", {}}};
    auto with_names = [&](std::vector<std::string> names) {
        json signed_part = {{"_type", "targets"}, {"spec_version", "1.0"}, {"version", 1u},
                            {"expires", "2030-01-01T00:00:00Z"}, {"targets", json::object()}};
        for (const std::string& name : names) {
            signed_part["targets"][name] = entry;
        }
        return parse_targets(signed_part, "t");
    };
    auto accepted = with_names({"a/b", "a/c"});
    INFO((accepted ? std::string("ok") : accepted.error().message));
    CHECK(accepted);
    for (auto names : std::vector<std::vector<std::string>>{
             {"dir/./x"}, {"dir/x", "dir/./x"}, {"a", "a/b"}, {"a/b", "a/b/c"}}) {
        auto refused = with_names(names);
        REQUIRE_FALSE(refused);
        CHECK(refused.error().code == ErrorCode::bad_format);
    }
}

TEST_CASE("consistent target URLs escape each component") {
    Target target{"debian-12/v1+2~3/fix+1.suture", 1, std::string(64, 'b'), {}};
    CHECK(consistent_target_path(target) ==
          "targets/debian-12/v1+2~3/" + std::string(64, 'b') + ".fix+1.suture");
    CHECK(consistent_target_url(target) ==
          "targets/debian-12/v1%2B2~3/" + std::string(64, 'b') + ".fix%2B1.suture");
}

TEST_CASE("what is stored of a verified file: canonical, only the valid signatures") {
    KeyPair key = KeyPair::generate();
    KeyPair other = KeyPair::generate();
    Root root = root_with({&key}, 1);
    json file = json::parse(sign_envelope(timestamp_to_json(some_timestamp()), {&key}));
    file["extra"] = "junk";
    file["signatures"].push_back({{"keyid", other.public_key().key_id()}, {"sig", std::string(128, '0')}});
    file["signatures"].push_back({{"keyid", key.public_key().key_id()}, {"sig", std::string(128, '0')}});
    std::string served = file.dump(2);
    auto envelope = parse_envelope(bytes_of(served), "ts");
    REQUIRE(envelope);
    ValidSignatures valid;
    REQUIRE(verify_signatures(*envelope, root, Role::timestamp, "ts", &valid));
    CHECK(valid.size() == 1);
    std::string stored = verified_envelope_text(*envelope, valid);
    CHECK(stored.find("junk") == std::string::npos);
    auto again = parse_envelope(bytes_of(stored), "stored");
    REQUIRE(again);
    CHECK(again->canonical == envelope->canonical);
    CHECK(again->signatures.size() == 1);
    CHECK(verify_signatures(*again, root, Role::timestamp, "stored"));
}

namespace {

// The ids of the targets role's keys in the repository's latest root.
std::vector<std::string> targets_key_ids(const std::string& repository) {
    auto text = read_file(repository + "/root.json");
    REQUIRE(text);
    auto keyids = json::parse(*text)["signed"]["roles"]["targets"]["keyids"];
    std::vector<std::string> ids = keyids.get<std::vector<std::string>>();
    std::sort(ids.begin(), ids.end());
    return ids;
}

}  // namespace

TEST_CASE("a listing names the targets metadata version and the keys that signed it") {
    ScratchDirectory work;
    std::string repo = work.path() + "/repo";
    std::time_t now = ::time(nullptr);
    Publisher publisher(repo, work.path() + "/keys", Lifetimes{}, now);
    REQUIRE(publisher.init(1, 1));
    REQUIRE(write_file_atomically(work.path() + "/patch", bytes_of(std::string("patch bytes"))));
    auto info = parse_patchset_info(
        json::parse(R"({"distribution": "debian-12", "package": "libssl3",
            "version": "3.0.20-1~deb12u2", "soname": "libcrypto.so.3",
            "build_id": "7d90f38412d00023e58392b03612a24b62fcaede",
            "patch_id": "CVE-2026-63076", "level": 1, "cves": ["CVE-2026-63076"],
            "channel": "stable", "published": "2026-11-23T21:09:13Z"})"),
        "d/p.suture");
    REQUIRE(info);
    auto added = publisher.add_targets({{"d/p.suture", work.path() + "/patch", *info}});
    REQUIRE(added);
    REQUIRE(publisher.publish());

    Remote remote;
    remote.name = "feed";
    remote.url = "file://" + repo + "/";
    remote.root_file = repo + "/1.root.json";
    FeedClient client(work.path() + "/cache");
    REQUIRE(client.refresh(remote, now));
    auto listed = client.list(remote, now);
    REQUIRE(listed);
    REQUIRE(listed->size() == 1);
    std::vector<std::string> first_keys = targets_key_ids(repo);
    REQUIRE(first_keys.size() == 1);
    CHECK(listed->front().targets_version == *added);
    CHECK(listed->front().signing_keys == first_keys);

    // A new targets key and a new version: the next listing names both.
    REQUIRE(publisher.rotate(Role::targets));
    auto readded = publisher.add_targets({{"d/p.suture", work.path() + "/patch", *info}});
    REQUIRE(readded);
    REQUIRE(publisher.publish());
    REQUIRE(client.refresh(remote, now));
    listed = client.list(remote, now);
    REQUIRE(listed);
    REQUIRE(listed->size() == 1);
    CHECK(*readded > *added);  // the rotation signed one of its own too
    CHECK(listed->front().targets_version == *readded);
    CHECK(listed->front().signing_keys == targets_key_ids(repo));
    CHECK(listed->front().signing_keys != first_keys);
}
