#!/usr/bin/env bash
# sutured's authorization with Debian's real polkitd on a private system bus:
# a throwaway user whom a polkit rule allows org.suture.manage updates,
# reverts and applies through `suture`; another throwaway user without that
# rule is told "not authorized" (exit status 5) and nothing changes; both may
# call Status; each call's caller uid lands in the history; and bad input
# never takes the daemon down.
#
# polkitd reads its rules from /etc/polkit-1/rules.d and
# /usr/share/polkit-1/rules.d and its actions from /usr/share/polkit-1/actions
# (no option names other directories), so it runs here in a mount namespace
# of its own with the test's directories bind-mounted over those three:
# nothing is written to the host's /etc or /usr. The two users are created
# with useradd and deleted at exit.
#
# Usage (meson passes it): daemon-polkit.sh SUTURED REPRODUCER_63076
source "$(dirname "$0")/lib.sh"
require_root "useradd, mount namespaces for polkitd, ptrace"
: "${SUTURE_FEED:?}"
sutured=${1:?}
reproducer=${2:?}
polkitd=/usr/lib/polkit-1/polkitd
[ -x "$polkitd" ] || skip "needs polkitd (apt install polkitd; scripts/install-deps has it)"
getent passwd polkitd >/dev/null || skip "needs the polkitd system user (package polkitd)"
command -v useradd >/dev/null || skip "needs useradd (package passwd)"

# 1. Two throwaway users, removed at exit whatever happens.
allowed_user=suture-pk-yes-$$
denied_user=suture-pk-no-$$
created_users=()
remove_users() {
    local user
    for user in "${created_users[@]}"; do
        userdel "$user" 2>/dev/null || true
    done
}
trap 'remove_users; cleanup' EXIT
for user in "$allowed_user" "$denied_user"; do
    useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$user"
    created_users+=("$user")
done
allowed_uid=$(id -u "$allowed_user")
denied_uid=$(id -u "$denied_user")
as_user() { local user=$1; shift; setpriv --reuid="$user" --regid="$user" --clear-groups "$@"; }

# 2. The bus, with Debian's own rules for polkit's name, and polkitd on it
# with this test's rule and suture's action (data/org.suture.policy).
start_private_system_bus "<include>/usr/share/dbus-1/system.d/org.freedesktop.PolicyKit1.conf</include>"
mkdir -p "$scratch/polkit/rules.d" "$scratch/polkit/actions" "$scratch/polkit/empty"
cp "$SOURCE_ROOT/data/org.suture.policy" "$scratch/polkit/actions/"
cat >"$scratch/polkit/rules.d/50-suture-test.rules" <<EOF
// Only $allowed_user may manage suture without authenticating.
polkit.addRule(function(action, subject) {
    if (action.id == "org.suture.manage" && subject.user == "$allowed_user") {
        return polkit.Result.YES;
    }
});
EOF
chmod -R a+rX "$scratch/polkit"
start_polkitd() {
    unshare --mount --propagation private sh -c '
        mount --bind "$1/rules.d" /etc/polkit-1/rules.d &&
        mount --bind "$1/empty" /usr/share/polkit-1/rules.d &&
        mount --bind "$1/actions" /usr/share/polkit-1/actions &&
        exec "$2"' polkitd-in-namespace "$scratch/polkit" "$polkitd" >>"$scratch/polkitd.log" 2>&1 &
    polkitd_pid=$!
    started_pids+=("$polkitd_pid")
    wait_for_line "$scratch/polkitd.log" "Acquired the name org.freedesktop.PolicyKit1" ||
        { cat "$scratch/polkitd.log"; fail_check "polkitd did not take its bus name"; finish; }
}
start_polkitd
grep -q "executing 1 rules" "$scratch/polkitd.log" && pass "polkitd runs with the test's one rule" ||
    fail_check "polkitd's rules: $(cat "$scratch/polkitd.log")"

