#include "state/StateDatabase.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ctime>

namespace suture {

namespace {

// The schema, one step per version; a database at version N runs steps
// N+1... in one transaction each. Never edit a released step: add one.
//   1 (2026-11): applications, history, settings
//   2 (2026-11): exclusions; history.level
//   3 (2026-11): patchsets (the verified patchsets of the feed cache)
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
};
static_assert(std::size(migration_steps) == StateDatabase::latest_schema_version);

// A prepared statement, finalized when it goes out of scope.
class Statement {
  public:
    Statement(sqlite3* db, const char* sql) : db_(db) {
        if (sqlite3_prepare_v2(db, sql, -1, &statement_, nullptr) != SQLITE_OK) {
            statement_ = nullptr;
        }
    }
    Statement(const Statement&) = delete;
    Statement& operator=(const Statement&) = delete;
    ~Statement() { sqlite3_finalize(statement_); }

    bool prepared() const { return statement_ != nullptr; }
    void bind(int index, std::int64_t value) { sqlite3_bind_int64(statement_, index, value); }
    void bind(int index, const std::string& value) {
        sqlite3_bind_text(statement_, index, value.c_str(), static_cast<int>(value.size()),
                          SQLITE_TRANSIENT);
    }
    // SQLITE_ROW, SQLITE_DONE or an error code.
    int step() { return sqlite3_step(statement_); }
    std::int64_t integer(int column) { return sqlite3_column_int64(statement_, column); }
    std::string text(int column) {
        const unsigned char* value = sqlite3_column_text(statement_, column);
        return value != nullptr ? reinterpret_cast<const char*>(value) : "";
    }
    std::string error() const { return sqlite3_errmsg(db_); }

  private:
    sqlite3* db_;
    sqlite3_stmt* statement_ = nullptr;
};

Error sqlite_error(const std::string& what, sqlite3* db) {
    return Error{ErrorCode::io, "state database: " + what + ": " + sqlite3_errmsg(db), 0};
}

}  // namespace

Result<StateDatabase> StateDatabase::open(const std::string& path) {
    // Create the file ourselves so it is never, even briefly, readable by
    // others (the history names processes and executables).
    int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        return fail_errno(path, errno);
    }
    struct stat info {};
    ::fstat(fd, &info);
    ::close(fd);
    if ((info.st_mode & 077) != 0 && ::chmod(path.c_str(), 0600) != 0) {
        return fail_errno(path + ": chmod 600", errno);
    }
    sqlite3* raw = nullptr;
    int opened =
        sqlite3_open_v2(path.c_str(), &raw, SQLITE_OPEN_READWRITE | SQLITE_OPEN_FULLMUTEX, nullptr);
    StateDatabase database(raw, path);
    if (opened != SQLITE_OK) {
        return fail(ErrorCode::io, path + ": " + (raw ? sqlite3_errmsg(raw) : "cannot open"));
    }
    sqlite3_busy_timeout(raw, 5000);
    for (const char* pragma :
         {"PRAGMA journal_mode=WAL", "PRAGMA synchronous=FULL", "PRAGMA foreign_keys=ON"}) {
        if (auto done = database.execute(pragma); !done) {
            return tl::unexpected(done.error());
        }
    }
    if (auto migrated = database.migrate(); !migrated) {
        return tl::unexpected(migrated.error());
    }
    return database;
}

Result<void> StateDatabase::execute(const std::string& sql) {
    char* message = nullptr;
    if (sqlite3_exec(db_.get(), sql.c_str(), nullptr, nullptr, &message) != SQLITE_OK) {
        std::string text = message != nullptr ? message : "error";
        sqlite3_free(message);
        return fail(ErrorCode::io, path_ + ": " + text);
    }
    return {};
}

Result<int> StateDatabase::schema_version() {
    Statement statement(db_.get(), "PRAGMA user_version");
    if (!statement.prepared() || statement.step() != SQLITE_ROW) {
        return tl::unexpected(sqlite_error("user_version", db_.get()));
    }
    return static_cast<int>(statement.integer(0));
}

Result<void> StateDatabase::migrate() {
    auto version = schema_version();
    if (!version) {
        return tl::unexpected(version.error());
    }
    if (*version > latest_schema_version) {
        return fail(ErrorCode::unsupported, path_ + ": schema version " + std::to_string(*version) +
                                                " is newer than this suture (" +
                                                std::to_string(latest_schema_version) +
                                                "); refusing to touch it");
    }
    for (int next = *version + 1; next <= latest_schema_version; ++next) {
        // One transaction per step: a kill mid-migration leaves the last
        // complete version.
        std::string step = std::string("BEGIN IMMEDIATE;") + migration_steps[next - 1] +
                           ";PRAGMA user_version=" + std::to_string(next) + ";COMMIT;";
        if (auto done = execute(step); !done) {
            (void)execute("ROLLBACK");
            return fail(ErrorCode::io, path_ + ": migrating to schema version " +
                                           std::to_string(next) + ": " + done.error().message);
        }
    }
    return {};
}

