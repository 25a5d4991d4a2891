// The state database: a real SQLite file, its mode, its records, the
// step-by-step migration of a database written by each older schema (kept
// as fixtures in test/fixtures/, made by make-state-fixtures.sh), its
// transactions, and reads of a damaged file that fail instead of coming back
// short.

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "ScratchDirectory.h"
#include "state/HostLock.h"
#include "state/StateDatabase.h"
#include "state/Transaction.h"

using namespace suture;

namespace {

// A plain SQLite connection of the test's own, to look at a file or change it
// behind the StateDatabase's back. No busy timeout: a lock held elsewhere is
// SQLITE_BUSY at once.
class RawConnection {
  public:
    explicit RawConnection(const std::string& path) {
        REQUIRE(sqlite3_open(path.c_str(), &db_) == SQLITE_OK);
    }
    RawConnection(const RawConnection&) = delete;
    RawConnection& operator=(const RawConnection&) = delete;
    ~RawConnection() { sqlite3_close_v2(db_); }

    sqlite3* get() const { return db_; }

    // SQLITE_OK or the error code of the first statement that failed.
    int execute(const std::string& sql) {
        return sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, nullptr);
    }

    // The first column of every row `sql` returns, as text.
    std::vector<std::string> column(const std::string& sql) {
        sqlite3_stmt* statement = nullptr;
        REQUIRE(sqlite3_prepare_v2(db_, sql.c_str(), -1, &statement, nullptr) == SQLITE_OK);
        std::vector<std::string> values;
        int stepped = SQLITE_OK;
        while ((stepped = sqlite3_step(statement)) == SQLITE_ROW) {
            const unsigned char* text = sqlite3_column_text(statement, 0);
            values.emplace_back(text != nullptr ? reinterpret_cast<const char*>(text) : "");
        }
        sqlite3_finalize(statement);
        REQUIRE(stepped == SQLITE_DONE);
        return values;
    }

    // How many rows of `sql` can be read, and the code stepping ended with.
    std::pair<int, int> count_readable_rows(const std::string& sql) {
        sqlite3_stmt* statement = nullptr;
        REQUIRE(sqlite3_prepare_v2(db_, sql.c_str(), -1, &statement, nullptr) == SQLITE_OK);
        int rows = 0;
        int stepped = SQLITE_OK;
        while ((stepped = sqlite3_step(statement)) == SQLITE_ROW) {
            ++rows;
        }
        sqlite3_finalize(statement);
        return {rows, stepped};
    }

  private:
    sqlite3* db_ = nullptr;
};

// Copies the fixture `name` from test/fixtures/ into `scratch`: a test never
// changes the committed file.
std::string copy_fixture(const ScratchDirectory& scratch, const std::string& name) {
    std::string path = scratch.file(name);
    REQUIRE(std::filesystem::copy_file(FIXTURE_DIR "/" + name, path));
    return path;
}

// Overwrites page `page` (counted from 1) of the SQLite file at `path` with
// zeros, as a lost write or a bad sector would leave it. The file must not be
// open.
void zero_page(const std::string& path, std::uint32_t page, std::uint32_t page_size) {
    std::fstream file(path, std::ios::in | std::ios::out | std::ios::binary);
    REQUIRE(file);
    file.seekp(static_cast<std::streamoff>(page - 1) * page_size);
    file.write(std::string(page_size, '\0').data(), page_size);
    REQUIRE(file);
}

// The right-most child of the interior table b-tree page `page`: its page
// number is the big-endian 32-bit value at byte 8 of the page
// (https://sqlite.org/fileformat.html, "B-tree Pages"). Page type 0x05 is an
// interior table page.
std::uint32_t right_most_child(const std::string& path, std::uint32_t page,
                               std::uint32_t page_size) {
    std::ifstream file(path, std::ios::binary);
    file.seekg(static_cast<std::streamoff>(page - 1) * page_size);
    unsigned char header[12] = {};
    file.read(reinterpret_cast<char*>(header), sizeof header);
    REQUIRE(file);
    REQUIRE(header[0] == 0x05);
    return std::uint32_t{header[8]} << 24 | std::uint32_t{header[9]} << 16 |
           std::uint32_t{header[10]} << 8 | std::uint32_t{header[11]};
}

// One line per row, every field named, so a failed comparison shows which
// value changed.
std::string describe(const Application& application) {
    std::ostringstream text;
    text << application.id << ": pid " << application.process.pid << " started "
         << application.process.start_time << " " << application.executable << " build "
         << application.build_id << " " << application.patch_id << " level " << application.level
         << " at " << application.applied_at << " " << name_of(application.state);
    return text.str();
}

std::string describe(const HistoryEntry& entry) {
    std::ostringstream text;
    text << entry.id << ": at " << entry.at << " " << name_of(entry.action) << " pid " << entry.process.pid
         << " started " << entry.process.start_time << " " << entry.patch_id << " level "
         << entry.level << " " << name_of(entry.outcome) << " (" << entry.reason << ") " << entry.message;
    return text.str();
}

template <typename Row>
std::vector<std::string> describe_all(const std::vector<Row>& rows) {
    std::vector<std::string> lines;
    for (const Row& row : rows) {
        lines.push_back(describe(row));
    }
    return lines;
}

// The schema as sqlite_master holds it, without the page numbers.
std::vector<std::string> schema_of(const std::string& path) {
    RawConnection connection(path);
    return connection.column(
        "SELECT type || ' ' || name || ' on ' || tbl_name || ': ' || coalesce(sql, '') "
        "FROM sqlite_master ORDER BY type, name");
}

}  // namespace

