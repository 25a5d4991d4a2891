#pragma once

#include <iosfwd>

#include "engine/Engine.h"

namespace suture {

// Writes the human-readable `suture status` report: one block per library
// build (soname + build ID), with the processes that map it, then the suture
// patches found in processes, then a summary.
// `list_unreadable` lists every unreadable process instead of a count.
void print_status_table(std::ostream& out, const StatusReport& status, bool list_unreadable);

}  // namespace suture
