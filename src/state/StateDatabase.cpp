#include "state/StateDatabase.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <thread>

#include "base/UniqueFD.h"
#include "state/Statement.h"
#include "state/Transaction.h"

namespace suture {

namespace {

// The schema, one step per version; a database at version N runs steps
// N+1... in one transaction each. Never edit a released step: add one.
//   1 (2026-11): applications, history, settings
//   2 (2026-11): exclusions; history.level
//   3 (2026-11): patchsets (the verified patchsets of the feed cache)
//   4 (2026-12): callbacks (each patch callback's outcome, Callbacks.h)
//   5 (2026-12): history.caller_uid (whose call; NULL in older rows)
//   6 (2026-12): quarantine (patch ids the health watch blamed for a crash)
//   7 (2026-12): applications.unit; history.targets_version, signing_keys
//                (the feed an apply came from, for the audit report)
// Every older version N has a fixture, test/fixtures/state-vN.db, made from
// these steps by test/fixtures/make-state-fixtures.sh; a new version makes
// the one before it old and wants a fixture and a test of its own.
const char* const migration_steps[] = {
    // 1
    R"(CREATE TABLE applications (
         id INTEGER PRIMARY KEY,
         pid INTEGER NOT NULL,
         start_time INTEGER NOT NULL,
         executable TEXT NOT NULL DEFAULT '',
         build_id TEXT NOT NULL,
         patch_id TEXT NOT NULL,
         level INTEGER NOT NULL,
         applied_at INTEGER NOT NULL,
         state TEXT NOT NULL CHECK (state IN ('active', 'reverted', 'exited')));
       CREATE INDEX applications_by_process ON applications (pid, start_time);
       CREATE TABLE history (
         id INTEGER PRIMARY KEY,
         at INTEGER NOT NULL,
         action TEXT NOT NULL,
         pid INTEGER NOT NULL DEFAULT 0,
         start_time INTEGER NOT NULL DEFAULT 0,
         patch_id TEXT NOT NULL DEFAULT '',
         outcome TEXT NOT NULL,
         reason TEXT NOT NULL DEFAULT '',
         message TEXT NOT NULL DEFAULT '');
       CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);)",
    // 2
    R"(CREATE TABLE exclusions (
         kind TEXT NOT NULL CHECK (kind IN ('executable', 'unit')),
         value TEXT NOT NULL,
         PRIMARY KEY (kind, value));
       ALTER TABLE history ADD COLUMN level INTEGER NOT NULL DEFAULT 0;)",
    // 3
    R"(CREATE TABLE patchsets (
         remote TEXT NOT NULL,
         name TEXT NOT NULL,
         patch_id TEXT NOT NULL,
         level INTEGER NOT NULL,
         build_id TEXT NOT NULL,
         sha256 TEXT NOT NULL,
         cves TEXT NOT NULL DEFAULT '',
         usable INTEGER NOT NULL,
         verified_at INTEGER NOT NULL,
         PRIMARY KEY (remote, name));)",
    // 4
    R"(CREATE TABLE callbacks (
         id INTEGER PRIMARY KEY,
         at INTEGER NOT NULL,
         pid INTEGER NOT NULL,
         start_time INTEGER NOT NULL,
         patch_id TEXT NOT NULL,
         level INTEGER NOT NULL,
         callback TEXT NOT NULL,
         outcome TEXT NOT NULL,
         code INTEGER NOT NULL DEFAULT 0,
         duration_ns INTEGER NOT NULL DEFAULT 0,
         message TEXT NOT NULL DEFAULT '');)",
    // 5
    R"(ALTER TABLE history ADD COLUMN caller_uid INTEGER;)",
    // 6
    R"(CREATE TABLE quarantine (
         patch_id TEXT PRIMARY KEY,
         level INTEGER NOT NULL,
         at INTEGER NOT NULL,
         reason TEXT NOT NULL,
         message TEXT NOT NULL DEFAULT '',
         pid INTEGER NOT NULL DEFAULT 0,
         start_time INTEGER NOT NULL DEFAULT 0,
         comm TEXT NOT NULL DEFAULT '',
         signal INTEGER NOT NULL DEFAULT 0);)",
    // 7
    R"(ALTER TABLE applications ADD COLUMN unit TEXT NOT NULL DEFAULT '';
       ALTER TABLE history ADD COLUMN targets_version INTEGER;
       ALTER TABLE history ADD COLUMN signing_keys TEXT NOT NULL DEFAULT '';)",
};
static_assert(std::size(migration_steps) == StateDatabase::latest_schema_version);

