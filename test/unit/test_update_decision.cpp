// The engine's logic around its parts: the update decision, exclusions and
// the documents sutured sends back, read strictly.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "engine/Documents.h"
#include "engine/Update.h"

using namespace suture;

namespace {

PatchMetadata candidate(const std::string& patch_id, std::uint32_t level) {
    PatchMetadata metadata;
    metadata.patch_id = patch_id;
    metadata.level = level;
    return metadata;
}

AppliedPatch in_memory(const std::string& patch_id, std::uint32_t level, PatchState state) {
    AppliedPatch applied;
    applied.marker.patch_id = patch_id;
    applied.marker.level = level;
    applied.state = state;
    return applied;
}

UpdateSubject subject_with(const std::vector<AppliedPatch>* patches) {
    return {.process = {.pid = 42, .start_time = 7},
            .place = {.executable = "/usr/sbin/nginx", .unit = "nginx.service"},
            .in_memory = patches};
}

}  // namespace

TEST_CASE("update decides to apply a patch no marker shows active") {
    Exclusions none = Exclusions::from({});
    CHECK(decide(subject_with(nullptr), candidate("CVE-1", 1), none, {}).verdict == Verdict::apply);
    // An inactive, partial or retired region of the same patch is not active.
    for (PatchState state : {PatchState::inactive, PatchState::partial, PatchState::retired,
                             PatchState::foreign}) {
        std::vector<AppliedPatch> patches{in_memory("CVE-1", 1, state)};
        CHECK(decide(subject_with(&patches), candidate("CVE-1", 1), none, {}).verdict ==
              Verdict::apply);
    }
    // A lower level active is upgraded; another patch id does not count.
    std::vector<AppliedPatch> lower{in_memory("CVE-1", 1, PatchState::active),
                                    in_memory("CVE-2", 5, PatchState::active)};
    CHECK(decide(subject_with(&lower), candidate("CVE-1", 2), none, {}).verdict ==
          Verdict::apply);
}

TEST_CASE("update leaves an active patch alone and adopts one the database does not know") {
    Exclusions none = Exclusions::from({});
    std::vector<AppliedPatch> patches{in_memory("CVE-1", 3, PatchState::active)};
    Decision unknown = decide(subject_with(&patches), candidate("CVE-1", 2), none, {});
    CHECK(unknown.verdict == Verdict::adopt);
    CHECK(unknown.level == 3);  // the level in memory, not the candidate's
    KnownApplications known{{42, 7, "CVE-1", 3}};
    Decision recorded = decide(subject_with(&patches), candidate("CVE-1", 2), none, known);
    CHECK(recorded.verdict == Verdict::already);
    CHECK(recorded.level == 3);
    // A record of the same PID with another start time is another process.
    KnownApplications reused_pid{{42, 8, "CVE-1", 3}};
    CHECK(decide(subject_with(&patches), candidate("CVE-1", 2), none, reused_pid).verdict ==
          Verdict::adopt);
}

TEST_CASE("update never touches itself or what is excluded, before anything else") {
    std::vector<AppliedPatch> patches{in_memory("CVE-1", 1, PatchState::active)};
    UpdateSubject self = subject_with(&patches);
    self.is_self = true;
    Decision decision = decide(self, candidate("CVE-1", 1), Exclusions::from({}), {});
    CHECK(decision.verdict == Verdict::exclude);
    CHECK(decision.why == "suture never patches itself");

    Decision by_executable = decide(subject_with(nullptr), candidate("CVE-1", 1),
                                    Exclusions::from({{"executable", "/usr/sbin/nginx"}}), {});
    CHECK(by_executable.verdict == Verdict::exclude);
    CHECK(by_executable.why == "/usr/sbin/nginx is excluded");

    Decision by_unit = decide(subject_with(nullptr), candidate("CVE-1", 1),
                              Exclusions::from({{"unit", "nginx.service"}}), {});
    CHECK(by_unit.verdict == Verdict::exclude);
    CHECK(by_unit.why == "unit nginx.service is excluded");
}

TEST_CASE("exclusions match whole executable paths and units, and say whether units matter") {
    Exclusions exclusions =
        Exclusions::from({{"executable", "/usr/sbin/nginx"}, {"unit", "dovecot.service"}});
    CHECK(exclusions.has_units());
    CHECK_FALSE(Exclusions::from({{"executable", "/bin/x"}}).has_units());
    CHECK_FALSE(exclusions.reason({.executable = "/usr/sbin/nginx-debug", .unit = ""}));
    CHECK_FALSE(exclusions.reason({.executable = "/usr/sbin", .unit = ""}));
    CHECK_FALSE(exclusions.reason({.executable = "/usr/bin/doveadm", .unit = "dovecot.socket"}));
    CHECK(exclusions.reason({.executable = "/usr/sbin/dovecot", .unit = "dovecot.service"}));
    // An empty unit never matches, even against an empty exclusion value.
    CHECK_FALSE(Exclusions::from({{"unit", ""}}).reason({.executable = "/x", .unit = ""}));
}