TEST_CASE("a new database is private, at the latest schema, and keeps what it records") {
    ScratchDirectory scratch;
    std::string path = scratch.file("state.db");
    {
        auto database = StateDatabase::open(path);
        REQUIRE(database);
        CHECK(database->schema_version() == StateDatabase::latest_schema_version);
        auto id = database->record_application(Application{
            0, {4711, 98765}, "/usr/sbin/nginx", "7d90f384", "CVE-2026-63076", 1, 0, ApplicationState::active});
        REQUIRE(id);
        REQUIRE(database->log(
            HistoryEntry{0, 0, HistoryAction::apply, {4711, 98765}, "CVE-2026-63076", 1, HistoryOutcome::ok, "", "applied"}));
        REQUIRE(database->set_setting("channel", "testing"));
        REQUIRE(database->set_setting("channel", "stable"));
        REQUIRE(database->add_exclusion("executable", "/usr/sbin/sshd"));
        CHECK_FALSE(database->add_exclusion("colour", "blue"));
        REQUIRE(database->set_application_state(*id, ApplicationState::exited));
    }
    struct stat info {};
    REQUIRE(::stat(path.c_str(), &info) == 0);
    CHECK((info.st_mode & 0777) == 0600);

    auto reopened = StateDatabase::open(path);
    REQUIRE(reopened);
    CHECK(reopened->applications(ApplicationState::active)->empty());
    auto exited = reopened->applications(ApplicationState::exited);
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
}

TEST_CASE("after a reboot the records of the earlier boot are closed, once, and this boot's kept") {
    ScratchDirectory scratch;
    auto database = StateDatabase::open(scratch.file("state.db"));
    REQUIRE(database);
    auto record = [&](int pid) {
        REQUIRE(database->record_application(Application{
            0, {pid, 51301}, "/usr/sbin/nginx", "7d90f384", "CVE-2026-63076", 1, 0, ApplicationState::active}));
    };
    // 1. A database without a boot id keeps its records (they may be this boot's).
    record(4711);
    CHECK(database->close_applications_of_earlier_boot("boot-a") == std::size_t{0});
    CHECK(database->setting("boot_id")->value() == "boot-a");
    CHECK(database->applications(ApplicationState::active)->size() == 1);
    // 2. The same boot again: nothing changes.
    record(4712);
    CHECK(database->close_applications_of_earlier_boot("boot-a") == std::size_t{0});
    CHECK(database->applications(ApplicationState::active)->size() == 2);
    // 3. A new boot: both close, with a history entry each, though pid 4711
    //    with the same start time may well run again in this boot.
    CHECK(database->close_applications_of_earlier_boot("boot-b") == std::size_t{2});
    CHECK(database->applications(ApplicationState::active)->empty());
    CHECK(database->applications(ApplicationState::exited)->size() == 2);
    auto history = database->history();
    REQUIRE(history);
    REQUIRE(history->size() == 2);
    CHECK(history->front().action == HistoryAction::close);
    CHECK(history->front().message.find("rebooted") != std::string::npos);
    CHECK(database->setting("boot_id")->value() == "boot-b");
    // 4. This boot's records stay.
    record(4711);
    CHECK(database->close_applications_of_earlier_boot("boot-b") == std::size_t{0});
    CHECK(database->applications(ApplicationState::active)->size() == 1);
}

TEST_CASE("a schema version 1 database is migrated and keeps its rows") {
    ScratchDirectory scratch;
    std::string path = scratch.file("state-v1.db");
    REQUIRE(std::system(("cp '" FIXTURE_DIR "/state-v1.db' '" + path + "'").c_str()) == 0);
    auto database = StateDatabase::open(path);
    REQUIRE(database);
    CHECK(database->schema_version() == StateDatabase::latest_schema_version);
    auto active = database->applications(ApplicationState::active);
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
}

TEST_CASE("a database from a newer suture is refused, not downgraded") {
    ScratchDirectory scratch;
    std::string path = scratch.file("future.db");
    REQUIRE(std::system(("sqlite3 '" + path + "' 'PRAGMA user_version=99'").c_str()) == 0);
    auto database = StateDatabase::open(path);
    REQUIRE_FALSE(database);
    CHECK(database.error().message.find("newer than this suture") != std::string::npos);
}

TEST_CASE("a database from a newer suture in rollback-journal mode is not touched at all") {
    ScratchDirectory scratch;
    std::string path = scratch.file("future.db");
    REQUIRE(std::system(("sqlite3 '" + path +
                         "' 'PRAGMA journal_mode=DELETE; CREATE TABLE future (x); "
                         "PRAGMA user_version=99'")
                            .c_str()) == 0);
    auto read_all = [&] {
        std::ifstream file(path, std::ios::binary);
        return std::string(std::istreambuf_iterator<char>(file), {});
    };
    std::string before = read_all();
    auto database = StateDatabase::open(path);
    REQUIRE_FALSE(database);
    CHECK(database.error().code == ErrorCode::unsupported);
    CHECK(read_all() == before);  // no switch to WAL, no write of any kind
    CHECK_FALSE(std::filesystem::exists(path + "-wal"));
    RawConnection connection(path);
    CHECK(connection.column("PRAGMA journal_mode") == std::vector<std::string>{"delete"});
}

TEST_CASE("two first opens of a new database at once both succeed, ten times over") {
    // Two processes, as suture-boot and sutured at first boot: the schema
    // version is read again inside the migration's exclusive transaction and
    // the switch to WAL waits for the other.
    ScratchDirectory scratch;
    for (int round = 0; round < 10; ++round) {
        std::string path = scratch.file("first-" + std::to_string(round) + ".db");
        pid_t children[2] = {};
        for (pid_t& child : children) {
            child = ::fork();
            REQUIRE(child >= 0);
            if (child == 0) {
                auto database = StateDatabase::open(path);
                bool fine = database && database->set_setting("opened", "yes") &&
                            database->schema_version() == StateDatabase::latest_schema_version;
                if (!database) {
                    std::fprintf(stderr, "%s\n", database.error().message.c_str());
                }
                ::_exit(fine ? 0 : 1);
            }
        }
        for (pid_t child : children) {
            int status = 0;
            REQUIRE(::waitpid(child, &status, 0) == child);
            INFO("round " << round);
            CHECK(WIFEXITED(status));
            CHECK(WEXITSTATUS(status) == 0);
        }
    }
}

