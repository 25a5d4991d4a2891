#include "state/Statement.h"

#include <cstring>

namespace suture {

Result<Statement> Statement::prepare(sqlite3* db, const char* sql, std::string what) {
    sqlite3_stmt* raw = nullptr;
    Statement statement(db, nullptr, std::move(what));
    if (sqlite3_prepare_v2(db, sql, -1, &raw, nullptr) != SQLITE_OK) {
        return tl::unexpected(statement.error());
    }
    statement.statement_.reset(raw);
    return statement;
}

Result<void> Statement::run() {
    if (sqlite3_step(statement_.get()) != SQLITE_DONE) {
        return tl::unexpected(error());
    }
    return {};
}

Result<bool> Statement::next_row() {
    switch (sqlite3_step(statement_.get())) {
        case SQLITE_ROW:
            return true;
        case SQLITE_DONE:
            return false;
        default:
            return tl::unexpected(error());
    }
}

std::int64_t Statement::integer(int column) const {
    return sqlite3_column_int64(statement_.get(), column);
}

bool Statement::is_null(int column) const {
    return sqlite3_column_type(statement_.get(), column) == SQLITE_NULL;
}

std::string Statement::text(int column) const {
    const unsigned char* value = sqlite3_column_text(statement_.get(), column);
    return value != nullptr ? reinterpret_cast<const char*>(value) : "";
}

Error Statement::error() const {
    return database_error(db_, "state database: " + what_);
}

bool is_corruption(int sqlite_result) {
    int primary = sqlite_result & 0xff;
    return primary == SQLITE_CORRUPT || primary == SQLITE_NOTADB;
}

std::string corruption_message(const std::string& path, const std::string& detail) {
    return "state database " + path + " is damaged (" + detail +
           "); the patches in memory are unaffected: `suture state rebuild` rebuilds the "
           "database from them and keeps the damaged file aside (docs/state.md)";
}

Error database_error(sqlite3* db, const std::string& subject) {
    std::string detail = sqlite3_errmsg(db);
    // "disk I/O error" alone does not say that the disk is full.
    if (int system_errno = sqlite3_system_errno(db); system_errno != 0 &&
                                                      (sqlite3_errcode(db) & 0xff) == SQLITE_IOERR) {
        detail += std::string(" (") + std::strerror(system_errno) + ")";
    }
    if (is_corruption(sqlite3_extended_errcode(db))) {
        const char* file = sqlite3_db_filename(db, "main");
        return Error{ErrorCode::corrupt,
                     corruption_message(file != nullptr ? file : "", subject + ": " + detail), 0};
    }
    return Error{ErrorCode::io, subject + ": " + detail, 0};
}

void Statement::bind_one(int index, std::int64_t value) {
    sqlite3_bind_int64(statement_.get(), index, value);
}

void Statement::bind_one(int index, const std::optional<std::int64_t>& value) {
    if (value) {
        sqlite3_bind_int64(statement_.get(), index, *value);
    } else {
        sqlite3_bind_null(statement_.get(), index);
    }
}

void Statement::bind_one(int index, const std::string& value) {
    sqlite3_bind_text(statement_.get(), index, value.c_str(), static_cast<int>(value.size()),
                      SQLITE_TRANSIENT);
}

}  // namespace suture