TEST_CASE("an inject report and a failure survive the trip through their documents") {
    InjectReport report{.patch_id = "CVE-2026-63076",
                        .level = 2,
                        .replaced_level = 1,
                        .consistency = Consistency::entry,
                        .region_address = 0x7f1234560000,
                        .functions = 3,
                        .attempts = 2,
                        .stopped_for = std::chrono::microseconds(812),
                        .threads = 9,
                        .stack_check = {.threads = 9, .proven_by_scan = 7, .unwound = 2,
                                        .complete_unwinds = 2, .deepest_frames = 11},
                        .released_regions = 1};
    auto back = inject_report_from_json(inject_report_to_json(42, report));
    REQUIRE(back);
    CHECK(back->patch_id == report.patch_id);
    CHECK(back->level == 2);
    CHECK(back->replaced_level == std::optional<std::uint32_t>(1));
    CHECK(back->consistency == Consistency::entry);
    CHECK(back->region_address == 0x7f1234560000);
    CHECK(back->stopped_for == std::chrono::microseconds(812));
    CHECK(back->stack_check.deepest_frames == 11);
    CHECK(back->released_regions == 1);

    InjectFailure failure{.error = {ErrorCode::unsafe, "pid 42: unsafe", 0},
                          .blocking = {{.tid = 43, .frames = {"#0 0x1 in f"}, .cannot_unwind = ""}}};
    nlohmann::json document = failure_to_json(failure);
    CHECK(document["ok"] == false);
    auto failed = inject_report_from_json(document);
    REQUIRE_FALSE(failed);
    CHECK(failed.error().error.code == ErrorCode::unsafe);
    REQUIRE(failed.error().blocking.size() == 1);
    CHECK(failed.error().blocking[0].tid == 43);
    // Every error document has the same shape.
    CHECK(error_to_json(Error{ErrorCode::io, "x", 0})["ok"] == false);
    CHECK(error_to_json(Error{ErrorCode::io, "x", 0})["error"]["blocking_threads"].is_array());
}

TEST_CASE("a reply with a missing field or a wrong type is a bad_format error, not an exception") {
    InjectReport report{.patch_id = "p", .level = 1};
    nlohmann::json good = inject_report_to_json(1, report);
    for (const char* field : {"patch_id", "level", "consistency", "region_address", "stack_check"}) {
        nlohmann::json missing = good;
        missing.erase(field);
        auto parsed = inject_report_from_json(missing);
        REQUIRE_FALSE(parsed);
        CHECK(parsed.error().error.code == ErrorCode::bad_format);
        CHECK_THAT(parsed.error().error.message, Catch::Contains(field));
    }
    nlohmann::json wrong = good;
    wrong["level"] = "two";
    CHECK_FALSE(inject_report_from_json(wrong));
    wrong = good;
    wrong["consistency"] = "loose";
    CHECK_FALSE(inject_report_from_json(wrong));
    wrong = good;
    wrong["consistency"] = 1;
    CHECK_FALSE(inject_report_from_json(wrong));
    wrong = good;
    wrong["region_address"] = "nonsense";
    CHECK_FALSE(inject_report_from_json(wrong));
    CHECK_FALSE(inject_report_from_json(nlohmann::json::array()));
    CHECK_FALSE(inject_report_from_json(nlohmann::json("text")));

    UpdateReport update;
    update.actions.push_back({.process = {.pid = 5, .start_time = 6},
                              .comm = "nginx",
                              .patch_id = "p",
                              .level = 1,
                              .outcome = ActionOutcome::adopted});
    update.refreshes.push_back({"main", feed::RefreshReport{.remote = "main", .targets = 4}});
    update.refreshes.push_back({"other", tl::unexpected(Error{ErrorCode::expired, "old", 0})});
    auto round = update_from_json(update_to_json(update));
    REQUIRE(round);
    REQUIRE(round->actions.size() == 1);
    CHECK(round->actions[0].outcome == ActionOutcome::adopted);
    REQUIRE(round->refreshes.size() == 2);
    CHECK(round->refreshes[0].result->targets == 4);
    CHECK(round->refreshes[1].result.error().code == ErrorCode::expired);
    nlohmann::json bad_outcome = update_to_json(update);
    bad_outcome["actions"][0]["outcome"] = "exploded";
    CHECK_FALSE(update_from_json(bad_outcome));
    nlohmann::json bad_history = {{"history", {{{"id", "one"}}}}};
    CHECK_FALSE(history_from_json(bad_history));
}