TEST_CASE("revert marks the process's active rows of a patch reverted, and only those") {
    ScratchDirectory scratch;
    auto database = StateDatabase::open(scratch.file("state.db"));
    REQUIRE(database);
    ProcessIdentity first{100, 5000};
    ProcessIdentity reused{100, 6000};  // the same PID, another process
    for (const auto& [process, patch] :
         std::vector<std::pair<ProcessIdentity, std::string>>{
             {first, "CVE-1"}, {first, "CVE-2"}, {reused, "CVE-1"}}) {
        REQUIRE(database->record_application(
            {0, process, "/bin/x", "7d90f384", patch, 1, 0, ApplicationState::active}));
    }
    CHECK(database->has_active_application(first, "CVE-1", 1) == true);
    CHECK(database->has_active_application(first, "CVE-1", 2) == false);
    CHECK(database->mark_reverted(first, "CVE-1") == 1u);
    CHECK(database->mark_reverted(first, "CVE-1") == 0u);
    CHECK(database->has_active_application(first, "CVE-1", 1) == false);
    CHECK(database->has_active_application(reused, "CVE-1", 1) == true);
    CHECK(database->applications(ApplicationState::reverted)->size() == 1);
    CHECK(database->applications(ApplicationState::active)->size() == 2);
}

TEST_CASE("a damaged file's settings and exclusions are salvaged when they still read") {
    ScratchDirectory scratch;
    std::string path = scratch.file("state.db");
    {
        auto database = StateDatabase::open(path);
        REQUIRE(database);
        REQUIRE(database->set_setting("enabled", "false"));
        REQUIRE(database->add_exclusion("unit", "sshd.service"));
    }
    auto salvaged = StateDatabase::salvage(path);
    CHECK(salvaged.settings ==
          std::vector<std::pair<std::string, std::string>>{{"enabled", "false"}});
    CHECK(salvaged.exclusions ==
          std::vector<std::pair<std::string, std::string>>{{"unit", "sshd.service"}});
    CHECK(StateDatabase::salvage(scratch.file("none.db")).settings.empty());
}

TEST_CASE("a schema version 1 database keeps every value of its rows") {
    ScratchDirectory scratch;
    auto database = StateDatabase::open(copy_fixture(scratch, "state-v1.db"));
    REQUIRE(database);
    CHECK(database->schema_version() == StateDatabase::latest_schema_version);

    CHECK(describe_all(*database->applications(ApplicationState::active)) ==
          std::vector<std::string>{"1: pid 4242 started 123456 /usr/sbin/nginx build "
                                   "7d90f38412d00023e58392b03612a24b62fcaede CVE-2026-63076 "
                                   "level 1 at 1795400000 active"});
    CHECK(database->applications(ApplicationState::reverted)->empty());
    CHECK(database->applications(ApplicationState::exited)->empty());
    CHECK(describe_all(*database->history()) ==
          std::vector<std::string>{"1: at 1795400000 apply pid 4242 started 123456 "
                                   "CVE-2026-63076 level 0 ok () applied level 1"});
    CHECK(database->setting("enabled")->value() == "true");
    CHECK(database->exclusions()->empty());
    CHECK(database->patchsets()->empty());
}

TEST_CASE("a schema version 2 database is migrated and keeps every value of its rows") {
    ScratchDirectory scratch;
    auto database = StateDatabase::open(copy_fixture(scratch, "state-v2.db"));
    REQUIRE(database);
    CHECK(database->schema_version() == StateDatabase::latest_schema_version);

    const std::string build = " build 7d90f38412d00023e58392b03612a24b62fcaede ";
    CHECK(describe_all(*database->applications(ApplicationState::active)) ==
          std::vector<std::string>{
              "2: pid 813 started 4185 /usr/sbin/nginx" + build +
                  "CVE-2026-63076 level 1 at 1795400001 active",
              "3: pid 1290 started 4294967396 /usr/lib/dovecot/imap-login" + build +
                  "CVE-2026-63076 level 2 at 1795400120 active",
          });
    CHECK(describe_all(*database->applications(ApplicationState::reverted)) ==
          std::vector<std::string>{"4: pid 2044 started 120007 /usr/sbin/haproxy" + build +
                                   "CVE-2026-61502 level 1 at 1795400180 reverted"});
    CHECK(describe_all(*database->applications(ApplicationState::exited)) ==
          std::vector<std::string>{"1: pid 812 started 4183 /usr/sbin/nginx" + build +
                                   "CVE-2026-63076 level 1 at 1795400000 exited"});
    CHECK(describe_all(*database->history()) ==
          std::vector<std::string>{
              "9: at 1795407200 update pid 0 started 0  level 0 ok () 5 action(s)",
              "8: at 1795407200 close pid 812 started 4183 CVE-2026-63076 level 1 ok () "
              "the process exited",
              "7: at 1795403600 revert pid 2044 started 120007 CVE-2026-61502 level 1 ok () "
              "reverted by 'suture revert'",
              "6: at 1795400180 adopt pid 2044 started 120007 CVE-2026-61502 level 1 ok () "
              "found active in memory",
              "5: at 1795400150 apply pid 977 started 3020 CVE-2026-63076 level 1 skipped "
              "(excluded) executable /usr/sbin/sshd is excluded",
              "4: at 1795400120 apply pid 1290 started 4294967396 CVE-2026-63076 level 2 ok () "
              "applied level 2",
              "3: at 1795400060 apply pid 1290 started 4294967396 CVE-2026-63076 level 2 failed "
              "(unsafe) pid 1290: thread 1291 is inside SSL_read (after 5 retries)",
              "2: at 1795400001 apply pid 813 started 4185 CVE-2026-63076 level 1 ok () "
              "applied level 1",
              "1: at 1795400000 apply pid 812 started 4183 CVE-2026-63076 level 1 ok () "
              "applied level 1",
          });
    CHECK(database->setting("enabled")->value() == "true");
    CHECK(database->setting("channel")->value() == "stable");
    CHECK(*database->exclusions() ==
          std::vector<std::pair<std::string, std::string>>{{"executable", "/usr/sbin/sshd"},
                                                           {"unit", "postgresql.service"}});
    CHECK(database->patchsets()->empty());
}