# 3. sutured with a local feed of the shipped patchsets, and a target on
# the archive's libcrypto 3.0.20-1~deb12u2.
export SUTURE_FEED_ROOT_DIR=$scratch/var
"$SOURCE_ROOT/scripts/setup-local-feed" "$(dirname "$(dirname "$SUTURE_FEED")")" >"$scratch/setup.log" 2>&1 ||
    { cat "$scratch/setup.log"; fail_check "setup-local-feed"; finish; }
state=$scratch/state.db
start_sutured "$sutured"
fetch_archive_package debian-12 libssl3 3.0.20-1~deb12u2 "$scratch/archive"
start_program target "LD_LIBRARY_PATH=$scratch/archive/usr/lib/x86_64-linux-gnu" -- "$reproducer"
check_eq "before: the target" VULNERABLE "$(ask "$target" probe)"
patch=$SOURCE_ROOT/patchsets/openssl/debian-12/3.0.20-1~deb12u2/CVE-2026-63076/CVE-2026-63076.suture
unset SUTURE_STATE_DB SUTURE_FEED_CACHE  # the CLI goes through the daemon
history_rows() { sqlite3 "$state" "select count(*) from history"; }
application_rows() { sqlite3 "$state" "select count(*) from applications"; }
bus_call=(busctl --address="$DBUS_SYSTEM_BUS_ADDRESS" --timeout=20 -- call org.suture.Suture1 /org/suture/Suture1 org.suture.Suture1)

# 4. The user without the rule: refused, told why, nothing changes.
history_before=$(history_rows)
applications_before=$(application_rows)
run 5 "$denied_user: suture update" as_user "$denied_user" "$SUTURE" update
grep -q "not authorized: uid $denied_uid" <<<"$errors" && pass "the refusal says not authorized, with the uid" ||
    fail_check "refusal message: $errors"
run 5 "$denied_user: suture apply" as_user "$denied_user" "$SUTURE" apply --pid "$target" "$patch"
run 5 "$denied_user: suture revert" as_user "$denied_user" "$SUTURE" revert --pid "$target"
run 5 "$denied_user: suture disable" as_user "$denied_user" "$SUTURE" disable
check_eq "the target after the refusals" VULNERABLE "$(ask "$target" probe)"
check_eq "no history row for refused calls" "$history_before" "$(history_rows)"
check_eq "no application row for refused calls" "$applications_before" "$(application_rows)"
wait_for_line "$scratch/sutured.log" "Update by uid $denied_uid: not authorized" &&
    pass "sutured's log names the refused caller" || fail_check "sutured.log: $(tail -5 "$scratch/sutured.log")"

# 5. Status for both users, through the daemon (it reads as root).
for user in "$denied_user" "$allowed_user"; do
    run 0 "$user: Status" as_user "$user" "${bus_call[@]}" Status ai 1 "$target"
    grep -q "$(build_id_of "$scratch/archive/usr/lib/x86_64-linux-gnu/libcrypto.so.3")" <<<"$output" &&
        pass "$user sees the target's libcrypto build" || fail_check "Status for $user: $output"
done

# 6. The user the rule allows: update, revert, apply, each recorded with
# the user's uid.
run 0 "$allowed_user: suture update" as_user "$allowed_user" "$SUTURE" update --json
check_eq "after $allowed_user's update: the target" FIXED "$(ask "$target" probe)"
check_eq "its update entry names uid $allowed_uid" "$allowed_uid" \
    "$(sqlite3 "$state" "select caller_uid from history where action = 'update' order by id desc limit 1")"
check_eq "its apply entries for the target name uid $allowed_uid" "$allowed_uid" \
    "$(sqlite3 "$state" "select group_concat(distinct caller_uid) from history where action = 'apply' and pid = $target")"
