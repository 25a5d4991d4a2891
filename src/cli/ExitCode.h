#pragma once

namespace suture {

// suture's exit codes, shared by every subcommand. Documented in `suture
// --help` and docs/operator-guide.md; scripts rely on them, so never renumber.
enum ExitCode : int {
    exit_ok = 0,       // the command did everything it was asked
    exit_failure = 1,  // the command could not run (missing build index, /proc unreadable …)
    exit_usage = 2,    // bad command line
    exit_partial = 3,  // done, but some processes or files could not be read (listed in the output)
};

}  // namespace suture