// How long a statement waits for another connection's lock (sutured and a
// CLI run share the file; the operation lock keeps their writes apart, but
// reads such as `suture history` still meet a writer).
constexpr int busy_timeout_ms = 10000;

// Prepares `sql`, binds `values` to its parameters and runs it to the end.
template <typename... Values>
Result<void> run_statement(sqlite3* db, const char* what, const char* sql,
                           const Values&... values) {
    auto statement = Statement::prepare(db, sql, what);
    if (!statement) {
        return tl::unexpected(statement.error());
    }
    return statement->bind(values...).run();
}

// Prepares `sql`, binds `values` to its parameters and reads every row it
// returns with `read_row`; a read that ends early is an error, not fewer rows.
template <typename Row, typename... Values>
Result<std::vector<Row>> read_rows(sqlite3* db, const char* what, const char* sql,
                                   Row (*read_row)(const Statement&), const Values&... values) {
    auto statement = Statement::prepare(db, sql, what);
    if (!statement) {
        return tl::unexpected(statement.error());
    }
    return statement->bind(values...).rows(read_row);
}

// The row readers, one per query, columns in the order the query names them.

Application read_application(const Statement& row) {
    return Application{
        .id = row.integer(0),
        .process = {static_cast<int>(row.integer(1)), static_cast<std::uint64_t>(row.integer(2))},
        .executable = row.text(3),
        .build_id = row.text(4),
        .patch_id = row.text(5),
        .level = static_cast<std::uint32_t>(row.integer(6)),
        .applied_at = row.integer(7),
        // The schema's CHECK admits only the three names.
        .state = application_state_named(row.text(8)).value_or(ApplicationState::active),
        .unit = row.text(9)};
}

CallbackRecord read_callback_record(const Statement& row) {
    return CallbackRecord{
        .at = row.integer(0),
        .process = {static_cast<int>(row.integer(1)), static_cast<std::uint64_t>(row.integer(2))},
        .patch_id = row.text(3),
        .level = static_cast<std::uint32_t>(row.integer(4)),
        .callback = row.text(5),
        .outcome = row.text(6),
        .code = static_cast<int>(row.integer(7)),
        .duration_ns = row.integer(8),
        .message = row.text(9)};
}

// history.signing_keys: key ids, sorted, joined by commas (a key id is
// hex, so never holds one); "" for none.
std::string joined_key_ids(std::vector<std::string> key_ids) {
    std::sort(key_ids.begin(), key_ids.end());
    std::string text;
    for (const std::string& key_id : key_ids) {
        text += (text.empty() ? "" : ",") + key_id;
    }
    return text;
}

std::vector<std::string> split_key_ids(const std::string& text) {
    std::vector<std::string> key_ids;
    std::size_t start = 0;
    while (start < text.size()) {
        std::size_t comma = std::min(text.find(',', start), text.size());
        key_ids.push_back(text.substr(start, comma - start));
        start = comma + 1;
    }
    return key_ids;
}

HistoryEntry read_history_entry(const Statement& row) {
    return HistoryEntry{
        .id = row.integer(0),
        .at = row.integer(1),
        .action = history_action_named(row.text(2)),
        .process = {static_cast<int>(row.integer(3)), static_cast<std::uint64_t>(row.integer(4))},
        .patch_id = row.text(5),
        .level = static_cast<std::uint32_t>(row.integer(6)),
        .outcome = history_outcome_named(row.text(7)),
        .reason = row.text(8),
        .message = row.text(9),
        .caller_uid = row.is_null(10) ? std::nullopt
                                      : std::optional<std::uint32_t>(
                                            static_cast<std::uint32_t>(row.integer(10))),
        .targets_version = row.is_null(11) ? std::nullopt
                                           : std::optional<std::uint64_t>(
                                                 static_cast<std::uint64_t>(row.integer(11))),
        .signing_keys = split_key_ids(row.text(12))};
}

