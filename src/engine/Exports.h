// The exports monitoring and vulnerability tools read, made from a status
// report: OpenMetrics / Prometheus text (`suture status --format
// openmetrics`, the node_exporter textfile sutured keeps) and OpenVEX
// (`suture status --format openvex`). docs/formats.md describes both.
#pragma once

#include <cstdint>
#include <ctime>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "state/StateDatabase.h"

namespace suture {

struct StatusReport;

// What the metrics say besides the scan: counters and timestamps from the
// state database's history (0: never).
struct MetricsFacts {
    std::int64_t patches_applied = 0;   // apply entries that succeeded
    std::int64_t patches_failed = 0;    // apply entries that failed
    std::int64_t patches_reverted = 0;  // revert entries that succeeded
    std::int64_t patches_quarantined = 0;  // quarantine entries (health watch)
    std::int64_t last_update = 0;       // Unix seconds of the latest update run
    std::int64_t last_feed_refresh_success = 0;
};
MetricsFacts metrics_facts_from(const std::vector<StateDatabase::HistoryTotal>& totals);

struct MetricsOptions {
    // true: OpenMetrics 1.0 text (counter families without _total, # EOF);
    // false: the Prometheus text format 0.0.4 node_exporter's textfile
    // collector reads.
    bool openmetrics = true;
    // Adds suture_process_open_cves{pid,comm}: one series per process, off
    // by default (high cardinality).
    bool per_process = false;
    const MetricsFacts* facts = nullptr;  // nullptr: counters left out (no database)
};

// The metrics of a status report (names per Prometheus' conventions:
// suture_ prefix, base units, _total counters, _timestamp_seconds).
std::string status_to_metrics(const StatusReport& status, const MetricsOptions& options);

// An OpenVEX document (https://github.com/openvex/spec, context v0.2.0) for
// this host: one statement per (product, CVE), the product being a
// package@version with the library's build ID, for the builds processes
// map now and the advisory data describes. `author` names the host's
// operator ("suture on HOSTNAME" by default); `now` is the timestamp.
nlohmann::json status_to_openvex(const StatusReport& status, const std::string& author,
                                 std::time_t now);

}  // namespace suture