Result<std::int64_t> StateDatabase::record_application(const Application& application) {
    Statement statement(db_.get(),
                        "INSERT INTO applications (pid, start_time, executable, build_id, "
                        "patch_id, level, applied_at, state) VALUES (?, ?, ?, ?, ?, ?, ?, ?)");
    if (!statement.prepared()) {
        return tl::unexpected(sqlite_error("record application", db_.get()));
    }
    statement.bind(1, application.process.pid);
    statement.bind(2, static_cast<std::int64_t>(application.process.start_time));
    statement.bind(3, application.executable);
    statement.bind(4, application.build_id);
    statement.bind(5, application.patch_id);
    statement.bind(6, application.level);
    statement.bind(7, application.applied_at != 0 ? application.applied_at : ::time(nullptr));
    statement.bind(8, application.state.empty() ? std::string("active") : application.state);
    if (statement.step() != SQLITE_DONE) {
        return tl::unexpected(sqlite_error("record application", db_.get()));
    }
    return sqlite3_last_insert_rowid(db_.get());
}

Result<std::vector<Application>> StateDatabase::applications(const std::string& state) {
    Statement statement(db_.get(),
                        "SELECT id, pid, start_time, executable, build_id, patch_id, level, "
                        "applied_at, state FROM applications WHERE state = ? ORDER BY id");
    if (!statement.prepared()) {
        return tl::unexpected(sqlite_error("applications", db_.get()));
    }
    statement.bind(1, state);
    std::vector<Application> rows;
    while (statement.step() == SQLITE_ROW) {
        rows.push_back(Application{statement.integer(0),
                                   {static_cast<int>(statement.integer(1)),
                                    static_cast<std::uint64_t>(statement.integer(2))},
                                   statement.text(3),
                                   statement.text(4),
                                   statement.text(5),
                                   static_cast<std::uint32_t>(statement.integer(6)),
                                   statement.integer(7),
                                   statement.text(8)});
    }
    return rows;
}

Result<void> StateDatabase::set_application_state(std::int64_t id, const std::string& state) {
    Statement statement(db_.get(), "UPDATE applications SET state = ? WHERE id = ?");
    if (!statement.prepared()) {
        return tl::unexpected(sqlite_error("update application", db_.get()));
    }
    statement.bind(1, state);
    statement.bind(2, id);
    if (statement.step() != SQLITE_DONE) {
        return tl::unexpected(sqlite_error("update application", db_.get()));
    }
    return {};
}

Result<void> StateDatabase::begin_batch() {
    return execute("BEGIN");
}

Result<void> StateDatabase::commit_batch() {
    return execute("COMMIT");
}

Result<void> StateDatabase::log(const HistoryEntry& entry) {
    Statement statement(db_.get(),
                        "INSERT INTO history (at, action, pid, start_time, patch_id, level, "
                        "outcome, reason, message) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)");
    if (!statement.prepared()) {
        return tl::unexpected(sqlite_error("history", db_.get()));
    }
    statement.bind(1, entry.at != 0 ? entry.at : ::time(nullptr));
    statement.bind(2, entry.action);
    statement.bind(3, entry.process.pid);
    statement.bind(4, static_cast<std::int64_t>(entry.process.start_time));
    statement.bind(5, entry.patch_id);
    statement.bind(6, entry.level);
    statement.bind(7, entry.outcome);
    statement.bind(8, entry.reason);
    statement.bind(9, entry.message);
    if (statement.step() != SQLITE_DONE) {
        return tl::unexpected(sqlite_error("history", db_.get()));
    }
    return {};
}

Result<std::vector<HistoryEntry>> StateDatabase::history(std::size_t limit) {
    Statement statement(db_.get(),
                        "SELECT id, at, action, pid, start_time, patch_id, level, outcome, reason, "
                        "message FROM history ORDER BY id DESC LIMIT ?");
    if (!statement.prepared()) {
        return tl::unexpected(sqlite_error("history", db_.get()));
    }
    statement.bind(1, static_cast<std::int64_t>(limit));
    std::vector<HistoryEntry> rows;
    while (statement.step() == SQLITE_ROW) {
        rows.push_back(HistoryEntry{statement.integer(0),
                                    statement.integer(1),
                                    statement.text(2),
                                    {static_cast<int>(statement.integer(3)),
                                     static_cast<std::uint64_t>(statement.integer(4))},
                                    statement.text(5),
                                    static_cast<std::uint32_t>(statement.integer(6)),
                                    statement.text(7),
                                    statement.text(8),
                                    statement.text(9)});
    }
    return rows;
}