TEST_CASE("a schema version 3 database gets the callbacks table and keeps its rows") {
    ScratchDirectory scratch;
    auto database = StateDatabase::open(copy_fixture(scratch, "state-v3.db"));
    REQUIRE(database);
    CHECK(database->schema_version() == StateDatabase::latest_schema_version);
    CHECK(describe_all(*database->applications(ApplicationState::active)) ==
          std::vector<std::string>{"1: pid 813 started 4185 /usr/sbin/nginx build "
                                   "7d90f38412d00023e58392b03612a24b62fcaede CVE-2026-63076 "
                                   "level 1 at 1795400001 active"});
    CHECK(database->history()->size() == 2);
    CHECK(database->setting("enabled")->value() == "true");
    auto patchsets = database->patchsets();
    REQUIRE(patchsets);
    REQUIRE(patchsets->size() == 1);
    CHECK(patchsets->front().patch_id == "CVE-2026-63076");
    CHECK(patchsets->front().usable);
    // The new table starts empty and takes a callback's outcome.
    CHECK(database->callback_records()->empty());
    REQUIRE(database->record_callback({.process = {813, 4185},
                                       .patch_id = "CVE-2026-63076",
                                       .level = 1,
                                       .callback = "pre_apply",
                                       .outcome = "failed",
                                       .code = 42,
                                       .duration_ns = 1500,
                                       .message = "returned 42"}));
    auto records = database->callback_records();
    REQUIRE(records);
    REQUIRE(records->size() == 1);
    CHECK(records->front().process.start_time == 4185);
    CHECK(records->front().code == 42);
    CHECK(records->front().outcome == "failed");
}

TEST_CASE("the callbacks step runs inside the one migration transaction") {
    ScratchDirectory scratch;
    std::string path = copy_fixture(scratch, "state-v3.db");
    {
        // A table already named callbacks makes step 4 fail.
        RawConnection connection(path);
        REQUIRE(connection.execute("CREATE TABLE callbacks (x INTEGER)") == SQLITE_OK);
    }
    auto database = StateDatabase::open(path);
    REQUIRE_FALSE(database);
    CHECK(database.error().message.find("migrating to schema version 4") != std::string::npos);
    RawConnection connection(path);
    CHECK(connection.column("PRAGMA user_version") == std::vector<std::string>{"3"});
    CHECK(connection.column("SELECT patch_id FROM patchsets") ==
          std::vector<std::string>{"CVE-2026-63076"});
}

TEST_CASE("a schema version 4 database gets history.caller_uid and keeps its rows") {
    ScratchDirectory scratch;
    auto database = StateDatabase::open(copy_fixture(scratch, "state-v4.db"));
    REQUIRE(database);
    CHECK(database->schema_version() == StateDatabase::latest_schema_version);
    CHECK(database->callback_records()->size() == 1);
    // The old rows do not know their caller: unset, not a made-up uid.
    auto old_rows = database->history();
    REQUIRE(old_rows);
    REQUIRE(old_rows->size() == 2);
    CHECK_FALSE(old_rows->front().caller_uid);
    CHECK_FALSE(old_rows->back().caller_uid);
    // New rows name the database's caller, or the entry's own.
    database->set_caller_uid(1234);
    REQUIRE(database->log({.action = HistoryAction::update, .outcome = HistoryOutcome::ok}));
    REQUIRE(database->log(
        {.action = HistoryAction::apply, .outcome = HistoryOutcome::ok, .caller_uid = 0}));
    auto rows = database->history(2);
    REQUIRE(rows);
    REQUIRE(rows->size() == 2);
    CHECK(rows->at(0).caller_uid == std::optional<std::uint32_t>(0));
    CHECK(rows->at(1).caller_uid == std::optional<std::uint32_t>(1234));
}

