#!/usr/bin/env bash
# suture status run by an ordinary user: it sees that user's own processes
# (reading their libraries through /proc/PID/root, since map_files needs
# privilege), reports everyone else's as unreadable, and still finishes,
# with exit status 3 ("partial"). A deleted library of its own, which
# map_files refuses and whose path is gone, is identified from the headers
# mapped in the process, through /proc/PID/mem.
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

# A deleted library of the user's own process: the archive's 3.0.20 build,
# loaded from a directory that is then emptied.
fetch_archive_package debian-12 libssl3 3.0.20-1~deb12u2 "$scratch/archive"
mkdir -m 755 "$scratch/deleted"
cp "$scratch/archive/usr/lib/x86_64-linux-gnu"/lib{ssl,crypto}.so.3 "$scratch/deleted/"
chmod 644 "$scratch/deleted"/*
deleted_out="$scratch/deleted-holder.out"
"${as_nobody[@]}" env LD_LIBRARY_PATH="$scratch/deleted" "$HOLD_OPENSSL" libssl.so.3 </dev/null >"$deleted_out" 2>&1 &
started_pids+=($!)
wait_for_line "$deleted_out" "^ready " || { cat "$deleted_out"; fail_check "holder did not start"; exit 1; }
deleted_pid=$(sed -n 's/^ready //p' "$deleted_out")
expected_crypto=$(build_id_of "$scratch/deleted/libcrypto.so.3")
expected_ssl=$(build_id_of "$scratch/deleted/libssl.so.3")
rm -f "$scratch/deleted"/*
run 0 "status of the user's own process with deleted libraries" "${as_nobody[@]}" "$SUTURE" status --json --pid "$deleted_pid"
json=$output
check_eq "deleted libcrypto's build ID, from its mapped headers" "$expected_crypto" \
    "$(library "$json" "$deleted_pid" libcrypto.so.3 build_id)"
check_eq "deleted libssl's build ID, from its mapped headers" "$expected_ssl" \
    "$(library "$json" "$deleted_pid" libssl.so.3 build_id)"
check_eq "deleted libcrypto flagged deleted" true "$(library "$json" "$deleted_pid" libcrypto.so.3 deleted)"
check_eq "named from the build index" "3.0.20-1~deb12u2" "$(library "$json" "$deleted_pid" libcrypto.so.3 package.version)"
check_eq "no error for the process" 0 "$(jq --argjson pid "$deleted_pid" '.processes[] | select(.pid == $pid) | .errors | length' <<<"$json")"
finish