Result<std::optional<std::string>> StateDatabase::setting(const std::string& key) {
    Statement statement(db_.get(), "SELECT value FROM settings WHERE key = ?");
    if (!statement.prepared()) {
        return tl::unexpected(sqlite_error("settings", db_.get()));
    }
    statement.bind(1, key);
    if (statement.step() == SQLITE_ROW) {
        return std::optional<std::string>(statement.text(0));
    }
    return std::optional<std::string>{};
}

Result<void> StateDatabase::set_setting(const std::string& key, const std::string& value) {
    Statement statement(db_.get(),
                        "INSERT INTO settings (key, value) VALUES (?, ?) "
                        "ON CONFLICT (key) DO UPDATE SET value = excluded.value");
    if (!statement.prepared()) {
        return tl::unexpected(sqlite_error("settings", db_.get()));
    }
    statement.bind(1, key);
    statement.bind(2, value);
    if (statement.step() != SQLITE_DONE) {
        return tl::unexpected(sqlite_error("settings", db_.get()));
    }
    return {};
}

Result<void> StateDatabase::add_exclusion(const std::string& kind, const std::string& value) {
    Statement statement(
        db_.get(),
        "INSERT INTO exclusions (kind, value) VALUES (?, ?) ON CONFLICT (kind, value) DO NOTHING");
    if (!statement.prepared()) {
        return tl::unexpected(sqlite_error("exclusions", db_.get()));
    }
    statement.bind(1, kind);
    statement.bind(2, value);
    if (statement.step() != SQLITE_DONE) {
        return fail(ErrorCode::invalid_argument,
                    "exclusion " + kind + " " + value + ": " + statement.error());
    }
    return {};
}

Result<void> StateDatabase::remove_exclusion(const std::string& kind, const std::string& value) {
    Statement statement(db_.get(), "DELETE FROM exclusions WHERE kind = ? AND value = ?");
    if (!statement.prepared()) {
        return tl::unexpected(sqlite_error("exclusions", db_.get()));
    }
    statement.bind(1, kind);
    statement.bind(2, value);
    if (statement.step() != SQLITE_DONE) {
        return tl::unexpected(sqlite_error("exclusions", db_.get()));
    }
    return {};
}

Result<void> StateDatabase::record_patchsets(const std::vector<CachedPatchset>& patchsets) {
    if (auto begun = execute("BEGIN IMMEDIATE; DELETE FROM patchsets;"); !begun) {
        return begun;
    }
    for (const CachedPatchset& patchset : patchsets) {
        Statement statement(db_.get(),
                            "INSERT OR REPLACE INTO patchsets (remote, name, patch_id, level, "
                            "build_id, sha256, cves, usable, verified_at) "
                            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)");
        if (!statement.prepared()) {
            (void)execute("ROLLBACK");
            return tl::unexpected(sqlite_error("patchsets", db_.get()));
        }
        statement.bind(1, patchset.remote);
        statement.bind(2, patchset.name);
        statement.bind(3, patchset.patch_id);
        statement.bind(4, patchset.level);
        statement.bind(5, patchset.build_id);
        statement.bind(6, patchset.sha256);
        statement.bind(7, patchset.cves);
        statement.bind(8, patchset.usable ? 1 : 0);
        statement.bind(9, static_cast<std::int64_t>(::time(nullptr)));
        if (statement.step() != SQLITE_DONE) {
            (void)execute("ROLLBACK");
            return tl::unexpected(sqlite_error("patchsets", db_.get()));
        }
    }
    return execute("COMMIT");
}

Result<std::vector<CachedPatchset>> StateDatabase::patchsets() {
    Statement statement(db_.get(),
                        "SELECT remote, name, patch_id, level, build_id, sha256, cves, usable "
                        "FROM patchsets ORDER BY remote, name");
    if (!statement.prepared()) {
        return tl::unexpected(sqlite_error("patchsets", db_.get()));
    }
    std::vector<CachedPatchset> rows;
    while (statement.step() == SQLITE_ROW) {
        rows.push_back(CachedPatchset{statement.text(0), statement.text(1), statement.text(2),
                                      static_cast<std::uint32_t>(statement.integer(3)),
                                      statement.text(4), statement.text(5), statement.text(6),
                                      statement.integer(7) != 0});
    }
    return rows;
}

Result<std::vector<std::pair<std::string, std::string>>> StateDatabase::exclusions() {
    Statement statement(db_.get(), "SELECT kind, value FROM exclusions ORDER BY kind, value");
    if (!statement.prepared()) {
        return tl::unexpected(sqlite_error("exclusions", db_.get()));
    }
    std::vector<std::pair<std::string, std::string>> rows;
    while (statement.step() == SQLITE_ROW) {
        rows.emplace_back(statement.text(0), statement.text(1));
    }
    return rows;
}

}  // namespace suture