// The names of the enums, each table used both ways.
constexpr std::pair<ApplicationState, std::string_view> application_state_names[] = {
    {ApplicationState::active, "active"},
    {ApplicationState::reverted, "reverted"},
    {ApplicationState::exited, "exited"},
};
constexpr std::pair<HistoryAction, std::string_view> history_action_names[] = {
    {HistoryAction::apply, "apply"},     {HistoryAction::revert, "revert"},
    {HistoryAction::adopt, "adopt"},     {HistoryAction::close, "close"},
    {HistoryAction::refresh, "refresh"}, {HistoryAction::update, "update"},
    {HistoryAction::settings, "settings"}, {HistoryAction::rebuild, "rebuild"},
    {HistoryAction::quarantine, "quarantine"}, {HistoryAction::release, "release"},
    {HistoryAction::unknown, "unknown"},
};
constexpr std::pair<HistoryOutcome, std::string_view> history_outcome_names[] = {
    {HistoryOutcome::ok, "ok"},
    {HistoryOutcome::failed, "failed"},
    {HistoryOutcome::skipped, "skipped"},
    {HistoryOutcome::unknown, "unknown"},
};

template <typename Enum, std::size_t N>
std::string_view name_in(const std::pair<Enum, std::string_view> (&table)[N], Enum value) {
    for (const auto& [entry, name] : table) {
        if (entry == value) {
            return name;
        }
    }
    return "unknown";
}

template <typename Enum, std::size_t N>
std::optional<Enum> value_in(const std::pair<Enum, std::string_view> (&table)[N],
                             std::string_view name) {
    for (const auto& [entry, entry_name] : table) {
        if (entry_name == name) {
            return entry;
        }
    }
    return std::nullopt;
}

CachedPatchset read_patchset(const Statement& row) {
    return CachedPatchset{.remote = row.text(0),
                          .name = row.text(1),
                          .patch_id = row.text(2),
                          .level = static_cast<std::uint32_t>(row.integer(3)),
                          .build_id = row.text(4),
                          .sha256 = row.text(5),
                          .cves = row.text(6),
                          .usable = row.integer(7) != 0};
}

StateDatabase::HistoryTotal read_history_total(const Statement& row) {
    return StateDatabase::HistoryTotal{history_action_named(row.text(0)),
                                       history_outcome_named(row.text(1)), row.integer(2),
                                       row.integer(3)};
}

Quarantine read_quarantine(const Statement& row) {
    return Quarantine{
        .patch_id = row.text(0),
        .level = static_cast<std::uint32_t>(row.integer(1)),
        .at = row.integer(2),
        .reason = row.text(3),
        .message = row.text(4),
        .process = {static_cast<int>(row.integer(5)), static_cast<std::uint64_t>(row.integer(6))},
        .comm = row.text(7),
        .signal = static_cast<int>(row.integer(8))};
}

std::pair<std::string, std::string> read_text_pair(const Statement& row) {
    return {row.text(0), row.text(1)};
}

std::string read_text(const Statement& row) {
    return row.text(0);
}

std::int64_t read_integer(const Statement& row) {
    return row.integer(0);
}

// Creates `path` with mode 0600 if it does not exist, and narrows the mode
// of an existing file to 0600, so the file is never, even briefly, readable
// by others (the history names processes and executables).
Result<void> create_private_file(const std::string& path) {
    UniqueFD fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
    if (!fd.is_valid()) {
        return fail_errno(path, errno);
    }
    struct stat info {};
    if (::fstat(fd.get(), &info) != 0) {
        return fail_errno(path + ": stat", errno);
    }
    if ((info.st_mode & 077) != 0 && ::fchmod(fd.get(), 0600) != 0) {
        return fail_errno(path + ": chmod 600", errno);
    }
    return {};
}

// The user_version of the database at `path`, through a connection opened
// with `flags`; *readonly_refusal says whether SQLite refused because the
// connection may not write (SQLITE_READONLY and its extended codes).
Result<std::vector<std::int64_t>> read_user_version(const std::string& path, int flags,
                                                    bool* readonly_refusal) {
    sqlite3* raw = nullptr;
    int opened = sqlite3_open_v2(path.c_str(), &raw, flags, nullptr);
    std::unique_ptr<sqlite3, int (*)(sqlite3*)> probe(raw, sqlite3_close_v2);
    if (opened != SQLITE_OK) {
        return fail(ErrorCode::io, path + ": " + (raw ? sqlite3_errmsg(raw) : "cannot open"));
    }
    sqlite3_busy_timeout(raw, busy_timeout_ms);
    auto version = read_rows(raw, "user_version", "PRAGMA user_version", read_integer);
    *readonly_refusal = !version && (sqlite3_extended_errcode(raw) & 0xff) == SQLITE_READONLY;
    return version;
}

