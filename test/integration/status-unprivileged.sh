#!/usr/bin/env bash
# suture status run by an ordinary user: it sees that user's own processes
# (reading their libraries through /proc/PID/root, since map_files needs
# privilege), reports everyone else's as unreadable, and still finishes,
# with exit status 3 ("partial").
source "$(dirname "$0")/lib.sh"
require_root "to switch to the unprivileged user 'nobody'"
as_nobody=(setpriv --reuid=nobody --regid=nogroup --clear-groups --inh-caps=-all)
"${as_nobody[@]}" test -x "$SUTURE" || skip "the build directory is not readable by nobody"

out="$scratch/holder.out"
chmod 777 "$scratch"
"${as_nobody[@]}" "$HOLD_OPENSSL" libssl.so.3 </dev/null >"$out" 2>&1 &
started_pids+=($!)
wait_for_line "$out" "^ready " || { cat "$out"; fail_check "holder did not start"; exit 1; }
pid=$(sed -n 's/^ready //p' "$out")

run 3 "status when other users' processes are unreadable" "${as_nobody[@]}" "$SUTURE" status --json
json=$output
library_path=$(library "$json" "$pid" libcrypto.so.3 path)
check_eq "own process's libcrypto build ID" "$(build_id_of "$library_path")" \
    "$(library "$json" "$pid" libcrypto.so.3 build_id)"
check_eq "PID 1 is listed as unreadable" permission_denied \
    "$(jq -r '.unreadable[] | select(.pid == 1) | .reason' <<<"$json")"
[ "$(jq '.summary.processes_unreadable' <<<"$json")" -gt 0 ] &&
    pass "unreadable processes are counted" || fail_check "no unreadable process counted"
finish
