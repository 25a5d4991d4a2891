#include "state/Transaction.h"

#include <utility>

#include "state/Statement.h"

namespace suture {

namespace {

Result<void> execute(sqlite3* db, const char* sql, const std::string& subject) {
    if (sqlite3_exec(db, sql, nullptr, nullptr, nullptr) != SQLITE_OK) {
        return tl::unexpected(database_error(db, subject + ": " + sql));
    }
    return {};
}

}  // namespace

Result<Transaction> Transaction::begin(sqlite3* db, Lock lock, std::string subject) {
    const char* sql = lock == Lock::immediate ? "BEGIN IMMEDIATE" : "BEGIN";
    if (auto begun = execute(db, sql, subject); !begun) {
        return tl::unexpected(begun.error());
    }
    return Transaction(db, std::move(subject));
}

Transaction::Transaction(Transaction&& other) noexcept
    : db_(std::exchange(other.db_, nullptr)), subject_(std::move(other.subject_)) {}

Transaction& Transaction::operator=(Transaction&& other) noexcept {
    if (this != &other) {
        roll_back();
        db_ = std::exchange(other.db_, nullptr);
        subject_ = std::move(other.subject_);
    }
    return *this;
}

Result<void> Transaction::commit() {
    if (db_ == nullptr) {
        return fail(ErrorCode::invalid_argument, subject_ + ": COMMIT: no transaction");
    }
    if (auto committed = execute(db_, "COMMIT", subject_); !committed) {
        return committed;
    }
    db_ = nullptr;
    return {};
}

void Transaction::roll_back() {
    // Autocommit mode means no transaction is open any more: SQLite rolled
    // it back itself after an I/O error or a full disk.
    if (db_ != nullptr && sqlite3_get_autocommit(db_) == 0) {
        (void)sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
    }
    db_ = nullptr;
}

}  // namespace suture
