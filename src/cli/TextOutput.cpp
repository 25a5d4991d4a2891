#include "cli/TextOutput.h"

#include <ostream>

#include "base/Files.h"
#include "base/Log.h"

namespace suture {

// One line per patch callback: "pid 12: post_apply ran on thread 13 in 41 us".
void print_callback_outcomes(std::ostream& out, const std::string& head,
                             const std::vector<CallbackOutcome>& outcomes) {
    for (const CallbackOutcome& outcome : outcomes) {
        out << head << callback_kind_name(outcome.kind) << " "
            << callback_status_name(outcome.status);
        if (outcome.status == CallbackOutcome::Status::failed) {
            out << " with code " << outcome.code;
        }
        if (outcome.tid != 0) {
            out << " on thread " << outcome.tid << " in "
                << std::chrono::duration_cast<std::chrono::microseconds>(outcome.duration).count()
                << " us" << (outcome.over_deadline ? " (over its deadline)" : "");
        }
        if (!outcome.reason.empty() && outcome.status != CallbackOutcome::Status::refused_busy) {
            out << ": " << outcome.reason;
        }
        out << "\n";
    }
}

void print_inject_report(std::ostream& out, int pid, const InjectReport& report, InjectVerb verb) {
    std::string head = "pid " + std::to_string(pid) + ": ";
    if (report.patch_id.empty()) {
        out << head << "removed the empty region at " << hex_address(report.region_address)
            << " an interrupted apply left\n";
        return;
    }
    if (report.already_applied) {
        out << head << report.patch_id << " level " << report.level << " is already applied\n";
        return;
    }
    out << head << (verb == InjectVerb::applied ? "applied " : "reverted ") << report.patch_id
        << " level " << report.level;
    if (report.replaced_level) {
        bool other_id =
            !report.replaced_patch_id.empty() && report.replaced_patch_id != report.patch_id;
        out << " (replacing " << (other_id ? report.replaced_patch_id + " " : "") << "level "
            << *report.replaced_level << ")";
    }
    if (verb == InjectVerb::applied) {
        out << ", consistency " << consistency_name(report.consistency);
    }
    out << ": " << report.functions << " functions, " << report.threads << " threads stopped for "
        << std::chrono::duration_cast<std::chrono::microseconds>(report.stopped_for).count()
        << " us";
    if (verb == InjectVerb::applied) {
        out << " (try " << report.attempts;
        if (report.gated_threads > 0) {
            out << "; " << report.gated_threads << " threads caught at return gates in "
                << report.gate_rounds << (report.gate_rounds == 1 ? " round" : " rounds");
        }
        out << ")";
    }
    out << "\n";
    print_callback_outcomes(out, head, report.callbacks);
}

void print_failure(const InjectFailure& failure) {
    // The injector's message already names every blocking thread with its
    // frames (the structured list is for --json): printed once.
    log::error(failure.error.message);
}

void print_thread_stacks(std::ostream& out, const std::vector<ThreadStack>& stacks) {
    for (const ThreadStack& stack : stacks) {
        out << "thread " << stack.tid << ": " << stack.frames.size() << " frames, "
            << (stack.complete ? "complete" : "incomplete: " + stack.incomplete_reason) << "\n";
        for (std::size_t depth = 0; depth < stack.frames.size(); ++depth) {
            out << "  #" << depth << " " << hex_address(stack.frames[depth]) << "\n";
        }
    }
}

void print_refreshes(std::ostream& out, const std::vector<RemoteRefresh>& refreshes) {
    for (const RemoteRefresh& refresh : refreshes) {
        if (!refresh.result) {
            out << "remote " << refresh.remote << ": refused ("
                << error_code_name(refresh.result.error().code)
                << "): " << refresh.result.error().message << "\n"
                << "  the cache of " << refresh.remote << " is unchanged\n";
            continue;
        }
        const feed::RefreshReport& report = *refresh.result;
        out << "remote " << refresh.remote << ": " << (report.changed ? "updated" : "up to date")
            << " (root v" << report.root_version << ", timestamp v" << report.timestamp_version
            << ", snapshot v" << report.snapshot_version << ", targets v"
            << report.targets_version << "): " << report.targets << " patch file(s), "
            << report.downloaded << " downloaded, " << report.reused << " from the cache\n";
    }
}

void print_cached_targets(std::ostream& out, const std::vector<feed::CachedTarget>& targets) {
    if (targets.empty()) {
        out << "No patchsets cached; run `suture feed refresh`.\n";
        return;
    }
    for (const feed::CachedTarget& cached : targets) {
        if (cached.refused) {
            out << "refused (" << error_code_name(cached.refused->code)
                << "): " << cached.refused->message << "\n"
                << "  from     remote " << cached.remote << "\n";
            continue;
        }
        const feed::PatchsetInfo& info = cached.target.info;
        std::string cves;
        for (const std::string& cve : info.cves) {
            cves += (cves.empty() ? "" : ",") + cve;
        }
        out << info.patch_id << " level " << info.level << "  " << (cves.empty() ? "-" : cves)
            << "\n"
            << "  for      " << info.distribution << " " << info.package << " " << info.version
            << ", " << info.soname << " build " << info.build_id << "\n"
            << "  from     remote " << cached.remote << ", channel " << info.channel
            << ", published " << format_utc_time(info.published) << "\n"
            << "  state    " << (cached.usable ? "usable" : "held back: " + cached.held_back_because)
            << "\n"
            << "  file     " << cached.path << "\n";
        if (!info.supersedes.empty()) {
            std::string ids;
            for (const std::string& id : info.supersedes) {
                ids += (ids.empty() ? "" : ",") + id;
            }
            out << "  carries  the fixes of " << ids << " (supersedes them)\n";
        }
    }
}

namespace {

// The dry run's and the automatic run's first line: the rules' view.
void print_policy_view(std::ostream& out, const UpdateReport& report) {
    if (!report.dry_run && !report.automatic) {
        return;
    }
    out << (report.dry_run ? "dry run (nothing changes)" : "automatic run") << " at "
        << format_utc_time(report.policy_time) << ": "
        << (report.automatic ? "policy applies" : "policy not applied (manual run)")
        << "; maintenance window: " << report.window << "; rollout bucket: ";
    if (report.rollout_bucket) {
        out << *report.rollout_bucket;
    } else {
        out << "none (no machine id)";
    }
    out << "\n";
}

}  // namespace

void print_update(std::ostream& out, const UpdateReport& report) {
    if (!report.enabled) {
        out << "suture is disabled (suture enable turns it on again); nothing done\n";
        return;
    }
    for (const RemoteRefresh& refresh : report.refreshes) {
        if (!refresh.result) {
            out << "feed " << refresh.remote << ": not refreshed ("
                << error_code_name(refresh.result.error().code)
                << "); using the cached patchsets\n";
        }
    }
    for (const std::string& problem : report.problems) {
        log::warning("skipped a cached patch file: " + problem);
    }
    print_policy_view(out, report);
    bool failures = false;
    std::size_t applied = 0;
    std::size_t held = 0;
    for (const UpdateAction& action : report.actions) {
        failures = failures || action.outcome == ActionOutcome::failed;
        applied += action.outcome == ActionOutcome::applied ||
                           action.outcome == ActionOutcome::would_apply
                       ? 1
                       : 0;
        held += action.outcome == ActionOutcome::held ? 1 : 0;
        out << "pid " << action.process.pid << " (" << action.comm << "): " << action.patch_id
            << " level " << action.level;
        if (!action.severity.empty()) {
            out << " [" << action.severity << "]";
        }
        out << ": " << outcome_name(action.outcome);
        if (!action.phase.empty()) {
            out << (action.phase == "canary" ? " (canary)" : " (after the canaries)");
        }
        if (!action.message.empty()) {
            out << " (" << (action.reason.empty() ? "" : action.reason + ": ") << action.message
                << ")";
        }
        out << "\n";
    }
    out << report.patchsets << " usable patchset(s); " << report.processes_matching << " of "
        << report.processes_examined << " processes run a build they fix; " << applied
        << (report.dry_run ? " patch(es) would be applied" : " patch(es) applied now");
    if (held > 0) {
        out << "; " << held << " held back";
    }
    if (report.closed > 0) {
        out << "; " << report.closed << " record(s) of exited processes closed";
    }
    if (report.released_regions > 0) {
        out << "; " << report.released_regions << " retired region(s) unmapped";
    }
    out << (failures ? "; some failed (exit 21)" : "") << "\n";
}

void print_host_revert(std::ostream& out, const HostRevertReport& report) {
    std::size_t reverted = 0;
    for (const UpdateAction& action : report.actions) {
        reverted += action.outcome == ActionOutcome::reverted ? 1 : 0;
        out << "pid " << action.process.pid << " (" << action.comm << "): " << action.patch_id
            << " level " << action.level << ": " << outcome_name(action.outcome);
        if (!action.message.empty()) {
            out << " (" << action.reason << ": " << action.message << ")";
        }
        out << "\n";
    }
    out << reverted << " patch(es) reverted from the host's processes"
        << (reverted == report.actions.size() ? "" : "; some failed (exit 21)") << "\n";
}

namespace {

std::string uid_text(const std::optional<std::uint32_t>& uid) {
    return uid ? "uid " + std::to_string(*uid) : "uid unknown";
}

// The feed metadata an application came from: "targets v3, signed by
// KEYID, KEYID", or "" when its apply entry does not say.
std::string feed_metadata_text(const AuditApplication& audit) {
    if (!audit.targets_version) {
        return "";
    }
    std::string text = "targets v" + std::to_string(*audit.targets_version) + ", signed by";
    for (std::size_t i = 0; i < audit.signing_keys.size(); ++i) {
        text += (i == 0 ? " `" : ", `") + audit.signing_keys[i] + "`";
    }
    return audit.signing_keys.empty() ? text + " no recorded key" : text;
}

// One application as a table row: where (and in which systemd unit), when,
// how and from which feed metadata, by whom, how it ended.
void print_audit_row(std::ostream& out, const AuditApplication& audit) {
    const Application& row = audit.application;
    out << "| " << row.process.pid << " | " << row.process.start_time << " | `" << row.executable
        << "` | " << (row.unit.empty() ? "" : "`" + row.unit + "`") << " | `"
        << row.build_id.substr(0, 12) << "` | " << format_utc_time(row.applied_at) << " | "
        << (audit.how.empty() ? "unrecorded" : audit.how + " " + audit.source) << " | "
        << feed_metadata_text(audit) << " | " << uid_text(audit.caller_uid)
        << (audit.automatic ? ", automatic" : ", by hand") << " | " << name_of(row.state)
        << " | ";
    if (audit.ended_at != 0) {
        out << format_utc_time(audit.ended_at) << " " << audit.ended_by << " ("
            << uid_text(audit.ended_by_uid) << "): " << audit.ended_message;
    }
    out << " |\n";
}

void print_audit_event(std::ostream& out, const HistoryEntry& entry) {
    out << "- " << format_utc_time(entry.at) << " " << name_of(entry.action) << " "
        << name_of(entry.outcome) << (entry.process.pid ? " pid " + std::to_string(entry.process.pid) : "")
        << (entry.reason.empty() ? "" : " (" + entry.reason + ")") << ": " << entry.message << " ["
        << uid_text(entry.caller_uid) << "]\n";
}

}  // namespace

void print_audit_markdown(std::ostream& out, const AuditReport& report) {
    out << "# suture audit report\n\n"
        << "Generated " << format_utc_time(report.generated_at) << " from the state database; "
        << "patches applied since " << format_utc_time(report.since) << ": "
        << report.patches.size() << ".\n";
    for (const AuditPatch& patch : report.patches) {
        out << "\n## " << patch.patch_id << " level " << patch.level << "\n\n";
        if (patch.feed) {
            out << "Feed: remote `" << patch.feed->remote << "`, target `" << patch.feed->name
                << "`, sha256 `" << patch.feed->sha256 << "`, CVEs " << patch.feed->cves << ".\n";
        } else {
            out << "Feed: not in the last update's view of the feed cache.\n";
        }
        if (patch.quarantine) {
            out << "**Quarantined** at " << format_utc_time(patch.quarantine->at) << ": "
                << patch.quarantine->message << ".\n";
        } else {
            out << "Not quarantined.\n";
        }
        out << "\n| pid | start time | executable | unit | build | applied (UTC) | how | "
               "feed metadata | by | state | ended |\n"
               "|---|---|---|---|---|---|---|---|---|---|---|\n";
        for (const AuditApplication& audit : patch.applications) {
            print_audit_row(out, audit);
        }
        out << "\nHealth watch, reverts and quarantine: " << patch.events.size()
            << " event(s).\n\n";
        for (const HistoryEntry& entry : patch.events) {
            print_audit_event(out, entry);
        }
    }
    out << "\n## Runs\n\n";
    for (const HistoryEntry& entry : report.runs) {
        print_audit_event(out, entry);
    }
}

void print_quarantine(std::ostream& out, const std::vector<Quarantine>& rows) {
    if (rows.empty()) {
        out << "nothing quarantined\n";
    }
    for (const Quarantine& row : rows) {
        out << row.patch_id << " level " << row.level << ": quarantined at "
            << format_utc_time(row.at) << " (" << row.reason << "): " << row.message << "\n";
    }
}

void print_crashes(std::ostream& out, const std::vector<CrashOutcome>& crashes) {
    if (crashes.empty()) {
        out << "health watch: no patched process crashed\n";
    }
    for (const CrashOutcome& crash : crashes) {
        for (const Quarantine& row : crash.quarantined) {
            out << "health watch: " << row.message << ": " << row.patch_id << " level "
                << row.level << " quarantined\n";
        }
        print_host_revert(out, crash.reverted);
    }
}

void print_crash_lock(std::ostream& out, const CrashLockStatus& status) {
    out << "crash lock " << status.path << ": apply at " << format_utc_time(status.lock.at)
        << " (boot " << status.lock.boot_id << ")";
    if (status.holding) {
        out << ": the host went down within watch_seconds of it; automatic runs hold back";
    } else {
        out << ": this boot, under watch; it covers";
    }
    for (const auto& [patch_id, level] : status.lock.patches) {
        out << " " << patch_id << " level " << level;
    }
    out << (status.holding ? " until suture crash-lock --release\n" : "\n");
}

void print_history(std::ostream& out, const std::vector<HistoryEntry>& entries) {
    for (auto entry = entries.rbegin(); entry != entries.rend(); ++entry) {
        out << format_utc_time(entry->at) << "  " << name_of(entry->action) << " " << name_of(entry->outcome);
        if (entry->process.pid != 0) {
            out << "  pid " << entry->process.pid;
        }
        if (!entry->patch_id.empty()) {
            out << "  " << entry->patch_id << " level " << entry->level;
        }
        if (!entry->reason.empty()) {
            out << "  (" << entry->reason << ")";
        }
        if (!entry->message.empty()) {
            out << "  " << entry->message;
        }
        if (entry->caller_uid) {
            out << "  [uid " << *entry->caller_uid << "]";
        }
        out << "\n";
    }
}

}  // namespace suture