// Step 2 of open: the schema version, read through a read-only connection,
// so that a database a newer suture wrote is never touched (no switch of its
// journal mode) before suture knows it can read it. A read-only connection
// cannot do SQLite's own crash repair (rebuilding the WAL index, rolling
// back a hot journal, left by a writer killed mid-write): SQLite refuses it
// with SQLITE_READONLY_RECOVERY and the like ("attempt to write a readonly
// database", seen once after a SIGKILL in inject-data-fault-injection). The
// repair changes no content and any version of SQLite does the same, so the
// version is then read through a read-write connection that makes it.
Result<int> probe_schema_version(const std::string& path) {
    bool readonly_refusal = false;
    auto version = read_user_version(path, SQLITE_OPEN_READONLY, &readonly_refusal);
    if (!version && readonly_refusal) {
        version = read_user_version(path, SQLITE_OPEN_READWRITE, &readonly_refusal);
    }
    if (!version) {
        return tl::unexpected(version.error());
    }
    if (version->size() != 1) {
        return fail(ErrorCode::io, path + ": user_version: no value");
    }
    return static_cast<int>(version->front());
}

Error newer_schema(const std::string& path, int version) {
    return Error{ErrorCode::unsupported,
                 path + ": schema version " + std::to_string(version) +
                     " is newer than this suture (" +
                     std::to_string(StateDatabase::latest_schema_version) +
                     "); refusing to touch it (a newer suture wrote it: use that one)",
                 0};
}

// Step 4 of open: WAL mode. Switching a new database to WAL needs a lock the
// busy timeout does not wait for (SQLite answers SQLITE_BUSY at once when
// another connection is switching it at the same moment, as suture-boot and
// sutured do at first boot), so the switch is tried again for a bounded
// time; its answer is checked, since SQLite reports a refused switch as the
// old mode, not as an error.
Result<void> switch_to_wal(sqlite3* db, const std::string& path) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(busy_timeout_ms);
    for (;;) {
        auto mode = read_rows(db, "journal_mode", "PRAGMA journal_mode=WAL", read_text);
        if (mode) {
            if (mode->size() == 1 && mode->front() == "wal") {
                return {};
            }
            return fail(ErrorCode::io, path + ": journal mode stays " +
                                           (mode->empty() ? std::string("unknown") : mode->front()) +
                                           " (WAL refused)");
        }
        int code = sqlite3_errcode(db) & 0xff;
        bool busy = code == SQLITE_BUSY || code == SQLITE_LOCKED;
        if (!busy || std::chrono::steady_clock::now() >= deadline) {
            return tl::unexpected(mode.error());
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
}

// Step 6 of open: a damaged file is found now, named with its recovery
// path, rather than by the first write of an update that has already
// patched processes. quick_check reads every page once, without the index
// cross-checks of integrity_check: milliseconds for suture's database.
Result<void> check_not_damaged(sqlite3* db, const std::string& path) {
    auto verdict = read_rows(db, "quick_check", "PRAGMA quick_check", read_text);
    if (!verdict) {
        return tl::unexpected(verdict.error());
    }
    if (verdict->size() == 1 && verdict->front() == "ok") {
        return {};
    }
    return fail(ErrorCode::corrupt,
                corruption_message(path, "quick_check: " + (verdict->empty()
                                                                ? std::string("no answer")
                                                                : verdict->front())));
}

}  // namespace