run 0 "$allowed_user: suture revert" as_user "$allowed_user" "$SUTURE" revert --pid "$target" CVE-2026-63076
check_eq "after $allowed_user's revert: the target" VULNERABLE "$(ask "$target" probe)"
check_eq "the revert entry names uid $allowed_uid" "$allowed_uid" \
    "$(sqlite3 "$state" "select caller_uid from history where action = 'revert' and pid = $target and outcome = 'ok' order by id desc limit 1")"
apply_rows_before=$(sqlite3 "$state" "select count(*) from history where action = 'apply' and pid = $target")
run 0 "$allowed_user: suture apply" as_user "$allowed_user" "$SUTURE" apply --pid "$target" "$patch"
check_eq "after $allowed_user's apply: the target" FIXED "$(ask "$target" probe)"
check_eq "the apply has a history entry with uid $allowed_uid" "$((apply_rows_before + 1)) $allowed_uid" \
    "$(sqlite3 "$state" "select count(*) from history where action = 'apply' and pid = $target") $(sqlite3 "$state" "select caller_uid from history where action = 'apply' and pid = $target order by id desc limit 1")"
run 0 "$denied_user: suture history --json" as_user "$denied_user" "$SUTURE" history --json
check_eq "the history shows the callers" "$allowed_uid" \
    "$(jq -r '[.history[] | select(.action == "revert") | .caller_uid] | first' <<<"$output")"

# Root needs no polkit, and is recorded as uid 0.
"$SUTURE" revert --pid "$target" CVE-2026-63076 >/dev/null
check_eq "root's revert entry names uid 0" 0 \
    "$(sqlite3 "$state" "select caller_uid from history where action = 'revert' and pid = $target order by id desc limit 1")"

# 7. Bad input from the allowed user: error replies, never a dead daemon
# (nor a hung one: a FIFO and /dev/zero as patch files).
mkfifo "$scratch/fifo"
bad_calls=(
    "Apply is $target $scratch/fifo"
    "Apply is -5 /nonexistent"
    "Apply is 2147483647 $patch"
    "Apply is $target /dev/zero"
    "Apply is $target /proc/self/mem"
    "Apply is $target $scratch"
    "Revert is $target no-such-patch-$(head -c 3000 /dev/zero | tr '\0' x)"
    "Revert is 0 \"\""
    "Status ai 3 -1 0 2147483647"
    "History u 4294967295"
)
for call in "${bad_calls[@]}"; do
    # shellcheck disable=SC2086 # the words are busctl's arguments
    as_user "$allowed_user" "${bus_call[@]}" $call >>"$scratch/bad-calls.log" 2>&1 || true
    kill -0 "$daemon_pid" 2>/dev/null || { fail_check "sutured died on: ${call:0:80}"; finish; }
    timeout 10 "${bus_call[@]}" Status ai 1 "$target" >/dev/null ||
        fail_check "sutured does not answer after: ${call:0:80}"
done
pass "sutured survived ${#bad_calls[@]} calls with bad arguments"
echo "their replies:"; cut -c1-160 "$scratch/bad-calls.log" | sed 's/^/  /'
bad=$(as_user "$allowed_user" "${bus_call[@]}" Apply is "$target" /nonexistent 2>&1 || true)
grep -qi "nonexistent\|no such" <<<"$bad" && pass "a missing patch file is an error reply that names it" ||
    fail_check "Apply /nonexistent: $bad"
check_eq "the target after the bad calls" VULNERABLE "$(ask "$target" probe)"

# 8. polkit gone: the allowed user is refused too, and told polkit is missing.
kill "$polkitd_pid"
wait "$polkitd_pid" 2>/dev/null || true
run 5 "$allowed_user without polkitd: suture update" as_user "$allowed_user" "$SUTURE" update
grep -q "polkit is not available" <<<"$errors" && pass "the refusal says polkit is not available" ||
    fail_check "refusal message: $errors"
check_eq "the target without polkitd" VULNERABLE "$(ask "$target" probe)"
kill -0 "$daemon_pid" 2>/dev/null && pass "sutured still runs" || fail_check "sutured died"
finish