TEST_CASE("a schema version 5 database gets the quarantine table and keeps its rows") {
    ScratchDirectory scratch;
    auto database = StateDatabase::open(copy_fixture(scratch, "state-v5.db"));
    REQUIRE(database);
    CHECK(database->schema_version() == StateDatabase::latest_schema_version);
    auto old_rows = database->history();
    REQUIRE(old_rows);
    REQUIRE(old_rows->size() == 2);
    // Newest first: the revert of uid 1000, then the apply of no known uid.
    CHECK(old_rows->front().caller_uid == std::optional<std::uint32_t>(1000));
    CHECK_FALSE(old_rows->back().caller_uid);
    CHECK(database->applications(ApplicationState::active)->size() == 1);
    // Empty at first; a quarantine is kept with every field, replaced by the
    // next one of the same id, and released once.
    CHECK(database->quarantined()->empty());
    Quarantine crash{.patch_id = "CVE-2026-63076",
                     .level = 1,
                     .at = 1795400100,
                     .reason = "crash",
                     .message = "pid 813 (nginx) killed by SIGSEGV",
                     .process = {813, 4185},
                     .comm = "nginx",
                     .signal = 11};
    REQUIRE(database->record_quarantine(crash));
    crash.level = 2;
    crash.signal = 4;
    REQUIRE(database->record_quarantine(crash));
    auto rows = database->quarantined();
    REQUIRE(rows);
    REQUIRE(rows->size() == 1);
    CHECK(rows->front().patch_id == "CVE-2026-63076");
    CHECK(rows->front().level == 2);
    CHECK(rows->front().at == 1795400100);
    CHECK(rows->front().reason == "crash");
    CHECK(rows->front().message == "pid 813 (nginx) killed by SIGSEGV");
    CHECK(rows->front().process == ProcessIdentity{813, 4185});
    CHECK(rows->front().comm == "nginx");
    CHECK(rows->front().signal == 4);
    CHECK(database->release_quarantine("CVE-2026-63076") == true);
    CHECK(database->release_quarantine("CVE-2026-63076") == false);
    CHECK(database->quarantined()->empty());
    // The new history actions are written and read by name.
    REQUIRE(database->log({.action = HistoryAction::quarantine, .outcome = HistoryOutcome::ok}));
    REQUIRE(database->log({.action = HistoryAction::release, .outcome = HistoryOutcome::ok}));
    auto latest = database->history(2);
    REQUIRE(latest);
    REQUIRE(latest->size() == 2);
    CHECK(latest->at(0).action == HistoryAction::release);  // newest first
    CHECK(latest->at(1).action == HistoryAction::quarantine);
}

TEST_CASE("a schema version 6 database gets units and feed provenance and keeps every row") {
    ScratchDirectory scratch;
    auto database = StateDatabase::open(copy_fixture(scratch, "state-v6.db"));
    REQUIRE(database);
    CHECK(database->schema_version() == 7);

    const std::string build = " build 7d90f38412d00023e58392b03612a24b62fcaede ";
    auto active = database->applications(ApplicationState::active);
    REQUIRE(active);
    CHECK(describe_all(*active) ==
          std::vector<std::string>{"2: pid 2044 started 120007 /usr/sbin/haproxy" + build +
                                   "CVE-2026-61502 level 1 at 1795400180 active"});
    auto exited = database->applications(ApplicationState::exited);
    REQUIRE(exited);
    CHECK(describe_all(*exited) ==
          std::vector<std::string>{"1: pid 813 started 4185 /usr/sbin/nginx" + build +
                                   "CVE-2026-63076 level 1 at 1795400001 exited"});
    CHECK(database->applications(ApplicationState::reverted)->empty());
    // Rows from before schema 7 do not know their unit.
    CHECK(active->front().unit.empty());
    CHECK(exited->front().unit.empty());

    auto history = database->history();
    REQUIRE(history);
    CHECK(describe_all(*history) ==
          std::vector<std::string>{
              "4: at 1795400200 quarantine pid 813 started 4185 CVE-2026-63076 level 1 ok "
              "(crash) pid 813 (nginx) killed by SIGSEGV 199 s after its apply; reverted from 0 "
              "process(es)",
              "3: at 1795400200 close pid 813 started 4185 CVE-2026-63076 level 1 ok (crashed) "
              "the process was killed by SIGSEGV",
              "2: at 1795400180 apply pid 2044 started 120007 CVE-2026-61502 level 1 ok () "
              "from debian",
              "1: at 1795400001 apply pid 813 started 4185 CVE-2026-63076 level 1 ok () "
              "from debian (automatic)",
          });
    std::vector<std::optional<std::uint32_t>> callers;
    for (const HistoryEntry& entry : *history) {
        callers.push_back(entry.caller_uid);
        // Nor do the history entries know the feed's metadata and keys.
        CHECK_FALSE(entry.targets_version);
        CHECK(entry.signing_keys.empty());
    }
    CHECK(callers == std::vector<std::optional<std::uint32_t>>{0, 0, 1000, 0});

    auto quarantined = database->quarantined();
    REQUIRE(quarantined);
    REQUIRE(quarantined->size() == 1);
    const Quarantine& row = quarantined->front();
    CHECK(row.patch_id == "CVE-2026-63076");
    CHECK(row.level == 1);
    CHECK(row.at == 1795400200);
    CHECK(row.reason == "crash");
    CHECK(row.message ==
          "pid 813 (nginx) killed by SIGSEGV 199 s after its apply; reverted from 0 process(es)");
    CHECK(row.process == ProcessIdentity{813, 4185});
    CHECK(row.comm == "nginx");
    CHECK(row.signal == 11);

    CHECK(database->setting("enabled")->value() == "true");
    CHECK(database->setting("boot_id")->value() == "0b8f3a52-3c1e-4c1f-9d0e-5a8e2f1b7c64");
    CHECK(*database->exclusions() ==
          std::vector<std::pair<std::string, std::string>>{{"unit", "sshd.service"}});
    auto patchsets = database->patchsets();
    REQUIRE(patchsets);
    REQUIRE(patchsets->size() == 1);
    CHECK(patchsets->front().remote == "debian");
    CHECK(patchsets->front().name == "openssl/CVE-2026-63076.suture");
    CHECK(patchsets->front().patch_id == "CVE-2026-63076");
    CHECK(patchsets->front().level == 1);
    CHECK(patchsets->front().sha256 == std::string(64, 'a'));
    CHECK(patchsets->front().cves == "CVE-2026-63076");
    CHECK(patchsets->front().usable);
    auto callbacks = database->callback_records();
    REQUIRE(callbacks);
    REQUIRE(callbacks->size() == 1);
    CHECK(callbacks->front().process == ProcessIdentity{2044, 120007});
    CHECK(callbacks->front().callback == "post_apply");
    CHECK(callbacks->front().outcome == "ran");
    CHECK(callbacks->front().duration_ns == 1800);
}