Result<StateDatabase> StateDatabase::open(const std::string& path) {
    // 1. The file, private.
    if (auto created = create_private_file(path); !created) {
        return tl::unexpected(created.error());
    }
    // 2. Its version, read-only: a newer schema is refused untouched.
    auto version = probe_schema_version(path);
    if (!version) {
        return tl::unexpected(version.error());
    }
    if (*version > latest_schema_version) {
        return tl::unexpected(newer_schema(path, *version));
    }
    // 3. The connection, its busy timeout set before any statement.
    sqlite3* raw = nullptr;
    int opened =
        sqlite3_open_v2(path.c_str(), &raw, SQLITE_OPEN_READWRITE | SQLITE_OPEN_FULLMUTEX, nullptr);
    StateDatabase database(raw, path);
    if (opened != SQLITE_OK) {
        return fail(ErrorCode::io, path + ": " + (raw ? sqlite3_errmsg(raw) : "cannot open"));
    }
    sqlite3_busy_timeout(raw, busy_timeout_ms);
    // 4. WAL, 5. the connection's settings.
    if (auto wal = switch_to_wal(raw, path); !wal) {
        return tl::unexpected(wal.error());
    }
    for (const char* pragma : {"PRAGMA synchronous=FULL", "PRAGMA foreign_keys=ON"}) {
        if (auto done = database.execute(pragma); !done) {
            return tl::unexpected(done.error());
        }
    }
    // 6. Not damaged, 7. at the latest schema.
    if (auto intact = check_not_damaged(raw, path); !intact) {
        return tl::unexpected(intact.error());
    }
    if (auto migrated = database.migrate(); !migrated) {
        return tl::unexpected(migrated.error());
    }
    return database;
}

StateDatabase& StateDatabase::operator=(StateDatabase&& other) noexcept {
    if (this != &other) {
        // Member by member would close the connection before rolling back
        // the batch open on it.
        batch_.reset();
        db_ = std::move(other.db_);
        path_ = std::move(other.path_);
        caller_uid_ = other.caller_uid_;
        batch_ = std::move(other.batch_);
    }
    return *this;
}

Result<void> StateDatabase::execute(const std::string& sql) {
    char* message = nullptr;
    if (sqlite3_exec(db_.get(), sql.c_str(), nullptr, nullptr, &message) != SQLITE_OK) {
        sqlite3_free(message);
        return tl::unexpected(database_error(db_.get(), path_));
    }
    return {};
}

Result<int> StateDatabase::schema_version() {
    auto version = read_rows(db_.get(), "user_version", "PRAGMA user_version", read_integer);
    if (!version) {
        return tl::unexpected(version.error());
    }
    if (version->size() != 1) {
        return fail(ErrorCode::io, "state database: user_version: no value");
    }
    return static_cast<int>(version->front());
}

Result<void> StateDatabase::migrate() {
    auto version = schema_version();
    if (!version) {
        return tl::unexpected(version.error());
    }
    if (*version == latest_schema_version) {
        return {};
    }
    // Every step in one exclusive transaction that reads the version again
    // inside it: two first runs at once (suture-boot and sutured at first
    // boot) both see version 0 outside; the second to get the lock finds
    // the first one's work done. A kill mid-migration leaves the old version.
    auto transaction = Transaction::begin(db_.get(), Transaction::Lock::immediate, path_);
    if (!transaction) {
        return tl::unexpected(transaction.error());
    }
    version = schema_version();
    if (!version) {
        return tl::unexpected(version.error());
    }
    if (*version > latest_schema_version) {
        return tl::unexpected(newer_schema(path_, *version));
    }
    for (int next = *version + 1; next <= latest_schema_version; ++next) {
        if (auto done = migrate_to(next); !done) {
            return fail(done.error().code, path_ + ": migrating to schema version " +
                                               std::to_string(next) + ": " + done.error().message);
        }
    }
    return transaction->commit();
}

Result<void> StateDatabase::migrate_to(int version) {
    if (auto done = execute(migration_steps[version - 1]); !done) {
        return done;
    }
    return execute("PRAGMA user_version=" + std::to_string(version));
}

Result<std::int64_t> StateDatabase::record_application(const Application& application) {
    auto recorded = run_statement(
        db_.get(), "record application",
        "INSERT INTO applications (pid, start_time, executable, build_id, "
        "patch_id, level, applied_at, state, unit) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        application.process.pid, static_cast<std::int64_t>(application.process.start_time),
        application.executable, application.build_id, application.patch_id, application.level,
        application.applied_at != 0 ? application.applied_at : ::time(nullptr),
        std::string(name_of(application.state)), application.unit);
    if (!recorded) {
        return tl::unexpected(recorded.error());
    }
    return sqlite3_last_insert_rowid(db_.get());
}

