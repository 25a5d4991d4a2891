#include "state/Statement.h"

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

std::string Statement::text(int column) const {
    const unsigned char* value = sqlite3_column_text(statement_.get(), column);
    return value != nullptr ? reinterpret_cast<const char*>(value) : "";
}

Error Statement::error() const {
    return Error{ErrorCode::io, "state database: " + what_ + ": " + sqlite3_errmsg(db_), 0};
}

void Statement::bind_one(int index, std::int64_t value) {
    sqlite3_bind_int64(statement_.get(), index, value);
}

void Statement::bind_one(int index, const std::string& value) {
    sqlite3_bind_text(statement_.get(), index, value.c_str(), static_cast<int>(value.size()),
                      SQLITE_TRANSIENT);
}

}  // namespace suture