TEST_CASE("a process refused as busy or unsafe is tried again at the next update") {
    // Such a refusal changes nothing in the process and records no
    // application (Candidates.cpp, apply_and_record): the next cycle finds
    // no marker and nothing known, and applies again. Both are "later",
    // never "never".
    Exclusions none = Exclusions::from({});
    for (ErrorCode refusal : {ErrorCode::busy, ErrorCode::unsafe}) {
        INFO(error_code_name(refusal));
        KnownApplications known;  // what a failed apply leaves: nothing
        CHECK(decide(subject_with(nullptr), candidate("CVE-1", 1), none, known).verdict ==
              Verdict::apply);
    }
    // busy has its own name in every document, both ways.
    CHECK(error_code_name(ErrorCode::busy) == "busy");
    CHECK(error_code_from_name("busy") == ErrorCode::busy);
    auto failed = inject_report_from_json(
        failure_to_json(InjectFailure{.error = {ErrorCode::busy, "pid 42 is already traced", 0},
                                      .blocking = {}}));
    REQUIRE_FALSE(failed);
    CHECK(failed.error().error.code == ErrorCode::busy);
}

// Cumulative patches (docs/operator-guide.md, "Cumulative patches"): a
// candidate that another candidate in effect supersedes is not decided.
namespace {

SupersedeKey key(const std::string& patch_id, std::vector<std::string> supersedes = {},
                 const std::string& build_id = "66a6") {
    return {.build_id = build_id, .patch_id = patch_id, .supersedes = std::move(supersedes)};
}

}  // namespace

TEST_CASE("a cumulative patch is decided first and holds back the patches it supersedes") {
    // Debian 12's 3.0.17: CVE-2026-9076 carries CVE-2025-9230's and
    // CVE-2026-42766's fixes; the 9230 candidate comes first in the list.
    std::vector<SupersedeKey> keys{key("CVE-2025-9230"),
                                   key("CVE-2026-9076", {"CVE-2025-9230", "CVE-2026-42766"}),
                                   key("CVE-2026-42766"), key("CVE-2026-63076")};
    std::vector<std::size_t> decided;
    auto superseded = resolve_supersedes(keys, [&](std::size_t i) {
        decided.push_back(i);
        return true;
    });
    CHECK(decided == std::vector<std::size_t>{1, 3});  // 9076 before what it supersedes
    REQUIRE(superseded.size() == 4);
    CHECK(superseded[0] == std::optional<std::size_t>(1));
    CHECK_FALSE(superseded[1]);
    CHECK(superseded[2] == std::optional<std::size_t>(1));
    CHECK_FALSE(superseded[3]);
}

TEST_CASE("a cumulative patch not in effect leaves the patches it supersedes to be decided") {
    // Held back by a rule (or excluded): the older fixes still go on.
    std::vector<SupersedeKey> keys{key("CVE-2025-9230"),
                                   key("CVE-2026-9076", {"CVE-2025-9230", "CVE-2026-42766"})};
    std::vector<std::size_t> decided;
    auto superseded = resolve_supersedes(keys, [&](std::size_t i) {
        decided.push_back(i);
        return i != 1;
    });
    CHECK(decided == std::vector<std::size_t>{1, 0});
    CHECK_FALSE(superseded[0]);
    CHECK_FALSE(superseded[1]);
}

TEST_CASE("supersession follows a chain and stays within one build") {
    // Debian 11: 42766 supersedes 9230 and 9076; 9076 supersedes 9230.
    std::vector<SupersedeKey> chain{key("CVE-2025-9230"), key("CVE-2026-9076", {"CVE-2025-9230"}),
                                    key("CVE-2026-42766", {"CVE-2025-9230", "CVE-2026-9076"})};
    auto superseded = resolve_supersedes(chain, [](std::size_t) { return true; });
    CHECK(superseded[0] == std::optional<std::size_t>(2));
    CHECK(superseded[1] == std::optional<std::size_t>(2));
    CHECK_FALSE(superseded[2]);
    // With the newest held back, 9076 takes 9230's place.
    superseded = resolve_supersedes(chain, [](std::size_t i) { return i != 2; });
    CHECK(superseded[0] == std::optional<std::size_t>(1));
    CHECK_FALSE(superseded[1]);
    CHECK_FALSE(superseded[2]);
    // The same id on another build (libssl's, not libcrypto's) is not superseded.
    std::vector<SupersedeKey> builds{key("CVE-1", {}, "aaaa"), key("CVE-2", {"CVE-1"}, "bbbb")};
    superseded = resolve_supersedes(builds, [](std::size_t) { return true; });
    CHECK_FALSE(superseded[0]);
    CHECK_FALSE(superseded[1]);
}

TEST_CASE("a supersession cycle, a publisher's mistake, decides its first member on its own") {
    std::vector<SupersedeKey> keys{key("CVE-A", {"CVE-B"}), key("CVE-B", {"CVE-A"})};
    std::vector<std::size_t> decided;
    auto superseded = resolve_supersedes(keys, [&](std::size_t i) {
        decided.push_back(i);
        return true;
    });
    CHECK(decided == std::vector<std::size_t>{0});
    CHECK_FALSE(superseded[0]);
    CHECK(superseded[1] == std::optional<std::size_t>(0));
}
