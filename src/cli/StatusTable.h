#pragma once

#include <iosfwd>

#include "scan/Scanner.h"

namespace suture {

// Writes the human-readable `suture status` report: one block per library
// build (soname + build ID), with the processes that map it, then a summary.
// `list_unreadable` lists every unreadable process instead of a count.
void print_status_table(std::ostream& out, const ScanReport& report, bool list_unreadable);

}  // namespace suture