Result<void> StateDatabase::record_callback(const CallbackRecord& record) {
    return run_statement(db_.get(), "record callback",
                         "INSERT INTO callbacks (at, pid, start_time, patch_id, level, callback, "
                         "outcome, code, duration_ns, message) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                         record.at != 0 ? record.at : static_cast<std::int64_t>(::time(nullptr)),
                         record.process.pid, static_cast<std::int64_t>(record.process.start_time),
                         record.patch_id, record.level, record.callback, record.outcome,
                         record.code, record.duration_ns, record.message);
}

Result<std::vector<CallbackRecord>> StateDatabase::callback_records() {
    return read_rows(db_.get(), "callbacks",
                     "SELECT at, pid, start_time, patch_id, level, callback, outcome, code, "
                     "duration_ns, message FROM callbacks ORDER BY id",
                     read_callback_record);
}

Result<std::vector<Application>> StateDatabase::applications(ApplicationState state) {
    return read_rows(db_.get(), "applications",
                     "SELECT id, pid, start_time, executable, build_id, patch_id, level, "
                     "applied_at, state, unit FROM applications WHERE state = ? ORDER BY id",
                     read_application, std::string(name_of(state)));
}

Result<void> StateDatabase::set_application_state(std::int64_t id, ApplicationState state) {
    return run_statement(db_.get(), "update application",
                         "UPDATE applications SET state = ? WHERE id = ?",
                         std::string(name_of(state)), id);
}

Result<bool> StateDatabase::has_active_application(const ProcessIdentity& process,
                                                   const std::string& patch_id,
                                                   std::uint32_t level) {
    auto rows = read_rows(db_.get(), "applications",
                          "SELECT id FROM applications WHERE pid = ? AND start_time = ? AND "
                          "patch_id = ? AND level = ? AND state = 'active' LIMIT 1",
                          read_integer, process.pid, static_cast<std::int64_t>(process.start_time),
                          patch_id, level);
    if (!rows) {
        return tl::unexpected(rows.error());
    }
    return !rows->empty();
}

Result<std::size_t> StateDatabase::mark_reverted(const ProcessIdentity& process,
                                                 const std::string& patch_id) {
    auto changed = run_statement(db_.get(), "revert application",
                                 "UPDATE applications SET state = 'reverted' WHERE pid = ? AND "
                                 "start_time = ? AND patch_id = ? AND state = 'active'",
                                 process.pid, static_cast<std::int64_t>(process.start_time),
                                 patch_id);
    if (!changed) {
        return tl::unexpected(changed.error());
    }
    return static_cast<std::size_t>(sqlite3_changes(db_.get()));
}

Result<void> StateDatabase::record_quarantine(const Quarantine& quarantine) {
    return run_statement(
        db_.get(), "record quarantine",
        "INSERT OR REPLACE INTO quarantine (patch_id, level, at, reason, message, pid, start_time, "
        "comm, signal) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        quarantine.patch_id, quarantine.level,
        quarantine.at != 0 ? quarantine.at : static_cast<std::int64_t>(::time(nullptr)),
        quarantine.reason, quarantine.message, quarantine.process.pid,
        static_cast<std::int64_t>(quarantine.process.start_time), quarantine.comm,
        quarantine.signal);
}

Result<std::vector<Quarantine>> StateDatabase::quarantined() {
    return read_rows(db_.get(), "quarantine",
                     "SELECT patch_id, level, at, reason, message, pid, start_time, comm, signal "
                     "FROM quarantine ORDER BY at, patch_id",
                     read_quarantine);
}

Result<bool> StateDatabase::release_quarantine(const std::string& patch_id) {
    auto removed = run_statement(db_.get(), "release quarantine",
                                 "DELETE FROM quarantine WHERE patch_id = ?", patch_id);
    if (!removed) {
        return tl::unexpected(removed.error());
    }
    return sqlite3_changes(db_.get()) > 0;
}

bool StateDatabase::in_batch() const {
    return batch_.has_value() && sqlite3_get_autocommit(db_.get()) == 0;
}