TEST_CASE("an application keeps its unit, and an apply entry the feed it came from") {
    ScratchDirectory scratch;
    std::string path = scratch.file("state.db");
    {
        auto database = StateDatabase::open(path);
        REQUIRE(database);
        REQUIRE(database->record_application({.process = {4711, 98765},
                                              .executable = "/usr/sbin/nginx",
                                              .build_id = "7d90f384",
                                              .patch_id = "CVE-2026-63076",
                                              .level = 1,
                                              .unit = "nginx.service"}));
        REQUIRE(database->record_application(
            {.process = {4712, 98766}, .patch_id = "CVE-2026-63076", .level = 1}));
        // The keys are given unsorted: they are stored (and read) sorted.
        REQUIRE(database->log({.action = HistoryAction::apply,
                               .process = {4711, 98765},
                               .patch_id = "CVE-2026-63076",
                               .level = 1,
                               .outcome = HistoryOutcome::ok,
                               .message = "from local (automatic)",
                               .targets_version = 4294967300ULL,
                               .signing_keys = {"f00d", "0a1b", "c3d4"}}));
        REQUIRE(database->log({.action = HistoryAction::apply,
                               .process = {4712, 98766},
                               .patch_id = "CVE-2026-63076",
                               .level = 1,
                               .outcome = HistoryOutcome::ok,
                               .message = "applied by hand (suture apply)"}));
    }
    RawConnection raw(path);
    CHECK(raw.column("SELECT signing_keys FROM history ORDER BY id") ==
          std::vector<std::string>{"0a1b,c3d4,f00d", ""});
    CHECK(raw.column("SELECT coalesce(targets_version, 'NULL') FROM history ORDER BY id") ==
          std::vector<std::string>{"4294967300", "NULL"});

    auto database = StateDatabase::open(path);
    REQUIRE(database);
    auto applications = database->applications();
    REQUIRE(applications);
    REQUIRE(applications->size() == 2);
    CHECK(applications->at(0).unit == "nginx.service");
    CHECK(applications->at(1).unit.empty());
    auto history = database->history();
    REQUIRE(history);
    REQUIRE(history->size() == 2);
    const HistoryEntry& by_hand = history->at(0);  // newest first
    const HistoryEntry& from_feed = history->at(1);
    CHECK(from_feed.targets_version == std::optional<std::uint64_t>(4294967300ULL));
    CHECK(from_feed.signing_keys == std::vector<std::string>{"0a1b", "c3d4", "f00d"});
    CHECK(from_feed.message == "from local (automatic)");
    CHECK_FALSE(by_hand.targets_version);
    CHECK(by_hand.signing_keys.empty());
}

TEST_CASE("a new database records this process's uid as the caller by default") {
    ScratchDirectory scratch;
    auto database = StateDatabase::open(scratch.file("new.db"));
    REQUIRE(database);
    REQUIRE(database->log({.action = HistoryAction::update, .outcome = HistoryOutcome::ok}));
    CHECK(database->history()->front().caller_uid ==
          std::optional<std::uint32_t>(static_cast<std::uint32_t>(::getuid())));
}

TEST_CASE("every migrated fixture has the schema of a new database") {
    ScratchDirectory scratch;
    std::string fresh = scratch.file("new.db");
    REQUIRE(StateDatabase::open(fresh));
    for (const char* fixture : {"state-v1.db", "state-v2.db", "state-v3.db", "state-v4.db",
                                "state-v5.db", "state-v6.db"}) {
        INFO(fixture);
        std::string path = copy_fixture(scratch, fixture);
        REQUIRE(StateDatabase::open(path));
        CHECK(schema_of(path) == schema_of(fresh));
    }
}

TEST_CASE("a migration step that fails leaves the database at its last complete version") {
    ScratchDirectory scratch;
    std::string path = copy_fixture(scratch, "state-v1.db");
    {
        // Step 2 creates exclusions, then adds history.level: make the
        // second half fail.
        RawConnection connection(path);
        REQUIRE(connection.execute("ALTER TABLE history ADD COLUMN level INTEGER") == SQLITE_OK);
    }
    auto database = StateDatabase::open(path);
    REQUIRE_FALSE(database);
    CHECK(database.error().message.find("migrating to schema version 2") != std::string::npos);
    CHECK(database.error().message.find("duplicate column name: level") != std::string::npos);

    RawConnection connection(path);
    CHECK(connection.column("PRAGMA user_version") == std::vector<std::string>{"1"});
    CHECK(connection.column("SELECT name FROM sqlite_master WHERE name = 'exclusions'").empty());
    CHECK(connection.column("SELECT message FROM history") ==
          std::vector<std::string>{"applied level 1"});
}

TEST_CASE("a batch still open when the database goes away is rolled back") {
    ScratchDirectory scratch;
    std::string first = scratch.file("first.db");
    std::string second = scratch.file("second.db");
    {
        auto database = StateDatabase::open(first);
        REQUIRE(database);
        REQUIRE(database->begin_batch());
        REQUIRE(database->record_application(
            {0, {4711, 98765}, "/usr/sbin/nginx", "7d90f384", "CVE-2026-63076", 1, 0, ApplicationState::active}));
        // Assigning another database over it rolls the batch back before
        // its connection closes.
        auto other = StateDatabase::open(second);
        REQUIRE(other);
        *database = std::move(*other);
        REQUIRE(database->begin_batch());
        REQUIRE(database->record_application(
            {0, {4712, 98766}, "/usr/sbin/nginx", "7d90f384", "CVE-2026-63076", 1, 0, ApplicationState::active}));
    }
    for (const std::string& path : {first, second}) {
        auto reopened = StateDatabase::open(path);
        REQUIRE(reopened);
        CHECK(reopened->applications(ApplicationState::active)->empty());
    }
}

