// The state database: a real SQLite file, its mode, its records, and the
// step-by-step migration of a database written by an older schema (kept as
// a fixture in test/fixtures/).

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

#include <catch2/catch.hpp>

#include "state/StateDatabase.h"

using namespace suture;

namespace {

std::string scratch_path(const std::string& name) {
    char directory[] = "/tmp/suture-state-test-XXXXXX";
    REQUIRE(::mkdtemp(directory) != nullptr);
    return std::string(directory) + "/" + name;
}

}  // namespace

TEST_CASE("a new database is private, at the latest schema, and keeps what it records") {
    std::string path = scratch_path("state.db");
    {
        auto database = StateDatabase::open(path);
        REQUIRE(database);
        CHECK(database->schema_version() == StateDatabase::latest_schema_version);
        auto id = database->record_application(Application{
            0, {4711, 98765}, "/usr/sbin/nginx", "7d90f384", "CVE-2026-63076", 1, 0, "active"});
        REQUIRE(id);
        REQUIRE(database->log(
            HistoryEntry{0, 0, "apply", {4711, 98765}, "CVE-2026-63076", 1, "ok", "", "applied"}));
        REQUIRE(database->set_setting("channel", "testing"));
        REQUIRE(database->set_setting("channel", "stable"));
        REQUIRE(database->add_exclusion("executable", "/usr/sbin/sshd"));
        CHECK_FALSE(database->add_exclusion("colour", "blue"));
        REQUIRE(database->set_application_state(*id, "exited"));
    }
    struct stat info {};
    REQUIRE(::stat(path.c_str(), &info) == 0);
    CHECK((info.st_mode & 0777) == 0600);

    auto reopened = StateDatabase::open(path);
    REQUIRE(reopened);
    CHECK(reopened->applications("active")->empty());
    auto exited = reopened->applications("exited");
    REQUIRE(exited);
    REQUIRE(exited->size() == 1);
    CHECK(exited->front().process == ProcessIdentity{4711, 98765});
    CHECK(exited->front().patch_id == "CVE-2026-63076");
    CHECK(reopened->setting("channel")->value() == "stable");
    CHECK_FALSE(reopened->setting("missing")->has_value());
    CHECK(reopened->exclusions()->size() == 1);
    auto history = reopened->history();
    REQUIRE(history);
    REQUIRE(history->size() == 1);
    CHECK(history->front().level == 1);
    std::system(("rm -rf '" + path.substr(0, path.rfind('/')) + "'").c_str());
}

TEST_CASE("a schema version 1 database is migrated and keeps its rows") {
    std::string path = scratch_path("state-v1.db");
    REQUIRE(std::system(("cp '" FIXTURE_DIR "/state-v1.db' '" + path + "'").c_str()) == 0);
    auto database = StateDatabase::open(path);
    REQUIRE(database);
    CHECK(database->schema_version() == 3);
    auto active = database->applications("active");
    REQUIRE(active);
    REQUIRE(active->size() == 1);
    CHECK(active->front().executable == "/usr/sbin/nginx");
    auto history = database->history();
    REQUIRE(history);
    REQUIRE(history->size() == 1);
    CHECK(history->front().level == 0);  // the column version 2 added, defaulted
    CHECK(database->add_exclusion("unit", "sshd.service"));
    CHECK(database->setting("enabled")->value() == "true");
    REQUIRE(database->record_patchsets({{"local", "debian-12/openssl/x/CVE-1.suture", "CVE-1", 1,
                                         "7d90f384", std::string(64, 'a'), "CVE-1", true}}));
    CHECK(database->patchsets()->size() == 1);
    std::system(("rm -rf '" + path.substr(0, path.rfind('/')) + "'").c_str());
}

TEST_CASE("a database from a newer suture is refused, not downgraded") {
    std::string path = scratch_path("future.db");
    REQUIRE(std::system(("sqlite3 '" + path + "' 'PRAGMA user_version=99'").c_str()) == 0);
    auto database = StateDatabase::open(path);
    REQUIRE_FALSE(database);
    CHECK(database.error().message.find("newer than this suture") != std::string::npos);
    std::system(("rm -rf '" + path.substr(0, path.rfind('/')) + "'").c_str());
}
