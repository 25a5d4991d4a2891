#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/Error.h"

namespace suture {

// One prepared SQLite statement, finalized when it goes out of scope.
//
// Every way of stepping it says how stepping ended: a statement that stops
// with anything but SQLITE_ROW or SQLITE_DONE (SQLITE_BUSY, SQLITE_IOERR,
// SQLITE_CORRUPT, …) is an error, never a short result
// (https://sqlite.org/c3ref/step.html). Errors read
// "state database: WHAT: <sqlite's message>".
// The connection's latest error as an Error about `subject`: `corrupt`
// when SQLite found the file damaged (SQLITE_CORRUPT, SQLITE_NOTADB; the
// message names the way back, `suture state rebuild`), else `io`.
Error database_error(sqlite3* db, const std::string& subject);
// Whether SQLite's result code says the file is damaged.
bool is_corruption(int sqlite_result);
// The message of a damaged database, with its recovery path.
std::string corruption_message(const std::string& path, const std::string& detail);

class Statement {
  public:
    // Prepares `sql` on `db`, which must outlive the statement. `what` names
    // the statement in its errors ("record application").
    static Result<Statement> prepare(sqlite3* db, const char* sql, std::string what);

    // Binds `values` to the parameters 1, 2, … in order: integers (int,
    // std::uint32_t, std::int64_t), std::optional<std::int64_t> (NULL when
    // unset) and std::string.
    template <typename... Values>
    Statement& bind(const Values&... values) {
        int index = 0;
        (bind_one(++index, values), ...);
        return *this;
    }

    // Steps a statement that returns no rows (INSERT, UPDATE, DELETE) to
    // SQLITE_DONE.
    Result<void> run();

    // Steps to the next row: true with a row to read, false when done.
    Result<bool> next_row();

    // Reads every remaining row with `read_row` (which reads the columns of
    // the current row), failing unless stepping ended with SQLITE_DONE.
    template <typename Row>
    Result<std::vector<Row>> rows(Row (*read_row)(const Statement&)) {
        std::vector<Row> rows;
        for (;;) {
            auto more = next_row();
            if (!more) {
                return tl::unexpected(more.error());
            }
            if (!*more) {
                return rows;
            }
            rows.push_back(read_row(*this));
        }
    }

    // The columns of the current row, counted from 0.
    std::int64_t integer(int column) const;
    std::string text(int column) const;  // "" for NULL
    bool is_null(int column) const;

    // The connection's latest error, about this statement.
    Error error() const;

  private:
    struct Finalize {
        void operator()(sqlite3_stmt* statement) const { sqlite3_finalize(statement); }
    };
    Statement(sqlite3* db, sqlite3_stmt* statement, std::string what)
        : db_(db), statement_(statement), what_(std::move(what)) {}
    void bind_one(int index, std::int64_t value);
    void bind_one(int index, const std::optional<std::int64_t>& value);
    void bind_one(int index, const std::string& value);

    sqlite3* db_;
    std::unique_ptr<sqlite3_stmt, Finalize> statement_;
    std::string what_;
};

}  // namespace suture