TEST_CASE("a batch commits its writes once, and only a begun batch commits") {
    ScratchDirectory scratch;
    auto database = StateDatabase::open(scratch.file("state.db"));
    REQUIRE(database);
    CHECK_FALSE(database->commit_batch());
    REQUIRE(database->begin_batch());
    CHECK_FALSE(database->begin_batch());  // batches do not nest
    REQUIRE(database->log({0, 0, HistoryAction::update, {}, "", 0, HistoryOutcome::ok, "", "0 action(s)"}));
    REQUIRE(database->commit_batch());
    CHECK_FALSE(database->commit_batch());
    CHECK(database->history()->size() == 1);
}

TEST_CASE("a transaction keeps its writes only when committed") {
    ScratchDirectory scratch;
    RawConnection connection(scratch.file("transaction.db"));
    REQUIRE(connection.execute("CREATE TABLE t (x INTEGER)") == SQLITE_OK);

    SECTION("one not committed is rolled back when it goes out of scope") {
        {
            auto transaction = Transaction::begin(connection.get(), Transaction::Lock::immediate,
                                                  "transaction.db");
            REQUIRE(transaction);
            REQUIRE(connection.execute("INSERT INTO t VALUES (1)") == SQLITE_OK);
        }
        CHECK(sqlite3_get_autocommit(connection.get()) != 0);
        CHECK(connection.column("SELECT count(*) FROM t") == std::vector<std::string>{"0"});
    }
    SECTION("one committed keeps them when it goes out of scope") {
        {
            auto transaction =
                Transaction::begin(connection.get(), Transaction::Lock::deferred, "transaction.db");
            REQUIRE(transaction);
            REQUIRE(connection.execute("INSERT INTO t VALUES (1)") == SQLITE_OK);
            REQUIRE(transaction->commit());
        }
        CHECK(connection.column("SELECT count(*) FROM t") == std::vector<std::string>{"1"});
    }
}

TEST_CASE("a transaction cannot begin inside another") {
    ScratchDirectory scratch;
    RawConnection connection(scratch.file("transaction.db"));
    auto outer = Transaction::begin(connection.get(), Transaction::Lock::deferred, "outer");
    REQUIRE(outer);
    auto inner = Transaction::begin(connection.get(), Transaction::Lock::deferred, "inner");
    REQUIRE_FALSE(inner);
    CHECK(inner.error().message.find("inner: BEGIN: ") == 0);
}

TEST_CASE("a commit that fails says why, and the transaction is rolled back at scope end") {
    ScratchDirectory scratch;
    std::string path = scratch.file("transaction.db");
    RawConnection writer(path);
    RawConnection reader(path);  // rollback journal: a reader's lock blocks the commit
    REQUIRE(writer.execute("CREATE TABLE t (x INTEGER)") == SQLITE_OK);
    {
        auto transaction =
            Transaction::begin(writer.get(), Transaction::Lock::deferred, "transaction.db");
        REQUIRE(transaction);
        REQUIRE(writer.execute("INSERT INTO t VALUES (1)") == SQLITE_OK);
        REQUIRE(reader.execute("BEGIN; SELECT count(*) FROM t") == SQLITE_OK);

        auto committed = transaction->commit();
        REQUIRE_FALSE(committed);
        CHECK(committed.error().message == "transaction.db: COMMIT: database is locked");
        CHECK(sqlite3_get_autocommit(writer.get()) == 0);  // still open, still ours
    }
    CHECK(sqlite3_get_autocommit(writer.get()) != 0);
    REQUIRE(reader.execute("COMMIT") == SQLITE_OK);
    CHECK(reader.column("SELECT count(*) FROM t") == std::vector<std::string>{"0"});
}

TEST_CASE("a read that meets a damaged page fails instead of returning the rows before it") {
    ScratchDirectory scratch;
    std::string path = scratch.file("damaged.db");
    constexpr int recorded = 400;  // enough rows for many leaf pages
    {
        auto database = StateDatabase::open(path);
        REQUIRE(database);
        REQUIRE(database->begin_batch());
        for (int pid = 1; pid <= recorded; ++pid) {
            REQUIRE(
                database->record_application({0,
                                              {pid, 1000},
                                              "/usr/lib/dovecot/imap-login-" + std::string(80, 'x'),
                                              "7d90f384",
                                              "CVE-2026-63076",
                                              1,
                                              0,
                                              ApplicationState::active}));
        }
        REQUIRE(database->commit_batch());
    }
    std::uint32_t page_size = 0;
    std::uint32_t last_leaf = 0;
    {
        RawConnection connection(path);
        page_size = std::stoul(connection.column("PRAGMA page_size").at(0));
        auto root = std::stoul(
            connection.column("SELECT rootpage FROM sqlite_master WHERE name = 'applications'")
                .at(0));
        last_leaf = right_most_child(path, root, page_size);
    }
    zero_page(path, last_leaf, page_size);
    {
        // A plain loop over the rows gets some and then SQLITE_CORRUPT:
        // ending the loop there would return a short list.
        RawConnection connection(path);
        auto [rows, ended] =
            connection.count_readable_rows("SELECT * FROM applications ORDER BY id");
        CHECK(rows > 0);
        CHECK(rows < recorded);
        CHECK(ended == SQLITE_CORRUPT);
    }

    // Opened now, the damage is found by the quick_check of open.
    auto reopened = StateDatabase::open(path);
    REQUIRE_FALSE(reopened);
    CHECK(reopened.error().code == ErrorCode::corrupt);
    CHECK(reopened.error().message.find("is damaged") != std::string::npos);
    CHECK(reopened.error().message.find("suture state rebuild") != std::string::npos);
}

