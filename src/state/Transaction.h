#pragma once

#include <sqlite3.h>

#include <string>

#include "base/Error.h"

namespace suture {

// An SQLite transaction as a scope guard: begun by begin(), rolled back when
// it goes out of scope unless commit() succeeded. A failed commit() leaves it
// to the destructor to roll back whatever SQLite has not already rolled back
// itself (https://sqlite.org/lang_transaction.html: after SQLITE_FULL or
// SQLITE_IOERR it may have; after SQLITE_BUSY it has not).
class Transaction {
  public:
    // deferred: takes locks as statements need them ("BEGIN");
    // immediate: takes the write lock now ("BEGIN IMMEDIATE"), waiting the
    // connection's busy timeout for it.
    enum class Lock { deferred, immediate };

    // Begins a transaction on `db`, which must outlive it and have no
    // transaction open. `subject` starts its error messages (the file's path).
    static Result<Transaction> begin(sqlite3* db, Lock lock, std::string subject);

    Transaction(Transaction&& other) noexcept;
    Transaction& operator=(Transaction&& other) noexcept;
    Transaction(const Transaction&) = delete;
    Transaction& operator=(const Transaction&) = delete;
    ~Transaction() { roll_back(); }

    // Commits; on success the destructor has nothing left to do. On failure
    // the transaction is still this object's to roll back.
    [[nodiscard]] Result<void> commit();

  private:
    Transaction(sqlite3* db, std::string subject) : db_(db), subject_(std::move(subject)) {}
    void roll_back();

    sqlite3* db_;  // nullptr once committed or moved from
    std::string subject_;
};

}  // namespace suture