StateDatabase::Salvage StateDatabase::salvage(const std::string& path) {
    Salvage salvaged;
    sqlite3* raw = nullptr;
    int opened = sqlite3_open_v2(path.c_str(), &raw, SQLITE_OPEN_READONLY, nullptr);
    std::unique_ptr<sqlite3, int (*)(sqlite3*)> damaged(raw, sqlite3_close_v2);
    if (opened != SQLITE_OK) {
        return salvaged;
    }
    if (auto rows = read_rows(raw, "settings", "SELECT key, value FROM settings ORDER BY key",
                              read_text_pair)) {
        salvaged.settings = std::move(*rows);
    }
    if (auto rows = read_rows(raw, "exclusions",
                              "SELECT kind, value FROM exclusions ORDER BY kind, value",
                              read_text_pair)) {
        salvaged.exclusions = std::move(*rows);
    }
    return salvaged;
}

Result<void> StateDatabase::begin_batch() {
    auto transaction = Transaction::begin(db_.get(), Transaction::Lock::deferred, path_);
    if (!transaction) {
        return tl::unexpected(transaction.error());
    }
    batch_ = std::move(*transaction);
    return {};
}

Result<void> StateDatabase::commit_batch() {
    if (!batch_) {
        return fail(ErrorCode::invalid_argument, path_ + ": commit: no batch begun");
    }
    // A batch that fails to commit is rolled back now, so the writes after
    // it go to disk on their own rather than into a transaction no one
    // will commit.
    auto committed = batch_->commit();
    batch_.reset();
    return committed;
}

Result<void> StateDatabase::log(const HistoryEntry& entry) {
    return run_statement(db_.get(), "history",
                         "INSERT INTO history (at, action, pid, start_time, patch_id, level, "
                         "outcome, reason, message, caller_uid, targets_version, signing_keys) "
                         "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                         entry.at != 0 ? entry.at : ::time(nullptr),
                         std::string(name_of(entry.action)),
                         entry.process.pid, static_cast<std::int64_t>(entry.process.start_time),
                         entry.patch_id, entry.level, std::string(name_of(entry.outcome)),
                         entry.reason, entry.message,
                         static_cast<std::int64_t>(entry.caller_uid.value_or(caller_uid_)),
                         entry.targets_version ? std::optional<std::int64_t>(
                                                     static_cast<std::int64_t>(*entry.targets_version))
                                               : std::nullopt,
                         joined_key_ids(entry.signing_keys));
}

Result<std::vector<HistoryEntry>> StateDatabase::history(std::size_t limit) {
    return read_rows(db_.get(), "history",
                     "SELECT id, at, action, pid, start_time, patch_id, level, outcome, reason, "
                     "message, caller_uid, targets_version, signing_keys FROM history "
                     "ORDER BY id DESC LIMIT ?",
                     read_history_entry, static_cast<std::int64_t>(limit));
}

Result<std::vector<StateDatabase::HistoryTotal>> StateDatabase::history_totals() {
    return read_rows(db_.get(), "history",
                     "SELECT action, outcome, COUNT(*), MAX(at) FROM history "
                     "GROUP BY action, outcome",
                     read_history_total);
}

Result<std::size_t> StateDatabase::close_applications_of_earlier_boot(const std::string& boot_id) {
    // 1. The write lock first: the comparison and the closing are one step.
    auto transaction = Transaction::begin(db_.get(), Transaction::Lock::immediate, path_);
    if (!transaction) {
        return tl::unexpected(transaction.error());
    }
    auto recorded = setting("boot_id");
    if (!recorded) {
        return tl::unexpected(recorded.error());
    }
    if (*recorded && **recorded == boot_id) {
        return std::size_t{0};  // this boot's records
    }
    // 2. The active records of the earlier boot, closed one by one (each
    //    with its history entry).
    std::size_t closed = 0;
    if (*recorded) {
        auto active = applications(ApplicationState::active);
        if (!active) {
            return tl::unexpected(active.error());
        }
        for (const Application& application : *active) {
            if (auto set = set_application_state(application.id, ApplicationState::exited); !set) {
                return tl::unexpected(set.error());
            }
            if (auto logged = log({.action = HistoryAction::close,
                                   .process = application.process,
                                   .patch_id = application.patch_id,
                                   .level = application.level,
                                   .outcome = HistoryOutcome::ok,
                                   .message = "the system rebooted (boot id " + **recorded +
                                              " ended)"});
                !logged) {
                return tl::unexpected(logged.error());
            }
            ++closed;
        }
    }
    // 3. This boot, from now on.
    if (auto set = set_setting("boot_id", boot_id); !set) {
        return tl::unexpected(set.error());
    }
    if (auto committed = transaction->commit(); !committed) {
        return tl::unexpected(committed.error());
    }
    return closed;
}