TEST_CASE("a page damaged while the database is open fails the read as corrupt, naming the way back") {
    ScratchDirectory scratch;
    std::string path = scratch.file("damaged.db");
    auto database = StateDatabase::open(path);
    REQUIRE(database);
    REQUIRE(database->begin_batch());
    for (int pid = 1; pid <= 400; ++pid) {
        REQUIRE(database->record_application(
            {0, {pid, 1000}, std::string(120, 'x'), "7d90f384", "CVE-2026-63076", 1, 0,
             ApplicationState::active}));
    }
    REQUIRE(database->commit_batch());
    std::uint32_t page_size = 0;
    std::uint32_t last_leaf = 0;
    {
        RawConnection connection(path);
        REQUIRE(connection.execute("PRAGMA wal_checkpoint(TRUNCATE)") == SQLITE_OK);
        page_size = std::stoul(connection.column("PRAGMA page_size").at(0));
        auto root = std::stoul(
            connection.column("SELECT rootpage FROM sqlite_master WHERE name = 'applications'")
                .at(0));
        last_leaf = right_most_child(path, root, page_size);
    }
    zero_page(path, last_leaf, page_size);
    auto active = database->applications(ApplicationState::active);
    REQUIRE_FALSE(active);
    CHECK(active.error().code == ErrorCode::corrupt);
    CHECK(active.error().message.find("state database: applications: database disk image is "
                                      "malformed") != std::string::npos);
    CHECK(active.error().message.find("suture state rebuild") != std::string::npos);
}

TEST_CASE("a setting that cannot be read is an error, not an unset setting") {
    ScratchDirectory scratch;
    std::string path = scratch.file("damaged.db");
    {
        auto database = StateDatabase::open(path);
        REQUIRE(database);
        REQUIRE(database->set_setting("enabled", "false"));
    }
    std::uint32_t page_size = 0;
    std::vector<std::string> pages;
    {
        RawConnection connection(path);
        page_size = std::stoul(connection.column("PRAGMA page_size").at(0));
        pages = connection.column("SELECT rootpage FROM sqlite_master WHERE tbl_name = 'settings'");
    }
    for (const std::string& page : pages) {  // the table and its primary key's index
        zero_page(path, std::stoul(page), page_size);
    }

    // open's quick_check finds the damaged pages: a damaged setting never
    // reads as unset.
    auto database = StateDatabase::open(path);
    REQUIRE_FALSE(database);
    CHECK(database.error().code == ErrorCode::corrupt);
}

TEST_CASE("the stored names of states, actions and outcomes read back as the same enums") {
    for (ApplicationState state :
         {ApplicationState::active, ApplicationState::reverted, ApplicationState::exited}) {
        CHECK(application_state_named(name_of(state)) == state);
    }
    CHECK_FALSE(application_state_named("paused"));
    for (HistoryAction action :
         {HistoryAction::apply, HistoryAction::revert, HistoryAction::adopt, HistoryAction::close,
          HistoryAction::refresh, HistoryAction::update, HistoryAction::settings}) {
        CHECK(history_action_named(name_of(action)) == action);
    }
    CHECK(name_of(HistoryAction::apply) == "apply");
    CHECK(history_action_named("rollout") == HistoryAction::unknown);  // a newer suture's
    for (HistoryOutcome outcome :
         {HistoryOutcome::ok, HistoryOutcome::failed, HistoryOutcome::skipped}) {
        CHECK(history_outcome_named(name_of(outcome)) == outcome);
    }
    CHECK(history_outcome_named("") == HistoryOutcome::unknown);
}

TEST_CASE("the operation lock is exclusive across processes, names its holder, and waits") {
    ScratchDirectory scratch;
    std::string path = scratch.file("run/suture/lock");  // its directory is created
    auto held = HostLock::acquire(path, std::chrono::seconds(0));
    REQUIRE(held);
    // Another process: refused at once, or after its wait, naming our PID.
    int pipe_fds[2];
    REQUIRE(::pipe(pipe_fds) == 0);
    pid_t child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) {
        int told = 0;
        auto refused = HostLock::acquire(path, std::chrono::seconds(1), [&](int) { ++told; });
        std::string answer = refused ? "acquired" : refused.error().message;
        answer += told == 1 ? " (told once)" : " (told " + std::to_string(told) + ")";
        (void)!::write(pipe_fds[1], answer.data(), answer.size());
        ::_exit(refused ? 1 : (refused.error().code == ErrorCode::locked ? 0 : 2));
    }
    ::close(pipe_fds[1]);
    char buffer[512] = {};
    (void)!::read(pipe_fds[0], buffer, sizeof buffer - 1);
    ::close(pipe_fds[0]);
    int status = 0;
    REQUIRE(::waitpid(child, &status, 0) == child);
    std::string answer = buffer;
    INFO(answer);
    CHECK(WEXITSTATUS(status) == 0);
    CHECK(answer.find("another suture operation is running (pid " + std::to_string(::getpid()) +
                      ",") != std::string::npos);
    CHECK(answer.find("(told once)") != std::string::npos);
    // Released, it is free again.
    { auto released = std::move(*held); }
    child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) {
        ::_exit(HostLock::acquire(path, std::chrono::seconds(0)) ? 0 : 1);
    }
    REQUIRE(::waitpid(child, &status, 0) == child);
    CHECK(WEXITSTATUS(status) == 0);
    struct stat info {};
    REQUIRE(::stat(path.c_str(), &info) == 0);
    CHECK((info.st_mode & 0777) == 0600);
}