Result<std::optional<std::string>> StateDatabase::setting(const std::string& key) {
    auto values = read_rows(db_.get(), "settings", "SELECT value FROM settings WHERE key = ?",
                            read_text, key);
    if (!values) {
        return tl::unexpected(values.error());
    }
    if (values->empty()) {
        return std::optional<std::string>{};
    }
    return std::optional<std::string>(values->front());
}

Result<void> StateDatabase::set_setting(const std::string& key, const std::string& value) {
    return run_statement(db_.get(), "settings",
                         "INSERT INTO settings (key, value) VALUES (?, ?) "
                         "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                         key, value);
}

Result<void> StateDatabase::add_exclusion(const std::string& kind, const std::string& value) {
    auto statement = Statement::prepare(
        db_.get(),
        "INSERT INTO exclusions (kind, value) VALUES (?, ?) ON CONFLICT (kind, value) DO NOTHING",
        "exclusions");
    if (!statement) {
        return tl::unexpected(statement.error());
    }
    if (auto added = statement->bind(kind, value).run(); !added) {
        // The schema's CHECK refuses a kind it does not know: the caller's
        // mistake, not the database's.
        return fail(ErrorCode::invalid_argument,
                    "exclusion " + kind + " " + value + ": " + sqlite3_errmsg(db_.get()));
    }
    return {};
}

Result<void> StateDatabase::remove_exclusion(const std::string& kind, const std::string& value) {
    return run_statement(db_.get(), "exclusions",
                         "DELETE FROM exclusions WHERE kind = ? AND value = ?", kind, value);
}

Result<void> StateDatabase::record_patchsets(const std::vector<CachedPatchset>& patchsets) {
    auto transaction = Transaction::begin(db_.get(), Transaction::Lock::immediate, path_);
    if (!transaction) {
        return tl::unexpected(transaction.error());
    }
    if (auto cleared = run_statement(db_.get(), "patchsets", "DELETE FROM patchsets"); !cleared) {
        return cleared;
    }
    for (const CachedPatchset& patchset : patchsets) {
        auto recorded = run_statement(
            db_.get(), "patchsets",
            "INSERT OR REPLACE INTO patchsets (remote, name, patch_id, level, build_id, sha256, "
            "cves, usable, verified_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            patchset.remote, patchset.name, patchset.patch_id, patchset.level, patchset.build_id,
            patchset.sha256, patchset.cves, patchset.usable ? 1 : 0,
            static_cast<std::int64_t>(::time(nullptr)));
        if (!recorded) {
            return recorded;
        }
    }
    return transaction->commit();
}

Result<std::vector<CachedPatchset>> StateDatabase::patchsets() {
    return read_rows(db_.get(), "patchsets",
                     "SELECT remote, name, patch_id, level, build_id, sha256, cves, usable "
                     "FROM patchsets ORDER BY remote, name",
                     read_patchset);
}

Result<std::vector<std::pair<std::string, std::string>>> StateDatabase::exclusions() {
    return read_rows(db_.get(), "exclusions",
                     "SELECT kind, value FROM exclusions ORDER BY kind, value", read_text_pair);
}

std::string_view name_of(ApplicationState state) {
    return name_in(application_state_names, state);
}
std::string_view name_of(HistoryAction action) {
    return name_in(history_action_names, action);
}
std::string_view name_of(HistoryOutcome outcome) {
    return name_in(history_outcome_names, outcome);
}
std::optional<ApplicationState> application_state_named(std::string_view name) {
    return value_in(application_state_names, name);
}
HistoryAction history_action_named(std::string_view name) {
    return value_in(history_action_names, name).value_or(HistoryAction::unknown);
}
HistoryOutcome history_outcome_named(std::string_view name) {
    return value_in(history_outcome_names, name).value_or(HistoryOutcome::unknown);
}

}  // namespace suture
